//! `agentgen generate`: flags -> `pipeline::RunConfig`, the chosen policy (reference, http, or
//! the local candle engine adapted to `pipeline::Policy` here), SIGINT-safe run, summary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agentgen_codec::Tokenizer;
use agentgen_pipeline::{
    Completion, CompletionFinish, HttpConfig, Policy, PromptRequest, ReferencePolicy, RunConfig,
    SamplingParams, ShardSpec,
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
    /// Output folder, or an object store: `s3://BUCKET/PREFIX`, `gs://...`, `az://...`,
    /// `file:///PATH` (credentials from the usual `AWS_*`/`GOOGLE_*`/`AZURE_*` variables). A
    /// store run claims its shard with a lease, stages parts locally and puts each one
    /// create-only; a retry of the same shard resumes from what the store holds. Finish with
    /// `agentgen seal URL --shards N`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Global number of tasks (each shard takes its part).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    tasks: Option<u64>,
    /// Run seed (task selection, sample ids, sampling seeds).
    #[arg(long)]
    seed: Option<u64>,
    /// Comma-separated families (default: all available; with only `--envs`, none).
    #[arg(long, value_delimiter = ',')]
    families: Option<Vec<String>>,
    /// Comma-separated envpkg packages or folders of packages (a folder's direct children
    /// holding `env.toml`), served alongside `--families`; `PATH@sha256:<hex>` pins one.
    /// Each package is admitted first (`agentgen envs check`; cached by hash in
    /// `<parent>/.agentgen/`). Needs CPython >= 3.11.
    #[arg(long, value_delimiter = ',')]
    envs: Option<Vec<String>>,
    /// reference | local | http | chat.
    #[arg(long)]
    policy: Option<String>,
    /// Checkpoint folder for `--policy local`.
    #[arg(long)]
    model: Option<PathBuf>,
    /// OpenAI-compatible server for `--policy http|chat` (base URL, with or without `/v1`).
    #[arg(long)]
    endpoint: Option<String>,
    /// `model` field sent to the endpoint (default: the server's only model).
    #[arg(long)]
    api_model: Option<String>,
    /// Environment variable holding the endpoint's API key.
    #[arg(long)]
    api_key_env: Option<String>,
    #[command(flatten)]
    endpoint_flags: super::endpoint::EndpointFlags,
    /// Samples per task (RL groups: group id, advantages, pass@k).
    #[arg(long)]
    samples_per_task: Option<u32>,
    /// Rollouts in flight [default: 64; with `--envs` and the reference policy, 2 per core:
    /// each in-flight package episode holds one worker process].
    #[arg(long)]
    concurrency: Option<usize>,
    /// This machine's part of a job array, `I/N` (0-based), or `auto/N`: the index from
    /// `JOB_COMPLETION_INDEX` (Kubernetes Indexed Job) or `SLURM_ARRAY_TASK_ID` (Slurm), so one
    /// command serves every index.
    #[arg(long)]
    shard: Option<String>,
    #[arg(long, value_name = "SECS", help = format!(
        "With a store `--out`: seconds a shard's lease lasts without renewal (renewed every \
         third of it); a retry of a dead holder's index takes over after this long [default: {}]",
        agentgen_store::DEFAULT_LEASE_SECS
    ))]
    lease_secs: Option<u64>,
    /// With a store `--out`: the local folder parts are written to before upload (new or
    /// empty; needs room for this shard's parts) [default: a new temporary folder].
    #[arg(long, value_name = "DIR")]
    staging: Option<PathBuf>,
    /// Continue a killed or interrupted run in the same folder (same configuration only).
    #[arg(long)]
    resume: bool,
    /// Replace the agentgen dataset already in `--out` (a foreign folder is refused even so).
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Close the open Parquet parts when they have held rows this many seconds, so a kill
    /// loses at most about this much finished work (0 = only when a part is full).
    #[arg(long, value_name = "SECS")]
    flush_secs: Option<u64>,
    /// Stop (exit 3) when more than this fraction of rollouts fail in the policy (transport,
    /// HTTP, auth), checked after the first 50; a run whose rows all fail so stops too.
    #[arg(long, value_name = "RATE")]
    max_policy_error_rate: Option<f64>,
    /// No progress bar, warnings only.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    sampling: super::sampling::SamplingArgs,
    /// thinking | chat | auto (chat policy only, its default: thinking when the endpoint
    /// returns reasoning, chat otherwise, per row).
    #[arg(long)]
    thinking_mode: Option<String>,
    /// Keep exact duplicate trajectories in train.
    #[arg(long)]
    no_dedup: bool,
    /// Worker threads of the runtime (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Keep tasks whose pass rate lies in `LO,HI`: with `--envs`, the packages' calibrated
    /// rate (`agentgen calibrate`) pre-selects their tasks; built-in families' groups are
    /// filtered by their pass rate in this run.
    #[arg(long)]
    difficulty_band: Option<String>,
    /// Most assistant turns per rollout.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
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
    envs: Option<Vec<String>>,
    policy: Option<String>,
    model: Option<PathBuf>,
    endpoint: Option<String>,
    api_model: Option<String>,
    api_key_env: Option<String>,
    samples_per_task: Option<u32>,
    concurrency: Option<usize>,
    shard: Option<String>,
    lease_secs: Option<u64>,
    staging: Option<PathBuf>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    max_tokens: Option<usize>,
    thinking_mode: Option<String>,
    threads: Option<usize>,
    difficulty_band: Option<String>,
    max_turns: Option<u32>,
    rows_per_file: Option<usize>,
    flush_secs: Option<u64>,
    max_policy_error_rate: Option<f64>,
    // The endpoint flags (`--policy http|chat`).
    extra_body: Option<String>,
    no_stream: Option<bool>,
    tool_choice: Option<String>,
    parallel_tool_calls: Option<bool>,
    reasoning_effort: Option<String>,
    header: Option<Vec<String>>,
    request_timeout: Option<f64>,
    max_requests_per_minute: Option<u32>,
    max_tokens_total: Option<u64>,
}

