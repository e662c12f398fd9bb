//! The rolling, crash-safe Parquet writer.
//!
//! Every part is written under a temporary name (`*.parquet.tmp`), fsynced and renamed to its
//! final name only once its footer is written, so a file named `*.parquet` is always complete.
//! A run killed at any point leaves at most a few `.tmp` files, which readers ignore and
//! [`crate::finished_sample_ids`] deletes.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::convert::rows_to_batch;
use crate::folder::{create_exclusive, hex};
use crate::manifest::Manifest;
use crate::schema::{SCHEMA_VERSION, SCHEMA_VERSION_KEY, col, schema};
use crate::{Error, Result, SampleRow, Split};

/// The folder under the dataset root that holds the Parquet files.
pub const DATA_DIR: &str = "data";

/// Suffix of a part being written.
pub const TMP_SUFFIX: &str = ".tmp";

/// How a [`DatasetWriter`] lays out and encodes its files.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// This writer's shard (0-based); part of every file name.
    pub shard_index: u32,
    /// Number of shards in the job array.
    pub shard_count: u32,
    /// Rows per file before a new part is started.
    pub rows_per_file: usize,
    /// Maximum rows per row group.
    pub row_group_rows: usize,
    /// Maximum encoded bytes per row group (whichever limit comes first).
    pub row_group_bytes: usize,
    /// zstd compression level (1..=22).
    pub zstd_level: i32,
    /// Extra Parquet key-value metadata written into every file (run id, ...).
    pub metadata: Vec<(String, String)>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            shard_index: 0,
            shard_count: 1,
            rows_per_file: 50_000,
            // ~1k trajectories (tens of MB uncompressed) keeps a row group cheap to fetch for
            // a streaming reader (HF datasets viewer, pyarrow iter_batches) and big enough for
            // zstd to find the repetition in tool lists and prompts.
            row_group_rows: 1_000,
            row_group_bytes: 128 * 1024 * 1024,
            zstd_level: 3,
            metadata: Vec::new(),
        }
    }
}

/// One finished file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrittenFile {
    /// Path relative to the dataset root (`data/train-00000-00000.parquet`).
    pub path: String,
    /// The split it holds.
    pub split: Split,
    /// Rows in the file.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the file (hex), recorded when it was written; `--resume` checks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// What [`DatasetWriter::finish`] wrote in this session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteSummary {
    /// Files completed by this writer, in completion order.
    pub files: Vec<WrittenFile>,
    /// Rows written per split.
    pub rows: BTreeMap<Split, u64>,
}

impl WriteSummary {
    /// Rows written to `split`.
    pub fn rows_in(&self, split: Split) -> u64 {
        self.rows.get(&split).copied().unwrap_or(0)
    }
}

/// Where finished parts go besides the local folder (an object store). The writer calls it
/// right after a part is renamed and the journal (`manifest.json`) lists it, from the writer's
/// own thread; an error stops the run like a write error.
pub trait Publish: Send + Sync + std::fmt::Debug {
    /// `file` (under `dir`) is finished; `journal` is the folder's manifest that now records it.
    fn publish_part(
        &self,
        dir: &Path,
        file: &WrittenFile,
        journal: Option<&Manifest>,
    ) -> Result<()>;
}

/// File name of a part: `{split}-{shard:05}-{part:05}.parquet`.
pub fn part_file_name(split: Split, shard: u32, part: u32) -> String {
    format!("{split}-{shard:05}-{part:05}.parquet")
}

/// Parse a finished part's file name into (split, shard, part).
pub fn parse_part_file_name(name: &str) -> Option<(Split, u32, u32)> {
    let stem = name.strip_suffix(".parquet")?;
    let mut it = stem.rsplitn(3, '-');
    let part = it.next()?;
    let shard = it.next()?;
    let split = Split::parse(it.next()?)?;
    let digits = |s: &str| s.len() >= 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(part) || !digits(shard) {
        return None;
    }
    Some((split, shard.parse().ok()?, part.parse().ok()?))
}

