//! The last steps before execve, shared by the container's init and by `exec`: working
//! directory, rlimits, scheduling, privileges, seccomp, and the executable lookup.
//! Order follows runc: seccomp goes in while we still hold CAP_SYS_ADMIN unless
//! noNewPrivileges lets an unprivileged process load it as late as possible.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{PosixRlimitType, Process};

use crate::process::trampoline::Trampoline;
use crate::process::{caps, fds};
use crate::rootfs::paths;
use crate::seccomp;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct Prepared {
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub exe: CString,
    pub seccomp_listener: Option<OwnedFd>,
}

fn rlimit_resource(t: PosixRlimitType) -> (libc::__rlimit_resource_t, &'static str) {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => (libc::RLIMIT_CPU, "RLIMIT_CPU"),
        RlimitFsize => (libc::RLIMIT_FSIZE, "RLIMIT_FSIZE"),
        RlimitData => (libc::RLIMIT_DATA, "RLIMIT_DATA"),
        RlimitStack => (libc::RLIMIT_STACK, "RLIMIT_STACK"),
        RlimitCore => (libc::RLIMIT_CORE, "RLIMIT_CORE"),
        RlimitRss => (libc::RLIMIT_RSS, "RLIMIT_RSS"),
        RlimitNproc => (libc::RLIMIT_NPROC, "RLIMIT_NPROC"),
        RlimitNofile => (libc::RLIMIT_NOFILE, "RLIMIT_NOFILE"),
        RlimitMemlock => (libc::RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK"),
        RlimitAs => (libc::RLIMIT_AS, "RLIMIT_AS"),
        RlimitLocks => (libc::RLIMIT_LOCKS, "RLIMIT_LOCKS"),
        RlimitSigpending => (libc::RLIMIT_SIGPENDING, "RLIMIT_SIGPENDING"),
        RlimitMsgqueue => (libc::RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE"),
        RlimitNice => (libc::RLIMIT_NICE, "RLIMIT_NICE"),
        RlimitRtprio => (libc::RLIMIT_RTPRIO, "RLIMIT_RTPRIO"),
        RlimitRttime => (libc::RLIMIT_RTTIME, "RLIMIT_RTTIME"),
    }
}

pub fn set_rlimits(p: &Process) -> Result<()> {
    for r in p.rlimits().iter().flatten() {
        let (res, name) = rlimit_resource(r.typ());
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(res, &lim) } != 0 {
            let err = std::io::Error::last_os_error();
            let mut cur = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit writes into the struct we pass.
            unsafe { libc::getrlimit(res, &mut cur) };
            bail!(
                "set {name} soft={} hard={}: {err} (the current hard limit is {}; raising it needs CAP_SYS_RESOURCE)",
                r.soft(),
                r.hard(),
                cur.rlim_max
            );
        }
    }
    Ok(())
}

fn set_no_new_privs() -> Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("set no_new_privs");
    }
    Ok(())
}

fn keep_caps(on: bool) -> Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, on as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("set keep-caps");
    }
    Ok(())
}

fn set_user(p: &Process) -> Result<()> {
    let u = p.user();
    let gids: Vec<Gid> = u
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    // setgroups is refused in a user namespace where it was denied; only call it if asked to
    // or if we need to clear the host's supplementary groups.
    if let Err(e) = nix::unistd::setgroups(&gids) {
        if !gids.is_empty() || e != nix::errno::Errno::EPERM {
            return Err(e).with_context(|| format!("setgroups {:?}", u.additional_gids()));
        }
    }
    let gid = Gid::from_raw(u.gid());
    nix::unistd::setresgid(gid, gid, gid).with_context(|| format!("setgid {}", u.gid()))?;
    let uid = Uid::from_raw(u.uid());
    nix::unistd::setresuid(uid, uid, uid).with_context(|| format!("setuid {}", u.uid()))?;
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(u.umask().unwrap_or(0o022) as libc::mode_t) };
    Ok(())
}

fn set_apparmor(profile: &str) -> Result<()> {
    let enabled = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .map(|s| s.trim() == "Y")
        .unwrap_or(false);
    if !enabled {
        tracing::debug!("apparmor is not enabled on this host; profile {profile} not applied");
        return Ok(());
    }
    let attr = if Path::new("/proc/self/attr/apparmor/exec").exists() {
        "/proc/self/attr/apparmor/exec"
    } else {
        "/proc/self/attr/exec"
    };
    std::fs::write(attr, format!("exec {profile}"))
        .with_context(|| format!("apply apparmor profile {profile}"))
}

