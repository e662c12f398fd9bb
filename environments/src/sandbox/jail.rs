//! The child side of the sandbox: the plan that the parent prepares (every path and option as a
//! `CString`, the seccomp programs, the rlimits) and the code that runs between `fork` and
//! `exec`. Everything in [`Plan::enter`] runs in a forked copy of a multi-threaded process, so
//! it only makes raw, async-signal-safe syscalls on data prepared before the fork: no
//! allocation, no locks, no `std` I/O.
//!
//! Process layout (`P1` is the child `std::process::Command` forks; it stays outside the new
//! PID namespace):
//!
//! ```text
//! orchestrator ─ P1: setsid, unshare(user?, pid, mount, ipc, uts, net), uid/gid maps
//!                 └─ C  (PID 1 of the new namespace): mounts, pivot_root, hostname;
//!                     │   waits for C2, reports its status to P1, exits => kernel kills the rest
//!                     └─ C2: rlimits, uid switch, caps dropped, fds closed, no_new_privs,
//!                            seccomp, exec(program)
//! ```
//!
//! `P1` and `C` close every descriptor (so the program's pipes end when the program's
//! namespace ends) and are non-dumpable; `P1` dies with the orchestrator and `C` with `P1`
//! (`PR_SET_PDEATHSIG`; `P1` is forked from one long-lived spawner thread, since the signal
//! follows the forking thread), and when `C`
//! (the namespace's init) exits the kernel kills every process left in the namespace. Killing
//! `P1` (what the handle does on drop) therefore ends everything.

use std::ffi::{CStr, CString};
use std::io;

use libc::{c_int, c_ulong};

use super::filter::Programs;

/// The namespace/identity layers a spawn uses (decided by the probe and the spec).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Granted {
    /// A new user namespace with a one-uid map (unprivileged callers).
    pub userns: bool,
    /// `setuid` to a dedicated uid after setup (root callers without a user namespace).
    pub setuid: bool,
    pub pid: bool,
    pub mount: bool,
    pub ipc: bool,
    pub uts: bool,
    pub net: bool,
    pub seccomp: bool,
}

impl Granted {
    fn ns_flags(&self) -> c_int {
        let mut f = 0;
        if self.userns {
            f |= libc::CLONE_NEWUSER;
        }
        if self.pid {
            f |= libc::CLONE_NEWPID;
        }
        if self.mount {
            f |= libc::CLONE_NEWNS;
        }
        if self.ipc {
            f |= libc::CLONE_NEWIPC;
        }
        if self.uts {
            f |= libc::CLONE_NEWUTS;
        }
        if self.net {
            f |= libc::CLONE_NEWNET;
        }
        f
    }
}

/// One read-only bind mount, both paths absolute (`dst` already prefixed with the staging dir).
pub(crate) struct BindPlan {
    pub src: CString,
    pub dst: CString,
    /// Extra flags for the read-only remount (locked flags of the source mount, `MS_NODEV`).
    pub flags: c_ulong,
}

/// Everything the child needs, prepared by the parent.
pub(crate) struct Plan {
    pub granted: Granted,
    /// `/proc/self/setgroups`, `/proc/self/uid_map`, `/proc/self/gid_map` and their contents.
    pub maps: [(CString, CString); 3],
    /// Where the new root tmpfs is mounted before `pivot_root` (an existing host directory,
    /// shadowed only inside the private mount namespace).
    pub staging: CString,
    pub root_opts: CString,
    /// Directories (staging-prefixed) to create, parents first.
    pub dirs: Vec<CString>,
    /// Empty files (staging-prefixed) to create as mount points for file binds.
    pub files: Vec<CString>,
    /// `(target, link)` symlinks to create (link staging-prefixed).
    pub symlinks: Vec<(CString, CString)>,
    pub binds: Vec<BindPlan>,
    pub scratch_dst: CString,
    pub scratch_opts: CString,
    /// The working directory of the program (inside the new root, or a host dir when the
    /// mount layer is missing).
    pub cwd: CString,
    pub hostname: &'static [u8],
    /// Dedicated uid/gid for [`Granted::setuid`].
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub rlimits: Vec<(libc::__rlimit_resource_t, u64)>,
    /// The protocol channel's descriptor (kept open across `exec`), or -1.
    pub protocol_fd: c_int,
    pub programs: Option<&'static Programs>,
    /// The orchestrator's pid: `P1` exits at once if its parent is already gone.
    pub parent: libc::pid_t,
}

const CLOSE_RANGE_CLOEXEC: c_int = 1 << 2;

