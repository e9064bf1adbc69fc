//! Descriptor hygiene for the processes that enter a container (CVE-2024-21626).
//!
//! A process cloned without exec inherits every descriptor the runtime had open at the
//! fork: the cgroup2 directory it was born in, namespace files, the state directory, and
//! whatever the caller leaked into the runtime. Close-on-exec keeps them from the user's
//! program, but not from the setup that runs before execve: a `process.cwd` of
//! `/proc/self/fd/N` would follow one of them out of the container. So each such process
//! closes everything it does not own as its first step ([`close_all_except`]), and the
//! working directory is resolved inside the container's root, never through a magic link
//! (see `setup::enter_cwd`).

use std::os::fd::RawFd;

/// Close every descriptor from 3 up that is not in `keep`. The numbers in `keep` are the
/// ones this process owns (its sync channel, terminal socket, trampoline, log file, and the
/// caller's preserved descriptors); everything else was inherited and is not ours to hold.
pub fn close_all_except(keep: &[RawFd]) {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|&fd| fd >= 3).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut from: RawFd = 3;
    for &k in &keep {
        if k > from {
            close_range(from, k - 1);
        }
        from = k + 1;
    }
    close_range(from, RawFd::MAX);
}

fn close_range(first: RawFd, last: RawFd) {
    // SAFETY: close_range only closes descriptors of our own table. The objects that owned
    // these numbers live in the runtime's stack frames, which a cloned child never returns
    // to or drops: it runs its closure and leaves with _exit (spawn::clone_with).
    let r = unsafe { libc::syscall(libc::SYS_close_range, first as u32, last as u32, 0) };
    if r == 0 {
        return;
    }
    // Kernels before 5.9 have no close_range: close what /proc lists instead.
    for fd in open_fds()
        .into_iter()
        .filter(|&fd| fd >= first && fd <= last)
    {
        // SAFETY: as above; a number that closed meanwhile fails harmlessly.
        unsafe { libc::close(fd) };
    }
}

/// Nothing of the runtime's may leak into the container: every descriptor from `from` up is
/// closed at execve (preserved fds sit below it).
pub fn mark_cloexec_from(from: RawFd) {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on our own table.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            from as u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r != 0 {
        for fd in open_fds().into_iter().filter(|&fd| fd >= from) {
            // SAFETY: fcntl on a descriptor number; a stale one fails harmlessly.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}

/// What a process we fork keeps of its inherited table: the caller's preserved descriptors,
/// the `--log` file (its warnings go there), and `own`, the descriptors its setup still
/// needs (sync channel, console socket, trampoline, ...).
pub fn owned(preserve_fds: u32, own: impl IntoIterator<Item = RawFd>) -> Vec<RawFd> {
    let mut keep = preserved(preserve_fds);
    keep.extend(own);
    keep.extend(crate::logging::file_fd());
    keep
}

/// The numbers of the caller's `--preserve-fds N` descriptors.
pub fn preserved(n: u32) -> Vec<RawFd> {
    (3..3 + n as RawFd).collect()
}

/// The caller's preserved descriptors (3 .. 3+n) are for the container's process: they must
/// survive its execve even though the runtime marked every inherited descriptor
/// close-on-exec when it started.
pub fn pass_preserved(n: u32) {
    for fd in preserved(n) {
        // SAFETY: fcntl on a descriptor number; one the caller did not open fails harmlessly.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    }
}

fn open_fds() -> Vec<RawFd> {
    std::fs::read_dir("/proc/self/fd")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}
