//! Seccomp: compile an OCI `linux.seccomp` profile to classic BPF and load it, without
//! libseccomp at run time.
//!
//! * [`compile`] is pure: profile in, [`Program`] (instructions + filter flags) out.
//! * [`install`] compiles and loads into the calling process with seccomp(2); it returns the
//!   user-notification fd when a rule uses `SCMP_ACT_NOTIFY`.
//! * [`send_listener`] passes that fd to the agent at `listenerPath`.
//! * [`supported`] describes what we handle, for `berth-runtime features`.
//!
//! Semantics follow runc + libseccomp, so profiles written for Docker, podman and containerd
//! behave the same; see README.md next to this file for the details and the choices made.

mod arch;
mod bpf;
mod codegen;
mod features;
mod listener;
mod load;
mod rules;
#[allow(clippy::all)]
mod syscall_table;

#[cfg(test)]
mod interp;
#[cfg(test)]
mod tests_compile;
#[cfg(test)]
mod tests_live;

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

pub use bpf::Insn;
pub use features::Features;

/// Why a profile could not be compiled, loaded or handed over.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error(
        "seccomp architecture {0} is not supported (supported: SCMP_ARCH_X86_64, SCMP_ARCH_X86, \
         SCMP_ARCH_X32, SCMP_ARCH_AARCH64, SCMP_ARCH_ARM)"
    )]
    UnsupportedArch(String),
    #[error("seccomp rule for {syscall}: argument index {index} is out of range (0-5)")]
    ArgIndex { syscall: String, index: usize },
    #[error("seccomp errnoRet {value} for {whose} is out of range (at most {max})")]
    ErrnoRet { whose: String, value: u32, max: u32 },
    #[error("seccomp: SCMP_ACT_NOTIFY cannot be the default action")]
    NotifyDefault,
    #[error(
        "seccomp: SCMP_ACT_NOTIFY cannot be used for the write syscall (the runtime needs \
         write to hand the listener over)"
    )]
    NotifyWrite,
    #[error("seccomp: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath")]
    NotifyWithoutListener,
    #[error("seccomp rule with an empty syscall name")]
    EmptySyscallName,
    #[error("seccomp filter has {0} instructions, above the kernel's limit of 4096")]
    TooLarge(usize),
    #[error(
        "loading seccomp filter: permission denied (the process needs no_new_privs or \
         CAP_SYS_ADMIN)"
    )]
    NeedsNoNewPrivs,
    #[error("loading seccomp filter with TSYNC: thread {} could not be synchronised", .0.map_or("(unknown)".to_owned(), |t| t.to_string()))]
    TsyncFailed(Option<i32>),
    #[error("loading seccomp filter (flags {flags:#x}): {source}")]
    Load {
        flags: libc::c_ulong,
        source: std::io::Error,
    },
    #[error("seccomp listener {}: {what}: {source}", path.display())]
    Listener {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("seccomp listener: container state JSON: {0}")]
    StateJson(serde_json::Error),
}

/// A compiled filter: the BPF instructions and the SECCOMP_FILTER_FLAG_* bits to load them with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    insns: Vec<Insn>,
    flags: libc::c_ulong,
}

impl Program {
    pub fn instructions(&self) -> &[Insn] {
        &self.insns
    }

    /// SECCOMP_FILTER_FLAG_* bits (including NEW_LISTENER when a rule notifies).
    pub fn flags(&self) -> libc::c_ulong {
        self.flags
    }

    /// Whether loading returns a user-notification listener fd.
    #[cfg(test)]
    pub fn has_listener(&self) -> bool {
        self.flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0
    }

    /// Loads the filter into the calling process; see [`install`].
    pub fn load(&self) -> Result<Option<OwnedFd>, SeccompError> {
        load::load(&self.insns, self.flags)
    }
}

/// Compiles a profile. Syscall names unknown on an architecture are skipped there, as runc
/// does; architectures without a syscall table are an error naming them.
pub fn compile(s: &oci_spec::runtime::LinuxSeccomp) -> Result<Program, SeccompError> {
    let ruleset = rules::build(s)?;
    let insns = codegen::generate(&ruleset);
    if insns.len() > bpf::MAX_INSNS {
        return Err(SeccompError::TooLarge(insns.len()));
    }
    Ok(Program {
        insns,
        flags: ruleset.flags,
    })
}

/// Compiles and loads a profile into the calling process, honouring its flags. Returns the
/// listener fd when a rule uses `SCMP_ACT_NOTIFY`. It does not set no_new_privs: call it
/// after `prctl(PR_SET_NO_NEW_PRIVS)`, or while still holding CAP_SYS_ADMIN when
/// `noNewPrivileges` is false (runc's order).
#[cfg(test)]
pub fn install(s: &oci_spec::runtime::LinuxSeccomp) -> Result<Option<OwnedFd>, SeccompError> {
    let program = compile(s)?;
    tracing::debug!(
        instructions = program.insns.len(),
        flags = program.flags,
        "loading seccomp filter"
    );
    program.load()
}

/// runtime-spec `listenerPath`: connects to the agent's socket and sends it the container
/// process state built from `state_json` (the runtime's state document) and `metadata`
/// (`listenerMetadata`), with `fd` attached over SCM_RIGHTS.
pub fn send_listener(
    listener_path: &Path,
    metadata: &str,
    fd: BorrowedFd,
    state_json: &[u8],
) -> Result<(), SeccompError> {
    listener::send(listener_path, metadata, fd, state_json)
}

/// The `linux.seccomp` object of `berth-runtime features`.
pub fn supported() -> Features {
    features::supported()
}
