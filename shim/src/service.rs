//! One container's processes: creating, starting, restarting and stopping the init, exec'd
//! processes, and what happens when any of them exits. `task_api` puts containerd's Task
//! service on top.

mod task_api;

pub use task_api::TaskService;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context, Result};
use containerd_shim_protos::api::{self, Status};
use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::topics;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use ttrpc::Code;

use crate::attach::AttachHub;
use crate::context::ShimContext;
use crate::events::Publisher;
use crate::jsonlog::JsonLog;
use crate::mount::{mount_rootfs, RootfsMount};
use crate::options::RuncOptions;
use crate::process::{Proc, ProcState};
use crate::reaper::{self, Exit};
use crate::restart::Backoff;
use crate::runtime::{choose_binary, Runtime};
use crate::settings::Settings;
use crate::status::{self, StatusFile};
use crate::stdio::{BerthIo, Prepared, StdioSpec};

/// How long an exit waits for the process's output to drain before it is reported.
const IO_DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// How long a restart waits for the engine to record the run that ended.
const EVENT_COMMAND_WAIT: Duration = Duration::from_secs(2);

/// The runtime a bundle was created with, kept in the bundle for the `delete` bootstrap
/// action, which runs after the serving shim is gone.
pub const RUNTIME_FILE: &str = "berth-shim-runtime.json";

#[derive(Serialize, Deserialize)]
pub struct SavedRuntime {
    pub binary: PathBuf,
    pub root: PathBuf,
}

pub struct Service {
    ctx: ShimContext,
    bundle: PathBuf,
    settings: Settings,
    runtime: OnceLock<Runtime>,
    publisher: Publisher,
    init: Mutex<Option<Arc<Proc>>>,
    execs: Mutex<HashMap<String, Arc<Proc>>>,
    berth: OnceLock<BerthIo>,
    exits: Mutex<Sender<(Arc<Proc>, Exit)>>,
    rootfs_mounted: AtomicBool,
    backoff: Mutex<Backoff>,
    shutting_down: AtomicBool,
    status_lock: Mutex<()>,
    /// Held from a restart's start until the engine has recorded it, so that the events
    /// of a run that ends at once (its `die`, or the exit command's) come after its `start`.
    event_order: Mutex<()>,
}

fn status_err(code: Code, e: impl std::fmt::Display) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, e.to_string()))
}

fn internal(e: anyhow::Error) -> ttrpc::Error {
    status_err(Code::UNKNOWN, format!("{e:#}"))
}

fn ts(t: SystemTime) -> MessageField<Timestamp> {
    MessageField::some(Timestamp::from(t))
}

impl Service {
    pub fn new(ctx: ShimContext, bundle: &Path, publisher: Publisher) -> Result<Arc<Service>> {
        let settings = Settings::load(bundle)?;
        let (tx, rx) = channel();
        let svc = Arc::new(Service {
            ctx,
            bundle: bundle.to_path_buf(),
            settings,
            runtime: OnceLock::new(),
            publisher,
            init: Mutex::new(None),
            execs: Mutex::new(HashMap::new()),
            berth: OnceLock::new(),
            exits: Mutex::new(tx),
            rootfs_mounted: AtomicBool::new(false),
            backoff: Mutex::new(Backoff::default()),
            shutting_down: AtomicBool::new(false),
            status_lock: Mutex::new(()),
            event_order: Mutex::new(()),
        });
        let s = svc.clone();
        crate::threads::spawn("exits", move || s.exit_loop(rx))?;
        Ok(svc)
    }

    fn runtime(&self) -> Result<&Runtime> {
        self.runtime
            .get()
            .ok_or_else(|| anyhow!("container {} is not created", self.ctx.id))
    }

