//! `network create/ls/inspect/rm/prune` over berth-netd, with Docker's output.
//! (`network connect`/`disconnect` need containers; the engine side is
//! `engine::networking`.)

use anyhow::Result;
use berth_proto::netd as pb;
use clap::Args;
use serde_json::{json, Value};

use super::volume::{key_values, natural_cmp};
use crate::engine::volumes::LabelFilter;
use crate::engine::Engine;
use crate::format::{print_inspect, print_rows as print_table};
use crate::Failure;

/// The networks netd makes itself; they cannot be removed, and `type=builtin` lists them.
const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];

fn daemon(s: tonic::Status) -> Failure {
    Failure::new(1, format!("Error response from daemon: {}", s.message()))
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Driver to manage the Network
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    pub subnet: Vec<String>,
    /// Allocate container ip from a sub-range
    #[arg(long)]
    pub ip_range: Vec<String>,
    /// IPv4 Gateway for the master subnet
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Enable manual container attachment (always possible here)
    #[arg(long)]
    pub attachable: bool,
    /// Enable IPv6 networking
    #[arg(long)]
    pub ipv6: bool,
    /// Set metadata on a network
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short, long = "opt")]
    pub opt: Vec<String>,
    pub name: String,
}

pub async fn create(engine: &mut Engine, a: &CreateArgs) -> Result<()> {
    // One IPv4 subnet, and with --ipv6 one IPv6 subnet beside it (netd has no IPv6 pool).
    let (v6, v4): (Vec<String>, Vec<String>) =
        a.subnet.iter().cloned().partition(|s| s.contains(':'));
    if !v6.is_empty() && !a.ipv6 {
        return Err(Failure::new(
            1,
            format!(
                "Error response from daemon: subnet {} is IPv6: add --ipv6",
                v6[0]
            ),
        )
        .into());
    }
    if a.ipv6 && v6.len() != 1 {
        return Err(Failure::new(
            1,
            "Error response from daemon: --ipv6 needs one IPv6 --subnet (berth-netd has no IPv6 pool)",
        )
        .into());
    }
    if v4.len() > 1 || a.ip_range.len() > 1 || a.gateway.len() > 1 {
        return Err(Failure::new(
            1,
            "Error response from daemon: berth-netd supports one IPv4 subnet (with one ip-range and gateway) per network",
        )
        .into());
    }
    // The docker CLI's own check (consolidateIpam), before asking the daemon.
    if a.subnet.is_empty() && (!a.ip_range.is_empty() || !a.gateway.is_empty()) {
        return Err(Failure::new(
            1,
            "every ip-range or gateway must have a corresponding subnet",
        )
        .into());
    }
    let first = |v: &Vec<String>| v.first().cloned().unwrap_or_default();
    let id = engine
        .networks()
        .await?
        .create_network(pb::CreateNetworkRequest {
            name: a.name.clone(),
            driver: a.driver.clone(),
            subnet: first(&v4),
            ip_range: first(&a.ip_range),
            gateway: first(&a.gateway),
            internal: a.internal,
            labels: key_values(&a.label).into_iter().collect(),
            options: key_values(&a.opt).into_iter().collect(),
            enable_ipv6: a.ipv6,
            ipv6_subnet: first(&v6),
        })
        .await
        .map_err(daemon)?
        .into_inner()
        .id;
    let driver = if a.driver.is_empty() {
        "bridge"
    } else {
        &a.driver
    };
    network_event(engine, "create", &id, &a.name, driver);
    println!("{id}");
    Ok(())
}

/// `network create|destroy <id> (name=<name>, type=<driver>)` in the events log.
fn network_event(engine: &Engine, action: &str, id: &str, name: &str, driver: &str) {
    let attrs = [("name", name), ("type", driver)]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    engine.emit(&crate::engine::events::Event::new(
        "network", action, id, attrs,
    ));
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only display network IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate the output
    #[arg(long)]
    pub no_trunc: bool,
    /// Provide filter values (e.g. "driver=bridge")
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', or a Go template)
    #[arg(long)]
    pub format: Option<String>,
}

/// `network ls --filter`: driver, id (prefix), label (and `label!`), name (substring),
/// scope, type=custom|builtin, dangling.
#[derive(Default)]
struct LsFilter {
    drivers: Vec<String>,
    ids: Vec<String>,
    names: Vec<String>,
    scopes: Vec<String>,
    types: Vec<bool>,
    labels: Vec<LabelFilter>,
    dangling: Option<bool>,
}

fn ls_filter(specs: &[String]) -> Result<LsFilter, Failure> {
    let bad = |what: String| Failure::new(1, format!("Error response from daemon: {what}"));
    let mut f = LsFilter::default();
    for s in specs {
        let Some((k, v)) = s.split_once('=') else {
            return Err(Failure::new(
                1,
                format!("invalid argument \"{s}\" for \"-f, --filter\" flag: bad format of filter (expected name=value)"),
            ));
        };
        match k {
            "driver" => f.drivers.push(v.into()),
            "id" => f.ids.push(v.into()),
            "name" => f.names.push(v.into()),
            "scope" => f.scopes.push(v.into()),
            "label" => f.labels.push(LabelFilter::parse(v, false)),
            "label!" => f.labels.push(LabelFilter::parse(v, true)),
            "type" => f.types.push(match v {
                "builtin" => true,
                "custom" => false,
                _ => return Err(bad(format!("invalid filter: 'type'='{v}'"))),
            }),
            "dangling" => {
                f.dangling = Some(match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad(format!("invalid filter 'dangling={v}'"))),
                })
            }
            _ => return Err(bad(format!("invalid filter '{k}'"))),
        }
    }
    Ok(f)
}

