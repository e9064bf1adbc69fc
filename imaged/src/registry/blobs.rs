//! Blob downloads as streams of bytes: from an offset (to resume), or one byte range of a
//! blob (to fetch a large one in parallel), with the byte count kept so that a broken
//! connection says where to resume.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::StatusCode;

use super::auth::Scope;
use super::error::{chain, from_response, Error, ErrorKind};
use super::{header_str, RegistryClient, DOCKER_CONTENT_DIGEST};
use crate::digest::Digest;
use crate::reference::Reference;

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// The bytes of a blob from [`BlobStream::start`] on, as the registry sends them. Yields
/// an error naming the digest and the offset reached when the connection breaks or ends
/// early; the caller resumes from [`Error::resume_offset`]. The digest is not checked
/// here: the caller hashes what it stores.
pub struct BlobStream {
    inner: ByteStream,
    target: String,
    digest: Digest,
    start: u64,
    position: u64,
    end: Option<u64>,
    total: Option<u64>,
    range_ignored: bool,
    finished: bool,
}

impl BlobStream {
    /// Offset in the blob of the first byte this stream yields. Less than the offset asked
    /// for when the registry ignored the range (see [`Self::range_ignored`]).
    pub fn start(&self) -> u64 {
        self.start
    }

    /// True when an offset was asked for but the registry sent the whole blob (200, not
    /// 206): the stream starts at 0 and the caller must discard what it had and restart.
    pub fn range_ignored(&self) -> bool {
        self.range_ignored
    }

    /// Offset in the blob of the next byte: `start` plus what has been yielded.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Offset just past the last byte this stream will yield, when the registry said.
    pub fn end(&self) -> Option<u64> {
        self.end
    }

    /// Size of the whole blob, when the registry said (`Content-Range` or `Content-Length`).
    pub fn total_size(&self) -> Option<u64> {
        self.total
    }

    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    fn interrupted(&self, detail: String) -> Error {
        Error::new(
            "fetch",
            &self.target,
            ErrorKind::Interrupted {
                digest: self.digest.clone(),
                received: self.position,
                expected: self.total,
                detail,
            },
        )
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(bytes))) => {
                self.position += bytes.len() as u64;
                if self.end.is_some_and(|end| self.position > end) {
                    self.finished = true;
                    let err = Error::new(
                        "fetch",
                        &self.target,
                        ErrorKind::InvalidResponse(format!(
                            "the registry sent more than the {} bytes it announced",
                            self.end.unwrap_or_default() - self.start
                        )),
                    );
                    return Poll::Ready(Some(Err(err)));
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.finished = true;
                Poll::Ready(Some(Err(self.interrupted(chain(&e)))))
            }
            Poll::Ready(None) => {
                self.finished = true;
                match self.end {
                    Some(end) if self.position < end => Poll::Ready(Some(Err(self.interrupted(
                        format!("the stream ended {} bytes early", end - self.position),
                    )))),
                    _ => Poll::Ready(None),
                }
            }
        }
    }
}

/// A `Content-Range`: the first and last byte sent (none in a 416), and the blob's size
/// (none when `*`).
type ContentRange = (Option<(u64, u64)>, Option<u64>);

/// `bytes <first>-<last>/<total>` (total may be `*`), or `bytes */<total>` for a 416.
fn parse_content_range(v: &str) -> Option<ContentRange> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = total.trim().parse().ok();
    if range.trim() == "*" {
        return Some((None, total));
    }
    let (a, b) = range.split_once('-')?;
    Some((
        Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
        total,
    ))
}

impl RegistryClient {
    /// Streams blob `digest` of `repo` from byte `offset` on (`Range: bytes=offset-` when
    /// offset > 0), through mirrors first and following redirects to storage.
    pub async fn fetch_blob(
        &self,
        repo: &Reference,
        digest: &Digest,
        offset: u64,
    ) -> Result<BlobStream, Error> {
        let target = format!("{}@{digest}", repo.name());
        let fail = |kind| Error::new("fetch", &target, kind);
        let range = (offset > 0).then(|| format!("bytes={offset}-"));
        let resp = self
            .blob_get(repo, digest, range.as_deref())
            .await
            .map_err(fail)?;
        let status = resp.status();
        let length = header_str(&resp, "content-length").and_then(|l| l.parse::<u64>().ok());
        let (start, end, total, range_ignored) = match status {
            StatusCode::PARTIAL_CONTENT => {
                let cr = header_str(&resp, CONTENT_RANGE.as_str()).unwrap_or_default();
                match parse_content_range(&cr) {
                    Some((Some((first, last)), total)) if first == offset => {
                        (first, Some(last + 1), total, false)
                    }
                    _ => {
                        return Err(fail(ErrorKind::InvalidResponse(format!(
                            "asked for bytes {offset}- and got Content-Range {cr:?}"
                        ))))
                    }
                }
            }
            StatusCode::OK => (0, length, length, offset > 0),
            StatusCode::RANGE_NOT_SATISFIABLE => {
                return Err(fail(range_not_satisfiable(&resp)));
            }
            _ => return Err(fail(from_response(resp).await)),
        };
        Ok(BlobStream {
            inner: Box::pin(resp.bytes_stream()),
            target,
            digest: digest.clone(),
            start,
            position: start,
            end,
            total,
            range_ignored,
            finished: false,
        })
    }