impl FileConfig {
    /// The endpoint flags with the file's values under them (flags override).
    fn endpoint_flags(&self, f: &super::endpoint::EndpointFlags) -> super::endpoint::EndpointFlags {
        super::endpoint::EndpointFlags {
            extra_body: f.extra_body.clone().or_else(|| self.extra_body.clone()),
            no_stream: f.no_stream || self.no_stream.unwrap_or(false),
            tool_choice: f.tool_choice.clone().or_else(|| self.tool_choice.clone()),
            parallel_tool_calls: f.parallel_tool_calls.or(self.parallel_tool_calls),
            reasoning_effort: f.reasoning_effort.clone().or_else(|| self.reasoning_effort.clone()),
            headers: if f.headers.is_empty() {
                self.header.clone().unwrap_or_default()
            } else {
                f.headers.clone()
            },
            request_timeout: f.request_timeout.or(self.request_timeout),
            max_requests_per_minute: f.max_requests_per_minute.or(self.max_requests_per_minute),
            max_tokens_total: f.max_tokens_total.or(self.max_tokens_total),
        }
    }
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
    let endpoint_flags = file.endpoint_flags(&args.endpoint_flags);
    super::init_tracing(args.quiet);
    super::envs::allow_weak_sandbox(args.allow_weak_sandbox);
    let mut cfg = RunConfig::default();
    cfg.out = args.out.or(file.out).unwrap_or_else(|| PathBuf::from("dataset"));
    cfg.tasks = args.tasks.or(file.tasks).unwrap_or(1000);
    cfg.seed = args.seed.or(file.seed).unwrap_or(cfg.seed);
    cfg.families = args.families.or(file.families).unwrap_or_default();
    cfg.families.retain(|f| !f.trim().is_empty());
    cfg.envs = args.envs.or(file.envs).unwrap_or_default();
    cfg.envs.retain(|f| !f.trim().is_empty());
    cfg.samples_per_task = args.samples_per_task.or(file.samples_per_task).unwrap_or(1);
    let policy_name = args.policy.as_deref().or(file.policy.as_deref()).unwrap_or("reference");
    cfg.concurrency = args.concurrency.or(file.concurrency).unwrap_or_else(|| {
        // An in-flight package episode holds a worker process; the reference policy is CPU
        // bound, so package runs default to two episodes per core rather than 64 workers.
        if policy_name == "reference" && !cfg.envs.is_empty() {
            std::thread::available_parallelism().map_or(2, |n| n.get() * 2)
        } else {
            64
        }
    });
    if let Some(s) = args.shard.or(file.shard) {
        cfg.shard = s.parse::<ShardSpec>()?;
    }
    cfg.resume = args.resume;
    cfg.overwrite = args.overwrite;
    if let Some(s) = args.flush_secs.or(file.flush_secs) {
        cfg.flush_secs = s;
    }
    if let Some(r) = args.max_policy_error_rate.or(file.max_policy_error_rate) {
        anyhow::ensure!((0.0..=1.0).contains(&r), "--max-policy-error-rate wants 0..1, got {r}");
        cfg.max_policy_error_rate = r;
    }
    cfg.progress = !args.quiet;
    cfg.dedup = !args.no_dedup;
    let policy = args.policy.clone().or(file.policy.clone()).unwrap_or_else(|| "reference".into());
    (cfg.thinking_mode, cfg.thinking_auto) = super::endpoint::thinking_mode(
        args.thinking_mode.as_deref().or(file.thinking_mode.as_deref()),
        &policy,
    )?;
    let file_sampling = super::sampling::SamplingArgs {
        temperature: file.temperature,
        top_p: file.top_p,
        max_tokens: file.max_tokens,
    };
    cfg.sampling = args.sampling.params(&file_sampling, 0)?;
    if let Some(t) = args.max_turns.or(file.max_turns) {
        anyhow::ensure!(t >= 1, "max-turns must be at least 1, got {t}");
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
    anyhow::ensure!(cfg.tasks >= 1, "tasks must be at least 1, got {}", cfg.tasks);
    cfg.command_line = std::env::args().collect::<Vec<_>>().join(" ");
    cfg.git_revision = option_env!("AGENTGEN_GIT_REVISION").map(str::to_owned);
    let threads = args.threads.or(file.threads);

    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(t) = threads {
        rt.worker_threads(t.max(1));
    }
    let rt = rt.build().context("starting the tokio runtime")?;
    // An object store `--out`: take the shard's lease before anything is written.
    let out_text = cfg.out.to_string_lossy().into_owned();
    let mut published = None;
    if agentgen_store::is_url(&out_text) {
        let lease_secs =
            args.lease_secs.or(file.lease_secs).unwrap_or(agentgen_store::DEFAULT_LEASE_SECS);
        let staging = args.staging.clone().or_else(|| file.staging.clone());
        match super::store::prepare(&rt, &out_text, &mut cfg, lease_secs, staging)? {
            super::store::Prepared::Ready(p) => published = Some(p),
            super::store::Prepared::Busy(line) => {
                eprintln!("{line}");
                return Ok(ExitCode::from(3));
            }
        }
    }
    let shutdown = agentgen_pipeline::shutdown_signal();
    let report = match policy.as_str() {
        "reference" => {
            rt.block_on(agentgen_pipeline::run(cfg, ReferencePolicy::new(), shutdown))?
        }
        "http" | "chat" => {
            let endpoint = args
                .endpoint
                .or(file.endpoint)
                .with_context(|| format!("--policy {policy} needs --endpoint URL"))?;
            let key_env = args.api_key_env.or(file.api_key_env);
            let flags = &endpoint_flags;
            let http: HttpConfig =
                super::endpoint::http_config(endpoint, key_env.as_deref(), flags, cfg.seed)?;
            let api_model = args.api_model.or(file.api_model);
            if policy == "chat" {
                let p = super::endpoint::chat_policy(&rt, http, api_model.as_deref(), flags)?;
                let (report, stopped) = super::endpoint::run_chat(&rt, cfg, p, None)?;
                if let Some(code) = stopped {
                    if let Some(p) = published.take() {
                        p.finish()?;
                    }
                    rt.shutdown_timeout(Duration::from_secs(1));
                    eprintln!("{}", report.table.trim_end());
                    eprintln!("{}", super::written_to(&report));
                    return Ok(code);
                }
                report
            } else {
                let p = super::endpoint::http_policy(&rt, http, api_model.as_deref(), flags)?;
                rt.block_on(agentgen_pipeline::run(cfg, p, shutdown))?
            }
        }
        "local" => {
            let dir = args.model.or(file.model).context("--policy local needs --model DIR")?;
            let (p, sha) = load_local_policy(&rt, &dir)?;
            cfg.checkpoint_config_sha256 = sha;
            rt.block_on(agentgen_pipeline::run(cfg, p, shutdown))?
        }
        other => bail!("--policy must be reference, local, http or chat, got {other:?}"),
    };
    if let Some(p) = published.take() {
        p.finish()?;
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    eprintln!("{}", report.table.trim_end());
    eprintln!("{}", super::written_to(&report));
    if let Some(why) = &report.stopped {
        eprintln!("error: stopped: {why}");
        return Ok(ExitCode::from(3));
    }
    if report.interrupted {
        eprintln!("interrupted: finished shards are closed; rerun with --resume to continue");
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
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
            let engine_err = |m: String| agentgen_pipeline::Error::Policy {
                kind: agentgen_pipeline::PolicyFailure::Engine,
                message: m,
            };
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
                chat: None,
            })
        }
    }
}
