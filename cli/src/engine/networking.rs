//! A container's networking through berth-netd: what `run`/`create`/`start`, `network
//! connect`/`disconnect` and `rm` call. netd owns the network namespace: it makes it at
//! `$BERTH_RUN/netns/<id>` (returned as [`Sandbox::netns_path`], the path for the OCI
//! spec's network namespace), attaches it, publishes its ports and removes all of it.
//!
//! A container on `--network host` gets no sandbox at all (it shares the host's
//! namespace); one on `--network none` gets a sandbox with no attachment (loopback only).

use berth_netd::client::Client;
use berth_proto::netd as pb;

pub use pb::{Endpoint, PortMapping, Sandbox};

/// netd's answer, worded as netd words it (the thing and the cause); the commands put
/// Docker's "Error response from daemon: " in front.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct NetworkError {
    pub code: tonic::Code,
    pub message: String,
}

impl NetworkError {
    pub fn not_found(&self) -> bool {
        self.code == tonic::Code::NotFound
    }
}

impl From<tonic::Status> for NetworkError {
    fn from(s: tonic::Status) -> NetworkError {
        NetworkError {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}

type Result<T> = std::result::Result<T, NetworkError>;

/// The network namespace of one container.
#[derive(Debug, Clone, Default)]
pub struct SandboxSpec {
    /// The container's 64-hex id; also the netns file's name.
    pub container_id: String,
    /// Its name: the DNS name peers on user networks resolve.
    pub name: String,
    pub hostname: String,
    /// `-p`: host_port 0 asks netd for a free port (the answer has it resolved).
    pub ports: Vec<PortMapping>,
    /// `/etc/hosts` lines: `--add-host`, and `--link` targets resolved by the caller.
    pub extra_hosts: Vec<String>,
    /// `--dns`, `--dns-search`, `--dns-option`: netd writes them into resolv.conf, or, on a
    /// user-defined network, has the network's DNS server forward to the `--dns` servers.
    pub dns_servers: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
}

/// One attachment: `--network NAME`, `network connect`.
#[derive(Debug, Clone, Default)]
pub struct Attachment {
    /// Name, id or unique id prefix.
    pub network: String,
    /// `--network-alias`.
    pub aliases: Vec<String>,
    /// `--ip`: static, checked by netd against the subnet; None: from IPAM.
    pub ip: Option<String>,
    /// `--ip6`: static, on a dual-stack network; None: the lowest free one.
    pub ip6: Option<String>,
    /// `--mac-address`; None: derived from the address.
    pub mac: Option<String>,
}

/// Makes the container's netns with loopback up. Ports are published once it has an
/// address on a network with a gateway.
pub async fn create_sandbox(c: &mut Client, spec: &SandboxSpec) -> Result<Sandbox> {
    Ok(c.create_sandbox(pb::CreateSandboxRequest {
        container_id: spec.container_id.clone(),
        name: spec.name.clone(),
        hostname: spec.hostname.clone(),
        ports: spec.ports.clone(),
        extra_hosts: spec.extra_hosts.clone(),
        dns_servers: spec.dns_servers.clone(),
        dns_search: spec.dns_search.clone(),
        dns_options: spec.dns_options.clone(),
    })
    .await?
    .into_inner())
}

/// Attaches the container's sandbox to a network (also while it runs).
pub async fn connect(c: &mut Client, container_id: &str, a: &Attachment) -> Result<Sandbox> {
    Ok(c.connect_network(pb::ConnectRequest {
        container_id: container_id.into(),
        network: a.network.clone(),
        ip: a.ip.clone().unwrap_or_default(),
        aliases: a.aliases.clone(),
        mac: a.mac.clone().unwrap_or_default(),
        ip6: a.ip6.clone().unwrap_or_default(),
    })
    .await?
    .into_inner())
}

/// Detaches it: the veth, the address lease and the DNS names go.
pub async fn disconnect(c: &mut Client, container_id: &str, network: &str) -> Result<Sandbox> {
    Ok(c.disconnect_network(pb::DisconnectRequest {
        container_id: container_id.into(),
        network: network.into(),
    })
    .await?
    .into_inner())
}

/// What the sandbox has now (with the `/etc/resolv.conf` and `/etc/hosts` contents),
/// or None when the container has none.
pub async fn inspect_sandbox(c: &mut Client, container_id: &str) -> Result<Option<Sandbox>> {
    match c
        .inspect_sandbox(pb::InspectSandboxRequest {
            container_id: container_id.into(),
        })
        .await
    {
        Ok(r) => Ok(Some(r.into_inner())),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => Err(s.into()),
    }
}

/// Removes every endpoint, the port rules and the netns file. A container without a
/// sandbox is no error, so `rm -f` and the clean-up of a failed `run` can always call it.
pub async fn remove_sandbox(c: &mut Client, container_id: &str) -> Result<()> {
    match c
        .remove_sandbox(pb::RemoveSandboxRequest {
            container_id: container_id.into(),
        })
        .await
    {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
        Err(s) => Err(s.into()),
    }
}

/// The whole of a container's networking at `create`: the sandbox, then each attachment
/// in order (the first becomes `eth0`). When any step fails the sandbox is removed again,
/// so nothing half-made (netns, veths, leases, rules) stays behind.
pub async fn setup(
    c: &mut Client,
    spec: &SandboxSpec,
    attachments: &[Attachment],
) -> Result<Sandbox> {
    let mut sandbox = create_sandbox(c, spec).await?;
    for a in attachments {
        match connect(c, &spec.container_id, a).await {
            Ok(s) => sandbox = s,
            Err(e) => {
                if let Err(undo) = remove_sandbox(c, &spec.container_id).await {
                    return Err(NetworkError {
                        code: e.code,
                        message: format!("{e} (and removing the half-made sandbox failed: {undo})"),
                    });
                }
                return Err(e);
            }
        }
    }
    Ok(sandbox)
}
