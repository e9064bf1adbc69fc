use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while managing a container's cgroups. Each variant names the
/// file, controller or value involved so a user reading `berth-runtime`'s log knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no cgroup filesystem is mounted (checked /proc/self/mountinfo)")]
    NoCgroupMounts,

    // `err`, not `source`: the message already carries the kernel's text, and a source
    // would print it a second time in an error chain ("Busy: Busy (os error 16)").
    #[error("read {}: {}", .path.display(), os_message(.err))]
    Read { path: PathBuf, err: io::Error },

    #[error("cgroup {controller}: write {value} to {}: {}", .path.display(), os_message(.err))]
    Write {
        controller: String,
        value: String,
        path: PathBuf,
        err: io::Error,
    },

    /// An interface file that exists only with some scheduler, kernel option or boot flag:
    /// the message says which, so the user knows it is this host, not the config.
    #[error("cgroup {controller}: cannot write {value} to {}: {reason}", .path.display())]
    HostLacks {
        controller: String,
        value: String,
        path: PathBuf,
        reason: String,
    },

    #[error("create cgroup {}: {}", .path.display(), os_message(.err))]
    Create { path: PathBuf, err: io::Error },

    #[error("remove cgroup {}: {}", .path.display(), os_message(.err))]
    Remove { path: PathBuf, err: io::Error },

    #[error("parse {}: {reason}", .path.display())]
    Parse { path: PathBuf, reason: String },

    #[error("cgroups path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },

    #[error("systemd cgroup driver for {path:?}: {reason}")]
    Systemd { path: String, reason: String },

    #[error(
        "cannot set {controller} limit: the {controller} controller is not available on this host"
    )]
    ControllerMissing { controller: String },

    #[error("invalid {what}: {reason}")]
    InvalidValue { what: String, reason: String },

    #[error("cgroup {} does not exist", .path.display())]
    NotFound { path: PathBuf },

    #[error("freeze {}: {reason}", .path.display())]
    Freeze { path: PathBuf, reason: String },

    #[error("signal {signal} to pid {pid}: {}", .errno.desc())]
    Signal {
        pid: i32,
        signal: i32,
        errno: nix::errno::Errno,
    },

    #[error("device filter: bpf {op}: {}{log}", .errno.desc())]
    Bpf {
        op: &'static str,
        errno: nix::errno::Errno,
        log: String,
    },
}

/// The kernel's text for an errno ("Device or resource busy") without Rust's "(os error 16)"
/// suffix, so messages read like runc's.
pub(crate) fn os_message(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => err.to_string(),
    }
}

impl Error {
    /// The errno behind a failed read/write/create/remove, when there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Read { err: source, .. }
            | Error::Write { err: source, .. }
            | Error::Create { err: source, .. }
            | Error::Remove { err: source, .. } => source.raw_os_error(),
            Error::Signal { errno, .. } | Error::Bpf { errno, .. } => Some(*errno as i32),
            // The file is missing, as a write's ENOENT says; callers that tolerate that match it.
            Error::HostLacks { .. } => Some(libc::ENOENT),
            _ => None,
        }
    }
}
