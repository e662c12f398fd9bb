//! `agentgen validate` as a library: format validation of Parquet datasets (ours, or any with
//! a `messages` column), JSONL conversations and raw completion texts, file by file, into a
//! typed [`Report`]. The CLI parses flags, prints and exits; everything it reports comes from
//! here.
//!
//! A file of our schema is read whole: every column of every row group is decoded (typed) and
//! every row checked by [`check_row`]. Row groups are decoded on several threads (one per
//! thread, at most 16, over all the files of [`validate_files`], small files side
//! by side), each batch's rows are checked on all cores while the group's next batch decodes,
//! and the results are put back in row order, so the report does not depend on the number of
//! threads. Memory stays flat in file size: a few batches per decoder are in flight, whatever
//! the files hold.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use agentgen_codec::{Conversation, ThinkingMode, Tokenizer};
use agentgen_datasets::{ConversationReader, RowView, ScanFile, Split};
use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::validate::{
    Rejection, SchemaCache, ToolSchemas, ValidatorCache, check_completion,
    check_conversation_cached, check_row, codes,
};

/// What to check and how.
#[derive(Debug, Clone)]
pub struct ValidateOptions {
    /// The split read from dataset folders.
    pub split: Split,
    /// Inputs are raw completion texts (a file = one completion; `.jsonl` = one JSON string
    /// per line).
    pub completions: bool,
    /// Also check that `token_ids` are the tokenizer's ids of `text`.
    pub check_tokens: bool,
    /// The mode of rows that do not record their own (`thinking_mode`).
    pub thinking_mode: ThinkingMode,
    /// Rows checked so far, over all files, for a progress display (added to as batches
    /// finish, from any thread).
    pub rows_checked: Option<Arc<AtomicU64>>,
}

/// Where checked rows are counted ([`ValidateOptions::rows_checked`]), if anywhere.
#[derive(Clone, Copy)]
struct Tick<'a>(Option<&'a AtomicU64>);

impl Tick<'_> {
    fn add(self, rows: usize) {
        if let Some(c) = self.0 {
            c.fetch_add(rows as u64, Ordering::Relaxed);
        }
    }
}

/// One problem of one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowIssue {
    /// The file, as given (or found in a dataset folder).
    pub file: String,
    /// The row: its 0-based position in a Parquet file, its line number (from 1) in JSONL.
    pub row: usize,
    /// The stable code (`format.text_mismatch`, ...).
    pub code: String,
    /// Byte offset into the text the check looked at, when there is one.
    pub offset: Option<usize>,
    /// What exactly is wrong.
    pub message: String,
}

/// What one file gave.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FileReport {
    /// The file.
    pub file: String,
    /// Rows checked.
    pub rows: u64,
    /// Rows with at least one problem (a non-canonical tokenization alone is not one).
    pub invalid_rows: u64,
    /// Why the file could not be read (to the end), if it could not.
    pub unreadable: Option<String>,
}

/// The whole run: every file, every issue, and the exit code.
#[derive(Debug, Serialize)]
pub struct Report {
    /// One entry per file, in the order checked.
    pub files: Vec<FileReport>,
    /// Rows checked in all.
    pub rows: u64,
    /// Invalid rows in all.
    pub invalid_rows: u64,
    /// Every issue, file by file, in row order.
    pub issues: Vec<RowIssue>,
    /// 2 when a file is unreadable (or there was none), else 1 when a row is invalid, else 0.
    pub exit_code: u8,
}

impl Default for Report {
    fn default() -> Self {
        Report::new()
    }
}

impl Report {
    /// Add one file's results (and update the exit code).
    pub fn add(&mut self, file: FileReport, issues: Vec<RowIssue>) {
        self.rows += file.rows;
        self.invalid_rows += file.invalid_rows;
        self.issues.extend(issues);
        self.files.push(file);
        self.exit_code = self.code();
    }

    /// Whether some file could not be read.
    pub fn any_unreadable(&self) -> bool {
        self.files.iter().any(|f| f.unreadable.is_some())
    }

