//! What `inspect`, `ps`, `port` and `top` show of a container: Docker's JSON shapes.

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};

use super::engine_failure;
use crate::engine::containers::record::Record;
use crate::engine::containers::state::State;
use crate::engine::Engine;
use crate::Failure;

/// Docker's `docker inspect` object for a container.
pub fn inspect_json(engine: &Engine, rec: &Record, st: &State) -> Value {
    let cmd = rec.command();
    let bundle = engine.bundle_dir(&rec.id);
    let mut ns = rec.network_settings.clone();
    if let Some(o) = ns.as_object_mut() {
        o.remove("ResolvConf");
        o.remove("Hosts");
    }
    if ns.is_null() {
        ns = json!({"Ports": {}, "Networks": {}});
    }
    if let Some(nets) = ns["Networks"].as_object_mut() {
        for (name, n) in nets.iter_mut() {
            // Records from before IPv6 lack these; Docker shows "" and 0 without IPv6.
            for (k, empty) in [
                ("IPv6Gateway", json!("")),
                ("GlobalIPv6Address", json!("")),
                ("GlobalIPv6PrefixLen", json!(0)),
            ] {
                if n.get(k).is_none_or(Value::is_null) {
                    n[k] = empty;
                }
            }
            // What the user asked for (--ip, --ip6), as Docker's IPAMConfig: null when
            // nothing was, empty fields left out.
            let asked = rec.networks.iter().find(|a| &a.network == name);
            let mut cfg = serde_json::Map::new();
            if let Some(a) = asked {
                for (k, v) in [("IPv4Address", &a.ip), ("IPv6Address", &a.ip6)] {
                    if !v.is_empty() {
                        cfg.insert(k.into(), json!(v));
                    }
                }
            }
            n["IPAMConfig"] = if cfg.is_empty() {
                Value::Null
            } else {
                Value::Object(cfg)
            };
        }
    }
    // The primary network's address at the top level, as Docker has it for `bridge`.
    if let Some(first) = ns["Networks"]
        .as_object()
        .and_then(|n| n.values().next().cloned())
    {
        for k in [
            "IPAddress",
            "IPPrefixLen",
            "Gateway",
            "MacAddress",
            "EndpointID",
            "IPv6Gateway",
            "GlobalIPv6Address",
            "GlobalIPv6PrefixLen",
        ] {
            ns[k] = first[k].clone();
        }
    }
    let zero = "0001-01-01T00:00:00Z";
    json!({
        "Id": rec.id,
        "Created": rec.created,
        "Path": cmd.first().cloned().unwrap_or_default(),
        "Args": cmd.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": st.status.as_str(),
            "Running": st.status.is_live() && st.status != crate::engine::containers::state::Status::Restarting,
            "Paused": st.status == crate::engine::containers::state::Status::Paused,
            "Restarting": st.status == crate::engine::containers::state::Status::Restarting,
            "OOMKilled": st.oom_killed,
            "Dead": false,
            "Pid": st.pid,
            "ExitCode": st.exit_code,
            "Error": "",
            "StartedAt": if st.started_at.is_empty() { zero } else { &st.started_at },
            "FinishedAt": if st.finished_at.is_empty() || st.status.is_live() { zero } else { &st.finished_at },
            "Health": st.health,
        },
        "Image": rec.image_id,
        "ResolvConfPath": engine.container_dir(&rec.id).join("resolv.conf"),
        "HostnamePath": engine.container_dir(&rec.id).join("hostname"),
        "HostsPath": engine.container_dir(&rec.id).join("hosts"),
        "LogPath": if rec.host.log_config.kind == "none" { String::new() } else { engine.log_path(&rec.id).display().to_string() },
        "Name": format!("/{}", rec.name),
        "RestartCount": st.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "HostConfig": rec.host,
        "GraphDriver": {"Name": "overlay2", "Data": {"MergedDir": bundle.join("rootfs")}},
        "Mounts": rec.mounts,
        "Config": rec.config,
        "NetworkSettings": ns,
    })
}

