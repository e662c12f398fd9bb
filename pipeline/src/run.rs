//! Orchestration of a whole `generate` run.
//!
//! A dispatcher walks this shard's task indices and spawns one job per task (its K samples)
//! under a semaphore capping in-flight rollouts. Finished jobs go through a bounded channel to
//! the ordering stage, which restores task order (a second semaphore bounds how far dispatch
//! may run ahead of it), applies exact dedup and the difficulty band deterministically, counts,
//! drives the progress bar, and hands rows to the writer actor (its own thread, owning the
//! [`DatasetWriter`]). So the rows and their order are identical at any concurrency. Shutdown
//! (SIGINT or SIGTERM, [`shutdown_signal`]) stops dispatch, lets in-flight jobs finish, and the
//! writer always closes its files. A write error stops everything at once.
//!
//! The output folder is held by an exclusive lock for the whole run; `manifest.json` is written
//! before the first rollout and rewritten after every finished part (the journal `--resume`
//! trusts); the writer closes its open parts every `flush_secs`, so a kill loses at most that
//! much finished work.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgen_codec::{ThinkingMode, python_json};
use agentgen_datasets::{
    DatasetWriter, FinishedRows, FolderLock, FolderState, Manifest, PackageRecord, SampleRow,
    Split, Verdict, WriteSummary, WriterOptions, WrittenFile, classify, clear_dataset,
    finished_rows, list_parts, policy_token_source, read_rows, reconcile_parts, scan_dataset,
    trajectory_hash, write_dataset_card,
};
use agentgen_environments::{InstanceCache, PackageInfo, Registry, TaskRef, TaskSpec};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::ids;
use crate::policy::{Policy, SamplingParams};
use crate::rollout::{RolloutContext, RolloutLimits, RolloutOutput, rollout};
use crate::validate::{Rejection, codes};
use crate::{Error, Result};

/// `--shard I/N` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSpec {
    /// This shard (0-based).
    pub index: u32,
    /// Number of shards.
    pub count: u32,
}

impl Default for ShardSpec {
    fn default() -> Self {
        ShardSpec { index: 0, count: 1 }
    }
}

impl FromStr for ShardSpec {
    type Err = Error;
    /// `I/N`, or `auto/N` with the index from the environment ([`ShardSpec::resolve`]).
    fn from_str(s: &str) -> Result<Self> {
        ShardSpec::resolve(s, |k| std::env::var(k).ok())
    }
}

/// Where `--shard auto/N` finds its index: Kubernetes Indexed Jobs set the first, Slurm job
/// arrays the second (offset by `SLURM_ARRAY_TASK_MIN` when the array does not start at 0).
pub const SHARD_INDEX_VARS: [&str; 2] = ["JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"];

impl ShardSpec {
    /// Parse `I/N` or `auto/N`, reading `auto`'s index through `env` (a job array's index
    /// variable, [`SHARD_INDEX_VARS`]), so one container command serves every index.
    pub fn resolve(s: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let bad = || Error::Config {
            message: format!("--shard wants I/N or auto/N with 0 <= I < N, got {s:?}"),
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        let index: u32 = if i.trim() == "auto" {
            let var = |k: &str| env(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
            let (name, value) = SHARD_INDEX_VARS
                .iter()
                .find_map(|k| var(k).map(|v| (*k, v)))
                .ok_or_else(|| Error::Config {
                    message: format!(
                        "--shard auto/{count} needs the job array's index in the environment: \
                         JOB_COMPLETION_INDEX (Kubernetes Indexed Job) or SLURM_ARRAY_TASK_ID \
                         (Slurm array); neither is set"
                    ),
                })?;
            let parsed = |k: &str, v: &str| {
                v.parse::<u32>().map_err(|_| Error::Config {
                    message: format!("--shard auto/{count}: {k}={v:?} is not a number"),
                })
            };
            let raw = parsed(name, &value)?;
            let min = match (name, var("SLURM_ARRAY_TASK_MIN")) {
                ("SLURM_ARRAY_TASK_ID", Some(m)) => parsed("SLURM_ARRAY_TASK_MIN", &m)?,
                _ => 0,
            };
            raw.checked_sub(min).ok_or_else(|| Error::Config {
                message: format!(
                    "--shard auto/{count}: {name}={raw} is below SLURM_ARRAY_TASK_MIN={min}"
                ),
            })?
        } else {
            i.trim().parse().map_err(|_| bad())?
        };
        if count == 0 || index >= count {
            return Err(Error::Config {
                message: format!(
                    "--shard {s}: index {index} is not below the shard count {count} (the job \
                     array has more indices than --shard names shards?)"
                ),
            });
        }
        Ok(ShardSpec { index, count })
    }

    /// Whether global task `index` belongs to this shard.
    pub fn owns(&self, index: u64) -> bool {
        index % u64::from(self.count) == u64::from(self.index)
    }
}

/// Everything a run needs (the CLI builds it from flags and `--config`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    /// The dataset folder.
    pub out: PathBuf,
    /// Global number of tasks (each shard takes its part).
    pub tasks: u64,
    /// Seed of the task draw and of every sample.
    pub seed: u64,
    /// Empty = all available families (unless `envs` is given: then packages only).
    pub families: Vec<String>,
    /// envpkg packages or folders of packages (`--envs`, `PATH@sha256:<hex>` pins), served
    /// alongside `families`.
    #[serde(default)]
    pub envs: Vec<String>,
    /// An explicit task list (`agentgen rollout --task-file`): task `i` is `task_list[i]`
    /// instead of a seeded draw over the families, and `tasks` is ignored (the list's length
    /// counts). Every entry must name an available family at its current version.
    pub task_list: Option<Vec<TaskRef>>,
    /// Rollouts per task (the group of pass@k).
    pub samples_per_task: u32,
    /// Rollouts in flight at once.
    pub concurrency: usize,
    /// The part of the tasks this invocation runs.
    pub shard: ShardSpec,
    /// Continue an interrupted run in `out` (same configuration).
    pub resume: bool,
    /// Replace an agentgen dataset already in `out` (never a foreign folder).
    pub overwrite: bool,
    /// Close the open parts when they have held rows this long (seconds; 0 = only when full).
    pub flush_secs: u64,
    /// Stop the run when more than this fraction of its rollouts failed in the policy
    /// (`policy.*`: transport, HTTP, auth), checked from the [`POLICY_ERROR_MIN_ROLLOUTS`]th on.
    pub max_policy_error_rate: f64,
    /// Thinking or chat rendering of every row.
    pub thinking_mode: ThinkingMode,
    /// `--thinking-mode auto` (chat policy): per row, thinking when the endpoint returned
    /// reasoning, chat otherwise; `thinking_mode` is then `Thinking`.
    #[serde(default)]
    pub thinking_auto: bool,
    /// Sampling of every completion.
    pub sampling: SamplingParams,
    /// Per-rollout limits.
    pub limits: RolloutLimits,
    /// Drop rows whose text an earlier row already had (`dedup.exact`).
    pub dedup: bool,
    /// Keep tasks whose pass rate over the group lies in `[lo, hi]`.
    pub difficulty_band: Option<(f32, f32)>,
    /// Rows per Parquet file.
    pub rows_per_file: usize,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// Show the progress bar.
    pub progress: bool,
    /// Recorded in the manifest and dataset card.
    pub command_line: String,
    /// Extra manifest facts from the CLI (git revision, checkpoint hash, ...).
    pub git_revision: Option<String>,
    /// SHA-256 of the checkpoint's `config.json` (local policy).
    pub checkpoint_config_sha256: Option<String>,
    /// The object-store URL the run publishes to (`--out s3://...`); `out` is then its local
    /// staging folder. Named in messages instead of the staging folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_url: Option<String>,
    /// Where finished parts go besides `out` (the object store of `store_url`).
    #[serde(skip)]
    pub publisher: Option<std::sync::Arc<dyn agentgen_datasets::Publish>>,
}

/// Default run seed of every rollout command (task selection, sample ids, sampling seeds).
pub const DEFAULT_SEED: u64 = 20251201;
/// Default rollouts in flight of every rollout command (the CLI lowers it to two per core for
/// package runs with the CPU-bound reference policy).
pub const DEFAULT_CONCURRENCY: usize = 64;
/// Default seconds open Parquet parts may hold rows before they are closed.
pub const DEFAULT_FLUSH_SECS: u64 = 60;
/// Default fraction of rollouts failing in the policy beyond which a run stops.
pub const DEFAULT_MAX_POLICY_ERROR_RATE: f64 = 0.5;

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            out: PathBuf::from("dataset"),
            tasks: 1000,
            seed: DEFAULT_SEED,
            families: Vec::new(),
            envs: Vec::new(),
            task_list: None,
            samples_per_task: 1,
            concurrency: DEFAULT_CONCURRENCY,
            shard: ShardSpec::default(),
            resume: false,
            overwrite: false,
            flush_secs: DEFAULT_FLUSH_SECS,
            max_policy_error_rate: DEFAULT_MAX_POLICY_ERROR_RATE,
            thinking_mode: ThinkingMode::Thinking,
            thinking_auto: false,
            sampling: SamplingParams::default(),
            limits: RolloutLimits::default(),
            dedup: true,
            difficulty_band: None,
            rows_per_file: 50_000,
            row_group_rows: 1_000,
            progress: true,
            command_line: String::new(),
            git_revision: None,
            checkpoint_config_sha256: None,
            store_url: None,
            publisher: None,
        }
    }
}

