//! A real berth-imaged in a test's private root, and the calls the tests make to it.

#![allow(dead_code)] // each test file uses a different subset

pub mod dockerd;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_imaged::client::{connect, Client};
use berth_proto::imaged as pb;
use berth_tests::{bin, TestEnv};

pub struct Imaged {
    pub child: Child,
    pub client: Client,
    pub socket: PathBuf,
}

impl Imaged {
    /// Start the daemon for `env` and connect to it.
    pub async fn start(env: &TestEnv) -> Imaged {
        Imaged::start_with(env, &[]).await
    }

    /// Start the daemon with extra environment (`DOCKER_CONFIG`, ...).
    pub async fn start_with(env: &TestEnv, vars: &[(&str, &std::path::Path)]) -> Imaged {
        Imaged::start_args(env, vars, &[]).await
    }

    /// Start the daemon with extra environment and arguments.
    pub async fn start_args(
        env: &TestEnv,
        vars: &[(&str, &std::path::Path)],
        args: &[&str],
    ) -> Imaged {
        let socket = env.run().join("imaged.sock");
        let log = std::fs::File::create(env.path().join("imaged.stderr")).unwrap();
        let mut starting = Starting(Some(
            env.spawn(
                Command::new(bin("berth-imaged"))
                    .arg("--root")
                    .arg(env.root())
                    .arg("--run")
                    .arg(env.run())
                    .args(args)
                    .envs(
                        vars.iter()
                            .map(|(k, v)| (k.to_string(), v.as_os_str().to_owned())),
                    )
                    .stdin(Stdio::null())
                    .stderr(log),
            ),
        ));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if socket.exists() {
                if let Ok(client) = connect(&socket).await {
                    return Imaged {
                        child: starting.0.take().expect("started"),
                        client,
                        socket,
                    };
                }
            }
            assert!(
                Instant::now() < deadline,
                "berth-imaged did not come up: {}",
                std::fs::read_to_string(env.path().join("imaged.stderr")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, as a crash would stop it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills a daemon that never came up, so a failed start leaves no process behind.
struct Starting(Option<Child>);

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Imaged {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Pull and collect every progress message; the error status if the pull failed.
pub async fn pull(c: &mut Client, reference: &str) -> Result<Vec<pb::PullProgress>, tonic::Status> {
    pull_platform(c, reference, "").await
}

pub async fn pull_platform(
    c: &mut Client,
    reference: &str,
    platform: &str,
) -> Result<Vec<pb::PullProgress>, tonic::Status> {
    let mut stream = c
        .pull(pb::PullRequest {
            reference: reference.to_string(),
            platform: platform.to_string(),
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = stream.message().await? {
        out.push(m);
    }
    match out.last() {
        Some(m) if m.done => Ok(out),
        _ => Err(tonic::Status::aborted(format!(
            "pull ended without done: {out:?}"
        ))),
    }
}

pub async fn push(c: &mut Client, reference: &str) -> Result<Vec<pb::PullProgress>, tonic::Status> {
    let mut stream = c
        .push(pb::PushRequest {
            reference: reference.to_string(),
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = stream.message().await? {
        out.push(m);
    }
    Ok(out)
}

pub async fn list(c: &mut Client) -> Vec<pb::ImageSummary> {
    c.list(pb::ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images
}

pub async fn inspect(c: &mut Client, image: &str) -> Result<serde_json::Value, tonic::Status> {
    let r = c
        .inspect(pb::InspectRequest {
            image: image.to_string(),
        })
        .await?
        .into_inner();
    Ok(serde_json::from_str(&r.json).unwrap())
}

pub async fn remove(c: &mut Client, images: &[&str], force: bool) -> pb::RemoveResponse {
    c.remove(pb::RemoveRequest {
        images: images.iter().map(|s| s.to_string()).collect(),
        force,
    })
    .await
    .unwrap()
    .into_inner()
}

pub async fn usage(c: &mut Client) -> pb::DiskUsageResponse {
    c.disk_usage(pb::DiskUsageRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// `du -sB1` of a directory: what is really on disk.
pub fn du(path: &std::path::Path) -> u64 {
    let out = Command::new("du").arg("-sB1").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The manifest digest skopeo sees for a reference in a plain-HTTP registry.
pub fn skopeo_digest(reference: &str) -> String {
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = out.stdout;
    format!("sha256:{}", sha256_hex(&raw))
}

pub fn sha256_hex(data: &[u8]) -> String {
    berth_imaged::digest::Digest::of(data).hex().to_string()
}

/// A TCP proxy in front of a registry on 127.0.0.1: counts what the registry sends,
/// optionally slows it down, and optionally cuts every connection after some bytes (a
/// registry that drops the connection in the middle of a layer).
pub struct Proxy {
    pub port: u16,
    pub down: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Connections made through it.
    pub conns: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    pub fn start(target_port: u16, bytes_per_sec: Option<u64>, cut_after: Option<u64>) -> Proxy {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicU64::new(0));
        let conns = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, st, cn) = (down.clone(), stop.clone(), conns.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                client.set_nonblocking(false).unwrap();
                cn.fetch_add(1, Ordering::Relaxed);
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    continue;
                };
                let (mut c_read, mut u_write) =
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut u_write);
                    let _ = u_write.shutdown(std::net::Shutdown::Write);
                });
                let (mut u_read, mut c_write, d, st) = (upstream, client, d.clone(), st.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 16 << 10];
                    let mut sent = 0u64;
                    loop {
                        if st.load(Ordering::Relaxed) {
                            break;
                        }
                        let Ok(n) = u_read.read(&mut buf) else { break };
                        if n == 0 {
                            break;
                        }
                        let n = match cut_after {
                            Some(cut) if sent + n as u64 >= cut => (cut - sent) as usize,
                            _ => n,
                        };
                        if c_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        sent += n as u64;
                        d.fetch_add(n as u64, Ordering::Relaxed);
                        if cut_after.is_some_and(|c| sent >= c) {
                            break;
                        }
                        if let Some(rate) = bytes_per_sec {
                            std::thread::sleep(Duration::from_micros(n as u64 * 1_000_000 / rate));
                        }
                    }
                    let _ = c_write.shutdown(std::net::Shutdown::Both);
                    let _ = u_read.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Proxy {
            port,
            down,
            conns,
            stop,
        }
    }

    /// `127.0.0.1:PORT/<name>` through the proxy.
    pub fn reference(&self, name: &str) -> String {
        format!("127.0.0.1:{}/{name}", self.port)
    }

    pub fn bytes_down(&self) -> u64 {
        self.down.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Size of the one layer of the busybox fixture image `reference` (from its manifest).
pub fn layer_size(reference: &str) -> u64 {
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    m["layers"][0]["size"].as_u64().unwrap()
}

/// `Save` of `images` in `format` into the file `dest`, chunk by chunk as it streams.
pub async fn save(
    c: &mut Client,
    images: &[&str],
    format: &str,
    dest: &std::path::Path,
) -> Result<u64, tonic::Status> {
    use std::io::Write;
    let mut stream = c
        .save(pb::SaveRequest {
            images: images.iter().map(|s| s.to_string()).collect(),
            format: format.to_string(),
        })
        .await?
        .into_inner();
    let mut f = std::fs::File::create(dest).unwrap();
    let mut n = 0;
    while let Some(chunk) = stream.message().await? {
        n += chunk.data.len() as u64;
        f.write_all(&chunk.data).unwrap();
    }
    Ok(n)
}

/// The request stream of `data` in 1 MiB messages.
fn chunks<T>(data: &[u8], make: impl Fn(Vec<u8>) -> T) -> Vec<T> {
    data.chunks(1 << 20).map(|c| make(c.to_vec())).collect()
}

/// `Load` of an archive held in memory; the lines docker load would print.
pub async fn load_bytes(c: &mut Client, data: &[u8]) -> Result<Vec<String>, tonic::Status> {
    let msgs = chunks(data, |data| pb::LoadRequest { data });
    Ok(c.load(tokio_stream::iter(msgs)).await?.into_inner().lines)
}

/// `Load` of an archive file.
pub async fn load(c: &mut Client, src: &std::path::Path) -> Result<Vec<String>, tonic::Status> {
    load_bytes(c, &std::fs::read(src).unwrap()).await
}

/// `Import` of a tarball held in memory; the new image's id.
pub async fn import(
    c: &mut Client,
    reference: &str,
    changes: &[&str],
    message: &str,
    data: &[u8],
) -> Result<String, tonic::Status> {
    let mut msgs = vec![pb::ImportRequest {
        reference: reference.into(),
        changes: changes.iter().map(|s| s.to_string()).collect(),
        message: message.into(),
        data: Vec::new(),
    }];
    msgs.extend(chunks(data, |data| pb::ImportRequest {
        data,
        ..Default::default()
    }));
    Ok(c.import(tokio_stream::iter(msgs))
        .await?
        .into_inner()
        .image_id)
}

/// `Export` of snapshot `key`, the whole tar.
pub async fn export(c: &mut Client, key: &str) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = c
        .export(pb::SnapshotRequest { key: key.into() })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await? {
        out.extend_from_slice(&chunk.data);
    }
    Ok(out)
}

/// The names (and, for regular files, the contents) of a tar's entries.
pub fn tar_entries(data: &[u8]) -> std::collections::BTreeMap<String, Option<Vec<u8>>> {
    use std::io::Read;
    let mut out = std::collections::BTreeMap::new();
    let mut a = tar::Archive::new(data);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let content = if e.header().entry_type().is_file() {
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            Some(v)
        } else {
            None
        };
        out.insert(name, content);
    }
    out
}

/// The symlinks of a tar: name and target.
pub fn tar_symlinks(data: &[u8]) -> Vec<(String, String)> {
    let mut a = tar::Archive::new(data);
    a.entries()
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.header().entry_type().is_symlink())
        .map(|e| {
            (
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                String::from_utf8_lossy(&e.link_name_bytes().unwrap()).into_owned(),
            )
        })
        .collect()
}

/// What a failed operation may not leave in a store: snapshot directories, blobs, temp
/// files; `keep` blobs and snapshot dirs (of images loaded before) are allowed.
pub fn assert_store_holds_only(root: &std::path::Path, blobs: usize, snapshots: usize, what: &str) {
    let count = |p: std::path::PathBuf| std::fs::read_dir(&p).map(|d| d.count()).unwrap_or(0);
    let ingest: Vec<_> = std::fs::read_dir(root.join("content/ingest"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(ingest.is_empty(), "{what}: temp files left: {ingest:?}");
    assert_eq!(
        count(root.join("content/blobs/sha256")),
        blobs,
        "{what}: blobs in the store"
    );
    assert_eq!(
        count(root.join("snapshots")),
        snapshots,
        "{what}: snapshot directories"
    );
}

/// `Prepare` of snapshot `key` on `image`: the status when it is refused.
pub async fn prepare(c: &mut Client, key: &str, image: &str) -> Result<pb::Mounts, tonic::Status> {
    Ok(c.prepare(pb::PrepareRequest {
        key: key.to_string(),
        image: image.to_string(),
    })
    .await?
    .into_inner())
}
