//! Namespace bookkeeping: which to create, which to join by path, and in what order.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::{Context, Result};
use nix::sched::{setns, CloneFlags};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

pub fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The name under /proc/PID/ns/.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// Join order: the user namespace first (it grants the capabilities needed to join the
/// others), the mount namespace last (it changes our root, and paths we still need).
pub const ORDER: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Mount,
];

pub struct ToJoin {
    pub typ: LinuxNamespaceType,
    pub path: PathBuf,
    pub file: File,
}

pub struct Plan {
    /// Namespaces created by clone(2) for the init.
    pub new: CloneFlags,
    /// Namespaces created after clone: cgroup (after the cgroup is joined) and time (by
    /// unshare before the clone, since clone(2) cannot take CLONE_NEWTIME).
    pub new_cgroup: bool,
    pub new_time: bool,
    pub join: Vec<ToJoin>,
    pub has: Vec<LinuxNamespaceType>,
}

impl Plan {
    pub fn from_spec(spec: &Spec) -> Result<Self> {
        let mut plan = Plan {
            new: CloneFlags::empty(),
            new_cgroup: false,
            new_time: false,
            join: Vec::new(),
            has: Vec::new(),
        };
        let namespaces = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        for t in ORDER {
            let Some(ns) = namespaces.iter().find(|n| n.typ() == t) else {
                continue;
            };
            plan.has.push(t);
            match ns.path() {
                Some(p) if !p.as_os_str().is_empty() => {
                    let file = File::open(p).with_context(|| {
                        format!("open {} namespace path {}", proc_name(t), p.display())
                    })?;
                    plan.join.push(ToJoin {
                        typ: t,
                        path: p.clone(),
                        file,
                    });
                }
                _ => match t {
                    LinuxNamespaceType::Cgroup => plan.new_cgroup = true,
                    LinuxNamespaceType::Time => plan.new_time = true,
                    _ => plan.new |= flag(t),
                },
            }
        }
        let mut seen = Vec::new();
        for n in &namespaces {
            if seen.contains(&n.typ()) {
                anyhow::bail!(
                    "namespace {} is listed twice in config.json",
                    proc_name(n.typ())
                );
            }
            seen.push(n.typ());
        }
        Ok(plan)
    }

    pub fn contains(&self, t: LinuxNamespaceType) -> bool {
        self.has.contains(&t)
    }

    /// A user namespace the init will be in, new or joined.
    pub fn user(&self) -> bool {
        self.contains(LinuxNamespaceType::User)
    }

    pub fn new_user(&self) -> bool {
        self.new.contains(CloneFlags::CLONE_NEWUSER)
    }

    pub fn needs_intermediate(&self) -> bool {
        !self.join.is_empty() || self.new_time
    }
}

pub fn join(ns: &ToJoin) -> Result<()> {
    setns(ns.file.as_fd(), flag(ns.typ))
        .with_context(|| format!("join {} namespace {}", proc_name(ns.typ), ns.path.display()))
}

/// Become root of the user namespace we are in: the runtime wrote (or the container already
/// has) its mappings; our host ids are unmapped there until we switch.
pub fn become_userns_root() -> Result<()> {
    use nix::unistd::{Gid, Uid};
    let (g, u) = (Gid::from_raw(0), Uid::from_raw(0));
    nix::unistd::setresgid(g, g, g).context("setgid 0 in the user namespace (is gid 0 mapped?)")?;
    nix::unistd::setresuid(u, u, u).context("setuid 0 in the user namespace (is uid 0 mapped?)")?;
    Ok(())
}
