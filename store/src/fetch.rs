//! Bringing shards back to local folders: a retried shard's staging folder (its manifest and
//! the parts it recorded, so `--resume` skips what is done) and a whole dataset for `inspect`,
//! `validate`, `report` and `seal` (one folder per shard, as those commands take them).
//! Every part is checked against its manifest's size and SHA-256 as it streams in.

use std::io::Write;
use std::path::{Path, PathBuf};

use agentgen_datasets::{DATA_DIR, MANIFEST_FILE, Manifest, WrittenFile, parse_part_file_name};
use object_store::ObjectStoreExt;

use crate::{Error, Result, SHARDS_DIR, Store, shard_object};

/// The shard's manifest in the store, if it has one.
pub(crate) async fn shard_manifest(store: &Store, shard: u32) -> Result<Option<Manifest>> {
    let rel = shard_object(shard, MANIFEST_FILE);
    let Some((bytes, _)) = store.get(&rel).await? else { return Ok(None) };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::Invalid {
        url: store.url_of(&rel),
        reason: format!("not a manifest: {e}"),
    })
}

/// Download `file` into `dir/<file.path>`, checking size and SHA-256 against the record.
pub(crate) async fn download_part(store: &Store, file: &WrittenFile, dir: &Path) -> Result<()> {
    use futures_util::StreamExt;
    use sha2::{Digest, Sha256};
    let dest = dir.join(&file.path);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::Io {
            op: "create",
            path: parent.to_owned(),
            source: e,
        })?;
    }
    let got = match store.inner.get(&store.key(&file.path)).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(Error::Invalid {
                url: store.url_of(&file.path),
                reason: "recorded by its shard's manifest but missing from the store".into(),
            });
        }
        Err(e) => return Err(store.err("read", &file.path)(e)),
    };
    let mut out = agentgen_datasets::create_exclusive(&dest)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut stream = got.into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(store.err("read", &file.path))?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        out.write_all(&chunk).map_err(|e| Error::Io {
            op: "write",
            path: dest.clone(),
            source: e,
        })?;
    }
    out.sync_all().map_err(|e| Error::Io { op: "fsync", path: dest.clone(), source: e })?;
    let bad = |reason: String| Error::Invalid { url: store.url_of(&file.path), reason };
    if size != file.bytes {
        return Err(bad(format!(
            "{size} bytes in the store, its shard's manifest recorded {} (truncated or replaced)",
            file.bytes
        )));
    }
    let hex: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if let Some(want) = &file.sha256
        && &hex != want
    {
        return Err(bad("its SHA-256 differs from what its shard's manifest recorded".into()));
    }
    Ok(())
}

/// Every part `m` records into `dir`, checked, then `m` as `dir/manifest.json`.
async fn download_recorded(store: &Store, m: &Manifest, dir: &Path) -> Result<()> {
    for f in &m.files {
        download_part(store, f, dir).await?;
    }
    m.write(dir)?;
    Ok(())
}

/// For a shard this process now holds: bring its manifest and recorded parts from the store
/// into the empty folder `staging` (so a `--resume` there redoes only what is missing), and
/// delete the shard's parts no manifest records (uploads of a holder that died before it
/// recorded them; this process holds the lease, so nobody else is writing them). Returns the
/// manifest, or `None` when the shard has not recorded anything yet.
pub async fn fetch_shard(store: &Store, shard: u32, staging: &Path) -> Result<Option<Manifest>> {
    let manifest = shard_manifest(store, shard).await?;
    if let Some(m) = &manifest {
        if m.shard_index != shard {
            return Err(Error::Invalid {
                url: store.url_of(&shard_object(shard, MANIFEST_FILE)),
                reason: format!("records shard {}, not {shard}", m.shard_index),
            });
        }
        download_recorded(store, m, staging).await?;
    }
    let recorded: Vec<&str> =
        manifest.iter().flat_map(|m| m.files.iter().map(|f| f.path.as_str())).collect();
    for (rel, _) in store.list(DATA_DIR).await? {
        let name = rel.rsplit('/').next().unwrap_or(&rel);
        let ours = parse_part_file_name(name).is_some_and(|(_, s, _)| s == shard);
        if ours && !recorded.contains(&rel.as_str()) {
            tracing::warn!(
                "shard {shard}: deleting {} (no manifest records it)",
                store.url_of(&rel)
            );
            store.delete(&rel).await?;
        }
    }
    Ok(manifest)
}

/// Every shard that has a manifest in the store, by index.
pub(crate) async fn shard_indices(store: &Store) -> Result<Vec<u32>> {
    let mut out: Vec<u32> = store
        .list(SHARDS_DIR)
        .await?
        .into_iter()
        .filter_map(|(rel, _)| {
            let mut it = rel.split('/');
            let (_, idx, name) = (it.next()?, it.next()?, it.next()?);
            (name == MANIFEST_FILE).then(|| idx.parse().ok()).flatten()
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Download the dataset at `store` into `dest`: one folder per shard that has a manifest
/// (`dest/shard-NNNNN/` with `manifest.json` and the parts it records), each part checked
/// against its record. Returns the shard folders, in shard order.
pub async fn fetch_dataset(store: &Store, dest: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for shard in shard_indices(store).await? {
        let Some(m) = shard_manifest(store, shard).await? else { continue };
        let dir = dest.join(format!("shard-{shard:05}"));
        std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
            op: "create",
            path: dir.clone(),
            source: e,
        })?;
        download_recorded(store, &m, &dir).await?;
        dirs.push(dir);
    }
    Ok(dirs)
}
