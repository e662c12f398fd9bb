//! `agentgen seal URL --shards N`: the final check of a sharded dataset in an object store
//! (`agentgen-store::seal`), and the `_SUCCESS` that tells readers it is whole.

use std::process::ExitCode;

use anyhow::Context;

/// Check that every shard of a dataset in an object store finished and agrees with the
/// others (manifests, row counts, SHA-256 of every part, schema versions, disjoint sample ids,
/// no unrecorded objects under `data/`), then write a create-only `_SUCCESS` with the totals.
///
/// Exit 0 when sealed (now or before), 1 naming each missing or broken shard, 2 when the store
/// cannot be read. Parts are streamed through a temporary folder one at a time.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The dataset's URL as given to `generate --out` (`s3://bucket/prefix`, `gs://...`,
    /// `az://...`, `file:///...`).
    url: String,
    /// Shards in the job array (the N of `--shard auto/N`).
    #[arg(long)]
    shards: u32,
    /// Print the report (problems and totals) as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    super::init_tracing(true);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let store = agentgen_store::Store::open(&args.url)?;
    let scratch = tempfile::Builder::new().prefix("agentgen-seal-").tempdir()?;
    let report = rt
        .block_on(agentgen_store::seal(&store, args.shards, scratch.path()))
        .with_context(|| format!("sealing {}", store.url()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    let url = store.url();
    if !report.problems.is_empty() {
        for p in &report.problems {
            eprintln!("  - {p}");
        }
        eprintln!("error: {url} is not sealed: {} problem(s)", report.problems.len());
        return Ok(ExitCode::from(1));
    }
    let t = &report.totals;
    let rows = |s: &str| t.rows.get(s).copied().unwrap_or(0);
    eprintln!(
        "{} {url}: {} shard(s), {} part(s), {} rows ({} train, {} rejected); {url}/{}",
        if report.already_sealed { "already sealed" } else { "sealed" },
        t.shards,
        t.parts,
        rows("train") + rows("rejected"),
        rows("train"),
        rows("rejected"),
        agentgen_store::SUCCESS_FILE
    );
    Ok(ExitCode::SUCCESS)
}
