//! A container's record: what `create` decided (Docker's Config and HostConfig, in Docker's
//! JSON spelling so `inspect` can show it as is) and the little state that must outlive its
//! shim. The live state comes from the shim's `status.json` (see `state.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Docker's container Config: what the image and the flags make of the process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Config {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<serde_json::Value>,
    pub image: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, serde_json::Value>,
    pub working_dir: String,
    pub entrypoint: Vec<String>,
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    pub name: String,
    pub maximum_retry_count: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub kind: String,
    pub config: BTreeMap<String, String>,
}

/// One mount of the container, as `inspect` shows it under `Mounts`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountPoint {
    /// `bind`, `volume` or `tmpfs`.
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub source: String,
    pub destination: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub driver: String,
    pub mode: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    pub propagation: String,
    /// tmpfs options, or extra bind options.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// An anonymous volume: removed with the container by `rm -v` and `--rm`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
}

/// Docker's HostConfig: how the container sits on the host.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    pub binds: Vec<String>,
    pub network_mode: String,
    pub port_bindings: BTreeMap<String, Vec<PortBinding>>,
    pub restart_policy: RestartPolicy,
    pub auto_remove: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub dns: Vec<String>,
    pub dns_options: Vec<String>,
    pub dns_search: Vec<String>,
    pub extra_hosts: Vec<String>,
    pub group_add: Vec<String>,
    pub links: Vec<String>,
    pub privileged: bool,
    pub publish_all_ports: bool,
    pub readonly_rootfs: bool,
    pub security_opt: Vec<String>,
    pub tmpfs: BTreeMap<String, String>,
    pub volumes_from: Vec<String>,
    pub init: bool,
    pub log_config: LogConfig,
    pub memory: i64,
    pub memory_swap: i64,
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    pub cpuset_cpus: String,
    pub pids_limit: i64,
    pub devices: Vec<serde_json::Value>,
    pub ulimits: Vec<serde_json::Value>,
    pub sysctls: BTreeMap<String, String>,
}

/// A network the container is on, and what was asked of it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Attachment {
    pub network: String,
    pub aliases: Vec<String>,
    pub ip: String,
    /// `--ip6`; empty: netd's choice.
    pub ip6: String,
}

/// What survives a shim: the last known run, for `ps` and `inspect` after the shim is gone.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LastRun {
    pub started_at: String,
    pub finished_at: String,
    pub exit_code: i32,
    pub oom_killed: bool,
    pub restart_count: u32,
    /// Stopped by `stop`/`kill`: an `unless-stopped` container stays down at boot.
    pub stopped_by_user: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Record {
    pub id: String,
    pub name: String,
    /// RFC 3339, UTC, nanoseconds.
    pub created: String,
    /// The image as the user named it, and what it resolved to.
    pub image: String,
    pub image_id: String,
    pub config: Config,
    pub host: HostConfig,
    pub networks: Vec<Attachment>,
    pub mounts: Vec<MountPoint>,
    /// What netd assigned (Docker's NetworkSettings: Ports, Networks, SandboxKey), with the
    /// resolv.conf and hosts it handed back.
    pub network_settings: serde_json::Value,
    /// The snapshot's upper directory: what the container wrote (`ps -s`, SizeRw).
    pub upper: String,
    pub last: LastRun,
}

impl Record {
    /// Docker's Path and Args: the first word of entrypoint + cmd, and the rest.
    pub fn command(&self) -> Vec<String> {
        self.config
            .entrypoint
            .iter()
            .chain(self.config.cmd.iter())
            .cloned()
            .collect()
    }
}
