//! The one sandbox for all untrusted code: the code interpreter's `run_python` today, the
//! envpkg package workers next. This module (with `sandbox/jail.rs` for the child side and
//! `sandbox/filter.rs` for seccomp) is the only place in the crate that touches the host
//! (processes, filesystem).
//!
//! # API
//!
//! * [`SandboxSpec`] describes one sandboxed process: the program (an absolute path that must
//!   exist inside the sandbox's root, e.g. through [`Sandbox::python_spec`]), its arguments and
//!   environment (nothing of the host's is inherited), read-only binds, the size of the private
//!   scratch tmpfs (the only writable place, also the working directory), [`Limits`],
//!   `allow_fork` and an optional protocol channel. [`SandboxSpec::spawn`] starts it with piped
//!   stdin/stdout/stderr and returns a [`SandboxChild`]; dropping the handle kills the
//!   sandbox's whole PID namespace.
//! * [`Layers::probe`] finds out once per process which layers the kernel grants;
//!   [`Layers::missing_required`] names the required ones that are missing. `spawn` refuses
//!   (error [`crate::Error::Sandbox`]) when a required layer is missing, unless
//!   [`set_allow_weak`] was called (the CLI's `--allow-weak-sandbox`); no silent fallback.
//! * [`Sandbox`] is the located Python interpreter plus the code interpreter's one-shot
//!   [`Sandbox::run`], built on `SandboxSpec`: the files and the code travel over stdin into
//!   the scratch tmpfs, so no host directory is involved.
//!
//! # Layers (each reported by [`Layers`])
//!
//! * **Identity**: unprivileged callers get a new user namespace mapping only their own uid
//!   (as uid 1000 inside); root callers `setuid` to a dedicated uid per spawn (from a range of
//!   100,000 uids starting at [`DEDICATED_UID_BASE`]) after the namespaces are set up, so
//!   `RLIMIT_NPROC` is per sandbox and one worker cannot starve another. Either way no
//!   capability survives: the bounding and ambient sets are cleared, `capset` empties the rest.
//! * **Namespaces**: PID (a new init, no view of the orchestrator; when init exits the kernel
//!   kills every descendant), mount, IPC, UTS and network (only an unconfigured loopback;
//!   abstract UNIX sockets are per network namespace).
//! * **Filesystem**: `pivot_root` into a fresh read-only tmpfs holding read-only binds of what
//!   the program needs (for Python: `/usr`, the `/lib*` links, the interpreter's prefix,
//!   `/etc/ld.so.cache`, `/dev/{null,zero,random,urandom}`) and a size- and inode-limited
//!   scratch tmpfs as the only writable place. No `/proc`, `/tmp`, `/run`, `/home`, `/root`
//!   (beyond an interpreter prefix that lives there), `/etc/shadow` or the repository; no host
//!   UNIX socket is reachable because no host path holding one is mounted.
//! * **Process**: `PR_SET_NO_NEW_PRIVS`, a seccomp filter (see `filter.rs`), rlimits
//!   (`RLIMIT_AS` per process, `RLIMIT_NPROC` per sandbox, `RLIMIT_CPU`, `RLIMIT_FSIZE`,
//!   `RLIMIT_NOFILE`, no core dumps), every descriptor but 0/1/2 (and the protocol channel)
//!   closed at `exec`. Total memory is bounded by `processes × address_space` (no cgroup is
//!   used: cgroup v1 delegation is not something users have).
//!
//! Cost per spawn (BENCHMARKS.md): a few milliseconds over a plain `fork`+`exec`, mostly the
//! mounts and the extra fork of the namespace's init.

mod filter;
mod jail;

use std::collections::BTreeSet;
use std::ffi::{CString, OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use jail::{BindPlan, Granted, Plan};

/// First uid of the range root callers `setuid` into (one uid per spawn, cycling over 100,000).
pub const DEDICATED_UID_BASE: u32 = 1_900_000_000;
const DEDICATED_UIDS: u32 = 100_000;
/// Environment variable that tells a sandboxed program the number of its protocol descriptor.
pub const PROTOCOL_FD_ENV: &str = "AGENTGEN_PROTOCOL_FD";
/// The scratch tmpfs inside the sandbox (also the working directory and `HOME`/`TMPDIR`).
pub const SCRATCH_DIR: &str = "/work";

static ALLOW_WEAK: AtomicBool = AtomicBool::new(false);
static NEXT_UID: AtomicU32 = AtomicU32::new(0);

/// Where this process starts in the dedicated uid range: derived from the pid, so concurrent
/// agentgen processes (shards, tests) rarely pick the same uid (`RLIMIT_NPROC` is per uid).
fn uid_offset() -> u32 {
    static OFFSET: OnceLock<u32> = OnceLock::new();
    *OFFSET.get_or_init(|| std::process::id().wrapping_mul(2_654_435_761) % DEDICATED_UIDS)
}

/// Every sandbox is forked from this one long-lived thread. `P1` dies with the thread that
/// forked it (`PR_SET_PDEATHSIG` follows the forking *thread*, and the async runtime's blocking
/// threads come and go), so tying it to a thread that lives as long as the process makes
/// `kill -9` of the orchestrator end every sandbox it started.
fn on_spawner_thread<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    type Job = Box<dyn FnOnce() + Send>;
    static SPAWNER: OnceLock<Option<std::sync::Mutex<std::sync::mpsc::Sender<Job>>>> =
        OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("agentgen-sandbox-spawner".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            })
            .ok()
            .map(|_| std::sync::Mutex::new(tx))
    });
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = done_tx.send(job());
    });
    tx.as_ref()?.lock().ok()?.send(job).ok()?;
    done_rx.recv().ok()
}

