//! Family `logistics`: soundness over a few hundred tasks, determinism, distinct tasks, booking
//! rules enforced by the tool, the verifier rejects valid-but-costlier plans and collateral edits.

use std::collections::BTreeSet;

use agentgen_codec::ToolCall;
use agentgen_environments::families::logistics::LogisticsFamily;
use agentgen_environments::{Family, run_reference, soundness};
use serde_json::{Value, json};

mod common;

#[test]
fn soundness_over_300_tasks() {
    common::soundness_sweep(&LogisticsFamily, 15, 20, |i| i * 71, |i, t| t * 43 + i);
}

#[test]
fn same_seeds_give_identical_tasks_and_all_seeds_generate() {
    let a = LogisticsFamily.instance(33).unwrap().task(99).unwrap();
    let b = LogisticsFamily.instance(33).unwrap().task(99).unwrap();
    assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
    let instance = LogisticsFamily.instance(6).unwrap();
    let mut keys = BTreeSet::new();
    for t in 0..LogisticsFamily.tasks_per_instance() {
        let task = instance.task(t).unwrap();
        let key =
            format!("{} {}", task.user_prompt, serde_json::to_string(&task.initial_state).unwrap());
        assert!(keys.insert(key), "duplicate task {t} (difficulty {})", task.difficulty);
    }
}

#[test]
fn a_costlier_valid_plan_and_collateral_edits_fail() {
    let instance = LogisticsFamily.instance(12).unwrap();
    let mut checked = 0;
    for t in (0..200u64).step_by(5) {
        // difficulty-1 tasks: one shipment.
        let task = instance.task(t).unwrap();
        let (state, transcript) = run_reference(instance.as_ref(), &task);
        assert!(instance.verify(&task, &state, &transcript).passed);
        let target = task.hidden["targets"][0].as_str().unwrap().to_owned();
        let best_route = state.0["bookings"][&target].as_str().unwrap().to_owned();
        // Try every other route of the lane that the tool accepts: each must fail the verifier.
        let get = |name: &str, args: Value, s: &mut agentgen_environments::State| {
            instance.call(s, &ToolCall::new(name, args.to_string()))
        };
        let mut s = task.initial_state.clone();
        let sh: Value = serde_json::from_str(
            &get("get_shipment", json!({ "shipment_id": target }), &mut s).content,
        )
        .unwrap();
        let routes: Value = serde_json::from_str(
            &get(
                "find_routes",
                json!({ "origin": sh["origin"], "destination": sh["destination"] }),
                &mut s,
            )
            .content,
        )
        .unwrap();
        for r in routes["routes"].as_array().unwrap() {
            let rid = r["route_id"].as_str().unwrap();
            if rid == best_route {
                continue;
            }
            let mut s2 = task.initial_state.clone();
            let res =
                get("book_shipment", json!({ "shipment_id": target, "route_id": rid }), &mut s2);
            if !res.is_error {
                assert!(
                    !instance.verify(&task, &s2, &[]).passed,
                    "{}: route {rid} accepted",
                    task.id
                );
                checked += 1;
            }
        }
        // Collateral: the reference plus cancelling someone else's booking fails.
        let mut s3 = state.clone();
        let other = s3.0["bookings"].as_object().unwrap().keys().find(|k| **k != target).cloned();
        if let Some(o) = other {
            let res = get("cancel_booking", json!({ "shipment_id": o }), &mut s3);
            assert!(!res.is_error);
            assert!(!instance.verify(&task, &s3, &[]).passed);
        }
    }
    assert!(checked > 10, "only {checked} alternative plans checked");
}

