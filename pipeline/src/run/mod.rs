//! Orchestration of a whole `generate` run.
//!
//! A dispatcher walks this shard's task indices and spawns one job per task (its K samples)
//! under a semaphore capping in-flight rollouts. Finished jobs go through a bounded channel to
//! the ordering stage, which restores task order (a second semaphore bounds how far dispatch
//! may run ahead of it), applies exact dedup and the difficulty band deterministically, counts,
//! drives the progress bar, and hands rows to the writer actor (its own thread, owning the
//! [`DatasetWriter`](agentgen_datasets::DatasetWriter)). So the rows and their order are identical at any concurrency. Shutdown
//! (SIGINT or SIGTERM, [`shutdown_signal`]) stops dispatch, lets in-flight jobs finish, and the
//! writer always closes its files. A write error stops everything at once.
//!
//! The output folder is held by an exclusive lock for the whole run; `manifest.json` is written
//! before the first rollout and rewritten after every finished part (the journal `--resume`
//! trusts); the writer closes its open parts every `flush_secs`, so a kill loses at most that
//! much finished work. A run without a folder (`cfg.out` None: `rollout --jsonl` alone) runs
//! the same jobs to the same rows in the same order, handed only to its sink: nothing is
//! locked or written.

mod config;
mod folder;
mod manifest;
mod ordering;
mod plan;
mod rows;
mod writer;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use agentgen_datasets::SampleRow;
use agentgen_environments::{InstanceCache, Registry};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::ids;
use crate::policy::Policy;
use crate::rollout::RolloutContext;
use crate::{Error, Result};

pub use config::{
    DEFAULT_CONCURRENCY, DEFAULT_FLUSH_SECS, DEFAULT_MAX_POLICY_ERROR_RATE, DEFAULT_SEED,
    POLICY_ERROR_MIN_ROLLOUTS, RunConfig, SHARD_INDEX_VARS, ShardSpec,
};
pub use manifest::RunReport;
pub(crate) use manifest::now_rfc3339;
pub use plan::run_registry;

use manifest::Finished;
use ordering::OrderStage;
use plan::Job;
use rows::{JobResult, run_job};

struct Shared<P> {
    policy: P,
    ctx: RolloutContext,
    registry: Registry,
    cache: InstanceCache,
    cfg: RunConfig,
    run_id: String,
    sampling_json: String,
}

impl<P: Policy> Shared<P> {
    /// What every job shares: the policy, the rollout context, the registry and instance
    /// cache, the run id and the sampling recorded on every row.
    fn new(cfg: &RunConfig, policy: P, registry: Registry, run_id: String) -> Result<Self> {
        let sampling_json = serde_json::json!({
            "temperature": cfg.sampling.temperature, "top_p": cfg.sampling.top_p,
            "top_k": cfg.sampling.top_k, "max_tokens": cfg.sampling.max_tokens,
        })
        .to_string();
        let mut ctx = RolloutContext::try_new(cfg.thinking_mode, cfg.limits.clone())?;
        ctx.auto_mode = cfg.thinking_auto;
        Ok(Shared {
            policy,
            ctx,
            registry,
            cache: InstanceCache::new(512),
            cfg: cfg.clone(),
            run_id,
            sampling_json,
        })
    }

    fn policy_stats(&self) -> Option<String> {
        self.policy.stats_json()
    }
}

