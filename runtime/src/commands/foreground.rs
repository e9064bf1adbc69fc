//! Foreground `run` and `exec`: forward signals to the container process, relay its terminal
//! when we hold the pty master, and return its exit status the way a shell reports it.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::process::console;

const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Block the signals we handle so they queue on the signalfd instead of killing us. Must run
/// before the container process exists so no signal is lost in between.
pub fn block_signals() -> Result<SigSet> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    for s in FORWARDED {
        set.add(s);
    }
    set.thread_block().context("block signals")?;
    Ok(set)
}

struct RawMode {
    fd: i32,
    saved: termios::Termios,
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: fd 0 stays open for the life of the process.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = termios::tcsetattr(fd, termios::SetArg::TCSANOW, &self.saved);
    }
}

fn raw_stdin() -> Option<RawMode> {
    let stdin = std::io::stdin();
    let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
    let mut raw = saved.clone();
    termios::cfmakeraw(&mut raw);
    termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &raw).ok()?;
    Some(RawMode { fd: 0, saved })
}

fn copy_winsize(master: i32) {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into our struct; stdin may not be a tty (then it fails).
    if unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) } == 0 {
        let _ = console::set_size(master, ws.ws_row, ws.ws_col);
    }
}

fn code(ws: WaitStatus) -> Option<i32> {
    match ws {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

/// Wait for `pid` (our child or reparented to us as subreaper); returns its exit code.
pub fn wait(pid: Pid, sigs: SigSet, pty: Option<OwnedFd>) -> Result<i32> {
    let sfd = SignalFd::with_flags(&sigs, SfdFlags::SFD_CLOEXEC).context("signalfd")?;
    let _raw = pty.as_ref().and_then(|_| raw_stdin());
    if let Some(m) = &pty {
        copy_winsize(m.as_raw_fd());
    }
    let mut stdin_open = pty.is_some();
    let mut buf = [0u8; 8192];
    loop {
        // Reap first: the process may have exited before we got here.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(ws) => {
                    if ws.pid() == Some(pid) {
                        if let Some(m) = &pty {
                            drain(m.as_raw_fd(), &mut buf);
                        }
                        if let Some(c) = code(ws) {
                            return Ok(c);
                        }
                    }
                }
            }
        }
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(m) = &pty {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
            if stdin_open {
                // SAFETY: fd 0 lives as long as the process.
                fds.push(PollFd::new(
                    unsafe { BorrowedFd::borrow_raw(0) },
                    PollFlags::POLLIN,
                ));
            }
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("poll"),
            Ok(_) => {}
        }
        let ready: Vec<Option<PollFlags>> = fds.iter().map(|f| f.revents()).collect();
        drop(fds);
        if ready[0].is_some_and(|r| !r.is_empty()) {
            if let Ok(Some(si)) = sfd.read_signal() {
                let sig = Signal::try_from(si.ssi_signo as i32).ok();
                match sig {
                    Some(Signal::SIGCHLD) | None => {}
                    Some(Signal::SIGWINCH) => {
                        if let Some(m) = &pty {
                            copy_winsize(m.as_raw_fd());
                        }
                    }
                    Some(s) => {
                        let _ = kill(pid, s);
                    }
                }
            }
        }
        if let Some(m) = &pty {
            if ready
                .get(1)
                .copied()
                .flatten()
                .is_some_and(|r| !r.is_empty())
            {
                // SAFETY: reading/writing into our buffer from descriptors we hold.
                let n = unsafe { libc::read(m.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n > 0 {
                    write_all(1, &buf[..n as usize]);
                }
            }
            if stdin_open
                && ready
                    .get(2)
                    .copied()
                    .flatten()
                    .is_some_and(|r| !r.is_empty())
            {
                // SAFETY: as above.
                let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
                if n > 0 {
                    write_all(m.as_raw_fd(), &buf[..n as usize]);
                } else {
                    stdin_open = false;
                }
            }
        }
    }
}

fn drain(fd: i32, buf: &mut [u8]) {
    loop {
        let mut p = [libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: poll/read on a descriptor we hold, into our buffer.
        unsafe {
            if libc::poll(p.as_mut_ptr(), 1, 0) <= 0 || p[0].revents & libc::POLLIN == 0 {
                return;
            }
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            if n <= 0 {
                return;
            }
            write_all(1, &buf[..n as usize]);
        }
    }
}

fn write_all(fd: i32, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: write from our slice.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n <= 0 {
            return;
        }
        data = &data[n as usize..];
    }
}
