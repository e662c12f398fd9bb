//! The fixture data the tests use, carried inside the repository so that `cargo test` passes on
//! a fresh clone. `fixtures/` at the repository root is a byte-identical copy of the project's
//! normative fixtures (the large safetensors are stored zstd-compressed and decompressed by this
//! crate's build script); `tests/same_as_shared.rs` compares every file with `../shared/fixtures`
//! whenever that folder sits beside the checkout, so the copies cannot drift.
//!
//! Owns: where tests find fixtures. Must not: be a dependency of anything but tests.
//!
//! Not carried: `tokenizer/tokenizer.json`; the codec embeds it (`codec/assets/`) and checks its
//! hash, and the tests use only `tokenizer/token_cases.jsonl`.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};

/// The materialized fixtures folder (same layout as `shared/fixtures`).
pub fn dir() -> &'static Path {
    Path::new(concat!(env!("OUT_DIR"), "/fixtures"))
}

/// A path inside the fixtures folder, e.g. `path("model/tiny-f32")`.
pub fn path(rel: &str) -> PathBuf {
    dir().join(rel)
}

/// Copy the folder `from` into `to` (created as needed), recursively, leaving out dot-files and
/// `__pycache__`: how a test gets a writable copy of a fixture package. Panics on an I/O error
/// (test code only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let p = e.path();
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') || name == "__pycache__" {
            continue;
        }
        if p.is_dir() {
            copy_dir(&p, &to.join(&name));
        } else {
            std::fs::copy(&p, to.join(&name)).expect("copy");
        }
    }
}
