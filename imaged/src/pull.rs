//! `pull`: manifest, config, then every layer at once, each downloaded, hashed,
//! decompressed and unpacked in one pass while it streams. A layer already unpacked (by any
//! image) is not fetched again; two pulls that need the same layer at the same time fetch it
//! once (the second waits for the first). A download that breaks off keeps its partial blob
//! and continues with an HTTP Range request, in this pull or in the next one, also after
//! `kill -9` of the daemon.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use berth_proto::imaged::PullProgress;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tonic::Status;

use crate::daemon::Daemon;
use crate::digest::Digest;
use crate::layer::{unpack, UnpackOptions};
use crate::reference::Reference;
use crate::registry::{self, Descriptor, Platform};
use crate::store::meta::{ImageRecord, LayerRef, SnapshotRecord};
use crate::store::snapshots::disk_usage;
use crate::store::{chain_ids, content::Ingest};

pub type Progress = mpsc::Sender<Result<PullProgress, Status>>;

/// How often a broken download is resumed before the pull gives up.
const RESUME_ATTEMPTS: u32 = 5;

pub fn registry_status(e: registry::Error) -> Status {
    let msg = e.to_string();
    match e.kind() {
        registry::ErrorKind::Unauthorized { .. } => Status::unauthenticated(msg),
        registry::ErrorKind::Denied { .. } => Status::permission_denied(msg),
        registry::ErrorKind::Connection { .. } | registry::ErrorKind::Interrupted { .. } => {
            Status::unavailable(msg)
        }
        registry::ErrorKind::InvalidPlatform { .. } => Status::invalid_argument(msg),
        _ if e.is_not_found() => Status::not_found(msg),
        _ => Status::failed_precondition(msg),
    }
}

fn internal(what: &str) -> impl Fn(String) -> Status + '_ {
    move |e| Status::internal(format!("{what}: {e}"))
}

/// One progress line about `id` (a layer's short digest).
pub(crate) async fn send(tx: &Progress, id: &str, status: &str, current: u64, total: u64) {
    let _ = tx
        .send(Ok(PullProgress {
            id: id.to_string(),
            status: status.to_string(),
            current,
            total,
            ..Default::default()
        }))
        .await;
}

