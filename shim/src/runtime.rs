//! Calls to the runc-compatible runtime binary. Failures carry the runtime's own message,
//! taken from the last `"level":"error"` line it wrote to its `--log` JSON file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, Context, Result};

use crate::reaper;

#[derive(Debug, Clone)]
pub struct Runtime {
    pub binary: PathBuf,
    pub root: PathBuf,
    pub log: PathBuf,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
}

/// Where the process the runtime starts gets its stdio: inherited descriptors, or a pty
/// handed back through a console socket.
pub struct ProcStdio {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
    pub console_socket: Option<PathBuf>,
}

impl Runtime {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&self.log)
            .arg("--log-format")
            .arg("json");
        cmd
    }

    /// Run one runtime command to completion; stdout is returned, failures name the
    /// operation and carry the runtime's message.
    fn run(&self, op: &str, mut cmd: Command, input: Option<&[u8]>) -> Result<Vec<u8>> {
        let log_start = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut reaped = reaper::global()
            .spawn(&mut cmd)
            .with_context(|| format!("run {} {op}", self.binary.display()))?;
        if let (Some(data), Some(mut stdin)) = (input, reaped.child.stdin.take()) {
            stdin
                .write_all(data)
                .with_context(|| format!("write stdin of {} {op}", self.binary.display()))?;
        }
        // stderr on its own short-lived thread: a runtime filling the stderr pipe while we
        // wait for stdout's end would otherwise never finish.
        let err_reader = reaped.child.stderr.take().map(|mut s| {
            std::thread::spawn(move || {
                let mut err = Vec::new();
                let _ = s.read_to_end(&mut err);
                err
            })
        });
        let mut out = Vec::new();
        if let Some(mut s) = reaped.child.stdout.take() {
            let _ = s.read_to_end(&mut out);
        }
        let err = err_reader.and_then(|h| h.join().ok()).unwrap_or_default();
        let exit = reaped.wait();
        if exit.code == 0 {
            return Ok(out);
        }
        Err(self.failure(op, log_start, exit.code, &err))
    }

    /// Run a command whose stdio belongs to the container (create, exec): nothing is
    /// captured, so the log file is the only source of the error text.
    fn run_with_stdio(&self, op: &str, mut cmd: Command, stdio: ProcStdio) -> Result<()> {
        let log_start = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        cmd.stdin(stdio.stdin)
            .stdout(stdio.stdout)
            .stderr(stdio.stderr);
        let reaped = reaper::global()
            .spawn(&mut cmd)
            .with_context(|| format!("run {} {op}", self.binary.display()))?;
        // Our copies of the container's stdio are inside `cmd`; drop them so the pipes see
        // EOF when the container closes its ends.
        drop(cmd);
        let exit = reaped.wait();
        if exit.code == 0 {
            return Ok(());
        }
        Err(self.failure(op, log_start, exit.code, b""))
    }

    fn failure(&self, op: &str, log_start: u64, code: u32, stderr: &[u8]) -> anyhow::Error {
        let msg = last_error(&self.log, log_start)
            .or_else(|| {
                let s = String::from_utf8_lossy(stderr).trim().to_string();
                (!s.is_empty()).then_some(s)
            })
            .unwrap_or_else(|| format!("exit status {code}"));
        anyhow!("{} {op}: {msg}", self.binary.display())
    }

    pub fn create(&self, id: &str, bundle: &Path, pid_file: &Path, stdio: ProcStdio) -> Result<()> {
        let mut cmd = self.command();
        cmd.arg("create").arg("--bundle").arg(bundle);
        cmd.arg("--pid-file").arg(pid_file);
        if self.no_pivot {
            cmd.arg("--no-pivot");
        }
        if self.no_new_keyring {
            cmd.arg("--no-new-keyring");
        }
        cmd.current_dir(bundle);
        self.append_id_after_stdio(cmd, id, "create", stdio)
    }

    pub fn exec(&self, id: &str, process: &Path, pid_file: &Path, stdio: ProcStdio) -> Result<()> {
        let mut cmd = self.command();
        cmd.arg("exec")
            .arg("--detach")
            .arg("--process")
            .arg(process)
            .arg("--pid-file")
            .arg(pid_file);
        self.append_id_after_stdio(cmd, id, "exec", stdio)
    }

    // The console socket flag belongs to the subcommand, so it must come before the id.
    fn append_id_after_stdio(
        &self,
        mut cmd: Command,
        id: &str,
        op: &str,
        mut stdio: ProcStdio,
    ) -> Result<()> {
        if let Some(sock) = stdio.console_socket.take() {
            cmd.arg("--console-socket").arg(sock);
        }
        cmd.arg(id);
        self.run_with_stdio(op, cmd, stdio)
    }

    /// `start`, `pause`, `resume`: a subcommand taking only the id.
    fn simple(&self, op: &str, id: &str) -> Result<()> {
        let mut cmd = self.command();
        cmd.arg(op).arg(id);
        self.run(op, cmd, None).map(drop)
    }

    pub fn start(&self, id: &str) -> Result<()> {
        self.simple("start", id)
    }

    pub fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        let mut cmd = self.command();
        cmd.arg("kill");
        if all {
            cmd.arg("--all");
        }
        cmd.arg(id).arg(signal.to_string());
        self.run("kill", cmd, None).map(drop)
    }

    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let mut cmd = self.command();
        cmd.arg("delete");
        if force {
            cmd.arg("--force");
        }
        cmd.arg(id);
        self.run("delete", cmd, None).map(drop)
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        self.simple("pause", id)
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        self.simple("resume", id)
    }

    /// `resources` is the OCI LinuxResources JSON.
    pub fn update(&self, id: &str, resources: &[u8]) -> Result<()> {
        let mut cmd = self.command();
        cmd.arg("update").arg("--resources").arg("-").arg(id);
        self.run("update", cmd, Some(resources)).map(drop)
    }

    pub fn ps(&self, id: &str) -> Result<Vec<u32>> {
        let mut cmd = self.command();
        cmd.arg("ps").arg("--format").arg("json").arg(id);
        let out = self.run("ps", cmd, None)?;
        serde_json::from_slice::<Option<Vec<u32>>>(&out)
            .map(Option::unwrap_or_default)
            .with_context(|| format!("parse {} ps output", self.binary.display()))
    }
}

