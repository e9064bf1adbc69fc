//! Daemonless: the CLI starts `berth-imaged` (and later `berth-netd`) itself when its socket
//! does not answer, as podman starts what it needs, and leaves it running for the next
//! command. The daemon takes the CLI's environment, so `DOCKER_CONFIG` and the roots agree.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The binary `name`: beside our own executable first (a build tree or an install
/// prefix), else on PATH.
pub fn sibling_binary(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Words from `BERTH_NETD_ARGS` for `berth-netd` (`BERTH_IMAGED_ARGS` for imaged): how a
/// test gives the daemon it starts a private bridge, nft table and address pool.
fn extra_args(binary: &str) -> Vec<String> {
    let var = format!(
        "{}_ARGS",
        binary.replace("berth-", "BERTH_").to_ascii_uppercase()
    );
    std::env::var(var)
        .map(|v| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Start daemon `binary` for these roots in its own session, with its output in
/// `run/<log>`, and wait until `socket` exists.
pub fn spawn(binary: &str, root: &Path, run: &Path, socket: &Path, log: &str) -> Result<()> {
    std::fs::create_dir_all(run).with_context(|| format!("create {}", run.display()))?;
    let log_path = run.join(log);
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("open {}", log_path.display()))?;
    let path = sibling_binary(binary);
    let mut cmd = Command::new(&path);
    cmd.arg("--root")
        .arg(root)
        .arg("--run")
        .arg(run)
        .args(extra_args(binary))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    // SAFETY: setsid is async-signal-safe; the daemon must not die with our terminal.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("start {}", path.display()))?;
    let mut deadline = Instant::now() + Duration::from_secs(10);
    let mut exited = None;
    // Until it answers, not merely until the file exists: between bind(2) and listen(2)
    // the socket is there but refuses connections.
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        match exited {
            None => {
                if let Some(status) = child.try_wait()? {
                    // Another command may have started one at the same moment: that one
                    // holds the lock and is about to listen. Give it a moment.
                    exited = Some(status);
                    deadline = Instant::now() + Duration::from_secs(2);
                } else if Instant::now() > deadline {
                    bail!(
                        "{binary} did not listen on {} within 10 s",
                        socket.display()
                    );
                }
            }
            Some(status) if Instant::now() > deadline => {
                let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(3).collect();
                bail!(
                    "{binary} exited ({status}) before it listened on {}: {}",
                    socket.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                );
            }
            Some(_) => {}
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Reaped by init once we exit; it outlives us on purpose.
    std::mem::forget(child);
    Ok(())
}
