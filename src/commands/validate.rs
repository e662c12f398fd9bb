//! `agentgen validate PATH...`: format validation of Parquet datasets (ours, or any with a
//! `messages` column), JSONL conversations, or raw completion texts. One line per invalid row
//! (file, row, code, byte offset, message), a summary, `--json FILE` for a machine-readable
//! report. Exit 0 all valid, 1 some invalid, 2 unreadable input or bad usage (2 beats 1 beats 0
//! across files). Never panics on any file.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use agentgen_codec::{Conversation, ThinkingMode, Tokenizer};
use agentgen_pipeline::validate::{
    Rejection, SchemaCache, ToolSchemas, check_completion, check_conversation_cached, check_row,
    codes,
};
use anyhow::Context;
use rayon::prelude::*;
use serde::Serialize;

/// Check datasets against the DeepSeek-V3.2 format: codec strictness, the re-encode round trip,
/// and tool arguments against the tools given.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Parquet files or dataset folders, object-store URLs of sharded datasets, JSONL files
    /// (`{"messages", "tools"?}` per line), or with `--completions` raw completion texts.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Write a machine-readable report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Split to read from dataset folders (train | rejected).
    #[arg(long, default_value = "train")]
    split: String,
    /// Inputs are raw completion texts (a file = one completion; `.jsonl` = one JSON string per line).
    #[arg(long)]
    completions: bool,
    /// Also check that `token_ids` are the tokenizer's ids of `text` and `text` re-encodes.
    #[arg(long)]
    check_tokens: bool,
    /// thinking | chat: the mode of rows that do not record their own (`thinking_mode`).
    #[arg(long, default_value = "thinking")]
    thinking_mode: String,
}

#[derive(Debug, Serialize)]
struct RowIssue {
    file: String,
    row: usize,
    code: String,
    offset: Option<usize>,
    message: String,
}

#[derive(Debug, Default, Serialize)]
struct FileReport {
    file: String,
    rows: u64,
    invalid_rows: u64,
    unreadable: Option<String>,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    files: Vec<FileReport>,
    rows: u64,
    invalid_rows: u64,
    issues: Vec<RowIssue>,
    exit_code: u8,
}

pub fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    // Store URLs (`s3://...`): downloaded, one folder per shard, for the command's length.
    let (local, _fetched) = super::store::localize(std::mem::take(&mut args.paths))?;
    args.paths = local;
    let mode = match args.thinking_mode.as_str() {
        "thinking" => ThinkingMode::Thinking,
        "chat" => ThinkingMode::Chat,
        other => {
            eprintln!("error: --thinking-mode must be thinking or chat, got {other:?}");
            return Ok(ExitCode::from(2));
        }
    };
    if !matches!(args.split.as_str(), "train" | "rejected") {
        eprintln!("error: --split must be train or rejected, got {:?}", args.split);
        return Ok(ExitCode::from(2));
    }
    let mut report = Report::default();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for path in &args.paths {
        for file in expand(path, &args.split) {
            let mut fr = FileReport { file: file.display().to_string(), ..FileReport::default() };
            let mut issues = Vec::new();
            let res = if args.completions {
                check_completions_file(&file, mode, &mut fr, &mut issues)
            } else if is_jsonl(&file) {
                check_jsonl(&file, mode, &mut fr, &mut issues)
            } else {
                check_parquet(&file, mode, args.check_tokens, &mut fr, &mut issues)
            };
            if let Err(e) = res {
                fr.unreadable = Some(format!("{e:#}"));
                writeln!(out, "{}: unreadable: {e:#}", fr.file)?;
            }
            for i in &issues {
                let off = i.offset.map(|o| o.to_string()).unwrap_or_else(|| "-".into());
                writeln!(out, "{}:{}: {} at byte {}: {}", i.file, i.row, i.code, off, i.message)?;
            }
            report.rows += fr.rows;
            report.invalid_rows += fr.invalid_rows;
            report.issues.extend(issues);
            report.files.push(fr);
        }
    }
    let code = if report.files.iter().any(|f| f.unreadable.is_some()) || report.files.is_empty() {
        2
    } else if report.invalid_rows > 0 {
        1
    } else {
        0
    };
    report.exit_code = code;
    writeln!(
        out,
        "{} files, {} rows, {} valid, {} invalid{}",
        report.files.len(),
        report.rows,
        report.rows - report.invalid_rows,
        report.invalid_rows,
        if report.files.iter().any(|f| f.unreadable.is_some()) {
            ", some files unreadable"
        } else {
            ""
        }
    )?;
    out.flush()?;
    if let Some(j) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(j, text).with_context(|| format!("writing {}", j.display()))?;
    }
    Ok(ExitCode::from(code))
}

fn is_jsonl(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("jsonl" | "json" | "ndjson"))
}