pub async fn pull(
    d: &Arc<Daemon>,
    input: &str,
    platform: &str,
    tx: &Progress,
) -> Result<(), Status> {
    let reference = Reference::parse(input).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let platform = if platform.is_empty() {
        Platform::host()
    } else {
        Platform::parse(platform)
            .map_err(|e| Status::invalid_argument(format!("--platform {platform:?}: {e}")))?
    };
    let _ = tx
        .send(Ok(PullProgress {
            message: format!(
                "{}: Pulling from {}",
                reference.tag_or_digest(),
                reference.repository()
            ),
            ..Default::default()
        }))
        .await;
    let (index, manifest) = d
        .registry
        .get_image_manifest(&reference, &platform)
        .await
        .map_err(registry_status)?;
    let image_manifest = manifest
        .image()
        .map_err(|e| Status::failed_precondition(format!("pull {}: {e}", reference.familiar())))?;
    // The config names the layers' uncompressed digests, which name the snapshots.
    let config_desc = image_manifest.config.clone();
    let config = fetch_small(d, &reference, &config_desc).await?;
    let config_json: serde_json::Value = serde_json::from_slice(&config).map_err(|e| {
        Status::failed_precondition(format!(
            "pull {}: config {} is not JSON: {e}",
            reference.familiar(),
            config_desc.digest
        ))
    })?;
    let diff_ids: Vec<Digest> = config_json["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()?.parse().ok()).collect())
        .unwrap_or_default();
    if diff_ids.len() != image_manifest.layers.len() {
        return Err(Status::failed_precondition(format!(
            "pull {}: the manifest has {} layers but the config {} lists {} diff_ids",
            reference.familiar(),
            image_manifest.layers.len(),
            config_desc.digest,
            diff_ids.len()
        )));
    }
    let chains = chain_ids(&diff_ids);

    // Every layer at once: they unpack into separate directories.
    let mut tasks = Vec::new();
    for (i, desc) in image_manifest.layers.iter().enumerate() {
        let job = LayerJob {
            reference: reference.clone(),
            desc: desc.clone(),
            diff_id: diff_ids[i].clone(),
            chain: chains[i].clone(),
            parent: (i > 0).then(|| chains[i - 1].clone()),
        };
        let (d, tx) = (d.clone(), tx.clone());
        tasks.push(tokio::spawn(async move { job.run(&d, &tx).await }));
    }
    let mut first_err = None;
    for t in tasks {
        let r = t
            .await
            .map_err(|e| Status::internal(format!("layer task: {e}")))
            .and_then(|r| r);
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }

    // The manifest (or the index, which is what the tag names) and the image record, with
    // its tag, in one transaction.
    let top = index.as_ref().unwrap_or(&manifest);
    let repo_digest = format!("{}@{}", reference.name(), top.digest);
    let record = ImageRecord {
        id: config_desc.digest.clone(),
        manifest: manifest.digest.clone(),
        manifest_media_type: manifest.media_type().to_string(),
        layers: image_manifest
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
            .collect(),
        repo_digests: vec![repo_digest],
        added: crate::daemon::now_rfc3339(),
        parent: None,
    };
    let (dd, m_bytes, idx_bytes, tag) = (
        d.clone(),
        manifest.bytes.clone(),
        index.as_ref().map(|i| i.bytes.clone()),
        reference.tag().map(|_| reference.to_string()),
    );
    let rec = record.clone();
    tokio::task::spawn_blocking(move || -> Result<(), Status> {
        let store = &dd.store;
        store
            .content
            .put(&m_bytes)
            .map_err(|e| internal("store manifest")(e.to_string()))?;
        if let Some(i) = idx_bytes {
            store
                .content
                .put(&i)
                .map_err(|e| internal("store index")(e.to_string()))?;
        }
        store
            .meta
            .write(|t| {
                t.put_image(&rec)?;
                if let Some(tag) = &tag {
                    t.set_tag(tag, &rec.id)?;
                }
                Ok::<_, crate::store::meta::MetaError>(())
            })
            .map_err(|e| internal("record image")(e.to_string()))
    })
    .await
    .map_err(|e| Status::internal(e.to_string()))??;

    let _ = tx
        .send(Ok(PullProgress {
            done: true,
            image_id: record.id.to_string(),
            digest: top.digest.to_string(),
            message: format!("Digest: {}", top.digest),
            ..Default::default()
        }))
        .await;
    Ok(())
}

/// A config (small) blob: from the store when there, else fetched, verified and stored.
async fn fetch_small(
    d: &Arc<Daemon>,
    reference: &Reference,
    desc: &Descriptor,
) -> Result<Vec<u8>, Status> {
    if let Ok(b) = d.store.content.read(&desc.digest) {
        return Ok(b);
    }
    let mut s = d
        .registry
        .fetch_blob(reference, &desc.digest, 0)
        .await
        .map_err(registry_status)?;
    let mut buf = Vec::with_capacity(desc.size as usize);
    while let Some(chunk) = s.next().await {
        buf.extend_from_slice(&chunk.map_err(registry_status)?);
        if buf.len() as u64 > desc.size.max(1 << 20) * 4 {
            return Err(Status::failed_precondition(format!(
                "blob {}: far more than the {} bytes the manifest announced",
                desc.digest, desc.size
            )));
        }
    }
    let got = Digest::of(&buf);
    if got != desc.digest {
        return Err(Status::failed_precondition(format!(
            "blob {}: the content has digest {got}; discarded",
            desc.digest
        )));
    }
    let dd = d.clone();
    let data = buf.clone();
    tokio::task::spawn_blocking(move || dd.store.content.put(&data))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(e.to_string()))?;
    Ok(buf)
}

struct LayerJob {
    reference: Reference,
    desc: Descriptor,
    diff_id: Digest,
    chain: Digest,
    parent: Option<Digest>,
}

