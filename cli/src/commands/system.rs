//! `info`, `version`, `events`, `system df`, `system prune` and `system boot`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};

use super::container::ps;
use super::container::stats::bytes_size;
use super::image::{confirm, daemon_error};
use crate::engine::containers::state::Status;
use crate::engine::containers::stats::{host_memory, online_cpus};
use crate::engine::events::{self, Event, Follower};
use crate::engine::Engine;
use crate::format::human::{ago, size};
use crate::format::template::{align, Template};
use crate::Failure;
use berth_proto::imaged as ipb;
use berth_proto::netd as npb;

fn template_failure(e: crate::format::template::TemplateError) -> Failure {
    Failure::new(1, e.to_string())
}

/// Print `v` through a `--format` template (`json`: as JSON).
fn print_formatted(v: &Value, format: &str) -> Result<()> {
    if format == "json" {
        println!("{}", serde_json::to_string(v)?);
        return Ok(());
    }
    let t = Template::parse(format).map_err(template_failure)?;
    println!("{}", t.render(v).map_err(template_failure)?);
    Ok(())
}

// ---------------------------------------------------------------- info

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
}

fn uname() -> (String, String) {
    match nix::sys::utsname::uname() {
        Ok(u) => (
            u.release().to_string_lossy().into_owned(),
            u.machine().to_string_lossy().into_owned(),
        ),
        Err(_) => (String::new(), String::new()),
    }
}

fn operating_system() -> String {
    std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

/// Docker's words for the file system under the root (`extfs`, `xfs`, …).
fn backing_filesystem(root: &Path) -> String {
    use nix::sys::statfs as fs;
    let mut p = root.to_path_buf();
    while !p.exists() {
        if !p.pop() {
            break;
        }
    }
    let Ok(s) = fs::statfs(&p) else {
        return "unknown".into();
    };
    let t = s.filesystem_type();
    let named = [
        (fs::EXT4_SUPER_MAGIC, "extfs"),
        (fs::XFS_SUPER_MAGIC, "xfs"),
        (fs::BTRFS_SUPER_MAGIC, "btrfs"),
        (fs::TMPFS_MAGIC, "tmpfs"),
        (fs::OVERLAYFS_SUPER_MAGIC, "overlayfs"),
    ];
    named
        .iter()
        .find(|(m, _)| *m == t)
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| format!("{:#x}", t.0))
}

fn cgroup_version() -> &'static str {
    match berth_cgroups::detect().map(|h| h.layout) {
        Ok(berth_cgroups::Layout::V2) => "2",
        Ok(berth_cgroups::Layout::Hybrid) => "hybrid",
        Ok(berth_cgroups::Layout::V1) => "1",
        Err(_) => "unknown",
    }
}

/// What `info` knows, with Docker's field names for `--format`.
pub async fn info_value(engine: &mut Engine) -> Result<Value> {
    let (mut running, mut paused, mut stopped) = (0, 0, 0);
    let recs = engine.store().all();
    for r in &recs {
        match engine.state_of(r).status {
            Status::Running | Status::Restarting => running += 1,
            Status::Paused => paused += 1,
            _ => stopped += 1,
        }
    }
    let images = engine
        .images()
        .await?
        .list(ipb::ListRequest {
            all: false,
            filters: Vec::new(),
        })
        .await
        .map_err(daemon_error)?
        .into_inner()
        .images
        .len();
    let (kernel, arch) = uname();
    let root = engine.root.display().to_string();
    Ok(json!({
        "ID": "",
        "Containers": recs.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": stopped,
        "Images": images,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", backing_filesystem(&engine.root)]],
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version(),
        "DefaultRuntime": "berth-runtime",
        "KernelVersion": kernel,
        "OperatingSystem": operating_system(),
        "OSType": "linux",
        "Architecture": arch,
        "NCPU": online_cpus(),
        "MemTotal": host_memory(),
        "Name": nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
        "DockerRootDir": root,
        "BerthRootDir": root,
        "BerthRunDir": engine.run.display().to_string(),
    }))
}

