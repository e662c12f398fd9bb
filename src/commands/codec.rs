//! `agentgen codec`: encode conversations, parse completions, tokenize, run conformance vectors.
//!
//! Flags are fixed by `shared/notes/interfaces.md` (tooling drives them).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agentgen_codec::{
    AssistantMessage, Conversation, EncodeOptions, ThinkingMode, Tokenizer, encode_messages,
    messages_from_json, parse_completion, parse_lenient, tokenize_with_mask,
};
use anyhow::{Context, bail};
use rayon::prelude::*;
use serde_json::{Value, json};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Encode a conversation (`{"messages": [...], "tools": [...]?}` on stdin) as a V3.2 prompt.
    ///
    /// A top-level `tools` list is attached to messages[0], which must then be a system or
    /// developer message. The prompt is printed with no trailing newline. With `--batch FILE`
    /// each line of FILE is one conversation and each output line is the prompt as a JSON
    /// string (`null` for a line that fails; its error goes to stderr and the exit code is 1).
    Encode(EncodeArgs),
    /// Parse a completion (the text generated after the prompt, special tokens kept) from stdin.
    ///
    /// Prints the assistant message as JSON. Strict by default (exactly DeepSeek's reference);
    /// `--lenient` repairs common slips and prints `{"message": ..., "repairs": [...]}`. A
    /// rejected completion exits 1 with a one-line error naming the byte offset.
    Parse(ParseArgs),
    /// Tokenize a prompt from stdin with the embedded V3.2 tokenizer: prints `{"ids": [...]}`.
    ///
    /// With `--mask`, stdin is a conversation and the output is `{"ids": [...], "mask": [...]}`
    /// (mask 1 on tokens the assistant produced after the last user/developer message).
    Tokenize(TokenizeArgs),
    /// Run conformance vectors: `*.jsonl` files of `encode`/`parse` cases and official
    /// `test_input*.json` files (paired with `test_output*.txt`).
    ///
    /// Prints one line per failing case (name and first differing byte), then
    /// `N passed, M failed`; exits 1 if any failed.
    Conformance(ConformanceArgs),
}

/// Flags of `codec encode`.
#[derive(Debug, clap::Args)]
pub struct EncodeArgs {
    /// `thinking` (prompt ends in `<think>`) or `chat` (ends in `</think>`).
    #[arg(long, default_value = "thinking")]
    thinking_mode: ThinkingMode,
    /// Drop reasoning of earlier turns (the default; accepted for explicitness).
    #[arg(long, conflicts_with = "no_drop_thinking")]
    drop_thinking: bool,
    /// Keep earlier developer messages instead of refusing them (reference drop_thinking=False).
    #[arg(long)]
    no_drop_thinking: bool,
    /// Do not start the prompt with `<｜begin▁of▁sentence｜>`.
    #[arg(long)]
    no_bos: bool,
    /// Encode every line of this JSONL file; print one JSON string per line.
    #[arg(long, value_name = "FILE.jsonl")]
    batch: Option<PathBuf>,
}

/// Flags of `codec parse`.
#[derive(Debug, clap::Args)]
pub struct ParseArgs {
    /// Mode the completion was generated in.
    #[arg(long, default_value = "thinking")]
    thinking_mode: ThinkingMode,
    /// Repair common slips (missing EOS, missing `</think>`, stray whitespace around tags).
    #[arg(long)]
    lenient: bool,
}

/// Flags of `codec tokenize`.
#[derive(Debug, clap::Args)]
pub struct TokenizeArgs {
    /// Read a conversation and also print the loss mask.
    #[arg(long)]
    mask: bool,
    /// Mode used to encode the conversation (with `--mask`).
    #[arg(long, default_value = "thinking")]
    thinking_mode: ThinkingMode,
}

/// Arguments of `codec conformance`.
#[derive(Debug, clap::Args)]
pub struct ConformanceArgs {
    /// Vector files (`*.jsonl`) and official inputs (`test_input*.json`).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Encode(a) => encode(a),
        Command::Parse(a) => parse(a),
        Command::Tokenize(a) => tokenize(a),
        Command::Conformance(a) => conformance(&a.files),
    }
}

fn read_stdin() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s).context("reading stdin")?;
    Ok(s)
}

