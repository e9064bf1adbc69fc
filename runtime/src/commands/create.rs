//! `create` (and the first half of `run`): from a bundle to an init process that waits on the
//! exec fifo. On any failure everything made so far (state dir, cgroup, processes) is removed.

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use crate::cli::CreateArgs;
use crate::commands::Global;
use crate::hooks;
use crate::process::console::Tty;
use crate::process::init::Init;
use crate::process::namespaces::{self, Plan};
use crate::process::spawn::{self, clone_with, ChildGuard};
use crate::process::sync::{self, Msg};
use crate::process::trampoline::Trampoline;
use crate::state::{self, hook_state_json, Container, Status, EXEC_FIFO};
use crate::{procfs, timefmt};
use crate::{rootfs, seccomp};

pub struct Created {
    pub container: Container,
    /// The pty master when the runtime relays a foreground terminal.
    pub pty: Option<OwnedFd>,
}

pub fn load_spec(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let data = fs::read(&path).with_context(|| format!("read {}", path.display()))?;
    let spec: Spec =
        serde_json::from_slice(&data).with_context(|| format!("parse {}", path.display()))?;
    Ok(spec)
}

/// Undo guard: whatever `create` made is removed unless it completes.
struct Cleanup<'a> {
    dir: Option<PathBuf>,
    pid: Option<ChildGuard>,
    cgroup: Option<&'a berth_cgroups::CgroupManager>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        // The process first: the cgroup cannot go while it is in it.
        drop(self.pid.take());
        if let Some(cg) = self.cgroup {
            if let Err(e) = cg.destroy() {
                tracing::warn!("remove cgroup after failed create: {e}");
            }
        }
        if let Some(d) = &self.dir {
            let _ = fs::remove_dir_all(d);
        }
    }
}

fn write_id_maps(pid: Pid, spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    let fmt = |maps: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| -> String {
        maps.into_iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect()
    };
    let uid = fmt(linux.and_then(|l| l.uid_mappings().as_ref()));
    let gid = fmt(linux.and_then(|l| l.gid_mappings().as_ref()));
    if uid.is_empty() || gid.is_empty() {
        bail!("a new user namespace needs linux.uidMappings and linux.gidMappings");
    }
    fs::write(format!("/proc/{pid}/uid_map"), &uid)
        .with_context(|| format!("write uid_map {:?}", uid.trim()))?;
    fs::write(format!("/proc/{pid}/gid_map"), &gid)
        .with_context(|| format!("write gid_map {:?}", gid.trim()))?;
    Ok(())
}

