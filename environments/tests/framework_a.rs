//! Framework-level tests over every registered family: soundness at scale, determinism, tool
//! specs, and robustness of `call` against bad arguments.

use agentgen_codec::ToolCall;
use agentgen_environments::{InstanceCache, Registry, State, check_tasks, toolspec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

/// Families that need no subprocess (the code interpreter has its own sandbox tests).
fn pure_families(reg: &Registry) -> Vec<&'static str> {
    reg.available().iter().filter(|f| !f.spawns_process()).map(|f| f.name()).collect()
}

#[test]
fn soundness_over_10000_tasks() {
    let reg = Registry::new();
    let names = pure_families(&reg);
    let sel = reg.select(&names).expect("selection");
    let failures = check_tasks(&reg, &sel, 20_261_128, 10_000, &|| {});
    for f in failures.iter().take(20) {
        eprintln!("FAIL {}: {:?}", f.task_id, f.reasons);
    }
    assert!(failures.is_empty(), "{} of 10000 tasks failed", failures.len());
}

#[test]
fn same_seeds_give_byte_identical_tasks() {
    let reg = Registry::new();
    for name in pure_families(&reg) {
        let fam = reg.get(name).expect("family");
        for (i, t) in [(0u64, 0u64), (7, 3), (fam.instances() - 1, fam.tasks_per_instance() - 1)] {
            let a = fam.instance(i).and_then(|x| x.task(t)).expect("task");
            let b = fam.instance(i).and_then(|x| x.task(t)).expect("task");
            let (ja, jb) = (serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
            assert_eq!(ja, jb, "{name} {i}/{t}");
            assert_eq!(a.id, format!("{name}@{}/{i}/{t}", fam.version()));
            assert!((1..=5).contains(&a.difficulty));
        }
        // Different seeds give different tasks.
        let x = fam.instance(1).and_then(|x| x.task(1)).expect("task");
        let y = fam.instance(2).and_then(|x| x.task(1)).expect("task");
        assert_ne!(
            x.user_prompt.clone() + &x.system_prompt,
            y.user_prompt.clone() + &y.system_prompt,
            "{name}"
        );
    }
}

#[test]
fn every_tool_spec_validates() {
    let problems = toolspec::validate_all();
    assert!(problems.is_empty(), "{problems:?}");
    let files = toolspec::embedded_files();
    assert!(files.len() >= 40, "only {} spec files embedded", files.len());
    let reg = Registry::new();
    for f in reg.families() {
        let set = toolspec::family_tools(f.name()).expect("family has specs");
        assert!(set.tools().len() >= 3, "{}", f.name());
    }
}

fn random_json(r: &mut ChaCha8Rng, depth: usize) -> Value {
    match r.random_range(0..if depth > 2 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(r.random_bool(0.5)),
        2 => json!(r.random_range(-1_000_000i64..1_000_000)),
        3 => json!(r.random::<f64>() * 1e6 - 5e5),
        4 => json!(
            ["", "x", "ACC-1", "2025-01-01", "\u{0}\u{ffff}", "' OR 1=1 --", "../../etc/passwd"]
                [r.random_range(0..7)]
        ),
        5 => Value::Array((0..r.random_range(0..4)).map(|_| random_json(r, depth + 1)).collect()),
        _ => {
            let keys = [
                "city",
                "days",
                "account_id",
                "amount",
                "path",
                "order_id",
                "id",
                "query",
                "answer",
                "x",
            ];
            Value::Object(
                (0..r.random_range(0..4))
                    .map(|_| {
                        (keys[r.random_range(0..keys.len())].to_owned(), random_json(r, depth + 1))
                    })
                    .collect(),
            )
        }
    }
}

#[test]
fn bad_arguments_give_error_observations_never_panics() {
    let reg = Registry::new();
    let cache = InstanceCache::new(16);
    let mut r = ChaCha8Rng::seed_from_u64(99);
    for name in pure_families(&reg) {
        let fam = reg.get(name).expect("family");
        let inst = cache.get_or_build(fam.as_ref(), 3).expect("instance");
        let task = inst.task(5).expect("task");
        let tools: Vec<String> = task
            .tools
            .iter()
            .filter_map(|t| t["function"]["name"].as_str().map(str::to_owned))
            .collect();
        let mut state = task.initial_state.clone();
        // Fixed malformed cases.
        for (tool, args) in [
            ("no_such_tool", "{}"),
            (tools[0].as_str(), "{"),
            (tools[0].as_str(), "[1,2]"),
            (tools[0].as_str(), "\"x\""),
            (tools[0].as_str(), "{\"unexpected\": 1}"),
        ] {
            let res = inst.call(&mut state, &ToolCall::new(tool, args));
            assert!(res.is_error, "{name} {tool} {args}: {}", res.content);
            assert!(!res.state_changed);
            assert!(serde_json::from_str::<Value>(&res.content).is_ok(), "{}", res.content);
        }
        // Random JSON arguments: must not panic; errors must not change state.
        for _ in 0..300 {
            let tool = &tools[r.random_range(0..tools.len())];
            let args = random_json(&mut r, 0).to_string();
            let before: State = state.clone();
            let res = inst.call(&mut state, &ToolCall::new(tool.clone(), args));
            if res.is_error {
                assert_eq!(state, before, "{name} {tool}: error changed state");
            }
        }
    }
}