impl LayerJob {
    fn short(&self) -> String {
        self.desc.digest.short().to_string()
    }

    async fn run(self, d: &Arc<Daemon>, tx: &Progress) -> Result<(), Status> {
        let id = self.short();
        // One fetch per layer at a time across every pull of this daemon.
        let lock = d.layer_lock(&self.chain);
        let _guard = lock.lock().await;
        if d.store
            .meta
            .snapshot(&self.chain)
            .map_err(|e| Status::internal(e.to_string()))?
            .is_some()
        {
            send(tx, &id, "exists", 0, self.desc.size).await;
            return Ok(());
        }
        send(tx, &id, "waiting", 0, self.desc.size).await;
        let res = self.fetch_and_unpack(d, tx).await;
        d.release_layer_lock(&self.chain);
        res?;
        send(tx, &id, "complete", self.desc.size, self.desc.size).await;
        Ok(())
    }

    /// The snapshots below this layer, nearest first, when they are all unpacked already (a
    /// base shared with an image pulled before): a directory the layer uses without listing
    /// it then takes their owner and mode, as containerd's applier does. Layers of one pull
    /// unpack side by side and cannot wait for each other; image builders list every
    /// parent directory, so this only matters for hand-made layers.
    fn parent_dirs(&self, d: &Daemon) -> Vec<std::path::PathBuf> {
        let Some(p) = &self.parent else {
            return Vec::new();
        };
        d.store
            .meta
            .chain(p)
            .map(|chain| chain.iter().map(|s| d.store.snapshots.fs(s.dir)).collect())
            .unwrap_or_default()
    }

    async fn fetch_and_unpack(&self, d: &Arc<Daemon>, tx: &Progress) -> Result<(), Status> {
        match self.try_fetch_and_unpack(d, tx).await {
            Err(Retry::FromZero) => {
                // The registry ignored the Range request of a resumed download: the kept
                // prefix is dropped and the layer fetched once more from byte 0.
                d.store.content.remove_partial(&self.desc.digest);
                match self.try_fetch_and_unpack(d, tx).await {
                    Ok(()) => Ok(()),
                    Err(Retry::FromZero) => Err(Status::unavailable(format!(
                        "blob {}: the registry restarted the download twice",
                        self.desc.digest
                    ))),
                    Err(Retry::Fail(s)) => Err(s),
                }
            }
            Err(Retry::Fail(s)) => Err(s),
            Ok(()) => Ok(()),
        }
    }

