//! The conformance runner: DeepSeek's official encoder outputs (`test_input*.json` beside
//! `test_output*.txt`) and vector files (`*.jsonl`, `kind: encode | parse`) checked against
//! this crate's encoder and strict parser, with the first differing byte of each failure.
//! `agentgen codec conformance` prints what this module returns.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::{
    AssistantMessage, Conversation, EncodeOptions, Error, Result, ThinkingMode, encode_messages,
    messages_from_json, parse_completion,
};

/// Counts of a conformance run (each failure was handed to the caller as it happened).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Cases that matched.
    pub passed: usize,
    /// Cases that did not.
    pub failed: usize,
}

/// One run: the tally and the callback that receives each failing case and why.
struct Run<'a> {
    tally: Tally,
    on_fail: &'a mut dyn FnMut(&str, &str),
}

impl Run<'_> {
    fn check(&mut self, case: &str, expected: &str, actual: &str) {
        if expected == actual {
            self.tally.passed += 1;
        } else {
            self.fail(case, &diff_at(expected, actual));
        }
    }
    fn fail(&mut self, case: &str, why: &str) {
        self.tally.failed += 1;
        (self.on_fail)(case, why);
    }
}

/// Runs every file (`*.jsonl` vectors, `test_input*.json` official inputs) in order; each
/// failing case goes to `on_fail(case, why)` as it happens. An unreadable file or line, or a
/// file of another kind, is an error (the tally so far is lost with it).
pub fn run_files(files: &[PathBuf], on_fail: &mut dyn FnMut(&str, &str)) -> Result<Tally> {
    let mut run = Run { tally: Tally::default(), on_fail };
    for path in files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.ends_with(".jsonl") {
            run_jsonl(path, &mut run)?;
        } else if name.starts_with("test_input") && name.ends_with(".json") {
            run_official(path, name, &mut run)?;
        } else {
            return Err(Error::Conformance {
                context: format!(
                    "{}: not a conformance file (*.jsonl or test_input*.json)",
                    path.display()
                ),
                source: None,
            });
        }
    }
    Ok(run.tally)
}

/// `context` with an underlying cause, for [`Error::Conformance`].
fn ctx<E: std::error::Error + Send + Sync + 'static>(context: String) -> impl FnOnce(E) -> Error {
    move |e| Error::Conformance { context, source: Some(Box::new(e)) }
}

/// The reference's output shape: `{"role", "content", "reasoning_content", "tool_calls"}`.
pub fn message_json(m: &AssistantMessage) -> Value {
    json!({
        "role": "assistant",
        "content": m.content,
        "reasoning_content": m.reasoning_content,
        "tool_calls": m.tool_calls,
    })
}

/// "first difference at byte N: expected ... got ...", with a short window of each side.
fn diff_at(expected: &str, actual: &str) -> String {
    let n = expected.bytes().zip(actual.bytes()).take_while(|(a, b)| a == b).count();
    let window = |s: &str| {
        let mut start = n.min(s.len());
        while !s.is_char_boundary(start) {
            start -= 1;
        }
        s[start..].chars().take(40).collect::<String>()
    };
    format!(
        "first difference at byte {n}: expected {:?} got {:?}",
        window(expected),
        window(actual)
    )
}

fn run_official(path: &Path, name: &str, run: &mut Run<'_>) -> Result<()> {
    let out_name = name.replacen("input", "output", 1).replacen(".json", ".txt", 1);
    let out_path = path.with_file_name(&out_name);
    let text = std::fs::read_to_string(path).map_err(ctx(format!("reading {}", path.display())))?;
    let input: Value =
        serde_json::from_str(&text).map_err(ctx(format!("{} is not json", path.display())))?;
    let expected = std::fs::read_to_string(&out_path)
        .map_err(ctx(format!("reading {}", out_path.display())))?;
    let case = path.display().to_string();
    match Conversation::from_json(&input).and_then(|c| c.encode(&EncodeOptions::default())) {
        Ok(prompt) => run.check(&case, expected.trim(), prompt.trim()),
        Err(e) => run.fail(&case, &format!("encode failed: {e}")),
    }
    if name == "test_input.json" {
        let conv = Conversation::from_json(&input)?;
        for (k, ignore) in [(4usize, "content"), (7, "tool_calls")] {
            let case = format!("{case} round trip messages[{k}]");
            if conv.messages.len() <= k {
                run.fail(&case, "input has too few messages");
                continue;
            }
            let opts = EncodeOptions { context: conv.messages[..k].to_vec(), ..Default::default() };
            let result = encode_messages(&conv.messages[k..=k], &opts)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    parse_completion(&text, ThinkingMode::Thinking).map_err(|e| e.to_string())
                });
            match result {
                Ok(parsed) => {
                    let want = serde_json::to_value(&conv.messages[k])
                        .map_err(|e| Error::Conformance { context: e.to_string(), source: None })?;
                    let mut want = normalize_message(&want);
                    let mut got = normalize_message(&message_json(&parsed));
                    for v in [&mut want, &mut got] {
                        if let Some(o) = v.as_object_mut() {
                            o.remove(ignore);
                        }
                    }
                    run.check(&case, &want.to_string(), &got.to_string());
                }
                Err(e) => run.fail(&case, &e),
            }
        }
    }
    Ok(())
}

