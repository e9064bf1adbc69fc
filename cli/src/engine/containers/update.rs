//! `update`: new limits or restart policy for a container. A running container gets the
//! limits at once through its shim's Update (OCI LinuxResources JSON); the record and the
//! bundle's config.json get them for every later start. The restart policy is the shim's
//! `io.berth.restart` annotation, which a shim reads when it starts: a new policy takes
//! effect at the container's next start.

use serde_json::Value;

use super::record::{Record, RestartPolicy};
use super::ContainerError;
use crate::engine::Engine;

/// What to change; None leaves it as it is.
#[derive(Debug, Default, Clone)]
pub struct UpdateRequest {
    pub memory: Option<i64>,
    /// -1: unlimited swap.
    pub memory_swap: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub pids_limit: Option<i64>,
    pub restart: Option<RestartPolicy>,
}

impl UpdateRequest {
    fn resources_change(&self) -> bool {
        self.memory.is_some()
            || self.memory_swap.is_some()
            || self.nano_cpus.is_some()
            || self.cpu_shares.is_some()
            || self.cpuset_cpus.is_some()
            || self.pids_limit.is_some()
    }
}

impl Engine {
    pub fn update_container(
        &self,
        what: &str,
        req: &UpdateRequest,
    ) -> Result<Record, ContainerError> {
        let store = self.store();
        let _lock = store.lock()?;
        let mut rec = store.resolve(what)?;
        let h = &mut rec.host;
        if let Some(m) = req.memory {
            let swap = req.memory_swap.unwrap_or(h.memory_swap);
            if swap > 0 && m > swap {
                return Err(ContainerError::Invalid(
                    "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time".into(),
                ));
            }
            h.memory = m;
        }
        if let Some(s) = req.memory_swap {
            if h.memory == 0 {
                return Err(ContainerError::Invalid(
                    "You should always set the Memory limit when using Memoryswap limit, see usage.".into(),
                ));
            }
            if s > 0 && s < h.memory {
                return Err(ContainerError::Invalid(
                    "Minimum memoryswap limit should be larger than memory limit, see usage."
                        .into(),
                ));
            }
            h.memory_swap = s;
        }
        if let Some(n) = req.nano_cpus {
            h.nano_cpus = n;
        }
        if let Some(n) = req.cpu_shares {
            h.cpu_shares = n;
        }
        if let Some(c) = &req.cpuset_cpus {
            h.cpuset_cpus = c.clone();
        }
        if let Some(n) = req.pids_limit {
            h.pids_limit = n;
        }
        if let Some(p) = &req.restart {
            if h.auto_remove && p.name != "no" {
                return Err(ContainerError::Invalid(
                    "Restart policy cannot be updated because AutoRemove is enabled for the container".into(),
                ));
            }
            h.restart_policy = p.clone();
        }

        let path = self.bundle_dir(&rec.id).join("config.json");
        let mut spec: Value = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| ContainerError::Corrupt(path.clone(), e.to_string()))?,
            Err(e) => return Err(ContainerError::io(&path, e)),
        };
        let devices = spec["linux"]["resources"]["devices"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let resources = super::bundle::resources(&rec, &devices);
        if req.resources_change() && self.state_of(&rec).status.is_live() {
            if let Some(shim) = self.shim_of(&rec.id) {
                let mut live = resources.clone();
                // Devices stay as they are; only the limits change.
                if let Some(o) = live.as_object_mut() {
                    o.remove("devices");
                }
                shim.update(&serde_json::to_vec(&live).expect("json"))?;
            }
        }
        spec["linux"]["resources"] = resources;
        spec["annotations"]["io.berth.restart"] = Value::String(restart_annotation(&rec));
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&spec).expect("json"))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| ContainerError::io(&path, e))?;
        store.save(&rec)?;
        self.emit_container(&rec, "update", &[]);
        Ok(rec)
    }
}

/// The shim's spelling of the record's policy: `no`, `always`, `on-failure:N`, ….
pub fn restart_annotation(rec: &Record) -> String {
    let rp = &rec.host.restart_policy;
    match (rp.name.as_str(), rp.maximum_retry_count) {
        ("" | "no", _) => "no".to_string(),
        ("on-failure", n) if n > 0 => format!("on-failure:{n}"),
        (p, _) => p.to_string(),
    }
}