/// Allow sandboxes that lack a required layer (the CLI's `--allow-weak-sandbox`). Call once
/// at start-up, before any family is asked for its availability.
pub fn set_allow_weak(allow: bool) {
    ALLOW_WEAK.store(allow, Ordering::SeqCst);
}

/// Whether [`set_allow_weak`] allowed weak sandboxes.
pub fn allow_weak() -> bool {
    ALLOW_WEAK.load(Ordering::SeqCst)
}

// ---------------------------------------------------------------------------------------------
// Layers

/// One isolation layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// The program runs as a uid of its own (user namespace or dedicated uid).
    UnprivilegedUid,
    /// A user namespace (unprivileged callers; root uses a dedicated uid instead).
    UserNamespace,
    /// A PID namespace: the program sees only its own processes, and all die with its init.
    PidNamespace,
    /// Mount namespace with the read-only root and the scratch tmpfs.
    MountNamespace,
    /// An IPC namespace (no shared System V IPC or POSIX queues with the host).
    IpcNamespace,
    /// A UTS namespace (its own host and domain name).
    UtsNamespace,
    /// A network namespace with only an unconfigured loopback (no network).
    NetworkNamespace,
    /// The seccomp syscall filter.
    Seccomp,
}

impl Layer {
    /// Every layer, in probe and report order.
    pub const ALL: [Layer; 8] = [
        Layer::UnprivilegedUid,
        Layer::UserNamespace,
        Layer::PidNamespace,
        Layer::MountNamespace,
        Layer::IpcNamespace,
        Layer::UtsNamespace,
        Layer::NetworkNamespace,
        Layer::Seccomp,
    ];
    /// Layers without which untrusted code is refused (interfaces.md, "Sandbox").
    pub const REQUIRED: [Layer; 4] = [
        Layer::PidNamespace,
        Layer::MountNamespace,
        Layer::NetworkNamespace,
        Layer::UnprivilegedUid,
    ];

    /// Stable snake_case name (`pid_namespace`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::UnprivilegedUid => "unprivileged_uid",
            Layer::UserNamespace => "user_namespace",
            Layer::PidNamespace => "pid_namespace",
            Layer::MountNamespace => "mount_namespace",
            Layer::IpcNamespace => "ipc_namespace",
            Layer::UtsNamespace => "uts_namespace",
            Layer::NetworkNamespace => "network_namespace",
            Layer::Seccomp => "seccomp",
        }
    }
}

/// A layer's state on this machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LayerState {
    /// Which layer.
    pub layer: Layer,
    /// True when this machine grants it (the sandbox applies it).
    pub active: bool,
    /// Why it is missing, or how it is provided.
    pub detail: String,
}

/// What the kernel grants, probed once per process by spawning `true` under each layer.
#[derive(Clone, Debug, Serialize)]
pub struct Layers {
    /// Every layer's state, in [`Layer::ALL`] order.
    pub layers: Vec<LayerState>,
    /// Always applied: no_new_privs, capabilities dropped, rlimits, descriptors closed.
    pub always: Vec<&'static str>,
    #[serde(skip)]
    granted: Granted,
}

static LAYERS: OnceLock<Layers> = OnceLock::new();

