//! /dev population: the default devices (null zero full random urandom tty), `linux.devices`,
//! the /dev/ptmx symlink to pts/ptmx and the fd/stdin/stdout/stderr/core symlinks.
//!
//! Nodes are made with mknodat under an fd of their parent, resolved inside the rootfs, then
//! checked for type and major:minor and given their mode and owner. In a user namespace mknod
//! is refused, so an empty file is bind-mounted over by the host's device instead, as runc does.

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmodat, fstatat, makedev, mknodat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Spec};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::error::{sys_err, RootfsError};
use super::paths;
use super::sys::{self, proc_fd};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

fn default_nodes() -> Vec<Node> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .map(|(name, major, minor)| Node {
        path: Path::new("/dev").join(name),
        kind: SFlag::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

fn from_spec(d: &LinuxDevice) -> Result<Node, RootfsError> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(RootfsError::Invalid(format!(
                "device {}: type \"a\" is not a device node type",
                d.path().display()
            )))
        }
    };
    if d.major() < 0 || d.minor() < 0 {
        return Err(RootfsError::Invalid(format!(
            "device {}: negative major or minor number",
            d.path().display()
        )));
    }
    Ok(Node {
        path: paths::lexical_clean(d.path()),
        kind,
        major: d.major() as u64,
        minor: d.minor() as u64,
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    })
}

/// The defaults not overridden by path in `linux.devices`, then `linux.devices`.
pub fn nodes(spec: &Spec) -> Result<Vec<Node>, RootfsError> {
    let mut listed = Vec::new();
    if let Some(devs) = spec.linux().as_ref().and_then(|l| l.devices().as_ref()) {
        for d in devs {
            listed.push(from_spec(d)?);
        }
    }
    let mut all: Vec<Node> = default_nodes()
        .into_iter()
        .filter(|n| !listed.iter().any(|l| l.path == n.path))
        .collect();
    all.extend(listed);
    Ok(all)
}

pub fn create_devices(
    root: BorrowedFd<'_>,
    spec: &Spec,
    use_bind: bool,
) -> Result<(), RootfsError> {
    for node in nodes(spec)? {
        // /dev/ptmx is the devpts one, see setup_ptmx().
        if node.path == Path::new("/dev/ptmx") {
            continue;
        }
        create_node(root, &node, use_bind)
            .map_err(|e| RootfsError::step(format!("create device {}", node.path.display()), e))?;
    }
    Ok(())
}

fn create_node(root: BorrowedFd<'_>, node: &Node, use_bind: bool) -> Result<(), RootfsError> {
    let (dir, name) = paths::parent_and_name(root, &node.path)
        .map_err(sys_err("create parent of", &node.path))?;
    // Whatever the image has there (a file, a symlink) gives way to the real node.
    match unlinkat(&dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(RootfsError::sys("remove", &node.path, e)),
    }
    if use_bind {
        return bind_host_node(&dir, &name, node);
    }
    let dev = makedev(node.major, node.minor);
    match mknodat(
        &dir,
        name.as_os_str(),
        node.kind,
        Mode::from_bits_truncate(node.mode),
        dev,
    ) {
        Ok(()) => {}
        Err(Errno::EPERM) => {
            tracing::debug!(path = %node.path.display(), "mknod refused; binding the host's node");
            return bind_host_node(&dir, &name, node);
        }
        Err(e) => return Err(RootfsError::sys("mknod", &node.path, e)),
    }
    let st = fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(sys_err("stat", &node.path))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != node.kind
        || (node.kind != SFlag::S_IFIFO && st.st_rdev != dev)
    {
        return Err(RootfsError::Invalid(format!(
            "device {} changed under us after mknod",
            node.path.display()
        )));
    }
    // mknod applied the umask; the node must have exactly the requested mode.
    fchmodat(
        &dir,
        name.as_os_str(),
        Mode::from_bits_truncate(node.mode),
        FchmodatFlags::FollowSymlink,
    )
    .map_err(sys_err("chmod", &node.path))?;
    fchownat(
        &dir,
        name.as_os_str(),
        Some(Uid::from_raw(node.uid)),
        Some(Gid::from_raw(node.gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(sys_err("chown", &node.path))
}

fn bind_host_node(dir: &OwnedFd, name: &OsString, node: &Node) -> Result<(), RootfsError> {
    let _ = openat(
        dir,
        name.as_os_str(),
        OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys_err("create", &node.path))?;
    let target = openat(
        dir,
        name.as_os_str(),
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys_err("open", &node.path))?;
    sys::mount(
        Some(node.path.as_os_str()),
        &proc_fd(target.as_fd()),
        None,
        libc::MS_BIND,
        None,
    )
    .map_err(sys_err("bind host device onto", &node.path))
}

/// /dev/ptmx must be the devpts instance's ptmx, so ptys are from the container's devpts.
pub fn setup_ptmx(root: BorrowedFd<'_>) -> Result<(), RootfsError> {
    let path = Path::new("/dev/ptmx");
    let (dir, name) =
        paths::parent_and_name(root, path).map_err(sys_err("create parent of", path))?;
    match unlinkat(&dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(RootfsError::sys("remove", path, e)),
    }
    symlinkat("pts/ptmx", &dir, name.as_os_str()).map_err(sys_err("symlink", path))
}

pub fn setup_dev_symlinks(root: BorrowedFd<'_>) -> Result<(), RootfsError> {
    let mut links = vec![
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "/dev/core"));
    }
    for (target, link) in links {
        let (dir, name) = paths::parent_and_name(root, Path::new(link))
            .map_err(sys_err("create parent of", link))?;
        match symlinkat(OsStr::new(target), &dir, name.as_os_str()) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(RootfsError::sys("symlink", link, e)),
        }
    }
    Ok(())
}
