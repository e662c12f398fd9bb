//! The code interpreter: sandbox limits (timeout, memory, no network, private dir, no env
//! leakage, output cap), unavailability without python3, and the `code` family's soundness and
//! reference-vs-Python agreement. Tests that need python3 skip LOUDLY when it is absent.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::time::Duration;

use agentgen_codec::ToolCall;
use agentgen_environments::families::code::CodeFamily;
use agentgen_environments::sandbox::{Layers, Sandbox, SandboxConfig};
use agentgen_environments::{Availability, Family, State, soundness};
use serde_json::{Value, json};

fn sandbox(cfg: SandboxConfig) -> Option<Sandbox> {
    if let Some(why) = Layers::probe().refusal() {
        // sandbox_attacks.rs checks the refusal path in this case.
        eprintln!("SKIPPED: THE KERNEL REFUSES SANDBOX LAYERS: {why}");
        return None;
    }
    match Sandbox::detect("python3", cfg) {
        Ok(s) => Some(s),
        Err(reason) => {
            eprintln!("SKIPPED: python3 is not available ({reason}); sandbox test not run");
            None
        }
    }
}

fn quick() -> SandboxConfig {
    SandboxConfig { timeout: Duration::from_secs(2), ..SandboxConfig::default() }
}

#[test]
fn missing_python_is_reported_unavailable() {
    let e = Sandbox::detect("/nonexistent/bin/python3", SandboxConfig::default()).unwrap_err();
    assert!(e.contains("python3"), "{e}");
    match CodeFamily.availability() {
        Availability::Available => assert!(Sandbox::shared().is_ok()),
        Availability::Unavailable { reason } => {
            eprintln!("SKIPPED: code family unavailable here: {reason}");
            assert!(reason.contains("python3"));
        }
    }
}

#[test]
fn runs_code_with_files_in_a_private_dir() {
    let Some(sb) = sandbox(quick()) else { return };
    let files = vec![("data.csv".to_owned(), b"a,b\n1,2\n3,4\n".to_vec())];
    let out = sb
        .run(
            "import csv, os\nrows = list(csv.DictReader(open('data.csv')))\nprint(sum(int(r['b']) for r in rows))\nopen('scratch.txt', 'w').write('x')\nprint(os.getcwd())\n",
            &files,
        )
        .unwrap();
    assert!(out.success(), "{out:?}");
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("6"));
    let dir = lines.next().unwrap().to_owned();
    assert_eq!(dir, agentgen_environments::sandbox::SCRATCH_DIR, "works in the scratch tmpfs");
    // Nothing persists between runs.
    let out = sb
        .run("import os\nprint(os.path.exists('scratch.txt'), sorted(os.listdir('.')))\n", &files)
        .unwrap();
    assert!(out.stdout.starts_with("False"), "{out:?}");
}

#[test]
fn environment_does_not_leak() {
    let Some(sb) = sandbox(quick()) else { return };
    let out = sb.run("import os\nprint(sorted(os.environ))\n", &[]).unwrap();
    assert!(out.success(), "{out:?}");
    assert!(
        std::env::vars().any(|(k, _)| k.starts_with("CARGO")),
        "test harness should have CARGO vars"
    );
    assert!(!out.stdout.contains("CARGO"), "{}", out.stdout);
    for k in ["'HOME'", "'PATH'", "'PYTHONHASHSEED'"] {
        assert!(out.stdout.contains(k), "{k} missing: {}", out.stdout);
    }
}

#[test]
fn timeout_kills_the_process_group() {
    let Some(sb) =
        sandbox(SandboxConfig { timeout: Duration::from_millis(800), ..SandboxConfig::default() })
    else {
        return;
    };
    let out = sb
        .run(
            "import os, time\nif os.fork() == 0:\n    time.sleep(60)\nwhile True:\n    pass\n",
            &[],
        )
        .unwrap();
    assert!(out.timed_out, "{out:?}");
    assert_eq!(out.exit_code, None);
    assert!(out.stderr.contains("TimeoutError"), "{}", out.stderr);
}

#[test]
fn memory_limit_is_enforced() {
    let Some(sb) = sandbox(SandboxConfig { memory_bytes: 256 << 20, ..quick() }) else { return };
    let out =
        sb.run("x = bytearray(1024 * 1024 * 1024)\nprint('allocated', len(x))\n", &[]).unwrap();
    assert!(!out.success(), "{out:?}");
    assert!(!out.stdout.contains("allocated"), "{out:?}");
    assert!(out.stderr.contains("MemoryError"), "{}", out.stderr);
    // A modest allocation still works.
    let out = sb.run("x = bytearray(16 * 1024 * 1024)\nprint('ok', len(x))\n", &[]).unwrap();
    assert!(out.success() && out.stdout.contains("ok"), "{out:?}");
}

