//! net_cls and net_prio (v1 only: v2 has no network controllers).

use std::path::Path;

use oci_spec::runtime::LinuxNetwork;

use crate::error::Error;
use crate::fsio;

pub fn class_is_set(n: &LinuxNetwork) -> bool {
    n.class_id().is_some_and(|c| c != 0)
}

pub fn prio_is_set(n: &LinuxNetwork) -> bool {
    n.priorities().as_ref().is_some_and(|p| !p.is_empty())
}

pub fn set_class(dir: &Path, n: &LinuxNetwork) -> Result<(), Error> {
    if let Some(c) = n.class_id().filter(|c| *c != 0) {
        fsio::write(dir, "net_cls.classid", &c.to_string())?;
    }
    Ok(())
}

pub fn set_prio(dir: &Path, n: &LinuxNetwork) -> Result<(), Error> {
    for p in n.priorities().iter().flatten() {
        fsio::write(
            dir,
            "net_prio.ifpriomap",
            &format!("{} {}", p.name(), p.priority()),
        )?;
    }
    Ok(())
}