impl Layers {
    /// The process-wide probe (a few milliseconds, once).
    pub fn probe() -> &'static Layers {
        LAYERS.get_or_init(Layers::detect)
    }

    fn detect() -> Layers {
        // SAFETY: trivial getters.
        let root = unsafe { libc::geteuid() } == 0;
        let probe = |g: Granted| -> std::result::Result<(), String> {
            let mut spec = SandboxSpec::new(true_path());
            spec.limits.processes = 4;
            for dir in system_dirs() {
                spec = spec.ro_bind_same(dir);
            }
            for (link, target) in system_links() {
                spec.symlinks.push((link, target));
            }
            let mut child = spec.spawn_with(g).map_err(|e| e.to_string())?;
            match child.wait() {
                Ok(s) if s.success() => Ok(()),
                Ok(s) => Err(format!("probe exited with {s}")),
                Err(e) => Err(e.to_string()),
            }
        };
        let mut reasons: Vec<(Layer, String)> = Vec::new();
        let mut g = Granted::default();
        if root {
            let t = Granted { setuid: true, ..Granted::default() };
            match probe(t) {
                Ok(()) => g.setuid = true,
                Err(e) => reasons.push((Layer::UnprivilegedUid, e)),
            }
        } else {
            let t = Granted { userns: true, ..Granted::default() };
            match probe(t) {
                Ok(()) => g.userns = true,
                Err(e) => {
                    reasons.push((Layer::UserNamespace, format!("user namespaces refused: {e}")));
                    reasons.push((
                        Layer::UnprivilegedUid,
                        "not root and no user namespace: the code would run as the caller's uid"
                            .into(),
                    ));
                }
            }
        }
        let base = g;
        let seccomp_built = filter_programs(true);
        if let Err(e) = &seccomp_built {
            reasons.push((Layer::Seccomp, e.clone()));
        }
        let mut try_layer = |layer: Layer, t: Granted, set: &mut bool| match probe(t) {
            Ok(()) => *set = true,
            Err(e) => reasons.push((layer, e)),
        };
        let mut r = Granted::default();
        try_layer(Layer::PidNamespace, Granted { pid: true, ..base }, &mut r.pid);
        try_layer(Layer::MountNamespace, Granted { mount: true, ..base }, &mut r.mount);
        try_layer(Layer::IpcNamespace, Granted { ipc: true, ..base }, &mut r.ipc);
        try_layer(Layer::UtsNamespace, Granted { uts: true, ..base }, &mut r.uts);
        try_layer(Layer::NetworkNamespace, Granted { net: true, ..base }, &mut r.net);
        if seccomp_built.is_ok() {
            try_layer(Layer::Seccomp, Granted { seccomp: true, ..base }, &mut r.seccomp);
        }
        g.pid = r.pid;
        g.mount = r.mount;
        g.ipc = r.ipc;
        g.uts = r.uts;
        g.net = r.net;
        g.seccomp = r.seccomp;
        if let Err(e) = probe(g) {
            // Each layer works alone but not together: report everything but identity missing.
            let why = format!("the layers fail together: {e}");
            for l in [
                Layer::PidNamespace,
                Layer::MountNamespace,
                Layer::IpcNamespace,
                Layer::UtsNamespace,
                Layer::NetworkNamespace,
                Layer::Seccomp,
            ] {
                reasons.push((l, why.clone()));
            }
            g = base;
        }
        let layers = Layer::ALL
            .iter()
            .map(|&layer| {
                let reason = reasons.iter().find(|(l, _)| *l == layer).map(|(_, r)| r.clone());
                let active = match layer {
                    Layer::UnprivilegedUid => g.setuid || g.userns,
                    Layer::UserNamespace => g.userns,
                    Layer::PidNamespace => g.pid,
                    Layer::MountNamespace => g.mount,
                    Layer::IpcNamespace => g.ipc,
                    Layer::UtsNamespace => g.uts,
                    Layer::NetworkNamespace => g.net,
                    Layer::Seccomp => g.seccomp,
                };
                let detail = match (active, layer, reason) {
                    (true, Layer::UnprivilegedUid, _) if g.setuid => {
                        format!("dedicated uid per sandbox from {DEDICATED_UID_BASE}")
                    }
                    (true, Layer::UnprivilegedUid, _) => "uid 1000 in a user namespace".into(),
                    (true, _, _) => "active".into(),
                    (false, Layer::UserNamespace, None) if root => {
                        "not used: running as root, a dedicated uid is used instead".into()
                    }
                    (false, _, Some(r)) => r,
                    (false, _, None) => "missing".into(),
                };
                LayerState { layer, active, detail }
            })
            .collect();
        Layers {
            layers,
            always: vec![
                "no_new_privs",
                "capabilities_dropped",
                "rlimits",
                "descriptors_closed",
                "cleared_environment",
            ],
            granted: g,
        }
    }

    /// Whether `layer` is active.
    pub fn is_active(&self, layer: Layer) -> bool {
        self.layers.iter().any(|s| s.layer == layer && s.active)
    }

    /// Required layers that are missing (empty when the sandbox is complete).
    pub fn missing_required(&self) -> Vec<Layer> {
        Layer::REQUIRED.into_iter().filter(|&l| !self.is_active(l)).collect()
    }

    /// Names of the active layers, in [`Layer::ALL`] order.
    pub fn active_names(&self) -> Vec<&'static str> {
        self.layers.iter().filter(|s| s.active).map(|s| s.layer.as_str()).collect()
    }

    /// `None` when untrusted code may run; otherwise the one-line reason it may not
    /// (naming what is missing), also used as the warning under `--allow-weak-sandbox`.
    pub fn refusal(&self) -> Option<String> {
        let missing = self.missing_required();
        if missing.is_empty() {
            return None;
        }
        let names: Vec<String> = missing
            .iter()
            .map(|l| {
                let d = self.layers.iter().find(|s| s.layer == *l).map(|s| s.detail.as_str());
                format!("{} ({})", l.as_str(), d.unwrap_or("missing"))
            })
            .collect();
        Some(format!("sandbox layers missing: {}", names.join(", ")))
    }

    /// JSON for `envs check --json` and the run manifest:
    /// `{"complete": bool, "weak_allowed": bool, "active": [...], "missing": [...],
    /// "layers": [{"layer", "active", "detail"}], "always": [...]}`.
    pub fn to_json(&self) -> serde_json::Value {
        let missing: Vec<&str> = self
            .layers
            .iter()
            .filter(|s| !s.active)
            // As root the user namespace is not used (a dedicated uid replaces it).
            .filter(|s| !(s.layer == Layer::UserNamespace && self.granted.setuid))
            .map(|s| s.layer.as_str())
            .collect();
        serde_json::json!({
            "complete": self.missing_required().is_empty(),
            "weak_allowed": allow_weak(),
            "active": self.active_names(),
            "missing": missing,
            "layers": self.layers,
            "always": self.always,
        })
    }
}

