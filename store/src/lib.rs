//! Datasets in object storage, for job arrays (Kubernetes Indexed Jobs, Slurm arrays) that
//! write straight to S3, GCS, Azure or a shared file system.
//!
//! Owns: output URLs (`s3://`, `gs://`, `az://`, `file://`), the object layout of a sharded
//! dataset, create-only publishing of finished parts ([`ShardPublisher`]), the per-shard lease
//! ([`Lease`]), bringing a shard or a whole dataset back to local folders ([`fetch_shard`],
//! [`fetch_dataset`]) and [`seal`].
//!
//! Must not touch: how rows are made, encoded or checked (pipeline, datasets): a run writes its
//! parts to a local staging folder exactly as it writes any output folder, and this crate only
//! moves finished files and manifests.
//!
//! Layout under the URL's prefix:
//! ```text
//! data/{split}-{shard:05}-{part:05}.parquet   parts, each put once (create-only)
//! _shards/{shard:05}/manifest.json            the shard's journal: the parts it finished
//! _shards/{shard:05}/lease.json               who writes the shard now (renewed)
//! _SUCCESS                                    written once by `seal`: the totals
//! ```
//! Credentials come from the usual environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`)
//! and files the cloud SDKs read; nothing here writes them anywhere.

#![warn(missing_docs)]

mod fetch;
mod lease;
mod publish;
mod seal;

use std::sync::Arc;

use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, PutResult};

pub use fetch::{fetch_dataset, fetch_shard};
pub use lease::{Acquired, DEFAULT_LEASE_SECS, Lease};
pub use publish::ShardPublisher;
pub use seal::{SUCCESS_FILE, SealReport, Totals, is_sealed, seal};

/// The folder of per-shard objects (manifest, lease).
pub const SHARDS_DIR: &str = "_shards";

