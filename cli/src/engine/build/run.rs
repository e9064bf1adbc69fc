//! RUN: a container on the step's snapshot through `berth-runtime run`, with its network,
//! mounts and the image config so far; its layer holds only what the command wrote.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::io::AsyncReadExt;

use super::cache::Cache;
use super::context::Tree;
use super::executor::*;
use super::fsops::Root;
use super::meta::*;
use super::{BuildError, Event};
use crate::build::instructions::{CommandLine, MountKind, Network, Run};
use crate::build::plan::{ExpandedStep, Step};
use crate::engine::containers::bundle::{self, Inputs, NetNs};
use crate::engine::containers::record::{Config, HostConfig, MountPoint, Record};
use crate::engine::{daemons, networking};

pub(super) async fn run_step(
    sh: &Shared<'_>,
    step: &Step,
    expanded: &ExpandedStep,
    run: &Run,
    before: &ImageState,
    results: &BTreeMap<usize, StageResult<'_>>,
) -> Result<String, BuildError> {
    let mut work = Work::new(sh)?;
    let r = run_in(sh, step, expanded, run, before, results, &mut work).await;
    work.cleanup(sh).await;
    r
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn run_in(
    sh: &Shared<'_>,
    step: &Step,
    expanded: &ExpandedStep,
    run: &Run,
    before: &ImageState,
    results: &BTreeMap<usize, StageResult<'_>>,
    work: &mut Work,
) -> Result<String, BuildError> {
    let (root, snapshot) = work.mount(sh, &before.id, "rootfs").await?;
    let config = &before.config;
    // `RUN <<EOF` whose body starts with `#!` runs the body as a program (BuildKit): it is
    // mounted read-only under /dev/pipes, on the /dev tmpfs, so it never reaches the layer.
    let mut script_mount = None;
    let args = match (run.script(), &run.command, run.heredocs.as_slice()) {
        (Some(_), CommandLine::Shell(line), [h])
            if h.content.starts_with("#!")
                && crate::build::parser::heredoc_marker(line.trim()).is_some() =>
        {
            let file = work.dir.join("heredoc");
            std::fs::write(&file, &h.content).map_err(|e| BuildError::io(&file, e))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| BuildError::io(&file, e))?;
            let target = format!("/dev/pipes/{}", h.name);
            script_mount = Some(MountPoint {
                kind: "bind".into(),
                source: file.display().to_string(),
                destination: target.clone(),
                rw: false,
                ..Default::default()
            });
            vec![target]
        }
        (Some(script), _, _) => {
            let mut a = shell(config);
            a.push(script);
            a
        }
        (None, CommandLine::Exec(a), _) => a.clone(),
        (None, CommandLine::Shell(s), _) => vec![s.clone()],
    };
    let mut env: Vec<String> = config["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for (k, v) in &expanded.run_env {
        if !env.iter().any(|e| e.split('=').next() == Some(k.as_str())) {
            env.push(format!("{k}={v}"));
        }
    }
    let short = work.id[..12].to_string();

    // Mounts the RUN asked for.
    let mut mounts: Vec<MountPoint> = script_mount.into_iter().collect();
    for (n, (m, from)) in run.mounts.iter().zip(&step.mount_from).enumerate() {
        match m.kind {
            MountKind::Cache => {
                let id = m.id.clone().unwrap_or_else(|| m.target.clone());
                let dir = Cache::mount_dir(&sh.root, &id);
                if !dir.exists() {
                    std::fs::create_dir_all(&dir).map_err(|e| BuildError::io(&dir, e))?;
                    use std::os::unix::fs::PermissionsExt;
                    let mode = m.mode.unwrap_or(0o755);
                    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode));
                    let _ = std::os::unix::fs::chown(&dir, m.uid, m.gid);
                }
                mounts.push(MountPoint {
                    kind: "bind".into(),
                    source: dir.display().to_string(),
                    destination: m.target.clone(),
                    rw: !m.readonly,
                    ..Default::default()
                });
            }
            MountKind::Bind => {
                let src = m.source.clone().unwrap_or_else(|| ".".into());
                let host = match from {
                    Some(base) => {
                        let image = from_image(sh, base, step, results).await?;
                        let (dir, _) = work.mount(sh, &image, &format!("bind{n}")).await?;
                        Tree::root(dir).resolve_one(&src)
                    }
                    None => sh.ctx.tree.resolve_one(&src),
                }
                .map_err(|e| copy_failed(sh, step.line, "RUN --mount", e))?
                .host;
                mounts.push(MountPoint {
                    kind: "bind".into(),
                    source: host.display().to_string(),
                    destination: m.target.clone(),
                    rw: !m.readonly,
                    ..Default::default()
                });
            }
            MountKind::Tmpfs => mounts.push(MountPoint {
                kind: "tmpfs".into(),
                destination: m.target.clone(),
                options: m
                    .size
                    .map(|s| vec![format!("size={s}")])
                    .unwrap_or_default(),
                ..Default::default()
            }),
        }
    }

    // The network: a netd sandbox on `bridge` by default, a fresh namespace with only
    // loopback for `none`, the host's when asked for.
    let mode = match run.network {
        Some(Network::None) => "none".to_string(),
        Some(Network::Host) => "host".to_string(),
        _ => match sh.req.network.as_str() {
            "" | "default" => "bridge".to_string(),
            n => n.to_string(),
        },
    };
    let (netns, resolv, hosts) = match mode.as_str() {
        "none" => (
            NetNs::New,
            String::new(),
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_string(),
        ),
        "host" => (
            NetNs::Host,
            std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
        ),
        network => {
            std::fs::write(work.dir.join("sandbox"), "")
                .map_err(|e| BuildError::io(&work.dir, e))?;
            work.sandbox = true;
            let mut e = sh.engine.lock().await;
            let netd = e
                .networks()
                .await
                .map_err(|e| BuildError::Daemon(format!("{e:#}")))?;
            let sb = networking::setup(
                netd,
                &networking::SandboxSpec {
                    container_id: work.id.clone(),
                    name: String::new(),
                    hostname: short.clone(),
                    ..Default::default()
                },
                &[networking::Attachment {
                    network: network.to_string(),
                    ..Default::default()
                }],
            )
            .await
            .map_err(|e| sh.fail(step.line, format!("RUN: network {network}: {e}")))?;
            (
                NetNs::Path(PathBuf::from(sb.netns_path)),
                sb.resolv_conf,
                sb.hosts,
            )
        }
    };
    let mut etc = vec![
        (work.dir.join("resolv.conf"), "/etc/resolv.conf"),
        (work.dir.join("hosts"), "/etc/hosts"),
    ];
    std::fs::write(&etc[0].0, resolv).map_err(|e| BuildError::io(&work.dir, e))?;
    std::fs::write(&etc[1].0, hosts).map_err(|e| BuildError::io(&work.dir, e))?;
    if mode != "host" {
        let p = work.dir.join("hostname");
        std::fs::write(&p, format!("{short}\n")).map_err(|e| BuildError::io(&p, e))?;
        etc.push((p, "/etc/hostname"));
    }

    let rec = Record {
        id: work.id.clone(),
        config: Config {
            hostname: short.clone(),
            user: config["User"].as_str().unwrap_or_default().to_string(),
            env,
            cmd: args.clone(),
            working_dir: workdir(before),
            ..Default::default()
        },
        host: HostConfig {
            network_mode: mode.clone(),
            ..Default::default()
        },
        mounts,
        ..Default::default()
    };
    let security = crate::engine::containers::wiring::security(&rec)
        .map_err(|e| sh.fail(step.line, e.to_string()))?;
    let spec = bundle::spec(
        &rec,
        &Inputs {
            rootfs: &root,
            netns,
            etc_files: etc,
            annotations: BTreeMap::new(),
            cgroups_path: format!("/{}/build-{}", cgroup_parent(), work.id),
            security,
        },
    )
    .map_err(|e| sh.fail(step.line, e.to_string()))?;
    let config_path = work.dir.join("config.json");
    std::fs::write(&config_path, serde_json::to_vec(&spec).expect("json"))
        .map_err(|e| BuildError::io(&config_path, e))?;

    let mountpoints = missing_mountpoints(&root, &spec);
    (sh.report)(Event::Running(short.clone()));
    let code = run_container(sh, work).await?;
    (sh.report)(Event::Removed(short));
    work.unmount_all();
    remove_mountpoints(Path::new(&snapshot.upper), &snapshot.lowers, &mountpoints);
    let command = args.join(" ");
    if code != 0 {
        return Err(BuildError::RunFailed {
            file: sh.plan.file_name.clone(),
            line: step.line,
            command,
            code,
        });
    }
    // Docker's history shows the build args the command saw: `|2 A=1 B=2 /bin/sh -c ...`.
    let created_by = if expanded.args_used.is_empty() {
        command
    } else {
        let args: Vec<String> = expanded
            .args_used
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("|{} {} {command}", args.len(), args.join(" "))
    };
    // A command that changed nothing commits no layer (Docker: `empty_layer`).
    let empty = std::fs::read_dir(&snapshot.upper).is_ok_and(|mut d| d.next().is_none());
    commit_snapshot(sh, work, config, &created_by, empty).await
}

