//! Create, start, stop, kill, remove: one container through imaged (its root), netd (its
//! network namespace), the bundle and its shim. Each step that makes something is undone
//! when a later one fails, so a failed `create` leaves nothing behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_proto::imaged as ipb;
use berth_proto::netd as npb;
use serde_json::Value;

use super::bundle::{self, Inputs, NetNs};
use super::record::{Attachment, Config, HostConfig, MountPoint, Record};
use super::shim::{self, Shim};
use super::state::{self, State, Status};
use super::store::Store;
use super::{names, rootfs, ContainerError};
use crate::engine::{networking, Engine};

/// What `create` is asked for: the flags, already parsed into Docker's shapes.
#[derive(Debug, Default, Clone)]
pub struct CreateRequest {
    pub name: Option<String>,
    /// The image as the user named it, and its id (the caller pulled it if needed).
    pub image: String,
    pub image_id: String,
    pub config: Config,
    /// `--entrypoint` was given (maybe empty): the image's CMD no longer applies.
    pub entrypoint_set: bool,
    pub host: HostConfig,
    pub networks: Vec<Attachment>,
    pub mounts: Vec<MountPoint>,
}

/// The stop signal when neither the image nor the flags name one, as in Docker.
pub const STOP_SIGNAL_DEFAULT: &str = "SIGTERM";
/// How long `stop` waits for the exit command to record the exit before it says `stop`.
const EXIT_RECORD_WAIT: Duration = Duration::from_secs(3);

