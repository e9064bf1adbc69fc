//! pids: the maximum number of tasks.

use std::path::Path;

use oci_spec::runtime::LinuxPids;

use crate::error::Error;
use crate::fsio;

/// Same file in v1 and v2; zero or negative means no limit.
pub fn set(dir: &Path, p: &LinuxPids) -> Result<(), Error> {
    let value = if p.limit() > 0 {
        p.limit().to_string()
    } else {
        "max".to_string()
    };
    fsio::write(dir, "pids.max", &value)
}
