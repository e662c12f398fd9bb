//! End-to-end tests of `agentgen rollout`: groups with logprobs and advantages.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::serve::{Server, tiny_real_model};
use crate::util::{bin, run};

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

/// `agentgen rollout ARGS` run in `cwd` with `TMPDIR=tmp` (both empty folders the test checks
/// afterwards), stdout piped.
fn rollout_in(cwd: &Path, tmp: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("rollout").args(args).current_dir(cwd).env("TMPDIR", tmp);
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// A test folder with two empty folders in it, for a run's working folder and its TMPDIR.
fn empty_cwd_and_tmp() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    let (cwd, tmp) = (dir.path().join("cwd"), dir.path().join("tmp"));
    std::fs::create_dir_all(&cwd).expect("mkdir");
    std::fs::create_dir_all(&tmp).expect("mkdir");
    (dir, cwd, tmp)
}

/// What a folder holds, by relative path (empty when nothing was written there).
fn entries(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() {
            out.extend(entries(&e.path()).into_iter().map(|n| format!("{name}/{n}")));
        }
        out.push(name);
    }
    out
}

/// A JSON line with the value of `timings_ms` (wall-clock times, the one field two runs may
/// not share) emptied; every other byte is kept.
fn without_timings(line: &str) -> String {
    const KEY: &str = "\"timings_ms\":\"";
    let Some(at) = line.find(KEY) else { panic!("no timings_ms in {line}") };
    let start = at + KEY.len();
    let mut escaped = false;
    let len = line[start..]
        .char_indices()
        .find(|&(_, c)| {
            let end = c == '"' && !escaped;
            escaped = c == '\\' && !escaped;
            end
        })
        .map(|(i, _)| i)
        .expect("closing quote of timings_ms");
    format!("{}{}", &line[..start], &line[start + len..])
}

/// The JSON lines of a run, timings emptied, after checking it succeeded.
fn lines_of(o: &Output) -> Vec<String> {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).lines().map(without_timings).collect()
}

/// `--jsonl` without `--out` streams the very lines a run with a dataset streams (same rows,
/// order and bytes but the wall-clock timings) at concurrency 1 and 8, and those are the rows
/// the dataset holds.
#[test]
fn rollout_jsonl_alone_streams_the_lines_of_a_dataset_run() {
    let (dir, cwd, tmp) = empty_cwd_and_tmp();
    let args = ["--policy", "reference", "--tasks", "12", "--samples-per-task", "2", "--quiet"];
    let mut streamed = Vec::new();
    for c in ["1", "8"] {
        let ds = dir.path().join(format!("ds-{c}"));
        let with = [&args[..], &["--concurrency", c, "--jsonl", "-", "--out"]].concat();
        let with_out = rollout_in(&cwd, &tmp, &with).arg(&ds).output().expect("rollout with --out");
        let alone = [&args[..], &["--concurrency", c, "--jsonl", "-"]].concat();
        let alone = rollout_in(&cwd, &tmp, &alone).output().expect("rollout --jsonl alone");
        let (with_out, alone) = (lines_of(&with_out), lines_of(&alone));
        assert_eq!(alone, with_out, "concurrency {c}: the same lines");
        assert!(entries(&cwd).is_empty() && entries(&tmp).is_empty(), "{:?}", entries(&tmp));

        // The lines are the dataset's rows (the same text, tokens, verdict and split; the
        // JSON line also carries what Parquet does not store, such as tool call ids), both
        // splits, one line each.
        let mut parquet = crate::util::rows_by_id(&ds);
        let splits: BTreeSet<&str> = alone
            .iter()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("json line");
                let id = v["sample_id"].as_str().expect("sample_id");
                let row = parquet.remove(id).unwrap_or_else(|| panic!("{id} not in the dataset"));
                let split = row.split().as_str();
                assert_eq!(v["split"], split, "{id}");
                assert_eq!(v["text"], row.text, "{id}");
                assert_eq!(v["token_ids"], serde_json::json!(row.token_ids), "{id}");
                assert_eq!(v["verdict"], serde_json::json!(row.verdict), "{id}");
                split
            })
            .collect();
        assert!(parquet.is_empty(), "rows never streamed: {:?}", parquet.keys());
        assert_eq!(splits, BTreeSet::from(["train", "rejected"]));
        streamed.push(alone);
    }
    assert_eq!(streamed[0], streamed[1], "concurrency 1 and 8 stream the same lines");
}

