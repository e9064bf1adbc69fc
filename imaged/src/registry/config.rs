//! How to reach registries: which may be spoken to over plain HTTP, which mirrors to try
//! first, where the Docker-style credentials live, and when a push goes in chunks.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{Error, ErrorKind};
use crate::reference::DEFAULT_REGISTRY;

/// Where the Docker Hub registry API really is; `docker.io` only names it.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Registries spoken to over plain HTTP besides loopback ones: `host[:port]` as written
    /// in references, or a CIDR range (`10.0.0.0/8`) as Docker's `insecure-registries`.
    pub insecure: Vec<String>,
    /// Registry (as in references, `docker.io` for Docker Hub) to mirror base URLs, tried in
    /// order before the registry itself for pulls, as Docker's `registry-mirrors` and
    /// containerd's `hosts.toml` do. Pushes always go to the registry.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// The directory of `config.json` with `auths`: `$DOCKER_CONFIG`, else `~/.docker`.
    pub docker_config_dir: PathBuf,
    /// Blobs larger than this are pushed in chunks (PATCH per chunk) rather than in one PUT;
    /// proxies in front of registries often cap the size of one request body.
    pub chunk_threshold: u64,
    /// Size of one chunk of a chunked push, held in memory while it is sent.
    pub chunk_size: usize,
    pub connect_timeout: Duration,
    /// How long a response may stall before the transfer counts as broken (and resumable).
    pub read_timeout: Duration,
    pub user_agent: String,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure: Vec::new(),
            mirrors: BTreeMap::new(),
            docker_config_dir: docker_config_dir_from_env(),
            chunk_threshold: 64 << 20,
            chunk_size: 16 << 20,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            user_agent: format!("berth/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// `$DOCKER_CONFIG`, else `$HOME/.docker`, as the docker CLI chooses.
pub fn docker_config_dir_from_env() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    // Daemons run as root; a HOME-less root environment still means root's home.
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".docker")
}

/// The registry settings file: Docker's `daemon.json` keys (`insecure-registries`,
/// `registry-mirrors` for Docker Hub) plus `mirrors` for any registry.
#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
struct ConfigFile {
    insecure_registries: Vec<String>,
    registry_mirrors: Vec<String>,
    mirrors: BTreeMap<String, Vec<String>>,
    docker_config: Option<PathBuf>,
}

impl RegistryConfig {
    /// Reads registry settings from a JSON file such as
    /// `{"insecure-registries": ["reg.lan:5000"], "registry-mirrors": ["https://m.example"],
    ///   "mirrors": {"quay.io": ["http://10.0.0.5:5000"]}}` over the defaults.
    pub fn load(path: &Path) -> Result<RegistryConfig, Error> {
        let err = |detail: String| {
            Error::new(
                "read",
                path.display(),
                ErrorKind::Config {
                    path: path.to_path_buf(),
                    detail,
                },
            )
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let file: ConfigFile = serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
        let mut config = RegistryConfig {
            insecure: file.insecure_registries,
            ..RegistryConfig::default()
        };
        if !file.registry_mirrors.is_empty() {
            config
                .mirrors
                .insert(DEFAULT_REGISTRY.to_string(), file.registry_mirrors);
        }
        for (registry, urls) in file.mirrors {
            config
                .mirrors
                .entry(canonical_registry(&registry).to_string())
                .or_default()
                .extend(urls);
        }
        if let Some(dir) = file.docker_config {
            config.docker_config_dir = dir;
        }
        for url in config.mirrors.values().flatten() {
            reqwest::Url::parse(url).map_err(|e| err(format!("mirror {url:?}: {e}")))?;
        }
        Ok(config)
    }

    /// Whether `registry` is spoken to over plain HTTP: loopback hosts always (what a
    /// local test registry or port-forward is), configured ones by name or range.
    pub fn is_insecure(&self, registry: &str) -> bool {
        let host = host_part(registry);
        if host == "localhost" {
            return true;
        }
        let ip = host.parse::<IpAddr>().ok();
        if ip.is_some_and(|ip| ip.is_loopback()) {
            return true;
        }
        self.insecure.iter().any(|entry| {
            entry == registry
                || match (ip, entry.split_once('/')) {
                    (Some(ip), Some((net, bits))) => in_cidr(ip, net, bits),
                    _ => false,
                }
        })
    }

    /// `http` or `https` for `registry`.
    pub fn scheme(&self, registry: &str) -> &'static str {
        if self.is_insecure(registry) {
            "http"
        } else {
            "https"
        }
    }

    /// The registry's own API base URL: `https://registry-1.docker.io` for Docker Hub.
    pub fn origin_url(&self, registry: &str) -> String {
        let host = if registry == DEFAULT_REGISTRY {
            DOCKER_HUB_API_HOST
        } else {
            registry
        };
        format!("{}://{host}", self.scheme(registry))
    }

    /// Mirror base URLs for `registry`, in the order to try them.
    pub fn mirrors_of(&self, registry: &str) -> &[String] {
        self.mirrors
            .get(canonical_registry(registry))
            .map_or(&[], |v| v.as_slice())
    }

    /// The `config.json` credentials are read from and written to.
    pub fn docker_config_file(&self) -> PathBuf {
        self.docker_config_dir.join("config.json")
    }
}

/// The names Docker Hub goes by in configuration all mean `docker.io`.
fn canonical_registry(registry: &str) -> &str {
    match registry {
        "index.docker.io" | DOCKER_HUB_API_HOST | "https://index.docker.io/v1/" => DEFAULT_REGISTRY,
        r => r,
    }
}

/// `host` of `host[:port]`, without the brackets of an IPv6 address.
pub(crate) fn host_part(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.split(':').next().unwrap_or(registry)
}

fn in_cidr(ip: IpAddr, net: &str, bits: &str) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_configured_registries_use_http() {
        let c = RegistryConfig {
            insecure: vec!["reg.lan:5000".into(), "10.1.0.0/16".into()],
            ..RegistryConfig::default()
        };
        for r in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.8.9.10",
            "[::1]:5000",
            "reg.lan:5000",
            "10.1.2.3:5000",
        ] {
            assert_eq!(c.scheme(r), "http", "{r}");
        }
        for r in [
            "docker.io",
            "quay.io",
            "reg.lan",
            "reg.lan:5001",
            "10.2.0.1:5000",
            "[::2]:5000",
            "localhost.example.com",
        ] {
            assert_eq!(c.scheme(r), "https", "{r}");
        }
        assert_eq!(c.origin_url("docker.io"), "https://registry-1.docker.io");
        assert_eq!(c.origin_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
    }

    #[test]
    fn config_file_takes_docker_keys_and_mirrors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registries.json");
        std::fs::write(
            &path,
            r#"{"insecure-registries": ["reg.lan:5000"],
                "registry-mirrors": ["https://mirror.example"],
                "mirrors": {"index.docker.io": ["http://10.0.0.5:5000"], "quay.io": ["https://q.example/prefix"]}}"#,
        )
        .unwrap();
        let c = RegistryConfig::load(&path).unwrap();
        assert!(c.is_insecure("reg.lan:5000"));
        assert_eq!(
            c.mirrors_of("docker.io"),
            ["https://mirror.example", "http://10.0.0.5:5000"]
        );
        assert_eq!(c.mirrors_of("quay.io"), ["https://q.example/prefix"]);
        assert!(c.mirrors_of("ghcr.io").is_empty());

        std::fs::write(&path, r#"{"mirrors": {"docker.io": ["not a url"]}}"#).unwrap();
        let e = RegistryConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("mirror \"not a url\""), "{e}");
    }
}
