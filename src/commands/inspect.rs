//! `agentgen inspect`: summarise dataset folders and check a set of shards is disjoint and
//! complete.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;

use agentgen_datasets::{
    Manifest, READABLE_SCHEMA_VERSIONS, RowReader, SCHEMA_VERSION, Split, SplitCounts, col,
    file_info, list_parts, list_temp_files, read_string_column, scan_dataset, trajectory_hash_hex,
};
use anyhow::{Context, bail};
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

struct DirReport {
    dir: PathBuf,
    files: usize,
    bytes: u64,
    train: u64,
    rejected: u64,
    schema_versions: BTreeSet<String>,
    temp_files: usize,
    manifest: Option<Manifest>,
}

pub fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    // Store URLs (`s3://...`): downloaded, one folder per shard, for the command's length.
    let (local, _fetched) = super::store::localize(std::mem::take(&mut args.dirs))?;
    args.dirs = local;
    let mut problems: Vec<String> = Vec::new();
    let mut reports = Vec::new();
    let mut per_family: BTreeMap<String, SplitCounts> = BTreeMap::new();
    let mut per_code: BTreeMap<String, u64> = BTreeMap::new();
    let mut per_warning: BTreeMap<String, u64> = BTreeMap::new();
    let mut tokens = (0u64, 0u64, 0u64);
    // sample id -> index of the first folder holding it
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut duplicate_ids: Vec<(String, PathBuf, PathBuf)> = Vec::new();

    for (d, dir) in args.dirs.iter().enumerate() {
        if !dir.is_dir() {
            bail!("{} is not a folder", dir.display());
        }
        let parts = list_parts(dir).with_context(|| format!("listing {}", dir.display()))?;
        let stats = scan_dataset(dir).with_context(|| format!("reading {}", dir.display()))?;
        let mut schema_versions = BTreeSet::new();
        for p in &parts {
            let info = file_info(&p.path)?;
            schema_versions.insert(info.schema_version.unwrap_or_else(|| "none".into()));
            for id in read_string_column(&p.path, col::SAMPLE_ID)?.into_iter().flatten() {
                match seen.get(&id) {
                    Some(&first) => {
                        duplicate_ids.push((id, args.dirs[first].clone(), p.path.clone()))
                    }
                    None => {
                        seen.insert(id, d);
                    }
                }
            }
        }
        let temp_files = list_temp_files(dir)?.len();
        let manifest = match Manifest::read(dir) {
            Ok(m) => Some(m),
            Err(agentgen_datasets::Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                None
            }
            Err(e) => return Err(e).context("reading manifest.json"),
        };
        let shown = dir.display();
        if parts.is_empty() {
            problems.push(format!("{shown}: no finished parquet files under data/"));
        }
        if temp_files > 0 {
            problems.push(format!(
                "{shown}: {temp_files} unfinished .parquet.tmp file(s): a run is in progress or was killed (resume it)"
            ));
        }
        for v in &schema_versions {
            if !READABLE_SCHEMA_VERSIONS.iter().any(|r| *v == r.to_string()) {
                problems.push(format!(
                    "{shown}: files with schema version {v}, expected {SCHEMA_VERSION}"
                ));
            }
        }
        match &manifest {
            None => problems.push(format!("{shown}: no manifest.json (incomplete run?)")),
            Some(m) => {
                if m.counts.accepted != stats.counts.accepted
                    || m.counts.rejected != stats.counts.rejected
                {
                    problems.push(format!(
                        "{shown}: manifest counts train {} / rejected {} but the files hold {} / {}",
                        m.counts.accepted,
                        m.counts.rejected,
                        stats.counts.accepted,
                        stats.counts.rejected
                    ));
                }
                let listed: BTreeMap<&str, u64> =
                    m.files.iter().map(|f| (f.path.as_str(), f.rows)).collect();
                let present: BTreeMap<&str, u64> =
                    stats.files.iter().map(|f| (f.path.as_str(), f.rows)).collect();
                if listed != present {
                    let missing: Vec<_> =
                        listed.keys().filter(|k| !present.contains_key(*k)).collect();
                    let extra: Vec<_> =
                        present.keys().filter(|k| !listed.contains_key(*k)).collect();
                    problems.push(format!(
                        "{shown}: manifest file list does not match data/ (missing {missing:?}, unlisted {extra:?}, or row counts differ)"
                    ));
                }
            }
        }
        for (f, c) in &stats.counts.per_family {
            let e = per_family.entry(f.clone()).or_default();
            e.accepted += c.accepted;
            e.rejected += c.rejected;
        }
        for (k, n) in &stats.counts.per_rejection_code {
            *per_code.entry(k.clone()).or_default() += n;
        }
        for (k, n) in &stats.counts.per_warning {
            *per_warning.entry(k.clone()).or_default() += n;
        }
        tokens.0 += stats.tokens.total;
        tokens.1 += stats.tokens.train;
        tokens.2 += stats.tokens.train_loss;
        reports.push(DirReport {
            dir: dir.clone(),
            files: parts.len(),
            bytes: stats.files.iter().map(|f| f.bytes).sum(),
            train: stats.counts.accepted,
            rejected: stats.counts.rejected,
            schema_versions,
            temp_files,
            manifest,
        });
    }
    if !duplicate_ids.is_empty() {
        let (id, a, b) = &duplicate_ids[0];
        problems.push(format!(
            "{} sample id(s) appear more than once (shards not disjoint), e.g. {id:?} in {} and {}",
            duplicate_ids.len(),
            a.display(),
            b.display()
        ));
    }
    problems.extend(missing_shards(&reports));

    let dedup = if args.dedup { Some(find_duplicates(&args.dirs)?) } else { None };
    let sample = sample_row(&args.dirs)?;

    let total_train: u64 = reports.iter().map(|r| r.train).sum();
    let total_rejected: u64 = reports.iter().map(|r| r.rejected).sum();
    if args.json {
        let dirs: Vec<Value> = reports
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
        let report = json!({
            "ok": problems.is_empty(),
            "schema_version": SCHEMA_VERSION,
            "dirs": dirs,
            "rows": total_train + total_rejected,
            "train": total_train,
            "rejected": total_rejected,
            "tokens": {"total": tokens.0, "train": tokens.1, "train_loss": tokens.2},
            "per_family": per_family,
            "per_rejection_code": per_code,
            "per_warning": per_warning,
            "disjoint": duplicate_ids.is_empty(),
            "duplicate_sample_ids": duplicate_ids.len(),
            "dedup": dedup.as_ref().map(|d| json!({
                "duplicate_rows": d.duplicate_rows,
                "cross_folder_rows": d.cross_folder_rows,
                "groups": d.groups,
            })),
            "problems": problems,
            "sample": sample,
            // What `agentgen report` draws, from the same code (agentgen-report).
            "report": agentgen_report::statistics(&args.dirs)?,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&reports, &per_family, &per_code, &per_warning, tokens);
        if let Some(d) = &dedup {
            println!(
                "\ndedup: {} accepted row(s) duplicate an earlier trajectory ({} across folders) in {} group(s)",
                d.duplicate_rows, d.cross_folder_rows, d.groups
            );
            for (hash, ids) in d.examples.iter().take(5) {
                println!("  {}…: {}", &hash[..12], ids.join(", "));
            }
        }
        if args.dirs.len() > 1 {
            println!(
                "\nshards: {} folder(s), disjoint: {}",
                args.dirs.len(),
                if duplicate_ids.is_empty() { "yes" } else { "NO" }
            );
        }
        if let Some(s) = &sample {
            println!("\nsample row:\n{}", serde_json::to_string_pretty(s)?);
        }
        if problems.is_empty() {
            println!("\ncheck: ok");
        } else {
            println!("\ncheck: FAILED");
            for p in &problems {
                println!("  - {p}");
            }
        }
    }
    Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_text(
    reports: &[DirReport],
    per_family: &BTreeMap<String, SplitCounts>,
    per_code: &BTreeMap<String, u64>,
    per_warning: &BTreeMap<String, u64>,
    tokens: (u64, u64, u64),
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
    println!("tokens: {} in all, {} in train ({} with loss)", tokens.0, tokens.1, tokens.2);
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

struct Dedup {
    duplicate_rows: u64,
    cross_folder_rows: u64,
    groups: u64,
    examples: Vec<(String, Vec<String>)>,
}

/// Exact duplicates among accepted rows of all folders (streaming, one row at a time).
fn find_duplicates(dirs: &[PathBuf]) -> anyhow::Result<Dedup> {
    // hash -> (folder of first occurrence, sample ids)
    let mut by_hash: HashMap<String, (usize, Vec<String>)> = HashMap::new();
    let mut d = Dedup { duplicate_rows: 0, cross_folder_rows: 0, groups: 0, examples: Vec::new() };
    for (i, dir) in dirs.iter().enumerate() {
        for part in list_parts(dir)?.into_iter().filter(|p| p.split == Split::Train) {
            for row in RowReader::try_new(&part.path)? {
                let row = row?;
                let h = trajectory_hash_hex(&row.messages, &row.tools);
                let entry = by_hash.entry(h).or_insert_with(|| (i, Vec::new()));
                if !entry.1.is_empty() {
                    d.duplicate_rows += 1;
                    if entry.0 != i {
                        d.cross_folder_rows += 1;
                    }
                    if entry.1.len() == 1 {
                        d.groups += 1;
                    }
                }
                entry.1.push(row.sample_id);
            }
        }
    }
    let mut examples: Vec<_> = by_hash
        .into_iter()
        .filter(|(_, (_, ids))| ids.len() > 1)
        .map(|(h, (_, ids))| (h, ids))
        .collect();
    examples.sort();
    d.examples = examples;
    Ok(d)
}

/// The first accepted row (else the first row) pretty-printable, with long token lists cut.
fn sample_row(dirs: &[PathBuf]) -> anyhow::Result<Option<Value>> {
    for split in [Split::Train, Split::Rejected] {
        for dir in dirs {
            for part in list_parts(dir)?.into_iter().filter(|p| p.split == split) {
                if let Some(row) = RowReader::try_new(&part.path)?.next() {
                    let mut v = serde_json::to_value(row?)?;
                    abbreviate(&mut v, "token_ids");
                    abbreviate(&mut v, "loss_mask");
                    abbreviate(&mut v, "logprobs");
                    abbreviate_text(&mut v, "text");
                    return Ok(Some(v));
                }
            }
        }
    }
    Ok(None)
}

const SHOW: usize = 16;

fn abbreviate(v: &mut Value, key: &str) {
    if let Some(Value::Array(a)) = v.get_mut(key)
        && a.len() > SHOW
    {
        let n = a.len();
        a.truncate(SHOW);
        a.push(Value::from(format!("… {n} in all")));
    }
}

fn abbreviate_text(v: &mut Value, key: &str) {
    if let Some(Value::String(s)) = v.get_mut(key)
        && s.chars().count() > 400
    {
        let n = s.len();
        let cut: String = s.chars().take(400).collect();
        *s = format!("{cut}… ({n} bytes in all)");
    }
}

/// Shards of a job array the given folders do not cover, from their manifests (run id,
/// shard index and count): `inspect` of shard 0 of 2 alone is not a complete dataset.
fn missing_shards(reports: &[DirReport]) -> Vec<String> {
    let mut runs: BTreeMap<(&str, u32), BTreeSet<u32>> = BTreeMap::new();
    for m in reports.iter().filter_map(|r| r.manifest.as_ref()) {
        runs.entry((m.run_id.as_str(), m.shard_count.max(1))).or_default().insert(m.shard_index);
    }
    let mut out = Vec::new();
    for ((run, count), have) in &runs {
        let missing: Vec<String> =
            (0..*count).filter(|i| !have.contains(i)).map(|i| format!("{i}/{count}")).collect();
        if !missing.is_empty() {
            out.push(format!(
                "run {run}: shard(s) {} missing (pass every shard folder of the job array)",
                missing.join(", ")
            ));
        }
    }
    let mut counts: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    for (run, count) in runs.keys() {
        counts.entry(run).or_default().insert(*count);
    }
    for (run, c) in counts.iter().filter(|(_, c)| c.len() > 1) {
        out.push(format!("run {run}: folders disagree on the shard count ({c:?})"));
    }
    out
}
