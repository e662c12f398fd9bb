//! `agentgen synth`: environment synthesis with a chat model. Flags -> `pipeline::synth`; the
//! chat policy's endpoint flags and preflight are shared with `generate` (`endpoint.rs`).

use std::path::PathBuf;
use std::process::ExitCode;

use agentgen_pipeline::SamplingParams;
use agentgen_pipeline::synth::{SynthConfig, run_synth};
use anyhow::Context;

/// `synth`'s sampling defaults: a cooler temperature and room for whole files per response.
const SYNTH_TEMPERATURE: f32 = 0.7;
const SYNTH_TOP_P: f32 = 0.95;
const SYNTH_MAX_TOKENS: usize = 16384;

/// Build envpkg packages with a model: per package, a tool-use agent writes a draft (data,
/// tools, tasks with solutions and verifiers), runs `envs check` on it and submits; admitted
/// packages land in `DIR/<name>-<short hash>/`, rejected drafts in `DIR/rejected/`, the
/// transcripts in `DIR/transcripts/` (Parquet) and the report in `DIR/synth-report.json`.
/// Exit 0: every package slot finished and at least one package was admitted; 1: none was;
/// 3: `--max-tokens-total` spent (rerun to continue; finished slots are kept).
#[derive(Debug, clap::Args)]
#[command(mut_arg("endpoint", |a| a.help("Chat endpoint (base URL, with or without `/v1`)")))]
pub struct Args {
    /// A task category (e.g. "pet clinic front desk"); repeatable.
    #[arg(long, value_name = "TEXT", required_unless_present = "categories")]
    pub category: Vec<String>,
    /// A file of categories, one per line (blank lines and `#` comments skipped).
    #[arg(long, value_name = "FILE")]
    pub categories: Option<PathBuf>,
    /// Packages to build per category.
    #[arg(long, default_value_t = 1)]
    pub n: u32,
    /// Output folder (created; rerun on the same folder to resume).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub endpoint: super::policy::EndpointArgs,
    #[arg(long, value_name = "T", allow_hyphen_values = true,
        value_parser = super::sampling::temperature,
        help = format!("Sampling temperature, 0 (greedy) to 2 [default: {SYNTH_TEMPERATURE}]"))]
    pub temperature: Option<f32>,
    #[arg(long, value_name = "P", allow_hyphen_values = true,
        value_parser = super::sampling::top_p,
        help = format!("Nucleus sampling mass, above 0 and at most 1 [default: {SYNTH_TOP_P}]"))]
    pub top_p: Option<f32>,
    #[arg(long, value_name = "N", allow_hyphen_values = true,
        value_parser = super::sampling::max_tokens,
        help = format!("Most tokens per model response [default: {SYNTH_MAX_TOKENS}]"))]
    pub max_tokens: Option<usize>,
    /// Most model responses per package.
    #[arg(long, default_value_t = 40)]
    pub max_rounds: u32,
    /// Most prompt + completion tokens per package.
    #[arg(long, default_value_t = 2_000_000)]
    pub max_tokens_per_package: u64,
    /// Most wall-clock minutes per package.
    #[arg(long, default_value_t = 30.0)]
    pub max_minutes_per_package: f64,
    /// Packages built at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Generated seeds `envs check` covers.
    #[arg(long, default_value_t = 16)]
    pub seeds: u64,
    /// Sampling seed.
    #[arg(long, value_name = "SEED", default_value_t = agentgen_pipeline::DEFAULT_SEED)]
    pub seed: u64,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Run package code even when a required sandbox layer is missing.
    #[arg(long)]
    pub allow_weak_sandbox: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    super::envs::allow_weak_sandbox(args.allow_weak_sandbox);
    super::init_tracing(args.quiet);
    let mut categories = args.category.clone();
    if let Some(f) = &args.categories {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the categories file {}", f.display()))?;
        categories.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    anyhow::ensure!(
        !categories.is_empty(),
        "no category given (--category TEXT or --categories FILE)"
    );
    anyhow::ensure!(args.n >= 1, "--n must be at least 1");
    anyhow::ensure!(args.max_rounds >= 1, "--max-rounds must be at least 1");
    anyhow::ensure!(
        args.max_minutes_per_package.is_finite() && args.max_minutes_per_package > 0.0,
        "--max-minutes-per-package must be positive"
    );
    let rt = super::runtime()?;
    let sampling = SamplingParams {
        temperature: args.temperature.unwrap_or(SYNTH_TEMPERATURE),
        top_p: args.top_p.unwrap_or(SYNTH_TOP_P),
        top_k: None,
        max_tokens: args.max_tokens.unwrap_or(SYNTH_MAX_TOKENS),
        seed: args.seed,
    };
    sampling.check().map_err(|e| anyhow::anyhow!("sampling: {e}"))?;
    let endpoint = &args.endpoint;
    let http = endpoint.http_config(args.seed)?;
    let api_model = endpoint.api_model.as_deref();
    let policy = super::endpoint::chat_policy(&rt, http, api_model, &endpoint.flags)?;
    let cfg = SynthConfig {
        categories,
        n: args.n,
        out: args.out.clone(),
        max_rounds: args.max_rounds,
        max_tokens_per_package: args.max_tokens_per_package,
        max_minutes_per_package: args.max_minutes_per_package,
        concurrency: args.concurrency.max(1),
        seeds_k: args.seeds.max(1),
        sampling,
        progress: !args.quiet,
    };
    // A spent `--max-tokens-total` stops each slot at its next request (exit 3 below).
    let shutdown = agentgen_pipeline::shutdown_signal();
    let outcome = rt.block_on(run_synth(cfg, policy, shutdown))?;
    let r = &outcome.report;
    eprintln!(
        "synth: {} categories, {} of {} packages finished ({} resumed): {} admitted, {} rejected {}; {} checks, {} submits, {} tokens",
        r["categories"]["tried"],
        r["packages"]["finished"],
        r["packages"]["planned"],
        r["packages"]["resumed"],
        r["packages"]["admitted"],
        r["packages"]["rejected"],
        r["rejected_by_reason"],
        r["checks"]["run"],
        r["submits"],
        r["tokens"]["total"],
    );
    eprintln!("report in {}", args.out.join(agentgen_pipeline::synth::REPORT_FILE).display());
    if let Some(why) = &outcome.stopped {
        eprintln!("error: stopped: {why}; rerun the same command to continue");
        return Ok(ExitCode::from(3));
    }
    if outcome.interrupted {
        return Ok(ExitCode::from(130));
    }
    let admitted = r["packages"]["admitted"].as_u64().unwrap_or(0);
    Ok(if admitted > 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
