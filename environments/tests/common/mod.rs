//! Helpers shared by the environment tests (each test file that needs them says `mod common;`).

use agentgen_environments::{Family, soundness};

/// Generate `instances` x `tasks` tasks of `f` (instance `instance_seed(i)` and its task
/// `task_seed(i, t)`, both reduced into range) and check each one's soundness (the reference
/// passes, every hack probe fails) and that every difficulty comes up more than 20 times;
/// fails listing the first failures.
pub fn soundness_sweep(
    f: &dyn Family,
    instances: u64,
    tasks: u64,
    instance_seed: impl Fn(u64) -> u64,
    task_seed: impl Fn(u64, u64) -> u64,
) {
    let mut fails = Vec::new();
    let mut difficulties = [0usize; 5];
    for inst in 0..instances {
        let instance = f.instance(instance_seed(inst) % f.instances()).unwrap();
        for t in 0..tasks {
            let seed = task_seed(inst, t) % f.tasks_per_instance();
            match instance.task(seed) {
                Err(e) => fails.push(format!("gen {inst}/{seed}: {e}")),
                Ok(task) => {
                    difficulties[task.difficulty as usize - 1] += 1;
                    let rep = soundness(instance.as_ref(), &task, seed);
                    if !rep.ok() {
                        fails.push(format!("{}: {:?}", task.id, rep.failures()));
                    }
                }
            }
        }
    }
    for f in fails.iter().take(15) {
        eprintln!("{f}");
    }
    assert!(fails.is_empty(), "{} of {} failed", fails.len(), instances * tasks);
    assert!(difficulties.iter().all(|&n| n > 20), "difficulty spread {difficulties:?}");
}