impl LsFilter {
    fn matches(&self, n: &pb::NetworkSummary) -> bool {
        let builtin = PREDEFINED.contains(&n.name.as_str());
        let labels = n.labels.clone().into_iter().collect();
        (self.drivers.is_empty() || self.drivers.contains(&n.driver))
            && (self.ids.is_empty() || self.ids.iter().any(|i| n.id.starts_with(i.as_str())))
            && (self.names.is_empty() || self.names.iter().any(|x| n.name.contains(x.as_str())))
            && (self.scopes.is_empty() || self.scopes.contains(&n.scope))
            && (self.types.is_empty() || self.types.contains(&builtin))
            && self.labels.iter().all(|l| l.matches(&labels))
    }
}

/// Whether containers are attached (inspect's Containers), for `dangling=`.
async fn has_endpoints(engine: &mut Engine, id: &str) -> Result<bool> {
    let j = engine
        .networks()
        .await?
        .inspect_network(pb::InspectNetworkRequest {
            network: id.to_string(),
        })
        .await
        .map_err(daemon)?
        .into_inner()
        .json;
    let v: Value = serde_json::from_str(&j)?;
    Ok(v["Containers"].as_object().is_some_and(|m| !m.is_empty()))
}

/// RFC 3339 as Go prints a time.Time (`2024-05-01 10:00:00.123456789 +0000 UTC`), which
/// is what `network ls --format {{.CreatedAt}}` shows.
fn go_time(rfc3339: &str) -> String {
    let Ok(t) = humantime::parse_rfc3339_weak(rfc3339) else {
        return rfc3339.to_string();
    };
    let s = humantime::format_rfc3339_nanos(t).to_string();
    let (date, rest) = s.split_once('T').unwrap_or((&s, ""));
    let rest = rest.trim_end_matches('Z');
    let rest = match rest.split_once('.') {
        Some((hms, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                hms.to_string()
            } else {
                format!("{hms}.{frac}")
            }
        }
        None => rest.to_string(),
    };
    format!("{date} {rest} +0000 UTC")
}

fn network_header(field: &str) -> String {
    match field {
        "ID" => "NETWORK ID".into(),
        "CreatedAt" => "CREATED".into(),
        f => f.to_uppercase(),
    }
}

pub async fn ls(engine: &mut Engine, a: &LsArgs) -> Result<()> {
    let f = ls_filter(&a.filter)?;
    let mut list = engine
        .networks()
        .await?
        .list_networks(pb::ListNetworksRequest {})
        .await
        .map_err(daemon)?
        .into_inner()
        .networks;
    list.sort_by(|x, y| natural_cmp(&x.name, &y.name));
    let mut rows = Vec::new();
    for n in list {
        if !f.matches(&n) {
            continue;
        }
        if let Some(d) = f.dangling {
            // Docker counts the predefined networks as never dangling.
            let idle =
                !PREDEFINED.contains(&n.name.as_str()) && !has_endpoints(engine, &n.id).await?;
            if d != idle {
                continue;
            }
        }
        let id = if a.no_trunc {
            n.id.clone()
        } else {
            n.id.chars().take(12).collect()
        };
        let labels = n
            .labels
            .iter()
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        rows.push(json!({
            "CreatedAt": go_time(&n.created),
            "Driver": n.driver,
            "ID": id,
            "IPv4": "true",
            "IPv6": "false",
            "Internal": n.internal.to_string(),
            "Labels": labels,
            "Name": n.name,
            "Scope": n.scope,
        }));
    }
    let format = match (&a.format, a.quiet) {
        (Some(f), _) => Some(f.as_str()),
        (None, true) => Some("{{.ID}}"),
        (None, false) => None,
    };
    print_table(
        &rows,
        format,
        "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
        network_header,
    )
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    /// Verbose output for diagnostics (accepted; nothing more to show)
    #[arg(short, long)]
    pub verbose: bool,
    #[arg(required = true)]
    pub networks: Vec<String>,
}

