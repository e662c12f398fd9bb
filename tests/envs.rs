//! End-to-end tests of `agentgen envs`.

use super::util::run;
use serde_json::Value;

#[test]
fn envs_list_json_totals() {
    let out = run(&["envs", "list", "--json"], b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let fams = v["families"].as_array().expect("families");
    let avail: Vec<&Value> = fams.iter().filter(|f| f["available"] == true).collect();
    for f in fams {
        for k in ["name", "instances", "tasks", "available", "spawns_process"] {
            assert!(f.get(k).is_some(), "{k} missing in {f}");
        }
    }
    let instances: u64 = avail.iter().map(|f| f["instances"].as_u64().unwrap_or(0)).sum();
    let tasks: u64 = avail.iter().map(|f| f["tasks"].as_u64().unwrap_or(0)).sum();
    assert!(avail.len() >= 8, "only {} available families", avail.len());
    assert!(instances >= 2_000, "{instances} instances");
    assert!(tasks >= 100_000, "{tasks} tasks");
}

#[test]
fn envs_sample_prints_a_task_with_hidden_data() {
    let out = run(
        &["envs", "sample", "--family", "trip", "--instance-seed", "3", "--task-seed", "4"],
        b"",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["id"], "trip@2/3/4");
    assert!(v["tools"].as_array().is_some_and(|t| !t.is_empty()));
    assert!(v["reference"]["turns"].as_array().is_some_and(|t| !t.is_empty()));
    assert!(v.get("hidden_from_agent").is_some());
    let again = run(
        &["envs", "sample", "--family", "trip", "--instance-seed", "3", "--task-seed", "4"],
        b"",
    );
    assert_eq!(out.stdout, again.stdout, "sample is deterministic");
    let bad = run(&["envs", "sample", "--family", "nope"], b"");
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn envs_check_passes_and_counts() {
    let out = run(
        &[
            "envs",
            "check",
            "--family",
            "trip,retail,calendar,banking,vfs",
            "--tasks",
            "200",
            "--seed",
            "7",
            "--quiet",
        ],
        b"",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.trim_end().ends_with("200 passed, 0 failed"), "{stdout}");
}

/// `envs check PATH...` on envpkg packages: one JSON report per line, `--json FILE`, exit 0 iff
/// every package is admitted (interfaces.md, Wave 2).
#[test]
fn envs_check_packages_reports_json_lines_and_exit_codes() {
    let pkgs = super::util::fixtures().join("envpkg");
    let good = pkgs.join("bookshop");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("report.jsonl");
    let good_s = good.to_string_lossy().into_owned();
    let file_s = file.to_string_lossy().into_owned();
    let out = run(&["envs", "check", &good_s, "--json", &file_s], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("python3") && out.status.code() == Some(2) {
        eprintln!("!!! no usable python3: envs check refused as it must: {stderr}");
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["admitted"], true);
    assert_eq!(v["package"]["name"], "bookshop");
    assert_eq!(std::fs::read(&file).expect("--json FILE"), out.stdout);

    // A folder of packages: one object per line; one rejected package makes the exit 1.
    let broken = pkgs.join("broken").to_string_lossy().into_owned();
    let out = run(&["envs", "check", &good_s, &broken], b"");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 9);
    assert_eq!(lines.iter().filter(|r| r["admitted"] == true).count(), 1);

    // `envs list --envs`: every package with its hash; a wrong pin is refused.
    let all = pkgs.to_string_lossy().into_owned();
    let out = run(&["envs", "list", "--json", "--envs", &format!("{all},{broken}")], b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let rows = v["packages"].as_array().expect("packages");
    assert_eq!(rows.len(), 10);
    assert_eq!(
        rows[0]["sha256"],
        "495d9da0b21376c86ed8636b84ea2d0d2cbb459470c900d746664cd2cc0d0f60"
    );
    assert_eq!(rows[1]["generated_seeds"], 1_000_000);
    let out = run(&["envs", "list", "--envs", &format!("{good_s}@sha256:00")], b"");
    assert_eq!(out.status.code(), Some(2));

    // Not a package: usage error.
    let out = run(&["envs", "check", &dir.path().to_string_lossy()], b"");
    assert_eq!(out.status.code(), Some(2));
}

/// `envs new NAME` scaffolds a package that `envs check` admits as created.
#[test]
fn envs_new_scaffolds_an_admitted_package() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_string_lossy().into_owned();
    let out = run(&["envs", "new", "stock_room2", "--dir", &d], b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pkg = dir.path().join("stock_room2");
    let toml = std::fs::read_to_string(pkg.join("env.toml")).expect("env.toml");
    assert!(toml.contains("name = \"stock_room2\""));
    let out = run(&["envs", "check", &pkg.to_string_lossy()], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("python3") && out.status.code() == Some(2) {
        eprintln!("!!! no usable python3: envs check refused as it must: {stderr}");
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{}", String::from_utf8_lossy(&out.stdout));
    let v: Value = serde_json::from_slice(&out.stdout).expect("report");
    assert_eq!(v["summary"]["admitted"], 2);
    // Existing paths, bad and reserved names are refused.
    assert_eq!(run(&["envs", "new", "stock_room2", "--dir", &d], b"").status.code(), Some(2));
    assert_eq!(run(&["envs", "new", "Bad-Name", "--dir", &d], b"").status.code(), Some(2));
    assert_eq!(run(&["envs", "new", "trip", "--dir", &d], b"").status.code(), Some(2));
}

#[test]
fn envs_check_json_alone_prints_the_report_and_with_file_also_writes_it() {
    // `--json` with no value (last, or before another flag) means stdout only.
    for args in [
        vec!["envs", "check", "--family", "sql", "--tasks", "3", "--quiet", "--json"],
        vec!["envs", "check", "--family", "sql", "--tasks", "3", "--json", "--quiet"],
    ] {
        let out = run(&args, b"");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        assert_eq!(v["passed"], 3, "{v}");
        assert_eq!(v["failed"], 0, "{v}");
        assert!(v["sandbox"].is_object(), "{v}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.json");
    let file_s = file.to_str().unwrap();
    let out = run(
        &["envs", "check", "--family", "sql", "--tasks", "3", "--quiet", "--json", file_s],
        b"",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&file).unwrap(), out.stdout);
}
