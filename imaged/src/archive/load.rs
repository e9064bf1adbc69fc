//! `load`: the images of an archive into the store.
//!
//! Two layouts are read. A docker-archive (`docker save` of any version, skopeo's
//! `docker-archive:`) has `manifest.json`, whose entries name each image's config and layer
//! files by path; the files are found wherever they are (Docker 20.10's `<id>/layer.tar`,
//! skopeo's `<diff_id>.tar`, Docker 25's `blobs/sha256/<hex>`), following symlinks inside the
//! archive. An OCI image layout (skopeo's `oci-archive:`, ours) has `oci-layout` and
//! `index.json`, whose descriptors name blobs by digest; an index inside is resolved for
//! this host's platform, as a pull does.
//!
//! Everything is checked before anything is kept: each blob against its digest and size,
//! each layer's uncompressed content against the diff_id its config lists (a layer whose
//! snapshot already exists is still hashed, since its blob is stored), each layer unpacked
//! by the same code, with the same refusals, as a pulled one.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::Value;

use super::install::{install, LayerLocks, NewImage, Unpacked};
use super::save::{IMAGE_NAME, REF_NAME};
use super::staging::{self, Staged};
use super::ArchiveError;
use crate::daemon::Daemon;
use crate::digest::Digest;
use crate::layer::hashing::HashReader;
use crate::layer::{detect_and_decode, unpack, Compression, UnpackOptions, MAGIC_LEN};
use crate::reference::Reference;
use crate::registry::{
    resolve_platform, Descriptor, ImageIndex, ImageManifest, ManifestKind, Platform, DOCKER_CONFIG,
    DOCKER_MANIFEST, OCI_CONFIG, OCI_MANIFEST,
};
use crate::store::chain_ids;
use crate::store::meta::LayerRef;
use crate::store::snapshots::disk_usage;

/// An image found in the archive, with the staged file of each layer.
struct Candidate {
    image: NewImage,
    files: Vec<usize>,
}

/// Load every image of the archive `input` streams; returns the lines `docker load` prints.
pub fn load(d: &Arc<Daemon>, input: &mut impl Read) -> Result<Vec<String>, ArchiveError> {
    let mut staged = staging::read(&mut *input, d.store.content.ingest_dir())?;
    // What follows the tar's end blocks (padding, a compressor's trailer) is read and
    // dropped, so the client's stream is taken whole.
    let _ = io::copy(input, &mut io::sink());
    let candidates = if staged.has("manifest.json") {
        docker_archive(&staged)?
    } else {
        oci_layout(&staged)?
    };
    if candidates.is_empty() {
        return Err(ArchiveError::Format("it holds no image".into()));
    }
    let chains = candidates
        .iter()
        .flat_map(|c| c.image.layers.iter().map(|l| l.chain_id.clone()));
    let locks = LayerLocks::take(d, chains);
    let unpacked = prepare_layers(d, &staged, &candidates)?;
    let mut blobs = HashMap::new();
    for c in &candidates {
        for (l, &f) in c.image.layers.iter().zip(&c.files) {
            if !blobs.contains_key(&l.digest) {
                if let Some(p) = staged.files[f].path.take() {
                    blobs.insert(l.digest.clone(), p);
                }
            }
        }
    }
    let images: Vec<NewImage> = candidates.into_iter().map(|c| c.image).collect();
    let lines = install(d, &images, blobs, unpacked)?;
    drop(locks);
    Ok(lines)
}