/// Rollouts finished before `max_policy_error_rate` is checked.
pub const POLICY_ERROR_MIN_ROLLOUTS: u64 = 50;

/// What a finished (or interrupted) run reports.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The manifest written to the folder.
    pub manifest: Manifest,
    /// Whether a signal stopped the run early.
    pub interrupted: bool,
    /// Wall time of this invocation.
    pub elapsed: Duration,
    /// Rows written by this invocation.
    pub written: WriteSummary,
    /// Rows accepted / rejected by this invocation.
    pub accepted: u64,
    /// Rows rejected by this invocation.
    pub rejected: u64,
    /// Tasks skipped because resume found all their samples finished.
    pub resumed_tasks: u64,
    /// Per-group pass rates: pass@1 (mean) and pass@k (any sample passed).
    pub pass_at_1: f64,
    /// Share of groups where any sample passed.
    pub pass_at_k: f64,
    /// Tokens in the rows written by this invocation.
    pub tokens: u64,
    /// Human-readable summary table.
    pub table: String,
    /// Why the run stopped early, when it did (too many policy failures, or every row one):
    /// the files are complete and the manifest written, but the run failed.
    pub stopped: Option<String>,
}

struct Job {
    ordinal: u64,
    index: u64,
    task_ref: TaskRef,
    /// Row sample ids already finished (resume): computed but not written again.
    done: HashSet<String>,
}

/// The registry of a run (built-in families plus the opened `--envs` packages) and the names
/// selected: `--families` (all available built-ins when empty and no `--envs`) plus every
/// package.
pub fn run_registry(cfg: &RunConfig) -> Result<(Registry, Vec<String>)> {
    let (registry, packages) =
        agentgen_environments::envpkg::registry_with_packages(&cfg.envs, cfg.concurrency)
            .map_err(|e| Error::Config { message: format!("--envs: {e}") })?;
    // Only `--envs`: packages only; both: both; neither: every available built-in.
    let mut names = cfg.families.clone();
    names.extend(packages.iter().cloned());
    // `--difficulty-band` with packages: their calibrated tasks in the band (the group filter
    // then leaves package rows alone; built-in families keep it).
    if let Some(band) = cfg.difficulty_band
        && !packages.is_empty()
    {
        return agentgen_environments::envpkg::calibration::band_registry(
            &registry, &names, &packages, band,
        )
        .map_err(|message| Error::Config { message });
    }
    Ok((registry, names))
}

struct Pending {
    row: SampleRow,
    write: bool,
    /// Cut off by a spent run limit (`Error::Stopped`): neither written nor counted, so
    /// `--resume` redoes it.
    stopped: bool,
    tokens: u64,
    completion_tokens: u64,
}

struct JobResult {
    ordinal: u64,
    rows: Vec<Pending>,
    pass_rate: f32,
    any_passed: bool,
}

struct Shared<P> {
    policy: P,
    ctx: RolloutContext,
    registry: Registry,
    cache: InstanceCache,
    cfg: RunConfig,
    run_id: String,
    sampling_json: String,
}

fn fingerprint(cfg: &RunConfig, policy: &str, model: Option<&str>) -> String {
    fingerprint_value(cfg, policy, model).to_string()
}

