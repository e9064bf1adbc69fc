//! `push`: the image's own manifest, config and layer blobs, as pulled or committed, so a
//! registry ends up with the same digests. Blobs the registry has are skipped, blobs another
//! repository of the same registry has are mounted, the rest uploaded (chunked when large).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::imaged::PullProgress;
use bytes::Bytes;
use tonic::Status;

use crate::daemon::Daemon;
use crate::digest::Digest;
use crate::pull::{registry_status, send, Progress};
use crate::reference::Reference;
use crate::service::image_status;

pub async fn push(d: &Arc<Daemon>, input: &str, tx: &Progress) -> Result<(), Status> {
    let target = Reference::parse(input).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let dd = d.clone();
    let name = input.to_string();
    let img = tokio::task::spawn_blocking(move || dd.store.resolve(&name))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(image_status)?;
    let manifest = d
        .store
        .content
        .read(&img.manifest)
        .map_err(|e| Status::failed_precondition(format!("push {}: {e}", target.familiar())))?;
    let _ = tx
        .send(Ok(PullProgress {
            message: format!("The push refers to repository [{}]", target.name()),
            ..Default::default()
        }))
        .await;
    // Repositories of the same registry that already hold this image's blobs.
    let sources: Vec<Reference> = img
        .repo_digests
        .iter()
        .filter_map(|r| Reference::parse(r).ok())
        .filter(|r| r.registry() == target.registry() && r.repository() != target.repository())
        .collect();

    let mut blobs: Vec<(Digest, u64)> = img
        .layers
        .iter()
        .map(|l| (l.digest.clone(), l.size))
        .collect();
    let config_size = d.store.content.size(&img.id).unwrap_or(0);
    blobs.push((img.id.clone(), config_size));
    let mut tasks = Vec::new();
    for (digest, size) in blobs {
        let (d, tx, target, sources) = (d.clone(), tx.clone(), target.clone(), sources.clone());
        tasks.push(tokio::spawn(async move {
            push_blob(&d, &tx, &target, &sources, &digest, size).await
        }));
    }
    for t in tasks {
        t.await.map_err(|e| Status::internal(e.to_string()))??;
    }
    let tag = target.tag_or_digest();
    let digest = d
        .registry
        .put_manifest(
            &target,
            &tag,
            &img.manifest_media_type,
            Bytes::from(manifest),
        )
        .await
        .map_err(registry_status)?;
    // The image now also lives at target: record it, as Docker records RepoDigests.
    let (dd, id, repo_digest) = (
        d.clone(),
        img.id.clone(),
        format!("{}@{digest}", target.name()),
    );
    tokio::task::spawn_blocking(move || {
        dd.store.meta.write(|t| {
            if let Some(mut rec) = t.image(&id)? {
                rec.repo_digests = vec![repo_digest];
                t.put_image(&rec)?;
            }
            Ok::<_, crate::store::meta::MetaError>(())
        })
    })
    .await
    .map_err(|e| Status::internal(e.to_string()))?
    .map_err(|e| Status::internal(e.to_string()))?;
    let _ = tx
        .send(Ok(PullProgress {
            done: true,
            image_id: img.id.to_string(),
            digest: digest.to_string(),
            message: format!(
                "{tag}: digest: {digest} size: {}",
                d.store.content.size(&img.manifest).unwrap_or(0)
            ),
            ..Default::default()
        }))
        .await;
    Ok(())
}

async fn push_blob(
    d: &Arc<Daemon>,
    tx: &Progress,
    target: &Reference,
    sources: &[Reference],
    digest: &Digest,
    size: u64,
) -> Result<(), Status> {
    let id = digest.short().to_string();
    send(tx, &id, "preparing", 0, size).await;
    if d.registry
        .blob_exists(target, digest)
        .await
        .map_err(registry_status)?
    {
        send(tx, &id, "exists", size, size).await;
        return Ok(());
    }
    for from in sources {
        if d.registry
            .mount_blob(target, digest, from)
            .await
            .map_err(registry_status)?
        {
            send(tx, &id, "mounted", size, size).await;
            return Ok(());
        }
    }
    let path = d.store.content.path(digest);
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        Status::failed_precondition(format!("push {}: blob {digest}: {e}", target.familiar()))
    })?;
    let sent = Arc::new(AtomicU64::new(0));
    let reader = Counting {
        inner: file,
        sent: sent.clone(),
    };
    // Progress from the byte count while the upload runs.
    let ticker = {
        let (tx, id, sent) = (tx.clone(), id.clone(), sent.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                send(&tx, &id, "pushing", sent.load(Ordering::Relaxed), size).await;
            }
        })
    };
    let res = d.registry.push_blob(target, digest, size, reader).await;
    ticker.abort();
    res.map_err(registry_status)?;
    send(tx, &id, "pushed", size, size).await;
    Ok(())
}

/// An `AsyncRead` that counts what passes, for progress.
struct Counting<R> {
    inner: R,
    sent: Arc<AtomicU64>,
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counting<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}
