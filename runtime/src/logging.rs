//! runc-compatible logging. With `--log-format json` every line is
//! `{"level":"error","msg":"...","time":"..."}`: containerd-shim-runc-v2 and dockerd read the
//! last error line of the `--log` file to tell the user why a container failed.

use std::fmt;
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::LogFormat;
use crate::timefmt;

struct RuncFormat {
    json: bool,
}

#[derive(Default)]
struct Fields {
    msg: String,
    extra: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_string();
        } else {
            self.extra.push((field.name().to_string(), value.to_string()));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.msg = format!("{value:?}");
        } else {
            self.extra.push((field.name().to_string(), format!("{value:?}")));
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

impl<S, N> FormatEvent<S, N> for RuncFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut f = Fields::default();
        event.record(&mut f);
        let level = level_name(event.metadata().level());
        let time = timefmt::now();
        if self.json {
            let mut obj = serde_json::Map::new();
            obj.insert("level".into(), level.into());
            obj.insert("msg".into(), f.msg.into());
            obj.insert("time".into(), time.into());
            for (k, v) in f.extra {
                obj.insert(k, v.into());
            }
            writeln!(w, "{}", serde_json::Value::Object(obj))
        } else {
            write!(w, "time=\"{time}\" level={level} msg={:?}", f.msg)?;
            for (k, v) in f.extra {
                write!(w, " {k}={v:?}")?;
            }
            writeln!(w)
        }
    }
}

/// Install the global subscriber. Logging is best effort: a log file we cannot open must not
/// stop a container from starting, so we fall back to stderr.
pub fn init(log: Option<&Path>, format: LogFormat, debug: bool) {
    let level = if debug { Level::DEBUG } else { Level::WARN };
    let fmt = RuncFormat {
        json: format == LogFormat::Json,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .event_format(fmt);
    let file = log.and_then(|p| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    });
    let _ = match file {
        Some(f) => builder.with_writer(Mutex::new(f)).try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
}
