//! `agentgen calibrate`: K rollouts of every served task of the `--envs` packages with one
//! policy (the pipeline run itself, with `task_list` = those tasks and `samples_per_task` =
//! K), then per-task pass counts written next to each package (format and location:
//! [`agentgen_environments::envpkg::calibration`]) and a summary by package and difficulty,
//! listing the tasks never solved (0/K) and always solved (K/K).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use agentgen_datasets::{SampleRow, Verdict};
use agentgen_environments::envpkg::calibration::{self, Calibration, TaskCalibration};
use agentgen_environments::{PackageInfo, TaskRef};
use serde_json::{Value, json};

use crate::run::{RunConfig, RunReport, run_registry, run_with_sink};
use crate::{Error, Policy, Result};

/// One package's calibration and where it was written.
#[derive(Debug, Clone)]
pub struct PackageCalibration {
    /// The package calibrated.
    pub info: PackageInfo,
    /// Its pass rates.
    pub calibration: Calibration,
    /// None when the run did not finish (nothing written).
    pub path: Option<PathBuf>,
}

/// What `calibrate` did.
pub struct CalibrateReport {
    /// The calibration run.
    pub run: RunReport,
    /// One entry per package, in run order.
    pub packages: Vec<PackageCalibration>,
}

/// The task list calibration plays: every served static task of each package, and generated
/// seeds `1..=min(tasks, seeds)`; and the packages by name.
pub fn calibration_tasks(
    cfg: &RunConfig,
    tasks: u64,
) -> Result<(Vec<TaskRef>, BTreeMap<String, PackageInfo>)> {
    let (registry, names) = run_registry(cfg)?;
    let mut list = Vec::new();
    let mut infos = BTreeMap::new();
    for f in registry.families() {
        let Some(info) = f.package().filter(|_| names.iter().any(|n| n == f.name())) else {
            continue;
        };
        infos.insert(f.name().to_owned(), info);
        let mut i = 0;
        while let Some(r) = f.task_at(i).filter(|r| r.instance_seed == 0) {
            list.push(r);
            i += 1;
        }
        let seeds = f.instances().saturating_sub(1).min(tasks);
        list.extend((1..=seeds).map(|s| TaskRef {
            family: f.name().to_owned(),
            version: f.version(),
            instance_seed: s,
            task_seed: 0,
        }));
    }
    Ok((list, infos))
}

#[derive(Debug, Clone)]
struct Episode {
    task_id: String,
    sha256: Option<String>,
    passed: bool,
    difficulty: u8,
    policy_error: bool,
}

/// Run the calibration: `cfg.envs` names the packages (built-in families are not calibrated),
/// `cfg.samples_per_task` is K, `tasks` bounds generated seeds. The calibration files are
/// written only when the run finished (not interrupted, not stopped by a limit).
pub async fn calibrate<P, S>(
    mut cfg: RunConfig,
    tasks: u64,
    policy: P,
    shutdown: S,
) -> Result<CalibrateReport>
where
    P: Policy,
    S: Future<Output = ()> + Send,
{
    if cfg.envs.is_empty() {
        return Err(Error::Config { message: "calibrate needs --envs PATH".into() });
    }
    cfg.families.clear();
    cfg.difficulty_band = None;
    // Every sample counts, duplicates included.
    cfg.dedup = false;
    let (list, infos) = calibration_tasks(&cfg, tasks)?;
    if list.is_empty() {
        return Err(Error::Config { message: "calibrate: the packages serve no task".into() });
    }
    let policy_name = policy.name().to_owned();
    let model = policy.model();
    let k = cfg.samples_per_task;
    cfg.task_list = Some(list.clone());
    let seen: Arc<Mutex<Vec<Episode>>> = Arc::default();
    let sink_seen = Arc::clone(&seen);
    let sink = Box::new(move |row: &SampleRow| {
        if row.turn_index != 0 {
            return;
        }
        let policy_error =
            matches!(&row.verdict, Verdict::Rejected { code, .. } if code.starts_with("policy."));
        if let Ok(mut v) = sink_seen.lock() {
            v.push(Episode {
                task_id: row.task_id.clone(),
                sha256: row.env_package_sha256.clone(),
                passed: row.passed,
                difficulty: row.difficulty,
                policy_error,
            });
        }
    });
    let run = run_with_sink(cfg, policy, shutdown, Some(sink)).await?;
    let episodes = seen.lock().map(|v| v.clone()).unwrap_or_default();
    let finished = !run.interrupted && run.stopped.is_none();
    let created = crate::run::now_rfc3339();
    let mut packages = Vec::new();
    for (name, info) in &infos {
        let mut tasks_map: BTreeMap<String, TaskCalibration> = BTreeMap::new();
        for r in list.iter().filter(|r| &r.family == name) {
            tasks_map.insert(
                r.to_string(),
                TaskCalibration {
                    passed: 0,
                    samples: 0,
                    difficulty: 0,
                    policy_errors: 0,
                    pass_rate: None,
                },
            );
        }
        for e in &episodes {
            if e.sha256.as_deref() != Some(info.sha256.as_str()) {
                continue;
            }
            if let Some(t) = tasks_map.get_mut(&e.task_id) {
                t.difficulty = e.difficulty;
                if e.policy_error {
                    t.policy_errors += 1;
                } else {
                    t.samples += 1;
                    t.passed += u32::from(e.passed);
                }
            }
        }
        for t in tasks_map.values_mut() {
            t.pass_rate = t.rate();
        }
        let cal = Calibration {
            format: calibration::FORMAT.to_owned(),
            package: info.label.clone(),
            sha256: info.sha256.clone(),
            policy: policy_name.clone(),
            model: model.clone(),
            samples: k,
            tasks_requested: tasks,
            created: created.clone(),
            tasks: tasks_map,
        };
        let path = if finished {
            Some(calibration::write(info, &cal).map_err(|message| Error::Config { message })?)
        } else {
            None
        };
        packages.push(PackageCalibration { info: info.clone(), calibration: cal, path });
    }
    Ok(CalibrateReport { run, packages })
}

