//! Every shared conformance vector: the official DeepSeek fixtures (prompts and the two parse
//! round trips), `extra_cases.jsonl` (encoder) and `parse_cases.jsonl` (parser).
//!
//! The expected outputs come from DeepSeek's reference `encoding_dsv32.py` (see
//! `shared/fixtures/codec/README.md`); they are never re-blessed from our output.

use std::path::PathBuf;

use agentgen_codec::conformance::{message_json, normalize_message};
use agentgen_codec::{
    Conversation, EncodeOptions, Error, ParseError, ThinkingMode, encode_messages,
    messages_from_json, parse_completion,
};
use serde_json::{Value, json};

fn fixture(name: &str) -> PathBuf {
    agentgen_testdata::path("codec").join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

/// Byte-exact comparison that shows the first differing byte between rulers.
fn assert_bytes_eq(case: &str, expected: &str, actual: &str) {
    if expected == actual {
        return;
    }
    let n = expected.bytes().zip(actual.bytes()).take_while(|(a, b)| a == b).count();
    let lo = n.saturating_sub(80);
    let cut = |s: &str| {
        let mut a = lo.min(s.len());
        while !s.is_char_boundary(a) {
            a -= 1;
        }
        let mut b = (n + 80).min(s.len());
        while !s.is_char_boundary(b) {
            b += 1;
        }
        s[a..b].to_owned()
    };
    panic!(
        "{case}: first difference at byte {n} (expected {} bytes, got {})\n\
         ---- expected ----\n{}\n---- actual ----\n{}\n------------------",
        expected.len(),
        actual.len(),
        cut(expected),
        cut(actual)
    );
}

#[test]
fn official_prompts() -> anyhow::Result<()> {
    for name in
        ["test_input.json", "test_input_search_wo_date.json", "test_input_search_w_date.json"]
    {
        let input: Value = serde_json::from_str(&read(name))?;
        let expected = read(&name.replace("input", "output").replace(".json", ".txt"));
        let prompt = Conversation::from_json(&input)?.encode(&EncodeOptions::default())?;
        assert_eq!(
            Conversation::from_json_str(&read(name))?.encode(&EncodeOptions::default())?,
            prompt
        );
        assert_bytes_eq(name, expected.trim(), prompt.trim());
        // drop_thinking never changes a successful output (spec §3.8).
        let keep = EncodeOptions { drop_thinking: false, ..Default::default() };
        assert_bytes_eq(name, &prompt, &Conversation::from_json(&input)?.encode(&keep)?);
    }
    Ok(())
}

#[test]
fn official_round_trips() -> anyhow::Result<()> {
    let conv = Conversation::from_json(&serde_json::from_str(&read("test_input.json"))?)?;
    for (k, ignore) in [(4usize, "content"), (7, "tool_calls")] {
        let opts = EncodeOptions { context: conv.messages[..k].to_vec(), ..Default::default() };
        let text = encode_messages(&conv.messages[k..=k], &opts)?;
        let parsed = parse_completion(&text, ThinkingMode::Thinking)?;
        let mut want = normalize_message(&serde_json::to_value(&conv.messages[k])?);
        let mut got = normalize_message(&message_json(&parsed));
        want.as_object_mut().map(|o| o.remove(ignore));
        got.as_object_mut().map(|o| o.remove(ignore));
        assert_eq!(want, got, "round trip of messages[{k}]");
    }
    Ok(())
}

fn encode_vector(v: &Value) -> Result<String, Error> {
    let conv = Conversation::from_json(&json!({"messages": v["messages"], "tools": v["tools"]}))?;
    let config = &v["config"];
    let mode: ThinkingMode = config["thinking_mode"].as_str().unwrap_or("?").parse()?;
    let context = match config["context"].as_array() {
        Some(list) => messages_from_json(list)?,
        None => Vec::new(),
    };
    let opts = EncodeOptions {
        thinking_mode: mode,
        drop_thinking: config["drop_thinking"].as_bool().unwrap_or(true),
        add_bos: config["add_default_bos_token"].as_bool().unwrap_or(true),
        context,
    };
    encode_messages(&conv.messages, &opts)
}

#[test]
fn extra_encode_vectors() -> anyhow::Result<()> {
    let (mut prompts, mut errors) = (0, 0);
    for line in read("extra_cases.jsonl").lines() {
        let v: Value = serde_json::from_str(line)?;
        let name = v["name"].as_str().unwrap_or("?");
        match (encode_vector(&v), v["expected_prompt"].as_str()) {
            (Ok(p), Some(want)) => {
                assert_bytes_eq(name, want, &p);
                prompts += 1;
            }
            (Err(e), None) => {
                assert_eq!(v["expected_error"], true, "{name}");
                // Typed errors have lowercase one-line messages.
                assert!(!e.to_string().contains('\n'), "{name}: {e}");
                errors += 1;
            }
            (Ok(p), None) => panic!("{name}: expected an error, got {p:?}"),
            (Err(e), Some(_)) => panic!("{name}: unexpected error {e}"),
        }
    }
    assert_eq!((prompts, errors), (46, 8));
    Ok(())
}

#[test]
fn parse_vectors() -> anyhow::Result<()> {
    let (mut ok, mut rejected) = (0, 0);
    for line in read("parse_cases.jsonl").lines() {
        let v: Value = serde_json::from_str(line)?;
        let name = v["name"].as_str().unwrap_or("?");
        let mode: ThinkingMode = v["thinking_mode"].as_str().unwrap_or("?").parse()?;
        let completion = v["completion"].as_str().unwrap_or_default();
        match (parse_completion(completion, mode), v.get("expected_message")) {
            (Ok(m), Some(want)) => {
                assert_eq!(normalize_message(want), normalize_message(&message_json(&m)), "{name}");
                // Arguments are byte-identical to the reference's, not just equal as JSON.
                for (g, w) in
                    m.tool_calls.iter().zip(want["tool_calls"].as_array().unwrap_or(&vec![]))
                {
                    assert_eq!(
                        Some(g.arguments.as_str()),
                        w["function"]["arguments"].as_str(),
                        "{name}"
                    );
                    assert!(g.id.is_none());
                }
                ok += 1;
            }
            (Err(e), None) => {
                assert_eq!(v["expected_error"], true, "{name}");
                assert!(e.offset() <= completion.len(), "{name}: offset past the end");
                assert!(e.to_string().contains(&format!("byte {}", e.offset())), "{name}");
                rejected += 1;
            }
            (Ok(m), None) => panic!("{name}: expected rejection, got {m:?}"),
            (Err(e), Some(_)) => panic!("{name}: unexpected rejection {e}"),
        }
    }
    assert_eq!((ok, rejected), (16, 15));
    Ok(())
}

#[test]
fn incomplete_is_kept_apart_from_malformed() {
    let t = ThinkingMode::Thinking;
    let incomplete = [
        "still thinking",
        "r</think>content so far",
        "r</think>\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" string=\"true\">val",
        "r</think>\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n</｜DSML｜invoke>\n</｜DSML｜function_calls><｜end▁of",
    ];
    for text in incomplete {
        assert!(
            matches!(parse_completion(text, t), Err(ParseError::Incomplete { offset, .. }) if offset == text.len()),
            "{text:?}: {:?}",
            parse_completion(text, t)
        );
    }
    let malformed = ["r</think>a<｜end▁of▁sentence｜>b", "r\n\n<｜DSML｜function_calls>\n</think>"];
    for text in malformed {
        assert!(matches!(parse_completion(text, t), Err(ParseError::Malformed { .. })), "{text:?}");
    }
}

#[test]
fn spec_clarifications() -> anyhow::Result<()> {
    use agentgen_codec::{Message, Role, ToolCall};
    let opts = EncodeOptions::with_mode(ThinkingMode::Chat);
    // user/tool without content and developer with empty content are errors (spec §10).
    let user = Message { content: None, ..Message::user("") };
    assert!(matches!(
        encode_messages(&[user], &opts),
        Err(Error::MissingContent { index: 0, role: Role::User })
    ));
    assert!(encode_messages(&[Message::developer("")], &opts).is_err());
    // Python-only JSON in arguments is refused with a reason.
    for args in
        [r#"{"x": NaN}"#, r#"{"x": 1e400}"#, r#"{"x": "\ud800"}"#, "[1]", "{", r#"{"a":1} 2"#]
    {
        let m =
            vec![Message::user("q"), Message::assistant(None, "", vec![ToolCall::new("f", args)])];
        assert!(
            matches!(encode_messages(&m, &opts), Err(Error::InvalidArguments { index: 1, .. })),
            "{args}"
        );
    }
    // A tool message with no assistant before it.
    assert!(matches!(
        encode_messages(&[Message::tool("r", None)], &opts),
        Err(Error::ToolWithoutCall { index: 0 })
    ));
    // Top-level tools need a first system/developer message.
    let bad = json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f"}}]});
    assert!(Conversation::from_json(&bad).is_err());
    // Exact big integers and Python floats in arguments.
    let m = vec![
        Message::user("q"),
        Message::assistant(
            None,
            "",
            vec![ToolCall::new(
                "f",
                r#"{"n":123456789012345678901234567890,"x":1E5,"y":1.50,"z":-0}"#,
            )],
        ),
    ];
    let p = encode_messages(&m, &opts)?;
    assert!(p.contains(">123456789012345678901234567890<") && p.contains(">100000.0<"));
    assert!(p.contains(">1.5<") && p.contains("name=\"z\" string=\"false\">0<"), "{p}");
    // encode never changes the caller's messages.
    let before = m.clone();
    let _ = encode_messages(&m, &EncodeOptions::default());
    assert_eq!(before, m);
    Ok(())
}
