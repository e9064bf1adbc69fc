//! ID-mapped bind mounts ("idmap"/"ridmap", or a mount carrying uidMappings/gidMappings).
//!
//! A detached copy of the source is made with open_tree(OPEN_TREE_CLONE), given the mapping
//! with mount_setattr(MOUNT_ATTR_IDMAP) and a user namespace fd, and attached onto the target
//! with move_mount. The user namespace comes from a short-lived helper child that unshares
//! CLONE_NEWUSER and waits to be killed once we hold its namespace fd. The kernel only lets
//! the owner of the source filesystem's user namespace do this, so it works from the initial
//! user namespace only. For an init inside a container user namespace the runtime builds the
//! detached trees first with [`open_idmapped_sources`] (as runc does from its host side) and
//! passes them to `prepare_with_idmapped_sources`, which only attaches them.

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pause, pipe2, read, write, ForkResult, Pid};
use oci_spec::runtime::{LinuxIdMapping, Spec};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use super::error::{sys_err, RootfsError};
use super::mounts::{self, Ctx, Plan};
use super::sys;

/// Idmapped bind sources made ahead of time, outside the container's user namespace, for
/// the `spec.mounts` entries (by index) that ask for an ID mapping. Detached mounts survive
/// fork, so the runtime makes these before it starts the init and the init attaches them.
#[derive(Debug, Default)]
pub struct IdmappedSources {
    trees: Vec<(usize, OwnedFd)>,
}

impl IdmappedSources {
    /// Detached trees of host directories: the init holds them only until its mounts are made.
    pub fn raw_fds(&self) -> Vec<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.trees.iter().map(|(_, fd)| fd.as_raw_fd()).collect()
    }

    pub fn get(&self, index: usize) -> Option<BorrowedFd<'_>> {
        self.trees
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, fd)| fd.as_fd())
    }
}

pub fn wants_idmap(plan: &Plan) -> bool {
    plan.opts.idmap.is_some() || plan.uid_mappings.is_some() || plan.gid_mappings.is_some()
}

/// Build the ID-mapped sources for every mount of `spec` that wants one. Run this in the
/// initial user namespace (the runtime, before the init joins the container's).
pub fn open_idmapped_sources(spec: &Spec) -> Result<IdmappedSources, RootfsError> {
    let linux = spec.linux().as_ref();
    let uid = linux.and_then(|l| l.uid_mappings().clone());
    let gid = linux.and_then(|l| l.gid_mappings().clone());
    let mut trees = Vec::new();
    for (i, m) in spec.mounts().as_deref().unwrap_or(&[]).iter().enumerate() {
        let plan = Plan::from_spec(m);
        if !wants_idmap(&plan) {
            continue;
        }
        let tree =
            idmapped_tree(&plan, uid.as_ref(), gid.as_ref()).map_err(|e| RootfsError::Mount {
                src: plan.name(),
                dest: plan.dest.display().to_string(),
                cause: Box::new(e),
            })?;
        trees.push((i, tree));
    }
    Ok(IdmappedSources { trees })
}

/// A detached, ID-mapped copy of the plan's source.
fn idmapped_tree(
    plan: &Plan,
    default_uid: Option<&Vec<LinuxIdMapping>>,
    default_gid: Option<&Vec<LinuxIdMapping>>,
) -> Result<OwnedFd, RootfsError> {
    if !plan.opts.is_bind() {
        return Err(RootfsError::Invalid(
            "idmapped mounts must be bind mounts".into(),
        ));
    }
    let uid = plan.uid_mappings.as_ref().or(default_uid);
    let gid = plan.gid_mappings.as_ref().or(default_gid);
    let (Some(uid), Some(gid)) = (uid, gid) else {
        return Err(RootfsError::Invalid(
            "idmapped mount needs both uidMappings and gidMappings".into(),
        ));
    };
    mounts::stat_source(&plan.src)?;
    let recursive_tree = plan.opts.flags & libc::MS_REC != 0;
    let tree = sys::clone_tree(libc::AT_FDCWD, Path::new(&plan.src), recursive_tree)
        .map_err(sys_err("open_tree", &plan.src))?;
    let userns = helper_userns(uid, gid)?;
    let attr = libc::mount_attr {
        userns_fd: userns.as_raw_fd() as u64,
        ..sys::mount_attr_bits(libc::MOUNT_ATTR_IDMAP, 0)
    };
    sys::mount_setattr(tree.as_fd(), plan.opts.idmap.unwrap_or(false), &attr)
        .map_err(sys_err("set id mapping on", &plan.src))?;
    Ok(tree)
}

/// Make an idmapped mount from inside the container's mount namespace: possible when the
/// init is still in the initial user namespace.
pub fn mount_idmapped(ctx: &Ctx, plan: &Plan) -> Result<(), RootfsError> {
    let tree = idmapped_tree(plan, ctx.uid_mappings.as_ref(), ctx.gid_mappings.as_ref())?;
    attach(ctx, plan, tree.as_fd())
}

/// Attach a detached tree (made here or by open_idmapped_sources) at the plan's destination.
pub fn attach(ctx: &Ctx, plan: &Plan, tree: BorrowedFd<'_>) -> Result<(), RootfsError> {
    let st = fstat(tree).map_err(sys_err("stat", &plan.src))?;
    let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    let (target, _) = mounts::mountpoint(ctx, plan, is_dir)?;
    sys::move_mount(tree, target.as_fd()).map_err(sys_err("move_mount onto", &plan.dest))?;
    // The tree fd now names the attached mount itself: no re-open needed.
    mounts::remount_bind_flags(plan, tree)?;
    mounts::after_mount(plan, tree)
}

fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// A user namespace with the given mappings, as an fd of `/proc/<helper>/ns/user`.
fn helper_userns(uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<OwnedFd, RootfsError> {
    let (rd, wr) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys_err("pipe", "for the idmap helper"))?;
    // SAFETY: the child only calls unshare, write and pause (all async-signal-safe) and never
    // returns; the parent kills it.
    match unsafe { fork() }.map_err(sys_err("fork", "the idmap helper"))? {
        ForkResult::Child => {
            drop(rd);
            let ok: &[u8] = if unshare(CloneFlags::CLONE_NEWUSER).is_ok() {
                b"1"
            } else {
                b"0"
            };
            let _ = write(&wr, ok);
            loop {
                pause();
            }
        }
        ForkResult::Parent { child } => {
            drop(wr);
            let result = configure_helper(child, &rd, uid, gid);
            let _ = kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
            result
        }
    }
}

fn configure_helper(
    child: Pid,
    rd: &OwnedFd,
    uid: &[LinuxIdMapping],
    gid: &[LinuxIdMapping],
) -> Result<OwnedFd, RootfsError> {
    let mut b = [0u8; 1];
    match read(rd, &mut b) {
        Ok(1) if b[0] == b'1' => {}
        _ => {
            return Err(RootfsError::Invalid(
                "idmap helper could not create a user namespace".into(),
            ))
        }
    }
    let proc = format!("/proc/{child}");
    for (file, text) in [("uid_map", map_text(uid)), ("gid_map", map_text(gid))] {
        let path = format!("{proc}/{file}");
        std::fs::write(&path, text).map_err(|e| {
            RootfsError::sys(
                "write",
                &path,
                Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        })?;
    }
    let ns = format!("{proc}/ns/user");
    open(
        ns.as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys_err("open", &ns))
}
