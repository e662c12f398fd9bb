//! Orchestration of a whole `generate` run.
//!
//! A dispatcher walks this shard's task indices and spawns one job per task (its K samples)
//! under a semaphore capping in-flight rollouts. Finished jobs go through a bounded channel to
//! the ordering stage, which restores task order (a second semaphore bounds how far dispatch
//! may run ahead of it), applies exact dedup and the difficulty band deterministically, counts,
//! drives the progress bar, and hands rows to the writer actor (its own thread, owning the
//! [`DatasetWriter`]). So the rows and their order are identical at any concurrency. Shutdown
//! (SIGINT) stops dispatch, lets in-flight jobs finish, and the writer always closes its files.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentgen_codec::{ThinkingMode, python_json};
use agentgen_datasets::{
    DatasetWriter, Manifest, SampleRow, Split, Verdict, WriteSummary, WriterOptions,
    finished_sample_ids, list_parts, read_rows, scan_dataset, trajectory_hash, write_dataset_card,
};
use agentgen_environments::{InstanceCache, Registry, TaskRef, TaskSpec};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc};

use crate::ids;
use crate::policy::{Policy, SamplingParams};
use crate::rollout::{RolloutContext, RolloutLimits, RolloutOutput, rollout};
use crate::validate::{Rejection, codes};
use crate::{Error, Result};

/// `--shard I/N` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSpec {
    pub index: u32,
    pub count: u32,
}

impl Default for ShardSpec {
    fn default() -> Self {
        ShardSpec { index: 0, count: 1 }
    }
}

impl FromStr for ShardSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad =
            || Error::Config { message: format!("--shard wants I/N with 0 <= I < N, got {s:?}") };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(ShardSpec { index, count })
    }
}

impl ShardSpec {
    /// Whether global task `index` belongs to this shard.
    pub fn owns(&self, index: u64) -> bool {
        index % u64::from(self.count) == u64::from(self.index)
    }
}

/// Everything a run needs (the CLI builds it from flags and `--config`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub out: PathBuf,
    /// Global number of tasks (each shard takes its part).
    pub tasks: u64,
    pub seed: u64,
    /// Empty = all available families.
    pub families: Vec<String>,
    /// An explicit task list (`agentgen rollout --task-file`): task `i` is `task_list[i]`
    /// instead of a seeded draw over the families, and `tasks` is ignored (the list's length
    /// counts). Every entry must name an available family at its current version.
    pub task_list: Option<Vec<TaskRef>>,
    pub samples_per_task: u32,
    pub concurrency: usize,
    pub shard: ShardSpec,
    pub resume: bool,
    pub thinking_mode: ThinkingMode,
    pub sampling: SamplingParams,
    pub limits: RolloutLimits,
    pub dedup: bool,
    /// Keep tasks whose pass rate over the group lies in `[lo, hi]`.
    pub difficulty_band: Option<(f32, f32)>,
    pub rows_per_file: usize,
    pub row_group_rows: usize,
    /// Show the progress bar.
    pub progress: bool,
    /// Recorded in the manifest and dataset card.
    pub command_line: String,
    /// Extra manifest facts from the CLI (git revision, checkpoint hash, ...).
    pub git_revision: Option<String>,
    pub checkpoint_config_sha256: Option<String>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            out: PathBuf::from("dataset"),
            tasks: 1000,
            seed: 20251201,
            families: Vec::new(),
            task_list: None,
            samples_per_task: 1,
            concurrency: 64,
            shard: ShardSpec::default(),
            resume: false,
            thinking_mode: ThinkingMode::Thinking,
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
        }
    }
}

