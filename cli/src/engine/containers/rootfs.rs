//! The container's root: imaged's overlay mounted on `<bundle>/rootfs` by the engine (not
//! the shim), so that create can read the image's /etc/passwd and fill volumes from the
//! image before anything runs, and so that `cp`, `diff` and `export` see the same tree.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth_proto::imaged::Mounts;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::ContainerError;

fn err(path: &Path, e: impl Into<std::io::Error>) -> ContainerError {
    ContainerError::io(path, e.into())
}

/// Something other than the bundle's own filesystem is mounted on `target`.
pub fn is_mounted(target: &Path) -> bool {
    let (Ok(t), Some(Ok(p))) = (
        std::fs::metadata(target),
        target.parent().map(std::fs::metadata),
    ) else {
        return false;
    };
    t.dev() != p.dev()
}

pub fn mount_overlay(m: &Mounts, target: &Path) -> Result<(), ContainerError> {
    std::fs::create_dir_all(target).map_err(|e| err(target, e))?;
    if is_mounted(target) {
        return Ok(());
    }
    if m.lowers.is_empty() {
        // No layers (FROM scratch, or an empty import): the upper dir is the root.
        return mount(
            Some(Path::new(&m.upper)),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| err(target, e));
    }
    let options = if !m.options.is_empty() {
        m.options.clone()
    } else {
        // Too long for one page with absolute paths: the relative form, mounted from the
        // snapshots' base in a child so that our own working directory never changes.
        return mount_relative(m, target);
    };
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|e| err(target, e))
}

fn mount_relative(m: &Mounts, target: &Path) -> Result<(), ContainerError> {
    let status = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &m.relative_options])
        .arg(target)
        .current_dir(&m.base)
        .status()
        .map_err(|e| err(target, e))?;
    if !status.success() {
        return Err(ContainerError::Invalid(format!(
            "mount the container's root on {}: mount exited with {status}",
            target.display()
        )));
    }
    Ok(())
}

pub fn unmount(target: &Path) {
    while is_mounted(target) {
        if umount2(target, MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
}

/// Open `path` inside `root` as the container would see it: symlinks, absolute ones and
/// `..` included, are resolved inside the root, never on the host.
pub fn open_in_root(root: &Path, path: &str) -> std::io::Result<OwnedFd> {
    let dir = std::fs::File::open(root)?;
    let fd = openat2(
        dir.as_fd(),
        path.trim_start_matches('/'),
        OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS),
    )?;
    Ok(fd)
}

/// A small file of the image (`/etc/passwd`), read as the container would see it.
pub fn read_in_root(root: &Path, path: &str) -> Option<String> {
    let mut f = std::fs::File::from(open_in_root(root, path).ok()?);
    let mut s = String::new();
    f.by_ref().take(4 << 20).read_to_string(&mut s).ok()?;
    Some(s)
}