fn encode(a: EncodeArgs) -> anyhow::Result<ExitCode> {
    let opts = EncodeOptions {
        thinking_mode: a.thinking_mode,
        drop_thinking: !a.no_drop_thinking,
        add_bos: !a.no_bos,
        context: Vec::new(),
    };
    let Some(path) = a.batch else {
        let input: Value = serde_json::from_str(&read_stdin()?).context("stdin is not json")?;
        let prompt = Conversation::from_json(&input).and_then(|c| c.encode(&opts));
        return match prompt {
            Ok(p) => {
                let mut out = std::io::stdout().lock();
                out.write_all(p.as_bytes())?;
                out.flush()?;
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Ok(ExitCode::from(1))
            }
        };
    };
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout());
    let mut failed = 0usize;
    // A three-stage pipeline over chunks of lines: while chunk n is encoded on all cores (rayon,
    // order kept), chunk n-1's prompts are written and chunk n+1 is read.
    let mut first_line = 1usize;
    let mut chunk = read_chunk(&mut reader)
        .with_context(|| format!("reading {} line {first_line}", path.display()))?;
    let mut pending: Vec<Result<String, String>> = Vec::new();
    let mut pending_first = first_line;
    loop {
        let (encoded, (next, written)) = rayon::join(
            || chunk.par_iter().map(|line| encode_line(line, &opts)).collect::<Vec<_>>(),
            || {
                let written = write_results(&mut out, &pending, &path, pending_first);
                let next = if chunk.is_empty() { Ok(Vec::new()) } else { read_chunk(&mut reader) };
                (next, written)
            },
        );
        failed += written?;
        if chunk.is_empty() {
            break;
        }
        pending = encoded;
        pending_first = first_line;
        first_line += chunk.len();
        chunk =
            next.with_context(|| format!("reading {} after line {first_line}", path.display()))?;
    }
    out.flush()?;
    Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Write one chunk's prompts in input order (`null` plus a message naming the line for a
/// failed one); returns how many failed.
fn write_results(
    out: &mut impl Write,
    results: &[Result<String, String>],
    path: &Path,
    first_line: usize,
) -> std::io::Result<usize> {
    let mut failed = 0;
    for (i, result) in results.iter().enumerate() {
        match result {
            Ok(line) => out.write_all(line.as_bytes())?,
            Err(e) => {
                failed += 1;
                eprintln!("{}:{}: {e}", path.display(), first_line + i);
                out.write_all(b"null\n")?;
            }
        }
    }
    Ok(failed)
}

/// Up to 8 MiB (or 4096 lines) of raw lines, newline stripped; empty at end of input.
fn read_chunk(reader: &mut impl BufRead) -> std::io::Result<Vec<Vec<u8>>> {
    let mut lines = Vec::new();
    let mut bytes = 0usize;
    while bytes < (8 << 20) && lines.len() < 4096 {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        bytes += line.len();
        lines.push(line);
    }
    Ok(lines)
}

/// One batch line: the prompt as a JSON string literal plus newline, or why it failed.
fn encode_line(line: &[u8], opts: &EncodeOptions) -> Result<String, String> {
    let prompt = Conversation::from_json_slice(line)
        .and_then(|c| c.encode(opts))
        .map_err(|e| e.to_string())?;
    let mut out = String::with_capacity(prompt.len() + prompt.len() / 16 + 3);
    agentgen_codec::python_json_str(&prompt, &mut out);
    out.push('\n');
    Ok(out)
}

/// The reference's output shape: `{"role", "content", "reasoning_content", "tool_calls"}`.
fn message_json(m: &AssistantMessage) -> Value {
    json!({
        "role": "assistant",
        "content": m.content,
        "reasoning_content": m.reasoning_content,
        "tool_calls": m.tool_calls,
    })
}

