//! `agentgen inspect`: summarise dataset folders and check a set of shards is disjoint and
//! complete.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use agentgen_datasets::{FolderSummary, Inspection, SCHEMA_VERSION, SplitCounts, TokenCounts};
use serde_json::{Value, json};

/// Summarise one or more dataset folders: row counts, schema version, per-family and
/// per-rejection-code tables and one sample row. With several folders (the shards of a job
/// array) it also checks that no sample id appears twice (disjoint) and that each folder's
/// manifest.json matches its files (complete). Exits 1 when a check fails, 2 on unreadable
/// input.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dataset folders (each holding data/*.parquet and manifest.json), or object-store URLs
    /// of sharded datasets (`s3://bucket/prefix`, ...: downloaded to a temporary folder).
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Also report exact duplicate trajectories (hash of normalised messages + tools) among
    /// accepted rows across the folders.
    #[arg(long)]
    pub dedup: bool,
    /// Print one machine-readable JSON report instead of tables (its `report` object holds
    /// the numbers `agentgen report` shows).
    #[arg(long)]
    pub json: bool,
}

pub fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    // Store URLs (`s3://...`): downloaded, one folder per shard, for the command's length.
    let (local, _fetched) = super::store::localize(std::mem::take(&mut args.dirs))?;
    args.dirs = local;
    let found = agentgen_datasets::inspect(&args.dirs, args.dedup)?;
    if args.json {
        // What `agentgen report` draws, from the same code (agentgen-report).
        let statistics = agentgen_report::statistics(&args.dirs)?;
        println!("{}", serde_json::to_string_pretty(&json_report(&found, statistics))?);
    } else {
        print_text(&found, args.dirs.len())?;
    }
    Ok(if found.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The `--json` report: the inspection, and under `report` the numbers `agentgen report`
/// shows.
fn json_report(found: &Inspection, statistics: impl serde::Serialize) -> Value {
    let dirs: Vec<Value> = found
        .folders
        .iter()
        .map(|r| {
            json!({
                "dir": r.dir.display().to_string(),
                "files": r.files,
                "bytes": r.bytes,
                "train": r.train,
                "rejected": r.rejected,
                "schema_versions": r.schema_versions,
                "temp_files": r.temp_files,
                "run_id": r.manifest.as_ref().map(|m| m.run_id.clone()),
                "shard": r.manifest.as_ref().map(|m| format!("{}/{}", m.shard_index, m.shard_count)),
            })
        })
        .collect();
    let (train, rejected) = (found.train(), found.rejected());
    let TokenCounts { total, train: train_tokens, train_loss } = found.tokens;
    json!({
        "ok": found.ok(),
        "schema_version": SCHEMA_VERSION,
        "dirs": dirs,
        "rows": train + rejected,
        "train": train,
        "rejected": rejected,
        "tokens": {"total": total, "train": train_tokens, "train_loss": train_loss},
        "per_family": found.per_family,
        "per_rejection_code": found.per_rejection_code,
        "per_warning": found.per_warning,
        "disjoint": found.duplicate_ids.is_empty(),
        "duplicate_sample_ids": found.duplicate_ids.len(),
        "dedup": found.dedup.as_ref().map(|d| json!({
            "duplicate_rows": d.duplicate_rows,
            "cross_folder_rows": d.cross_folder_rows,
            "groups": d.groups,
        })),
        "problems": found.problems,
        "sample": found.sample,
        "report": statistics,
    })
}

/// The tables, the dedup and shard lines, the sample row and the check.
fn print_text(found: &Inspection, dirs: usize) -> anyhow::Result<()> {
    print_tables(
        &found.folders,
        &found.per_family,
        &found.per_rejection_code,
        &found.per_warning,
        found.tokens,
    );
    if let Some(d) = &found.dedup {
        println!(
            "\ndedup: {} accepted row(s) duplicate an earlier trajectory ({} across folders) in {} group(s)",
            d.duplicate_rows, d.cross_folder_rows, d.groups
        );
        for (hash, ids) in d.examples.iter().take(5) {
            println!("  {}…: {}", &hash[..12], ids.join(", "));
        }
    }
    if dirs > 1 {
        println!(
            "\nshards: {} folder(s), disjoint: {}",
            dirs,
            if found.duplicate_ids.is_empty() { "yes" } else { "NO" }
        );
    }
    if let Some(s) = &found.sample {
        println!("\nsample row:\n{}", serde_json::to_string_pretty(s)?);
    }
    if found.ok() {
        println!("\ncheck: ok");
    } else {
        println!("\ncheck: FAILED");
        for p in &found.problems {
            println!("  - {p}");
        }
    }
    Ok(())
}

fn print_tables(
    reports: &[FolderSummary],
    per_family: &BTreeMap<String, SplitCounts>,
    per_code: &BTreeMap<String, u64>,
    per_warning: &BTreeMap<String, u64>,
    tokens: TokenCounts,
) {
    for r in reports {
        let versions: Vec<&str> = r.schema_versions.iter().map(String::as_str).collect();
        let shard = r
            .manifest
            .as_ref()
            .map(|m| format!(", shard {}/{}, run {}", m.shard_index, m.shard_count, m.run_id))
            .unwrap_or_default();
        println!(
            "{}: {} rows (train {}, rejected {}) in {} file(s), {:.1} MB, schema version {}{}",
            r.dir.display(),
            r.train + r.rejected,
            r.train,
            r.rejected,
            r.files,
            r.bytes as f64 / 1e6,
            if versions.is_empty() { "-".to_owned() } else { versions.join(",") },
            shard
        );
    }
    println!(
        "tokens: {} in all, {} in train ({} with loss)",
        tokens.total, tokens.train, tokens.train_loss
    );
    if !per_family.is_empty() {
        let w = per_family.keys().map(String::len).max().unwrap_or(6).max(6);
        println!("\n{:<w$}  {:>9}  {:>9}", "family", "train", "rejected");
        for (f, c) in per_family {
            println!("{f:<w$}  {:>9}  {:>9}", c.accepted, c.rejected);
        }
    }
    if !per_code.is_empty() {
        let w = per_code.keys().map(String::len).max().unwrap_or(4).max(14);
        println!("\n{:<w$}  {:>9}", "rejection code", "rows");
        for (k, n) in per_code {
            println!("{k:<w$}  {n:>9}");
        }
    }
    if !per_warning.is_empty() {
        println!();
        for (k, n) in per_warning {
            println!("warning {k}: {n} row(s)");
        }
    }
}