#[test]
fn booking_rules_are_enforced_by_the_tool() {
    let instance = LogisticsFamily.instance(1).unwrap();
    let task = instance.task(2).unwrap(); // difficulty 3: a suspended route
    assert_eq!(task.difficulty, 3);
    let suspended = task.initial_state.0["suspended_routes"][0].as_str().unwrap().to_owned();
    let target = task.hidden["targets"][0].as_str().unwrap().to_owned();
    let mut s = task.initial_state.clone();
    let r = instance.call(
        &mut s,
        &ToolCall::new(
            "book_shipment",
            json!({ "shipment_id": target, "route_id": suspended }).to_string(),
        ),
    );
    assert!(r.is_error && r.content.contains("already booked"), "{}", r.content);
    let r = instance.call(
        &mut s,
        &ToolCall::new("cancel_booking", json!({ "shipment_id": target }).to_string()),
    );
    assert!(!r.is_error && r.state_changed);
    let r = instance.call(
        &mut s,
        &ToolCall::new(
            "book_shipment",
            json!({ "shipment_id": target, "route_id": suspended }).to_string(),
        ),
    );
    assert!(r.is_error && r.content.contains("suspended"), "{}", r.content);
    for (name, args) in [
        ("book_shipment", r#"{"shipment_id": "SH-0", "route_id": "R-0"}"#),
        ("cancel_booking", r#"{"shipment_id": "SH-0"}"#),
        ("get_carrier", r#"{"carrier_id": 3}"#),
        ("list_shipments", r#"{"status": "lost", "origin": null, "destination": null}"#),
        ("find_routes", "[]"),
    ] {
        let r = instance.call(&mut s, &ToolCall::new(name, args));
        assert!(r.is_error && !r.state_changed, "{name} {args}: {}", r.content);
    }
}

/// Every instance seed builds (run with `--ignored`; slow in the dev profile).
#[test]
#[ignore = "slow in the dev profile: every instance seed; run with --ignored"]
fn every_instance_builds() {
    for f in [
        Box::new(LogisticsFamily) as Box<dyn Family>,
        Box::new(agentgen_environments::families::sql::SqlFamily),
        Box::new(agentgen_environments::families::search::SearchFamily),
        Box::new(agentgen_environments::families::code::CodeFamily),
    ] {
        for i in 0..f.instances() {
            let inst = f.instance(i).unwrap_or_else(|e| panic!("{} {i}: {e}", f.name()));
            for t in [0, 1, 2, 3, 4, 195, 196, 197, 198, 199] {
                inst.task(t).unwrap_or_else(|e| panic!("{} {i}/{t}: {e}", f.name()));
            }
        }
    }
}

/// Throughput of task generation + reference run + verify for B's families (run with
/// `--ignored --nocapture`; prints numbers, asserts nothing about time).
#[test]
#[ignore = "a benchmark: prints numbers, run with --ignored --nocapture"]
fn throughput_report() {
    use std::time::Instant;
    for f in [
        Box::new(LogisticsFamily) as Box<dyn Family>,
        Box::new(agentgen_environments::families::sql::SqlFamily),
        Box::new(agentgen_environments::families::search::SearchFamily),
        Box::new(agentgen_environments::families::code::CodeFamily),
    ] {
        if !f.availability().is_available() {
            continue;
        }
        let t0 = Instant::now();
        let instances: Vec<_> = (0..20u64).map(|i| f.instance(i).unwrap()).collect();
        let build = t0.elapsed().as_secs_f64() / 20.0;
        let t1 = Instant::now();
        let mut n = 0;
        let mut sound = 0;
        for inst in &instances {
            for t in 0..50u64 {
                let task = inst.task(t).unwrap();
                let (state, tr) = run_reference(inst.as_ref(), &task);
                assert!(inst.verify(&task, &state, &tr).passed);
                n += 1;
            }
        }
        let per_task = t1.elapsed().as_secs_f64() / f64::from(n);
        let t2 = Instant::now();
        for inst in instances.iter().take(4) {
            for t in 0..50u64 {
                let task = inst.task(t).unwrap();
                if soundness(inst.as_ref(), &task, t).ok() {
                    sound += 1;
                }
            }
        }
        let per_sound = t2.elapsed().as_secs_f64() / 200.0;
        eprintln!(
            "{:10} instance build {:8.2} ms | task+reference+verify {:8.3} ms ({:7.0} tasks/s, 1 thread) | full soundness check {:8.3} ms/task ({sound}/200 sound)",
            f.name(),
            build * 1e3,
            per_task * 1e3,
            1.0 / per_task,
            per_sound * 1e3
        );
    }
}