fn ds(e: agentgen_datasets::Error) -> Error {
    Error::Dataset(e)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (Slurm, `docker stop`, `timeout`): both stop a run
/// the same clean way.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Sees every row as it goes to the writer, in task order (e.g. `rollout --jsonl -` streams
/// them to a trainer).
pub type RowSink = Box<dyn FnMut(&SampleRow) + Send>;

/// Run a whole generation job with `policy` until done or until `shutdown` resolves.
pub async fn run<P, S>(cfg: RunConfig, policy: P, shutdown: S) -> Result<RunReport>
where
    P: Policy,
    S: Future<Output = ()> + Send,
{
    run_with_sink(cfg, policy, shutdown, None).await
}

/// [`run`], handing each row to `sink` as it is written. Without an output folder
/// (`cfg.out` is None) the sink is the run's only output: no folder is locked, no manifest or
/// Parquet written.
pub async fn run_with_sink<P, S>(
    cfg: RunConfig,
    policy: P,
    shutdown: S,
    sink: Option<RowSink>,
) -> Result<RunReport>
where
    P: Policy,
    S: Future<Output = ()> + Send,
{
    let started = Instant::now();
    let started_at = now_rfc3339();
    cfg.check()?;
    if cfg.out.is_none() && sink.is_none() {
        return Err(Error::Config { message: "a run needs an output folder or a row sink".into() });
    }
    // What to run.
    let (registry, sel) = plan::select(&cfg)?;
    let policy_name = policy.name().to_owned();
    let model = policy.model();
    let identity = folder::resume_identity(&cfg, &policy_name, model.as_deref(), &sel.env_versions);

    // The output folder, locked until the final manifest is written (none when only the sink
    // gets the rows), and resume.
    let folder = folder::take(&cfg, &identity)?;
    let done = plan::finished(&cfg)?;
    let seen = plan::dedup_seen(&cfg)?;

    let run_id = ids::run_id(&folder::fingerprint(&cfg, &policy_name, model.as_deref()));
    let shared = Arc::new(Shared::new(&cfg, policy, registry, run_id.clone())?);
    let plan = plan::plan_jobs(&cfg, &sel.selection, sel.task_count, &done);
    let journal = folder
        .map(|f| manifest::write_initial(&cfg, f, &shared, &sel, model, identity, started_at))
        .transpose()?;

    // Stops the run at once (a write error, a failing policy): dispatch ends and in-flight
    // rollouts are dropped.
    let stop = CancellationToken::new();
    let dataset = journal.as_ref().map(|j| writer::dataset_writer(&cfg, j, &run_id)).transpose()?;
    let flush_secs = if dataset.is_some() { cfg.flush_secs } else { 0 };
    let (row_tx, writer_thread) = writer::spawn_writer(dataset, sink, &stop)?;
    let ticker = writer::spawn_flush_ticker(flush_secs, &row_tx);
    let bar = progress_bar(cfg.progress, plan.jobs.len() as u64);

    // Dispatch the jobs; the ordering stage puts their rows in task order for the writer.
    let window = Arc::new(Semaphore::new((cfg.concurrency * 4).max(64)));
    let (res_tx, res_rx) = mpsc::channel::<JobResult>(cfg.concurrency.max(16));
    let order = tokio::spawn(
        OrderStage {
            results: res_rx,
            row_tx,
            window: Arc::clone(&window),
            seen,
            bar: bar.clone(),
            shared: Arc::clone(&shared),
            stop: stop.clone(),
        }
        .run(),
    );
    let interrupted = dispatch(plan.jobs, &shared, window, res_tx, &stop, shutdown).await;
    let mut st = order.await.map_err(|e| Error::Join { message: e.to_string() })?;
    st.stop_if_all_failed();
    writer::stop_ticker(ticker).await;
    bar.finish_and_clear();
    let written = writer::join_writer(writer_thread).await?;

    // The final manifest (with a folder) and the report.
    let finished = Finished {
        st,
        interrupted,
        written,
        shard_tasks: plan.shard_tasks,
        resumed_tasks: plan.resumed_tasks,
        started,
    };
    let manifest = journal
        .map(|j| manifest::write_final(&cfg, j, &sel.selection, &shared, &finished))
        .transpose()?;
    let usage = manifest::api_usage(&shared.policy);
    Ok(manifest::report(manifest, usage, finished, cfg.samples_per_task))
}

/// The progress bar over this run's jobs (hidden without `--progress`).
fn progress_bar(show: bool, total_jobs: u64) -> ProgressBar {
    if show {
        let b = ProgressBar::with_draw_target(Some(total_jobs), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} tasks (eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        b.set_style(style);
        b
    } else {
        ProgressBar::hidden()
    }
}

/// Dispatch: spawn the jobs in order, at most `concurrency` in flight and no further ahead of
/// the ordering stage than `window` allows, until all are spawned, `stop` is cancelled or
/// `shutdown` resolves. Returns whether `shutdown` interrupted the run.
async fn dispatch<P, S>(
    jobs: Vec<Job>,
    shared: &Arc<Shared<P>>,
    window: Arc<Semaphore>,
    res_tx: mpsc::Sender<JobResult>,
    stop: &CancellationToken,
    shutdown: S,
) -> bool
where
    P: Policy,
    S: Future<Output = ()> + Send,
{
    let inflight = Arc::new(Semaphore::new(shared.cfg.concurrency));
    let mut interrupted = false;
    {
        let dispatch = async {
            for job in jobs {
                let Ok(w) = window.clone().acquire_owned().await else { break };
                w.forget();
                let Ok(permit) = inflight.clone().acquire_owned().await else { break };
                let shared = Arc::clone(shared);
                let tx = res_tx.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        result = run_job(&shared, job) => {
                            drop(permit);
                            let _ = tx.send(result).await;
                        }
                        _ = stop.cancelled() => {}
                    }
                });
            }
        };
        tokio::pin!(shutdown);
        tokio::select! {
            _ = dispatch => {}
            _ = stop.cancelled() => {}
            _ = &mut shutdown => {
                interrupted = true;
                tracing::warn!("interrupted: finishing in-flight rollouts and closing shards");
            }
        }
    }
    drop(res_tx);
    interrupted
}
