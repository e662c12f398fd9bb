//! Materializes `../fixtures` into `OUT_DIR/fixtures`: text files are copied as they are,
//! `*.zst` files are decompressed (the large safetensors travel compressed in git).

use std::fs;
use std::io;
use std::path::Path;

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if entry.file_type()?.is_dir() {
            copy_tree(&path, &to.join(&*name))?;
        } else if let Some(stem) = name.strip_suffix(".zst") {
            let bytes = zstd::decode_all(fs::File::open(&path)?)?;
            fs::write(to.join(stem), bytes)?;
        } else {
            fs::copy(&path, to.join(&*name))?;
        }
    }
    Ok(())
}

fn main() -> io::Result<()> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").map_err(io::Error::other)?;
    let out = std::env::var("OUT_DIR").map_err(io::Error::other)?;
    let src = Path::new(&manifest).join("../fixtures");
    println!("cargo:rerun-if-changed={}", src.display());
    let dst = Path::new(&out).join("fixtures");
    if dst.exists() {
        fs::remove_dir_all(&dst)?;
    }
    copy_tree(&src, &dst)
}
