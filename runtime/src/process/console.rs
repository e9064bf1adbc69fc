//! The container's terminal. As runc does, the pty is opened inside the container (on its own
//! devpts), the slave becomes the process's stdio and /dev/console, and the master goes to the
//! caller over the `--console-socket` (SCM_RIGHTS), or to the runtime itself when it relays a
//! foreground terminal.

use std::fs::{File, OpenOptions};
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use crate::process::sync::{Channel, Msg};

pub struct Pty {
    pub master: OwnedFd,
    pub slave: File,
    pub slave_path: String,
}

pub fn open_pty() -> Result<Pty> {
    let master = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open("/dev/ptmx")
        .context("open /dev/ptmx in the container (is /dev/pts mounted?)")?;
    let fd = master.as_raw_fd();
    // SAFETY: fd is a valid ptmx descriptor; unlockpt/ptsname_r only read/write our buffer.
    let slave_path = unsafe {
        if libc::unlockpt(fd) != 0 {
            return Err(std::io::Error::last_os_error()).context("unlockpt");
        }
        let mut buf = [0 as libc::c_char; 128];
        if libc::ptsname_r(fd, buf.as_mut_ptr(), buf.len()) != 0 {
            return Err(std::io::Error::last_os_error()).context("ptsname");
        }
        std::ffi::CStr::from_ptr(buf.as_ptr())
            .to_string_lossy()
            .into_owned()
    };
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&slave_path)
        .with_context(|| format!("open pty slave {slave_path}"))?;
    Ok(Pty {
        master: master.into(),
        slave,
        slave_path,
    })
}

pub fn set_size(fd: RawFd, rows: u16, cols: u16) -> Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer we pass.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(std::io::Error::last_os_error()).context("set terminal size");
    }
    Ok(())
}

/// Send the master to the console socket; runc sends the pty's name as the message body.
pub fn send_master(sock: RawFd, master: &OwnedFd, name: &str) -> Result<()> {
    let fds = [master.as_raw_fd()];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(
        sock,
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .context("send the pty master over the console socket")?;
    Ok(())
}

/// Make the slave our controlling terminal and stdio.
pub fn become_session_leader_on(slave: &File) -> Result<()> {
    let fd = slave.as_raw_fd();
    // SAFETY: setsid/ioctl/dup2 on descriptors we own.
    unsafe {
        libc::setsid();
        if libc::ioctl(fd, libc::TIOCSCTTY, 0) != 0 {
            return Err(std::io::Error::last_os_error())
                .context("make the pty our controlling terminal");
        }
        for target in 0..3 {
            if libc::dup2(fd, target) < 0 {
                return Err(std::io::Error::last_os_error()).context("dup pty onto stdio");
            }
        }
    }
    Ok(())
}

/// Bind the slave onto /dev/console so programs that open it reach the terminal.
pub fn mount_console(slave_path: &str) -> Result<()> {
    let console = Path::new("/dev/console");
    if !console.exists() {
        File::create(console).context("create /dev/console")?;
    }
    nix::mount::mount(
        Some(slave_path),
        console,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .with_context(|| format!("bind {slave_path} onto /dev/console"))?;
    Ok(())
}

/// Connect to the console socket before pivot_root, while its host path is still visible.
pub fn connect(path: &Path) -> Result<OwnedFd> {
    let s = std::os::unix::net::UnixStream::connect(path)
        .with_context(|| format!("connect to console socket {}", path.display()))?;
    Ok(s.into())
}

/// Where the pty master goes when process.terminal is set.
pub enum Tty {
    /// The caller's --console-socket (connected before pivot_root, while its path is visible).
    Socket(OwnedFd),
    /// Back to the runtime over the sync channel, which relays it (foreground run/exec -t).
    Relay,
}

impl Tty {
    /// The console socket, which the process that opens the pty must keep.
    pub fn socket_fd(&self) -> Option<RawFd> {
        match self {
            Tty::Socket(s) => Some(s.as_raw_fd()),
            Tty::Relay => None,
        }
    }

    /// runc's rules for `create`, `run` and `exec`: a terminal needs a console socket unless
    /// the runtime stays in the foreground to relay it; a socket without a terminal is a
    /// mistake the caller should hear about.
    pub fn choose(socket: Option<&Path>, terminal: bool, can_relay: bool) -> Result<Option<Tty>> {
        match (socket, terminal) {
            (Some(p), true) => Ok(Some(Tty::Socket(connect(p)?))),
            (None, true) if can_relay => Ok(Some(Tty::Relay)),
            (None, true) => bail!("process.terminal is true: --console-socket is required"),
            (Some(_), false) => bail!("--console-socket given but process.terminal is false"),
            (None, false) => Ok(None),
        }
    }

    /// In the container: open a pty on the container's devpts, size it, hand the master to
    /// its receiver and return the pair (the caller makes the slave its terminal).
    pub fn open(&self, chan: &Channel, size: Option<oci_spec::runtime::Box>) -> Result<Pty> {
        let pty = open_pty()?;
        if let Some(b) = size {
            set_size(pty.slave.as_raw_fd(), b.height() as u16, b.width() as u16)?;
        }
        match self {
            Tty::Socket(sock) => send_master(sock.as_raw_fd(), &pty.master, &pty.slave_path)?,
            Tty::Relay => chan.send_with_fd(&Msg::PtyMaster, Some(pty.master.as_raw_fd()))?,
        }
        Ok(pty)
    }
}
