//! Process creation at the syscall edge. The runtime is single-threaded, so a raw clone(2)
//! without a new stack behaves like fork(2) but can create namespaces in the same step.

use std::os::fd::FromRawFd;

use anyhow::Result;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

use crate::process::sync::{Channel, Msg};

/// Fork with `flags`; the child runs `child` and exits with its return value.
pub fn clone_with<F: FnOnce() -> i32>(flags: CloneFlags, child: F) -> Result<Pid> {
    // SAFETY: a NULL stack gives fork semantics (the child continues on a copy of our stack);
    // we are single-threaded, so no lock can be held by a thread that does not exist in the child.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags.bits() as libc::c_long) | libc::SIGCHLD as libc::c_long,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_long,
        )
    };
    match ret {
        -1 => Err(anyhow::Error::new(std::io::Error::last_os_error())
            .context(format!("clone with namespaces {flags:?}"))),
        0 => {
            let code = child();
            // SAFETY: leave without running the parent's atexit handlers or destructors twice.
            unsafe { libc::_exit(code) }
        }
        pid => Ok(Pid::from_raw(pid as i32)),
    }
}

/// Fork an intermediate process, born in the cgroup2 directory `cgroup`, that runs `spawn`
/// (enter namespaces or cgroups the runtime itself must stay out of, then fork the real
/// child) and reports the child's pid, or why there is none, over `report`, our copy of the
/// child's end of `parent`. Returns the child's pid once the intermediate is reaped.
pub fn via_intermediate(
    cgroup: Option<std::os::fd::BorrowedFd<'_>>,
    parent: &Channel,
    report: Channel,
    what: &str,
    spawn: impl FnOnce() -> Result<Pid>,
) -> Result<Pid> {
    let inter = clone_into_cgroup(CloneFlags::empty(), cgroup, move || {
        let msg = match spawn() {
            Ok(pid) => Msg::Pid(pid.as_raw()),
            Err(e) => Msg::Error(format!("{e:#}")),
        };
        i32::from(report.send(&msg).is_err() || !matches!(msg, Msg::Pid(_)))
    })?;
    let got = parent.expect(what);
    let _ = nix::sys::wait::waitpid(inter, None);
    match got? {
        (Msg::Pid(p), _) => Ok(Pid::from_raw(p)),
        (m, _) => anyhow::bail!("unexpected message from intermediate process: {m:?}"),
    }
}

/// Move the calling process into the cgroup2 directory open at `dir`.
fn enter_cgroup_fd(dir: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: openat reads a NUL-terminated name; `dir` is an open directory we were given.
    let fd = unsafe {
        libc::openat(
            dir,
            c"cgroup.procs".as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: openat just returned this descriptor and nothing else owns it.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    std::io::Write::write_all(&mut f, b"0")
}

/// Kills and reaps a process we started unless `disarm`ed: a failed `create` or `exec` must
/// not leave its half-set-up process running in the container.
pub struct ChildGuard(Option<Pid>);

impl ChildGuard {
    pub fn new(pid: Pid) -> Self {
        ChildGuard(Some(pid))
    }

    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

pub fn set_child_subreaper() -> Result<()> {
    // SAFETY: plain prctl with integer arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if r != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Like [`clone_with`], but the child starts life in the cgroup2 directory `cgroup`
/// (CLONE_INTO_CGROUP): no migration afterwards, so no wait on the kernel's cgroup rwsem.
/// Where clone3 is missing (kernels before 5.7, or Docker's seccomp profile, which answers
/// ENOSYS to make callers fall back) the child moves itself in through `cgroup.procs`
/// first thing, paying the rwsem but never running outside its cgroup.
pub fn clone_into_cgroup<F: FnOnce() -> i32>(
    flags: CloneFlags,
    cgroup: Option<std::os::fd::BorrowedFd<'_>>,
    child: F,
) -> Result<Pid> {
    use std::os::fd::AsRawFd;
    let Some(cg) = cgroup else {
        return clone_with(flags, child);
    };
    // Ours: libc 0.2 declares it as a c_int, which cannot hold the value (libc#3584).
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let args = CloneArgs {
        flags: flags.bits() as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cg.as_raw_fd() as u64,
        ..Default::default()
    };
    // SAFETY: clone3 with no stack gives fork semantics, as in `clone_with`; `args` outlives
    // the call and its size is passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENOSYS) {
                let cg = cg.as_raw_fd();
                return clone_with(flags, move || match enter_cgroup_fd(cg) {
                    Ok(()) => child(),
                    Err(e) => {
                        // Nothing else to tell it through yet: the caller sees us gone.
                        eprintln!("join the container's cgroup2 directory: {e}");
                        1
                    }
                });
            }
            Err(anyhow::Error::new(err).context(format!("clone3 into a cgroup with {flags:?}")))
        }
        0 => {
            let code = child();
            // SAFETY: as in `clone_with`.
            unsafe { libc::_exit(code) }
        }
        pid => Ok(Pid::from_raw(pid as i32)),
    }
}
