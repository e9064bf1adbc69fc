//! A client for registries that speak the OCI distribution spec (Docker Hub, distribution,
//! Harbor, quay, ghcr, ...): manifests, blobs with resume and byte ranges, uploads with
//! cross-repository mounts, bearer-token and basic authentication from Docker's
//! `config.json`, mirrors, and plain HTTP for loopback and configured-insecure registries.
//!
//! The client moves bytes and checks manifests; verifying blob digests while storing them
//! is the caller's (the content store's) job, since only it sees every byte of a resumed or
//! ranged download.

mod auth;
mod blobs;
mod config;
mod credentials;
mod error;
mod manifest;
mod platform;
mod push;

use reqwest::{RequestBuilder, Response, StatusCode};

pub use blobs::BlobStream;
pub use config::{docker_config_dir_from_env, RegistryConfig, DOCKER_HUB_API_HOST};
pub use credentials::{
    credentials_key, load_credentials, remove_credentials, store_credentials, Credentials,
    DOCKER_HUB_AUTH_KEY,
};
pub use error::{Error, ErrorKind};
pub use manifest::{
    Descriptor, ImageIndex, ImageManifest, Manifest, ManifestKind, DOCKER_CONFIG, DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST, DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED, MAX_MANIFEST_SIZE, OCI_CONFIG,
    OCI_INDEX, OCI_MANIFEST,
};
pub use platform::{resolve_platform, Platform};

use auth::{AuthCache, Scope};
use error::from_response;

pub(crate) const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// Talks to registries. Cheap to share behind an `Arc`: it holds one connection pool and
/// one cache of tokens for all of them.
pub struct RegistryClient {
    http: reqwest::Client,
    config: RegistryConfig,
    auth: AuthCache,
}

/// One place a registry's API is served: the registry itself or one of its mirrors.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    /// `scheme://host[:port][/path]`, to which `/v2/...` is appended.
    pub(crate) base: String,
    /// The `host[:port]` credentials and tokens are kept under: the registry as written in
    /// references for the registry itself, the URL's host for a mirror.
    pub(crate) host: String,
    pub(crate) mirror: bool,
}

impl RegistryClient {
    pub fn new(config: RegistryConfig) -> Result<RegistryClient, Error> {
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            // Registries send blob downloads to storage (S3, a CDN) by redirect; reqwest
            // drops the Authorization header when a redirect leaves the host.
            .redirect(reqwest::redirect::Policy::limited(10))
            .build()
            .map_err(|e| {
                Error::new(
                    "start",
                    "registry client",
                    ErrorKind::Source(error::chain(&e)),
                )
            })?;
        Ok(RegistryClient {
            http,
            config,
            auth: AuthCache::default(),
        })
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The registry itself, where pushes go and pulls end up when mirrors fail.
    pub(crate) fn origin(&self, registry: &str) -> Endpoint {
        Endpoint {
            base: self.config.origin_url(registry),
            host: registry.to_string(),
            mirror: false,
        }
    }

    /// Where to pull from, in order: the configured mirrors, then the registry.
    fn pull_endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let mut eps: Vec<Endpoint> = self
            .config
            .mirrors_of(registry)
            .iter()
            .filter_map(|url| {
                let parsed = reqwest::Url::parse(url).ok()?;
                let host = match parsed.port() {
                    Some(p) => format!("{}:{p}", parsed.host_str()?),
                    None => parsed.host_str()?.to_string(),
                };
                Some(Endpoint {
                    base: url.trim_end_matches('/').to_string(),
                    host,
                    mirror: true,
                })
            })
            .collect();
        eps.push(self.origin(registry));
        eps
    }

    /// A read-only request, tried on each mirror and then on the registry. A mirror's
    /// failure or an answer `answered` does not accept moves on to the next; the registry's
    /// own answer is final.
    pub(crate) async fn pull_request_with(
        &self,
        registry: &str,
        scope: &Scope,
        answered: &(dyn Fn(StatusCode) -> bool + Send + Sync),
        build: &(dyn Fn(&reqwest::Client, &str) -> RequestBuilder + Send + Sync),
    ) -> Result<Response, ErrorKind> {
        let endpoints = self.pull_endpoints(registry);
        for ep in &endpoints {
            let result = self.send(ep, scope, &|| build(&self.http, &ep.base)).await;
            if !ep.mirror {
                let resp = result?;
                if answered(resp.status()) {
                    return Ok(resp);
                }
                return Err(from_response(resp).await);
            }
            match result {
                Ok(resp) if answered(resp.status()) => return Ok(resp),
                Ok(resp) => tracing::info!(
                    mirror = %ep.base,
                    status = resp.status().as_u16(),
                    "mirror cannot serve the request; trying the next"
                ),
                Err(e) => tracing::info!(
                    mirror = %ep.base,
                    error = %e,
                    "mirror failed; trying the next"
                ),
            }
        }
        unreachable!("the registry itself is the last endpoint")
    }

    /// [`Self::pull_request_with`] taking any 2xx as the answer.
    pub(crate) async fn pull_request(
        &self,
        registry: &str,
        scope: &Scope,
        build: &(dyn Fn(&reqwest::Client, &str) -> RequestBuilder + Send + Sync),
    ) -> Result<Response, ErrorKind> {
        self.pull_request_with(registry, scope, &|s| s.is_success(), build)
            .await
    }
}

/// A header as a string, when present and printable.
pub(crate) fn header_str(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::reference::Reference;
    use std::sync::Arc;

    /// The daemon shares one client between tasks: the client and the futures of its
    /// methods must be Send (this only has to compile).
    #[allow(dead_code)]
    fn futures_can_be_spawned(c: Arc<RegistryClient>, r: Reference, d: Digest) {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<RegistryClient>();
        tokio::spawn(async move {
            c.get_manifest(&r).await.ok();
            c.get_image_manifest(&r, &Platform::host()).await.ok();
            c.fetch_blob(&r, &d, 0).await.ok();
            c.fetch_range(&r, &d, 0, 1).await.ok();
            c.blob_exists(&r, &d).await.ok();
            c.mount_blob(&r, &d, &r).await.ok();
            c.push_blob(&r, &d, 1, std::io::Cursor::new(vec![0u8]))
                .await
                .ok();
            c.put_manifest(&r, "t", OCI_MANIFEST, bytes::Bytes::new())
                .await
                .ok();
            c.check_login("r", &Credentials::new("u", "p")).await.ok();
        });
    }

    #[test]
    fn pull_endpoints_are_mirrors_then_the_registry() {
        let mut config = RegistryConfig::default();
        config.mirrors.insert(
            "docker.io".into(),
            vec!["https://m1.example/".into(), "http://10.0.0.5:5000".into()],
        );
        let c = RegistryClient::new(config).unwrap();
        let eps = c.pull_endpoints("docker.io");
        let got: Vec<(&str, &str, bool)> = eps
            .iter()
            .map(|e| (e.base.as_str(), e.host.as_str(), e.mirror))
            .collect();
        assert_eq!(
            got,
            [
                ("https://m1.example", "m1.example", true),
                ("http://10.0.0.5:5000", "10.0.0.5:5000", true),
                ("https://registry-1.docker.io", "docker.io", false),
            ]
        );
        assert_eq!(c.pull_endpoints("quay.io").len(), 1);
    }
}