fn write_time_offsets(spec: &Spec) -> Result<()> {
    let offsets = spec.linux().as_ref().and_then(|l| l.time_offsets().clone());
    let mut s = String::new();
    for (clock, off) in offsets.iter().flatten() {
        s.push_str(&format!(
            "{clock} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    if !s.is_empty() {
        fs::write("/proc/self/timens_offsets", &s)
            .with_context(|| format!("write time namespace offsets {:?}", s.trim()))?;
    }
    Ok(())
}

pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("berth-tmp");
    fs::write(&tmp, pid.to_string())
        .with_context(|| format!("write pid file {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("write pid file {}", path.display()))?;
    Ok(())
}

pub fn create(g: &Global, a: &CreateArgs, relay_tty: bool) -> Result<Created> {
    state::validate_id(&a.id)?;
    let bundle =
        fs::canonicalize(&a.bundle).with_context(|| format!("bundle {}", a.bundle.display()))?;
    let spec = load_spec(&bundle)?;
    // runtime-spec: `start` must fail without a process; refuse it before anything exists.
    if spec.process().is_none() {
        bail!(
            "{}: process property must not be empty: the container would run nothing",
            bundle.join("config.json").display()
        );
    }
    let root_cfg = spec.root().as_ref().context("config.json has no root")?;
    let rootfs = bundle.join(root_cfg.path());
    let rootfs = fs::canonicalize(&rootfs)
        .with_context(|| format!("rootfs {} from config.json", rootfs.display()))?;
    let plan = Plan::from_spec(&spec)?;
    // Refused before anything exists, rather than by the init half-way through its setup.
    let sysctls = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref());
    crate::process::sysctl::check(sysctls.into_iter().flatten().map(|(k, _)| k), &plan)?;
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let tty = Tty::choose(a.console_socket.as_deref(), terminal, relay_tty)?;

    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(&g.root)
        .with_context(|| format!("create state root {}", g.root.display()))?;
    let dir = state::dir(&g.root, &a.id);
    // Declared before the guard, which borrows it, so that it outlives the guard's drop.
    let cgroup: berth_cgroups::CgroupManager;
    match fs::DirBuilder::new().mode(0o711).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("container with id exists: {}", a.id)
        }
        Err(e) => return Err(e).with_context(|| format!("create {}", dir.display())),
    }
    let mut guard = Cleanup {
        dir: Some(dir.clone()),
        pid: None,
        cgroup: None,
    };
    let cgroups_path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned());
    cgroup = berth_cgroups::CgroupManager::new(cgroups_path.as_deref(), &a.id, g.systemd_cgroup)
        .with_context(|| format!("cgroup for container {}", a.id))?;
    // A cgroup that already holds processes belongs to another container (the same id
    // under another --root, or a shared cgroupsPath): joining it would let our delete
    // kill theirs, and our failed create remove it.
    let in_use = if cgroup.exists() {
        cgroup.pids().map(|p| p.len()).unwrap_or(0)
    } else {
        0
    };
    if in_use > 0 {
        let where_ = cgroup
            .paths()
            .dirs()
            .first()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        bail!(
            "cgroup {where_} for container {} is in use by {in_use} other process(es)",
            a.id
        );
    }

    let fifo = dir.join(EXEC_FIFO);
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o622))
        .with_context(|| format!("create exec fifo {}", fifo.display()))?;
    // The umask trimmed the mode; the init may run as a uid that needs the write bit.
    fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .with_context(|| format!("chmod exec fifo {}", fifo.display()))?;

    let seccomp = compile_seccomp(&spec)?;
    let idmapped = if plan.user() {
        rootfs::open_idmapped_sources(&spec).context("prepare idmapped mounts")?
    } else {
        rootfs::IdmappedSources::default()
    };
    let (parent, child) = sync::pair()?;
    let init = Init {
        id: &a.id,
        bundle: &bundle,
        spec: &spec,
        rootfs: rootfs.clone(),
        plan: &plan,
        chan: child,
        fifo: Some(fifo.clone()),
        tty,
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
        seccomp,
        idmapped: std::cell::Cell::new(idmapped),
        trampoline: Trampoline::create()?,
        cgroups: rootfs::CgroupView {
            host: cgroup
                .host()
                .with_context(|| format!("cgroup layout for container {}", a.id))?
                .clone(),
            paths: cgroup.paths().clone(),
        },
        ready: std::cell::Cell::new(false),
    };
    // Limits go in before any process does: a realtime task cannot enter a v1 cgroup whose
    // cpu.rt_runtime_us is still 0.
    cgroup
        .create()
        .with_context(|| format!("create cgroup for container {}", a.id))?;
    guard.cgroup = Some(&cgroup);
    if let Some(r) = resources_with_default_devices(&spec) {
        cgroup
            .set(&r)
            .with_context(|| format!("set cgroup limits for container {}", a.id))?;
    }
    // Fast path: the init is born in the cgroup2 directory (or its intermediate is, when it
    // joins namespaces first) and moves itself into the v1 ones. Both avoid the kernel's
    // global cgroup rwsem, whose write side waits for an RCU grace period (milliseconds on a
    // loaded host). In a user namespace, new or joined, this still works: the init joins
    // before it becomes the namespace's root, while it is host root by its ids. Only a joined
    // mount namespace, where the host's cgroup paths may not exist, falls back to the runtime
    // moving the process.
    let self_join = !plan
        .join
        .iter()
        .any(|j| j.typ == oci_spec::runtime::LinuxNamespaceType::Mount);
    let unified = if self_join {
        cgroup.open_unified()?
    } else {
        None
    };
    let unified = unified.as_ref().map(|f| f.as_fd());
    let pid = if plan.needs_intermediate() {
        spawn_via_intermediate(&plan, &spec, init, &parent, unified)?
    } else {
        spawn::clone_into_cgroup(plan.new, unified, move || init.main())?
    };
    guard.pid = Some(ChildGuard::new(pid));

    if plan.new_user() {
        write_id_maps(pid, &spec)?;
    }
    let join_cgroups = if self_join {
        Some(cgroup.paths().clone())
    } else {
        cgroup
            .add_process(pid.as_raw())
            .with_context(|| format!("join cgroup for container {}", a.id))?;
        None
    };
    // Saved as soon as the init exists, not once it is ready: a runtime killed during the
    // setup (a SIGKILLed foreground `run`) then leaves a container that `state` reports and
    // `delete --force` removes with its cgroups, not an anonymous directory. Until `start`
    // the exec fifo is there, so `state` says created (or stopped once the init is gone).
    let st = procfs::stat(pid.as_raw()).context("read init process start time")?;
    let container = Container {
        id: a.id.clone(),
        pid: pid.as_raw(),
        pid_start: st.start_time,
        bundle,
        rootfs,
        created: timefmt::now(),
        spec,
        cgroup_paths: cgroup.paths().clone(),
    };
    container.save(&g.root)?;
    let (spec, bundle) = (&container.spec, &container.bundle);

    let init_gone = || format!("container {} init exited during setup", a.id);
    parent
        .send(&Msg::Go {
            pid: pid.as_raw(),
            join_cgroups,
        })
        .with_context(init_gone)?;

    let mut pty = None;
    loop {
        let (msg, fd) = match parent.recv().with_context(init_gone)? {
            Some(m) => m,
            None => bail!(init_gone()),
        };
        match msg {
            Msg::RunHooks => {
                let st = hook_state_json(spec, &a.id, Status::Created, pid.as_raw(), bundle);
                let hk = spec.hooks().clone().unwrap_or_default();
                #[allow(deprecated)]
                hooks::run_all(hk.prestart().as_ref(), "prestart", &st)?;
                hooks::run_all(hk.create_runtime().as_ref(), "createRuntime", &st)?;
                parent.send(&Msg::HooksDone).with_context(init_gone)?;
            }
            Msg::SeccompListener => {
                let fd = fd.context("seccomp listener message without a descriptor")?;
                pass_seccomp_listener(spec, &a.id, pid.as_raw(), bundle, &fd)?;
            }
            Msg::PtyMaster => pty = fd,
            Msg::Ready => break,
            Msg::Error(e) => bail!("{e}"),
            other => bail!("unexpected message from container init: {other:?}"),
        }
    }

    if let Some(p) = &a.pid_file {
        write_pid_file(p, pid.as_raw())?;
    }
    if let Some(p) = guard.pid.as_mut() {
        p.disarm();
    }
    guard.cgroup = None;
    guard.dir = None;
    Ok(Created { container, pty })
}

