use agentgen_environments::{InstanceCache, Registry, soundness};

#[test]
fn banking_smoke() {
    smoke("banking");
    smoke("trip");
    smoke("retail");
    smoke("calendar");
    smoke("vfs");
}

fn smoke(name: &str) {
    let reg = Registry::new();
    let cache = InstanceCache::default();
    let fam = reg.get(name).unwrap().clone();
    let mut fails = Vec::new();
    let mut n = 0;
    for inst in 0..20u64 {
        let instance = cache.get_or_build(fam.as_ref(), inst).unwrap();
        for t in 0..25u64 {
            n += 1;
            match instance.task(t) {
                Err(e) => fails.push(format!("gen {inst}/{t}: {e}")),
                Ok(task) => {
                    let rep = soundness(instance.as_ref(), &task, t);
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
    assert!(fails.is_empty(), "{} of {n} failed", fails.len());
}
