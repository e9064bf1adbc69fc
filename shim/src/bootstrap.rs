//! The `start` and `delete` actions containerd runs before and after the serving shim.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::{Context, Result};
use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::{Message, MessageField};

use crate::args::Args;
use crate::mount::unmount_all;
use crate::runtime::Runtime;
use crate::service::{SavedRuntime, RUNTIME_FILE};
use crate::settings::Settings;

/// The fd the serving shim finds its listening socket on.
pub const LISTEN_FD: i32 = 3;

pub fn bundle_dir(args: &Args) -> Result<PathBuf> {
    if !args.bundle.is_empty() {
        return Ok(PathBuf::from(&args.bundle));
    }
    std::env::current_dir().context("find the bundle (working directory)")
}

/// Where the shim listens: Berth's annotation, else a path under /run/containerd/s that is
/// unique to (containerd address, namespace, id), like containerd's own shims use.
fn socket_path(args: &Args, settings: &Settings) -> PathBuf {
    if let Some(p) = &settings.shim_socket {
        return p.clone();
    }
    let key = format!("{}/{}/{}", args.address, args.namespace, args.id);
    PathBuf::from(format!(
        "/run/containerd/s/berth-{:016x}{:016x}",
        fnv1a(0xcbf29ce484222325, &key),
        fnv1a(0x84222325cbf29ce4, &key)
    ))
}

fn fnv1a(seed: u64, s: &str) -> u64 {
    s.bytes()
        .fold(seed, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// Start the serving shim in its own session with the listening socket on fd 3, record
/// its address and pid in the bundle and print the address for containerd.
pub fn start(args: &Args) -> Result<()> {
    let bundle = bundle_dir(args)?;
    // Bad Berth settings fail here, where the caller sees the message, rather than in the
    // serving shim after the address has been handed out.
    let settings = if bundle.join("config.json").exists() {
        Settings::load(&bundle)?
    } else {
        Settings::default()
    };
    let path = socket_path(args, &settings);
    let address = format!("unix://{}", path.display());
    if path.exists() {
        if UnixStream::connect(&path).is_ok() {
            // A shim already serves this container.
            println!("{address}");
            return Ok(());
        }
        std::fs::remove_file(&path)
            .with_context(|| format!("remove stale socket {}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let listener =
        UnixListener::bind(&path).with_context(|| format!("listen on {}", path.display()))?;
    let fd = listener.as_raw_fd();

    let exe = std::env::current_exe().context("find own executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("-namespace")
        .arg(&args.namespace)
        .arg("-id")
        .arg(&args.id)
        .arg("-address")
        .arg(&args.address)
        .arg("-publish-binary")
        .arg(&args.publish_binary)
        .arg("-bundle")
        .arg(&bundle);
    if args.debug {
        cmd.arg("-debug");
    }
    cmd.current_dir(&bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid, dup2 and fcntl are async-signal-safe and only touch this child's
    // session and descriptor table.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if fd == LISTEN_FD {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, LISTEN_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().context("start the serving shim")?;
    std::fs::write(bundle.join("address"), &address).context("write address file")?;
    std::fs::write(bundle.join("shim.pid"), child.id().to_string()).context("write shim.pid")?;
    println!("{address}");
    Ok(())
}

/// The socket a killed shim left behind, unless a shim still answers on it.
fn remove_dead_socket(bundle: &Path) {
    let Ok(address) = std::fs::read_to_string(bundle.join("address")) else {
        return;
    };
    let Some(path) = address.trim().strip_prefix("unix://") else {
        return;
    };
    if UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
}

/// Clean up after a shim that is gone: force-delete the container, unmount its rootfs and
/// tell containerd it ended with SIGKILL.
pub fn delete(args: &Args) -> Result<()> {
    let bundle = bundle_dir(args)?;
    // A corrupt record must not stop the rest of the clean-up: the error is reported after
    // the rootfs is unmounted and the socket removed.
    let mut record_error = None;
    if let Ok(data) = std::fs::read(bundle.join(RUNTIME_FILE)) {
        match serde_json::from_slice::<SavedRuntime>(&data) {
            Ok(saved) => {
                let rt = Runtime {
                    binary: saved.binary,
                    root: saved.root,
                    log: bundle.join("log.json"),
                    no_pivot: false,
                    no_new_keyring: false,
                };
                if let Err(e) = rt.delete(&args.id, true) {
                    eprintln!("{e:#}");
                }
            }
            Err(e) => {
                record_error = Some(anyhow::Error::new(e).context(format!(
                    "parse {}: the container was not deleted",
                    bundle.join(RUNTIME_FILE).display()
                )))
            }
        }
    }
    unmount_all(&bundle.join("rootfs"));
    remove_dead_socket(&bundle);
    if let Some(e) = record_error {
        return Err(e);
    }
    let resp = DeleteResponse {
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: MessageField::some(Timestamp::from(SystemTime::now())),
        ..Default::default()
    };
    let data = resp.write_to_bytes().context("encode delete response")?;
    std::io::stdout()
        .write_all(&data)
        .context("write delete response")?;
    Ok(())
}
