//! `agentgen calibrate` end to end with the reference policy (every task passes: rate 1.0),
//! then `generate|rollout --envs --difficulty-band` on the calibrated packages: the rows are
//! only of calibrated tasks and `validate` passes them; an uncalibrated package and an empty
//! band are one-line errors (exit 2). The scripted-subset calibration with exact pass rates is
//! `pipeline/tests/calibrate.rs`.

use std::path::Path;

use serde_json::Value;

use super::util::{fixtures, rows_by_id, run, stderr};

#[test]
fn reference_calibration_is_all_ones_and_the_band_serves_calibrated_tasks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pkgs = dir.path().join("pkgs");
    for name in ["bookshop", "thermostat"] {
        agentgen_testdata::copy_dir(&fixtures().join("envpkg").join(name), &pkgs.join(name));
    }
    let p = pkgs.to_str().expect("utf-8");
    let o = run(
        &[
            "calibrate",
            "--envs",
            p,
            "--samples",
            "3",
            "--tasks",
            "4",
            "--policy",
            "reference",
            "--quiet",
            "--json",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let summary: Value = serde_json::from_slice(&o.stdout).expect("summary json");
    let packages = summary["packages"].as_array().expect("packages");
    assert_eq!(packages.len(), 2);
    let mut calibrated = Vec::new();
    for p in packages {
        assert_eq!(p["never_solved"], serde_json::json!([]), "{p}");
        let file = p["calibration"].as_str().expect("written");
        assert!(Path::new(file).starts_with(pkgs.join(".agentgen")), "{file}");
        let cal: Value = serde_json::from_slice(&std::fs::read(file).expect("read")).expect("json");
        assert_eq!(cal["format"], "agentgen-calibration/1");
        assert_eq!(cal["policy"], "reference");
        assert_eq!(cal["samples"], 3);
        assert_eq!(cal["sha256"], p["sha256"]);
        // The file's folder is the package hash (runtime state keyed by hash).
        assert!(file.contains(p["sha256"].as_str().expect("sha")), "{file}");
        let tasks = cal["tasks"].as_object().expect("tasks");
        for (id, t) in tasks {
            assert_eq!((t["passed"].as_u64(), t["samples"].as_u64()), (Some(3), Some(3)), "{id}");
            assert_eq!(t["pass_rate"], 1.0, "{id}");
            calibrated.push(id.clone());
        }
        assert_eq!(p["always_solved"].as_array().map(Vec::len), Some(tasks.len()));
    }
    // bookshop: its 5 static tasks; thermostat: generated seeds 1..=4 (--tasks 4).
    calibrated.sort();
    assert_eq!(calibrated.len(), 9, "{calibrated:?}");
    assert!(calibrated.contains(&"thermostat@1/4/0".to_owned()));
    assert!(!calibrated.iter().any(|t| t.starts_with("thermostat@1/5/")));
    assert!(summary["packages"][0]["by_difficulty"].as_object().is_some_and(|m| !m.is_empty()));

    // generate with the band: only calibrated tasks; validate passes the rows.
    let out = dir.path().join("ds");
    let o = run(
        &[
            "generate",
            "--envs",
            p,
            "--difficulty-band",
            "0.9,1",
            "--tasks",
            "20",
            "--quiet",
            "--out",
            out.to_str().expect("utf-8"),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rows = rows_by_id(&out);
    assert!(!rows.is_empty());
    for r in rows.values() {
        assert!(calibrated.contains(&r.task_id), "{} was not calibrated", r.task_id);
    }
    let v = run(&["validate", out.to_str().expect("utf-8")], b"");
    assert_eq!(v.status.code(), Some(0), "{}", stderr(&v));

    // rollout takes the band too.
    let ro = dir.path().join("ro");
    let o = run(
        &[
            "rollout",
            "--policy",
            "reference",
            "--envs",
            p,
            "--difficulty-band",
            "1,1",
            "--tasks",
            "3",
            "--samples-per-task",
            "2",
            "--quiet",
            "--out",
            ro.to_str().expect("utf-8"),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(rows_by_id(&ro).values().all(|r| calibrated.contains(&r.task_id)));

    // Nothing in the band: one line naming the band, exit 2.
    let o = run(
        &[
            "generate",
            "--envs",
            p,
            "--difficulty-band",
            "0,0.5",
            "--tasks",
            "2",
            "--quiet",
            "--out",
            dir.path().join("none").to_str().expect("utf-8"),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("0,0.5"), "{err}");
}

#[test]
fn an_uncalibrated_package_names_the_calibrate_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pkg = dir.path().join("pkgs").join("bookshop");
    agentgen_testdata::copy_dir(&fixtures().join("envpkg").join("bookshop"), &pkg);
    let o = run(
        &[
            "generate",
            "--envs",
            pkg.to_str().expect("utf-8"),
            "--difficulty-band",
            "0,1",
            "--tasks",
            "2",
            "--quiet",
            "--out",
            dir.path().join("ds").to_str().expect("utf-8"),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("bookshop@1") && err.contains("agentgen calibrate --envs"), "{err}");
}
