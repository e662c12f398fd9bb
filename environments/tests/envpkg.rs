//! envpkg admission and sandbox tests over the shared fixtures (spec envpkg §12): the good
//! packages are admitted, every broken one is rejected with the code its README names, the host
//! is untouched afterwards, and each §10 duty the worker enforces is exercised by an attack.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use agentgen_environments::envpkg::{
    CheckOptions, Episode, PythonRuntime, ValidTask, Worker, WorkerPool, check_package,
    load_package,
};
use serde_json::{Value, json};

/// Tests here spawn workers and inspect the host afterwards: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn fixtures() -> PathBuf {
    agentgen_testdata::path("envpkg")
}

const RESERVED: &[&str] =
    &["trip", "retail", "calendar", "banking", "vfs", "sql", "search", "code", "logistics"];

/// The runtime, or None after saying loudly why the Python-dependent part cannot run here.
fn runtime() -> Option<PythonRuntime> {
    match PythonRuntime::detect("python3") {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("!!! envpkg tests: no usable python3 ({e}); checking the refusal path only");
            assert!(e.contains("python3") || e.contains("Python"), "{e}");
            None
        }
    }
}

fn codes(report: &Value) -> HashSet<String> {
    let mut c: HashSet<String> = report["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["code"].as_str().map(str::to_owned))
        .collect();
    if let Some(m) = report["summary"]["by_reason"].as_object() {
        c.extend(m.keys().cloned());
    }
    c
}

fn worker_dirs() -> HashSet<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().is_some_and(|n| {
                        let n = n.to_string_lossy();
                        n.starts_with("agentgen-envpkg-") || n.starts_with("agentgen-sandbox-")
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Live child processes of this test process.
fn children() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().map(str::to_owned));
            }
        }
    }
    out
}

fn tree_listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn good_fixtures_are_admitted() {
    let _g = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(rt) = runtime() else { return };
    let opts = CheckOptions { partial: false, seeds_k: 8 };
    let out = check_package(&fixtures().join("bookshop"), &rt, RESERVED, &opts);
    assert!(out.admitted, "{}", serde_json::to_string_pretty(&out.report).unwrap_or_default());
    let r = &out.report;
    assert_eq!(r["format"], "agentgen-envpkg-check/1");
    assert_eq!(
        r["package"]["sha256"],
        "495d9da0b21376c86ed8636b84ea2d0d2cbb459470c900d746664cd2cc0d0f60"
    );
    assert_eq!(r["summary"]["tasks"], 5);
    assert_eq!(r["admitted_tasks"][2], "bookshop@1/0/2");
    assert_eq!(r["tasks"][2]["id"], "late-refund-refusal");
    assert!(r["runtime"]["isolation"]["network"].is_string());
    // The two-turn task reports both turns; every task ran its probes.
    for t in r["tasks"].as_array().into_iter().flatten() {
        assert_eq!(t["deterministic"], true, "{t}");
        let names: Vec<&str> = t["probes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(names.starts_with(&["empty", "answer_only", "minus_last_write"]), "{names:?}");
    }
    let out = check_package(&fixtures().join("thermostat"), &rt, RESERVED, &opts);
    assert!(out.admitted, "{}", serde_json::to_string_pretty(&out.report).unwrap_or_default());
    assert_eq!(out.report["summary"]["tasks"], 8);
    assert_eq!(out.report["package"]["generated_seeds_checked"], json!([1, 8]));
    assert_eq!(out.report["admitted_tasks"][0], "thermostat@1/1/0");
}

#[test]
fn broken_fixtures_are_rejected_for_their_reason_and_the_host_is_untouched() {
    let _g = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(rt) = runtime() else { return };
    let dirs_before = worker_dirs();
    let broken = fixtures().join("broken");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&broken)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    assert_eq!(names.len(), 8, "{names:?}");
    for pkg in names {
        let before = tree_listing(&pkg);
        let readme = std::fs::read_to_string(pkg.join("README.md")).unwrap_or_default();
        let want = readme.split('`').nth(1).unwrap_or("?").to_owned();
        let out = check_package(&pkg, &rt, RESERVED, &CheckOptions::default());
        assert!(!out.admitted, "{} admitted", pkg.display());
        let got = codes(&out.report);
        assert!(got.contains(&want), "{}: want {want}, got {got:?}\n{}", pkg.display(), out.report);
        assert_eq!(tree_listing(&pkg), before, "{} changed on disk", pkg.display());
    }
    assert!(children().is_empty(), "stray worker processes: {:?}", children());
    let leaked: Vec<_> = worker_dirs().difference(&dirs_before).cloned().collect();
    assert!(leaked.is_empty(), "stray scratch dirs: {leaked:?}");
}

