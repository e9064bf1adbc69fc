//! runc-compatible logging. With `--log-format json` every line is
//! `{"level":"error","msg":"...","time":"..."}`: containerd-shim-runc-v2 and dockerd read the
//! last error line of the `--log` file to tell the user why a container failed.
//!
//! A tiny `tracing` subscriber rather than tracing-subscriber: the runtime is started for
//! every container operation and re-executes itself from an in-memory copy, so every
//! kilobyte of binary is start-up time.

use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use crate::cli::LogFormat;
use crate::timefmt;

enum Sink {
    Stderr,
    File(Mutex<File>),
}

struct RuncLogger {
    max: Level,
    json: bool,
    sink: Sink,
}

#[derive(Default)]
struct Fields {
    msg: String,
    extra: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_string();
        } else {
            self.extra.push((field.name(), value.to_string()));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.msg = format!("{value:?}");
        } else {
            self.extra.push((field.name(), format!("{value:?}")));
        }
    }
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

impl RuncLogger {
    fn format(&self, level: &Level, f: Fields) -> String {
        let level = level_name(level);
        let time = timefmt::now();
        if self.json {
            let mut obj = serde_json::Map::new();
            obj.insert("level".into(), level.into());
            obj.insert("msg".into(), f.msg.into());
            obj.insert("time".into(), time.into());
            for (k, v) in f.extra {
                obj.insert(k.into(), v.into());
            }
            format!("{}\n", serde_json::Value::Object(obj))
        } else {
            let mut s = format!("time=\"{time}\" level={level} msg={:?}", f.msg);
            for (k, v) in f.extra {
                let _ = write!(s, " {k}={v:?}");
            }
            s.push('\n');
            s
        }
    }
}

impl Subscriber for RuncLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= &self.max
    }
    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _span: &Id, _values: &Record<'_>) {}
    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let line = self.format(event.metadata().level(), f);
        // Logging is best effort: a full disk must not turn into a second error.
        match &self.sink {
            Sink::Stderr => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
            Sink::File(m) => {
                if let Ok(mut file) = m.lock() {
                    let _ = file.write_all(line.as_bytes());
                }
            }
        }
    }
    fn enter(&self, _span: &Id) {}
    fn exit(&self, _span: &Id) {}
}

static LOG_FD: std::sync::OnceLock<std::os::fd::RawFd> = std::sync::OnceLock::new();

/// The `--log` file's descriptor: the processes we fork keep it (their warnings go there)
/// when they close everything else they inherited.
pub fn file_fd() -> Option<std::os::fd::RawFd> {
    LOG_FD.get().copied()
}

/// Install the global subscriber. A log file we cannot open must not stop a container from
/// starting, so we fall back to stderr.
pub fn init(log: Option<&Path>, format: LogFormat, debug: bool) {
    let file = log.and_then(|p| OpenOptions::new().create(true).append(true).open(p).ok());
    if let Some(f) = &file {
        let _ = LOG_FD.set(std::os::fd::AsRawFd::as_raw_fd(f));
    }
    let sink = file
        .map(|f| Sink::File(Mutex::new(f)))
        .unwrap_or(Sink::Stderr);
    let logger = RuncLogger {
        max: if debug { Level::DEBUG } else { Level::WARN },
        json: format == LogFormat::Json,
        sink,
    };
    let _ = tracing::subscriber::set_global_default(logger);
}
