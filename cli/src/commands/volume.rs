//! `volume create/ls/inspect/rm/prune`, with Docker's output.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use crate::engine::volumes::{CreateOptions, LabelFilter, VolumeError, VolumeUsers};
use crate::engine::Engine;
use crate::Failure;

/// Who uses which volume: the containers whose mounts name it, which makes `rm` refuse,
/// `prune` skip and `dangling=` filter them.
pub fn volume_users(engine: &Engine) -> Box<dyn VolumeUsers> {
    Box::new(crate::engine::containers::wiring::RecordUsers(
        engine.store(),
    ))
}

fn daemon(e: VolumeError) -> Failure {
    Failure::new(1, format!("Error response from daemon: {e}"))
}

/// `k=v` → (k, v); `k` → (k, "") as Docker's map options parse them.
pub fn key_values(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (s.clone(), String::new()),
        })
        .collect()
}

/// Go's sortorder.NaturalLess, as the docker CLI sorts names: digit runs compare as
/// numbers, so `v2` comes before `v10`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, _) => return Ordering::Less,
            (_, None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let na = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let nb = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (da, db) = (&a[..na], &b[..nb]);
                let ta = trim_zeros(da);
                let tb = trim_zeros(db);
                let o = ta.len().cmp(&tb.len()).then(ta.cmp(tb)).then(na.cmp(&nb));
                if o != Ordering::Equal {
                    return o;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let z = d.iter().take_while(|c| **c == b'0').count();
    &d[z..]
}

/// go-units' HumanSize (four significant digits), which prune's "Total reclaimed space"
/// uses; tables use three.
pub fn human_size4(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
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

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Specify volume name
    #[arg(long = "name")]
    pub name_flag: Option<String>,
    /// Specify volume driver name
    #[arg(short, long, default_value = "local")]
    pub driver: String,
    /// Set driver specific options
    #[arg(short, long = "opt")]
    pub opt: Vec<String>,
    /// Set metadata for a volume
    #[arg(long)]
    pub label: Vec<String>,
    pub name: Option<String>,
}

pub fn create(engine: &mut Engine, a: &CreateArgs) -> Result<()> {
    let name = match (&a.name_flag, &a.name) {
        (Some(f), Some(p)) if f != p => {
            return Err(Failure::new(
                1,
                "conflicting options: cannot specify a volume-name through both --name and as a positional arg",
            )
            .into())
        }
        (Some(n), _) | (None, Some(n)) => Some(n.clone()),
        (None, None) => None,
    };
    let v = engine
        .volumes()
        .create(&CreateOptions {
            name,
            driver: a.driver.clone(),
            labels: key_values(&a.label),
            options: key_values(&a.opt),
        })
        .map_err(daemon)?;
    println!("{}", v.name);
    Ok(())
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short, long)]
    pub quiet: bool,
    /// Provide filter values (e.g. "dangling=true")
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', or a Go template)
    #[arg(long)]
    pub format: Option<String>,
}

/// `volume ls --filter`: dangling, driver, label (and `label!`), name.
#[derive(Default)]
struct LsFilter {
    dangling: Option<bool>,
    names: Vec<String>,
    drivers: Vec<String>,
    labels: Vec<LabelFilter>,
}

fn ls_filter(specs: &[String]) -> Result<LsFilter, Failure> {
    let mut f = LsFilter::default();
    for s in specs {
        let Some((k, v)) = s.split_once('=') else {
            return Err(Failure::new(
                1,
                format!("invalid argument \"{s}\" for \"-f, --filter\" flag: bad format of filter (expected name=value)"),
            ));
        };
        match k {
            "dangling" => {
                f.dangling = Some(match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(Failure::new(
                            1,
                            format!("Error response from daemon: invalid filter 'dangling={v}'"),
                        ))
                    }
                })
            }
            "name" => f.names.push(v.to_string()),
            "driver" => f.drivers.push(v.to_string()),
            "label" => f.labels.push(LabelFilter::parse(v, false)),
            "label!" => f.labels.push(LabelFilter::parse(v, true)),
            _ => {
                return Err(Failure::new(
                    1,
                    format!("Error response from daemon: invalid filter '{k}'"),
                ))
            }
        }
    }
    Ok(f)
}

fn volume_header(field: &str) -> String {
    match field {
        "Name" => "VOLUME NAME".into(),
        f => f.to_uppercase(),
    }
}

