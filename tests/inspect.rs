//! End-to-end tests of `agentgen inspect`. Datasets are crafted through the datasets crate's
//! own writer API.

use std::path::Path;

use agentgen_codec::{Message, ToolCall};
use agentgen_datasets::{Manifest, SampleRow, Verdict};

use crate::util::run;

fn row(id: &str, family: &str, question: &str, verdict: Verdict) -> SampleRow {
    SampleRow {
        sample_id: id.into(),
        task_id: format!("{family}@1/1/{id}"),
        group_id: format!("g-{id}"),
        run_id: "run-t".into(),
        family: family.into(),
        instance_seed: 1,
        task_seed: 2,
        sample_index: 0,
        difficulty: 1,
        thinking_mode: "thinking".into(),
        tools: "[]".into(),
        messages: vec![
            Message::system("sys"),
            Message::user(question),
            Message::assistant(Some("r".into()), "", vec![ToolCall::new("f", "{\"x\": 1}")]),
            Message::tool("1", None),
            Message::assistant(None, "ok", vec![]),
        ],
        text: "text".into(),
        token_ids: (0..40).collect(),
        loss_mask: vec![1; 40],
        logprobs: None,
        reward: 1.0,
        advantage: None,
        passed: true,
        checks: "[]".into(),
        verdict,
        turns: 2,
        tool_calls: 1,
        finish_reason: "stop".into(),
        policy: "reference".into(),
        model: None,
        sampling: "{}".into(),
        warnings: vec![],
        timings_ms: "{}".into(),
        token_source: "reference".into(),
        episode_id: String::new(),
        turn_index: 0,
        turns_total: 1,
        env_package: None,
        env_package_sha256: None,
        env_python: None,
    }
}

/// Write `rows` as shard `shard`/`count` of a dataset at `dir`, with manifest and card.
fn craft(dir: &Path, shard: u32, count: u32, rows: Vec<SampleRow>) {
    crate::util::craft_dataset(dir, shard, count, rows, |m| m.run_id = "run-t".into());
}

fn rejected(code: &str) -> Verdict {
    Verdict::Rejected { code: code.into(), detail: "d".into() }
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn summarises_one_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    craft(
        d,
        0,
        1,
        vec![
            row("a", "calc", "q1", Verdict::Accepted),
            row("b", "kv", "q2", Verdict::Accepted),
            row("c", "kv", "q3", rejected("outcome.failed")),
        ],
    );
    let o = run(&["inspect", d.to_str().unwrap()], b"");
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("3 rows (train 2, rejected 1)"), "{out}");
    assert!(out.contains("schema version 2"), "{out}");
    assert!(out.contains("outcome.failed"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("kv") && l.contains('1')), "{out}");
    assert!(out.contains("sample row:") && out.contains("\"sample_id\": \"a\""), "{out}");
    assert!(out.contains("check: ok"), "{out}");
}

#[test]
fn shards_disjoint_and_complete_json() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("s0"), tmp.path().join("s1"));
    craft(&a, 0, 2, vec![row("a", "calc", "q1", Verdict::Accepted)]);
    craft(
        &b,
        1,
        2,
        vec![
            row("b", "calc", "q2", Verdict::Accepted),
            row("c", "kv", "q3", rejected("dedup.exact")),
        ],
    );
    let o = run(&["inspect", "--json", a.to_str().unwrap(), b.to_str().unwrap()], b"");
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["disjoint"], true);
    assert_eq!(v["train"], 2);
    assert_eq!(v["rejected"], 1);
    assert_eq!(v["schema_version"], 2);
    assert_eq!(v["per_rejection_code"]["dedup.exact"], 1);
    assert_eq!(v["per_family"]["calc"]["accepted"], 2);
    assert_eq!(v["dirs"][1]["shard"], "1/2");
}

#[test]
fn overlapping_shards_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("s0"), tmp.path().join("s1"));
    craft(&a, 0, 2, vec![row("a", "calc", "q1", Verdict::Accepted)]);
    craft(&b, 1, 2, vec![row("a", "calc", "q1", Verdict::Accepted)]);
    let o = run(&["inspect", a.to_str().unwrap(), b.to_str().unwrap()], b"");
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("not disjoint"), "{}", stdout(&o));
}

#[test]
fn manifest_mismatch_and_leftover_temp_files_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    craft(d, 0, 1, vec![row("a", "calc", "q1", Verdict::Accepted)]);
    let mut m = Manifest::read(d).unwrap();
    m.counts.accepted = 5;
    m.write(d).unwrap();
    let o = run(&["inspect", d.to_str().unwrap()], b"");
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("manifest counts train 5"), "{}", stdout(&o));

    let tmp2 = tempfile::tempdir().unwrap();
    craft(tmp2.path(), 0, 1, vec![row("a", "calc", "q1", Verdict::Accepted)]);
    std::fs::write(tmp2.path().join("data/train-00000-00001.parquet.tmp"), b"partial").unwrap();
    let o = run(&["inspect", tmp2.path().to_str().unwrap()], b"");
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("unfinished"), "{}", stdout(&o));

    let tmp3 = tempfile::tempdir().unwrap();
    craft(tmp3.path(), 0, 1, vec![row("a", "calc", "q1", Verdict::Accepted)]);
    std::fs::remove_file(tmp3.path().join("manifest.json")).unwrap();
    let o = run(&["inspect", tmp3.path().to_str().unwrap()], b"");
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn dedup_reports_cross_shard_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("s0"), tmp.path().join("s1"));
    craft(
        &a,
        0,
        2,
        vec![
            row("a", "calc", "same", Verdict::Accepted),
            row("x", "calc", "other", Verdict::Accepted),
        ],
    );
    craft(&b, 1, 2, vec![row("b", "calc", "same", Verdict::Accepted)]);
    let o = run(&["inspect", "--dedup", "--json", a.to_str().unwrap(), b.to_str().unwrap()], b"");
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["dedup"]["duplicate_rows"], 1);
    assert_eq!(v["dedup"]["cross_folder_rows"], 1);
    let o = run(&["inspect", "--dedup", a.to_str().unwrap(), b.to_str().unwrap()], b"");
    assert!(stdout(&o).contains("a, b"), "{}", stdout(&o));
}

#[test]
fn unreadable_input_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(&["inspect", tmp.path().join("nope").to_str().unwrap()], b"");
    assert_eq!(o.status.code(), Some(2));
    craft(tmp.path(), 0, 1, vec![row("a", "calc", "q1", Verdict::Accepted)]);
    std::fs::write(tmp.path().join("data/train-00000-00000.parquet"), b"garbage").unwrap();
    let o = run(&["inspect", tmp.path().to_str().unwrap()], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("parquet"));
}

#[test]
fn inspects_generated_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (0..2).map(|i| tmp.path().join(format!("shard{i}"))).collect();
    for (i, d) in dirs.iter().enumerate() {
        let shard = format!("{i}/2");
        let o = run(
            &[
                "generate",
                "--quiet",
                "--tasks",
                "12",
                "--shard",
                &shard,
                "--out",
                d.to_str().unwrap(),
            ],
            b"",
        );
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let args: Vec<&str> = ["inspect", "--json", "--dedup"]
        .into_iter()
        .chain(dirs.iter().map(|d| d.to_str().unwrap()))
        .collect();
    let o = run(&args, b"");
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["disjoint"], true);
    assert_eq!(v["schema_version"], 2);
    assert!(v["rows"].as_u64().unwrap() >= 12, "{v}");
}
