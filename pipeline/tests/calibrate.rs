//! `calibrate` with a scripted policy that solves a known subset of bookshop's tasks: the pass
//! counts written next to the package are exactly the scripted ones, the summary lists the
//! never- and always-solved tasks, and `--difficulty-band` then serves exactly the tasks whose
//! calibrated rate lies in the band (package rows are not filtered again by their group).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use agentgen_environments::envpkg::calibration;
use agentgen_pipeline::calibrate::{calibrate, summary_json};
use agentgen_pipeline::run::run_registry;
use agentgen_pipeline::{
    Completion, Policy, PromptRequest, ReferencePlan, ReferencePolicy, RunConfig, SamplingParams,
};

fn bookshop(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/envpkg/bookshop");
    let pkgs = dir.join("pkgs");
    agentgen_testdata::copy_dir(&src, &pkgs.join("bookshop"));
    pkgs
}

/// Plays the reference for the first `n` episodes of a task it recognises by a phrase of the
/// task's first user message, and answers "I cannot help with that." without a tool call
/// otherwise (which every admitted task's verifier rejects: its answer-only probe fails).
struct Scripted {
    /// (phrase, episodes to solve).
    solve: Vec<(&'static str, usize)>,
    /// phrase -> episode sample ids chosen to be solved.
    chosen: Mutex<HashMap<&'static str, Vec<String>>>,
}

impl Scripted {
    fn solves(&self, p: &PromptRequest) -> bool {
        let Some((phrase, n)) = self.solve.iter().find(|(ph, _)| p.text.contains(ph)) else {
            return false;
        };
        let mut chosen = self.chosen.lock().expect("lock");
        let list = chosen.entry(phrase).or_default();
        if list.contains(&p.sample_id) {
            return true;
        }
        if p.turn == 0 && p.user_turn == 0 && list.len() < *n {
            list.push(p.sample_id.clone());
            return true;
        }
        false
    }
}

impl Policy for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }
    fn model(&self) -> Option<String> {
        Some("subset-solver".into())
    }
    fn complete(
        &self,
        prompt: &PromptRequest,
        _params: &SamplingParams,
    ) -> impl std::future::Future<Output = agentgen_pipeline::Result<Completion>> + Send {
        let out = if self.solves(prompt) {
            ReferencePolicy::completion(prompt)
        } else {
            let mut give_up = prompt.clone();
            give_up.turn = 0;
            give_up.reference = Some(Arc::new(ReferencePlan {
                turns: Vec::new(),
                final_reasoning: "I will not look anything up.".into(),
                final_answer: "I cannot help with that.".into(),
            }));
            ReferencePolicy::completion(&give_up)
        };
        std::future::ready(out)
    }
}