/// One entry of a docker-archive's manifest.json.
#[derive(Deserialize)]
struct ManifestItem {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

fn docker_archive(staged: &Staged) -> Result<Vec<Candidate>, ArchiveError> {
    let raw = staged.read("manifest.json", "manifest.json")?;
    let items: Vec<ManifestItem> =
        serde_json::from_slice(&raw).map_err(|e| ArchiveError::document("manifest.json", e))?;
    // Docker 25 and we also write an OCI index of the same blobs: an image found there
    // keeps its own manifest (and digest) instead of one made up here.
    let index = oci_index(staged).ok();
    let mut out: Vec<Candidate> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let entry = format!("manifest.json entry {}", i + 1);
        let config = staged.read(&format!("the config of {entry}"), &item.config)?;
        let id = Digest::of(&config);
        let diff_ids = diff_ids(&item.config, &config)?;
        if diff_ids.len() != item.layers.len() {
            return Err(ArchiveError::document(
                "manifest.json",
                format!(
                    "{entry} lists {} layers but its config {} has {} diff_ids",
                    item.layers.len(),
                    item.config,
                    diff_ids.len()
                ),
            ));
        }
        let mut files = Vec::new();
        for (j, path) in item.layers.iter().enumerate() {
            files.push(staged.find(&format!("layer {} of {entry}", j + 1), path)?);
        }
        let mut names = Vec::new();
        for t in item.repo_tags.iter().flatten() {
            let r = Reference::parse(t).map_err(|e| {
                ArchiveError::document("manifest.json", format!("{entry}: RepoTags: {e}"))
            })?;
            if r.digest().is_some() || !t.rsplit('/').next().unwrap_or(t).contains(':') {
                return Err(ArchiveError::document(
                    "manifest.json",
                    format!("{entry}: RepoTags: {t:?} is not a name with a tag"),
                ));
            }
            if !names.contains(&r) {
                names.push(r);
            }
        }
        let chains = chain_ids(&diff_ids);
        let blob_digests: Vec<&Digest> = files.iter().map(|&f| &staged.files[f].digest).collect();
        let found = index
            .as_ref()
            .and_then(|idx| manifest_in_index(staged, idx, &id, &blob_digests));
        let (manifest, manifest_media_type, layers) = match found {
            Some((bytes, media_type, m)) => {
                let layers = m
                    .layers
                    .iter()
                    .zip(diff_ids.iter().zip(&chains))
                    .map(|(l, (diff, chain))| LayerRef {
                        digest: l.digest.clone(),
                        media_type: l.media_type.clone(),
                        size: l.size,
                        diff_id: diff.clone(),
                        chain_id: chain.clone(),
                    })
                    .collect();
                (bytes, media_type, layers)
            }
            None => synthesize(staged, &id, config.len(), &files, &diff_ids, &chains)?,
        };
        if let Some(c) = out.iter_mut().find(|c| c.image.id == id) {
            for n in names {
                if !c.image.names.contains(&n) {
                    c.image.names.push(n);
                }
            }
            continue;
        }
        out.push(Candidate {
            image: NewImage {
                id,
                config,
                manifest,
                manifest_media_type,
                layers,
                names,
            },
            files,
        });
    }
    Ok(out)
}

/// The OCI manifest, in the archive's own index, of the image with config `id` whose
/// layers are exactly these blobs.
fn manifest_in_index(
    staged: &Staged,
    index: &ImageIndex,
    id: &Digest,
    layers: &[&Digest],
) -> Option<(Vec<u8>, String, ImageManifest)> {
    for desc in &index.manifests {
        let Some(kind) = ManifestKind::from_media_type(&desc.media_type) else {
            continue;
        };
        if kind.is_index() {
            continue;
        }
        let Ok(f) = blob(staged, "index.json", desc) else {
            continue;
        };
        let Ok(bytes) = staged.read("index.json", &staged.files[f].name) else {
            continue;
        };
        let Ok(m) = serde_json::from_slice::<ImageManifest>(&bytes) else {
            continue;
        };
        let same_layers = m.layers.len() == layers.len()
            && m.layers.iter().zip(layers).all(|(l, d)| &l.digest == *d);
        if &m.config.digest == id && same_layers {
            return Some((bytes, desc.media_type.clone(), m));
        }
    }
    None
}

/// A manifest for an image that a docker-archive gives without one: Docker's media types,
/// or OCI's when a layer is zstd (Docker's schema 2 has no zstd type). Its layers are the
/// archive's files as they are, compressed or not.
fn synthesize(
    staged: &Staged,
    id: &Digest,
    config_size: usize,
    files: &[usize],
    diff_ids: &[Digest],
    chains: &[Digest],
) -> Result<(Vec<u8>, String, Vec<LayerRef>), ArchiveError> {
    let mut kinds = Vec::new();
    for &f in files {
        kinds.push(compression_of(staged, f)?);
    }
    let oci = kinds.contains(&Compression::Zstd);
    let layer_type = |c: Compression| {
        if oci {
            format!(
                "application/vnd.oci.image.layer.v1.tar{}",
                c.media_type_suffix()
            )
        } else {
            match c {
                Compression::Gzip => "application/vnd.docker.image.rootfs.diff.tar.gzip".into(),
                _ => "application/vnd.docker.image.rootfs.diff.tar".into(),
            }
        }
    };
    let layers: Vec<LayerRef> = files
        .iter()
        .zip(&kinds)
        .zip(diff_ids.iter().zip(chains))
        .map(|((&f, &c), (diff, chain))| LayerRef {
            digest: staged.files[f].digest.clone(),
            media_type: layer_type(c),
            size: staged.files[f].size,
            diff_id: diff.clone(),
            chain_id: chain.clone(),
        })
        .collect();
    let (manifest_type, config_type) = if oci {
        (OCI_MANIFEST, OCI_CONFIG)
    } else {
        (DOCKER_MANIFEST, DOCKER_CONFIG)
    };
    let desc = |media_type: &str, digest: &Digest, size: u64| Descriptor {
        media_type: media_type.to_string(),
        digest: digest.clone(),
        size,
        platform: None,
        urls: Vec::new(),
        annotations: Default::default(),
    };
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(manifest_type.to_string()),
        config: desc(config_type, id, config_size as u64),
        layers: layers
            .iter()
            .map(|l| desc(&l.media_type, &l.digest, l.size))
            .collect(),
        annotations: Default::default(),
    };
    let bytes = serde_json::to_vec(&manifest).expect("manifests serialize");
    Ok((bytes, manifest_type.to_string(), layers))
}

