//! Containers with DNS servers of their own (`--dns` on a user-defined network). Their
//! resolv.conf still names the network's server, so that peers' names resolve; that server
//! tells them apart by the query's source address and forwards the names it does not hold
//! to their servers, not the host's, as Docker's embedded DNS does. One forwarder (with its
//! cache and failover state) per distinct list of servers, kept across updates.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use super::Forwarder;
use crate::state::State;

/// Container address → its own upstreams, for every container that has some.
pub fn custom_upstreams(state: &State) -> HashMap<IpAddr, Vec<SocketAddr>> {
    let mut out = HashMap::new();
    for sb in state.sandboxes.values() {
        let ups = sb.dns.upstreams();
        if ups.is_empty() {
            continue;
        }
        for e in &sb.endpoints {
            out.insert(IpAddr::V4(e.ip), ups.clone());
        }
    }
    out
}

#[derive(Default)]
pub struct Upstreams {
    by_addr: RwLock<HashMap<IpAddr, Arc<Forwarder>>>,
}

impl Upstreams {
    /// Replaces the map, reusing the forwarder of a list of servers already in use.
    pub fn set(&self, want: HashMap<IpAddr, Vec<SocketAddr>>) {
        let mut by_addr = self.by_addr.write().expect("dns upstreams lock");
        let mut by_servers: HashMap<Vec<SocketAddr>, Arc<Forwarder>> = by_addr
            .values()
            .map(|f| (f.fixed_servers().to_vec(), f.clone()))
            .collect();
        *by_addr = want
            .into_iter()
            .map(|(addr, servers)| {
                let f = by_servers
                    .entry(servers.clone())
                    .or_insert_with(|| Arc::new(Forwarder::fixed(servers)))
                    .clone();
                (addr, f)
            })
            .collect();
    }

    /// The forwarder for queries from `addr`, when that container has servers of its own.
    pub fn get(&self, addr: IpAddr) -> Option<Arc<Forwarder>> {
        self.by_addr
            .read()
            .expect("dns upstreams lock")
            .get(&addr)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_forwarder_per_list_of_servers_kept_across_updates() {
        let u = Upstreams::default();
        let a: IpAddr = "10.234.1.2".parse().unwrap();
        let b: IpAddr = "10.234.1.3".parse().unwrap();
        let s1: Vec<SocketAddr> = vec!["10.9.0.1:53".parse().unwrap()];
        u.set([(a, s1.clone()), (b, s1.clone())].into());
        let fa = u.get(a).unwrap();
        assert!(Arc::ptr_eq(&fa, &u.get(b).unwrap()));
        assert_eq!(fa.fixed_servers(), s1.as_slice());
        u.set([(a, s1.clone())].into());
        assert!(Arc::ptr_eq(&fa, &u.get(a).unwrap()), "kept, with its cache");
        assert!(u.get(b).is_none());
    }
}
