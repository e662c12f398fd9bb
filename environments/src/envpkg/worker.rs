//! Persistent Python workers for envpkg packages: locating the interpreter
//! ([`PythonRuntime`]), spawning a worker for one package inside the sandbox
//! ([`spawn_sandboxed`], the one place a worker process is created), the framed-JSON
//! protocol over pipes with per-request deadlines ([`Worker::request`]), and a pool that reuses
//! healthy workers across episodes and drops broken ones ([`WorkerPool`]).
//!
//! Failures are data: every request returns `Result<Value, Failure>` where the failure carries
//! a stable code (`env.timeout`, `env.crash`, `env.protocol`, `env.sandbox`, or `pkg.import`
//! while loading). After a timeout, crash, sandbox violation or protocol break the worker is
//! killed (its whole process group) and must not be reused.

use std::collections::HashSet;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::sandbox::{Layer, Layers, SCRATCH_DIR, Sandbox, SandboxChild, SandboxConfig};

/// The worker harness, embedded in the binary.
pub const HARNESS: &str = include_str!("harness.py");
/// Largest reply frame accepted from a worker.
const MAX_FRAME: usize = 64 << 20;
/// Open files a worker may hold.
const MAX_OPEN_FILES: u64 = 256;
/// Largest file a worker may write.
const MAX_FILE_BYTES: u64 = 16 << 20;
/// Size of a worker's scratch tmpfs (all episodes' files at once).
const SCRATCH_BYTES: u64 = 32 << 20;
/// CPU seconds a persistent worker may use in its life (then it is replaced).
const WORKER_CPU_SECS: u64 = 3600;
/// Where the package directory appears inside the sandbox (with a mount namespace).
const PKG_INSIDE: &str = "/pkg";

/// An episode-ending failure (spec §7.3) or a load failure, with a stable code: the
/// framework's one type for an environment's misbehaviour.
pub use crate::framework::EnvFailure as Failure;

/// The workers' interpreter, probed once.
#[derive(Clone, Debug)]
pub struct PythonRuntime {
    /// The resolved executable (shims resolved to the real binary).
    pub exe: PathBuf,
    /// `major.minor.micro`.
    pub version: String,
    /// `sys.stdlib_module_names`.
    pub stdlib: HashSet<String>,
    /// The interpreter as the sandbox runs it (binds of its installation).
    pub sandbox: Sandbox,
}

impl PythonRuntime {
    /// `major.minor`, the `env_python` of dataset rows.
    pub fn minor(&self) -> String {
        self.version.splitn(3, '.').take(2).collect::<Vec<_>>().join(".")
    }