fn fingerprint_value(cfg: &RunConfig, policy: &str, model: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "seed": cfg.seed, "tasks": cfg.tasks, "families": cfg.families,
        "task_list": cfg.task_list.as_ref().map(|l| l.iter().map(TaskRef::to_string).collect::<Vec<_>>()),
        "samples_per_task": cfg.samples_per_task,
        "thinking_mode": if cfg.thinking_auto { "auto" } else { cfg.thinking_mode.as_str() },
        "sampling": {"temperature": cfg.sampling.temperature, "top_p": cfg.sampling.top_p,
                     "top_k": cfg.sampling.top_k, "max_tokens": cfg.sampling.max_tokens},
        "policy": policy, "model": model, "dedup": cfg.dedup, "band": cfg.difficulty_band,
    })
}

/// What a `--resume` must share with the run that started the folder, by field name: the
/// run-id fingerprint, the shard and the environment versions.
fn resume_identity(
    cfg: &RunConfig,
    policy: &str,
    model: Option<&str>,
    env_versions: &BTreeMap<String, String>,
) -> BTreeMap<String, serde_json::Value> {
    let mut id: BTreeMap<String, serde_json::Value> = match fingerprint_value(cfg, policy, model) {
        serde_json::Value::Object(m) => m.into_iter().collect(),
        _ => BTreeMap::new(),
    };
    id.insert(
        "shard".into(),
        serde_json::json!(format!("{}/{}", cfg.shard.index, cfg.shard.count)),
    );
    id.insert("environment_versions".into(), serde_json::json!(env_versions));
    id
}

/// The fields whose values differ, as `name (folder: A, this run: B)`.
fn identity_diff(
    folder: &BTreeMap<String, serde_json::Value>,
    now: &BTreeMap<String, serde_json::Value>,
) -> Vec<String> {
    let short = |v: Option<&serde_json::Value>| {
        let t = v.map_or_else(|| "unset".to_owned(), serde_json::Value::to_string);
        if t.chars().count() > 60 {
            format!("{}…", t.chars().take(60).collect::<String>())
        } else {
            t
        }
    };
    let keys: std::collections::BTreeSet<&String> = folder.keys().chain(now.keys()).collect();
    keys.into_iter()
        .filter(|k| folder.get(*k) != now.get(*k))
        .map(|k| format!("{k} (folder: {}, this run: {})", short(folder.get(k)), short(now.get(k))))
        .collect()
}

