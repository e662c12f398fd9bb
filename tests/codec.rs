//! End-to-end tests of `agentgen codec`: they drive the real binary.

use serde_json::Value;

use crate::util::{fixtures, run, stderr};

const SEED_PROMPT: &str = "<｜begin▁of▁sentence｜><｜User｜>hello<｜Assistant｜></think>Hello! I am DeepSeek.<｜end▁of▁sentence｜><｜User｜>1+1=?<｜Assistant｜><think>";
const SEED_IDS: &str = "[0,128803,33310,128804,128799,19923,3,342,1030,22651,4374,1465,16,1,128803,19,13,19,127252,128804,128798]";

fn codec_fixture(name: &str) -> String {
    fixtures().join("codec").join(name).to_string_lossy().into_owned()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn conformance_over_every_shared_vector_passes() {
    let files: Vec<String> = [
        "extra_cases.jsonl",
        "parse_cases.jsonl",
        "test_input.json",
        "test_input_search_wo_date.json",
        "test_input_search_w_date.json",
    ]
    .iter()
    .map(|f| codec_fixture(f))
    .collect();
    let mut args = vec!["codec", "conformance"];
    args.extend(files.iter().map(String::as_str));
    let o = run(&args, b"");
    let out = stdout(&o);
    // 54 encode + 31 parse vectors, 3 official prompts, 2 official round trips.
    assert_eq!(out.lines().last(), Some("90 passed, 0 failed"), "{out}{}", stderr(&o));
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn conformance_reports_first_differing_byte() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("cases.jsonl");
    let good = r#"{"kind": "encode", "name": "ok", "messages": [{"role": "user", "content": "hi"}], "tools": null, "config": {"thinking_mode": "chat", "drop_thinking": true, "add_default_bos_token": true}, "expected_prompt": "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜></think>"}"#;
    let bad = good.replace(r#""name": "ok""#, r#""name": "wrong""#).replace("hi<", "ho<");
    let parse_bad = r#"{"kind": "parse", "name": "p", "completion": "x", "thinking_mode": "chat", "expected_message": {"role": "assistant", "content": "x", "reasoning_content": "", "tool_calls": []}}"#;
    std::fs::write(&path, format!("{good}\n{bad}\n{parse_bad}\n"))?;
    let o = run(&["codec", "conformance", &path.to_string_lossy()], b"");
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let fail = out.lines().find(|l| l.contains("wrong")).unwrap_or_default();
    // `<｜begin▁of▁sentence｜><｜User｜>h` is 42 bytes; the next byte differs.
    assert!(fail.contains("first difference at byte 42"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("FAIL") && l.contains(" p:")), "{out}");
    assert_eq!(out.lines().last(), Some("1 passed, 2 failed"));
    Ok(())
}

#[test]
fn encode_official_inputs() -> anyhow::Result<()> {
    for name in
        ["test_input.json", "test_input_search_wo_date.json", "test_input_search_w_date.json"]
    {
        let input = std::fs::read(codec_fixture(name))?;
        let expected = std::fs::read_to_string(codec_fixture(
            &name.replace("input", "output").replace(".json", ".txt"),
        ))?;
        let o = run(&["codec", "encode"], &input);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stdout(&o), expected.trim(), "{name}");
    }
    Ok(())
}

#[test]
fn encode_flags() {
    let conv = br#"{"messages": [{"role": "user", "content": "hi"}]}"#;
    let o = run(&["codec", "encode", "--thinking-mode", "chat", "--no-bos"], conv);
    assert_eq!(stdout(&o), "<｜User｜>hi<｜Assistant｜></think>");
    let o = run(&["codec", "encode", "--drop-thinking"], conv);
    assert_eq!(stdout(&o), "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜><think>");
    // An earlier developer message: refused with drop_thinking, rendered without.
    let dev = br#"{"messages": [{"role": "developer", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}"#;
    let o = run(&["codec", "encode"], dev);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("developer message 0"), "{}", stderr(&o));
    let o = run(&["codec", "encode", "--no-drop-thinking"], dev);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(&["codec", "encode", "--thinking-mode", "bogus"], conv);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn encode_batch_with_a_bad_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("in.jsonl");
    std::fs::write(
        &path,
        "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}\n\
         {\"messages\": [{\"role\": \"robot\"\n\
         {\"messages\": [{\"role\": \"user\", \"content\": \"b\\n\\\"c\\\"\"}]}\n",
    )?;
    let o = run(&["codec", "encode", "--batch", &path.to_string_lossy()], b"");
    assert_eq!(o.status.code(), Some(1));
    let lines: Vec<Value> =
        stdout(&o).lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], "<｜begin▁of▁sentence｜><｜User｜>a<｜Assistant｜><think>");
    assert_eq!(lines[1], Value::Null);
    assert_eq!(lines[2], "<｜begin▁of▁sentence｜><｜User｜>b\n\"c\"<｜Assistant｜><think>");
    assert!(stderr(&o).contains(":2:"), "{}", stderr(&o));
    Ok(())
}

#[test]
fn parse_strict_lenient_and_rejection() -> anyhow::Result<()> {
    let text = "Need the tool.</think>\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"get_weather\">\n<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n<｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜function_calls><｜end▁of▁sentence｜>";
    let o = run(&["codec", "parse"], text.as_bytes());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o))?;
    assert_eq!(v["reasoning_content"], "Need the tool.");
    assert_eq!(v["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(v["tool_calls"][0]["function"]["arguments"], "{\"city\": \"Paris\", \"days\": 3}");

    // Rejection: exit 1, one line naming the byte offset.
    let o = run(
        &["codec", "parse", "--thinking-mode", "chat"],
        b"ok<\xef\xbd\x9cend\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>junk",
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("byte 29"), "{err}");

    let o = run(&["codec", "parse", "--thinking-mode", "chat", "--lenient"], b"Paris.  ");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o))?;
    assert_eq!(v["message"]["content"], "Paris.  ");
    assert_eq!(v["repairs"][0]["code"], "missing_eos");
    Ok(())
}

#[test]
fn tokenize_seed_ids_and_mask() -> anyhow::Result<()> {
    let o = run(&["codec", "tokenize"], SEED_PROMPT.as_bytes());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), format!("{{\"ids\":{SEED_IDS}}}"));

    let conv = br#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello", "reasoning_content": "greet"}]}"#;
    let o = run(&["codec", "tokenize", "--mask"], conv);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o))?;
    let ids = v["ids"].as_array().cloned().unwrap_or_default();
    let mask = v["mask"].as_array().cloned().unwrap_or_default();
    assert_eq!(ids.len(), mask.len());
    // BOS, <｜User｜>, "hi", <｜Assistant｜>, <think> are prompt; the rest (greet</think>Hello EOS)
    // is trainable and ends with EOS.
    assert_eq!(mask[..5], [0, 0, 0, 0, 0]);
    assert!(mask[5..].iter().all(|m| m == 1));
    assert_eq!(ids.last(), Some(&Value::from(1)));
    Ok(())
}
