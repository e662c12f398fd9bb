//! `vfs`: a project workspace in a virtual filesystem (a JSON map path -> content in the
//! state). Tasks: move/rename files, change config values, rename a function across the code
//! base, clean up build artefacts, relocate a module and fix its imports, and count things
//! (TODO markers). The verifier compares the final file tree with the reference's and checks
//! submitted counts. File and workspace sizes are capped ([`crate::limits`]): a write or edit
//! that would pass a cap is refused with a `limit.vfs_*` error observation.

use agentgen_codec::{Message, ToolCall};
use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use serde_json::{Map, Value, json};

use super::answer::{self, answer_check};
use super::common::{
    Base, TaskParts, builtin_family, difficulty_slot, interleave, seal, state_checks, turn,
};
use crate::error::Result;
use crate::framework::{Instance, State, TaskSpec, ToolResult, Verdict};
use crate::limits::{self, codes as limit_codes};
use crate::util::{arg_str, call, rng};

mod data;
mod tasks;

use tasks::*;

const NAME: &str = "vfs";
const VERSION: u32 = 2;

/// The virtual-filesystem workspace family.
pub struct Vfs;

builtin_family!(Vfs, NAME, VERSION, Workspace::build);

struct Workspace {
    base: Base,
    project: String,
    files: Map<String, Value>,
    /// Candidate tasks per difficulty, in slot order.
    cands: [Vec<VTask>; 5],
}

fn files(state: &State) -> Option<&Map<String, Value>> {
    state.0.get("files")?.as_object()
}

/// Refuse a write that would make `path` hold `new_len` bytes, when the file or the whole
/// workspace would pass its cap.
fn check_size(fs: &Map<String, Value>, path: &str, new_len: usize) -> Option<ToolResult> {
    if new_len > limits::VFS_FILE_MAX_BYTES {
        return Some(limits::limit_error(
            limit_codes::VFS_FILE_BYTES,
            format!(
                "{path} would be {new_len} bytes; files are limited to {} bytes",
                limits::VFS_FILE_MAX_BYTES
            ),
        ));
    }
    let old_len = fs.get(path).and_then(Value::as_str).map_or(0, str::len);
    let total: usize = fs.values().filter_map(Value::as_str).map(str::len).sum();
    let total = total - old_len + new_len;
    let files = fs.len() + usize::from(!fs.contains_key(path));
    if total > limits::VFS_WORKSPACE_MAX_BYTES || files > limits::VFS_MAX_FILES {
        return Some(limits::limit_error(
            limit_codes::VFS_WORKSPACE_BYTES,
            format!(
                "the workspace would hold {total} bytes in {files} files; it is limited to {} bytes and {} files",
                limits::VFS_WORKSPACE_MAX_BYTES,
                limits::VFS_MAX_FILES
            ),
        ));
    }
    None
}

fn norm_path(p: &str) -> String {
    let p = p.trim().trim_start_matches("./").trim_start_matches('/');
    p.trim_end_matches('/').to_owned()
}

fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(x) = rest.strip_prefix(part) else { return false };
            rest = x;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

fn under(path: &str, dir: Option<&str>) -> bool {
    match dir.map(norm_path) {
        None => true,
        Some(d) if d.is_empty() || d == "." => true,
        Some(d) => path.starts_with(&format!("{d}/")),
    }
}

impl Instance for Workspace {
    fn task(&self, task_seed: u64) -> Result<TaskSpec> {
        let spec = self.generate(task_seed)?;
        seal(self, &self.base, spec)
    }

