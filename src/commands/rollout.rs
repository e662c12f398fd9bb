//! `agentgen rollout`: the RL worker mode of `generate`. It runs the pipeline (`pipeline::run`)
//! with `--samples-per-task K` groups, so every row carries its group id, the sampled tokens'
//! logprobs, the loss mask, the reward and the group-relative advantage (reward minus the
//! group mean, computed by the pipeline), and writes the Parquet dataset; with `--jsonl PATH`
//! (`-` = stdout) it also streams the rows, both splits, as JSON lines for a trainer that
//! reads a pipe. No rollout logic lives here.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use agentgen_datasets::SampleRow;
use agentgen_pipeline::{Policy, ReferencePolicy, RowSink, RunConfig};
use anyhow::Context;

/// Roll out groups of K samples per task and write rows with logprobs, rewards and
/// group-relative advantages.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output dataset folder (Parquet, HF layout). Default: ./rollouts, or a temporary folder
    /// that is removed afterwards when only `--jsonl` output is wanted.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Number of tasks (sampled deterministically from the seed over the families).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub tasks: u64,
    /// Task list instead of sampling: one id `family@version/instance_seed/task_seed` per line
    /// (as `agentgen envs sample` prints them; blank lines and `#` comments are skipped).
    /// `--tasks` and `--families` are then ignored.
    #[arg(long, value_name = "FILE")]
    pub task_file: Option<PathBuf>,
    /// Samples per task: one group of K rollouts per task.
    #[arg(long, default_value_t = 4)]
    pub samples_per_task: u32,
    /// Run seed.
    #[arg(long, default_value_t = 20251201)]
    pub seed: u64,
    /// Comma-separated families (default: all available).
    #[arg(long, value_delimiter = ',')]
    pub families: Vec<String>,
    /// Comma-separated envpkg packages or folders of packages, served alongside `--families`
    /// (`PATH@sha256:<hex>` pins one); their task ids work in `--task-file` too.
    #[arg(long, value_delimiter = ',')]
    pub envs: Vec<String>,
    /// reference (no model), local (the candle engine on `--model DIR`), http (raw prompts to
    /// an OpenAI-compatible `/v1/completions`, e.g. `agentgen serve`) or chat (messages and
    /// tools to any `/v1/chat/completions`).
    #[arg(long, default_value = "http")]
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
    /// thinking, chat, or auto (chat policy only, its default: thinking when the endpoint
    /// returns reasoning, chat otherwise, per row).
    #[arg(long)]
    pub thinking_mode: Option<String>,
    #[command(flatten)]
    pub endpoint_flags: super::endpoint::EndpointFlags,
    /// Keep tasks whose pass rate lies in [LO, HI]: with `--envs`, the packages' calibrated
    /// rate (`agentgen calibrate`) pre-selects their tasks; built-in families' groups are
    /// filtered by their pass rate in this run.
    #[arg(long, value_name = "LO,HI")]
    pub difficulty_band: Option<String>,
    /// Rollouts in flight.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Also write every row as a JSON line to PATH (`-` = stdout).
    #[arg(long, value_name = "PATH")]
    pub jsonl: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Continue a killed or interrupted run in the same folder (same configuration only).
    #[arg(long)]
    pub resume: bool,
    /// Replace the agentgen dataset already in `--out` (a foreign folder is refused even so).
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Close the open Parquet parts when they have held rows this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub flush_secs: u64,
    /// Stop (exit 3) when more than this fraction of rollouts fail in the policy (transport,
    /// HTTP, auth), checked after the first 50; a run whose rows all fail so stops too.
    #[arg(long, value_name = "RATE", default_value_t = 0.5)]
    pub max_policy_error_rate: f64,
    /// Run families that need untrusted code even when a required sandbox layer is missing
    /// (a one-line warning names what is missing).
    #[arg(long)]
    pub allow_weak_sandbox: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    super::envs::allow_weak_sandbox(args.allow_weak_sandbox);
    let task_list = match &args.task_file {
        Some(f) => Some(read_task_file(f)?),
        None => None,
    };
    anyhow::ensure!(args.samples_per_task >= 1, "--samples-per-task must be at least 1");
    super::init_tracing(args.quiet);
    let (mode, auto) = super::endpoint::thinking_mode(args.thinking_mode.as_deref(), &args.policy)?;
    let (out, temporary) = match (&args.out, &args.jsonl) {
        (Some(d), _) => (d.clone(), false),
        (None, Some(_)) => {
            let d = std::env::temp_dir().join(format!("agentgen-rollout-{}", std::process::id()));
            (d, true)
        }
        (None, None) => (PathBuf::from("rollouts"), false),
    };
    let mut cfg = RunConfig {
        out: out.clone(),
        tasks: args.tasks,
        seed: args.seed,
        families: args.families.clone(),
        envs: args.envs.clone(),
        task_list,
        samples_per_task: args.samples_per_task,
        concurrency: args.concurrency.max(1),
        thinking_mode: mode,
        thinking_auto: auto,
        sampling: args.sampling.params(&Default::default(), args.seed)?,
        progress: !args.quiet,
        resume: args.resume,
        // A temporary folder of an earlier process with the same pid is ours to replace.
        overwrite: args.overwrite || temporary,
        flush_secs: args.flush_secs,
        max_policy_error_rate: args.max_policy_error_rate,
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
        ..RunConfig::default()
    };
    cfg.limits.max_turns = args.max_turns;
    if let Some(b) = &args.difficulty_band {
        let (lo, hi) = b.split_once(',').context("--difficulty-band wants LO,HI")?;
        cfg.difficulty_band = Some((
            lo.trim().parse().with_context(|| format!("--difficulty-band {b}"))?,
            hi.trim().parse().with_context(|| format!("--difficulty-band {b}"))?,
        ));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let sink = match &args.jsonl {
        Some(path) => Some(jsonl_sink(path)?),
        None => None,
    };
    let report = match args.policy.as_str() {
        "reference" => rt.block_on(drive(cfg, ReferencePolicy::new(), sink))?,
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
                let (report, stopped) = super::endpoint::run_chat(&rt, cfg, p, sink)?;
                if let Some(code) = stopped {
                    return Ok(code);
                }
                report
            } else {
                let p = super::endpoint::http_policy(&rt, http, args.api_model.as_deref(), flags)?;
                rt.block_on(drive(cfg, p, sink))?
            }
        }
        "local" => {
            let dir = args.model.as_ref().context("--policy local needs --model DIR")?;
            let (policy, sha) = super::generate::load_local_policy(&rt, dir)?;
            cfg.checkpoint_config_sha256 = sha;
            rt.block_on(drive(cfg, policy, sink))?
        }
        other => anyhow::bail!("--policy {other}: expected reference, local, http or chat"),
    };
    eprintln!("{}", report.table.trim_end());
    if !temporary {
        eprintln!("{}", super::written_to(&report));
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&out);
    }
    if let Some(why) = &report.stopped {
        eprintln!("error: stopped: {why}");
        return Ok(ExitCode::from(3));
    }
    Ok(if report.interrupted { ExitCode::from(130) } else { ExitCode::SUCCESS })
}

