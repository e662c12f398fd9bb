//! `seal`: the final check of a sharded dataset in a store, and the create-only `_SUCCESS`
//! that tells a reader the dataset is whole. Every shard must have finished (its manifest says
//! so), agree with the others (run, shard count, schema version, configuration), and hold
//! exactly the parts it recorded (size, SHA-256, row count); no object under `data/` may be
//! unrecorded, and no sample id may appear twice.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use agentgen_datasets::{
    DATA_DIR, Manifest, SCHEMA_VERSION, Split, col, file_info, read_string_column,
};
use object_store::{PutMode, PutPayload};
use serde::{Deserialize, Serialize};

use crate::fetch::{download_part, shard_indices, shard_manifest};
use crate::{Result, Store};

/// The object `seal` writes once the dataset checks out.
pub const SUCCESS_FILE: &str = "_SUCCESS";

/// What `seal` found, and the totals it wrote into `_SUCCESS`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SealReport {
    /// Why the dataset cannot be sealed (empty when it was).
    pub problems: Vec<String>,
    /// Whether `_SUCCESS` is in the store now (written by this call or an earlier one).
    pub sealed: bool,
    /// Whether an earlier `seal` had written it already.
    pub already_sealed: bool,
    /// The totals (`_SUCCESS`'s content).
    pub totals: Totals,
}

/// The content of `_SUCCESS`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Totals {
    /// The run id every shard shares.
    pub run_id: String,
    /// Shards in the job array.
    pub shards: u32,
    /// Part files.
    pub parts: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Rows per split.
    pub rows: BTreeMap<String, u64>,
    /// Tasks over all shards.
    pub tasks: u64,
    /// Rows of each shard (all splits).
    pub rows_per_shard: Vec<u64>,
    /// Schema version of the rows.
    pub schema_version: u32,
    /// The agentgen version that sealed it.
    pub sealed_by: String,
    /// RFC 3339 time of the seal.
    pub sealed_at: String,
}

fn state(m: &Manifest) -> &str {
    m.runtime.get("state").map_or("unknown", String::as_str)
}

fn identity_without_shard(m: &Manifest) -> BTreeMap<String, serde_json::Value> {
    let mut id = m.resume_identity.clone();
    id.remove("shard");
    id
}

