//! Recording what a load or an import made: blobs into the content store, unpacked layers
//! into numbered snapshot directories, then every snapshot, image and tag in one
//! transaction. A failure at any step takes back what the steps before it did, so a refused
//! archive leaves no image, no snapshot and no blob; a crash between the steps leaves only
//! unnamed directories (swept at the next start) and unreferenced blobs (collected by the
//! next removal or prune).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tempfile::{TempDir, TempPath};

use super::ArchiveError;
use crate::daemon::Daemon;
use crate::digest::Digest;
use crate::images::familiar;
use crate::reference::Reference;
use crate::store::meta::{ImageRecord, LayerRef, SnapshotRecord};

/// An image to record.
pub struct NewImage {
    pub id: Digest,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub manifest_media_type: String,
    pub layers: Vec<LayerRef>,
    /// Tags to point at it (none: it is recorded untagged).
    pub names: Vec<Reference>,
}

/// A layer unpacked into a temp snapshot directory, verified, not yet numbered.
pub struct Unpacked {
    pub chain_id: Digest,
    pub parent: Option<Digest>,
    pub diff_id: Digest,
    pub dir: TempDir,
    pub disk_size: u64,
}

/// The layer locks of a set of chains, taken in one order so that two loads never wait on
/// each other; a pull takes one at a time, so it cannot close a cycle either. Holding them
/// from the existence check to the transaction keeps a pull from unpacking and recording
/// the same layer meanwhile.
pub struct LayerLocks {
    daemon: Arc<Daemon>,
    held: Vec<(Digest, tokio::sync::OwnedMutexGuard<()>)>,
}

impl LayerLocks {
    /// Call from a blocking thread.
    pub fn take(daemon: &Arc<Daemon>, chains: impl IntoIterator<Item = Digest>) -> LayerLocks {
        let mut chains: Vec<Digest> = chains.into_iter().collect();
        chains.sort_by(|a, b| a.hex().cmp(b.hex()));
        chains.dedup();
        let held = chains
            .into_iter()
            .map(|c| {
                let guard = daemon.layer_lock(&c).blocking_lock_owned();
                (c, guard)
            })
            .collect();
        LayerLocks {
            daemon: daemon.clone(),
            held,
        }
    }
}

impl Drop for LayerLocks {
    fn drop(&mut self) {
        for (chain, guard) in self.held.drain(..) {
            // While the guard still holds its reference: the table forgets the lock only
            // when nobody else waits on it (the count is the table's and ours).
            self.daemon.release_layer_lock(&chain);
            drop(guard);
        }
    }
}

/// What was done, to take back on failure.
#[derive(Default)]
struct Undo {
    blobs: Vec<Digest>,
    dirs: Vec<u64>,
}

impl Undo {
    fn run(self, d: &Daemon) {
        for n in self.dirs {
            if let Err(e) = d.store.snapshots.remove(n) {
                tracing::warn!(dir = n, "remove snapshot directory: {e}");
            }
        }
        for b in self.blobs {
            if let Err(e) = d.store.content.remove(&b) {
                tracing::warn!("remove blob {b}: {e}");
            }
        }
    }
}

/// Record `images`: their config, manifest and layer blobs (`layer_blobs` holds the temp
/// files of the layers, by digest, to be renamed into the store), the snapshots in
/// `unpacked`, then images and tags in one transaction. The caller holds the [`LayerLocks`]
/// of every chain involved. Returns the lines `docker load` prints.
pub fn install(
    d: &Daemon,
    images: &[NewImage],
    mut layer_blobs: HashMap<Digest, TempPath>,
    unpacked: Vec<Unpacked>,
) -> Result<Vec<String>, ArchiveError> {
    let mut undo = Undo::default();
    match record(d, images, &mut layer_blobs, unpacked, &mut undo) {
        Ok(lines) => Ok(lines),
        Err(e) => {
            undo.run(d);
            Err(e)
        }
    }
}

