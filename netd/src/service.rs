//! The gRPC service `berth.netd.v1.Networks` over the daemon.

use std::sync::Arc;

use berth_proto::netd as pb;
use serde_json::json;
use tonic::{Request, Response, Status};

use crate::daemon::{ConnectSpec, Daemon, Error, NetworkSpec, PortSpec, SandboxSpec, SandboxView};
use crate::state::{Endpoint, Network, Sandbox, SandboxDns};

pub const API: &str = "berth.netd.v1";

pub struct NetworksService {
    daemon: Arc<Daemon>,
}

impl NetworksService {
    pub fn new(daemon: Arc<Daemon>) -> Self {
        NetworksService { daemon }
    }
}

fn status(e: Error) -> Status {
    use crate::ipam::IpamError as I;
    let msg = e.to_string();
    match e {
        Error::NetworkNotFound(_) | Error::SandboxNotFound(_) => Status::not_found(msg),
        Error::DuplicateName(_) | Error::SandboxExists(_) | Error::AlreadyConnected(..) => {
            Status::already_exists(msg)
        }
        Error::Invalid(_) | Error::NotConnected(..) => Status::invalid_argument(msg),
        Error::Ipam(
            I::PoolFull(_)
            | I::Exhausted(_)
            | I::Exhausted6(_)
            | I::AddressInUse(_)
            | I::AddressInUse6(_),
        ) => Status::failed_precondition(msg),
        Error::Ipam(_) => Status::invalid_argument(msg),
        Error::InUse(..) | Error::Precondition(_) => Status::failed_precondition(msg),
        _ => Status::internal(msg),
    }
}

/// Docker's `network inspect` object.
pub fn inspect_json(n: &Network, eps: &[(Sandbox, Endpoint)]) -> serde_json::Value {
    let mut containers = serde_json::Map::new();
    for (s, e) in eps {
        let prefix = n.subnet.map(|s| s.prefix_len()).unwrap_or(32);
        containers.insert(
            s.container_id.clone(),
            json!({
                "Name": s.name,
                "EndpointID": e.endpoint_id,
                "MacAddress": e.mac,
                "IPv4Address": format!("{}/{prefix}", e.ip),
                "IPv6Address": match (e.ip6, n.subnet6) {
                    (Some(ip6), Some(s6)) => format!("{ip6}/{}", s6.prefix_len()),
                    _ => String::new(),
                },
            }),
        );
    }
    let mut config: Vec<serde_json::Value> = match (n.subnet, n.gateway) {
        (Some(s), Some(g)) => {
            let mut c = json!({"Subnet": s.to_string(), "Gateway": g.to_string()});
            if let Some(r) = n.ip_range {
                c["IPRange"] = json!(r.to_string());
            }
            vec![c]
        }
        _ => vec![],
    };
    if let (Some(s6), Some(g6)) = (n.subnet6, n.gateway6) {
        config.push(json!({"Subnet": s6.to_string(), "Gateway": g6.to_string()}));
    }
    let mut options = n.options.clone();
    if n.driver == "bridge" {
        options.insert("com.docker.network.bridge.name".into(), n.bridge.clone());
        options.insert("com.docker.network.driver.mtu".into(), n.mtu.to_string());
    }
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv6": n.subnet6.is_some(),
        "IPAM": {"Driver": "default", "Options": {}, "Config": config},
        "Internal": n.internal,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": options,
        "Labels": n.labels,
    })
}

fn sandbox_pb(v: SandboxView) -> pb::Sandbox {
    pb::Sandbox {
        container_id: v.sandbox.container_id.clone(),
        netns_path: v.netns_path.display().to_string(),
        endpoints: v
            .endpoints
            .iter()
            .map(|(n, e)| pb::Endpoint {
                network_id: n.id.clone(),
                network_name: n.name.clone(),
                endpoint_id: e.endpoint_id.clone(),
                interface: e.ifname.clone(),
                host_interface: e.host_ifname.clone(),
                mac: e.mac.clone(),
                ipv4_address: format!(
                    "{}/{}",
                    e.ip,
                    n.subnet.map(|s| s.prefix_len()).unwrap_or(32)
                ),
                gateway: n.gateway.map(|g| g.to_string()).unwrap_or_default(),
                mtu: n.mtu,
                aliases: e.aliases.clone(),
                ipv6_address: match (e.ip6, n.subnet6) {
                    (Some(ip6), Some(s6)) => format!("{ip6}/{}", s6.prefix_len()),
                    _ => String::new(),
                },
                ipv6_gateway: n.gateway6.map(|g| g.to_string()).unwrap_or_default(),
            })
            .collect(),
        ports: v
            .sandbox
            .ports
            .iter()
            .map(|p| pb::PortMapping {
                host_ip: p.host_ip.map(|i| i.to_string()).unwrap_or_default(),
                host_port: p.host_port.into(),
                host_port_end: 0,
                container_port: p.container_port.into(),
                container_port_end: 0,
                protocol: p.protocol.clone(),
            })
            .collect(),
        resolv_conf: v.resolv_conf,
        hosts: v.hosts,
    }
}

fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

#[tonic::async_trait]
impl pb::networks_server::Networks for NetworksService {
    async fn version(
        &self,
        _: Request<pb::VersionRequest>,
    ) -> Result<Response<pb::VersionResponse>, Status> {
        Ok(Response::new(pb::VersionResponse {
            version: env!("CARGO_PKG_VERSION").into(),
            api: API.into(),
        }))
    }