    async fn try_fetch_and_unpack(&self, d: &Arc<Daemon>, tx: &Progress) -> Result<(), Retry> {
        let started = std::time::Instant::now();
        let id = self.short();
        let digest = self.desc.digest.clone();
        let size = self.desc.size;
        let dd = d.clone();
        let tmp = tokio::task::spawn_blocking(move || dd.store.snapshots.temp())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("snapshot directory: {e}")))?;
        let dest = tmp.path().join("fs");

        // The blocking side writes what the download sends into the content store and
        // unpacks the same bytes; a blob already stored is unpacked from disk.
        let (chunks_tx, chunks_rx) = mpsc::channel::<Bytes>(64);
        let (offset_tx, offset_rx) = tokio::sync::oneshot::channel::<u64>();
        let stored = d.store.content.contains(&digest);
        let parents = self.parent_dirs(d);
        let (dd, dg) = (d.clone(), digest.clone());
        let unpacker = tokio::task::spawn_blocking(move || {
            let opts = UnpackOptions::new(dg.to_string()).with_parents(parents);
            if stored {
                let report = dd
                    .store
                    .content
                    .open_blob(&dg)
                    .map_err(|e| e.to_string())
                    .and_then(|f| {
                        unpack(io::BufReader::with_capacity(1 << 20, f), &dest, &opts)
                            .map_err(|e| e.to_string())
                    });
                return (report, None);
            }
            let ingest = match dd.store.content.ingest(&dg, Some(size)) {
                Ok(i) => i,
                Err(e) => return (Err(e.to_string()), None),
            };
            let offset = ingest.offset();
            let _ = offset_tx.send(offset);
            let prefix = match std::fs::File::open(dd.store.content.partial_path(&dg)) {
                Ok(f) => f.take(offset),
                Err(e) => {
                    let e = format!("blob {dg}: open partial download: {e}");
                    return (Err(e), Some(ingest));
                }
            };
            let mut tee = Tee {
                prefix,
                rx: chunks_rx,
                ingest,
                cur: Bytes::new(),
                failed: None,
            };
            let report = unpack(&mut tee, &dest, &opts);
            // Whatever the unpacker made of it, the rest of the download still goes to the
            // store, so that a wrong blob is told apart from a hostile layer.
            let mut rest = vec![0u8; 1 << 16];
            while tee.failed.is_none() && matches!(tee.read(&mut rest), Ok(n) if n > 0) {}
            if let Some(e) = tee.failed.take() {
                let e = format!("blob {dg}: write to the content store: {e}");
                return (Err(e), Some(tee.ingest));
            }
            (report.map_err(|e| e.to_string()), Some(tee.ingest))
        });

        if !stored {
            let offset = offset_rx.await.unwrap_or(0);
            if offset > 0 {
                let _ = tx
                    .send(Ok(PullProgress {
                        id: id.clone(),
                        status: "downloading".into(),
                        current: offset,
                        total: size,
                        resumed: offset,
                        ..Default::default()
                    }))
                    .await;
            }
            let download = self.download(d, tx, &id, size, offset, chunks_tx).await;
            if let Err(e) = download {
                // The unpacker sees the pipe close early and fails; its error is not the cause.
                let _ = unpacker.await;
                return Err(e);
            }
        } else {
            drop(chunks_tx);
        }
        tracing::debug!(layer = %digest, "downloaded after {:?}", started.elapsed());
        send(tx, &id, "extracting", size, size).await;
        let (report, ingest): (Result<crate::layer::UnpackReport, String>, Option<Ingest>) =
            unpacker
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
        if let Some(ingest) = ingest {
            // A wrong blob is the cause of whatever the unpacker said about it.
            tracing::debug!(layer = %digest, "unpacked after {:?}", started.elapsed());
            tokio::task::spawn_blocking(move || ingest.commit())
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(|e| Status::failed_precondition(e.to_string()))?;
        }
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                // A blob that is what the registry promised but not a layer we take: it
                // goes, nothing of it stays in the store.
                let _ = d.store.content.remove(&digest);
                return Err(Status::failed_precondition(e).into());
            }
        };
        if report.diff_id != self.diff_id {
            let _ = d.store.content.remove(&digest);
            return Err(Status::failed_precondition(format!(
                "layer {digest}: its content has diff_id {} but the image config says {}",
                report.diff_id, self.diff_id
            ))
            .into());
        }
        let (dd, chain, parent, diff_id) = (
            d.clone(),
            self.chain.clone(),
            self.parent.clone(),
            self.diff_id.clone(),
        );
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            tracing::debug!("blob committed after {:?}", started.elapsed());
            let disk_size = disk_usage(&tmp.path().join("fs"));
            let store = &dd.store;
            let n = store
                .meta
                .write(|t| t.next_dir())
                .map_err(|e| e.to_string())?;
            store
                .snapshots
                .commit_temp(tmp, n)
                .map_err(|e| format!("snapshot {n}: {e}"))?;
            store
                .meta
                .write(|t| {
                    t.put_snapshot(&SnapshotRecord {
                        chain_id: chain,
                        parent,
                        dir: n,
                        diff_id,
                        disk_size,
                        refs: 0,
                    })
                })
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(internal("record layer"))?;
        Ok(())
    }

    /// Fetch the blob from `start` on into `pipe`, resuming after a broken connection. A
    /// large blob fetched from the beginning comes in parallel byte ranges where the
    /// registry serves them: the first range streams into the pipe, the others into files
    /// of their own, which follow it into the pipe in order.
    async fn download(
        &self,
        d: &Arc<Daemon>,
        tx: &Progress,
        id: &str,
        size: u64,
        start: u64,
        pipe: mpsc::Sender<Bytes>,
    ) -> Result<(), Retry> {
        let done = Arc::new(AtomicU64::new(start));
        let reporter = {
            let (tx, id, done) = (tx.clone(), id.to_string(), done.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    send(&tx, &id, "downloading", done.load(Ordering::Relaxed), size).await;
                }
            })
        };
        let span = Span {
            d: d.clone(),
            reference: self.reference.clone(),
            digest: self.desc.digest.clone(),
            size,
            done: done.clone(),
        };
        let parts = if start == 0 && size >= d.range_threshold {
            span.parts().await
        } else {
            Vec::new()
        };
        let res = if parts.len() > 1 {
            self.download_parts(&span, &parts, &pipe).await
        } else {
            span.fetch(start, size, Sink::Pipe(&pipe)).await
        };
        reporter.abort();
        res?;
        // In Docker's order; the digest itself is checked when the blob is committed.
        send(tx, id, "verifying", size, size).await;
        send(tx, id, "downloaded", size, size).await;
        Ok(())
    }

    async fn download_parts(
        &self,
        span: &Span,
        parts: &[(u64, u64)],
        pipe: &mpsc::Sender<Bytes>,
    ) -> Result<(), Retry> {
        let dir = span.d.store.content.ingest_dir().to_path_buf();
        let mut later = Vec::new();
        for (i, &(from, to)) in parts.iter().enumerate().skip(1) {
            // Named so that a crash leaves them to the start-up sweep, never to a resume.
            let path = dir.join(format!("{}.part{i}", span.digest.hex()));
            let s = span.clone();
            later.push((
                path.clone(),
                tokio::spawn(async move {
                    let mut f = tokio::fs::File::create(&path)
                        .await
                        .map_err(|e| Status::internal(format!("{}: {e}", path.display())))?;
                    s.fetch(from, to, Sink::File(&mut f)).await
                }),
            ));
        }
        let (first_from, first_to) = parts[0];
        let first = span.fetch(first_from, first_to, Sink::Pipe(pipe)).await;
        let mut result = first;
        for (path, task) in later {
            if result.is_ok() {
                result = match task.await {
                    Ok(r) => r,
                    Err(e) => Err(Status::internal(e.to_string()).into()),
                };
            } else {
                task.abort();
            }
            if result.is_ok() {
                result = feed_file(&path, pipe).await;
            }
            let _ = tokio::fs::remove_file(&path).await;
        }
        result
    }
}

