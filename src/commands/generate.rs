//! `agentgen generate`: flags -> `pipeline::RunConfig`, the chosen policy (reference, http, or
//! the local candle engine adapted to `pipeline::Policy` here), SIGINT-safe run, summary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agentgen_codec::{ThinkingMode, Tokenizer};
use agentgen_pipeline::{
    Completion, CompletionFinish, HttpConfig, HttpPolicy, Policy, PromptRequest, ReferencePolicy,
    RunConfig, SamplingParams, ShardSpec,
};
use anyhow::{Context, bail};
use serde::Deserialize;

/// Roll out tasks with a policy, validate every trajectory, and write a Parquet dataset
/// (`DIR/data/{train,rejected}-SHARD-PART.parquet`, `manifest.json`, `README.md`).
///
/// With no flags: the reference policy over all available families, a fixed seed, 1000 tasks,
/// into `./dataset`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output folder.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Global number of tasks (each shard takes its part).
    #[arg(long)]
    tasks: Option<u64>,
    /// Run seed (task selection, sample ids, sampling seeds).
    #[arg(long)]
    seed: Option<u64>,
    /// Comma-separated families (default: all available).
    #[arg(long, value_delimiter = ',')]
    families: Option<Vec<String>>,
    /// reference | local | http.
    #[arg(long)]
    policy: Option<String>,
    /// Checkpoint folder for `--policy local`.
    #[arg(long)]
    model: Option<PathBuf>,
    /// OpenAI-compatible server for `--policy http` (base URL).
    #[arg(long)]
    endpoint: Option<String>,
    /// `model` field sent to the http endpoint.
    #[arg(long)]
    api_model: Option<String>,
    /// Environment variable holding the http API key.
    #[arg(long)]
    api_key_env: Option<String>,
    /// Samples per task (RL groups: group id, advantages, pass@k).
    #[arg(long)]
    samples_per_task: Option<u32>,
    /// Rollouts in flight.
    #[arg(long)]
    concurrency: Option<usize>,
    /// This machine's part of a job array, `I/N` (0-based).
    #[arg(long)]
    shard: Option<String>,
    /// Continue a killed or interrupted run in the same folder.
    #[arg(long)]
    resume: bool,
    /// No progress bar, warnings only.
    #[arg(long)]
    quiet: bool,
    #[arg(long)]
    temperature: Option<f32>,
    #[arg(long)]
    top_p: Option<f32>,
    /// Most tokens per completion.
    #[arg(long)]
    max_tokens: Option<usize>,
    /// thinking | chat.
    #[arg(long)]
    thinking_mode: Option<String>,
    /// Keep exact duplicate trajectories in train.
    #[arg(long)]
    no_dedup: bool,
    /// Worker threads of the runtime (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Keep groups whose pass rate lies in `LO,HI`.
    #[arg(long)]
    difficulty_band: Option<String>,
    /// Most assistant turns per rollout.
    #[arg(long)]
    max_turns: Option<u32>,
    /// Rows per Parquet file before a new part starts.
    #[arg(long)]
    rows_per_file: Option<usize>,
    /// TOML file with the same keys as the flags (flags override).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run families that need untrusted code even when a required sandbox layer is missing
    /// (a one-line warning names what is missing).
    #[arg(long)]
    allow_weak_sandbox: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    out: Option<PathBuf>,
    tasks: Option<u64>,
    seed: Option<u64>,
    families: Option<Vec<String>>,
    policy: Option<String>,
    model: Option<PathBuf>,
    endpoint: Option<String>,
    api_model: Option<String>,
    api_key_env: Option<String>,
    samples_per_task: Option<u32>,
    concurrency: Option<usize>,
    shard: Option<String>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    max_tokens: Option<usize>,
    thinking_mode: Option<String>,
    threads: Option<usize>,
    difficulty_band: Option<String>,
    max_turns: Option<u32>,
    rows_per_file: Option<usize>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let file: FileConfig = match &args.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?
        }
        None => FileConfig::default(),
    };
    init_tracing(args.quiet);
    super::envs::allow_weak_sandbox(args.allow_weak_sandbox);
    let mut cfg = RunConfig::default();
    cfg.out = args.out.or(file.out).unwrap_or_else(|| PathBuf::from("dataset"));
    cfg.tasks = args.tasks.or(file.tasks).unwrap_or(1000);
    cfg.seed = args.seed.or(file.seed).unwrap_or(cfg.seed);
    cfg.families = args.families.or(file.families).unwrap_or_default();
    cfg.families.retain(|f| !f.trim().is_empty());
    cfg.samples_per_task = args.samples_per_task.or(file.samples_per_task).unwrap_or(1);
    cfg.concurrency = args.concurrency.or(file.concurrency).unwrap_or(64);
    if let Some(s) = args.shard.or(file.shard) {
        cfg.shard = s.parse::<ShardSpec>()?;
    }
    cfg.resume = args.resume;
    cfg.progress = !args.quiet;
    cfg.dedup = !args.no_dedup;
    if let Some(m) = args.thinking_mode.or(file.thinking_mode) {
        cfg.thinking_mode = match m.as_str() {
            "thinking" => ThinkingMode::Thinking,
            "chat" => ThinkingMode::Chat,
            other => bail!("--thinking-mode must be thinking or chat, got {other:?}"),
        };
    }
    cfg.sampling = SamplingParams {
        temperature: args.temperature.or(file.temperature).unwrap_or(1.0),
        top_p: args.top_p.or(file.top_p).unwrap_or(0.95),
        top_k: None,
        max_tokens: args.max_tokens.or(file.max_tokens).unwrap_or(4096),
        seed: 0,
    };
    if let Some(t) = args.max_turns.or(file.max_turns) {
        cfg.limits.max_turns = t;
    }
    if let Some(r) = args.rows_per_file.or(file.rows_per_file) {
        cfg.rows_per_file = r;
        cfg.row_group_rows = cfg.row_group_rows.min(r);
    }
    if let Some(b) = args.difficulty_band.or(file.difficulty_band) {
        let (lo, hi) = b.split_once(',').context("--difficulty-band wants LO,HI")?;
        cfg.difficulty_band = Some((lo.trim().parse()?, hi.trim().parse()?));
    }
    cfg.command_line = std::env::args().collect::<Vec<_>>().join(" ");
    cfg.git_revision = option_env!("AGENTGEN_GIT_REVISION").map(str::to_owned);
    let threads = args.threads.or(file.threads);
    let policy = args.policy.or(file.policy).unwrap_or_else(|| "reference".into());

    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(t) = threads {
        rt.worker_threads(t.max(1));
    }
    let rt = rt.build().context("starting the tokio runtime")?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let report = match policy.as_str() {
        "reference" => {
            rt.block_on(agentgen_pipeline::run(cfg, ReferencePolicy::new(), shutdown))?
        }
        "http" => {
            let endpoint =
                args.endpoint.or(file.endpoint).context("--policy http needs --endpoint URL")?;
            let api_key = match args.api_key_env.or(file.api_key_env) {
                Some(var) => Some(
                    std::env::var(&var)
                        .with_context(|| format!("environment variable {var} is not set"))?,
                ),
                None => None,
            };
            let http = HttpConfig {
                endpoint,
                model: args
                    .api_model
                    .or(file.api_model)
                    .unwrap_or_else(|| HttpConfig::default().model),
                api_key,
                seed: cfg.seed,
                ..HttpConfig::default()
            };
            let p = Arc::new(HttpPolicy::try_new(http)?);
            rt.block_on(agentgen_pipeline::run(cfg, p, shutdown))?
        }
        "local" => {
            let dir = args.model.or(file.model).context("--policy local needs --model DIR")?;
            let (p, sha) = load_local_policy(&rt, &dir)?;
            cfg.checkpoint_config_sha256 = sha;
            rt.block_on(agentgen_pipeline::run(cfg, p, shutdown))?
        }
        other => bail!("--policy must be reference, local or http, got {other:?}"),
    };
    rt.shutdown_timeout(Duration::from_secs(1));
    println!("{}", report.table.trim_end());
    if report.interrupted {
        eprintln!("interrupted: finished shards are closed; rerun with --resume to continue");
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}

