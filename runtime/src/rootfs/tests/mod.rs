//! End-to-end tests of prepare/pivot/finalize in a forked child with its own mount namespace.
//! They need root; run with `cargo test -p berth-runtime rootfs`.

mod harness;
mod mounts;
mod paths_and_devices;
mod security;
mod userns;
