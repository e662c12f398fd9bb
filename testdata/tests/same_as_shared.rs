//! The carried fixtures equal `../shared/fixtures` byte for byte (when it is present).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Files the repository deliberately does not carry (see the crate doc).
const NOT_CARRIED: &[&str] = &["tokenizer/tokenizer.json"];

fn hashes(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            // `.agentgen/` is runtime state a test run may leave next to the packages (cached
            // admission reports, spec envpkg: outside every package), not fixture data.
            if p.file_name().is_some_and(|n| n == ".agentgen") {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                let digest = Sha256::digest(std::fs::read(&p).unwrap());
                out.insert(rel, format!("{digest:x}"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn carried_fixtures_are_byte_identical_to_shared() {
    let ours = hashes(agentgen_testdata::dir());
    assert!(ours.contains_key("model/tiny-f32/model.safetensors"), "materialized fixtures missing");
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures");
    if !shared.is_dir() {
        eprintln!(
            "NOTE: {} is absent (a fresh clone); the carried fixtures are used as they are and \
             cannot be compared with the normative copy here",
            shared.display()
        );
        return;
    }
    let theirs = hashes(&shared);
    for (rel, hash) in &theirs {
        if NOT_CARRIED.contains(&rel.as_str()) {
            continue;
        }
        assert_eq!(ours.get(rel), Some(hash), "fixtures/{rel} differs from shared/fixtures/{rel}");
    }
    for rel in ours.keys() {
        assert!(theirs.contains_key(rel), "fixtures/{rel} is not in shared/fixtures");
    }
}