fn init_tracing(quiet: bool) {
    let filter = if quiet { "warn" } else { "info" };
    let env = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let _ = tracing_subscriber::fmt().with_env_filter(env).with_writer(std::io::stderr).try_init();
}

/// Load the checkpoint in `dir` into an engine on its own thread and wrap it as a policy; also
/// returns the SHA-256 of its `config.json` for the manifest.
pub(crate) fn load_local_policy(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
) -> anyhow::Result<(Arc<LocalPolicy>, Option<String>)> {
    let tokenizer = Tokenizer::shared()?;
    let opts = agentgen_inference::EngineOptions {
        // The engine needs it to stop at the tool-call block's close string.
        detokenizer: Some(Arc::new(tokenizer) as Arc<dyn agentgen_inference::Detokenize>),
        ..agentgen_inference::EngineOptions::default()
    };
    let handle = rt.block_on(async { agentgen_inference::Engine::load(dir, opts) });
    let handle = handle.with_context(|| format!("loading the model in {}", dir.display()))?;
    anyhow::ensure!(
        handle.vocab_size() >= tokenizer.vocab_size(),
        "{}: the checkpoint's vocabulary ({}) is smaller than the V3.2 tokenizer's ({}); \
         --policy local needs a model with the V3.2 vocabulary",
        dir.display(),
        handle.vocab_size(),
        tokenizer.vocab_size()
    );
    let sha =
        std::fs::read(dir.join("config.json")).ok().map(|b| agentgen_pipeline::ids::sha256_hex(&b));
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    Ok((Arc::new(LocalPolicy { handle, tokenizer, name }), sha))
}