    fn init(&self) -> Option<Arc<Proc>> {
        self.init.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn process(&self, exec_id: &str) -> ttrpc::Result<Arc<Proc>> {
        let p = if exec_id.is_empty() {
            self.init()
        } else {
            self.execs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(exec_id)
                .cloned()
        };
        p.ok_or_else(|| {
            let what = if exec_id.is_empty() {
                format!("container {}", self.ctx.id)
            } else {
                format!("process {exec_id} in container {}", self.ctx.id)
            };
            status_err(Code::NOT_FOUND, format!("{what}: not found"))
        })
    }

    /// How containerd names `proc`: the container's id for the init, else its exec id.
    fn process_id(&self, proc: &Proc) -> String {
        if proc.is_init() {
            self.ctx.id.clone()
        } else {
            proc.exec_id.clone()
        }
    }

    fn berth(&self) -> BerthIo {
        self.berth.get().cloned().unwrap_or_default()
    }

    /// The runtime's state directory: the runc options' root (per namespace, as
    /// containerd-shim-runc-v2 does), else Berth's annotation, else our own default.
    fn runtime_root(&self, opts: &RuncOptions) -> PathBuf {
        if !opts.root.is_empty() {
            return Path::new(&opts.root).join(&self.ctx.namespace);
        }
        if let Some(r) = &self.settings.runtime_root {
            return r.clone();
        }
        Path::new("/run/containerd/berth").join(&self.ctx.namespace)
    }

    fn write_status(&self, proc: &Proc) {
        let st = proc.state();
        self.write_status_locked(&st);
    }

    /// Write the status file while the caller holds the process's state lock, so the file
    /// is on disk before anyone can see the new state (a Wait returning, say). Several
    /// threads report; the status lock keeps the newest state the last one written.
    fn write_status_locked(&self, st: &ProcState) {
        let _guard = self.status_lock.lock().unwrap_or_else(|e| e.into_inner());
        let name = if st.restarting {
            "restarting"
        } else if st.exit.is_some() {
            "exited"
        } else {
            match st.status {
                Status::CREATED => "created",
                Status::PAUSED => "paused",
                _ => "running",
            }
        };
        status::write(
            &self.bundle,
            &StatusFile {
                id: self.ctx.id.clone(),
                status: name.to_string(),
                pid: st.pid,
                exit_code: st.exit.map(|e| e.code),
                exited_at: status::time(st.exit.map(|e| e.at)),
                started_at: status::time(st.started_at),
                restart_count: st.restart_count,
                stopped_by_user: st.stopped_by_user,
                oom_killed: st.oom_killed,
                exit_reported: st.exit_reported,
            },
        );
    }

    /// Berth's HEALTHCHECK loop, for the life of the shim (restarts included).
    fn start_health(self: &Arc<Self>) {
        let (Some(cfg), Ok(runtime)) = (self.settings.healthcheck.clone(), self.runtime()) else {
            return;
        };
        let (runtime, id, bundle) = (runtime.clone(), self.ctx.id.clone(), self.bundle.clone());
        let (a, b) = (self.clone(), self.clone());
        let running = move || {
            let p = a.init()?;
            let st = p.state();
            (st.status == Status::RUNNING && st.exit.is_none())
                .then_some(st.started_at)
                .flatten()
        };
        let stopping = move || b.shutting_down.load(Ordering::SeqCst);
        if let Err(e) = crate::threads::spawn("health", move || {
            crate::health::run_loop(runtime, id, bundle, cfg, running, stopping)
        }) {
            tracing::warn!("health: {e:#}");
        }
    }

    fn do_create(&self, req: &api::CreateTaskRequest) -> Result<u32> {
        let opts = match req.options.as_ref() {
            Some(any) if RuncOptions::is_runc_options(&any.type_url) => {
                RuncOptions::decode(&any.value).context("decode runc options")?
            }
            _ => RuncOptions::default(),
        };
        let runtime = Runtime {
            binary: choose_binary(Some(&opts.binary_name)),
            root: self.runtime_root(&opts),
            log: self.bundle.join("log.json"),
            no_pivot: opts.no_pivot_root,
            no_new_keyring: opts.no_new_keyring,
        };
        let saved = SavedRuntime {
            binary: runtime.binary.clone(),
            root: runtime.root.clone(),
        };
        std::fs::write(self.bundle.join(RUNTIME_FILE), serde_json::to_vec(&saved)?)
            .with_context(|| format!("write {}", self.bundle.join(RUNTIME_FILE).display()))?;
        let _ = self.runtime.set(runtime);

        if !req.rootfs.is_empty() {
            let mounts: Vec<RootfsMount> = req
                .rootfs
                .iter()
                .map(|m| RootfsMount {
                    fstype: &m.type_,
                    source: &m.source,
                    options: &m.options,
                })
                .collect();
            mount_rootfs(&mounts, &self.bundle.join("rootfs"))?;
            self.rootfs_mounted.store(true, Ordering::SeqCst);
        }

        let mut berth = BerthIo {
            open_stdin: self.settings.open_stdin,
            ..Default::default()
        };
        if let Some(path) = &self.settings.log_path {
            berth.log = Some(Arc::new(JsonLog::open(
                path,
                self.settings.log_max_size,
                self.settings.log_max_files,
            )?));
        }
        if let Some(path) = &self.settings.attach_socket {
            berth.hub = Some(AttachHub::listen(
                path,
                req.terminal,
                self.settings.stdin_once,
            )?);
        }
        let _ = self.berth.set(berth);

        let proc = Arc::new(Proc::new(
            "",
            StdioSpec {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            },
            None,
            self.bundle.join("init.pid"),
        ));
        let pid = self.create_init(&proc)?;
        *self.init.lock().unwrap_or_else(|e| e.into_inner()) = Some(proc.clone());
        self.write_status(&proc);
        Ok(pid)
    }

    /// Have the runtime create the init (first run or a restart) with fresh stdio.
    fn create_init(&self, proc: &Arc<Proc>) -> Result<u32> {
        let runtime = self.runtime()?;
        let berth = self.berth();
        let mut prepared = Prepared::new(&proc.stdio, &berth, &self.ctx)?;
        let stdio = prepared.proc_stdio.take().context("stdio already used")?;
        let _ = std::fs::remove_file(&proc.pid_file);
        runtime.create(&self.ctx.id, &self.bundle, &proc.pid_file, stdio)?;
        let started = read_pid(&proc.pid_file).and_then(|pid| Ok((pid, prepared.start()?)));
        let (pid, io) = match started {
            Ok(v) => v,
            Err(e) => {
                let _ = runtime.delete(&self.ctx.id, true);
                return Err(e);
            }
        };
        if let Some(hub) = &berth.hub {
            hub.set_stdin(io.stdin.clone());
        }
        *proc.io.lock().unwrap_or_else(|e| e.into_inner()) = Some(io);
        // Replacing the last run's cgroup stops its OOM watch; this run's starts here.
        *proc.cgroup.lock().unwrap_or_else(|e| e.into_inner()) =
            crate::stats::InitCgroup::new(pid, self.oom_notice());
        {
            let mut st = proc.state();
            st.pid = pid;
            st.status = Status::CREATED;
            st.exit = None;
        }
        self.watch(proc, pid);
        Ok(pid)
    }

    /// What an OOM kill in the container does: TaskOOM, whether or not the init survives.
    fn oom_notice(&self) -> crate::oom::OnOom {
        let publisher = self.publisher.clone();
        let id = self.ctx.id.clone();
        Box::new(move || {
            publisher.publish(
                topics::TASK_OOM_EVENT_TOPIC,
                &ev::TaskOOM {
                    container_id: id.clone(),
                    ..Default::default()
                },
            );
        })
    }

    fn watch(&self, proc: &Arc<Proc>, pid: u32) {
        let tx = self.exits.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let p = proc.clone();
        reaper::global().watch(
            pid as i32,
            Box::new(move |exit| {
                let _ = tx.send((p, exit));
            }),
        );
    }

    fn exit_loop(self: Arc<Self>, rx: Receiver<(Arc<Proc>, Exit)>) {
        for (proc, exit) in rx {
            self.handle_exit(proc, exit);
        }
    }

    fn handle_exit(self: &Arc<Self>, proc: Arc<Proc>, exit: Exit) {
        if let Some(io) = proc.io.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            io.drain(IO_DRAIN_LIMIT);
        }
        let pid = proc.state().pid;
        tracing::info!(
            exec_id = proc.exec_id,
            pid,
            code = exit.code,
            "process exited"
        );
        if !proc.is_init() {
            {
                let mut st = proc.state();
                st.exit = Some(exit);
                st.status = Status::STOPPED;
            }
            proc.notify();
            self.publish_exit(&proc, pid, exit);
            return;
        }
        // Checked before anything deletes the cgroup. A kill the live watch has not
        // reported yet is reported now, so TaskOOM still goes out ahead of TaskExit.
        let oom_in_run = proc
            .cgroup
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|c| c.oom_at_exit());
        let restart = {
            let mut st = proc.state();
            // Docker's OOMKilled: the init itself died of SIGKILL in a run that saw an OOM
            // kill, and not of a SIGKILL the user sent. A child's OOM kill that the init
            // survived is not it.
            st.oom_killed =
                oom_in_run && exit.code == 128 + Signal::SIGKILL as u32 && !st.stopped_by_user;
            let ran_for = st
                .started_at
                .and_then(|t| exit.at.duration_since(t).ok())
                .unwrap_or_default();
            // A container deleted before it was ever started is not restarted.
            let restart = st.started_at.is_some()
                && !self.shutting_down.load(Ordering::SeqCst)
                && self.settings.restart.should_restart(
                    exit.code,
                    st.restart_count,
                    st.stopped_by_user,
                );
            st.exit = Some(exit);
            st.status = Status::STOPPED;
            st.restarting = restart;
            self.write_status_locked(&st);
            restart.then(|| {
                self.backoff
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .delay(ran_for)
            })
        };
        if let Some(hub) = &self.berth().hub {
            hub.close_clients();
        }
        match restart {
            Some(delay) => {
                let s = self.clone();
                let p = proc.clone();
                if let Err(e) = crate::threads::spawn("restart", move || s.restart_init(p, delay)) {
                    tracing::warn!("restart: {e:#}");
                    self.finish_init(&proc, exit);
                }
            }
            None => {
                proc.notify();
                self.publish_exit(&proc, pid, exit);
                self.run_exit_command();
            }
        }
    }

    /// The engine's exit command, detached: it may well Delete and Shut down this shim,
    /// so nothing here waits for it.
    fn run_exit_command(&self) {
        let _order = self.event_order.lock().unwrap_or_else(|e| e.into_inner());
        self.spawn_engine_command(&self.settings.exit_command, &[]);
    }

    /// The engine's event command with `extra` after its words (`die 1`, `start`), waited
    /// for (boundedly) so that the events it writes keep their order.
    fn run_event_command(&self, extra: &[&str]) {
        if let Some(r) = self.spawn_engine_command(&self.settings.event_command, extra) {
            if r.wait_for(EVENT_COMMAND_WAIT).is_none() {
                tracing::warn!("event command still running after {EVENT_COMMAND_WAIT:?}");
            }
        }
    }

    fn spawn_engine_command(
        &self,
        argv: &[String],
        extra: &[&str],
    ) -> Option<crate::reaper::Reaped> {
        let (program, args) = argv.split_first()?;
        let mut cmd = std::process::Command::new(program);
        cmd.args(args)
            .args(extra)
            .current_dir(&self.bundle)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        crate::reaper::global()
            .spawn(&mut cmd)
            .inspect_err(|e| tracing::warn!("engine command {program}: {e}"))
            .ok()
    }

    fn publish_exit(&self, proc: &Proc, pid: u32, exit: Exit) {
        self.publisher.publish(
            topics::TASK_EXIT_EVENT_TOPIC,
            &ev::TaskExit {
                container_id: self.ctx.id.clone(),
                id: self.process_id(proc),
                pid,
                exit_status: exit.code,
                exited_at: ts(exit.at),
                ..Default::default()
            },
        );
    }

    /// The init ended for good: no (more) restarts.
    fn finish_init(&self, proc: &Proc, exit: Exit) {
        let pid = {
            let mut st = proc.state();
            st.restarting = false;
            st.status = Status::STOPPED;
            st.exit.get_or_insert(exit);
            self.write_status_locked(&st);
            st.pid
        };
        proc.notify();
        self.publish_exit(proc, pid, exit);
        self.run_exit_command();
    }

    fn restart_init(self: Arc<Self>, proc: Arc<Proc>, delay: Duration) {
        let exit = proc.state().exit.unwrap_or(Exit {
            code: 255,
            at: SystemTime::now(),
        });
        // The engine records this run's end before the next run starts, so `events` shows
        // die, then start, as Docker's do.
        {
            let _order = self.event_order.lock().unwrap_or_else(|e| e.into_inner());
            self.run_event_command(&["die", &exit.code.to_string()]);
            proc.state().exit_reported = true;
        }
        // Sleep out the back-off, but give up at once if the user stops the container.
        let deadline = std::time::Instant::now() + delay;
        loop {
            if proc.state().stopped_by_user {
                return self.finish_init(&proc, exit);
            }
            let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
                break;
            };
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
        // Counted before the new run exists, so an exit of the new run (handled on the
        // exits thread) already sees it.
        {
            let mut st = proc.state();
            st.restart_count += 1;
            st.exit_reported = false;
        }
        let order = self.event_order.lock().unwrap_or_else(|e| e.into_inner());
        let result = (|| -> Result<u32> {
            let runtime = self.runtime()?;
            let _ = runtime.delete(&self.ctx.id, true);
            let pid = self.create_init(&proc)?;
            proc.state().started_at = Some(SystemTime::now());
            runtime.start(&self.ctx.id)?;
            Ok(pid)
        })();
        match result {
            Ok(pid) => {
                let stopped = {
                    let mut st = proc.state();
                    // If the new run already ended, its exit has been handled in full.
                    if st.exit.is_none() && !st.stopped_by_user {
                        st.restarting = false;
                        st.status = Status::RUNNING;
                    }
                    tracing::info!(pid, restarts = st.restart_count, "restarted");
                    st.stopped_by_user && st.exit.is_none()
                };
                if stopped {
                    // The user stopped the container while it was being restarted (Kill
                    // saw it restarting and left the stop to us).
                    if let Ok(rt) = self.runtime() {
                        let _ = rt.kill(&self.ctx.id, Signal::SIGKILL as u32, true);
                    }
                    proc.state().restarting = false;
                }
                self.run_event_command(&["start"]);
                drop(order);
                self.write_status(&proc);
            }
            Err(e) => {
                drop(order);
                tracing::error!("restart container {}: {e:#}", self.ctx.id);
                self.finish_init(&proc, exit);
            }
        }
    }

    fn start_exec(&self, proc: &Arc<Proc>) -> Result<u32> {
        let runtime = self.runtime()?;
        let spec_path = self.bundle.join(format!("exec-{}.json", proc.exec_id));
        std::fs::write(&spec_path, proc.spec.as_deref().unwrap_or_default())
            .with_context(|| format!("write {}", spec_path.display()))?;
        let mut prepared = Prepared::new(&proc.stdio, &BerthIo::default(), &self.ctx)?;
        let stdio = prepared.proc_stdio.take().context("stdio already used")?;
        let res = runtime.exec(&self.ctx.id, &spec_path, &proc.pid_file, stdio);
        let _ = std::fs::remove_file(&spec_path);
        res?;
        let pid = read_pid(&proc.pid_file)?;
        let _ = std::fs::remove_file(&proc.pid_file);
        let io = prepared.start()?;
        *proc.io.lock().unwrap_or_else(|e| e.into_inner()) = Some(io);
        {
            let mut st = proc.state();
            st.pid = pid;
            if st.exit.is_none() {
                st.status = Status::RUNNING;
            }
            st.started_at = Some(SystemTime::now());
        }
        self.watch(proc, pid);
        Ok(pid)
    }

    /// Stop the init: the configured stop signal, then SIGKILL to every process once the
    /// stop timeout has passed.
    fn stop(self: &Arc<Self>, proc: Arc<Proc>) -> Result<()> {
        let (restarting, exited) = {
            let mut st = proc.state();
            st.stopped_by_user = true;
            (st.restarting, st.exit.is_some())
        };
        proc.notify();
        if restarting || exited {
            // Between runs the restart thread sees the stop and ends it.
            return Ok(());
        }
        let runtime = self.runtime()?;
        runtime.kill(&self.ctx.id, self.settings.stop_signal as u32, false)?;
        let timeout = self.settings.stop_timeout;
        let s = self.clone();
        crate::threads::spawn("stop", move || {
            if proc.wait_timeout(timeout).is_none() {
                tracing::info!(
                    "container {} ignored its stop signal for {timeout:?}; killing",
                    s.ctx.id
                );
                if let Ok(rt) = s.runtime() {
                    if let Err(e) = rt.kill(&s.ctx.id, Signal::SIGKILL as u32, true) {
                        tracing::warn!("{e:#}");
                    }
                }
            }
        })?;
        Ok(())
    }

    fn ends_the_container(&self, signal: u32) -> bool {
        let sig = signal as i32;
        [
            Signal::SIGKILL,
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGQUIT,
        ]
        .iter()
        .any(|s| *s as i32 == sig)
            || sig == self.settings.stop_signal as i32
    }

    /// End the serving process once the reply to Shutdown has gone out.
    fn exit_soon(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let pending = self.publisher.pending();
        let _ = crate::threads::spawn("shutdown", move || {
            std::thread::sleep(Duration::from_millis(50));
            // The main loop keeps reaping the publish binaries meanwhile.
            pending.wait_idle(Duration::from_secs(10));
            let _ = nix::sys::signal::kill(nix::unistd::getpid(), Signal::SIGUSR1);
        });
    }
}

fn read_pid(path: &Path) -> Result<u32> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read pid file {}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("pid file {} holds {text:?}", path.display()))
}
