//! The seccomp filters of the sandbox (built once per process with `seccompiler`, installed
//! in the child just before `exec`).
//!
//! Two stacked filters, both "allow by default, refuse a list": a namespace/mount/PID
//! separation already takes the big things away, so the filter only closes what remains
//! reachable from an unprivileged process inside the namespaces: debugging and memory access
//! to other processes (`ptrace`, `process_vm_readv/writev`, `kcmp`, `pidfd_getfd`), kernel
//! attack surface that unprivileged code never needs (`bpf`, `perf_event_open`, `keyctl`,
//! `userfaultfd`, `io_uring_*`, which also bypasses seccomp), and everything that changes the
//! sandbox itself (`mount` and the new mount API, `pivot_root`, `chroot`, `unshare`, `setns`,
//! `clone` with a namespace flag). For workers that may not fork, `fork`, `vfork` and `clone`
//! without `CLONE_THREAD` are refused too (threads stay possible, bounded by `RLIMIT_NPROC`).
//! `clone3` passes its flags in memory that seccomp cannot read, so it answers `ENOSYS` (glibc
//! then falls back to `clone`, which the filter can inspect); that is the second filter,
//! because one `seccompiler` filter has one match action.
//!
//! Known gap: x86-64 x32-ABI syscall numbers are not filtered (most distribution kernels
//! disable x32 at boot); the namespaces and the dropped capabilities still apply to them.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// The compiled programs, in installation order.
pub(crate) struct Programs {
    pub clone3: BpfProgram,
    pub deny: BpfProgram,
}

/// Syscalls refused with `EPERM` in every sandbox.
fn denied() -> Vec<i64> {
    let mut v = vec![
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_kcmp,
        libc::SYS_pidfd_getfd,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_syslog,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        libc::SYS_sethostname,
        libc::SYS_setdomainname,
        libc::SYS_vhangup,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([libc::SYS_iopl, libc::SYS_ioperm, libc::SYS_uselib]);
    v
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value).map_err(|e| e.to_string())
}

/// Build both programs for this architecture; `Err(reason)` when seccompiler does not support
/// it (the seccomp layer is then reported missing).
pub(crate) fn build(allow_fork: bool) -> Result<Programs, String> {
    let arch =
        std::env::consts::ARCH.try_into().map_err(|e: seccompiler::BackendError| e.to_string())?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in denied() {
        rules.insert(nr, vec![]);
    }
    // clone: the flags are argument 0 on x86-64 and aarch64.
    let ns_flags = [
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNS,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWCGROUP,
    ];
    let mut clone_rules = Vec::new();
    for f in ns_flags {
        let f = f as u64;
        clone_rules.push(
            SeccompRule::new(vec![cond(0, SeccompCmpOp::MaskedEq(f), f)?])
                .map_err(|e| e.to_string())?,
        );
    }
    if !allow_fork {
        let t = libc::CLONE_THREAD as u64;
        clone_rules.push(
            SeccompRule::new(vec![cond(0, SeccompCmpOp::MaskedEq(t), 0)?])
                .map_err(|e| e.to_string())?,
        );
        #[cfg(target_arch = "x86_64")]
        {
            rules.insert(libc::SYS_fork, vec![]);
            rules.insert(libc::SYS_vfork, vec![]);
        }
    }
    rules.insert(libc::SYS_clone, clone_rules);
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    let clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, vec![])].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    Ok(Programs {
        clone3: clone3.try_into().map_err(|e: seccompiler::BackendError| e.to_string())?,
        deny: deny.try_into().map_err(|e: seccompiler::BackendError| e.to_string())?,
    })
}
