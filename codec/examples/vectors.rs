//! Run with: `cargo run -p agentgen-codec --example vectors < cases.jsonl`
//!
//! Reads lines in the shape of `shared/fixtures/codec/*.jsonl` (kind `encode` with `messages`,
//! `tools`, `config`; kind `parse` with `completion`, `thinking_mode`) and prints, per line,
//! `{"ok": <prompt or message>}` or `{"error": "..."}`. Used for differential testing against
//! the Python reference.

use std::io::{BufRead, Write};

use agentgen_codec::{
    Conversation, EncodeOptions, ThinkingMode, encode_messages, messages_from_json,
    parse_completion,
};
use serde_json::{Value, json};

fn encode(v: &Value) -> Result<Value, String> {
    let conv = Conversation::from_json(&json!({"messages": v["messages"], "tools": v["tools"]}))
        .map_err(|e| e.to_string())?;
    let c = &v["config"];
    let mode: ThinkingMode = c["thinking_mode"]
        .as_str()
        .unwrap_or("?")
        .parse()
        .map_err(|e: agentgen_codec::Error| e.to_string())?;
    let context = match c["context"].as_array() {
        Some(list) => messages_from_json(list).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    let opts = EncodeOptions {
        thinking_mode: mode,
        drop_thinking: c["drop_thinking"].as_bool().unwrap_or(true),
        add_bos: c["add_default_bos_token"].as_bool().unwrap_or(true),
        context,
    };
    encode_messages(&conv.messages, &opts).map(Value::String).map_err(|e| e.to_string())
}

fn parse(v: &Value) -> Result<Value, String> {
    let mode: ThinkingMode = v["thinking_mode"]
        .as_str()
        .unwrap_or("?")
        .parse()
        .map_err(|e: agentgen_codec::Error| e.to_string())?;
    let m = parse_completion(v["completion"].as_str().unwrap_or_default(), mode)
        .map_err(|e| e.to_string())?;
    Ok(json!({"role": "assistant", "content": m.content, "reasoning_content": m.reasoning_content,
        "tool_calls": m.tool_calls}))
}

fn main() -> anyhow::Result<()> {
    let stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lines() {
        let v: Value = serde_json::from_str(&line?)?;
        let r = match v["kind"].as_str() {
            Some("parse") => parse(&v),
            _ => encode(&v),
        };
        let o = match r {
            Ok(x) => json!({ "ok": x }),
            Err(e) => json!({ "error": e }),
        };
        writeln!(out, "{o}")?;
    }
    Ok(())
}