    fn code(&self) -> u8 {
        if self.any_unreadable() || self.files.is_empty() {
            2
        } else if self.invalid_rows > 0 {
            1
        } else {
            0
        }
    }

    /// A report of no file yet (exit code 2: no input is unusable input).
    pub fn new() -> Self {
        Report { files: Vec::new(), rows: 0, invalid_rows: 0, issues: Vec::new(), exit_code: 2 }
    }

    /// The one-line summary: `N files, R rows, V valid, I invalid[, some files unreadable]`.
    pub fn summary(&self) -> String {
        format!(
            "{} files, {} rows, {} valid, {} invalid{}",
            self.files.len(),
            self.rows,
            self.rows - self.invalid_rows,
            self.invalid_rows,
            if self.any_unreadable() { ", some files unreadable" } else { "" }
        )
    }
}

/// Whether `p` is read as JSON lines (by its extension).
pub fn is_jsonl(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("jsonl" | "json" | "ndjson"))
}

/// The files `path` stands for: a dataset folder expands to its finished parts of `split`
/// (sorted; a folder without any is one path that does not exist, reported unreadable);
/// anything else stays as is.
pub fn expand(path: &Path, split: Split) -> Vec<PathBuf> {
    if !path.is_dir() {
        return vec![path.to_path_buf()];
    }
    let data = if path.join("data").is_dir() { path.join("data") } else { path.to_path_buf() };
    let prefix = format!("{split}-");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&data)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".parquet"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    if files.is_empty() {
        return vec![data.join(format!("{split}-*.parquet"))];
    }
    files
}

/// Row groups decoded at once at most, over all files being checked, whatever the number of
/// cores: each holds two batches and its decoder's buffers (~55 MB a thread measured on rows
/// of ~2,400 tokens, with the allocator's per-thread caches), so memory stays bounded on a
/// large machine while the checks of each batch still run on every core. Fewer cores, fewer
/// decoders: decoding is ~60 % of the work, so one decoder per core keeps every core busy
/// with the checks it feeds (16 cores: ~105,000 rows/s, BENCHMARKS.md).
const MAX_DECODERS: usize = 16;

/// The decoders this process may run at once: one per rayon thread, at most [`MAX_DECODERS`].
fn decoder_budget() -> usize {
    rayon::current_num_threads().clamp(1, MAX_DECODERS)
}

/// The footer of `file` when `opts` check it as Parquet and the footer reads (`None` for JSONL,
/// completions and unreadable files: their errors come when they are checked).
pub fn parquet_footer(file: &Path, opts: &ValidateOptions) -> Option<agentgen_datasets::FileInfo> {
    if opts.completions || is_jsonl(file) {
        return None;
    }
    agentgen_datasets::file_info(file).ok()
}

/// The decoders checking `file` would use: one per row group of a Parquet file (at most
/// `budget`), else one.
fn decoders_for(file: &Path, opts: &ValidateOptions, budget: usize) -> usize {
    parquet_footer(file, opts).map_or(1, |info| info.row_groups.clamp(1, budget))
}

/// Check `files` in order, several at once: consecutive files whose row groups together fit the
/// decoder budget are checked side by side (a folder of many small parts, as `--flush-secs`
/// writes them, keeps every core busy; one large file uses the whole budget on its own), and
/// `each` receives every file's report and issues in the order of `files`, as
/// [`validate_file`] gives them; its first error stops the run (no further file is read) and
/// is returned.
pub fn validate_files<E>(
    files: &[PathBuf],
    opts: &ValidateOptions,
    mut each: impl FnMut(FileReport, Vec<RowIssue>) -> Result<(), E>,
) -> Result<(), E> {
    let budget = decoder_budget();
    // Footers read on all cores (a folder can hold thousands of small parts).
    let wants: Vec<usize> = files.par_iter().map(|f| decoders_for(f, opts, budget)).collect();
    let mut rest: Vec<(&PathBuf, usize)> = files.iter().zip(wants).collect();
    while !rest.is_empty() {
        // The window: at least one file, then as many as fit beside it.
        let (mut take, mut used) = (0, 0);
        for (_, want) in &rest {
            if take > 0 && used + want > budget {
                break;
            }
            used += want;
            take += 1;
        }
        let window: Vec<(&PathBuf, usize)> = rest.drain(..take).collect();
        let results: Vec<(FileReport, Vec<RowIssue>)> = window
            .into_par_iter()
            .map(|(file, decoders)| check_file(file, opts, decoders))
            .collect();
        for (fr, issues) in results {
            each(fr, issues)?;
        }
    }
    Ok(())
}

