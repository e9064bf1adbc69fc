//! The metadata store: images, tags, snapshots and their reference counts, in one redb
//! database (`images.db`). Every change that must hold together (an image with its tags and
//! the reference counts of its layers) is one ACID transaction, so `kill -9` at any moment
//! leaves either the old state or the new one. Directories and blobs on disk are created
//! before the transaction that names them and deleted after the one that drops them; what a
//! crash leaves between the two is unnamed, and [`crate::store::Store::open`] sweeps it.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::digest::Digest;

/// Image id (config digest hex) -> [`ImageRecord`] as JSON.
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
/// Full reference (`127.0.0.1:5000/berth/busybox:latest`) -> image id hex.
const TAGS: TableDefinition<&str, &str> = TableDefinition::new("tags");
/// Chain id hex -> [`SnapshotRecord`] as JSON: one unpacked layer on its parents.
const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
/// Key (a container id) -> [`ActiveRecord`] as JSON: a writable snapshot on an image.
const ACTIVE: TableDefinition<&str, &[u8]> = TableDefinition::new("active");
/// Counters: "dir" hands out snapshot directory numbers.
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata store {path}: {source}")]
    Db {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("metadata store: record {key:?} in {table} is corrupt: {source}")]
    Corrupt {
        table: &'static str,
        key: String,
        source: serde_json::Error,
    },
}

type Result<T> = std::result::Result<T, MetaError>;

/// One layer of an image, bottom first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerRef {
    /// The blob as the registry or archive holds it (compressed).
    pub digest: Digest,
    pub media_type: String,
    /// Compressed size.
    pub size: u64,
    /// Digest of the uncompressed tar (the config's rootfs.diff_ids).
    pub diff_id: Digest,
    /// This layer on all below it: names its snapshot.
    pub chain_id: Digest,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageRecord {
    /// The config blob's digest, Docker's image id.
    pub id: Digest,
    pub manifest: Digest,
    pub manifest_media_type: String,
    pub layers: Vec<LayerRef>,
    /// `repo@sha256:...` for each registry repository the manifest came from or went to.
    pub repo_digests: Vec<String>,
    /// When it was stored here (RFC 3339).
    pub added: String,
    /// The image it was committed on (`commit`, a build step): an untagged image with
    /// children is an intermediate one, which `images` hides without `-a`, as Docker does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Digest>,
}

impl ImageRecord {
    pub fn top_chain(&self) -> Option<&Digest> {
        self.layers.last().map(|l| &l.chain_id)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotRecord {
    pub chain_id: Digest,
    pub parent: Option<Digest>,
    /// Directory number: `snapshots/<dir>/fs`.
    pub dir: u64,
    pub diff_id: Digest,
    /// Bytes the unpacked layer takes on disk.
    pub disk_size: u64,
    /// Images and active snapshots whose chain includes this one.
    pub refs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ActiveRecord {
    pub key: String,
    /// The top of the chain it sits on (None: an empty root, as for `FROM scratch`).
    pub parent: Option<Digest>,
    pub dir: u64,
    /// The image it was prepared from, if any.
    pub image: Option<Digest>,
}

pub struct Meta {
    db: Database,
    path: String,
}

fn db_err(path: &str) -> impl Fn(Box<dyn std::error::Error + Send + Sync>) -> MetaError + '_ {
    move |source| MetaError::Db {
        path: path.to_string(),
        source,
    }
}

fn decode<T: DeserializeOwned>(table: &'static str, key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| MetaError::Corrupt {
        table,
        key: key.to_string(),
        source,
    })
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize")
}

/// The snapshots from `top` down to the base, top first, looked up with `get`.
fn walk_chain(
    top: &Digest,
    get: impl Fn(&Digest) -> Result<Option<SnapshotRecord>>,
) -> Result<Vec<SnapshotRecord>> {
    let mut out = Vec::new();
    let mut next = Some(top.clone());
    while let Some(c) = next {
        let s = get(&c)?.ok_or_else(|| MetaError::Corrupt {
            table: "snapshots",
            key: c.to_string(),
            source: serde::de::Error::custom("a chain names a snapshot that does not exist"),
        })?;
        next = s.parent.clone();
        out.push(s);
    }
    Ok(out)
}