pub fn compile_seccomp(spec: &Spec) -> Result<Option<seccomp::Program>> {
    let Some(s) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    let p = seccomp::compile(s).context("seccomp profile in config.json")?;
    tracing::debug!(
        instructions = p.instructions().len(),
        flags = p.flags(),
        "seccomp compiled"
    );
    Ok(Some(p))
}

/// runc's device policy: the config's rules, then the devices every container needs, then
/// the config's own linux.devices. A config with no device rules leaves the cgroup as is.
fn resources_with_default_devices(spec: &Spec) -> Option<oci_spec::runtime::LinuxResources> {
    let linux = spec.linux().as_ref()?;
    let mut r = linux.resources().clone()?;
    // An empty list means deny-all like any other list (runc's emulator starts from deny),
    // so it needs the default devices as much as a non-empty one.
    let Some(mut rules) = r.devices().clone() else {
        return Some(r);
    };
    rules.extend(berth_cgroups::default_device_rules());
    for d in linux.devices().iter().flatten() {
        use oci_spec::runtime::LinuxDeviceType as T;
        let typ = match d.typ() {
            T::U | T::C => T::C,
            T::B => T::B,
            _ => continue,
        };
        let mut rule = oci_spec::runtime::LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(typ));
        rule.set_major(Some(d.major()));
        rule.set_minor(Some(d.minor()));
        rule.set_access(Some("rwm".into()));
        rules.push(rule);
    }
    r.set_devices(Some(rules));
    Some(r)
}

fn pass_seccomp_listener(
    spec: &Spec,
    id: &str,
    pid: i32,
    bundle: &Path,
    fd: &OwnedFd,
) -> Result<()> {
    let sc = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let path = sc
        .and_then(|s| s.listener_path().as_ref())
        .context("seccomp profile uses SCMP_ACT_NOTIFY but has no listenerPath")?;
    let meta = sc
        .and_then(|s| s.listener_metadata().clone())
        .unwrap_or_default();
    let st = hook_state_json(spec, id, Status::Creating, pid, bundle);
    seccomp::send_listener(path, &meta, std::os::fd::AsFd::as_fd(fd), &st)
        .with_context(|| format!("send seccomp listener to {}", path.display()))?;
    Ok(())
}

/// Namespaces joined by path (and a new time namespace) must be entered before the init is
/// forked, but not by the runtime itself, which still needs the host's view: an intermediate
/// process joins them, forks the init and reports its pid.
fn spawn_via_intermediate(
    plan: &Plan,
    spec: &Spec,
    init: Init,
    parent: &sync::Channel,
    unified: Option<std::os::fd::BorrowedFd<'_>>,
) -> Result<Pid> {
    // Born in the cgroup2 directory, so the init it forks is too. The report channel is
    // taken here: `init` (and its channel) moves into the init.
    let report = init.chan.try_clone()?;
    spawn::via_intermediate(
        unified,
        parent,
        report,
        "forking the container init",
        move || {
            for ns in &plan.join {
                namespaces::join(ns)?;
            }
            if plan.new_time {
                nix::sched::unshare(nix::sched::CloneFlags::from_bits_retain(
                    libc::CLONE_NEWTIME,
                ))
                .context("create time namespace")?;
                write_time_offsets(spec)?;
            }
            clone_with(plan.new, move || init.main())
        },
    )
}
