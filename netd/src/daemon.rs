//! The daemon's operations: networks, sandboxes and endpoints, each applied to the kernel
//! (netlink, nftables), the DNS tables and the state file, in an order that leaves nothing
//! half-made when a step fails. All operations are serialised by one lock: they are short
//! (a few milliseconds), and a single writer keeps IPAM trivially correct.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use ipnet::Ipv4Net;
use rtnetlink::Handle;
use tokio::sync::Mutex;

use crate::dns::{self, Table};
use crate::ipam::{self, IpamError};
use crate::link::{self, LinkError};
use crate::netns::{self, NetnsError};
use crate::nft::{Nft, NftError};
use crate::state::{Endpoint, Network, Port, Sandbox, State, Store, StoreError};
use crate::teardown::Teardown;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("network {0} not found")]
    NetworkNotFound(String),
    #[error("container {0} has no network sandbox")]
    SandboxNotFound(String),
    #[error("network with name {0} already exists")]
    DuplicateName(String),
    #[error("container {0} already has a network sandbox")]
    SandboxExists(String),
    #[error("container {0} is already connected to network {1}")]
    AlreadyConnected(String, String),
    #[error("container {0} is not connected to network {1}")]
    NotConnected(String, String),
    #[error("network {0} has active endpoints ({1})")]
    InUse(String, String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Precondition(String),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub root: PathBuf,
    pub run: PathBuf,
    /// Where default subnets come from.
    pub pool: Vec<Ipv4Net>,
    /// Prefix length of pool subnets.
    pub pool_size: u8,
    /// Subnet of the default `bridge` network; None: from the pool.
    pub default_subnet: Option<Ipv4Net>,
    /// Linux bridge of the default network.
    pub default_bridge: String,
    pub nft_table: String,
    pub mtu: u32,
    pub dns_port: u16,
    /// The host's resolver configuration (read, never written).
    pub resolv_conf: String,
}

/// Docker's own default subnet: never taken from the pool, so a dockerd beside us keeps it.
pub const DOCKER_DEFAULT: &str = "172.17.0.0/16";

pub struct Daemon {
    cfg: Config,
    store: Store,
    state: Mutex<Inner>,
    nl: Handle,
    dns: Arc<Table>,
    /// Forwarding to the host's resolvers with one answer cache, shared by every network.
    forwarder: Arc<dns::Forwarder>,
    /// Link deletions, off the request path.
    teardown: Teardown,
}

struct Inner {
    state: State,
    /// Netlink handles inside sandboxes, opened once.
    ns: HashMap<String, Handle>,
    /// Running DNS servers by network id.
    dns: HashMap<String, tokio::task::JoinHandle<()>>,
    /// Our nft table.
    nft: Nft,
}

/// Random hex, from the kernel's generator.
pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .expect("read /dev/urandom");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