fn record(
    d: &Daemon,
    images: &[NewImage],
    layer_blobs: &mut HashMap<Digest, TempPath>,
    unpacked: Vec<Unpacked>,
    undo: &mut Undo,
) -> Result<Vec<String>, ArchiveError> {
    let store = &d.store;
    // An image already here keeps its record: its blobs are not stored again, so that none
    // lands that no record names.
    let mut present = HashSet::new();
    for img in images {
        if store.meta.image(&img.id)?.is_some() {
            present.insert(img.id.clone());
            continue;
        }
        for data in [&img.config, &img.manifest] {
            let digest = Digest::of(data);
            if !store.content.contains(&digest) {
                store.content.put(data)?;
                undo.blobs.push(digest);
            }
        }
        for l in &img.layers {
            if store.content.contains(&l.digest) {
                continue;
            }
            let tmp = layer_blobs.remove(&l.digest).ok_or_else(|| {
                ArchiveError::Conflict(format!(
                    "layer {} of image {}: the blob is neither in the archive nor in the store",
                    l.digest, img.id
                ))
            })?;
            store.content.adopt_path(tmp, &l.digest)?;
            undo.blobs.push(l.digest.clone());
        }
    }

    let mut snapshots = Vec::new();
    for u in unpacked {
        let n = store.meta.write(|t| t.next_dir())?;
        store
            .snapshots
            .commit_temp(u.dir, n)
            .map_err(ArchiveError::io(
                "rename a snapshot into",
                store.snapshots.dir(n),
            ))?;
        undo.dirs.push(n);
        snapshots.push(SnapshotRecord {
            chain_id: u.chain_id,
            parent: u.parent,
            dir: n,
            diff_id: u.diff_id,
            disk_size: u.disk_size,
            refs: 0,
        });
    }

    let added = crate::daemon::now_rfc3339();
    let (lines, duplicates) = store.meta.write(|tx| -> Result<_, ArchiveError> {
        let mut duplicates = Vec::new();
        for s in &snapshots {
            // Only a commit of the same content can have made it meanwhile: keep that one.
            if tx.snapshot(&s.chain_id)?.is_some() {
                duplicates.push(s.dir);
            } else {
                tx.put_snapshot(s)?;
            }
        }
        let mut lines = Vec::new();
        for img in images {
            for l in &img.layers {
                if tx.snapshot(&l.chain_id)?.is_none() {
                    return Err(ArchiveError::Conflict(format!(
                        "layer {} of image {} was removed while it was loaded; load again",
                        l.chain_id, img.id
                    )));
                }
            }
            if present.contains(&img.id) && tx.image(&img.id)?.is_none() {
                return Err(ArchiveError::Conflict(format!(
                    "image {} was removed while it was loaded; load again",
                    img.id
                )));
            }
            tx.put_image(&ImageRecord {
                id: img.id.clone(),
                manifest: Digest::of(&img.manifest),
                manifest_media_type: img.manifest_media_type.clone(),
                layers: img.layers.clone(),
                repo_digests: Vec::new(),
                added: added.clone(),
                parent: None,
            })?;
            if img.names.is_empty() {
                lines.push(format!("Loaded image ID: {}", img.id));
            }
            for name in &img.names {
                let full = name.to_string();
                if let Some(old) = tx.set_tag(&full, &img.id)? {
                    lines.push(format!(
                        "The image {} already exists, renaming the old one with ID {old} to empty string",
                        familiar(&full)
                    ));
                }
                lines.push(format!("Loaded image: {}", familiar(&full)));
            }
        }
        Ok::<_, ArchiveError>((lines, duplicates))
    })?;
    // Committed: nothing to take back any more.
    undo.blobs.clear();
    undo.dirs.clear();
    for n in duplicates {
        let _ = store.snapshots.remove(n);
    }
    Ok(lines)
}
