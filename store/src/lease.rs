//! The shard lease: one object per shard (`_shards/NNNNN/lease.json`) that says which process
//! writes the shard now. Claimed create-only; renewed with conditional writes (the store's
//! ETag must still be ours, so a process that lost the lease finds out at its next renewal);
//! taken over by a retry only once it has gone `lease_secs` without renewal (the holder died);
//! deleted when the holder ends cleanly.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::{PutMode, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use crate::{Error, Result, Store, shard_object};

/// `--lease-secs` default: a dead holder's shard can be taken over after a minute.
pub const DEFAULT_LEASE_SECS: u64 = 60;

const LEASE_FILE: &str = "lease.json";

#[derive(Debug, Serialize, Deserialize)]
struct Body {
    holder: String,
    lease_secs: u64,
}

/// What [`Lease::acquire`] found.
#[derive(Debug)]
pub enum Acquired {
    /// This process holds the shard now; `took_over` when it replaced an expired lease.
    Held {
        /// The lease (renew it with [`Lease::keep_alive`], end it with [`Lease::release`]).
        lease: Arc<Lease>,
        /// Whether an expired holder's lease was replaced.
        took_over: bool,
    },
    /// Another process holds it.
    Busy {
        /// Who (`pid N on HOST`), as its lease says.
        holder: String,
        /// Seconds until it expires unless renewed.
        expires_in_secs: u64,
    },
}

/// A held shard lease.
#[derive(Debug)]
pub struct Lease {
    store: Store,
    shard: u32,
    rel: String,
    body: Vec<u8>,
    lease_secs: u64,
    version: Mutex<UpdateVersion>,
    /// Set once a renewal found the lease taken: every later check fails with it.
    lost: Mutex<Option<String>>,
}

fn version_of(r: &object_store::PutResult) -> UpdateVersion {
    UpdateVersion { e_tag: r.e_tag.clone(), version: r.version.clone() }
}

impl Lease {
    /// Claim `shard` for `holder` before anything of the shard is written.
    pub async fn acquire(
        store: &Store,
        shard: u32,
        lease_secs: u64,
        holder: &str,
    ) -> Result<Acquired> {
        let rel = shard_object(shard, LEASE_FILE);
        let lease_secs = lease_secs.max(1);
        let body =
            serde_json::to_vec(&Body { holder: holder.to_owned(), lease_secs }).unwrap_or_default();
        let make = |v: UpdateVersion| Lease {
            store: store.clone(),
            shard,
            rel: rel.clone(),
            body: body.clone(),
            lease_secs,
            version: Mutex::new(v),
            lost: Mutex::new(None),
        };
        match store.put(&rel, PutPayload::from(body.clone()), PutMode::Create).await {
            Ok(r) => {
                return Ok(Acquired::Held {
                    lease: Arc::new(make(version_of(&r))),
                    took_over: false,
                });
            }
            Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(store.err("claim", &rel)(e)),
        }
        // Held or left behind: read it and decide by its age (store time of the last renewal).
        let Some((bytes, meta)) = store.get(&rel).await? else {
            // Released between our put and get: one more try, then report it busy.
            return match store.put(&rel, PutPayload::from(body.clone()), PutMode::Create).await {
                Ok(r) => {
                    Ok(Acquired::Held { lease: Arc::new(make(version_of(&r))), took_over: false })
                }
                Err(_) => Ok(Acquired::Busy {
                    holder: "another process".into(),
                    expires_in_secs: lease_secs,
                }),
            };
        };
        let theirs: Option<Body> = serde_json::from_slice(&bytes).ok();
        let their_secs = theirs.as_ref().map_or(lease_secs, |b| b.lease_secs.max(1));
        let holder_then = theirs.map_or_else(|| "an unreadable lease".to_owned(), |b| b.holder);
        let age = (chrono::Utc::now() - meta.last_modified).num_milliseconds().max(0) as u64;
        if age < their_secs * 1000 {
            return Ok(Acquired::Busy {
                holder: holder_then,
                expires_in_secs: (their_secs * 1000 - age).div_ceil(1000),
            });
        }
        // Expired: take it over, conditionally on the version we read (two retries racing for
        // it: one wins, the other sees a precondition failure and reports the shard busy).
        let seen = UpdateVersion { e_tag: meta.e_tag.clone(), version: meta.version.clone() };
        let mode = if store.plain_updates { PutMode::Overwrite } else { PutMode::Update(seen) };
        match store.put(&rel, PutPayload::from(body.clone()), mode).await {
            Ok(r) => {
                tracing::warn!(
                    "shard {shard}: took over the lease of {holder_then} (not renewed for {}s)",
                    age / 1000
                );
                Ok(Acquired::Held { lease: Arc::new(make(version_of(&r))), took_over: true })
            }
            Err(object_store::Error::Precondition { .. }) => Ok(Acquired::Busy {
                holder: "another process taking it over at the same time".into(),
                expires_in_secs: their_secs,
            }),
            Err(e) => Err(store.err("take over", &rel)(e)),
        }
    }

