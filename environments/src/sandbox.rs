//! The code interpreter's sandbox: runs untrusted Python in a subprocess with a wall-clock
//! limit (the whole process group is killed on timeout), an address-space limit (`RLIMIT_AS`),
//! CPU/file-size/core limits, no network, a private temporary working directory that is removed
//! afterwards, and a cleared environment. This is the one place in the crate that touches the
//! host (process, filesystem); nothing else may.
//!
//! Network isolation: the child enters a fresh network namespace (`unshare(CLONE_NEWNET)`, or a
//! user + network namespace when unprivileged) when the kernel allows it, which leaves it only
//! an unconfigured loopback; otherwise a Python-level guard replaces every socket constructor
//! before the user's code runs. [`Sandbox::isolation`] says which one is active.
//!
//! Python runs with `-S` (no `site`: standard library only, and a ~10 ms start instead of ~60),
//! `-B` and a fixed `PYTHONHASHSEED`, so the same code and files give the same output.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How the sandboxed code is kept off the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetIsolation {
    /// A fresh network namespace (`unshare(CLONE_NEWNET)`, as root).
    Namespace,
    /// A fresh user + network namespace (unprivileged kernels that allow user namespaces).
    UserNamespace,
    /// No namespace available: a Python-level guard disables every socket constructor.
    PythonGuard,
}

impl NetIsolation {
    pub fn as_str(self) -> &'static str {
        match self {
            NetIsolation::Namespace => "network namespace",
            NetIsolation::UserNamespace => "user+network namespace",
            NetIsolation::PythonGuard => "python socket guard",
        }
    }
}

/// Limits of one run.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Wall-clock limit; the process group is killed when it passes.
    pub timeout: Duration,
    /// `RLIMIT_AS` in bytes.
    pub memory_bytes: u64,
    /// Bytes of stdout and of stderr kept (the rest is dropped and `truncated` set).
    pub max_output_bytes: usize,
    /// `RLIMIT_FSIZE` in bytes: the largest file the code may write.
    pub max_file_bytes: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            timeout: Duration::from_secs(10),
            memory_bytes: 512 << 20,
            max_output_bytes: 16 << 10,
            max_file_bytes: 16 << 20,
        }
    }
}

/// What a run produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutput {
    pub stdout: String,
    pub stderr: String,
    /// The exit status; `None` when killed by a signal (timeout, memory, CPU limit).
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// Output beyond `max_output_bytes` was dropped.
    pub truncated: bool,
}

impl RunOutput {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
}

/// A located Python interpreter plus the isolation this kernel allows.
#[derive(Clone, Debug)]
pub struct Sandbox {
    python: PathBuf,
    isolation: NetIsolation,
    config: SandboxConfig,
}