fn compression_of(staged: &Staged, f: usize) -> Result<Compression, ArchiveError> {
    let file = &staged.files[f];
    let path = file.path.as_ref().expect("staged");
    let mut magic = Vec::with_capacity(MAGIC_LEN);
    File::open(path)
        .and_then(|f| f.take(MAGIC_LEN as u64).read_to_end(&mut magic))
        .map_err(ArchiveError::io("read", path.to_path_buf()))?;
    Compression::detect(&magic)
        .map_err(|e| ArchiveError::document(&file.name, format!("a layer in {e}")))
}

fn oci_index(staged: &Staged) -> Result<ImageIndex, ArchiveError> {
    let raw = staged.read("the OCI layout's index", "index.json")?;
    serde_json::from_slice(&raw).map_err(|e| ArchiveError::document("index.json", e))
}

fn oci_layout(staged: &Staged) -> Result<Vec<Candidate>, ArchiveError> {
    if !staged.has("oci-layout") {
        let what = if staged.has("repositories") {
            "a docker save archive from before Docker 1.10 (repositories without manifest.json) is not supported"
        } else {
            "no manifest.json (docker-archive) and no oci-layout (OCI image layout)"
        };
        return Err(ArchiveError::Format(what.into()));
    }
    let layout: Value = serde_json::from_slice(&staged.read("oci-layout", "oci-layout")?)
        .map_err(|e| ArchiveError::document("oci-layout", e))?;
    let version = layout["imageLayoutVersion"].as_str().unwrap_or_default();
    if !version.starts_with("1.") {
        return Err(ArchiveError::document(
            "oci-layout",
            format!("image layout version {version:?} is not 1.x"),
        ));
    }
    let index = oci_index(staged)?;
    let mut out: Vec<Candidate> = Vec::new();
    for (i, top) in index.manifests.iter().enumerate() {
        let what = format!("index.json entry {}", i + 1);
        let names = oci_names(top, &what)?;
        let (desc, bytes) = image_manifest(staged, top, &what)?;
        if let Some(c) = out
            .iter_mut()
            .find(|c| Digest::of(&c.image.manifest) == desc.digest)
        {
            for n in names {
                if !c.image.names.contains(&n) {
                    c.image.names.push(n);
                }
            }
            continue;
        }
        let path = format!("blobs/sha256/{}", desc.digest.hex());
        let m: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|e| ArchiveError::document(&path, e))?;
        let config_file = blob(staged, &format!("the config of {what}"), &m.config)?;
        let config_path = staged.files[config_file].name.clone();
        let config = staged.read(&format!("the config of {what}"), &config_path)?;
        let diff_ids = diff_ids(&config_path, &config)?;
        if diff_ids.len() != m.layers.len() {
            return Err(ArchiveError::document(
                &path,
                format!(
                    "the manifest lists {} layers but its config has {} diff_ids",
                    m.layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        let chains = chain_ids(&diff_ids);
        let mut files = Vec::new();
        let mut layers = Vec::new();
        for (j, l) in m.layers.iter().enumerate() {
            files.push(blob(staged, &format!("layer {} of {what}", j + 1), l)?);
            layers.push(LayerRef {
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
                size: l.size,
                diff_id: diff_ids[j].clone(),
                chain_id: chains[j].clone(),
            });
        }
        out.push(Candidate {
            image: NewImage {
                id: m.config.digest.clone(),
                config,
                manifest: bytes,
                manifest_media_type: desc.media_type.clone(),
                layers,
                names,
            },
            files,
        });
    }
    Ok(out)
}

/// The names an index entry gives its image: containerd's and Docker's full name, else the
/// OCI ref name when it is a reference with a tag (`busybox:1`, as skopeo and podman write
/// it). A bare tag (`latest`) names no repository: such an image is loaded by id.
fn oci_names(desc: &Descriptor, what: &str) -> Result<Vec<Reference>, ArchiveError> {
    if let Some(n) = desc.annotations.get(IMAGE_NAME) {
        let r = Reference::parse(n).map_err(|e| {
            ArchiveError::document("index.json", format!("{what}: {IMAGE_NAME}: {e}"))
        })?;
        return Ok(if r.digest().is_none() {
            vec![r]
        } else {
            vec![]
        });
    }
    let Some(n) = desc.annotations.get(REF_NAME) else {
        return Ok(Vec::new());
    };
    let tagged = n.rsplit('/').next().unwrap_or(n).contains(':');
    match Reference::parse(n) {
        Ok(r) if tagged && r.digest().is_none() => Ok(vec![r]),
        _ => Ok(Vec::new()),
    }
}

/// The image manifest an index entry leads to: itself, or the one for this platform of the
/// index it names.
fn image_manifest(
    staged: &Staged,
    top: &Descriptor,
    what: &str,
) -> Result<(Descriptor, Vec<u8>), ArchiveError> {
    let mut desc = top.clone();
    // An index may name an index; four levels is more than anyone nests.
    for _ in 0..4 {
        let kind = ManifestKind::from_media_type(&desc.media_type).ok_or_else(|| {
            ArchiveError::document(
                "index.json",
                format!(
                    "{what}: {} has media type {:?}, neither an image manifest nor an index",
                    desc.digest, desc.media_type
                ),
            )
        })?;
        let f = blob(staged, what, &desc)?;
        let path = staged.files[f].name.clone();
        let bytes = staged.read(what, &path)?;
        if !kind.is_index() {
            return Ok((desc, bytes));
        }
        let index: ImageIndex =
            serde_json::from_slice(&bytes).map_err(|e| ArchiveError::document(&path, e))?;
        desc = resolve_platform(&index, &Platform::host())
            .map_err(|e| ArchiveError::document(&path, e))?
            .clone();
    }
    Err(ArchiveError::document(
        "index.json",
        format!("{what}: indexes nested too deep"),
    ))
}

/// The staged file of the blob `desc` names, checked against its digest and size.
fn blob(staged: &Staged, what: &str, desc: &Descriptor) -> Result<usize, ArchiveError> {
    let path = format!("blobs/sha256/{}", desc.digest.hex());
    let f = staged.find(what, &path)?;
    let file = &staged.files[f];
    if file.digest != desc.digest {
        return Err(ArchiveError::Digest {
            path,
            expected: desc.digest.clone(),
            actual: file.digest.clone(),
        });
    }
    if file.size != desc.size {
        return Err(ArchiveError::Size {
            path,
            digest: desc.digest.clone(),
            expected: desc.size,
            actual: file.size,
        });
    }
    Ok(f)
}

/// The diff_ids an image config lists, and a refusal of an image for another system.
fn diff_ids(path: &str, config: &[u8]) -> Result<Vec<Digest>, ArchiveError> {
    let v: Value = serde_json::from_slice(config).map_err(|e| ArchiveError::document(path, e))?;
    if !v.is_object() {
        return Err(ArchiveError::document(
            path,
            "an image config is a JSON object",
        ));
    }
    if let Some(os) = v["os"].as_str().filter(|os| *os != "linux") {
        return Err(ArchiveError::document(
            path,
            format!("image operating system {os:?} cannot be used on this platform"),
        ));
    }
    let ids = v["rootfs"]["diff_ids"]
        .as_array()
        .ok_or_else(|| ArchiveError::document(path, "the config has no rootfs.diff_ids"))?;
    ids.iter()
        .map(|d| {
            d.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
                ArchiveError::document(path, format!("diff_id {d} is not a sha256 digest"))
            })
        })
        .collect()
}

/// One layer of the archive to check: unpacked when its snapshot does not exist yet, else
/// only hashed (its blob is stored all the same, so its content must be right).
struct Job<'a> {
    image: &'a Digest,
    layer: &'a LayerRef,
    parent: Option<Digest>,
    path: &'a std::path::Path,
    /// The layer in messages: its digest, and its file when that does not say the digest.
    name: String,
    unpack: bool,
}

