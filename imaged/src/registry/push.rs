//! Blob uploads: a cross-repository mount when the registry already has the blob elsewhere,
//! else an upload session (POST) filled in one streamed PUT or, above a size threshold, in
//! PATCHed chunks closed by a PUT. Sources are readers, so a blob is never held whole in
//! memory: a monolithic upload streams it, a chunked one holds one chunk at a time.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{StatusCode, Url};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::io::ReaderStream;

use super::auth::Scope;
use super::error::{from_response, Error, ErrorKind};
use super::{header_str, Endpoint, RegistryClient};
use crate::digest::Digest;
use crate::reference::Reference;

const OCTET_STREAM: &str = "application/octet-stream";

/// An upload session the registry opened: where to send the next request.
struct Session {
    location: Url,
    /// `OCI-Chunk-Min-Length`: the smallest chunk the registry takes, when it says.
    min_chunk: Option<usize>,
}

impl RegistryClient {
    /// Asks the registry to link blob `digest` from repository `from` into `target`
    /// without sending it. True when it did (201); false when it answered with an upload
    /// session instead (202: it lacks the blob, or mounts are off), which is closed again,
    /// or when `from` is in another registry.
    pub async fn mount_blob(
        &self,
        target: &Reference,
        digest: &Digest,
        from: &Reference,
    ) -> Result<bool, Error> {
        if from.registry() != target.registry() {
            return Ok(false);
        }
        let shown = format!("{}@{digest}", target.name());
        let fail = |kind| Error::new("mount", &shown, kind);
        let ep = self.origin(target.registry());
        let scope = Scope::push(target.repository()).and_pull(from.repository());
        let mut url = upload_url(&ep, target).map_err(fail)?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from.repository());
        let resp = self
            .send(&ep, &scope, &|| {
                self.http.post(url.clone()).header(CONTENT_LENGTH, "0")
            })
            .await
            .map_err(fail)?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                if let Ok(loc) = session_location(&resp, &url) {
                    self.cancel_upload(&ep, &scope, loc).await;
                }
                Ok(false)
            }
            _ => Err(fail(from_response(resp).await)),
        }
    }

    /// Uploads blob `digest` of `size` bytes from `source` into `target`'s repository: in
    /// chunks when `size` exceeds the configured threshold, else in one streamed PUT. The
    /// registry checks the digest; a source that gives other bytes fails the upload.
    pub async fn push_blob<R>(
        &self,
        target: &Reference,
        digest: &Digest,
        size: u64,
        source: R,
    ) -> Result<(), Error>
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        if size > self.config.chunk_threshold {
            self.push_blob_chunked(target, digest, size, source, self.config.chunk_size)
                .await
        } else {
            self.push_blob_monolithic(target, digest, size, source)
                .await
        }
    }

    /// POST for a session, then one PUT carrying the whole blob, streamed from `source`.
    pub async fn push_blob_monolithic<R>(
        &self,
        target: &Reference,
        digest: &Digest,
        size: u64,
        source: R,
    ) -> Result<(), Error>
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let shown = format!("{}@{digest}", target.name());
        let fail = |kind| Error::new("push", &shown, kind);
        let ep = self.origin(target.registry());
        let scope = Scope::push(target.repository());
        let session = self.start_upload(&ep, &scope, target).await.map_err(fail)?;
        let mut url = session.location.clone();
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        // A read error of the source surfaces as a failed request; keep the reader's own
        // error to report that instead of a transport error.
        let read_error: Arc<Mutex<Option<std::io::Error>>> = Arc::default();
        let slot = read_error.clone();
        let body = ReaderStream::with_capacity(source.take(size), 256 << 10).map(move |r| {
            r.inspect_err(|e| {
                *slot.lock().unwrap() = Some(std::io::Error::new(e.kind(), e.to_string()));
            })
        });
        let req = self
            .http
            .put(url)
            .header(CONTENT_TYPE, OCTET_STREAM)
            .header(CONTENT_LENGTH, size.to_string())
            .body(reqwest::Body::wrap_stream(body));
        let result = self.send_once(&ep, &scope, req).await;
        let read_failure = read_error.lock().unwrap().take();
        if let Some(e) = read_failure {
            self.cancel_upload(&ep, &scope, session.location).await;
            return Err(fail(ErrorKind::Source(format!("reading the blob: {e}"))));
        }
        let resp = match result {
            Ok(r) => r,
            Err(kind) => {
                self.cancel_upload(&ep, &scope, session.location).await;
                return Err(fail(kind));
            }
        };
        if resp.status() != StatusCode::CREATED {
            let kind = from_response(resp).await;
            self.cancel_upload(&ep, &scope, session.location).await;
            return Err(fail(kind));
        }
        Ok(())
    }

    /// POST for a session, a PATCH per chunk of `chunk_size` bytes (or the registry's
    /// minimum, if larger) with its `Content-Range`, then a PUT with the digest.
    pub async fn push_blob_chunked<R>(
        &self,
        target: &Reference,
        digest: &Digest,
        size: u64,
        mut source: R,
        chunk_size: usize,
    ) -> Result<(), Error>
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let shown = format!("{}@{digest}", target.name());
        let fail = |kind| Error::new("push", &shown, kind);
        let ep = self.origin(target.registry());
        let scope = Scope::push(target.repository());
        let session = self.start_upload(&ep, &scope, target).await.map_err(fail)?;
        let chunk_size = chunk_size.max(session.min_chunk.unwrap_or(0)).max(1);
        let mut location = session.location;
        let result: Result<Url, ErrorKind> = async {
            let mut offset: u64 = 0;
            loop {
                let chunk = read_chunk(&mut source, chunk_size)
                    .await
                    .map_err(|e| ErrorKind::Source(format!("reading the blob: {e}")))?;
                if chunk.is_empty() {
                    break;
                }
                let len = chunk.len() as u64;
                if offset + len > size {
                    return Err(ErrorKind::Source(format!(
                        "the source has more than the {size} bytes announced"
                    )));
                }
                let range = format!("{offset}-{}", offset + len - 1);
                let url = location.clone();
                let resp = self
                    .send(&ep, &scope, &|| {
                        self.http
                            .patch(url.clone())
                            .header(CONTENT_TYPE, OCTET_STREAM)
                            .header("content-range", &range)
                            .header(CONTENT_LENGTH, len.to_string())
                            .body(chunk.clone())
                    })
                    .await?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(from_response(resp).await);
                }
                location = session_location(&resp, &url)?;
                offset += len;
                if (len as usize) < chunk_size {
                    break;
                }
            }
            if offset != size {
                return Err(ErrorKind::Source(format!(
                    "the source ended after {offset} of {size} bytes"
                )));
            }
            Ok(location.clone())
        }
        .await;
        let last = match result {
            Ok(l) => l,
            Err(kind) => {
                self.cancel_upload(&ep, &scope, location).await;
                return Err(fail(kind));
            }
        };
        let mut url = last.clone();
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let resp = self
            .send(&ep, &scope, &|| {
                self.http
                    .put(url.clone())
                    .header(CONTENT_TYPE, OCTET_STREAM)
                    .header(CONTENT_LENGTH, "0")
            })
            .await
            .map_err(fail)?;
        if resp.status() != StatusCode::CREATED {
            let kind = from_response(resp).await;
            self.cancel_upload(&ep, &scope, last).await;
            return Err(fail(kind));
        }
        Ok(())
    }

    async fn start_upload(
        &self,
        ep: &Endpoint,
        scope: &Scope,
        target: &Reference,
    ) -> Result<Session, ErrorKind> {
        let url = upload_url(ep, target)?;
        let resp = self
            .send(ep, scope, &|| {
                self.http.post(url.clone()).header(CONTENT_LENGTH, "0")
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(from_response(resp).await);
        }
        let min_chunk = header_str(&resp, "oci-chunk-min-length").and_then(|v| v.parse().ok());
        Ok(Session {
            location: session_location(&resp, &url)?,
            min_chunk,
        })
    }

    /// Ends an upload session that will not be completed, so the registry can free it.
    /// Best effort: the registry also expires abandoned sessions.
    async fn cancel_upload(&self, ep: &Endpoint, scope: &Scope, location: Url) {
        let result = self
            .send(ep, scope, &|| self.http.delete(location.clone()))
            .await;
        if let Err(e) = result {
            tracing::debug!(%location, error = %e, "cancelling an upload session failed");
        }
    }
}

fn upload_url(ep: &Endpoint, target: &Reference) -> Result<Url, ErrorKind> {
    let s = format!("{}/v2/{}/blobs/uploads/", ep.base, target.repository());
    Url::parse(&s).map_err(|e| ErrorKind::InvalidResponse(format!("{s}: {e}")))
}

/// The session URL a response gives, resolved against the request's URL (registries send
/// both absolute and relative ones).
fn session_location(resp: &reqwest::Response, request: &Url) -> Result<Url, ErrorKind> {
    let loc = header_str(resp, LOCATION.as_str()).ok_or_else(|| {
        ErrorKind::InvalidResponse(format!(
            "HTTP {} without a Location header",
            resp.status().as_u16()
        ))
    })?;
    request
        .join(&loc)
        .map_err(|e| ErrorKind::InvalidResponse(format!("Location {loc:?}: {e}")))
}

/// Reads until `size` bytes or the end of `source`.
async fn read_chunk<R: AsyncRead + Unpin>(source: &mut R, size: usize) -> std::io::Result<Bytes> {
    let mut buf = BytesMut::zeroed(size);
    let mut filled = 0;
    while filled < size {
        let n = source.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(buf.freeze())
}
