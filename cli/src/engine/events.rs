//! The events log: daemonless, so each berth command (and the exit command the shims run)
//! appends what it did to `$BERTH_RUN/events.log`, one JSON line per event in the shape of
//! Docker's `/events` messages. Each line goes out in one `write(2)` on an `O_APPEND`
//! descriptor, so lines of concurrent commands never interleave. The log is bounded: past
//! `MAX_BYTES` it is renamed to `events.log.1` (the one before is dropped) under a lock;
//! a writer that still holds the old file finishes its line there.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::containers::record::Record;

/// Rotate past this size: two files of 1 MiB hold thousands of events.
pub const MAX_BYTES: u64 = 1 << 20;

/// Who an event is about: a container's id, a network's id, a volume's name.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// One event, as Docker's API sends it (and `events --format '{{json .}}'` prints it).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Event {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub from: String,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

impl Event {
    pub fn new(kind: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) -> Event {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let mut e = Event {
            kind: kind.to_string(),
            action: action.to_string(),
            actor: Actor {
                id: id.to_string(),
                attributes,
            },
            scope: "local".into(),
            time: nanos / 1_000_000_000,
            time_nano: nanos,
            ..Default::default()
        };
        // Docker's deprecated top-level fields, still filled for containers.
        if kind == "container" {
            e.status = action.to_string();
            e.id = id.to_string();
            e.from = e.actor.attributes.get("image").cloned().unwrap_or_default();
        }
        e
    }

    /// A container's event: its image, name and labels as attributes, plus `extra`.
    pub fn container(rec: &Record, action: &str, extra: &[(&str, String)]) -> Event {
        let mut attrs: BTreeMap<String, String> = rec.config.labels.clone();
        attrs.insert("image".into(), rec.image.clone());
        attrs.insert("name".into(), rec.name.clone());
        for (k, v) in extra {
            attrs.insert(k.to_string(), v.clone());
        }
        Event::new("container", action, &rec.id, attrs)
    }

    /// Docker's line: `2026-12-05T19:00:00.000000000Z container start <id> (image=busybox, name=web)`.
    pub fn line(&self) -> String {
        let attrs: Vec<String> = self
            .actor
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut s = format!(
            "{} {} {} {}",
            rfc3339_nanos(self.time_nano),
            self.kind,
            self.action,
            self.actor.id
        );
        if !attrs.is_empty() {
            s.push_str(&format!(" ({})", attrs.join(", ")));
        }
        s
    }
}

/// `2026-12-05T19:00:00.000000000Z`: always nine digits, as Docker prints event times.
pub fn rfc3339_nanos(nanos: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(nanos.max(0) as u64);
    humantime::format_rfc3339_nanos(t).to_string()
}

impl super::Engine {
    /// Append an event to this engine's log.
    pub fn emit(&self, e: &Event) {
        emit(&self.run, e);
    }

    /// `network connect|disconnect <network id> (container=<id>, name=<network>, type=bridge)`.
    pub fn emit_network(&self, container: &str, action: &str, network_id: &str, network: &str) {
        let mut a = BTreeMap::new();
        a.insert("container".to_string(), container.to_string());
        a.insert("name".to_string(), network.to_string());
        a.insert("type".to_string(), "bridge".to_string());
        emit(&self.run, &Event::new("network", action, network_id, a));
    }

    /// A container's event (see [`Event::container`]).
    pub fn emit_container(&self, rec: &Record, action: &str, extra: &[(&str, String)]) {
        emit(&self.run, &Event::container(rec, action, extra));
    }
}

pub fn log_path(run: &Path) -> PathBuf {
    run.join("events.log")
}

/// Append one event. Failures are ignored: an event never fails the command it reports.
pub fn emit(run: &Path, e: &Event) {
    let _ = append(&log_path(run), e, MAX_BYTES);
}

fn append(path: &Path, e: &Event, max: u64) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut line = serde_json::to_vec(e).expect("an event serialises");
    line.push(b'\n');
    let mut f = open_append(path)?;
    if f.metadata()?.len() + line.len() as u64 > max {
        rotate(path, max)?;
        f = open_append(path)?;
    }
    // One write: O_APPEND puts it at the end as a whole.
    f.write_all(&line)
}

