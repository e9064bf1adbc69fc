//! Manifests: the four media types Docker and OCI registries serve today (OCI image manifest
//! and index, Docker schema 2 manifest and manifest list), fetched by tag or digest and
//! checked against the digest of their bytes; pushing them.

use std::collections::BTreeMap;

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::StatusCode;

use super::auth::Scope;
use super::error::{from_response, Error, ErrorKind};
use super::platform::{resolve_platform, Platform};
use super::{header_str, RegistryClient, DOCKER_CONTENT_DIGEST};
use crate::digest::Digest;
use crate::reference::Reference;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Manifests larger than this are refused unread: the OCI distribution spec has registries
/// accept 4 MiB, and a body without end must not fill memory.
pub const MAX_MANIFEST_SIZE: usize = 8 << 20;

/// The manifest media types this client accepts, most preferred first.
const ACCEPTED: [&str; 4] = [
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ManifestKind {
    OciManifest,
    OciIndex,
    DockerManifest,
    DockerManifestList,
}

impl ManifestKind {
    pub fn media_type(self) -> &'static str {
        match self {
            ManifestKind::OciManifest => OCI_MANIFEST,
            ManifestKind::OciIndex => OCI_INDEX,
            ManifestKind::DockerManifest => DOCKER_MANIFEST,
            ManifestKind::DockerManifestList => DOCKER_MANIFEST_LIST,
        }
    }

    pub fn from_media_type(media_type: &str) -> Option<ManifestKind> {
        match media_type {
            OCI_MANIFEST => Some(ManifestKind::OciManifest),
            OCI_INDEX => Some(ManifestKind::OciIndex),
            DOCKER_MANIFEST => Some(ManifestKind::DockerManifest),
            DOCKER_MANIFEST_LIST => Some(ManifestKind::DockerManifestList),
            _ => None,
        }
    }

    /// An index or manifest list: it names other manifests, one per platform.
    pub fn is_index(self) -> bool {
        matches!(
            self,
            ManifestKind::OciIndex | ManifestKind::DockerManifestList
        )
    }
}

/// A manifest as the registry served it: the exact bytes (whose sha256 is its digest), and
/// what kind it is.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub digest: Digest,
    pub kind: ManifestKind,
    pub bytes: Bytes,
}

impl Manifest {
    /// Checks `bytes` and finds their kind from `content_type`, or from the document itself
    /// when the registry sent a generic type (OCI allows manifests without `mediaType`).
    pub fn from_bytes(content_type: Option<&str>, bytes: Bytes) -> Result<Manifest, ErrorKind> {
        let kind = detect_kind(content_type, &bytes)?;
        Ok(Manifest {
            digest: Digest::of(&bytes),
            kind,
            bytes,
        })
    }

    pub fn media_type(&self) -> &'static str {
        self.kind.media_type()
    }

    /// The image manifest (config and layers); an error for an index.
    pub fn image(&self) -> Result<ImageManifest, ErrorKind> {
        if self.kind.is_index() {
            return Err(ErrorKind::InvalidResponse(format!(
                "{} is an index ({}), not an image manifest",
                self.digest,
                self.media_type()
            )));
        }
        serde_json::from_slice(&self.bytes)
            .map_err(|e| ErrorKind::InvalidResponse(format!("image manifest {}: {e}", self.digest)))
    }

    /// The index or manifest list; an error for an image manifest.
    pub fn index(&self) -> Result<ImageIndex, ErrorKind> {
        if !self.kind.is_index() {
            return Err(ErrorKind::InvalidResponse(format!(
                "{} is an image manifest ({}), not an index",
                self.digest,
                self.media_type()
            )));
        }
        serde_json::from_slice(&self.bytes)
            .map_err(|e| ErrorKind::InvalidResponse(format!("index {}: {e}", self.digest)))
    }
}

