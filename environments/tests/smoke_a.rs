use agentgen_environments::Registry;

mod common;

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
    let fam = reg.get(name).unwrap().clone();
    common::soundness_sweep(fam.as_ref(), 20, 25, |i| i, |_, t| t);
}
