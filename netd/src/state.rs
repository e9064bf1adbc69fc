//! What netd knows, and how it is kept: one JSON document at `$BERTH_ROOT/networks/state.json`,
//! replaced atomically (temp file, fsync, rename, fsync of the directory) after every change.
//!
//! Leases are not kept apart from endpoints: the addresses in use on a network are exactly the
//! addresses of its endpoints, so an address can be neither lost nor handed out twice, across
//! restarts too, and goes back to the pool when its endpoint goes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Network {
    pub id: String,
    pub name: String,
    /// bridge, host or none
    pub driver: String,
    /// RFC 3339
    pub created: String,
    pub subnet: Option<Ipv4Net>,
    pub ip_range: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    /// The Linux bridge (bridge driver only).
    pub bridge: String,
    pub mtu: u32,
    /// The default `bridge` network: no DNS, as in Docker.
    #[serde(default)]
    pub default: bool,
    /// Where allocation goes on from.
    #[serde(default)]
    pub last_allocated: Option<Ipv4Addr>,
    /// Dual stack: the IPv6 subnet and gateway (its first address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<Ipv6Net>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Endpoint {
    pub network_id: String,
    pub endpoint_id: String,
    pub ifname: String,
    pub host_ifname: String,
    pub mac: String,
    pub ip: Ipv4Addr,
    pub aliases: Vec<String>,
    /// On dual-stack networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Port {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sandbox {
    pub container_id: String,
    pub name: String,
    pub hostname: String,
    pub ports: Vec<Port>,
    pub extra_hosts: Vec<String>,
    pub endpoints: Vec<Endpoint>,
    /// Absent from state written before it existed.
    #[serde(default)]
    pub dns: SandboxDns,
}

/// The container's own DNS settings (`--dns`, `--dns-search`, `--dns-option`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SandboxDns {
    pub servers: Vec<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl SandboxDns {
    /// The servers as upstreams (port 53); words that are no address are left out.
    pub fn upstreams(&self) -> Vec<std::net::SocketAddr> {
        self.servers
            .iter()
            .filter_map(|s| s.parse::<std::net::IpAddr>().ok())
            .map(|ip| std::net::SocketAddr::new(ip, 53))
            .collect()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub networks: BTreeMap<String, Network>,
    pub sandboxes: BTreeMap<String, Sandbox>,
}

impl State {
    /// By name, full id or unique id prefix, as Docker resolves them.
    pub fn find_network(&self, key: &str) -> Option<&Network> {
        if let Some(n) = self.networks.get(key) {
            return Some(n);
        }
        if let Some(n) = self.networks.values().find(|n| n.name == key) {
            return Some(n);
        }
        let mut by_prefix = self.networks.values().filter(|n| n.id.starts_with(key));
        match (by_prefix.next(), by_prefix.next()) {
            (Some(n), None) if !key.is_empty() => Some(n),
            _ => None,
        }
    }

    /// Every endpoint on network `id`, with its sandbox.
    pub fn endpoints_on<'a>(
        &'a self,
        id: &'a str,
    ) -> impl Iterator<Item = (&'a Sandbox, &'a Endpoint)> + 'a {
        self.sandboxes.values().flat_map(move |s| {
            s.endpoints
                .iter()
                .filter(move |e| e.network_id == id)
                .map(move |e| (s, e))
        })
    }

    /// The IPv6 addresses leased on network `id`.
    pub fn used6(&self, id: &str) -> BTreeSet<Ipv6Addr> {
        self.endpoints_on(id).filter_map(|(_, e)| e.ip6).collect()
    }

    /// The addresses leased on network `id`.
    pub fn used(&self, id: &str) -> BTreeSet<Ipv4Addr> {
        self.endpoints_on(id).map(|(_, e)| e.ip).collect()
    }

    /// Host ports in use, by protocol.
    pub fn used_ports(&self) -> BTreeSet<(String, u16)> {
        self.sandboxes
            .values()
            .flat_map(|s| s.ports.iter().map(|p| (p.protocol.clone(), p.host_port)))
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("state {path}: {source}")]
pub struct StoreError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(root: &Path) -> Store {
        Store {
            dir: root.join("networks"),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub fn load(&self) -> Result<State, StoreError> {
        let path = self.path();
        let err = |source| StoreError {
            path: path.clone(),
            source,
        };
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| err(e.into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(err(e)),
        }
    }

    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        let path = self.path();
        let err = |source| StoreError {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(err)?;
        let tmp = self.dir.join(".state.json.tmp");
        let body = serde_json::to_vec_pretty(state).map_err(|e| err(e.into()))?;
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&body).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert_eq!(store.load().unwrap(), State::default());
        let mut s = State::default();
        s.networks.insert(
            "abc".into(),
            Network {
                id: "abc".into(),
                name: "n1".into(),
                driver: "bridge".into(),
                created: "now".into(),
                subnet: Some("10.234.1.0/24".parse().unwrap()),
                ip_range: None,
                gateway: Some("10.234.1.1".parse().unwrap()),
                internal: false,
                labels: Default::default(),
                options: Default::default(),
                bridge: "br-abc".into(),
                mtu: 1500,
                default: false,
                last_allocated: None,
                subnet6: None,
                gateway6: None,
            },
        );
        store.save(&s).unwrap();
        assert_eq!(store.load().unwrap(), s);
        assert_eq!(s.find_network("n1").unwrap().id, "abc");
        assert_eq!(s.find_network("ab").unwrap().id, "abc");
        assert!(s.find_network("").is_none());
        assert!(!dir.path().join("networks/.state.json.tmp").exists());
    }
}
