//! The container's init process, from clone(2) to execve(2). It runs the steps that must
//! happen inside the new namespaces, reporting each failure to the runtime over the sync
//! channel so that `create` fails with the real reason.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use nix::sched::{unshare, CloneFlags};
use oci_spec::runtime::Spec;

use crate::hooks;
use crate::process::console::Tty;
use crate::process::namespaces::{self, Plan};
use crate::process::sync::{Channel, Msg};
use crate::process::trampoline::{self, Trampoline};
use crate::process::{console, fds, setup, sysctl};
use crate::rootfs;
use crate::state::{hook_state_json, Status};

pub struct Init<'a> {
    pub id: &'a str,
    pub bundle: &'a std::path::Path,
    pub spec: &'a Spec,
    /// Canonical: `create` resolved it once, the mounts and pivot_root use it as is.
    pub rootfs: PathBuf,
    pub plan: &'a Plan,
    pub chan: Channel,
    /// The exec fifo `start` opens; None for `run`, which starts at once.
    pub fifo: Option<PathBuf>,
    pub tty: Option<Tty>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// Compiled before the fork so a bad profile fails `create` early and loading is cheap.
    pub seccomp: Option<crate::seccomp::Program>,
    /// Idmapped mount sources made before the init entered its user namespace: detached
    /// trees of host directories, taken (and closed) once the mounts are made.
    pub idmapped: std::cell::Cell<rootfs::IdmappedSources>,
    /// The sealed exec trampoline (None: the runtime re-executed itself from a sealed copy).
    pub trampoline: Option<Trampoline>,
    /// The host's cgroup layout and the container's cgroups, for `type: cgroup` mounts.
    pub cgroups: rootfs::CgroupView,
    /// Set once `create` has been told we are ready: later errors go to stderr.
    pub ready: std::cell::Cell<bool>,
}