/// The mount destinations of `spec` (and their parents) the image does not have: the
/// runtime creates them in the snapshot to mount on, and they must not end up in the layer
/// (Docker keeps /etc/hosts and the like in a layer it never commits).
pub(super) fn missing_mountpoints(root: &Path, spec: &Value) -> Vec<String> {
    let Ok(r) = Root::open(root) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for m in spec["mounts"].as_array().into_iter().flatten() {
        let Some(dest) = m["destination"].as_str() else {
            continue;
        };
        let mut path = String::new();
        for comp in dest.split('/').filter(|c| !c.is_empty()) {
            path.push('/');
            path.push_str(comp);
            if !out.contains(&path) && matches!(r.stat(&path), Ok(None)) {
                out.push(path.clone());
            }
        }
    }
    // Deepest first, so that a made directory is empty by the time it is removed.
    out.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    out
}

/// Removes the empty files and directories the runtime made as mountpoints from the
/// snapshot's upper directory. Anything with content is the command's and stays.
pub(super) fn remove_mountpoints(upper: &Path, lowers: &[String], paths: &[String]) {
    for p in paths {
        let path = upper.join(p.trim_start_matches('/'));
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() && m.len() == 0 => {
                let _ = std::fs::remove_file(&path);
            }
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir(&path);
            }
            _ => {}
        }
        // The directories overlayfs copied up to hold the mountpoint (`/etc` for
        // `/etc/hostname`): gone too when nothing else changed in them, so that a RUN that
        // wrote nothing commits no layer.
        let mut dir = Path::new(p.trim_start_matches('/')).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            if !unchanged_copy_up(upper, lowers, d) {
                break;
            }
            let _ = std::fs::remove_dir(upper.join(d));
            dir = d.parent();
        }
    }
}

