//! End-to-end tests of `agentgen rollout`: groups with logprobs and advantages.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::serve::{Server, tiny_real_model};
use crate::util::run;

fn rows(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `agentgen rollout ARGS --quiet --jsonl -` (2 turns of at most 8 tokens when a model
/// samples); the rows it streamed, after checking it succeeded.
fn rollout_rows(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["rollout"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--max-tokens", "8", "--max-turns", "2", "--quiet", "--jsonl", "-"]);
    let o = run(&all, b"");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    rows(&o.stdout)
}

fn check_groups(rows: &[Value], k: usize) -> BTreeMap<String, Vec<&Value>> {
    let mut groups: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for r in rows {
        groups.entry(r["group_id"].as_str().expect("group_id").to_owned()).or_default().push(r);
        let ids = r["token_ids"].as_array().expect("token_ids");
        assert_eq!(r["loss_mask"].as_array().map(Vec::len), Some(ids.len()));
    }
    for (g, members) in &groups {
        assert_eq!(members.len(), k, "group {g}");
        let mean =
            members.iter().map(|r| r["reward"].as_f64().expect("reward")).sum::<f64>() / k as f64;
        for r in members {
            let adv = r["advantage"].as_f64().expect("advantage");
            let want = r["reward"].as_f64().expect("reward") - mean;
            assert!((adv - want).abs() < 1e-5, "advantage {adv} != reward - mean {want}");
        }
    }
    groups
}

#[test]
fn rollout_reference_groups_have_zero_advantage() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("ds");
    let out_s = out.to_str().expect("utf8");
    let o = run(
        &[
            "rollout",
            "--policy",
            "reference",
            "--tasks",
            "3",
            "--samples-per-task",
            "2",
            "--quiet",
            "--out",
            out_s,
            "--jsonl",
            "-",
        ],
        b"",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = rows(&o.stdout);
    assert_eq!(rows.len(), 6);
    let groups = check_groups(&rows, 2);
    assert_eq!(groups.len(), 3);
    assert!(rows.iter().all(|r| r["advantage"].as_f64() == Some(0.0)));
    assert!(out.join("data").read_dir().expect("data dir").count() > 0, "Parquet written");
}

#[test]
fn rollout_over_http_records_logprobs_and_advantages() {
    let s = Server::start(&tiny_real_model(), &["--served-model-name", "tiny"], &[]);
    let url = s.url();
    let rows = rollout_rows(&[
        "--policy",
        "http",
        "--endpoint",
        &url,
        "--api-model",
        "tiny",
        "--tasks",
        "2",
        "--samples-per-task",
        "3",
    ]);
    assert_eq!(rows.len(), 6, "2 tasks x 3 samples (both splits)");
    check_groups(&rows, 3);
    // The random model's samples carry the server's logprobs on their sampled tokens.
    let with_lp = rows
        .iter()
        .filter(|r| {
            r["logprobs"]
                .as_array()
                .is_some_and(|l| l.iter().any(|x| x.as_f64().is_some_and(|v| v <= 0.0)))
        })
        .count();
    assert!(with_lp > 0, "some rows carry sampled-token logprobs: {:?}", rows[0]["logprobs"]);
}

#[test]
fn rollout_task_file_runs_exactly_the_listed_tasks() {
    // Ids as a first run reports them, listed in another order with a comment and a blank line.
    let first = run(
        &[
            "rollout",
            "--policy",
            "reference",
            "--tasks",
            "4",
            "--samples-per-task",
            "1",
            "--quiet",
            "--jsonl",
            "-",
        ],
        b"",
    );
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let mut ids: Vec<String> = rows(&first.stdout)
        .iter()
        .map(|r| r["task_id"].as_str().expect("task_id").to_owned())
        .collect();
    assert_eq!(ids.len(), 4);
    ids.reverse();
    let dir = tempfile::tempdir().expect("tmp");
    let list = dir.path().join("tasks.txt");
    std::fs::write(&list, format!("# picked by hand\n{}\n\n", ids.join("\n"))).expect("write");
    let o = run(
        &[
            "rollout",
            "--policy",
            "reference",
            "--task-file",
            list.to_str().expect("utf8"),
            "--samples-per-task",
            "2",
            "--quiet",
            "--jsonl",
            "-",
        ],
        b"",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = rows(&o.stdout);
    let groups = check_groups(&rows, 2);
    assert_eq!(groups.len(), 4);
    let mut got: Vec<String> =
        rows.iter().map(|r| r["task_id"].as_str().expect("task_id").to_owned()).collect();
    got.sort();
    got.dedup();
    ids.sort();
    assert_eq!(got, ids, "exactly the listed tasks");
}

#[test]
fn rollout_task_file_errors_name_the_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let list = dir.path().join("tasks.txt");
    std::fs::write(&list, "# ok\ntrip@1/0\n").expect("write");
    let o = run(
        &["rollout", "--policy", "reference", "--task-file", list.to_str().expect("utf8")],
        b"",
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("tasks.txt:2"), "names file and line: {err}");

    std::fs::write(&list, "trip@999/0/0\n").expect("write");
    let o = run(
        &["rollout", "--policy", "reference", "--task-file", list.to_str().expect("utf8")],
        b"",
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("version"), "wrong version refused");

    let o = run(&["rollout", "--task-file", "/nonexistent/tasks.txt"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/tasks.txt"));
}

#[test]
fn rollout_with_the_local_engine_records_sampled_logprobs() {
    let model = tiny_real_model();
    let rows = rollout_rows(&[
        "--policy",
        "local",
        "--model",
        model.to_str().expect("utf8"),
        "--tasks",
        "2",
        "--samples-per-task",
        "2",
    ]);
    assert_eq!(rows.len(), 4, "2 tasks x 2 samples (both splits)");
    check_groups(&rows, 2);
    for r in &rows {
        assert_eq!(r["policy"], "local");
        // A random model does not solve tasks: each row is a rejection with a stable code.
        assert_eq!(r["split"], "rejected");
        let code = r["verdict"]["code"].as_str().expect("code");
        assert!(code.contains('.'), "stable dotted code: {code}");
        let lp = r["logprobs"].as_array().expect("logprobs");
        let sampled = lp.iter().filter(|x| x.as_f64().is_some_and(|v| v <= 0.0)).count();
        assert!(sampled >= 1, "sampled-token logprobs recorded");
    }
    // The two samples of a group are different draws.
    let (a, b) = (&rows[0], &rows[1]);
    if a["group_id"] == b["group_id"] {
        assert_ne!(a["token_ids"], b["token_ids"]);
    }
}

#[test]
fn local_policy_refuses_a_model_without_the_v32_vocabulary() {
    let fixture = crate::util::fixtures().join("model/tiny-f32");
    let o = run(
        &[
            "rollout",
            "--policy",
            "local",
            "--model",
            fixture.to_str().expect("utf8"),
            "--tasks",
            "1",
            "--quiet",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("vocabulary"));
}
