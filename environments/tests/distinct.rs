//! Every advertised task is a distinct task: for each built-in family and instances 0, 98 and
//! 517, task seeds `0..200` give pairwise distinct (user prompt, reference solution) pairs.
//!
//! `DISTINCT_SEEDS=N DISTINCT_INSTANCES=M cargo test --workspace --test distinct -- --nocapture`
//! checks seeds `0..N` (capped at the family's task count) of instances `0..M` instead, and
//! `DISTINCT_FAMILIES=a,b` only checks those families, and `DISTINCT_SOUND=1` also runs the soundness check (reference passes, probes fail) on every task
//! of a family that starts no process. Each run prints the distinct count per family and instance.

use std::collections::HashMap;

use agentgen_environments::{Registry, TaskSpec, soundness};

const INSTANCES: [u64; 3] = [0, 98, 517];

/// What makes two tasks the same task to a learner: what the user asks and what solves it.
fn key(t: &TaskSpec) -> String {
    let reference = serde_json::to_string(&t.reference).unwrap_or_default();
    format!("{}\u{0}{reference}", t.user_prompt)
}

#[test]
fn task_seeds_give_distinct_tasks() {
    let seeds: u64 =
        std::env::var("DISTINCT_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    let instances: Vec<u64> =
        match std::env::var("DISTINCT_INSTANCES").ok().and_then(|s| s.parse().ok()) {
            Some(m) => (0..m).collect(),
            None => INSTANCES.to_vec(),
        };
    let sound = std::env::var("DISTINCT_SOUND").is_ok_and(|v| v == "1");
    let reg = Registry::new();
    let mut dups = Vec::new();
    let mut total_dups = 0usize;
    let mut failed = Vec::new();
    let only = std::env::var("DISTINCT_FAMILIES").unwrap_or_default();
    for fam in reg.families() {
        if !only.is_empty() && !only.split(',').any(|f| f == fam.name()) {
            continue;
        }
        let seeds = seeds.min(fam.tasks_per_instance());
        for &inst in &instances {
            let instance = fam.instance(inst).expect("instance");
            let mut seen: HashMap<String, u64> = HashMap::new();
            let mut n_dup = 0usize;
            for t in 0..seeds {
                let task = match instance.task(t) {
                    Ok(task) => task,
                    Err(e) => {
                        failed.push(format!("{}@{}/{inst}/{t}: {e}", fam.name(), fam.version()));
                        continue;
                    }
                };
                if sound && !fam.spawns_process() {
                    let rep = soundness(instance.as_ref(), &task, t);
                    assert!(rep.ok(), "{}: {:?}", task.id, rep.failures());
                }
                if let Some(first) = seen.insert(key(&task), t) {
                    n_dup += 1;
                    if n_dup <= 3 {
                        dups.push(format!("{} repeats task seed {first}", task.id));
                    }
                }
            }
            println!("{}@{}/{inst}: {} distinct of {seeds}", fam.name(), fam.version(), seen.len());
            total_dups += n_dup;
        }
    }
    assert!(
        failed.is_empty() && total_dups == 0,
        "{} tasks failed to generate:\n{}\n{total_dups} duplicate tasks, e.g.:\n{}",
        failed.len(),
        failed.join("\n"),
        dups.join("\n")
    );
}
