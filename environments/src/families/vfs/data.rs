//! The vfs family's data: the name pools and building an instance's workspace (modules with
//! functions, callers, tests, config, notes and build artefacts) from its seed.

use super::*;

pub(super) const MODULES: &[&str] = &[
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

pub(super) const VERBS: &[&str] =
    &["load", "save", "compute", "validate", "render", "fetch", "parse", "merge", "flush", "send"];

pub(super) const NOUNS: &[&str] = &[
    "config", "invoice", "user", "record", "batch", "summary", "token", "entry", "report", "queue",
];

impl Workspace {
    pub(super) fn build(seed: u64) -> Result<Self> {
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
