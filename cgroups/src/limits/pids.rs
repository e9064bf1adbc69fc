//! pids: the maximum number of tasks.

use std::path::Path;

use oci_spec::runtime::LinuxPids;

use crate::error::Error;
use crate::fsio;

/// 0 means "not set" (as in runc), so it needs no pids controller.
pub fn is_set(p: &LinuxPids) -> bool {
    p.limit() != 0
}

/// Same file in v1 and v2; a negative limit means no limit.
pub fn set(dir: &Path, p: &LinuxPids) -> Result<(), Error> {
    let value = if p.limit() > 0 {
        p.limit().to_string()
    } else {
        "max".to_string()
    };
    fsio::write(dir, "pids.max", &value)
}
