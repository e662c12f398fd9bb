//! Wiring of object-store outputs (`--out s3://...`) for `generate`, and of store URLs given to
//! `inspect`, `validate` and `report`: the shard lease, the staging folder, the publisher the
//! pipeline's writer calls, and the final manifest. The logic lives in `agentgen-store`.

use std::path::PathBuf;
use std::sync::Arc;

use agentgen_pipeline::RunConfig;
use agentgen_store::{Acquired, Lease, ShardPublisher, Store};
use anyhow::Context;

/// A shard this process holds in a store, for the length of a run. Dropping it without
/// [`Published::finish`] (an error path) still uploads the manifest the run left and releases
/// the lease, so a retry does not wait for it to expire.
pub(crate) struct Published {
    store: Store,
    lease: Arc<Lease>,
    publisher: Arc<ShardPublisher>,
    keep_alive: tokio::task::JoinHandle<()>,
    handle: tokio::runtime::Handle,
    staging: PathBuf,
    /// Removed when the run ends (a default staging folder).
    _temp: Option<tempfile::TempDir>,
    done: bool,
}

/// What taking a store shard gave.
pub(crate) enum Prepared {
    /// Held: `cfg` now points at the staging folder, with `--resume` set when the store
    /// already held finished parts of the shard.
    Ready(Published),
    /// Another live process holds the shard (exit 3, nothing written).
    Busy(String),
}

/// Take `cfg.shard` of the dataset at `url` before anything is written: claim its lease, fetch
/// what the store already holds of it into a staging folder, and point `cfg` there.
pub(crate) fn prepare(
    rt: &tokio::runtime::Runtime,
    url: &str,
    cfg: &mut RunConfig,
    lease_secs: u64,
    staging: Option<PathBuf>,
) -> anyhow::Result<Prepared> {
    if cfg.overwrite {
        anyhow::bail!(
            "{url}: --overwrite does not apply to object stores (parts are create-only); write \
             to a new prefix"
        );
    }
    let shard = cfg.shard.index;
    // The staging folder first: a bad --staging must not take (and leave) a lease.
    let (staging, temp) = match staging {
        Some(dir) => {
            if dir.exists() && std::fs::read_dir(&dir).map_or(true, |mut d| d.next().is_some()) {
                anyhow::bail!("--staging {}: must be a new or empty folder", dir.display());
            }
            (dir, None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix(&format!("agentgen-shard-{shard:05}-"))
                .tempdir()
                .context("creating a staging folder (set TMPDIR or --staging)")?;
            (t.path().to_owned(), Some(t))
        }
    };
    // A file:// output is created like a folder output (reading one never creates it).
    if let Some(path) = url.strip_prefix("file://").filter(|p| p.starts_with('/')) {
        std::fs::create_dir_all(path).with_context(|| format!("creating {path}"))?;
    }
    let store = Store::open(url)?;
    let acquired =
        rt.block_on(Lease::acquire(&store, shard, lease_secs, &agentgen_datasets::this_process()));
    let acquired = acquired.with_context(|| {
        let creds = ["AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE"];
        if url.starts_with("s3") && !creds.iter().any(|v| std::env::var_os(v).is_some()) {
            format!(
                "{url}: cannot write the shard's lease; no AWS credentials in the environment \
                 (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or a web identity; \
                 AWS_ENDPOINT_URL for an S3-compatible server)"
            )
        } else {
            format!("{url}: cannot write the shard's lease")
        }
    })?;
    let (lease, took_over) = match acquired {
        Acquired::Held { lease, took_over } => (lease, took_over),
        Acquired::Busy { holder, expires_in_secs } => {
            return Ok(Prepared::Busy(format!(
                "error: shard {shard} of {url} is held by {holder} (its lease expires in \
                 {expires_in_secs}s unless renewed); nothing was written"
            )));
        }
    };
    let keep_alive = lease.keep_alive(rt.handle());
    let publisher =
        Arc::new(ShardPublisher::new(store.clone(), Arc::clone(&lease), rt.handle().clone()));
    let published = Published {
        store,
        lease,
        publisher,
        keep_alive,
        handle: rt.handle().clone(),
        staging: staging.clone(),
        _temp: temp,
        done: false,
    };
    let found = rt
        .block_on(agentgen_store::fetch_shard(&published.store, shard, &staging))
        .with_context(|| format!("reading what {url} holds of shard {shard}"));
    let found = match found {
        Ok(f) => f,
        Err(e) => {
            published.abandon();
            return Err(e);
        }
    };
    if let Some(m) = &found {
        tracing::info!(
            "shard {shard}: {} finished part(s) in {url}{}; resuming",
            m.files.len(),
            if took_over { " (taken over from an expired lease)" } else { "" }
        );
        cfg.resume = true;
    }
    cfg.out = Some(staging);
    cfg.store_url = Some(published.store.url().to_owned());
    cfg.publisher = Some(published.publisher.clone() as Arc<dyn agentgen_datasets::Publish>);
    Ok(Prepared::Ready(published))
}

impl Published {
    /// Upload the manifest the run wrote last (finished, interrupted or stopped) and release
    /// the lease.
    pub(crate) fn finish(mut self) -> anyhow::Result<()> {
        self.done = true;
        self.close()
    }

    /// Release the lease without touching the shard's manifest (nothing of this run was
    /// written yet).
    fn abandon(mut self) {
        self.done = true;
        self.keep_alive.abort();
        if let Err(e) = self.handle.block_on(self.lease.release()) {
            eprintln!("warning: releasing the lease of shard {}: {e}", self.lease.shard());
        }
    }

    fn close(&mut self) -> anyhow::Result<()> {
        self.keep_alive.abort();
        let manifest = agentgen_datasets::Manifest::read(&self.staging).ok();
        let publisher = Arc::clone(&self.publisher);
        let lease = Arc::clone(&self.lease);
        let put = self.handle.block_on(async move {
            if let Some(m) = manifest {
                publisher.put_manifest(&m).await?;
            }
            lease.release().await
        });
        put.with_context(|| {
            format!("finishing shard {} in {}", self.lease.shard(), self.store.url())
        })
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            if let Err(e) = self.close() {
                eprintln!("warning: {e:#}");
            }
        }
    }
}