/// Take the output folder for this run: refuse a foreign folder, lock it (a second process
/// gets [`Error::OutputBusy`]), then start fresh, replace (`--overwrite`) or continue
/// (`--resume`, same identity only). Returns the lock and the parts a resume may trust.
fn take_folder(
    cfg: &RunConfig,
    identity: &BTreeMap<String, serde_json::Value>,
) -> Result<(FolderLock, Vec<WrittenFile>)> {
    let dir = &cfg.out;
    let shown = cfg.store_url.clone().unwrap_or_else(|| dir.display().to_string());
    if cfg.resume && cfg.overwrite {
        return Err(Error::Config {
            message: "--resume and --overwrite exclude each other".into(),
        });
    }
    let foreign = |entry: String| Error::ForeignFolder { dir: shown.clone(), entry };
    // Before the lock file is created: leave a foreign folder untouched.
    if let FolderState::Foreign(entry) = classify(dir).map_err(ds)? {
        return Err(foreign(entry));
    }
    let lock = FolderLock::acquire(dir).map_err(|e| match e {
        agentgen_datasets::Error::Busy { holder, .. } => {
            Error::OutputBusy { dir: shown.clone(), holder }
        }
        e => ds(e),
    })?;
    let not_empty = |what: &str, hint: &str| Error::OutputNotEmpty {
        dir: shown.clone(),
        what: what.into(),
        hint: hint.into(),
    };
    let trusted = match classify(dir).map_err(ds)? {
        FolderState::Foreign(entry) => return Err(foreign(entry)),
        FolderState::Empty => Vec::new(),
        FolderState::Unrecorded if cfg.overwrite => {
            clear_dataset(dir).map_err(ds)?;
            Vec::new()
        }
        FolderState::Unrecorded => {
            return Err(not_empty(
                "part files no manifest.json records",
                "--resume cannot trust them; pass --overwrite to replace them",
            ));
        }
        FolderState::Dataset(_) if cfg.overwrite => {
            clear_dataset(dir).map_err(ds)?;
            Vec::new()
        }
        FolderState::Dataset(m) if cfg.resume => {
            if m.resume_identity.is_empty() {
                return Err(Error::ResumeMismatch {
                    dir: shown,
                    fields: "all (its manifest.json records no run identity)".into(),
                });
            }
            let diff = identity_diff(&m.resume_identity, identity);
            if !diff.is_empty() {
                return Err(Error::ResumeMismatch { dir: shown, fields: diff.join("; ") });
            }
            let moved = reconcile_parts(dir, &m.files).map_err(ds)?;
            if !moved.is_empty() {
                tracing::warn!(
                    "--resume: {} part(s) no manifest records were moved aside (renamed *{}): {}",
                    moved.len(),
                    agentgen_datasets::UNRECORDED_SUFFIX,
                    moved.join(", ")
                );
            }
            m.files
        }
        FolderState::Dataset(_) => {
            return Err(not_empty(
                "a dataset",
                "pass --resume to continue it or --overwrite to replace it",
            ));
        }
    };
    Ok((lock, trusted))
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (Slurm, `docker stop`, `timeout`): both stop a run
/// the same clean way.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// What the ordering stage sends the writer actor.
enum ToWriter {
    Row(Box<SampleRow>),
    /// `flush_secs` passed: close the open parts if they hold rows.
    Flush,
}

/// Refuse a task list with an entry [`Registry::check`] rejects (unknown or unavailable family,
/// other version, seed out of range) or whose family is outside `--families`, before any work
/// starts.
fn check_task_list(registry: &Registry, selected: &[String], list: &[TaskRef]) -> Result<()> {
    for (line, r) in list.iter().enumerate() {
        let problem = match registry.check(r) {
            Err(e) => Some(e.to_string()),
            Ok(_) if !selected.iter().any(|s| s == &r.family) => {
                Some("family not selected by --families".to_owned())
            }
            Ok(_) => None,
        };
        if let Some(why) = problem {
            return Err(Error::Config {
                message: format!("task list entry {} ({r}): {why}", line + 1),
            });
        }
    }
    Ok(())
}

/// Sees every row as it goes to the writer, in task order (e.g. `rollout --jsonl -` streams
/// them to a trainer).
pub type RowSink = Box<dyn FnMut(&SampleRow) + Send>;

/// Run a whole generation job with `policy` until done or until `shutdown` resolves.
pub async fn run<P, S>(cfg: RunConfig, policy: P, shutdown: S) -> Result<RunReport>
where
    P: Policy,
    S: Future<Output = ()> + Send,
{
    run_with_sink(cfg, policy, shutdown, None).await
}

/// [`run`], handing each row to `sink` as it is written.
pub async fn run_with_sink<P, S>(
    cfg: RunConfig,
    policy: P,
    shutdown: S,
    mut sink: Option<RowSink>,
) -> Result<RunReport>
where
    P: Policy,
    S: Future<Output = ()> + Send,
{
    let started = Instant::now();
    let started_at = now_rfc3339();
    if cfg.samples_per_task == 0 || cfg.concurrency == 0 {
        return Err(Error::Config {
            message: "--samples-per-task and --concurrency must be positive".into(),
        });
    }
    if let Some((lo, hi)) = cfg.difficulty_band
        && !(0.0..=1.0).contains(&lo) | !(0.0..=1.0).contains(&hi) | (lo > hi)
    {
        return Err(Error::Config {
            message: format!("difficulty band [{lo}, {hi}] is not within [0, 1]"),
        });
    }
    let (registry, selected) = run_registry(&cfg)?;
    let names: Vec<&str> = selected.iter().map(String::as_str).collect();
    let selection =
        registry.select(&names).map_err(|e| Error::Config { message: e.to_string() })?;
    let family_names: Vec<String> =
        selection.families().iter().map(|f| f.name().to_owned()).collect();
    if let Some(list) = &cfg.task_list {
        check_task_list(&registry, &family_names, list)?;
    }
    let task_count = cfg.task_list.as_ref().map_or(cfg.tasks, |l| l.len() as u64);

    let policy_name = policy.name().to_owned();
    let model = policy.model();
    let mut env_versions = BTreeMap::new();
    let mut packages: Vec<PackageInfo> = Vec::new();
    for f in selection.families() {
        match f.package() {
            // A package is pinned by its hash: `--resume` refuses one that changed.
            Some(p) => {
                env_versions
                    .insert(f.name().to_owned(), format!("{} sha256:{}", f.version(), p.sha256));
                packages.push(p);
            }
            None => {
                env_versions.insert(f.name().to_owned(), f.version().to_string());
            }
        }
    }
    let identity = resume_identity(&cfg, &policy_name, model.as_deref(), &env_versions);

    // Output folder (locked until this function returns) and resume.
    let (_lock, trusted) = take_folder(&cfg, &identity)?;
    let data_dir = cfg.out.join("data");
    let done: FinishedRows = if cfg.resume && data_dir.exists() {
        finished_rows(&cfg.out).map_err(ds)?
    } else {
        FinishedRows::default()
    };
    let mut seen: HashMap<[u8; 32], String> = HashMap::new();
    if cfg.resume && cfg.dedup {
        for part in list_parts(&cfg.out).map_err(ds)? {
            if part.split == Split::Train && part.shard == cfg.shard.index {
                // Dedup keys on an episode's last row (see the ordering stage).
                for row in read_rows(&part.path).map_err(ds)? {
                    if row.turn_index + 1 >= row.turns_total {
                        seen.entry(trajectory_hash(&row.messages, &row.tools))
                            .or_insert(row.sample_id);
                    }
                }
            }
        }
    }

    let run_id = ids::run_id(&fingerprint(&cfg, &policy_name, model.as_deref()));
    let sampling_json = serde_json::json!({
        "temperature": cfg.sampling.temperature, "top_p": cfg.sampling.top_p,
        "top_k": cfg.sampling.top_k, "max_tokens": cfg.sampling.max_tokens,
    })
    .to_string();
    let mut ctx = RolloutContext::try_new(cfg.thinking_mode, cfg.limits.clone())?;
    ctx.auto_mode = cfg.thinking_auto;
    let shared = Arc::new(Shared {
        policy,
        ctx,
        registry,
        cache: InstanceCache::new(512),
        cfg: cfg.clone(),
        run_id: run_id.clone(),
        sampling_json,
    });

    // Plan: this shard's task indices, skipping tasks whose samples are all finished.
    let k = cfg.samples_per_task;
    let mut jobs: Vec<Job> = Vec::new();
    let mut resumed_tasks = 0u64;
    let mut ordinal = 0u64;
    let mut shard_tasks = 0u64;
    for index in (0..task_count).filter(|i| cfg.shard.owns(*i)) {
        shard_tasks += 1;
        let task_ref = match &cfg.task_list {
            Some(list) => list[index as usize].clone(),
            None => selection.task_ref(cfg.seed, index),
        };
        let task_id = task_ref.to_string();
        let episodes: Vec<String> =
            (0..k).map(|s| ids::sample_id(cfg.seed, index, &task_id, s)).collect();
        if episodes.iter().all(|e| done.episode_done(e)) {
            resumed_tasks += 1;
            continue;
        }
        // The finished rows of this task's episodes: recomputed, not written again.
        let finished: HashSet<String> =
            episodes.iter().flat_map(|e| done.rows_of(e)).cloned().collect();
        jobs.push(Job { ordinal, index, task_ref, done: finished });
        ordinal += 1;
    }
    let total_jobs = jobs.len() as u64;

    // The manifest, written now (so a kill at any point leaves a folder `--resume` can
    // continue) and kept by the writer as its journal of finished parts.
    let mut base = Manifest::new();
    base.git_revision = cfg.git_revision.clone();
    base.run_id = run_id.clone();
    base.seed = cfg.seed;
    base.shard_index = cfg.shard.index;
    base.shard_count = cfg.shard.count;
    base.command_line = cfg.command_line.clone();
    base.config = serde_json::to_value(&cfg).unwrap_or_default();
    base.tokenizer_sha256 = Some(agentgen_codec::TOKENIZER_SHA256.to_owned());
    base.checkpoint_config_sha256 = cfg.checkpoint_config_sha256.clone();
    base.token_source = Some(policy_token_source(&policy_name).to_owned());
    base.policy = policy_name.clone();
    base.model = model.clone();
    base.environment_versions = env_versions;
    base.tool_spec_hashes = tool_spec_hashes(&shared.registry, &family_names);
    base.packages = packages
        .iter()
        .map(|p| PackageRecord {
            label: p.label.clone(),
            sha256: p.sha256.clone(),
            python: p.python.clone(),
            path: p.path.clone(),
        })
        .collect();
    base.runtime.insert("concurrency".into(), cfg.concurrency.to_string());
    base.runtime.insert("state".into(), "running".into());
    base.resume_identity = identity;
    base.started_at = Some(started_at.clone());
    base.files = trusted.clone();
    base.write(&cfg.out).map_err(ds)?;

    // Stops the run at once (a write error, a failing policy): dispatch ends and in-flight
    // rollouts are dropped.
    let stop = CancellationToken::new();

    // The writer actor.
    let (row_tx, mut row_rx) = mpsc::channel::<ToWriter>(512);
    let writer_opts = WriterOptions {
        shard_index: cfg.shard.index,
        shard_count: cfg.shard.count,
        rows_per_file: cfg.rows_per_file.max(1),
        row_group_rows: cfg.row_group_rows.max(1),
        metadata: vec![("agentgen.run_id".into(), run_id.clone())],
        ..WriterOptions::default()
    };
    let mut writer = DatasetWriter::try_new(&cfg.out, writer_opts)
        .map_err(ds)?
        .with_journal(&cfg.out, base.clone())
        .with_publisher(cfg.publisher.clone());
    let writer_stop = stop.clone();
    let writer_thread = std::thread::Builder::new()
        .name("agentgen-writer".into())
        .spawn(move || -> Result<WriteSummary> {
            while let Some(msg) = row_rx.blocking_recv() {
                let result = match msg {
                    ToWriter::Row(row) => {
                        if let Some(s) = sink.as_mut() {
                            s(&row);
                        }
                        writer.write(*row)
                    }
                    ToWriter::Flush if writer.has_unfinished_rows() => writer.close_parts(),
                    ToWriter::Flush => Ok(()),
                };
                if let Err(e) = result {
                    // Stop at once: no more rollouts, no more writes; finished parts stay.
                    writer_stop.cancel();
                    drop(row_rx);
                    return Err(Error::WriteFailed { message: e.to_string() });
                }
            }
            // Always close the files after an interrupt or at the end.
            writer.finish().map_err(|e| Error::WriteFailed { message: e.to_string() })
        })
        .map_err(|e| Error::Io { path: "writer thread".into(), source: e })?;
    // Close parts that have held rows for `flush_secs`.
    let ticker = (cfg.flush_secs > 0).then(|| {
        let tx = row_tx.clone();
        let period = Duration::from_secs(cfg.flush_secs);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if tx.send(ToWriter::Flush).await.is_err() {
                    break;
                }
            }
        })
    });

    // Progress.
    let bar = if cfg.progress {
        let b = ProgressBar::with_draw_target(Some(total_jobs), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} tasks (eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        b.set_style(style);
        b
    } else {
        ProgressBar::hidden()
    };

    let window = Arc::new(Semaphore::new((cfg.concurrency * 4).max(64)));
    let inflight = Arc::new(Semaphore::new(cfg.concurrency));
    let (res_tx, mut res_rx) = mpsc::channel::<JobResult>(cfg.concurrency.max(16));

    // Ordering / dedup / counting stage.
    let order_window = Arc::clone(&window);
    let band = cfg.difficulty_band;
    let dedup = cfg.dedup;
    let bar2 = bar.clone();
    let order_shared = Arc::clone(&shared);
    let max_rate = cfg.max_policy_error_rate;
    let order_stop = stop.clone();
    let order = tokio::spawn(async move {
        let mut next = 0u64;
        let mut buffer: BTreeMap<u64, JobResult> = BTreeMap::new();
        let mut st = OrderStats::default();
        let t0 = Instant::now();
        while let Some(r) = res_rx.recv().await {
            // Policy health, counted as results arrive (not in task order): stop early when
            // the endpoint is failing rather than turning every task into a policy.* row.
            for p in &r.rows {
                st.rollouts += 1;
                if let Verdict::Rejected { code, detail } = &p.row.verdict
                    && code.starts_with("policy.")
                {
                    st.policy_failed += 1;
                    st.first_policy_error.get_or_insert_with(|| format!("{code}: {detail}"));
                }
            }
            if st.stopped.is_none()
                && st.rollouts >= POLICY_ERROR_MIN_ROLLOUTS
                && st.policy_failed as f64 > max_rate * st.rollouts as f64
            {
                st.stopped = Some(format!(
                    "{} of {} rollouts failed in the policy (more than --max-policy-error-rate \
                     {max_rate}); first error: {}",
                    st.policy_failed,
                    st.rollouts,
                    st.first_policy_error.as_deref().unwrap_or("?")
                ));
                order_stop.cancel();
            }
            buffer.insert(r.ordinal, r);
            while let Some(r) = buffer.remove(&next) {
                next += 1;
                st.groups += 1;
                st.pass_sum += f64::from(r.pass_rate);
                st.any_passed += u64::from(r.any_passed);
                // Package tasks were pre-selected by calibration (`run_registry`).
                let calibrated = r.rows.first().is_some_and(|p| p.row.env_package.is_some());
                let in_band =
                    calibrated || band.is_none_or(|(lo, hi)| (lo..=hi).contains(&r.pass_rate));
                // The band and dedup judge whole episodes: every row of an episode (one per
                // user turn, consecutive) shares the verdict; dedup hashes its last row (the
                // whole conversation).
                let mut rows = r.rows;
                let mut start = 0;
                while start < rows.len() {
                    let episode = rows[start].row.episode_id.clone();
                    let end = start
                        + rows[start..].iter().take_while(|p| p.row.episode_id == episode).count();
                    let last = &rows[end - 1];
                    let mut verdict = None;
                    if !last.stopped && last.row.verdict == Verdict::Accepted {
                        if !in_band {
                            verdict = Some(reject(&Rejection::new(
                                codes::FILTER_DIFFICULTY_BAND,
                                format!("group pass rate {} is outside the band", r.pass_rate),
                            )));
                        } else if dedup {
                            let h = trajectory_hash(&last.row.messages, &last.row.tools);
                            match seen.get(&h) {
                                Some(first) => {
                                    verdict = Some(reject(&Rejection::new(
                                        codes::DEDUP_EXACT,
                                        format!("same normalised trajectory as sample {first}"),
                                    )));
                                }
                                None => {
                                    seen.insert(h, last.row.sample_id.clone());
                                }
                            }
                        }
                    }
                    for p in &mut rows[start..end] {
                        if let Some(v) = &verdict {
                            p.row.verdict = v.clone();
                        }
                    }
                    start = end;
                }
                for p in rows {
                    if p.stopped {
                        continue;
                    }
                    st.count(&p);
                    if p.write && row_tx.send(ToWriter::Row(Box::new(p.row))).await.is_err() {
                        return st; // the writer failed; its error is reported by the join
                    }
                }
                order_window.add_permits(1);
                let usage = order_shared
                    .policy
                    .usage()
                    .map_or(String::new(), |(p, c)| format!(" usage {p}+{c} tok"));
                bar2.set_message(format!("{}{usage}", st.message(t0.elapsed())));
                bar2.inc(1);
            }
        }
        st
    });

    // Dispatch.
    let mut interrupted = false;
    {
        let dispatch = async {
            for job in jobs {
                let Ok(w) = window.clone().acquire_owned().await else { break };
                w.forget();
                let Ok(permit) = inflight.clone().acquire_owned().await else { break };
                let shared = Arc::clone(&shared);
                let tx = res_tx.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        result = run_job(&shared, job) => {
                            drop(permit);
                            let _ = tx.send(result).await;
                        }
                        _ = stop.cancelled() => {}
                    }
                });
            }
        };
        tokio::pin!(shutdown);
        tokio::select! {
            _ = dispatch => {}
            _ = stop.cancelled() => {}
            _ = &mut shutdown => {
                interrupted = true;
                tracing::warn!("interrupted: finishing in-flight rollouts and closing shards");
            }
        }
    }
    drop(res_tx);
    let mut st = order.await.map_err(|e| Error::Join { message: e.to_string() })?;
    if st.stopped.is_none() && st.rollouts > 0 && st.policy_failed == st.rollouts {
        st.stopped = Some(format!(
            "every one of the {} rollouts failed in the policy; first error: {}",
            st.rollouts,
            st.first_policy_error.as_deref().unwrap_or("?")
        ));
    }
    if let Some(t) = ticker {
        t.abort();
        let _ = t.await;
    }
    bar.finish_and_clear();
    // Joined off the runtime's workers: the writer may still be publishing its last parts
    // through this runtime (an object store), which needs a free worker to make progress.
    let written = tokio::task::spawn_blocking(move || writer_thread.join())
        .await
        .map_err(|e| Error::Join { message: format!("joining the writer: {e}") })?
        .map_err(|_| Error::Join { message: "writer thread panicked".into() })??;

    // Manifest + card, with counts recomputed from the finished files (correct across resumes).
    let stats = scan_dataset(&cfg.out).map_err(ds)?;
    let mut manifest = base;
    if selection.families().iter().any(|f| f.spawns_process() || f.package().is_some()) {
        manifest.sandbox = Some(agentgen_environments::sandbox::Layers::probe().to_json());
    }
    manifest.runtime.insert("interrupted".into(), interrupted.to_string());
    let state = match (&st.stopped, interrupted) {
        (Some(_), _) => "stopped",
        (None, true) => "interrupted",
        (None, false) => "finished",
    };
    manifest.runtime.insert("state".into(), state.into());
    if let Some(why) = &st.stopped {
        manifest.runtime.insert("stopped".into(), why.clone());
    }
    if let Some(stats_json) = shared.policy_stats() {
        manifest.runtime.insert("policy_stats".into(), stats_json);
    }
    if let Some((prompt, completion)) = shared.policy.usage() {
        manifest.usage = Some(agentgen_datasets::ApiUsage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
        });
    }
    let mut counts = stats.counts.clone();
    counts.tasks = shard_tasks;
    counts.samples = counts.accepted + counts.rejected;
    counts.resumed = resumed_tasks;
    for (code, n) in &counts.per_rejection_code {
        let stage = code.split('.').next().unwrap_or(code).to_owned();
        *counts.per_stage.entry(stage).or_default() += n;
        if code.starts_with("policy.") {
            *counts.policy_errors.entry(code.clone()).or_default() += n;
        }
    }
    manifest.counts = counts;
    manifest.tokens = stats.tokens;
    manifest.tokens.sampled = st.completion_tokens;
    manifest.durations_ms.insert("total".into(), started.elapsed().as_millis() as u64);
    manifest.finished_at = Some(now_rfc3339());
    manifest.files = trusted;
    manifest.files.extend(written.files.iter().cloned());
    manifest.write(&cfg.out).map_err(ds)?;
    write_dataset_card(&cfg.out, &manifest, &cfg.command_line).map_err(ds)?;

    let pass_at_1 = if st.groups > 0 { st.pass_sum / st.groups as f64 } else { 0.0 };
    let pass_at_k = if st.groups > 0 { st.any_passed as f64 / st.groups as f64 } else { 0.0 };
    let elapsed = started.elapsed();
    let table = st.table(elapsed, resumed_tasks, pass_at_1, pass_at_k, k);
    Ok(RunReport {
        manifest,
        interrupted,
        elapsed,
        written,
        accepted: st.accepted,
        rejected: st.rejected,
        resumed_tasks,
        pass_at_1,
        pass_at_k,
        tokens: st.tokens,
        table,
        stopped: st.stopped,
    })
}

