//! Streams between the user's terminal and a container: the shim's attach socket for the
//! init (Docker's 8-byte framed stream, raw with a terminal), FIFOs for an exec'd process.
//! Plain threads: this is byte copying while the command waits, nothing else runs.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::termios::{self, SetArg, Termios};

/// Docker's default detach keys: ctrl-p, ctrl-q.
pub const DETACH_KEYS: [u8; 2] = [0x10, 0x11];

/// The user's terminal in raw mode until dropped.
pub struct RawTerminal {
    saved: Option<Termios>,
}

impl RawTerminal {
    pub fn enter() -> RawTerminal {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        RawTerminal { saved }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

/// The size of the user's terminal (columns, rows), if stdout is one.
pub fn terminal_size() -> Option<(u16, u16)> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we own.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some((ws.ws_col, ws.ws_row))
}

/// Follow the terminal's size, calling `resize` on each change, until `done`.
pub fn follow_size(done: Arc<AtomicBool>, resize: impl Fn(u16, u16) + Send + 'static) {
    std::thread::spawn(move || {
        let mut last = None;
        while !done.load(Ordering::SeqCst) {
            let now = terminal_size();
            if now != last {
                if let Some((w, h)) = now {
                    resize(w, h);
                }
                last = now;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
}

/// Copy the user's stdin into `to`; with `detach`, stop at the detach keys and set the
/// flag. At end of input the write side is shut, which closes the container's stdin.
pub fn pump_stdin(
    mut to: UnixStream,
    detach: Option<Arc<AtomicBool>>,
    keys: Vec<u8>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 8192];
        let mut matched = 0usize;
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut out = Vec::with_capacity(n);
            for &b in &buf[..n] {
                if detach.is_some() && !keys.is_empty() && b == keys[matched] {
                    matched += 1;
                    if matched == keys.len() {
                        if let Some(d) = &detach {
                            d.store(true, Ordering::SeqCst);
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    continue;
                }
                // A partial sequence that did not complete goes through as typed.
                out.extend_from_slice(&keys[..matched]);
                matched = 0;
                out.push(b);
            }
            if to.write_all(&out).is_err() {
                return;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    })
}

/// Copy the container's output to ours until the shim closes the stream: raw with a
/// terminal, else Docker's frames (1 = stdout, 2 = stderr).
pub fn pump_output(mut from: UnixStream, tty: bool) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut stdout = std::io::stdout();
        let mut stderr = std::io::stderr();
        if tty {
            let mut buf = [0u8; 8192];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || stdout.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = stdout.flush();
            }
            return;
        }
        let mut header = [0u8; 8];
        let mut data = Vec::new();
        while from.read_exact(&mut header).is_ok() {
            let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
            data.resize(len, 0);
            if from.read_exact(&mut data).is_err() {
                break;
            }
            let w: &mut dyn Write = if header[0] == 2 {
                &mut stderr
            } else {
                &mut stdout
            };
            if w.write_all(&data).is_err() {
                break;
            }
            let _ = w.flush();
        }
    })
}

/// `--detach-keys "ctrl-p,ctrl-q"` as bytes.
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>, String> {
    s.split(',')
        .map(|k| {
            let k = k.trim();
            if let Some(c) = k.strip_prefix("ctrl-") {
                let c = c.as_bytes();
                match c {
                    [x] if x.is_ascii_alphabetic() => Ok(x.to_ascii_lowercase() - b'a' + 1),
                    b"@" => Ok(0),
                    b"[" => Ok(27),
                    b"\\" => Ok(28),
                    b"]" => Ok(29),
                    b"^" => Ok(30),
                    b"_" => Ok(31),
                    _ => Err(format!("Unknown character: '{k}'")),
                }
            } else if k.len() == 1 {
                Ok(k.as_bytes()[0])
            } else {
                Err(format!("Unknown character: '{k}'"))
            }
        })
        .collect()
}
