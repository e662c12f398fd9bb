//! `agentgen codec`: encode conversations, parse completions, tokenize, run conformance vectors.
//!
//! Flags are fixed by `shared/notes/interfaces.md` (tooling drives them).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agentgen_codec::{
    Conversation, EncodeOptions, ThinkingMode, Tokenizer, parse_completion, parse_lenient,
    tokenize_with_mask,
};
use anyhow::Context;
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

fn parse(a: ParseArgs) -> anyhow::Result<ExitCode> {
    let text = read_stdin()?;
    let out = if a.lenient {
        parse_lenient(&text, a.thinking_mode)
            .map(|(m, repairs)| json!({"message": agentgen_codec::conformance::message_json(&m), "repairs": repairs}))
    } else {
        parse_completion(&text, a.thinking_mode)
            .map(|m| agentgen_codec::conformance::message_json(&m))
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

fn conformance(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let tally = agentgen_codec::conformance::run_files(files, &mut |case, why| {
        println!("FAIL {case}: {why}");
    })?;
    println!("{} passed, {} failed", tally.passed, tally.failed);
    Ok(if tally.failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
