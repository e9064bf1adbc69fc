//! A process's stdio: containerd's FIFOs, `file://` paths, `binary://` loggers, a pty from
//! the runtime's console socket, and for Berth's containers the json-file log and attach.
//!
//! Output the shim must see (FIFOs, json-file, attach) goes through a pipe and a copier
//! thread; `file://` and `binary://` outputs are handed to the container directly.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::attach::{AttachHub, StdinSlot, STDERR, STDOUT};
use crate::context::ShimContext;
use crate::jsonlog::{JsonLog, LineSplitter};
use crate::reaper;
use crate::runtime::ProcStdio;

/// The stdio a Create or Exec request names.
#[derive(Debug, Clone, Default)]
pub struct StdioSpec {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// Berth's own outputs for the init; they outlive each run so restarts keep writing to them.
#[derive(Clone, Default)]
pub struct BerthIo {
    pub log: Option<Arc<JsonLog>>,
    pub hub: Option<Arc<AttachHub>>,
    /// Keep a stdin pipe open for attach clients even with no stdin FIFO.
    pub open_stdin: bool,
}

impl BerthIo {
    fn wants_output(&self) -> bool {
        self.log.is_some() || self.hub.is_some()
    }
}

enum Out {
    Null,
    Fifo(PathBuf),
    File(PathBuf),
    Binary(String),
}

fn parse_out(uri: &str) -> Result<Out> {
    if uri.is_empty() {
        return Ok(Out::Null);
    }
    if let Some(rest) = uri.strip_prefix("file://") {
        return Ok(Out::File(PathBuf::from(rest)));
    }
    if uri.starts_with("binary://") {
        return Ok(Out::Binary(uri.to_string()));
    }
    if let Some(rest) = uri.strip_prefix("fifo://") {
        return Ok(Out::Fifo(PathBuf::from(rest)));
    }
    if uri.contains("://") {
        bail!("unsupported stdio URI {uri}: want a FIFO path, file:// or binary://");
    }
    Ok(Out::Fifo(PathBuf::from(uri)))
}

/// What the shim holds while the runtime creates the process.
pub struct Prepared {
    pub proc_stdio: Option<ProcStdio>,
    console: Option<(UnixListener, PathBuf)>,
    stdin_fifo: Option<File>,
    stdin_slot: StdinSlot,
    outputs: Vec<(File, u8, Option<File>)>,
    berth: BerthIo,
    stdout_fifo_for_tty: Option<File>,
}

/// The live stdio of a started process.
pub struct ProcIo {
    pub console: Option<File>,
    pub stdin: StdinSlot,
    done: Vec<Receiver<()>>,
    stdin_done: Option<Receiver<()>>,
}

impl ProcIo {
    /// Wait until the copiers have drained the process's output, so everything it wrote
    /// reaches the FIFOs and logs before its exit is reported. Bounded, because a process
    /// that left a child holding the pipe must not hold the exit back for ever.
    pub fn drain(&mut self, limit: Duration) {
        for rx in self.done.drain(..) {
            let _ = rx.recv_timeout(limit);
        }
    }

