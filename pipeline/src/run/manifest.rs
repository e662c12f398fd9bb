//! The manifest (written before the first rollout, the journal `--resume` trusts, and rewritten
//! with the final counts), the dataset card, and the [`RunReport`] with its summary table.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use agentgen_codec::python_json;
use agentgen_datasets::{
    ApiUsage, Manifest, PackageRecord, WriteSummary, policy_token_source, scan_dataset,
    write_dataset_card,
};
use agentgen_environments::{InstanceCache, Registry, Selection, TaskRef};

use super::folder::Taken;
use super::ordering::OrderStats;
use super::plan::Selected;
use super::{RunConfig, Shared, ds};
use crate::Result;
use crate::policy::Policy;

/// What a finished (or interrupted) run reports.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The manifest written to the folder (None: the run had no folder).
    pub manifest: Option<Manifest>,
    /// Tokens the policy's endpoint counted (the chat policy), as the manifest records them.
    pub usage: Option<ApiUsage>,
    /// Whether a signal stopped the run early.
    pub interrupted: bool,
    /// Wall time of this invocation.
    pub elapsed: Duration,
    /// Rows written to the folder by this invocation (none without a folder).
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

/// A run's folder and the manifest written into it before the first rollout, which the writer
/// keeps as its journal of finished parts (those a resume trusted first).
pub(super) struct Journal {
    pub(super) folder: Taken,
    pub(super) base: Manifest,
}

/// The manifest, written to the run's folder now (so a kill at any point leaves a folder
/// `--resume` can continue).
pub(super) fn write_initial<P: Policy>(
    cfg: &RunConfig,
    folder: Taken,
    shared: &Shared<P>,
    sel: &Selected,
    model: Option<String>,
    identity: BTreeMap<String, serde_json::Value>,
    started_at: String,
) -> Result<Journal> {
    let policy_name = shared.policy.name();
    let mut base = Manifest::new();
    base.git_revision = cfg.git_revision.clone();
    base.run_id = shared.run_id.clone();
    base.seed = cfg.seed;
    base.shard_index = cfg.shard.index;
    base.shard_count = cfg.shard.count;
    base.command_line = cfg.command_line.clone();
    base.config = serde_json::to_value(cfg).unwrap_or_default();
    base.tokenizer_sha256 = Some(agentgen_codec::TOKENIZER_SHA256.to_owned());
    base.checkpoint_config_sha256 = cfg.checkpoint_config_sha256.clone();
    base.token_source = Some(policy_token_source(policy_name).to_owned());
    base.policy = policy_name.to_owned();
    base.model = model;
    base.environment_versions = sel.env_versions.clone();
    base.tool_spec_hashes = tool_spec_hashes(&shared.registry, &sel.family_names);
    base.packages = sel
        .packages
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
    base.started_at = Some(started_at);
    base.files = folder.trusted.clone();
    base.write(&folder.dir).map_err(ds)?;
    Ok(Journal { folder, base })
}

/// How the run ended: the ordering stage's counts, whether a signal stopped it, what the
/// writer wrote, and the plan's task counts.
pub(super) struct Finished {
    pub(super) st: OrderStats,
    pub(super) interrupted: bool,
    pub(super) written: WriteSummary,
    pub(super) shard_tasks: u64,
    pub(super) resumed_tasks: u64,
    pub(super) started: Instant,
}

/// Manifest + card, with counts recomputed from the finished files (correct across resumes);
/// the folder's lock is released after them.
pub(super) fn write_final<P: Policy>(
    cfg: &RunConfig,
    journal: Journal,
    selection: &Selection,
    shared: &Shared<P>,
    f: &Finished,
) -> Result<Manifest> {
    let Finished { st, interrupted, written, shard_tasks, resumed_tasks, started } = f;
    let interrupted = *interrupted;
    let Journal { folder, base: mut manifest } = journal;
    let dir = &folder.dir;
    let stats = scan_dataset(dir).map_err(ds)?;
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
    manifest.usage = api_usage(&shared.policy);
    let mut counts = stats.counts.clone();
    counts.tasks = *shard_tasks;
    counts.samples = counts.accepted + counts.rejected;
    counts.resumed = *resumed_tasks;
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
    manifest.files.extend(written.files.iter().cloned());
    manifest.write(dir).map_err(ds)?;
    write_dataset_card(dir, &manifest, &cfg.command_line).map_err(ds)?;
    Ok(manifest)
}

/// The tokens the policy's endpoint counted, if it counts them.
pub(super) fn api_usage<P: Policy>(policy: &P) -> Option<ApiUsage> {
    policy.usage().map(|(prompt, completion)| ApiUsage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
    })
}

/// What the run reports: pass rates over the groups and the summary table; `manifest` is
/// the one written to the run's folder, if it had one.
pub(super) fn report(
    manifest: Option<Manifest>,
    usage: Option<ApiUsage>,
    f: Finished,
    k: u32,
) -> RunReport {
    let Finished { st, interrupted, written, resumed_tasks, started, .. } = f;
    let pass_at_1 = if st.groups > 0 { st.pass_sum / st.groups as f64 } else { 0.0 };
    let pass_at_k = if st.groups > 0 { st.any_passed as f64 / st.groups as f64 } else { 0.0 };
    let elapsed = started.elapsed();
    let table = st.table(elapsed, resumed_tasks, pass_at_1, pass_at_k, k);
    RunReport {
        manifest,
        usage,
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

pub(crate) fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
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
