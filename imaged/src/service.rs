//! The gRPC service (`berth.imaged.v1.Images`) over the store, the registry client and the
//! layer code. The store is synchronous (redb and the file system), so every call into it
//! runs on tokio's blocking pool.

use std::pin::Pin;
use std::sync::Arc;

use berth_proto::imaged as pb;
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::archive::{self, ChannelReader, ChunkSender};

use crate::daemon::Daemon;
use crate::images::{ImageError, Summary};
use crate::store::active::ActiveError;
use crate::store::snapshots::OverlayMount;

pub const API: &str = "berth.imaged.v1";

pub struct ImagesService {
    daemon: Arc<Daemon>,
}

impl ImagesService {
    pub fn new(daemon: Arc<Daemon>) -> ImagesService {
        ImagesService { daemon }
    }

    /// Run a store operation on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Daemon) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let d = self.daemon.clone();
        tokio::task::spawn_blocking(move || f(&d))
            .await
            .map_err(|e| Status::internal(format!("imaged task failed: {e}")))?
    }
}

pub fn image_status(e: ImageError) -> Status {
    match e {
        ImageError::NotFound(_) => Status::not_found(e.to_string()),
        ImageError::Reference(_) => Status::invalid_argument(e.to_string()),
        ImageError::Conflict(_) => Status::failed_precondition(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}

pub fn active_status(e: ActiveError) -> Status {
    match e {
        ActiveError::NotFound(_) => Status::not_found(e.to_string()),
        ActiveError::Exists(_) => Status::already_exists(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}

fn summary(s: Summary) -> pb::ImageSummary {
    pb::ImageSummary {
        id: s.id.to_string(),
        repo_tags: s.repo_tags,
        repo_digests: s.repo_digests,
        created: s.created,
        size: s.size,
        shared_size: s.shared_size,
        containers: s.containers,
    }
}

fn mounts(m: OverlayMount, base: &std::path::Path, image_id: String) -> pb::Mounts {
    pb::Mounts {
        lowers: m.lowers.iter().map(|p| p.display().to_string()).collect(),
        upper: m.upper.display().to_string(),
        work: m.work.display().to_string(),
        options: m.options().unwrap_or_default(),
        relative_options: m.relative_options(base),
        base: base.display().to_string(),
        image_id,
    }
}

/// `docker login` with no server means Docker Hub.
fn registry_or_hub(r: &str) -> String {
    if r.is_empty() {
        crate::reference::DEFAULT_REGISTRY.to_string()
    } else {
        r.to_string()
    }
}

type ProgressStream = Pin<Box<dyn Stream<Item = Result<pb::PullProgress, Status>> + Send>>;
type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::Chunk, Status>> + Send>>;

fn task_failed(e: tokio::task::JoinError) -> Status {
    Status::internal(format!("imaged task failed: {e}"))
}

#[tonic::async_trait]
impl pb::images_server::Images for ImagesService {
    async fn version(
        &self,
        _: Request<pb::VersionRequest>,
    ) -> Result<Response<pb::VersionResponse>, Status> {
        Ok(Response::new(pb::VersionResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            api: API.to_string(),
        }))
    }

    type PullStream = ProgressStream;

    async fn pull(
        &self,
        req: Request<pb::PullRequest>,
    ) -> Result<Response<Self::PullStream>, Status> {
        let req = req.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let d = self.daemon.clone();
        tokio::spawn(async move {
            let res = crate::pull::pull(&d, &req.reference, &req.platform, &tx).await;
            if let Err(e) = res {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type PushStream = ProgressStream;

    async fn push(
        &self,
        req: Request<pb::PushRequest>,
    ) -> Result<Response<Self::PushStream>, Status> {
        let req = req.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let d = self.daemon.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::push::push(&d, &req.reference, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn login(
        &self,
        req: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let req = req.into_inner();
        let registry = registry_or_hub(&req.registry);
        let creds = crate::registry::Credentials::new(req.username, req.password);
        self.daemon
            .registry
            .check_login(&registry, &creds)
            .await
            .map_err(crate::pull::registry_status)?;
        let dir = self.daemon.registry.config().docker_config_dir.clone();
        let path = crate::registry::store_credentials(&dir, &registry, &creds)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::LoginResponse {
            config_file: path.display().to_string(),
        }))
    }

    async fn logout(
        &self,
        req: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let registry = registry_or_hub(&req.into_inner().registry);
        let dir = self.daemon.registry.config().docker_config_dir.clone();
        let removed = crate::registry::remove_credentials(&dir, &registry)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::LogoutResponse { removed }))
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let req = req.into_inner();
        let images = self
            .blocking(move |d| {
                let all = d.store.summaries().map_err(image_status)?;
                crate::filters::images(all, &req.filters, req.all).map_err(Status::invalid_argument)
            })
            .await?;
        Ok(Response::new(pb::ListResponse {
            images: images.into_iter().map(summary).collect(),
        }))
    }

    async fn inspect(
        &self,
        req: Request<pb::InspectRequest>,
    ) -> Result<Response<pb::InspectResponse>, Status> {
        let image = req.into_inner().image;
        let (json, s) = self
            .blocking(move |d| d.store.inspect(&image).map_err(image_status))
            .await?;
        Ok(Response::new(pb::InspectResponse {
            json: json.to_string(),
            summary: Some(summary(s)),
        }))
    }

    async fn history(
        &self,
        req: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryResponse>, Status> {
        let image = req.into_inner().image;
        let entries = self
            .blocking(move |d| d.store.history(&image).map_err(image_status))
            .await?;
        Ok(Response::new(pb::HistoryResponse {
            entries: entries
                .into_iter()
                .map(|e| pb::HistoryEntry {
                    id: e.id,
                    created: e.created,
                    created_by: e.created_by,
                    size: e.size,
                    comment: e.comment,
                    tags: e.tags,
                })
                .collect(),
        }))
    }

    async fn tag(&self, req: Request<pb::TagRequest>) -> Result<Response<pb::TagResponse>, Status> {
        let req = req.into_inner();
        self.blocking(move |d| d.store.tag(&req.source, &req.target).map_err(image_status))
            .await?;
        Ok(Response::new(pb::TagResponse {}))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::RemoveResponse>, Status> {
        let req = req.into_inner();
        let resp = self
            .blocking(move |d| {
                let mut out = pb::RemoveResponse::default();
                for image in &req.images {
                    match d.store.remove(image, req.force) {
                        Ok(lines) => out.lines.extend(lines),
                        Err(e) => out.errors.push(e.to_string()),
                    }
                }
                Ok(out)
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn prune(
        &self,
        req: Request<pb::PruneRequest>,
    ) -> Result<Response<pb::PruneResponse>, Status> {
        let req = req.into_inner();
        let (lines, reclaimed) = self
            .blocking(move |d| d.store.prune(req.all).map_err(image_status))
            .await?;
        Ok(Response::new(pb::PruneResponse { lines, reclaimed }))
    }

    async fn disk_usage(
        &self,
        _: Request<pb::DiskUsageRequest>,
    ) -> Result<Response<pb::DiskUsageResponse>, Status> {
        let u = self
            .blocking(|d| d.store.usage().map_err(image_status))
            .await?;
        Ok(Response::new(pb::DiskUsageResponse {
            images: u.images,
            active_images: u.active_images,
            size: u.total(),
            reclaimable: u.reclaimable,
            blobs: u.blobs,
            snapshots: u.snapshots,
            partial: u.partial,
            containers: u.containers,
            per_image: u.per_image.into_iter().map(summary).collect(),
        }))
    }

    async fn prepare(
        &self,
        req: Request<pb::PrepareRequest>,
    ) -> Result<Response<pb::Mounts>, Status> {
        let req = req.into_inner();
        let m = self
            .blocking(move |d| {
                let img = if req.image.is_empty() {
                    None
                } else {
                    Some(d.store.resolve(&req.image).map_err(image_status)?)
                };
                let top = img.as_ref().and_then(|i| i.top_chain().cloned());
                let id = img.as_ref().map(|i| i.id.clone());
                let m = d
                    .store
                    .prepare(&req.key, top.as_ref(), id.as_ref())
                    .map_err(active_status)?;
                Ok(mounts(
                    m,
                    d.store.snapshots.root(),
                    id.map(|i| i.to_string()).unwrap_or_default(),
                ))
            })
            .await?;
        Ok(Response::new(m))
    }

    async fn get_mounts(
        &self,
        req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<pb::Mounts>, Status> {
        let key = req.into_inner().key;
        let m = self
            .blocking(move |d| {
                let a = d.store.active_record(&key).map_err(active_status)?;
                let m = d.store.mounts(&key).map_err(active_status)?;
                Ok(mounts(
                    m,
                    d.store.snapshots.root(),
                    a.image.map(|i| i.to_string()).unwrap_or_default(),
                ))
            })
            .await?;
        Ok(Response::new(m))
    }

    async fn remove_snapshot(
        &self,
        req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<pb::RemoveSnapshotResponse>, Status> {
        let key = req.into_inner().key;
        self.blocking(move |d| d.store.remove_active(&key).map_err(active_status))
            .await?;
        Ok(Response::new(pb::RemoveSnapshotResponse {}))
    }

    async fn commit(
        &self,
        req: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        let req = req.into_inner();
        let id = self
            .blocking(move |d| crate::commit::commit(d, &req))
            .await?;
        Ok(Response::new(pb::CommitResponse {
            image_id: id.to_string(),
        }))
    }

    async fn changes(
        &self,
        req: Request<pb::ChangesRequest>,
    ) -> Result<Response<pb::ChangesResponse>, Status> {
        let req = req.into_inner();
        let changes = self
            .blocking(move |d| crate::commit::changes(d, &req.key, &req.init_paths))
            .await?;
        Ok(Response::new(pb::ChangesResponse { changes }))
    }

    type SaveStream = ChunkStream;

    async fn save(
        &self,
        req: Request<pb::SaveRequest>,
    ) -> Result<Response<Self::SaveStream>, Status> {
        let req = req.into_inner();
        // Names resolved and blobs opened first: an unknown image is an error status here,
        // not a stream cut short.
        let plan = self
            .blocking(move |d| {
                let format = archive::save::Format::parse(&req.format)?;
                Ok(archive::save::plan(&d.store, &req.images, format)?)
            })
            .await?;
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let mut out = ChunkSender::new(tx);
            match archive::save::write(plan, &mut out) {
                Ok(()) => {
                    let _ = out.finish();
                }
                Err(e) => out.fail(e.into()),
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn load(
        &self,
        req: Request<Streaming<pb::LoadRequest>>,
    ) -> Result<Response<pb::LoadResponse>, Status> {
        let (tx, rx) = mpsc::channel(16);
        let d = self.daemon.clone();
        let task = tokio::task::spawn_blocking(move || {
            archive::load::load(&d, &mut ChannelReader::new(rx))
        });
        archive::stream::forward(req.into_inner(), tx, |m: pb::LoadRequest| m.data.into()).await;
        let lines = task.await.map_err(task_failed)??;
        Ok(Response::new(pb::LoadResponse { lines }))
    }

    async fn import(
        &self,
        req: Request<Streaming<pb::ImportRequest>>,
    ) -> Result<Response<pb::ImportResponse>, Status> {
        let mut stream = req.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("import: the request stream is empty"))?;
        let opts =
            archive::import::ImportOptions::new(&first.reference, &first.changes, &first.message)?;
        let (tx, rx) = mpsc::channel(16);
        if !first.data.is_empty() {
            let _ = tx.send(Ok(first.data.into())).await;
        }
        let d = self.daemon.clone();
        let task = tokio::task::spawn_blocking(move || {
            archive::import::import(&d, &opts, &mut ChannelReader::new(rx))
        });
        archive::stream::forward(stream, tx, |m: pb::ImportRequest| m.data.into()).await;
        let id = task.await.map_err(task_failed)??;
        Ok(Response::new(pb::ImportResponse {
            image_id: id.to_string(),
        }))
    }

    type ExportStream = ChunkStream;

    async fn export(
        &self,
        req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let key = req.into_inner().key;
        let (ready, rx) = archive::export::start(self.daemon.clone(), key.clone());
        ready
            .await
            .map_err(|_| Status::internal(format!("export {key}: the export thread ended")))??;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
