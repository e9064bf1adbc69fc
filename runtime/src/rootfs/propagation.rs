//! Mount propagation of the container's root, done the way runc does it:
//!
//! 1. before anything else, `/` of the new mount namespace becomes rslave (or what
//!    `rootfsPropagation` asks), so nothing we mount travels back to the host;
//! 2. the mount holding the rootfs becomes private (slave when asked for slave), because
//!    pivot_root refuses a shared parent and a bind under a shared parent would leak;
//! 3. the rootfs is bind-mounted onto itself so it is a mount point pivot_root accepts;
//! 4. after pivot_root, a shared/unbindable `rootfsPropagation` is applied to the new `/`
//!    (slave/private were already applied by steps 1 and 2).

use oci_spec::runtime::Spec;
use std::ffi::OsStr;
use std::path::Path;

use super::error::{sys_err, RootfsError};
use super::options::PROPAGATION;
use super::sys;

/// `linux.rootfsPropagation` as MS_* flags, None when unset.
pub fn root_propagation(spec: &Spec) -> Result<Option<libc::c_ulong>, RootfsError> {
    let Some(name) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    PROPAGATION
        .iter()
        .find(|p| p.0 == name)
        .map(|p| Some(p.1))
        .ok_or_else(|| RootfsError::Invalid(format!("rootfsPropagation {name:?} is not supported")))
}

pub fn prepare_root(rootfs: &Path, prop: Option<libc::c_ulong>) -> Result<(), RootfsError> {
    let flags = prop.unwrap_or(libc::MS_SLAVE | libc::MS_REC);
    sys::mount(None, Path::new("/"), None, flags, None)
        .map_err(sys_err("set propagation of", "/"))?;
    make_parent_private(rootfs, prop)?;
    sys::mount(
        Some(rootfs.as_os_str()),
        rootfs,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(sys_err("bind rootfs onto itself at", rootfs))
}

/// Walk up from the rootfs to the first mount point and make it private (or slave).
fn make_parent_private(rootfs: &Path, prop: Option<libc::c_ulong>) -> Result<(), RootfsError> {
    let flags = match prop {
        Some(p) if p & libc::MS_SLAVE != 0 => libc::MS_SLAVE,
        _ => libc::MS_PRIVATE,
    };
    let mut path = rootfs;
    loop {
        match sys::mount(None, path, None, flags, None) {
            Ok(()) => return Ok(()),
            // EINVAL: not a mount point; try the parent.
            Err(nix::errno::Errno::EINVAL) if path != Path::new("/") => {
                path = path.parent().unwrap_or(Path::new("/"));
            }
            Err(e) => return Err(RootfsError::sys("set propagation of", path, e)),
        }
    }
}

/// Step 4, from inside the new root.
pub fn apply_final(prop: Option<libc::c_ulong>) -> Result<(), RootfsError> {
    match prop {
        Some(p) if p & (libc::MS_PRIVATE | libc::MS_SLAVE) == 0 => {
            sys::mount(None::<&OsStr>, Path::new("/"), None, p, None)
                .map_err(sys_err("apply rootfsPropagation to", "/"))
        }
        _ => Ok(()),
    }
}
