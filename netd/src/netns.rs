//! Network namespaces kept alive by a bind mount at `$BERTH_RUN/netns/<id>` (what the runtime
//! joins by path), and netlink connections opened inside them.
//!
//! Namespace changes happen on a short-lived thread of our own: `unshare`/`setns` act on the
//! calling thread only, so the daemon's tokio workers never leave the host namespace. A netlink
//! socket stays bound to the namespace it was opened in, so the thread only has to open it.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use rtnetlink::Handle;

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("netns {path}: {what}: {source}")]
    Sys {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("netns {0}: the namespace thread died")]
    Thread(PathBuf),
}

fn sys<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> NetnsError + 'a {
    move |source| NetnsError::Sys {
        path: path.to_path_buf(),
        what,
        source,
    }
}

fn errno(e: nix::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

/// Runs `f` on a fresh thread after `prepare` has moved that thread into a namespace.
fn on_ns_thread<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<T, NetnsError> + Send + 'static,
) -> Result<T, NetnsError> {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .map_err(|_| NetnsError::Thread(path.to_path_buf()))?
    })
}

/// A netlink connection inside the namespace whose file is `path`. The connection task is
/// spawned on the current tokio runtime and ends when the handle is dropped.
pub fn handle_in(path: &Path) -> Result<Handle, NetnsError> {
    let ns = File::open(path).map_err(sys(path, "open"))?;
    let rt = tokio::runtime::Handle::current();
    let p = path.to_path_buf();
    let (conn, handle) = on_ns_thread(path, move || {
        setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| sys(&p, "setns")(errno(e)))?;
        // The socket is created (and registered with tokio's reactor) in this namespace.
        let _guard = rt.enter();
        let (conn, handle, _) = rtnetlink::new_connection().map_err(sys(&p, "netlink socket"))?;
        Ok((conn, handle))
    })?;
    tokio::spawn(conn);
    Ok(handle)
}

/// Creates a new network namespace bind-mounted at `path` and returns a netlink handle inside
/// it. Nothing is left at `path` when this fails.
pub fn create(path: &Path) -> Result<Handle, NetnsError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(sys(dir, "create directory"))?;
    }
    File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(sys(path, "create file"))?;
    let rt = tokio::runtime::Handle::current();
    let p = path.to_path_buf();
    let made = on_ns_thread(path, move || {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| sys(&p, "unshare")(errno(e)))?;
        // /proc/thread-self: the namespace of this thread, not of the process's main thread.
        mount(
            Some("/proc/thread-self/ns/net"),
            &p,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| sys(&p, "bind mount")(errno(e)))?;
        let _guard = rt.enter();
        let (conn, handle, _) = rtnetlink::new_connection().map_err(sys(&p, "netlink socket"))?;
        Ok((conn, handle))
    });
    match made {
        Ok((conn, handle)) => {
            tokio::spawn(conn);
            Ok(handle)
        }
        Err(e) => {
            let _ = remove(path);
            Err(e)
        }
    }
}

/// Unmounts and deletes the namespace file; the namespace dies with its last user. Absent is
/// fine (removal is idempotent, as the daemon retries it after a crash).
pub fn remove(path: &Path) -> Result<(), NetnsError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(sys(path, "unmount")(errno(e))),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(sys(path, "remove")(e)),
    }
}