pub async fn info(engine: &mut Engine, a: &InfoArgs) -> Result<()> {
    let v = info_value(engine).await?;
    if let Some(f) = a.format.as_deref().filter(|f| !f.is_empty()) {
        return print_formatted(&v, f);
    }
    let s = |k: &str| super::super::format::template::plain(&v[k]);
    println!("Client:");
    println!(" Version:    {}", env!("CARGO_PKG_VERSION"));
    println!(" Debug Mode: false");
    println!();
    println!("Server:");
    println!(" Containers: {}", s("Containers"));
    println!("  Running: {}", s("ContainersRunning"));
    println!("  Paused: {}", s("ContainersPaused"));
    println!("  Stopped: {}", s("ContainersStopped"));
    println!(" Images: {}", s("Images"));
    println!(" Server Version: {}", s("ServerVersion"));
    println!(" Storage Driver: overlay2");
    println!(
        "  Backing Filesystem: {}",
        plain_at(&v, &["DriverStatus", "0", "1"])
    );
    println!(" Logging Driver: json-file");
    println!(" Cgroup Driver: cgroupfs");
    println!(" Cgroup Version: {}", s("CgroupVersion"));
    println!(" Runtimes: berth-runtime");
    println!(" Default Runtime: berth-runtime");
    println!(" Kernel Version: {}", s("KernelVersion"));
    println!(" Operating System: {}", s("OperatingSystem"));
    println!(" OSType: linux");
    println!(" Architecture: {}", s("Architecture"));
    println!(" CPUs: {}", s("NCPU"));
    println!(
        " Total Memory: {}",
        bytes_size(v["MemTotal"].as_u64().unwrap_or(0))
    );
    println!(" Name: {}", s("Name"));
    println!(" Berth Root Dir: {}", s("BerthRootDir"));
    println!(" Debug Mode: false");
    Ok(())
}

fn plain_at(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for k in path {
        cur = match k.parse::<usize>() {
            Ok(i) => &cur[i],
            Err(_) => &cur[*k],
        };
    }
    crate::format::template::plain(cur)
}

// ---------------------------------------------------------------- version

#[derive(Args, Debug)]
pub struct VersionArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
}

fn go_arch(machine: &str) -> &str {
    match machine {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "i686" | "i386" => "386",
        m => m,
    }
}

/// `<binary> --version`'s first line's last word (`berth-runtime version 0.1.0`).
fn binary_version(name: &str) -> Option<String> {
    let out = std::process::Command::new(crate::engine::daemons::sibling_binary(name))
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next()?;
    first.split_whitespace().last().map(str::to_string)
}

pub async fn version(engine: &mut Engine, a: &VersionArgs) -> Result<()> {
    let (_, machine) = uname();
    let os_arch = format!("linux/{}", go_arch(&machine));
    let mut components = Vec::new();
    let mut errors = Vec::new();
    match engine.images().await {
        Ok(c) => match c.version(ipb::VersionRequest {}).await {
            Ok(v) => {
                let v = v.into_inner();
                components.push(json!({"Name": "berth-imaged", "Version": v.version, "Details": {"ApiVersion": v.api}}));
            }
            Err(s) => errors.push(format!("berth-imaged: {}", s.message())),
        },
        Err(e) => errors.push(format!("berth-imaged: {e:#}")),
    }
    match engine.networks().await {
        Ok(c) => match c.version(npb::VersionRequest {}).await {
            Ok(v) => {
                let v = v.into_inner();
                components.push(json!({"Name": "berth-netd", "Version": v.version, "Details": {"ApiVersion": v.api}}));
            }
            Err(s) => errors.push(format!("berth-netd: {}", s.message())),
        },
        Err(e) => errors.push(format!("berth-netd: {e:#}")),
    }
    for b in [
        crate::engine::containers::shim::SHIM_BINARY,
        "berth-runtime",
    ] {
        if let Some(v) = binary_version(b) {
            components.push(json!({"Name": b, "Version": v, "Details": {}}));
        }
    }
    let v = json!({
        "Client": {
            "Platform": {"Name": "Berth"},
            "Version": env!("CARGO_PKG_VERSION"),
            "Os": "linux",
            "Arch": go_arch(&machine),
        },
        "Server": {
            "Platform": {"Name": "Berth"},
            "Version": env!("CARGO_PKG_VERSION"),
            "Os": "linux",
            "Arch": go_arch(&machine),
            "Components": components,
        },
    });
    if let Some(f) = a.format.as_deref().filter(|f| !f.is_empty()) {
        print_formatted(&v, f)?;
    } else {
        println!("Client: Berth");
        println!(" Version:           {}", env!("CARGO_PKG_VERSION"));
        println!(" OS/Arch:           {os_arch}");
        println!();
        println!("Server: Berth");
        for c in &components {
            println!(" {}:", c["Name"].as_str().unwrap_or_default());
            println!(
                "  Version:          {}",
                c["Version"].as_str().unwrap_or_default()
            );
            if let Some(api) = c["Details"]["ApiVersion"].as_str() {
                println!("  API version:      {api}");
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(1, errors.join("\n")).into())
    }
}

// ---------------------------------------------------------------- df

#[derive(Args, Debug)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short, long)]
    pub verbose: bool,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
}

