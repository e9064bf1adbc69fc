//! blkio (v1) and io (v2): weights and throttling.

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxThrottleDevice};

use crate::error::Error;
use crate::fsio;

fn throttles(b: &LinuxBlockIo) -> [(&'static str, &'static str, &[LinuxThrottleDevice]); 4] {
    fn or_empty(v: &Option<Vec<LinuxThrottleDevice>>) -> &[LinuxThrottleDevice] {
        v.as_deref().unwrap_or_default()
    }
    [
        (
            "blkio.throttle.read_bps_device",
            "rbps",
            or_empty(b.throttle_read_bps_device()),
        ),
        (
            "blkio.throttle.write_bps_device",
            "wbps",
            or_empty(b.throttle_write_bps_device()),
        ),
        (
            "blkio.throttle.read_iops_device",
            "riops",
            or_empty(b.throttle_read_iops_device()),
        ),
        (
            "blkio.throttle.write_iops_device",
            "wiops",
            or_empty(b.throttle_write_iops_device()),
        ),
    ]
}

pub fn is_set(b: &LinuxBlockIo) -> bool {
    b.weight().is_some_and(|w| w != 0)
        || b.leaf_weight().is_some_and(|w| w != 0)
        || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
        || throttles(b).iter().any(|(_, _, v)| !v.is_empty())
}

pub fn set_v1(dir: &Path, b: &LinuxBlockIo) -> Result<(), Error> {
    // With the BFQ scheduler the weight files are the bfq ones; CFQ's are gone since 5.0.
    let bfq = fsio::exists(dir, "blkio.bfq.weight");
    let (weight_file, weight_dev_file) = if bfq {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    } else {
        ("blkio.weight", "blkio.weight_device")
    };
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        fsio::write(dir, weight_file, &w.to_string())?;
    }
    // Leaf weights were a CFQ feature; kernels since 5.0 have no such file.
    let leaf = fsio::exists(dir, "blkio.leaf_weight");
    if let Some(w) = b.leaf_weight().filter(|w| *w != 0) {
        if leaf {
            fsio::write(dir, "blkio.leaf_weight", &w.to_string())?;
        } else {
            tracing::warn!("ignoring blkio leafWeight {w}: this kernel has no CFQ leaf weights");
        }
    }
    for wd in b.weight_device().iter().flatten() {
        if let Some(w) = wd.weight().filter(|w| *w != 0) {
            let line = format!("{}:{} {w}", wd.major(), wd.minor());
            fsio::write(dir, weight_dev_file, &line)?;
        }
        if let Some(w) = wd.leaf_weight().filter(|w| *w != 0 && leaf) {
            let line = format!("{}:{} {w}", wd.major(), wd.minor());
            fsio::write(dir, "blkio.leaf_weight_device", &line)?;
        }
    }
    for (file, _, devs) in throttles(b) {
        for d in devs {
            fsio::write(
                dir,
                file,
                &format!("{}:{} {}", d.major(), d.minor(), d.rate()),
            )?;
        }
    }
    Ok(())
}

/// blkio weight (10..1000) onto io.weight (1..10000).
pub fn blkio_weight_to_io(w: u16) -> u64 {
    if w == 0 {
        return 0;
    }
    1 + (u64::from(w).saturating_sub(10)) * 9999 / 990
}

pub fn set_v2(dir: &Path, b: &LinuxBlockIo) -> Result<(), Error> {
    let bfq = fsio::exists(dir, "io.bfq.weight");
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        if bfq {
            fsio::write(dir, "io.bfq.weight", &w.to_string())?;
        } else {
            fsio::write(dir, "io.weight", &blkio_weight_to_io(w).to_string())?;
        }
    }
    if b.leaf_weight().is_some() {
        tracing::debug!("blkio leafWeight has no cgroup v2 equivalent");
    }
    for wd in b.weight_device().iter().flatten() {
        if let Some(w) = wd.weight().filter(|w| *w != 0) {
            // Per-device weights only exist with BFQ on v2.
            let line = format!("{}:{} {w}", wd.major(), wd.minor());
            fsio::write(dir, "io.bfq.weight", &line)?;
        }
    }
    for (_, key, devs) in throttles(b) {
        for d in devs {
            let line = format!("{}:{} {key}={}", d.major(), d.minor(), d.rate());
            fsio::write(dir, "io.max", &line)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blkio_weight_converts_like_runc() {
        assert_eq!(blkio_weight_to_io(10), 1);
        assert_eq!(blkio_weight_to_io(500), 4950);
        assert_eq!(blkio_weight_to_io(1000), 10000);
    }

    /// What a host whose disks use mq-deadline offers: the throttle files and no weight
    /// file at all (a directory standing in for its blkio cgroup, since this host may have
    /// a weight file).
    #[test]
    fn a_weight_on_a_host_without_bfq_or_cfq_names_the_scheduler() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blkio.throttle.read_bps_device"), "").unwrap();
        let b: LinuxBlockIo = serde_json::from_value(serde_json::json!({"weight": 300})).unwrap();
        let e = set_v1(dir.path(), &b).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        let e = e.to_string();
        assert!(
            e.contains("blkio weight needs the BFQ or CFQ I/O scheduler: this host has neither blkio.weight nor blkio.bfq.weight"),
            "{e}"
        );
        // v2 without BFQ or blk-iocost.
        let e = set_v2(dir.path(), &b).unwrap_err().to_string();
        assert!(e.contains("neither io.bfq.weight nor io.weight"), "{e}");
    }
}