/// An OCI descriptor (Docker schema 2 uses the same fields).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The fields that tell manifest kinds apart.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
    #[serde(default)]
    layers: Option<serde_json::Value>,
    #[serde(default)]
    fs_layers: Option<serde_json::Value>,
}

fn detect_kind(content_type: Option<&str>, bytes: &[u8]) -> Result<ManifestKind, ErrorKind> {
    let ct = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if ct == DOCKER_SCHEMA1 || ct == DOCKER_SCHEMA1_SIGNED {
        return Err(ErrorKind::Schema1 { media_type: ct });
    }
    let probe: Probe = serde_json::from_slice(bytes)
        .map_err(|e| ErrorKind::InvalidResponse(format!("manifest is not JSON: {e}")))?;
    if let Some(kind) = ManifestKind::from_media_type(&ct) {
        // A document that says it is something else was not served as what it is.
        if let Some(inner) = probe.media_type.as_deref() {
            if inner != ct {
                return Err(ErrorKind::InvalidResponse(format!(
                    "served as {ct} but its mediaType is {inner}"
                )));
            }
        }
        return Ok(kind);
    }
    let generic = matches!(
        ct.as_str(),
        "" | "application/json" | "application/octet-stream" | "text/plain"
    );
    if !generic {
        return Err(ErrorKind::UnsupportedMediaType { media_type: ct });
    }
    // A generic or missing Content-Type: the document decides.
    if probe.schema_version == Some(1) || probe.fs_layers.is_some() {
        return Err(ErrorKind::Schema1 {
            media_type: probe
                .media_type
                .unwrap_or_else(|| DOCKER_SCHEMA1_SIGNED.to_string()),
        });
    }
    if let Some(inner) = probe.media_type.as_deref() {
        return ManifestKind::from_media_type(inner).ok_or_else(|| {
            if inner == DOCKER_SCHEMA1 || inner == DOCKER_SCHEMA1_SIGNED {
                ErrorKind::Schema1 {
                    media_type: inner.to_string(),
                }
            } else {
                ErrorKind::UnsupportedMediaType {
                    media_type: inner.to_string(),
                }
            }
        });
    }
    if probe.manifests.is_some() {
        return Ok(ManifestKind::OciIndex);
    }
    if probe.config.is_some() && probe.layers.is_some() {
        return Ok(ManifestKind::OciManifest);
    }
    Err(ErrorKind::UnsupportedMediaType {
        media_type: if ct.is_empty() {
            "(none)".to_string()
        } else {
            ct
        },
    })
}

impl RegistryClient {
    /// Fetches the manifest `reference` names (by its digest when it has one, else by tag),
    /// from the registry's mirrors first. Its digest is computed from the bytes; a reference
    /// with a digest, and the registry's `Docker-Content-Digest`, must agree with it.
    pub async fn get_manifest(&self, reference: &Reference) -> Result<Manifest, Error> {
        let fail = |kind| Error::new("pull", reference, kind);
        let path = format!(
            "{}/manifests/{}",
            reference.repository(),
            reference.tag_or_digest()
        );
        let scope = Scope::pull(reference.repository());
        let accept = ACCEPTED.join(", ");
        let resp = self
            .pull_request(reference.registry(), &scope, &|http, base| {
                http.get(format!("{base}/v2/{path}"))
                    .header(ACCEPT, accept.as_str())
            })
            .await
            .map_err(fail)?;
        let content_type = header_str(&resp, CONTENT_TYPE.as_str());
        let header_digest = header_str(&resp, DOCKER_CONTENT_DIGEST);
        let bytes = read_manifest_body(resp).await.map_err(fail)?;
        let manifest = Manifest::from_bytes(content_type.as_deref(), bytes).map_err(fail)?;
        let expected = match reference.digest() {
            Some(d) => Some(d.clone()),
            None => header_digest.and_then(|h| h.parse::<Digest>().ok()),
        };
        if let Some(expected) = expected {
            if expected != manifest.digest {
                return Err(fail(ErrorKind::DigestMismatch {
                    expected,
                    actual: manifest.digest,
                }));
            }
        }
        Ok(manifest)
    }

