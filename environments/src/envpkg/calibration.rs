//! Difficulty calibration of packages (`agentgen calibrate`) and the task selection it feeds
//! (`generate|rollout --envs PATH --difficulty-band LO,HI`).
//!
//! A calibration is per package hash and lives with the other runtime state about packages, in
//! `<folder of the package>/.agentgen/<sha256>/calibration.json` (interfaces.md: outside every
//! package, keyed by hash, so an edited package is uncalibrated again):
//!
//! ```json
//! {"format": "agentgen-calibration/1", "package": "bookshop@1", "sha256": "495d…",
//!  "policy": "chat", "model": "deepseek-reasoner", "samples": 8, "tasks_requested": 100,
//!  "created": "2026-11-30T12:00:00Z",
//!  "tasks": {"bookshop@1/0/0": {"passed": 8, "samples": 8, "difficulty": 1,
//!                               "policy_errors": 0, "pass_rate": 1.0}, "…": {}}}
//! ```
//!
//! `samples` in a task counts the episodes that ended without a policy (transport, HTTP, auth)
//! failure; its pass rate is `passed / samples` (a task with 0 samples has no rate and is never
//! selected). Several policies or models: `calibration.json` is always the most recent
//! calibration of that package hash, and the one `--difficulty-band` uses; every calibration
//! is also kept as `calibration-<policy>[-<model>].json` beside it (model sanitised to
//! `[A-Za-z0-9._-]`), so switching back is a copy.
//!
//! Selection ([`band_registry`]): for each package of the run, the calibrated tasks whose rate
//! lies in `[lo, hi]` and that the package still serves become its task list (a
//! [`BandedFamily`]); a package with none is dropped from the run; no calibration is an error
//! naming the package and the `calibrate` command; no task at all in the band is an error
//! naming the band. Built-in families are left alone (the run filters their groups).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::framework::{Availability, Family, FamilyInfo, Instance, PackageInfo, TaskRef};
use crate::{Registry, Result};

/// The `format` value of a calibration file this build reads and writes.
pub const FORMAT: &str = "agentgen-calibration/1";
/// The file name of a package's current calibration (in its state folder).
pub const FILE: &str = "calibration.json";

/// One task's calibrated outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskCalibration {
    /// Episodes that passed the verifier (among `samples`).
    pub passed: u32,
    /// Episodes that ended without a policy failure.
    pub samples: u32,
    /// The task's difficulty as its rows recorded it (0 when no episode ran).
    pub difficulty: u8,
    /// Episodes that ended in a policy failure (not counted in `samples`).
    #[serde(default)]
    pub policy_errors: u32,
    /// `passed / samples`, null without samples (written for readers; recomputed on read).
    #[serde(default)]
    pub pass_rate: Option<f64>,
}

impl TaskCalibration {
    /// `passed / samples`, or `None` without samples.
    pub fn rate(&self) -> Option<f64> {
        (self.samples > 0).then(|| f64::from(self.passed) / f64::from(self.samples))
    }
}

/// The calibration of one package hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Always [`FORMAT`].
    pub format: String,
    /// `name@version`.
    pub package: String,
    /// The package hash the calibration was made at (lowercase hex).
    pub sha256: String,
    /// The name of the policy that played the episodes (e.g. `chat`).
    pub policy: String,
    /// The policy's model, when it has one.
    pub model: Option<String>,
    /// K: rollouts asked per task.
    pub samples: u32,
    /// `calibrate --tasks N`: generated seeds 1..N (static tasks: all).
    #[serde(default)]
    pub tasks_requested: u64,
    /// When the calibration run finished (RFC 3339, UTC; empty in files without it).
    #[serde(default)]
    pub created: String,
    /// Each task's outcome, by task id.
    pub tasks: BTreeMap<String, TaskCalibration>,
}

/// Where the calibration of a package family lives.
pub fn calibration_path(info: &PackageInfo) -> Option<PathBuf> {
    super::runtime::state_dir(Path::new(&info.path), &info.sha256).map(|d| d.join(FILE))
}

/// The calibration of a package (None: never calibrated at this hash). `Err`: a file that is
/// there but unreadable or of another format or hash.
pub fn read(info: &PackageInfo) -> std::result::Result<Option<Calibration>, String> {
    let Some(path) = calibration_path(info) else { return Ok(None) };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let c: Calibration = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not a calibration file: {e}", path.display()))?;
    if c.format != FORMAT {
        return Err(format!("{}: format {:?}, expected {FORMAT:?}", path.display(), c.format));
    }
    if c.sha256 != info.sha256 {
        return Ok(None);
    }
    Ok(Some(c))
}

