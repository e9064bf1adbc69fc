//! Writing `linux.resources` into the container's cgroups: picks, per controller, the v1
//! hierarchy or the v2 directory that holds it, and fails when a requested controller is on
//! neither (as runc does), instead of silently running a container without its limits.

pub mod cpu;
pub mod devices_v1;
pub mod hugetlb;
pub mod io;
pub mod memory;
pub mod network;
pub mod pids;
pub mod rdma;
pub mod unified;

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::detect::Layout;
use crate::error::Error;
use crate::paths::CgroupPaths;
use crate::{bpf, device_rules, fsio};

enum Backend<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

struct Resolver<'a> {
    paths: &'a CgroupPaths,
    /// The container's cgroup.controllers in v2, read on first need.
    v2_controllers: Option<Vec<String>>,
}

impl<'a> Resolver<'a> {
    fn backend(&mut self, v1_name: &str, v2_name: &str) -> Result<Backend<'a>, Error> {
        if let Some(dir) = self.paths.v1.get(v1_name) {
            return Ok(Backend::V1(dir));
        }
        if let Some(dir) = &self.paths.unified {
            if self.v2_controllers.is_none() {
                let text = fsio::read(dir, "cgroup.controllers")?;
                self.v2_controllers = Some(text.split_whitespace().map(String::from).collect());
            }
            let listed = self.v2_controllers.as_ref();
            if listed.is_some_and(|l| l.iter().any(|c| c == v2_name)) {
                return Ok(Backend::V2(dir));
            }
        }
        Err(Error::ControllerMissing {
            controller: v1_name.to_string(),
        })
    }
}

pub fn set(paths: &CgroupPaths, r: &LinuxResources) -> Result<(), Error> {
    let mut res = Resolver {
        paths,
        v2_controllers: None,
    };
    if let Some(m) = r.memory().as_ref().filter(|m| memory::is_set(m)) {
        match res.backend("memory", "memory")? {
            Backend::V1(d) => memory::set_v1(d, m)?,
            Backend::V2(d) => memory::set_v2(d, m)?,
        }
    }
    if let Some(c) = r.cpu().as_ref() {
        if cpu::is_set(c) {
            match res.backend("cpu", "cpu")? {
                Backend::V1(d) => cpu::set_v1(d, c)?,
                Backend::V2(d) => cpu::set_v2(d, c)?,
            }
        }
        if cpu::cpuset_is_set(c) {
            match res.backend("cpuset", "cpuset")? {
                Backend::V1(d) | Backend::V2(d) => cpu::set_cpuset(d, c)?,
            }
        }
    }
    if let Some(p) = r.pids().as_ref().filter(|p| pids::is_set(p)) {
        match res.backend("pids", "pids")? {
            Backend::V1(d) | Backend::V2(d) => pids::set(d, p)?,
        }
    }
    if let Some(b) = r.block_io().as_ref().filter(|b| io::is_set(b)) {
        match res.backend("blkio", "io")? {
            Backend::V1(d) => io::set_v1(d, b)?,
            Backend::V2(d) => io::set_v2(d, b)?,
        }
    }
    if let Some(h) = r.hugepage_limits().as_ref().filter(|h| !h.is_empty()) {
        match res.backend("hugetlb", "hugetlb")? {
            Backend::V1(d) => hugetlb::set(d, h, false)?,
            Backend::V2(d) => hugetlb::set(d, h, true)?,
        }
    }
    if let Some(n) = r.network().as_ref() {
        set_network(paths, n)?;
    }
    if let Some(rd) = r.rdma().as_ref().filter(|rd| rdma::is_set(rd)) {
        match res.backend("rdma", "rdma")? {
            Backend::V1(d) | Backend::V2(d) => rdma::set(d, rd)?,
        }
    }
    if let Some(devs) = r.devices().as_ref() {
        let rules = device_rules::from_spec(devs)?;
        if let Some(d) = paths.v1.get("devices") {
            devices_v1::set(d, &rules)?;
        } else if let (Some(d), true) = (&paths.unified, paths.layout != Layout::V1) {
            bpf::apply(d, &rules)?;
        } else {
            return Err(Error::ControllerMissing {
                controller: "devices".into(),
            });
        }
    }
    if let Some(u) = r.unified().as_ref().filter(|u| !u.is_empty()) {
        let Some(dir) = paths.unified.as_ref() else {
            return Err(Error::InvalidValue {
                what: "linux.resources.unified".into(),
                reason: "this host has no cgroup v2 hierarchy".into(),
            });
        };
        unified::set(dir, u, |c| paths.v1.contains_key(c))?;
    }
    Ok(())
}

fn set_network(paths: &CgroupPaths, n: &oci_spec::runtime::LinuxNetwork) -> Result<(), Error> {
    let wanted = [
        ("net_cls", network::class_is_set(n)),
        ("net_prio", network::prio_is_set(n)),
    ];
    for (controller, requested) in wanted {
        if !requested {
            continue;
        }
        match paths.v1.get(controller) {
            Some(d) if controller == "net_cls" => network::set_class(d, n)?,
            Some(d) => network::set_prio(d, n)?,
            // cgroup v2 has no network controllers; classification is done with eBPF or
            // nftables socket cgroup matching instead, so runc ignores these there.
            None if paths.layout == Layout::V2 => {
                tracing::debug!("ignoring {controller} settings: not a cgroup v2 controller");
            }
            // Classification only tags packets for the host's traffic control; a host that
            // never mounted the controller has nothing that could act on the tag.
            None => tracing::warn!(
                "ignoring {controller} settings: the {controller} controller is not mounted on this host"
            ),
        }
    }
    Ok(())
}