/// Check the dataset of `shards` shards at `store` and write `_SUCCESS` if it is whole.
/// Parts are streamed through `scratch` one at a time (checked, then removed). Problems are
/// data, not errors: an `Err` means the store itself could not be read.
pub async fn seal(store: &Store, shards: u32, scratch: &Path) -> Result<SealReport> {
    let mut report = SealReport::default();
    if let Some((bytes, _)) = store.get(SUCCESS_FILE).await? {
        let totals: Totals = serde_json::from_slice(&bytes).unwrap_or_default();
        if totals.shards != shards {
            report.problems.push(format!(
                "{} already exists and says {} shard(s), not {shards}",
                store.url_of(SUCCESS_FILE),
                totals.shards
            ));
        } else {
            report.sealed = true;
            report.already_sealed = true;
        }
        report.totals = totals;
        return Ok(report);
    }
    if shards == 0 {
        report.problems.push("--shards must be at least 1".into());
        return Ok(report);
    }
    let mut manifests: Vec<(u32, Manifest)> = Vec::new();
    for i in 0..shards {
        match shard_manifest(store, i).await {
            Ok(Some(m)) => manifests.push((i, m)),
            Ok(None) => report.problems.push(format!(
                "shard {i}: missing (no {}: never started, or no part finished yet)",
                crate::shard_object(i, agentgen_datasets::MANIFEST_FILE)
            )),
            Err(e) => report.problems.push(format!("shard {i}: {e}")),
        }
    }
    for i in shard_indices(store).await? {
        if i >= shards {
            report.problems.push(format!(
                "shard {i}: present, but --shards {shards} says shards are 0..{}",
                shards - 1
            ));
        }
    }
    let first = manifests.first().map(|(_, m)| m.clone());
    for (i, m) in &manifests {
        let st = state(m);
        if st != "finished" {
            report.problems.push(format!(
                "shard {i}: not finished (state {st}); rerun its index to complete it"
            ));
        }
        if m.shard_index != *i || m.shard_count != shards {
            report.problems.push(format!(
                "shard {i}: its manifest says shard {}/{}, expected {i}/{shards}",
                m.shard_index, m.shard_count
            ));
        }
        if m.schema_version != SCHEMA_VERSION {
            report.problems.push(format!(
                "shard {i}: schema version {}, this build writes {SCHEMA_VERSION}",
                m.schema_version
            ));
        }
        if let Some(f) = &first {
            if m.run_id != f.run_id {
                report.problems.push(format!(
                    "shard {i}: run {} differs from shard {}'s run {} (a shard of another run)",
                    m.run_id, manifests[0].0, f.run_id
                ));
            } else if identity_without_shard(m) != identity_without_shard(f) {
                report.problems.push(format!(
                    "shard {i}: its configuration differs from shard {}'s",
                    manifests[0].0
                ));
            }
        }
    }
    // Every object under data/ must be a part some shard recorded.
    let recorded: HashMap<&str, u32> = manifests
        .iter()
        .flat_map(|(i, m)| m.files.iter().map(move |f| (f.path.as_str(), *i)))
        .collect();
    for (rel, _) in store.list(DATA_DIR).await? {
        if !recorded.contains_key(rel.as_str()) {
            report.problems.push(format!(
                "{}: no shard manifest records it (a part of another run, or a crashed upload)",
                store.url_of(&rel)
            ));
        }
    }
    // Each recorded part: size, hash, rows, schema version; sample ids disjoint.
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut totals = Totals { shards, schema_version: SCHEMA_VERSION, ..Totals::default() };
    totals.rows_per_shard = vec![0; shards as usize];
    for (i, m) in &manifests {
        totals.tasks += m.counts.tasks;
        let dir = scratch.join(format!("shard-{i:05}"));
        for f in &m.files {
            let url = store.url_of(&f.path);
            if let Err(e) = download_part(store, f, &dir).await {
                report.problems.push(format!("shard {i}: {e}"));
                continue;
            }
            let local = dir.join(&f.path);
            let checked = check_part(&local, f.rows, &url, &mut ids);
            let _ = std::fs::remove_file(&local);
            match checked {
                Ok(()) => {
                    totals.parts += 1;
                    totals.bytes += f.bytes;
                    *totals.rows.entry(f.split.to_string()).or_default() += f.rows;
                    if let Some(r) = totals.rows_per_shard.get_mut(*i as usize) {
                        *r += f.rows;
                    }
                }
                Err(why) => report.problems.push(format!("shard {i}: {why}")),
            }
        }
    }
    for split in [Split::Train, Split::Rejected] {
        totals.rows.entry(split.to_string()).or_default();
    }
    totals.run_id = first.map(|m| m.run_id).unwrap_or_default();
    totals.sealed_by = format!("agentgen {}", env!("CARGO_PKG_VERSION"));
    totals.sealed_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    report.totals = totals;
    if !report.problems.is_empty() {
        return Ok(report);
    }
    let json = serde_json::to_vec_pretty(&report.totals).unwrap_or_default();
    match store.put(SUCCESS_FILE, PutPayload::from(json), PutMode::Create).await {
        Ok(_) => report.sealed = true,
        Err(object_store::Error::AlreadyExists { .. }) => {
            report.sealed = true;
            report.already_sealed = true;
        }
        Err(e) => return Err(store.err("put", SUCCESS_FILE)(e)),
    }
    Ok(report)
}

/// One downloaded part: readable, the recorded row count, sample ids not seen before.
fn check_part(
    path: &Path,
    rows: u64,
    url: &str,
    ids: &mut HashMap<String, String>,
) -> std::result::Result<(), String> {
    let info = file_info(path).map_err(|e| format!("{url}: {e}"))?;
    if info.rows != rows {
        return Err(format!("{url}: {} rows, its shard's manifest recorded {rows}", info.rows));
    }
    let column = read_string_column(path, col::SAMPLE_ID).map_err(|e| format!("{url}: {e}"))?;
    for id in column.into_iter().flatten() {
        if let Some(other) = ids.insert(id.clone(), url.to_owned()) {
            return Err(format!("{url}: sample id {id:?} also in {other} (shards not disjoint)"));
        }
    }
    Ok(())
}

/// Whether `seal` has written `_SUCCESS` at `store`.
pub async fn is_sealed(store: &Store) -> Result<bool> {
    Ok(store.get(SUCCESS_FILE).await?.is_some())
}
