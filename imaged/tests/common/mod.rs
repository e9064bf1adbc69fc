//! What the registry tests share: host checks, a runtime, a client for a test's registry,
//! stream helpers, a TCP proxy that watches or cuts connections, and skopeo.

#![allow(dead_code)]

pub mod token_server;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use berth_imaged::digest::{Digest, Hasher};
use berth_imaged::reference::Reference;
use berth_imaged::registry::{BlobStream, Error, RegistryClient, RegistryConfig};
use futures_util::StreamExt;

/// Whether this host can run a registry test: the registry, skopeo, and what the fixture
/// scripts use. Skips (see `berth_tests::skip`) otherwise.
pub fn host_ready() -> bool {
    berth_tests::require_cmds(&["docker-registry", "skopeo", "curl", "python3", "runc"])
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A client whose Docker config dir is `docker_config` (a test's own, never the host's).
pub fn client_with(
    docker_config: &Path,
    tweak: impl FnOnce(&mut RegistryConfig),
) -> RegistryClient {
    let mut config = RegistryConfig {
        docker_config_dir: docker_config.to_path_buf(),
        ..RegistryConfig::default()
    };
    tweak(&mut config);
    RegistryClient::new(config).expect("registry client")
}

pub fn reference(s: &str) -> Reference {
    Reference::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

/// Everything a blob stream yields, or its first error with what came before it.
pub async fn collect(mut stream: BlobStream) -> (Vec<u8>, Option<Error>) {
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(b) => out.extend_from_slice(&b),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

pub async fn fetch_all(client: &RegistryClient, repo: &Reference, digest: &Digest) -> Vec<u8> {
    let stream = client
        .fetch_blob(repo, digest, 0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (bytes, err) = collect(stream).await;
    if let Some(e) = err {
        panic!("{e}");
    }
    bytes
}

pub fn sha(bytes: &[u8]) -> Digest {
    let mut h = Hasher::new();
    h.update(bytes);
    h.finish()
}

/// Bytes that do not compress and differ per seed, standing in for a layer.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `skopeo inspect` of `docker://{reference}` over plain HTTP: its JSON, or with `raw` the
/// manifest bytes as skopeo received them.
pub fn skopeo_inspect(reference: &str, raw: bool, creds: Option<&str>) -> Vec<u8> {
    let mut cmd = std::process::Command::new("skopeo");
    cmd.args(["inspect", "--tls-verify=false"]);
    if raw {
        cmd.arg("--raw");
    }
    if let Some(c) = creds {
        cmd.args(["--creds", c]);
    }
    cmd.arg(format!("docker://{reference}"));
    let out = berth_tests::run(&mut cmd);
    out.assert_success();
    out.stdout.into_bytes()
}

/// A TCP proxy in front of a registry, one thread per direction and connection. It keeps
/// what clients sent (to count requests) and, when told, cuts each connection once the
/// server has sent `cut_after` bytes of it back, or hides `Range` headers from the server
/// (a registry or cache that ignores them).
pub struct Proxy {
    port: u16,
    seen: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: u16, cut_after: Option<u64>) -> Proxy {
        Proxy::spawn(upstream, cut_after, false)
    }

    /// A proxy through which the registry never sees a `Range` header.
    pub fn hiding_ranges(upstream: u16) -> Proxy {
        Proxy::spawn(upstream, None, true)
    }

    fn spawn(upstream: u16, cut_after: Option<u64>, hide_range: bool) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let seen = seen2.clone();
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                thread::spawn(move || pump(c2, s2, None, Some(seen), hide_range));
                thread::spawn(move || pump(server, client, cut_after, None, false));
            }
        });
        Proxy { port, seen, stop }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// How many times clients sent `needle` (e.g. `"PATCH /v2/"`).
    pub fn count(&self, needle: &str) -> usize {
        let seen = self.seen.lock().unwrap();
        let n = needle.as_bytes();
        seen.windows(n.len()).filter(|w| *w == n).count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    cut_after: Option<u64>,
    seen: Option<Arc<Mutex<Vec<u8>>>>,
    hide_range: bool,
) {
    let mut buf = [0u8; 16 * 1024];
    let mut sent: u64 = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut n = n;
        if let Some(limit) = cut_after {
            n = n.min((limit - sent) as usize);
        }
        if hide_range {
            // Renamed in place (same length), so the request stays well-formed. Requests
            // are small and arrive in one read.
            let needle = b"\r\nrange:";
            let mut i = 0;
            while i + needle.len() <= n {
                if buf[i..i + needle.len()].eq_ignore_ascii_case(needle) {
                    buf[i + 2..i + 7].copy_from_slice(b"xrnge");
                }
                i += 1;
            }
        }
        if let Some(seen) = &seen {
            seen.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        if cut_after.is_some_and(|limit| sent >= limit) {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
