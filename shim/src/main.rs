//! containerd-shim-berth-v2: containerd's shim v2 Task API for one container.

fn main() {}