fn parse(a: ParseArgs) -> anyhow::Result<ExitCode> {
    let text = read_stdin()?;
    let out = if a.lenient {
        parse_lenient(&text, a.thinking_mode)
            .map(|(m, repairs)| json!({"message": message_json(&m), "repairs": repairs}))
    } else {
        parse_completion(&text, a.thinking_mode).map(|m| message_json(&m))
    };
    match out {
        Ok(v) => {
            println!("{v}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

fn tokenize(a: TokenizeArgs) -> anyhow::Result<ExitCode> {
    let input = read_stdin()?;
    if !a.mask {
        let ids = Tokenizer::shared()?.encode(&input)?;
        println!("{}", json!({ "ids": ids }));
        return Ok(ExitCode::SUCCESS);
    }
    let v: Value = serde_json::from_str(&input).context("stdin is not a json conversation")?;
    let conv = Conversation::from_json(&v)?;
    let (ids, mask) =
        tokenize_with_mask(&conv.messages, &EncodeOptions::with_mode(a.thinking_mode))?;
    println!("{}", json!({ "ids": ids, "mask": mask }));
    Ok(ExitCode::SUCCESS)
}

/// Tally of a conformance run.
#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
}

impl Tally {
    fn check(&mut self, case: &str, expected: &str, actual: &str) {
        if expected == actual {
            self.passed += 1;
        } else {
            self.fail(case, &diff_at(expected, actual));
        }
    }
    fn fail(&mut self, case: &str, why: &str) {
        self.failed += 1;
        println!("FAIL {case}: {why}");
    }
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

fn conformance(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut tally = Tally::default();
    for path in files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.ends_with(".jsonl") {
            run_jsonl(path, &mut tally)?;
        } else if name.starts_with("test_input") && name.ends_with(".json") {
            run_official(path, name, &mut tally)?;
        } else {
            bail!("{}: not a conformance file (*.jsonl or test_input*.json)", path.display());
        }
    }
    println!("{} passed, {} failed", tally.passed, tally.failed);
    Ok(if tally.failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn run_official(path: &Path, name: &str, tally: &mut Tally) -> anyhow::Result<()> {
    let out_name = name.replacen("input", "output", 1).replacen(".json", ".txt", 1);
    let out_path = path.with_file_name(&out_name);
    let input: Value = serde_json::from_str(
        &std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("{} is not json", path.display()))?;
    let expected = std::fs::read_to_string(&out_path)
        .with_context(|| format!("reading {}", out_path.display()))?;
    let case = path.display().to_string();
    match Conversation::from_json(&input).and_then(|c| c.encode(&EncodeOptions::default())) {
        Ok(prompt) => tally.check(&case, expected.trim(), prompt.trim()),
        Err(e) => tally.fail(&case, &format!("encode failed: {e}")),
    }
    if name == "test_input.json" {
        let conv = Conversation::from_json(&input)?;
        for (k, ignore) in [(4usize, "content"), (7, "tool_calls")] {
            let case = format!("{case} round trip messages[{k}]");
            if conv.messages.len() <= k {
                tally.fail(&case, "input has too few messages");
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
                    let want = serde_json::to_value(&conv.messages[k])?;
                    let mut want = normalize_message(&want);
                    let mut got = normalize_message(&message_json(&parsed));
                    for v in [&mut want, &mut got] {
                        if let Some(o) = v.as_object_mut() {
                            o.remove(ignore);
                        }
                    }
                    tally.check(&case, &want.to_string(), &got.to_string());
                }
                Err(e) => tally.fail(&case, &e),
            }
        }
    }
    Ok(())
}

/// A message as a comparable JSON value: `role`, `content` and `reasoning_content` as strings
/// (absent = ""), tool calls as `{name, arguments}` with arguments parsed when they are JSON.
fn normalize_message(m: &Value) -> Value {
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

fn run_jsonl(path: &Path, tally: &mut Tally) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {} line {}", path.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{} line {}: invalid json", path.display(), n + 1))?;
        let name = v.get("name").and_then(Value::as_str).unwrap_or("?");
        let case = format!("{}:{} {name}", path.display(), n + 1);
        let expect_error = v.get("expected_error").and_then(Value::as_bool) == Some(true);
        match v.get("kind").and_then(Value::as_str) {
            Some("encode") => {
                let result = encode_case(&v);
                match (result, v.get("expected_prompt").and_then(Value::as_str)) {
                    (Ok(p), Some(want)) if !expect_error => tally.check(&case, want, &p),
                    (Ok(p), _) => tally.fail(
                        &case,
                        &format!("expected an error, got a prompt of {} bytes", p.len()),
                    ),
                    (Err(_), _) if expect_error => tally.passed += 1,
                    (Err(e), _) => tally.fail(&case, &format!("unexpected error: {e}")),
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
                    (Ok(m), Some(want)) if !expect_error => tally.check(
                        &case,
                        &normalize_message(want).to_string(),
                        &normalize_message(&message_json(&m)).to_string(),
                    ),
                    (Ok(_), _) => tally.fail(&case, "expected a rejection, the completion parsed"),
                    (Err(_), _) if expect_error => tally.passed += 1,
                    (Err(e), _) => tally.fail(&case, &format!("unexpected rejection: {e}")),
                }
            }
            other => tally.fail(&case, &format!("unknown kind {other:?}")),
        }
    }
    Ok(())
}

/// Encode one `kind: encode` vector; any error (bad message, bad mode, reference error) is Err.
fn encode_case(v: &Value) -> anyhow::Result<String> {
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
        Err(e) => return Err(e.into()),
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
    Ok(encode_messages(&conv.messages, &opts)?)
}
