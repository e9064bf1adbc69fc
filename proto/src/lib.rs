//! Berth's own gRPC contracts (the generated types of `proto/*.proto`) and the unix-socket
//! transport both daemons and their clients share. The shim protocol is containerd's and
//! comes from `containerd-shim-protos`, not from here.

pub mod connect;
pub mod daemon;

pub mod imaged {
    tonic::include_proto!("berth.imaged.v1");
}

pub mod netd {
    tonic::include_proto!("berth.netd.v1");
}