impl<P: Policy> Shared<P> {
    fn policy_stats(&self) -> Option<String> {
        self.policy.stats_json()
    }
}

fn tool_spec_hashes(registry: &Registry, families: &[String]) -> BTreeMap<String, String> {
    // The tool lists a family exposes are part of its tasks; hash instance 0's first task.
    let cache = InstanceCache::new(4);
    let mut out = BTreeMap::new();
    for name in families {
        // A package's tools are pinned by its content hash (`packages` in the manifest).
        let Some(f) = registry.get(name).filter(|f| f.package().is_none()) else { continue };
        let r =
            TaskRef { family: name.clone(), version: f.version(), instance_seed: 0, task_seed: 0 };
        if let Ok((_, task)) = registry.task(&cache, &r) {
            let text = python_json(&serde_json::Value::Array(task.tools.clone()));
            use sha2::Digest;
            let d = sha2::Sha256::digest(text.as_bytes());
            out.insert(name.clone(), d.iter().map(|b| format!("{b:02x}")).collect());
        }
    }
    out
}

fn ds(e: agentgen_datasets::Error) -> Error {
    Error::Dataset(e)
}

fn reject(r: &Rejection) -> Verdict {
    Verdict::Rejected { code: r.code().to_owned(), detail: r.detail.clone() }
}

