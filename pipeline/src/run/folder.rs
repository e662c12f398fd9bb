//! The output folder: the run's identity (run id fingerprint, what `--resume` must share), and
//! taking the folder (refuse a foreign one, lock it, start fresh, replace or resume).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agentgen_datasets::{
    FolderLock, FolderState, WrittenFile, classify, clear_dataset, reconcile_parts,
};
use agentgen_environments::TaskRef;

use super::{RunConfig, ds};
use crate::{Error, Result};

pub(super) fn fingerprint(cfg: &RunConfig, policy: &str, model: Option<&str>) -> String {
    fingerprint_value(cfg, policy, model).to_string()
}

fn fingerprint_value(cfg: &RunConfig, policy: &str, model: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "seed": cfg.seed, "tasks": cfg.tasks, "families": cfg.families,
        "task_list": cfg.task_list.as_ref().map(|l| l.iter().map(TaskRef::to_string).collect::<Vec<_>>()),
        "samples_per_task": cfg.samples_per_task,
        "thinking_mode": if cfg.thinking_auto { "auto" } else { cfg.thinking_mode.as_str() },
        "sampling": {"temperature": cfg.sampling.temperature, "top_p": cfg.sampling.top_p,
                     "top_k": cfg.sampling.top_k, "max_tokens": cfg.sampling.max_tokens},
        "policy": policy, "model": model, "dedup": cfg.dedup, "band": cfg.difficulty_band,
    })
}

/// What a `--resume` must share with the run that started the folder, by field name: the
/// run-id fingerprint, the shard and the environment versions.
pub(super) fn resume_identity(
    cfg: &RunConfig,
    policy: &str,
    model: Option<&str>,
    env_versions: &BTreeMap<String, String>,
) -> BTreeMap<String, serde_json::Value> {
    let mut id: BTreeMap<String, serde_json::Value> = match fingerprint_value(cfg, policy, model) {
        serde_json::Value::Object(m) => m.into_iter().collect(),
        _ => BTreeMap::new(),
    };
    id.insert(
        "shard".into(),
        serde_json::json!(format!("{}/{}", cfg.shard.index, cfg.shard.count)),
    );
    id.insert("environment_versions".into(), serde_json::json!(env_versions));
    id
}

/// The fields whose values differ, as `name (folder: A, this run: B)`.
fn identity_diff(
    folder: &BTreeMap<String, serde_json::Value>,
    now: &BTreeMap<String, serde_json::Value>,
) -> Vec<String> {
    let short = |v: Option<&serde_json::Value>| {
        let t = v.map_or_else(|| "unset".to_owned(), serde_json::Value::to_string);
        if t.chars().count() > 60 {
            format!("{}…", t.chars().take(60).collect::<String>())
        } else {
            t
        }
    };
    let keys: std::collections::BTreeSet<&String> = folder.keys().chain(now.keys()).collect();
    keys.into_iter()
        .filter(|k| folder.get(*k) != now.get(*k))
        .map(|k| format!("{k} (folder: {}, this run: {})", short(folder.get(k)), short(now.get(k))))
        .collect()
}

/// The output folder while a run holds it.
pub(super) struct Taken {
    pub(super) dir: PathBuf,
    /// Released when the run ends.
    _lock: FolderLock,
    /// The parts a resume may trust (none on a fresh run).
    pub(super) trusted: Vec<WrittenFile>,
}

/// Take the output folder of this run, if it has one (`cfg.out`): see [`take_folder`].
pub(super) fn take(
    cfg: &RunConfig,
    identity: &BTreeMap<String, serde_json::Value>,
) -> Result<Option<Taken>> {
    cfg.out.as_deref().map(|dir| take_folder(cfg, dir, identity)).transpose()
}

/// Take the output folder `dir`: refuse a foreign folder, lock it (a second process
/// gets [`Error::OutputBusy`]), then start fresh, replace (`--overwrite`) or continue
/// (`--resume`, same identity only).
fn take_folder(
    cfg: &RunConfig,
    dir: &Path,
    identity: &BTreeMap<String, serde_json::Value>,
) -> Result<Taken> {
    let shown = cfg.store_url.clone().unwrap_or_else(|| dir.display().to_string());
    if cfg.resume && cfg.overwrite {
        return Err(Error::Config {
            message: "--resume and --overwrite exclude each other".into(),
        });
    }
    let foreign = |entry: String| Error::ForeignFolder { dir: shown.clone(), entry };
    // Before the lock file is created: leave a foreign folder untouched.
    if let FolderState::Foreign(entry) = classify(dir).map_err(ds)? {
        return Err(foreign(entry));
    }
    let lock = FolderLock::acquire(dir).map_err(|e| match e {
        agentgen_datasets::Error::Busy { holder, .. } => {
            Error::OutputBusy { dir: shown.clone(), holder }
        }
        e => ds(e),
    })?;
    let not_empty = |what: &str, hint: &str| Error::OutputNotEmpty {
        dir: shown.clone(),
        what: what.into(),
        hint: hint.into(),
    };
    let trusted = match classify(dir).map_err(ds)? {
        FolderState::Foreign(entry) => return Err(foreign(entry)),
        FolderState::Empty => Vec::new(),
        FolderState::Unrecorded if cfg.overwrite => {
            clear_dataset(dir).map_err(ds)?;
            Vec::new()
        }
        FolderState::Unrecorded => {
            return Err(not_empty(
                "part files no manifest.json records",
                "--resume cannot trust them; pass --overwrite to replace them",
            ));
        }
        FolderState::Dataset(_) if cfg.overwrite => {
            clear_dataset(dir).map_err(ds)?;
            Vec::new()
        }
        FolderState::Dataset(m) if cfg.resume => {
            if m.resume_identity.is_empty() {
                return Err(Error::ResumeMismatch {
                    dir: shown,
                    fields: "all (its manifest.json records no run identity)".into(),
                });
            }
            let diff = identity_diff(&m.resume_identity, identity);
            if !diff.is_empty() {
                return Err(Error::ResumeMismatch { dir: shown, fields: diff.join("; ") });
            }
            let moved = reconcile_parts(dir, &m.files).map_err(ds)?;
            if !moved.is_empty() {
                tracing::warn!(
                    "--resume: {} part(s) no manifest records were moved aside (renamed *{}): {}",
                    moved.len(),
                    agentgen_datasets::UNRECORDED_SUFFIX,
                    moved.join(", ")
                );
            }
            m.files
        }
        FolderState::Dataset(_) => {
            return Err(not_empty(
                "a dataset",
                "pass --resume to continue it or --overwrite to replace it",
            ));
        }
    };
    Ok(Taken { dir: dir.to_owned(), _lock: lock, trusted })
}
