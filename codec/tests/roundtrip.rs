//! Properties: `parse(encode(m)) == m` for generated assistant turns, the parsers never panic,
//! and streaming equals whole-text parsing for every chunking.

use agentgen_codec::{
    EncodeOptions, Message, StreamParser, StreamStatus, ThinkingMode, ToolCall, encode_messages,
    parse_completion, parse_lenient, tokens,
};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Text that contains no format marker (what a well-behaved model writes).
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 .,:;!?'\"\\\\/<>{}\\[\\]()\n\t=_é中文😀ß\u{202e}\u{a0}-]{0,24}"
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{1,6}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn tool_call() -> impl Strategy<Value = ToolCall> {
    let args = prop::collection::vec(("[a-z_][a-z0-9_]{0,7}|键[a-z]{0,3}", json_value()), 0..5)
        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()));
    ("[a-zA-Z_][a-zA-Z0-9_.-]{0,15}", args)
        .prop_map(|(name, args)| ToolCall::new(name, args.to_string()))
}

fn assistant() -> impl Strategy<Value = Message> {
    (text(), text(), prop::collection::vec(tool_call(), 0..4)).prop_map(|(r, c, calls)| {
        let reasoning = if r.is_empty() && calls.is_empty() { "r".to_owned() } else { r };
        Message::assistant(Some(reasoning), c, calls)
    })
}

fn args_value(call: &ToolCall) -> Value {
    serde_json::from_str(&call.arguments).unwrap_or(Value::Null)
}

/// Fragments biased towards the format's markers, for adversarial inputs.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        text(),
        Just(tokens::EOS.to_owned()),
        Just(tokens::BOS.to_owned()),
        Just(tokens::THINK_CLOSE.to_owned()),
        Just(tokens::THINK_OPEN.to_owned()),
        Just(tokens::CALLS_OPEN.to_owned()),
        Just(tokens::CALLS_CLOSE.to_owned()),
        Just(tokens::TC_START.to_owned()),
        Just("<｜DSML｜invoke name=\"f\">\n".to_owned()),
        Just("<｜DSML｜parameter name=\"a\" string=\"true\">".to_owned()),
        Just("<｜DSML｜parameter name=\"b\" string=\"false\">".to_owned()),
        Just("</｜DSML｜parameter>\n".to_owned()),
        Just("</｜DSML｜invoke>\n".to_owned()),
        Just(">\n".to_owned()),
        Just("\n".to_owned()),
        Just(" ".to_owned()),
        Just("｜DSML｜".to_owned()),
    ]
}

fn split_at_chars(s: &str, cuts: &[usize]) -> Vec<String> {
    let bounds: Vec<usize> = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
    let mut points: Vec<usize> = cuts.iter().map(|c| bounds[c % bounds.len()]).collect();
    points.push(0);
    points.push(s.len());
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| s[w[0]..w[1]].to_owned()).collect()
}

fn check_stream(text: &str, mode: ThinkingMode, cuts: &[usize]) -> Result<(), TestCaseError> {
    let mut p = StreamParser::new(mode);
    let mut last = StreamStatus::Continue;
    for chunk in split_at_chars(text, cuts) {
        last = p.push(&chunk);
    }
    let has_eos = text.contains(tokens::EOS);
    prop_assert_eq!(last == StreamStatus::Eos, has_eos);
    prop_assert_eq!(p.finish(), parse_completion(text, mode));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn parse_inverts_encode(m in assistant(), chat in any::<bool>(), cuts in prop::collection::vec(any::<usize>(), 0..6)) {
        let mode = if chat { ThinkingMode::Chat } else { ThinkingMode::Thinking };
        let opts = EncodeOptions { context: vec![Message::user("q")], ..EncodeOptions::with_mode(mode) };
        let completion = encode_messages(std::slice::from_ref(&m), &opts).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let parsed = parse_completion(&completion, mode).map_err(|e| TestCaseError::fail(format!("{e}: {completion:?}")))?;
        prop_assert_eq!(&parsed.content, m.content.as_deref().unwrap_or(""));
        let want_reasoning = if chat { "" } else { m.reasoning_content.as_deref().unwrap_or("") };
        prop_assert_eq!(parsed.reasoning_content.as_str(), want_reasoning);
        prop_assert_eq!(parsed.tool_calls.len(), m.tool_calls.len());
        for (got, want) in parsed.tool_calls.iter().zip(&m.tool_calls) {
            prop_assert_eq!(&got.name, &want.name);
            prop_assert_eq!(args_value(got), args_value(want));
        }
        // The parsed message re-encodes to the same bytes.
        let again = encode_messages(&[parsed.into_message()], &opts).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&again, &completion);
        // Lenient agrees on valid text and repairs nothing.
        let (lenient, repairs) = parse_lenient(&completion, mode).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(repairs.is_empty());
        prop_assert_eq!(lenient, parse_completion(&completion, mode).map_err(|e| TestCaseError::fail(e.to_string()))?);
        check_stream(&completion, mode, &cuts)?;
    }

    #[test]
    fn parsers_never_panic(parts in prop::collection::vec(fragment(), 0..16), chat in any::<bool>(), cuts in prop::collection::vec(any::<usize>(), 0..8)) {
        let text: String = parts.concat();
        let mode = if chat { ThinkingMode::Chat } else { ThinkingMode::Thinking };
        let strict = parse_completion(&text, mode);
        if let Err(e) = &strict {
            prop_assert!(e.offset() <= text.len());
            prop_assert!(text.is_char_boundary(e.offset()));
        }
        if let Ok((m, repairs)) = parse_lenient(&text, mode) {
            if let Ok(s) = &strict {
                prop_assert_eq!(s, &m);
                prop_assert!(repairs.is_empty());
            }
        } else {
            prop_assert!(strict.is_err());
        }
        check_stream(&text, mode, &cuts)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let text = String::from_utf8_lossy(&bytes);
        for mode in [ThinkingMode::Chat, ThinkingMode::Thinking] {
            let _ = parse_completion(&text, mode);
            let _ = parse_lenient(&text, mode);
        }
    }
}