pub(crate) fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

#[derive(Default)]
struct OrderStats {
    accepted: u64,
    rejected: u64,
    tokens: u64,
    completion_tokens: u64,
    codes: BTreeMap<String, u64>,
    families: BTreeMap<String, (u64, u64)>,
    groups: u64,
    pass_sum: f64,
    any_passed: u64,
    /// Rollouts finished (in arrival order), those that failed in the policy, the first such
    /// failure, and why the run was stopped early.
    rollouts: u64,
    policy_failed: u64,
    first_policy_error: Option<String>,
    stopped: Option<String>,
}

impl OrderStats {
    fn count(&mut self, p: &Pending) {
        let fam = self.families.entry(p.row.family.clone()).or_default();
        match &p.row.verdict {
            Verdict::Accepted => {
                self.accepted += 1;
                fam.0 += 1;
            }
            Verdict::Rejected { code, .. } => {
                self.rejected += 1;
                fam.1 += 1;
                *self.codes.entry(code.clone()).or_default() += 1;
            }
        }
        self.tokens += p.tokens;
        self.completion_tokens += p.completion_tokens;
    }

    fn top_codes(&self, n: usize) -> Vec<(&String, &u64)> {
        let mut v: Vec<_> = self.codes.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        v.truncate(n);
        v
    }