impl Engine {
    pub fn store(&self) -> Store {
        Store::new(&self.root)
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.store().dir(id)
    }

    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("bundle")
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(format!("{id}-json.log"))
    }

    pub fn attach_socket(&self, id: &str) -> PathBuf {
        self.run.join("attach").join(&id[..16])
    }

    pub fn container(&self, what: &str) -> Result<Record, ContainerError> {
        self.store().resolve(what)
    }

    pub fn state_of(&self, rec: &Record) -> State {
        state::read(rec, &self.bundle_dir(&rec.id))
    }

    /// The container's shim, if it is alive.
    pub fn shim_of(&self, id: &str) -> Option<Shim> {
        Shim::connect(id, &shim::socket(&self.run, id))
    }

    /// Make the container: record, root, network, bundle. Nothing runs yet.
    pub async fn create_container(&mut self, req: CreateRequest) -> Result<Record, ContainerError> {
        let image_json = self.image_inspect(&req.image_id).await?;
        let rec = {
            let store = self.store();
            let _lock = store.lock()?;
            let name = match &req.name {
                Some(n) => {
                    let n = n.strip_prefix('/').unwrap_or(n);
                    if !names::valid(n) {
                        return Err(ContainerError::BadName(n.to_string()));
                    }
                    if let Some(id) = store.name_taken(n) {
                        return Err(ContainerError::NameInUse {
                            name: n.to_string(),
                            id,
                        });
                    }
                    n.to_string()
                }
                None => (0..)
                    .map(names::generate)
                    .find(|n| store.name_taken(n).is_none())
                    .expect("some name is free"),
            };
            let id = names::new_id();
            let rec = merge(&req, &image_json, id, name)?;
            // Saved before anything else exists, under the lock: the name is ours now, and
            // a create killed half-way leaves a record `rm` can finish. Not fsynced: the
            // last save of `build` is.
            store.save_draft(&rec)?;
            rec
        };
        match self.build(rec.clone()).await {
            Ok(rec) => {
                self.emit_container(&rec, "create", &[]);
                Ok(rec)
            }
            Err(e) => {
                let _ = self.remove_container(&rec.id, true, true).await;
                Err(e)
            }
        }
    }

    async fn build(&mut self, mut rec: Record) -> Result<Record, ContainerError> {
        let id = rec.id.clone();
        let dir = self.container_dir(&id);
        let bundle = self.bundle_dir(&id);
        let root = bundle.join("rootfs");
        std::fs::create_dir_all(&root).map_err(|e| ContainerError::io(&root, e))?;
        // --link targets become hosts lines of the sandbox.
        self.resolve_links(&mut rec)?;
        // The root from imaged and the network namespace from netd do not depend on each
        // other: both are asked for at once. Whichever fails, the caller's clean-up removes
        // what the other made.
        let mut images = self
            .images()
            .await
            .map_err(|e| ContainerError::Daemon(format!("{e:#}")))?
            .clone();
        let netd = if needs_sandbox(&rec) {
            Some(self.netd().await?.clone())
        } else {
            None
        };
        let prepare = images.prepare(ipb::PrepareRequest {
            key: id.clone(),
            image: rec.image_id.clone(),
        });
        let (mounts, network) = tokio::join!(prepare, attach_networks(netd, &rec));
        let mounts = mounts?.into_inner();
        rootfs::mount_overlay(&mounts, &root)?;
        rec.upper = mounts.upper.clone();
        let (netns, settings) = network?;
        if let Some(settings) = settings {
            rec.network_settings = settings;
            self.emit_connects(&rec);
        }
        self.volumes_from(&mut rec)?;
        self.prepare_mounts(&mut rec, &root)?;
        let etc = self.write_etc_files(&rec, &dir)?;
        let security = super::wiring::security(&rec)?;
        let annotations = self.annotations(&rec);
        let spec = bundle::spec(
            &rec,
            &Inputs {
                rootfs: &root,
                netns,
                etc_files: etc,
                annotations,
                cgroups_path: format!("/{}/{id}", cgroup_parent()),
                security,
            },
        )?;
        let path = bundle.join("config.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&spec).expect("json"))
            .map_err(|e| ContainerError::io(&path, e))?;
        self.store().save(&rec)?;
        Ok(rec)
    }

    async fn image_inspect(&mut self, image: &str) -> Result<Value, ContainerError> {
        if let Some(json) = self.inspected.remove(image) {
            return serde_json::from_str(&json).map_err(|e| ContainerError::Daemon(e.to_string()));
        }
        let r = self
            .images()
            .await
            .map_err(|e| ContainerError::Daemon(format!("{e:#}")))?
            .inspect(ipb::InspectRequest {
                image: image.to_string(),
            })
            .await?
            .into_inner();
        serde_json::from_str(&r.json).map_err(|e| ContainerError::Daemon(e.to_string()))
    }

    /// `--volumes-from C[:ro|rw]`: C's volumes and binds at the same places.
    fn volumes_from(&self, rec: &mut Record) -> Result<(), ContainerError> {
        for spec in rec.host.volumes_from.clone() {
            let (name, mode) = match spec.rsplit_once(':') {
                Some((n, m @ ("ro" | "rw"))) => (n, Some(m)),
                _ => (spec.as_str(), None),
            };
            let other = self.container(name)?;
            for m in other.mounts.iter().filter(|m| m.kind != "tmpfs") {
                if rec.mounts.iter().any(|x| x.destination == m.destination) {
                    continue;
                }
                let mut m = m.clone();
                // Shared, so never removed with this container.
                m.anonymous = false;
                if let Some(mode) = mode {
                    m.rw = mode == "rw";
                }
                rec.mounts.push(m);
            }
        }
        Ok(())
    }

    /// `--link name[:alias]` on the default bridge: /etc/hosts lines for the linked
    /// container's address, under its name, its alias and its hostname.
    fn resolve_links(&self, rec: &mut Record) -> Result<(), ContainerError> {
        for link in rec.host.links.clone() {
            let (name, alias) = link.split_once(':').unwrap_or((&link, &link));
            let other = self.container(name)?;
            if !self.state_of(&other).status.is_live() {
                return Err(ContainerError::Invalid(format!(
                    "Cannot link to a non running container: /{} AS /{}/{alias}",
                    other.name, rec.name
                )));
            }
            let ip = other.network_settings["Networks"]["bridge"]["IPAddress"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if ip.is_empty() {
                return Err(ContainerError::Invalid(format!(
                    "Cannot link to /{}, as it is not on the default bridge network",
                    other.name
                )));
            }
            let mut names = vec![alias.to_string()];
            for n in [other.name.as_str(), other.config.hostname.as_str()] {
                if !names.iter().any(|x| x == n) {
                    names.push(n.to_string());
                }
            }
            for n in names {
                rec.host.extra_hosts.push(format!("{n}:{ip}"));
            }
        }
        Ok(())
    }

    /// Anonymous volumes for the image's VOLUMEs, filled from the image; the user's mounts
    /// checked.
    fn prepare_mounts(&self, rec: &mut Record, root: &Path) -> Result<(), ContainerError> {
        for m in rec.mounts.iter_mut() {
            if m.kind == "bind" && !Path::new(&m.source).exists() {
                // Docker creates a missing bind source given with -v (not with --mount).
                std::fs::create_dir_all(&m.source)
                    .map_err(|e| ContainerError::io(Path::new(&m.source), e))?;
            }
        }
        let image_volumes: Vec<String> = rec.config.volumes.keys().cloned().collect();
        for dest in image_volumes {
            if rec.mounts.iter().any(|m| m.destination == dest) {
                continue;
            }
            rec.mounts.push(MountPoint {
                kind: "volume".into(),
                name: names::new_id(),
                destination: dest,
                driver: "local".into(),
                rw: true,
                anonymous: true,
                ..Default::default()
            });
        }
        let mut mounts = std::mem::take(&mut rec.mounts);
        for m in mounts.iter_mut().filter(|m| m.kind == "volume") {
            m.source = super::wiring::volume_for(self, m, root)?
                .display()
                .to_string();
        }
        // Saved now (when there are volumes): a failure below must still find the anonymous
        // volumes to remove.
        if !mounts.is_empty() {
            rec.mounts = mounts;
            self.store().save_draft(rec)?;
        }
        Ok(())
    }

    async fn netd(&mut self) -> Result<&mut berth_netd::client::Client, ContainerError> {
        self.networks()
            .await
            .map_err(|e| ContainerError::Daemon(format!("{e:#}")))
    }

    /// A sandbox from netd for `rec` (none for `--network none` and `host`), recorded in
    /// it: what `system boot` calls to re-make one a reboot took.
    pub(crate) async fn attach_networks(
        &mut self,
        rec: &mut Record,
    ) -> Result<NetNs, ContainerError> {
        let netd = if needs_sandbox(rec) {
            Some(self.netd().await?.clone())
        } else {
            None
        };
        let (netns, settings) = attach_networks(netd, rec).await?;
        if let Some(settings) = settings {
            rec.network_settings = settings;
            self.emit_connects(rec);
        }
        Ok(netns)
    }

    /// A `connect` event per network the container is on.
    fn emit_connects(&self, rec: &Record) {
        for (name, n) in rec.network_settings["Networks"]
            .as_object()
            .into_iter()
            .flatten()
        {
            let nid = n["NetworkID"].as_str().unwrap_or_default();
            self.emit_network(&rec.id, "connect", nid, name);
        }
    }

    pub(crate) fn write_etc_files(
        &self,
        rec: &Record,
        dir: &Path,
    ) -> Result<Vec<(PathBuf, &'static str)>, ContainerError> {
        let ns = &rec.network_settings;
        let write = |name: &str, text: &str| -> Result<PathBuf, ContainerError> {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| ContainerError::io(&p, e))?;
            Ok(p)
        };
        let (mut resolv, hosts) = match rec.host.network_mode.as_str() {
            "host" => (
                std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
                std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
            ),
            "none" => (
                String::new(),
                format!(
                    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}",
                    rec.host
                        .extra_hosts
                        .iter()
                        .filter_map(|h| h.split_once(':').map(|(n, ip)| format!("{ip}\t{n}\n")))
                        .collect::<String>()
                ),
            ),
            _ => (
                ns["ResolvConf"].as_str().unwrap_or_default().to_string(),
                ns["Hosts"].as_str().unwrap_or_default().to_string(),
            ),
        };
        // With a sandbox, netd has applied `--dns*` (on a user network its DNS server
        // forwards to the `--dns` servers, so the container keeps resolving its peers).
        let own_dns = !rec.host.dns.is_empty()
            || !rec.host.dns_search.is_empty()
            || !rec.host.dns_options.is_empty();
        if own_dns && matches!(rec.host.network_mode.as_str(), "host" | "none") {
            let mut out = String::new();
            let keep_servers = rec.host.dns.is_empty();
            for l in resolv.lines() {
                let server = l.starts_with("nameserver");
                let search = l.starts_with("search") || l.starts_with("domain");
                let options = l.starts_with("options");
                if (server && !keep_servers)
                    || (search && !rec.host.dns_search.is_empty())
                    || (options && !rec.host.dns_options.is_empty())
                {
                    continue;
                }
                out.push_str(l);
                out.push('\n');
            }
            for s in &rec.host.dns {
                out.push_str(&format!("nameserver {s}\n"));
            }
            if !rec.host.dns_search.is_empty() {
                out.push_str(&format!("search {}\n", rec.host.dns_search.join(" ")));
            }
            if !rec.host.dns_options.is_empty() {
                out.push_str(&format!("options {}\n", rec.host.dns_options.join(" ")));
            }
            resolv = out;
        }
        let mut files = vec![
            (write("resolv.conf", &resolv)?, "/etc/resolv.conf"),
            (write("hosts", &hosts)?, "/etc/hosts"),
        ];
        if rec.host.network_mode != "host" {
            files.push((
                write("hostname", &format!("{}\n", rec.config.hostname))?,
                "/etc/hostname",
            ));
        }
        Ok(files)
    }

    fn annotations(&self, rec: &Record) -> BTreeMap<String, String> {
        let mut a = BTreeMap::new();
        let id = &rec.id;
        let mut put = |k: &str, v: String| {
            a.insert(k.to_string(), v);
        };
        put(
            "io.berth.shim.socket",
            shim::socket(&self.run, id).display().to_string(),
        );
        put(
            "io.berth.runtime.root",
            self.run.join("runtime").display().to_string(),
        );
        if rec.host.log_config.kind != "none" {
            put("io.berth.log.path", self.log_path(id).display().to_string());
            let cfg = &rec.host.log_config.config;
            put(
                "io.berth.log.max-size",
                cfg.get("max-size").cloned().unwrap_or("10m".into()),
            );
            put(
                "io.berth.log.max-file",
                cfg.get("max-file").cloned().unwrap_or("3".into()),
            );
        }
        let rp = &rec.host.restart_policy;
        let policy = match (rp.name.as_str(), rp.maximum_retry_count) {
            ("" | "no", _) => "no".to_string(),
            ("on-failure", n) if n > 0 => format!("on-failure:{n}"),
            (p, _) => p.to_string(),
        };
        put("io.berth.restart", policy);
        if let Some(s) = &rec.config.stop_signal {
            put("io.berth.stop-signal", s.clone());
        }
        put(
            "io.berth.stop-timeout",
            rec.config.stop_timeout.unwrap_or(10).to_string(),
        );
        put(
            "io.berth.attach.socket",
            self.attach_socket(id).display().to_string(),
        );
        if let Some(h) = &rec.config.healthcheck {
            put("io.berth.healthcheck", h.to_string());
        }
        if rec.config.open_stdin {
            put("io.berth.stdin", "true".into());
        }
        if rec.config.stdin_once {
            put("io.berth.stdin-once", "true".into());
        }
        let me = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "berth".into());
        put(
            "io.berth.exit-command",
            serde_json::to_string(&[me.as_str(), "container", "cleanup", id]).expect("json"),
        );
        put(
            "io.berth.event-command",
            serde_json::to_string(&[me.as_str(), "container", "shim-event", id]).expect("json"),
        );
        a
    }

    /// Start the container's process under a fresh shim. With `before_start`, the caller
    /// gets to attach between Create and Start, so it misses no output.
    pub fn start_container(
        &self,
        rec: &Record,
        before_start: impl FnOnce() -> Result<(), ContainerError>,
    ) -> Result<u32, ContainerError> {
        let id = &rec.id;
        let _lock = self.store().lock_container(id)?;
        let bundle = self.bundle_dir(id);
        let st = self.state_of(rec);
        if st.status.is_live() {
            return Ok(st.pid);
        }
        if let Some(old) = self.shim_of(id) {
            let _ = old.delete("");
            old.shutdown_and_wait(&bundle);
        }
        let root = bundle.join("rootfs");
        if !rootfs::is_mounted(&root) {
            return Err(ContainerError::Invalid(format!(
                "container {id}: its root is not mounted (run `berth start` again after `berth system boot`)"
            )));
        }
        let _ = std::fs::remove_file(bundle.join("status.json"));
        let _ = std::fs::remove_file(bundle.join("health.json"));
        let shim = Shim::start(id, &bundle, &self.root, &self.run)?;
        if let Err(e) = shim.create(&bundle, Vec::new(), rec.config.tty) {
            shim.shutdown();
            return Err(e);
        }
        let started = before_start().and_then(|()| shim.start_process(""));
        match started {
            Ok(pid) => {
                self.emit_container(rec, "start", &[]);
                Ok(pid)
            }
            Err(e) => {
                let _ = shim.delete("");
                shim.shutdown();
                Err(e)
            }
        }
    }

    /// Stop as Docker does: the stop signal, then SIGKILL after `timeout` (the container's
    /// own stop timeout when None).
    pub fn stop_container(
        &self,
        rec: &Record,
        timeout: Option<u64>,
        signal: Option<&str>,
    ) -> Result<(), ContainerError> {
        let st = self.state_of(rec);
        if !st.status.is_live() {
            return Ok(());
        }
        let Some(shim) = self.shim_of(&rec.id) else {
            return self.kill_orphan(rec, &st);
        };
        let secs = timeout.unwrap_or(rec.config.stop_timeout.unwrap_or(10));
        let sig = signal
            .map(str::to_string)
            .or(rec.config.stop_signal.clone())
            .unwrap_or(STOP_SIGNAL_DEFAULT.into());
        let signo = parse_signal(&sig)?;
        if st.status == Status::Paused {
            let _ = shim.resume();
        }
        self.emit_container(rec, "kill", &[("signal", signo.to_string())]);
        let _ = shim.kill("", signo, false);
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            let st = self.state_of(rec);
            if !st.status.is_live() {
                self.await_exit_recorded(rec, &st);
                self.emit_container(rec, "stop", &[]);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.emit_container(rec, "kill", &[("signal", (libc::SIGKILL).to_string())]);
        let _ = shim.kill("", libc::SIGKILL as u32, true);
        let _ = shim.wait("");
        self.await_exit_recorded(rec, &self.state_of(rec));
        self.emit_container(rec, "stop", &[]);
        Ok(())
    }

    /// Waits (a little) for the shim's exit command to record the exit, which writes the
    /// `die` event: Docker's order is kill, die, stop. A container removed meanwhile (`--rm`)
    /// has been recorded too.
    fn await_exit_recorded(&self, rec: &Record, st: &State) {
        let deadline = Instant::now() + EXIT_RECORD_WAIT;
        while Instant::now() < deadline {
            match self.store().load(&rec.id) {
                Ok(r) if !st.finished_at.is_empty() && r.last.finished_at != st.finished_at => {}
                _ => return,
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::debug!(id = rec.id, "exit not recorded in {EXIT_RECORD_WAIT:?}");
    }

    /// The shim is gone but the process lives: signal it directly.
    fn kill_orphan(&self, rec: &Record, st: &State) -> Result<(), ContainerError> {
        if st.pid > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(st.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        shim::delete_dead(&rec.id, &self.bundle_dir(&rec.id));
        Ok(())
    }

    pub fn kill_container(&self, rec: &Record, signal: &str) -> Result<(), ContainerError> {
        let st = self.state_of(rec);
        if !st.status.is_live() {
            return Err(ContainerError::Invalid(format!(
                "cannot kill container: {}: container {} is not running",
                rec.name, rec.id
            )));
        }
        let signo = parse_signal(signal)?;
        self.emit_container(rec, "kill", &[("signal", signo.to_string())]);
        match self.shim_of(&rec.id) {
            Some(shim) => shim.kill("", signo, false),
            None => self.kill_orphan(rec, &st),
        }
    }

    /// A restart the shim made on its own (restart policy): the `die` of the run that ended
    /// (`action` "die", with its exit code) or the `start` of the new one.
    pub fn shim_event(&self, id: &str, action: &str, exit_code: Option<i32>) {
        let Ok(rec) = self.store().load(id) else {
            return;
        };
        match (action, exit_code) {
            ("die", Some(code)) => {
                self.emit_container(&rec, "die", &[("exitCode", code.to_string())])
            }
            ("start", _) => self.emit_container(&rec, "start", &[]),
            _ => tracing::warn!(id, action, "unknown shim event"),
        }
    }

    /// Save what the shim knows of the last run into the record, then let the shim go: an
    /// exited container costs no process. The exit command of each container runs this.
    pub async fn cleanup_container(&mut self, id: &str) -> Result<(), ContainerError> {
        let Ok(lock) = self.store().lock_container(id) else {
            return Ok(());
        };
        let Ok(mut rec) = self.store().load(id) else {
            return Ok(());
        };
        let st = self.state_of(&rec);
        // A new run began since this exit (`start` took the lock first): not ours to end.
        if st.status.is_live() {
            return Ok(());
        }
        if !st.exit_reported {
            self.emit_container(&rec, "die", &[("exitCode", st.exit_code.to_string())]);
        }
        if rec.host.auto_remove {
            drop(lock);
            // An attached `run --rm` removes it itself: wait for it rather than race it (and
            // take over if it died).
            let _claim = self.store().wait_removal_claim(id)?;
            return self.remove_container(id, true, true).await;
        }
        rec.last.started_at = st.started_at;
        rec.last.finished_at = st.finished_at;
        rec.last.exit_code = st.exit_code;
        rec.last.oom_killed = st.oom_killed;
        rec.last.restart_count = st.restart_count;
        rec.last.stopped_by_user = st.stopped_by_user;
        self.store().save(&rec)?;
        if let Some(shim) = self.shim_of(id) {
            let _ = shim.delete("");
            shim.shutdown();
        }
        Ok(())
    }

    /// Remove the container and everything it made. `force` kills a live one first;
    /// `volumes` also removes its anonymous volumes.
    pub async fn remove_container(
        &mut self,
        id: &str,
        force: bool,
        volumes: bool,
    ) -> Result<(), ContainerError> {
        let rec = match self.store().load(id) {
            Ok(r) => r,
            Err(ContainerError::NoSuch(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let st = self.state_of(&rec);
        if st.status.is_live() {
            if !force {
                return Err(ContainerError::Invalid(format!(
                    "cannot remove container \"/{}\": container is {}: stop the container before removing or force remove",
                    rec.name,
                    st.status.as_str()
                )));
            }
            if let Some(shim) = self.shim_of(id) {
                if st.status == Status::Paused {
                    let _ = shim.resume();
                }
                let _ = shim.kill("", libc::SIGKILL as u32, true);
                let _ = shim.wait("");
            } else {
                self.kill_orphan(&rec, &st)?;
            }
        }
        if needs_sandbox(&rec) {
            for (name, n) in rec.network_settings["Networks"]
                .as_object()
                .into_iter()
                .flatten()
            {
                let nid = n["NetworkID"].as_str().unwrap_or_default();
                self.emit_network(id, "disconnect", nid, name);
            }
        }
        // The network goes at the same time as the rest: netd works while the shim deletes
        // the container and imaged its root.
        let netd = if needs_sandbox(&rec) {
            self.netd().await.ok().cloned()
        } else {
            None
        };
        let network = async {
            match netd {
                Some(mut c) => networking::remove_sandbox(&mut c, id)
                    .await
                    .map_err(|e| ContainerError::Daemon(e.to_string())),
                None => Ok(()),
            }
        };
        let mut images = self
            .images()
            .await
            .map_err(|e| ContainerError::Daemon(format!("{e:#}")))?
            .clone();
        let bundle = self.bundle_dir(id);
        let root = async {
            // The shim lingers a moment (50 ms) after Shutdown; nothing here needs it gone:
            // the container is deleted, and no later start of this id can meet it (unlike
            // `start_container`, which waits).
            match self.shim_of(id) {
                Some(shim) => {
                    let _ = shim.delete("");
                    shim.shutdown();
                }
                None if bundle.join("shim.pid").exists() => shim::delete_dead(id, &bundle),
                None => {}
            }
            rootfs::unmount(&bundle.join("rootfs"));
            match images
                .remove_snapshot(ipb::SnapshotRequest {
                    key: id.to_string(),
                })
                .await
            {
                Ok(_) => Ok(()),
                Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
                Err(s) => Err(ContainerError::from(s)),
            }
        };
        let (network, root) = tokio::join!(network, root);
        network?;
        root?;
        let _ = std::fs::remove_file(self.attach_socket(id));
        {
            let store = self.store();
            let _lock = store.lock()?;
            // `run --rm` and the exit command may both get here: one destroy event.
            let ours = store.dir(id).exists();
            store.remove(id)?;
            if ours {
                self.emit_container(&rec, "destroy", &[]);
            }
        }
        if volumes {
            let users = super::wiring::RecordUsers(self.store());
            for m in rec.mounts.iter().filter(|m| m.anonymous) {
                let _ = self.volumes().remove(&m.name, false, &users);
            }
        }
        Ok(())
    }

    /// Block until the container's process has ended; its exit code.
    pub fn wait_container(&self, rec: &Record) -> Result<i32, ContainerError> {
        if let Some(shim) = self.shim_of(&rec.id) {
            if self.state_of(rec).status.is_live() {
                return Ok(shim.wait("")? as i32);
            }
        }
        // No shim to ask: watch the state file (a shim killed under a live process).
        loop {
            let st = self.state_of(rec);
            if !st.status.is_live() {
                return Ok(st.exit_code);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Engine {
    /// `network connect`: one more network for a container, running or not.
    pub async fn connect_container(
        &mut self,
        what: &str,
        network: &str,
        aliases: &[String],
        ip: Option<&str>,
        ip6: Option<&str>,
    ) -> Result<(), ContainerError> {
        let rec = self.container(what)?;
        if matches!(rec.host.network_mode.as_str(), "none" | "host") {
            return Err(ContainerError::Invalid(format!(
                "container cannot be disconnected from host network or connected to host network: {} uses network mode {}",
                rec.name, rec.host.network_mode
            )));
        }
        let sb = networking::connect(
            self.netd().await?,
            &rec.id,
            &networking::Attachment {
                network: network.to_string(),
                aliases: aliases.to_vec(),
                ip: ip.map(str::to_string),
                ip6: ip6.map(str::to_string),
                mac: None,
            },
        )
        .await
        .map_err(|e| ContainerError::Daemon(e.to_string()))?;
        if let Some(e) = sb
            .endpoints
            .iter()
            .find(|e| e.network_name == network || e.network_id.starts_with(network))
        {
            self.emit_network(&rec.id, "connect", &e.network_id, &e.network_name);
        }
        self.update_networks(&rec.id, &sb, |r| {
            r.networks.push(Attachment {
                network: network.to_string(),
                aliases: aliases.to_vec(),
                ip: ip.unwrap_or_default().to_string(),
                ip6: ip6.unwrap_or_default().to_string(),
            })
        })
    }

    pub async fn disconnect_container(
        &mut self,
        what: &str,
        network: &str,
    ) -> Result<(), ContainerError> {
        let rec = self.container(what)?;
        let sb = networking::disconnect(self.netd().await?, &rec.id, network)
            .await
            .map_err(|e| ContainerError::Daemon(e.to_string()))?;
        if let Some((name, n)) = rec.network_settings["Networks"]
            .as_object()
            .into_iter()
            .flatten()
            .find(|(name, n)| {
                *name == network
                    || n["NetworkID"]
                        .as_str()
                        .is_some_and(|i| i.starts_with(network))
            })
        {
            self.emit_network(
                &rec.id,
                "disconnect",
                n["NetworkID"].as_str().unwrap_or_default(),
                name,
            );
        }
        self.update_networks(&rec.id, &sb, |r| {
            r.networks.retain(|n| n.network != network)
        })
    }

    /// Record what netd now says of the container's networks, and rewrite its /etc/hosts
    /// and resolv.conf (bind-mounted files: a running container sees the change).
    fn update_networks(
        &self,
        id: &str,
        sb: &npb::Sandbox,
        edit: impl FnOnce(&mut Record),
    ) -> Result<(), ContainerError> {
        let store = self.store();
        let _lock = store.lock()?;
        let mut rec = store.load(id)?;
        edit(&mut rec);
        rec.network_settings = sandbox_json(sb);
        let dir = self.container_dir(id);
        for (name, text) in [("hosts", &sb.hosts), ("resolv.conf", &sb.resolv_conf)] {
            if rec.host.dns.is_empty() || name == "hosts" {
                let p = dir.join(name);
                // In place, not renamed: the container has this inode bind-mounted.
                std::fs::write(&p, text).map_err(|e| ContainerError::io(&p, e))?;
            }
        }
        store.save(&rec)
    }

    pub fn rename_container(&self, what: &str, new_name: &str) -> Result<(), ContainerError> {
        let store = self.store();
        let _lock = store.lock()?;
        let mut rec = store.resolve(what)?;
        let n = new_name.strip_prefix('/').unwrap_or(new_name);
        if !names::valid(n) {
            return Err(ContainerError::BadName(n.to_string()));
        }
        if let Some(id) = store.name_taken(n) {
            return Err(ContainerError::NameInUse {
                name: n.to_string(),
                id,
            });
        }
        let old = std::mem::replace(&mut rec.name, n.to_string());
        store.save(&rec)?;
        self.emit_container(&rec, "rename", &[("oldName", format!("/{old}"))]);
        Ok(())
    }

    /// Bytes the container has written (its upper directory), hard links counted once.
    pub fn container_size(&self, id: &str) -> u64 {
        let Ok(rec) = self.store().load(id) else {
            return 0;
        };
        let mut seen = std::collections::HashSet::new();
        let mut total = 0u64;
        let mut stack = vec![PathBuf::from(&rec.upper)];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let Ok(m) = e.metadata() else { continue };
                if m.is_dir() {
                    stack.push(e.path());
                } else if std::os::unix::fs::MetadataExt::nlink(&m) < 2
                    || seen.insert(std::os::unix::fs::MetadataExt::ino(&m))
                {
                    total += m.len();
                }
            }
        }
        total
    }
}

/// The cgroup every container's sits under: `BERTH_CGROUP_PARENT`, else `berth` (as
/// Docker's `docker`); tests give each run its own.
fn cgroup_parent() -> String {
    std::env::var("BERTH_CGROUP_PARENT")
        .ok()
        .map(|p| p.trim_matches('/').to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "berth".into())
}

/// Whether the container gets a sandbox from netd: not with `--network none` (a private
/// namespace of its own) nor `host`.
fn needs_sandbox(rec: &Record) -> bool {
    !matches!(rec.host.network_mode.as_str(), "none" | "host")
}

/// A sandbox from netd (given when `needs_sandbox`) on each network, with the published
/// ports: the namespace for the spec, and what inspect shows of it.
async fn attach_networks(
    netd: Option<berth_netd::client::Client>,
    rec: &Record,
) -> Result<(NetNs, Option<Value>), ContainerError> {
    let mut netd = match (rec.host.network_mode.as_str(), netd) {
        ("none", _) => return Ok((NetNs::New, None)),
        ("host", _) => return Ok((NetNs::Host, None)),
        (_, Some(c)) => c,
        (mode, None) => {
            return Err(ContainerError::Daemon(format!(
                "network {mode}: no connection to berth-netd"
            )))
        }
    };
    let spec = networking::SandboxSpec {
        container_id: rec.id.clone(),
        name: rec.name.clone(),
        hostname: rec.config.hostname.clone(),
        ports: port_mappings(&rec.host)?,
        extra_hosts: rec
            .host
            .extra_hosts
            .iter()
            .map(|h| match h.split_once(':') {
                Some((name, ip)) => format!("{ip}\t{name}"),
                None => h.clone(),
            })
            .collect(),
        dns_servers: rec.host.dns.clone(),
        dns_search: rec.host.dns_search.clone(),
        dns_options: rec.host.dns_options.clone(),
    };
    let attachments: Vec<networking::Attachment> = rec
        .networks
        .iter()
        .map(|a| networking::Attachment {
            network: a.network.clone(),
            aliases: a.aliases.clone(),
            ip: (!a.ip.is_empty()).then(|| a.ip.clone()),
            ip6: (!a.ip6.is_empty()).then(|| a.ip6.clone()),
            mac: None,
        })
        .collect();
    let sb = networking::setup(&mut netd, &spec, &attachments)
        .await
        .map_err(|e| ContainerError::Daemon(e.to_string()))?;
    Ok((
        NetNs::Path(PathBuf::from(&sb.netns_path)),
        Some(sandbox_json(&sb)),
    ))
}

/// Docker's signal syntax: `SIGKILL`, `KILL`, `9`.
pub fn parse_signal(s: &str) -> Result<u32, ContainerError> {
    if let Ok(n) = s.parse::<u32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as u32)
        .map_err(|_| ContainerError::Invalid(format!("Invalid signal: {s}")))
}

/// `-p` bindings as netd's port mappings.
fn port_mappings(h: &HostConfig) -> Result<Vec<npb::PortMapping>, ContainerError> {
    let mut out = Vec::new();
    for (key, binds) in &h.port_bindings {
        let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        let (cp, cpe) = split_range(port)?;
        for b in binds {
            let (hp, hpe) = if b.host_port.is_empty() {
                (0, 0)
            } else {
                split_range(&b.host_port)?
            };
            out.push(npb::PortMapping {
                host_ip: b.host_ip.clone(),
                host_port: hp,
                host_port_end: if hpe == hp { 0 } else { hpe },
                container_port: cp,
                container_port_end: if cpe == cp { 0 } else { cpe },
                protocol: proto.to_string(),
            });
        }
    }
    Ok(out)
}

pub fn split_range(s: &str) -> Result<(u32, u32), ContainerError> {
    let bad = || ContainerError::Invalid(format!("invalid port: {s}"));
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u32 = a.parse().map_err(|_| bad())?;
    let b: u32 = b.parse().map_err(|_| bad())?;
    if a > 65535 || b > 65535 || b < a {
        return Err(bad());
    }
    Ok((a, b))
}

/// What inspect shows under NetworkSettings, from netd's sandbox.
fn sandbox_json(sb: &npb::Sandbox) -> Value {
    let mut ports = serde_json::Map::new();
    for p in &sb.ports {
        let n = p.container_port_end.saturating_sub(p.container_port);
        for i in 0..=n {
            let key = format!("{}/{}", p.container_port + i, p.protocol);
            let entry = serde_json::json!({
                "HostIp": if p.host_ip.is_empty() { "0.0.0.0" } else { &p.host_ip },
                "HostPort": (p.host_port + i).to_string(),
            });
            ports
                .entry(key)
                .or_insert_with(|| Value::Array(vec![]))
                .as_array_mut()
                .expect("array")
                .push(entry);
        }
    }
    let mut networks = serde_json::Map::new();
    for e in &sb.endpoints {
        // "addr/len", or empty on an IPv4-only network: Docker's "" and 0 then.
        let (ip6, len6) = e
            .ipv6_address
            .split_once('/')
            .map(|(a, l)| (a, l.parse::<u32>().unwrap_or(0)))
            .unwrap_or(("", 0));
        networks.insert(
            e.network_name.clone(),
            serde_json::json!({
                "Aliases": e.aliases,
                "NetworkID": e.network_id,
                "EndpointID": e.endpoint_id,
                "Gateway": e.gateway,
                "IPAddress": e.ipv4_address.split('/').next().unwrap_or_default(),
                "IPPrefixLen": e.ipv4_address.split('/').nth(1).and_then(|p| p.parse::<u32>().ok()).unwrap_or(0),
                "IPv6Gateway": e.ipv6_gateway,
                "GlobalIPv6Address": ip6,
                "GlobalIPv6PrefixLen": len6,
                "MacAddress": e.mac,
            }),
        );
    }
    serde_json::json!({
        "SandboxKey": sb.netns_path,
        "Ports": ports,
        "Networks": networks,
        "ResolvConf": sb.resolv_conf,
        "Hosts": sb.hosts,
    })
}

/// The record: the image's config under the flags, as Docker merges them.
fn merge(
    req: &CreateRequest,
    image: &Value,
    id: String,
    name: String,
) -> Result<Record, ContainerError> {
    let ic = &image["Config"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut c = req.config.clone();
    let image_cmd = strings(&ic["Cmd"]);
    let image_entry = strings(&ic["Entrypoint"]);
    if !req.entrypoint_set {
        c.entrypoint = image_entry;
        if c.cmd.is_empty() {
            c.cmd = image_cmd;
        }
    }
    if c.entrypoint.is_empty() && c.cmd.is_empty() {
        return Err(ContainerError::Invalid("no command specified".into()));
    }
    let mut env = strings(&ic["Env"]);
    for e in &req.config.env {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    c.env = env;
    if c.working_dir.is_empty() {
        c.working_dir = ic["WorkingDir"].as_str().unwrap_or_default().to_string();
    }
    if c.user.is_empty() {
        c.user = ic["User"].as_str().unwrap_or_default().to_string();
    }
    if c.stop_signal.is_none() {
        c.stop_signal = ic["StopSignal"].as_str().map(str::to_string);
    }
    if c.healthcheck.is_none() && ic["Healthcheck"].is_object() {
        c.healthcheck = Some(ic["Healthcheck"].clone());
    }
    if let Some(l) = ic["Labels"].as_object() {
        for (k, v) in l {
            c.labels
                .entry(k.clone())
                .or_insert_with(|| v.as_str().unwrap_or_default().to_string());
        }
    }
    if let Some(p) = ic["ExposedPorts"].as_object() {
        for k in p.keys() {
            c.exposed_ports
                .entry(k.clone())
                .or_insert(serde_json::json!({}));
        }
    }
    for k in req.host.port_bindings.keys() {
        c.exposed_ports
            .entry(k.clone())
            .or_insert(serde_json::json!({}));
    }
    if let Some(v) = ic["Volumes"].as_object() {
        for k in v.keys() {
            c.volumes.entry(k.clone()).or_insert(serde_json::json!({}));
        }
    }
    if c.hostname.is_empty() {
        c.hostname = if req.host.network_mode == "host" {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            id[..12].to_string()
        };
    }
    c.image = req.image.clone();
    let mut host = req.host.clone();
    if host.publish_all_ports {
        // -P: every exposed port not published by -p gets a random host port.
        for k in c.exposed_ports.keys() {
            host.port_bindings
                .entry(k.clone())
                .or_insert_with(|| vec![super::record::PortBinding::default()]);
        }
    }
    if host.network_mode.is_empty() || host.network_mode == "default" {
        host.network_mode = "bridge".into();
    }
    if host.log_config.kind.is_empty() {
        host.log_config.kind = "json-file".into();
    }
    let mut networks = req.networks.clone();
    if networks.is_empty() && !matches!(host.network_mode.as_str(), "none" | "host") {
        networks.push(Attachment {
            network: host.network_mode.clone(),
            ..Default::default()
        });
    }
    Ok(Record {
        id,
        name,
        created: crate::format::human::now_rfc3339(),
        image: req.image.clone(),
        image_id: req.image_id.clone(),
        config: c,
        host,
        networks,
        mounts: req.mounts.clone(),
        ..Default::default()
    })
}
