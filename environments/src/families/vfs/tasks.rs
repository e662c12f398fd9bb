//! The vfs family's tasks: the candidate tasks of each difficulty ([`VTask`], [`candidates`]),
//! one per task slot, and each task's prompt, reference solution and verifier data.

use super::*;

/// One task of the workspace, fully specified (distinct values are distinct tasks).
#[derive(Clone, Debug)]
pub(super) enum VTask {
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
pub(super) enum Also {
    /// Set a config key.
    Set(&'static str, String),
    /// Move a file into a directory.
    Move(String, &'static str),
}

/// A counting question.
#[derive(Clone, Debug)]
pub(super) enum CountQ {
    /// TODO markers under a directory (`None`: the whole workspace).
    Todo(Option<&'static str>),
    /// Functions defined in a file.
    Defs(String),
    /// Lines of a file.
    Lines(String),
    /// Files directly in a directory.
    Files(&'static str),
}

pub(super) const MOVE_DIRS: &[&str] = &["docs", "planning", "notes/archive", "archive", "old"];

pub(super) const PACKAGES: &[&str] =
    &["legacy", "core", "lib", "internal", "compat", "shared", "common", "vendor", "old", "pkg"];

pub(super) const SUFFIXES: &[&str] =
    &["_v2", "_impl", "_legacy", "_checked", "_safe", "_old", "_fast", "_sync"];

/// The candidate tasks of each difficulty, in slot order (see [`interleave`]).
pub(super) fn candidates(files: &Map<String, Value>, r: &mut impl Rng) -> [Vec<VTask>; 5] {
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
    pub(super) fn generate(&self, task_seed: u64) -> Result<TaskSpec> {
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
