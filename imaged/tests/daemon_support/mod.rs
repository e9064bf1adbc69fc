//! A real berth-imaged in a test's private root, and the calls the tests make to it.

#![allow(dead_code)] // each test file uses a different subset

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
        let socket = env.run().join("imaged.sock");
        let log = std::fs::File::create(env.path().join("imaged.stderr")).unwrap();
        let child = env.spawn(
            Command::new(bin("berth-imaged"))
                .arg("--root")
                .arg(env.root())
                .arg("--run")
                .arg(env.run())
                .stdin(Stdio::null())
                .stderr(log),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if socket.exists() {
                if let Ok(client) = connect(&socket).await {
                    return Imaged {
                        child,
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