fn open_append(path: &Path) -> std::io::Result<File> {
    File::options()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Rename the full log to `.1` under a lock, unless another writer just did.
fn rotate(path: &Path, max: u64) -> std::io::Result<()> {
    let lock_path = path.with_extension("log.lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)?;
    let _lock =
        Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, e)| std::io::Error::from(e))?;
    match std::fs::metadata(path) {
        Ok(m) if m.len() >= max / 2 => std::fs::rename(path, rotated(path)),
        _ => Ok(()),
    }
}

fn rotated(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".1");
    PathBuf::from(s)
}

/// Every event still in the log, oldest first.
pub fn read_all(run: &Path) -> Vec<Event> {
    let path = log_path(run);
    let mut out = Vec::new();
    for p in [rotated(&path), path] {
        if let Ok(f) = File::open(&p) {
            out.extend(parse_lines(BufReader::new(f)));
        }
    }
    out
}

fn parse_lines(r: impl BufRead) -> Vec<Event> {
    r.lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

/// Reads the events written after it was made, across rotations.
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    partial: String,
}

impl Follower {
    /// Start at the current end of the log.
    pub fn from_end(run: &Path) -> Follower {
        let path = log_path(run);
        let file = File::open(&path).ok().and_then(|mut f| {
            f.seek(SeekFrom::End(0)).ok()?;
            Some(f)
        });
        Follower {
            path,
            file,
            partial: String::new(),
        }
    }

    /// The complete lines added since the last call.
    pub fn poll(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            if self.file.is_none() {
                self.file = File::open(&self.path).ok();
                if self.file.is_none() {
                    return out;
                }
            }
            let f = self.file.as_mut().expect("opened above");
            let mut buf = String::new();
            let _ = f.read_to_string(&mut buf);
            self.partial.push_str(&buf);
            while let Some(i) = self.partial.find('\n') {
                let line: String = self.partial.drain(..=i).collect();
                if let Ok(e) = serde_json::from_str(line.trim_end()) {
                    out.push(e);
                }
            }
            // Rotated under us: what is left of the old file was read above; go on with
            // the new one from its start.
            let same = match (std::fs::metadata(&self.path), f.metadata()) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                (Err(_), _) => true,
                _ => false,
            };
            if same {
                return out;
            }
            self.file = None;
            self.partial.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: &str) -> Event {
        let mut a = BTreeMap::new();
        a.insert("name".to_string(), "web".to_string());
        a.insert("image".to_string(), "busybox".to_string());
        Event::new("container", action, "abc", a)
    }

    #[test]
    fn lines_read_like_dockers() {
        let mut e = ev("start");
        e.time_nano = 1_796_497_200_000_000_000;
        assert_eq!(
            e.line(),
            "2026-12-05T19:00:00.000000000Z container start abc (image=busybox, name=web)"
        );
    }

    #[test]
    fn the_log_rotates_and_a_follower_reads_across() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path());
        let mut f = Follower::from_end(dir.path());
        let max = 2000;
        for i in 0..40 {
            append(&path, &ev(&format!("a{i}")), max).unwrap();
            if i % 7 == 0 {
                let got = f.poll();
                assert!(!got.is_empty());
            }
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= max);
        assert!(rotated(&path).exists());
        let all = read_all(dir.path());
        assert!(all.len() < 40 && all.len() > 5);
        assert_eq!(all.last().unwrap().action, "a39");
        // A follower from the start sees every event once, in order, across rotations.
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path());
        let mut f = Follower::from_end(dir.path());
        let mut seen = Vec::new();
        for i in 0..100 {
            append(&path, &ev(&format!("{i}")), max).unwrap();
            if i % 3 == 0 {
                seen.extend(f.poll().into_iter().map(|e| e.action));
            }
        }
        seen.extend(f.poll().into_iter().map(|e| e.action));
        let want: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        assert_eq!(seen, want);
    }
}