/// One blob's download: what every range of it shares.
#[derive(Clone)]
struct Span {
    d: Arc<Daemon>,
    reference: Reference,
    digest: Digest,
    size: u64,
    /// Bytes fetched so far, all ranges together, for progress.
    done: Arc<AtomicU64>,
}

/// Where a range of a blob goes.
enum Sink<'a> {
    Pipe(&'a mpsc::Sender<Bytes>),
    File(&'a mut tokio::fs::File),
}

/// How many ranges a large blob is fetched in.
const RANGES: u64 = 4;

impl Span {
    /// The ranges to fetch side by side, or none when the registry does not serve ranges.
    async fn parts(&self) -> Vec<(u64, u64)> {
        match self
            .d
            .registry
            .fetch_range(&self.reference, &self.digest, 0, 0)
            .await
        {
            Ok(_) => {
                let step = self.size.div_ceil(RANGES);
                (0..RANGES)
                    .map(|i| (i * step, ((i + 1) * step).min(self.size)))
                    .filter(|(a, b)| a < b)
                    .collect()
            }
            Err(e) => {
                tracing::debug!("{e}; one stream for {}", self.digest);
                Vec::new()
            }
        }
    }

    /// Bytes `from..to` of the blob into `sink`, resuming after a broken connection.
    async fn fetch(&self, from: u64, to: u64, mut sink: Sink<'_>) -> Result<(), Retry> {
        let mut offset = from;
        let mut attempts = 0;
        while offset < to {
            let stream = if to < self.size {
                self.d
                    .registry
                    .fetch_range(&self.reference, &self.digest, offset, to - 1)
                    .await
            } else {
                self.d
                    .registry
                    .fetch_blob(&self.reference, &self.digest, offset)
                    .await
            };
            let mut stream = match stream {
                Ok(s) => s,
                Err(e) if attempts < RESUME_ATTEMPTS && e.status().is_none() => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempts))).await;
                    continue;
                }
                Err(e) => return Err(registry_status(e).into()),
            };
            if stream.range_ignored() && offset > 0 {
                return Err(Retry::FromZero);
            }
            let mut broke = None;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(mut bytes) => {
                        // A ranged answer may run past the end asked for; keep what is ours.
                        bytes.truncate((to - offset).min(bytes.len() as u64) as usize);
                        offset += bytes.len() as u64;
                        self.done.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                        let sent = match &mut sink {
                            Sink::Pipe(p) => p.send(bytes).await.is_ok(),
                            Sink::File(f) => f.write_all(&bytes).await.is_ok(),
                        };
                        if !sent {
                            // The unpacker stopped (its error says why) or the disk failed.
                            return match sink {
                                Sink::Pipe(_) => Ok(()),
                                Sink::File(_) => Err(Status::internal(format!(
                                    "blob {}: write a range to disk",
                                    self.digest
                                ))
                                .into()),
                            };
                        }
                        if offset >= to {
                            break;
                        }
                    }
                    Err(e) => {
                        broke = Some(e);
                        break;
                    }
                }
            }
            if broke.is_none() && offset < to {
                broke = Some(registry::Error::new(
                    "fetch",
                    format!("{}@{}", self.reference.name(), self.digest),
                    registry::ErrorKind::Interrupted {
                        digest: self.digest.clone(),
                        received: offset,
                        expected: Some(self.size),
                        detail: "the stream ended early".into(),
                    },
                ));
            }
            match broke {
                None => break,
                Some(e) if attempts < RESUME_ATTEMPTS => {
                    attempts += 1;
                    tracing::info!("{e}; resuming at {offset}");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempts))).await;
                }
                Some(e) => return Err(registry_status(e).into()),
            }
        }
        if let Sink::File(f) = sink {
            f.flush()
                .await
                .map_err(|e| Status::internal(format!("blob {}: {e}", self.digest)))?;
        }
        Ok(())
    }
}

