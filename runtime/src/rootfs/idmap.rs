//! ID-mapped bind mounts ("idmap"/"ridmap", or a mount carrying uidMappings/gidMappings).
//!
//! A detached copy of the source is made with open_tree(OPEN_TREE_CLONE), given the mapping
//! with mount_setattr(MOUNT_ATTR_IDMAP) and a user namespace fd, and attached onto the target
//! with move_mount. The user namespace comes from a short-lived helper child that unshares
//! CLONE_NEWUSER and waits to be killed once we hold its namespace fd. The kernel only lets
//! the owner of the source filesystem's user namespace do this, so it works from the initial
//! user namespace; inside a container user namespace it fails with EPERM, as it does for runc's
//! in-container code (runc prepares these from the host side).

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pause, pipe, read, write, ForkResult, Pid};
use oci_spec::runtime::LinuxIdMapping;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use super::error::{sys_err, RootfsError};
use super::mounts::{self, Ctx, Plan};
use super::sys::{self, MountAttr, MOUNT_ATTR_IDMAP};

pub fn mount_idmapped(ctx: &Ctx, plan: &Plan) -> Result<(), RootfsError> {
    if !plan.opts.is_bind() {
        return Err(RootfsError::Invalid(
            "idmapped mounts must be bind mounts".into(),
        ));
    }
    let uid = plan.uid_mappings.as_ref().or(ctx.uid_mappings.as_ref());
    let gid = plan.gid_mappings.as_ref().or(ctx.gid_mappings.as_ref());
    let (Some(uid), Some(gid)) = (uid, gid) else {
        return Err(RootfsError::Invalid(
            "idmapped mount needs both uidMappings and gidMappings".into(),
        ));
    };
    let src_is_dir = mounts::stat_source(&plan.src)?;
    let (target, _) = mounts::mountpoint(ctx, plan, src_is_dir)?;

    let recursive_tree = plan.opts.flags & libc::MS_REC != 0;
    let tree = sys::clone_tree(libc::AT_FDCWD, Path::new(&plan.src), recursive_tree)
        .map_err(sys_err("open_tree", &plan.src))?;
    let userns = helper_userns(uid, gid)?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        userns_fd: userns.as_raw_fd() as u64,
        ..Default::default()
    };
    sys::mount_setattr(tree.as_fd(), plan.opts.idmap.unwrap_or(false), &attr)
        .map_err(sys_err("set id mapping on", &plan.src))?;
    sys::move_mount(tree.as_fd(), target.as_fd())
        .map_err(sys_err("move_mount onto", &plan.dest))?;
    // The tree fd now names the attached mount itself: no re-open needed.
    mounts::remount_bind_flags(plan, tree.as_fd())?;
    mounts::after_mount(plan, tree.as_fd())
}

fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// A user namespace with the given mappings, as an fd of /proc/<helper>/ns/user.
fn helper_userns(uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<OwnedFd, RootfsError> {
    let (rd, wr) = pipe().map_err(sys_err("pipe", "for the idmap helper"))?;
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
