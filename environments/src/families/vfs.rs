//! `vfs`: a project workspace in a virtual filesystem (a JSON map path -> content in the
//! state). Tasks: move/rename files, change config values, rename a function across the code
//! base, clean up build artefacts, relocate a module and fix its imports, and count things
//! (TODO markers). The verifier compares the final file tree with the reference's and checks
//! submitted counts. File and workspace sizes are capped ([`crate::limits`]): a write or edit
//! that would pass a cap is refused with a `limit.vfs_*` error observation.

use std::sync::Arc;

use agentgen_codec::{Message, ToolCall};
use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use serde_json::{Map, Value, json};

use super::common::{AnswerKind, Base, TaskParts, answer_check, seal, state_checks, turn};
use crate::error::Result;
use crate::framework::{
    Availability, Family, FamilyInfo, Instance, State, TaskSpec, ToolResult, Verdict,
};
use crate::limits::{self, codes as limit_codes};
use crate::util::{arg_str, call, rng};

const NAME: &str = "vfs";
const VERSION: u32 = 1;

/// The virtual-filesystem workspace family.
pub struct Vfs;

impl Family for Vfs {
    fn info(&self) -> FamilyInfo {
        FamilyInfo { name: NAME, version: VERSION, instances: 1000, tasks_per_instance: 200 }
    }
    fn availability(&self) -> Availability {
        Availability::Available
    }
    fn instance(&self, instance_seed: u64) -> Result<Arc<dyn Instance>> {
        Ok(Arc::new(Workspace::build(instance_seed)?))
    }
}

const MODULES: &[&str] = &[
    "parser",
    "storage",
    "billing",
    "auth",
    "report",
    "cache",
    "network",
    "scheduler",
    "metrics",
    "export",
];
const VERBS: &[&str] =
    &["load", "save", "compute", "validate", "render", "fetch", "parse", "merge", "flush", "send"];
const NOUNS: &[&str] = &[
    "config", "invoice", "user", "record", "batch", "summary", "token", "entry", "report", "queue",
];

struct Workspace {
    base: Base,
    project: String,
    files: Map<String, Value>,
}

