//! Capabilities: the five sets of process.capabilities.
//!
//! A capability that is not in the runtime's own bounding set cannot be granted by anyone
//! (on this kind of host CAP_SYS_RESOURCE is such a one). runc fails the whole container with
//! "unable to apply caps"; we name the capability in a warning and run without it, so that
//! `--privileged` containers still start and the user is told exactly what is missing.

use std::collections::HashSet;
use std::str::FromStr;

use anyhow::{Context, Result};
use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};

fn to_caps(set: &Option<Capabilities>, available: &CapsHashSet, which: &str) -> CapsHashSet {
    let mut out = HashSet::new();
    for c in set.iter().flatten() {
        let name = serde_json::to_value(c)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        match Capability::from_str(&name) {
            Ok(cap) if available.contains(&cap) => {
                out.insert(cap);
            }
            Ok(_) => tracing::warn!(
                "capability {name} ({which} set) is not in the runtime's bounding set on this host; the container runs without it"
            ),
            Err(_) => tracing::warn!("unknown capability {name} in the {which} set, ignored"),
        }
    }
    out
}

pub struct Sets {
    bounding: CapsHashSet,
    effective: CapsHashSet,
    permitted: CapsHashSet,
    inheritable: CapsHashSet,
    ambient: CapsHashSet,
}

impl Sets {
    pub fn resolve(c: &LinuxCapabilities) -> Result<Self> {
        let available = caps::read(None, CapSet::Bounding).context("read bounding capabilities")?;
        Ok(Sets {
            bounding: to_caps(c.bounding(), &available, "bounding"),
            effective: to_caps(c.effective(), &available, "effective"),
            permitted: to_caps(c.permitted(), &available, "permitted"),
            inheritable: to_caps(c.inheritable(), &available, "inheritable"),
            ambient: to_caps(c.ambient(), &available, "ambient"),
        })
    }

    /// Shrink the bounding set. Needs CAP_SETPCAP, so it runs before we change uid.
    pub fn drop_bounding(&self) -> Result<()> {
        for cap in caps::read(None, CapSet::Bounding)? {
            if !self.bounding.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap)
                    .with_context(|| format!("drop {cap} from the bounding set"))?;
            }
        }
        Ok(())
    }

    /// Set effective, permitted, inheritable and ambient after the uid change.
    pub fn apply(&self) -> Result<()> {
        // The kernel requires effective to be a subset of permitted at every capset(2).
        let effective: CapsHashSet = self
            .effective
            .intersection(&self.permitted)
            .copied()
            .collect();
        caps::set(None, CapSet::Inheritable, &self.inheritable)
            .context("set inheritable capabilities")?;
        caps::set(None, CapSet::Effective, &effective).context("set effective capabilities")?;
        caps::set(None, CapSet::Permitted, &self.permitted)
            .context("set permitted capabilities")?;
        if !self.effective.is_subset(&self.permitted) {
            // The kernel drops effective bits that are not permitted; say so rather than
            // silently running with fewer than asked.
            tracing::warn!("effective capabilities not in the permitted set were dropped");
        }
        // Ambient caps must be both permitted and inheritable.
        caps::clear(None, CapSet::Ambient).ok();
        for cap in &self.ambient {
            if self.permitted.contains(cap) && self.inheritable.contains(cap) {
                caps::raise(None, CapSet::Ambient, *cap)
                    .with_context(|| format!("raise {cap} in the ambient set"))?;
            } else {
                // runc's default spec lists ambient caps without inheritable ones; the kernel
                // refuses those, and runc drops them silently too.
                tracing::debug!(
                    "ambient capability {cap} is not both permitted and inheritable, skipped"
                );
            }
        }
        Ok(())
    }
}

pub fn parse_cap(name: &str) -> Result<Capability> {
    let n = name.to_ascii_uppercase();
    let n = if n.starts_with("CAP_") {
        n
    } else {
        format!("CAP_{n}")
    };
    Capability::from_str(&n).map_err(|_| anyhow::anyhow!("unknown capability {name:?}"))
}