fn set_io_priority(p: &Process) -> Result<()> {
    let Some(io) = p.io_priority() else {
        return Ok(());
    };
    let class = match io.class() {
        oci_spec::runtime::IOPriorityClass::IoprioClassRt => 1,
        oci_spec::runtime::IOPriorityClass::IoprioClassBe => 2,
        oci_spec::runtime::IOPriorityClass::IoprioClassIdle => 3,
    };
    let prio = (class << 13) | (io.priority() as libc::c_long & 0x1fff);
    // SAFETY: ioprio_set(IOPRIO_WHO_PROCESS, 0 = self, prio) takes integers only.
    if unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, prio) } != 0 {
        return Err(std::io::Error::last_os_error()).context("set io priority");
    }
    Ok(())
}

fn set_scheduler(p: &Process) -> Result<()> {
    use oci_spec::runtime::{LinuxSchedulerFlag as F, LinuxSchedulerPolicy as P};
    let Some(s) = p.scheduler() else {
        return Ok(());
    };
    #[repr(C)]
    #[derive(Default)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }
    let policy = match s.policy() {
        P::SchedOther => 0,
        P::SchedFifo => 1,
        P::SchedRr => 2,
        P::SchedBatch => 3,
        P::SchedIso => 4,
        P::SchedIdle => 5,
        P::SchedDeadline => 6,
    };
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            F::SchedResetOnFork => 0x01,
            F::SchedFlagReclaim => 0x02,
            F::SchedFlagDLOverrun => 0x04,
            F::SchedFlagKeepPolicy => 0x08,
            F::SchedFlagKeepParams => 0x10,
            F::SchedFlagUtilClampMin => 0x20,
            F::SchedFlagUtilClampMax => 0x40,
        };
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy,
        flags,
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
    };
    // SAFETY: sched_setattr(0 = self, attr, 0) reads `attr`, sized by its `size` field.
    if unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("set scheduler (sched_setattr)");
    }
    Ok(())
}

fn env_value<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

fn is_executable(p: &Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) reads the path; it checks with our (already switched) real ids.
    let ok = unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 };
    ok && p.is_file()
}

/// Like Go's exec.LookPath, with runc's error text: Docker maps it to exit code 127.
pub fn look_path(arg0: &str, env: &[String]) -> Result<PathBuf> {
    if arg0.contains('/') {
        let p = PathBuf::from(arg0);
        if !p.exists() {
            bail!("exec: {arg0:?}: stat {arg0}: no such file or directory");
        }
        if !is_executable(&p) {
            bail!("exec: {arg0:?}: permission denied");
        }
        return Ok(p);
    }
    let path = env_value(env, "PATH").unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let cand = Path::new(dir).join(arg0);
        if is_executable(&cand) {
            return Ok(cand);
        }
    }
    bail!("exec: {arg0:?}: executable file not found in $PATH")
}

/// HOME from /etc/passwd of the container when the config does not set it (as runc does).
fn with_home(mut env: Vec<String>, uid: u32) -> Vec<String> {
    if env_value(&env, "HOME").is_some() {
        return env;
    }
    let home = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_string())
            })
        })
        .unwrap_or_else(|| "/".to_string());
    env.push(format!("HOME={home}"));
    env
}

fn cstrings<I: IntoIterator<Item = S>, S: AsRef<str>>(it: I, what: &str) -> Result<Vec<CString>> {
    it.into_iter()
        .map(|s| CString::new(s.as_ref()).map_err(|_| anyhow!("{what} contains a NUL byte")))
        .collect()
}

