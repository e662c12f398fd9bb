//! `agentgen envs new NAME`: writes a small package that `envs check` admits as created (the
//! files under `scaffold/`, embedded, with `{{name}}` replaced).

use std::path::{Path, PathBuf};

/// `(file, text)` of the scaffold.
const FILES: &[(&str, &str)] = &[
    ("env.toml", include_str!("scaffold/env.toml")),
    ("tools.json", include_str!("scaffold/tools.json")),
    ("env.py", include_str!("scaffold/env.py")),
    ("tasks.jsonl", include_str!("scaffold/tasks.jsonl")),
    ("README.md", include_str!("scaffold/README.md")),
];

/// Create package `name` as `parent/name`. `Err` names the problem: a name outside
/// `[a-z][a-z0-9_]{0,63}`, a reserved (built-in family) name, an existing path, an I/O error.
pub fn scaffold(name: &str, parent: &Path, reserved: &[&str]) -> Result<PathBuf, String> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
    if !ok {
        return Err(format!("package name {name:?} must match [a-z][a-z0-9_]{{0,63}}"));
    }
    if reserved.contains(&name) {
        return Err(format!("{name:?} is the name of a built-in family; choose another"));
    }
    let dir = parent.join(name);
    if dir.exists() {
        return Err(format!("{} already exists", dir.display()));
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (file, text) in FILES {
        let path = dir.join(file);
        std::fs::write(&path, text.replace("{{name}}", name))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(dir)
}