    async fn create_network(
        &self,
        r: Request<pb::CreateNetworkRequest>,
    ) -> Result<Response<pb::CreateNetworkResponse>, Status> {
        let r = r.into_inner();
        let id = self
            .daemon
            .create_network(NetworkSpec {
                name: r.name,
                driver: r.driver,
                subnet: opt(r.subnet),
                ip_range: opt(r.ip_range),
                gateway: opt(r.gateway),
                internal: r.internal,
                labels: r.labels.into_iter().collect(),
                options: r.options.into_iter().collect(),
                default: false,
                ipv6_subnet: match (r.enable_ipv6, r.ipv6_subnet.is_empty()) {
                    (true, true) => {
                        return Err(Status::invalid_argument(
                            "an IPv6 network needs an IPv6 subnet (no default IPv6 pool)",
                        ))
                    }
                    (true, false) => Some(r.ipv6_subnet),
                    (false, _) => None,
                },
            })
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreateNetworkResponse { id }))
    }

    async fn list_networks(
        &self,
        _: Request<pb::ListNetworksRequest>,
    ) -> Result<Response<pb::ListNetworksResponse>, Status> {
        let networks = self
            .daemon
            .list_networks()
            .await
            .into_iter()
            .map(|n| pb::NetworkSummary {
                id: n.id,
                name: n.name,
                driver: n.driver,
                scope: "local".into(),
                created: n.created,
                subnet: n.subnet.map(|s| s.to_string()).unwrap_or_default(),
                gateway: n.gateway.map(|s| s.to_string()).unwrap_or_default(),
                internal: n.internal,
                labels: n.labels.into_iter().collect(),
                bridge: n.bridge,
            })
            .collect();
        Ok(Response::new(pb::ListNetworksResponse { networks }))
    }

    async fn inspect_network(
        &self,
        r: Request<pb::InspectNetworkRequest>,
    ) -> Result<Response<pb::InspectNetworkResponse>, Status> {
        let (n, eps) = self
            .daemon
            .network_detail(&r.into_inner().network)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::InspectNetworkResponse {
            json: inspect_json(&n, &eps).to_string(),
        }))
    }

    async fn remove_network(
        &self,
        r: Request<pb::RemoveNetworkRequest>,
    ) -> Result<Response<pb::RemoveNetworkResponse>, Status> {
        let id = self
            .daemon
            .remove_network(&r.into_inner().network)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RemoveNetworkResponse { id }))
    }

    async fn prune_networks(
        &self,
        _: Request<pb::PruneNetworksRequest>,
    ) -> Result<Response<pb::PruneNetworksResponse>, Status> {
        let removed = self.daemon.prune_networks().await.map_err(status)?;
        Ok(Response::new(pb::PruneNetworksResponse { removed }))
    }

    async fn create_sandbox(
        &self,
        r: Request<pb::CreateSandboxRequest>,
    ) -> Result<Response<pb::Sandbox>, Status> {
        let r = r.into_inner();
        let v = self
            .daemon
            .create_sandbox(SandboxSpec {
                container_id: r.container_id,
                name: r.name,
                hostname: r.hostname,
                ports: r
                    .ports
                    .into_iter()
                    .map(|p| PortSpec {
                        host_ip: p.host_ip,
                        host_port: p.host_port,
                        host_port_end: p.host_port_end,
                        container_port: p.container_port,
                        container_port_end: p.container_port_end,
                        protocol: p.protocol,
                    })
                    .collect(),
                extra_hosts: r.extra_hosts,
                dns: SandboxDns {
                    servers: r.dns_servers,
                    search: r.dns_search,
                    options: r.dns_options,
                },
            })
            .await
            .map_err(status)?;
        Ok(Response::new(sandbox_pb(v)))
    }

    async fn connect_network(
        &self,
        r: Request<pb::ConnectRequest>,
    ) -> Result<Response<pb::Sandbox>, Status> {
        let r = r.into_inner();
        let v = self
            .daemon
            .connect(ConnectSpec {
                container_id: r.container_id,
                network: r.network,
                ip: opt(r.ip),
                ip6: opt(r.ip6),
                aliases: r.aliases,
                mac: opt(r.mac),
            })
            .await
            .map_err(status)?;
        Ok(Response::new(sandbox_pb(v)))
    }

    async fn disconnect_network(
        &self,
        r: Request<pb::DisconnectRequest>,
    ) -> Result<Response<pb::Sandbox>, Status> {
        let r = r.into_inner();
        let v = self
            .daemon
            .disconnect(&r.container_id, &r.network)
            .await
            .map_err(status)?;
        Ok(Response::new(sandbox_pb(v)))
    }

    async fn inspect_sandbox(
        &self,
        r: Request<pb::InspectSandboxRequest>,
    ) -> Result<Response<pb::Sandbox>, Status> {
        let v = self
            .daemon
            .inspect_sandbox(&r.into_inner().container_id)
            .await
            .map_err(status)?;
        Ok(Response::new(sandbox_pb(v)))
    }

    async fn remove_sandbox(
        &self,
        r: Request<pb::RemoveSandboxRequest>,
    ) -> Result<Response<pb::RemoveSandboxResponse>, Status> {
        self.daemon
            .remove_sandbox(&r.into_inner().container_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RemoveSandboxResponse {}))
    }
}
