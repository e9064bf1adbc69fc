//! rdma: HCA handle and object limits per device (same file in v1 and v2).

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::LinuxRdma;

use crate::error::Error;
use crate::fsio;

pub fn is_set(r: &HashMap<String, LinuxRdma>) -> bool {
    !r.is_empty()
}

pub fn set(dir: &Path, r: &HashMap<String, LinuxRdma>) -> Result<(), Error> {
    let mut devices: Vec<_> = r.iter().collect();
    devices.sort_by(|a, b| a.0.cmp(b.0));
    for (dev, lim) in devices {
        let mut line = dev.clone();
        if let Some(h) = lim.hca_handles() {
            line.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = lim.hca_objects() {
            line.push_str(&format!(" hca_object={o}"));
        }
        fsio::write(dir, "rdma.max", &line)?;
    }
    Ok(())
}
