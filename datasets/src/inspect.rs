//! `agentgen inspect` as a library: what one or more dataset folders hold (rows, files,
//! schema versions, per-family, per-code and per-warning counts, tokens, one sample row) and
//! whether together they are one complete dataset: every folder's manifest matches its files,
//! no sample id appears twice (the shards of a job array are disjoint), no shard of a run is
//! missing. The CLI prints an [`Inspection`]; it computes nothing itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use serde_json::Value;

use crate::manifest::{Manifest, SplitCounts};
use crate::reader::{RowReader, file_info, list_parts, list_temp_files, read_string_column};
use crate::schema::{READABLE_SCHEMA_VERSIONS, SCHEMA_VERSION, col};
use crate::stats::scan_dataset;
use crate::{Error, Result, Split, trajectory_hash_hex};

/// One folder.
#[derive(Debug, Clone)]
pub struct FolderSummary {
    /// The folder.
    pub dir: PathBuf,
    /// Finished part files.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Rows in split `train`.
    pub train: u64,
    /// Rows in split `rejected`.
    pub rejected: u64,
    /// The schema versions of its files (`none` for a file without one).
    pub schema_versions: BTreeSet<String>,
    /// Unfinished `.parquet.tmp` files.
    pub temp_files: usize,
    /// Its `manifest.json`, when there is one.
    pub manifest: Option<Manifest>,
}

/// Token totals over all folders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    /// Every token.
    pub total: u64,
    /// Tokens of split `train`.
    pub train: u64,
    /// Tokens of split `train` with loss mask 1.
    pub train_loss: u64,
}

/// Exact duplicate trajectories among accepted rows ([`inspect`] with `dedup`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Duplicates {
    /// Accepted rows that repeat an earlier trajectory.
    pub duplicate_rows: u64,
    /// Of those, rows whose first occurrence is in another folder.
    pub cross_folder_rows: u64,
    /// Trajectories that occur more than once.
    pub groups: u64,
    /// Every such trajectory: its hash and the sample ids holding it (sorted by hash).
    pub examples: Vec<(String, Vec<String>)>,
}

/// What [`inspect`] found.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// One summary per folder, in the order given.
    pub folders: Vec<FolderSummary>,
    /// Rows per family and split, over all folders.
    pub per_family: BTreeMap<String, SplitCounts>,
    /// Rows per rejection code.
    pub per_rejection_code: BTreeMap<String, u64>,
    /// Rows per warning.
    pub per_warning: BTreeMap<String, u64>,
    /// Token totals.
    pub tokens: TokenCounts,
    /// Sample ids found in more than one place: (id, the folder of its first occurrence, the
    /// file of the repeat).
    pub duplicate_ids: Vec<(String, PathBuf, PathBuf)>,
    /// Exact duplicate trajectories, when asked for.
    pub dedup: Option<Duplicates>,
    /// The first accepted row (else the first row) as JSON, long token lists and text cut.
    pub sample: Option<Value>,
    /// Every failed check, one line each (empty: the folders are one complete dataset).
    pub problems: Vec<String>,
}

impl Inspection {
    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Rows in split `train`, over all folders.
    pub fn train(&self) -> u64 {
        self.folders.iter().map(|f| f.train).sum()
    }

    /// Rows in split `rejected`, over all folders.
    pub fn rejected(&self) -> u64 {
        self.folders.iter().map(|f| f.rejected).sum()
    }
}

/// Inspect the dataset folders `dirs` (the shards of one job array, or any folders); with
/// `dedup` also find exact duplicate trajectories among accepted rows. Failed checks are
/// [`Inspection::problems`]; an `Err` is a folder that cannot be read.
pub fn inspect(dirs: &[PathBuf], dedup: bool) -> Result<Inspection> {
    let mut problems: Vec<String> = Vec::new();
    let mut folders = Vec::new();
    let mut per_family: BTreeMap<String, SplitCounts> = BTreeMap::new();
    let mut per_code: BTreeMap<String, u64> = BTreeMap::new();
    let mut per_warning: BTreeMap<String, u64> = BTreeMap::new();
    let mut tokens = TokenCounts::default();
    // sample id -> index of the first folder holding it
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut duplicate_ids: Vec<(String, PathBuf, PathBuf)> = Vec::new();

    for (d, dir) in dirs.iter().enumerate() {
        if !dir.is_dir() {
            return Err(Error::NotAFolder { path: dir.clone() });
        }
        let parts = list_parts(dir).map_err(|e| e.in_step(format!("listing {}", dir.display())))?;
        let stats =
            scan_dataset(dir).map_err(|e| e.in_step(format!("reading {}", dir.display())))?;
        let mut schema_versions = BTreeSet::new();
        for p in &parts {
            let info = file_info(&p.path)?;
            schema_versions.insert(info.schema_version.unwrap_or_else(|| "none".into()));
            for id in read_string_column(&p.path, col::SAMPLE_ID)?.into_iter().flatten() {
                match seen.get(&id) {
                    Some(&first) => duplicate_ids.push((id, dirs[first].clone(), p.path.clone())),
                    None => {
                        seen.insert(id, d);
                    }
                }
            }
        }
        let temp_files = list_temp_files(dir)?.len();
        let manifest = match Manifest::read(dir) {
            Ok(m) => Some(m),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.in_step("reading manifest.json")),
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
        tokens.total += stats.tokens.total;
        tokens.train += stats.tokens.train;
        tokens.train_loss += stats.tokens.train_loss;
        folders.push(FolderSummary {
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
    if let Some((id, a, b)) = duplicate_ids.first() {
        problems.push(format!(
            "{} sample id(s) appear more than once (shards not disjoint), e.g. {id:?} in {} and {}",
            duplicate_ids.len(),
            a.display(),
            b.display()
        ));
    }
    problems.extend(missing_shards(&folders));
    let dedup = if dedup { Some(find_duplicates(dirs)?) } else { None };
    let sample = sample_row(dirs)?;
    Ok(Inspection {
        folders,
        per_family,
        per_rejection_code: per_code,
        per_warning,
        tokens,
        duplicate_ids,
        dedup,
        sample,
        problems,
    })
}

/// Exact duplicates among accepted rows of all folders (streaming, one row at a time).
fn find_duplicates(dirs: &[PathBuf]) -> Result<Duplicates> {
    // hash -> (folder of first occurrence, sample ids)
    let mut by_hash: HashMap<String, (usize, Vec<String>)> = HashMap::new();
    let mut d = Duplicates::default();
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
fn sample_row(dirs: &[PathBuf]) -> Result<Option<Value>> {
    for split in [Split::Train, Split::Rejected] {
        for dir in dirs {
            for part in list_parts(dir)?.into_iter().filter(|p| p.split == split) {
                if let Some(row) = RowReader::try_new(&part.path)?.next() {
                    let mut v = serde_json::to_value(row?)
                        .map_err(|source| Error::Json { path: part.path.clone(), source })?;
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
fn missing_shards(folders: &[FolderSummary]) -> Vec<String> {
    let mut runs: BTreeMap<(&str, u32), BTreeSet<u32>> = BTreeMap::new();
    for m in folders.iter().filter_map(|r| r.manifest.as_ref()) {
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
