//! `ps`: Docker's columns, filters and `--format`.

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};

use super::view::ports_column;
use crate::engine::containers::record::Record;
use crate::engine::containers::state::{State, Status};
use crate::engine::Engine;
use crate::format::human::{ago, duration, size, unix_of};
use crate::Failure;

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long, default_value_t = -1)]
    pub last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    pub latest: bool,
    /// Display total file sizes
    #[arg(short, long)]
    pub size: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter output based on conditions provided
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
}

/// Docker's STATUS column.
pub fn status_text(st: &State) -> String {
    let since = |t: &str| duration(now() - unix_of(t));
    match st.status {
        Status::Created => "Created".into(),
        Status::Running => {
            let health = match st.health.as_ref().and_then(|h| h["Status"].as_str()) {
                Some("starting") => " (health: starting)",
                Some("healthy") => " (healthy)",
                Some("unhealthy") => " (unhealthy)",
                _ => "",
            };
            format!("Up {}{health}", since(&st.started_at))
        }
        Status::Paused => format!("Up {} (Paused)", since(&st.started_at)),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            st.exit_code,
            since(&st.finished_at)
        ),
        Status::Exited => format!("Exited ({}) {} ago", st.exit_code, since(&st.finished_at)),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Docker's COMMAND: the path, then the arguments, those with a space in single quotes;
/// cut to 20 characters with "…"; then quoted as Go's strconv.Quote does.
fn command_column(rec: &Record, no_trunc: bool) -> String {
    let words = rec.command();
    let mut cmd = words.first().cloned().unwrap_or_default();
    for a in words.iter().skip(1) {
        cmd.push(' ');
        if a.contains(' ') {
            cmd.push_str(&format!("'{a}'"));
        } else {
            cmd.push_str(a);
        }
    }
    if !no_trunc && cmd.chars().count() > 20 {
        cmd = cmd.chars().take(19).collect::<String>() + "…";
    }
    serde_json::to_string(&cmd).unwrap_or_default()
}

/// Does `rec` pass every `--filter` (Docker's: id, name, label, status, exited, ancestor,
/// network, volume, before, since)?
pub fn matches_filters(engine: &Engine, rec: &Record, filters: &[String]) -> Result<bool> {
    let st = engine.state_of(rec);
    for f in filters {
        let (k, v) = f.split_once('=').ok_or_else(|| {
            Failure::new(
                1,
                format!("Error: bad format of filter (expected name=value): {f}"),
            )
        })?;
        let ok = match k {
            "id" => rec.id.starts_with(v),
            "name" => rec.name.contains(v.trim_start_matches('/')),
            "label" => match v.split_once('=') {
                Some((lk, lv)) => rec.config.labels.get(lk).is_some_and(|x| x == lv),
                None => rec.config.labels.contains_key(v),
            },
            "status" => st.status.as_str() == v,
            "health" => {
                st.health
                    .as_ref()
                    .and_then(|h| h["Status"].as_str())
                    .unwrap_or("none")
                    == v
            }
            "exited" => st.status == Status::Exited && v.parse() == Ok(st.exit_code),
            "ancestor" => rec.image == v || rec.image_id.contains(v),
            "network" => rec.networks.iter().any(|n| n.network == v) || rec.host.network_mode == v,
            "volume" => rec
                .mounts
                .iter()
                .any(|m| m.name == v || m.destination == v || m.source == v),
            "before" | "since" => {
                let other = engine
                    .container(v)
                    .map_err(|e| Failure::new(1, format!("Error response from daemon: {e}")))?;
                if k == "before" {
                    rec.created < other.created
                } else {
                    rec.created > other.created
                }
            }
            "until" => {
                unix_of(&rec.created) < crate::format::human::unix_of(v).max(v.parse().unwrap_or(0))
            }
            _ => {
                return Err(Failure::new(
                    1,
                    format!("Error response from daemon: invalid filter '{k}'"),
                )
                .into())
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

pub fn row(engine: &Engine, rec: &Record, st: &State, a: &PsArgs) -> Value {
    let id = if a.no_trunc {
        rec.id.clone()
    } else {
        rec.id[..12].to_string()
    };
    let mut v = json!({
        "ID": id,
        "Image": rec.image,
        "Command": command_column(rec, a.no_trunc),
        "CreatedAt": rec.created,
        "RunningFor": ago(unix_of(&rec.created)),
        "Ports": ports_column(rec),
        "State": st.status.as_str(),
        "Status": status_text(st),
        "Names": rec.name,
        "Labels": rec.config.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
        "Mounts": rec.mounts.iter().map(|m| if m.name.is_empty() { m.source.clone() } else { m.name.clone() }).collect::<Vec<_>>().join(","),
        "Networks": if rec.networks.is_empty() { rec.host.network_mode.clone() } else { rec.networks.iter().map(|n| n.network.clone()).collect::<Vec<_>>().join(",") },
        "LocalVolumes": rec.mounts.iter().filter(|m| m.kind == "volume").count().to_string(),
    });
    if a.size {
        v["Size"] = json!(format!(
            "{} (virtual {})",
            size(engine.container_size(&rec.id)),
            size(engine.container_size(&rec.id))
        ));
    }
    v
}

pub async fn ps(engine: &mut Engine, a: &PsArgs) -> Result<()> {
    let mut recs = engine.store().all();
    let limit = if a.latest { 1 } else { a.last };
    let all = a.all || limit > 0;
    let mut rows = Vec::new();
    let mut ids = Vec::new();
    if limit > 0 {
        recs.truncate(limit as usize);
    }
    for rec in &recs {
        let st = engine.state_of(rec);
        if !all && !st.status.is_live() {
            continue;
        }
        if !matches_filters(engine, rec, &a.filter)? {
            continue;
        }
        ids.push(if a.no_trunc {
            rec.id.clone()
        } else {
            rec.id[..12].to_string()
        });
        rows.push(row(engine, rec, &st, a));
    }
    if a.quiet {
        for i in ids {
            println!("{i}");
        }
        return Ok(());
    }
    let default = if a.size {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Size}}"
    } else {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
    };
    crate::format::print_rows(&rows, a.format.as_deref(), default, header)
}

fn header(field: &str) -> String {
    match field {
        "ID" => "CONTAINER ID".into(),
        "RunningFor" | "CreatedAt" => "CREATED".into(),
        "LocalVolumes" => "LOCAL VOLUMES".into(),
        f => f.to_uppercase(),
    }
}
