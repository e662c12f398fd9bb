//! Publishing a shard's finished parts: each part is put once, create-only, under `data/`,
//! then the shard's manifest (its journal) is replaced, so the manifest in the store never
//! lists a part the store does not hold. Every put is preceded by a lease renewal, so a
//! process that lost its shard stops before it writes.

use std::path::Path;
use std::sync::Arc;

use agentgen_datasets::{MANIFEST_FILE, Manifest, Publish, WrittenFile};
use object_store::{PutMode, PutPayload};

use agentgen_datasets::sha256_hex;

use crate::{Error, Lease, Result, Store, shard_object};

/// Uploads one shard's parts and manifest as the writer finishes them (a
/// [`agentgen_datasets::Publish`] for the pipeline's writer thread).
#[derive(Debug)]
pub struct ShardPublisher {
    store: Store,
    lease: Arc<Lease>,
    handle: tokio::runtime::Handle,
}

impl ShardPublisher {
    /// Publish for `lease`'s shard into `store`, running the store calls on `handle` (the
    /// writer thread is not a runtime thread).
    pub fn new(store: Store, lease: Arc<Lease>, handle: tokio::runtime::Handle) -> Self {
        ShardPublisher { store, lease, handle }
    }

    /// Put a part file, create-only. An object already there with the same bytes (a retry of
    /// an upload whose answer was lost) counts as done; different bytes are an error.
    pub async fn put_part(&self, dir: &Path, file: &WrittenFile) -> Result<()> {
        let path = dir.join(&file.path);
        let f = std::fs::File::open(&path).map_err(|e| Error::Io {
            op: "open",
            path: path.clone(),
            source: e,
        })?;
        // SAFETY: the part is finished and renamed (the run keeps it for its final counts);
        // nothing writes or truncates it while the upload maps it.
        let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| Error::Io {
            op: "map",
            path: path.clone(),
            source: e,
        })?;
        let bytes = bytes::Bytes::from_owner(map);
        let want = file.sha256.clone().unwrap_or_else(|| sha256_hex(&bytes));
        self.lease.renew().await?;
        match self.store.put(&file.path, PutPayload::from(bytes), PutMode::Create).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                match self.store.get(&file.path).await? {
                    Some((b, _)) if sha256_hex(&b) == want => Ok(()),
                    _ => Err(Error::Invalid {
                        url: self.store.url_of(&file.path),
                        reason: "already exists with other content (another process wrote this \
                                 shard?); parts are never overwritten"
                            .into(),
                    }),
                }
            }
            Err(e) => Err(self.store.err("put", &file.path)(e)),
        }
    }

    /// Replace the shard's manifest in the store with `manifest`.
    pub async fn put_manifest(&self, manifest: &Manifest) -> Result<()> {
        let rel = shard_object(self.lease.shard(), MANIFEST_FILE);
        let json = serde_json::to_vec_pretty(manifest).map_err(|e| Error::Invalid {
            url: self.store.url_of(&rel),
            reason: format!("cannot encode the manifest: {e}"),
        })?;
        self.lease.renew().await?;
        self.store
            .put(&rel, PutPayload::from(json), PutMode::Overwrite)
            .await
            .map_err(self.store.err("put", &rel))?;
        Ok(())
    }
}

impl Publish for ShardPublisher {
    fn publish_part(
        &self,
        dir: &Path,
        file: &WrittenFile,
        journal: Option<&Manifest>,
    ) -> agentgen_datasets::Result<()> {
        let failed = |e: Error| agentgen_datasets::Error::Publish {
            path: self.store.url_of(&file.path),
            message: e.to_string(),
        };
        self.handle
            .block_on(async {
                self.put_part(dir, file).await?;
                if let Some(m) = journal {
                    self.put_manifest(m).await?;
                }
                Ok::<(), Error>(())
            })
            .map_err(failed)
    }
}
