//! Which tasks and samples this invocation runs: the registry and families, an explicit task
//! list, this shard's task indices, and what `--resume` skips (finished tasks, finished rows,
//! trajectories dedup has already seen).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use agentgen_datasets::{
    FinishedRows, Split, finished_rows, list_parts, read_rows, trajectory_hash,
};
use agentgen_environments::{PackageInfo, Registry, Selection, TaskRef};

use super::{RunConfig, ds};
use crate::ids;
use crate::{Error, Result};

pub(super) struct Job {
    pub(super) ordinal: u64,
    pub(super) index: u64,
    pub(super) task_ref: TaskRef,
    /// Row sample ids already finished (resume): computed but not written again.
    pub(super) done: HashSet<String>,
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

/// The families a run serves: the selection, its family names and versions
/// (a package pinned by its hash), and the global number of tasks.
pub(super) struct Selected {
    pub(super) selection: Selection,
    pub(super) family_names: Vec<String>,
    pub(super) task_count: u64,
    pub(super) env_versions: BTreeMap<String, String>,
    pub(super) packages: Vec<PackageInfo>,
}

/// Open the registry, select the families and check an explicit task list against them.
pub(super) fn select(cfg: &RunConfig) -> Result<(Registry, Selected)> {
    let (registry, selected) = run_registry(cfg)?;
    let names: Vec<&str> = selected.iter().map(String::as_str).collect();
    let selection =
        registry.select(&names).map_err(|e| Error::Config { message: e.to_string() })?;
    let family_names: Vec<String> =
        selection.families().iter().map(|f| f.name().to_owned()).collect();
    if let Some(list) = &cfg.task_list {
        check_task_list(&registry, &family_names, list)?;
    }
    let task_count = cfg.task_list.as_ref().map_or(cfg.tasks, |l| l.len() as u64);

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
    Ok((registry, Selected { selection, family_names, task_count, env_versions, packages }))
}

/// The folder a resumed run continues (none on a fresh run or without a folder).
fn resumed(cfg: &RunConfig) -> Option<&Path> {
    cfg.out.as_deref().filter(|_| cfg.resume)
}

/// The rows a resumed folder already holds (none on a fresh run).
pub(super) fn finished(cfg: &RunConfig) -> Result<FinishedRows> {
    Ok(match resumed(cfg) {
        Some(dir) if dir.join("data").exists() => finished_rows(dir).map_err(ds)?,
        _ => FinishedRows::default(),
    })
}

/// The trajectories this shard's written train rows already hold, so a resumed run dedups
/// against them (empty on a fresh run or without dedup).
pub(super) fn dedup_seen(cfg: &RunConfig) -> Result<HashMap<[u8; 32], String>> {
    let mut seen: HashMap<[u8; 32], String> = HashMap::new();
    if let Some(dir) = resumed(cfg).filter(|_| cfg.dedup) {
        for part in list_parts(dir).map_err(ds)? {
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
    Ok(seen)
}

/// This shard's jobs in task order, and the counts the manifest records.
pub(super) struct Plan {
    pub(super) jobs: Vec<Job>,
    /// Tasks skipped because every sample was finished.
    pub(super) resumed_tasks: u64,
    /// Tasks this shard owns (run or skipped).
    pub(super) shard_tasks: u64,
}

/// Plan: this shard's task indices, skipping tasks whose samples are all finished.
pub(super) fn plan_jobs(
    cfg: &RunConfig,
    selection: &Selection,
    task_count: u64,
    done: &FinishedRows,
) -> Plan {
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
    Plan { jobs, resumed_tasks, shard_tasks }
}