/// A package with one tool, `attack(kind)`, that tries one forbidden thing per kind.
fn attack_package() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let p = dir.path();
    let w = |f: &str, s: &str| std::fs::write(p.join(f), s).unwrap_or_else(|e| panic!("{f}: {e}"));
    w(
        "env.toml",
        "format = \"agentgen-envpkg/1\"\nname = \"attack\"\nversion = 1\ntitle = \"t\"\ndescription = \"d\"\ndomain = \"test\"\nsystem_prompt = \"s\"\n[limits]\ncall_timeout_ms = 3000\nmemory_mb = 256\n",
    );
    w(
        "tools.json",
        r#"[{"type": "function", "function": {"name": "attack", "description": "try something",
        "parameters": {"type": "object", "properties": {"kind": {"type": "string"}}, "required": ["kind"]}}}]"#,
    );
    w(
        "tasks.jsonl",
        "{\"id\": \"a\", \"difficulty\": 1, \"seed\": 0, \"turns\": [{\"user\": \"go\", \"reference\": []}]}\n",
    );
    std::fs::create_dir(p.join("data")).unwrap_or_else(|e| panic!("data: {e}"));
    w("data/x.txt", "hello");
    w(
        "env.py",
        r#"
import importlib, os
from agentgen_env import data_path, scratch_dir

EPISODES = [0]


class Env:
    def __init__(self, seed, params):
        EPISODES[0] += 1
    def state(self):
        return {}
    def attack(self, kind):
        if kind == "thread":
            t = importlib.import_module("threading").Thread(target=lambda: None)
            try:
                t.start()
            except Exception:
                pass
            return "started"
        if kind == "subprocess":
            try:
                importlib.import_module("subprocess").run(["true"])
            except Exception:
                pass
            return "ran"
        if kind == "fork":
            try:
                os.fork()
            except Exception:
                pass
            return "forked"
        if kind == "kill":
            try:
                os.kill(os.getpid(), 0)
            except Exception:
                pass
            return "signalled"
        if kind == "ctypes":
            try:
                importlib.import_module("ctypes")
            except Exception:
                pass
            return "loaded"
        if kind == "data_write":
            try:
                open(data_path("x.txt"), "w").write("pwned")
            except Exception:
                pass
            return "written"
        if kind == "sqlite_file":
            try:
                importlib.import_module("sqlite3").connect(os.path.join(scratch_dir(), "db.sqlite"))
            except Exception:
                pass
            return "opened"
        if kind == "dns":
            try:
                importlib.import_module("socket").gethostbyname("localhost")
            except Exception:
                pass
            return "resolved"
        if kind == "scratch_write":
            with open(os.path.join(scratch_dir(), "f.txt"), "w") as fh:
                fh.write("ok")
            return sorted(os.listdir(scratch_dir())) + [os.getcwd() == scratch_dir()]
        if kind == "data_read":
            return open(data_path("x.txt")).read()
        if kind == "env":
            return {"hashseed": os.environ.get("PYTHONHASHSEED"), "tz": os.environ.get("TZ"),
                    "keys": sorted(os.environ), "hash": hash("agentgen")}
        if kind == "episodes":
            return EPISODES[0]
        if kind == "exit":
            raise SystemExit(3)
        if kind == "memory":
            return len(bytearray(1 << 30))
        if kind == "print":
            print("noise on stdout")
            return "printed"
        if kind == "bad_result":
            return {1, 2}
        raise ValueError(kind)
"#,
    );
    dir
}