fn reclaimable(part: u64, whole: u64) -> String {
    match (part * 100).checked_div(whole) {
        Some(pct) => format!("{} ({pct}%)", size(part)),
        None => size(part),
    }
}

pub async fn df(engine: &mut Engine, a: &DfArgs) -> Result<()> {
    let u = engine
        .images()
        .await?
        .disk_usage(ipb::DiskUsageRequest {})
        .await
        .map_err(daemon_error)?
        .into_inner();
    let image_bytes = u.blobs + u.snapshots + u.partial;

    let recs = engine.store().all();
    let (mut c_active, mut c_size, mut c_free) = (0, 0u64, 0u64);
    let mut c_rows = Vec::new();
    for r in &recs {
        let st = engine.state_of(r);
        let sz = engine.container_size(&r.id);
        c_size += sz;
        if st.status.is_live() {
            c_active += 1;
        } else {
            c_free += sz;
        }
        c_rows.push(format!(
            "{}\t{}\t\"{}\"\t{}\t{}\t{}\t{}\t{}",
            &r.id[..12],
            r.image,
            r.command().join(" "),
            r.mounts.iter().filter(|m| m.kind == "volume").count(),
            size(sz),
            ago(crate::format::human::unix_of(&r.created)),
            ps::status_text(&st),
            r.name
        ));
    }

    let volumes = engine.volumes();
    let vols = volumes.list().unwrap_or_default();
    let (mut v_active, mut v_size, mut v_free) = (0, 0u64, 0u64);
    let mut v_rows = Vec::new();
    for v in &vols {
        let links = recs
            .iter()
            .filter(|r| {
                r.mounts
                    .iter()
                    .any(|m| m.kind == "volume" && m.name == v.name)
            })
            .count();
        let sz = volumes.size(&v.name);
        v_size += sz;
        if links > 0 {
            v_active += 1;
        } else {
            v_free += sz;
        }
        v_rows.push(format!("{}\t{}\t{}", v.name, links, size(sz)));
    }

    let rows = vec![
        json!({"Type": "Images", "TotalCount": u.images, "Active": u.active_images, "Size": size(image_bytes), "Reclaimable": reclaimable(u.reclaimable, image_bytes)}),
        json!({"Type": "Containers", "TotalCount": recs.len(), "Active": c_active, "Size": size(c_size), "Reclaimable": reclaimable(c_free, c_size)}),
        json!({"Type": "Local Volumes", "TotalCount": vols.len(), "Active": v_active, "Size": size(v_size), "Reclaimable": reclaimable(v_free, v_size)}),
    ];
    if !a.verbose || a.format.is_some() {
        return crate::format::print_rows(
            &rows,
            a.format.as_deref(),
            "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
            |f| match f {
                "TotalCount" => "TOTAL".into(),
                f => f.to_uppercase(),
            },
        );
    }
    println!("Images space usage:\n");
    let mut lines = vec![
        "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tSHARED SIZE\tUNIQUE SIZE\tCONTAINERS"
            .to_string(),
    ];
    for i in &u.per_image {
        let (repo, tag) = i
            .repo_tags
            .first()
            .and_then(|t| t.rsplit_once(':'))
            .map(|(r, t)| (r.to_string(), t.to_string()))
            .unwrap_or(("<none>".into(), "<none>".into()));
        let id = i.id.trim_start_matches("sha256:");
        lines.push(format!(
            "{repo}\t{tag}\t{}\t{}\t{}\t{}\t{}\t{}",
            &id[..12.min(id.len())],
            ago(i.created),
            size(i.size),
            size(i.shared_size),
            size(i.size.saturating_sub(i.shared_size)),
            i.containers
        ));
    }
    print!("{}", align(&lines));
    println!("\nContainers space usage:\n");
    let mut lines = vec![
        "CONTAINER ID\tIMAGE\tCOMMAND\tLOCAL VOLUMES\tSIZE\tCREATED\tSTATUS\tNAMES".to_string(),
    ];
    lines.extend(c_rows);
    print!("{}", align(&lines));
    println!("\nLocal Volumes space usage:\n");
    let mut lines = vec!["VOLUME NAME\tLINKS\tSIZE".to_string()];
    lines.extend(v_rows);
    print!("{}", align(&lines));
    Ok(())
}