/// What a finished (or interrupted) run reports.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub manifest: Manifest,
    pub interrupted: bool,
    pub elapsed: Duration,
    /// Rows written by this invocation.
    pub written: WriteSummary,
    /// Rows accepted / rejected by this invocation.
    pub accepted: u64,
    pub rejected: u64,
    /// Tasks skipped because resume found all their samples finished.
    pub resumed_tasks: u64,
    /// Per-group pass rates: pass@1 (mean) and pass@k (any sample passed).
    pub pass_at_1: f64,
    pub pass_at_k: f64,
    pub tokens: u64,
    /// Human-readable summary table.
    pub table: String,
}

struct Job {
    ordinal: u64,
    index: u64,
    task_ref: TaskRef,
    /// Sample ids already finished (resume): computed but not written again.
    done: HashSet<String>,
}

struct Pending {
    row: SampleRow,
    write: bool,
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
    let v = serde_json::json!({
        "seed": cfg.seed, "tasks": cfg.tasks, "families": cfg.families,
        "task_list": cfg.task_list.as_ref().map(|l| l.iter().map(TaskRef::to_string).collect::<Vec<_>>()),
        "samples_per_task": cfg.samples_per_task, "thinking_mode": cfg.thinking_mode.as_str(),
        "sampling": {"temperature": cfg.sampling.temperature, "top_p": cfg.sampling.top_p,
                     "top_k": cfg.sampling.top_k, "max_tokens": cfg.sampling.max_tokens},
        "policy": policy, "model": model, "dedup": cfg.dedup, "band": cfg.difficulty_band,
    });
    v.to_string()
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

/// Run a whole generation job with `policy` until done or until `shutdown` resolves.
pub async fn run<P, S>(cfg: RunConfig, policy: P, shutdown: S) -> Result<RunReport>
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
    let registry = Registry::new();
    let names: Vec<&str> = cfg.families.iter().map(String::as_str).collect();
    let selection =
        registry.select(&names).map_err(|e| Error::Config { message: e.to_string() })?;
    let family_names: Vec<String> =
        selection.families().iter().map(|f| f.name().to_owned()).collect();
    if let Some(list) = &cfg.task_list {
        check_task_list(&registry, &family_names, list)?;
    }
    let task_count = cfg.task_list.as_ref().map_or(cfg.tasks, |l| l.len() as u64);

    // Output folder and resume.
    let data_dir = cfg.out.join("data");
    let existing = if data_dir.exists() { list_parts(&cfg.out).map_err(ds)? } else { Vec::new() };
    if !existing.is_empty() && !cfg.resume {
        return Err(Error::OutputNotEmpty { dir: cfg.out.display().to_string() });
    }
    let done: HashSet<String> = if cfg.resume && data_dir.exists() {
        finished_sample_ids(&cfg.out).map_err(ds)?
    } else {
        HashSet::new()
    };
    let mut seen: HashMap<[u8; 32], String> = HashMap::new();
    if cfg.resume && cfg.dedup {
        for part in list_parts(&cfg.out).map_err(ds)? {
            if part.split == Split::Train && part.shard == cfg.shard.index {
                for row in read_rows(&part.path).map_err(ds)? {
                    seen.entry(trajectory_hash(&row.messages, &row.tools)).or_insert(row.sample_id);
                }
            }
        }
    }