/// The message of the last error line written to the runtime's JSON log after `from`.
pub fn last_error(log: &Path, from: u64) -> Option<String> {
    let mut f = File::open(log).ok()?;
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut text = String::new();
    f.read_to_string(&mut text).ok()?;
    text.lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        if v.get("level")?.as_str()? != "error" {
            return None;
        }
        Some(v.get("msg")?.as_str()?.to_string())
    })
}

/// Pick the runtime binary: the create options' BinaryName, then $BERTH_SHIM_RUNTIME, then
/// `berth-runtime` on PATH, then `runc`.
pub fn choose_binary(from_options: Option<&str>) -> PathBuf {
    if let Some(b) = from_options.filter(|b| !b.is_empty()) {
        return PathBuf::from(b);
    }
    if let Some(b) = std::env::var_os("BERTH_SHIM_RUNTIME").filter(|b| !b.is_empty()) {
        return PathBuf::from(b);
    }
    if let Some(p) = find_on_path("berth-runtime") {
        return p;
    }
    find_on_path("runc").unwrap_or_else(|| PathBuf::from("runc"))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_error_takes_the_newest_error_after_offset() {
        let dir = std::env::temp_dir().join(format!("berth-shim-ut-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log.json");
        let old = "{\"level\":\"error\",\"msg\":\"old\",\"time\":\"t\"}\n";
        std::fs::write(
            &log,
            format!("{old}{{\"level\":\"info\",\"msg\":\"x\"}}\n{{\"level\":\"error\",\"msg\":\"exec: \\\"nope\\\": not found\"}}\nnot json\n"),
        )
        .unwrap();
        assert_eq!(
            last_error(&log, old.len() as u64).as_deref(),
            Some("exec: \"nope\": not found")
        );
        assert_eq!(last_error(&log, 10_000), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