// ---------------------------------------------------------------- prune

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused images not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Prune anonymous volumes
    #[arg(long)]
    pub volumes: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. "label=<key>=<value>")
    #[arg(long)]
    pub filter: Vec<String>,
}

fn section(title: &str, items: &[String]) {
    if !items.is_empty() {
        println!("{title}:");
        for i in items {
            println!("{i}");
        }
        println!();
    }
}

pub async fn prune(engine: &mut Engine, a: &PruneArgs) -> Result<()> {
    if !a.force {
        let mut w = String::from(
            "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container",
        );
        if a.volumes {
            w.push_str("\n  - all anonymous volumes not used by at least one container");
        }
        w.push_str(if a.all {
            "\n  - all images without at least one container associated to them"
        } else {
            "\n  - all dangling images"
        });
        w.push('\n');
        if !confirm(&w) {
            return Ok(());
        }
    }
    let mut reclaimed = 0u64;

    let mut containers = Vec::new();
    for rec in engine.store().all() {
        if engine.state_of(&rec).status.is_live() || !ps::matches_filters(engine, &rec, &a.filter)?
        {
            continue;
        }
        let sz = engine.container_size(&rec.id);
        if engine.remove_container(&rec.id, false, false).await.is_ok() {
            reclaimed += sz;
            containers.push(rec.id);
        }
    }
    section("Deleted Containers", &containers);

    let networks = engine
        .networks()
        .await?
        .prune_networks(npb::PruneNetworksRequest {})
        .await
        .map_err(daemon_error)?
        .into_inner()
        .removed;
    section("Deleted Networks", &networks);

    if a.volumes {
        let users = super::volume::volume_users(engine);
        let r = engine
            .volumes()
            .prune(false, &[], users.as_ref())
            .map_err(|e| Failure::new(1, format!("Error response from daemon: {e}")))?;
        reclaimed += r.reclaimed;
        section("Deleted Volumes", &r.deleted);
    }

    let r = engine
        .images()
        .await?
        .prune(ipb::PruneRequest {
            all: a.all,
            filters: a.filter.clone(),
        })
        .await
        .map_err(daemon_error)?
        .into_inner();
    reclaimed += r.reclaimed;
    section("Deleted Images", &r.lines);

    println!("Total reclaimed space: {}", size(reclaimed));
    Ok(())
}

// ---------------------------------------------------------------- boot

#[derive(Args, Debug)]
pub struct BootArgs {
    /// Write a systemd unit (berth-boot.service) that runs `berth system boot` at boot
    #[arg(long)]
    pub install_unit: bool,
}

