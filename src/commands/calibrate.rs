//! `agentgen calibrate`: K rollouts per served task of the `--envs` packages with one policy,
//! per-task pass counts written next to the packages
//! (`<folder>/.agentgen/<sha256>/calibration.json`, format in
//! `environments::envpkg::calibration`) and a summary by package and difficulty. The logic is
//! `pipeline::calibrate`; this module only wires flags and policies.

use std::path::PathBuf;
use std::process::ExitCode;

use agentgen_pipeline::calibrate::{CalibrateReport, calibrate, summary_json, summary_text};
use agentgen_pipeline::{Policy, RunConfig};
use anyhow::Context;

/// Measure how often a policy solves each task of envpkg packages (K rollouts per task) and
/// record it next to the packages, for `generate|rollout --difficulty-band LO,HI`.
#[derive(Debug, clap::Args)]
#[command(mut_arg("policy", |a| a.required(true).help(
    "reference (every task passes: a smoke test), local, http or chat: the policy whose \
     difficulty is measured (required: the band means \"hard for this policy\")"
)))]
pub struct Args {
    /// Comma-separated envpkg packages or folders of packages (`PATH@sha256:<hex>` pins one).
    #[arg(long, value_name = "PATHS", value_delimiter = ',', required = true)]
    pub envs: Vec<String>,
    /// K: rollouts per task.
    #[arg(
        long,
        value_name = "K",
        default_value_t = 8,
        allow_hyphen_values = true,
        value_parser = super::runargs::count::<u32>
    )]
    pub samples: u32,
    /// Generated packages: calibrate seeds 1..N (static tasks: all of them).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100,
        allow_hyphen_values = true,
        value_parser = super::runargs::count::<u64>
    )]
    pub tasks: u64,
    #[command(flatten)]
    pub policy: super::policy::PolicyArgs,
    #[command(flatten)]
    pub sampling: super::sampling::SamplingArgs,
    #[command(flatten)]
    pub run: super::runargs::RunArgs,
    /// Keep the calibration rollouts as a dataset here (default: none is written).
    #[arg(long, value_name = "RUNDIR")]
    pub out: Option<PathBuf>,
    /// Replace the agentgen dataset already in `--out`.
    #[arg(long, requires = "out")]
    pub overwrite: bool,
    /// Print the summary as JSON on stdout (and write it to FILE when given).
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "")]
    pub json: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    args.run.init();
    let mut cfg = RunConfig {
        out: args.out.clone(),
        envs: args.envs.clone(),
        samples_per_task: args.samples,
        overwrite: args.overwrite,
        ..RunConfig::default()
    };
    args.run.configure(&mut cfg, &args.policy, &args.sampling)?;
    let rt = super::runtime()?;
    let report = args.policy.drive(&rt, cfg, Calibrate { tasks: args.tasks })?.output;
    let summary = summary_json(&report.packages);
    eprint!("{}", summary_text(&summary));
    if let Some(file) = &args.json {
        println!("{summary}");
        if !file.is_empty() {
            std::fs::write(file, format!("{summary}\n"))
                .with_context(|| format!("cannot write {file}"))?;
        }
    }
    if let Some(line) = super::written_to(&report.run) {
        eprintln!("{line}");
    }
    if let Some(why) = &report.run.stopped {
        eprintln!("error: stopped: {why}; no calibration written");
        return Ok(ExitCode::from(3));
    }
    Ok(if report.run.interrupted { ExitCode::from(130) } else { ExitCode::SUCCESS })
}

/// `calibrate`'s use of the policy: K rollouts per task, pass counts recorded.
struct Calibrate {
    tasks: u64,
}

impl super::policy::Drive for Calibrate {
    type Output = CalibrateReport;

    fn drive<P: Policy>(
        self,
        rt: &tokio::runtime::Runtime,
        cfg: RunConfig,
        policy: P,
        shutdown: super::policy::Shutdown,
    ) -> anyhow::Result<CalibrateReport> {
        Ok(rt.block_on(calibrate(cfg, self.tasks, policy, shutdown))?)
    }
}
