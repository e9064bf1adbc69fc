//! `logs`: the shim's json-file log (`<id>-json.log`, rotated to `.1`, `.2`, …), with
//! `--tail` read from the end (fast on a large log), `--since`/`--until`, `-t`, and `-f`
//! that follows across rotation until the container stops.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Result;
use clap::Args;
use serde::Deserialize;

use super::engine_failure;
use crate::engine::Engine;
use crate::Failure;

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Show extra details provided to logs
    #[arg(long)]
    pub details: bool,
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m")
    #[arg(long)]
    pub since: Option<String>,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m")
    #[arg(long)]
    pub until: Option<String>,
    pub container: String,
}

#[derive(Deserialize)]
struct Line {
    log: String,
    stream: String,
    time: String,
}

/// Docker's time arguments: RFC 3339, a Unix time (with fraction), or a duration back
/// from now.
fn parse_time(s: &str) -> Result<SystemTime, Failure> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Ok(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs));
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(SystemTime::now() - d);
    }
    Err(Failure::new(1, format!("Error response from daemon: invalid value for \"since\": failed to parse value as time or duration: \"{s}\"")))
}

/// The log's files, oldest first.
fn files(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for n in (1..100).rev() {
        let p = PathBuf::from(format!("{}.{n}", path.display()));
        if p.exists() {
            out.push(p);
        }
    }
    if path.exists() {
        out.push(path.to_path_buf());
    }
    out
}

/// The last `n` lines of the log, reading blocks backwards from the newest file.
fn tail_lines(files: &[PathBuf], n: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for f in files.iter().rev() {
        let Ok(mut file) = File::open(f) else {
            continue;
        };
        let mut pos = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut carry: Vec<u8> = Vec::new();
        while pos > 0 && lines.len() < n {
            let step = pos.min(64 * 1024);
            pos -= step;
            let mut block = vec![0u8; step as usize];
            if file.seek(SeekFrom::Start(pos)).is_err() || file.read_exact(&mut block).is_err() {
                break;
            }
            block.extend_from_slice(&carry);
            let mut parts: Vec<&[u8]> = block.split(|b| *b == b'\n').collect();
            // The first piece may be the end of a line that starts in an earlier block.
            carry = parts.remove(0).to_vec();
            for p in parts.into_iter().rev() {
                if !p.is_empty() && lines.len() < n {
                    lines.push(String::from_utf8_lossy(p).into_owned());
                }
            }
        }
        if pos == 0 && !carry.is_empty() && lines.len() < n {
            lines.push(String::from_utf8_lossy(&carry).into_owned());
        }
        if lines.len() >= n {
            break;
        }
    }
    lines.reverse();
    lines
}

struct Printer {
    timestamps: bool,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
}

impl Printer {
    /// Print one json-file line; false once past `--until`.
    fn print(&self, raw: &str) -> bool {
        let Ok(l) = serde_json::from_str::<Line>(raw) else {
            return true;
        };
        let t = humantime::parse_rfc3339_weak(&l.time).ok();
        if let (Some(s), Some(t)) = (self.since, t) {
            if t < s {
                return true;
            }
        }
        if let (Some(u), Some(t)) = (self.until, t) {
            if t > u {
                return false;
            }
        }
        let text = if self.timestamps {
            format!("{} {}", l.time, l.log)
        } else {
            l.log
        };
        let r = if l.stream == "stderr" {
            std::io::stderr().write_all(text.as_bytes())
        } else {
            std::io::stdout().write_all(text.as_bytes())
        };
        r.is_ok()
    }
}

pub async fn logs(engine: &mut Engine, a: &LogsArgs) -> Result<()> {
    let rec = engine
        .container(&a.container)
        .map_err(|e| engine_failure(e, 1))?;
    if rec.host.log_config.kind == "none" {
        return Err(Failure::new(
            1,
            "Error response from daemon: configured logging driver does not support reading",
        )
        .into());
    }
    let p = Printer {
        timestamps: a.timestamps,
        since: a.since.as_deref().map(parse_time).transpose()?,
        until: a.until.as_deref().map(parse_time).transpose()?,
    };
    let path = engine.log_path(&rec.id);
    let all = files(&path);
    let tail: Option<usize> = match a.tail.as_str() {
        "all" | "-1" => None,
        n => Some(
            n.parse()
                .map_err(|_| Failure::new(1, format!("invalid tail value: {n}")))?,
        ),
    };
    // Where following picks up: the end of the current file as read now.
    let mut offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let mut inode = std::fs::metadata(&path).map(|m| m.ino()).unwrap_or(0);
    match tail {
        Some(n) => {
            for l in tail_lines(&all, n) {
                if !p.print(&l) {
                    return Ok(());
                }
            }
        }
        None => {
            for f in &all {
                let Ok(file) = File::open(f) else { continue };
                let mut reader = BufReader::new(file);
                let mut line = String::new();
                let mut read = 0u64;
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    read += line.len() as u64;
                    if !p.print(&line) {
                        return Ok(());
                    }
                    line.clear();
                }
                if f == &path {
                    offset = read;
                }
            }
        }
    }
    let _ = std::io::stdout().flush();
    if !a.follow || p.until.is_some() {
        return Ok(());
    }
    let mut partial = String::new();
    loop {
        let live = engine.state_of(&rec).status.is_live();
        let meta = std::fs::metadata(&path).ok();
        let now_inode = meta.as_ref().map(|m| m.ino()).unwrap_or(0);
        if now_inode != inode {
            // Rotated: finish the old file (now `.1`), then start the new one at 0.
            let old = PathBuf::from(format!("{}.1", path.display()));
            read_from(&old, &mut offset, &mut partial, &p);
            offset = 0;
            inode = now_inode;
        }
        let grew = read_from(&path, &mut offset, &mut partial, &p);
        let _ = std::io::stdout().flush();
        if !grew && !live {
            return Ok(());
        }
        if !grew {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Print what `path` has past `offset`; whether there was anything.
fn read_from(path: &Path, offset: &mut u64, partial: &mut String, p: &Printer) -> bool {
    let Ok(mut f) = File::open(path) else {
        return false;
    };
    if f.seek(SeekFrom::Start(*offset)).is_err() {
        return false;
    }
    let mut buf = String::new();
    let n = f.read_to_string(&mut buf).unwrap_or(0);
    if n == 0 {
        return false;
    }
    *offset += n as u64;
    partial.push_str(&buf);
    while let Some(i) = partial.find('\n') {
        let line: String = partial.drain(..=i).collect();
        p.print(&line);
    }
    true
}
