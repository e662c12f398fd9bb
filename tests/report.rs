//! End-to-end tests of `agentgen report`: the page is parsed as HTML (scraper) and what it
//! shows is compared with `agentgen inspect --json` on the same folders. No snapshots of the
//! page: every assertion reads one number, section or element.

use std::collections::BTreeSet;
use std::path::Path;

use agentgen_codec::{Message, ToolCall};
use agentgen_datasets::{SampleRow, Verdict};
use scraper::{Html, Selector};
use serde_json::Value;

use crate::util::run;

const EVIL: &str = "</script><script>window.pwned=1</script><img src=x onerror=alert(1)>";

#[allow(clippy::too_many_arguments)]
fn row(
    id: &str,
    family: &str,
    group: &str,
    passed: bool,
    reward: f32,
    turns: u32,
    tokens: usize,
    verdict: Verdict,
) -> SampleRow {
    SampleRow {
        sample_id: id.into(),
        task_id: format!("{family}@1/1/{group}"),
        group_id: format!("g-{group}"),
        run_id: "run-r".into(),
        family: family.into(),
        instance_seed: 1,
        task_seed: 2,
        sample_index: 0,
        difficulty: (tokens % 3) as u8 + 1,
        thinking_mode: "thinking".into(),
        tools: r#"[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]"#
            .into(),
        messages: vec![
            Message::system("You are a test system prompt."),
            Message::user(format!("question {id}")),
            Message::assistant(
                Some("thinking about it".into()),
                "",
                vec![ToolCall::new("f", "{\"x\": 1, \"y\": [1,2]}")],
            ),
            Message::tool(format!("result {EVIL}"), None),
            Message::assistant(None, format!("answer {id}"), vec![]),
        ],
        text: "text".into(),
        token_ids: (0..tokens as u32).map(|i| 300 + i).collect(),
        loss_mask: (0..tokens).map(|i| u8::from(i % 2 == 0)).collect(),
        logprobs: Some((0..tokens).map(|i| (i % 2 == 0).then_some(-0.25)).collect()),
        reward,
        advantage: None,
        passed,
        checks: format!(r#"[{{"name":"answer","passed":{passed},"detail":"got {EVIL}"}}]"#),
        verdict,
        turns,
        tool_calls: turns - 1,
        finish_reason: "stop".into(),
        policy: "reference".into(),
        token_source: "reference".into(),
        episode_id: String::new(),
        turn_index: 0,
        turns_total: 1,
        env_package: None,
        env_package_sha256: None,
        env_python: None,
        model: None,
        sampling: "{}".into(),
        warnings: if id.ends_with('3') { vec!["tokens.noncanonical".into()] } else { vec![] },
        timings_ms: "{}".into(),
    }
}

fn craft(dir: &Path, shard: u32, count: u32, rows: Vec<SampleRow>) {
    crate::util::craft_dataset(dir, shard, count, rows, |m| {
        m.run_id = "run-r".into();
        m.policy = "reference".into();
        m.seed = 7;
        m.environment_versions.insert("calc".into(), "1".into());
    });
}

/// 24 rows in 8 groups of 3 over 3 families; some rejected (outcome, dedup).
fn rows() -> Vec<SampleRow> {
    let fams = ["calc", "kv", "search"];
    (0..24)
        .map(|i| {
            let fam = fams[i % 3];
            let group = format!("{}", i / 3);
            let passed = i % 4 != 0;
            let verdict = match i % 7 {
                0 => Verdict::Rejected {
                    code: "outcome.failed".into(),
                    detail: format!("detail {EVIL}"),
                },
                3 => Verdict::Rejected { code: "dedup.exact".into(), detail: "dup".into() },
                _ => Verdict::Accepted,
            };
            row(
                &format!("s{i:02}"),
                fam,
                &group,
                passed,
                if passed { 1.0 } else { 0.25 },
                2 + (i % 4) as u32,
                20 + 7 * i,
                verdict,
            )
        })
        .collect()
}

fn inspect_json(dirs: &[&Path]) -> Value {
    let mut args = vec!["inspect", "--json"];
    args.extend(dirs.iter().map(|d| d.to_str().unwrap()));
    let o = run(&args, b"");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn report(inputs: &[&Path], out: &Path, extra: &[&str]) -> Html {
    let mut args = vec!["report"];
    args.extend(inputs.iter().map(|d| d.to_str().unwrap()));
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend(extra);
    let o = run(&args, b"");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    Html::parse_document(&std::fs::read_to_string(out).unwrap())
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap()
}

fn embedded(page: &Html) -> Value {
    let block = page.select(&sel("script#agentgen-inspect")).next().expect("inspect block");
    assert_eq!(block.value().attr("type"), Some("application/json"));
    serde_json::from_str(&block.text().collect::<String>()).unwrap()
}

fn attr_f64(e: &scraper::ElementRef<'_>, a: &str) -> f64 {
    e.value().attr(a).unwrap_or_else(|| panic!("no {a}")).parse().unwrap()
}

fn two_shards(tmp: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let all = rows();
    let (a, b) = (tmp.join("s0"), tmp.join("s1"));
    craft(&a, 0, 2, all[..13].to_vec());
    craft(&b, 1, 2, all[13..].to_vec());
    (a, b)
}

#[test]
fn report_numbers_equal_inspect_json() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = two_shards(tmp.path());
    let inspect = inspect_json(&[&a, &b]);
    let page = report(&[&a, &b], &tmp.path().join("r.html"), &[]);

    // The embedded block is inspect --json, key for key.
    let numbers = embedded(&page);
    let obj = numbers.as_object().unwrap();
    for key in [
        "rows",
        "train",
        "rejected",
        "tokens",
        "per_family",
        "per_rejection_code",
        "per_warning",
        "report",
    ] {
        assert!(obj.contains_key(key), "embedded block lacks {key}");
        assert_eq!(obj[key], inspect[key], "embedded {key} differs from inspect --json");
    }
    assert_eq!(inspect["rows"], 24);
    assert_eq!(inspect["report"]["rows"], 24);

    // The tiles show those numbers.
    let stat = |k: &str| -> f64 {
        let s = sel(&format!(r#".tile[data-stat="{k}"]"#));
        attr_f64(&page.select(&s).next().unwrap_or_else(|| panic!("no tile {k}")), "data-value")
    };
    assert_eq!(stat("rows"), inspect["rows"].as_f64().unwrap());
    assert_eq!(stat("train"), inspect["train"].as_f64().unwrap());
    assert_eq!(stat("rejected"), inspect["rejected"].as_f64().unwrap());
    for k in ["total", "train", "train_loss"] {
        assert_eq!(
            stat(&format!("tokens.{k}")),
            inspect["tokens"][k].as_f64().unwrap(),
            "tokens.{k}"
        );
    }
    assert_eq!(stat("pass_rate"), inspect["report"]["pass_rate"]["rate"].as_f64().unwrap());
    assert_eq!(stat("dedup_rate"), inspect["report"]["dedup"]["rate"].as_f64().unwrap());

    // Per-family bars: one accepted and one rejected segment per family, as inspect counts.
    let bars = sel(r#"figure[data-chart="per_family"] rect.bar"#);
    let mut seen = BTreeSet::new();
    for r in page.select(&bars) {
        let fam = r.value().attr("data-key").unwrap();
        let series = r.value().attr("data-series").unwrap();
        assert_eq!(
            attr_f64(&r, "data-value"),
            inspect["per_family"][fam][series].as_f64().unwrap(),
            "{fam} {series}"
        );
        seen.insert(fam.to_owned());
    }
    let fams: BTreeSet<String> =
        inspect["per_family"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(seen, fams);

    // Rejection codes.
    let codes = sel(r#"figure[data-chart="per_rejection_code"] rect.bar"#);
    let mut n = 0;
    for r in page.select(&codes) {
        let code = r.value().attr("data-key").unwrap();
        assert_eq!(
            attr_f64(&r, "data-value"),
            inspect["per_rejection_code"][code].as_f64().unwrap()
        );
        n += 1;
    }
    assert_eq!(n, inspect["per_rejection_code"].as_object().unwrap().len());

    // Histograms: the drawn bins are inspect's counts; each sums to the rows.
    for name in ["turns", "tool_calls", "tokens"] {
        let h = &inspect["report"]["histograms"][name]["all"];
        let s = sel(&format!(r#"figure[data-chart="hist_{name}"] rect.bar"#));
        let drawn: Vec<u64> = page.select(&s).map(|r| attr_f64(&r, "data-value") as u64).collect();
        let want: Vec<u64> =
            h["counts"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).collect();
        assert_eq!(drawn, want, "{name}");
        assert_eq!(drawn.iter().sum::<u64>(), 24, "{name}");
        // One small multiple per family.
        let multiples = sel(&format!(r#"figure[data-chart^="hist_{name}:"]"#));
        assert_eq!(page.select(&multiples).count(), 3, "{name}");
    }
    let reward = sel(r#"figure[data-chart="reward"] rect.bar"#);
    let drawn: u64 = page.select(&reward).map(|r| attr_f64(&r, "data-value") as u64).sum();
    assert_eq!(drawn, inspect["report"]["reward"]["count"].as_u64().unwrap());

    // RL groups of 3: group pass-rate histogram and pass@1, pass@2.
    assert_eq!(inspect["report"]["groups"]["multi_sample"], 8);
    let g = sel(r#"figure[data-chart="group_pass_rate"] rect.bar"#);
    assert_eq!(page.select(&g).map(|r| attr_f64(&r, "data-value") as u64).sum::<u64>(), 8);
    let pk = sel(r#"figure[data-chart="pass_at_k"] rect.bar"#);
    let keys: Vec<String> =
        page.select(&pk).map(|r| r.value().attr("data-key").unwrap().to_owned()).collect();
    assert_eq!(keys, vec!["pass@1", "pass@2"]);
    for r in page.select(&pk) {
        let k = r.value().attr("data-key").unwrap().trim_start_matches("pass@");
        assert_eq!(
            attr_f64(&r, "data-value"),
            inspect["report"]["groups"]["pass_at_k"][k].as_f64().unwrap()
        );
    }
    let diff = sel(r#"figure[data-chart="difficulty"] rect.bar"#);
    assert_eq!(
        page.select(&diff).count(),
        inspect["report"]["difficulty"].as_object().unwrap().len()
    );

    // Every section is there; the manifest of each shard is shown.
    for id in ["overview", "run", "verdicts", "outcomes", "lengths", "trajectories"] {
        assert!(page.select(&sel(&format!("section#{id}"))).next().is_some(), "section {id}");
    }
    assert_eq!(page.select(&sel(".manifest")).count(), 2);
    assert!(page.select(&sel(".missing")).next().is_none(), "nothing is missing from our data");
}

#[test]
fn trajectories_render_escaped_and_sample_deterministically() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = two_shards(tmp.path());
    let page = report(&[&a, &b], &tmp.path().join("r.html"), &["--samples", "10"]);

    // CSP, and no element or script came from the rows.
    let csp = sel(r#"meta[http-equiv="Content-Security-Policy"]"#);
    let policy = page.select(&csp).next().unwrap().value().attr("content").unwrap().to_owned();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(page.select(&sel("img")).next().is_none(), "an <img> from a tool result was injected");
    for s in page.select(&sel("script")) {
        let id = s.value().attr("id").unwrap_or("");
        let ty = s.value().attr("type").unwrap_or("");
        let body: String = s.text().collect();
        assert!(!body.contains("window.pwned"), "row text reached a script: {id}");
        if !id.is_empty() {
            assert_eq!(ty, "application/json", "{id}");
            // Data blocks parse back to the rows' text.
            let _: Value = serde_json::from_str(&body).unwrap();
        }
    }
    assert_eq!(page.select(&sel("script:not([type])")).count(), 1, "one inline script");
    // The evil text is shown as text where it belongs.
    let tool = sel(".msg.tool pre");
    let shown: String = page.select(&tool).next().unwrap().text().collect();
    assert!(shown.contains(EVIL), "{shown}");
    let checks = sel(".checks li");
    assert!(page.select(&checks).next().unwrap().text().collect::<String>().contains(EVIL));

    // Ten rows, each a full conversation.
    let traj = sel("details.traj");
    let items: Vec<_> = page.select(&traj).collect();
    assert_eq!(items.len(), 10);
    for t in &items {
        let one = |s: &str| t.select(&sel(s)).count();
        assert_eq!(one("details.msg.system"), 1, "system prompt folded");
        assert_eq!(one("details.msg.tools"), 1, "tools folded");
        assert_eq!(one("details.reasoning"), 1, "reasoning collapsible");
        assert_eq!(one(".msg.user"), 1);
        assert_eq!(one(".call"), 1);
        assert_eq!(one(".msg.assistant.final"), 1, "final answer");
        assert_eq!(one("details.tokens"), 1, "token view");
        let split = t.value().attr("data-split").unwrap();
        assert_eq!(one(".rejection") == 1, split == "rejected");
        // Tool-call arguments pretty-printed.
        let args: String = t.select(&sel(".call pre")).next().unwrap().text().collect();
        assert!(args.contains("\"x\": 1,\n"), "{args}");
        // Token data: one piece, one mask flag and one logprob per token.
        let i = t.value().attr("data-index").unwrap();
        let block = page.select(&sel(&format!("script#tok{i}"))).next().unwrap();
        let v: Value = serde_json::from_str(&block.text().collect::<String>()).unwrap();
        let n = v["t"].as_array().unwrap().len();
        assert_eq!(v["m"].as_str().unwrap().len(), n);
        assert_eq!(v["l"].as_array().unwrap().len(), n);
        assert!(v["m"].as_str().unwrap().contains('1'));
    }

    // Same seed, same rows; the same rows in one folder instead of two shards: same sample.
    let ids = |p: &Html| -> BTreeSet<String> {
        p.select(&sel("details.traj .sid")).map(|e| e.text().collect()).collect()
    };
    let again = report(&[&a, &b], &tmp.path().join("r2.html"), &["--samples", "10"]);
    assert_eq!(ids(&page), ids(&again));
    let one = tmp.path().join("one");
    craft(&one, 0, 1, rows());
    let single = report(&[&one], &tmp.path().join("r3.html"), &["--samples", "10"]);
    assert_eq!(ids(&page), ids(&single), "the sample depends on the rows, not the sharding");
    let other = report(&[&a, &b], &tmp.path().join("r4.html"), &["--samples", "10", "--seed", "5"]);
    assert_ne!(ids(&page), ids(&other), "another seed draws other rows");

    // --split rejected shows rejected rows only.
    let rej = report(&[&a, &b], &tmp.path().join("r5.html"), &["--split", "rejected"]);
    let splits: BTreeSet<String> =
        rej.select(&traj).map(|t| t.value().attr("data-split").unwrap().to_owned()).collect();
    assert_eq!(splits, BTreeSet::from(["rejected".to_owned()]));
    let bad = run(&["report", a.to_str().unwrap(), "--out", "/dev/null", "--split", "nope"], b"");
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn foreign_jsonl_reports_what_it_has_and_says_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("convs.jsonl");
    let lines = [
        r#"{"messages":[{"role":"system","content":"s"},{"role":"user","content":"hi <b>"},{"role":"assistant","content":"hello"}],"reward":0.5}"#,
        r#"{"messages":[{"role":"user","content":"2+2"},{"role":"assistant","content":"4"}],"reward":1.0}"#,
    ];
    std::fs::write(&f, lines.join("\n")).unwrap();
    let page = report(&[&f], &tmp.path().join("f.html"), &[]);
    let numbers = embedded(&page);
    assert_eq!(numbers["rows"], 2);
    assert_eq!(numbers["report"]["reward"]["count"], 2);
    let missing = page.select(&sel(".missing")).next().expect("missing-columns note");
    let cols = missing.value().attr("data-missing").unwrap();
    for c in ["family", "rejection_code", "passed", "turns", "token_ids"] {
        assert!(cols.split(',').any(|x| x == c), "{c} not listed in {cols}");
    }
    assert!(page.select(&sel(r#"figure[data-chart="per_family"]"#)).next().is_none());
    assert!(page.select(&sel(r#"figure[data-chart="reward"]"#)).next().is_some());
    assert_eq!(page.select(&sel("details.traj")).count(), 2);
    let user: String =
        page.select(&sel(".msg.user .text")).map(|e| e.text().collect::<String>()).collect();
    assert!(user.contains("hi <b>"), "{user}");
    assert!(page.select(&sel(".msg.user b")).next().is_none());

    // Unreadable input is exit 2.
    let o = run(&["report", tmp.path().join("nope").to_str().unwrap(), "--out", "/dev/null"], b"");
    assert_eq!(o.status.code(), Some(2));
}