    fn message(&self, elapsed: Duration) -> String {
        let tps = self.tokens as f64 / elapsed.as_secs_f64().max(1e-3);
        let top: Vec<String> = self.top_codes(2).iter().map(|(c, n)| format!("{c} {n}")).collect();
        let top = if top.is_empty() { String::new() } else { format!(" [{}]", top.join(", ")) };
        format!("accepted {} rejected {}{top} {:.0} tok/s", self.accepted, self.rejected, tps)
    }

    fn table(&self, elapsed: Duration, resumed: u64, p1: f64, pk: f64, k: u32) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let secs = elapsed.as_secs_f64().max(1e-9);
        let _ = writeln!(s, "{:<28} {:>10} {:>10}", "family", "accepted", "rejected");
        for (f, (a, r)) in &self.families {
            let _ = writeln!(s, "{f:<28} {a:>10} {r:>10}");
        }
        let _ = writeln!(s, "{:<28} {:>10} {:>10}", "total", self.accepted, self.rejected);
        if !self.codes.is_empty() {
            let _ = writeln!(s, "\n{:<28} {:>10}", "rejection code", "rows");
            for (c, n) in self.top_codes(usize::MAX) {
                let _ = writeln!(s, "{c:<28} {n:>10}");
            }
        }
        let _ = writeln!(
            s,
            "\n{} samples in {:.2}s ({:.0} accepted/s), {} tokens ({:.0} tok/s)",
            self.accepted + self.rejected,
            secs,
            self.accepted as f64 / secs,
            self.tokens,
            self.tokens as f64 / secs
        );
        if k > 1 {
            let _ = writeln!(s, "pass@1 {p1:.3}  pass@{k} {pk:.3} over {} groups", self.groups);
        }
        if resumed > 0 {
            let _ = writeln!(s, "{resumed} tasks were already finished (resume)");
        }
        s
    }
}

async fn run_job<P: Policy>(shared: &Shared<P>, job: Job) -> JobResult {
    let cfg = &shared.cfg;
    let task_id = job.task_ref.to_string();
    let group_id = ids::group_id(cfg.seed, job.index, &task_id);
    let k = cfg.samples_per_task;
    let built = {
        let family =
            shared.registry.get(&job.task_ref.family).map(|f| f.spawns_process()).unwrap_or(false);
        shared.registry.task(&shared.cache, &job.task_ref).map(|(i, t)| (i, Arc::new(t), family))
    };
    let mut rows = Vec::with_capacity(k as usize);
    let mut outcomes: Vec<(f32, bool)> = Vec::new();
    for s in 0..k {
        let sample_id = ids::sample_id(cfg.seed, job.index, &task_id, s);
        let seed = ids::sample_seed(cfg.seed, &sample_id);
        let base = RowBase {
            shared,
            task_id: &task_id,
            group_id: &group_id,
            sample_id: &sample_id,
            index: s,
        };
        let row = match &built {
            Err(e) => base
                .failed_task(&job.task_ref, &Rejection::new(codes::ENV_TASK_ERROR, e.to_string())),
            Ok((instance, task, spawns)) => {
                let params = SamplingParams { seed, ..cfg.sampling.clone() };
                match rollout(
                    &shared.policy,
                    &shared.ctx,
                    Arc::clone(instance),
                    Arc::clone(task),
                    *spawns,
                    &sample_id,
                    &params,
                )
                .await
                {
                    Ok(out) => {
                        outcomes.push((out.verdict.reward, out.verdict.passed));
                        for p in base.rollout_rows(task, out) {
                            let write = !job.done.contains(&p.row.sample_id);
                            rows.push(Pending { write, ..p });
                        }
                        continue;
                    }
                    Err(Error::Stopped { .. }) => {
                        let mut p = base.failed_task(
                            &job.task_ref,
                            &Rejection::new(codes::ENV_TASK_ERROR, "stopped"),
                        );
                        p.stopped = true;
                        p
                    }
                    Err(e) => base.failed_task(
                        &job.task_ref,
                        &Rejection::new(codes::ENV_TASK_ERROR, e.chain()),
                    ),
                }
            }
        };
        let write = !row.stopped && !job.done.contains(&row.row.sample_id);
        rows.push(Pending { write, ..row });
    }
    let n = outcomes.len().max(1) as f32;
    let mean = outcomes.iter().map(|o| o.0).sum::<f32>() / n;
    let pass_rate = outcomes.iter().filter(|o| o.1).count() as f32 / k as f32;
    if k > 1 {
        for p in rows.iter_mut() {
            p.row.advantage = Some(p.row.reward - mean);
        }
    }
    JobResult { ordinal: job.ordinal, rows, pass_rate, any_passed: outcomes.iter().any(|o| o.1) }
}

struct RowBase<'a, P> {
    shared: &'a Shared<P>,
    task_id: &'a str,
    group_id: &'a str,
    sample_id: &'a str,
    index: u32,
}

