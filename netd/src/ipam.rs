//! Address management: picking subnets from a pool that overlaps nothing, and handing out
//! addresses inside a subnet. Pure functions over the state, so the rules are unit tested
//! without a kernel; persistence is the store's job.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IpamError {
    #[error("invalid subnet {0:?}: {1}")]
    BadSubnet(String, String),
    #[error("gateway {gateway} is outside subnet {subnet}")]
    GatewayOutside { gateway: Ipv4Addr, subnet: Ipv4Net },
    #[error("ip range {range} is outside subnet {subnet}")]
    RangeOutside { range: Ipv4Net, subnet: Ipv4Net },
    #[error("subnet {subnet} overlaps {other}")]
    Overlap { subnet: Ipv4Net, other: String },
    #[error("no free subnet left in the pool {0}")]
    PoolFull(String),
    #[error("no free address left in {0}")]
    Exhausted(Ipv4Net),
    #[error("address {ip} is outside subnet {subnet}")]
    AddressOutside { ip: Ipv4Addr, subnet: Ipv4Net },
    #[error("address {0} is already in use")]
    AddressInUse(Ipv4Addr),
    #[error("address {0} is the network's gateway, network or broadcast address")]
    AddressReserved(Ipv4Addr),
    #[error("no free address left in {0}")]
    Exhausted6(Ipv6Net),
    #[error("address {ip} is outside subnet {subnet}")]
    AddressOutside6 { ip: Ipv6Addr, subnet: Ipv6Net },
    #[error("address {0} is already in use")]
    AddressInUse6(Ipv6Addr),
    #[error("address {0} is the network's gateway or subnet-router anycast address")]
    AddressReserved6(Ipv6Addr),
}

/// An IPv6 subnet: a network address, /64 to /120 (SLAAC-sized down to small test ones).
pub fn parse_subnet6(s: &str) -> Result<Ipv6Net, IpamError> {
    let net: Ipv6Net = s
        .parse()
        .map_err(|e: ipnet::AddrParseError| IpamError::BadSubnet(s.into(), e.to_string()))?;
    if net.network() != net.addr() {
        return Err(IpamError::BadSubnet(
            s.into(),
            format!("not a network address (did you mean {}?)", net.trunc()),
        ));
    }
    if !(64..=120).contains(&net.prefix_len()) {
        return Err(IpamError::BadSubnet(
            s.into(),
            "IPv6 subnets are /64 to /120".into(),
        ));
    }
    Ok(net)
}

/// The subnet's first address: the gateway.
pub fn first6(net: Ipv6Net) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(net.network()) + 1)
}

/// The lowest free address after the gateway. Addresses are not rotated as IPv4 ones are: a
/// /64 does not run out, and low addresses read well.
pub fn allocate6(net: &Ipv6Net, used: &BTreeSet<Ipv6Addr>) -> Result<Ipv6Addr, IpamError> {
    let base = u128::from(net.network());
    let last = u128::from(net.broadcast());
    (base + 2..=last)
        .map(Ipv6Addr::from)
        .take(used.len() + 1)
        .find(|a| !used.contains(a))
        .ok_or(IpamError::Exhausted6(*net))
}

/// Checks a static `--ip6`: inside the subnet, not the gateway nor the subnet-router anycast
/// address (the subnet's own, all host bits zero), not held by another endpoint.
pub fn check_static6(
    subnet: &Ipv6Net,
    gateway: Ipv6Addr,
    used: &BTreeSet<Ipv6Addr>,
    ip: Ipv6Addr,
) -> Result<(), IpamError> {
    if !subnet.contains(&ip) {
        return Err(IpamError::AddressOutside6 {
            ip,
            subnet: *subnet,
        });
    }
    if ip == gateway || ip == subnet.network() {
        return Err(IpamError::AddressReserved6(ip));
    }
    if used.contains(&ip) {
        return Err(IpamError::AddressInUse6(ip));
    }
    Ok(())
}

/// Parses a CIDR and insists on it being the network address (`10.1.2.0/24`, not `10.1.2.3/24`),
/// as Docker does.
pub fn parse_subnet(s: &str) -> Result<Ipv4Net, IpamError> {
    let net: Ipv4Net = s
        .parse()
        .map_err(|e: ipnet::AddrParseError| IpamError::BadSubnet(s.into(), e.to_string()))?;
    if net.network() != net.addr() {
        return Err(IpamError::BadSubnet(
            s.into(),
            format!("not a network address (did you mean {}?)", net.trunc()),
        ));
    }
    if net.prefix_len() > 30 {
        return Err(IpamError::BadSubnet(
            s.into(),
            "too small for a gateway and a container (at most /30)".into(),
        ));
    }
    Ok(net)
}