fn true_path() -> PathBuf {
    ["/usr/bin/true", "/bin/true"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/bin/true"))
}

/// Top-level host directories programs need (`/usr` and whichever `/lib*`, `/bin` are real
/// directories rather than links into `/usr`).
fn system_dirs() -> Vec<PathBuf> {
    ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"]
        .iter()
        .map(PathBuf::from)
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
        .collect()
}

/// `(link, target)` for the top-level links into `/usr` (merged-usr systems).
fn system_links() -> Vec<(PathBuf, PathBuf)> {
    ["/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"]
        .iter()
        .map(PathBuf::from)
        .filter_map(|p| std::fs::read_link(&p).ok().map(|t| (p, t)))
        .collect()
}

fn filter_programs(allow_fork: bool) -> std::result::Result<&'static filter::Programs, String> {
    static WITH_FORK: OnceLock<std::result::Result<filter::Programs, String>> = OnceLock::new();
    static NO_FORK: OnceLock<std::result::Result<filter::Programs, String>> = OnceLock::new();
    let cell = if allow_fork { &WITH_FORK } else { &NO_FORK };
    cell.get_or_init(|| filter::build(allow_fork)).as_ref().map_err(Clone::clone)
}

// ---------------------------------------------------------------------------------------------
// Spec and handle

/// Resource limits of one sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `RLIMIT_AS` of every process, bytes.
    pub address_space: u64,
    /// `RLIMIT_CPU`, seconds of CPU per process.
    pub cpu_secs: u64,
    /// `RLIMIT_FSIZE`: the largest file, bytes.
    pub file_size: u64,
    /// `RLIMIT_NOFILE`.
    pub open_files: u64,
    /// Processes and threads the program may have at once, itself included (`RLIMIT_NPROC`
    /// on the sandbox's own uid).
    pub processes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            address_space: 512 << 20,
            cpu_secs: 30,
            file_size: 16 << 20,
            open_files: 64,
            processes: 4,
        }
    }
}

/// One sandboxed process to start (builder style; see the module doc).
#[derive(Clone, Debug)]
pub struct SandboxSpec {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    /// `(host, inside)` read-only binds; `dev` binds keep device nodes usable.
    binds: Vec<(PathBuf, PathBuf, bool)>,
    /// `(link, target)` symlinks inside the root.
    symlinks: Vec<(PathBuf, PathBuf)>,
    /// Bytes of the scratch tmpfs.
    pub scratch_bytes: u64,
    /// Inodes of the scratch tmpfs.
    pub scratch_inodes: u64,
    /// The resource limits (rlimits) of the program's processes.
    pub limits: Limits,
    /// `false`: `fork`/`vfork`/`clone` without `CLONE_THREAD` are refused (package workers).
    pub allow_fork: bool,
    /// Hand the program one end of a UNIX socket pair ([`SandboxChild::protocol`]); its
    /// descriptor number is in the program's `AGENTGEN_PROTOCOL_FD`.
    pub protocol_channel: bool,
}

