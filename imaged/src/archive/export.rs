//! `export`: the merged filesystem of a snapshot (a container's root) as a plain tar, as
//! `docker export` gives it.
//!
//! The merge is the kernel's: the snapshot's upper directory and the image's layers are
//! mounted read-only as overlayfs (the upper as the topmost lower directory: no work
//! directory is touched, and a container running on the same upper is not disturbed), and
//! [`archive_dir`] tars the mount. So the tar holds exactly what the container sees, with
//! whiteouts and opaque directories applied by the same code that applies them at run time.
//!
//! The mount is made in a private mount namespace on a thread of its own, which ends when
//! the export does: the host never sees the mount, and it goes away with the thread
//! whatever happens, a failed write or a panic included. The empty mountpoint is made and
//! removed by the thread that started that one, in the host's namespace.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_proto::imaged as pb;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use super::{ArchiveError, ChunkSender};
use crate::daemon::Daemon;
use crate::layer::archive_dir;
use crate::store::snapshots::MAX_MOUNT_DATA;

/// Whether the export got going: the snapshot found and mounted, or why not.
pub type Ready = oneshot::Receiver<Result<(), Status>>;
/// The tar, chunk by chunk; an error status after what was sent when it fails midway.
pub type Chunks = mpsc::Receiver<Result<pb::Chunk, Status>>;

/// Start exporting snapshot `key`. The answer on `ready` comes once the snapshot is found
/// and mounted (or why it could not be); the tar then flows on the returned channel.
pub fn start(d: Arc<Daemon>, key: String) -> (Ready, Chunks) {
    let (tx, rx) = mpsc::channel(4);
    let (ready_tx, ready_rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("export".into())
        .spawn(move || {
            // The stream ends when the last sender goes: this one goes after the clean-up,
            // so a client that has read the whole tar finds no mountpoint left either.
            let keep_open = tx.clone();
            export(&d, &key, ready_tx, ChunkSender::new(tx));
            drop(keep_open);
        });
    if let Err(e) = spawned {
        tracing::error!("export: start a thread: {e}");
    }
    (ready_rx, rx)
}

fn export(d: &Daemon, key: &str, ready: oneshot::Sender<Result<(), Status>>, out: ChunkSender) {
    let mounts = match d.store.mounts(key) {
        Ok(m) => m,
        Err(e) => {
            let _ = ready.send(Err(ArchiveError::Active(e).into()));
            return;
        }
    };
    if mounts.lowers.is_empty() {
        // No image below: the upper directory is the whole root (a plain bind at run time).
        let _ = ready.send(Ok(()));
        stream(key, &mounts.upper, out);
        return;
    }
    let mountpoint = match tempfile::Builder::new()
        .prefix("export-")
        .tempdir_in(&d.run)
    {
        Ok(t) => t,
        Err(e) => {
            let _ = ready.send(Err(Status::internal(format!(
                "export {key}: create a mountpoint in {}: {e}",
                d.run.display()
            ))));
            return;
        }
    };
    // Top first: the container's own changes, then the image's layers.
    let layers: Vec<PathBuf> = std::iter::once(mounts.upper.clone())
        .chain(mounts.lowers.iter().cloned())
        .collect();
    let base = d.store.snapshots.root().to_path_buf();
    let target = mountpoint.path().to_path_buf();
    std::thread::scope(|s| {
        let worker = s.spawn(|| in_private_namespace(key, &base, &layers, &target, ready, out));
        if worker.join().is_err() {
            tracing::error!(key, "export thread panicked");
        }
    });
    // Back in the host's namespace, where the mountpoint was never mounted over.
    drop(mountpoint);
}

/// Runs on a thread that ends right after: the thread's mount namespace (and the mount in
/// it) dies with it.
fn in_private_namespace(
    key: &str,
    base: &Path,
    layers: &[PathBuf],
    target: &Path,
    ready: oneshot::Sender<Result<(), Status>>,
    out: ChunkSender,
) {
    let fail = |what: &str, e: nix::Error| {
        Status::internal(format!("export {key}: {what}: {}", std::io::Error::from(e)))
    };
    // CLONE_NEWNS implies CLONE_FS: the chdir below stays on this thread too.
    if let Err(e) = unshare(CloneFlags::CLONE_NEWNS) {
        let _ = ready.send(Err(fail("unshare the mount namespace", e)));
        return;
    }
    if let Err(e) = mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    ) {
        let _ = ready.send(Err(fail("make / private", e)));
        return;
    }
    let absolute = format!("lowerdir={}", join(layers, |p| p.display().to_string()));
    let options = if absolute.len() <= MAX_MOUNT_DATA {
        absolute
    } else {
        // Too long for one page: the same paths relative to the snapshots directory.
        if let Err(e) = nix::unistd::chdir(base) {
            let _ = ready.send(Err(fail("chdir to the snapshots directory", e)));
            return;
        }
        format!(
            "lowerdir={}",
            join(layers, |p| p
                .strip_prefix(base)
                .unwrap_or(p)
                .display()
                .to_string())
        )
    };
    if let Err(e) = mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
        Some(options.as_str()),
    ) {
        let _ = ready.send(Err(fail("mount the snapshot read-only", e)));
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = umount2(self.0, MntFlags::MNT_DETACH);
        }
    }
    let _unmount = Unmount(target);
    let _ = ready.send(Ok(()));
    stream(key, target, out);
}

fn join(layers: &[PathBuf], show: impl Fn(&Path) -> String) -> String {
    layers.iter().map(|p| show(p)).collect::<Vec<_>>().join(":")
}

/// Tar `root` into the stream: the last chunk, or the error after what was sent.
fn stream(key: &str, root: &Path, mut out: ChunkSender) {
    match archive_dir(root, &mut out) {
        Ok(_) => {
            if let Err(e) = out.finish() {
                tracing::debug!(key, "export: {e}");
            }
        }
        Err(e) => out.fail(Status::internal(format!("export {key}: {e}"))),
    }
}