impl<P: Policy> RowBase<'_, P> {
    fn empty(&self, family: &str, instance_seed: u64, task_seed: u64) -> SampleRow {
        SampleRow {
            sample_id: self.sample_id.to_owned(),
            task_id: self.task_id.to_owned(),
            group_id: self.group_id.to_owned(),
            run_id: self.shared.run_id.clone(),
            family: family.to_owned(),
            instance_seed,
            task_seed,
            sample_index: self.index,
            difficulty: 0,
            thinking_mode: self.shared.cfg.thinking_mode.as_str().to_owned(),
            token_source: policy_token_source(self.shared.policy.name()).to_owned(),
            tools: "[]".into(),
            messages: Vec::new(),
            text: String::new(),
            token_ids: Vec::new(),
            loss_mask: Vec::new(),
            logprobs: None,
            reward: 0.0,
            advantage: None,
            passed: false,
            checks: "[]".into(),
            verdict: Verdict::Accepted,
            turns: 0,
            tool_calls: 0,
            finish_reason: String::new(),
            policy: self.shared.policy.name().to_owned(),
            model: self.shared.policy.model(),
            sampling: self.shared.sampling_json.clone(),
            warnings: Vec::new(),
            timings_ms: "{}".into(),
            episode_id: self.sample_id.to_owned(),
            turn_index: 0,
            turns_total: 1,
            env_package: None,
            env_package_sha256: None,
            env_python: None,
        }
    }

    fn failed_task(&self, r: &TaskRef, why: &Rejection) -> Pending {
        let mut row = self.empty(&r.family, r.instance_seed, r.task_seed);
        row.finish_reason = "env_error".into();
        row.verdict = reject(why);
        Pending { row, write: true, stopped: false, tokens: 0, completion_tokens: 0 }
    }

    /// The rows of one episode: one per user turn played. A single-turn task's row keeps the
    /// episode's id as its sample id; a multi-turn task's rows are `<episode>-t<turn>`.
    fn rollout_rows(&self, task: &TaskSpec, out: RolloutOutput) -> Vec<Pending> {
        let multi = task.user_turns() > 1;
        let total = out.rows.len() as i32;
        let tools = serde_json::to_string(&task.tools).unwrap_or_else(|_| "[]".into());
        let verdict = match &out.rejection {
            None => Verdict::Accepted,
            Some(r) => reject(r),
        };
        let package = self.shared.registry.get(&task.family).and_then(|f| f.package());
        let timings = serde_json::json!({
            "policy": round3(out.policy_ms), "env": round3(out.env_ms), "total": round3(out.total_ms),
        })
        .to_string();
        let last = out.rows.len().saturating_sub(1);
        let mut completion_tokens = out.completion_tokens as u64;
        let mut rows = Vec::with_capacity(out.rows.len());
        for (t, turn) in out.rows.into_iter().enumerate() {
            let mut row = self.empty(&task.family, task.instance_seed, task.task_seed);
            if multi {
                row.sample_id = turn_row_id(self.sample_id, t as u32);
            }
            row.episode_id = self.sample_id.to_owned();
            row.turn_index = t as i32;
            row.turns_total = total;
            if let Some(p) = &package {
                row.env_package = Some(p.label.clone());
                row.env_package_sha256 = Some(p.sha256.clone());
                row.env_python = Some(p.python.clone());
            }
            row.difficulty = task.difficulty;
            row.tools = tools.clone();
            // Stored messages carry tools in the `tools` column, not on the system message.
            let mut messages = out.messages[..turn.messages_len.min(out.messages.len())].to_vec();
            if let Some(first) = messages.first_mut() {
                first.tools = None;
            }
            row.messages = messages;
            row.text = turn.text;
            let tokens = turn.token_ids.len() as u64;
            row.token_ids = turn.token_ids;
            row.loss_mask = turn.loss_mask;
            row.logprobs = out.has_logprobs.then_some(turn.logprobs);
            // The episode's reward and verdict; the turn's checks.
            row.reward = out.verdict.reward;
            row.passed = out.verdict.passed;
            let checks = if multi { &turn.verdict.checks } else { &out.verdict.checks };
            row.checks = serde_json::to_string(checks).unwrap_or_else(|_| "[]".into());
            row.verdict = verdict.clone();
            row.turns = turn.turns;
            row.tool_calls = turn.tool_calls;
            row.finish_reason = if t == last { out.finish_reason.clone() } else { "stop".into() };
            row.warnings = out.warnings.clone();
            row.thinking_mode = out.thinking_mode.as_str().to_owned();
            row.token_source = out.token_source.to_owned();
            row.timings_ms = timings.clone();
            rows.push(Pending {
                row,
                write: true,
                stopped: false,
                tokens,
                // Sampled tokens are counted once per episode.
                completion_tokens: std::mem::take(&mut completion_tokens),
            });
        }
        rows
    }
}

/// The sample id of row `turn` of a multi-turn episode.
fn turn_row_id(episode: &str, turn: u32) -> String {
    format!("{episode}-t{turn}")
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::ShardSpec;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn shard_auto_takes_the_index_of_the_job_array() {
        let k8s = ShardSpec::resolve("auto/8", env(&[("JOB_COMPLETION_INDEX", "5")]));
        assert_eq!(k8s.ok(), Some(ShardSpec { index: 5, count: 8 }));
        let slurm = ShardSpec::resolve(
            "auto/4",
            env(&[("SLURM_ARRAY_TASK_ID", "7"), ("SLURM_ARRAY_TASK_MIN", "4")]),
        );
        assert_eq!(slurm.ok(), Some(ShardSpec { index: 3, count: 4 }));
        // Kubernetes wins when both are set (a Slurm variable leaking into a pod is harmless).
        let both = ShardSpec::resolve(
            "auto/4",
            env(&[("SLURM_ARRAY_TASK_ID", "1"), ("JOB_COMPLETION_INDEX", "2")]),
        );
        assert_eq!(both.ok(), Some(ShardSpec { index: 2, count: 4 }));
        assert_eq!(
            ShardSpec::resolve("2/4", env(&[])).ok(),
            Some(ShardSpec { index: 2, count: 4 })
        );
    }

    #[test]
    fn shard_auto_refuses_a_missing_or_out_of_range_index_by_name() {
        let missing = ShardSpec::resolve("auto/4", env(&[])).expect_err("no index");
        assert!(missing.to_string().contains("JOB_COMPLETION_INDEX"), "{missing}");
        let big = ShardSpec::resolve("auto/4", env(&[("JOB_COMPLETION_INDEX", "4")]))
            .expect_err("index 4 of 4");
        assert!(big.to_string().contains("index 4 is not below the shard count 4"), "{big}");
        let nan = ShardSpec::resolve("auto/4", env(&[("SLURM_ARRAY_TASK_ID", "x")]))
            .expect_err("not a number");
        assert!(nan.to_string().contains("SLURM_ARRAY_TASK_ID=\"x\""), "{nan}");
        assert!(ShardSpec::resolve("auto/0", env(&[("JOB_COMPLETION_INDEX", "0")])).is_err());
    }
}
