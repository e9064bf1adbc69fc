//! Links, addresses and routes through rtnetlink: the bridges on the host side, the veth pairs
//! into container namespaces, and what the host already routes (so the pool avoids it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{what} {name}: {source}")]
    Netlink {
        what: &'static str,
        name: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

fn nl<'a>(what: &'static str, name: &'a str) -> impl FnOnce(rtnetlink::Error) -> LinkError + 'a {
    move |source| LinkError::Netlink {
        what,
        name: name.to_string(),
        source,
    }
}

/// Is this the kernel's "no such device" answer?
fn is_enodev(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::ENODEV)
}

/// The index of link `name`, if it exists.
pub async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>, LinkError> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        Err(e) if is_enodev(&e) => Ok(None),
        Err(e) => Err(nl("look up link", name)(e)),
    }
}

/// Makes bridge `name` (if absent) with `gateway/prefix` on it, up. Returns its index and
/// whether this call created it (so a failed network create can undo exactly that).
pub async fn ensure_bridge(
    h: &Handle,
    name: &str,
    gateway: Ipv4Addr,
    subnet: &Ipv4Net,
    mtu: u32,
) -> Result<(u32, bool), LinkError> {
    let (index, created) = match index_of(h, name).await? {
        Some(i) => (i, false),
        None => {
            h.link()
                .add(LinkBridge::new(name).mtu(mtu).build())
                .execute()
                .await
                .map_err(nl("create bridge", name))?;
            let i = index_of(h, name).await?.ok_or_else(|| LinkError::Netlink {
                what: "find new bridge",
                name: name.into(),
                source: rtnetlink::Error::RequestFailed,
            })?;
            (i, true)
        }
    };
    let has = addresses_of(h, index).await?;
    if !has.contains(&gateway) {
        h.address()
            .add(index, IpAddr::V4(gateway), subnet.prefix_len())
            .execute()
            .await
            .map_err(nl("add gateway address to", name))?;
    }
    // A fixed MAC: a bridge without one takes the lowest MAC of its ports, so removing a
    // container's veth can change the gateway's MAC under the others' ARP caches, and their
    // packets to the gateway (DNS, the way out) go nowhere until the entry expires.
    let mac = crate::ipam::mac_for(gateway);
    h.link()
        .set(
            LinkUnspec::new_with_index(index)
                .address(mac.to_vec())
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(nl("set up", name))?;
    Ok((index, created))
}

async fn addresses_of(h: &Handle, index: u32) -> Result<Vec<Ipv4Addr>, LinkError> {
    let mut out = Vec::new();
    let mut s = h.address().get().set_link_index_filter(index).execute();
    while let Some(m) = s.try_next().await.map_err(nl("list addresses", ""))? {
        for a in m.attributes {
            if let AddressAttribute::Address(IpAddr::V4(ip)) = a {
                out.push(ip);
            }
        }
    }
    Ok(out)
}

/// Deletes link `name`; absent is fine.
pub async fn delete(h: &Handle, name: &str) -> Result<(), LinkError> {
    let Some(i) = index_of(h, name).await? else {
        return Ok(());
    };
    match h.link().del(i).execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_enodev(&e) => Ok(()),
        Err(e) => Err(nl("delete link", name)(e)),
    }
}

/// The names of the links enslaved to bridge `index`.
pub async fn ports_of(h: &Handle, index: u32) -> Result<Vec<String>, LinkError> {
    let mut out = Vec::new();
    let mut links = h.link().get().execute();
    while let Some(l) = links.try_next().await.map_err(nl("list links", ""))? {
        if !l
            .attributes
            .iter()
            .any(|a| matches!(a, LinkAttribute::Controller(c) if *c == index))
        {
            continue;
        }
        for a in l.attributes {
            if let LinkAttribute::IfName(n) = a {
                out.push(n);
            }
        }
    }
    Ok(out)
}

/// Every IPv4 network the host already has, as routes (all tables) and addresses, so that a
/// subnet taken from the pool never shadows one of them.
pub async fn host_networks(h: &Handle) -> Result<Vec<Ipv4Net>, LinkError> {
    let mut out = Vec::new();
    let mut routes = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    while let Some(r) = routes.try_next().await.map_err(nl("list routes", ""))? {
        let len = r.header.destination_prefix_length;
        if len == 0 {
            continue; // the default route covers everything and overlaps nothing in particular
        }
        for a in &r.attributes {
            if let RouteAttribute::Destination(RouteAddress::Inet(ip)) = a {
                if let Ok(n) = Ipv4Net::new(*ip, len) {
                    out.push(n.trunc());
                }
            }
        }
    }
    let mut addrs = h.address().get().execute();
    while let Some(m) = addrs.try_next().await.map_err(nl("list addresses", ""))? {
        for a in &m.attributes {
            if let AddressAttribute::Address(IpAddr::V4(ip)) = a {
                if let Ok(n) = Ipv4Net::new(*ip, m.header.prefix_len) {
                    out.push(n.trunc());
                }
            }
        }
    }
    Ok(out)
}

/// What one veth attachment needs.
pub struct Veth<'a> {
    pub host_name: &'a str,
    pub ifname: &'a str,
    pub bridge_index: u32,
    pub mtu: u32,
    pub mac: [u8; 6],
    pub netns: &'a std::fs::File,
}