    /// The digest a tag points at, from a HEAD request (no body transferred).
    pub async fn manifest_digest(&self, reference: &Reference) -> Result<Digest, Error> {
        if let Some(d) = reference.digest() {
            return Ok(d.clone());
        }
        let fail = |kind| Error::new("pull", reference, kind);
        let path = format!(
            "{}/manifests/{}",
            reference.repository(),
            reference.tag_or_digest()
        );
        let scope = Scope::pull(reference.repository());
        let accept = ACCEPTED.join(", ");
        let resp = self
            .pull_request(reference.registry(), &scope, &|http, base| {
                http.head(format!("{base}/v2/{path}"))
                    .header(ACCEPT, accept.as_str())
            })
            .await
            .map_err(fail)?;
        match header_str(&resp, DOCKER_CONTENT_DIGEST) {
            Some(d) => d.parse().map_err(|e| {
                fail(ErrorKind::InvalidResponse(format!(
                    "{DOCKER_CONTENT_DIGEST}: {e}"
                )))
            }),
            // Not every registry sends the header on HEAD; the bytes always tell.
            None => Ok(self.get_manifest(reference).await?.digest),
        }
    }

    /// The image manifest for `platform`: `reference`'s manifest when it is one, else the
    /// matching entry of its index (whose manifest is fetched by digest and checked). Also
    /// returns the index when there was one, for callers that record it.
    pub async fn get_image_manifest(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<(Option<Manifest>, Manifest), Error> {
        let top = self.get_manifest(reference).await?;
        if !top.kind.is_index() {
            return Ok((None, top));
        }
        let fail = |kind| Error::new("pull", reference, kind);
        let index = top.index().map_err(fail)?;
        let chosen = resolve_platform(&index, platform).map_err(fail)?;
        let child = self
            .get_manifest(&reference.by_digest(chosen.digest.clone()))
            .await?;
        if child.kind.is_index() {
            return Err(fail(ErrorKind::InvalidResponse(format!(
                "the index entry for {platform} ({}) is itself an index",
                child.digest
            ))));
        }
        Ok((Some(top), child))
    }

    /// Pushes a manifest as `tag_or_digest` (a tag, or the manifest's own digest). Returns
    /// the digest of `bytes`, which the registry's `Docker-Content-Digest` must match.
    pub async fn put_manifest(
        &self,
        target: &Reference,
        tag_or_digest: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest, Error> {
        let shown = format!("{}:{tag_or_digest}", target.name()).replace(":sha256:", "@sha256:");
        let fail = |kind| Error::new("push", &shown, kind);
        let digest = Digest::of(&bytes);
        if let Ok(d) = tag_or_digest.parse::<Digest>() {
            if d != digest {
                return Err(fail(ErrorKind::DigestMismatch {
                    expected: d,
                    actual: digest,
                }));
            }
        }
        let ep = self.origin(target.registry());
        let scope = Scope::push(target.repository());
        let url = format!(
            "{}/v2/{}/manifests/{tag_or_digest}",
            ep.base,
            target.repository()
        );
        let resp = self
            .send(&ep, &scope, &|| {
                self.http
                    .put(&url)
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.clone())
            })
            .await
            .map_err(fail)?;
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            return Err(fail(from_response(resp).await));
        }
        if let Some(h) = header_str(&resp, DOCKER_CONTENT_DIGEST) {
            if let Ok(theirs) = h.parse::<Digest>() {
                if theirs != digest {
                    return Err(fail(ErrorKind::DigestMismatch {
                        expected: digest,
                        actual: theirs,
                    }));
                }
            }
        }
        Ok(digest)
    }

