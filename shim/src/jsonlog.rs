//! Docker's json-file log driver: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"<RFC 3339 nano>"}`, rotated by size into
//! `<path>.1` … `<path>.<max-file - 1>`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::timefmt::rfc3339_nano;

/// Docker splits lines longer than this into several entries.
pub const MAX_LINE: usize = 16 * 1024;

pub struct JsonLog {
    inner: Mutex<LogFile>,
}

struct LogFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: Option<u64>,
    max_files: u32,
}

#[derive(Serialize)]
struct Entry<'a> {
    log: &'a str,
    stream: &'a str,
    time: String,
}

impl JsonLog {
    pub fn open(path: &Path, max_size: Option<u64>, max_files: u32) -> Result<JsonLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("create log directory {}", dir.display()))?;
        }
        let file = open_append(path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(JsonLog {
            inner: Mutex::new(LogFile {
                path: path.to_path_buf(),
                file,
                size,
                max_size,
                max_files: max_files.max(1),
            }),
        })
    }

    /// Append one entry; `line` includes its trailing newline when it had one.
    pub fn write(&self, stream: &str, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let entry = Entry {
            log: &text,
            stream,
            time: rfc3339_nano(SystemTime::now()),
        };
        let Ok(mut buf) = serde_json::to_vec(&entry) else {
            return;
        };
        buf.push(b'\n');
        let mut f = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = f.append(&buf) {
            tracing::warn!("write log {}: {e:#}", f.path.display());
        }
    }
}

impl LogFile {
    fn append(&mut self, buf: &[u8]) -> Result<()> {
        if let Some(max) = self.max_size {
            if self.size > 0 && self.size + buf.len() as u64 > max {
                self.rotate()?;
            }
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.max_files > 1 {
            for n in (1..self.max_files - 1).rev() {
                let from = numbered(n);
                if from.exists() {
                    std::fs::rename(&from, numbered(n + 1))
                        .with_context(|| format!("rotate {}", from.display()))?;
                }
            }
            std::fs::rename(&self.path, numbered(1))
                .with_context(|| format!("rotate {}", self.path.display()))?;
            self.file = open_append(&self.path)?;
        } else {
            // One file only: start it over.
            self.file.set_len(0)?;
        }
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("open log file {}", path.display()))
}

/// Cuts a byte stream into log lines; keeps a partial line until its newline arrives.
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn feed(&mut self, data: &[u8], mut emit: impl FnMut(&[u8])) {
        self.pending.extend_from_slice(data);
        let mut start = 0;
        while let Some(pos) = self.pending[start..].iter().position(|b| *b == b'\n') {
            emit(&self.pending[start..start + pos + 1]);
            start += pos + 1;
        }
        while self.pending.len() - start >= MAX_LINE {
            emit(&self.pending[start..start + MAX_LINE]);
            start += MAX_LINE;
        }
        self.pending.drain(..start);
    }

    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            emit(&self.pending);
            self.pending.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("berth-shim-jsonlog-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn writes_docker_entries() {
        let d = tmpdir("entries");
        let p = d.join("c.log");
        let log = JsonLog::open(&p, None, 1).unwrap();
        log.write("stdout", b"hello \"x\"\n");
        log.write("stderr", b"\xffoops");
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["log"], "hello \"x\"\n");
        assert_eq!(lines[0]["stream"], "stdout");
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(lines[1]["log"], "\u{fffd}oops");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn rotates_by_size() {
        let d = tmpdir("rotate");
        let p = d.join("c.log");
        let log = JsonLog::open(&p, Some(200), 3).unwrap();
        for i in 0..20 {
            log.write("stdout", format!("line {i}\n").as_bytes());
        }
        assert!(std::fs::metadata(&p).unwrap().len() <= 200);
        assert!(d.join("c.log.1").exists());
        assert!(d.join("c.log.2").exists());
        assert!(!d.join("c.log.3").exists());
        let newest = std::fs::read_to_string(&p).unwrap();
        assert!(newest.contains("line 19\\n"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn splits_lines() {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        s.feed(b"a\nb", |l| out.push(l.to_vec()));
        s.feed(b"c\n\n", |l| out.push(l.to_vec()));
        s.feed(b"tail", |l| out.push(l.to_vec()));
        s.finish(|l| out.push(l.to_vec()));
        assert_eq!(
            out,
            vec![
                b"a\n".to_vec(),
                b"bc\n".to_vec(),
                b"\n".to_vec(),
                b"tail".to_vec()
            ]
        );
    }
}
