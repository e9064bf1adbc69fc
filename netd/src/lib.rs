//! berth-netd as a library: networks and IPAM, network namespaces and veth endpoints,
//! nftables NAT and published ports, per-network DNS, behind the daemon's gRPC API
//! (`proto/proto/netd.proto`), and the typed client the `berth` CLI uses.

pub mod client;
pub mod daemon;
pub mod dns;
pub mod ipam;
pub mod libnftables;
pub mod link;
pub mod netns;
pub mod nft;
pub mod service;
pub mod state;
pub mod teardown;