/// Check every layer against its diff_id, unpacking the new ones into temp snapshot
/// directories, several at once as a pull does (each goes to a directory of its own). The
/// caller holds the layer locks. The first failure, in archive order, is the answer.
fn prepare_layers(
    d: &Daemon,
    staged: &Staged,
    candidates: &[Candidate],
) -> Result<Vec<Unpacked>, ArchiveError> {
    let mut jobs: Vec<Job<'_>> = Vec::new();
    let mut checked: HashSet<(&Digest, usize)> = HashSet::new();
    let mut to_unpack: HashSet<&Digest> = HashSet::new();
    for c in candidates {
        for (k, (l, &f)) in c.image.layers.iter().zip(&c.files).enumerate() {
            if !checked.insert((&l.chain_id, f)) {
                continue;
            }
            let file = &staged.files[f];
            let unpack =
                !to_unpack.contains(&l.chain_id) && d.store.meta.snapshot(&l.chain_id)?.is_none();
            if unpack {
                to_unpack.insert(&l.chain_id);
            }
            jobs.push(Job {
                image: &c.image.id,
                layer: l,
                parent: (k > 0).then(|| c.image.layers[k - 1].chain_id.clone()),
                path: file.path.as_deref().expect("staged"),
                name: if file.name.contains(l.digest.hex()) {
                    l.digest.to_string()
                } else {
                    format!("{} ({})", l.digest, file.name)
                },
                unpack,
            });
        }
    }
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4)
        .min(jobs.len().max(1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Vec<Mutex<Option<Checked>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs.len() || failed.load(Ordering::Relaxed) {
                    return;
                }
                let r = check_layer(d, &jobs[i]);
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                *results[i].lock().expect("result slot") = Some(r);
            });
        }
    });
    let mut unpacked = Vec::new();
    for r in results {
        match r.into_inner().expect("result slot") {
            Some(Ok(Some(u))) => unpacked.push(u),
            Some(Ok(None)) => {}
            Some(Err(e)) => return Err(e),
            // Not started: an earlier job failed, and its error comes first.
            None => {}
        }
    }
    Ok(unpacked)
}

