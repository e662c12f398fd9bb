//! The synthesizer's draft package: one folder the model's file tools may touch, and nothing
//! else. Every path is checked lexically (relative, no `..`, no hidden or odd segment: the
//! envpkg name rule) and then against the filesystem (no symlink on the way, the resolved
//! parent inside the draft), so a model cannot read or write outside it.

use std::path::{Component, Path, PathBuf};

use serde_json::{Value, json};

/// Largest file the model may write, and the whole draft (envpkg: 16 MiB per package).
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// Largest whole draft.
pub const MAX_DRAFT_BYTES: u64 = 16 << 20;
/// Longest read returned to the model.
pub const MAX_READ_BYTES: usize = 64 << 10;
const MAX_FILES: usize = 200;

/// A draft package folder.
#[derive(Debug, Clone)]
pub struct Draft {
    root: PathBuf,
}

impl Draft {
    /// An empty draft at `root` (anything there before is removed).
    pub fn fresh(root: &Path) -> std::io::Result<Draft> {
        if root.exists() {
            std::fs::remove_dir_all(root)?;
        }
        std::fs::create_dir_all(root)?;
        Ok(Draft { root: root.canonicalize()? })
    }

    /// The draft folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host path of draft path `rel`, or why it is refused.
    pub fn resolve(&self, rel: &str) -> Result<PathBuf, String> {
        let refuse = |why: &str| {
            Err(format!(
                "refused: {rel:?} {why}; paths are relative to your draft package and stay inside it"
            ))
        };
        if rel.is_empty() || rel.len() > 255 {
            return refuse("is empty or too long");
        }
        if rel.contains('\\') || rel.contains('\0') {
            return refuse("contains a backslash or NUL");
        }
        let p = Path::new(rel);
        if p.is_absolute() {
            return refuse("is absolute");
        }
        let mut out = self.root.clone();
        let mut depth = 0;
        for c in p.components() {
            match c {
                Component::Normal(s) => {
                    let s = s.to_str().unwrap_or("");
                    let ok_first =
                        s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
                    let ok_rest = s
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
                    if !ok_first || !ok_rest {
                        return refuse(
                            "has a segment outside [A-Za-z0-9_][A-Za-z0-9._-]* (no hidden names)",
                        );
                    }
                    out.push(s);
                    depth += 1;
                }
                Component::CurDir => {}
                _ => return refuse("leaves the draft folder"),
            }
        }
        if depth == 0 || depth > 6 {
            return refuse("names no file or is nested too deep");
        }
        // No symlink anywhere on the way (the model cannot make one, but be sure).
        let mut cur = self.root.clone();
        for c in p.components() {
            if let Component::Normal(s) = c {
                cur.push(s);
                if let Ok(m) = std::fs::symlink_metadata(&cur)
                    && m.file_type().is_symlink()
                {
                    return refuse("goes through a link");
                }
            }
        }
        if !out.starts_with(&self.root) {
            return refuse("leaves the draft folder");
        }
        Ok(out)
    }

    /// Write `content` to `rel` inside the draft; `Err` is the refusal text for the model.
    pub fn write(&self, rel: &str, content: &str) -> Result<Value, String> {
        let path = self.resolve(rel)?;
        if content.len() > MAX_FILE_BYTES {
            return Err(format!(
                "{rel}: {} bytes is over the {MAX_FILE_BYTES}-byte file limit",
                content.len()
            ));
        }
        let files = self.list_raw();
        let total: u64 = files.iter().filter(|(p, _)| p != rel).map(|(_, b)| *b).sum();
        if total + content.len() as u64 > MAX_DRAFT_BYTES {
            return Err(format!("the draft would exceed {MAX_DRAFT_BYTES} bytes"));
        }
        if !files.iter().any(|(p, _)| p == rel) && files.len() >= MAX_FILES {
            return Err(format!("the draft already holds {MAX_FILES} files"));
        }
        if path.is_dir() {
            return Err(format!("{rel} is a directory"));
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{rel}: {e}"))?;
        }
        std::fs::write(&path, content).map_err(|e| format!("{rel}: {e}"))?;
        Ok(json!({"written": rel, "bytes": content.len()}))
    }

    /// Read `rel` inside the draft (at most [`MAX_READ_BYTES`]); `Err` is the refusal text.
    pub fn read(&self, rel: &str) -> Result<String, String> {
        let path = self.resolve(rel)?;
        if !path.is_file() {
            return Err(format!("{rel}: no such file in the draft"));
        }
        let bytes = std::fs::read(&path).map_err(|e| format!("{rel}: {e}"))?;
        let text = String::from_utf8_lossy(&bytes);
        if text.len() <= MAX_READ_BYTES {
            return Ok(text.into_owned());
        }
        let mut cut = MAX_READ_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        Ok(format!("{}…[truncated {} bytes]", &text[..cut], text.len() - cut))
    }

    /// `(relative path, bytes)` of every regular file, sorted.
    pub fn list_raw(&self) -> Vec<(String, u64)> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
            let Ok(rd) = std::fs::read_dir(dir) else { return };
            for e in rd.flatten() {
                let Ok(m) = std::fs::symlink_metadata(e.path()) else { continue };
                if m.is_dir() {
                    walk(base, &e.path(), out);
                } else if m.is_file()
                    && let Ok(rel) = e.path().strip_prefix(base)
                {
                    out.push((rel.to_string_lossy().replace('\\', "/"), m.len()));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &self.root, &mut out);
        out.sort();
        out
    }

    /// Every file with its size, as the model sees it.
    pub fn list(&self) -> Value {
        let files: Vec<Value> =
            self.list_raw().into_iter().map(|(p, b)| json!({"path": p, "bytes": b})).collect();
        json!({"files": files})
    }

    /// The draft's files for the Python sandbox (`/` becomes `__`), skipping caches.
    pub fn sandbox_files(&self) -> Vec<(String, Vec<u8>)> {
        self.list_raw()
            .into_iter()
            .filter(|(p, _)| !p.contains("__pycache__"))
            .filter_map(|(p, _)| {
                let bytes = std::fs::read(self.root.join(&p)).ok()?;
                Some((p.replace('/', "__"), bytes))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = Draft::fresh(&dir.path().join("draft")).expect("draft");
        for bad in
            ["../x", "/etc/passwd", "a/../../x", ".hidden", "data/.x", "", "a\\b", "data/../../x"]
        {
            assert!(d.resolve(bad).is_err(), "{bad}");
            assert!(d.write(bad, "x").is_err(), "{bad}");
        }
        assert!(d.write("data/rooms.csv", "a,b\n").is_ok());
        assert_eq!(d.read("data/rooms.csv").as_deref(), Ok("a,b\n"));
        assert_eq!(d.list_raw(), vec![("data/rooms.csv".to_owned(), 4)]);
        assert!(!dir.path().join("x").exists());
    }
}