/// Whether `rel` in the upper dir is an empty, non-opaque directory with the owner and
/// mode it has in the layers below: a copy-up with no change of its own.
pub(super) fn unchanged_copy_up(upper: &Path, lowers: &[String], rel: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let up = upper.join(rel);
    let Ok(m) = std::fs::symlink_metadata(&up) else {
        return false;
    };
    if !m.is_dir() || std::fs::read_dir(&up).map_or(true, |mut d| d.next().is_some()) {
        return false;
    }
    let Ok(c) = std::ffi::CString::new(up.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: a NUL-terminated path and a null buffer of size 0 only ask for the length.
    let opaque = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    if opaque >= 0 {
        return false;
    }
    lowers
        .iter()
        .find_map(|l| std::fs::symlink_metadata(Path::new(l).join(rel)).ok())
        .is_some_and(|l| {
            l.is_dir() && l.mode() == m.mode() && l.uid() == m.uid() && l.gid() == m.gid()
        })
}

/// `berth-runtime run` on the step's bundle, its output streamed as it comes. The exit
/// status of the container's process.
pub(super) async fn run_container(sh: &Shared<'_>, work: &Work) -> Result<i32, BuildError> {
    let runtime = daemons::sibling_binary("berth-runtime");
    let mut cmd = tokio::process::Command::new(&runtime);
    cmd.arg("--root")
        .arg(sh.run.join("runtime"))
        .arg("run")
        .arg("--bundle")
        .arg(&work.dir)
        .arg(&work.id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    // The bundle's root is `<dir>/rootfs`; the runtime reads `root.path` from the spec.
    let mut child = cmd
        .spawn()
        .map_err(|e| BuildError::Daemon(format!("start {}: {e}", runtime.display())))?;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let report = sh.report.clone();
    let report2 = sh.report.clone();
    let a = async move {
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = out.read(&mut buf).await {
            if n == 0 {
                break;
            }
            report(Event::Output(buf[..n].to_vec()));
        }
    };
    let b = async move {
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = err.read(&mut buf).await {
            if n == 0 {
                break;
            }
            report2(Event::Output(buf[..n].to_vec()));
        }
    };
    let (_, _, status) = tokio::join!(a, b, child.wait());
    let status =
        status.map_err(|e| BuildError::Daemon(format!("wait for {}: {e}", runtime.display())))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

pub(super) fn cgroup_parent() -> String {
    std::env::var("BERTH_CGROUP_PARENT")
        .ok()
        .map(|p| p.trim_matches('/').to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "berth".into())
}
