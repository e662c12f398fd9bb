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
    let o = run(
        &[
            "rollout",
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
            "--max-tokens",
            "8",
            "--max-turns",
            "2",
            "--quiet",
            "--jsonl",
            "-",
        ],
        b"",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = rows(&o.stdout);
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
fn rollout_task_file_is_refused_clearly() {
    let o = run(&["rollout", "--task-file", "/nonexistent/tasks.txt"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--task-file"));
}