    /// Probe `python` (a command on PATH or a path): version >= 3.11, stdlib names, isolation.
    pub fn detect(python: &str) -> Result<PythonRuntime, String> {
        let probe = "import sys, json; print(json.dumps([sys.executable, list(sys.version_info[:3]), sorted(sys.stdlib_module_names)]))";
        let out = Command::new(python)
            .args(["-S", "-c", probe])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|e| format!("{python}: cannot run ({e}); envpkg workers need CPython >= 3.11 (--python PATH)"))?;
        if !out.status.success() {
            return Err(format!(
                "{python} exited with {} when probed (CPython >= 3.11 needed)",
                out.status
            ));
        }
        let v: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("{python}: unexpected probe output: {e}"))?;
        let exe = PathBuf::from(v[0].as_str().unwrap_or(python));
        let ver: Vec<u64> = v[1]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        if ver.len() != 3 || ver[0] != 3 || ver[1] < 11 {
            return Err(format!("{python} is Python {ver:?}; envpkg workers need CPython >= 3.11"));
        }
        let stdlib = v[2]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let sandbox = Sandbox::detect(python, SandboxConfig::default())?;
        Ok(PythonRuntime {
            exe,
            version: format!("{}.{}.{}", ver[0], ver[1], ver[2]),
            stdlib,
            sandbox,
        })
    }

    /// The process-wide runtime for `python3`, probed once.
    pub fn shared() -> Result<&'static PythonRuntime, String> {
        static RT: OnceLock<Result<PythonRuntime, String>> = OnceLock::new();
        RT.get_or_init(|| PythonRuntime::detect("python3")).as_ref().map_err(Clone::clone)
    }

    /// Which layer enforces each duty of spec §10 (the report's `runtime.isolation`): the
    /// kernel layers the sandbox was granted, plus the harness's Python-level guards.
    pub fn isolation(&self) -> Value {
        let layers = Layers::probe();
        let on = |l: Layer| layers.is_active(l);
        let both = |l: Layer, kernel: &str, py: &str| {
            if on(l) {
                format!("{kernel} + {py}")
            } else {
                format!("{py} only ({} missing)", l.as_str())
            }
        };
        json!({
            "network": both(Layer::NetworkNamespace, "network namespace", "audit hook"),
            "filesystem": both(Layer::MountNamespace, "read-only root, package bound read-only, scratch tmpfs", "audit hook"),
            "processes": both(Layer::Seccomp, "seccomp (no fork) + RLIMIT_NPROC", "audit hook, thread start denied"),
            "visibility": if on(Layer::PidNamespace) { "pid namespace" } else { "none (pid_namespace missing)" },
            "uid": if on(Layer::UnprivilegedUid) { "unprivileged uid per worker" } else { "same uid as the runtime" },
            "native_code": "audit hook (ctypes denied); .so/.pyd/.pth refused at load",
            "memory": "RLIMIT_AS = memory_mb",
            "time": "per-call and per-episode deadlines; the worker is killed on timeout",
            "environment": "cleared; PYTHONHASHSEED=0, TZ=UTC, LC_ALL=C.UTF-8; -S -B, no bytecode loaded",
            "layers": layers.to_json(),
        })
    }
}

/// Spawn the worker process for the package at `pkg` inside the hardened sandbox
/// ([`crate::sandbox::SandboxSpec`]): harness on `-c`, piped stdin/stdout (the protocol; the
/// harness moves it to private descriptors), the package bound read-only, a scratch tmpfs as
/// the only writable place, no fork, `RLIMIT_AS` = `memory_mb`. The one place a worker is
/// created. Refused (`Err`) when a required layer is missing and weak sandboxes are not allowed.
pub fn spawn_sandboxed(
    rt: &PythonRuntime,
    pkg: &Path,
    memory_mb: u64,
) -> crate::Result<SandboxChild> {
    let mount = Layers::probe().is_active(Layer::MountNamespace);
    let (pkg_arg, scratch_arg) = if mount {
        (PathBuf::from(PKG_INSIDE), PathBuf::from(SCRATCH_DIR))
    } else {
        (pkg.to_path_buf(), PathBuf::from("."))
    };
    let limits = crate::sandbox::Limits {
        address_space: memory_mb.saturating_mul(1 << 20),
        cpu_secs: WORKER_CPU_SECS,
        file_size: MAX_FILE_BYTES,
        open_files: MAX_OPEN_FILES,
        processes: 1,
    };
    rt.sandbox
        .python_spec()
        .ro_bind(pkg, PKG_INSIDE)
        .arg("-S")
        .arg("-B")
        .arg("-c")
        .arg(HARNESS)
        .arg(pkg_arg)
        .arg(scratch_arg)
        .limits(limits)
        .scratch_bytes(SCRATCH_BYTES)
        .allow_fork(false)
        .spawn()
}

/// One live worker serving one package.
pub struct Worker {
    child: SandboxChild,
    to: ChildStdin,
    from: ChildStdout,
    alive: bool,
    /// The worker's Python `major.minor.micro` (from its hello).
    pub python: String,
    /// Reply of the `load` request (Env, methods, verify, generate_task).
    pub load_info: Value,
    /// When the worker was spawned and how long spawn + hello + import took.
    pub start_time: Duration,
}