impl SandboxSpec {
    /// A spec for `program` (absolute; it must be visible inside, e.g. under a bind).
    pub fn new(program: impl Into<PathBuf>) -> Self {
        SandboxSpec {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            binds: Vec::new(),
            symlinks: Vec::new(),
            scratch_bytes: 64 << 20,
            scratch_inodes: 4096,
            limits: Limits::default(),
            allow_fork: true,
            protocol_channel: false,
        }
    }
    /// Append one argument to the program's command line.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_owned());
        self
    }
    /// Append arguments to the program's command line.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }
    /// Set one environment variable (the environment starts empty).
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.env.push((k.as_ref().to_owned(), v.as_ref().to_owned()));
        self
    }
    /// Bind host path `host` read-only at `inside` (a directory or a file).
    pub fn ro_bind(mut self, host: impl Into<PathBuf>, inside: impl Into<PathBuf>) -> Self {
        self.binds.push((host.into(), inside.into(), false));
        self
    }
    /// Bind `path` read-only at the same path.
    pub fn ro_bind_same(self, path: impl Into<PathBuf>) -> Self {
        let p = path.into();
        self.ro_bind(p.clone(), p)
    }
    /// Bind a device node (e.g. `/dev/null`) read-only, keeping it usable.
    pub fn dev_bind(mut self, path: impl Into<PathBuf>) -> Self {
        let p = path.into();
        self.binds.push((p.clone(), p, true));
        self
    }
    /// A symlink `link -> target` inside the root.
    pub fn symlink(mut self, link: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Self {
        self.symlinks.push((link.into(), target.into()));
        self
    }
    /// Set the resource limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
    /// Set the size of the scratch tmpfs, in bytes.
    pub fn scratch_bytes(mut self, bytes: u64) -> Self {
        self.scratch_bytes = bytes;
        self
    }
    /// Allow or refuse new processes (the `allow_fork` field).
    pub fn allow_fork(mut self, allow: bool) -> Self {
        self.allow_fork = allow;
        self
    }
    /// Ask for a protocol channel or not (the `protocol_channel` field).
    pub fn protocol_channel(mut self, on: bool) -> Self {
        self.protocol_channel = on;
        self
    }

    /// Start the program under every layer this machine grants. Refused with
    /// [`Error::Sandbox`] when a required layer is missing and weak sandboxes are not allowed.
    pub fn spawn(&self) -> Result<SandboxChild> {
        let layers = Layers::probe();
        if let Some(why) = layers.refusal()
            && !allow_weak()
        {
            return Err(Error::Sandbox {
                reason: format!("{why}; pass --allow-weak-sandbox to run untrusted code anyway"),
            });
        }
        self.spawn_retrying(layers.granted)
    }

    /// [`SandboxSpec::spawn_with`], retried on the next dedicated uid when the kernel says
    /// `EAGAIN` (another process of that uid is still alive: `RLIMIT_NPROC` is per uid).
    fn spawn_retrying(&self, g: Granted) -> Result<SandboxChild> {
        let mut last = None;
        for _ in 0..8 {
            match self.spawn_with(g) {
                Err(Error::Sandbox { reason }) if g.setuid && reason.contains("os error 11") => {
                    last = Some(Error::Sandbox { reason });
                }
                other => return other,
            }
        }
        Err(last.unwrap_or(Error::Sandbox { reason: "no uid left to spawn on".into() }))
    }

    /// Benchmarks only: start with just `layers` (those the machine grants), without the
    /// weak-sandbox check. BENCHMARKS.md measures each layer's cost with it.
    #[doc(hidden)]
    pub fn spawn_with_only(&self, layers: &[Layer]) -> Result<SandboxChild> {
        let all = Layers::probe().granted;
        let on = |l: Layer| layers.contains(&l);
        let g = Granted {
            userns: all.userns && (on(Layer::UserNamespace) || on(Layer::UnprivilegedUid)),
            setuid: all.setuid && on(Layer::UnprivilegedUid),
            pid: all.pid && on(Layer::PidNamespace),
            mount: all.mount && on(Layer::MountNamespace),
            ipc: all.ipc && on(Layer::IpcNamespace),
            uts: all.uts && on(Layer::UtsNamespace),
            net: all.net && on(Layer::NetworkNamespace),
            seccomp: all.seccomp && on(Layer::Seccomp),
        };
        self.spawn_retrying(g)
    }

    fn spawn_with(&self, g: Granted) -> Result<SandboxChild> {
        let err = |reason: String| Error::Sandbox { reason };
        let cstr =
            |p: &OsStr| CString::new(p.as_bytes()).map_err(|_| err(format!("NUL in path {p:?}")));
        // SAFETY: trivial getters.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let n = (uid_offset() + NEXT_UID.fetch_add(1, Ordering::Relaxed)) % DEDICATED_UIDS;
        let uid = DEDICATED_UID_BASE + n;
        // The staging dir is shadowed by the new root, so it must not hold a bind source.
        let staging: PathBuf = ["/tmp", "/mnt", "/media", "/srv", "/opt", "/var/tmp", "/boot"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_dir() && !self.binds.iter().any(|(h, _, _)| h.starts_with(p)))
            .ok_or_else(|| err("no directory to stage the sandbox root on".into()))?;
        let inside = |p: &Path| -> Result<PathBuf> {
            if !p.is_absolute() {
                return Err(err(format!("sandbox path {} is not absolute", p.display())));
            }
            Ok(staging.join(p.strip_prefix("/").unwrap_or(p)))
        };
        let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
        let add_parents = |p: &Path, dirs: &mut BTreeSet<PathBuf>| {
            for a in p.ancestors().skip(1) {
                if a != Path::new("/") && a.as_os_str() != OsStr::new("") {
                    dirs.insert(a.to_owned());
                }
            }
        };
        let mut files = Vec::new();
        let mut binds = Vec::new();
        for (host, at, dev) in &self.binds {
            let meta = std::fs::metadata(host)
                .map_err(|e| err(format!("bind source {}: {e}", host.display())))?;
            add_parents(at, &mut dirs);
            if meta.is_dir() {
                dirs.insert(at.clone());
            } else {
                files.push(cstr(inside(at)?.as_os_str())?);
            }
            binds.push(BindPlan {
                src: cstr(host.as_os_str())?,
                dst: cstr(inside(at)?.as_os_str())?,
                flags: locked_flags(host) | if *dev { 0 } else { libc::MS_NODEV },
            });
        }
        let mut symlinks = Vec::new();
        for (link, target) in &self.symlinks {
            add_parents(link, &mut dirs);
            symlinks.push((cstr(target.as_os_str())?, cstr(inside(link)?.as_os_str())?));
        }
        let scratch = PathBuf::from(SCRATCH_DIR);
        dirs.insert(scratch.clone());
        let dirs = dirs
            .iter()
            .map(|d| inside(d).and_then(|p| cstr(p.as_os_str())))
            .collect::<Result<Vec<_>>>()?;
        let owner = if g.setuid { format!(",uid={uid},gid={uid}") } else { String::new() };
        // Without a mount namespace the program works in a private host directory.
        let host_dir = if g.mount {
            None
        } else {
            let d = tempfile::Builder::new()
                .prefix("agentgen-sandbox-")
                .tempdir()
                .map_err(|source| Error::Io { context: "creating sandbox dir".into(), source })?;
            if g.setuid {
                std::os::unix::fs::chown(d.path(), Some(uid), Some(uid))
                    .map_err(|source| Error::Io { context: "chown sandbox dir".into(), source })?;
            }
            Some(d)
        };
        let cwd = match &host_dir {
            Some(d) => cstr(d.path().as_os_str())?,
            None => cstr(scratch.as_os_str())?,
        };
        let protocol = if self.protocol_channel {
            let (ours, theirs) = UnixStream::pair()
                .map_err(|source| Error::Io { context: "protocol socket".into(), source })?;
            Some((ours, OwnedFd::from(theirs)))
        } else {
            None
        };
        let protocol_fd = protocol.as_ref().map_or(-1, |(_, fd)| fd.as_raw_fd());
        let lim = &self.limits;
        // P1 and the namespace's init share the program's uid in a user namespace.
        let overhead = if g.userns && g.pid { 2 } else { 0 };
        let mut rlimits = vec![
            (libc::RLIMIT_AS, lim.address_space),
            (libc::RLIMIT_CPU, lim.cpu_secs.max(1)),
            (libc::RLIMIT_FSIZE, lim.file_size),
            (libc::RLIMIT_NOFILE, lim.open_files.max(8)),
            (libc::RLIMIT_CORE, 0),
            (libc::RLIMIT_MEMLOCK, 0),
            (libc::RLIMIT_MSGQUEUE, 0),
        ];
        // RLIMIT_NPROC counts every process of the real uid: only meaningful (and only safe
        // for the orchestrator) when the sandbox has a uid of its own.
        if g.setuid || g.userns {
            rlimits.push((libc::RLIMIT_NPROC, u64::from(lim.processes.max(1)) + overhead));
        }
        let programs =
            if g.seccomp { Some(filter_programs(self.allow_fork).map_err(err)?) } else { None };
        let plan = Plan {
            granted: g,
            maps: [
                (c"/proc/self/setgroups".into(), c"deny".into()),
                (c"/proc/self/uid_map".into(), cstr(OsStr::new(&format!("1000 {euid} 1\n")))?),
                (c"/proc/self/gid_map".into(), cstr(OsStr::new(&format!("1000 {egid} 1\n")))?),
            ],
            staging: cstr(staging.as_os_str())?,
            root_opts: c"size=1m,nr_inodes=4096,mode=0755".into(),
            dirs,
            files,
            symlinks,
            binds,
            scratch_dst: cstr(inside(&scratch)?.as_os_str())?,
            scratch_opts: cstr(OsStr::new(&format!(
                "size={},nr_inodes={},mode=0700{owner}",
                self.scratch_bytes.max(4096),
                self.scratch_inodes.max(16)
            )))?,
            cwd,
            hostname: b"sandbox",
            uid,
            gid: uid,
            rlimits,
            protocol_fd,
            programs,
            parent: std::process::id() as libc::pid_t,
        };
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if protocol_fd >= 0 {
            cmd.env(PROTOCOL_FD_ENV, protocol_fd.to_string());
        }
        // SAFETY: `Plan::enter` only makes async-signal-safe syscalls on data prepared above.
        unsafe {
            cmd.pre_exec(move || plan.enter());
        }
        let mut child = on_spawner_thread(move || cmd.spawn())
            .unwrap_or_else(|| Err(std::io::Error::other("the sandbox spawner thread is gone")))
            .map_err(|e| err(format!("starting {} sandboxed: {e}", self.program.display())))?;
        let (protocol, _theirs) = match protocol {
            Some((ours, theirs)) => (Some(ours), Some(theirs)),
            None => (None, None),
        };
        Ok(SandboxChild {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            protocol,
            child,
            reaped: false,
            _host_dir: host_dir,
        })
    }
}