fn config(dir: &Path, pkgs: &Path, out: &str, k: u32) -> RunConfig {
    RunConfig {
        out: Some(dir.join(out)),
        envs: vec![pkgs.display().to_string()],
        samples_per_task: k,
        concurrency: 4,
        progress: false,
        ..RunConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_subset_gives_exact_pass_rates_and_band_selects_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pkgs = bookshop(dir.path());
    let policy = Scripted {
        solve: vec![("Left Hand of Darkness", 4), ("refund my order O-1001", 2)],
        chosen: Mutex::default(),
    };
    let cfg = config(dir.path(), &pkgs, "cal", 4);
    let report = calibrate(cfg, 100, policy, std::future::pending()).await.expect("calibrate");
    assert!(!report.run.interrupted && report.run.stopped.is_none());
    assert_eq!(report.packages.len(), 1);
    let written = report.packages[0].path.clone().expect("calibration written");
    assert!(written.starts_with(pkgs.join(".agentgen")), "{}", written.display());
    assert!(written.ends_with("calibration.json"));

    // The file, read back through the runtime's reader.
    let cal: calibration::Calibration =
        serde_json::from_slice(&std::fs::read(&written).expect("read")).expect("parse");
    assert_eq!(cal.format, "agentgen-calibration/1");
    assert_eq!(
        (cal.policy.as_str(), cal.model.as_deref(), cal.samples),
        ("scripted", Some("subset-solver"), 4)
    );
    let got: BTreeMap<&str, (u32, u32)> =
        cal.tasks.iter().map(|(id, t)| (id.as_str(), (t.passed, t.samples))).collect();
    let want: BTreeMap<&str, (u32, u32)> = [
        ("bookshop@1/0/0", (4, 4)),
        ("bookshop@1/0/1", (0, 4)),
        ("bookshop@1/0/2", (2, 4)),
        ("bookshop@1/0/3", (0, 4)),
        ("bookshop@1/0/4", (0, 4)),
    ]
    .into();
    assert_eq!(got, want);
    assert_eq!(cal.tasks["bookshop@1/0/2"].pass_rate, Some(0.5));
    assert_eq!(cal.tasks["bookshop@1/0/4"].difficulty, 4);

    let summary = summary_json(&report.packages);
    let p = &summary["packages"][0];
    assert_eq!(p["always_solved"], serde_json::json!(["bookshop@1/0/0"]));
    assert_eq!(
        p["never_solved"],
        serde_json::json!(["bookshop@1/0/1", "bookshop@1/0/3", "bookshop@1/0/4"])
    );
    assert_eq!(p["by_difficulty"]["3"]["mean_pass_rate"], serde_json::json!(0.25));

    // Band selection: the served task list is exactly the calibrated tasks in the band.
    let served = |band: (f32, f32)| -> Result<BTreeSet<String>, String> {
        let mut cfg = config(dir.path(), &pkgs, "unused", 1);
        cfg.difficulty_band = Some(band);
        let (registry, names) = run_registry(&cfg).map_err(|e| e.to_string())?;
        assert_eq!(names, vec!["bookshop".to_owned()]);
        let f = registry.get("bookshop").expect("bookshop");
        let n = f.task_count().expect("finite");
        Ok((0..n).filter_map(|i| f.task_at(i)).map(|r| r.to_string()).collect())
    };
    let set = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
    assert_eq!(served((0.25, 0.75)), Ok(set(&["bookshop@1/0/2"])));
    assert_eq!(served((1.0, 1.0)), Ok(set(&["bookshop@1/0/0"])));
    assert_eq!(served((0.5, 1.0)), Ok(set(&["bookshop@1/0/0", "bookshop@1/0/2"])));
    assert_eq!(
        served((0.0, 0.0)),
        Ok(set(&["bookshop@1/0/1", "bookshop@1/0/3", "bookshop@1/0/4"]))
    );
    let empty = served((0.6, 0.9)).expect_err("empty band");
    assert!(empty.contains("0.6,0.9") && empty.contains("bookshop"), "{empty}");

    // A run with the band plays only those tasks, and keeps their rows even though the
    // scripted policy fails them in this run (the calibration decided, not the group).
    let mut cfg = config(dir.path(), &pkgs, "banded", 1);
    cfg.tasks = 6;
    cfg.difficulty_band = Some((0.0, 0.0));
    cfg.dedup = false;
    let policy = Scripted { solve: Vec::new(), chosen: Mutex::default() };
    let rows: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let sink_rows = Arc::clone(&rows);
    let sink = Box::new(move |r: &agentgen_datasets::SampleRow| {
        sink_rows
            .lock()
            .expect("lock")
            .push((r.task_id.clone(), r.verdict.code().unwrap_or("").to_owned()));
    });
    agentgen_pipeline::run_with_sink(cfg, policy, std::future::pending(), Some(sink))
        .await
        .expect("run");
    let rows = rows.lock().expect("lock").clone();
    assert!(!rows.is_empty());
    for (task, code) in &rows {
        assert!(
            ["bookshop@1/0/1", "bookshop@1/0/3", "bookshop@1/0/4"].contains(&task.as_str()),
            "{task}"
        );
        assert_ne!(code, "filter.difficulty_band", "{task}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncalibrated_package_is_a_one_line_error_naming_calibrate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pkgs = bookshop(dir.path());
    let mut cfg = config(dir.path(), &pkgs, "x", 1);
    cfg.difficulty_band = Some((0.0, 1.0));
    let err = run_registry(&cfg).err().expect("uncalibrated").to_string();
    assert!(err.contains("bookshop@1") && err.contains("agentgen calibrate --envs"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}
