//! Attacks on the sandbox, as a model's code would try them (issue 11): reading the
//! orchestrator's memory and environment, host files, `/tmp`, host UNIX sockets, processes
//! that outlive their call, fork/memory/disk bombs, signalling the parent. Each test has a
//! control where it matters (the same code outside the sandbox succeeds), so it can fail.
//! Where the kernel refuses a required layer the tests say so loudly and check the refusal
//! path instead. The tests only signal their own process tree and only use loopback.

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use agentgen_environments::sandbox::{
    Layer, Layers, RunOutput, Sandbox, SandboxConfig, SandboxSpec,
};

fn sandbox(cfg: SandboxConfig) -> Option<Sandbox> {
    let sb = match Sandbox::detect("python3", cfg) {
        Ok(s) => s,
        Err(reason) => {
            eprintln!("SKIPPED: python3 is not available ({reason}); attack test not run");
            return None;
        }
    };
    if let Some(why) = Layers::probe().refusal() {
        eprintln!("!!! THE KERNEL REFUSES SANDBOX LAYERS: {why}; checking the refusal path");
        let e = sb.run("print(1)", &[]).unwrap_err().to_string();
        assert!(e.contains("--allow-weak-sandbox"), "{e}");
        return None;
    }
    Some(sb)
}

fn cfg() -> SandboxConfig {
    SandboxConfig { timeout: Duration::from_secs(20), ..SandboxConfig::default() }
}

fn run(sb: &Sandbox, code: &str) -> RunOutput {
    let out = sb.run(code, &[]).expect("sandbox infrastructure");
    eprintln!("--- stdout:\n{}\n--- stderr:\n{}", out.stdout, out.stderr);
    out
}