#[test]
fn output_is_capped() {
    let Some(sb) = sandbox(SandboxConfig { max_output_bytes: 1000, ..quick() }) else { return };
    let out = sb.run("print('a' * 100000)\n", &[]).unwrap();
    assert!(out.truncated && out.stdout.len() <= 1000, "{}", out.stdout.len());
}

const CONNECT: &str = "import socket, sys\nport = int(open('port.txt').read())\ntry:\n    s = socket.create_connection(('127.0.0.1', port), timeout=3)\n    s.sendall(b'hello')\n    print('CONNECTED')\nexcept Exception as e:\n    print('BLOCKED', type(e).__name__, e)\n";

fn assert_no_network(sb: &Sandbox) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let files = vec![("port.txt".to_owned(), port.to_string().into_bytes())];
    // Control: the same code outside the sandbox reaches the listener, so this test can fail.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("port.txt"), port.to_string()).unwrap();
    let control = std::process::Command::new(sb.python())
        .arg("-S")
        .arg("-c")
        .arg(CONNECT)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&control.stdout).contains("CONNECTED"),
        "control run could not connect: {control:?}"
    );
    let mut accepted = 0;
    while let Ok((_s, _)) = listener.accept() {
        accepted += 1;
    }
    assert_eq!(accepted, 1, "control connection not seen");
    // Sandboxed.
    let out = sb.run(CONNECT, &files).unwrap();
    assert!(
        out.stdout.contains("BLOCKED") && !out.stdout.contains("CONNECTED"),
        "sandboxed code reached the network (layers {:?}): {out:?}",
        Layers::probe().active_names()
    );
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("listener saw a connection from the sandbox: {other:?}"),
    }
}

#[test]
fn sandboxed_code_cannot_reach_a_local_listener() {
    let Some(sb) = sandbox(quick()) else { return };
    eprintln!("sandbox layers in use: {:?}", Layers::probe().active_names());
    assert_no_network(&sb);
}

#[test]
fn code_family_soundness_and_python_agrees_with_expected() {
    if let Availability::Unavailable { reason } = CodeFamily.availability() {
        eprintln!("SKIPPED: code family unavailable: {reason}");
        return;
    }
    let mut fails = Vec::new();
    let mut n = 0;
    for inst in [0u64, 17, 333, 999] {
        let instance = CodeFamily.instance(inst).unwrap();
        for t in 0..20u64 {
            let seed = (t * 53 + inst) % CodeFamily.tasks_per_instance();
            n += 1;
            let task = match instance.task(seed) {
                Ok(task) => task,
                Err(e) => {
                    fails.push(format!("gen {inst}/{seed}: {e}"));
                    continue;
                }
            };
            let rep = soundness(instance.as_ref(), &task, seed);
            if !rep.ok() {
                fails.push(format!("{}: {:?}", task.id, rep.failures()));
            }
            // What Python prints for the solving script is accepted by the verifier.
            let code = task.hidden["solution_code"].as_str().unwrap();
            let mut s = State(json!({ "submitted": null }));
            let r = instance
                .call(&mut s, &ToolCall::new("run_python", json!({ "code": code }).to_string()));
            let out: Value = serde_json::from_str(&r.content).unwrap();
            let printed = out["stdout"].as_str().unwrap().trim().to_owned();
            let st = State(json!({ "submitted": { "answer": printed } }));
            if !instance.verify(&task, &st, &[]).passed {
                fails.push(format!(
                    "{}: python printed {printed:?}, expected {}",
                    task.id, task.hidden["answer"]
                ));
            }
        }
    }
    for f in fails.iter().take(10) {
        eprintln!("{f}");
    }
    assert!(fails.is_empty(), "{} of {n} failed", fails.len());
}

#[test]
fn code_tasks_are_deterministic() {
    if !CodeFamily.availability().is_available() {
        eprintln!("SKIPPED: code family unavailable");
        return;
    }
    let a = CodeFamily.instance(5).unwrap().task(123).unwrap();
    let b = CodeFamily.instance(5).unwrap().task(123).unwrap();
    assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
}