fn check(r: c_int) -> io::Result<c_int> {
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

fn errno() -> c_int {
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// `close_range(first, last, flags)`; falls back to a loop on kernels without it.
unsafe fn close_range(first: u32, last: u32, flags: c_int) {
    if first > last {
        return;
    }
    // SAFETY: plain syscall with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) };
    if r != 0 {
        let end = last.min(4095);
        for fd in first..=end {
            // SAFETY: closing or flagging descriptors of this process.
            unsafe {
                if flags & CLOSE_RANGE_CLOEXEC != 0 {
                    libc::fcntl(fd as c_int, libc::F_SETFD, libc::FD_CLOEXEC);
                } else {
                    libc::close(fd as c_int);
                }
            }
        }
    }
}

/// Close every descriptor except `keep` (or all when `keep < 0`).
unsafe fn close_all_but(keep: c_int) {
    // SAFETY: see close_range.
    unsafe {
        if keep < 0 {
            close_range(0, u32::MAX, 0);
        } else {
            if keep > 0 {
                close_range(0, keep as u32 - 1, 0);
            }
            close_range(keep as u32 + 1, u32::MAX, 0);
        }
    }
}

unsafe fn write_file(path: &CStr, data: &CStr) -> io::Result<()> {
    // SAFETY: valid NUL-terminated path; buffer valid for its length.
    unsafe {
        let fd = check(libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC))?;
        let bytes = data.to_bytes();
        let n = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        let e = errno();
        libc::close(fd);
        if n != bytes.len() as isize {
            return Err(io::Error::from_raw_os_error(e));
        }
    }
    Ok(())
}

unsafe fn mount(
    src: *const libc::c_char,
    dst: &CStr,
    fstype: *const libc::c_char,
    flags: c_ulong,
    data: *const libc::c_char,
) -> io::Result<()> {
    // SAFETY: pointers are NUL-terminated strings or null.
    check(unsafe { libc::mount(src, dst.as_ptr(), fstype, flags, data.cast()) }).map(|_| ())
}

/// Wait for `pid`, retrying on EINTR; returns the raw wait status.
unsafe fn wait_for(pid: libc::pid_t) -> c_int {
    let mut status = 0;
    loop {
        // SAFETY: valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r == pid {
            return status;
        }
        if r < 0 && errno() != libc::EINTR {
            return 0x7f00; // "exited 127": nothing to wait for
        }
    }
}

/// End this process the way the raw wait `status` ended the program.
unsafe fn exit_like(status: c_int) -> ! {
    // SAFETY: async-signal-safe calls on this process.
    unsafe {
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
            libc::_exit(128 + sig);
        }
        libc::_exit(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 127 })
    }
}