impl Worker {
    /// Spawn a worker for `pkg`, wait for its hello, then screen imports (`screen`, if given:
    /// `(py_files, local_modules)`) and import env.py (`tools`: the tool names whose method
    /// signatures come back in [`Worker::load_info`]).
    pub fn start(
        rt: &PythonRuntime,
        pkg: &Path,
        memory_mb: u64,
        load_timeout: Duration,
        screen: Option<(&[String], &[String])>,
        tools: &[&str],
    ) -> Result<Worker, Failure> {
        let t0 = Instant::now();
        let mut child = spawn_sandboxed(rt, pkg, memory_mb)
            .map_err(|e| Failure::new("sandbox.refused", format!("cannot start a worker: {e}")))?;
        let (Some(to), Some(from)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Failure::new("env.crash", "worker pipes missing"));
        };
        // The harness sends nothing to stderr (it points fd 1 and 2 at /dev/null).
        drop(child.stderr.take());
        let mut w = Worker {
            child,
            to,
            from,
            alive: true,
            python: String::new(),
            load_info: Value::Null,
            start_time: Duration::ZERO,
        };
        let hello = w.read_reply(Instant::now() + load_timeout.max(Duration::from_secs(10)))?;
        w.python = hello["python"].as_str().unwrap_or_default().to_owned();
        if let Some((files, modules)) = screen {
            let r = w.request(
                &json!({"op": "screen", "files": files, "local_modules": modules, "denied": DENIED_IMPORTS}),
                load_timeout.max(Duration::from_secs(10)),
            )?;
            if let Some(p) = r.get("problem").filter(|p| !p.is_null()) {
                return Err(Failure::new(
                    p["code"].as_str().unwrap_or("pkg.import"),
                    p["detail"].as_str().unwrap_or_default(),
                ));
            }
        }
        w.load_info = w.request(&json!({"op": "load", "tools": tools}), load_timeout)?;
        w.start_time = t0.elapsed();
        Ok(w)
    }

    /// False once the worker is killed (a request timing out or a broken reply kills it).
    pub fn is_alive(&self) -> bool {
        self.alive
    }

    /// Send one request and wait for its reply until `timeout`. `ok: false` replies become a
    /// [`Failure`]; a timeout, EOF, oversized or malformed frame kills the worker.
    pub fn request(&mut self, req: &Value, timeout: Duration) -> Result<Value, Failure> {
        if !self.alive {
            return Err(Failure::new("env.crash", "the worker is gone"));
        }
        let body = req.to_string();
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(body.as_bytes());
        if let Err(e) = self.to.write_all(&frame).and_then(|_| self.to.flush()) {
            return Err(self.died(format!("writing a request: {e}")));
        }
        let reply = self.read_reply(Instant::now() + timeout)?;
        if reply.get("ok") == Some(&Value::Bool(true)) {
            return Ok(reply);
        }
        let f = Failure::new(
            reply["code"].as_str().unwrap_or("env.protocol"),
            reply["detail"].as_str().unwrap_or("malformed failure reply"),
        );
        if f.discards_worker() {
            self.kill();
        }
        Err(f)
    }

    fn read_reply(&mut self, deadline: Instant) -> Result<Value, Failure> {
        let mut len = [0u8; 4];
        self.read_exact(&mut len, deadline)?;
        let n = u32::from_be_bytes(len) as usize;
        if n > MAX_FRAME {
            self.kill();
            return Err(Failure::new("env.protocol", format!("worker sent a {n}-byte frame")));
        }
        let mut buf = vec![0u8; n];
        self.read_exact(&mut buf, deadline)?;
        match serde_json::from_slice::<Value>(&buf) {
            Ok(v) if v.is_object() => Ok(v),
            _ => {
                self.kill();
                Err(Failure::new("env.protocol", "worker sent a malformed frame"))
            }
        }
    }

    fn read_exact(&mut self, buf: &mut [u8], deadline: Instant) -> Result<(), Failure> {
        let fd = self.from.as_raw_fd();
        let mut got = 0;
        while got < buf.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.kill();
                return Err(Failure::new("env.timeout", "no reply within the time limit"));
            }
            let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: poll on one valid pollfd on the stack.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(self.died(format!("poll: {e}")));
            }
            if r == 0 {
                continue;
            }
            // SAFETY: read into the unfilled tail of `buf`, which is valid for that length.
            let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(self.died(format!("read: {e}")));
            }
            if n == 0 {
                return Err(self.died("the worker closed its channel".into()));
            }
            got += n as usize;
        }
        Ok(())
    }

    /// The worker stopped answering: reap it and describe how it ended (`env.crash`).
    fn died(&mut self, what: String) -> Failure {
        let mut status = None;
        for _ in 0..50 {
            status = self.child.try_wait().ok().flatten();
            if status.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.kill();
        let how = match status {
            Some(s) => {
                use std::os::unix::process::ExitStatusExt;
                match (s.code(), s.signal()) {
                    (_, Some(sig)) => format!("killed by signal {sig}"),
                    (Some(c), _) => format!("exited with status {c}"),
                    _ => "ended".into(),
                }
            }
            None => "ended".into(),
        };
        Failure::new("env.crash", format!("worker {how} ({what})"))
    }

    /// Kill the whole sandbox and reap it; idempotent.
    pub fn kill(&mut self) {
        if self.alive {
            self.alive = false;
            self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Imports the static screen refuses (spec §9.1 item 4).
pub const DENIED_IMPORTS: &[&str] = &[
    "socket",
    "ssl",
    "subprocess",
    "multiprocessing",
    "ctypes",
    "_ctypes",
    "threading",
    "_thread",
    "concurrent",
    "asyncio",
    "selectors",
    "signal",
    "pty",
    "http",
    "urllib.request",
    "ftplib",
    "smtplib",
    "poplib",
    "imaplib",
    "telnetlib",
    "socketserver",
    "xmlrpc",
    "webbrowser",
    "mmap",
    "resource",
    "sched",
];

/// Idle workers of one package, reused across episodes (a fresh `Env` per episode); at most
/// `max` kept. Broken workers are dropped on check-in, so the next checkout spawns a new one.
pub struct WorkerPool {
    rt: PythonRuntime,
    pkg: PathBuf,
    memory_mb: u64,
    load_timeout: Duration,
    tools: Vec<String>,
    max: usize,
    idle: Mutex<Vec<Worker>>,
}

impl WorkerPool {
    /// A pool for the package `pkg` keeping at most `max` idle workers (at least one).
    pub fn new(rt: PythonRuntime, pkg: &super::ValidPackage, max: usize) -> WorkerPool {
        WorkerPool {
            rt,
            pkg: pkg.path.clone(),
            memory_mb: pkg.manifest.limits.memory_mb,
            load_timeout: Duration::from_millis(pkg.manifest.limits.load_timeout_ms),
            tools: pkg.tools.iter().map(|t| t.name.clone()).collect(),
            max: max.max(1),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle worker, or a freshly started one.
    pub fn checkout(&self) -> Result<Worker, Failure> {
        if let Some(w) = self.idle.lock().ok().and_then(|mut v| v.pop()) {
            return Ok(w);
        }
        let tools: Vec<&str> = self.tools.iter().map(String::as_str).collect();
        Worker::start(&self.rt, &self.pkg, self.memory_mb, self.load_timeout, None, &tools)
    }

    /// Return a worker: kept when alive and there is room, else dropped (killed).
    pub fn checkin(&self, w: Worker) {
        if !w.is_alive() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.max
        {
            idle.push(w);
        }
    }
}
