//! Synthesis admission beyond `envs check`: a task answer written into the package code is
//! refused, an admitted package lands in `DIR/<name>-<hash12>/` with its provenance, the same
//! tools again are a near duplicate, and a package whose name is taken gets a fresh name (and
//! is still admitted under it).

use std::path::Path;

use agentgen_environments::envpkg::{PythonRuntime, load_package};
use agentgen_pipeline::synth::admit::{Admission, AdmitContext, admit};
use serde_json::json;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/envpkg").join(name)
}

#[test]
fn hardcoded_answers_near_duplicates_and_renames() {
    let rt = PythonRuntime::shared().expect("python3 >= 3.11");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let reserved = vec!["retail".to_owned()];
    let ctx = AdmitContext { out: &out, rt, reserved: &reserved, seeds_k: 4 };
    let prov = json!({"model": "m", "category": "c"});

    // A static task's answer pasted into env.py.
    let cheat = dir.path().join("cheat");
    agentgen_testdata::copy_dir(&fixture("bookshop"), &cheat);
    let first = std::fs::read_to_string(cheat.join("tasks.jsonl")).expect("tasks");
    let task: serde_json::Value =
        serde_json::from_str(first.lines().next().expect("line")).expect("json");
    let answer = task["turns"][0]["answer"].as_str().expect("answer").to_owned();
    let mut code = std::fs::read_to_string(cheat.join("env.py")).expect("env.py");
    code.push_str(&format!("\nANSWER = {answer:?}\n"));
    std::fs::write(cheat.join("env.py"), code).expect("write");
    match admit(&cheat, &dir.path().join("stage1"), &ctx, &prov) {
        Admission::Refused { reason, detail } => {
            assert_eq!(reason, "hardcoded_answer", "{detail}");
        }
        other => panic!("admitted a hard-coded answer: {other:?}"),
    }

    // The clean package is admitted into DIR/<name>-<hash12>/ with provenance.json.
    let clean = dir.path().join("clean");
    agentgen_testdata::copy_dir(&fixture("bookshop"), &clean);
    let Admission::Admitted { dir: pkg, name, sha256 } =
        admit(&clean, &dir.path().join("stage2"), &ctx, &prov)
    else {
        panic!("bookshop was not admitted");
    };
    assert_eq!(name, "bookshop");
    assert_eq!(pkg, out.join(format!("bookshop-{}", &sha256[..12])));
    let loaded = load_package(&pkg, &[], &rt.stdlib).expect("load");
    assert_eq!(loaded.sha256, sha256);
    assert!(pkg.join("provenance.json").is_file());

    // The same tools with the entities renamed (descriptions, enum values): near duplicate.
    let renamed = dir.path().join("renamed");
    agentgen_testdata::copy_dir(&fixture("bookshop"), &renamed);
    fn reword(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, x) in o.iter_mut() {
                    match (k.as_str(), x.as_str()) {
                        ("description", Some(d)) => *x = json!(d.replace("book", "volume")),
                        _ => reword(x),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(reword),
            _ => {}
        }
    }
    let mut tools: serde_json::Value =
        serde_json::from_slice(&std::fs::read(renamed.join("tools.json")).expect("tools"))
            .expect("json");
    let before = tools.clone();
    reword(&mut tools);
    assert_ne!(tools, before);
    std::fs::write(renamed.join("tools.json"), tools.to_string()).expect("write");
    match admit(&renamed, &dir.path().join("stage3"), &ctx, &prov) {
        Admission::Refused { reason, .. } => assert_eq!(reason, "near_duplicate"),
        other => panic!("a near duplicate was admitted: {other:?}"),
    }

    // Other tools under a taken name: admitted as bookshop_2.
    let other = dir.path().join("other");
    agentgen_testdata::copy_dir(&fixture("thermostat"), &other);
    let toml = std::fs::read_to_string(other.join("env.toml")).expect("toml");
    std::fs::write(
        other.join("env.toml"),
        toml.replace("name = \"thermostat\"", "name = \"bookshop\""),
    )
    .expect("write");
    let Admission::Admitted { dir: pkg2, name, .. } =
        admit(&other, &dir.path().join("stage4"), &ctx, &prov)
    else {
        panic!("the renamed thermostat was not admitted");
    };
    assert_eq!(name, "bookshop_2");
    let loaded = load_package(&pkg2, &[], &rt.stdlib).expect("load");
    assert_eq!(loaded.manifest.name, "bookshop_2");
}
