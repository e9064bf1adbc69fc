//! OCI hooks: run each with the container state on stdin, honouring its timeout.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::Hook;

use crate::process::trampoline::Trampoline;

pub fn run_all(hooks: Option<&Vec<Hook>>, kind: &str, state: &[u8]) -> Result<()> {
    run_all_via(hooks, kind, state, None)
}

/// Hooks whose path resolves inside the container are run through the exec trampoline, so
/// an image cannot turn them into a `#!/proc/self/exe` of the runtime.
pub fn run_all_via(
    hooks: Option<&Vec<Hook>>,
    kind: &str,
    state: &[u8],
    trampoline: Option<&Trampoline>,
) -> Result<()> {
    for h in hooks.into_iter().flatten() {
        run_one(h, state, trampoline)
            .with_context(|| format!("{kind} hook {}", h.path().display()))?;
    }
    Ok(())
}

fn run_one(h: &Hook, state: &[u8], trampoline: Option<&Trampoline>) -> Result<()> {
    let mut args = h.args().clone().unwrap_or_default();
    if args.is_empty() {
        args.push(h.path().to_string_lossy().into_owned());
    }
    let mut cmd = match trampoline {
        // The trampoline execs its argv[0] with the rest as argv.
        Some(t) => {
            let mut c = Command::new(t.proc_path());
            c.arg0(h.path()).args(&args);
            c
        }
        None => {
            let mut c = Command::new(h.path());
            c.arg0(&args[0]).args(&args[1..]);
            c
        }
    };
    cmd.env_clear()
        .envs(h.env().iter().flatten().filter_map(|kv| kv.split_once('=')))
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("start")?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine: ignore EPIPE.
        let _ = stdin.write_all(state);
    }
    let deadline = h
        .timeout()
        .map(|t| Instant::now() + Duration::from_secs(t.max(0) as u64));
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {}s", h.timeout().unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        bail!(
            "{status}{}",
            if err.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", err.trim())
            }
        );
    }
    Ok(())
}
