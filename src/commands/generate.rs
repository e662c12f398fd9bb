//! `agentgen generate`: flags -> `pipeline::RunConfig`, the chosen policy (`PolicyArgs`; the
//! local candle engine is adapted to `pipeline::Policy` here), SIGINT-safe run, summary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agentgen_codec::Tokenizer;
use agentgen_pipeline::{
    Completion, CompletionFinish, Policy, PromptRequest, RunConfig, SamplingParams, ShardSpec,
};
use anyhow::Context;

/// Roll out tasks with a policy, validate every trajectory, and write a Parquet dataset
/// (`DIR/data/{train,rejected}-SHARD-PART.parquet`, `manifest.json`, `README.md`).
///
/// With no flags: the reference policy over all available families, a fixed seed, 1000 tasks,
/// into `./dataset`. (`rollout`, the RL worker, defaults to `--policy http` instead.)
#[derive(Debug, clap::Args)]
#[command(mut_arg("policy", |a| a.default_value("reference")))]
pub struct Args {
    /// Output folder, or an object store: `s3://BUCKET/PREFIX`, `gs://...`, `az://...`,
    /// `file:///PATH` (credentials from the usual `AWS_*`/`GOOGLE_*`/`AZURE_*` variables). A
    /// store run claims its shard with a lease, stages parts locally and puts each one
    /// create-only; a retry of the same shard resumes from what the store holds. Finish with
    /// `agentgen seal URL --shards N`.
    #[arg(long, value_name = "DIR", default_value = "dataset")]
    out: PathBuf,
    /// Global number of tasks (each shard takes its part).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1000,
        allow_hyphen_values = true,
        value_parser = super::runargs::count::<u64>
    )]
    tasks: u64,
    /// Samples per task (RL groups: group id, advantages, pass@k).
    #[arg(
        long,
        value_name = "K",
        default_value_t = 1,
        allow_hyphen_values = true,
        value_parser = super::runargs::count::<u32>
    )]
    samples_per_task: u32,
    #[command(flatten)]
    policy: super::policy::PolicyArgs,
    #[command(flatten)]
    sampling: super::sampling::SamplingArgs,
    #[command(flatten)]
    run: super::runargs::RunArgs,
    #[command(flatten)]
    dataset: super::runargs::DatasetArgs,
    /// This machine's part of a job array, `I/N` (0-based), or `auto/N`: the index from
    /// `JOB_COMPLETION_INDEX` (Kubernetes Indexed Job) or `SLURM_ARRAY_TASK_ID` (Slurm), so one
    /// command serves every index.
    #[arg(long, value_name = "I/N")]
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
    /// Keep exact duplicate trajectories in train.
    #[arg(long)]
    no_dedup: bool,
    /// Worker threads of the runtime [default: all cores].
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = super::runargs::count::<usize>)]
    threads: Option<usize>,
    /// Rows per Parquet file before a new part starts.
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = super::runargs::count::<usize>)]
    rows_per_file: Option<usize>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    args.run.init();
    let mut cfg =
        RunConfig { out: Some(args.out.clone()), tasks: args.tasks, ..RunConfig::default() };
    args.dataset.apply(&mut cfg);
    args.run.configure(&mut cfg, &args.policy, &args.sampling)?;
    cfg.samples_per_task = args.samples_per_task;
    if let Some(s) = &args.shard {
        cfg.shard = s.parse::<ShardSpec>()?;
    }
    cfg.dedup = !args.no_dedup;
    if let Some(r) = args.rows_per_file {
        cfg.rows_per_file = r;
        cfg.row_group_rows = cfg.row_group_rows.min(r);
    }
    cfg.git_revision = option_env!("AGENTGEN_GIT_REVISION").map(str::to_owned);

    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(t) = args.threads {
        rt.worker_threads(t.max(1));
    }
    let rt = rt.build().context("starting the tokio runtime")?;
    // An object store `--out`: take the shard's lease before anything is written.
    let out_text = args.out.to_string_lossy().into_owned();
    let mut published = None;
    if agentgen_store::is_url(&out_text) {
        let lease_secs = args.lease_secs.unwrap_or(agentgen_store::DEFAULT_LEASE_SECS);
        let staging = args.staging.clone();
        match super::store::prepare(&rt, &out_text, &mut cfg, lease_secs, staging)? {
            super::store::Prepared::Ready(p) => published = Some(p),
            super::store::Prepared::Busy(line) => {
                eprintln!("{line}");
                return Ok(ExitCode::from(3));
            }
        }
    }
    let driven = args.policy.drive(&rt, cfg, super::policy::PipelineRun { sink: None })?;
    let report = driven.output;
    if driven.budget_spent {
        eprintln!("{}", super::endpoint::budget_spent_line(&report));
    }
    if let Some(p) = published.take() {
        p.finish()?;
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    eprintln!("{}", report.table.trim_end());
    if let Some(line) = super::written_to(&report) {
        eprintln!("{line}");
    }
    if driven.budget_spent {
        return Ok(ExitCode::from(3));
    }
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
    device: agentgen_inference::DeviceKind,
) -> anyhow::Result<(Arc<LocalPolicy>, Option<String>)> {
    let tokenizer = Tokenizer::shared()?;
    let opts = agentgen_inference::EngineOptions {
        // The engine needs it to stop at the tool-call block's close string.
        detokenizer: Some(Arc::new(tokenizer) as Arc<dyn agentgen_inference::Detokenize>),
        device,
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