/// Makes the veth pair with the container's end created directly inside its namespace under
/// its final name (no rename dance), the host end enslaved to the bridge, hairpin on (so a
/// container reaches its own published ports), up.
pub async fn add_veth(h: &Handle, v: &Veth<'_>) -> Result<(), LinkError> {
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(v.ifname.to_string())
        .mtu(v.mtu)
        .address(v.mac.to_vec())
        .setns_by_fd(v.netns.as_raw_fd())
        .build();
    let msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
        .name(v.host_name.to_string())
        .mtu(v.mtu)
        .controller(v.bridge_index)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    h.link()
        .add(msg)
        .execute()
        .await
        .map_err(nl("create veth", v.host_name))?;
    let up = async {
        let i = index_of(h, v.host_name)
            .await?
            .ok_or_else(|| LinkError::Netlink {
                what: "find new veth",
                name: v.host_name.into(),
                source: rtnetlink::Error::RequestFailed,
            })?;
        h.link()
            .set_port(
                LinkUnspec::new_with_index(i)
                    .set_port_kind(InfoPortKind::Bridge)
                    .set_port_data(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                        true,
                    )]))
                    .build(),
            )
            .execute()
            .await
            .map_err(nl("set hairpin on", v.host_name))?;
        h.link()
            .set(LinkUnspec::new_with_index(i).up().build())
            .execute()
            .await
            .map_err(nl("set up", v.host_name))
    };
    if let Err(e) = up.await {
        let _ = delete(h, v.host_name).await;
        return Err(e);
    }
    Ok(())
}

/// Inside the container: address on `ifname`, the link up, and the default route through the
/// gateway when `default_route` (the first network with a gateway gets it, as in Docker).
pub async fn configure_inside(
    ns: &Handle,
    ifname: &str,
    addr: Ipv4Addr,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
) -> Result<(), LinkError> {
    let i = index_of(ns, ifname)
        .await?
        .ok_or_else(|| LinkError::Netlink {
            what: "find in container",
            name: ifname.into(),
            source: rtnetlink::Error::RequestFailed,
        })?;
    ns.address()
        .add(i, IpAddr::V4(addr), prefix)
        .execute()
        .await
        .map_err(nl("add address to", ifname))?;
    ns.link()
        .set(LinkUnspec::new_with_index(i).up().build())
        .execute()
        .await
        .map_err(nl("set up", ifname))?;
    if let Some(gw) = gateway {
        ns.route()
            .add(RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build())
            .execute()
            .await
            .map_err(nl("add default route via", &gw.to_string()))?;
    }
    Ok(())
}

/// Adds `addr/prefix` to link `index` without duplicate address detection (the address is
/// ours to give, and DAD would keep it unusable for a second or two); present already is fine.
pub async fn add_address6(
    h: &Handle,
    index: u32,
    addr: Ipv6Addr,
    prefix: u8,
    name: &str,
) -> Result<(), LinkError> {
    let mut req = h.address().add(index, IpAddr::V6(addr), prefix);
    req.message_mut()
        .attributes
        .push(AddressAttribute::Flags(AddressFlags::Nodad));
    match req.execute().await {
        Ok(()) => Ok(()),
        Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EEXIST => Ok(()),
        Err(e) => Err(nl("add IPv6 address to", name)(e)),
    }
}

/// Inside the container: the IPv6 address on `ifname` and, when `gateway`, the default IPv6
/// route through it (unless the container has one already).
pub async fn configure_inside6(
    ns: &Handle,
    ifname: &str,
    addr: Ipv6Addr,
    prefix: u8,
    gateway: Option<Ipv6Addr>,
) -> Result<(), LinkError> {
    let i = index_of(ns, ifname)
        .await?
        .ok_or_else(|| LinkError::Netlink {
            what: "find in container",
            name: ifname.into(),
            source: rtnetlink::Error::RequestFailed,
        })?;
    add_address6(ns, i, addr, prefix, ifname).await?;
    let Some(gw) = gateway else { return Ok(()) };
    let mut routes = ns
        .route()
        .get(RouteMessageBuilder::<Ipv6Addr>::new().build())
        .execute();
    while let Some(r) = routes.try_next().await.map_err(nl("list routes", ""))? {
        if r.header.destination_prefix_length == 0
            && r.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Gateway(_)))
        {
            return Ok(());
        }
    }
    ns.route()
        .add(RouteMessageBuilder::<Ipv6Addr>::new().gateway(gw).build())
        .execute()
        .await
        .map_err(nl("add default IPv6 route via", &gw.to_string()))
}

/// Whether the container already has a default route.
pub async fn has_default_route(ns: &Handle) -> Result<bool, LinkError> {
    let mut routes = ns
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    while let Some(r) = routes.try_next().await.map_err(nl("list routes", ""))? {
        if r.header.destination_prefix_length == 0
            && r.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Gateway(_)))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Brings `lo` up inside a new namespace.
pub async fn loopback_up(ns: &Handle) -> Result<(), LinkError> {
    ns.link()
        .set(LinkUnspec::new_with_name("lo").up().build())
        .execute()
        .await
        .map_err(nl("set up", "lo"))
}

/// Writes a sysctl under /proc/sys/net (per network namespace: the daemon's own).
pub fn sysctl(path: &str, value: &str) -> Result<(), LinkError> {
    let p = format!("/proc/sys/net/{path}");
    match std::fs::read_to_string(&p) {
        Ok(v) if v.trim() == value => Ok(()),
        _ => std::fs::write(&p, value).map_err(|e| LinkError::Io(p, e)),
    }
}