    /// The shard this lease is for.
    pub fn shard(&self) -> u32 {
        self.shard
    }

    fn lost_error(&self, reason: String) -> Error {
        Error::LeaseLost { shard: self.shard, url: self.store.url_of(&self.rel), reason }
    }

    /// Renew now: a conditional write on the version this process last wrote. Fails for good
    /// once the lease was taken (the caller must stop writing).
    pub async fn renew(&self) -> Result<()> {
        if let Some(why) = self.lost.lock().map_or(None, |g| g.clone()) {
            return Err(self.lost_error(why));
        }
        let current = self.version.lock().map_or_else(|p| p.into_inner().clone(), |v| v.clone());
        let mode =
            if self.store.plain_updates { PutMode::Overwrite } else { PutMode::Update(current) };
        match self.store.put(&self.rel, PutPayload::from(self.body.clone()), mode).await {
            Ok(r) => {
                if let Ok(mut v) = self.version.lock() {
                    *v = version_of(&r);
                }
                Ok(())
            }
            Err(
                e @ (object_store::Error::Precondition { .. }
                | object_store::Error::NotFound { .. }),
            ) => {
                let why = format!("another process replaced it ({e})");
                if let Ok(mut l) = self.lost.lock() {
                    *l = Some(why.clone());
                }
                Err(self.lost_error(why))
            }
            Err(e) => Err(self.store.err("renew", &self.rel)(e)),
        }
    }

    /// Renew every third of the lease period until the returned task is aborted; a renewal
    /// that finds the lease taken marks it lost (the next [`renew`](Self::renew) fails).
    pub fn keep_alive(
        self: &Arc<Self>,
        handle: &tokio::runtime::Handle,
    ) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        let period = Duration::from_millis((me.lease_secs * 1000 / 3).max(200));
        handle.spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                match me.renew().await {
                    Ok(()) => {}
                    Err(e @ Error::LeaseLost { .. }) => {
                        tracing::error!("{e}");
                        break;
                    }
                    // A transient store error: the next tick tries again (the lease lasts
                    // three periods).
                    Err(e) => tracing::warn!("renewing the shard lease: {e}"),
                }
            }
        })
    }

    /// End the lease (the shard is done or the run stopped cleanly), unless it was lost.
    pub async fn release(&self) -> Result<()> {
        if self.lost.lock().map_or(true, |g| g.is_some()) {
            return Ok(());
        }
        // Only our own version: a lease someone else took over stays theirs.
        if let Some((_, meta)) = self.store.get(&self.rel).await? {
            let ours = self.version.lock().map_or(None, |v| v.e_tag.clone());
            if ours.is_some() && meta.e_tag != ours && !self.store.plain_updates {
                return Ok(());
            }
            self.store.delete(&self.rel).await?;
        }
        Ok(())
    }
}
