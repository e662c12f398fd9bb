//! `manifest.json`: what produced a dataset and what it holds.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::writer::{WrittenFile, sync_dir};
use crate::{Error, Result, SCHEMA_VERSION};

/// File name of the manifest in a dataset folder.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Accepted/rejected counts of one family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitCounts {
    /// Rows in split `train`.
    pub accepted: u64,
    /// Rows in split `rejected`.
    pub rejected: u64,
}

/// Row and task counts of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    /// Tasks this shard was assigned.
    pub tasks: u64,
    /// Samples rolled out (tasks × samples per task, minus those skipped on resume).
    pub samples: u64,
    /// Rows in split `train` (in the files, resumed parts included).
    pub accepted: u64,
    /// Rows in split `rejected` (in the files, resumed parts included).
    pub rejected: u64,
    /// Samples found finished on `--resume` and not redone.
    pub resumed: u64,
    /// Samples that passed each validator stage (`format`, `schema`, `exec`, `outcome`, ...).
    pub per_stage: BTreeMap<String, u64>,
    /// Rejected rows per rejection code.
    pub per_rejection_code: BTreeMap<String, u64>,
    /// Rows per family and split.
    pub per_family: BTreeMap<String, SplitCounts>,
    /// Rows carrying each warning (`tokens.noncanonical`, ...).
    pub per_warning: BTreeMap<String, u64>,
    /// Policy failures (HTTP errors, timeouts, ...) per kind; none is fatal.
    pub policy_errors: BTreeMap<String, u64>,
}

/// Token totals of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenTotals {
    /// Tokens of all rows (`token_ids` lengths).
    pub total: u64,
    /// Tokens of split `train`.
    pub train: u64,
    /// Tokens with loss mask 1 in split `train`.
    pub train_loss: u64,
    /// Tokens the policy sampled (all rows).
    pub sampled: u64,
}

/// Token usage a model endpoint reported (`usage` of each response), summed over the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiUsage {
    /// Prompt tokens, as the endpoint counted them.
    pub prompt_tokens: u64,
    /// Completion tokens (reasoning included), as the endpoint counted them.
    pub completion_tokens: u64,
    /// Their sum (what `--max-tokens-total` limits).
    pub total_tokens: u64,
}

/// Everything needed to reproduce and audit a dataset. Written by `generate` as
/// `manifest.json`; unknown fields are ignored and missing ones default, so older and newer
/// manifests both load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Manifest {
    /// [`SCHEMA_VERSION`] of the rows.
    pub schema_version: u32,
    /// `agentgen` package version.
    pub agentgen_version: String,
    /// Git revision of the code (`git rev-parse HEAD`, `-dirty` when modified), if known.
    pub git_revision: Option<String>,
    /// The run id (also in every row).
    pub run_id: String,
    /// The run seed.
    pub seed: u64,
    /// This shard (0-based).
    pub shard_index: u32,
    /// Shards in the job array.
    pub shard_count: u32,
    /// The command line as typed.
    pub command_line: String,
    /// Flags and config after defaults and `--config` were applied.
    pub config: serde_json::Value,
    /// SHA-256 of the tokenizer file used.
    pub tokenizer_sha256: Option<String>,
    /// SHA-256 of the checkpoint's `config.json` (`local` policy).
    pub checkpoint_config_sha256: Option<String>,
    /// Policy (`reference`, `local`, `http`).
    pub policy: String,
    /// Model name, for `local` and `http`.
    pub model: Option<String>,
    /// SHA-256 of each tool spec, by spec name.
    pub tool_spec_hashes: BTreeMap<String, String>,
    /// Version of each environment family, by family name.
    pub environment_versions: BTreeMap<String, String>,
    /// Tool and runtime versions (`rustc`, `python3`, OS, ...).
    pub runtime: BTreeMap<String, String>,
    /// Row counts.
    pub counts: Counts,
    /// Token totals.
    pub tokens: TokenTotals,
    /// Where the rows' `token_ids` come from: `reference`, `sampled` or `retokenized` (the
    /// policy returned text, e.g. a chat endpoint; the ids are the tokenizer's, not sampled).
    pub token_source: Option<String>,
    /// Token usage the endpoint reported (`chat` policy), summed over this invocation.
    pub usage: Option<ApiUsage>,
    /// Wall time per phase in milliseconds (`total`, `rollout`, `validate`, `write`, ...).
    pub durations_ms: BTreeMap<String, u64>,
    /// RFC 3339 start time, if recorded.
    pub started_at: Option<String>,
    /// RFC 3339 end time, if recorded.
    pub finished_at: Option<String>,
    /// Every finished Parquet file of the folder, with its rows (and SHA-256). While a run is
    /// going this is its journal: rewritten after every finished part, and the only list of
    /// parts `--resume` trusts.
    pub files: Vec<WrittenFile>,
    /// What a run must share with this one to `--resume` it (seed, tasks, families, policy,
    /// model, shard, ...), by name.
    pub resume_identity: BTreeMap<String, serde_json::Value>,
    /// The sandbox of untrusted code when a selected family needs it: active and missing
    /// layers and whether `--allow-weak-sandbox` was given (absent in older manifests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<serde_json::Value>,
    /// Every envpkg package the run served, so a row can be traced to the exact package
    /// (spec envpkg §11); empty for runs over built-in families only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<PackageRecord>,
}

/// One package of a run: `name@version`, content hash, worker Python and where it was loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRecord {
    /// `name@version`.
    pub label: String,
    /// The package's content hash (spec envpkg §11).
    pub sha256: String,
    /// The worker Python's `major.minor`.
    pub python: String,
    /// The package directory the run loaded.
    pub path: String,
}

impl Manifest {
    /// An empty manifest for this build's schema version and package version.
    pub fn new() -> Self {
        Manifest {
            schema_version: SCHEMA_VERSION,
            agentgen_version: env!("CARGO_PKG_VERSION").to_owned(),
            shard_count: 1,
            config: serde_json::Value::Object(Default::default()),
            ..Default::default()
        }
    }

    /// Write `dir/manifest.json` atomically (temp file, fsync, rename).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Json { path: path.clone(), source: e })?;
        write_atomic(dir, MANIFEST_FILE, &json)
    }

    /// Read `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let text = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        serde_json::from_slice(&text).map_err(|e| Error::Json { path, source: e })
    }
}

/// Write `dir/name` via a temp file, fsync and rename, so readers never see half a file.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = crate::folder::create_exclusive(&tmp)?;
    f.write_all(bytes).map_err(|e| Error::io("write", &tmp, e))?;
    f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &tmp, e))?;
    sync_dir(dir)
}
