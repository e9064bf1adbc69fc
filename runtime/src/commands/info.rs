//! Read-only and signalling commands: state, list, ps, kill, pause, resume.

use std::fs;
use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;

use crate::state::{Container, Status};

pub fn state(root: &Path, id: &str) -> Result<()> {
    let c = Container::load(root, id)?;
    let st = c.runc_state(root, c.status(root));
    println!("{}", serde_json::to_string_pretty(&st)?);
    Ok(())
}

/// SIGKILL, KILL, kill, 9.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if n <= 0 || n > libc::SIGRTMAX() {
            bail!("invalid signal {s:?}");
        }
        return Ok(n);
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    if let Some(rt) = name.strip_prefix("SIGRTMIN") {
        let off: i32 = if rt.is_empty() {
            0
        } else {
            rt.trim_start_matches('+')
                .parse()
                .with_context(|| format!("invalid signal {s:?}"))?
        };
        return Ok(libc::SIGRTMIN() + off);
    }
    if let Some(rt) = name.strip_prefix("SIGRTMAX") {
        let off: i32 = if rt.is_empty() {
            0
        } else {
            rt.trim_start_matches('-')
                .parse()
                .with_context(|| format!("invalid signal {s:?}"))?
        };
        return Ok(libc::SIGRTMAX() - off);
    }
    Signal::from_str(&name)
        .map(|s| s as i32)
        .map_err(|_| anyhow::anyhow!("unknown signal {s:?}"))
}

pub fn kill(root: &Path, id: &str, sig: &str, all: bool) -> Result<()> {
    let signo = parse_signal(sig)?;
    let c = Container::load(root, id)?;
    if c.status(root) == Status::Stopped && !all {
        bail!("container not running");
    }
    if all {
        let cg = c.cgroup()?;
        cg.kill_all(signo)
            .with_context(|| format!("signal {sig} to all processes of {id}"))?;
        return Ok(());
    }
    // SAFETY: kill(2) with a pid we verified is still the container's init.
    if unsafe { libc::kill(c.pid, signo) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("signal {sig} to container {id}"));
    }
    Ok(())
}

fn load_all(root: &Path) -> Result<Vec<(Container, Status)>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("read {}", root.display())),
    };
    for e in rd.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        match Container::load(root, &id) {
            Ok(c) => {
                let st = c.status(root);
                out.push((c, st));
            }
            // A create still in progress has no state.json yet: not worth a warning.
            Err(_) if !e.path().join(crate::state::STATE_FILE).exists() => {}
            Err(err) => tracing::warn!("{err:#}"),
        }
    }
    out.sort_by(|a, b| a.0.created.cmp(&b.0.created));
    Ok(out)
}

/// Go's tabwriter with runc's settings (minwidth 12, padding 3).
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, |r| r.len());
    let widths: Vec<usize> = (0..cols)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0).max(9) + 3)
        .collect();
    let mut s = String::new();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == cols {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}", w = widths[i]));
            }
        }
        s.push('\n');
    }
    s
}

pub fn list(root: &Path, format: &str, quiet: bool) -> Result<()> {
    let all = load_all(root)?;
    if quiet {
        for (c, _) in &all {
            println!("{}", c.id);
        }
        return Ok(());
    }
    match format {
        "json" => {
            let v: Vec<_> = all.iter().map(|(c, s)| c.runc_state(root, *s)).collect();
            println!("{}", serde_json::to_string(&v)?);
        }
        "table" => {
            let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
                .map(String::from)
                .to_vec()];
            for (c, s) in &all {
                let pid = if *s == Status::Stopped { 0 } else { c.pid };
                rows.push(vec![
                    c.id.clone(),
                    pid.to_string(),
                    s.to_string(),
                    c.bundle.display().to_string(),
                    c.created.clone(),
                    c.owner(root),
                ]);
            }
            print!("{}", table(&rows));
        }
        f => bail!("invalid format {f:?}: use table or json"),
    }
    Ok(())
}

pub fn ps(root: &Path, id: &str, format: &str, ps_args: &[String]) -> Result<()> {
    let c = Container::load(root, id)?;
    let pids = if c.status(root) == Status::Stopped {
        Vec::new()
    } else {
        c.cgroup()?.pids()?
    };
    match format {
        "json" => {
            println!("{}", serde_json::to_string(&pids)?);
            Ok(())
        }
        "table" => {
            let args: Vec<String> = if ps_args.is_empty() {
                vec!["-ef".into()]
            } else {
                ps_args.to_vec()
            };
            let out = std::process::Command::new("ps")
                .args(&args)
                .output()
                .context("run ps(1)")?;
            if !out.status.success() {
                bail!(
                    "ps {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let col = header
                .split_whitespace()
                .position(|h| h == "PID")
                .context("ps output has no PID column")?;
            println!("{header}");
            for l in lines {
                if let Some(p) = l
                    .split_whitespace()
                    .nth(col)
                    .and_then(|p| p.parse::<i32>().ok())
                {
                    if pids.contains(&p) {
                        println!("{l}");
                    }
                }
            }
            Ok(())
        }
        f => bail!("invalid format {f:?}: use table or json"),
    }
}

pub fn pause(root: &Path, id: &str) -> Result<()> {
    let c = Container::load(root, id)?;
    match c.status(root) {
        Status::Running | Status::Created => {
            c.cgroup()?.freeze().with_context(|| format!("pause {id}"))
        }
        s => bail!("container {id} is not running: {s}"),
    }
}

pub fn resume(root: &Path, id: &str) -> Result<()> {
    let c = Container::load(root, id)?;
    match c.status(root) {
        Status::Paused => c.cgroup()?.thaw().with_context(|| format!("resume {id}")),
        s => bail!("container {id} is not paused: {s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_and_numbers() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("hup").unwrap(), 1);
        assert_eq!(parse_signal("RTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }
}
