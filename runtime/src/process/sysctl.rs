//! `linux.sysctl`: written into /proc/sys from inside the container's namespaces, and only
//! for keys those namespaces isolate — anything else would change the host's kernel.

use anyhow::{bail, Context, Result};
use oci_spec::runtime::LinuxNamespaceType;

use super::namespaces::Plan;

/// The namespace that makes `key` private to the container, if any does.
fn isolating_namespace(key: &str) -> Option<LinuxNamespaceType> {
    const IPC_KEYS: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC_KEYS.contains(&key) || key.starts_with("fs.mqueue.") {
        Some(LinuxNamespaceType::Ipc)
    } else if key.starts_with("net.") {
        Some(LinuxNamespaceType::Network)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some(LinuxNamespaceType::Uts)
    } else {
        None
    }
}

/// Refuses keys the container's namespaces do not isolate, before anything is written.
pub fn check<'a>(sysctls: impl IntoIterator<Item = &'a String>, plan: &Plan) -> Result<()> {
    for key in sysctls {
        match isolating_namespace(&key.replace('/', ".")) {
            Some(ns) if plan.contains(ns) => {}
            Some(ns) => bail!(
                "sysctl {key} needs a private {} namespace: without one it would change the host",
                super::namespaces::proc_name(ns)
            ),
            None => {
                bail!("sysctl {key} is not isolated by any namespace: it would change the host")
            }
        }
    }
    Ok(())
}

pub fn apply<'a>(sysctls: impl IntoIterator<Item = (&'a String, &'a String)>) -> Result<()> {
    for (key, value) in sysctls {
        // Keys name /proc/sys paths with dots, or with slashes when a component holds a dot
        // (net/ipv4/conf/eth0.1/forwarding), as sysctl(8) and runc accept.
        let rel = if key.contains('/') {
            key.clone()
        } else {
            key.replace('.', "/")
        };
        let path = format!("/proc/sys/{rel}");
        std::fs::write(&path, value)
            .with_context(|| format!("set sysctl {key}={value} ({path})"))?;
    }
    Ok(())
}