pub async fn inspect(engine: &mut Engine, a: &InspectArgs) -> Result<()> {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in &a.networks {
        match engine
            .networks()
            .await?
            .inspect_network(pb::InspectNetworkRequest {
                network: name.clone(),
            })
            .await
        {
            Ok(r) => found.push(serde_json::from_str::<Value>(&r.into_inner().json)?),
            Err(s) if s.code() == tonic::Code::NotFound => {
                errors.push(format!("Error: No such network: {name}"))
            }
            Err(s) => return Err(daemon(s).into()),
        }
    }
    print_inspect(&found, a.format.as_deref())?;
    if !errors.is_empty() {
        return Err(Failure::new(1, errors.join("\n")).into());
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Do not error if the network does not exist
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub networks: Vec<String>,
}

/// netd's refusal worded as Docker words it.
fn rm_error(s: tonic::Status) -> String {
    if s.code() == tonic::Code::FailedPrecondition && s.message().contains("active endpoints") {
        format!(
            "Error response from daemon: error while removing network: {}",
            s.message()
        )
    } else {
        daemon(s).message
    }
}

pub async fn rm(engine: &mut Engine, a: &RmArgs) -> Result<()> {
    let mut errors = Vec::new();
    for name in &a.networks {
        match engine
            .networks()
            .await?
            .remove_network(pb::RemoveNetworkRequest {
                network: name.clone(),
            })
            .await
        {
            Ok(r) => {
                network_event(engine, "destroy", &r.into_inner().id, name, "bridge");
                println!("{name}")
            }
            Err(s) if a.force && s.code() == tonic::Code::NotFound => {}
            Err(s) => errors.push(rm_error(s)),
        }
    }
    if !errors.is_empty() {
        return Err(Failure::new(1, errors.join("\n")).into());
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. "label=<key>=<value>")
    #[arg(long = "filter")]
    pub filter: Vec<String>,
}

pub async fn prune(engine: &mut Engine, a: &PruneArgs) -> Result<()> {
    let mut labels = Vec::new();
    for s in &a.filter {
        let (k, v) = s.split_once('=').unwrap_or((s.as_str(), ""));
        match k {
            "label" => labels.push(LabelFilter::parse(v, false)),
            "label!" => labels.push(LabelFilter::parse(v, true)),
            _ => {
                return Err(Failure::new(
                    1,
                    format!("Error response from daemon: invalid filter '{k}'"),
                )
                .into())
            }
        }
    }
    if !a.force
        && !super::image::confirm(
            "WARNING! This will remove all custom networks not used by at least one container.",
        )
    {
        return Ok(());
    }
    let removed = if labels.is_empty() {
        engine
            .networks()
            .await?
            .prune_networks(pb::PruneNetworksRequest {})
            .await
            .map_err(daemon)?
            .into_inner()
            .removed
    } else {
        // netd prunes without conditions: choose here, and let netd refuse (in use since
        // we looked) what is no longer idle.
        let list = engine
            .networks()
            .await?
            .list_networks(pb::ListNetworksRequest {})
            .await
            .map_err(daemon)?
            .into_inner()
            .networks;
        let mut removed = Vec::new();
        for n in list {
            let l = n.labels.clone().into_iter().collect();
            if PREDEFINED.contains(&n.name.as_str()) || !labels.iter().all(|f| f.matches(&l)) {
                continue;
            }
            match engine
                .networks()
                .await?
                .remove_network(pb::RemoveNetworkRequest {
                    network: n.id.clone(),
                })
                .await
            {
                Ok(_) => removed.push(n.name),
                Err(s) if s.code() == tonic::Code::FailedPrecondition => {}
                Err(s) if s.code() == tonic::Code::NotFound => {}
                Err(s) => return Err(daemon(s).into()),
            }
        }
        removed
    };
    if !removed.is_empty() {
        println!("Deleted Networks:");
        for n in &removed {
            println!("{n}");
        }
        println!();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_times_and_filters() {
        assert_eq!(
            go_time("2024-05-01T10:00:00.5Z"),
            "2024-05-01 10:00:00.5 +0000 UTC"
        );
        assert_eq!(
            go_time("2024-05-01T10:00:00Z"),
            "2024-05-01 10:00:00 +0000 UTC"
        );
        let f = ls_filter(&["type=custom".into(), "name=net".into()]).unwrap();
        let mut n = pb::NetworkSummary {
            name: "bridge".into(),
            ..Default::default()
        };
        assert!(!f.matches(&n));
        n.name = "mynet".into();
        n.driver = "bridge".into();
        assert!(f.matches(&n));
        assert_eq!(
            ls_filter(&["nope=1".into()]).err().unwrap().message,
            "Error response from daemon: invalid filter 'nope'"
        );
    }
}

#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long)]
    pub alias: Vec<String>,
    /// IPv4 address (e.g., "172.30.100.104")
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address (e.g., "2001:db8::33")
    #[arg(long)]
    pub ip6: Option<String>,
    pub network: String,
    pub container: String,
}

pub async fn connect(engine: &mut Engine, a: &ConnectArgs) -> Result<()> {
    engine
        .connect_container(
            &a.container,
            &a.network,
            &a.alias,
            a.ip.as_deref(),
            a.ip6.as_deref(),
        )
        .await
        .map_err(|e| Failure::new(1, format!("Error response from daemon: {e}")).into())
}

#[derive(Args, Debug)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short, long)]
    pub force: bool,
    pub network: String,
    pub container: String,
}

pub async fn disconnect(engine: &mut Engine, a: &DisconnectArgs) -> Result<()> {
    engine
        .disconnect_container(&a.container, &a.network)
        .await
        .map_err(|e| Failure::new(1, format!("Error response from daemon: {e}")).into())
}