    /// The tags of a repository (`/v2/<name>/tags/list`), following pagination.
    pub async fn list_tags(&self, repository: &Reference) -> Result<Vec<String>, Error> {
        let fail = |kind| Error::new("list tags of", repository.name(), kind);
        #[derive(serde::Deserialize)]
        struct Tags {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let scope = Scope::pull(repository.repository());
        let mut tags = Vec::new();
        let mut next = format!("/v2/{}/tags/list", repository.repository());
        loop {
            let resp = self
                .pull_request(repository.registry(), &scope, &|http, base| {
                    http.get(format!("{base}{next}"))
                })
                .await
                .map_err(fail)?;
            let link = header_str(&resp, "link");
            let body = resp.bytes().await.map_err(|e| {
                fail(ErrorKind::Connection {
                    url: repository.name(),
                    detail: super::error::chain(&e),
                })
            })?;
            let page: Tags = serde_json::from_slice(&body)
                .map_err(|e| fail(ErrorKind::InvalidResponse(format!("tags list: {e}"))))?;
            tags.extend(page.tags.unwrap_or_default());
            // `Link: </v2/name/tags/list?last=x&n=y>; rel="next"`
            match link.and_then(|l| {
                let start = l.find('<')? + 1;
                let end = l.find('>')?;
                l.contains("rel=\"next\"")
                    .then(|| l[start..end].to_string())
            }) {
                Some(n) if n.starts_with('/') => next = n,
                _ => break,
            }
        }
        Ok(tags)
    }
}

/// Reads a manifest body, refusing one over [`MAX_MANIFEST_SIZE`].
async fn read_manifest_body(mut resp: reqwest::Response) -> Result<Bytes, ErrorKind> {
    let too_big =
        || ErrorKind::InvalidResponse(format!("manifest larger than {MAX_MANIFEST_SIZE} bytes"));
    if let Some(len) = header_str(&resp, "content-length").and_then(|l| l.parse::<u64>().ok()) {
        if len > MAX_MANIFEST_SIZE as u64 {
            return Err(too_big());
        }
    }
    let mut buf = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > MAX_MANIFEST_SIZE {
                    return Err(too_big());
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(super::auth::connection_error(e)),
        }
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_content_type_or_the_document() {
        let oci = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
        assert_eq!(
            detect_kind(Some("application/vnd.oci.image.manifest.v1+json"), oci).unwrap(),
            ManifestKind::OciManifest
        );
        // A generic type: the document's own mediaType, or its shape when it has none.
        assert_eq!(
            detect_kind(Some("application/json; charset=utf-8"), oci).unwrap(),
            ManifestKind::OciManifest
        );
        assert_eq!(
            detect_kind(None, br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
            ManifestKind::OciIndex
        );
        assert_eq!(
            detect_kind(None, br#"{"schemaVersion":2,"config":{},"layers":[]}"#).unwrap(),
            ManifestKind::OciManifest
        );
        let e = detect_kind(Some(DOCKER_SCHEMA1_SIGNED), b"{}").unwrap_err();
        assert!(e.to_string().contains("schema 1"), "{e}");
        let e = detect_kind(
            Some("application/json"),
            br#"{"schemaVersion":1,"fsLayers":[]}"#,
        )
        .unwrap_err();
        assert!(matches!(e, ErrorKind::Schema1 { .. }), "{e}");
        let e = detect_kind(
            Some("application/vnd.example.thing+json"),
            br#"{"config":{},"layers":[]}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported manifest media type \"application/vnd.example.thing+json\""
        );
        let e = detect_kind(
            None,
            br#"{"mediaType":"application/vnd.oci.artifact.manifest.v1+json"}"#,
        )
        .unwrap_err();
        assert!(matches!(e, ErrorKind::UnsupportedMediaType { .. }), "{e}");
        let e = detect_kind(Some(OCI_INDEX), oci).unwrap_err();
        assert!(e.to_string().contains("its mediaType is"), "{e}");
    }
}
