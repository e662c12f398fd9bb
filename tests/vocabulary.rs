//! One CLI vocabulary (issue 13 item 1): the policy and run flags are one set of clap groups
//! shared by `generate`, `rollout` and `calibrate`, with their defaults in `--help`, counts
//! range-checked in one line, `--config` keys that are the flags, `--families` everywhere, and
//! `rollout --jsonl -` streaming rows as they are written.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::util::{bin, run, stderr};

#[test]
fn help_shows_the_defaults_of_the_shared_groups() {
    for (cmd, policy) in [("generate", "[default: reference]"), ("rollout", "[default: http]")] {
        let help = String::from_utf8_lossy(&run(&[cmd, "--help"], b"").stdout).into_owned();
        assert!(help.contains(policy), "{cmd} --help shows {policy}");
    }
    for cmd in ["generate", "rollout", "calibrate"] {
        let help = String::from_utf8_lossy(&run(&[cmd, "--help"], b"").stdout).into_owned();
        for want in [
            "[default: http://127.0.0.1:8000]",
            "[default: 20251201]",
            "[default: 32]",
            "[default: 64; with `--envs` and the reference policy, 2 per core",
            "[default: cpu]",
            "[default: auto with `--policy chat`, else thinking]",
            "--config <FILE>",
        ] {
            assert!(help.contains(want), "{cmd} --help shows {want}");
        }
    }
    let help = String::from_utf8_lossy(&run(&["calibrate", "--help"], b"").stdout).into_owned();
    assert!(help.contains("--policy <POLICY>") && !help.contains("[default: reference]"));
}