/// The summary as JSON: per package, tasks and mean pass rate by difficulty, and the tasks
/// never solved (0/K) and always solved (K/K).
pub fn summary_json(packages: &[PackageCalibration]) -> Value {
    let list: Vec<Value> = packages
        .iter()
        .map(|p| {
            let c = &p.calibration;
            let mut by_diff: BTreeMap<u8, (u64, f64, u64)> = BTreeMap::new();
            let (mut never, mut always) = (Vec::new(), Vec::new());
            for (id, t) in &c.tasks {
                let e = by_diff.entry(t.difficulty).or_default();
                e.0 += 1;
                if let Some(r) = t.rate() {
                    e.1 += r;
                    e.2 += 1;
                }
                if t.samples > 0 && t.passed == 0 {
                    never.push(id.clone());
                }
                if t.samples > 0 && t.passed == t.samples {
                    always.push(id.clone());
                }
            }
            let by_difficulty: serde_json::Map<String, Value> = by_diff
                .iter()
                .map(|(d, (n, sum, rated))| {
                    let mean = (*rated > 0).then(|| sum / *rated as f64);
                    (d.to_string(), json!({"tasks": n, "mean_pass_rate": mean}))
                })
                .collect();
            json!({
                "package": c.package, "sha256": c.sha256, "policy": c.policy, "model": c.model,
                "samples": c.samples, "tasks": c.tasks.len(),
                "calibration": p.path.as_ref().map(|p| p.display().to_string()),
                "by_difficulty": by_difficulty,
                "never_solved": never, "always_solved": always,
            })
        })
        .collect();
    json!({"format": "agentgen-calibrate-summary/1", "packages": list})
}

/// The summary as text for stderr.
pub fn summary_text(summary: &Value) -> String {
    let mut out = String::new();
    for p in summary["packages"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{} ({} tasks, K = {}, policy {}{}):\n",
            p["package"].as_str().unwrap_or("?"),
            p["tasks"],
            p["samples"],
            p["policy"].as_str().unwrap_or("?"),
            p["model"].as_str().map(|m| format!(" / {m}")).unwrap_or_default()
        ));
        for (d, v) in p["by_difficulty"].as_object().into_iter().flatten() {
            let mean = v["mean_pass_rate"].as_f64().map_or("-".into(), |m| format!("{m:.3}"));
            out.push_str(&format!(
                "  difficulty {d}: {} tasks, mean pass rate {mean}\n",
                v["tasks"]
            ));
        }
        for (key, label) in
            [("never_solved", "never solved (0/K)"), ("always_solved", "always solved (K/K)")]
        {
            let ids: Vec<&str> =
                p[key].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            out.push_str(&format!("  {label}: {}", ids.len()));
            if !ids.is_empty() {
                out.push_str(&format!(": {}", ids.join(" ")));
            }
            out.push('\n');
        }
        if let Some(path) = p["calibration"].as_str() {
            out.push_str(&format!("  written to {path}\n"));
        } else {
            out.push_str("  not written (the run did not finish)\n");
        }
    }
    out
}
