//! Embeds every `tool-specs/<family>/*.json` file of the workspace into the crate
//! (`$OUT_DIR/tool_specs.rs`), sorted, so a new spec file needs no code change to be loaded and
//! validated.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let root = Path::new(&manifest).join("../tool-specs");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files: Vec<(String, String, String)> = Vec::new();
    if let Ok(dirs) = std::fs::read_dir(&root) {
        for dir in dirs.flatten() {
            let path = dir.path();
            if !path.is_dir() {
                continue;
            }
            println!("cargo:rerun-if-changed={}", path.display());
            let family = dir.file_name().to_string_lossy().into_owned();
            let Ok(entries) = std::fs::read_dir(&path) else { continue };
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "json") {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let abs = p.canonicalize().unwrap_or(p.clone());
                    files.push((family.clone(), name, abs.display().to_string()));
                }
            }
        }
    }
    files.sort();
    let mut out = String::from(
        "/// `(family, file path relative to the workspace, contents)` of every embedded spec.\n\
         pub static EMBEDDED: &[(&str, &str, &str)] = &[\n",
    );
    for (family, name, abs) in &files {
        let _ = writeln!(
            out,
            "    ({family:?}, {rel:?}, include_str!({abs:?})),",
            rel = format!("tool-specs/{family}/{name}")
        );
    }
    out.push_str("];\n");
    let out_dir = std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into());
    if let Err(e) = std::fs::write(Path::new(&out_dir).join("tool_specs.rs"), out) {
        panic!("cannot write tool_specs.rs: {e}");
    }
}
