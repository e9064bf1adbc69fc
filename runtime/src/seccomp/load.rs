//! Hands a compiled program to the kernel with seccomp(2).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use super::bpf::Insn;
use super::SeccompError;

/// seccomp(2) has no libc wrapper; this is the raw call.
fn seccomp(
    op: libc::c_uint,
    flags: libc::c_ulong,
    args: *const libc::c_void,
) -> io::Result<libc::c_long> {
    // SAFETY: seccomp(2) reads at most one `struct sock_fprog` from `args`; callers pass a
    // pointer to a live one, or null when only probing flags (the kernel then fails with
    // EFAULT without touching memory).
    let r = unsafe { libc::syscall(libc::SYS_seccomp, op as libc::c_ulong, flags, args) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Installs `prog` on the calling thread (all threads with TSYNC). Needs no_new_privs or
/// CAP_SYS_ADMIN; the caller decides which, as runc does.
pub fn load(prog: &[Insn], flags: libc::c_ulong) -> Result<Option<OwnedFd>, SeccompError> {
    let fprog = libc::sock_fprog {
        len: prog.len() as libc::c_ushort,
        // The kernel only reads the program; `Insn` has `sock_filter`'s layout.
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    let r = seccomp(
        libc::SECCOMP_SET_MODE_FILTER,
        flags,
        (&fprog as *const libc::sock_fprog).cast(),
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::EACCES) => SeccompError::NeedsNoNewPrivs,
        Some(libc::ESRCH) if flags & libc::SECCOMP_FILTER_FLAG_TSYNC != 0 => {
            SeccompError::TsyncFailed(None)
        }
        _ => SeccompError::Load { flags, source: e },
    })?;
    if flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
        // SAFETY: with NEW_LISTENER a successful call returns a new fd that nothing else owns.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(r as libc::c_int) }));
    }
    if r > 0 {
        // Without TSYNC_ESRCH, TSYNC reports the thread that could not be synchronised.
        return Err(SeccompError::TsyncFailed(Some(r as i32)));
    }
    Ok(None)
}

/// Whether the running kernel accepts these filter flags. It checks flags before reading the
/// program, so a null program fails with EFAULT exactly when the flags are fine.
pub fn flags_supported(flags: libc::c_ulong) -> bool {
    matches!(
        seccomp(libc::SECCOMP_SET_MODE_FILTER, flags, std::ptr::null()),
        Err(e) if e.raw_os_error() == Some(libc::EFAULT)
    )
}
