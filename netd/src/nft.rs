//! NAT and published ports in one nftables table of our own (`inet <table>`, `berth` unless
//! `--nft-table` says otherwise), written in nft's JSON format and loaded in process through
//! libnftables (see `libnftables.rs`).
//!
//! The whole table is rebuilt from the state in one transaction (add, delete, add again and
//! fill), so the kernel always holds either the old or the new rule set, never half of one, and
//! a restarted daemon reconciles by simply applying its state: a rule deleted by hand comes
//! back. Nothing outside the table is touched. In process, a rebuild costs ~20 µs per rule
//! (0.3 ms for a handful of containers, 2 ms for a hundred published ports), so it is not
//! worth the bookkeeping of incremental changes yet.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::{json, Value};

use crate::libnftables::{Context, LibnftError};
use crate::state::State;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nftables table {table}: {source}")]
    Apply {
        table: String,
        #[source]
        source: LibnftError,
    },
}

/// Our table in the kernel: the libnftables context that loads it, and the rule set last
/// loaded, so a change that leaves the rules as they were costs nothing.
pub struct Nft {
    ctx: Context,
    table: String,
    applied: Option<Value>,
}

impl Nft {
    pub fn new(table: &str) -> Result<Nft, NftError> {
        Ok(Nft {
            ctx: Context::new().map_err(|e| err(table, e))?,
            table: table.to_string(),
            applied: None,
        })
    }

    /// Brings the table in line with `state` (one transaction); returns whether anything was
    /// loaded.
    pub fn sync(&mut self, state: &State) -> Result<bool, NftError> {
        let rules = ruleset(&self.table, state);
        if self.applied.as_ref() == Some(&rules) {
            return Ok(false);
        }
        self.applied = None; // unknown until the kernel has answered
        let t = std::time::Instant::now();
        let doc = rules.to_string();
        self.ctx.run(&doc).map_err(|e| err(&self.table, e))?;
        tracing::debug!(
            "nft: table {} loaded ({} bytes) in {:?}",
            self.table,
            doc.len(),
            t.elapsed()
        );
        self.applied = Some(rules);
        Ok(true)
    }

    /// Removes our table (at shutdown of a private instance, e.g. tests).
    pub fn delete_table(&mut self) -> Result<(), NftError> {
        let t = json!({"family": "inet", "name": self.table});
        let doc = json!({"nftables": [{"add": {"table": t}}, {"delete": {"table": t}}]});
        self.applied = None;
        self.ctx
            .run(&doc.to_string())
            .map(|_| ())
            .map_err(|e| err(&self.table, e))
    }
}

fn err(table: &str, source: LibnftError) -> NftError {
    NftError::Apply {
        table: table.to_string(),
        source,
    }
}