    /// Streams bytes `start..=end_inclusive` of a blob, for fetching one large blob in
    /// parallel pieces. A registry that answers with the whole blob gives
    /// [`ErrorKind::RangeNotSupported`]: fetch it in one stream instead.
    pub async fn fetch_range(
        &self,
        repo: &Reference,
        digest: &Digest,
        start: u64,
        end_inclusive: u64,
    ) -> Result<BlobStream, Error> {
        let target = format!("{}@{digest}", repo.name());
        let fail = |kind| Error::new("fetch", &target, kind);
        if end_inclusive < start {
            return Err(fail(ErrorKind::InvalidResponse(format!(
                "empty range {start}-{end_inclusive}"
            ))));
        }
        let range = format!("bytes={start}-{end_inclusive}");
        let resp = self
            .blob_get(repo, digest, Some(&range))
            .await
            .map_err(fail)?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => {}
            StatusCode::OK => return Err(fail(ErrorKind::RangeNotSupported)),
            StatusCode::RANGE_NOT_SATISFIABLE => return Err(fail(range_not_satisfiable(&resp))),
            _ => return Err(fail(from_response(resp).await)),
        }
        let cr = header_str(&resp, CONTENT_RANGE.as_str()).unwrap_or_default();
        let (first, last, total) = match parse_content_range(&cr) {
            Some((Some((a, b)), total)) if a == start && b <= end_inclusive => (a, b, total),
            _ => {
                return Err(fail(ErrorKind::InvalidResponse(format!(
                    "asked for {range} and got Content-Range {cr:?}"
                ))))
            }
        };
        Ok(BlobStream {
            inner: Box::pin(resp.bytes_stream()),
            target,
            digest: digest.clone(),
            start: first,
            position: first,
            end: Some(last + 1),
            total,
            range_ignored: false,
            finished: false,
        })
    }

    async fn blob_get(
        &self,
        repo: &Reference,
        digest: &Digest,
        range: Option<&str>,
    ) -> Result<reqwest::Response, ErrorKind> {
        let path = format!("{}/blobs/{digest}", repo.repository());
        let scope = Scope::pull(repo.repository());
        let resp = self
            .pull_request_with(
                repo.registry(),
                &scope,
                &|s| s.is_success() || s == StatusCode::RANGE_NOT_SATISFIABLE,
                &|http, base| {
                    let req = http.get(format!("{base}/v2/{path}"));
                    match range {
                        Some(r) => req.header(RANGE, r),
                        None => req,
                    }
                },
            )
            .await?;
        // Storage behind a redirect does not send this header; a registry that does must
        // be serving what was asked for.
        if let Some(h) = header_str(&resp, DOCKER_CONTENT_DIGEST) {
            if let Ok(theirs) = h.parse::<Digest>() {
                if &theirs != digest {
                    return Err(ErrorKind::DigestMismatch {
                        expected: digest.clone(),
                        actual: theirs,
                    });
                }
            }
        }
        Ok(resp)
    }

    /// The size of a blob, from a HEAD request (mirrors first).
    pub async fn blob_size(&self, repo: &Reference, digest: &Digest) -> Result<u64, Error> {
        let target = format!("{}@{digest}", repo.name());
        let fail = |kind| Error::new("fetch", &target, kind);
        let path = format!("{}/blobs/{digest}", repo.repository());
        let scope = Scope::pull(repo.repository());
        let resp = self
            .pull_request(repo.registry(), &scope, &|http, base| {
                http.head(format!("{base}/v2/{path}"))
            })
            .await
            .map_err(fail)?;
        // The header, not reqwest's content_length(): that is the body's length, and a
        // HEAD response has none.
        header_str(&resp, "content-length")
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| {
                fail(ErrorKind::InvalidResponse(
                    "HEAD of the blob has no Content-Length".into(),
                ))
            })
    }

    /// Whether the registry (not a mirror: this is for pushing) has blob `digest` in `repo`.
    pub async fn blob_exists(&self, repo: &Reference, digest: &Digest) -> Result<bool, Error> {
        let target = format!("{}@{digest}", repo.name());
        let fail = |kind| Error::new("push", &target, kind);
        let ep = self.origin(repo.registry());
        let url = format!("{}/v2/{}/blobs/{digest}", ep.base, repo.repository());
        let resp = self
            .send(&ep, &Scope::push(repo.repository()), &|| {
                self.http.head(&url)
            })
            .await
            .map_err(fail)?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(fail(from_response(resp).await)),
        }
    }
}

fn range_not_satisfiable(resp: &reqwest::Response) -> ErrorKind {
    let size = header_str(resp, CONTENT_RANGE.as_str())
        .and_then(|cr| parse_content_range(&cr))
        .and_then(|(_, total)| total);
    ErrorKind::RangeNotSatisfiable { size }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_forms() {
        assert_eq!(
            parse_content_range("bytes 1000-1036249/1036250"),
            Some((Some((1000, 1036249)), Some(1036250)))
        );
        assert_eq!(
            parse_content_range("bytes 0-9/*"),
            Some((Some((0, 9)), None))
        );
        assert_eq!(
            parse_content_range("bytes */1036250"),
            Some((None, Some(1036250)))
        );
        assert_eq!(parse_content_range("items 0-9/10"), None);
        assert_eq!(parse_content_range(""), None);
    }
}