pub fn ls(engine: &mut Engine, a: &LsArgs) -> Result<()> {
    let f = ls_filter(&a.filter)?;
    let users = volume_users(engine);
    let mut list = engine
        .volumes()
        .list()
        .map_err(|e| Failure::new(1, e.to_string()))?;
    list.sort_by(|x, y| natural_cmp(&x.name, &y.name));
    let mut rows = Vec::new();
    for v in list {
        if !f.names.is_empty() && !f.names.iter().any(|n| v.name.contains(n.as_str())) {
            continue;
        }
        if !f.drivers.is_empty() && !f.drivers.contains(&v.driver) {
            continue;
        }
        if !f.labels.iter().all(|l| l.matches(&v.labels)) {
            continue;
        }
        let links = users
            .users(&v.name)
            .map_err(|e| Failure::new(1, e.to_string()))?
            .len();
        if let Some(d) = f.dangling {
            if d != (links == 0) {
                continue;
            }
        }
        let labels = v
            .labels
            .iter()
            .map(|(k, x)| format!("{k}={x}"))
            .collect::<Vec<_>>()
            .join(",");
        rows.push(json!({
            "Availability": "N/A",
            "Driver": v.driver,
            "Group": "N/A",
            "Labels": labels,
            "Links": "N/A",
            "Mountpoint": v.mountpoint.display().to_string(),
            "Name": v.name,
            "Scope": "local",
            "Size": "N/A",
            "Status": "N/A",
        }));
    }
    let format = match (&a.format, a.quiet) {
        (Some(f), _) => Some(f.as_str()),
        (None, true) => Some("{{.Name}}"),
        (None, false) => None,
    };
    crate::format::print_rows(&rows, format, "table {{.Driver}}\t{{.Name}}", volume_header)
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

pub fn inspect(engine: &mut Engine, a: &InspectArgs) -> Result<()> {
    let vols = engine.volumes();
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in &a.volumes {
        match vols.get(name) {
            Ok(v) => found.push(v.inspect()),
            Err(VolumeError::NotFound(_)) => errors.push(format!("Error: No such volume: {name}")),
            Err(e) => return Err(daemon(e).into()),
        }
    }
    crate::format::print_inspect(&found, a.format.as_deref())?;
    if !errors.is_empty() {
        return Err(Failure::new(1, errors.join("\n")).into());
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Force the removal of one or more volumes
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub volumes: Vec<String>,
}

pub fn rm(engine: &mut Engine, a: &RmArgs) -> Result<()> {
    let users = volume_users(engine);
    let vols = engine.volumes();
    let mut errors = Vec::new();
    for name in &a.volumes {
        match vols.remove(name, a.force, users.as_ref()) {
            Ok(()) => println!("{name}"),
            Err(e) => errors.push(daemon(e).message),
        }
    }
    if !errors.is_empty() {
        return Err(Failure::new(1, errors.join("\n")).into());
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. "label=<label>")
    #[arg(long = "filter")]
    pub filter: Vec<String>,
}

pub fn prune(engine: &mut Engine, a: &PruneArgs) -> Result<()> {
    let mut all = a.all;
    let mut labels = Vec::new();
    for s in &a.filter {
        let (k, v) = s.split_once('=').unwrap_or((s.as_str(), ""));
        match k {
            "label" => labels.push(LabelFilter::parse(v, false)),
            "label!" => labels.push(LabelFilter::parse(v, true)),
            "all" => all |= matches!(v, "true" | "1"),
            _ => {
                return Err(Failure::new(
                    1,
                    format!("Error response from daemon: invalid filter '{k}'"),
                )
                .into())
            }
        }
    }
    let warning = if all {
        "WARNING! This will remove all local volumes not used by at least one container."
    } else {
        "WARNING! This will remove anonymous local volumes not used by at least one container."
    };
    if !a.force && !super::image::confirm(warning) {
        return Ok(());
    }
    let users = volume_users(engine);
    let r = engine
        .volumes()
        .prune(all, &labels, users.as_ref())
        .map_err(daemon)?;
    if !r.deleted.is_empty() {
        println!("Deleted Volumes:");
        for n in &r.deleted {
            println!("{n}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size4(r.reclaimed));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_and_sizes() {
        let mut v = vec!["v10", "v2", "a", "v1", "B"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["B", "a", "v1", "v2", "v10"]);
        assert_eq!(human_size4(0), "0B");
        assert_eq!(human_size4(1234), "1.234kB");
        assert_eq!(human_size4(12_000), "12kB");
        assert_eq!(human_size4(999), "999B");
    }

    #[test]
    fn filters_parse_like_dockers() {
        let f = ls_filter(&["dangling=true".into(), "label=a=b".into()]).unwrap();
        assert_eq!(f.dangling, Some(true));
        assert_eq!(f.labels[0].value.as_deref(), Some("b"));
        assert_eq!(
            ls_filter(&["until=1h".into()]).err().unwrap().message,
            "Error response from daemon: invalid filter 'until'"
        );
        assert!(ls_filter(&["dangling=maybe".into()]).is_err());
    }
}