    /// Close the process's stdin, after whatever its stdin FIFO still holds has gone in:
    /// containerd asks for this once its writer is done, which ends the FIFO copy.
    pub fn close_stdin(&self) {
        if let Some(rx) = &self.stdin_done {
            let _ = rx.recv_timeout(Duration::from_secs(1));
        }
        self.stdin.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

fn pipe() -> Result<(File, File)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create pipe")?;
    Ok((File::from(r), File::from(w)))
}

/// Open a FIFO for writing without blocking on a reader: read-write keeps it open, so the
/// process never gets EPIPE if the reader goes away.
fn open_fifo_out(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("open stdio FIFO {}", path.display()))
}

static CONSOLE_SEQ: AtomicU32 = AtomicU32::new(0);

impl Prepared {
    /// `ctx` names the container to a `binary://` logger.
    pub fn new(spec: &StdioSpec, berth: &BerthIo, ctx: &ShimContext) -> Result<Prepared> {
        let stdin_slot: StdinSlot = Arc::new(Mutex::new(None));
        let stdin_fifo = if spec.stdin.is_empty() {
            None
        } else {
            Some(
                OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&spec.stdin)
                    .with_context(|| format!("open stdin FIFO {}", spec.stdin))?,
            )
        };
        let mut p = Prepared {
            proc_stdio: None,
            console: None,
            stdin_fifo,
            stdin_slot,
            outputs: Vec::new(),
            berth: berth.clone(),
            stdout_fifo_for_tty: None,
        };
        if spec.terminal {
            // Under the run root, like every Berth path (DESIGN.md: /run/berth/shim).
            let dir = std::env::var_os("BERTH_RUN")
                .filter(|r| !r.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/run/berth"))
                .join("shim");
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            let path = dir.join(format!(
                "console-{}-{}.sock",
                std::process::id(),
                CONSOLE_SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_file(&path);
            let l = UnixListener::bind(&path)
                .with_context(|| format!("listen on console socket {}", path.display()))?;
            p.stdout_fifo_for_tty = match parse_out(&spec.stdout)? {
                Out::Fifo(f) => Some(open_fifo_out(&f)?),
                Out::Null => None,
                _ => bail!(
                    "a terminal's output can only go to a FIFO, not {}",
                    spec.stdout
                ),
            };
            p.proc_stdio = Some(ProcStdio {
                stdin: Stdio::null(),
                stdout: Stdio::null(),
                stderr: Stdio::null(),
                console_socket: Some(path.clone()),
            });
            p.console = Some((l, path));
            return Ok(p);
        }

        let stdin = if p.stdin_fifo.is_some() || berth.open_stdin {
            let (r, w) = pipe()?;
            *p.stdin_slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(w);
            Stdio::from(r)
        } else {
            Stdio::null()
        };
        let (stdout, stderr) = p.outputs_for(spec, ctx)?;
        p.proc_stdio = Some(ProcStdio {
            stdin,
            stdout,
            stderr,
            console_socket: None,
        });
        Ok(p)
    }

    fn outputs_for(&mut self, spec: &StdioSpec, ctx: &ShimContext) -> Result<(Stdio, Stdio)> {
        let out = parse_out(&spec.stdout)?;
        let err = parse_out(&spec.stderr)?;
        if let (Out::Binary(uri), _) | (_, Out::Binary(uri)) = (&out, &err) {
            return start_logger(uri, ctx);
        }
        let stdout = self.output(out, STDOUT)?;
        let stderr = self.output(err, STDERR)?;
        Ok((stdout, stderr))
    }

    fn output(&mut self, out: Out, stream: u8) -> Result<Stdio> {
        let fifo = match out {
            Out::File(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("create {}", dir.display()))?;
                }
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .with_context(|| format!("open log file {}", path.display()))?;
                return Ok(Stdio::from(f));
            }
            Out::Null if !self.berth.wants_output() => return Ok(Stdio::null()),
            Out::Null => None,
            Out::Fifo(path) => Some(open_fifo_out(&path)?),
            Out::Binary(_) => unreachable!("binary loggers are handled by outputs_for"),
        };
        let (r, w) = pipe()?;
        self.outputs.push((r, stream, fifo));
        Ok(Stdio::from(w))
    }

    /// After the runtime succeeded: take the pty (if any) and start the copiers.
    pub fn start(mut self) -> Result<ProcIo> {
        let mut done = Vec::new();
        let mut console = None;
        if let Some((listener, path)) = self.console.take() {
            let master = receive_pty(&listener);
            let _ = std::fs::remove_file(&path);
            let master = master?;
            let reader = master.try_clone().context("duplicate pty master")?;
            let writer = master.try_clone().context("duplicate pty master")?;
            *self.stdin_slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(writer);
            let fifo = self.stdout_fifo_for_tty.take();
            if fifo.is_some() || self.berth.wants_output() {
                done.push(spawn_output_copier(
                    reader,
                    STDOUT,
                    fifo,
                    self.berth.clone(),
                )?);
            }
            console = Some(master);
        }
        for (src, stream, fifo) in self.outputs.drain(..) {
            done.push(spawn_output_copier(src, stream, fifo, self.berth.clone())?);
        }
        let mut stdin_done = None;
        if let Some(fifo) = self.stdin_fifo.take() {
            let slot = self.stdin_slot.clone();
            let (tx, rx) = channel();
            crate::threads::spawn("stdin", move || {
                copy_stdin(fifo, slot);
                let _ = tx.send(());
            })?;
            stdin_done = Some(rx);
        }
        Ok(ProcIo {
            console,
            stdin: self.stdin_slot.clone(),
            done,
            stdin_done,
        })
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Some((_, path)) = self.console.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The runtime connects to the console socket during create and sends the pty master with
/// SCM_RIGHTS; by the time create returned, the connection is queued.
fn receive_pty(listener: &UnixListener) -> Result<File> {
    listener
        .set_nonblocking(true)
        .context("console socket nonblocking")?;
    let (conn, _) = listener
        .accept()
        .context("the runtime did not connect to the console socket")?;
    conn.set_nonblocking(false).ok();
    recv_fd(&conn)
}

fn recv_fd(conn: &UnixStream) -> Result<File> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .context("receive pty master from console socket")?;
    for cmsg in msg.cmsgs().context("read console socket control message")? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us; nothing else owns it.
                return Ok(File::from(unsafe { OwnedFd::from_raw_fd(*fd) }));
            }
        }
    }
    Err(anyhow!("console socket message carried no file descriptor"))
}