/// `--jsonl -` without `--out` has no folder: while it streams (the first line arrives before
/// the run ends: it cannot write the rest until the reader reads on) and after it, nothing is
/// written to the working folder or the temporary folder.
#[test]
fn rollout_jsonl_alone_writes_nothing_but_the_lines() {
    let (_dir, cwd, tmp) = empty_cwd_and_tmp();
    let mut child = rollout_in(
        &cwd,
        &tmp,
        &["--policy", "reference", "--tasks", "300", "--samples-per-task", "1"],
    )
    .args(["--concurrency", "1", "--quiet", "--jsonl", "-"])
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a first row").expect("read");
    let row: Value = serde_json::from_str(&first).expect("one row per line");
    assert!(row["sample_id"].is_string() && row["split"].is_string(), "{row}");
    assert!(child.try_wait().expect("try_wait").is_none(), "still running after the first row");
    assert_eq!(entries(&tmp), Vec::<String>::new(), "nothing in TMPDIR while the run streams");
    assert_eq!(entries(&cwd), Vec::<String>::new(), "nothing in the working folder");
    assert_eq!(lines.count() + 1, 300, "one line per row");
    assert!(child.wait().expect("wait").success());
    assert_eq!(entries(&tmp), Vec::<String>::new(), "nothing left in TMPDIR");
    assert_eq!(entries(&cwd), Vec::<String>::new(), "nothing left in the working folder");
}

/// The flags that only make sense with a folder are refused without one: one line, exit 2.
#[test]
fn rollout_jsonl_alone_refuses_folder_flags() {
    for flag in [&["--resume"][..], &["--overwrite"], &["--flush-secs", "5"]] {
        let mut args = vec!["rollout", "--policy", "reference", "--tasks", "1", "--jsonl", "-"];
        args.extend_from_slice(flag);
        let o = run(&args, b"");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{flag:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(flag[0]) && err.contains("--out"), "{err}");
        assert!(o.stdout.is_empty(), "nothing ran");
    }
}

/// Without a folder the policy-health checks stop a failing run as before: exit 3 with the
/// first error and the summary, after the first 50 rollouts or when every row failed.
#[test]
fn rollout_jsonl_alone_stops_on_a_failing_endpoint() {
    let (_dir, cwd, tmp) = empty_cwd_and_tmp();
    let stub = crate::opsafety::Stub::failing(404);
    let url = stub.url();
    let http = ["--policy", "http", "--endpoint", &url, "--quiet", "--jsonl", "-"];
    let o =
        rollout_in(&cwd, &tmp, &[&http[..], &["--tasks", "5", "--samples-per-task", "1"]].concat())
            .output()
            .expect("rollout");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("every one of the 5 rollouts failed in the policy"), "{err}");
    assert!(err.contains("policy.http_4xx") && err.contains("total"), "{err}");
    let rows = rows(&o.stdout);
    assert_eq!(rows.len(), 5, "the failed rows are streamed");
    assert!(rows.iter().all(|r| r["verdict"]["code"] == "policy.http_4xx"), "{rows:?}");

    let before = stub.count();
    let many = ["--tasks", "400", "--samples-per-task", "1", "--concurrency", "2"];
    let o = rollout_in(&cwd, &tmp, &[&http[..], &many[..]].concat()).output().expect("rollout");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("--max-policy-error-rate"), "{err}");
    let n = stub.count() - before;
    assert!((50..400).contains(&n), "stopped after the first 50 rollouts, not at the end: {n}");
    assert!(entries(&cwd).is_empty() && entries(&tmp).is_empty());
}