/// A dataset folder expands to its finished parts of `split`; anything else stays as is.
fn expand(path: &Path, split: &str) -> Vec<PathBuf> {
    if !path.is_dir() {
        return vec![path.to_path_buf()];
    }
    let data = if path.join("data").is_dir() { path.join("data") } else { path.to_path_buf() };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&data)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n.starts_with(&format!("{split}-")) && n.ends_with(".parquet")
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    if files.is_empty() {
        // Reported as unreadable by the caller (no dataset there).
        return vec![data.join(format!("{split}-*.parquet"))];
    }
    files
}

fn push(file: &Path, row: usize, r: &Rejection, issues: &mut Vec<RowIssue>) {
    issues.push(RowIssue {
        file: file.display().to_string(),
        row,
        code: r.code().to_owned(),
        offset: r.offset,
        message: r.detail.clone(),
    });
}

/// Problems of one conversation row (empty when valid); schemas come from `cache`. A row that
/// records its own `thinking_mode` (our schema, `rollout --jsonl`) is checked in that mode.
fn row_problems(v: &serde_json::Value, mode: ThinkingMode, cache: &SchemaCache) -> Vec<Rejection> {
    let mode = v
        .get("thinking_mode")
        .and_then(serde_json::Value::as_str)
        .and_then(|m| m.parse::<ThinkingMode>().ok())
        .unwrap_or(mode);
    let messages = match Conversation::from_json(v) {
        Ok(c) => c.messages,
        Err(e) => return vec![Rejection::new(codes::FORMAT_BAD_ROW, e.to_string())],
    };
    check_conversation_cached(&messages, mode, cache)
        .into_iter()
        .map(|i| {
            let mut r = i.rejection;
            if let Some(m) = i.message {
                r.detail = format!("message {m}: {}", r.detail);
            }
            r
        })
        .collect()
}

/// Rows with their numbers: parsed, or the rejection that says why they could not be.
type Batch = Vec<(usize, Result<serde_json::Value, Rejection>)>;

/// Up to [`BATCH_ROWS`] rows of a Parquet file; a row that cannot be decoded is kept as its
/// rejection, a file-level read error ends the batch with `Err`.
fn read_batch(
    reader: &mut agentgen_datasets::ConversationReader,
) -> Result<Batch, agentgen_datasets::Error> {
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    for (row, item) in reader.by_ref() {
        match item {
            Ok(v) => batch.push((row, Ok(v))),
            Err(e) if e.is_row_error() => {
                batch.push((row, Err(Rejection::new(codes::FORMAT_BAD_ROW, e.to_string()))))
            }
            Err(e) => return Err(e),
        }
        if batch.len() == BATCH_ROWS {
            break;
        }
    }
    Ok(batch)
}

/// Rows are checked in batches of this many, in parallel, and reported in order.
const BATCH_ROWS: usize = 512;

/// Check a batch of (row number, parsed row or why it is unreadable) on all cores and record
/// the results in row order.
fn check_batch(
    file: &Path,
    batch: &mut Batch,
    mode: ThinkingMode,
    cache: &SchemaCache,
    fr: &mut FileReport,
    issues: &mut Vec<RowIssue>,
) {
    let results: Vec<Vec<Rejection>> = batch
        .par_iter()
        .map(|(_, item)| match item {
            Ok(v) => row_problems(v, mode, cache),
            Err(r) => vec![r.clone()],
        })
        .collect();
    for ((row, _), problems) in batch.drain(..).zip(results) {
        fr.rows += 1;
        if !problems.is_empty() {
            fr.invalid_rows += 1;
            for r in &problems {
                push(file, row, r, issues);
            }
        }
    }
}

fn check_jsonl(
    file: &Path,
    mode: ThinkingMode,
    fr: &mut FileReport,
    issues: &mut Vec<RowIssue>,
) -> anyhow::Result<()> {
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let cache = SchemaCache::default();
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    for (row, line) in std::io::BufReader::new(f).split(b'\n').enumerate() {
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let item = serde_json::from_slice::<serde_json::Value>(&line)
            .map_err(|e| Rejection::new(codes::FORMAT_BAD_ROW, format!("line is not JSON: {e}")));
        // JSONL rows are named by their line number, counted from 1 like editors do.
        batch.push((row + 1, item));
        if batch.len() == BATCH_ROWS {
            check_batch(file, &mut batch, mode, &cache, fr, issues);
        }
    }
    check_batch(file, &mut batch, mode, &cache, fr, issues);
    Ok(())
}