/// What a write transaction changes; see [`Meta::write`].
pub struct Tx<'a> {
    tx: &'a redb::WriteTransaction,
}

macro_rules! try_db {
    ($self:expr, $e:expr) => {
        $e.map_err(|e| MetaError::Db {
            path: $self.path.clone(),
            source: Box::new(e),
        })
    };
}

impl Meta {
    pub fn open(path: &Path) -> Result<Meta> {
        let p = path.display().to_string();
        let db = Database::create(path).map_err(|e| db_err(&p)(Box::new(e)))?;
        let meta = Meta { db, path: p };
        // Create every table once, so readers never meet a missing one.
        meta.write(|_| Ok::<_, MetaError>(()))?;
        Ok(meta)
    }

    /// Run `f` in one write transaction, committed only if it returns Ok.
    pub fn write<T, E: From<MetaError>>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let tx = try_db!(self, self.db.begin_write())?;
        {
            for t in [IMAGES, SNAPSHOTS, ACTIVE] {
                try_db!(self, tx.open_table(t))?;
            }
            try_db!(self, tx.open_table(TAGS))?;
            try_db!(self, tx.open_table(COUNTERS))?;
        }
        let out = {
            let mut t = Tx { tx: &tx };
            f(&mut t)?
        };
        try_db!(self, tx.commit())?;
        Ok(out)
    }

    fn read_all<T: DeserializeOwned>(
        &self,
        def: TableDefinition<&str, &[u8]>,
        name: &'static str,
    ) -> Result<Vec<T>> {
        let r = try_db!(self, self.db.begin_read())?;
        let t = try_db!(self, r.open_table(def))?;
        let mut out = Vec::new();
        for e in try_db!(self, t.iter())? {
            let (k, v) = try_db!(self, e)?;
            out.push(decode(name, k.value(), v.value())?);
        }
        Ok(out)
    }

    fn read_one<T: DeserializeOwned>(
        &self,
        def: TableDefinition<&str, &[u8]>,
        name: &'static str,
        key: &str,
    ) -> Result<Option<T>> {
        let r = try_db!(self, self.db.begin_read())?;
        let t = try_db!(self, r.open_table(def))?;
        let got = try_db!(self, t.get(key))?;
        match got {
            Some(v) => Ok(Some(decode(name, key, v.value())?)),
            None => Ok(None),
        }
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        self.read_all(IMAGES, "images")
    }

    pub fn image(&self, id: &Digest) -> Result<Option<ImageRecord>> {
        self.read_one(IMAGES, "images", id.hex())
    }

    pub fn snapshots(&self) -> Result<Vec<SnapshotRecord>> {
        self.read_all(SNAPSHOTS, "snapshots")
    }

    pub fn snapshot(&self, chain: &Digest) -> Result<Option<SnapshotRecord>> {
        self.read_one(SNAPSHOTS, "snapshots", chain.hex())
    }

    pub fn actives(&self) -> Result<Vec<ActiveRecord>> {
        self.read_all(ACTIVE, "active")
    }

    pub fn active(&self, key: &str) -> Result<Option<ActiveRecord>> {
        self.read_one(ACTIVE, "active", key)
    }

    /// Every tag, sorted by name.
    pub fn tags(&self) -> Result<Vec<(String, Digest)>> {
        let r = try_db!(self, self.db.begin_read())?;
        let t = try_db!(self, r.open_table(TAGS))?;
        let mut out = Vec::new();
        for e in try_db!(self, t.iter())? {
            let (k, v) = try_db!(self, e)?;
            let id = format!("sha256:{}", v.value())
                .parse()
                .map_err(|e| MetaError::Corrupt {
                    table: "tags",
                    key: k.value().to_string(),
                    source: serde::de::Error::custom(e),
                })?;
            out.push((k.value().to_string(), id));
        }
        Ok(out)
    }

    /// The tags naming image `id`.
    pub fn tags_of(&self, id: &Digest) -> Result<Vec<String>> {
        Ok(self
            .tags()?
            .into_iter()
            .filter(|(_, d)| d == id)
            .map(|(n, _)| n)
            .collect())
    }

    /// The chain from `top` down to its base, top first (see [`Tx::chain`]), without
    /// taking the write lock.
    pub fn chain(&self, top: &Digest) -> Result<Vec<SnapshotRecord>> {
        walk_chain(top, |c| self.snapshot(c))
    }

    pub fn tag(&self, name: &str) -> Result<Option<Digest>> {
        let r = try_db!(self, self.db.begin_read())?;
        let t = try_db!(self, r.open_table(TAGS))?;
        let got = try_db!(self, t.get(name))?;
        Ok(got.and_then(|v| format!("sha256:{}", v.value()).parse().ok()))
    }
}

