//! Per-call cost of the sandbox layers (numbers for BENCHMARKS.md; not a timed assertion).
//! Run: `cargo test -p agentgen-environments --test sandbox_overhead -- --ignored --nocapture`

use std::process::{Command, Stdio};
use std::time::Instant;

use agentgen_environments::sandbox::{Layer, Layers, Sandbox, SandboxConfig};

const N: u32 = 40;

fn time(label: &str, mut f: impl FnMut()) -> f64 {
    f(); // warm
    let t = Instant::now();
    for _ in 0..N {
        f();
    }
    let ms = t.elapsed().as_secs_f64() * 1e3 / f64::from(N);
    eprintln!("{label:<58} {ms:8.2} ms/call");
    ms
}

#[test]
#[ignore = "benchmark; prints numbers"]
fn sandbox_overhead_per_call() {
    let Ok(sb) = Sandbox::detect("python3", SandboxConfig::default()) else {
        eprintln!("SKIPPED: no python3");
        return;
    };
    eprintln!("layers: {:?}", Layers::probe().active_names());
    let py = sb.python().to_owned();
    time("plain fork+exec: python3 -S -c print(1)", || {
        let o = Command::new(&py).args(["-S", "-c", "print(1)"]).stdin(Stdio::null()).output();
        assert!(o.is_ok_and(|o| o.status.success()));
    });
    if Layers::probe().refusal().is_none() {
        time("Sandbox::run(\"print(1)\") (all layers, files over stdin)", || {
            let o = sb.run("print(1)", &[]).unwrap();
            assert!(o.success(), "{o:?}");
        });
    }
    let spec = sb.python_spec().args(["-S", "-c", "print(1)"]);
    use Layer::*;
    let cases: [(&str, &[Layer]); 7] = [
        ("spec: no layers (rlimits, no_new_privs, caps, fds only)", &[]),
        ("spec: + mount namespace (root fs, binds, tmpfs)", &[MountNamespace]),
        ("spec: + pid namespace (init + extra fork)", &[MountNamespace, PidNamespace]),
        ("spec: + unprivileged uid", &[MountNamespace, PidNamespace, UnprivilegedUid]),
        (
            "spec: + network namespace",
            &[MountNamespace, PidNamespace, UnprivilegedUid, NetworkNamespace],
        ),
        (
            "spec: + ipc, uts namespaces",
            &[
                MountNamespace,
                PidNamespace,
                UnprivilegedUid,
                NetworkNamespace,
                IpcNamespace,
                UtsNamespace,
            ],
        ),
        ("spec: + seccomp (all layers)", &Layer::ALL),
    ];
    for (label, layers) in cases {
        time(label, || {
            let mut c = spec.spawn_with_only(layers).unwrap();
            let s = c.wait().unwrap();
            assert!(s.success(), "{label}: {s}");
        });
    }
}
