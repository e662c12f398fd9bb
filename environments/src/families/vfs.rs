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

use super::answer::{self, answer_check};
use super::common::{Base, TaskParts, difficulty_slot, interleave, seal, state_checks, turn};
use crate::error::Result;
use crate::framework::{
    Availability, Family, FamilyInfo, Instance, State, TaskSpec, ToolResult, Verdict,
};
use crate::limits::{self, codes as limit_codes};
use crate::util::{arg_str, call, rng};

const NAME: &str = "vfs";
const VERSION: u32 = 2;

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
    /// Candidate tasks per difficulty, in slot order.
    cands: [Vec<VTask>; 5],
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
        let cands = candidates(&files, &mut r);
        Ok(Workspace { base, project, files, cands })
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

/// One task of the workspace, fully specified (distinct values are distinct tasks).
#[derive(Clone, Debug)]
enum VTask {
    /// Move a file into another directory.
    Move { src: String, dir: &'static str },
    /// Set config keys (one at difficulty 1, two at difficulty 2).
    Config(Vec<(&'static str, String)>),
    /// Count something and submit the number.
    Count(CountQ),
    /// Rename a function everywhere.
    Rename { func: String, new: String },
    /// Delete build artefacts of some extensions, and one more chore.
    Cleanup { exts: Vec<&'static str>, also: Also },
    /// Move a module into a package and fix its imports.
    Relocate { module: String, package: &'static str },
}

/// The second chore of a cleanup task.
#[derive(Clone, Debug)]
enum Also {
    /// Set a config key.
    Set(&'static str, String),
    /// Move a file into a directory.
    Move(String, &'static str),
}

/// A counting question.
#[derive(Clone, Debug)]
enum CountQ {
    /// TODO markers under a directory (`None`: the whole workspace).
    Todo(Option<&'static str>),
    /// Functions defined in a file.
    Defs(String),
    /// Lines of a file.
    Lines(String),
    /// Files directly in a directory.
    Files(&'static str),
}

const MOVE_DIRS: &[&str] = &["docs", "planning", "notes/archive", "archive", "old"];
const PACKAGES: &[&str] =
    &["legacy", "core", "lib", "internal", "compat", "shared", "common", "vendor", "old", "pkg"];
const SUFFIXES: &[&str] =
    &["_v2", "_impl", "_legacy", "_checked", "_safe", "_old", "_fast", "_sync"];

/// The candidate tasks of each difficulty, in slot order (see [`interleave`]).
fn candidates(files: &Map<String, Value>, r: &mut impl Rng) -> [Vec<VTask>; 5] {
    let text = |p: &str| files.get(p).and_then(Value::as_str).unwrap_or_default();
    let cfg = text("config/app.yaml");
    let current = |key: &str| {
        cfg.lines().find_map(|l| l.strip_prefix(&format!("{key}: "))).unwrap_or_default().to_owned()
    };
    let values = |key: &'static str| -> Vec<(&'static str, String)> {
        let all: Vec<String> = match key {
            "timeout" => (1..=24).map(|i| (i * 5).to_string()).collect(),
            "retries" => (0..=9).map(|i| i.to_string()).collect(),
            _ => ["debug", "info", "warning", "error"].map(str::to_owned).to_vec(),
        };
        let cur = current(key);
        all.into_iter().filter(|v| *v != cur).map(|v| (key, v)).collect()
    };
    let keys = ["timeout", "retries", "log_level"];
    let single: Vec<(&'static str, String)> = keys.iter().flat_map(|&k| values(k)).collect();
    let mut movable: Vec<String> =
        ["notes/todo.txt", "README.md", "build/keep.txt"].iter().map(|s| (*s).to_owned()).collect();
    movable.extend(files.keys().filter(|k| k.starts_with("tests/")).cloned());
    let moves: Vec<VTask> = movable
        .iter()
        .flat_map(|src| {
            MOVE_DIRS
                .iter()
                .filter(move |d| !src.starts_with(&format!("{d}/")))
                .map(move |&dir| VTask::Move { src: src.clone(), dir })
        })
        .collect();
    let mut pairs = Vec::new();
    for (a, ka) in keys.iter().enumerate() {
        for kb in &keys[a + 1..] {
            for va in values(ka) {
                for vb in values(kb) {
                    pairs.push(VTask::Config(vec![va.clone(), vb]));
                }
            }
        }
    }
    let modules: Vec<String> = files
        .keys()
        .filter_map(|k| k.strip_prefix("src/")?.strip_suffix(".py"))
        .map(str::to_owned)
        .collect();
    let mut counts = vec![
        VTask::Count(CountQ::Todo(None)),
        VTask::Count(CountQ::Todo(Some("src"))),
        VTask::Count(CountQ::Files("build")),
        VTask::Count(CountQ::Files("src")),
        VTask::Count(CountQ::Files("tests")),
    ];
    counts.extend(modules.iter().map(|m| VTask::Count(CountQ::Defs(format!("src/{m}.py")))));
    counts.extend(
        files
            .keys()
            .filter(|k| !k.starts_with("build/"))
            .map(|k| VTask::Count(CountQ::Lines(k.clone()))),
    );
    let funcs: Vec<String> = modules
        .iter()
        .flat_map(|m| {
            text(&format!("src/{m}.py"))
                .lines()
                .filter_map(|l| l.strip_prefix("def ")?.split_once('(').map(|(f, _)| f.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    let renames: Vec<VTask> = funcs
        .iter()
        .flat_map(|f| {
            SUFFIXES.iter().map(move |s| VTask::Rename { func: f.clone(), new: format!("{f}{s}") })
        })
        .collect();
    let has_ext = |ext: &str| {
        files.keys().any(|k| k.starts_with("build/") && k.ends_with(&format!(".{ext}")))
    };
    let ext_sets: Vec<Vec<&'static str>> = [vec!["log"], vec!["tmp"], vec!["log", "tmp"]]
        .into_iter()
        .filter(|e| e.iter().all(|x| has_ext(x)))
        .collect();
    let mut also: Vec<Also> = single.iter().map(|(k, v)| Also::Set(k, v.clone())).collect();
    for m in &moves {
        if let VTask::Move { src, dir } = m
            && !src.starts_with("build/")
        {
            also.push(Also::Move(src.clone(), dir));
        }
    }
    let cleanups: Vec<VTask> = ext_sets
        .iter()
        .flat_map(|exts| {
            also.iter().map(move |a| VTask::Cleanup { exts: exts.clone(), also: a.clone() })
        })
        .collect();
    let relocations: Vec<VTask> = modules
        .iter()
        .flat_map(|m| {
            PACKAGES.iter().map(move |&package| VTask::Relocate { module: m.clone(), package })
        })
        .collect();
    let configs: Vec<VTask> = single.into_iter().map(|kv| VTask::Config(vec![kv])).collect();
    [
        interleave(vec![moves, configs], r),
        interleave(vec![pairs, counts], r),
        interleave(vec![renames], r),
        interleave(vec![cleanups], r),
        interleave(vec![relocations], r),
    ]
}

impl Workspace {
    fn generate(&self, task_seed: u64) -> Result<TaskSpec> {
        let mut r = rng(&[0xF5F5, self.base.instance_seed, task_seed]);
        let (difficulty, j) = difficulty_slot(task_seed);
        let list = &self.cands[difficulty as usize - 1];
        let Some(task) = list.get(j % list.len().max(1)) else {
            return Err(self.base.gen_error(format!("no task of difficulty {difficulty}")));
        };
        let fs = &self.files;
        let text = |p: &str| fs.get(p).and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut hidden = json!({});
        let mut turns = Vec::new();
        let shape = r.random_range(0..3usize);
        let config_line = |key: &str| {
            text("config/app.yaml")
                .lines()
                .find(|l| l.starts_with(&format!("{key}:")))
                .unwrap_or_default()
                .to_owned()
        };
        let config_edit = |key: &str, value: &str| {
            call(
                "edit_file",
                json!({"path": "config/app.yaml", "old": config_line(key), "new": format!("{key}: {value}")}),
            )
        };
        let (kind, user) = match task {
            VTask::Move { src, dir } => {
                let name = src.rsplit('/').next().unwrap_or(src);
                let dst = format!("{dir}/{name}");
                turns.push(turn(
                    "Move the file.",
                    vec![call("move_file", json!({"source": src, "destination": dst}))],
                ));
                let user = match shape {
                    0 => format!("Move {src} to {dst}."),
                    1 => format!(
                        "Please relocate {src} into the {dir}/ directory (keep the file name {name})."
                    ),
                    _ => format!("{src} belongs in {dir}/: move it there as {dst}, nothing else."),
                };
                ("move", user)
            }
            VTask::Config(kvs) => {
                let lines: Vec<String> =
                    kvs.iter().map(|(k, _)| format!("`{}`", config_line(k))).collect();
                turns.push(turn(
                    "Read the config to see the current lines.",
                    vec![call("read_file", json!({"path": "config/app.yaml"}))],
                ));
                turns.push(turn(
                    format!("Replace {}.", lines.join(" and ")),
                    kvs.iter().map(|(k, v)| config_edit(k, v)).collect(),
                ));
                let sets: Vec<String> = kvs.iter().map(|(k, v)| format!("{k} to {v}")).collect();
                let sets = sets.join(" and ");
                let user = match shape {
                    0 => format!("In config/app.yaml set {sets}; leave everything else unchanged."),
                    1 => format!(
                        "Please change the app config (config/app.yaml): {sets}. Don't touch any other setting."
                    ),
                    _ => format!(
                        "We need new settings in config/app.yaml: {sets}. Everything else stays as it is."
                    ),
                };
                ("config", user)
            }
            VTask::Count(q) => {
                let (n, look, question) = match q {
                    CountQ::Todo(dir) => {
                        let n: usize = fs
                            .iter()
                            .filter(|(k, _)| under(k, *dir))
                            .map(|(_, v)| v.as_str().unwrap_or_default().matches("TODO").count())
                            .sum();
                        let scope = dir
                            .map_or("in the whole workspace".to_owned(), |d| format!("under {d}/"));
                        (
                            n,
                            call("grep", json!({"pattern": "TODO", "under": dir})),
                            format!("How many TODO markers are there {scope}?"),
                        )
                    }
                    CountQ::Defs(path) => (
                        text(path).lines().filter(|l| l.starts_with("def ")).count(),
                        call("read_file", json!({"path": path})),
                        format!("How many functions are defined in {path}?"),
                    ),
                    CountQ::Lines(path) => (
                        text(path).lines().count(),
                        call("read_file", json!({"path": path})),
                        format!("How many lines does {path} have?"),
                    ),
                    CountQ::Files(dir) => (
                        fs.keys()
                            .filter(|k| {
                                k.strip_prefix(&format!("{dir}/")).is_some_and(|x| !x.contains('/'))
                            })
                            .count(),
                        call("list_dir", json!({"path": dir})),
                        format!("How many files are there directly in {dir}/?"),
                    ),
                };
                turns.push(turn("Look it up.", vec![look]));
                turns.push(turn(
                    format!("The count is {n}."),
                    vec![call("submit_answer", json!({"answer": n.to_string()}))],
                ));
                hidden["answer"] = answer::int(n as i64);
                let user = match shape {
                    0 => format!("{question} Submit the number."),
                    1 => format!(
                        "Quick question about the workspace. {question} Submit just the count."
                    ),
                    _ => format!("{question} Answer with submit_answer."),
                };
                ("count", user)
            }
            VTask::Rename { func, new } => {
                let users: Vec<&String> = fs
                    .iter()
                    .filter(|(_, v)| v.as_str().is_some_and(|c| c.contains(func.as_str())))
                    .map(|(k, _)| k)
                    .collect();
                turns.push(turn(
                    format!("Grep for {func} to find the definition and every use."),
                    vec![call("grep", json!({"pattern": func, "under": null}))],
                ));
                turns.push(turn(
                    "Edit every file that mentions it, in parallel.",
                    users
                        .iter()
                        .map(|p| call("edit_file", json!({"path": p, "old": func, "new": new})))
                        .collect(),
                ));
                let user = match shape {
                    0 => format!(
                        "Rename the function {func} to {new} everywhere in the workspace (definition, imports, calls, tests)."
                    ),
                    1 => format!(
                        "Please rename {func} to {new}: the definition and every import, call and test that uses it."
                    ),
                    _ => format!(
                        "{func} should be called {new} from now on. Update the whole workspace."
                    ),
                };
                ("rename_fn", user)
            }
            VTask::Cleanup { exts, also } => {
                let victims: Vec<&String> = fs
                    .keys()
                    .filter(|k| {
                        k.starts_with("build/")
                            && exts.iter().any(|e| k.ends_with(&format!(".{e}")))
                    })
                    .collect();
                let mut reads: Vec<_> = if self.base.has("find_files") {
                    exts.iter()
                        .map(|e| {
                            call(
                                "find_files",
                                json!({"pattern": format!("*.{e}"), "under": "build"}),
                            )
                        })
                        .collect()
                } else {
                    vec![call("list_dir", json!({"path": "build"}))]
                };
                let mut writes: Vec<_> =
                    victims.iter().map(|v| call("delete_file", json!({"path": v}))).collect();
                let chore = match also {
                    Also::Set(key, value) => {
                        reads.push(call("read_file", json!({"path": "config/app.yaml"})));
                        writes.push(config_edit(key, value));
                        format!("set {key} to {value} in config/app.yaml")
                    }
                    Also::Move(src, dir) => {
                        let name = src.rsplit('/').next().unwrap_or(src);
                        let dst = format!("{dir}/{name}");
                        writes.push(call("move_file", json!({"source": src, "destination": dst})));
                        format!("move {src} to {dst}")
                    }
                };
                turns.push(turn("Look up what to change, in parallel.", reads));
                turns.push(turn("Make every change in parallel.", writes));
                let what = exts.iter().map(|e| format!(".{e}")).collect::<Vec<_>>().join(" and ");
                let user = match shape {
                    0 => format!(
                        "Two chores: delete every {what} file under build/ (keep everything else there), and {chore}."
                    ),
                    1 => {
                        format!("Clean up build/ by removing the {what} files only, then {chore}.")
                    }
                    _ => format!(
                        "Please {chore} and delete all {what} files under build/; nothing else may change."
                    ),
                };
                ("cleanup", user)
            }
            VTask::Relocate { module: m, package } => {
                let dst = format!("src/{package}/{m}.py");
                let old_imp = format!("from src.{m} import");
                let new_imp = format!("from src.{package}.{m} import");
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
                if !users.is_empty() {
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
                }
                let user = match shape {
                    0 => format!(
                        "Move the module src/{m}.py to {dst} and update every `{old_imp}` to `{new_imp}`."
                    ),
                    1 => format!(
                        "The {m} module moves into the {package} package: put src/{m}.py at {dst} and fix every import of it (`{new_imp}`)."
                    ),
                    _ => format!(
                        "Please relocate src/{m}.py to {dst}. Any `{old_imp}` line must become `{new_imp}`."
                    ),
                };
                ("relocate", user)
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