/// Flags of the mount holding `path` that a read-only remount in a user namespace must keep.
fn locked_flags(path: &Path) -> libc::c_ulong {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return 0 };
    // SAFETY: valid path and out-pointer.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    let f = st.f_flag;
    let mut out = 0;
    for (st_flag, ms) in [
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if f & st_flag != 0 {
            out |= ms;
        }
    }
    out
}

/// A running sandbox. Dropping it kills the whole sandbox (its PID namespace, or its process
/// group when the PID namespace is missing) and reaps it.
#[derive(Debug)]
pub struct SandboxChild {
    /// The program's stdin (a pipe), until taken.
    pub stdin: Option<ChildStdin>,
    /// The program's stdout (a pipe), until taken.
    pub stdout: Option<ChildStdout>,
    /// The program's stderr (a pipe), until taken.
    pub stderr: Option<ChildStderr>,
    /// The orchestrator's end of the protocol channel, when asked for.
    pub protocol: Option<UnixStream>,
    child: Child,
    reaped: bool,
    _host_dir: Option<tempfile::TempDir>,
}

impl SandboxChild {
    /// Host pid of the sandbox's outer process.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Kill everything in the sandbox now (idempotent).
    pub fn kill(&mut self) {
        if self.reaped {
            return;
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: the outer process is not reaped yet, so its pid (and its process group,
        // which it leads) still name our sandbox.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
            libc::kill(pid, libc::SIGKILL);
        }
    }

    /// Wait for the program to end; whatever it left behind is killed.
    pub fn wait(&mut self) -> Result<ExitStatus> {
        // SAFETY: waitid with WNOWAIT leaves the child reapable; valid out-pointer.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            while libc::waitid(
                libc::P_PID,
                self.child.id() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            ) != 0
            {
                if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                    break;
                }
            }
        }
        self.kill();
        let s = self
            .child
            .wait()
            .map_err(|source| Error::Io { context: "waiting for sandbox".into(), source })?;
        self.reaped = true;
        Ok(s)
    }

    /// `Some(status)` once the program has ended (then everything else is killed too).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        // SAFETY: as in `wait`, with WNOHANG.
        let ended = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let r = libc::waitid(
                libc::P_PID,
                self.child.id() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
            );
            r == 0 && info.si_pid() != 0
        };
        if ended || self.reaped { self.wait().map(Some) } else { Ok(None) }
    }
}

