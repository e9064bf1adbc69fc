//! Hands the user-notification fd to a seccomp agent at `linux.seccomp.listenerPath`.
//!
//! runtime-spec: the runtime connects to the UNIX socket and sends the container process
//! state (`ociVersion`, `fds`, `pid`, `metadata`, `state`) as the payload, with the listener
//! fd attached as SCM_RIGHTS; `fds` names it "seccompFd".

use std::io::{IoSlice, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use serde_json::{json, Value};

use super::SeccompError;

/// The fd name the runtime-spec fixes for the seccomp listener.
const SECCOMP_FD_NAME: &str = "seccompFd";

/// Used when the state itself carries no version.
const OCI_VERSION: &str = "1.2.0";

/// The `ContainerProcessState` payload for `state_json` (the runtime's `state` output).
pub fn process_state(metadata: &str, state_json: &[u8]) -> Result<Vec<u8>, SeccompError> {
    let state: Value = serde_json::from_slice(state_json).map_err(SeccompError::StateJson)?;
    let pid = state.get("pid").cloned().unwrap_or(Value::from(0));
    let version = state
        .get("ociVersion")
        .cloned()
        .unwrap_or_else(|| Value::from(OCI_VERSION));
    let payload = json!({
        "ociVersion": version,
        "fds": [SECCOMP_FD_NAME],
        "pid": pid,
        "metadata": metadata,
        "state": state,
    });
    serde_json::to_vec(&payload).map_err(SeccompError::StateJson)
}

pub fn send(
    listener_path: &Path,
    metadata: &str,
    fd: BorrowedFd<'_>,
    state_json: &[u8],
) -> Result<(), SeccompError> {
    let payload = process_state(metadata, state_json)?;
    let err = |what: &'static str, source: std::io::Error| SeccompError::Listener {
        path: listener_path.to_owned(),
        what,
        source,
    };
    let mut sock = UnixStream::connect(listener_path).map_err(|e| err("connect", e))?;
    let fds = [fd.as_raw_fd()];
    let sent = loop {
        match sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(&payload)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other.map_err(|e| err("send state and fd", e.into()))?,
        }
    };
    // The fd travelled with the first byte; a stream may take the rest in more writes.
    sock.write_all(&payload[sent..])
        .map_err(|e| err("send state", e))?;
    Ok(())
}
