//! Local images as Docker users see them: lookup by name, id or id prefix, `images`,
//! `image inspect`, `history`, `tag`, `rmi` with Docker's rules, `image prune` and
//! `system df`. Sizes are allocated bytes on disk, as `du` counts them, so what `df`
//! reports reclaimable is what removal frees.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;

use serde_json::{json, Value};

use crate::digest::Digest;
use crate::reference::{parse_any, AnyReference, Reference};
use crate::store::meta::{ImageRecord, MetaError, SnapshotRecord};
use crate::store::{content::ContentError, Store};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("No such image: {0}")]
    NotFound(String),
    #[error("{0}")]
    Reference(#[from] crate::reference::ReferenceError),
    #[error("{0}")]
    Conflict(String),
    #[error("image {id}: {source}")]
    Content {
        id: String,
        #[source]
        source: ContentError,
    },
    #[error("image {id}: config is not valid JSON: {source}")]
    Config {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Meta(#[from] MetaError),
}

type Result<T> = std::result::Result<T, ImageError>;

/// One image with what the listing commands show about it.
#[derive(Debug, Clone)]
pub struct Summary {
    pub id: Digest,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub created: i64,
    pub size: u64,
    pub shared_size: u64,
    pub containers: u32,
    pub labels: BTreeMap<String, String>,
    /// Untagged, and the parent of another image (a build step's): listed only with `-a`.
    pub intermediate: bool,
}

/// Allocated bytes of a file, as `du` counts them.
fn allocated(path: &std::path::Path) -> u64 {
    std::fs::symlink_metadata(path)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

fn rfc3339_to_unix(s: &str) -> i64 {
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z').split('.').next().unwrap_or(s))
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Familiar form of a stored full tag (`docker.io/library/busybox:latest` -> `busybox:latest`).
pub fn familiar(tag: &str) -> String {
    Reference::parse(tag)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| tag.to_string())
}

impl Store {
    /// The image `input` names: a tag (`busybox`, `x:1`), a repo digest (`x@sha256:...`), an
    /// image id (`sha256:...`, 64 hex) or a unique id prefix, as Docker resolves them.
    pub fn resolve(&self, input: &str) -> Result<ImageRecord> {
        let not_found = || ImageError::NotFound(input.to_string());
        let by_prefix = |prefix: &str| -> Result<Option<ImageRecord>> {
            if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(None);
            }
            let hits: Vec<ImageRecord> = self
                .meta
                .images()?
                .into_iter()
                .filter(|i| i.id.hex().starts_with(prefix))
                .collect();
            match hits.len() {
                0 => Ok(None),
                1 => Ok(hits.into_iter().next()),
                _ => Err(ImageError::Conflict(format!(
                    "image id prefix {prefix:?} is ambiguous: {} images match",
                    hits.len()
                ))),
            }
        };
        let parsed = match parse_any(input) {
            Ok(p) => p,
            // `abc1`: not a valid name either way, but maybe an id prefix.
            Err(e) => {
                return by_prefix(input.strip_prefix("sha256:").unwrap_or(input))?.ok_or(e.into())
            }
        };
        match parsed {
            AnyReference::Digest(d) => self.meta.image(&d)?.ok_or_else(not_found),
            AnyReference::Named(r) => {
                if let Some(d) = r.digest() {
                    let want = format!("{}@{d}", r.name());
                    if let Some(img) = self
                        .meta
                        .images()?
                        .into_iter()
                        .find(|i| i.repo_digests.contains(&want))
                    {
                        return Ok(img);
                    }
                    return Err(not_found());
                }
                if let Some(id) = self.meta.tag(&r.to_string())? {
                    return self.meta.image(&id)?.ok_or_else(not_found);
                }
                // A short hex name is an id prefix when no tag has that name.
                if !input.contains([':', '/']) {
                    if let Some(img) = by_prefix(input)? {
                        return Ok(img);
                    }
                }
                Err(not_found())
            }
        }
    }

    /// The image config as the registry or archive gave it.
    pub fn config(&self, img: &ImageRecord) -> Result<Value> {
        let bytes = self
            .content
            .read(&img.id)
            .map_err(|source| ImageError::Content {
                id: img.id.to_string(),
                source,
            })?;
        serde_json::from_slice(&bytes).map_err(|source| ImageError::Config {
            id: img.id.to_string(),
            source,
        })
    }

    /// Bytes of every snapshot of the image's chain.
    fn layer_sizes(&self, img: &ImageRecord, snaps: &HashMap<Digest, SnapshotRecord>) -> u64 {
        img.layers
            .iter()
            .filter_map(|l| snaps.get(&l.chain_id))
            .map(|s| s.disk_size)
            .sum()
    }

    /// Image id -> how many containers (active snapshots) use it.
    fn users(&self) -> Result<HashMap<Digest, Vec<String>>> {
        let mut m: HashMap<Digest, Vec<String>> = HashMap::new();
        for a in self.meta.actives()? {
            if let Some(i) = a.image {
                m.entry(i).or_default().push(a.key);
            }
        }
        Ok(m)
    }

    /// Every image with its tags, newest first, as `docker images` lists them.
    pub fn summaries(&self) -> Result<Vec<Summary>> {
        let snaps: HashMap<Digest, SnapshotRecord> = self
            .meta
            .snapshots()?
            .into_iter()
            .map(|s| (s.chain_id.clone(), s))
            .collect();
        let mut tags: HashMap<Digest, Vec<String>> = HashMap::new();
        for (name, id) in self.meta.tags()? {
            tags.entry(id).or_default().push(familiar(&name));
        }
        let users = self.users()?;
        let images = self.meta.images()?;
        // A layer counted by more than one image is shared.
        let mut layer_users: HashMap<&Digest, u32> = HashMap::new();
        for img in &images {
            for l in &img.layers {
                *layer_users.entry(&l.chain_id).or_default() += 1;
            }
        }
        let parents: HashSet<&Digest> = images.iter().filter_map(|i| i.parent.as_ref()).collect();
        let mut out = Vec::new();
        for img in &images {
            let config = self.config(img).unwrap_or(Value::Null);
            let shared = img
                .layers
                .iter()
                .filter(|l| layer_users.get(&l.chain_id).copied().unwrap_or(0) > 1)
                .filter_map(|l| snaps.get(&l.chain_id))
                .map(|s| s.disk_size)
                .sum();
            let labels = config["config"]["Labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let mut repo_tags = tags.remove(&img.id).unwrap_or_default();
            repo_tags.sort();
            let intermediate = repo_tags.is_empty() && parents.contains(&img.id);
            out.push(Summary {
                intermediate,
                id: img.id.clone(),
                repo_tags,
                repo_digests: img.repo_digests.iter().map(|d| familiar(d)).collect(),
                created: rfc3339_to_unix(config["created"].as_str().unwrap_or_default()),
                size: self.layer_sizes(img, &snaps),
                shared_size: shared,
                containers: users.get(&img.id).map_or(0, |v| v.len() as u32),
                labels,
            });
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Docker's `image inspect` object.
    pub fn inspect(&self, input: &str) -> Result<(Value, Summary)> {
        let img = self.resolve(input)?;
        let summary = self
            .summaries()?
            .into_iter()
            .find(|s| s.id == img.id)
            .ok_or_else(|| ImageError::NotFound(input.to_string()))?;
        let config = self.config(&img)?;
        let lowers: Vec<String> = img
            .layers
            .iter()
            .rev()
            .filter_map(|l| self.meta.snapshot(&l.chain_id).ok().flatten())
            .map(|s| self.snapshots.fs(s.dir).display().to_string())
            .collect();
        let v = json!({
            "Id": img.id.to_string(),
            "RepoTags": summary.repo_tags,
            "RepoDigests": summary.repo_digests,
            "Parent": "",
            "Comment": config["comment"].as_str().unwrap_or_default(),
            "Created": config["created"].as_str().unwrap_or_default(),
            "DockerVersion": config["docker_version"].as_str().unwrap_or_default(),
            "Author": config["author"].as_str().unwrap_or_default(),
            "Config": config["config"].clone(),
            "Architecture": config["architecture"].as_str().unwrap_or_default(),
            "Variant": config["variant"].clone(),
            "Os": config["os"].as_str().unwrap_or_default(),
            "Size": summary.size,
            "GraphDriver": {
                "Name": "overlay",
                "Data": {"LowerDir": lowers.join(":")}
            },
            "RootFS": {
                "Type": "layers",
                "Layers": img.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()
            },
            "Metadata": {"LastTagTime": img.added},
            "Descriptor": {
                "mediaType": img.manifest_media_type,
                "digest": img.manifest.to_string(),
                "size": self.content.size(&img.manifest).unwrap_or(0)
            }
        });
        Ok((v, summary))
    }

    /// `docker history`: newest first; the layer-making entries get their layer's size.
    pub fn history(&self, input: &str) -> Result<Vec<HistoryEntry>> {
        let img = self.resolve(input)?;
        let config = self.config(&img)?;
        let sizes: Vec<u64> = img
            .layers
            .iter()
            .map(|l| {
                self.meta
                    .snapshot(&l.chain_id)
                    .ok()
                    .flatten()
                    .map_or(0, |s| s.disk_size)
            })
            .collect();
        let empty = Vec::new();
        let hist = config["history"].as_array().unwrap_or(&empty);
        let mut layer = 0;
        let mut out = Vec::new();
        for h in hist {
            let empty_layer = h["empty_layer"].as_bool().unwrap_or(false);
            let size = if empty_layer {
                0
            } else {
                layer += 1;
                sizes.get(layer - 1).copied().unwrap_or(0)
            };
            out.push(HistoryEntry {
                id: "<missing>".into(),
                created: rfc3339_to_unix(h["created"].as_str().unwrap_or_default()),
                created_by: h["created_by"].as_str().unwrap_or_default().to_string(),
                size,
                comment: h["comment"].as_str().unwrap_or_default().to_string(),
                tags: Vec::new(),
            });
        }
        if hist.is_empty() {
            // No history in the config: one line per layer, as Docker shows imported images.
            for (i, s) in sizes.iter().enumerate() {
                out.push(HistoryEntry {
                    id: "<missing>".into(),
                    created: rfc3339_to_unix(config["created"].as_str().unwrap_or_default()),
                    created_by: String::new(),
                    size: *s,
                    comment: if i == 0 {
                        "Imported".into()
                    } else {
                        String::new()
                    },
                    tags: Vec::new(),
                });
            }
        }
        out.reverse();
        if let Some(top) = out.first_mut() {
            top.id = img.id.to_string();
            top.tags = self
                .meta
                .tags_of(&img.id)
                .map_err(ImageError::Meta)?
                .iter()
                .map(|t| familiar(t))
                .collect();
        }
        Ok(out)
    }

    /// `docker tag SOURCE TARGET`.
    pub fn tag(&self, source: &str, target: &str) -> Result<()> {
        let img = self.resolve(source)?;
        let target = Reference::parse(target)?;
        if target.digest().is_some() {
            return Err(ImageError::Conflict(format!(
                "refusing to create a tag with a digest reference: {}",
                target.familiar()
            )));
        }
        self.meta
            .write(|tx| tx.set_tag(&target.to_string(), &img.id))
            .map_err(ImageError::Meta)?;
        Ok(())
    }

    /// `docker rmi` of one image: the lines it prints.
    pub fn remove(&self, input: &str, force: bool) -> Result<Vec<String>> {
        let img = self.resolve(input)?;
        let users = self.users()?.remove(&img.id).unwrap_or_default();
        let named = match parse_any(input) {
            Ok(AnyReference::Named(r)) if !is_id_prefix_of(input, &img.id) => Some(r),
            _ => None,
        };
        let (lines, freed) = self.meta.write(|tx| -> Result<_> {
            let tags = tx.tags_of(&img.id)?;
            let mut lines = Vec::new();
            if let Some(r) = &named {
                let full = r.to_string();
                if r.digest().is_none() && tags.contains(&full) {
                    // Removing one of several names only untags (Docker's rule), also when a
                    // container uses the image.
                    if tags.len() > 1 || (!users.is_empty() && force) {
                        tx.remove_tag(&full)?;
                        return Ok((vec![format!("Untagged: {}", r.familiar())], Vec::new()));
                    }
                    if !users.is_empty() {
                        return Err(ImageError::Conflict(format!(
                            "conflict: unable to remove repository reference {:?} (must force) - container {} is using its referenced image {}",
                            r.familiar(),
                            short_key(&users[0]),
                            img.id.short()
                        )));
                    }
                }
            } else {
                if tags.len() > 1 && !force {
                    return Err(ImageError::Conflict(format!(
                        "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                        img.id.short()
                    )));
                }
                if !users.is_empty() && !force {
                    return Err(ImageError::Conflict(format!(
                        "conflict: unable to delete {} (must be forced) - image is being used by container {}",
                        img.id.short(),
                        short_key(&users[0])
                    )));
                }
            }
            for t in &tags {
                lines.push(format!("Untagged: {}", familiar(t)));
            }
            for d in &img.repo_digests {
                lines.push(format!("Untagged: {}", familiar(d)));
            }
            let freed = tx.remove_image(&img.id)?;
            lines.push(format!("Deleted: {}", img.id));
            for s in &freed {
                lines.push(format!("Deleted: {}", s.chain_id));
            }
            Ok((lines, freed))
        })?;
        self.remove_snapshot_dirs(&freed);
        self.collect_blobs()?;
        Ok(lines)
    }

    /// Remove blobs no image names any more (manifests, configs, layers). Partial downloads
    /// stay: a pull may resume them. Returns the bytes freed.
    pub fn collect_blobs(&self) -> Result<u64> {
        let mut keep: HashSet<Digest> = HashSet::new();
        for img in self.meta.images()? {
            keep.insert(img.id.clone());
            keep.insert(img.manifest.clone());
            for l in &img.layers {
                keep.insert(l.digest.clone());
            }
        }
        let mut freed = 0;
        for (d, _) in self.content.list() {
            if !keep.contains(&d) {
                freed += allocated(&self.content.path(&d));
                let _ = self.content.remove(&d);
            }
        }
        Ok(freed)
    }

    /// What removing `ids` would free: their blobs and snapshots that no other image and no
    /// container uses.
    fn freed_by(&self, ids: &HashSet<Digest>) -> Result<u64> {
        let images = self.meta.images()?;
        let mut kept_blobs = HashSet::new();
        let mut kept_chains = HashSet::new();
        for img in images.iter().filter(|i| !ids.contains(&i.id)) {
            kept_blobs.insert(img.id.clone());
            kept_blobs.insert(img.manifest.clone());
            for l in &img.layers {
                kept_blobs.insert(l.digest.clone());
                kept_chains.insert(l.chain_id.clone());
            }
        }
        for a in self.meta.actives()? {
            if let Some(p) = &a.parent {
                let mut next = Some(p.clone());
                while let Some(c) = next {
                    next = self.meta.snapshot(&c)?.and_then(|s| s.parent);
                    kept_chains.insert(c);
                }
            }
        }
        let mut total = 0;
        let mut blobs = HashSet::new();
        let mut chains = HashSet::new();
        for img in images.iter().filter(|i| ids.contains(&i.id)) {
            blobs.insert(img.id.clone());
            blobs.insert(img.manifest.clone());
            for l in &img.layers {
                blobs.insert(l.digest.clone());
                chains.insert(l.chain_id.clone());
            }
        }
        for b in blobs.difference(&kept_blobs) {
            total += allocated(&self.content.path(b));
        }
        for c in chains.difference(&kept_chains) {
            if let Some(s) = self.meta.snapshot(c)? {
                total += s.disk_size;
            }
        }
        Ok(total)
    }

    /// Images `image prune` would remove: dangling ones (no tag), or with `all` every image
    /// no container uses.
    pub fn prunable(&self, all: bool) -> Result<Vec<Digest>> {
        let users = self.users()?;
        let tagged: HashSet<Digest> = self.meta.tags()?.into_iter().map(|(_, d)| d).collect();
        Ok(self
            .meta
            .images()?
            .into_iter()
            .filter(|i| !users.contains_key(&i.id))
            .filter(|i| all || !tagged.contains(&i.id))
            .map(|i| i.id)
            .collect())
    }

    /// `docker image prune [-a]`: the lines and the bytes reclaimed.
    pub fn prune(&self, all: bool) -> Result<(Vec<String>, u64)> {
        let before = self.used_bytes();
        let mut lines = Vec::new();
        for id in self.prunable(all)? {
            for l in self.remove(&id.to_string(), true)? {
                // `image prune` prints "untagged:"/"deleted:" in lower case.
                lines.push(
                    l.replacen("Untagged:", "untagged:", 1)
                        .replacen("Deleted:", "deleted:", 1),
                );
            }
        }
        // Snapshots left from pulls that never finished, and their blobs.
        let orphans: Vec<SnapshotRecord> = self
            .meta
            .snapshots()?
            .into_iter()
            .filter(|s| s.refs == 0)
            .collect();
        if !orphans.is_empty() {
            self.meta.write(|tx| -> Result<()> {
                for s in &orphans {
                    tx.remove_snapshot(&s.chain_id)?;
                }
                Ok(())
            })?;
            self.remove_snapshot_dirs(&orphans);
        }
        self.collect_blobs()?;
        let after = self.used_bytes();
        Ok((lines, before.saturating_sub(after)))
    }

    /// Every byte imaged holds on disk, by kind.
    pub fn usage(&self) -> Result<Usage> {
        let blobs = self
            .content
            .list()
            .iter()
            .map(|(d, _)| allocated(&self.content.path(d)))
            .sum();
        let snapshots = self.meta.snapshots()?.iter().map(|s| s.disk_size).sum();
        let containers = self
            .meta
            .actives()?
            .iter()
            .map(|a| crate::store::snapshots::disk_usage(&self.snapshots.dir(a.dir)))
            .sum();
        let partial = self.content.partial_usage().0;
        let summaries = self.summaries()?;
        let all: HashSet<Digest> = self.prunable(true)?.into_iter().collect();
        Ok(Usage {
            images: summaries.len() as u32,
            active_images: summaries.iter().filter(|s| s.containers > 0).count() as u32,
            blobs,
            snapshots,
            containers,
            partial,
            reclaimable: self.freed_by(&all)?,
            per_image: summaries,
        })
    }

    fn used_bytes(&self) -> u64 {
        self.usage().map(|u| u.blobs + u.snapshots).unwrap_or(0)
    }
}

fn is_id_prefix_of(input: &str, id: &Digest) -> bool {
    let hex = input.strip_prefix("sha256:").unwrap_or(input);
    !hex.is_empty() && id.hex().starts_with(hex)
}

fn short_key(k: &str) -> &str {
    &k[..k.len().min(12)]
}

#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub id: String,
    pub created: i64,
    pub created_by: String,
    pub size: u64,
    pub comment: String,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Usage {
    pub images: u32,
    pub active_images: u32,
    pub blobs: u64,
    pub snapshots: u64,
    pub containers: u64,
    pub partial: u64,
    pub reclaimable: u64,
    pub per_image: Vec<Summary>,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.blobs + self.snapshots + self.containers + self.partial
    }
}