    fn call(&self, state: &mut State, call: &ToolCall) -> ToolResult {
        let (name, args) = match self.base.parse(call) {
            Ok(x) => x,
            Err(e) => return e,
        };
        let Some(fs) = files(state) else { return ToolResult::error("workspace is not mounted") };
        let path = norm_path(arg_str(&args, "path").unwrap_or_default());
        match name {
            "list_dir" => {
                let dir =
                    if path.is_empty() || path == "." { String::new() } else { format!("{path}/") };
                let mut entries: Vec<String> = fs
                    .keys()
                    .filter_map(|k| k.strip_prefix(&dir))
                    .map(|rest| match rest.split_once('/') {
                        Some((d, _)) => format!("{d}/"),
                        None => rest.to_owned(),
                    })
                    .collect();
                entries.dedup();
                entries.sort();
                entries.dedup();
                if entries.is_empty() {
                    return ToolResult::error(format!("no such directory {path:?}"));
                }
                ToolResult::read(
                    &json!({"path": if path.is_empty() { "." } else { &path }, "entries": entries}),
                )
            }
            "find_files" => {
                let pat = arg_str(&args, "pattern").unwrap_or_default().trim();
                let dir = arg_str(&args, "under");
                let hits: Vec<&String> = fs
                    .keys()
                    .filter(|k| under(k, dir) && glob(pat, k.rsplit('/').next().unwrap_or(k)))
                    .collect();
                ToolResult::read(&json!({"matches": hits}))
            }
            "read_file" => match fs.get(&path).and_then(Value::as_str) {
                None => ToolResult::error(format!("no such file {path:?}")),
                Some(c) => {
                    let numbered: Vec<String> =
                        c.lines().enumerate().map(|(i, l)| format!("{:>4}| {l}", i + 1)).collect();
                    ToolResult::read(&json!({"path": path, "content": numbered.join("\n")}))
                }
            },
            "grep" => {
                let pat = arg_str(&args, "pattern").unwrap_or_default();
                if pat.is_empty() {
                    return ToolResult::error("pattern must not be empty");
                }
                let dir = arg_str(&args, "under");
                let mut hits = Vec::new();
                for (k, v) in fs.iter().filter(|(k, _)| under(k, dir)) {
                    for (i, l) in v.as_str().unwrap_or_default().lines().enumerate() {
                        if l.contains(pat) {
                            hits.push(json!({"path": k, "line": i + 1, "text": l}));
                        }
                    }
                }
                ToolResult::read(&json!({"matches": hits}))
            }
            "write_file" => {
                if path.is_empty() {
                    return ToolResult::error("path must not be empty");
                }
                let content = arg_str(&args, "content").unwrap_or_default().to_owned();
                let n = content.len();
                if let Some(refused) = check_size(fs, &path, n) {
                    return refused;
                }
                state.0["files"][&path] = json!(content);
                ToolResult::write(&json!({"path": path, "bytes": n}))
            }
            "edit_file" => {
                let old = arg_str(&args, "old").unwrap_or_default();
                let new = arg_str(&args, "new").unwrap_or_default();
                let Some(c) = fs.get(&path).and_then(Value::as_str) else {
                    return ToolResult::error(format!("no such file {path:?}"));
                };
                if old.is_empty() || !c.contains(old) {
                    return ToolResult::error(format!("{old:?} does not occur in {path}"));
                }
                let n = c.matches(old).count();
                // The size is known before building the string.
                let new_len = (c.len() - n * old.len()).saturating_add(n.saturating_mul(new.len()));
                if let Some(refused) = check_size(fs, &path, new_len) {
                    return refused;
                }
                let updated = c.replace(old, new);
                let changed = updated != c;
                state.0["files"][&path] = json!(updated);
                ToolResult {
                    state_changed: changed,
                    ..ToolResult::write(&json!({"path": path, "replacements": n}))
                }
            }
            "move_file" => {
                let src = norm_path(arg_str(&args, "source").unwrap_or_default());
                let dst = norm_path(arg_str(&args, "destination").unwrap_or_default());
                if dst.is_empty() || fs.contains_key(&dst) {
                    return ToolResult::error(format!("destination {dst:?} is empty or exists"));
                }
                let Some(obj) = state.0["files"].as_object_mut() else {
                    return ToolResult::error("workspace is not mounted");
                };
                let Some(c) = obj.remove(&src) else {
                    return ToolResult::error(format!("no such file {src:?}"));
                };
                obj.insert(dst.clone(), c);
                ToolResult::write(&json!({"moved": src, "to": dst}))
            }
            "delete_file" => {
                let Some(obj) = state.0["files"].as_object_mut() else {
                    return ToolResult::error("workspace is not mounted");
                };
                match obj.remove(&path) {
                    None => ToolResult::error(format!("no such file {path:?}")),
                    Some(_) => ToolResult::write(&json!({"deleted": path})),
                }
            }
            "submit_answer" => {
                state.0["answer"] = json!(arg_str(&args, "answer").unwrap_or_default());
                ToolResult::write(&json!({"status": "answer recorded"}))
            }
            other => ToolResult::error(format!("tool {other:?} is not implemented")),
        }
    }

    fn verify(&self, task: &TaskSpec, state: &State, _transcript: &[Message]) -> Verdict {
        let has_answer = task.hidden.get("answer").is_some();
        let mut checks = state_checks(task, state, if has_answer { &["answer"] } else { &[] });
        if let Some(c) = answer_check(task, state, "answer") {
            checks.push(c);
        }
        Verdict::from_checks(checks)
    }
}