/// For `inspect`, `validate` and `report`: every argument that is a store URL is downloaded
/// (one folder per shard, each part checked against its manifest) into a temporary folder,
/// whose shard folders replace it. Keep the returned guard until the command is done.
pub(crate) fn localize(
    paths: Vec<PathBuf>,
) -> anyhow::Result<(Vec<PathBuf>, Vec<tempfile::TempDir>)> {
    let mut out = Vec::new();
    let mut temps = Vec::new();
    let mut rt = None;
    for p in paths {
        let Some(url) = p.to_str().filter(|s| agentgen_store::is_url(s)).map(str::to_owned) else {
            out.push(p);
            continue;
        };
        let rt = match &mut rt {
            Some(rt) => rt,
            None => rt.insert(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("starting the tokio runtime")?,
            ),
        };
        let store = Store::open(&url)?;
        let temp = tempfile::Builder::new().prefix("agentgen-fetch-").tempdir()?;
        let dirs = rt
            .block_on(agentgen_store::fetch_dataset(&store, temp.path()))
            .with_context(|| format!("downloading {url}"))?;
        anyhow::ensure!(
            !dirs.is_empty(),
            "{url}: no shard manifest under {url}/_shards (not a dataset?)"
        );
        if !rt.block_on(agentgen_store::is_sealed(&store))? {
            eprintln!("warning: {url} is not sealed (no _SUCCESS): it may be incomplete");
        }
        out.extend(dirs);
        temps.push(temp);
    }
    Ok((out, temps))
}
