//! Process creation at the syscall edge. The runtime is single-threaded, so a raw clone(2)
//! without a new stack behaves like fork(2) but can create namespaces in the same step.

use anyhow::Result;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

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

pub fn set_child_subreaper() -> Result<()> {
    // SAFETY: plain prctl with integer arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if r != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}