/// Write `cal` as the package's current calibration and as its per-policy copy. Returns the
/// path of `calibration.json`.
pub fn write(info: &PackageInfo, cal: &Calibration) -> std::result::Result<PathBuf, String> {
    let path = calibration_path(info)
        .ok_or_else(|| format!("{}: a package at the filesystem root", info.path))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut cal = cal.clone();
    for t in cal.tasks.values_mut() {
        t.pass_rate = t.rate();
    }
    let text = serde_json::to_string_pretty(&cal).map_err(|e| e.to_string())?;
    let slug: String = match &cal.model {
        Some(m) => format!("{}-{m}", cal.policy),
        None => cal.policy.clone(),
    }
    .chars()
    .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
    .collect();
    for target in [dir.join(format!("calibration-{slug}.json")), path.clone()] {
        let tmp = target.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, text.as_bytes())
            .and_then(|()| std::fs::rename(&tmp, &target))
            .map_err(|e| format!("{}: {e}", target.display()))?;
    }
    Ok(path)
}

/// A package family restricted to an explicit task list (its calibrated tasks in the band).
pub struct BandedFamily {
    inner: Arc<dyn Family>,
    tasks: Vec<TaskRef>,
}

impl BandedFamily {
    /// `inner` restricted to `tasks` (served in that order by [`Family::task_at`]).
    pub fn new(inner: Arc<dyn Family>, tasks: Vec<TaskRef>) -> BandedFamily {
        BandedFamily { inner, tasks }
    }
}

impl Family for BandedFamily {
    fn info(&self) -> FamilyInfo {
        self.inner.info()
    }
    fn availability(&self) -> Availability {
        self.inner.availability()
    }
    fn spawns_process(&self) -> bool {
        self.inner.spawns_process()
    }
    fn instance(&self, instance_seed: u64) -> Result<Arc<dyn Instance>> {
        self.inner.instance(instance_seed)
    }
    fn task_count(&self) -> Option<u64> {
        Some(self.tasks.len() as u64)
    }
    fn task_at(&self, i: u64) -> Option<TaskRef> {
        self.tasks.get(usize::try_from(i).ok()?).cloned()
    }
    fn package(&self) -> Option<PackageInfo> {
        self.inner.package()
    }
}

/// The tasks of `family` (a package) whose calibrated pass rate lies in `[lo, hi]`, in task id
/// order (instance, then index). `Err`: uncalibrated, or an unreadable calibration.
pub fn banded_tasks(
    family: &dyn Family,
    band: (f32, f32),
) -> std::result::Result<Vec<TaskRef>, String> {
    let Some(info) = family.package() else { return Ok(Vec::new()) };
    let cal = read(&info)?.ok_or_else(|| {
        format!(
            "--difficulty-band: package {} ({}) has no calibration for its hash {}; run \
             `agentgen calibrate --envs {} --samples K` first",
            info.label,
            info.path,
            &info.sha256[..info.sha256.len().min(12)],
            info.path
        )
    })?;
    let (lo, hi) = (f64::from(band.0), f64::from(band.1));
    let mut out: Vec<TaskRef> = cal
        .tasks
        .iter()
        .filter(|(_, t)| t.rate().is_some_and(|r| r >= lo - 1e-9 && r <= hi + 1e-9))
        .filter_map(|(id, _)| id.parse::<TaskRef>().ok())
        .filter(|r| {
            r.family == family.name()
                && r.version == family.version()
                && (r.instance_seed < family.instances())
        })
        .collect();
    out.sort_by_key(|r| (r.instance_seed, r.task_seed));
    Ok(out)
}

/// Replace every package of `names` in `registry` by its calibrated tasks in the band (see the
/// module docs). Returns the new registry and the selected names (packages left without a task
/// dropped).
pub fn band_registry(
    registry: &Registry,
    names: &[String],
    packages: &[String],
    band: (f32, f32),
) -> std::result::Result<(Registry, Vec<String>), String> {
    let mut families: Vec<Arc<dyn Family>> = Vec::new();
    let mut dropped: Vec<String> = Vec::new();
    let mut kept_any = false;
    for f in registry.families() {
        if f.package().is_some() && packages.iter().any(|p| p == f.name()) {
            let tasks = banded_tasks(f.as_ref(), band)?;
            if tasks.is_empty() {
                dropped.push(f.name().to_owned());
                continue;
            }
            kept_any = true;
            families.push(Arc::new(BandedFamily::new(Arc::clone(f), tasks)));
        } else {
            families.push(Arc::clone(f));
        }
    }
    if !kept_any {
        return Err(format!(
            "--difficulty-band {},{}: no calibrated task of {} lies in the band [{}, {}]",
            band.0,
            band.1,
            packages.join(", "),
            band.0,
            band.1
        ));
    }
    let names = names.iter().filter(|n| !dropped.contains(n)).cloned().collect();
    Ok((Registry::from_families(families), names))
}