/// Runs before the user's code: installs the socket guard (when asked) and runs `main.py` as
/// `__main__`, hiding this bootstrap's frame from tracebacks.
const BOOT: &str = r#"import sys
if sys.argv[1] == "guard":
    import socket as _s, _socket as _ss
    def _deny(*a, **k):
        raise OSError(101, "Network is unreachable (network access is disabled in this sandbox)")
    class _NoSocket:
        def __init__(self, *a, **k):
            _deny()
    for _m in (_s, _ss):
        for _n in ("socket", "SocketType", "create_connection", "create_server", "socketpair",
                   "fromfd", "getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
            if hasattr(_m, _n):
                setattr(_m, _n, _NoSocket if _n in ("socket", "SocketType") else _deny)
    del _s, _ss, _m, _n
sys.argv = ["main.py"]
sys.path.insert(0, ".")
with open("main.py", encoding="utf-8") as _f:
    _code = compile(_f.read(), "main.py", "exec")
def _hook(t, v, tb):
    import traceback
    traceback.print_exception(t, v, tb.tb_next if tb is not None else None)
sys.excepthook = _hook
_g = {"__name__": "__main__", "__builtins__": __builtins__}
del _f, _hook
exec(_code, _g)
"#;

static DEFAULT: OnceLock<std::result::Result<Sandbox, String>> = OnceLock::new();

impl Sandbox {
    /// The process-wide sandbox with default limits, detected once: `Err(reason)` when no
    /// usable `python3` exists (the code family is then unavailable with that reason).
    pub fn shared() -> std::result::Result<&'static Sandbox, String> {
        DEFAULT
            .get_or_init(|| Sandbox::detect("python3", SandboxConfig::default()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Locate `python` (a command name looked up on `PATH`, or a path), resolve it to the real
    /// executable (version-manager shims are slow shell scripts) and probe the strongest
    /// network isolation that works. `Err(reason)` when Python cannot be run.
    pub fn detect(python: &str, config: SandboxConfig) -> std::result::Result<Sandbox, String> {
        let out = Command::new(python)
            .args(["-S", "-c", "import sys; print(sys.executable); print(sys.version_info[0])"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|e| format!("python3 not found or not runnable ({python}: {e}); the code interpreter needs python3 on PATH"))?;
        if !out.status.success() {
            return Err(format!("{python} exited with {} when probed", out.status));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let exe = lines.next().unwrap_or_default().trim().to_owned();
        if lines.next().map(str::trim) != Some("3") {
            return Err(format!("{python} is not Python 3"));
        }
        let python = if exe.is_empty() { PathBuf::from(python) } else { PathBuf::from(exe) };
        let mut sb =
            Sandbox { python, isolation: NetIsolation::PythonGuard, config: config.clone() };
        let dir = tempfile::Builder::new()
            .prefix("agentgen-sandbox-")
            .tempdir()
            .map_err(|e| format!("cannot create a private temp dir for the sandbox: {e}"))?;
        for iso in [NetIsolation::Namespace, NetIsolation::UserNamespace] {
            sb.isolation = iso;
            if sb.run_in(dir.path(), "pass", &[]).is_ok_and(|o| o.success()) {
                return Ok(sb);
            }
        }
        sb.isolation = NetIsolation::PythonGuard;
        Ok(sb)
    }

    /// A copy with other limits (same interpreter and isolation).
    pub fn with_config(&self, config: SandboxConfig) -> Sandbox {
        Sandbox { config, ..self.clone() }
    }

    /// A copy forced to use the Python-level guard instead of a namespace (tests).
    pub fn with_python_guard(&self) -> Sandbox {
        Sandbox { isolation: NetIsolation::PythonGuard, ..self.clone() }
    }

    pub fn isolation(&self) -> NetIsolation {
        self.isolation
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// The resolved interpreter.
    pub fn python(&self) -> &Path {
        &self.python
    }

    /// Run `code` as `main.py` in a fresh private directory holding `files` (name, bytes).
    /// `Err` only for infrastructure failures (temp dir, spawn); the code's own failures,
    /// timeouts and limit hits are in the [`RunOutput`].
    pub fn run(&self, code: &str, files: &[(String, Vec<u8>)]) -> Result<RunOutput> {
        let dir = tempfile::Builder::new()
            .prefix("agentgen-sandbox-")
            .tempdir()
            .map_err(|source| Error::Io { context: "creating sandbox dir".into(), source })?;
        self.run_in(dir.path(), code, files)
    }

    fn run_in(&self, dir: &Path, code: &str, files: &[(String, Vec<u8>)]) -> Result<RunOutput> {
        let io = |context: String| move |source| Error::Io { context, source };
        for (name, bytes) in files {
            if name.contains('/') || name.starts_with('.') || name.is_empty() {
                return Err(Error::Sandbox { reason: format!("bad sandbox file name {name:?}") });
            }
            std::fs::write(dir.join(name), bytes).map_err(io(format!("writing {name}")))?;
        }
        std::fs::write(dir.join("main.py"), code).map_err(io("writing main.py".into()))?;
        let boot = dir.join(".boot.py");
        std::fs::write(&boot, BOOT).map_err(io("writing boot script".into()))?;

        let mut cmd = Command::new(&self.python);
        let guard = if self.isolation == NetIsolation::PythonGuard { "guard" } else { "ns" };
        cmd.arg("-S").arg("-B").arg(&boot).arg(guard);
        cmd.current_dir(dir)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", dir)
            .env("TMPDIR", dir)
            .env("LANG", "C.UTF-8")
            .env("PYTHONHASHSEED", "0")
            .env("PYTHONIOENCODING", "utf-8")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let limits = ChildLimits {
            memory: self.config.memory_bytes,
            cpu_secs: self.config.timeout.as_secs() + 2,
            fsize: self.config.max_file_bytes,
            isolation: self.isolation,
        };
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe syscalls (setpgid, setrlimit, unshare) on stack data.
        unsafe {
            cmd.pre_exec(move || limits.apply());
        }
        let mut child = cmd.spawn().map_err(io(format!("spawning {}", self.python.display())))?;
        let pid = child.id() as libc::pid_t;
        let cap = self.config.max_output_bytes;
        let (tx, rx) = mpsc::channel();
        for (which, pipe) in [
            (0u8, child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>)),
            (1u8, child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>)),
        ] {
            let tx = tx.clone();
            if let Some(pipe) = pipe {
                std::thread::spawn(move || {
                    let _ = tx.send((which, read_capped(pipe, cap)));
                });
            }
        }
        drop(tx);

        let start = Instant::now();
        let mut timed_out = false;
        let mut pause = Duration::from_micros(200);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) => {}
                Err(source) => {
                    return Err(Error::Io { context: "waiting for python".into(), source });
                }
            }
            if start.elapsed() >= self.config.timeout {
                timed_out = true;
                break None;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        };
        // Kill the whole process group (the code may have forked); harmless if already gone.
        // SAFETY: plain syscall on the child's process group id.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let status = match status {
            Some(s) => s,
            None => child.wait().map_err(io("waiting for killed python".into()))?,
        };
        let (mut stdout, mut stderr, mut truncated) = (Vec::new(), Vec::new(), false);
        for _ in 0..2 {
            // Pipes close once the group is dead; a grandchild that escaped the group cannot
            // hold us for long.
            match rx.recv_timeout(Duration::from_secs(2)) {
                Ok((0, (bytes, t))) => {
                    stdout = bytes;
                    truncated |= t;
                }
                Ok((_, (bytes, t))) => {
                    stderr = bytes;
                    truncated |= t;
                }
                Err(_) => break,
            }
        }
        let mut stderr = String::from_utf8_lossy(&stderr).into_owned();
        if timed_out {
            stderr.push_str(&format!(
                "\nTimeoutError: execution exceeded the {:.1} s time limit and was killed",
                self.config.timeout.as_secs_f64()
            ));
        }
        Ok(RunOutput {
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr,
            exit_code: status.code(),
            timed_out,
            truncated,
        })
    }
}

fn read_capped(mut pipe: Box<dyn Read + Send>, cap: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut truncated = false;
    loop {
        match pipe.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                if n > room {
                    truncated = true;
                }
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, truncated)
}

#[derive(Clone, Copy)]
struct ChildLimits {
    memory: u64,
    cpu_secs: u64,
    fsize: u64,
    isolation: NetIsolation,
}

impl ChildLimits {
    /// Runs in the child between fork and exec.
    fn apply(&self) -> std::io::Result<()> {
        let set = |res, v: u64| {
            let lim = libc::rlimit { rlim_cur: v as libc::rlim_t, rlim_max: v as libc::rlim_t };
            // SAFETY: setrlimit with a valid pointer to a stack value.
            if unsafe { libc::setrlimit(res, &lim) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        };
        // SAFETY: async-signal-safe syscalls on the current (child) process.
        unsafe {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            match self.isolation {
                NetIsolation::Namespace => {
                    if libc::unshare(libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                NetIsolation::UserNamespace => {
                    if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                NetIsolation::PythonGuard => {}
            }
        }
        set(libc::RLIMIT_AS, self.memory)?;
        set(libc::RLIMIT_CPU, self.cpu_secs)?;
        set(libc::RLIMIT_FSIZE, self.fsize)?;
        set(libc::RLIMIT_CORE, 0)?;
        Ok(())
    }
}