fn one_task() -> ValidTask {
    let v =
        json!({"id": "a", "difficulty": 1, "seed": 0, "turns": [{"user": "go", "reference": []}]});
    agentgen_environments::envpkg::task::parse_task(
        "attack@1/0/0".into(),
        &v,
        &["attack"],
        None,
        None,
        &mut Vec::new(),
    )
    .unwrap_or_else(|p| panic!("{p}"))
}

/// Run `attack(kind)` in a fresh episode, restarting the worker when the last one was discarded.
fn attack_once(
    rt: &PythonRuntime,
    pkg: &agentgen_environments::envpkg::ValidPackage,
    task: &ValidTask,
    slot: &mut Option<Worker>,
    kind: &str,
) -> Result<String, String> {
    if !slot.as_ref().is_some_and(Worker::is_alive) {
        let w = Worker::start(
            rt,
            &pkg.path,
            256,
            std::time::Duration::from_secs(10),
            None,
            &["attack"],
        );
        *slot = Some(w.map_err(|f| format!("start: {f}"))?);
    }
    let Some(worker) = slot.as_mut() else { return Err("no worker".into()) };
    let mut ep = Episode::begin(pkg, task, worker).map_err(|f| f.code)?;
    let obs = ep.call(0, "attack", &json!({"kind": kind}), false).map_err(|f| f.code)?;
    ep.end().map_err(|f| f.code)?;
    Ok(obs.content)
}