impl Drop for SandboxChild {
    fn drop(&mut self) {
        self.kill();
        if !self.reaped {
            let _ = self.child.wait();
            self.reaped = true;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The code interpreter

/// Limits of one code-interpreter run.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Wall-clock limit; the sandbox is killed when it passes.
    pub timeout: Duration,
    /// `RLIMIT_AS` in bytes, per process.
    pub memory_bytes: u64,
    /// Bytes of stdout and of stderr kept (the rest is dropped and `truncated` set).
    pub max_output_bytes: usize,
    /// `RLIMIT_FSIZE` in bytes: the largest file the code may write.
    pub max_file_bytes: u64,
    /// Size of the scratch tmpfs (all files together).
    pub scratch_bytes: u64,
    /// Processes and threads at once, the interpreter included.
    pub max_processes: u32,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            timeout: Duration::from_secs(10),
            memory_bytes: 512 << 20,
            max_output_bytes: 16 << 10,
            max_file_bytes: 16 << 20,
            scratch_bytes: 32 << 20,
            max_processes: 4,
        }
    }
}

/// What a run produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutput {
    /// What the program wrote to stdout (lossy UTF-8, at most `max_output_bytes`).
    pub stdout: String,
    /// What it wrote to stderr (lossy UTF-8, capped likewise), plus a `TimeoutError` line
    /// after a timeout.
    pub stderr: String,
    /// The exit status; `None` when killed by a signal (timeout, memory, CPU limit).
    pub exit_code: Option<i32>,
    /// True when the run passed its wall-clock limit and was killed.
    pub timed_out: bool,
    /// Output beyond `max_output_bytes` was dropped.
    pub truncated: bool,
}

impl RunOutput {
    /// True when the program exited with status 0 within the time limit.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
}

/// A located Python interpreter and what it needs inside the sandbox.
#[derive(Clone, Debug)]
pub struct Sandbox {
    python: PathBuf,
    /// Host directories bound read-only at the same path (system dirs, Python prefixes).
    binds: Vec<PathBuf>,
    links: Vec<(PathBuf, PathBuf)>,
    config: SandboxConfig,
}

/// Runs before the user's code (`python -S -B -c BOOT MODE`): reads the files and the code
/// from stdin into the working directory, installs the socket guard when the network
/// namespace is missing, and runs `main.py` as `__main__`, hiding this frame from tracebacks.
const BOOT: &str = r#"import sys
def _boot():
    b = sys.stdin.buffer
    for _ in range(int(b.readline())):
        name = b.readline()[:-1].decode("utf-8")
        data = b.read(int(b.readline()))
        with open(name, "wb") as f:
            f.write(data)