impl Tx<'_> {
    fn err(e: impl std::error::Error + Send + Sync + 'static) -> MetaError {
        MetaError::Db {
            path: "images.db".into(),
            source: Box::new(e),
        }
    }

    fn get<T: DeserializeOwned>(
        &self,
        def: TableDefinition<&str, &[u8]>,
        name: &'static str,
        key: &str,
    ) -> Result<Option<T>> {
        let t = self.tx.open_table(def).map_err(Self::err)?;
        let v = t.get(key).map_err(Self::err)?;
        match v {
            Some(v) => Ok(Some(decode(name, key, v.value())?)),
            None => Ok(None),
        }
    }

    fn put<T: Serialize>(
        &mut self,
        def: TableDefinition<&str, &[u8]>,
        key: &str,
        v: &T,
    ) -> Result<()> {
        let mut t = self.tx.open_table(def).map_err(Self::err)?;
        t.insert(key, encode(v).as_slice()).map_err(Self::err)?;
        Ok(())
    }

    fn delete(&mut self, def: TableDefinition<&str, &[u8]>, key: &str) -> Result<()> {
        let mut t = self.tx.open_table(def).map_err(Self::err)?;
        t.remove(key).map_err(Self::err)?;
        Ok(())
    }

    /// A new snapshot directory number, never handed out before.
    pub fn next_dir(&mut self) -> Result<u64> {
        let mut t = self.tx.open_table(COUNTERS).map_err(Self::err)?;
        let n = t
            .get("dir")
            .map_err(Self::err)?
            .map(|v| v.value())
            .unwrap_or(0)
            + 1;
        t.insert("dir", n).map_err(Self::err)?;
        Ok(n)
    }

    pub fn image(&self, id: &Digest) -> Result<Option<ImageRecord>> {
        self.get(IMAGES, "images", id.hex())
    }

    pub fn snapshot(&self, chain: &Digest) -> Result<Option<SnapshotRecord>> {
        self.get(SNAPSHOTS, "snapshots", chain.hex())
    }

    pub fn active(&self, key: &str) -> Result<Option<ActiveRecord>> {
        self.get(ACTIVE, "active", key)
    }

    pub fn put_snapshot(&mut self, s: &SnapshotRecord) -> Result<()> {
        self.put(SNAPSHOTS, s.chain_id.hex(), s)
    }

    /// The chain from `top` down to its base, top first.
    pub fn chain(&self, top: &Digest) -> Result<Vec<SnapshotRecord>> {
        walk_chain(top, |c| self.snapshot(c))
    }

    /// Drop a snapshot record whatever its count (prune of what an unfinished pull left).
    pub fn remove_snapshot(&mut self, chain: &Digest) -> Result<Option<SnapshotRecord>> {
        let s = self.snapshot(chain)?;
        self.delete(SNAPSHOTS, chain.hex())?;
        Ok(s)
    }

    /// Add `delta` to the reference count of every snapshot of the chain under `top`.
    /// Returns the snapshots that reached zero, already removed from the store: the caller
    /// deletes their directories once the transaction has committed.
    pub fn adjust_chain(&mut self, top: &Digest, delta: i64) -> Result<Vec<SnapshotRecord>> {
        let mut freed = Vec::new();
        for mut s in self.chain(top)? {
            s.refs = s.refs.saturating_add_signed(delta);
            if s.refs == 0 {
                self.delete(SNAPSHOTS, s.chain_id.hex())?;
                freed.push(s);
            } else {
                self.put_snapshot(&s)?;
            }
        }
        Ok(freed)
    }

    /// Store an image (whose snapshots exist) and count its references. Storing one that is
    /// already there changes nothing but its repo digests.
    pub fn put_image(&mut self, img: &ImageRecord) -> Result<()> {
        match self.image(&img.id)? {
            Some(mut old) => {
                for d in &img.repo_digests {
                    if !old.repo_digests.contains(d) {
                        old.repo_digests.push(d.clone());
                    }
                }
                self.put(IMAGES, img.id.hex(), &old)
            }
            None => {
                if let Some(top) = img.top_chain() {
                    self.adjust_chain(top, 1)?;
                }
                self.put(IMAGES, img.id.hex(), img)
            }
        }
    }

    /// Drop an image record; returns the snapshots nothing references any more.
    pub fn remove_image(&mut self, id: &Digest) -> Result<Vec<SnapshotRecord>> {
        let Some(img) = self.image(id)? else {
            return Ok(Vec::new());
        };
        self.delete(IMAGES, id.hex())?;
        self.remove_tags_of(id)?;
        match img.top_chain() {
            Some(top) => self.adjust_chain(top, -1),
            None => Ok(Vec::new()),
        }
    }

    /// Point `name` at image `id`; returns the image it pointed at before, if another.
    pub fn set_tag(&mut self, name: &str, id: &Digest) -> Result<Option<Digest>> {
        let mut t = self.tx.open_table(TAGS).map_err(Self::err)?;
        let old = t
            .insert(name, id.hex())
            .map_err(Self::err)?
            .map(|v| v.value().to_string());
        Ok(old
            .filter(|h| h != id.hex())
            .and_then(|h| format!("sha256:{h}").parse().ok()))
    }

    /// Remove tag `name`; returns the image it named.
    pub fn remove_tag(&mut self, name: &str) -> Result<Option<Digest>> {
        let mut t = self.tx.open_table(TAGS).map_err(Self::err)?;
        let old = t
            .remove(name)
            .map_err(Self::err)?
            .map(|v| v.value().to_string());
        Ok(old.and_then(|h| format!("sha256:{h}").parse().ok()))
    }

    pub fn tags_of(&self, id: &Digest) -> Result<Vec<String>> {
        let t = self.tx.open_table(TAGS).map_err(Self::err)?;
        let mut out = Vec::new();
        for e in t.iter().map_err(Self::err)? {
            let (k, v) = e.map_err(Self::err)?;
            if v.value() == id.hex() {
                out.push(k.value().to_string());
            }
        }
        Ok(out)
    }

    fn remove_tags_of(&mut self, id: &Digest) -> Result<()> {
        for name in self.tags_of(id)? {
            self.remove_tag(&name)?;
        }
        Ok(())
    }

    pub fn put_active(&mut self, a: &ActiveRecord) -> Result<()> {
        if let Some(p) = &a.parent {
            self.adjust_chain(p, 1)?;
        }
        self.put(ACTIVE, &a.key, a)
    }

    /// Drop an active snapshot; returns it and the snapshots nothing references any more.
    pub fn remove_active(
        &mut self,
        key: &str,
    ) -> Result<Option<(ActiveRecord, Vec<SnapshotRecord>)>> {
        let Some(a) = self.active(key)? else {
            return Ok(None);
        };
        self.delete(ACTIVE, key)?;
        let freed = match &a.parent {
            Some(p) => self.adjust_chain(p, -1)?,
            None => Vec::new(),
        };
        Ok(Some((a, freed)))
    }
}
