//! NAT and published ports in one nftables table of our own (`inet <table>`, `berth` unless
//! `--nft-table` says otherwise), written through nft's JSON API (`nft -j -f -`).
//!
//! The whole table is rebuilt from the state in one nft transaction (add, delete, add again and
//! fill), so the kernel always holds either the old or the new rule set, never half of one, and
//! a restarted daemon reconciles by simply applying its state. Nothing outside the table is
//! touched.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::state::State;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nft: cannot run: {0}")]
    Spawn(std::io::Error),
    #[error("nft -j -f - failed: {0}")]
    Failed(String),
}

/// Where a published port leads.
pub struct Dnat {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub protocol: String,
    pub addr: Ipv4Addr,
    pub port: u16,
}

fn m(left: Value, op: &str, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}
fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}
fn payload(proto: &str, field: &str) -> Value {
    json!({"payload": {"protocol": proto, "field": field}})
}
fn prefix(net: &ipnet::Ipv4Net) -> Value {
    json!({"prefix": {"addr": net.network().to_string(), "len": net.prefix_len()}})
}
fn fib_local() -> Value {
    m(
        json!({"fib": {"result": "type", "flags": ["daddr"]}}),
        "==",
        json!("local"),
    )
}

/// The published ports of every sandbox, resolved to the address of the sandbox's first
/// endpoint on a network that is not internal.
pub fn dnats(state: &State) -> Vec<Dnat> {
    let mut out = Vec::new();
    for s in state.sandboxes.values() {
        let target = s.endpoints.iter().find(|e| {
            state
                .networks
                .get(&e.network_id)
                .is_some_and(|n| n.driver == "bridge" && !n.internal)
        });
        let Some(ep) = target else { continue };
        for p in &s.ports {
            out.push(Dnat {
                host_ip: p.host_ip,
                host_port: p.host_port,
                protocol: p.protocol.clone(),
                addr: ep.ip,
                port: p.container_port,
            });
        }
    }
    out
}

/// The nft JSON commands that replace table `inet <table>` with what `state` needs.
pub fn ruleset(table: &str, state: &State) -> Value {
    let t = json!({"family": "inet", "name": table});
    let mut cmds = vec![
        // "add" first so that "delete" never fails on a missing table.
        json!({"add": {"table": t}}),
        json!({"delete": {"table": t}}),
        json!({"add": {"table": t}}),
    ];
    let chain = |name: &str, kind: Option<(&str, &str, i32)>| {
        let mut c = json!({"family": "inet", "table": table, "name": name});
        if let Some((ty, hook, prio)) = kind {
            c["type"] = json!(ty);
            c["hook"] = json!(hook);
            c["prio"] = json!(prio);
            c["policy"] = json!("accept");
        }
        json!({"add": {"chain": c}})
    };
    cmds.push(chain("prerouting", Some(("nat", "prerouting", -100))));
    cmds.push(chain("output", Some(("nat", "output", -100))));
    cmds.push(chain("postrouting", Some(("nat", "postrouting", 100))));
    cmds.push(chain("forward", Some(("filter", "forward", 0))));
    cmds.push(chain("input", Some(("filter", "input", 0))));
    cmds.push(chain("ports", None));
    let rule = |chain: &str, expr: Vec<Value>| json!({"add": {"rule": {"family": "inet", "table": table, "chain": chain, "expr": expr}}});
    // Traffic for a local address (any of the host's, 127.0.0.1 included) goes to the port map:
    // from other hosts and from containers (prerouting), and from the host itself (output).
    cmds.push(rule(
        "prerouting",
        vec![fib_local(), json!({"jump": {"target": "ports"}})],
    ));
    cmds.push(rule(
        "output",
        vec![fib_local(), json!({"jump": {"target": "ports"}})],
    ));
    for d in dnats(state) {
        let mut e = Vec::new();
        if let Some(ip) = d.host_ip {
            if !ip.is_unspecified() {
                e.push(m(payload("ip", "daddr"), "==", json!(ip.to_string())));
            }
        }
        e.push(m(meta("l4proto"), "==", json!(d.protocol)));
        e.push(m(payload(&d.protocol, "dport"), "==", json!(d.host_port)));
        e.push(json!({"dnat": {"family": "ip", "addr": d.addr.to_string(), "port": d.port}}));
        cmds.push(rule("ports", e));
    }
    for n in state.networks.values() {
        let (Some(subnet), "bridge") = (n.subnet, n.driver.as_str()) else {
            continue;
        };
        let br = json!(n.bridge);
        // Clients on the host's loopback reach containers through the bridge
        // (route_localnet): their source must become the gateway, or replies go nowhere.
        cmds.push(rule(
            "postrouting",
            vec![
                m(meta("oifname"), "==", br.clone()),
                m(
                    payload("ip", "saddr"),
                    "==",
                    json!({"prefix": {"addr": "127.0.0.0", "len": 8}}),
                ),
                json!({"masquerade": null}),
            ],
        ));
        // Hairpin: a container reaching a published port of a peer on its own bridge.
        cmds.push(rule(
            "postrouting",
            vec![
                m(meta("oifname"), "==", br.clone()),
                m(payload("ip", "saddr"), "==", prefix(&subnet)),
                m(json!({"ct": {"key": "status"}}), "in", json!("dnat")),
                json!({"masquerade": null}),
            ],
        ));
        if n.internal {
            // Nothing in or out but between the containers themselves, and DNS on the gateway.
            cmds.push(rule(
                "forward",
                vec![
                    m(meta("iifname"), "==", br.clone()),
                    m(meta("oifname"), "!=", br.clone()),
                    json!({"drop": null}),
                ],
            ));
            cmds.push(rule(
                "forward",
                vec![
                    m(meta("oifname"), "==", br.clone()),
                    m(meta("iifname"), "!=", br.clone()),
                    json!({"drop": null}),
                ],
            ));
            if let Some(gw) = n.gateway {
                cmds.push(rule(
                    "input",
                    vec![
                        m(meta("iifname"), "==", br.clone()),
                        m(payload("ip", "daddr"), "==", json!(gw.to_string())),
                        m(meta("l4proto"), "==", json!({"set": ["udp", "tcp"]})),
                        m(payload("th", "dport"), "==", json!(53)),
                        json!({"accept": null}),
                    ],
                ));
            }
            // Both families: the bridge's IPv6 link-local address is the host's too.
            cmds.push(rule(
                "input",
                vec![m(meta("iifname"), "==", br.clone()), json!({"drop": null})],
            ));
        } else {
            // Outbound: leaving through anything but the bridge, take the host's address.
            cmds.push(rule(
                "postrouting",
                vec![
                    m(payload("ip", "saddr"), "==", prefix(&subnet)),
                    m(meta("oifname"), "!=", br),
                    json!({"masquerade": null}),
                ],
            ));
        }
    }
    json!({"nftables": cmds})
}

/// Loads `doc` with `nft -j -f -`: one transaction, all or nothing.
pub fn apply(doc: &Value) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    let body = doc.to_string();
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(body.as_bytes())
        .map_err(NftError::Spawn)?;
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if !out.status.success() {
        return Err(NftError::Failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// Removes our table (at shutdown of a test instance, or by `--cleanup`).
pub fn delete_table(table: &str) -> Result<(), NftError> {
    apply(&json!({"nftables": [
        {"add": {"table": {"family": "inet", "name": table}}},
        {"delete": {"table": {"family": "inet", "name": table}}},
    ]}))
}