/// Everything from the working directory to the executable lookup. Runs in the final
/// namespaces with the final root. Returns what `exec` needs.
pub fn finish(
    p: &Process,
    seccomp_cfg: Option<&seccomp::Program>,
    preserve_fds: u32,
) -> Result<Prepared> {
    enter_cwd(p.cwd())?;
    // Checked now, before seccomp: a profile may deny getcwd itself (runtime-tools'
    // linux_seccomp does), and nothing below changes the working directory.
    verify_cwd(p.cwd())?;
    set_rlimits(p)?;
    set_io_priority(p)?;
    set_scheduler(p)?;
    if let Some(profile) = p.apparmor_profile().as_deref().filter(|s| !s.is_empty()) {
        set_apparmor(profile)?;
    }
    if let Some(adj) = p.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string()).with_context(|| {
            format!("set oom_score_adj {adj} (lowering it needs CAP_SYS_RESOURCE)")
        })?;
    }
    let nnp = p.no_new_privileges().unwrap_or(false);
    let mut listener = None;
    if let (Some(s), false) = (seccomp_cfg, nnp) {
        listener = s.load().context("load seccomp profile")?;
    }
    let caps = match p.capabilities() {
        Some(c) => Some(caps::Sets::resolve(c)?),
        None => None,
    };
    if let Some(c) = &caps {
        c.drop_bounding()?;
    }
    keep_caps(true)?;
    set_user(p)?;
    keep_caps(false)?;
    match &caps {
        Some(c) => c.apply()?,
        None => {
            // No capabilities object: the process gets none (runtime-spec).
            let empty = ::caps::CapsHashSet::new();
            for set in [
                ::caps::CapSet::Effective,
                ::caps::CapSet::Permitted,
                ::caps::CapSet::Inheritable,
            ] {
                ::caps::set(None, set, &empty).ok();
            }
        }
    }
    if nnp {
        set_no_new_privs()?;
        if let Some(s) = seccomp_cfg {
            listener = s.load().context("load seccomp profile")?;
        }
    }
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() {
        bail!("process.args must not be empty");
    }
    let env = with_home(p.env().clone().unwrap_or_default(), p.user().uid());
    let exe = look_path(&args[0], &env)?;
    fds::mark_cloexec_from(3 + preserve_fds as i32);
    fds::pass_preserved(preserve_fds);
    // A foreground runtime blocks signals to relay them; the container must not inherit that.
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
    Ok(Prepared {
        argv: cstrings(&args, "process.args")?,
        envp: cstrings(&env, "process.env")?,
        exe: CString::new(exe.as_os_str().as_bytes())?,
        seccomp_listener: listener,
    })
}

/// Enter `process.cwd` (created if missing), resolved inside the container's root, which
/// is `/` by now. Magic links are refused: `/proc/self/fd/N` names whatever that descriptor
/// is, a host directory included, and `..` from there would walk the host (CVE-2024-21626).
fn enter_cwd(cwd: &Path) -> Result<()> {
    if cwd.as_os_str().is_empty() {
        return Ok(());
    }
    if !cwd.is_absolute() {
        bail!("process.cwd {} must be an absolute path", cwd.display());
    }
    let root = nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context("open the container's root")?;
    let dir = paths::open_or_create(root.as_fd(), cwd, paths::Kind::Dir).map_err(|e| {
        let why = match e {
            Errno::ELOOP => {
                " (a link through /proc/<pid>/fd, /proc/<pid>/cwd or /proc/<pid>/root leads \
                 outside the container and is refused)"
            }
            _ => "",
        };
        anyhow!(
            "process.cwd {}: cannot enter it inside the container: {}{why}",
            cwd.display(),
            e.desc()
        )
    })?;
    nix::unistd::fchdir(&dir).with_context(|| format!("chdir to process.cwd {}", cwd.display()))?;
    Ok(())
}

/// The working directory must lie under the container's root.
/// The kernel's getcwd(2) marks a directory the root cannot reach with "(unreachable)"
/// instead of a leading '/', however it was entered.
fn verify_cwd(cwd: &Path) -> Result<()> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: getcwd writes at most `len` bytes into our buffer.
    let r = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
    let reachable = match r {
        n if n > 0 => buf[0] == b'/',
        _ => match Errno::last() {
            Errno::ENOENT => false,
            // A path longer than PATH_MAX is still under the root; anything else is unknown.
            Errno::ENAMETOOLONG => true,
            e => return Err(e).context("verify the working directory (getcwd)"),
        },
    };
    if !reachable {
        bail!(
            "process.cwd {}: the working directory is outside the container's root; \
             refusing to start (possible container breakout)",
            cwd.display()
        );
    }
    Ok(())
}

pub fn exec(p: &Prepared, trampoline: Option<&Trampoline>) -> anyhow::Error {
    if let Some(t) = trampoline {
        return t.exec(&p.exe, &p.argv, &p.envp);
    }
    let err = nix::unistd::execve(&p.exe, &p.argv, &p.envp).unwrap_err();
    anyhow!("exec {:?}: {err}", p.exe)
}
