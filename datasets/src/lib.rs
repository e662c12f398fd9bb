//! `agentgen-datasets`: the versioned Arrow schema of a trajectory row, the crash-safe rolling
//! Parquet writer, readers (typed rows, and conversations from any Parquet file with a
//! `messages` column), `manifest.json` and the generated dataset card.
//!
//! It owns the on-disk layout (HF datasets style):
//!
//! ```text
//! DIR/data/train-{shard:05}-{part:05}.parquet     accepted rows
//! DIR/data/rejected-{shard:05}-{part:05}.parquet  rejected rows (rejection_code, detail)
//! DIR/manifest.json                               provenance and counts
//! DIR/README.md                                   dataset card
//! ```
//!
//! It must not run rollouts or validators: rows arrive with their [`Verdict`] from `pipeline`,
//! the only crate that constructs [`SampleRow`]s. Columns are documented in `SCHEMA.md` and
//! [`COLUMNS`].
//!
//! Main types: [`SampleRow`], [`DatasetWriter`] (+ [`WriterOptions`]), [`RowReader`] /
//! [`read_rows`], [`ConversationReader`], [`Manifest`], [`write_dataset_card`].
//!
//! # Example: write, then read back
//!
//! ```
//! use agentgen_codec::{Message, ToolCall};
//! use agentgen_datasets::{DatasetWriter, SampleRow, Split, Verdict, WriterOptions, read_rows};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let row = SampleRow {
//!     sample_id: "s0".into(), task_id: "calc@1/7/0".into(), group_id: "g0".into(),
//!     run_id: "r0".into(), family: "calc".into(), instance_seed: 7, task_seed: 0,
//!     sample_index: 0, difficulty: 1, thinking_mode: "thinking".into(), tools: "[]".into(),
//!     messages: vec![
//!         Message::system("You are a calculator."),
//!         Message::user("2+2?"),
//!         Message::assistant(Some("add".into()), "", vec![ToolCall::new("add", r#"{"a":2,"b":2}"#)]),
//!         Message::tool("4", None),
//!         Message::assistant(None, "4", vec![]),
//!     ],
//!     text: "<encoded>".into(), token_ids: vec![0, 1, 2], loss_mask: vec![0, 1, 1],
//!     logprobs: None, reward: 1.0, advantage: None, passed: true, checks: "[]".into(),
//!     verdict: Verdict::Accepted, turns: 2, tool_calls: 1, finish_reason: "stop".into(),
//!     policy: "reference".into(), model: None, sampling: "{}".into(), warnings: vec![],
//!     timings_ms: "{}".into(), token_source: "reference".into(),
//!     episode_id: "s-0".into(), turn_index: 0, turns_total: 1, env_package: None,
//!     env_package_sha256: None, env_python: None,
//! };
//! let rejected = SampleRow {
//!     sample_id: "s1".into(),
//!     verdict: Verdict::Rejected { code: "outcome.failed".into(), detail: "wrong sum".into() },
//!     ..row.clone()
//! };
//!
//! let mut writer = DatasetWriter::try_new(dir.path(), WriterOptions::default())?;
//! writer.write(row.clone())?;
//! writer.write(rejected.clone())?;
//! let summary = writer.finish()?;
//! assert_eq!(summary.rows_in(Split::Train), 1);
//!
//! let train = read_rows(&dir.path().join("data/train-00000-00000.parquet"))?;
//! assert_eq!(train, vec![row]);
//! let other = read_rows(&dir.path().join("data/rejected-00000-00000.parquet"))?;
//! assert_eq!(other, vec![rejected]);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod card;
mod convert;
mod error;
mod folder;
mod inspect;
mod json;
mod manifest;
mod pages;
mod reader;
mod row;
mod schema;
mod stats;
mod writer;

pub use card::{CARD_FILE, render_dataset_card, write_dataset_card};
pub use convert::{RowView, policy_token_source, rows_to_batch};
pub use error::{Error, Result};
pub use folder::{
    FolderLock, FolderState, LOCK_FILE, UNRECORDED_SUFFIX, classify, clear_dataset,
    create_exclusive, reconcile_parts, sha256_file, sha256_hex, this_process,
};
pub use inspect::{Duplicates, FolderSummary, Inspection, TokenCounts, inspect};
pub use json::{trajectory_hash, trajectory_hash_hex};
pub use manifest::{
    ApiUsage, Counts, MANIFEST_FILE, Manifest, PackageRecord, SplitCounts, TokenTotals,
};
pub use pages::MAX_PAGE_BYTES;
pub use reader::{
    ConversationReader, FileInfo, FinishedRows, MAX_BATCH_BYTES, PartFile, RowReader, ScanFile,
    file_info, finished_rows, finished_sample_ids, list_parts, list_temp_files, read_columns,
    read_present_columns, read_rows, read_rows_at, read_string_column,
};
pub use row::{SampleRow, Split, Verdict};
pub use schema::{
    COLUMNS, ColumnDoc, READABLE_SCHEMA_VERSIONS, SCHEMA_VERSION, SCHEMA_VERSION_KEY, col, schema,
};
pub use stats::{DatasetStats, scan_dataset};
pub use writer::{
    DATA_DIR, DatasetWriter, Publish, TMP_SUFFIX, WriteSummary, WriterOptions, WrittenFile,
    parse_part_file_name, part_file_name,
};