/// Send a finished range file down the pipe.
async fn feed_file(path: &std::path::Path, pipe: &mpsc::Sender<Bytes>) -> Result<(), Retry> {
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| Status::internal(format!("{}: {e}", path.display())))?;
    loop {
        let mut buf = vec![0u8; 1 << 20];
        let n = f
            .read(&mut buf)
            .await
            .map_err(|e| Status::internal(format!("{}: {e}", path.display())))?;
        if n == 0 {
            return Ok(());
        }
        buf.truncate(n);
        if pipe.send(Bytes::from(buf)).await.is_err() {
            return Ok(());
        }
    }
}

/// Why a layer attempt stopped.
enum Retry {
    /// Start the layer again from byte 0.
    FromZero,
    Fail(Status),
}

impl From<Status> for Retry {
    fn from(s: Status) -> Retry {
        Retry::Fail(s)
    }
}

/// What the unpacker reads: the kept prefix of a resumed blob, then the chunks the download
/// sends, each appended to the content store's ingest file (which hashes it) on the way.
struct Tee {
    prefix: io::Take<std::fs::File>,
    rx: mpsc::Receiver<Bytes>,
    ingest: Ingest,
    cur: Bytes,
    failed: Option<io::Error>,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.prefix.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => {
                    if let Err(e) = io::Write::write_all(&mut self.ingest, &b) {
                        let err = io::Error::new(e.kind(), e.to_string());
                        self.failed = Some(e);
                        return Err(err);
                    }
                    self.cur = b;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}
