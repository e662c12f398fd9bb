//! `agentgen calibrate`: K rollouts per served task of the `--envs` packages with one policy,
//! per-task pass counts written next to the packages
//! (`<folder>/.agentgen/<sha256>/calibration.json`, format in
//! `environments::envpkg::calibration`) and a summary by package and difficulty. The logic is
//! `pipeline::calibrate`; this module only wires flags and policies.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use agentgen_pipeline::calibrate::{CalibrateReport, calibrate, summary_json, summary_text};
use agentgen_pipeline::{Policy, ReferencePolicy, RunConfig};
use anyhow::Context;

/// Measure how often a policy solves each task of envpkg packages (K rollouts per task) and
/// record it next to the packages, for `generate|rollout --difficulty-band LO,HI`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Comma-separated envpkg packages or folders of packages (`PATH@sha256:<hex>` pins one).
    #[arg(long, value_delimiter = ',', required = true)]
    pub envs: Vec<String>,
    /// K: rollouts per task.
    #[arg(long, default_value_t = 8)]
    pub samples: u32,
    /// Generated packages: calibrate seeds 1..N (static tasks: all of them).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub tasks: u64,
    /// reference (every task passes: a smoke test), local, http or chat: the policy whose
    /// difficulty is measured (required: the band means "hard for this policy").
    #[arg(long)]
    pub policy: String,
    /// Checkpoint folder for `--policy local`.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Server URL for `--policy http|chat` (base URL, with or without `/v1`).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub endpoint: String,
    /// `model` field sent to the server (default: the server's only model).
    #[arg(long)]
    pub api_model: Option<String>,
    /// Environment variable holding the server's API key.
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    #[command(flatten)]
    pub sampling: super::sampling::SamplingArgs,
    /// Most assistant turns per rollout.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_turns: u32,
    /// thinking, chat, or auto (chat policy only, its default).
    #[arg(long)]
    pub thinking_mode: Option<String>,
    #[command(flatten)]
    pub endpoint_flags: super::endpoint::EndpointFlags,
    /// Rollouts in flight.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Run seed (sampling seeds of the rollouts).
    #[arg(long, default_value_t = 20251201)]
    pub seed: u64,
    /// Keep the calibration rollouts as a dataset here (default: a temporary folder, removed).
    #[arg(long, value_name = "RUNDIR")]
    pub out: Option<PathBuf>,
    /// Replace the agentgen dataset already in `--out`.
    #[arg(long)]
    pub overwrite: bool,
    /// Print the summary as JSON on stdout (and write it to FILE when given).
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "")]
    pub json: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Run package workers even when a required sandbox layer is missing.
    #[arg(long)]
    pub allow_weak_sandbox: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    super::envs::allow_weak_sandbox(args.allow_weak_sandbox);
    anyhow::ensure!(args.samples >= 1, "--samples must be at least 1");
    anyhow::ensure!(args.tasks >= 1, "--tasks must be at least 1");
    super::init_tracing(args.quiet);
    let (mode, auto) = super::endpoint::thinking_mode(args.thinking_mode.as_deref(), &args.policy)?;
    let (out, temporary) = match &args.out {
        Some(d) => (d.clone(), false),
        None => {
            (std::env::temp_dir().join(format!("agentgen-calibrate-{}", std::process::id())), true)
        }
    };
    let mut cfg = RunConfig {
        out: out.clone(),
        seed: args.seed,
        envs: args.envs.clone(),
        samples_per_task: args.samples,
        concurrency: args.concurrency.max(1),
        thinking_mode: mode,
        thinking_auto: auto,
        sampling: args.sampling.params(&Default::default(), args.seed)?,
        progress: !args.quiet,
        overwrite: args.overwrite || temporary,
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
        ..RunConfig::default()
    };
    cfg.limits.max_turns = args.max_turns;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let n = args.tasks;
    let report = match args.policy.as_str() {
        "reference" => rt.block_on(drive(cfg, n, ReferencePolicy::new()))?,
        "http" | "chat" => {
            let flags = &args.endpoint_flags;
            let http = super::endpoint::http_config(
                args.endpoint.clone(),
                args.api_key_env.as_deref(),
                flags,
                args.seed,
            )?;
            if args.policy == "chat" {
                let p = super::endpoint::chat_policy(&rt, http, args.api_model.as_deref(), flags)?;
                let spent = p.budget_spent_signal();
                let shutdown = async move {
                    tokio::select! {
                        () = agentgen_pipeline::shutdown_signal() => {}
                        _ = spent => {}
                    }
                };
                rt.block_on(calibrate(cfg, n, Arc::clone(&p), shutdown))?
            } else {
                let p = super::endpoint::http_policy(&rt, http, args.api_model.as_deref(), flags)?;
                rt.block_on(drive(cfg, n, p))?
            }
        }
        "local" => {
            let dir = args.model.as_ref().context("--policy local needs --model DIR")?;
            let (policy, sha) = super::generate::load_local_policy(&rt, dir)?;
            cfg.checkpoint_config_sha256 = sha;
            rt.block_on(drive(cfg, n, policy))?
        }
        other => anyhow::bail!("--policy {other}: expected reference, local, http or chat"),
    };
    let summary = summary_json(&report.packages);
    eprint!("{}", summary_text(&summary));
    if let Some(file) = &args.json {
        println!("{summary}");
        if !file.is_empty() {
            std::fs::write(file, format!("{summary}\n"))
                .with_context(|| format!("cannot write {file}"))?;
        }
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&out);
    } else {
        eprintln!("{}", super::written_to(&report.run));
    }
    if let Some(why) = &report.run.stopped {
        eprintln!("error: stopped: {why}; no calibration written");
        return Ok(ExitCode::from(3));
    }
    Ok(if report.run.interrupted { ExitCode::from(130) } else { ExitCode::SUCCESS })
}

async fn drive<P: Policy>(
    cfg: RunConfig,
    tasks: u64,
    policy: P,
) -> anyhow::Result<CalibrateReport> {
    let shutdown = agentgen_pipeline::shutdown_signal();
    Ok(calibrate(cfg, tasks, policy, shutdown).await?)
}