/// The local candle engine as a [`Policy`]: prompt ids in, sampled ids + logprobs out; the KV
/// cache of a rollout is kept across its tool rounds (cache key = sample id).
pub(crate) struct LocalPolicy {
    handle: agentgen_inference::EngineHandle,
    tokenizer: &'static Tokenizer,
    name: Option<String>,
}

impl Policy for LocalPolicy {
    fn name(&self) -> &str {
        "local"
    }

    fn model(&self) -> Option<String> {
        self.name.clone()
    }

    fn complete(
        &self,
        prompt: &PromptRequest,
        params: &SamplingParams,
    ) -> impl Future<Output = agentgen_pipeline::Result<Completion>> + Send {
        let req = agentgen_inference::GenerateRequest {
            prompt_ids: prompt.prompt_ids.clone(),
            params: agentgen_inference::SamplingParams {
                temperature: params.temperature,
                top_p: params.top_p,
                top_k: params.top_k,
                seed: params.seed,
                max_tokens: params.max_tokens,
            },
            stop: vec![agentgen_codec::tokens::CALLS_CLOSE.to_owned()],
            stop_token_ids: vec![agentgen_codec::tokens::EOS_ID],
            cache_key: Some(prompt.sample_id.clone()),
        };
        async move {
            let engine_err =
                |m: String| agentgen_pipeline::Error::Policy { kind: "engine", message: m };
            let c = self.handle.generate(req).await.map_err(|e| engine_err(e.to_string()))?;
            let text =
                self.tokenizer.decode(&c.token_ids).map_err(|e| engine_err(e.to_string()))?;
            let finish = match c.finish_reason {
                agentgen_inference::FinishReason::Length => CompletionFinish::Length,
                agentgen_inference::FinishReason::StopString => CompletionFinish::ToolCalls,
                agentgen_inference::FinishReason::Stop => CompletionFinish::Eos,
            };
            Ok(Completion {
                text,
                token_ids: Some(c.token_ids),
                logprobs: Some(c.logprobs),
                finish,
            })
        }
    }
}
