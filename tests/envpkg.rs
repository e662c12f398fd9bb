//! End-to-end tests of envpkg packages served by `generate` / `rollout --envs` (spec envpkg §1:
//! "serves the package's tasks like a native family"): rows and their schema v2 columns, one
//! row per user turn, manifests, pins, refusals, determinism, kill -9 + resume, and a package
//! that misbehaves only on some tasks.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::util::{bin, fixtures, ok, rows_by_id, run};

/// The good fixtures (bookshop, thermostat) copied into `dir/pkgs` (the runtime caches its
/// admission next to them, so never in the shared fixtures).
fn good_packages(dir: &Path) -> PathBuf {
    let pkgs = dir.join("pkgs");
    for name in ["bookshop", "thermostat"] {
        agentgen_testdata::copy_dir(&fixtures().join("envpkg").join(name), &pkgs.join(name));
    }
    pkgs
}

fn generate(out: &Path, args: &[&str]) -> Output {
    let mut all = vec!["generate", "--quiet", "--out", out.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    run(&all, b"")
}

fn manifest(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("manifest.json")).expect("manifest"))
        .expect("manifest json")
}

/// The package hash of spec §11, computed independently of the runtime.
fn package_hash(dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with('.') || n == "__pycache__" || n.ends_with(".pyc") {
                continue;
            }
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).expect("prefix").to_string_lossy().into_owned());
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files);
    files.sort();
    let mut manifest = String::new();
    for f in files {
        let h = Sha256::digest(std::fs::read(dir.join(&f)).expect("read"));
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        manifest.push_str(&format!("{hex}  {f}\n"));
    }
    Sha256::digest(manifest.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn generate_serves_packages_with_pinned_rows_one_per_user_turn() {
    let dir = tempfile::tempdir().expect("tmp");
    let pkgs = good_packages(dir.path());
    let out = dir.path().join("ds");
    ok(&generate(&out, &["--envs", pkgs.to_str().expect("utf-8"), "--tasks", "60"]));
    let rows = rows_by_id(&out);
    let hashes = [
        ("bookshop@1", package_hash(&pkgs.join("bookshop"))),
        ("thermostat@1", package_hash(&pkgs.join("thermostat"))),
    ];
    let mut multi = 0;
    for r in rows.values() {
        let label = r.env_package.as_deref().expect("package rows carry env_package");
        let (_, want) = hashes.iter().find(|(l, _)| *l == label).expect("a served package");
        assert_eq!(r.env_package_sha256.as_deref(), Some(want.as_str()), "{}", r.sample_id);
        assert!(r.env_python.as_deref().is_some_and(|v| v.starts_with("3.")));
        assert!(r.task_id.starts_with(label), "{} vs {label}", r.task_id);
        // Rows of one episode: all present (accepted or not), numbered, same episode verdict.
        let siblings: Vec<_> = rows.values().filter(|o| o.episode_id == r.episode_id).collect();
        assert_eq!(siblings.len() as i32, r.turns_total, "episode {}", r.episode_id);
        assert!(siblings.iter().all(|s| s.passed == r.passed && s.verdict == r.verdict));
        if r.turns_total > 1 {
            multi += 1;
            assert_eq!(r.sample_id, format!("{}-t{}", r.episode_id, r.turn_index));
            // Loss mask 1 only after this turn's user message: the prompt up to its assistant
            // marker is all 0, and the turn's own tokens follow.
            let users = r.text.matches("<｜User｜>").count();
            assert_eq!(users as i32, r.turn_index + 1, "{}", r.sample_id);
            let last_user = r.text.rfind("<｜User｜>").expect("a user turn");
            let open = last_user
                + r.text[last_user..].find("<｜Assistant｜>").expect("assistant marker")
                + "<｜Assistant｜>".len();
            let tok = agentgen_codec::Tokenizer::shared().expect("tokenizer");
            let p = tok.encode(&r.text[..open]).expect("tokenize").len();
            assert_eq!(&r.token_ids[..p], &tok.encode(&r.text[..open]).expect("ids")[..]);
            assert!(r.loss_mask[..p].iter().all(|&m| m == 0), "{}", r.sample_id);
            assert!(r.loss_mask[p..].contains(&1), "{}", r.sample_id);
        } else {
            assert_eq!(r.sample_id, r.episode_id);
        }
    }
    assert!(multi > 0, "thermostat's two-turn tasks give two rows");
    let accepted = rows.values().filter(|r| r.verdict == agentgen_datasets::Verdict::Accepted);
    assert!(accepted.count() >= 20, "the reference passes package tasks");
    // The manifest and card list each package with its hash; validate passes the rows.
    let m = manifest(&out);
    let listed: Vec<(String, String)> = m["packages"]
        .as_array()
        .expect("packages in the manifest")
        .iter()
        .map(|p| {
            (p["label"].as_str().unwrap_or("").into(), p["sha256"].as_str().unwrap_or("").into())
        })
        .collect();
    for (label, h) in &hashes {
        assert!(listed.contains(&((*label).to_owned(), h.clone())), "{listed:?}");
    }
    let card = std::fs::read_to_string(out.join("README.md")).expect("card");
    assert!(card.contains(&hashes[0].1), "the card lists the package hash");
    ok(&run(&["validate", out.to_str().expect("utf-8")], b""));
    // The runtime's admission cache lives next to the packages, never inside one.
    assert!(pkgs.join(".agentgen").join(&hashes[0].1).is_dir());
    assert!(!pkgs.join("bookshop").join(".agentgen").exists());
}

#[test]
fn packages_and_families_mix_and_rows_do_not_depend_on_concurrency() {
    let dir = tempfile::tempdir().expect("tmp");
    let pkgs = good_packages(dir.path());
    let envs = pkgs.join("thermostat");
    let envs = envs.to_str().expect("utf-8");
    let (a, b) = (dir.path().join("c1"), dir.path().join("c8"));
    let args = ["--envs", envs, "--families", "trip", "--tasks", "40", "--seed", "3"];
    ok(&generate(&a, &[&args[..], &["--concurrency", "1"]].concat()));
    ok(&generate(&b, &[&args[..], &["--concurrency", "8"]].concat()));
    let (ra, rb) = (rows_by_id(&a), rows_by_id(&b));
    assert_eq!(ra, rb, "same rows at concurrency 1 and 8");
    let families: std::collections::BTreeSet<&str> =
        ra.values().map(|r| r.family.as_str()).collect();
    assert_eq!(families.into_iter().collect::<Vec<_>>(), ["thermostat", "trip"]);
    assert!(ra.values().filter(|r| r.family == "trip").all(|r| r.env_package.is_none()));
}

#[test]
fn rollout_task_file_takes_package_ids() {
    let dir = tempfile::tempdir().expect("tmp");
    let pkgs = good_packages(dir.path());
    let list = dir.path().join("ids.txt");
    std::fs::write(&list, "bookshop@1/0/0\nthermostat@1/17/0\nbookshop@1/0/2\n").expect("write");
    let out = dir.path().join("r");
    let o = run(
        &[
            "rollout",
            "--quiet",
            "--policy",
            "reference",
            "--envs",
            pkgs.to_str().expect("utf-8"),
            "--task-file",
            list.to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
        ],
        b"",
    );
    ok(&o);
    let rows = rows_by_id(&out);
    let mut ids: Vec<&str> = rows.values().map(|r| r.task_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids, ["bookshop@1/0/0", "bookshop@1/0/2", "thermostat@1/17/0"]);
    // An id the package does not serve is refused before any work, naming the line.
    std::fs::write(&list, "bookshop@1/0/999\n").expect("write");
    let o = run(
        &[
            "rollout",
            "--quiet",
            "--policy",
            "reference",
            "--envs",
            pkgs.to_str().expect("utf-8"),
            "--task-file",
            list.to_str().expect("utf-8"),
            "--out",
            dir.path().join("bad").to_str().expect("utf-8"),
        ],
        b"",
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("bookshop@1/0/999"), "{err}");
}

#[test]
fn bad_package_sets_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let pkgs = good_packages(dir.path());
    let out = dir.path().join("ds");
    let expect_refusal = |args: &[&str], needle: &str| {
        let o = generate(&out, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: want {needle:?} in {err}");
        assert!(!out.join("data").exists(), "nothing written for {args:?}");
    };
    // A rejected package (its admission code named).
    let broken = dir.path().join("broken");
    agentgen_testdata::copy_dir(
        &fixtures().join("envpkg/broken/empty_probe_passes"),
        &broken.join("empty"),
    );
    expect_refusal(&["--envs", broken.join("empty").to_str().expect("utf-8")], "probe.empty");
    // A pin that does not match.
    let pinned = format!("{}@sha256:{}", pkgs.join("bookshop").display(), "0".repeat(64));
    expect_refusal(&["--envs", &pinned], "does not match the pinned");
    // A package that takes a built-in family's name.
    let shadow = dir.path().join("shadow").join("trip");
    agentgen_testdata::copy_dir(&pkgs.join("thermostat"), &shadow);
    let toml = std::fs::read_to_string(shadow.join("env.toml")).expect("toml");
    std::fs::write(
        shadow.join("env.toml"),
        toml.replace("name = \"thermostat\"", "name = \"trip\""),
    )
    .expect("write");
    expect_refusal(&["--envs", shadow.to_str().expect("utf-8")], "trip");
    // A pin that matches is served.
    let good = format!(
        "{}@sha256:{}",
        pkgs.join("bookshop").display(),
        package_hash(&pkgs.join("bookshop"))
    );
    ok(&generate(&out, &["--envs", &good, "--tasks", "3"]));
}

/// A thermostat whose `list_rooms` is slow (so a run can be killed mid-way) and spins forever
/// for generated seeds above 16 that are multiples of 5 (past the 16 seeds admission checks:
/// those tasks fail their pre-use replay and become rejected rows, the run goes on).
fn slow_thermostat(dir: &Path) -> PathBuf {
    let p = dir.join("slowpkgs").join("slowstat");
    agentgen_testdata::copy_dir(&fixtures().join("envpkg/thermostat"), &p);
    let toml = std::fs::read_to_string(p.join("env.toml")).expect("toml");
    let toml = toml.replace("name = \"thermostat\"", "name = \"slowstat\"");
    std::fs::write(p.join("env.toml"), toml).expect("write");
    let py = std::fs::read_to_string(p.join("env.py")).expect("env.py");
    let py = py
        .replace(
            "from agentgen_env import ToolError, rng",
            "import time\n\nfrom agentgen_env import ToolError, rng, seed",
        )
        .replace(
            "    def list_rooms(self):\n",
            "    def list_rooms(self):\n        time.sleep(0.03)\n        if seed() > 16 and seed() % 5 == 0:\n            while True:\n                pass\n",
        );
    std::fs::write(p.join("env.py"), py).expect("write");
    p
}

fn spawn_generate(out: &Path, args: &[&str]) -> Child {
    let mut all = vec!["generate", "--quiet", "--out", out.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    Command::new(bin())
        .args(&all)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

#[test]
fn kill_9_during_a_package_run_and_resume_give_the_uninterrupted_rows() {
    let dir = tempfile::tempdir().expect("tmp");
    let pkg = slow_thermostat(dir.path());
    let envs = pkg.to_str().expect("utf-8");
    let (killed, whole) = (dir.path().join("killed"), dir.path().join("whole"));
    let args = ["--envs", envs, "--tasks", "60", "--concurrency", "2", "--flush-secs", "1"];
    // Admission first (cached by hash), so the timed part below is the run itself.
    ok(&generate(&whole, &args));
    let mut child = spawn_generate(&killed, &args);
    let t0 = Instant::now();
    while agentgen_datasets::list_parts(&killed).map_or(true, |p| p.is_empty()) {
        assert!(t0.elapsed() < Duration::from_secs(120), "no part was closed");
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Our own child only.
    let _ = child.kill();
    let _ = child.wait();
    ok(&generate(&killed, &[&args[..], &["--resume"]].concat()));
    let (a, b) = (rows_by_id(&killed), rows_by_id(&whole));
    assert_eq!(a, b, "resume gives exactly the uninterrupted rows");
    // The seeds whose reference spins (kinds 1-3 call list_rooms) were rejected rows with the
    // failure named; the rest ran.
    let spins = |s: u64| s > 16 && s.is_multiple_of(5) && !s.is_multiple_of(4);
    let failed: Vec<_> = a.values().filter(|r| spins(r.instance_seed)).collect();
    assert!(!failed.is_empty(), "the draw reached seeds whose reference spins");
    for r in failed {
        let (code, detail) = match &r.verdict {
            agentgen_datasets::Verdict::Rejected { code, detail } => (code, detail),
            v => panic!("{} should be rejected, is {v:?}", r.task_id),
        };
        assert_eq!(code, "env.task_error", "{detail}");
        assert!(detail.contains("env.timeout"), "{detail}");
    }
    assert!(a.values().any(|r| !spins(r.instance_seed) && r.passed));
}

/// The packages shipped in `environments/packages/` are admitted (every task) and serve a
/// dataset that `validate` passes (issue "done when"; a copy, since admission caches next to
/// the packages).
#[test]
fn shipped_packages_are_admitted_and_give_valid_datasets() {
    let dir = tempfile::tempdir().expect("tmp");
    let pkgs = dir.path().join("packages");
    agentgen_testdata::copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("environments/packages"),
        &pkgs,
    );
    let names: Vec<String> = std::fs::read_dir(&pkgs)
        .expect("packages")
        .flatten()
        .filter(|e| e.path().join("env.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.len() >= 4, "{names:?}");
    let check = run(&["envs", "check", pkgs.to_str().expect("utf-8")], b"");
    ok(&check);
    for line in String::from_utf8_lossy(&check.stdout).lines() {
        let r: Value = serde_json::from_str(line).expect("report line");
        assert_eq!(r["admitted"], true, "{}", r["package"]["name"]);
        assert_eq!(r["summary"]["rejected"], 0, "{}", r["package"]["name"]);
        let tasks = r["summary"]["tasks"].as_u64().unwrap_or(0);
        assert!(tasks >= 60, "{}: {tasks} tasks", r["package"]["name"]);
    }
    let out = dir.path().join("ds");
    ok(&generate(&out, &["--envs", pkgs.to_str().expect("utf-8"), "--tasks", "200"]));
    let rows = rows_by_id(&out);
    let served: std::collections::BTreeSet<&str> =
        rows.values().filter_map(|r| r.env_package.as_deref()).collect();
    assert_eq!(served.len(), names.len(), "every package served: {served:?}");
    assert!(rows.values().any(|r| r.turns_total > 1), "multi-turn tasks give several rows");
    ok(&run(&["validate", out.to_str().expect("utf-8")], b""));
}

/// `--resume` refuses a package whose content changed since the folder was started (the
/// manifest records every package hash), naming what differs.
#[test]
fn resume_refuses_a_package_that_changed() {
    let dir = tempfile::tempdir().expect("tmp");
    let pkgs = good_packages(dir.path());
    let pkg = pkgs.join("bookshop");
    let out = dir.path().join("ds");
    let args = ["--envs", pkg.to_str().expect("utf-8"), "--tasks", "4"];
    ok(&generate(&out, &args));
    let readme = pkg.join("README.md");
    let mut text = std::fs::read_to_string(&readme).unwrap_or_default();
    text.push_str("\nedited\n");
    std::fs::write(&readme, text).expect("edit");
    let o = generate(&out, &[&args[..], &["--resume"]].concat());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("environment_versions"), "{err}");
    assert!(err.contains("sha256:"), "{err}");
}