/// Check one file (Parquet, JSONL, or with `completions` raw texts): its report and its issues
/// in row order. Never panics on any file; a file that cannot be read to the end has
/// `unreadable` set and the results of the rows read before.
pub fn validate_file(file: &Path, opts: &ValidateOptions) -> (FileReport, Vec<RowIssue>) {
    check_file(file, opts, decoder_budget())
}

/// [`validate_file`] with at most `decoders` row groups of the file decoded at once.
fn check_file(file: &Path, opts: &ValidateOptions, decoders: usize) -> (FileReport, Vec<RowIssue>) {
    let mut fr = FileReport { file: file.display().to_string(), ..FileReport::default() };
    let mut issues = Vec::new();
    let mode = opts.thinking_mode;
    let tick = Tick(opts.rows_checked.as_deref());
    let res = if opts.completions {
        check_completions_file(file, mode, tick, &mut fr, &mut issues)
    } else if is_jsonl(file) {
        check_jsonl(file, mode, tick, &mut fr, &mut issues)
    } else {
        check_parquet(file, mode, opts.check_tokens, decoders, tick, &mut fr, &mut issues)
    };
    if let Err(e) = res {
        fr.unreadable = Some(e);
    }
    (fr, issues)
}

/// `e` and its causes, joined by `": "` (how the CLI has always printed them).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// `reading FILE: ` and the error's chain.
fn reading(file: &Path, e: &(dyn std::error::Error + 'static)) -> String {
    format!("reading {}: {}", file.display(), chain(e))
}

fn issue(file: &Path, row: usize, r: &Rejection) -> RowIssue {
    RowIssue {
        file: file.display().to_string(),
        row,
        code: r.code().to_owned(),
        offset: r.offset,
        message: r.detail.clone(),
    }
}

/// Record one checked row's problems.
fn record(
    file: &Path,
    row: usize,
    problems: &[Rejection],
    fr: &mut FileReport,
    issues: &mut Vec<RowIssue>,
) {
    fr.rows += 1;
    // A non-canonical tokenization is reported, not invalid.
    if problems.iter().any(|r| r.code() != codes::TOKENS_NONCANONICAL) {
        fr.invalid_rows += 1;
    }
    issues.extend(problems.iter().map(|r| issue(file, row, r)));
}

// ---------------------------------------------------------------------------------------------
// Files of our schema

/// One tool list of a file, its schemas compiled, with a process-unique id under which each
/// thread keeps a parsed copy to lend to rows ([`with_tools`]).
struct ToolsEntry {
    id: u64,
    /// Tools in the list.
    len: usize,
    schemas: ToolSchemas,
}

type ToolsResult = Result<Arc<ToolsEntry>, String>;

/// Tool lists of one file by their text, parsed and compiled once (bounded).
#[derive(Default)]
struct ToolsCache {
    map: Mutex<HashMap<String, ToolsResult>>,
    validators: ValidatorCache,
}

fn parse_tools(text: &str) -> Result<Vec<Value>, String> {
    serde_json::from_str::<Vec<Value>>(text).map_err(|e| format!("tools is not a JSON list: {e}"))
}

impl ToolsCache {
    const CAPACITY: usize = 4096;

    fn get(&self, text: &str) -> ToolsResult {
        if let Ok(map) = self.map.lock()
            && let Some(t) = map.get(text)
        {
            return t.clone();
        }
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let entry = parse_tools(text).map(|list| {
            let schemas = ToolSchemas::from_tools_cached(&list, &self.validators);
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            Arc::new(ToolsEntry { id, len: list.len(), schemas })
        });
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= Self::CAPACITY {
                map.clear();
            }
            map.insert(text.to_owned(), entry.clone());
        }
        entry
    }

    /// The entry of every row of a batch: a dictionary-read `tools` column is looked up once
    /// per key, a plain one once per row.
    fn entries(&self, rows: &[RowView<'_>]) -> Vec<ToolsResult> {
        let mut by_key: HashMap<usize, ToolsResult> = HashMap::new();
        rows.iter()
            .map(|r| match r.tools_key {
                Some(k) => by_key.entry(k).or_insert_with(|| self.get(r.tools)).clone(),
                None => self.get(r.tools),
            })
            .collect()
    }
}

thread_local! {
    /// This thread's parsed copies of tool lists, by [`ToolsEntry::id`].
    static LENT_TOOLS: RefCell<HashMap<u64, Vec<Value>>> = RefCell::new(HashMap::new());
}

/// Run `f` with a parsed copy of `entry`'s tool list (whose text is `text`) that this thread
/// keeps between rows, so a row's check borrows it instead of parsing or deep-copying the list
/// (every schema in it) per row.
fn with_tools<R>(
    entry: &ToolsEntry,
    text: &str,
    f: impl FnOnce(&mut Vec<Value>) -> R,
) -> Result<R, String> {
    const KEPT: usize = 256;
    let mut tools = match LENT_TOOLS.with_borrow_mut(|m| m.remove(&entry.id)) {
        Some(t) => t,
        None => parse_tools(text)?,
    };
    let out = f(&mut tools);
    // Only a list handed back whole is kept for the next row.
    if tools.len() == entry.len {
        LENT_TOOLS.with_borrow_mut(|m| {
            if m.len() >= KEPT {
                m.clear();
            }
            m.insert(entry.id, tools);
        });
    }
    Ok(out)
}

/// What one row group gave: rows checked (in order) until the end or the first read error.
#[derive(Default)]
struct GroupOutcome {
    report: FileReport,
    issues: Vec<RowIssue>,
    error: Option<String>,
}

/// Check row group `group` of `scan`: its batches decode one after the other, each batch's
/// rows checked on all cores while the next decodes.
fn check_group(
    scan: &ScanFile,
    group: usize,
    tok: Option<&Tokenizer>,
    cache: &ToolsCache,
    tick: Tick<'_>,
) -> GroupOutcome {
    let file = scan.path();
    let mut out = GroupOutcome::default();
    let Some((mut base, _)) = scan.row_group_rows(group) else { return out };
    // The file's first batch failing is reported without the `reading FILE` prefix (the file
    // name is in the error), every later one with it, as ever.
    let mut first_of_file = group == 0;
    let fail = |e: &agentgen_datasets::Error, first: bool| {
        if first { chain(e) } else { reading(file, e) }
    };
    let mut batches = match scan.row_group_batches(group) {
        Ok(b) => b,
        Err(e) => {
            out.error = Some(fail(&e, first_of_file));
            return out;
        }
    };
    let mut next = batches.next();
    while let Some(item) = next {
        let batch = match item {
            Ok(b) => b,
            Err(e) => {
                out.error = Some(fail(&e, first_of_file));
                break;
            }
        };
        let rows = match scan.rows(&batch, base) {
            Ok(r) => r,
            Err(e) => {
                out.error = Some(fail(&e, first_of_file));
                break;
            }
        };
        first_of_file = false;
        let n = rows.len();
        let tools = cache.entries(&rows);
        let (following, results) = rayon::join(
            || batches.next(),
            || {
                rows.into_par_iter()
                    .zip(tools.par_iter())
                    .map(|(row, tools)| {
                        let checked = tools.as_ref().map_err(Clone::clone).and_then(|entry| {
                            let text = row.tools;
                            with_tools(entry, text, |list| {
                                check_row(row, list, &entry.schemas, tok)
                            })
                        });
                        checked
                            .unwrap_or_else(|e| vec![Rejection::new(codes::FORMAT_BAD_COLUMNS, e)])
                    })
                    .collect::<Vec<_>>()
            },
        );
        for (i, problems) in results.iter().enumerate() {
            record(file, base + i, problems, &mut out.report, &mut out.issues);
        }
        tick.add(n);
        base += n;
        next = following;
    }
    out
}

/// A file of our schema: its row groups decoded by up to `decoders` workers (worker `w` takes
/// groups `w`, `w + W`, ...), results put back in row order; a read error ends the file there,
/// with the rows before it counted.
fn check_dataset_rows(
    scan: &ScanFile,
    check_tokens: bool,
    decoders: usize,
    tick: Tick<'_>,
    fr: &mut FileReport,
    issues: &mut Vec<RowIssue>,
) -> Result<(), String> {
    let tok = if check_tokens { Some(Tokenizer::shared().map_err(|e| chain(&e))?) } else { None };
    let cache = ToolsCache::default();
    let groups = scan.num_row_groups();
    let workers = decoders.clamp(1, groups.max(1));
    // Groups after a failed one are not read (their results would be dropped).
    let failed = AtomicUsize::new(usize::MAX);
    let mut outcomes: Vec<(usize, GroupOutcome)> = (0..workers)
        .into_par_iter()
        .map(|w| {
            let mut done = Vec::new();
            for g in (w..groups).step_by(workers) {
                if g > failed.load(Ordering::Relaxed) {
                    break;
                }
                let o = check_group(scan, g, tok, &cache, tick);
                let stop = o.error.is_some();
                if stop {
                    failed.fetch_min(g, Ordering::Relaxed);
                }
                done.push((g, o));
                if stop {
                    break;
                }
            }
            done
        })
        .flatten()
        .collect();
    outcomes.sort_by_key(|(g, _)| *g);
    for (_, o) in outcomes {
        fr.rows += o.report.rows;
        fr.invalid_rows += o.report.invalid_rows;
        issues.extend(o.issues);
        if let Some(e) = o.error {
            return Err(e);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Any Parquet file with a `messages` column, JSONL, completions

/// Problems of one conversation row (empty when valid); schemas come from `cache`. A row that
/// records its own `thinking_mode` (our schema, `rollout --jsonl`) is checked in that mode.
fn row_problems(v: &Value, mode: ThinkingMode, cache: &SchemaCache) -> Vec<Rejection> {
    let mode = v
        .get("thinking_mode")
        .and_then(Value::as_str)
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
type Batch = Vec<(usize, Result<Value, Rejection>)>;

/// Rows are checked in batches of this many, in parallel, and reported in order.
const BATCH_ROWS: usize = 512;

/// Up to [`BATCH_ROWS`] rows of a Parquet file; a row that cannot be decoded is kept as its
/// rejection, a file-level read error ends the batch with `Err`.
fn read_batch(reader: &mut ConversationReader) -> Result<Batch, agentgen_datasets::Error> {
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    for (row, item) in reader.by_ref() {
        match item {
            Ok(v) => batch.push((row, Ok(v))),
            Err(e) if e.is_row_error() => {
                batch.push((row, Err(Rejection::new(codes::FORMAT_BAD_ROW, e.to_string()))));
            }
            Err(e) => return Err(e),
        }
        if batch.len() == BATCH_ROWS {
            break;
        }
    }
    Ok(batch)
}

/// Check a batch of (row number, parsed row or why it is unreadable) on all cores and record
/// the results in row order.
fn check_batch(
    file: &Path,
    batch: &mut Batch,
    mode: ThinkingMode,
    cache: &SchemaCache,
    tick: Tick<'_>,
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
    tick.add(batch.len());
    for ((row, _), problems) in batch.drain(..).zip(results) {
        fr.rows += 1;
        if !problems.is_empty() {
            fr.invalid_rows += 1;
            issues.extend(problems.iter().map(|r| issue(file, row, r)));
        }
    }
}

fn check_jsonl(
    file: &Path,
    mode: ThinkingMode,
    tick: Tick<'_>,
    fr: &mut FileReport,
    issues: &mut Vec<RowIssue>,
) -> Result<(), String> {
    let f = std::fs::File::open(file)
        .map_err(|e| format!("opening {}: {}", file.display(), chain(&e)))?;
    let cache = SchemaCache::default();
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    for (row, line) in std::io::BufReader::new(f).split(b'\n').enumerate() {
        let line = line.map_err(|e| reading(file, &e))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let item = serde_json::from_slice::<Value>(&line)
            .map_err(|e| Rejection::new(codes::FORMAT_BAD_ROW, format!("line is not JSON: {e}")));
        // JSONL rows are named by their line number, counted from 1 like editors do.
        batch.push((row + 1, item));
        if batch.len() == BATCH_ROWS {
            check_batch(file, &mut batch, mode, &cache, tick, fr, issues);
        }
    }
    check_batch(file, &mut batch, mode, &cache, tick, fr, issues);
    Ok(())
}

fn check_completions_file(
    file: &Path,
    mode: ThinkingMode,
    tick: Tick<'_>,
    fr: &mut FileReport,
    issues: &mut Vec<RowIssue>,
) -> Result<(), String> {
    let bytes = std::fs::read(file).map_err(|e| reading(file, &e))?;
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
        tick.add(1);
        let r = match t {
            Ok(text) => check_completion(&text, mode).err(),
            Err(m) => Some(Rejection::new(codes::FORMAT_BAD_ROW, m)),
        };
        if let Some(r) = r {
            fr.invalid_rows += 1;
            issues.push(issue(file, row, &r));
        }
    }
    Ok(())
}

fn check_parquet(
    file: &Path,
    mode: ThinkingMode,
    check_tokens: bool,
    decoders: usize,
    tick: Tick<'_>,
    fr: &mut FileReport,
    issues: &mut Vec<RowIssue>,
) -> Result<(), String> {
    match ScanFile::open(file) {
        Ok(scan) => return check_dataset_rows(&scan, check_tokens, decoders, tick, fr, issues),
        // Not written by agentgen: any Parquet file with a `messages` column.
        Err(agentgen_datasets::Error::SchemaVersion { found: None, .. }) => {}
        Err(e) => return Err(reading(file, &e)),
    }
    if check_tokens {
        return Err(format!(
            "--check-tokens needs agentgen rows (token_ids, text); {} has no agentgen schema \
             version",
            file.display()
        ));
    }
    let mut reader = ConversationReader::try_new(file).map_err(|e| reading(file, &e))?;
    let cache = SchemaCache::default();
    // Batch n is checked on all cores while batch n+1 is read and decoded.
    let mut batch = read_batch(&mut reader).map_err(|e| reading(file, &e))?;
    while !batch.is_empty() {
        let (next, ()) = rayon::join(
            || read_batch(&mut reader),
            || check_batch(file, &mut batch, mode, &cache, tick, fr, issues),
        );
        batch = next.map_err(|e| reading(file, &e))?;
    }
    check_batch(file, &mut batch, mode, &cache, tick, fr, issues);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The progress counter ends at the rows the report counts, over files of every kind
    /// checked side by side (JSONL, completions, unreadable).
    #[test]
    fn rows_checked_adds_up_to_the_report() {
        let dir = tempfile::tempdir().expect("tmp");
        let line = r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}"#;
        let mut files = Vec::new();
        for (i, n) in [3usize, 700, 1].into_iter().enumerate() {
            let f = dir.path().join(format!("f{i}.jsonl"));
            std::fs::write(&f, format!("{line}\n").repeat(n)).expect("write");
            files.push(f);
        }
        files.push(dir.path().join("missing.jsonl"));
        let counter = Arc::new(AtomicU64::new(0));
        let opts = ValidateOptions {
            split: Split::Train,
            completions: false,
            check_tokens: false,
            thinking_mode: ThinkingMode::Thinking,
            rows_checked: Some(Arc::clone(&counter)),
        };
        let mut report = Report::new();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().expect("pool");
        pool.install(|| {
            validate_files(&files, &opts, |fr, issues| {
                report.add(fr, issues);
                Ok::<(), ()>(())
            })
        })
        .expect("no sink error");
        assert_eq!(report.rows, 704);
        assert_eq!(counter.load(Ordering::Relaxed), 704);
        assert_eq!(report.files.len(), 4);
        assert!(report.files[3].unreadable.is_some(), "{:?}", report.files[3]);
    }
}
