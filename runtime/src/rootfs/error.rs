//! The one error type of the rootfs module. Every variant renders as a complete sentence
//! fragment naming the thing that failed and why, so callers can print it as is.

use nix::errno::Errno;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A `spec.mounts` entry, or a mount derived from one, failed.
    #[error("mount {src} to {dest}: {cause}")]
    Mount {
        src: String,
        dest: String,
        cause: Box<RootfsError>,
    },
    /// A system call on a named path failed.
    #[error("{op}{}: {errno}", if path.is_empty() { String::new() } else { format!(" {path}") })]
    Sys {
        op: &'static str,
        path: String,
        errno: Errno,
    },
    /// The configuration asks for something we refuse to do.
    #[error("{0}")]
    Invalid(String),
    /// A setup step (devices, masked paths, pivot...) failed.
    #[error("{step}: {cause}")]
    Step {
        step: String,
        cause: Box<RootfsError>,
    },
}

impl RootfsError {
    pub(crate) fn sys(op: &'static str, path: impl AsRef<Path>, errno: Errno) -> Self {
        RootfsError::Sys {
            op,
            path: path.as_ref().display().to_string(),
            errno,
        }
    }

    pub(crate) fn step(step: impl Into<String>, cause: RootfsError) -> Self {
        RootfsError::Step {
            step: step.into(),
            cause: Box::new(cause),
        }
    }
}

#[cfg(test)]
impl RootfsError {
    /// The errno at the bottom of the chain, when there is one.
    pub(crate) fn errno(&self) -> Option<Errno> {
        match self {
            RootfsError::Sys { errno, .. } => Some(*errno),
            RootfsError::Mount { cause, .. } | RootfsError::Step { cause, .. } => cause.errno(),
            RootfsError::Invalid(_) => None,
        }
    }
}

/// Shorthand for mapping an `Errno` into a `RootfsError::Sys`.
pub(crate) fn sys_err(
    op: &'static str,
    path: impl AsRef<Path>,
) -> impl FnOnce(Errno) -> RootfsError {
    let path = path.as_ref().display().to_string();
    move |errno| RootfsError::Sys { op, path, errno }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn rootfs_error_messages_read_as_sentences() {
        let e = RootfsError::Mount {
            src: "/host/path".into(),
            dest: "/data".into(),
            cause: Box::new(RootfsError::sys("stat", "/host/path", Errno::ENOENT)),
        };
        assert_eq!(
            e.to_string(),
            "mount /host/path to /data: stat /host/path: ENOENT: No such file or directory"
        );
        assert_eq!(e.errno(), Some(Errno::ENOENT));
        let e = RootfsError::step("set up /dev", RootfsError::sys("read", "", Errno::EIO));
        assert_eq!(e.to_string(), "set up /dev: read: EIO: I/O error");
    }
}
