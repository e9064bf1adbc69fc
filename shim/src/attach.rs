//! Attach for Berth's own containers: a unix socket the CLI connects to for the live
//! output and the stdin of a running container. Output is framed like Docker's attach
//! stream (8-byte header: stream 1 or 2, three zero bytes, big-endian length) unless the
//! container has a terminal, then it is raw. What the client writes goes to the container's
//! stdin. Closing the connection detaches; the container keeps running.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

/// The writer into a process's stdin, shared by whoever feeds it (FIFO copier, attach
/// clients) and `CloseIO`, which closes it by taking it.
pub type StdinSlot = Arc<Mutex<Option<File>>>;

pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;

/// A client that cannot take output for this long is dropped rather than stall the logs.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct AttachHub {
    path: PathBuf,
    tty: bool,
    stdin_once: bool,
    clients: Mutex<Vec<UnixStream>>,
    stdin: Mutex<StdinSlot>,
}

impl AttachHub {
    pub fn listen(path: &Path, tty: bool, stdin_once: bool) -> Result<Arc<AttachHub>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("create attach socket directory {}", dir.display()))?;
        }
        let _ = std::fs::remove_file(path);
        let listener =
            UnixListener::bind(path).with_context(|| format!("listen on {}", path.display()))?;
        let hub = Arc::new(AttachHub {
            path: path.to_path_buf(),
            tty,
            stdin_once,
            clients: Mutex::new(Vec::new()),
            stdin: Mutex::new(Arc::new(Mutex::new(None))),
        });
        let h = hub.clone();
        crate::threads::spawn("attach", move || h.accept_loop(listener))?;
        Ok(hub)
    }

    /// Point attach clients at the stdin of the current run of the init.
    pub fn set_stdin(&self, slot: StdinSlot) {
        *self.stdin.lock().unwrap_or_else(|e| e.into_inner()) = slot;
    }

    fn accept_loop(self: Arc<Self>, listener: UnixListener) {
        for conn in listener.incoming() {
            let conn = match conn {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("attach accept on {}: {e}", self.path.display());
                    continue;
                }
            };
            let _ = conn.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT));
            let Ok(reader) = conn.try_clone() else {
                continue;
            };
            self.clients
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
            let hub = self.clone();
            if let Err(e) = crate::threads::spawn("attach-in", move || hub.client_input(reader)) {
                tracing::warn!("attach client: {e:#}");
            }
        }
    }

    fn client_input(&self, mut conn: UnixStream) {
        let mut buf = vec![0u8; 8192];
        loop {
            let n = match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let slot = self.stdin.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let mut stdin = slot.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(f) = stdin.as_mut() {
                if f.write_all(&buf[..n]).is_err() {
                    *stdin = None;
                }
            }
        }
        if self.stdin_once {
            let slot = self.stdin.lock().unwrap_or_else(|e| e.into_inner()).clone();
            slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
    }

    /// Send output to every attached client, dropping those that are gone or stuck.
    pub fn broadcast(&self, stream: u8, data: &[u8]) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.is_empty() {
            return;
        }
        let mut frame = Vec::with_capacity(data.len() + 8);
        if !self.tty {
            frame.extend_from_slice(&[stream, 0, 0, 0]);
            frame.extend_from_slice(&(data.len() as u32).to_be_bytes());
        }
        frame.extend_from_slice(data);
        clients.retain_mut(|c| c.write_all(&frame).is_ok());
    }

    /// The container ended: close every attached client so it sees end of stream.
    pub fn close_clients(&self) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        for c in clients.drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for AttachHub {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
