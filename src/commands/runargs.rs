//! The run flags the rollout commands share: `RunArgs` (`generate`, `rollout`, `calibrate`)
//! and `DatasetArgs` (`generate`, `rollout`): one set of names, help texts, defaults (the
//! pipeline's `DEFAULT_*`, shown in `--help`) and range checks at parse time. `--config FILE`
//! is part of `RunArgs`; its keys are these commands' flags (see `config.rs`).

use std::path::PathBuf;

use agentgen_pipeline::{
    DEFAULT_CONCURRENCY, DEFAULT_FLUSH_SECS, DEFAULT_MAX_POLICY_ERROR_RATE, DEFAULT_MAX_TURNS,
    DEFAULT_SEED, RunConfig,
};

use super::policy::{PolicyArgs, PolicyKind};
use super::sampling::SamplingArgs;

/// `--seed`, `--concurrency`, `--max-turns`, `--quiet`, `--allow-weak-sandbox`, `--config`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Run seed (task selection, sample ids, sampling seeds).
    #[arg(long, value_name = "SEED", default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    #[arg(
        long,
        value_name = "N",
        allow_hyphen_values = true,
        value_parser = count::<usize>,
        help = format!(
            "Rollouts in flight [default: {DEFAULT_CONCURRENCY}; with `--envs` and the \
             reference policy, 2 per core: each in-flight package episode holds one worker \
             process]"
        )
    )]
    pub concurrency: Option<usize>,
    /// Most assistant turns per rollout.
    #[arg(
        long,
        value_name = "N",
        allow_hyphen_values = true,
        default_value_t = DEFAULT_MAX_TURNS,
        value_parser = count::<u32>
    )]
    pub max_turns: u32,
    /// No progress bar, warnings only.
    #[arg(long)]
    pub quiet: bool,
    /// Run families and packages that need untrusted code even when a required sandbox layer
    /// is missing (a one-line warning names what is missing).
    #[arg(long)]
    pub allow_weak_sandbox: bool,
    /// TOML file whose keys are this command's long flags, in snake or kebab case
    /// (`top_p = 0.9` or `top-p = 0.9`; a switch is `true`, a list an array); flags given on
    /// the command line win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl RunArgs {
    /// `--concurrency`, or the default for this policy: 64 rollouts, but 2 per core for
    /// package runs with the reference policy (CPU bound; each in-flight package episode
    /// holds a worker process).
    pub fn concurrency(&self, policy: PolicyKind, with_envs: bool) -> usize {
        self.concurrency.unwrap_or_else(|| {
            if policy == PolicyKind::Reference && with_envs {
                std::thread::available_parallelism().map_or(2, |n| n.get() * 2)
            } else {
                DEFAULT_CONCURRENCY
            }
        })
    }

    /// Set what these flags, the policy flags and the sampling flags decide in a run's
    /// configuration, the same way in `generate`, `rollout` and `calibrate`: the seed, the
    /// sampling, the rollouts in flight (for `cfg.envs`: set those first), the thinking mode,
    /// the turn limit, the progress bar and the command line the manifest records.
    pub fn configure(
        &self,
        cfg: &mut RunConfig,
        policy: &PolicyArgs,
        sampling: &SamplingArgs,
    ) -> anyhow::Result<()> {
        cfg.seed = self.seed;
        cfg.sampling = sampling.params(self.seed)?;
        cfg.concurrency = self.concurrency(policy.kind(), !cfg.envs.is_empty());
        (cfg.thinking_mode, cfg.thinking_auto) = policy.thinking_mode()?;
        cfg.limits.max_turns = self.max_turns;
        cfg.progress = !self.quiet;
        cfg.command_line = std::env::args().collect::<Vec<_>>().join(" ");
        Ok(())
    }

    /// Settle the process-wide switches (`--quiet` logging, `--allow-weak-sandbox`).
    pub fn init(&self) {
        super::envs::allow_weak_sandbox(self.allow_weak_sandbox);
        super::init_tracing(self.quiet);
    }
}

