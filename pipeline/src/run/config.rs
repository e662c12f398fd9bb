//! What a run is told: [`RunConfig`] with its defaults and checks, and `--shard I/N`.

use std::path::PathBuf;
use std::str::FromStr;

use agentgen_codec::ThinkingMode;
use agentgen_environments::TaskRef;
use serde::{Deserialize, Serialize};

use crate::policy::SamplingParams;
use crate::rollout::RolloutLimits;
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
    /// The dataset folder. None: the run has no folder (nothing is locked or written); its rows
    /// go only to the run's sink (`rollout --jsonl` without `--out`); `resume` and `overwrite`
    /// are refused.
    pub out: Option<PathBuf>,
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
            out: Some(PathBuf::from("dataset")),
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

impl RunConfig {
    /// Refuse settings no run can use, before anything is touched.
    pub(super) fn check(&self) -> Result<()> {
        if self.samples_per_task == 0 || self.concurrency == 0 {
            return Err(Error::Config {
                message: "--samples-per-task and --concurrency must be positive".into(),
            });
        }
        if let Some((lo, hi)) = self.difficulty_band
            && !(0.0..=1.0).contains(&lo) | !(0.0..=1.0).contains(&hi) | (lo > hi)
        {
            return Err(Error::Config {
                message: format!("difficulty band [{lo}, {hi}] is not within [0, 1]"),
            });
        }
        if self.out.is_none() && (self.resume || self.overwrite) {
            return Err(Error::Config {
                message: "--resume and --overwrite need an output folder (--out)".into(),
            });
        }
        Ok(())
    }
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