/// `--tasks -1` was clap's "unexpected argument '-1'"; now every count flag names its range in
/// one line, exit 2.
#[test]
fn negative_and_zero_counts_are_one_line_range_errors() {
    for (cmd, flag, value) in [
        ("generate", "--tasks", "-1"),
        ("rollout", "--tasks", "-1"),
        ("calibrate", "--tasks", "-3"),
        ("generate", "--concurrency", "0"),
        ("rollout", "--samples-per-task", "-2"),
        ("calibrate", "--samples", "0"),
        ("generate", "--max-turns", "-1"),
        ("rollout", "--max-requests-per-minute", "0"),
        ("generate", "--max-tokens-total", "0"),
        ("synth", "--max-requests-per-minute", "-4"),
    ] {
        let o = run(&[cmd, flag, value], b"");
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{cmd} {flag} {value}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(flag) && err.contains("is not in 1.."), "{cmd} {flag} {value}: {err}");
        assert!(!err.contains("unexpected argument"), "{err}");
    }
    // `model generate` samples by the same rule.
    let o = run(&["model", "generate", "--model", "/nonexistent", "--top-p", "7"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not above 0 and at most 1"), "{}", stderr(&o));
    let o = run(&["generate", "--request-timeout", "0"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a positive number of seconds"), "{}", stderr(&o));
    let o = run(&["rollout", "--max-policy-error-rate", "2"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not within 0..=1"), "{}", stderr(&o));
}

/// The policy flags are one group: the same values parse the same way, and fail with the same
/// error, in `rollout` and `calibrate` (and `generate`).
#[test]
fn policy_flags_parse_identically_in_rollout_and_calibrate() {
    let cases: [(&[&str], &str); 5] = [
        (&["--policy", "local"], "--policy local needs --model DIR"),
        (
            &["--policy", "http", "--thinking-mode", "auto"],
            "--thinking-mode auto needs --policy chat",
        ),
        (&["--policy", "http", "--extra-body", "{}"], "--extra-body needs --policy chat"),
        (&["--policy", "reference", "--device", "tpu"], "unknown device `tpu`"),
        (&["--policy", "ollama"], "invalid value 'ollama' for '--policy <POLICY>'"),
    ];
    for (flags, want) in cases {
        let mut errors = Vec::new();
        for cmd in
            [&["rollout", "--quiet"][..], &["calibrate", "--quiet", "--envs", "/nonexistent"]]
        {
            let o = run(&[cmd, flags].concat(), b"");
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{cmd:?} {flags:?}: {err}");
            assert!(err.contains(want), "{cmd:?} {flags:?}: {want:?} in {err}");
            errors.push(err.lines().next().unwrap_or_default().to_owned());
        }
        assert_eq!(errors[0], errors[1], "{flags:?}: the same error in both commands");
    }
    // The thinking modes are a closed set, listed.
    let o = run(&["generate", "--thinking-mode", "deep"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("possible values: thinking, chat, auto"), "{}", stderr(&o));
}

/// `--config` keys are the flags, snake or kebab case, for `rollout` too; the command line
/// wins; an unknown key or a value out of range is an error naming the file.
#[test]
fn config_keys_are_the_flags_in_snake_or_kebab_case() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("run.toml");
    std::fs::write(
        &cfg,
        "policy = \"reference\"\nsamples_per_task = 2\ntasks = 3\nfamilies = [\"trip\"]\n\
         max-turns = 8\nquiet = true\n",
    )
    .expect("write");
    let cfg_s = cfg.to_str().expect("utf8");
    let rows = |o: &std::process::Output| -> Vec<serde_json::Value> {
        assert!(o.status.success(), "{}", stderr(o));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    };
    let all = rows(&run(&["rollout", "--config", cfg_s, "--jsonl", "-"], b""));
    assert_eq!(all.len(), 6, "3 tasks x 2 samples from the file");
    assert!(all.iter().all(|r| r["family"] == "trip" && r["policy"] == "reference"));
    let all = rows(&run(&["rollout", "--config", cfg_s, "--tasks", "1", "--jsonl", "-"], b""));
    assert_eq!(all.len(), 2, "--tasks on the command line wins over the file");

    std::fs::write(&cfg, "tasks = 2\nsamples-per-tasks = 2\n").expect("write");
    let o = run(&["generate", "--config", cfg_s], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown key `samples-per-tasks`"), "{}", stderr(&o));
    // Required flags may come from the file too.
    std::fs::write(&cfg, "envs = [\"/nonexistent\"]\npolicy = \"local\"\n").expect("write");
    let o = run(&["calibrate", "--quiet", "--config", cfg_s], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--policy local needs --model DIR"), "{}", stderr(&o));
    let o = run(&["calibrate", "--quiet"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("required arguments were not provided"), "{}", stderr(&o));
    std::fs::write(&cfg, "tasks = -1\n").expect("write");
    let o = run(
        &["calibrate", "--envs", "/nonexistent", "--policy", "reference", "--config", cfg_s],
        b"",
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains(cfg_s) && err.contains("--tasks") && err.contains("is not in 1.."),
        "{err}"
    );
}

#[test]
fn envs_check_takes_families_and_the_old_family_alias() {
    for flag in ["--families", "--family"] {
        let o = run(&["envs", "check", flag, "sql", "--tasks", "2", "--quiet", "--json"], b"");
        assert_eq!(o.status.code(), Some(0), "{flag}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json report");
        assert_eq!(v["passed"], 2, "{flag}: {v}");
    }
    let help = String::from_utf8_lossy(&run(&["envs", "check", "--help"], b"").stdout).into_owned();
    assert!(help.contains("--families <NAMES>") && !help.contains("--family <"), "{help}");
}

/// `rollout --jsonl -` streams each row as it is written: the first line arrives while the
/// run is still going (before the dataset card that ends a run is written; the rest of the
/// rows cannot be written until the reader reads on).
#[test]
fn rollout_jsonl_streams_rows_before_the_run_ends() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("ds");
    let mut child = Command::new(bin())
        .args(["rollout", "--policy", "reference", "--tasks", "300", "--samples-per-task", "1"])
        .args(["--concurrency", "1", "--quiet", "--jsonl", "-", "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a first row").expect("read");
    let row: serde_json::Value = serde_json::from_str(&first).expect("one row per line");
    assert!(row["sample_id"].is_string() && row["split"].is_string(), "{row}");
    assert!(child.try_wait().expect("try_wait").is_none(), "still running after the first row");
    // The dataset card is written when the run finishes: not yet.
    assert!(!out.join("README.md").exists(), "the first row came before the run finished");
    assert_eq!(lines.count() + 1, 300, "one line per row");
    assert!(child.wait().expect("wait").success());
    assert!(out.join("README.md").is_file());
}

/// `--device` is parsed by `inference::DeviceKind::parse` wherever it appears: the same
/// one-line refusal, exit 2.
#[test]
fn device_is_one_parser_in_every_engine_command() {
    for cmd in [
        &["serve", "--model", "/nonexistent"][..],
        &["model", "generate", "--model", "/nonexistent"],
        &["bench", "decode", "--preset", "tiny"],
        &["rollout", "--policy", "local"],
        &["generate", "--policy", "local"],
    ] {
        let o = run(&[cmd, &["--device", "cuda:x"]].concat(), b"");
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{cmd:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains("--device <DEVICE>") && err.contains("unknown device `cuda:x`"));
    }
}