impl Workspace {
    fn build(seed: u64) -> Result<Self> {
        let mut r = rng(&[0xF5F5, seed]);
        let mut allowed = vec![
            "list_dir",
            "read_file",
            "grep",
            "edit_file",
            "move_file",
            "delete_file",
            "submit_answer",
        ];
        for t in ["find_files", "write_file"] {
            if r.random_bool(0.8) {
                allowed.push(t);
            }
        }
        allowed.shuffle(&mut r);
        let base = Base::new(NAME, VERSION, seed, allowed)?;
        let project = format!(
            "{}-{}",
            ["atlas", "quill", "ember", "orbit", "delta", "nova"].choose(&mut r).unwrap_or(&"app"),
            r.random_range(1..99)
        );
        let mut mods: Vec<&str> = MODULES.to_vec();
        mods.shuffle(&mut r);
        let mods: Vec<&str> = mods[..r.random_range(4..=7)].to_vec();
        let mut files = Map::new();
        let mut funcs: Vec<(String, String)> = Vec::new();
        for m in &mods {
            let mut body = format!("\"\"\"The {m} module of {project}.\"\"\"\n\n");
            for _ in 0..r.random_range(2..=4) {
                let f = format!(
                    "{}_{}",
                    VERBS.choose(&mut r).unwrap_or(&"load"),
                    NOUNS.choose(&mut r).unwrap_or(&"config")
                );
                if funcs.iter().any(|(_, g)| *g == f) {
                    continue;
                }
                body.push_str(&format!("def {f}(data):\n"));
                if r.random_bool(0.35) {
                    body.push_str("    # TODO: handle empty input\n");
                }
                body.push_str(&format!("    return data  # {m}\n\n"));
                funcs.push(((*m).to_owned(), f));
            }
            files.insert(format!("src/{m}.py"), json!(body));
        }
        // Callers: main.py and a few tests import functions from modules.
        let mut main = String::from("\"\"\"Entry point.\"\"\"\n");
        let mut callers: Vec<&(String, String)> = funcs.iter().collect();
        callers.shuffle(&mut r);
        for (m, f) in callers.iter().take(4) {
            main.push_str(&format!("from src.{m} import {f}\n"));
        }
        main.push_str("\n\ndef main():\n    # TODO: parse command-line flags\n    pass\n");
        files.insert("main.py".into(), json!(main));
        for (m, f) in callers.iter().skip(1).take(3) {
            files.insert(
                format!("tests/test_{m}_{f}.py"),
                json!(format!(
                    "from src.{m} import {f}\n\n\ndef test_{f}():\n    assert {f}(1) == 1\n"
                )),
            );
        }
        let timeout = r.random_range(5..=60);
        let retries = r.random_range(1..=5);
        files.insert(
            "config/app.yaml".into(),
            json!(format!(
                "name: {project}\ntimeout: {timeout}\nretries: {retries}\nlog_level: info\n"
            )),
        );
        files.insert(
            "README.md".into(),
            json!(format!("# {project}\n\nRun `python main.py`.\n\nTODO: write usage docs\n")),
        );
        files.insert("notes/todo.txt".into(), json!("- refactor storage\n- add metrics\n"));
        for i in 0..r.random_range(2..=5) {
            let ext = if r.random_bool(0.5) { "log" } else { "tmp" };
            files.insert(format!("build/out_{i}.{ext}"), json!(format!("artifact {i}\n")));
        }
        files.insert("build/keep.txt".into(), json!("keep this file\n"));
        Ok(Workspace { base, project, files })
    }
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

impl Workspace {
    fn generate(&self, task_seed: u64) -> Result<TaskSpec> {
        let mut r = rng(&[0xF5F5, self.base.instance_seed, task_seed]);
        let difficulty = (task_seed % 5) as u8 + 1;
        let fs = &self.files;
        let text = |p: &str| fs.get(p).and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut hidden = json!({});
        let mut turns = Vec::new();
        let kinds: &[&str] = match difficulty {
            1 => &["move_notes", "config"],
            2 => &["config", "count_todo"],
            3 => &["rename_fn"],
            4 => &["cleanup", "rename_fn"],
            _ => &["relocate"],
        };
        let kind = *kinds.choose(&mut r).unwrap_or(&"config");
        let user = match kind {
            "move_notes" => {
                let dst = format!(
                    "{}/todo.txt",
                    ["docs", "planning", "notes/archive"][r.random_range(0..3)]
                );
                turns.push(turn(
                    "Move the file.",
                    vec![call(
                        "move_file",
                        json!({"source": "notes/todo.txt", "destination": dst}),
                    )],
                ));
                format!("Move notes/todo.txt to {dst}.")
            }
            "config" => {
                let cfg = text("config/app.yaml");
                let key = *["timeout", "retries", "log_level"].choose(&mut r).unwrap_or(&"timeout");
                let old_line = cfg
                    .lines()
                    .find(|l| l.starts_with(&format!("{key}:")))
                    .unwrap_or_default()
                    .to_owned();
                let new_val = match key {
                    "log_level" => ["debug", "warning", "error"][r.random_range(0..3)].to_owned(),
                    _ => loop {
                        let v = r.random_range(1..=120).to_string();
                        if !old_line.ends_with(&format!(" {v}")) {
                            break v;
                        }
                    },
                };
                turns.push(turn(
                    "Read the config to see the current line.",
                    vec![call("read_file", json!({"path": "config/app.yaml"}))],
                ));
                turns.push(turn(format!("Replace `{old_line}`."), vec![call("edit_file", json!({"path": "config/app.yaml", "old": old_line, "new": format!("{key}: {new_val}")}))]));
                format!(
                    "In config/app.yaml set {key} to {new_val}; leave everything else unchanged."
                )
            }
            "count_todo" => {
                let n: usize = fs
                    .values()
                    .map(|v| v.as_str().unwrap_or_default().matches("TODO").count())
                    .sum();
                turns.push(turn(
                    "Grep the workspace for TODO markers.",
                    vec![call("grep", json!({"pattern": "TODO", "under": null}))],
                ));
                turns.push(turn(
                    format!("{n} matches."),
                    vec![call("submit_answer", json!({"answer": n.to_string()}))],
                ));
                hidden["answer"] = json!({"kind": AnswerKind::Integer.as_str(), "value": n});
                "How many TODO markers are there in the whole workspace? Submit the number."
                    .to_owned()
            }
            "cleanup" => {
                // Every instance has 2-5 build artefacts, each .log or .tmp: pick the seeded
                // extension when it has files, else the other one (some instances have only one).
                let first = if r.random_bool(0.5) { "log" } else { "tmp" };
                let artefacts = |ext: &str| -> Vec<&String> {
                    fs.keys()
                        .filter(|k| k.starts_with("build/") && k.ends_with(&format!(".{ext}")))
                        .collect()
                };
                let (ext, victims) = match artefacts(first) {
                    v if !v.is_empty() => (first, v),
                    _ => {
                        let other = if first == "log" { "tmp" } else { "log" };
                        (other, artefacts(other))
                    }
                };
                if victims.is_empty() {
                    return Err(self.base.gen_error("nothing to clean"));
                }
                let finder = if self.base.has("find_files") {
                    call("find_files", json!({"pattern": format!("*.{ext}"), "under": "build"}))
                } else {
                    call("list_dir", json!({"path": "build"}))
                };
                turns.push(turn("Find the artefacts.", vec![finder]));
                turns.push(turn(
                    "Delete them in parallel.",
                    victims.iter().map(|v| call("delete_file", json!({"path": v}))).collect(),
                ));
                format!("Delete every .{ext} file under build/ and nothing else.")
            }
            _ => {
                // rename_fn / relocate: pick a function that is imported somewhere.
                let imports: Vec<(String, String)> = text("main.py")
                    .lines()
                    .filter_map(|l| {
                        let rest = l.strip_prefix("from src.")?;
                        let (m, f) = rest.split_once(" import ")?;
                        Some((m.to_owned(), f.to_owned()))
                    })
                    .collect();
                let Some((m, f)) = imports.choose(&mut r).cloned() else {
                    return Err(self.base.gen_error("no imports"));
                };
                if kind == "rename_fn" {
                    let new = format!("{f}_v2");
                    let users: Vec<&String> = fs
                        .iter()
                        .filter(|(_, v)| v.as_str().is_some_and(|c| c.contains(&f)))
                        .map(|(k, _)| k)
                        .collect();
                    turns.push(turn(
                        format!("Grep for {f} to find the definition and every use."),
                        vec![call("grep", json!({"pattern": f, "under": null}))],
                    ));
                    turns.push(turn(
                        "Edit every file that mentions it, in parallel.",
                        users
                            .iter()
                            .map(|p| call("edit_file", json!({"path": p, "old": f, "new": new})))
                            .collect(),
                    ));
                    format!(
                        "Rename the function {f} to {new} everywhere in the workspace (definition, imports, calls, tests)."
                    )
                } else {
                    let dst = format!("src/legacy/{m}.py");
                    let old_imp = format!("from src.{m} import");
                    let new_imp = format!("from src.legacy.{m} import");
                    let users: Vec<&String> = fs
                        .iter()
                        .filter(|(_, v)| v.as_str().is_some_and(|c| c.contains(&old_imp)))
                        .map(|(k, _)| k)
                        .collect();
                    turns.push(turn(
                        format!("Find the importers of src.{m}."),
                        vec![call("grep", json!({"pattern": old_imp, "under": null}))],
                    ));
                    turns.push(turn(
                        "Move the module.",
                        vec![call(
                            "move_file",
                            json!({"source": format!("src/{m}.py"), "destination": dst}),
                        )],
                    ));
                    turns.push(turn(
                        "Fix the imports in parallel.",
                        users
                            .iter()
                            .map(|p| {
                                call(
                                    "edit_file",
                                    json!({"path": p, "old": old_imp, "new": new_imp}),
                                )
                            })
                            .collect(),
                    ));
                    format!(
                        "Move the module src/{m}.py to {dst} and update every `from src.{m} import` to `from src.legacy.{m} import`."
                    )
                }
            }
        };
        hidden["kind"] = json!(kind);
        let parts = TaskParts {
            difficulty,
            system_prompt: format!(
                "You are a coding assistant working in the workspace of the project {}. Use the file tools; paths are relative to the workspace root. Change only what the user asks for.",
                self.project
            ),
            user_prompt: user,
            initial_state: json!({"files": self.files, "answer": null}),
            turns,
            final_answer: "Done.".to_owned(),
            hidden,
        };
        Ok(self.base.finish(task_seed, parts))
    }
}