fn check_completions_file(
    file: &Path,
    mode: ThinkingMode,
    fr: &mut FileReport,
    issues: &mut Vec<RowIssue>,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let texts: Vec<(usize, Result<String, String>)> = if is_jsonl(file) {
        bytes
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
            .map(|(i, l)| {
                let text = serde_json::from_slice::<String>(l)
                    .map_err(|e| format!("line is not a JSON string: {e}"));
                // Named by line number, from 1.
                (i + 1, text)
            })
            .collect()
    } else {
        vec![(0, String::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}")))]
    };
    for (row, t) in texts {
        fr.rows += 1;
        let r = match t {
            Ok(text) => check_completion(&text, mode).err(),
            Err(m) => Some(Rejection::new(codes::FORMAT_BAD_ROW, m)),
        };
        if let Some(r) = r {
            fr.invalid_rows += 1;
            push(file, row, &r, issues);
        }
    }
    Ok(())
}

/// Tool lists parsed once per distinct `tools` text of a file, with their compiled schemas.
type ToolsCache = HashMap<String, (Arc<Vec<serde_json::Value>>, Arc<ToolSchemas>)>;

/// A file of our schema: every column of every row group decoded once (typed), and every row
/// checked by [`check_row`] on all cores while the next batch is read.
fn check_dataset_rows(
    file: &Path,
    mut reader: agentgen_datasets::RowReader,
    check_tokens: bool,
    fr: &mut FileReport,
    issues: &mut Vec<RowIssue>,
) -> anyhow::Result<()> {
    let tok = if check_tokens { Some(Tokenizer::shared()?) } else { None };
    let read = |r: &mut agentgen_datasets::RowReader| match r.next_batch() {
        None => Ok(Vec::new()),
        Some(rows) => rows.map_err(|e| anyhow::anyhow!(e)),
    };
    let mut cache = ToolsCache::new();
    let mut base = 0usize;
    let mut batch = read(&mut reader)?;
    while !batch.is_empty() {
        let tools: Vec<Result<_, String>> = batch
            .iter()
            .map(|row| {
                if let Some(t) = cache.get(&row.tools) {
                    return Ok(t.clone());
                }
                let list: Vec<serde_json::Value> = serde_json::from_str(&row.tools)
                    .map_err(|e| format!("tools is not a JSON list: {e}"))?;
                let schemas = Arc::new(ToolSchemas::from_tools(&list));
                let entry = (Arc::new(list), schemas);
                if cache.len() >= 4096 {
                    cache.clear();
                }
                cache.insert(row.tools.clone(), entry.clone());
                Ok(entry)
            })
            .collect();
        let rows = batch.len();
        let (next, results) = rayon::join(
            || read(&mut reader),
            || {
                batch
                    .into_par_iter()
                    .zip(tools.par_iter())
                    .map(|(row, tools)| match tools {
                        Ok((list, schemas)) => check_row(row, list, schemas, tok),
                        Err(e) => vec![Rejection::new(codes::FORMAT_BAD_COLUMNS, e.clone())],
                    })
                    .collect::<Vec<_>>()
            },
        );
        for (i, problems) in results.into_iter().enumerate() {
            fr.rows += 1;
            // A non-canonical tokenization is reported, not invalid.
            if problems.iter().any(|r| r.code() != codes::TOKENS_NONCANONICAL) {
                fr.invalid_rows += 1;
            }
            for r in &problems {
                push(file, base + i, r, issues);
            }
        }
        base += rows;
        batch = next.with_context(|| format!("reading {}", file.display()))?;
    }
    Ok(())
}

fn check_parquet(
    file: &Path,
    mode: ThinkingMode,
    check_tokens: bool,
    fr: &mut FileReport,
    issues: &mut Vec<RowIssue>,
) -> anyhow::Result<()> {
    match agentgen_datasets::RowReader::try_new(file) {
        Ok(reader) => return check_dataset_rows(file, reader, check_tokens, fr, issues),
        // Not written by agentgen: any Parquet file with a `messages` column.
        Err(agentgen_datasets::Error::SchemaVersion { found: None, .. }) => {}
        Err(e) => {
            return Err(anyhow::anyhow!(e)).with_context(|| format!("reading {}", file.display()));
        }
    }
    anyhow::ensure!(
        !check_tokens,
        "--check-tokens needs agentgen rows (token_ids, text); {} has no agentgen schema version",
        file.display()
    );
    let reader = agentgen_datasets::ConversationReader::try_new(file)
        .with_context(|| format!("reading {}", file.display()))?;
    let cache = SchemaCache::default();
    let mut reader = reader;
    // Batch n is checked on all cores while batch n+1 is read and decoded.
    let mut batch = read_batch(&mut reader)
        .map_err(|e| anyhow::anyhow!(e))
        .with_context(|| format!("reading {}", file.display()))?;
    while !batch.is_empty() {
        let (next, ()) = rayon::join(
            || read_batch(&mut reader),
            || check_batch(file, &mut batch, mode, &cache, fr, issues),
        );
        batch = next
            .map_err(|e| anyhow::anyhow!(e))
            .with_context(|| format!("reading {}", file.display()))?;
    }
    check_batch(file, &mut batch, mode, &cache, fr, issues);
    Ok(())
}