/// Whether two networks share any address.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first `size`-long subnet of `pool` that overlaps none of `taken`.
pub fn pick_subnet(pool: &[Ipv4Net], size: u8, taken: &[Ipv4Net]) -> Result<Ipv4Net, IpamError> {
    for p in pool {
        let Ok(subnets) = p.subnets(size.max(p.prefix_len())) else {
            continue;
        };
        for s in subnets {
            if !taken.iter().any(|t| overlaps(&s, t)) {
                return Ok(s);
            }
        }
    }
    Err(IpamError::PoolFull(
        pool.iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(","),
    ))
}

/// The gateway: given, and inside the subnet, or the subnet's first host address.
pub fn gateway(subnet: &Ipv4Net, given: Option<Ipv4Addr>) -> Result<Ipv4Addr, IpamError> {
    match given {
        Some(g) if !subnet.contains(&g) || g == subnet.network() || g == subnet.broadcast() => {
            Err(IpamError::GatewayOutside {
                gateway: g,
                subnet: *subnet,
            })
        }
        Some(g) => Ok(g),
        None => Ok(Ipv4Addr::from(u32::from(subnet.network()) + 1)),
    }
}

/// Next free address of `range` (inside `subnet`), skipping network, broadcast, gateway and
/// `used`. `after` makes allocation rotate past the last address handed out, so a just-freed
/// address is not given to the next container at once (as Docker does).
pub fn allocate(
    subnet: &Ipv4Net,
    range: &Ipv4Net,
    gateway: Ipv4Addr,
    used: &BTreeSet<Ipv4Addr>,
    after: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, IpamError> {
    let lo = u32::from(range.network()).max(u32::from(subnet.network()) + 1);
    let hi = u32::from(range.broadcast()).min(u32::from(subnet.broadcast()) - 1);
    if lo > hi {
        return Err(IpamError::Exhausted(*range));
    }
    let start = match after.map(u32::from) {
        Some(a) if a >= lo && a < hi => a + 1,
        _ => lo,
    };
    let free = |a: u32| {
        let ip = Ipv4Addr::from(a);
        ip != gateway && !used.contains(&ip)
    };
    (start..=hi)
        .chain(lo..start)
        .find(|&a| free(a))
        .map(Ipv4Addr::from)
        .ok_or(IpamError::Exhausted(*range))
}

/// Checks a static `--ip`.
pub fn check_static(
    subnet: &Ipv4Net,
    gateway: Ipv4Addr,
    used: &BTreeSet<Ipv4Addr>,
    ip: Ipv4Addr,
) -> Result<(), IpamError> {
    if !subnet.contains(&ip) {
        return Err(IpamError::AddressOutside {
            ip,
            subnet: *subnet,
        });
    }
    if ip == gateway || ip == subnet.network() || ip == subnet.broadcast() {
        return Err(IpamError::AddressReserved(ip));
    }
    if used.contains(&ip) {
        return Err(IpamError::AddressInUse(ip));
    }
    Ok(())
}

/// Docker's MAC for an address: 02:42 and the four address bytes.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub fn format_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    v.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn subnets_must_be_network_addresses() {
        assert!(parse_subnet("10.234.1.0/24").is_ok());
        assert!(matches!(
            parse_subnet("10.234.1.5/24"),
            Err(IpamError::BadSubnet(..))
        ));
        assert!(parse_subnet("nonsense").is_err());
        assert!(parse_subnet("10.0.0.0/31").is_err());
    }

    #[test]
    fn pool_skips_taken_and_reports_full() {
        let pool = [n("10.234.0.0/22")];
        let taken = [n("10.234.0.0/24"), n("10.234.1.128/25")];
        assert_eq!(pick_subnet(&pool, 24, &taken), Ok(n("10.234.2.0/24")));
        let all = [n("10.234.0.0/16")];
        assert!(matches!(
            pick_subnet(&pool, 24, &all),
            Err(IpamError::PoolFull(_))
        ));
    }

    #[test]
    fn gateway_inside_only() {
        let s = n("10.234.1.0/24");
        assert_eq!(gateway(&s, None), Ok("10.234.1.1".parse().unwrap()));
        assert!(gateway(&s, Some("10.234.2.1".parse().unwrap())).is_err());
        assert!(gateway(&s, Some("10.234.1.255".parse().unwrap())).is_err());
        assert!(gateway(&s, Some("10.234.1.254".parse().unwrap())).is_ok());
    }

    #[test]
    fn allocation_skips_used_rotates_and_exhausts() {
        let s = n("10.234.1.0/29"); // .1 gateway, .2-.6 hosts
        let gw = gateway(&s, None).unwrap();
        let mut used = BTreeSet::new();
        let a = allocate(&s, &s, gw, &used, None).unwrap();
        assert_eq!(a, "10.234.1.2".parse::<Ipv4Addr>().unwrap());
        used.insert(a);
        let b = allocate(&s, &s, gw, &used, Some(a)).unwrap();
        assert_eq!(b, "10.234.1.3".parse::<Ipv4Addr>().unwrap());
        used.remove(&a);
        // .2 is free again, but allocation goes on after .3 first.
        let c = allocate(&s, &s, gw, &used, Some(b)).unwrap();
        assert_eq!(c, "10.234.1.4".parse::<Ipv4Addr>().unwrap());
        for h in 2..=6 {
            used.insert(Ipv4Addr::new(10, 234, 1, h));
        }
        assert_eq!(
            allocate(&s, &s, gw, &used, None),
            Err(IpamError::Exhausted(s))
        );
    }

    #[test]
    fn ip_range_limits_dynamic_addresses() {
        let s = n("10.234.1.0/24");
        let r = n("10.234.1.128/25");
        let gw = gateway(&s, None).unwrap();
        let a = allocate(&s, &r, gw, &BTreeSet::new(), None).unwrap();
        assert_eq!(a, "10.234.1.128".parse::<Ipv4Addr>().unwrap());
    }

    #[test]
    fn static_addresses_are_checked() {
        let s = n("10.234.1.0/24");
        let gw = gateway(&s, None).unwrap();
        let used: BTreeSet<Ipv4Addr> = ["10.234.1.9".parse().unwrap()].into();
        assert!(check_static(&s, gw, &used, "10.234.1.10".parse().unwrap()).is_ok());
        assert!(check_static(&s, gw, &used, "10.234.1.9".parse().unwrap()).is_err());
        assert!(check_static(&s, gw, &used, gw).is_err());
        assert!(check_static(&s, gw, &used, "10.9.1.10".parse().unwrap()).is_err());
    }

    #[test]
    fn macs() {
        let m = mac_for("10.234.1.2".parse().unwrap());
        assert_eq!(format_mac(&m), "02:42:0a:ea:01:02");
        assert_eq!(parse_mac("02:42:0a:ea:01:02"), Some(m));
    }

    #[test]
    fn ipv6_subnets_gateway_and_lowest_free_address() {
        assert!(parse_subnet6("fd00:1::/64").is_ok());
        assert!(
            parse_subnet6("fd00:1::5/64").is_err(),
            "not a network address"
        );
        assert!(parse_subnet6("fd00:1::/48").is_err(), "larger than /64");
        assert!(parse_subnet6("fd00:1::/124").is_err(), "smaller than /120");
        assert!(parse_subnet6("10.0.0.0/24").is_err());
        let net = parse_subnet6("fd00:1::/120").unwrap();
        assert_eq!(first6(net), "fd00:1::1".parse::<Ipv6Addr>().unwrap());
        let gw = first6(net);
        let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let used: BTreeSet<Ipv6Addr> = [v6("fd00:1::2")].into();
        assert_eq!(check_static6(&net, gw, &used, v6("fd00:1::99")), Ok(()));
        assert_eq!(
            check_static6(&net, gw, &used, v6("fd00:1::2")),
            Err(IpamError::AddressInUse6(v6("fd00:1::2")))
        );
        assert!(matches!(
            check_static6(&net, gw, &used, v6("fd00:2::5")),
            Err(IpamError::AddressOutside6 { .. })
        ));
        assert_eq!(
            check_static6(&net, gw, &used, gw),
            Err(IpamError::AddressReserved6(gw))
        );
        assert_eq!(
            check_static6(&net, gw, &used, v6("fd00:1::")),
            Err(IpamError::AddressReserved6(v6("fd00:1::")))
        );
        let mut used = BTreeSet::new();
        let a = allocate6(&net, &used).unwrap();
        assert_eq!(a, "fd00:1::2".parse::<Ipv6Addr>().unwrap());
        used.insert(a);
        used.insert("fd00:1::4".parse().unwrap());
        assert_eq!(allocate6(&net, &used).unwrap().to_string(), "fd00:1::3");
        let full: BTreeSet<Ipv6Addr> = (2..=255u128)
            .map(|i| Ipv6Addr::from(u128::from(net.network()) + i))
            .collect();
        assert_eq!(allocate6(&net, &full), Err(IpamError::Exhausted6(net)));
    }
}
