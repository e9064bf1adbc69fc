//! Messages between the runtime and the processes it forks. A SOCK_SEQPACKET socketpair keeps
//! message boundaries and carries file descriptors (the seccomp listener) with SCM_RIGHTS.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use anyhow::{bail, Context, Result};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub enum Msg {
    /// Intermediate -> runtime: the pid (in the runtime's pid namespace) of the process it forked.
    Pid(i32),
    /// Runtime -> child: id maps written; the host pid of the child. `join_cgroups`: the
    /// child moves itself into its v1 cgroups (cheap, see CgroupPaths::join_self_v1)
    /// instead of the runtime moving it.
    Go {
        pid: i32,
        join_cgroups: Option<berth_cgroups::CgroupPaths>,
    },
    /// Child -> runtime: mounts are in place, run prestart/createRuntime hooks now.
    RunHooks,
    /// Runtime -> child: hooks done.
    HooksDone,
    /// Child -> runtime: here is the seccomp notify listener (fd attached).
    SeccompListener,
    /// Child -> runtime: the pty master (fd attached) for a foreground terminal to relay.
    PtyMaster,
    /// Child -> runtime: set up and waiting for `start` (or about to exec, for exec/run).
    Ready,
    /// Either way: something failed; the text is the user-facing error.
    Error(String),
}

pub struct Channel {
    fd: OwnedFd,
}

/// A child cloned without exec closes everything it does not own (process::fds), the
/// runtime's end of the channel included: while it held a copy, the runtime dying (SIGKILL
/// during create or exec) would never reach it as end-of-file.
impl AsRawFd for Channel {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The runtime's end and the child's end.
pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("socketpair for runtime/child sync")?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn send(&self, msg: &Msg) -> Result<()> {
        self.send_with_fd(msg, None)
    }

    pub fn send_with_fd(&self, msg: &Msg, fd: Option<RawFd>) -> Result<()> {
        let data = serde_json::to_vec(msg)?;
        let iov = [IoSlice::new(&data)];
        let fds;
        let cmsgs: Vec<ControlMessage> = match fd {
            Some(f) => {
                fds = [f];
                vec![ControlMessage::ScmRights(&fds)]
            }
            None => vec![],
        };
        sendmsg::<()>(
            self.fd.as_raw_fd(),
            &iov,
            &cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .context("send sync message")?;
        Ok(())
    }

    /// Receive one message; `Ok(None)` when the peer closed (it exited or exec'd) or died.
    pub fn recv(&self) -> Result<Option<(Msg, Option<OwnedFd>)>> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let (n, fd) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let r = loop {
                match recvmsg::<()>(
                    self.fd.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::MSG_CMSG_CLOEXEC,
                ) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    // A peer that died with our last message unread resets the connection
                    // instead of closing it: either way it is gone.
                    Err(nix::errno::Errno::ECONNRESET) => return Ok(None),
                    r => break r.context("receive sync message")?,
                }
            };
            let mut fd = None;
            for c in r.cmsgs().context("control message")? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    // SAFETY: the kernel just installed these descriptors in our table.
                    fd = fds.first().map(|&f| unsafe { OwnedFd::from_raw_fd(f) });
                }
            }
            (r.bytes, fd)
        };
        if n == 0 {
            return Ok(None);
        }
        let msg = serde_json::from_slice(&buf[..n]).context("decode sync message")?;
        Ok(Some((msg, fd)))
    }

    /// Receive and insist on a message; an `Error` from the peer becomes our error.
    pub fn expect(&self, what: &str) -> Result<(Msg, Option<OwnedFd>)> {
        match self.recv()? {
            Some((Msg::Error(e), _)) => bail!("{e}"),
            Some(m) => Ok(m),
            None => bail!("container process exited before {what}"),
        }
    }

    pub fn try_clone(&self) -> Result<Channel> {
        Ok(Channel {
            fd: self.fd.try_clone().context("dup sync channel")?,
        })
    }
}
