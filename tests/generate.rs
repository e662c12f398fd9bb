//! End-to-end tests of `agentgen generate`.

use std::collections::BTreeMap;
use std::path::Path;

use agentgen_datasets::{SampleRow, list_parts};

use crate::util::{bin, rows_by_id, run};

fn generate(out: &Path, extra: &[&str]) {
    let out_s = out.to_str().expect("utf-8 temp path");
    let mut args = vec!["generate", "--out", out_s, "--quiet"];
    args.extend_from_slice(extra);
    let o = run(&args, b"");
    assert!(
        o.status.success(),
        "generate {extra:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn reference_run_over_all_families_reads_back_and_validates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("ds");
    generate(&out, &["--tasks", "45", "--concurrency", "4"]);
    let all = rows_by_id(&out);
    assert_eq!(all.len(), 45);
    let train: Vec<&SampleRow> = all.values().filter(|r| r.verdict.code().is_none()).collect();
    assert!(train.len() >= 40, "only {} of 45 reference samples accepted", train.len());
    let families: std::collections::BTreeSet<&str> =
        all.values().map(|r| r.family.as_str()).collect();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).expect("manifest"))
            .expect("manifest json");
    let expected: std::collections::BTreeSet<&str> = manifest["environment_versions"]
        .as_object()
        .expect("environment versions")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(families, expected, "every available family is covered");
    for r in &train {
        assert_eq!(r.token_ids.len(), r.loss_mask.len());
        assert!(r.loss_mask.contains(&1) && r.loss_mask[0] == 0);
        assert!(r.passed && r.tool_calls > 0);
    }
    assert!(out.join("manifest.json").is_file() && out.join("README.md").is_file());
    let o = run(&["validate", out.to_str().expect("utf-8"), "--check-tokens"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    // Without --resume an existing dataset is refused.
    let again =
        run(&["generate", "--out", out.to_str().expect("utf-8"), "--quiet", "--tasks", "3"], b"");
    assert_eq!(again.status.code(), Some(2));
}

#[test]
fn identical_rows_at_concurrency_1_and_8() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("c1"), dir.path().join("c8"));
    generate(&a, &["--tasks", "24", "--concurrency", "1", "--seed", "7"]);
    generate(&b, &["--tasks", "24", "--concurrency", "8", "--seed", "7"]);
    assert_eq!(rows_by_id(&a), rows_by_id(&b));
}

#[test]
fn shard_union_equals_unsharded_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let whole = dir.path().join("whole");
    generate(&whole, &["--tasks", "20", "--no-dedup", "--seed", "3"]);
    let mut union = BTreeMap::new();
    for i in 0..3 {
        let d = dir.path().join(format!("shard{i}"));
        generate(&d, &["--tasks", "20", "--no-dedup", "--seed", "3", "--shard", &format!("{i}/3")]);
        for (k, v) in rows_by_id(&d) {
            assert!(union.insert(k, v).is_none(), "shards overlap");
        }
    }
    assert_eq!(union, rows_by_id(&whole));
}

#[test]
fn sigkill_then_resume_gives_the_uninterrupted_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let whole = dir.path().join("whole");
    let killed = dir.path().join("killed");
    let args = ["--tasks", "120", "--seed", "11", "--rows-per-file", "4", "--concurrency", "2"];
    generate(&whole, &args);
    let mut child = std::process::Command::new(bin())
        .args(["generate", "--quiet", "--out", killed.to_str().expect("utf-8")])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Kill as soon as some parts are finished (or when it is done anyway).
    for _ in 0..2000 {
        let n = list_parts(&killed).map_or(0, |p| p.len());
        if n >= 3 || child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    generate(&killed, &[&args[..], &["--resume"]].concat());
    assert_eq!(rows_by_id(&killed), rows_by_id(&whole));
}

#[test]
fn local_engine_run_completes_and_records_rejections_with_codes() {
    let model = crate::serve::tiny_real_model();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("ds");
    generate(
        &out,
        &[
            "--policy",
            "local",
            "--model",
            model.to_str().expect("utf-8"),
            "--tasks",
            "3",
            "--max-tokens",
            "12",
            "--max-turns",
            "2",
            "--concurrency",
            "3",
        ],
    );
    let all = rows_by_id(&out);
    assert_eq!(all.len(), 3, "every task gives a row");
    for r in all.values() {
        assert_eq!(r.policy, "local");
        let code = r.verdict.code().expect("a random model's sample is rejected");
        assert!(
            code.starts_with("length.")
                || code.starts_with("format.")
                || code.starts_with("outcome."),
            "a model-mistake code, not an infrastructure one: {code}"
        );
        assert_eq!(r.token_ids.len(), r.loss_mask.len());
        let lp = r.logprobs.as_ref().expect("local policy records logprobs");
        assert!(lp.iter().flatten().any(|&v| v <= 0.0), "sampled-token logprobs present");
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).expect("manifest"))
            .expect("manifest json");
    assert!(manifest.to_string().contains("local"), "the manifest names the policy");
}

/// The sampling flags are one vocabulary (`generate`, `rollout`, `calibrate`): out-of-range
/// values (and zero tasks or turns) are refused when the flags are parsed, exit 2, naming the
/// flag and the rule; `--help` shows the defaults.
#[test]
fn sampling_flags_are_range_checked_the_same_everywhere() {
    for (cmd, flag, value, rule) in [
        ("generate", "--top-p", "7", "not above 0 and at most 1"),
        ("rollout", "--temperature", "-1", "not within 0..=2"),
        ("calibrate", "--max-tokens", "0", "at least 1"),
        ("generate", "--temperature", "warm", "not a number"),
        ("generate", "--tasks", "0", "is not in 1.."),
        ("rollout", "--max-turns", "0", "is not in 1.."),
        ("calibrate", "--tasks", "0", "is not in 1.."),
    ] {
        let o = run(&[cmd, flag, value], b"");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{cmd} {flag} {value}: {err}");
        assert!(err.contains(flag) && err.contains(rule), "{cmd} {flag} {value}: {err}");
    }
    for cmd in ["generate", "rollout", "calibrate"] {
        let help = String::from_utf8_lossy(&run(&[cmd, "--help"], b"").stdout).into_owned();
        for want in ["[default: 1]", "[default: 0.95]", "[default: 4096]"] {
            assert!(help.contains(want), "{cmd} --help shows {want}");
        }
    }
}
