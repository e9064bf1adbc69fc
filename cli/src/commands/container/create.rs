//! `run` and `create` flags, turned into the engine's CreateRequest with Docker's parsing
//! rules and messages.

use std::collections::BTreeMap;

use clap::Args;
use serde_json::json;

use crate::engine::containers::lifecycle::{split_range, CreateRequest};
use crate::engine::containers::record::{
    Attachment, Config, HostConfig, LogConfig, MountPoint, PortBinding, RestartPolicy,
};
use crate::Failure;

/// The flags `run` and `create` share. `-h` is the hostname here, as in Docker.
#[derive(Args, Debug, Default, Clone)]
pub struct CreateFlags {
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long)]
    pub env_file: Vec<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Add additional groups to join
    #[arg(long)]
    pub group_add: Vec<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Publish a container's port(s) to the host
    #[arg(short, long)]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long)]
    pub expose: Vec<String>,
    /// Bind mount a volume
    #[arg(short, long)]
    pub volume: Vec<String>,
    /// Attach a filesystem mount to the container
    #[arg(long)]
    pub mount: Vec<String>,
    /// Mount volumes from the specified container(s)
    #[arg(long)]
    pub volumes_from: Vec<String>,
    /// Mount a tmpfs directory
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long)]
    pub read_only: bool,
    /// Connect a container to a network
    #[arg(long, visible_alias = "net")]
    pub network: Vec<String>,
    /// Add network-scoped alias for the container
    #[arg(long, visible_alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// Add link to another container
    #[arg(long)]
    pub link: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address (e.g., 2001:db8::33)
    #[arg(long)]
    pub ip6: Option<String>,
    /// Set custom DNS servers
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long)]
    pub dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long, alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long)]
    pub add_host: Vec<String>,
    /// Restart policy to apply when a container exits
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Memory limit
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long)]
    pub memory_swap: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short, long)]
    pub cpu_shares: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Add Linux capabilities
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Add a host device to the container
    #[arg(long)]
    pub device: Vec<String>,
    /// Security Options
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// Ulimit options
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Sysctl options
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Set meta data on a container
    #[arg(short, long)]
    pub label: Vec<String>,
    /// Logging driver for the container
    #[arg(long, default_value = "json-file")]
    pub log_driver: String,
    /// Log driver options
    #[arg(long)]
    pub log_opt: Vec<String>,
    /// Signal to stop the container
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long)]
    pub stop_timeout: Option<u64>,
    /// Command to run to check health
    #[arg(long)]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long)]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long)]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long)]
    pub health_retries: Option<u32>,
    /// Start period for the container to initialize before starting health-retries countdown
    #[arg(long)]
    pub health_start_period: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long, default_value = "")]
    pub platform: String,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Automatically remove the container and its associated anonymous volumes when it exits
    #[arg(long)]
    pub rm: bool,
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// The image, then the command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub image_and_command: Vec<String>,
}

fn bad(msg: impl Into<String>) -> Failure {
    Failure::new(125, msg.into())
}

/// `10m`, `1g`, `512k`, bytes: Docker's RAMInBytes.
pub fn parse_bytes(s: &str) -> Result<i64, Failure> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| bad(format!("invalid size: '{s}'")))?;
    if n < 0.0 {
        return Err(bad(format!("invalid size: '{s}'")));
    }
    Ok((n * mult as f64) as i64)
}

/// `-p [ip:][hostPort[-end]:]containerPort[-end][/proto]` into Docker's PortBindings.
pub fn parse_publish(
    spec: &str,
    out: &mut BTreeMap<String, Vec<PortBinding>>,
) -> Result<(), Failure> {
    let invalid = || {
        bad(format!(
            "invalid argument \"{spec}\" for \"-p, --publish\" flag: invalid port specification"
        ))
    };
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad(format!("invalid proto: {proto}")));
    }
    let parts: Vec<&str> = if rest.starts_with('[') {
        // [v6]:host:container
        let end = rest.find(']').ok_or_else(invalid)?;
        let mut v = vec![&rest[1..end]];
        v.extend(rest[end + 1..].trim_start_matches(':').split(':'));
        v
    } else {
        rest.split(':').collect()
    };
    let (ip, host, container) = match parts.as_slice() {
        [c] => ("", "", *c),
        [h, c] => ("", *h, *c),
        [ip, h, c] => (*ip, *h, *c),
        _ => return Err(invalid()),
    };
    let (c0, c1) = split_range(container).map_err(|_| invalid())?;
    if c0 == 0 {
        return Err(invalid());
    }
    let (h0, h1) = if host.is_empty() {
        (0, 0)
    } else {
        split_range(host).map_err(|_| invalid())?
    };
    if host.contains('-') && (h1 - h0) != (c1 - c0) && c0 != c1 {
        return Err(bad(format!(
            "invalid ranges specified for container and host Ports: {container} and {host}"
        )));
    }
    for i in 0..=(c1 - c0) {
        let hp = match (host.is_empty(), host.contains('-') && c0 == c1) {
            (true, _) => String::new(),
            (false, true) => host.to_string(),
            (false, false) => (h0 + i).to_string(),
        };
        out.entry(format!("{}/{proto}", c0 + i))
            .or_default()
            .push(PortBinding {
                host_ip: ip.to_string(),
                host_port: hp,
            });
    }
    Ok(())
}

