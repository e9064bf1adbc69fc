//! `system boot`: after a reboot there is no daemon to bring containers back, so this does
//! what dockerd does when it starts: every `always` container, and every `unless-stopped`
//! one the user had not stopped, gets its root mounted again (imaged's GetMounts), its
//! network sandbox made again if the namespace is gone (netd), and is started (never
//! started ones stay as they are) — in
//! dependency order: a container comes after those it names with `--link`,
//! `--volumes-from` or `--network container:`; otherwise oldest first, so containers that
//! share a network come back in the order they were made.

use std::collections::{BTreeMap, BTreeSet};

use berth_proto::imaged as ipb;

use super::record::Record;
use super::state::Status;
use super::{rootfs, shim, ContainerError};
use crate::engine::{networking, Engine};

impl Engine {
    /// The containers to bring back, in the order to start them.
    pub fn boot_plan(&self) -> Vec<Record> {
        let wanted: Vec<Record> = self
            .store()
            .all()
            .into_iter()
            .filter(|r| {
                let st = self.state_of(r);
                // Never started: nothing to bring back (dockerd leaves those too).
                st.status != Status::Created
                    && match r.host.restart_policy.name.as_str() {
                        "always" => true,
                        "unless-stopped" => !st.stopped_by_user,
                        _ => false,
                    }
            })
            .collect();
        start_order(wanted)
    }

    /// Bring one container back; false when it was already running.
    pub async fn boot_container(&mut self, rec: &Record) -> Result<bool, ContainerError> {
        let id = rec.id.clone();
        let bundle = self.bundle_dir(&id);
        let shim_alive = self.shim_of(&id).is_some();
        let st = self.state_of(rec);
        if shim_alive && st.status.is_live() {
            return Ok(false);
        }
        if matches!(st.status, Status::Running | Status::Paused) {
            // Its process outlived its shim (state.rs checked the pid): it runs.
            return Ok(false);
        }
        if !shim_alive {
            if bundle.join("shim.pid").exists() {
                // What the dead shim left with the runtime (its state dir), as containerd
                // cleans up after a shim; this also unmounts the old root.
                shim::delete_dead(&id, &bundle);
            }
            // A back-off that was pending when the host went down is nobody's now.
            let _ = std::fs::remove_file(bundle.join("status.json"));
        }
        let root = bundle.join("rootfs");
        if !rootfs::is_mounted(&root) {
            std::fs::create_dir_all(&root).map_err(|e| ContainerError::io(&root, e))?;
            let mounts = self
                .images()
                .await
                .map_err(|e| ContainerError::Daemon(format!("{e:#}")))?
                .get_mounts(ipb::SnapshotRequest { key: id.clone() })
                .await?
                .into_inner();
            rootfs::mount_overlay(&mounts, &root)?;
        }
        if !matches!(rec.host.network_mode.as_str(), "none" | "host")
            && !self.run.join("netns").join(&id).exists()
        {
            let netd = self
                .networks()
                .await
                .map_err(|e| ContainerError::Daemon(format!("{e:#}")))?;
            // netd still has the sandbox of before the reboot: let it go, then make a new one.
            networking::remove_sandbox(netd, &id)
                .await
                .map_err(|e| ContainerError::Daemon(e.to_string()))?;
            let mut fresh = self.store().load(&id)?;
            // The addresses of before, where they are still free: links and the hosts
            // files of other containers name them.
            let mut keep = fresh.clone();
            for a in keep.networks.iter_mut() {
                let before = &fresh.network_settings["Networks"][&a.network];
                let was = |k: &str| before[k].as_str().filter(|ip| !ip.is_empty());
                if let (true, Some(ip)) = (a.ip.is_empty(), was("IPAddress")) {
                    a.ip = ip.to_string();
                }
                if let (true, Some(ip6)) = (a.ip6.is_empty(), was("GlobalIPv6Address")) {
                    a.ip6 = ip6.to_string();
                }
            }
            match self.attach_networks(&mut keep).await {
                Ok(_) => fresh.network_settings = keep.network_settings,
                Err(_) => {
                    self.attach_networks(&mut fresh).await?;
                }
            }
            self.write_etc_files(&fresh, &self.container_dir(&id))?;
            let store = self.store();
            let _lock = store.lock()?;
            let mut now = store.load(&id)?;
            now.network_settings = fresh.network_settings;
            store.save(&now)?;
        }
        let rec = self.store().load(&id)?;
        self.start_container(&rec, || Ok(()))?;
        Ok(true)
    }
}

/// Kahn's order over the dependencies between the given containers, oldest first among
/// those that are free to go. A cycle (which Docker refuses to create) is broken by age.
pub fn start_order(mut recs: Vec<Record>) -> Vec<Record> {
    recs.sort_by(|a, b| a.created.cmp(&b.created));
    let by_name: BTreeMap<String, usize> = recs
        .iter()
        .enumerate()
        .flat_map(|(i, r)| [(r.name.clone(), i), (r.id.clone(), i)])
        .collect();
    let find = |what: &str| -> Option<usize> {
        let w = what.trim_start_matches('/');
        by_name.get(w).copied().or_else(|| {
            let mut hits = recs.iter().enumerate().filter(|(_, r)| r.id.starts_with(w));
            match (hits.next(), hits.next()) {
                (Some((i, _)), None) if w.len() >= 3 => Some(i),
                _ => None,
            }
        })
    };
    let deps: Vec<BTreeSet<usize>> = recs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut d = BTreeSet::new();
            for l in &r.host.links {
                if let Some(j) = find(l.split(':').next().unwrap_or(l)) {
                    d.insert(j);
                }
            }
            for v in &r.host.volumes_from {
                if let Some(j) = find(v.split(':').next().unwrap_or(v)) {
                    d.insert(j);
                }
            }
            if let Some(c) = r.host.network_mode.strip_prefix("container:") {
                if let Some(j) = find(c) {
                    d.insert(j);
                }
            }
            d.remove(&i);
            d
        })
        .collect();
    let mut done = vec![false; recs.len()];
    let mut order = Vec::with_capacity(recs.len());
    while order.len() < recs.len() {
        let next = (0..recs.len())
            .find(|&i| !done[i] && deps[i].iter().all(|&j| done[j]))
            .or_else(|| (0..recs.len()).find(|&i| !done[i]))
            .expect("some container is left");
        done[next] = true;
        order.push(next);
    }
    let mut slots: Vec<Option<Record>> = recs.into_iter().map(Some).collect();
    order
        .into_iter()
        .map(|i| slots[i].take().expect("each once"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, created: &str, links: &[&str]) -> Record {
        let mut r = Record {
            id: format!("{name:0>64}"),
            name: name.into(),
            created: created.into(),
            ..Default::default()
        };
        r.host.links = links.iter().map(|s| s.to_string()).collect();
        r
    }

    #[test]
    fn linked_containers_start_after_what_they_link_to() {
        let recs = vec![
            rec("web", "2026-01-01T00:00:01Z", &["db:database", "cache"]),
            rec("db", "2026-01-01T00:00:03Z", &[]),
            rec("cache", "2026-01-01T00:00:02Z", &["/db"]),
            rec("other", "2026-01-01T00:00:00Z", &[]),
        ];
        let names: Vec<String> = start_order(recs).into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["other", "db", "cache", "web"]);
    }

    #[test]
    fn a_cycle_is_broken_by_age() {
        let recs = vec![
            rec("a", "2026-01-01T00:00:01Z", &["b"]),
            rec("b", "2026-01-01T00:00:02Z", &["a"]),
        ];
        let names: Vec<String> = start_order(recs).into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["a", "b"]);
    }
}