impl Init<'_> {
    pub fn main(self) -> i32 {
        match self.setup() {
            Ok(never) => match never {},
            Err(e) => {
                let msg = format!("{e:#}");
                // After Ready nobody reads the channel any more (`create` has returned): the
                // container's stderr is where the user (or the shim's log) sees it, as with runc.
                if self.ready.get() {
                    eprintln!("berth-runtime: {msg}");
                }
                let _ = self.chan.send(&Msg::Error(msg));
                // 127 like a shell when the program could not be started.
                if self.ready.get() {
                    127
                } else {
                    1
                }
            }
        }
    }

    /// What this process owns of the descriptors it inherited from the runtime: everything
    /// else (the cgroup directory it was born in, the runtime's end of the channel, whatever
    /// the caller leaked) is closed before any setup step can reach it (CVE-2024-21626).
    fn owned_fds(&self, idmapped: &rootfs::IdmappedSources) -> Vec<std::os::fd::RawFd> {
        let own = [
            Some(self.chan.as_raw_fd()),
            self.tty.as_ref().and_then(Tty::socket_fd),
            self.trampoline.as_ref().map(Trampoline::raw_fd),
        ];
        fds::owned(
            self.preserve_fds,
            own.into_iter().flatten().chain(idmapped.raw_fds()),
        )
    }

    fn setup(&self) -> Result<std::convert::Infallible> {
        let idmapped = self.idmapped.take();
        fds::close_all_except(&self.owned_fds(&idmapped));
        trampoline::set_non_dumpable();
        let (msg, _) = self.chan.expect("setup")?;
        let Msg::Go { pid, join_cgroups } = msg else {
            bail!("unexpected message {msg:?}")
        };
        if let Some(paths) = join_cgroups {
            join_own_cgroups(&paths)?;
        }
        let spec = self.spec;
        let linux = spec.linux().as_ref();
        // `create` refused a config without one before anything existed.
        let process = spec
            .process()
            .as_ref()
            .context("config.json has no process")?;
        let has_mount_ns = self
            .plan
            .contains(oci_spec::runtime::LinuxNamespaceType::Mount);

        // The state directory, held open across pivot_root: the fifo is reopened through it
        // without needing /proc inside the container. Close-on-exec, so the user process
        // never holds it. Opened before we become a user namespace's root, whose host id may
        // not be allowed through the directories above the state root.
        let fifo = match &self.fifo {
            Some(p) => {
                let dir = p.parent().context("exec fifo has no directory")?;
                let d = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
                    .open(dir)
                    .with_context(|| format!("open state directory {}", dir.display()))?;
                Some(d)
            }
            None => None,
        };

        if self.plan.user() {
            namespaces::become_userns_root()?;
        }
        if self.plan.new_cgroup {
            unshare(CloneFlags::CLONE_NEWCGROUP).context("create cgroup namespace")?;
        }
        let has_uts = self
            .plan
            .contains(oci_spec::runtime::LinuxNamespaceType::Uts);
        if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
            if !has_uts {
                bail!("cannot set hostname {h:?} without a private UTS namespace");
            }
            nix::unistd::sethostname(h).with_context(|| format!("set hostname {h:?}"))?;
        }
        if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
            if !has_uts {
                bail!("cannot set domainname {d:?} without a private UTS namespace");
            }
            set_domainname(d)?;
        }
        if !self.no_new_keyring {
            join_session_keyring(self.id);
        }

        let opts = rootfs::RootfsOptions {
            no_pivot: self.no_pivot,
            in_user_ns: self.plan.user(),
            cgroup_ns: self
                .plan
                .contains(oci_spec::runtime::LinuxNamespaceType::Cgroup),
            cgroups: Some(self.cgroups.clone()),
        };
        if has_mount_ns {
            // Relative bind sources are relative to the bundle, as with runc.
            std::env::set_current_dir(self.bundle)
                .with_context(|| format!("chdir to bundle {}", self.bundle.display()))?;
            rootfs::prepare_with_idmapped_sources(spec, &self.rootfs, &opts, &idmapped)?;
        }
        // Mounted where they belong: the host directories behind them are not ours to hold.
        drop(idmapped);

        let state = hook_state_json(spec, self.id, Status::Created, pid, self.bundle);
        let hk = spec.hooks().clone().unwrap_or_default();
        #[allow(deprecated)]
        let runtime_hooks = hk.prestart().as_ref().is_some_and(|v| !v.is_empty())
            || hk.create_runtime().as_ref().is_some_and(|v| !v.is_empty());
        if runtime_hooks {
            self.chan.send(&Msg::RunHooks)?;
            self.chan.expect("hooks")?;
        }
        hooks::run_all(hk.create_container().as_ref(), "createContainer", &state)?;

        if has_mount_ns {
            rootfs::pivot(&self.rootfs, self.no_pivot)?;
        } else {
            // Without a mount namespace we must not touch the host's mount table: the
            // container only gets its root directory.
            nix::unistd::chroot(&self.rootfs)
                .with_context(|| format!("chroot to {}", self.rootfs.display()))?;
            std::env::set_current_dir("/").context("chdir / after chroot")?;
        }

        let terminal = process.terminal().unwrap_or(false);
        if terminal {
            let tty = self
                .tty
                .as_ref()
                .context("process.terminal is true but no --console-socket was given")?;
            let size = process.console_size();
            let pty = tty.open(&self.chan, size)?;
            console::mount_console(&pty.slave_path)?;
            console::become_session_leader_on(&pty.slave)?;
        }
        sysctl::apply(
            linux
                .and_then(|l| l.sysctl().as_ref())
                .into_iter()
                .flatten(),
        )?;
        if has_mount_ns {
            rootfs::finalize(spec)?;
        }
        if let Some(p) = linux.and_then(|l| l.personality().as_ref()) {
            set_personality(p)?;
        }

        let prepared = setup::finish(process, self.seccomp.as_ref(), self.preserve_fds)?;
        if let Some(l) = prepared.seccomp_listener.as_ref() {
            self.chan
                .send_with_fd(&Msg::SeccompListener, Some(l.as_raw_fd()))?;
        }
        self.chan.send(&Msg::Ready)?;
        self.ready.set(true);

        if let Some(f) = fifo {
            // Blocks until `start` opens the other end.
            let fd = nix::fcntl::openat(
                &f,
                crate::state::EXEC_FIFO,
                nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .context("open exec fifo for writing")?;
            let mut w = File::from(fd);
            w.write_all(&[0]).context("write exec fifo")?;
            drop(f);
            // These paths resolve inside the container: run them through the trampoline too.
            if let Err(e) = hooks::run_all_via(
                hk.start_container().as_ref(),
                "startContainer",
                &state,
                self.trampoline.as_ref(),
            ) {
                // `start` reads whatever follows the ready byte as the reason the container
                // did not start; our own stderr is the container's, which nobody may read.
                let _ = w.write_all(format!("{e:#}").as_bytes());
                return Err(e);
            }
            // `w` is close-on-exec: `start` sees EOF once the user process runs, so it returns
            // only when the container really is running. Leak it into the exec on purpose.
            std::mem::forget(w);
        }
        Err(setup::exec(&prepared, self.trampoline.as_ref()))
    }
}

/// Move ourselves into the container's v1 cgroups (see CgroupPaths::join_self_v1).
pub fn join_own_cgroups(paths: &berth_cgroups::CgroupPaths) -> Result<()> {
    paths.join_self_v1().context("join the container's cgroups")
}

fn set_domainname(d: &str) -> Result<()> {
    // SAFETY: setdomainname reads `len` bytes from the pointer.
    if unsafe { libc::setdomainname(d.as_ptr() as *const libc::c_char, d.len()) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("set domainname {d:?}"));
    }
    Ok(())
}

/// A fresh session keyring so the container does not share the host's keys. Kernels or
/// seccomp profiles without keyring support make this a no-op, as in runc.
fn join_session_keyring(id: &str) {
    let name = std::ffi::CString::new(format!("_ses.{id}")).unwrap_or_default();
    // SAFETY: keyctl(KEYCTL_JOIN_SESSION_KEYRING, name) reads a C string.
    let r = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            libc::KEYCTL_JOIN_SESSION_KEYRING,
            name.as_ptr(),
        )
    };
    if r < 0 {
        tracing::debug!("join session keyring: {}", std::io::Error::last_os_error());
    }
}

fn set_personality(p: &oci_spec::runtime::LinuxPersonality) -> Result<()> {
    use oci_spec::runtime::LinuxPersonalityDomain as D;
    let persona: libc::c_ulong = match p.domain() {
        D::PerLinux => 0x0000,
        D::PerLinux32 => 0x0008,
    };
    // SAFETY: personality takes an integer.
    if unsafe { libc::personality(persona) } == -1 {
        return Err(std::io::Error::last_os_error()).context("set personality");
    }
    Ok(())
}