/// `0.0.0.0:8080->80/tcp, 53/udp`: published ports, then exposed ones left unpublished.
pub fn ports_column(rec: &Record) -> String {
    let mut out: Vec<String> = Vec::new();
    let published = rec.network_settings["Ports"].as_object();
    let mut keys: Vec<&String> = rec.config.exposed_ports.keys().collect();
    if let Some(p) = published {
        for k in p.keys() {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    keys.sort_by_key(|k| {
        k.split('/')
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0)
    });
    for k in keys {
        match published.and_then(|p| p.get(k)).and_then(|v| v.as_array()) {
            Some(binds) if !binds.is_empty() => {
                for b in binds {
                    out.push(format!(
                        "{}:{}->{k}",
                        b["HostIp"].as_str().unwrap_or("0.0.0.0"),
                        b["HostPort"].as_str().unwrap_or_default()
                    ));
                }
            }
            _ => out.push(k.clone()),
        }
    }
    out.join(", ")
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    /// Display total file sizes
    #[arg(short, long)]
    pub size: bool,
    /// Only inspect objects of the given type
    #[arg(long = "type")]
    pub kind: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `inspect`: containers first, then images, as Docker looks names up.
pub async fn inspect(engine: &mut Engine, a: &InspectArgs) -> Result<()> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for n in &a.names {
        let want_container = a.kind.as_deref().is_none_or(|k| k == "container");
        let want_image = a.kind.as_deref().is_none_or(|k| k == "image");
        if want_container {
            if let Ok(rec) = engine.container(n) {
                let st = engine.state_of(&rec);
                let mut v = inspect_json(engine, &rec, &st);
                if a.size {
                    v["SizeRw"] = json!(engine.container_size(&rec.id));
                }
                out.push(v);
                continue;
            }
        }
        if want_image {
            let r = engine
                .images()
                .await?
                .inspect(berth_proto::imaged::InspectRequest { image: n.clone() })
                .await;
            if let Ok(r) = r {
                out.push(serde_json::from_str(&r.into_inner().json)?);
                continue;
            }
        }
        errors.push(format!("Error: No such object: {n}"));
    }
    crate::format::print_inspect(&out, a.format.as_deref())?;
    super::report(errors)
}

#[derive(Args, Debug)]
pub struct PortArgs {
    pub container: String,
    /// PRIVATE_PORT[/PROTO]
    pub port: Option<String>,
}

pub async fn port(engine: &mut Engine, a: &PortArgs) -> Result<()> {
    let rec = engine
        .container(&a.container)
        .map_err(|e| engine_failure(e, 1))?;
    let ports = rec.network_settings["Ports"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let want = a.port.as_ref().map(|p| {
        if p.contains('/') {
            p.clone()
        } else {
            format!("{p}/tcp")
        }
    });
    let mut any = false;
    for (k, binds) in &ports {
        if want.as_ref().is_some_and(|w| w != k) {
            continue;
        }
        for b in binds.as_array().into_iter().flatten() {
            let addr = format!(
                "{}:{}",
                b["HostIp"].as_str().unwrap_or("0.0.0.0"),
                b["HostPort"].as_str().unwrap_or_default()
            );
            if want.is_some() {
                println!("{addr}");
            } else {
                println!("{k} -> {addr}");
            }
            any = true;
        }
    }
    if !any {
        if let Some(w) = want {
            return Err(Failure::new(
                1,
                format!("Error: No public port '{w}' published for {}", a.container),
            )
            .into());
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct TopArgs {
    pub container: String,
    /// ps options
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

/// `top`: the host's `ps` over the container's processes (Docker runs ps -ef the same way).
pub async fn top(engine: &mut Engine, a: &TopArgs) -> Result<()> {
    let rec = engine
        .container(&a.container)
        .map_err(|e| engine_failure(e, 1))?;
    if !engine.state_of(&rec).status.is_live() {
        return Err(Failure::new(
            1,
            format!(
                "Error response from daemon: container {} is not running",
                rec.id
            ),
        )
        .into());
    }
    let shim = engine.shim_of(&rec.id).ok_or_else(|| {
        Failure::new(
            1,
            format!(
                "Error response from daemon: container {}: its shim is gone",
                rec.id
            ),
        )
    })?;
    let pids = shim.pids().map_err(|e| engine_failure(e, 1))?;
    let args = if a.ps_args.is_empty() {
        vec!["-ef".to_string()]
    } else {
        a.ps_args.clone()
    };
    let out = std::process::Command::new("ps").args(&args).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Ok(());
    };
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| {
            Failure::new(
                1,
                "Error response from daemon: Couldn't find PID field in ps output",
            )
        })?;
    println!("{header}");
    for l in lines {
        let pid = l
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{l}");
        }
    }
    Ok(())
}