#[test]
fn sandbox_duties_are_enforced_and_end_only_the_episode() {
    let _g = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(rt) = runtime() else { return };
    let dir = attack_package();
    let pkg = load_package(dir.path(), RESERVED, &rt.stdlib).unwrap_or_else(|p| panic!("{p}"));
    let task = one_task();
    let mut worker: Option<Worker> = None;
    let mut attack = |kind: &str| attack_once(&rt, &pkg, &task, &mut worker, kind);
    for kind in
        ["thread", "subprocess", "fork", "kill", "ctypes", "data_write", "sqlite_file", "dns"]
    {
        assert_eq!(attack(kind), Err("env.sandbox".to_owned()), "{kind} was not detected");
    }
    assert_eq!(attack("memory"), Err("env.crash".to_owned()));
    assert_eq!(attack("exit"), Err("env.crash".to_owned()));
    assert_eq!(attack("bad_result"), Err("env.protocol".to_owned()));
    // Allowed: the scratch dir (the cwd, empty per episode), reading data/, printing.
    assert_eq!(attack("scratch_write"), Ok(r#"["f.txt", true]"#.to_owned()));
    assert_eq!(
        attack("scratch_write"),
        Ok(r#"["f.txt", true]"#.to_owned()),
        "scratch is fresh per episode"
    );
    assert_eq!(attack("data_read"), Ok("hello".to_owned()));
    assert_eq!(
        attack("print"),
        Ok("printed".to_owned()),
        "package stdout never reaches the protocol"
    );
    let env: Value = serde_json::from_str(&attack("env").unwrap_or_default()).unwrap_or_default();
    assert_eq!(env["hashseed"], "0");
    assert_eq!(env["tz"], "UTC");
    for k in env["keys"].as_array().into_iter().flatten() {
        let k = k.as_str().unwrap_or_default();
        assert!(
            [
                "PYTHONHASHSEED",
                "TZ",
                "LC_ALL",
                "LC_CTYPE",
                "LANG",
                "PATH",
                "PYTHONIOENCODING",
                "PYTHONDONTWRITEBYTECODE",
                "TMPDIR",
                "HOME"
            ]
            .contains(&k),
            "host variable {k} leaked"
        );
    }
    // A fresh worker gives the same hash() (fixed PYTHONHASHSEED).
    let mut fresh: Option<Worker> = None;
    let again_text = attack_once(&rt, &pkg, &task, &mut fresh, "env");
    let again: Value = serde_json::from_str(&again_text.unwrap_or_default()).unwrap_or_default();
    assert_eq!(env["hash"], again["hash"]);
    assert_eq!(std::fs::read_to_string(dir.path().join("data/x.txt")).unwrap_or_default(), "hello");
}

/// Benchmark, not a test (no timing is asserted): worker start, and the round trip of a
/// trivial tool call through a warm worker. Run with
/// `cargo test --workspace --test envpkg -- --ignored --nocapture bench_`.
#[test]
#[ignore = "a benchmark: prints numbers, run with --ignored --nocapture"]
fn bench_warm_worker_round_trip() {
    let _g = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(rt) = runtime() else { return };
    let pkg = load_package(&fixtures().join("thermostat"), RESERVED, &rt.stdlib)
        .unwrap_or_else(|p| panic!("{p}"));
    let names: Vec<&str> = pkg.tools.iter().map(|t| t.name.as_str()).collect();
    let mut starts = Vec::new();
    for _ in 0..10 {
        let w =
            Worker::start(&rt, &pkg.path, 256, std::time::Duration::from_secs(10), None, &names)
                .unwrap_or_else(|f| panic!("{f}"));
        starts.push(w.start_time.as_secs_f64() * 1e3);
    }
    starts.sort_by(f64::total_cmp);
    let mut w =
        Worker::start(&rt, &pkg.path, 256, std::time::Duration::from_secs(10), None, &names)
            .unwrap_or_else(|f| panic!("{f}"));
    let t = std::time::Duration::from_secs(2);
    w.request(&json!({"op": "begin", "seed": 1, "params": {}, "clock": pkg.manifest.clock}), t)
        .unwrap_or_else(|f| panic!("{f}"));
    let req = json!({"op": "call", "name": "get_room", "args": {"room": "kitchen"}, "step": 0, "index": 0});
    let mut us = Vec::new();
    for i in 0..20_000 {
        let t0 = std::time::Instant::now();
        let r = w.request(&req, t);
        let dt = t0.elapsed().as_secs_f64() * 1e6;
        assert!(r.is_ok(), "{r:?}");
        if i >= 1000 {
            us.push(dt);
        }
        if i % 1000 == 999 {
            // Keep the harness's per-turn call log short, as verify() would.
            w.request(&json!({"op": "end"}), t).unwrap_or_else(|f| panic!("{f}"));
            w.request(
                &json!({"op": "begin", "seed": 1, "params": {}, "clock": pkg.manifest.clock}),
                t,
            )
            .unwrap_or_else(|f| panic!("{f}"));
        }
    }
    us.sort_by(f64::total_cmp);
    let q = |p: f64| us[((us.len() as f64 - 1.0) * p) as usize];
    println!(
        "worker start (spawn + harness + import, 10 runs): median {:.1} ms, max {:.1} ms",
        starts[starts.len() / 2],
        starts[starts.len() - 1]
    );
    println!(
        "warm round trip of get_room ({} calls): median {:.1} us, p99 {:.1} us, max {:.1} us",
        us.len(),
        q(0.5),
        q(0.99),
        q(1.0)
    );
}

#[test]
fn pool_reuses_workers_across_episodes_and_replaces_broken_ones() {
    let _g = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(rt) = runtime() else { return };
    let dir = attack_package();
    let pkg = load_package(dir.path(), RESERVED, &rt.stdlib).unwrap_or_else(|p| panic!("{p}"));
    let task = one_task();
    let pool = WorkerPool::new(rt.clone(), &pkg, 2);
    let episode = |kind: &str| -> Result<String, String> {
        let mut w = pool.checkout().map_err(|f| f.to_string())?;
        let out = (|| {
            let mut ep = Episode::begin(&pkg, &task, &mut w).map_err(|f| f.code)?;
            let obs = ep.call(0, "attack", &json!({"kind": kind}), false).map_err(|f| f.code)?;
            ep.end().map_err(|f| f.code)?;
            Ok(obs.content)
        })();
        pool.checkin(w);
        out
    };
    assert_eq!(episode("episodes"), Ok("1".into()));
    assert_eq!(episode("episodes"), Ok("2".into()), "the warm worker is reused, with a fresh Env");
    assert_eq!(episode("exit"), Err("env.crash".into()));
    assert_eq!(episode("episodes"), Ok("1".into()), "a crashed worker is replaced");
    assert_eq!(episode("thread"), Err("env.sandbox".into()));
    assert_eq!(episode("episodes"), Ok("1".into()), "a worker that broke the sandbox is replaced");
}
