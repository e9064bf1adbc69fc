//! `exec`: a process in a running container, through its shim, with stdio over FIFOs
//! (what containerd does too): ours to read and write, the shim's to hold open.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::stat::Mode;
use serde_json::Value;

use super::attach::{self, RawTerminal};
use super::engine_failure;
use crate::engine::containers::bundle::resolve_user;
use crate::engine::containers::names::random_bytes;
use crate::engine::containers::shim::Shim;
use crate::engine::Engine;
use crate::Failure;

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Override the key sequence for detaching a container
    #[arg(long)]
    pub detach_keys: Option<String>,
    pub container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

fn fail(code: i32, msg: impl Into<String>) -> Failure {
    Failure::new(code, msg.into())
}

/// The exec'd process: the container's own process settings with the flags on top.
fn process(engine: &Engine, id: &str, a: &ExecArgs) -> Result<Value> {
    let bundle = engine.bundle_dir(id);
    let spec: Value = serde_json::from_slice(&std::fs::read(bundle.join("config.json"))?)?;
    let mut p = spec["process"].clone();
    p["args"] = serde_json::json!(a.command);
    p["terminal"] = serde_json::json!(a.tty);
    let mut env: Vec<String> = p["env"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for e in &a.env {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    if a.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    p["env"] = serde_json::json!(env);
    if let Some(w) = &a.workdir {
        p["cwd"] = serde_json::json!(w);
    }
    if let Some(u) = &a.user {
        let (uid, gid, extra) = resolve_user(&bundle.join("rootfs"), u, &[])
            .map_err(|e| fail(126, format!("Error response from daemon: {e}")))?;
        p["user"] = serde_json::json!({"uid": uid, "gid": gid, "additionalGids": extra});
    }
    if a.privileged {
        // Every capability this kernel has, as `run --privileged` gives.
        let caps = serde_json::json!(crate::engine::spec::defaults::all_capabilities());
        p["capabilities"] =
            serde_json::json!({"bounding": caps, "effective": caps, "permitted": caps});
    }
    Ok(p)
}

fn mkfifo(path: &Path) -> Result<()> {
    nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600))
        .map_err(|e| anyhow::anyhow!("mkfifo {}: {e}", path.display()))
}

/// Open our end of a FIFO the shim already holds: no blocking on open, blocking reads.
fn open_fifo(path: &Path, write: bool) -> Result<File> {
    let f = OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    fcntl(f.as_fd(), FcntlArg::F_SETFL(OFlag::empty()))?;
    Ok(f)
}

pub async fn exec(engine: &mut Engine, a: &ExecArgs) -> Result<()> {
    let rec = engine
        .container(&a.container)
        .map_err(|e| engine_failure(e, 1))?;
    let st = engine.state_of(&rec);
    if st.status == crate::engine::containers::state::Status::Paused {
        return Err(fail(1, format!("Error response from daemon: Container {} is paused, unpause the container before exec", rec.id)).into());
    }
    if !st.status.is_live() {
        return Err(fail(
            1,
            format!(
                "Error response from daemon: container {} is not running",
                rec.id
            ),
        )
        .into());
    }
    let shim = engine.shim_of(&rec.id).ok_or_else(|| {
        fail(
            1,
            format!(
                "Error response from daemon: container {}: its shim is gone",
                rec.id
            ),
        )
    })?;
    let exec_id: String = random_bytes::<8>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let proc_json = serde_json::to_vec(&process(engine, &rec.id, a)?)?;
    let dir = engine.run.join("exec").join(&exec_id);
    std::fs::create_dir_all(&dir)?;
    let _cleanup = RemoveDir(dir.clone());
    let (stdin_p, stdout_p, stderr_p) = (dir.join("stdin"), dir.join("stdout"), dir.join("stderr"));
    let mut stdio = ["".to_string(), String::new(), String::new()];
    if !a.detach {
        if a.interactive {
            mkfifo(&stdin_p)?;
            stdio[0] = stdin_p.display().to_string();
        }
        mkfifo(&stdout_p)?;
        stdio[1] = stdout_p.display().to_string();
        if !a.tty {
            mkfifo(&stderr_p)?;
            stdio[2] = stderr_p.display().to_string();
        }
    }
    shim.exec(
        &exec_id,
        &proc_json,
        [&stdio[0], &stdio[1], &stdio[2]],
        a.tty,
    )
    .map_err(|e| engine_failure(e, 126))?;
    let exec_attr = [("execID", exec_id.clone())];
    let what = a.command.join(" ");
    engine.emit_container(&rec, &format!("exec_create: {what}"), &exec_attr);
    if let Err(e) = shim.start_process(&exec_id) {
        let _ = shim.delete(&exec_id);
        // Docker's words and status (126, whatever the cause), with the runtime's reason
        // rather than the shim's wrapping of it.
        let msg = match &e {
            crate::engine::containers::ContainerError::Shim { message, .. } => message
                .split_once(" exec: ")
                .map(|(_, m)| m.to_string())
                .unwrap_or_else(|| message.clone()),
            other => other.to_string(),
        };
        return Err(fail(
            126,
            format!("OCI runtime exec failed: exec failed: {msg}: unknown"),
        )
        .into());
    }
    engine.emit_container(&rec, &format!("exec_start: {what}"), &exec_attr);
    if a.detach {
        return Ok(());
    }
    let _raw = (a.tty && a.interactive && std::io::stdin().is_terminal()).then(RawTerminal::enter);
    let done = Arc::new(AtomicBool::new(false));
    if a.tty {
        let (id, run, eid) = (rec.id.clone(), engine.run.clone(), exec_id.clone());
        attach::follow_size(done.clone(), move |w, h| {
            if let Some(s) = Shim::connect(&id, &crate::engine::containers::shim::socket(&run, &id))
            {
                let _ = s.resize(&eid, w as u32, h as u32);
            }
        });
    }
    if a.interactive {
        let mut fifo = open_fifo(&stdin_p, true)?;
        let (id, run, eid) = (rec.id.clone(), engine.run.clone(), exec_id.clone());
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 8192];
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || fifo.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            drop(fifo);
            if let Some(s) = Shim::connect(&id, &crate::engine::containers::shim::socket(&run, &id))
            {
                let _ = s.close_stdin(&eid);
            }
        });
    }
    let copy = |path: &Path, err: bool| -> Result<std::thread::JoinHandle<()>> {
        let mut f = open_fifo(path, false)?;
        Ok(std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let r = if err {
                    std::io::stderr().write_all(&buf[..n])
                } else {
                    let mut o = std::io::stdout();
                    o.write_all(&buf[..n]).and_then(|()| o.flush())
                };
                if r.is_err() {
                    break;
                }
            }
        }))
    };
    let out = copy(&stdout_p, false)?;
    let err = if a.tty {
        None
    } else {
        Some(copy(&stderr_p, true)?)
    };
    let code = shim.wait(&exec_id).map_err(|e| engine_failure(e, 1))?;
    engine.emit_container(
        &rec,
        "exec_die",
        &[exec_attr[0].clone(), ("exitCode", code.to_string())],
    );
    let _ = out.join();
    if let Some(e) = err {
        let _ = e.join();
    }
    done.store(true, Ordering::SeqCst);
    let _ = shim.delete(&exec_id);
    drop(_raw);
    drop(_cleanup);
    std::process::exit(code as i32);
}

struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
