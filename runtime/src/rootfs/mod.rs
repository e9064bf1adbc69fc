//! The container's root filesystem: mounts, devices, pivot_root, masked and read-only paths.
//! (Interim minimal version; the full module lands from the rootfs branch.)

use std::fs;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::Spec;

#[derive(Debug, thiserror::Error)]
#[error("rootfs: {0}")]
pub struct RootfsError(String);

fn err<E: std::fmt::Display>(what: String) -> impl FnOnce(E) -> RootfsError {
    move |e| RootfsError(format!("{what}: {e}"))
}

pub const MOUNT_OPTIONS: &[&str] = &["ro", "rw", "bind", "rbind", "nosuid", "nodev", "noexec"];

pub struct RootfsOptions {
    pub no_pivot: bool,
    pub in_user_ns: bool,
    pub cgroup_ns: bool,
}

fn flags(opts: &[String]) -> (MsFlags, String) {
    let mut f = MsFlags::empty();
    let mut data = Vec::new();
    for o in opts {
        match o.as_str() {
            "ro" => f |= MsFlags::MS_RDONLY,
            "rw" => {}
            "nosuid" => f |= MsFlags::MS_NOSUID,
            "nodev" => f |= MsFlags::MS_NODEV,
            "noexec" => f |= MsFlags::MS_NOEXEC,
            "bind" => f |= MsFlags::MS_BIND,
            "rbind" => f |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "relatime" => f |= MsFlags::MS_RELATIME,
            "strictatime" => f |= MsFlags::MS_STRICTATIME,
            "private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared" => {}
            other => data.push(other.to_string()),
        }
    }
    (f, data.join(","))
}

pub fn prepare(spec: &Spec, rootfs: &Path, _o: &RootfsOptions) -> Result<(), RootfsError> {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>)
        .map_err(err("make / rslave".into()))?;
    mount(Some(rootfs), rootfs, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(err("bind rootfs".into()))?;
    for m in spec.mounts().iter().flatten().filter(|m| m.typ().as_deref() != Some("cgroup")) {
        let target = rootfs.join(m.destination().strip_prefix("/").unwrap_or(m.destination()));
        let (f, data) = flags(m.options().as_deref().unwrap_or(&[]));
        let src = m.source().clone().unwrap_or_else(|| "none".into());
        if f.contains(MsFlags::MS_BIND) && src.is_file() {
            if !target.exists() {
                fs::File::create(&target).map_err(err(format!("create {}", target.display())))?;
            }
        } else {
            fs::create_dir_all(&target).map_err(err(format!("create {}", target.display())))?;
        }
        let typ = m.typ().clone();
        mount(Some(&src), &target, typ.as_deref().filter(|t| *t != "bind"), f, Some(data.as_str()).filter(|d| !d.is_empty()))
            .map_err(err(format!("mount {} to {}", src.display(), m.destination().display())))?;
        if f.contains(MsFlags::MS_BIND) && f.contains(MsFlags::MS_RDONLY) {
            mount(None::<&str>, &target, None::<&str>, f | MsFlags::MS_REMOUNT, None::<&str>)
                .map_err(err(format!("remount {} ro", m.destination().display())))?;
        }
    }
    let dev = rootfs.join("dev");
    for d in ["null", "zero", "full", "random", "urandom", "tty"] {
        let t = dev.join(d);
        if !t.exists() {
            fs::File::create(&t).map_err(err(format!("create {}", t.display())))?;
            mount(Some(&Path::new("/dev").join(d)), &t, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(err(format!("bind /dev/{d}")))?;
        }
    }
    for (l, t) in [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx")] {
        let _ = std::os::unix::fs::symlink(t, dev.join(l));
    }
    Ok(())
}

pub fn pivot(rootfs: &Path, _no_pivot: bool) -> Result<(), RootfsError> {
    std::env::set_current_dir(rootfs).map_err(err("chdir rootfs".into()))?;
    nix::unistd::pivot_root(".", ".").map_err(err("pivot_root".into()))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(err("unmount old root".into()))?;
    std::env::set_current_dir("/").map_err(err("chdir /".into()))?;
    Ok(())
}

pub fn finalize(spec: &Spec) -> Result<(), RootfsError> {
    if spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY, None::<&str>)
            .map_err(err("remount / ro".into()))?;
    }
    Ok(())
}