/// A part's file, hashed as it is written (so its SHA-256 costs no second read).
struct HashingFile {
    file: File,
    hasher: Sha256,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

struct OpenPart {
    writer: ArrowWriter<HashingFile>,
    tmp: PathBuf,
    path: PathBuf,
    name: String,
    rows: usize,
}

/// Writes rows to rolling, zstd-compressed Parquet parts, routing each row to split `train` or
/// `rejected` by its verdict. Not `Sync`: own it from one task (the pipeline's writer actor).
pub struct DatasetWriter {
    data_dir: PathBuf,
    opts: WriterOptions,
    props: WriterProperties,
    open: [Option<OpenPart>; 2],
    next_part: [u32; 2],
    buffers: [Vec<SampleRow>; 2],
    summary: WriteSummary,
    /// The dataset root and its manifest, rewritten each time a part is finished.
    journal: Option<(PathBuf, Manifest)>,
    /// Called with every finished part (after the journal).
    publisher: Option<std::sync::Arc<dyn Publish>>,
}

fn idx(split: Split) -> usize {
    match split {
        Split::Train => 0,
        Split::Rejected => 1,
    }
}

fn split_of(i: usize) -> Split {
    if i == 0 { Split::Train } else { Split::Rejected }
}

/// Rows converted to Arrow in one go (bounded so memory stays flat with large rows).
const MAX_BATCH_ROWS: usize = 512;

impl DatasetWriter {
    /// A writer into `dir/data/`, created if missing. On resume it continues with part numbers
    /// after the highest finished one of its shard and split, and removes its shard's stale
    /// `.tmp` files.
    pub fn try_new(dir: impl AsRef<Path>, opts: WriterOptions) -> Result<Self> {
        if opts.rows_per_file == 0 || opts.row_group_rows == 0 || opts.row_group_bytes == 0 {
            return Err(Error::InvalidOptions {
                reason: "rows_per_file, row_group_rows and row_group_bytes must be positive".into(),
            });
        }
        if opts.shard_count == 0 || opts.shard_index >= opts.shard_count {
            return Err(Error::InvalidOptions {
                reason: format!(
                    "shard index {} is not below shard count {}",
                    opts.shard_index, opts.shard_count
                ),
            });
        }
        let zstd = ZstdLevel::try_new(opts.zstd_level).map_err(|e| Error::InvalidOptions {
            reason: format!("zstd level {}: {e}", opts.zstd_level),
        })?;
        let data_dir = dir.as_ref().join(DATA_DIR);
        fs::create_dir_all(&data_dir).map_err(|e| Error::io("create", &data_dir, e))?;

        let mut next_part = [0u32; 2];
        for entry in fs::read_dir(&data_dir).map_err(|e| Error::io("list", &data_dir, e))? {
            let entry = entry.map_err(|e| Error::io("list", &data_dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(base) = name.strip_suffix(TMP_SUFFIX) {
                if parse_part_file_name(base).is_some_and(|(_, s, _)| s == opts.shard_index) {
                    let p = entry.path();
                    fs::remove_file(&p).map_err(|e| Error::io("remove stale", &p, e))?;
                }
            } else if let Some((split, shard, part)) = parse_part_file_name(&name)
                && shard == opts.shard_index
            {
                let n = &mut next_part[idx(split)];
                *n = (*n).max(part.saturating_add(1));
            }
        }

        let mut kv = vec![
            KeyValue::new(SCHEMA_VERSION_KEY.to_owned(), SCHEMA_VERSION.to_string()),
            KeyValue::new("agentgen.shard".to_owned(), opts.shard_index.to_string()),
            KeyValue::new("agentgen.shard_count".to_owned(), opts.shard_count.to_string()),
        ];
        kv.extend(opts.metadata.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())));
        let mut builder = WriterProperties::builder()
            .set_compression(Compression::ZSTD(zstd))
            .set_max_row_group_row_count(Some(opts.row_group_rows))
            .set_max_row_group_bytes(Some(opts.row_group_bytes))
            .set_created_by(format!("agentgen-datasets {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(kv))
            // Dictionaries only where values repeat across rows; on token ids and long text
            // they cost time and fall back to plain anyway.
            .set_dictionary_enabled(false);
        for c in [
            col::RUN_ID,
            col::FAMILY,
            col::THINKING_MODE,
            col::TOOLS,
            col::REJECTION_CODE,
            col::FINISH_REASON,
            col::POLICY,
            col::MODEL,
            col::SAMPLING,
        ] {
            builder = builder.set_column_dictionary_enabled(ColumnPath::from(c), true);
        }
        Ok(DatasetWriter {
            data_dir,
            opts,
            props: builder.build(),
            open: [None, None],
            next_part,
            buffers: [Vec::new(), Vec::new()],
            summary: WriteSummary::default(),
            journal: None,
            publisher: None,
        })
    }

    /// Keep `manifest` as the folder's journal: each finished part is appended to its `files`
    /// and `dir/manifest.json` rewritten (atomically) right after the part's rename, so the
    /// manifest always lists exactly the parts a later `--resume` may trust.
    pub fn with_journal(mut self, dir: impl AsRef<Path>, manifest: Manifest) -> Self {
        self.journal = Some((dir.as_ref().to_owned(), manifest));
        self
    }

    /// Hand every finished part to `publisher` (after the journal records it).
    pub fn with_publisher(mut self, publisher: Option<std::sync::Arc<dyn Publish>>) -> Self {
        self.publisher = publisher;
        self
    }

    /// Whether rows are waiting in buffers or open parts (not yet in a finished file).
    pub fn has_unfinished_rows(&self) -> bool {
        self.buffers.iter().any(|b| !b.is_empty()) || self.open.iter().any(Option::is_some)
    }

    /// Queue one row for its split; it is encoded in batches and lands in a finished file when
    /// its part rolls over or on [`finish`](Self::finish).
    pub fn write(&mut self, row: SampleRow) -> Result<()> {
        let i = idx(row.split());
        self.buffers[i].push(row);
        if self.buffers[i].len() >= self.opts.row_group_rows.min(MAX_BATCH_ROWS) {
            self.flush_split(i)?;
        }
        Ok(())
    }

    /// Rows written so far per split (finished or still in open parts).
    pub fn rows_written(&self) -> &BTreeMap<Split, u64> {
        &self.summary.rows
    }

    /// Finish the open parts now (footer, fsync, rename) so every row written so far is in a
    /// finished file; later rows start new parts. Call it at checkpoints or on SIGINT.
    pub fn close_parts(&mut self) -> Result<()> {
        for i in 0..2 {
            self.flush_split(i)?;
            self.close_part(i)?;
        }
        Ok(())
    }

    /// Close every open file (footer, fsync, rename) and report what was written.
    pub fn finish(mut self) -> Result<WriteSummary> {
        self.close_parts()?;
        Ok(std::mem::take(&mut self.summary))
    }

    fn flush_split(&mut self, i: usize) -> Result<()> {
        while !self.buffers[i].is_empty() {
            if self.open[i].is_none() {
                self.open[i] = Some(self.open_part(i)?);
            }
            let Some(part) = self.open[i].as_mut() else { break };
            let n = self.buffers[i].len().min(self.opts.rows_per_file - part.rows);
            let rows: Vec<SampleRow> = self.buffers[i].drain(..n).collect();
            let batch = rows_to_batch(&rows)?;
            part.writer.write(&batch).map_err(|e| Error::write(&part.tmp, e))?;
            part.rows += n;
            *self.summary.rows.entry(split_of(i)).or_default() += n as u64;
            if part.rows >= self.opts.rows_per_file {
                self.close_part(i)?;
            }
        }
        Ok(())
    }

    fn open_part(&mut self, i: usize) -> Result<OpenPart> {
        let name = part_file_name(split_of(i), self.opts.shard_index, self.next_part[i]);
        self.next_part[i] += 1;
        let path = self.data_dir.join(&name);
        let tmp = self.data_dir.join(format!("{name}{TMP_SUFFIX}"));
        let file = create_exclusive(&tmp)?;
        let file = HashingFile { file, hasher: Sha256::new() };
        let writer = ArrowWriter::try_new(file, schema(), Some(self.props.clone()))
            .map_err(|e| Error::write(&tmp, e))?;
        Ok(OpenPart { writer, tmp, path, name, rows: 0 })
    }

    fn close_part(&mut self, i: usize) -> Result<()> {
        let Some(part) = self.open[i].take() else { return Ok(()) };
        // `into_inner` writes the footer and flushes.
        let HashingFile { file, hasher } =
            part.writer.into_inner().map_err(|e| Error::write(&part.tmp, e))?;
        file.sync_all().map_err(|e| Error::io("fsync", &part.tmp, e))?;
        let bytes = file.metadata().map_err(|e| Error::io("stat", &part.tmp, e))?.len();
        drop(file);
        fs::rename(&part.tmp, &part.path).map_err(|e| Error::io("rename", &part.tmp, e))?;
        sync_dir(&self.data_dir)?;
        let written = WrittenFile {
            path: format!("{DATA_DIR}/{}", part.name),
            split: split_of(i),
            rows: part.rows as u64,
            bytes,
            sha256: Some(hex(&hasher.finalize())),
        };
        if let Some((dir, manifest)) = self.journal.as_mut() {
            manifest.files.push(written.clone());
            manifest.write(dir)?;
        }
        if let Some(p) = &self.publisher {
            let root = self.data_dir.parent().unwrap_or(&self.data_dir);
            p.publish_part(root, &written, self.journal.as_ref().map(|(_, m)| m))?;
        }
        self.summary.files.push(written);
        Ok(())
    }
}

/// fsync a directory so a rename in it survives a power cut (a no-op where directories cannot
/// be opened, e.g. Windows).
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    match File::open(dir) {
        Ok(d) => d.sync_all().or_else(|e| {
            // Some filesystems refuse fsync on directories; the rename itself still happened.
            if e.kind() == std::io::ErrorKind::InvalidInput { Ok(()) } else { Err(e) }
        }),
        Err(_) => Ok(()),
    }
    .map_err(|e| Error::io("fsync", dir, e))
}