/// Where a published port leads.
pub struct Dnat {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub protocol: String,
    pub addr: Ipv4Addr,
    /// The container's IPv6 address, on a dual-stack network.
    pub addr6: Option<Ipv6Addr>,
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
fn loopback() -> Value {
    json!({"prefix": {"addr": "127.0.0.0", "len": 8}})
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
                addr6: ep.ip6,
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
    // Traffic for a local address goes to the port map: from other hosts and from containers
    // (prerouting), and from the host itself (output). Loopback destinations only from the
    // host itself: DNAT comes before the kernel's martian check, so a neighbour routing
    // 127.0.0.1 to us would otherwise reach ports published on 127.0.0.1.
    cmds.push(rule(
        "prerouting",
        vec![
            m(payload("ip", "daddr"), "==", loopback()),
            json!({"return": null}),
        ],
    ));
    cmds.push(rule(
        "prerouting",
        vec![
            m(payload("ip6", "daddr"), "==", json!("::1")),
            json!({"return": null}),
        ],
    ));
    cmds.push(rule(
        "prerouting",
        vec![fib_local(), json!({"jump": {"target": "ports"}})],
    ));
    cmds.push(rule(
        "output",
        vec![fib_local(), json!({"jump": {"target": "ports"}})],
    ));
    let published = dnats(state);
    for d in &published {
        let mut e = vec![m(meta("nfproto"), "==", json!("ipv4"))];
        let any_address = d.host_ip.is_none_or(|ip| ip.is_unspecified());
        if let Some(ip) = d.host_ip.filter(|_| !any_address) {
            e.push(m(payload("ip", "daddr"), "==", json!(ip.to_string())));
        }
        e.push(m(meta("l4proto"), "==", json!(d.protocol)));
        e.push(m(payload(&d.protocol, "dport"), "==", json!(d.host_port)));
        e.push(json!({"dnat": {"family": "ip", "addr": d.addr.to_string(), "port": d.port}}));
        cmds.push(rule("ports", e));
        // Over IPv6 too when published on every address and the container has one; a port
        // published on an IPv4 address stays IPv4 only, as it is filtered there.
        if let Some(a6) = d.addr6.filter(|_| any_address) {
            cmds.push(rule(
                "ports",
                vec![
                    m(meta("nfproto"), "==", json!("ipv6")),
                    m(meta("l4proto"), "==", json!(d.protocol)),
                    m(payload(&d.protocol, "dport"), "==", json!(d.host_port)),
                    json!({"dnat": {"family": "ip6", "addr": a6.to_string(), "port": d.port}}),
                ],
            ));
        }
    }
    for n in state.networks.values() {
        let (Some(subnet), "bridge") = (n.subnet, n.driver.as_str()) else {
            continue;
        };
        let br = json!(n.bridge);
        // route_localnet (below) lets 127.0.0.0/8 in from the bridge; only replies to the
        // host's loopback clients may use it, never a container opening a connection to the
        // host's loopback services (Kubernetes' CVE-2020-8558).
        cmds.push(rule(
            "input",
            vec![
                m(meta("iifname"), "==", br.clone()),
                m(payload("ip", "daddr"), "==", loopback()),
                m(json!({"ct": {"key": "direction"}}), "==", json!("original")),
                json!({"drop": null}),
            ],
        ));
        // Clients on the host's loopback reach containers through the bridge
        // (route_localnet): their source must become the gateway, or replies go nowhere.
        cmds.push(rule(
            "postrouting",
            vec![
                m(meta("oifname"), "==", br.clone()),
                m(payload("ip", "saddr"), "==", loopback()),
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
        if let Some(s6) = n.subnet6 {
            let prefix6 =
                json!({"prefix": {"addr": s6.network().to_string(), "len": s6.prefix_len()}});
            cmds.push(rule(
                "postrouting",
                vec![
                    m(meta("oifname"), "==", br.clone()),
                    m(payload("ip6", "saddr"), "==", prefix6.clone()),
                    m(json!({"ct": {"key": "status"}}), "in", json!("dnat")),
                    json!({"masquerade": null}),
                ],
            ));
            if !n.internal {
                // ULA prefixes are not routed beyond the host, so outbound IPv6 is
                // masqueraded as IPv4 is.
                cmds.push(rule(
                    "postrouting",
                    vec![
                        m(payload("ip6", "saddr"), "==", prefix6),
                        m(meta("oifname"), "!=", br.clone()),
                        json!({"masquerade": null}),
                    ],
                ));
            }
        }
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
                    m(meta("oifname"), "!=", br.clone()),
                    json!({"masquerade": null}),
                ],
            ));
            direct_routing(&mut cmds, &rule, &br, &subnet, &published);
        }
    }
    json!({"nftables": cmds})
}

/// Traffic routed into a network's bridge from anywhere else (another host with a route to
/// the subnet, another network's containers) reaches only published ports: through their
/// DNAT, or at the container's address and port directly, as Docker 28 allows. Replies to
/// the containers' own connections pass; anything else is dropped, so a port the user did
/// not publish is not reachable from other hosts (Docker before 28 let it through).
fn direct_routing(
    cmds: &mut Vec<Value>,
    rule: &dyn Fn(&str, Vec<Value>) -> Value,
    br: &Value,
    subnet: &ipnet::Ipv4Net,
    published: &[Dnat],
) {
    let into = || {
        vec![
            m(meta("oifname"), "==", br.clone()),
            m(meta("iifname"), "!=", br.clone()),
        ]
    };
    let accept = |mut e: Vec<Value>| {
        e.push(json!({"accept": null}));
        e
    };
    let mut e = into();
    e.push(m(
        json!({"ct": {"key": "state"}}),
        "in",
        json!(["established", "related"]),
    ));
    cmds.push(rule("forward", accept(e)));
    let mut e = into();
    e.push(m(json!({"ct": {"key": "status"}}), "in", json!("dnat")));
    cmds.push(rule("forward", accept(e)));
    for d in published.iter().filter(|d| subnet.contains(&d.addr)) {
        let mut to = vec![(payload("ip", "daddr"), d.addr.to_string())];
        if let Some(a6) = d.addr6 {
            to.push((payload("ip6", "daddr"), a6.to_string()));
        }
        for (daddr, addr) in to {
            let mut e = into();
            e.push(m(daddr, "==", json!(addr)));
            e.push(m(meta("l4proto"), "==", json!(d.protocol)));
            e.push(m(payload(&d.protocol, "dport"), "==", json!(d.port)));
            cmds.push(rule("forward", accept(e)));
        }
    }
    let mut e = into();
    e.push(json!({"drop": null}));
    cmds.push(rule("forward", e));
}