_boot()
del _boot
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
    /// The process-wide interpreter with default limits, detected once: `Err(reason)` when no
    /// usable `python3` exists (the code family is then unavailable with that reason).
    pub fn shared() -> std::result::Result<&'static Sandbox, String> {
        DEFAULT
            .get_or_init(|| Sandbox::detect("python3", SandboxConfig::default()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Locate `python` (a command name looked up on `PATH`, or a path), resolve it to the real
    /// executable (version-manager shims are slow shell scripts) and its installation
    /// prefixes. `Err(reason)` when Python cannot be run.
    pub fn detect(python: &str, config: SandboxConfig) -> std::result::Result<Sandbox, String> {
        let out = Command::new(python)
            .args([
                "-S",
                "-c",
                "import sys; print(sys.version_info[0]); print(sys.executable); [print(p) for p in {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix}]",
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|e| format!("python3 not found or not runnable ({python}: {e}); the code interpreter needs python3 on PATH"))?;
        if !out.status.success() {
            return Err(format!("{python} exited with {} when probed", out.status));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines().map(str::trim);
        if lines.next() != Some("3") {
            return Err(format!("{python} is not Python 3"));
        }
        let exe = lines.next().unwrap_or_default();
        let python = if exe.is_empty() { PathBuf::from(python) } else { PathBuf::from(exe) };
        let python = std::fs::canonicalize(&python).unwrap_or(python);
        let mut binds = system_dirs();
        let prefixes: Vec<PathBuf> = lines
            .filter(|l| !l.is_empty())
            .map(|l| std::fs::canonicalize(l).unwrap_or_else(|_| PathBuf::from(l)))
            .chain(python.parent().map(Path::to_owned))
            .collect();
        let links = system_links();
        for p in prefixes {
            let covered = binds.iter().any(|b| p.starts_with(b))
                || links.iter().any(|(l, _)| p.starts_with(l));
            if !covered && p.is_absolute() && p.is_dir() {
                binds.push(p);
            }
        }
        Ok(Sandbox { python, binds, links, config })
    }

    /// A copy with other limits (same interpreter).
    pub fn with_config(&self, config: SandboxConfig) -> Sandbox {
        Sandbox { config, ..self.clone() }
    }

    /// The limits this sandbox runs code under.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// The resolved interpreter.
    pub fn python(&self) -> &Path {
        &self.python
    }

    /// The layers this machine grants (same for every sandbox of the process).
    pub fn layers(&self) -> &'static Layers {
        Layers::probe()
    }

    /// A spec that runs this interpreter: the Python installation, `/etc/ld.so.cache` and the
    /// basic device nodes bound read-only, a clean environment (`PATH`, `HOME`/`TMPDIR` =
    /// the scratch dir, `LC_ALL=C.UTF-8`, `TZ=UTC`, `PYTHONHASHSEED=0`,
    /// `PYTHONDONTWRITEBYTECODE=1`, `PYTHONIOENCODING=utf-8`) and no arguments yet. Package
    /// workers add their package directory with [`SandboxSpec::ro_bind`].
    pub fn python_spec(&self) -> SandboxSpec {
        let mut spec = SandboxSpec::new(&self.python);
        for b in &self.binds {
            spec = spec.ro_bind_same(b);
        }
        for (l, t) in &self.links {
            spec = spec.symlink(l, t);
        }
        if Path::new("/etc/ld.so.cache").is_file() {
            spec = spec.ro_bind_same("/etc/ld.so.cache");
        }
        for d in ["/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"] {
            if Path::new(d).exists() {
                spec = spec.dev_bind(d);
            }
        }
        spec.env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", SCRATCH_DIR)
            .env("TMPDIR", SCRATCH_DIR)
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8")
            .env("TZ", "UTC")
            .env("PYTHONHASHSEED", "0")
            .env("PYTHONIOENCODING", "utf-8")
            .env("PYTHONDONTWRITEBYTECODE", "1")
    }

    /// Run `code` as `main.py` in a fresh scratch directory holding `files` (name, bytes).
    /// `Err` only for infrastructure failures (spawn, a refused weak sandbox); the code's own
    /// failures, timeouts and limit hits are in the [`RunOutput`].
    pub fn run(&self, code: &str, files: &[(String, Vec<u8>)]) -> Result<RunOutput> {
        for (name, _) in files {
            if name.contains('/') || name.starts_with('.') || name.is_empty() || name.contains('\n')
            {
                return Err(Error::Sandbox { reason: format!("bad sandbox file name {name:?}") });
            }
        }
        let cfg = &self.config;
        let net = Layers::probe().is_active(Layer::NetworkNamespace);
        let spec = self
            .python_spec()
            .args(["-S", "-B", "-c", BOOT, if net { "ns" } else { "guard" }])
            .scratch_bytes(cfg.scratch_bytes)
            .limits(Limits {
                address_space: cfg.memory_bytes,
                cpu_secs: cfg.timeout.as_secs() + 2,
                file_size: cfg.max_file_bytes,
                open_files: 64,
                processes: cfg.max_processes,
            });
        let mut input = Vec::with_capacity(code.len() + 64);
        input.extend_from_slice(format!("{}\n", files.len() + 1).as_bytes());
        for (name, bytes) in files
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .chain([("main.py", code.as_bytes())])
        {
            input.extend_from_slice(format!("{name}\n{}\n", bytes.len()).as_bytes());
            input.extend_from_slice(bytes);
        }
        let mut child = spec.spawn()?;
        let cap = cfg.max_output_bytes;
        let (tx, rx) = mpsc::channel();
        if let Some(mut stdin) = child.stdin.take() {
            std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            });
        }
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
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if start.elapsed() >= cfg.timeout {
                timed_out = true;
                break None;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        };
        let status = match status {
            Some(s) => s,
            None => {
                child.kill();
                child.wait()?
            }
        };
        let (mut stdout, mut stderr, mut truncated) = (Vec::new(), Vec::new(), false);
        for _ in 0..2 {
            // The pipes close when the sandbox is gone; with the PID namespace missing, a
            // process that escaped the group cannot hold us for long.
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
                cfg.timeout.as_secs_f64()
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