/// A layer checked: its new snapshot, if it was unpacked.
type Checked = Result<Option<Unpacked>, ArchiveError>;

fn check_layer(d: &Daemon, job: &Job<'_>) -> Checked {
    let l = job.layer;
    let mismatch = |actual: Digest| ArchiveError::DiffId {
        layer: job.name.clone(),
        image: job.image.clone(),
        expected: l.diff_id.clone(),
        actual,
    };
    if !job.unpack {
        let got = hash_layer(job.path, &job.name)?;
        return if got == l.diff_id {
            Ok(None)
        } else {
            Err(mismatch(got))
        };
    }
    let dir = d.store.snapshots.temp().map_err(ArchiveError::io(
        "create a snapshot directory in",
        d.store.snapshots.root(),
    ))?;
    let blob = File::open(job.path).map_err(ArchiveError::io("open", job.path.to_path_buf()))?;
    let report = unpack(
        BufReader::with_capacity(1 << 20, blob),
        &dir.path().join("fs"),
        &UnpackOptions::new(job.name.clone()),
    )?;
    if report.diff_id != l.diff_id {
        return Err(mismatch(report.diff_id));
    }
    Ok(Some(Unpacked {
        chain_id: l.chain_id.clone(),
        parent: job.parent.clone(),
        diff_id: l.diff_id.clone(),
        disk_size: disk_usage(&dir.path().join("fs")),
        dir,
    }))
}

/// The diff_id of a layer blob: the sha256 of its uncompressed stream, all of it.
fn hash_layer(path: &std::path::Path, name: &str) -> Result<Digest, ArchiveError> {
    let fail = |e: io::Error| ArchiveError::document(name, format!("layer: {e}"));
    let file = File::open(path).map_err(ArchiveError::io("open", path.to_path_buf()))?;
    let (compression, decoded) = detect_and_decode(file, 1 << 20).map_err(fail)?;
    compression.map_err(|e| fail(io::Error::other(e)))?;
    let mut h = HashReader::new(decoded);
    io::copy(&mut h, &mut io::sink()).map_err(fail)?;
    Ok(h.finish().0)
}