/// Where systemd lives: `/`, or `BERTH_SYSTEMD_ROOT` (tests).
fn systemd_root() -> PathBuf {
    std::env::var_os("BERTH_SYSTEMD_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

pub fn unit_text(engine: &Engine) -> String {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/usr/local/bin/berth".into());
    format!(
        "[Unit]\n\
         Description=Berth: start the always and unless-stopped containers\n\
         Documentation=https://github.com/berth/berth\n\
         After=network-online.target local-fs.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         Environment=BERTH_ROOT={}\n\
         Environment=BERTH_RUN={}\n\
         ExecStart={exe} system boot\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        engine.root.display(),
        engine.run.display()
    )
}

pub async fn boot(engine: &mut Engine, a: &BootArgs) -> Result<()> {
    if a.install_unit {
        let root = systemd_root();
        if !root.join("run/systemd/system").is_dir() {
            return Err(Failure::new(
                1,
                "this host does not run systemd (no /run/systemd/system): no unit written; run `berth system boot` from the host's boot scripts instead",
            )
            .into());
        }
        let dir = root.join("etc/systemd/system");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("berth-boot.service");
        std::fs::write(&path, unit_text(engine))
            .map_err(|e| Failure::new(1, format!("write {}: {e}", path.display())))?;
        println!("Wrote {}", path.display());
        println!("Enable it with: systemctl daemon-reload && systemctl enable berth-boot.service");
        return Ok(());
    }
    let mut errors = Vec::new();
    for rec in engine.boot_plan() {
        match engine.boot_container(&rec).await {
            Ok(true) => println!("{}", rec.name),
            Ok(false) => {}
            Err(e) => errors.push(format!("Error starting container {}: {e}", rec.name)),
        }
    }
    super::container::report(errors)
}

// ---------------------------------------------------------------- events

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Show all events created since timestamp
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    pub until: Option<String>,
    /// Filter output based on conditions provided
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
}

fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Docker's `--since`/`--until`: a Unix time (`1700000000[.5]`), an RFC 3339 time or date,
/// or a duration before now (`10m`).
pub fn parse_time(s: &str) -> Result<i128, Failure> {
    if let Ok(secs) = s.parse::<f64>() {
        return Ok((secs * 1e9) as i128);
    }
    if let Some(d) = berth_imaged::changes::go_duration(s) {
        return Ok(now_nanos() - d.as_nanos() as i128);
    }
    let with_time = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    humantime::parse_rfc3339_weak(&with_time)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i128)
        .ok_or_else(|| {
            Failure::new(
                1,
                format!("Error response from daemon: invalid value for timestamp: {s:?}"),
            )
        })
}

struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    fn parse(items: &[String]) -> Result<Filters, Failure> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in items {
            let (k, v) = f.split_once('=').ok_or_else(|| {
                Failure::new(
                    1,
                    format!("bad format of filter (expected name=value): {f}"),
                )
            })?;
            if !matches!(
                k,
                "container" | "event" | "image" | "label" | "network" | "type" | "volume" | "scope"
            ) {
                return Err(Failure::new(
                    1,
                    format!("Error response from daemon: invalid filter '{k}'"),
                ));
            }
            m.entry(k.to_string()).or_default().push(v.to_string());
        }
        Ok(Filters(m))
    }

    /// Every key given must match one of its values, as Docker's event filters do.
    fn matches(&self, e: &Event) -> bool {
        let attr = |k: &str| e.actor.attributes.get(k).map(String::as_str).unwrap_or("");
        self.0.iter().all(|(k, values)| {
            values.iter().any(|v| match k.as_str() {
                "type" => e.kind == *v,
                "event" => e.action.split(':').next() == Some(v.as_str()),
                "container" => {
                    e.kind == "container"
                        && (attr("name") == v.trim_start_matches('/')
                            || e.actor.id.starts_with(v.as_str()))
                }
                "image" => attr("image") == v || (e.kind == "image" && e.actor.id == *v),
                "network" => {
                    e.kind == "network" && (attr("name") == v || e.actor.id.starts_with(v.as_str()))
                }
                "volume" => e.kind == "volume" && e.actor.id == *v,
                "label" => match v.split_once('=') {
                    Some((lk, lv)) => attr(lk) == lv,
                    None => e.actor.attributes.contains_key(v),
                },
                "scope" => e.scope == *v,
                _ => false,
            })
        })
    }
}