/// Outside the sandbox, for controls.
fn run_plain(python: &Path, code: &str) -> String {
    let out = Command::new(python).arg("-S").arg("-c").arg(code).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn layers_are_reported_and_required_ones_active_or_refused() {
    let layers = Layers::probe();
    let json = layers.to_json();
    eprintln!("{}", serde_json::to_string_pretty(&json).unwrap());
    assert_eq!(json["layers"].as_array().unwrap().len(), Layer::ALL.len());
    match layers.refusal() {
        None => {
            for l in Layer::REQUIRED {
                assert!(layers.is_active(l), "{l:?}");
            }
            assert_eq!(json["complete"], true);
        }
        Some(why) => {
            eprintln!("!!! THE KERNEL REFUSES SANDBOX LAYERS: {why}");
            assert_eq!(json["complete"], false);
            let e = SandboxSpec::new("/bin/true").spawn().unwrap_err().to_string();
            assert!(e.contains("--allow-weak-sandbox") && e.contains("missing"), "{e}");
        }
    }
}

/// Marker kept in this (the orchestrator's) memory; the hack looks for it.
static SECRET: &str = "HIDDEN-ANSWER-7f3a9c-reference-solution";

const MEMORY_HACK: &str = r#"
import os, re
found = []
pids = {os.getppid()}
try:
    pids |= {int(p) for p in os.listdir("/proc") if p.isdigit()}
except Exception as e:
    print("NO_PROC", type(e).__name__)
for pid in sorted(pids):
    if pid in (0, os.getpid()):
        continue
    try:
        env = open(f"/proc/{pid}/environ", "rb").read()
        if b"CARGO" in env:
            found.append(f"environ:{pid}")
    except Exception:
        pass
    try:
        maps = open(f"/proc/{pid}/maps").read().splitlines()
        mem = open(f"/proc/{pid}/mem", "rb", 0)
    except Exception:
        continue
    for line in maps:
        addr, perms = line.split()[:2]
        lo, hi = (int(x, 16) for x in addr.split("-"))
        if "r" not in perms or hi - lo > 1 << 28:
            continue
        try:
            mem.seek(lo)
            chunk = mem.read(hi - lo)
        except Exception:
            continue
        if b"HIDDEN-ANSWER-" + b"7f3a9c" in chunk:
            found.append(f"mem:{pid}")
            break
print("FOUND" if found else "NOTHING", found)
"#;

#[test]
fn reading_the_orchestrators_memory_and_environment_fails() {
    let Some(sb) = sandbox(cfg()) else { return };
    assert!(std::hint::black_box(SECRET).len() > 10);
    // Control: a plain child of this process finds the marker (root or ptrace allowed).
    let control = run_plain(sb.python(), MEMORY_HACK);
    if control.contains("FOUND") {
        eprintln!("control found the marker: {control}");
    } else {
        eprintln!("NOTE: even the unsandboxed control could not read this process ({control})");
    }
    let out = run(&sb, MEMORY_HACK);
    assert!(out.stdout.contains("NOTHING"), "{out:?}");
    assert!(!out.stdout.contains("FOUND"), "{out:?}");
}

#[test]
fn environment_host_files_and_repository_are_unreadable() {
    let Some(sb) = sandbox(cfg()) else { return };
    let repo = env!("CARGO_MANIFEST_DIR");
    let code = format!(
        r#"
import os
print("ENV", sorted(os.environ))
for p in ["/etc/shadow", "/etc/passwd", "/root/.cargo", "/root/.bashrc", "/home", {repo:?}, {repo:?} + "/Cargo.toml", "/proc/self/environ", "/run", "/var"]:
    try:
        if os.path.isdir(p):
            os.listdir(p)
        else:
            open(p, "rb").read(1)
        print("READABLE", p)
    except Exception as e:
        print("DENIED", p, type(e).__name__)
print("ROOT", sorted(os.listdir("/")))
try:
    open("/usr/agentgen-write-test", "w")
    print("WROTE_USR")
except Exception as e:
    print("RO_USR", type(e).__name__)
"#
    );
    // Control: outside, the repository is readable.
    let control = run_plain(sb.python(), &code);
    let _ = std::fs::remove_file("/usr/agentgen-write-test"); // the control may write it
    assert!(control.contains(&format!("READABLE {repo}/Cargo.toml")), "{control}");
    let out = run(&sb, &code);
    assert!(out.success(), "{out:?}");
    assert!(!out.stdout.contains("READABLE"), "{}", out.stdout);
    assert!(!out.stdout.contains("CARGO"), "{}", out.stdout);
    assert!(out.stdout.contains("RO_USR"), "{}", out.stdout);
    assert!(!Path::new("/usr/agentgen-write-test").exists());
}

#[test]
fn host_tmp_and_host_unix_sockets_are_unreachable() {
    let Some(sb) = sandbox(cfg()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("host.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    listener.set_nonblocking(true).unwrap();
    let marker = dir.path().join("escaped.txt");
    let code = format!(
        r#"
import socket
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect({sock:?})
    s.sendall(b"hi")
    print("CONNECTED")
except Exception as e:
    print("BLOCKED", type(e).__name__)
for p in [{marker:?}, "/tmp/agentgen-escape-test"]:
    try:
        open(p, "w").write("x")
        print("WROTE", p)
    except Exception as e:
        print("NOWRITE", p, type(e).__name__)
"#,
        sock = sock.to_str().unwrap(),
        marker = marker.to_str().unwrap(),
    );
    // Control: outside, the socket is reachable.
    let control = run_plain(sb.python(), &code);
    assert!(control.contains("CONNECTED"), "{control}");
    let _ = std::fs::remove_file(&marker);
    let _ = std::fs::remove_file("/tmp/agentgen-escape-test"); // the control's write, not ours to keep
    while listener.accept().is_ok() {}
    let out = run(&sb, &code);
    assert!(out.stdout.contains("BLOCKED") && !out.stdout.contains("CONNECTED"), "{out:?}");
    assert!(!out.stdout.contains("WROTE"), "{out:?}");
    assert!(!marker.exists());
    assert!(!std::path::Path::new("/tmp/agentgen-escape-test").exists());
    assert!(listener.accept().is_err(), "the listener saw a connection from the sandbox");
}

#[test]
fn no_process_outlives_its_call() {
    let Some(sb) = sandbox(cfg()) else { return };
    // A unique sleep duration marks the escaped grandchild in the host's process list.
    let tag = format!("3600.{}", std::process::id());
    let code = format!(
        r#"
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sleep", ["sleep", "{tag}"])
    os._exit(0)
time.sleep(0.5)
print("PARENT_DONE")
"#
    );
    let out = run(&sb, &code);
    assert!(out.stdout.contains("PARENT_DONE"), "{out:?}");
    std::thread::sleep(Duration::from_millis(200));
    let mut survivors = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let mut cmd = String::new();
        if let Ok(mut f) = std::fs::File::open(e.path().join("cmdline")) {
            let _ = f.read_to_string(&mut cmd);
        }
        if cmd.contains(&tag) {
            survivors.push(pid);
        }
    }
    for &pid in &survivors {
        // Our own escaped descendant: clean up before failing.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(survivors.is_empty(), "processes outlived the call: {survivors:?}");
}

#[test]
fn fork_bomb_is_contained() {
    let Some(sb) = sandbox(cfg()) else { return };
    let max = sb.config().max_processes;
    let out = run(
        &sb,
        r#"
import os, time
n = 0
for i in range(300):
    try:
        pid = os.fork()
    except OSError as e:
        print("FORK_FAILED", e.errno)
        break
    if pid == 0:
        time.sleep(5)
        os._exit(0)
    n += 1
print("FORKED", n)
"#,
    );
    let forked: u32 = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("FORKED ").and_then(|n| n.trim().parse().ok()))
        .expect("count printed");
    assert!(forked < max, "{forked} children with a limit of {max} processes");
    assert!(out.stdout.contains("FORK_FAILED"), "{out:?}");
}

#[test]
fn memory_bomb_over_children_is_contained() {
    let Some(sb) = sandbox(cfg()) else { return };
    let per = sb.config().memory_bytes;
    let max = u64::from(sb.config().max_processes);
    let out = run(
        &sb,
        r#"
import os, time
kids = []
for i in range(20):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        try:
            b = bytearray(400 * 1024 * 1024)
            b[::4096] = b"x" * len(b[::4096])
            os.write(1, b"GOT400\n")
            time.sleep(3)
        except MemoryError:
            os.write(1, b"MEMERR\n")
        os._exit(0)
    kids.append(pid)
for k in kids:
    os.waitpid(k, 0)
try:
    big = bytearray(2 * 1024 * 1024 * 1024)
    print("GOT2G")
except MemoryError:
    print("PARENT_MEMERR")
"#,
    );
    let got = out.stdout.matches("GOT400").count() as u64;
    assert!(out.stdout.contains("PARENT_MEMERR"), "{out:?}");
    assert!(!out.stdout.contains("GOT2G"), "{out:?}");
    // Total memory is bounded by processes x address space.
    assert!(got * 400 * (1 << 20) <= (max - 1) * per, "{got} children got 400 MB each");
}

#[test]
fn disk_filler_is_contained() {
    let Some(sb) = sandbox(cfg()) else { return };
    let scratch = sb.config().scratch_bytes;
    let out = run(
        &sb,
        r#"
import os
total = 0
chunk = b"x" * (1 << 20)
for i in range(1000):
    try:
        with open(f"fill{i}", "wb") as f:
            for _ in range(8):
                f.write(chunk)
                total += len(chunk)
    except OSError as e:
        print("STOPPED", e.errno)
        break
try:
    with open("big", "wb") as f:
        f.write(b"y" * (100 << 20))
    print("BIG_OK")
except OSError as e:
    print("BIG_REFUSED", e.errno)
print("TOTAL", total)
"#,
    );
    let total: u64 = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("TOTAL ").and_then(|n| n.trim().parse().ok()))
        .expect("total printed");
    assert!(out.stdout.contains("STOPPED"), "{out:?}");
    assert!(total <= scratch, "wrote {total} bytes into a {scratch}-byte scratch");
    assert!(!out.stdout.contains("BIG_OK"), "{out:?}");
}

#[test]
fn signalling_the_parent_fails() {
    let Some(sb) = sandbox(cfg()) else { return };
    let out = run(
        &sb,
        r#"
import os, signal
print("PPID", os.getppid())
for target, sig in ((os.getppid(), signal.SIGTERM), (1, signal.SIGKILL)):
    try:
        os.kill(target, sig)
        print("SENT", target)
    except Exception as e:
        print("REFUSED", target, type(e).__name__)
import time
time.sleep(0.3)
print("ALIVE")
"#,
    );
    // This process (the orchestrator) is still here; the code's parent is the sandbox's own
    // init (PID 1 of its namespace), which ignores signals from inside (root: refused outright;
    // user namespace: same uid, delivered and dropped) — had it died, the kernel would have
    // killed the code before it printed ALIVE.
    assert!(!out.stdout.contains(&format!("PPID {}", std::process::id())), "{out:?}");
    assert!(out.stdout.contains("PPID 1\n"), "{out:?}");
    assert!(out.stdout.contains("ALIVE"), "{out:?}");
}

#[test]
fn package_worker_spec_blocks_fork_and_keeps_a_protocol_channel() {
    let Some(sb) = sandbox(cfg()) else { return };
    let code = r#"
import os, socket
fd = int(os.environ["AGENTGEN_PROTOCOL_FD"])
s = socket.socket(fileno=fd)
msg = s.recv(100)
try:
    os.fork()
    res = "FORKED"
except OSError as e:
    res = "NOFORK"
s.sendall(msg.upper() + b" " + res.encode() + b" " + str(sorted(os.listdir("/pkg"))).encode())
"#;
    let pkg = tempfile::tempdir().unwrap();
    std::fs::write(pkg.path().join("env.py"), "X = 1\n").unwrap();
    let spec = sb
        .python_spec()
        .args(["-S", "-c", code])
        .ro_bind(pkg.path(), "/pkg")
        .allow_fork(false)
        .protocol_channel(true);
    let mut child = spec.spawn().unwrap();
    let mut chan = child.protocol.take().unwrap();
    use std::io::Write;
    chan.write_all(b"ping").unwrap();
    chan.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut reply = String::new();
    let _ = chan.read_to_string(&mut reply);
    let status = child.wait().unwrap();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert!(status.success(), "{status} {err}");
    assert_eq!(reply, "PING NOFORK ['env.py']", "{err}");
}
