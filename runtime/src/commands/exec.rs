//! `exec`: a new process in a running container's namespaces and cgroup, with the container's
//! seccomp profile and a process description from --process or from the flags.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use crate::cli::ExecArgs;
use crate::commands::{create::write_pid_file, foreground, Global};
use crate::process::console::{self, Tty};
use crate::process::namespaces::{self, ToJoin};
use crate::process::spawn::{clone_with, set_child_subreaper, via_intermediate, ChildGuard};
use crate::process::sync::{self, Channel, Msg};
use crate::process::trampoline::{self, Trampoline};
use crate::process::{caps, fds, setup};
use crate::state::{Container, Status};

fn parse_user(s: &str) -> Result<(u32, Option<u32>)> {
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let uid = u
        .parse()
        .with_context(|| format!("--user {s:?}: uid must be numeric"))?;
    let gid = g
        .map(|g| {
            g.parse()
                .with_context(|| format!("--user {s:?}: gid must be numeric"))
        })
        .transpose()?;
    Ok((uid, gid))
}

fn process_from_args(a: &ExecArgs, spec: &Spec) -> Result<Process> {
    if let Some(path) = &a.process {
        let data =
            std::fs::read(path).with_context(|| format!("read process {}", path.display()))?;
        return serde_json::from_slice(&data)
            .with_context(|| format!("parse process {}", path.display()));
    }
    if a.command.is_empty() {
        bail!("exec needs a command (or --process)");
    }
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(a.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.into());
    }
    if let Some(u) = &a.user {
        let (uid, gid) = parse_user(u)?;
        let mut user = p.user().clone();
        user.set_uid(uid);
        if let Some(g) = gid {
            user.set_gid(g);
        }
        p.set_user(user);
    }
    if !a.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(a.additional_gids.clone()));
        p.set_user(user);
    }
    if !a.cap.is_empty() {
        let mut c = p.capabilities().clone().unwrap_or_default();
        for name in &a.cap {
            caps::parse_cap(name)?;
            let cap: oci_spec::runtime::Capability =
                serde_json::from_value(serde_json::Value::String(name.to_ascii_uppercase()))
                    .with_context(|| format!("unknown capability {name:?}"))?;
            let add = |set: &Option<oci_spec::runtime::Capabilities>| {
                let mut s = set.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            c.set_bounding(add(c.bounding()));
            c.set_effective(add(c.effective()));
            // Never inheritable or ambient (CVE-2022-29162): those would let an unprivileged
            // program keep the capability across execve of any binary in the container.
            c.set_permitted(add(c.permitted()));
        }
        p.set_capabilities(Some(c));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(ap) = &a.apparmor {
        p.set_apparmor_profile(Some(ap.clone()));
    }
    if let Some(l) = &a.process_label {
        p.set_selinux_label(Some(l.clone()));
    }
    Ok(p)
}

fn join_plan(c: &Container) -> Result<Vec<ToJoin>> {
    let types: Vec<LinuxNamespaceType> = c
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .map(|n| n.typ())
        .collect();

    let mut out = Vec::new();
    for t in namespaces::ORDER.into_iter().filter(|t| types.contains(t)) {
        let path = Path::new("/proc")
            .join(c.pid.to_string())
            .join("ns")
            .join(namespaces::proc_name(t));
        let file = File::open(&path).with_context(|| format!("open {}", path.display()))?;
        out.push(ToJoin { typ: t, path, file });
    }
    Ok(out)
}

struct ExecChild<'a> {
    process: &'a Process,
    chan: Channel,
    tty: Option<Tty>,
    in_user_ns: bool,
    preserve_fds: u32,
    seccomp: Option<crate::seccomp::Program>,
    trampoline: Option<Trampoline>,
}

