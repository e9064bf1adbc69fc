//! Everything imaged keeps under `$BERTH_ROOT`: blobs ([`content`]), unpacked layers and
//! container upper directories ([`snapshots`]), and the records that tie them together
//! ([`meta`]).

pub mod active;
pub mod content;
pub mod meta;
pub mod snapshots;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use content::ContentStore;
use meta::{Meta, MetaError, SnapshotRecord};
use snapshots::Snapshots;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("image store {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Meta(#[from] MetaError),
}

pub struct Store {
    pub root: PathBuf,
    pub content: ContentStore,
    pub snapshots: Snapshots,
    pub meta: Meta,
}

/// What [`Store::open`] cleaned up after an earlier run that stopped half-way.
#[derive(Debug, Default, PartialEq)]
pub struct Recovered {
    /// Snapshot directories no record names (an unpack or removal cut short).
    pub snapshot_dirs: usize,
    /// Blob files a write left unnamed.
    pub temp_files: usize,
}

impl Store {
    /// Open (or create) the store and sweep what an interrupted run left: directories that
    /// no record names. Partial downloads stay, so a pull can resume them.
    pub fn open(root: &Path) -> Result<(Store, Recovered), StoreError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        std::fs::create_dir_all(root).map_err(io(root))?;
        let content = ContentStore::open(root).map_err(io(root))?;
        let snapshots = Snapshots::open(root).map_err(io(root))?;
        let meta = Meta::open(&root.join("images.db"))?;
        let store = Store {
            root: root.to_path_buf(),
            content,
            snapshots,
            meta,
        };
        let recovered = store.sweep()?;
        Ok((store, recovered))
    }

    fn sweep(&self) -> Result<Recovered, StoreError> {
        let named: HashSet<u64> = self
            .meta
            .snapshots()?
            .iter()
            .map(|s| s.dir)
            .chain(self.meta.actives()?.iter().map(|a| a.dir))
            .collect();
        let (numbered, temps) = self.snapshots.on_disk().map_err(|source| StoreError::Io {
            path: self.snapshots.root().to_path_buf(),
            source,
        })?;
        let mut rec = Recovered {
            temp_files: self.content.sweep_temps(),
            ..Recovered::default()
        };
        for n in numbered.into_iter().filter(|n| !named.contains(n)) {
            tracing::info!(dir = n, "removing a snapshot directory no record names");
            let _ = self.snapshots.remove(n);
            rec.snapshot_dirs += 1;
        }
        for t in temps {
            tracing::info!(path = %t.display(), "removing an unfinished unpack");
            let _ = std::fs::remove_dir_all(&t);
            rec.snapshot_dirs += 1;
        }
        Ok(rec)
    }

    /// Delete the directories of snapshots a committed transaction dropped.
    pub fn remove_snapshot_dirs(&self, freed: &[SnapshotRecord]) {
        for s in freed {
            if let Err(e) = self.snapshots.remove(s.dir) {
                // The next start's sweep takes what is left.
                tracing::warn!(dir = s.dir, "remove snapshot directory: {e}");
            }
        }
    }
}

/// The chain ids of a stack of layers given their diff ids, bottom first (OCI image spec:
/// the first is its diff id, each next one the digest of "<parent chain id> <diff id>").
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => Digest::of(format!("{parent} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use meta::{ActiveRecord, ImageRecord, LayerRef};

    fn d(s: &str) -> Digest {
        Digest::of(s.as_bytes())
    }

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let (a, b) = (d("a"), d("b"));
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        assert_eq!(c[1], Digest::of(format!("{a} {b}").as_bytes()));
    }

    /// Two images sharing a base layer: removing one keeps the shared snapshot, removing
    /// both frees everything, and a crash between a commit and the directory removal is
    /// swept at the next open.
    #[test]
    fn shared_layers_are_counted_and_freed_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, rec) = Store::open(dir.path()).unwrap();
        assert_eq!(rec, Recovered::default());
        let diffs = [d("base"), d("top1"), d("top2")];
        let chains1 = chain_ids(&diffs[..2]);
        let chains2 = chain_ids(&[diffs[0].clone(), diffs[2].clone()]);
        let layer = |chain: &Digest, parent: Option<&Digest>, diff: &Digest| {
            store
                .meta
                .write(|tx| {
                    if tx.snapshot(chain)?.is_some() {
                        return Ok(());
                    }
                    let n = tx.next_dir()?;
                    store.snapshots.create_active(n).unwrap();
                    tx.put_snapshot(&SnapshotRecord {
                        chain_id: chain.clone(),
                        parent: parent.cloned(),
                        dir: n,
                        diff_id: diff.clone(),
                        disk_size: 0,
                        refs: 0,
                    })
                })
                .unwrap()
        };
        layer(&chains1[0], None, &diffs[0]);
        layer(&chains1[1], Some(&chains1[0]), &diffs[1]);
        layer(&chains2[1], Some(&chains2[0]), &diffs[2]);
        let image = |name: &str, chains: &[Digest], diffs: &[Digest]| ImageRecord {
            id: d(name),
            manifest: d(&format!("m{name}")),
            manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            layers: chains
                .iter()
                .zip(diffs)
                .map(|(c, di)| LayerRef {
                    digest: d(&format!("blob{di}")),
                    media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                    size: 1,
                    diff_id: di.clone(),
                    chain_id: c.clone(),
                })
                .collect(),
            repo_digests: vec![],
            added: "2026-12-05T00:00:00Z".into(),
            parent: None,
        };
        let one = image("one", &chains1, &diffs[..2]);
        let two = image("two", &chains2, &[diffs[0].clone(), diffs[2].clone()]);
        store
            .meta
            .write(|tx| {
                tx.put_image(&one)?;
                tx.put_image(&two)?;
                // Storing the same image again counts nothing twice.
                tx.put_image(&one)?;
                tx.set_tag("x/one:latest", &one.id)?;
                tx.put_active(&ActiveRecord {
                    key: "c1".into(),
                    parent: Some(chains2[1].clone()),
                    dir: 99,
                    image: Some(two.id.clone()),
                })
            })
            .unwrap();
        let base = store.meta.snapshot(&chains1[0]).unwrap().unwrap();
        assert_eq!(base.refs, 3);

        let freed = store.meta.write(|tx| tx.remove_image(&one.id)).unwrap();
        assert_eq!(
            freed.iter().map(|s| &s.chain_id).collect::<Vec<_>>(),
            [&chains1[1]]
        );
        assert!(store.meta.tags().unwrap().is_empty());
        store.remove_snapshot_dirs(&freed);

        let freed = store.meta.write(|tx| tx.remove_image(&two.id)).unwrap();
        assert!(freed.is_empty(), "the container still holds its chain");
        let (_, freed) = store
            .meta
            .write(|tx| tx.remove_active("c1"))
            .unwrap()
            .unwrap();
        assert_eq!(freed.len(), 2);
        // A crash before the directories went: the next open sweeps them.
        drop(store);
        let (store, rec) = Store::open(dir.path()).unwrap();
        assert_eq!(rec.snapshot_dirs, 2);
        assert!(store.snapshots.on_disk().unwrap().0.is_empty());
    }
}