    let policy_name = policy.name().to_owned();
    let model = policy.model();
    let run_id = ids::run_id(&fingerprint(&cfg, &policy_name, model.as_deref()));
    let sampling_json = serde_json::json!({
        "temperature": cfg.sampling.temperature, "top_p": cfg.sampling.top_p,
        "top_k": cfg.sampling.top_k, "max_tokens": cfg.sampling.max_tokens,
    })
    .to_string();
    let ctx = RolloutContext::try_new(cfg.thinking_mode, cfg.limits.clone())?;
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
        let ids: Vec<String> =
            (0..k).map(|s| ids::sample_id(cfg.seed, index, &task_id, s)).collect();
        let finished: HashSet<String> = ids.into_iter().filter(|id| done.contains(id)).collect();
        if finished.len() == k as usize {
            resumed_tasks += 1;
            continue;
        }
        jobs.push(Job { ordinal, index, task_ref, done: finished });
        ordinal += 1;
    }
    let total_jobs = jobs.len() as u64;

    // The writer actor.
    let (row_tx, mut row_rx) = mpsc::channel::<SampleRow>(512);
    let writer_opts = WriterOptions {
        shard_index: cfg.shard.index,
        shard_count: cfg.shard.count,
        rows_per_file: cfg.rows_per_file.max(1),
        row_group_rows: cfg.row_group_rows.max(1),
        metadata: vec![("agentgen.run_id".into(), run_id.clone())],
        ..WriterOptions::default()
    };
    let mut writer = DatasetWriter::try_new(&cfg.out, writer_opts).map_err(ds)?;
    let writer_thread = std::thread::Builder::new()
        .name("agentgen-writer".into())
        .spawn(move || -> Result<WriteSummary> {
            let mut failed = None;
            while let Some(row) = row_rx.blocking_recv() {
                if failed.is_none()
                    && let Err(e) = writer.write(row)
                {
                    failed = Some(e);
                }
            }
            // Always close the files, even after an error or an interrupt.
            let summary = writer.finish();
            match (failed, summary) {
                (Some(e), _) => Err(ds(e)),
                (None, s) => s.map_err(ds),
            }
        })
        .map_err(|e| Error::Io { path: "writer thread".into(), source: e })?;

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
    let order = tokio::spawn(async move {
        let mut next = 0u64;
        let mut buffer: BTreeMap<u64, JobResult> = BTreeMap::new();
        let mut st = OrderStats::default();
        let t0 = Instant::now();
        while let Some(r) = res_rx.recv().await {
            buffer.insert(r.ordinal, r);
            while let Some(r) = buffer.remove(&next) {
                next += 1;
                st.groups += 1;
                st.pass_sum += f64::from(r.pass_rate);
                st.any_passed += u64::from(r.any_passed);
                let in_band = band.is_none_or(|(lo, hi)| (lo..=hi).contains(&r.pass_rate));
                for mut p in r.rows {
                    if p.row.verdict == Verdict::Accepted && !in_band {
                        p.row.verdict = reject(&Rejection::new(
                            codes::FILTER_DIFFICULTY_BAND,
                            format!("group pass rate {} is outside the band", r.pass_rate),
                        ));
                    }
                    if p.row.verdict == Verdict::Accepted && dedup {
                        let h = trajectory_hash(&p.row.messages, &p.row.tools);
                        match seen.get(&h) {
                            Some(first) => {
                                p.row.verdict = reject(&Rejection::new(
                                    codes::DEDUP_EXACT,
                                    format!("same normalised trajectory as sample {first}"),
                                ));
                            }
                            None => {
                                seen.insert(h, p.row.sample_id.clone());
                            }
                        }
                    }
                    st.count(&p);
                    if p.write && row_tx.send(p.row).await.is_err() {
                        return st; // the writer failed; its error is reported by the join
                    }
                }
                order_window.add_permits(1);
                bar2.set_message(st.message(t0.elapsed()));
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
                tokio::spawn(async move {
                    let result = run_job(&shared, job).await;
                    drop(permit);
                    let _ = tx.send(result).await;
                });
            }
        };
        tokio::pin!(shutdown);
        tokio::select! {
            _ = dispatch => {}
            _ = &mut shutdown => {
                interrupted = true;
                tracing::warn!("interrupted: finishing in-flight rollouts and closing shards");
            }
        }
    }
    drop(res_tx);
    let st = order.await.map_err(|e| Error::Join { message: e.to_string() })?;
    bar.finish_and_clear();
    let written = writer_thread
        .join()
        .map_err(|_| Error::Join { message: "writer thread panicked".into() })??;

    // Manifest + card, with counts recomputed from the finished files (correct across resumes).
    let stats = scan_dataset(&cfg.out).map_err(ds)?;
    let mut manifest = Manifest::new();
    manifest.git_revision = cfg.git_revision.clone();
    manifest.run_id = run_id;
    manifest.seed = cfg.seed;
    manifest.shard_index = cfg.shard.index;
    manifest.shard_count = cfg.shard.count;
    manifest.command_line = cfg.command_line.clone();
    manifest.config = serde_json::to_value(&cfg).unwrap_or_default();
    manifest.tokenizer_sha256 = Some(agentgen_codec::TOKENIZER_SHA256.to_owned());
    manifest.checkpoint_config_sha256 = cfg.checkpoint_config_sha256.clone();
    manifest.policy = policy_name;
    manifest.model = model;
    for f in selection.families() {
        manifest.environment_versions.insert(f.name().to_owned(), f.version().to_string());
    }
    manifest.tool_spec_hashes = tool_spec_hashes(&shared.registry, &family_names);
    if selection.families().iter().any(|f| f.spawns_process()) {
        manifest.sandbox = Some(agentgen_environments::sandbox::Layers::probe().to_json());
    }
    manifest.runtime.insert("concurrency".into(), cfg.concurrency.to_string());
    manifest.runtime.insert("interrupted".into(), interrupted.to_string());
    if let Some(stats_json) = shared.policy_stats() {
        manifest.runtime.insert("policy_stats".into(), stats_json);
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
    manifest.started_at = Some(started_at);
    manifest.finished_at = Some(now_rfc3339());
    manifest.files = stats.files;
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
        let Some(f) = registry.get(name) else { continue };
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
    Error::Dataset { message: e.to_string() }
}

fn reject(r: &Rejection) -> Verdict {
    Verdict::Rejected { code: r.code().to_owned(), detail: r.detail.clone() }
}

fn now_rfc3339() -> String {
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
                        base.rollout_row(task, out)
                    }
                    Err(e) => base.failed_task(
                        &job.task_ref,
                        &Rejection::new(codes::ENV_TASK_ERROR, e.to_string()),
                    ),
                }
            }
        };
        let write = !job.done.contains(&row.row.sample_id);
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
        }
    }

    fn failed_task(&self, r: &TaskRef, why: &Rejection) -> Pending {
        let mut row = self.empty(&r.family, r.instance_seed, r.task_seed);
        row.finish_reason = "env_error".into();
        row.verdict = reject(why);
        Pending { row, write: true, tokens: 0, completion_tokens: 0 }
    }

    fn rollout_row(&self, task: &TaskSpec, out: RolloutOutput) -> Pending {
        let mut row = self.empty(&task.family, task.instance_seed, task.task_seed);
        row.difficulty = task.difficulty;
        row.tools = serde_json::to_string(&task.tools).unwrap_or_else(|_| "[]".into());
        // Stored messages carry tools in the `tools` column, not on the system message.
        let mut messages = out.messages;
        if let Some(first) = messages.first_mut() {
            first.tools = None;
        }
        row.messages = messages;
        row.text = out.text;
        let tokens = out.token_ids.len() as u64;
        row.token_ids = out.token_ids;
        row.loss_mask = out.loss_mask;
        row.logprobs = out.has_logprobs.then_some(out.logprobs);
        row.reward = out.verdict.reward;
        row.passed = out.verdict.passed;
        row.checks = serde_json::to_string(&out.verdict.checks).unwrap_or_else(|_| "[]".into());
        row.verdict = match &out.rejection {
            None => Verdict::Accepted,
            Some(r) => reject(r),
        };
        row.turns = out.turns;
        row.tool_calls = out.tool_calls;
        row.finish_reason = out.finish_reason;
        row.warnings = out.warnings;
        row.timings_ms = serde_json::json!({
            "policy": round3(out.policy_ms), "env": round3(out.env_ms), "total": round3(out.total_ms),
        })
        .to_string();
        Pending { row, write: true, tokens, completion_tokens: out.completion_tokens as u64 }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