/// What a run writes and which tasks it draws: `--families`, `--envs`, `--difficulty-band`,
/// `--resume`, `--overwrite`, `--flush-secs`, `--max-policy-error-rate`.
#[derive(Debug, Clone, clap::Args)]
pub struct DatasetArgs {
    /// Comma-separated families (default: all available; with only `--envs`, none).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub families: Vec<String>,
    /// Comma-separated envpkg packages or folders of packages (a folder's direct children
    /// holding `env.toml`), served alongside `--families`; `PATH@sha256:<hex>` pins one. Each
    /// package is admitted first (`agentgen envs check`; cached by hash in
    /// `<parent>/.agentgen/`). Needs CPython >= 3.11.
    #[arg(long, value_name = "PATHS", value_delimiter = ',')]
    pub envs: Vec<String>,
    /// Keep tasks whose pass rate lies in [LO, HI]: with `--envs`, the packages' calibrated
    /// rate (`agentgen calibrate`) pre-selects their tasks; built-in families' groups are
    /// filtered by their pass rate in this run.
    #[arg(long, value_name = "LO,HI", value_parser = band)]
    pub difficulty_band: Option<(f32, f32)>,
    /// Continue a killed or interrupted run in the same folder (same configuration only).
    #[arg(long)]
    pub resume: bool,
    /// Replace the agentgen dataset already in `--out` (a foreign folder is refused even so).
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    #[arg(
        long,
        value_name = "SECS",
        help = format!(
            "Close the open Parquet parts when they have held rows this many seconds, so a \
             kill loses at most about this much finished work (0 = only when a part is full) \
             [default: {DEFAULT_FLUSH_SECS}]"
        )
    )]
    pub flush_secs: Option<u64>,
    /// Stop (exit 3) when more than this fraction of rollouts fail in the policy (transport,
    /// HTTP, auth), checked after the first 50; a run whose rows all fail so stops too.
    #[arg(
        long,
        value_name = "RATE",
        default_value_t = DEFAULT_MAX_POLICY_ERROR_RATE,
        value_parser = rate
    )]
    pub max_policy_error_rate: f64,
}

impl DatasetArgs {
    /// The flags given that only make sense with an output folder, as `--name`s.
    pub fn folder_flags(&self) -> Vec<&'static str> {
        [
            (self.resume, "--resume"),
            (self.overwrite, "--overwrite"),
            (self.flush_secs.is_some(), "--flush-secs"),
        ]
        .into_iter()
        .filter_map(|(given, name)| given.then_some(name))
        .collect()
    }

    /// Copy these flags into the run's configuration.
    pub fn apply(&self, cfg: &mut RunConfig) {
        cfg.families = self.families.iter().filter(|f| !f.trim().is_empty()).cloned().collect();
        cfg.envs = self.envs.iter().filter(|f| !f.trim().is_empty()).cloned().collect();
        cfg.difficulty_band = self.difficulty_band;
        cfg.resume = self.resume;
        cfg.overwrite = self.overwrite;
        cfg.flush_secs = self.flush_secs.unwrap_or(DEFAULT_FLUSH_SECS);
        cfg.max_policy_error_rate = self.max_policy_error_rate;
    }
}

/// A count of at least one (`--tasks`, `--concurrency`, ...): `-1` and `0` are refused
/// naming the range, as is a number too large for the flag.
pub fn count<T: TryFrom<i128>>(s: &str) -> Result<T, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n >= 1 => T::try_from(n).map_err(|_| format!("{s} is too large")),
        Ok(_) => Err(format!("{s} is not in 1..")),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

/// `LO,HI`: two numbers.
fn band(s: &str) -> Result<(f32, f32), String> {
    let (lo, hi) = s.split_once(',').ok_or_else(|| format!("{s:?}: want LO,HI"))?;
    let num = |t: &str| t.trim().parse::<f32>().map_err(|_| format!("{t:?} is not a number"));
    Ok((num(lo)?, num(hi)?))
}

/// A fraction in 0..=1.
fn rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        Ok(r) => Err(format!("{r} is not within 0..=1")),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}