/// The event as Go's template sees Docker's struct: field names, not JSON tags.
fn template_value(e: &Event) -> Value {
    json!({
        "Status": e.status,
        "ID": e.id,
        "From": e.from,
        "Type": e.kind,
        "Action": e.action,
        "Actor": {"ID": e.actor.id, "Attributes": e.actor.attributes},
        "Scope": e.scope,
        "Time": e.time,
        "TimeNano": e.time_nano,
    })
}

pub async fn events(engine: &mut Engine, a: &EventsArgs) -> Result<()> {
    let since = a.since.as_deref().map(parse_time).transpose()?;
    let until = a.until.as_deref().map(parse_time).transpose()?;
    let filters = Filters::parse(&a.filter)?;
    let format = a.format.as_deref().filter(|f| !f.is_empty());
    let raw_json = matches!(format, Some("json") | Some("{{json .}}"));
    let template = match format {
        Some(f) if !raw_json => Some(Template::parse(f).map_err(template_failure)?),
        _ => None,
    };
    let print = |e: &Event| -> Result<()> {
        if raw_json {
            println!("{}", serde_json::to_string(e)?);
        } else if let Some(t) = &template {
            println!(
                "{}",
                t.render(&template_value(e)).map_err(template_failure)?
            );
        } else {
            println!("{}", e.line());
        }
        Ok(())
    };
    let in_window = |e: &Event| {
        let t = e.time_nano as i128;
        since.is_none_or(|s| t >= s) && until.is_none_or(|u| t <= u)
    };
    let mut follower = Follower::from_end(&engine.run);
    let mut seen = HashSet::new();
    if since.is_some() || until.is_some() {
        for e in events::read_all(&engine.run) {
            if in_window(&e) && filters.matches(&e) {
                print(&e)?;
            }
            seen.insert(serde_json::to_string(&e)?);
        }
    }
    loop {
        if until.is_some_and(|u| now_nanos() > u) {
            // The last events of the window may have landed since the last look.
            for e in follower.poll() {
                if in_window(&e)
                    && filters.matches(&e)
                    && !seen.contains(&serde_json::to_string(&e)?)
                {
                    print(&e)?;
                }
            }
            return Ok(());
        }
        for e in follower.poll() {
            if seen.remove(&serde_json::to_string(&e)?) {
                continue;
            }
            if in_window(&e) && filters.matches(&e) {
                print(&e)?;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_docker_takes_them() {
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000_000_000_000);
        assert_eq!(
            parse_time("1700000000.5").unwrap(),
            1_700_000_000_500_000_000
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(parse_time("2023-11-14").unwrap(), 1_699_920_000_000_000_000);
        let ago = now_nanos() - parse_time("1h30m").unwrap();
        assert!((ago - 5_400_000_000_000).abs() < 5_000_000_000);
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn filters_match_as_dockers() {
        let mut attrs = BTreeMap::new();
        attrs.insert("name".to_string(), "web".to_string());
        attrs.insert("image".to_string(), "busybox".to_string());
        attrs.insert("app".to_string(), "x".to_string());
        let e = Event::new("container", "exec_start: sh", "abcdef", attrs);
        let f = |v: &[&str]| {
            Filters::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap()
                .matches(&e)
        };
        assert!(f(&["container=web"]));
        assert!(f(&["container=abc", "event=exec_start"]));
        assert!(f(&["event=start", "event=exec_start"]));
        assert!(!f(&["event=start"]));
        assert!(f(&["label=app=x", "type=container", "image=busybox"]));
        assert!(!f(&["type=network"]));
        assert!(Filters::parse(&["bogus=1".to_string()]).is_err());
    }
}