impl Daemon {
    /// Loads the state, brings the kernel in line with it (bridges, DNS servers, the nft
    /// table) and makes the predefined networks.
    pub async fn open(cfg: Config) -> Result<Daemon, Error> {
        let (conn, nl, _) =
            rtnetlink::new_connection().map_err(|e| LinkError::Io("netlink socket".into(), e))?;
        tokio::spawn(conn);
        let store = Store::new(&cfg.root);
        let state = store.load()?;
        let cfg_resolv = cfg.resolv_conf.clone();
        let nft = Nft::new(&cfg.nft_table)?;
        let teardown = Teardown::start()?;
        let d = Daemon {
            cfg,
            store,
            state: Mutex::new(Inner {
                state,
                ns: HashMap::new(),
                dns: HashMap::new(),
                nft,
            }),
            nl,
            dns: Arc::new(Table::default()),
            forwarder: Arc::new(dns::Forwarder::new(&cfg_resolv)),
            teardown,
        };
        d.predefined().await?;
        d.reconcile().await?;
        Ok(d)
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    async fn predefined(&self) -> Result<(), Error> {
        let mut g = self.state.lock().await;
        for driver in ["host", "none"] {
            if g.state.find_network(driver).is_none() {
                let id = random_hex(32);
                g.state.networks.insert(
                    id.clone(),
                    Network {
                        id,
                        name: driver.into(),
                        driver: driver.into(),
                        created: now_rfc3339(),
                        subnet: None,
                        ip_range: None,
                        gateway: None,
                        internal: false,
                        labels: BTreeMap::new(),
                        options: BTreeMap::new(),
                        bridge: String::new(),
                        mtu: 0,
                        default: false,
                        last_allocated: None,
                        subnet6: None,
                        gateway6: None,
                    },
                );
            }
        }
        self.store.save(&g.state)?;
        drop(g);
        if self
            .state
            .lock()
            .await
            .state
            .find_network("bridge")
            .is_none()
        {
            let mut opts = BTreeMap::new();
            opts.insert(
                "com.docker.network.bridge.name".to_string(),
                self.cfg.default_bridge.clone(),
            );
            self.create_network(NetworkSpec {
                name: "bridge".into(),
                driver: "bridge".into(),
                subnet: self.cfg.default_subnet.map(|s| s.to_string()),
                options: opts,
                default: true,
                ..Default::default()
            })
            .await?;
        }
        Ok(())
    }

    /// After a restart: every bridge exists with its gateway, every DNS server runs, the nft
    /// table matches the state. Sandboxes whose netns file is gone lose their record.
    async fn reconcile(&self) -> Result<(), Error> {
        let mut g = self.state.lock().await;
        let gone: Vec<String> = g
            .state
            .sandboxes
            .keys()
            .filter(|id| !self.netns_path(id).exists())
            .cloned()
            .collect();
        for id in gone {
            tracing::warn!("sandbox {id}: netns file gone, dropping its endpoints");
            if let Some(s) = g.state.sandboxes.remove(&id) {
                for e in s.endpoints {
                    drop(self.teardown.delete(&e.host_ifname));
                }
            }
        }
        let nets: Vec<Network> = g.state.networks.values().cloned().collect();
        let ours: std::collections::HashSet<&str> = g
            .state
            .sandboxes
            .values()
            .flat_map(|s| s.endpoints.iter().map(|e| e.host_ifname.as_str()))
            .collect();
        for n in &nets {
            if let (Some(subnet), Some(gw)) = (n.subnet, n.gateway) {
                let (index, _) =
                    link::ensure_bridge(&self.nl, &n.bridge, gw, &subnet, n.mtu).await?;
                self.bridge6(n, index).await?;
                self.bridge_sysctls(n)?;
                // A veth of ours that no endpoint holds: its removal was under way when the
                // daemon stopped.
                for port in link::ports_of(&self.nl, index).await? {
                    if port.starts_with("veth") && !ours.contains(port.as_str()) {
                        tracing::warn!("network {}: deleting stray {port}", n.name);
                        drop(self.teardown.delete(&port));
                    }
                }
            }
        }
        self.store.save(&g.state)?;
        self.refresh(&mut g)?;
        for n in &nets {
            self.start_dns(&mut g, n).await;
        }
        Ok(())
    }

    fn bridge_sysctls(&self, n: &Network) -> Result<(), Error> {
        // Published ports answer on 127.0.0.1: DNAT'd loopback packets must be routable out
        // of this bridge (and only this one).
        link::sysctl(&format!("ipv4/conf/{}/route_localnet", n.bridge), "1")?;
        if !n.internal {
            link::sysctl("ipv4/ip_forward", "1")?;
            if n.subnet6.is_some() {
                // As Docker does for IPv6 networks; IPv6 forwarding has no per-device switch.
                link::sysctl("ipv6/conf/all/forwarding", "1")?;
            }
        }
        Ok(())
    }

    /// The IPv6 gateway on a dual-stack network's bridge.
    async fn bridge6(&self, n: &Network, index: u32) -> Result<(), Error> {
        if let (Some(s6), Some(gw6)) = (n.subnet6, n.gateway6) {
            link::sysctl(&format!("ipv6/conf/{}/disable_ipv6", n.bridge), "0")?;
            link::add_address6(&self.nl, index, gw6, s6.prefix_len(), &n.bridge).await?;
        }
        Ok(())
    }

    pub fn netns_path(&self, id: &str) -> PathBuf {
        self.cfg.run.join("netns").join(id)
    }

    /// Updates the DNS tables and the nft table from the state.
    fn refresh(&self, g: &mut Inner) -> Result<(), Error> {
        for n in g.state.networks.values() {
            if n.driver != "bridge" || n.default {
                continue;
            }
            let mut names: dns::Names = HashMap::new();
            for (s, e) in g.state.endpoints_on(&n.id) {
                let mut keys = vec![s.name.clone(), s.hostname.clone()];
                keys.push(s.container_id.chars().take(12).collect());
                keys.extend(e.aliases.iter().cloned());
                keys.retain(|k| !k.is_empty());
                keys.sort();
                keys.dedup();
                // AAAA records beside the A ones on dual-stack networks.
                let ips: Vec<std::net::IpAddr> = std::iter::once(e.ip.into())
                    .chain(e.ip6.map(Into::into))
                    .collect();
                for k in keys {
                    names.entry(k.to_lowercase()).or_default().extend(&ips);
                }
            }
            self.dns.set(&n.id, names);
        }
        self.dns.set_upstreams(dns::custom_upstreams(&g.state));
        g.nft.sync(&g.state)?;
        Ok(())
    }

    async fn start_dns(&self, g: &mut Inner, n: &Network) {
        let (Some(gw), "bridge") = (n.gateway, n.driver.as_str()) else {
            return;
        };
        if g.dns.contains_key(&n.id) {
            return;
        }
        let addr = SocketAddr::from((gw, self.cfg.dns_port));
        let udp = match tokio::net::UdpSocket::bind(addr).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("network {}: DNS on {addr}: {e}", n.name);
                return;
            }
        };
        // TCP is for answers too big for a datagram: without it DNS still mostly works.
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .inspect_err(|e| tracing::error!("network {}: DNS on tcp {addr}: {e}", n.name))
            .ok();
        let server = dns::Server::new(
            &n.id,
            &n.name,
            n.internal,
            self.dns.clone(),
            self.forwarder.clone(),
        );
        // The default network resolves no container names (as Docker's); its server only
        // forwards, for hosts whose resolvers are all on loopback (see `resolv_conf`).
        let server = Arc::new(if n.default {
            server.forward_only()
        } else {
            server
        });
        g.dns
            .insert(n.id.clone(), tokio::spawn(server.run(udp, tcp)));
    }

    pub async fn create_network(&self, spec: NetworkSpec) -> Result<String, Error> {
        let mut g = self.state.lock().await;
        if spec.name.is_empty() {
            return Err(Error::Invalid("a network needs a name".into()));
        }
        if g.state.networks.values().any(|n| n.name == spec.name) {
            return Err(Error::DuplicateName(spec.name));
        }
        let driver = if spec.driver.is_empty() {
            "bridge"
        } else {
            spec.driver.as_str()
        };
        if driver != "bridge" {
            return Err(Error::Invalid(format!(
                "driver {driver:?}: only bridge networks can be created (host and none exist once)"
            )));
        }
        let id = random_hex(32);
        let ours: Vec<Ipv4Net> = g.state.networks.values().filter_map(|n| n.subnet).collect();
        let bridges: Vec<&str> = g
            .state
            .networks
            .values()
            .map(|n| n.bridge.as_str())
            .collect();
        let mut host = link::host_networks(&self.nl).await?;
        host.retain(|h| !ours.contains(h)); // our own bridges' routes are ours
        let subnet = match spec.subnet.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => {
                let s = ipam::parse_subnet(s)?;
                if let Some(o) = g
                    .state
                    .networks
                    .values()
                    .find(|n| n.subnet.is_some_and(|t| ipam::overlaps(&s, &t)))
                {
                    return Err(IpamError::Overlap {
                        subnet: s,
                        other: format!("network {} ({})", o.name, o.subnet.expect("has subnet")),
                    }
                    .into());
                }
                if let Some(h) = host.iter().find(|h| ipam::overlaps(&s, h)) {
                    return Err(IpamError::Overlap {
                        subnet: s,
                        other: format!("the host's {h}"),
                    }
                    .into());
                }
                s
            }
            None => {
                let mut taken = ours.clone();
                taken.extend(host);
                taken.push(DOCKER_DEFAULT.parse().expect("constant"));
                ipam::pick_subnet(&self.cfg.pool, self.cfg.pool_size, &taken)?
            }
        };
        let gw_given = match spec.gateway.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(
                s.parse::<Ipv4Addr>()
                    .map_err(|e| Error::Invalid(format!("gateway {s:?}: {e}")))?,
            ),
            None => None,
        };
        let gateway = ipam::gateway(&subnet, gw_given)?;
        let ip_range = match spec.ip_range.as_deref().filter(|s| !s.is_empty()) {
            Some(r) => {
                let r = ipam::parse_subnet(r)?;
                if !subnet.contains(&r) {
                    return Err(IpamError::RangeOutside { range: r, subnet }.into());
                }
                Some(r)
            }
            None => None,
        };
        let subnet6 = match spec.ipv6_subnet.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => {
                let n = ipam::parse_subnet6(s)?;
                if let Some(o) = g
                    .state
                    .networks
                    .values()
                    .find(|o| o.subnet6.is_some_and(|t| t.contains(&n) || n.contains(&t)))
                {
                    return Err(Error::Invalid(format!(
                        "subnet {n} overlaps network {} ({})",
                        o.name,
                        o.subnet6.expect("has subnet6")
                    )));
                }
                Some(n)
            }
            None => None,
        };
        let bridge = spec
            .options
            .get("com.docker.network.bridge.name")
            .cloned()
            .unwrap_or_else(|| format!("br-{}", &id[..12]));
        if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ']) {
            return Err(Error::Invalid(format!(
                "bridge name {bridge:?}: 1 to 15 characters, no / or space"
            )));
        }
        if bridges.contains(&bridge.as_str()) {
            return Err(Error::Invalid(format!(
                "bridge {bridge} is used by another network"
            )));
        }
        let mtu = match spec.options.get("com.docker.network.driver.mtu") {
            Some(m) => m
                .parse()
                .map_err(|e| Error::Invalid(format!("mtu {m:?}: {e}")))?,
            None => self.cfg.mtu,
        };
        let net = Network {
            id: id.clone(),
            name: spec.name.clone(),
            driver: driver.into(),
            created: now_rfc3339(),
            subnet: Some(subnet),
            ip_range,
            gateway: Some(gateway),
            internal: spec.internal,
            labels: spec.labels,
            options: spec.options,
            bridge: bridge.clone(),
            mtu,
            default: spec.default,
            last_allocated: None,
            subnet6,
            gateway6: subnet6.map(ipam::first6),
        };
        let (index, created) =
            link::ensure_bridge(&self.nl, &bridge, gateway, &subnet, mtu).await?;
        let undo = |e: Error| async move {
            if created {
                let _ = link::delete(&self.nl, &bridge).await;
            }
            e
        };
        if let Err(e) = self.bridge6(&net, index).await {
            return Err(undo(e).await);
        }
        if let Err(e) = self.bridge_sysctls(&net) {
            return Err(undo(e).await);
        }
        g.state.networks.insert(id.clone(), net.clone());
        if let Err(e) = self.store.save(&g.state) {
            g.state.networks.remove(&id);
            return Err(undo(e.into()).await);
        }
        if let Err(e) = self.refresh(&mut g) {
            g.state.networks.remove(&id);
            let _ = self.store.save(&g.state);
            return Err(undo(e).await);
        }
        self.start_dns(&mut g, &net).await;
        tracing::info!(
            "network {} ({id}) created: {subnet} on {}",
            net.name,
            net.bridge
        );
        Ok(id)
    }

    pub async fn list_networks(&self) -> Vec<Network> {
        let g = self.state.lock().await;
        let mut v: Vec<Network> = g.state.networks.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The network and the endpoints on it, with their sandboxes.
    pub async fn network_detail(
        &self,
        key: &str,
    ) -> Result<(Network, Vec<(Sandbox, Endpoint)>), Error> {
        let g = self.state.lock().await;
        let n = g
            .state
            .find_network(key)
            .ok_or_else(|| Error::NetworkNotFound(key.into()))?
            .clone();
        let eps = g
            .state
            .endpoints_on(&n.id)
            .map(|(s, e)| (s.clone(), e.clone()))
            .collect();
        Ok((n, eps))
    }

    pub async fn remove_network(&self, key: &str) -> Result<String, Error> {
        let mut g = self.state.lock().await;
        self.remove_network_locked(&mut g, key).await
    }

    async fn remove_network_locked(&self, g: &mut Inner, key: &str) -> Result<String, Error> {
        let n = g
            .state
            .find_network(key)
            .ok_or_else(|| Error::NetworkNotFound(key.into()))?
            .clone();
        if n.driver != "bridge" || n.default {
            return Err(Error::Precondition(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        let users: Vec<String> = g
            .state
            .endpoints_on(&n.id)
            .map(|(s, _)| {
                if s.name.is_empty() {
                    s.container_id.clone()
                } else {
                    s.name.clone()
                }
            })
            .collect();
        if !users.is_empty() {
            return Err(Error::InUse(n.name, users.join(", ")));
        }
        if let Some(t) = g.dns.remove(&n.id) {
            t.abort();
        }
        self.dns.remove(&n.id);
        g.state.networks.remove(&n.id);
        self.store.save(&g.state)?;
        self.refresh(g)?;
        self.teardown.delete_now(&n.bridge).await?;
        tracing::info!("network {} ({}) removed", n.name, n.id);
        Ok(n.id)
    }

    pub async fn prune_networks(&self) -> Result<Vec<String>, Error> {
        let mut g = self.state.lock().await;
        let idle: Vec<(String, String)> = g
            .state
            .networks
            .values()
            .filter(|n| n.driver == "bridge" && !n.default)
            .filter(|n| g.state.endpoints_on(&n.id).next().is_none())
            .map(|n| (n.id.clone(), n.name.clone()))
            .collect();
        let mut out = Vec::new();
        for (id, name) in idle {
            self.remove_network_locked(&mut g, &id).await?;
            out.push(name);
        }
        Ok(out)
    }

    pub async fn create_sandbox(&self, spec: SandboxSpec) -> Result<SandboxView, Error> {
        let mut g = self.state.lock().await;
        let id = spec.container_id.clone();
        if id.is_empty() || id.contains(['/', '.']) || id.len() > 128 {
            return Err(Error::Invalid(format!("container id {id:?}")));
        }
        if g.state.sandboxes.contains_key(&id) {
            return Err(Error::SandboxExists(id));
        }
        let ports = self.resolve_ports(&g.state, &spec.ports)?;
        let path = self.netns_path(&id);
        let handle = netns::create(&path)?;
        if let Err(e) = link::loopback_up(&handle).await {
            let _ = netns::remove(&path);
            return Err(e.into());
        }
        g.ns.insert(id.clone(), handle);
        g.state.sandboxes.insert(
            id.clone(),
            Sandbox {
                container_id: id.clone(),
                name: spec.name,
                hostname: spec.hostname,
                ports,
                extra_hosts: spec.extra_hosts,
                endpoints: Vec::new(),
                dns: spec.dns,
            },
        );
        if let Err(e) = self.store.save(&g.state) {
            g.state.sandboxes.remove(&id);
            g.ns.remove(&id);
            let _ = netns::remove(&path);
            return Err(e.into());
        }
        Ok(self.view(&g, &id))
    }

    /// Random host ports resolved; conflicts refused.
    fn resolve_ports(&self, state: &State, want: &[PortSpec]) -> Result<Vec<Port>, Error> {
        let mut used = state.used_ports();
        let mut out = Vec::new();
        for p in want {
            let proto = if p.protocol.is_empty() {
                "tcp"
            } else {
                p.protocol.as_str()
            };
            if proto != "tcp" && proto != "udp" {
                return Err(Error::Invalid(format!("protocol {proto:?}: tcp or udp")));
            }
            let host_ip = match p.host_ip.as_str() {
                "" => None,
                s if s.parse::<std::net::Ipv6Addr>().is_ok() => {
                    return Err(Error::Invalid(format!(
                        "host address {s}: IPv6 host addresses are not supported; a port \
                         published on every address answers over IPv6 too"
                    )))
                }
                s => Some(
                    s.parse::<Ipv4Addr>()
                        .map_err(|e| Error::Invalid(format!("host address {s:?}: {e}")))?,
                ),
            };
            let cend = if p.container_port_end == 0 {
                p.container_port
            } else {
                p.container_port_end
            };
            if p.container_port == 0 || cend < p.container_port || cend > 65535 {
                return Err(Error::Invalid(format!(
                    "container port range {}-{}",
                    p.container_port, cend
                )));
            }
            let count = cend - p.container_port + 1;
            for i in 0..count {
                let cport = (p.container_port + i) as u16;
                let hport = if p.host_port == 0 {
                    random_port(proto, &used).ok_or_else(|| {
                        Error::Precondition("no free host port for a random mapping".into())
                    })?
                } else {
                    let hend = if p.host_port_end == 0 {
                        p.host_port + count - 1
                    } else {
                        p.host_port_end
                    };
                    if hend - p.host_port + 1 != count || hend > 65535 {
                        return Err(Error::Invalid(format!(
                            "host ports {}-{hend} and container ports {}-{cend} differ in size",
                            p.host_port, p.container_port
                        )));
                    }
                    (p.host_port + i) as u16
                };
                if !used.insert((proto.to_string(), hport)) {
                    return Err(Error::Precondition(format!(
                        "host port {hport}/{proto} is already published"
                    )));
                }
                out.push(Port {
                    host_ip,
                    host_port: hport,
                    container_port: cport,
                    protocol: proto.into(),
                });
            }
        }
        Ok(out)
    }

    async fn ns_handle(&self, g: &mut Inner, id: &str) -> Result<Handle, Error> {
        if let Some(h) = g.ns.get(id) {
            return Ok(h.clone());
        }
        let h = netns::handle_in(&self.netns_path(id))?;
        g.ns.insert(id.to_string(), h.clone());
        Ok(h)
    }

    pub async fn connect(&self, spec: ConnectSpec) -> Result<SandboxView, Error> {
        let mut g = self.state.lock().await;
        let cid = spec.container_id.clone();
        let sb = g
            .state
            .sandboxes
            .get(&cid)
            .ok_or_else(|| Error::SandboxNotFound(cid.clone()))?
            .clone();
        let net = g
            .state
            .find_network(&spec.network)
            .ok_or_else(|| Error::NetworkNotFound(spec.network.clone()))?
            .clone();
        if sb.endpoints.iter().any(|e| e.network_id == net.id) {
            return Err(Error::AlreadyConnected(cid, net.name));
        }
        if net.driver == "host" {
            return Err(Error::Precondition(
                "a container on the host network shares the host's namespace: run it without a sandbox".into(),
            ));
        }
        let (Some(subnet), Some(gw)) = (net.subnet, net.gateway) else {
            // none: the sandbox keeps only its loopback.
            return Ok(self.view(&g, &cid));
        };
        let used = g.state.used(&net.id);
        let ip = match spec.ip.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => {
                let ip: Ipv4Addr = s
                    .parse()
                    .map_err(|e| Error::Invalid(format!("address {s:?}: {e}")))?;
                ipam::check_static(&subnet, gw, &used, ip)?;
                ip
            }
            None => ipam::allocate(
                &subnet,
                &net.ip_range.unwrap_or(subnet),
                gw,
                &used,
                net.last_allocated,
            )?,
        };
        let used6 = g.state.used6(&net.id);
        let ip6 = match (net.subnet6, spec.ip6.as_deref().filter(|s| !s.is_empty())) {
            (Some(s6), Some(s)) => {
                let ip6: std::net::Ipv6Addr = s
                    .parse()
                    .map_err(|e| Error::Invalid(format!("IPv6 address {s:?}: {e}")))?;
                ipam::check_static6(&s6, net.gateway6.unwrap_or(ipam::first6(s6)), &used6, ip6)?;
                Some(ip6)
            }
            (Some(s6), None) => Some(ipam::allocate6(&s6, &used6)?),
            (None, Some(s)) => {
                // As Docker: an IPv6 address needs a network that has IPv6.
                return Err(Error::Invalid(format!(
                    "IPv6 address {s}: network {} has no IPv6 (create it with --ipv6 and an IPv6 subnet)",
                    net.name
                )));
            }
            (None, None) => None,
        };
        let mac = match spec.mac.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => ipam::parse_mac(s).ok_or_else(|| Error::Invalid(format!("mac {s:?}")))?,
            None => ipam::mac_for(ip),
        };
        let ifname = (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| !sb.endpoints.iter().any(|e| &e.ifname == n))
            .expect("unbounded");
        let endpoint_id = random_hex(32);
        let host_ifname = format!("veth{}", &endpoint_id[..9]);
        let ns = self.ns_handle(&mut g, &cid).await?;
        let nsfile = File::open(self.netns_path(&cid))
            .map_err(|e| LinkError::Io(self.netns_path(&cid).display().to_string(), e))?;
        let bridge_index = link::index_of(&self.nl, &net.bridge)
            .await?
            .ok_or_else(|| {
                Error::Precondition(format!(
                    "bridge {} of network {} is gone",
                    net.bridge, net.name
                ))
            })?;
        link::add_veth(
            &self.nl,
            &link::Veth {
                host_name: &host_ifname,
                ifname: &ifname,
                bridge_index,
                mtu: net.mtu,
                mac,
                netns: &nsfile,
            },
        )
        .await?;
        let configured = async {
            let route = if net.internal || link::has_default_route(&ns).await? {
                None
            } else {
                Some(gw)
            };
            link::configure_inside(&ns, &ifname, ip, subnet.prefix_len(), route).await?;
            if let (Some(ip6), Some(s6)) = (ip6, net.subnet6) {
                let gw6 = net.gateway6.filter(|_| !net.internal);
                link::configure_inside6(&ns, &ifname, ip6, s6.prefix_len(), gw6).await?;
            }
            Ok::<(), LinkError>(())
        };
        if let Err(e) = configured.await {
            let _ = link::delete(&self.nl, &host_ifname).await;
            return Err(e.into());
        }
        let ep = Endpoint {
            network_id: net.id.clone(),
            endpoint_id,
            ifname,
            host_ifname: host_ifname.clone(),
            mac: ipam::format_mac(&mac),
            ip,
            aliases: spec.aliases,
            ip6,
        };
        let before = g.state.clone();
        g.state
            .sandboxes
            .get_mut(&cid)
            .expect("checked")
            .endpoints
            .push(ep);
        if spec.ip.as_deref().is_none_or(str::is_empty) {
            g.state
                .networks
                .get_mut(&net.id)
                .expect("checked")
                .last_allocated = Some(ip);
        }
        let saved = self.store.save(&g.state).map_err(Error::from);
        if let Err(e) = saved.and_then(|_| self.refresh(&mut g)) {
            g.state = before;
            let _ = self.store.save(&g.state);
            let _ = link::delete(&self.nl, &host_ifname).await;
            let _ = self.refresh(&mut g);
            return Err(e);
        }
        Ok(self.view(&g, &cid))
    }

    pub async fn disconnect(&self, cid: &str, network: &str) -> Result<SandboxView, Error> {
        let mut g = self.state.lock().await;
        let net = g
            .state
            .find_network(network)
            .ok_or_else(|| Error::NetworkNotFound(network.into()))?
            .clone();
        let sb = g
            .state
            .sandboxes
            .get_mut(cid)
            .ok_or_else(|| Error::SandboxNotFound(cid.into()))?;
        let Some(pos) = sb.endpoints.iter().position(|e| e.network_id == net.id) else {
            return Err(Error::NotConnected(cid.into(), net.name));
        };
        let ep = sb.endpoints.remove(pos);
        // Deleting the host end takes the container's end with it; waited for, as the
        // container goes on running and must be cut off when this returns.
        self.teardown.delete_now(&ep.host_ifname).await?;
        self.store.save(&g.state)?;
        self.refresh(&mut g)?;
        Ok(self.view(&g, cid))
    }

    pub async fn inspect_sandbox(&self, cid: &str) -> Result<SandboxView, Error> {
        let g = self.state.lock().await;
        if !g.state.sandboxes.contains_key(cid) {
            return Err(Error::SandboxNotFound(cid.into()));
        }
        Ok(self.view(&g, cid))
    }

    pub async fn remove_sandbox(&self, cid: &str) -> Result<(), Error> {
        let mut g = self.state.lock().await;
        let sb = g
            .state
            .sandboxes
            .get(cid)
            .ok_or_else(|| Error::SandboxNotFound(cid.into()))?
            .clone();
        g.ns.remove(cid);
        netns::remove(&self.netns_path(cid))?;
        g.state.sandboxes.remove(cid);
        self.store.save(&g.state)?;
        self.refresh(&mut g)?;
        // The rules, the lease and the netns file are gone, so nothing reaches the veths any
        // more; the kernel's unregistering of them (tens of ms) is not waited for. A daemon
        // stopped before it is done deletes them as strays when it starts again.
        for e in &sb.endpoints {
            drop(self.teardown.delete(&e.host_ifname));
        }
        Ok(())
    }

    /// At shutdown: queued link deletions finish; the nft table goes too when `delete_table`
    /// (an instance that owns its table only, e.g. tests: nothing else is touched).
    pub async fn shutdown(&self, delete_table: bool) -> Result<(), Error> {
        self.teardown.idle().await;
        if delete_table {
            self.state.lock().await.nft.delete_table()?;
        }
        Ok(())
    }

    fn view(&self, g: &Inner, cid: &str) -> SandboxView {
        let state = &g.state;
        let sb = &state.sandboxes[cid];
        let mut eps = Vec::new();
        for e in &sb.endpoints {
            let n = &state.networks[&e.network_id];
            eps.push((n.clone(), e.clone()));
        }
        // The default network's forwarder, when it runs.
        let forwarder = state
            .networks
            .values()
            .find(|n| n.default && g.dns.contains_key(&n.id))
            .and_then(|n| n.gateway);
        let resolv_conf = dns::resolv::for_container(
            &resolv_conf(&self.cfg.resolv_conf, &eps, forwarder),
            &sb.dns,
            eps.iter().any(|(n, _)| !n.default && n.gateway.is_some()),
        );
        let hosts = hosts_file(sb, &eps);
        SandboxView {
            sandbox: sb.clone(),
            netns_path: self.netns_path(cid),
            endpoints: eps,
            resolv_conf,
            hosts,
        }
    }
}

/// A free port above Docker's range start, not published by us and not bound on the host.
fn random_port(proto: &str, used: &std::collections::BTreeSet<(String, u16)>) -> Option<u16> {
    let start = u16::from_str_radix(&random_hex(2), 16).unwrap_or(0);
    let span = 65535 - 49153;
    (0..span)
        .map(|i| 49153 + (start.wrapping_add(i) % span))
        .find(|&p| {
            !used.contains(&(proto.to_string(), p))
                && match proto {
                    "udp" => std::net::UdpSocket::bind(("0.0.0.0", p)).is_ok(),
                    _ => std::net::TcpListener::bind(("0.0.0.0", p)).is_ok(),
                }
        })
}

/// What a container's resolver asks when it is on no user-defined network: Docker's choice,
/// for the same reasons.
const FALLBACK_NAMESERVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// A user-defined network's gateway serves DNS; otherwise the host's resolvers as Docker
/// gives them: loopback ones dropped (inside the container they would be the container's
/// own loopback), IPv6 ones too (our networks carry IPv4 only). When that leaves none but
/// the host has loopback ones (systemd-resolved's 127.0.0.53, a local dnsmasq), the default
/// network's gateway, whose server forwards to them (`forwarder`), where Docker would hand
/// out Google's servers and so bypass the host's resolver; with no resolver at all, Google's
/// as Docker does. The host's search and options lines are kept.
fn resolv_conf(host: &str, eps: &[(Network, Endpoint)], forwarder: Option<Ipv4Addr>) -> String {
    let host_conf = dns::resolv::ResolvConf::read(std::path::Path::new(host));
    let mut out = String::new();
    if let Some((n, _)) = eps.iter().find(|(n, _)| !n.default && n.gateway.is_some()) {
        out.push_str(&format!("nameserver {}\n", n.gateway.expect("checked")));
    } else {
        let usable: Vec<String> = host_conf
            .nameservers
            .iter()
            .map(|a| a.ip())
            .filter(|ip| ip.is_ipv4() && !ip.is_loopback())
            .map(|ip| ip.to_string())
            .collect();
        let loopback = host_conf.nameservers.iter().any(|a| a.ip().is_loopback());
        let servers = match forwarder {
            _ if !usable.is_empty() => usable,
            Some(gw) if loopback => vec![gw.to_string()],
            _ => FALLBACK_NAMESERVERS.map(String::from).to_vec(),
        };
        for s in servers {
            out.push_str(&format!("nameserver {s}\n"));
        }
    }
    for l in &host_conf.search_options {
        out.push_str(l);
        out.push('\n');
    }
    out
}

fn hosts_file(sb: &Sandbox, eps: &[(Network, Endpoint)]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for l in &sb.extra_hosts {
        out.push_str(l);
        out.push('\n');
    }
    if let Some((_, e)) = eps.first() {
        let host = if sb.hostname.is_empty() {
            sb.container_id.chars().take(12).collect()
        } else {
            sb.hostname.clone()
        };
        out.push_str(&format!("{}\t{host}\n", e.ip));
        // Docker lists the IPv6 address of a dual-stack endpoint too.
        if let Some(ip6) = e.ip6 {
            out.push_str(&format!("{ip6}\t{host}\n"));
        }
    }
    out
}

#[derive(Debug, Default, Clone)]
pub struct NetworkSpec {
    pub name: String,
    pub driver: String,
    pub subnet: Option<String>,
    pub ip_range: Option<String>,
    pub gateway: Option<String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub default: bool,
    /// Dual stack: the IPv6 subnet.
    pub ipv6_subnet: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct PortSpec {
    pub host_ip: String,
    pub host_port: u32,
    pub host_port_end: u32,
    pub container_port: u32,
    pub container_port_end: u32,
    pub protocol: String,
}

#[derive(Debug, Default, Clone)]
pub struct SandboxSpec {
    pub container_id: String,
    pub name: String,
    pub hostname: String,
    pub ports: Vec<PortSpec>,
    pub extra_hosts: Vec<String>,
    pub dns: crate::state::SandboxDns,
}

#[derive(Debug, Default, Clone)]
pub struct ConnectSpec {
    pub container_id: String,
    pub network: String,
    pub ip: Option<String>,
    /// `--ip6`, on a dual-stack network.
    pub ip6: Option<String>,
    pub aliases: Vec<String>,
    pub mac: Option<String>,
}

pub struct SandboxView {
    pub sandbox: Sandbox,
    pub netns_path: PathBuf,
    pub endpoints: Vec<(Network, Endpoint)>,
    pub resolv_conf: String,
    pub hosts: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_never_get_a_loopback_nameserver() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("resolv.conf");
        let gw: Ipv4Addr = "10.234.0.1".parse().unwrap();
        let conf_with = |text: &str, fwd: Option<Ipv4Addr>| {
            std::fs::write(&p, text).unwrap();
            resolv_conf(p.to_str().unwrap(), &[], fwd)
        };
        let conf = |text: &str| conf_with(text, Some(gw));
        // systemd-resolved's stub only: the default network's forwarder...
        assert_eq!(
            conf("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n"),
            "nameserver 10.234.0.1\noptions edns0 trust-ad\nsearch lan\n"
        );
        // ...or, when it does not run, Docker's fallback.
        assert_eq!(
            conf_with("nameserver 127.0.0.53\n", None),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            conf("nameserver ::1\nnameserver 10.1.1.1\nnameserver 2001:db8::1\n"),
            "nameserver 10.1.1.1\n"
        );
        assert_eq!(conf(""), "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
}
