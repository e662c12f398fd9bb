//! `agentgen rollout`: the RL worker mode of `generate`. It runs the pipeline (`pipeline::run`)
//! with `--samples-per-task K` groups, so every row carries its group id, the sampled tokens'
//! logprobs, the loss mask, the reward and the group-relative advantage (reward minus the
//! group mean, computed by the pipeline), and writes the Parquet dataset; with `--jsonl PATH`
//! (`-` = stdout) it also streams the rows, both splits, as JSON lines for a trainer that
//! reads a pipe, and without `--out` only streams them (the run has no folder: nothing else is
//! written). No rollout logic lives here.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use agentgen_datasets::SampleRow;
use agentgen_pipeline::{RowSink, RunConfig};
use anyhow::Context;

/// Roll out groups of K samples per task and write rows with logprobs, rewards and
/// group-relative advantages. (`generate` defaults to `--policy reference` instead: this is
/// the RL worker, which samples from a model server.)
#[derive(Debug, clap::Args)]
#[command(mut_arg("policy", |a| a.default_value("http")))]
pub struct Args {
    /// Output dataset folder (Parquet, HF layout) [default: ./rollouts, or, with `--jsonl`,
    /// none: the JSON lines are the only output].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Number of tasks (sampled deterministically from the seed over the families).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 16,
        allow_hyphen_values = true,
        value_parser = super::runargs::count::<u64>
    )]
    pub tasks: u64,
    /// Task list instead of sampling: one id `family@version/instance_seed/task_seed` per line
    /// (as `agentgen envs sample` prints them; blank lines and `#` comments are skipped).
    /// `--tasks` and `--families` are then ignored.
    #[arg(long, value_name = "FILE")]
    pub task_file: Option<PathBuf>,
    /// Samples per task: one group of K rollouts per task.
    #[arg(
        long,
        value_name = "K",
        default_value_t = 4,
        allow_hyphen_values = true,
        value_parser = super::runargs::count::<u32>
    )]
    pub samples_per_task: u32,
    #[command(flatten)]
    pub policy: super::policy::PolicyArgs,
    #[command(flatten)]
    pub sampling: super::sampling::SamplingArgs,
    #[command(flatten)]
    pub run: super::runargs::RunArgs,
    #[command(flatten)]
    pub dataset: super::runargs::DatasetArgs,
    /// Write every row as a JSON line to PATH (`-` = stdout), flushed per row, as the rows are
    /// finished, in the run's order; alongside the dataset with `--out`, instead of it without.
    #[arg(long, value_name = "PATH")]
    pub jsonl: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let task_list = match &args.task_file {
        Some(f) => Some(read_task_file(f)?),
        None => None,
    };
    args.run.init();
    let out = match (&args.out, &args.jsonl) {
        (Some(d), _) => Some(d.clone()),
        (None, Some(_)) => None,
        (None, None) => Some(PathBuf::from("rollouts")),
    };
    if out.is_none()
        && let Some(flag) = args.dataset.folder_flags().first()
    {
        anyhow::bail!("{flag} needs an output folder: add --out DIR (--jsonl alone writes none)");
    }
    let mut cfg = RunConfig {
        out,
        tasks: args.tasks,
        task_list,
        samples_per_task: args.samples_per_task,
        ..RunConfig::default()
    };
    args.dataset.apply(&mut cfg);
    args.run.configure(&mut cfg, &args.policy, &args.sampling)?;
    let rt = super::runtime()?;
    let sink = match &args.jsonl {
        Some(path) => Some(jsonl_sink(path)?),
        None => None,
    };
    let driven = args.policy.drive(&rt, cfg, super::policy::PipelineRun { sink })?;
    let report = driven.output;
    if driven.budget_spent {
        eprintln!("{}", super::endpoint::budget_spent_line(&report));
        return Ok(ExitCode::from(3));
    }
    eprintln!("{}", report.table.trim_end());
    if let Some(line) = super::written_to(&report) {
        eprintln!("{line}");
    }
    if let Some(why) = &report.stopped {
        eprintln!("error: stopped: {why}");
        return Ok(ExitCode::from(3));
    }
    Ok(if report.interrupted { ExitCode::from(130) } else { ExitCode::SUCCESS })
}

/// Streams every row (both splits, `split` added) as one JSON line to `path` (`-` = stdout)
/// the moment it is finished, flushed per row. A reader that goes away ends the stream, not
/// the run (a Parquet dataset is still written).
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