async fn drive<P: Policy>(
    cfg: RunConfig,
    policy: P,
    sink: Option<RowSink>,
) -> anyhow::Result<agentgen_pipeline::RunReport> {
    let shutdown = agentgen_pipeline::shutdown_signal();
    Ok(agentgen_pipeline::run_with_sink(cfg, policy, shutdown, sink).await?)
}

/// Streams every row (both splits, `split` added) as one JSON line to `path` (`-` = stdout)
/// the moment it is written, flushed per row. A reader that goes away ends the stream, not
/// the run (the Parquet dataset is still written).
fn jsonl_sink(path: &str) -> anyhow::Result<RowSink> {
    let out: Box<dyn Write + Send> = if path == "-" {
        Box::new(std::io::stdout())
    } else {
        Box::new(std::fs::File::create(path).with_context(|| format!("cannot create {path}"))?)
    };
    let mut out = Some(BufWriter::new(out));
    Ok(Box::new(move |row: &SampleRow| {
        let Some(w) = out.as_mut() else { return };
        let line = serde_json::to_value(row).map(|mut v| {
            v["split"] = serde_json::json!(row.split().as_str());
            v
        });
        let ok = line.is_ok_and(|v| {
            serde_json::to_writer(&mut *w, &v).is_ok()
                && w.write_all(b"\n").is_ok()
                && w.flush().is_ok()
        });
        if !ok {
            out = None;
        }
    }))
}

/// Read a task list: one task id per line; blank lines and `#` comments are skipped. A bad id
/// is an error naming the file and line.
fn read_task_file(path: &std::path::Path) -> anyhow::Result<Vec<agentgen_environments::TaskRef>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the task file {}", path.display()))?;
    let mut list = Vec::new();
    // A byte-order mark (Windows editors write one) is not part of the first id.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let r = line.parse().map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))?;
        list.push(r);
    }
    anyhow::ensure!(!list.is_empty(), "the task file {} lists no tasks", path.display());
    Ok(list)
}
