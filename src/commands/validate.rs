//! `agentgen validate PATH...`: format validation of Parquet datasets (ours, or any with a
//! `messages` column), JSONL conversations, or raw completion texts. One line per invalid row
//! (file, row, code, byte offset, message), a summary, `--json FILE` for a machine-readable
//! report. Exit 0 all valid, 1 some invalid, 2 unreadable input or bad usage (2 beats 1 beats 0
//! across files). Never panics on any file.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use agentgen_codec::ThinkingMode;
use agentgen_datasets::Split;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use agentgen_pipeline::validate_files::{
    Report, ValidateOptions, expand, parquet_footer, validate_files,
};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

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
    /// No progress bar (it is drawn on stderr only when stderr is a terminal).
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    // Store URLs (`s3://...`): downloaded, one folder per shard, for the command's length.
    let (local, _fetched) = super::store::localize(std::mem::take(&mut args.paths))?;
    args.paths = local;
    let thinking_mode = match args.thinking_mode.as_str() {
        "thinking" => ThinkingMode::Thinking,
        "chat" => ThinkingMode::Chat,
        other => {
            eprintln!("error: --thinking-mode must be thinking or chat, got {other:?}");
            return Ok(ExitCode::from(2));
        }
    };
    let Some(split) = Split::parse(&args.split) else {
        eprintln!("error: --split must be train or rejected, got {:?}", args.split);
        return Ok(ExitCode::from(2));
    };
    let files: Vec<_> = args.paths.iter().flat_map(|p| expand(p, split)).collect();
    let rows_checked = Arc::new(AtomicU64::new(0));
    let opts = ValidateOptions {
        split,
        completions: args.completions,
        check_tokens: args.check_tokens,
        thinking_mode,
        rows_checked: Some(Arc::clone(&rows_checked)),
    };
    let mut report = Report::new();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let bar = if args.quiet { ProgressBar::hidden() } else { progress_bar(&files, &opts) };
    let drawn = !bar.is_hidden();
    let done = AtomicBool::new(false);
    let checked = std::thread::scope(|s| {
        // The bar follows the row count (not drawn at all when hidden).
        let ticker = drawn.then(|| {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    bar.set_position(rows_checked.load(Ordering::Relaxed));
                    std::thread::park_timeout(std::time::Duration::from_millis(100));
                }
            })
        });
        // Files are checked several at once; their results come here in order.
        let checked = validate_files(&files, &opts, |fr, issues| {
            // Lines go out with the bar lifted, so a terminal shows them whole (the bar must
            // not be asked anything inside `suspend`: it holds the bar's lock).
            let printed = bar.suspend(|| {
                print_file(&mut out, &fr, &issues)?;
                if drawn { out.flush() } else { Ok(()) }
            });
            report.add(fr, issues);
            printed
        });
        done.store(true, Ordering::Relaxed);
        if let Some(t) = ticker {
            t.thread().unpark();
        }
        checked
    });
    bar.finish_and_clear();
    checked?;
    writeln!(out, "{}", report.summary())?;
    out.flush()?;
    if let Some(j) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(j, text).with_context(|| format!("writing {}", j.display()))?;
    }
    Ok(ExitCode::from(report.exit_code))
}

/// A bar over the rows the files' footers announce, or a row counter when some file has none
/// (JSONL, completions, unreadable footers).
fn progress_bar(files: &[PathBuf], opts: &ValidateOptions) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    // Not a terminal: nothing is drawn, so no footer is read for a total.
    if bar.is_hidden() {
        return bar;
    }
    let total: Option<u64> =
        files.par_iter().map(|f| parquet_footer(f, opts).map(|i| i.rows)).sum();
    let template = match total {
        Some(n) => {
            bar.set_length(n);
            "{spinner} [{elapsed_precise}] {bar:40} {human_pos}/{human_len} rows ({per_sec}, eta {eta})"
        }
        None => "{spinner} [{elapsed_precise}] {human_pos} rows ({per_sec})",
    };
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// One file's lines: unreadable, then its issues in row order.
fn print_file(
    out: &mut impl Write,
    fr: &agentgen_pipeline::validate_files::FileReport,
    issues: &[agentgen_pipeline::validate_files::RowIssue],
) -> std::io::Result<()> {
    if let Some(e) = &fr.unreadable {
        writeln!(out, "{}: unreadable: {e}", fr.file)?;
    }
    for i in issues {
        let off = i.offset.map_or_else(|| "-".into(), |o| o.to_string());
        writeln!(out, "{}:{}: {} at byte {}: {}", i.file, i.row, i.code, off, i.message)?;
    }
    Ok(())
}
