//! `stats`: Docker's live resource table, redrawn every second on a terminal, one shot
//! with `--no-stream`.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};

use super::engine_failure;
use crate::engine::containers::record::Record;
use crate::engine::containers::stats::{cpu_percent, Sample};
use crate::engine::Engine;
use crate::format::human::size;
use crate::Failure;

const INTERVAL: Duration = Duration::from_secs(1);

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    pub containers: Vec<String>,
}

const DEFAULT: &str = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

fn header(field: &str) -> String {
    match field {
        "ID" => "CONTAINER ID",
        "Container" => "CONTAINER",
        "Name" => "NAME",
        "CPUPerc" => "CPU %",
        "MemUsage" => "MEM USAGE / LIMIT",
        "MemPerc" => "MEM %",
        "NetIO" => "NET I/O",
        "BlockIO" => "BLOCK I/O",
        "PIDs" => "PIDS",
        f => return f.to_uppercase(),
    }
    .to_string()
}

/// go-units' BytesSize: binary units, four significant digits (`1.465MiB`, `7.775GiB`).
pub fn bytes_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    let digits = if v >= 1000.0 {
        0
    } else if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", UNITS[i])
}

/// One row of the table, as `--format` sees it.
pub fn row(
    rec: &Record,
    given: Option<&str>,
    s: Option<&Sample>,
    cpu: f64,
    no_trunc: bool,
) -> Value {
    let id = if no_trunc {
        rec.id.clone()
    } else {
        rec.id[..12].to_string()
    };
    let container = given.map(str::to_string).unwrap_or_else(|| id.clone());
    match s {
        Some(s) => {
            let mem_pct = if s.mem_limit > 0 {
                s.mem_usage as f64 / s.mem_limit as f64 * 100.0
            } else {
                0.0
            };
            json!({
                "Container": container,
                "ID": id,
                "Name": rec.name,
                "CPUPerc": format!("{cpu:.2}%"),
                "MemUsage": format!("{} / {}", bytes_size(s.mem_usage), bytes_size(s.mem_limit)),
                "MemPerc": format!("{mem_pct:.2}%"),
                "NetIO": format!("{} / {}", size(s.net_rx), size(s.net_tx)),
                "BlockIO": format!("{} / {}", size(s.block_read), size(s.block_write)),
                "PIDs": s.pids.to_string(),
            })
        }
        None => json!({
            "Container": container,
            "ID": id,
            "Name": rec.name,
            "CPUPerc": "0.00%",
            "MemUsage": "0B / 0B",
            "MemPerc": "0.00%",
            "NetIO": "0B / 0B",
            "BlockIO": "0B / 0B",
            "PIDs": "0",
        }),
    }
}

/// The containers to show now: those named, or every running one (every one with `-a`).
fn targets(engine: &Engine, a: &StatsArgs) -> Result<Vec<(Record, Option<String>)>> {
    if a.containers.is_empty() {
        return Ok(engine
            .store()
            .all()
            .into_iter()
            .filter(|r| a.all || engine.state_of(r).status.is_live())
            .map(|r| (r, None))
            .collect());
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for c in &a.containers {
        match engine.container(c) {
            Ok(r) => out.push((r, Some(c.clone()))),
            Err(e) => errors.push(engine_failure(e, 1).message),
        }
    }
    if !errors.is_empty() {
        return Err(Failure::new(1, errors.join("\n")).into());
    }
    Ok(out)
}

pub async fn stats(engine: &mut Engine, a: &StatsArgs) -> Result<()> {
    // Checked before the first sample, so a bad template fails at once.
    crate::format::template::Template::parse(match a.format.as_deref() {
        None | Some("") | Some("table") | Some("json") => DEFAULT,
        Some(f) => f,
    })
    .map_err(|e| Failure::new(1, e.to_string()))?;
    let tty = std::io::stdout().is_terminal();
    let mut prev: HashMap<String, Sample> = HashMap::new();
    loop {
        let list = targets(engine, a)?;
        let mut now: HashMap<String, Sample> = HashMap::new();
        for (rec, _) in &list {
            if let Some(s) = engine.container_sample(rec) {
                now.insert(rec.id.clone(), s);
            }
        }
        if a.no_stream && !now.is_empty() {
            // CPU % needs two readings, as Docker's daemon keeps the one before.
            prev = now;
            tokio::time::sleep(INTERVAL).await;
            now = HashMap::new();
            for (rec, _) in &list {
                if let Some(s) = engine.container_sample(rec) {
                    now.insert(rec.id.clone(), s);
                }
            }
        }
        let rows: Vec<Value> = list
            .iter()
            .map(|(rec, given)| {
                let s = now.get(&rec.id);
                let cpu = s.map_or(0.0, |s| cpu_percent(prev.get(&rec.id), s));
                row(rec, given.as_deref(), s, cpu, a.no_trunc)
            })
            .collect();
        if tty && !a.no_stream {
            // Docker's redraw: clear the screen, cursor home.
            print!("\x1b[2J\x1b[H");
        }
        crate::format::print_rows(&rows, a.format.as_deref(), DEFAULT, header)?;
        let _ = std::io::stdout().flush();
        if a.no_stream {
            return Ok(());
        }
        prev = now;
        tokio::time::sleep(INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_sizes_read_like_go_units() {
        assert_eq!(bytes_size(0), "0B");
        assert_eq!(bytes_size(1536 * 1024), "1.5MiB");
        assert_eq!(bytes_size(8_348_520_448), "7.775GiB");
        assert_eq!(bytes_size(512 * 1024), "512KiB");
        assert_eq!(bytes_size(1000), "1000B");
    }
}