/// A message as a comparable JSON value: `role`, `content` and `reasoning_content` as strings
/// (absent = ""), tool calls as `{name, arguments}` with arguments parsed when they are JSON.
pub fn normalize_message(m: &Value) -> Value {
    let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let calls: Vec<Value> = m
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .map(|c| {
                    let f = c.get("function").unwrap_or(c);
                    let args = f.get("arguments").cloned().unwrap_or(Value::Null);
                    let args = match &args {
                        Value::String(s) => serde_json::from_str(s).unwrap_or(args),
                        _ => args,
                    };
                    json!({"name": f.get("name").cloned().unwrap_or(Value::Null), "arguments": args})
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "role": text("role"),
        "content": text("content"),
        "reasoning_content": text("reasoning_content"),
        "tool_calls": calls,
    })
}

fn run_jsonl(path: &Path, run: &mut Run<'_>) -> Result<()> {
    let file = File::open(path).map_err(ctx(format!("opening {}", path.display())))?;
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(ctx(format!("reading {} line {}", path.display(), n + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).map_err(ctx(format!(
            "{} line {}: invalid json",
            path.display(),
            n + 1
        )))?;
        let name = v.get("name").and_then(Value::as_str).unwrap_or("?");
        let case = format!("{}:{} {name}", path.display(), n + 1);
        let expect_error = v.get("expected_error").and_then(Value::as_bool) == Some(true);
        match v.get("kind").and_then(Value::as_str) {
            Some("encode") => {
                let result = encode_case(&v);
                match (result, v.get("expected_prompt").and_then(Value::as_str)) {
                    (Ok(p), Some(want)) if !expect_error => run.check(&case, want, &p),
                    (Ok(p), _) => run.fail(
                        &case,
                        &format!("expected an error, got a prompt of {} bytes", p.len()),
                    ),
                    (Err(_), _) if expect_error => run.tally.passed += 1,
                    (Err(e), _) => run.fail(&case, &format!("unexpected error: {e}")),
                }
            }
            Some("parse") => {
                let completion = v.get("completion").and_then(Value::as_str).unwrap_or("");
                let mode = v.get("thinking_mode").and_then(Value::as_str).unwrap_or("thinking");
                let result = mode
                    .parse::<ThinkingMode>()
                    .map_err(|e| e.to_string())
                    .and_then(|m| parse_completion(completion, m).map_err(|e| e.to_string()));
                match (result, v.get("expected_message")) {
                    (Ok(m), Some(want)) if !expect_error => run.check(
                        &case,
                        &normalize_message(want).to_string(),
                        &normalize_message(&message_json(&m)).to_string(),
                    ),
                    (Ok(_), _) => run.fail(&case, "expected a rejection, the completion parsed"),
                    (Err(_), _) if expect_error => run.tally.passed += 1,
                    (Err(e), _) => run.fail(&case, &format!("unexpected rejection: {e}")),
                }
            }
            other => run.fail(&case, &format!("unknown kind {other:?}")),
        }
    }
    Ok(())
}

/// Encode one `kind: encode` vector; any error (bad message, bad mode, reference error) is Err.
fn encode_case(v: &Value) -> Result<String> {
    let conv = Conversation::from_json(&json!({
        "messages": v.get("messages").cloned().unwrap_or(Value::Null),
        "tools": v.get("tools").cloned().unwrap_or(Value::Null),
    }))?;
    let config = v.get("config").cloned().unwrap_or_else(|| json!({}));
    let flag = |k: &str| config.get(k).and_then(Value::as_bool).unwrap_or(true);
    let mode = config.get("thinking_mode").and_then(Value::as_str).unwrap_or("thinking");
    let thinking_mode = match mode.parse::<ThinkingMode>() {
        Ok(m) => m,
        // The reference validates the mode only when it renders a message.
        Err(_) if conv.messages.is_empty() => ThinkingMode::Thinking,
        Err(e) => return Err(e),
    };
    let context = match config.get("context").and_then(Value::as_array) {
        Some(list) => messages_from_json(list)?,
        None => Vec::new(),
    };
    let opts = EncodeOptions {
        thinking_mode,
        drop_thinking: flag("drop_thinking"),
        add_bos: flag("add_default_bos_token"),
        context,
    };
    encode_messages(&conv.messages, &opts)
}