impl ExecChild<'_> {
    fn main(self) -> i32 {
        match self.setup() {
            Ok(never) => match never {},
            Err(e) => {
                let _ = self.chan.send(&Msg::Error(format!("{e:#}")));
                1
            }
        }
    }

    /// See Init::owned_fds: the cgroup directory, the namespace files and the runtime's end
    /// of the channel stay behind (CVE-2024-21626).
    fn owned_fds(&self) -> Vec<std::os::fd::RawFd> {
        let own = [
            Some(self.chan.as_raw_fd()),
            self.tty.as_ref().and_then(Tty::socket_fd),
            self.trampoline.as_ref().map(Trampoline::raw_fd),
        ];
        fds::owned(self.preserve_fds, own.into_iter().flatten())
    }

    fn setup(&self) -> Result<std::convert::Infallible> {
        fds::close_all_except(&self.owned_fds());
        trampoline::set_non_dumpable();
        self.chan.expect("exec setup")?;
        if self.in_user_ns {
            namespaces::become_userns_root()?;
        }
        if let Some(tty) = &self.tty {
            let pty = tty.open(&self.chan, self.process.console_size())?;
            console::become_session_leader_on(&pty.slave)?;
        }
        let prepared = setup::finish(self.process, self.seccomp.as_ref(), self.preserve_fds)?;
        self.chan.send(&Msg::Ready)?;
        Err(setup::exec(&prepared, self.trampoline.as_ref()))
    }
}

pub fn exec(g: &Global, a: &ExecArgs) -> Result<i32> {
    let c = Container::load(&g.root, &a.id)?;
    match c.status(&g.root) {
        Status::Stopped => bail!("cannot exec in a stopped container {}", a.id),
        Status::Paused => bail!("cannot exec in a paused container {}", a.id),
        _ => {}
    }
    let process = process_from_args(a, &c.spec)?;
    let tty = Tty::choose(
        a.console_socket.as_deref(),
        process.terminal().unwrap_or(false),
        !a.detach,
    )?;
    let joins = join_plan(&c)?;
    let in_user_ns = joins.iter().any(|j| j.typ == LinuxNamespaceType::User);
    set_child_subreaper()?;
    let sigs = if a.detach {
        None
    } else {
        Some(foreground::block_signals()?)
    };

    // The new process enters the cgroups itself, cheaply (see create.rs): the intermediate
    // joins them before it joins the container's namespaces, while it still has the host's
    // ids and mounts, even for a container with a user namespace.
    let cgroup = c.cgroup()?;
    let unified = cgroup.open_unified()?;
    let (parent, child) = sync::pair()?;
    let ec = ExecChild {
        process: &process,
        chan: child,
        tty,
        in_user_ns,
        preserve_fds: a.preserve_fds,
        seccomp: crate::commands::create::compile_seccomp(&c.spec)?,
        trampoline: Trampoline::create()?,
    };
    let own_paths = cgroup.paths().clone();
    // The intermediate is born in the cgroup2 directory and, still seeing the host's
    // /sys/fs/cgroup, moves itself into the v1 ones; the process it forks inherits both.
    let unified_fd = unified.as_ref().map(|f| f.as_fd());
    let report = ec.chan.try_clone()?;
    let pid = via_intermediate(
        unified_fd,
        &parent,
        report,
        "joining the container",
        move || {
            crate::process::init::join_own_cgroups(&own_paths)?;
            for j in &joins {
                namespaces::join(j)?;
            }
            clone_with(CloneFlags::empty(), move || ec.main())
        },
    )?;
    let mut guard = ChildGuard::new(pid);
    parent.send(&Msg::Go {
        pid: pid.as_raw(),
        join_cgroups: None,
    })?;
    let mut pty = None;
    loop {
        match parent.recv()? {
            Some((Msg::PtyMaster, fd)) => pty = fd,
            Some((Msg::Ready, _)) => break,
            Some((Msg::Error(e), _)) => bail!("{e}"),
            Some((m, _)) => bail!("unexpected message {m:?}"),
            None => bail!("exec process exited during setup"),
        }
    }
    // The channel closes when execve succeeds; an error after Ready means execve failed.
    if let Some((Msg::Error(e), _)) = parent.recv()? {
        bail!("{e}");
    }
    if let Some(p) = &a.pid_file {
        write_pid_file(p, pid.as_raw())?;
    }
    guard.disarm();
    match sigs {
        None => Ok(0),
        Some(s) => foreground::wait(pid, s, pty),
    }
}
