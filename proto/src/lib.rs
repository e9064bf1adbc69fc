//! Generated gRPC types for Berth's own daemons. The shim protocol is containerd's and
//! comes from `containerd-shim-protos`, not from here.

pub mod imaged {
    tonic::include_proto!("berth.imaged.v1");
}

pub mod netd {
    tonic::include_proto!("berth.netd.v1");
}