impl Plan {
    /// Runs in the forked child (`P1`); returns in `C2`, which then `exec`s. `P1` and `C`
    /// never return. `Err` is reported by `std` to the parent's `spawn`.
    ///
    /// # Safety
    /// Only between `fork` and `exec` (a `pre_exec` closure).
    pub(crate) unsafe fn enter(&self) -> io::Result<()> {
        let g = self.granted;
        // SAFETY: raw syscalls on prepared data; see the module doc.
        unsafe {
            // P1 dies with the orchestrator (forked from its long-lived spawner thread), so a
            // `kill -9` of the orchestrator ends the sandbox too; the parent may already be gone.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            if libc::getppid() != self.parent {
                libc::_exit(1);
            }
            let core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::setrlimit(libc::RLIMIT_CORE, &core);
            // A session and process group of its own: the handle kills the group (P1 and C;
            // without a PID namespace also everything the program starts that stays in it).
            check(libc::setsid())?;
            let flags = g.ns_flags();
            if flags != 0 {
                check(libc::unshare(flags))?;
            }
            if g.userns {
                for (path, data) in &self.maps {
                    write_file(path, data)?;
                }
            }
            // Nothing of the orchestrator's copy in this process is readable from the sandbox.
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
            let mut status_w = -1;
            if g.pid {
                let mut fds = [0; 2];
                check(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC))?;
                let pid = check(libc::fork())?;
                if pid > 0 {
                    // P1: wait for the namespace's init and end like the program did.
                    close_all_but(fds[0]);
                    let own = wait_for(pid);
                    let mut buf = [0u8; 4];
                    let n = libc::read(fds[0], buf.as_mut_ptr().cast(), 4);
                    exit_like(if n == 4 { c_int::from_ne_bytes(buf) } else { own });
                }
                // C: PID 1 of the new namespace; dies with P1.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                libc::close(fds[0]);
                status_w = fds[1];
            }
            if g.mount {
                self.build_root()?;
            }
            if g.uts {
                libc::sethostname(self.hostname.as_ptr().cast(), self.hostname.len());
            }
            if g.pid {
                let pid = check(libc::fork())?;
                if pid > 0 {
                    // C as init: reap everything; when the program ends, report and exit,
                    // which kills whatever is left in the namespace.
                    close_all_but(status_w);
                    loop {
                        let mut status = 0;
                        let r = libc::waitpid(-1, &mut status, libc::__WALL);
                        if r == pid {
                            let b = status.to_ne_bytes();
                            libc::write(status_w, b.as_ptr().cast(), 4);
                            libc::_exit(0);
                        }
                        if r < 0 && errno() == libc::ECHILD {
                            libc::_exit(127);
                        }
                    }
                }
                libc::close(status_w);
                check(libc::setsid())?;
            }
            self.harden()
        }
    }

    /// Mount namespace: a fresh tmpfs root with read-only binds, the scratch tmpfs, pivot.
    unsafe fn build_root(&self) -> io::Result<()> {
        let null = std::ptr::null();
        let tmpfs = c"tmpfs".as_ptr();
        // SAFETY: prepared C strings; runs in the child's private mount namespace.
        unsafe {
            mount(null, c"/", null, libc::MS_REC | libc::MS_PRIVATE, null)?;
            mount(
                tmpfs,
                &self.staging,
                tmpfs,
                libc::MS_NOSUID | libc::MS_NODEV,
                self.root_opts.as_ptr(),
            )?;
            for d in &self.dirs {
                if libc::mkdir(d.as_ptr(), 0o755) != 0 && errno() != libc::EEXIST {
                    return Err(io::Error::last_os_error());
                }
            }
            for f in &self.files {
                let fd = check(libc::open(
                    f.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                ))?;
                libc::close(fd);
            }
            for (target, link) in &self.symlinks {
                if libc::symlink(target.as_ptr(), link.as_ptr()) != 0 && errno() != libc::EEXIST {
                    return Err(io::Error::last_os_error());
                }
            }
            for b in &self.binds {
                mount(b.src.as_ptr(), &b.dst, null, libc::MS_BIND, null)?;
                mount(
                    null,
                    &b.dst,
                    null,
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | b.flags,
                    null,
                )?;
            }
            mount(
                tmpfs,
                &self.scratch_dst,
                tmpfs,
                libc::MS_NOSUID | libc::MS_NODEV,
                self.scratch_opts.as_ptr(),
            )?;
            check(libc::chdir(self.staging.as_ptr()))?;
            check(libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as c_int)?;
            check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
            check(libc::chdir(c"/".as_ptr()))?;
            mount(
                null,
                c"/",
                null,
                libc::MS_BIND
                    | libc::MS_REMOUNT
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV,
                null,
            )?;
        }
        Ok(())
    }

    /// The program's own process: limits, identity, capabilities, descriptors, filters.
    unsafe fn harden(&self) -> io::Result<()> {
        let g = self.granted;
        // SAFETY: raw syscalls on prepared data.
        unsafe {
            for &(res, v) in &self.rlimits {
                let lim = libc::rlimit { rlim_cur: v as libc::rlim_t, rlim_max: v as libc::rlim_t };
                check(libc::setrlimit(res, &lim))?;
            }
            // Drop the bounding set while CAP_SETPCAP is still held (EINVAL past the last cap).
            if g.setuid || g.userns {
                for cap in 0..64 {
                    libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
                }
            }
            if g.setuid {
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setresgid(self.gid, self.gid, self.gid))?;
                check(libc::setresuid(self.uid, self.uid, self.uid))?;
            }
            libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
            #[repr(C)]
            struct CapHeader {
                version: u32,
                pid: c_int,
            }
            #[repr(C)]
            struct CapData {
                effective: u32,
                permitted: u32,
                inheritable: u32,
            }
            let header = CapHeader { version: 0x2008_0522, pid: 0 };
            let data = [
                CapData { effective: 0, permitted: 0, inheritable: 0 },
                CapData { effective: 0, permitted: 0, inheritable: 0 },
            ];
            check(libc::syscall(libc::SYS_capset, &header, data.as_ptr()) as c_int)?;
            check(libc::chdir(self.cwd.as_ptr()))?;
            close_range(3, u32::MAX, CLOSE_RANGE_CLOEXEC);
            if self.protocol_fd >= 0 {
                check(libc::fcntl(self.protocol_fd, libc::F_SETFD, 0))?;
            }
            check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            if let Some(p) = self.programs {
                seccompiler::apply_filter(&p.clone3)
                    .map_err(|_| io::Error::from_raw_os_error(libc::EPERM))?;
                seccompiler::apply_filter(&p.deny)
                    .map_err(|_| io::Error::from_raw_os_error(libc::EPERM))?;
            }
        }
        Ok(())
    }
}