fn spawn_output_copier(
    mut src: File,
    stream: u8,
    mut fifo: Option<File>,
    berth: BerthIo,
) -> Result<Receiver<()>> {
    let (tx, rx) = channel();
    let name = if stream == STDOUT { "stdout" } else { "stderr" };
    crate::threads::spawn(name, move || {
        let mut buf = vec![0u8; 32 * 1024];
        let mut lines = LineSplitter::default();
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // A pty master reads EIO once every slave is closed: end of output.
                Err(_) => break,
            };
            let data = &buf[..n];
            if let Some(f) = fifo.as_mut() {
                if f.write_all(data).is_err() {
                    fifo = None;
                }
            }
            if let Some(log) = &berth.log {
                lines.feed(data, |l| log.write(name, l));
            }
            if let Some(hub) = &berth.hub {
                hub.broadcast(stream, data);
            }
        }
        if let Some(log) = &berth.log {
            lines.finish(|l| log.write(name, l));
        }
        let _ = tx.send(());
        if let Some(f) = &fifo {
            wait_until_read(f, FIFO_LINGER);
        }
    })?;
    Ok(rx)
}

/// How long output may wait in a FIFO for its reader after the process is done.
const FIFO_LINGER: Duration = Duration::from_secs(2);

/// Keep our end of an output FIFO open until its reader has taken what is in it: the buffer
/// of a FIFO dies with its last open end, so a reader whose open is still on its way (a
/// loaded client) would otherwise find the FIFO empty and lose the process's last output.
/// Bounded, for a client that never reads.
fn wait_until_read(fifo: &File, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let mut pending: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int into the variable we own; failure is reported by
        // the return value.
        let rc = unsafe { libc::ioctl(fifo.as_raw_fd(), libc::FIONREAD, &mut pending) };
        if rc != 0 || pending == 0 || std::time::Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Copy the stdin FIFO into the process; its writer closing closes the process's stdin.
fn copy_stdin(mut fifo: File, slot: StdinSlot) {
    let mut buf = vec![0u8; 8192];
    loop {
        // A FIFO opened for reading with no writer yet polls as not ready until one
        // appears; then POLLHUP marks the writer gone.
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        match fifo.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let mut w = slot.lock().unwrap_or_else(|e| e.into_inner());
                let written = w.as_mut().map(|f| f.write_all(&buf[..n]).is_ok());
                if written != Some(true) {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    slot.lock().unwrap_or_else(|e| e.into_inner()).take();
}

/// containerd's binary logger protocol: the logger gets the process's stdout and stderr
/// on fds 3 and 4 and closes fd 5 once it is ready; CONTAINER_ID and CONTAINER_NAMESPACE
/// in its environment.
fn start_logger(uri: &str, ctx: &ShimContext) -> Result<(Stdio, Stdio)> {
    let rest = &uri["binary://".len()..];
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = percent_decode(path);
    let mut cmd = Command::new(&path);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k), percent_decode(v));
        cmd.arg(k);
        if !v.is_empty() {
            cmd.arg(v);
        }
    }
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let fds = [out_r.as_raw_fd(), err_r.as_raw_fd(), ready_w.as_raw_fd()];
    cmd.env("CONTAINER_ID", &ctx.id)
        .env("CONTAINER_NAMESPACE", &ctx.namespace)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only dup2 and fcntl run between fork and exec; both are async-signal-safe
    // and touch nothing but descriptors.
    unsafe {
        cmd.pre_exec(move || {
            for (i, fd) in fds.iter().enumerate() {
                let target = 3 + i as i32;
                if *fd == target {
                    if libc::fcntl(target, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(*fd, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    reaper::global()
        .spawn(&mut cmd)
        .with_context(|| format!("start logger {path}"))?;
    drop((out_r, err_r, ready_w, cmd));
    let mut ready = ready_r;
    let mut b = [0u8; 1];
    let _ = ready.read(&mut b);
    Ok((Stdio::from(out_w), Stdio::from(err_w)))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Set the pty's window size.
pub fn resize(console: &File, width: u32, height: u32) -> Result<()> {
    let ws = libc::winsize {
        ws_row: height as u16,
        ws_col: width as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which lives across the call.
    let rc = unsafe { libc::ioctl(console.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context("resize pty");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert!(matches!(parse_out("").unwrap(), Out::Null));
        assert!(matches!(parse_out("/run/x/stdout").unwrap(), Out::Fifo(_)));
        assert!(
            matches!(parse_out("file:///var/log/x").unwrap(), Out::File(p) if p == Path::new("/var/log/x"))
        );
        assert!(matches!(
            parse_out("binary:///bin/logger?a=b").unwrap(),
            Out::Binary(_)
        ));
        assert!(parse_out("http://x").is_err());
    }

    #[test]
    fn decode() {
        assert_eq!(percent_decode("/a%20b"), "/a b");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
