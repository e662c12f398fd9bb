//! `agentgen rollout`: the RL worker mode of `generate`. It runs the pipeline (`pipeline::run`)
//! with `--samples-per-task K` groups, so every row carries its group id, the sampled tokens'
//! logprobs, the loss mask, the reward and the group-relative advantage (reward minus the
//! group mean, computed by the pipeline), and writes the Parquet dataset; with `--jsonl PATH`
//! (`-` = stdout) it also streams the rows, both splits, as JSON lines for a trainer that
//! reads a pipe. No rollout logic lives here.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use agentgen_codec::ThinkingMode;
use agentgen_datasets::{list_parts, read_rows};
use agentgen_pipeline::{
    HttpConfig, HttpPolicy, Policy, ReferencePolicy, RunConfig, SamplingParams,
};
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
    #[arg(long, default_value_t = 16)]
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
    /// reference (no model), local (the candle engine on `--model DIR`) or http (an
    /// OpenAI-compatible server, e.g. `agentgen serve`).
    #[arg(long, default_value = "http")]
    pub policy: String,
    /// Checkpoint folder for `--policy local`.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Server URL for `--policy http`.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub endpoint: String,
    /// `model` field sent to the server.
    #[arg(long, default_value = "deepseek-ai/DeepSeek-V3.2")]
    pub api_model: String,
    /// Environment variable holding the server's API key.
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// Sampling temperature.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Nucleus mass.
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Most tokens per assistant turn.
    #[arg(long, default_value_t = 4096)]
    pub max_tokens: usize,
    /// Most assistant turns per rollout.
    #[arg(long, default_value_t = 32)]
    pub max_turns: u32,
    /// thinking or chat.
    #[arg(long, default_value = "thinking")]
    pub thinking_mode: String,
    /// Rollouts in flight.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Also write every row as a JSON line to PATH (`-` = stdout).
    #[arg(long, value_name = "PATH")]
    pub jsonl: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
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
    let mode: ThinkingMode = args.thinking_mode.parse()?;
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
        task_list,
        samples_per_task: args.samples_per_task,
        concurrency: args.concurrency.max(1),
        thinking_mode: mode,
        sampling: SamplingParams {
            temperature: args.temperature,
            top_p: args.top_p,
            top_k: None,
            max_tokens: args.max_tokens,
            seed: args.seed,
        },
        progress: !args.quiet,
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
        ..RunConfig::default()
    };
    cfg.limits.max_turns = args.max_turns;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let report = match args.policy.as_str() {
        "reference" => rt.block_on(drive(cfg, ReferencePolicy::new()))?,
        "http" => {
            let api_key = match &args.api_key_env {
                Some(v) => Some(std::env::var(v).with_context(|| format!("--api-key-env {v}"))?),
                None => None,
            };
            let policy = HttpPolicy::try_new(HttpConfig {
                endpoint: args.endpoint.clone(),
                model: args.api_model.clone(),
                api_key,
                seed: args.seed,
                ..HttpConfig::default()
            })?;
            rt.block_on(drive(cfg, Arc::new(policy)))?
        }
        "local" => {
            let dir = args.model.as_ref().context("--policy local needs --model DIR")?;
            let (policy, sha) = super::generate::load_local_policy(&rt, dir)?;
            cfg.checkpoint_config_sha256 = sha;
            rt.block_on(drive(cfg, policy))?
        }
        other => anyhow::bail!("--policy {other}: expected reference, local or http"),
    };
    if !args.quiet {
        eprintln!("{}", report.table);
    }
    if let Some(path) = &args.jsonl {
        let sink: Box<dyn Write> = if path == "-" {
            Box::new(std::io::stdout().lock())
        } else {
            Box::new(std::fs::File::create(path).with_context(|| format!("cannot create {path}"))?)
        };
        let mut w = BufWriter::new(sink);
        for part in list_parts(&out)? {
            for row in read_rows(&part.path)
                .with_context(|| format!("while reading {}", part.path.display()))?
            {
                let mut v = serde_json::to_value(&row)?;
                v["split"] = serde_json::json!(part.split.as_str());
                serde_json::to_writer(&mut w, &v)?;
                w.write_all(b"\n")?;
            }
        }
        w.flush()?;
        if temporary {
            let _ = std::fs::remove_dir_all(&out);
        }
    }
    Ok(if report.interrupted { ExitCode::from(130) } else { ExitCode::SUCCESS })
}

async fn drive<P: Policy>(
    cfg: RunConfig,
    policy: P,
) -> anyhow::Result<agentgen_pipeline::RunReport> {
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    Ok(agentgen_pipeline::run(cfg, policy, shutdown).await?)
}

/// Read a task list: one task id per line; blank lines and `#` comments are skipped. A bad id
/// is an error naming the file and line.
fn read_task_file(path: &std::path::Path) -> anyhow::Result<Vec<agentgen_environments::TaskRef>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the task file {}", path.display()))?;
    let mut list = Vec::new();
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