/// Everything that can go wrong talking to a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL is not one this build can open.
    #[error("{url}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A store operation failed.
    #[error("{op} {url}: {source}")]
    Store {
        /// What was being done.
        op: &'static str,
        /// The object's full URL.
        url: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// A local file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A dataset file (manifest, part) could not be read or written.
    #[error(transparent)]
    Dataset(#[from] agentgen_datasets::Error),
    /// An object holds something other than what it must (a manifest that is not JSON, a
    /// part whose size or hash differs from the record).
    #[error("{url}: {reason}")]
    Invalid {
        /// The object's full URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// This process no longer holds its shard's lease (it expired and another process took
    /// the shard over): it must stop writing at once.
    #[error("lost the lease on shard {shard} ({url}): {reason}")]
    LeaseLost {
        /// The shard.
        shard: u32,
        /// The lease object.
        url: String,
        /// What the store said.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Whether `out` names an object store (`s3://`, `gs://`, `az://`, `file://`, ...) rather
/// than a local folder.
pub fn is_url(out: &str) -> bool {
    let Some((scheme, rest)) = out.split_once("://") else { return false };
    !scheme.is_empty()
        && !rest.is_empty()
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-')
}

/// A dataset location in an object store: the store and the prefix under it.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    prefix: ObjPath,
    url: String,
    /// The store cannot do conditional updates (`file://`): leases are renewed by overwrite.
    plain_updates: bool,
}

impl Store {
    /// Open `url`: `s3://bucket/prefix` (`AWS_*` variables: region, keys, `AWS_ENDPOINT_URL`
    /// for S3-compatible servers, `AWS_ALLOW_HTTP=true` for plain http), `gs://bucket/prefix`
    /// (`GOOGLE_*`), `az://container/prefix` (`AZURE_*`), or `file:///absolute/path`.
    pub fn open(url: &str) -> Result<Store> {
        Store::open_with(url, &[])
    }

    /// [`Store::open`] with `vars` (`AWS_ENDPOINT_URL`, `AWS_REGION`, ...) taking precedence
    /// over the process environment, for callers that must not change it.
    pub fn open_with(url: &str, vars: &[(&str, &str)]) -> Result<Store> {
        let bad = |reason: String| Error::Url { url: url.to_owned(), reason };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("not a URL".into()))?;
        let trimmed = url.trim_end_matches('/').to_owned();
        let (inner, prefix, plain): (Arc<dyn ObjectStore>, String, bool) = match scheme {
            "file" => {
                let path = std::path::Path::new(rest);
                if !path.is_absolute() {
                    return Err(bad("a file:// URL needs an absolute path (file:///...)".into()));
                }
                if !path.is_dir() {
                    return Err(bad(format!("{} is not a folder", path.display())));
                }
                let fs = object_store::local::LocalFileSystem::new_with_prefix(path)
                    .map_err(|e| Error::Store { op: "open", url: url.into(), source: e })?;
                (Arc::new(fs), String::new(), true)
            }
            "s3" | "s3a" => {
                let (bucket, prefix) = bucket_and_prefix(rest)
                    .ok_or_else(|| bad("wants s3://BUCKET/PREFIX".into()))?;
                let mut b = object_store::aws::AmazonS3Builder::from_env();
                for (k, v) in vars {
                    if let Ok(key) = k.to_ascii_lowercase().parse() {
                        b = b.with_config(key, *v);
                    }
                }
                let s = b
                    .with_bucket_name(bucket)
                    .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
                    .build()
                    .map_err(|e| bad(format!("cannot open the bucket: {e}")))?;
                (Arc::new(s), prefix, false)
            }
            "gs" => {
                let (bucket, prefix) = bucket_and_prefix(rest)
                    .ok_or_else(|| bad("wants gs://BUCKET/PREFIX".into()))?;
                let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env();
                for (k, v) in vars {
                    if let Ok(key) = k.to_ascii_lowercase().parse() {
                        b = b.with_config(key, *v);
                    }
                }
                let s = b
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|e| bad(format!("cannot open the bucket: {e}")))?;
                (Arc::new(s), prefix, false)
            }
            "az" | "azure" | "abfs" | "abfss" => {
                let (container, prefix) = bucket_and_prefix(rest)
                    .ok_or_else(|| bad("wants az://CONTAINER/PREFIX".into()))?;
                let mut b = object_store::azure::MicrosoftAzureBuilder::from_env();
                for (k, v) in vars {
                    if let Ok(key) = k.to_ascii_lowercase().parse() {
                        b = b.with_config(key, *v);
                    }
                }
                let s = b
                    .with_container_name(container)
                    .build()
                    .map_err(|e| bad(format!("cannot open the container: {e}")))?;
                (Arc::new(s), prefix, false)
            }
            other => {
                return Err(bad(format!(
                    "unknown scheme {other:?}: --out takes a folder or an s3://, gs://, az:// or \
                     file:// URL"
                )));
            }
        };
        Ok(Store { inner, prefix: ObjPath::from(prefix), url: trimmed, plain_updates: plain })
    }

    /// The URL the store was opened with (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The object at `rel` (a `/`-separated path under the prefix).
    fn key(&self, rel: &str) -> ObjPath {
        rel.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.prefix.clone(), object_store::path::Path::join)
    }

    /// `rel` as a full URL, for messages.
    pub fn url_of(&self, rel: &str) -> String {
        format!("{}/{rel}", self.url)
    }

    fn err(&self, op: &'static str, rel: &str) -> impl FnOnce(object_store::Error) -> Error {
        let url = self.url_of(rel);
        move |source| Error::Store { op, url, source }
    }

    /// The object at `rel` with its metadata, or `None` when absent.
    async fn get(&self, rel: &str) -> Result<Option<(bytes::Bytes, object_store::ObjectMeta)>> {
        match self.inner.get(&self.key(rel)).await {
            Ok(r) => {
                let meta = r.meta.clone();
                let body = r.bytes().await.map_err(self.err("read", rel))?;
                Ok(Some((body, meta)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("read", rel)(e)),
        }
    }

    /// Put `payload` at `rel` with `mode`; store errors come back unwrapped so callers can
    /// tell `AlreadyExists` and `Precondition` apart.
    async fn put(
        &self,
        rel: &str,
        payload: PutPayload,
        mode: PutMode,
    ) -> std::result::Result<PutResult, object_store::Error> {
        let opts = PutOptions { mode, ..Default::default() };
        self.inner.put_opts(&self.key(rel), payload, opts).await
    }

    /// Every object under `rel/`, as paths relative to the prefix, sorted.
    async fn list(&self, rel: &str) -> Result<Vec<(String, u64)>> {
        use futures_util::TryStreamExt;
        let key = self.key(rel);
        let metas: Vec<object_store::ObjectMeta> =
            self.inner.list(Some(&key)).try_collect().await.map_err(self.err("list", rel))?;
        let base: Vec<_> = self.prefix.parts().collect();
        let mut out: Vec<(String, u64)> = metas
            .into_iter()
            .map(|m| {
                let parts: Vec<String> =
                    m.location.parts().skip(base.len()).map(|p| p.as_ref().to_owned()).collect();
                (parts.join("/"), m.size)
            })
            .collect();
        out.sort();
        Ok(out)
    }

    async fn delete(&self, rel: &str) -> Result<()> {
        match self.inner.delete(&self.key(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("delete", rel)(e)),
        }
    }
}

fn bucket_and_prefix(rest: &str) -> Option<(&str, String)> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (bucket, prefix.trim_matches('/').to_owned()))
}

/// `_shards/{shard:05}/{name}`.
pub fn shard_object(shard: u32, name: &str) -> String {
    format!("{SHARDS_DIR}/{shard:05}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_folders() {
        assert!(is_url("s3://bucket/prefix"));
        assert!(is_url("file:///tmp/x"));
        assert!(!is_url("dataset"));
        assert!(!is_url("./a://b"));
        assert!(!is_url("/abs/path"));
        assert!(!is_url("s3://"));
    }

    #[test]
    fn a_relative_file_url_and_an_unknown_scheme_are_refused_by_name() {
        let e = Store::open("file://relative/x").expect_err("relative");
        assert!(e.to_string().contains("absolute path"), "{e}");
        let e = Store::open("ftp://host/x").expect_err("ftp");
        assert!(e.to_string().contains("unknown scheme \"ftp\""), "{e}");
    }

    #[test]
    fn keys_join_the_prefix() {
        let dir = tempfile::tempdir().expect("tmp");
        let url = format!("file://{}", dir.path().display());
        let s = Store::open(&url).expect("open");
        assert_eq!(s.key("data/a.parquet").as_ref(), "data/a.parquet");
        assert_eq!(shard_object(3, "lease.json"), "_shards/00003/lease.json");
    }
}
