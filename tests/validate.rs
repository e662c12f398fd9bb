//! End-to-end tests of `agentgen validate`.

use crate::util::run;

const EOS: &str = "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>";

fn good_line() -> String {
    serde_json::json!({
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "reasoning_content": "use the tool", "content": "",
             "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "content": "{\"temp\": 3}"},
            {"role": "assistant", "reasoning_content": "done", "content": "3 degrees"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
            "additionalProperties": false}}}]
    })
    .to_string()
}

#[test]
fn exit_codes_on_crafted_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("good.jsonl"), format!("{}\n{}\n", good_line(), good_line())).expect("write");
    let o = run(&["validate", p("good.jsonl").to_str().expect("utf-8")], b"");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));

    // DSML markup inside content, a schema violation, a line that is not JSON.
    let dsml = good_line().replace("3 degrees", "3 </\u{ff5c}DSML\u{ff5c}function_calls>");
    let schema =
        good_line().replace("{\\\"city\\\": \\\"Paris\\\"}", "{\\\"town\\\": \\\"Paris\\\"}");
    std::fs::write(p("bad.jsonl"), format!("{}\n{dsml}\n{schema}\nnot json\n", good_line()))
        .expect("write");
    let json = p("report.json");
    let o = run(
        &[
            "validate",
            p("bad.jsonl").to_str().expect("utf-8"),
            "--json",
            json.to_str().expect("utf-8"),
        ],
        b"",
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    // JSONL rows are named by line number, counted from 1 (line 1 is the good one).
    assert!(stdout.contains("bad.jsonl:2: format."), "{stdout}");
    assert!(stdout.contains("bad.jsonl:3: schema."), "{stdout}");
    assert!(stdout.contains("bad.jsonl:4: format.bad_row"), "{stdout}");
    assert!(!stdout.contains("bad.jsonl:1:"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("report")).expect("report json");
    assert_eq!(report["invalid_rows"], 3);

    // Not Parquet at all / truncated Parquet: unreadable, exit 2 (and 2 beats 1).
    std::fs::write(p("junk.parquet"), b"PAR1 this is not parquet").expect("write");
    let o = run(&["validate", p("junk.parquet").to_str().expect("utf-8")], b"");
    assert_eq!(o.status.code(), Some(2));
    let o = run(
        &[
            "validate",
            p("bad.jsonl").to_str().expect("utf-8"),
            p("junk.parquet").to_str().expect("utf-8"),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(2));
    let ds = p("ds");
    let g =
        run(&["generate", "--out", ds.to_str().expect("utf-8"), "--quiet", "--tasks", "6"], b"");
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let part = std::fs::read_dir(ds.join("data"))
        .expect("data dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().contains("train-"))
        .expect("a train part");
    let bytes = std::fs::read(&part).expect("read part");
    std::fs::write(p("trunc.parquet"), &bytes[..bytes.len() / 2]).expect("write");
    let o = run(&["validate", p("trunc.parquet").to_str().expect("utf-8")], b"");
    assert_eq!(o.status.code(), Some(2));

    // Raw completions.
    std::fs::write(p("ok.txt"), format!("think</think>hello{EOS}")).expect("write");
    std::fs::write(p("bad.txt"), "think</think>\n\n<\u{ff5c}DSML\u{ff5c}function_calls>\n")
        .expect("write");
    let o = run(&["validate", "--completions", p("ok.txt").to_str().expect("utf-8")], b"");
    assert_eq!(o.status.code(), Some(0));
    let o = run(&["validate", "--completions", p("bad.txt").to_str().expect("utf-8")], b"");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("format.unclosed_call"));

    // Bad usage.
    let o = run(&["validate", "--split", "nope", p("good.jsonl").to_str().expect("utf-8")], b"");
    assert_eq!(o.status.code(), Some(2));
}
