//! `agentgen report`: the self-contained HTML dataset report (wires `agentgen-report`).

use std::path::PathBuf;
use std::process::ExitCode;

use agentgen_report::{DEFAULT_SAMPLES, SampleOptions, SplitFilter};

/// Write one HTML file with the dataset's statistics (the numbers of `inspect --json`), charts
/// and a trajectory viewer over a deterministic sample of rows. It opens from disk with no
/// network. Inputs: dataset folders (several shards), or any Parquet/JSONL `validate` reads.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dataset folders, Parquet files, JSONL files, or object-store URLs of sharded datasets.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// The HTML file to write.
    #[arg(long, value_name = "FILE.html")]
    pub out: PathBuf,
    /// Rows to sample for the trajectory viewer.
    #[arg(long, default_value_t = DEFAULT_SAMPLES)]
    pub samples: usize,
    /// Split to sample from: train | rejected | all.
    #[arg(long, default_value = "all")]
    pub split: String,
    /// Seed of the sample (the same seed draws the same rows, whatever the sharding).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    // Store URLs (`s3://...`): downloaded, one folder per shard, for the command's length.
    let (local, _fetched) = super::store::localize(std::mem::take(&mut args.dirs))?;
    args.dirs = local;
    let Some(split) = SplitFilter::parse(&args.split) else {
        eprintln!("error: --split must be train, rejected or all, got {:?}", args.split);
        return Ok(ExitCode::from(2));
    };
    let started = std::time::Instant::now();
    let opts = SampleOptions { samples: args.samples, seed: args.seed, split };
    let report = agentgen_report::build(&args.dirs, &opts)?;
    let bytes = agentgen_report::write_html(&report, &args.out)?;
    eprintln!(
        "wrote {}: {} rows, {} sampled, {:.1} MB in {:.1} s",
        args.out.display(),
        report.stats.rows,
        report.trajectories.len(),
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