fn parse_env_file(path: &str) -> Result<Vec<String>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad(format!("open {path}: {}", crate::commands::io_reason(&e))))?;
    let mut out = Vec::new();
    for l in text.lines() {
        let l = l.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if l.contains('=') {
            out.push(l.to_string());
        } else if let Ok(v) = std::env::var(l) {
            out.push(format!("{l}={v}"));
        }
    }
    Ok(out)
}

/// `-v src:dst[:opts]`: a bind (absolute source), a named volume, or an anonymous one.
fn parse_volume(spec: &str) -> Result<MountPoint, Failure> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => return Err(bad(format!("invalid volume specification: '{spec}'"))),
    };
    if !dst.starts_with('/') {
        return Err(bad(format!(
            "invalid volume specification: '{spec}': invalid mount config for type \"volume\": invalid mount path: '{dst}' mount path must be absolute"
        )));
    }
    let mut m = MountPoint {
        destination: clean(dst),
        rw: true,
        ..Default::default()
    };
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" | "readonly" => m.rw = false,
            "rw" => m.rw = true,
            "z" | "Z" => {}
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                m.propagation = o.to_string()
            }
            "nocopy" => m.options.push("nocopy".into()),
            _ => return Err(bad(format!("invalid mode: {o}"))),
        }
    }
    m.mode = opts.to_string();
    if src.is_empty() {
        m.kind = "volume".into();
        m.anonymous = true;
        m.driver = "local".into();
        m.name = crate::engine::containers::names::new_id();
    } else if src.starts_with('/') || src.starts_with('.') {
        let abs = std::path::absolute(src).map_err(|e| bad(format!("{src}: {e}")))?;
        m.kind = "bind".into();
        m.source = abs.display().to_string();
    } else {
        m.kind = "volume".into();
        m.name = src.to_string();
        m.driver = "local".into();
    }
    Ok(m)
}

/// `--mount type=bind|volume|tmpfs,source=,target=,readonly,...`
fn parse_mount(spec: &str) -> Result<MountPoint, Failure> {
    let mut m = MountPoint {
        kind: "volume".into(),
        rw: true,
        ..Default::default()
    };
    let mut src = String::new();
    for kv in spec.split(',') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k.to_ascii_lowercase().as_str() {
            "type" => m.kind = v.to_string(),
            "source" | "src" => src = v.to_string(),
            "target" | "destination" | "dst" => m.destination = clean(v),
            "readonly" | "ro" => m.rw = !matches!(v, "" | "true" | "1"),
            "bind-propagation" => m.propagation = v.to_string(),
            "tmpfs-size" => m.options.push(format!("size={v}")),
            "tmpfs-mode" => m.options.push(format!("mode={v}")),
            "volume-nocopy" => m.options.push("nocopy".into()),
            "consistency" | "volume-driver" | "volume-label" | "volume-opt" => {}
            _ => {
                return Err(bad(format!(
                "invalid argument \"{spec}\" for \"--mount\" flag: unexpected key '{k}' in '{kv}'"
            )))
            }
        }
    }
    if m.destination.is_empty() {
        return Err(bad(format!(
            "invalid argument \"{spec}\" for \"--mount\" flag: target is required"
        )));
    }
    match m.kind.as_str() {
        "bind" => {
            if src.is_empty() {
                return Err(bad(format!("invalid argument \"{spec}\" for \"--mount\" flag: source is required when type is bind")));
            }
            let abs = std::path::absolute(&src).map_err(|e| bad(format!("{src}: {e}")))?;
            if !abs.exists() {
                return Err(bad(format!(
                    "invalid mount config for type \"bind\": bind source path does not exist: {}",
                    abs.display()
                )));
            }
            m.source = abs.display().to_string();
        }
        "volume" => {
            m.driver = "local".into();
            if src.is_empty() {
                m.anonymous = true;
                m.name = crate::engine::containers::names::new_id();
            } else {
                m.name = src;
            }
        }
        "tmpfs" => m.source = "tmpfs".into(),
        other => {
            return Err(bad(format!(
                "invalid argument \"{spec}\" for \"--mount\" flag: invalid mount type: {other}"
            )))
        }
    }
    Ok(m)
}

fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

fn split_kv(s: &str, flag: &str) -> Result<(String, String), Failure> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| {
            bad(format!(
                "invalid argument \"{s}\" for \"{flag}\" flag: must be key=value"
            ))
        })
}

impl CreateFlags {
    pub fn image(&self) -> &str {
        &self.image_and_command[0]
    }

    /// The flags as the engine's request (image id filled in by the caller).
    pub fn request(&self) -> Result<CreateRequest, Failure> {
        let mut c = Config {
            tty: self.tty,
            open_stdin: self.interactive,
            attach_stdin: self.interactive,
            stdin_once: self.interactive,
            cmd: self.image_and_command[1..].to_vec(),
            ..Default::default()
        };
        for f in &self.env_file {
            c.env.extend(parse_env_file(f)?);
        }
        for e in &self.env {
            if e.contains('=') {
                c.env.push(e.clone());
            } else if let Ok(v) = std::env::var(e) {
                c.env.push(format!("{e}={v}"));
            }
        }
        if let Some(e) = &self.entrypoint {
            c.entrypoint = if e.is_empty() {
                vec![]
            } else {
                vec![e.clone()]
            };
        }
        c.working_dir = self.workdir.clone().unwrap_or_default();
        if !c.working_dir.is_empty() && !c.working_dir.starts_with('/') {
            return Err(bad(format!(
                "the working directory '{}' is invalid, it needs to be an absolute path",
                c.working_dir
            )));
        }
        c.user = self.user.clone().unwrap_or_default();
        c.hostname = self.hostname.clone().unwrap_or_default();
        for l in &self.label {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            c.labels.insert(k.to_string(), v.to_string());
        }
        c.stop_signal = self.stop_signal.clone();
        if let Some(s) = &self.stop_signal {
            crate::engine::containers::lifecycle::parse_signal(s)
                .map_err(|e| bad(e.to_string()))?;
        }
        c.stop_timeout = self.stop_timeout;
        if self.no_healthcheck {
            c.healthcheck = Some(json!({"Test": ["NONE"]}));
        } else if let Some(cmd) = &self.health_cmd {
            let dur = |v: &Option<String>| -> Result<i64, Failure> {
                match v {
                    None => Ok(0),
                    Some(s) => humantime::parse_duration(s)
                        .map(|d| d.as_nanos() as i64)
                        .map_err(|e| bad(format!("invalid duration {s}: {e}"))),
                }
            };
            c.healthcheck = Some(json!({
                "Test": ["CMD-SHELL", cmd],
                "Interval": dur(&self.health_interval)?,
                "Timeout": dur(&self.health_timeout)?,
                "StartPeriod": dur(&self.health_start_period)?,
                "Retries": self.health_retries.unwrap_or(0),
            }));
        }
        for e in &self.expose {
            let (p, proto) = e.split_once('/').unwrap_or((e, "tcp"));
            let (a, b) = split_range(p).map_err(|e| bad(e.to_string()))?;
            for port in a..=b {
                c.exposed_ports.insert(format!("{port}/{proto}"), json!({}));
            }
        }

        let mut h = HostConfig {
            auto_remove: self.rm,
            privileged: self.privileged,
            readonly_rootfs: self.read_only,
            publish_all_ports: self.publish_all,
            init: self.init,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            dns: self.dns.clone(),
            dns_search: self.dns_search.clone(),
            dns_options: self.dns_option.clone(),
            extra_hosts: self.add_host.clone(),
            group_add: self.group_add.clone(),
            links: self.link.clone(),
            security_opt: self.security_opt.clone(),
            volumes_from: self.volumes_from.clone(),
            cpuset_cpus: self.cpuset_cpus.clone().unwrap_or_default(),
            cpu_shares: self.cpu_shares.unwrap_or(0),
            pids_limit: self.pids_limit.unwrap_or(0),
            ..Default::default()
        };
        for p in &self.publish {
            parse_publish(p, &mut h.port_bindings)?;
        }
        for a in &self.add_host {
            if !a.contains(':') {
                return Err(bad(format!("invalid argument \"{a}\" for \"--add-host\" flag: bad format for add-host: \"{a}\"")));
            }
        }
        let (name, max) = match self.restart.split_once(':') {
            Some((n, m)) => (
                n,
                m.parse::<u32>()
                    .map_err(|_| bad(format!("invalid restart policy format: maximum retry count must be an integer: {m}")))?,
            ),
            None => (self.restart.as_str(), 0),
        };
        if !matches!(name, "no" | "always" | "on-failure" | "unless-stopped") {
            return Err(bad(format!("invalid restart policy format: unknown policy '{name}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'")));
        }
        if max > 0 && name != "on-failure" {
            return Err(bad(
                "invalid restart policy format: maximum retry count can only be used with 'on-failure'",
            ));
        }
        if self.rm && name != "no" {
            return Err(bad("Conflicting options: --restart and --rm"));
        }
        h.restart_policy = RestartPolicy {
            name: name.to_string(),
            maximum_retry_count: max,
        };
        if let Some(m) = &self.memory {
            h.memory = parse_bytes(m)?;
            if h.memory > 0 && h.memory < 6 << 20 {
                return Err(bad("Minimum memory limit allowed is 6MB"));
            }
        }
        if let Some(s) = &self.memory_swap {
            h.memory_swap = if s == "-1" { -1 } else { parse_bytes(s)? };
            if h.memory == 0 {
                return Err(bad("You should always set the Memory limit when using Memoryswap limit, see usage."));
            }
            if h.memory_swap > 0 && h.memory_swap < h.memory {
                return Err(bad(
                    "Minimum memoryswap limit should be larger than memory limit, see usage.",
                ));
            }
        }
        if let Some(cpus) = &self.cpus {
            let n: f64 = cpus
                .parse()
                .map_err(|_| bad(format!("invalid argument \"{cpus}\" for \"--cpus\" flag: failed to parse {cpus} as a rational number")))?;
            let online = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            if n < 0.01 || n > online as f64 {
                return Err(bad(format!(
                    "Error response from daemon: range of CPUs is from 0.01 to {online}.00, as there are only {online} CPUs available"
                )));
            }
            h.nano_cpus = (n * 1e9) as i64;
        }
        for d in &self.device {
            let parts: Vec<&str> = d.split(':').collect();
            let host = parts[0];
            let inner = parts.get(1).copied().unwrap_or(host);
            let perms = parts.get(2).copied().unwrap_or("rwm");
            if !std::path::Path::new(host).exists() {
                return Err(bad(format!("error gathering device information while adding custom device \"{host}\": no such file or directory")));
            }
            h.devices.push(
                json!({"PathOnHost": host, "PathInContainer": inner, "CgroupPermissions": perms}),
            );
        }
        for u in &self.ulimit {
            let (name, vals) = u
                .split_once('=')
                .ok_or_else(|| bad(format!("invalid ulimit argument: {u}")))?;
            let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
            let parse = |v: &str| {
                v.parse::<i64>()
                    .map_err(|_| bad(format!("invalid ulimit argument: {u}")))
            };
            h.ulimits
                .push(json!({"Name": name, "Soft": parse(soft)?, "Hard": parse(hard)?}));
        }
        for s in &self.sysctl {
            let (k, v) = split_kv(s, "--sysctl")?;
            h.sysctls.insert(k, v);
        }
        h.log_config = LogConfig {
            kind: self.log_driver.clone(),
            config: BTreeMap::new(),
        };
        if !matches!(self.log_driver.as_str(), "json-file" | "none" | "local") {
            return Err(bad(format!(
                "Error response from daemon: logger: no log driver named '{}' is registered (berth has json-file and none)",
                self.log_driver
            )));
        }
        for o in &self.log_opt {
            let (k, v) = split_kv(o, "--log-opt")?;
            if !matches!(
                k.as_str(),
                "max-size" | "max-file" | "compress" | "labels" | "env" | "tag"
            ) {
                return Err(bad(format!(
                    "Error response from daemon: unknown log opt '{k}' for json-file log driver"
                )));
            }
            h.log_config.config.insert(k, v);
        }
        if !self.platform.is_empty() && !self.platform.starts_with("linux/") {
            return Err(bad(format!(
                "Error response from daemon: image platform {} is not supported on this linux host",
                self.platform
            )));
        }

        let mut mounts = Vec::new();
        for v in &self.volume {
            mounts.push(parse_volume(v)?);
            if let Some(last) = mounts.last() {
                if last.kind == "bind" {
                    h.binds.push(v.clone());
                }
            }
        }
        for m in &self.mount {
            mounts.push(parse_mount(m)?);
        }
        for t in &self.tmpfs {
            let (dst, opts) = t.split_once(':').unwrap_or((t, ""));
            h.tmpfs.insert(dst.to_string(), opts.to_string());
            mounts.push(MountPoint {
                kind: "tmpfs".into(),
                source: "tmpfs".into(),
                destination: clean(dst),
                rw: true,
                options: opts
                    .split(',')
                    .filter(|o| !o.is_empty())
                    .map(str::to_string)
                    .collect(),
                ..Default::default()
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &mounts {
            if !seen.insert(m.destination.clone()) {
                return Err(bad(format!(
                    "Error response from daemon: Duplicate mount point: {}",
                    m.destination
                )));
            }
        }

        let nets: Vec<String> = self
            .network
            .iter()
            .flat_map(|n| n.split(','))
            .map(str::to_string)
            .collect();
        h.network_mode = nets.first().cloned().unwrap_or_else(|| "bridge".into());
        if nets.len() > 1 && nets.iter().any(|n| n == "none" || n == "host") {
            return Err(bad("Error response from daemon: Container cannot be connected to network endpoints: none and host exclude others"));
        }
        if (h.network_mode == "none" || h.network_mode == "host") && !h.port_bindings.is_empty() {
            // Docker ignores -p here with a warning; nothing would be published.
            eprintln!(
                "WARNING: Published ports are discarded when using host or none network mode"
            );
            h.port_bindings.clear();
        }
        let networks: Vec<Attachment> = if matches!(h.network_mode.as_str(), "none" | "host") {
            vec![]
        } else {
            nets.iter()
                .enumerate()
                .map(|(i, n)| Attachment {
                    network: if n == "default" {
                        "bridge".into()
                    } else {
                        n.clone()
                    },
                    aliases: if n == "bridge" || n == "default" {
                        vec![]
                    } else {
                        self.network_alias.clone()
                    },
                    ip: if i == 0 {
                        self.ip.clone().unwrap_or_default()
                    } else {
                        String::new()
                    },
                    ip6: if i == 0 {
                        self.ip6.clone().unwrap_or_default()
                    } else {
                        String::new()
                    },
                })
                .collect()
        };
        if !self.network_alias.is_empty()
            && (nets.is_empty() || nets.iter().all(|n| n == "bridge" || n == "default"))
        {
            return Err(bad("Error response from daemon: network-scoped alias is supported only for containers in user defined networks"));
        }
        if !self.link.is_empty() && h.network_mode != "bridge" {
            return Err(bad("Error response from daemon: conflicting options: --link is only supported on the default bridge network"));
        }
        Ok(CreateRequest {
            name: self.name.clone(),
            image: self.image().to_string(),
            image_id: String::new(),
            config: c,
            entrypoint_set: self.entrypoint.is_some(),
            host: h,
            networks,
            mounts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs_read_like_dockers() {
        let mut m = BTreeMap::new();
        parse_publish("8080:80", &mut m).unwrap();
        parse_publish("127.0.0.1::53/udp", &mut m).unwrap();
        parse_publish("9000-9001:90-91", &mut m).unwrap();
        assert_eq!(m["80/tcp"][0].host_port, "8080");
        assert_eq!(m["53/udp"][0].host_ip, "127.0.0.1");
        assert_eq!(m["53/udp"][0].host_port, "");
        assert_eq!(m["91/tcp"][0].host_port, "9001");
        assert!(parse_publish("x:80", &mut m).is_err());
        assert!(parse_publish("80/xyz", &mut m).is_err());
        assert!(parse_publish("70000", &mut m).is_err());
    }

    #[test]
    fn sizes_volumes_and_mounts() {
        assert_eq!(parse_bytes("10m").unwrap(), 10 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert!(parse_bytes("abc").is_err());
        let v = parse_volume("data:/var/lib/x:ro").unwrap();
        assert_eq!(
            (v.kind.as_str(), v.name.as_str(), v.rw),
            ("volume", "data", false)
        );
        let v = parse_volume("/srv:/srv").unwrap();
        assert_eq!((v.kind.as_str(), v.source.as_str()), ("bind", "/srv"));
        let v = parse_volume("/anon").unwrap();
        assert!(v.anonymous && v.name.len() == 64);
        assert!(parse_volume("data:rel").is_err());
        let m = parse_mount("type=tmpfs,target=/t,tmpfs-size=1m").unwrap();
        assert_eq!(m.options, ["size=1m"]);
        assert!(parse_mount("type=bind,source=/nonexistent-x,target=/t").is_err());
        assert_eq!(clean("/a/../b/./c/"), "/b/c");
    }
}
