//! Live tests: load filters into forked children and watch what their syscalls do.
//!
//! A child compiles nothing after fork: programs are compiled in the parent, and the child
//! only makes raw syscalls before `_exit`, reporting the first failed check as its exit code.

use std::io::{IoSlice, IoSliceMut, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};

use nix::sys::signal::Signal;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use serde_json::{json, Value};

use super::{compile, install, send_listener, Program, SeccompError};

fn program(v: Value) -> Program {
    compile(&serde_json::from_value(v).expect("test profile parses"))
        .expect("test profile compiles")
}

/// Runs `f` in a forked child and returns how the child ended.
fn in_child(f: impl FnOnce() -> i32) -> (Pid, WaitStatus) {
    // SAFETY: the child runs only `f` (raw syscalls, no locks shared with other test threads
    // beyond glibc's fork-safe malloc) and leaves with _exit.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            // Children killed by SIGSYS would otherwise leave core dumps behind.
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: plain syscalls on this process; _exit never returns.
            unsafe {
                libc::setrlimit(libc::RLIMIT_CORE, &no_core);
                let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(100);
                libc::_exit(code)
            }
        }
        ForkResult::Parent { child } => (child, waitpid(child, None).expect("waitpid")),
    }
}

fn assert_exited_ok((pid, status): (Pid, WaitStatus)) {
    assert_eq!(
        status,
        WaitStatus::Exited(pid, 0),
        "child failed its check number in the exit code"
    );
}

fn no_new_privs() -> bool {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 }
}

/// A raw syscall: its return value, or the errno it failed with.
fn sys(nr: libc::c_long, a: [u64; 3]) -> Result<i64, i32> {
    // SAFETY: the tests only pass syscalls whose pointer arguments are null or point to live
    // NUL-terminated strings.
    let r = unsafe { libc::syscall(nr, a[0], a[1], a[2]) };
    if r == -1 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r)
    }
}

fn cstr(s: &std::path::Path) -> std::ffi::CString {
    std::ffi::CString::new(s.as_os_str().as_encoded_bytes()).unwrap()
}

/// From <linux/capability.h>.
const CAP_SYS_ADMIN: u32 = 21;

macro_rules! ensure {
    ($cond:expr, $code:expr) => {
        if !$cond {
            return $code;
        }
    };
}

#[test]
fn seccomp_live_errno_rules_deny_and_others_run() {
    let dir = tempfile::Builder::new()
        .prefix("berth-seccomp-errno")
        .tempdir()
        .unwrap();
    let made = dir.path().join("made");
    let p = program(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EXDEV}
        ]
    }));
    let (made_c, dir_c) = (cstr(&made), cstr(dir.path()));
    let before = std::process::id() as i64;
    assert_exited_ok(in_child(|| {
        ensure!(no_new_privs(), 1);
        ensure!(p.load().is_ok(), 2);
        ensure!(
            sys(libc::SYS_mkdir, [made_c.as_ptr() as u64, 0o755, 0]) == Err(libc::EPERM),
            3
        );
        ensure!(
            sys(libc::SYS_rmdir, [dir_c.as_ptr() as u64, 0, 0]) == Err(libc::EXDEV),
            4
        );
        // SAFETY: getpid has no arguments.
        ensure!(unsafe { libc::getpid() } as i64 != before, 5);
        ensure!(sys(libc::SYS_getppid, [0; 3]) == Ok(before), 6);
        0
    }));
    assert!(!made.exists(), "mkdir ran despite the ERRNO rule");
    assert!(dir.path().exists(), "rmdir ran despite the ERRNO rule");
}

#[test]
fn seccomp_live_default_errno_and_enosys_for_newer_syscalls() {
    let p = program(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EACCES,
        "syscalls": [{"names": ["exit", "exit_group", "getpid", "rt_sigreturn"],
                      "action": "SCMP_ACT_ALLOW"}]
    }));
    assert_exited_ok(in_child(|| {
        ensure!(no_new_privs(), 1);
        ensure!(p.load().is_ok(), 2);
        ensure!(sys(libc::SYS_getpid, [0; 3]).is_ok(), 3);
        ensure!(sys(libc::SYS_getuid, [0; 3]) == Err(libc::EACCES), 4);
        // Above the highest syscall the profile names: ENOSYS, so callers fall back.
        ensure!(sys(libc::SYS_getppid + 300, [0; 3]) == Err(libc::ENOSYS), 5);
        0
    }));
}

#[test]
fn seccomp_live_kill_and_trap_actions_end_the_child_with_sigsys() {
    for action in [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_TRAP",
    ] {
        let p = program(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": action}]
        }));
        let (pid, status) = in_child(|| {
            ensure!(no_new_privs(), 1);
            ensure!(p.load().is_ok(), 2);
            let _ = sys(libc::SYS_getppid, [0; 3]);
            3
        });
        assert!(
            matches!(status, WaitStatus::Signaled(p, Signal::SIGSYS, _) if p == pid),
            "{action}: child ended with {status:?}"
        );
    }
}

#[test]
fn seccomp_live_64_bit_argument_comparisons() {
    let p = program(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EXDEV,
             "args": [{"index": 0, "value": 0xffff_ffff_u64, "op": "SCMP_CMP_GT"}]},
            {"names": ["getsid"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EXDEV,
             "args": [{"index": 0, "value": 0xff00_0000_0000_0000_u64, "valueTwo": 0x1200_0000_0000_0000_u64,
                       "op": "SCMP_CMP_MASKED_EQ"}]}
        ]
    }));
    assert_exited_ok(in_child(|| {
        ensure!(no_new_privs(), 1);
        ensure!(p.load().is_ok(), 2);
        ensure!(sys(libc::SYS_getpgid, [0; 3]).is_ok(), 3);
        ensure!(
            sys(libc::SYS_getpgid, [1 << 33, 0, 0]) == Err(libc::EXDEV),
            4
        );
        ensure!(
            sys(libc::SYS_getpgid, [0xffff_ffff, 0, 0]) != Err(libc::EXDEV),
            5
        );
        ensure!(
            sys(libc::SYS_getsid, [0x1234_0000_0000_0000, 0, 0]) == Err(libc::EXDEV),
            6
        );
        ensure!(
            sys(libc::SYS_getsid, [0x1300_0000_0000_0000, 0, 0]) != Err(libc::EXDEV),
            7
        );
        ensure!(sys(libc::SYS_getsid, [0; 3]).is_ok(), 8);
        0
    }));
}

#[test]
fn seccomp_live_log_allows_and_trace_without_tracer_is_enosys() {
    let p = program(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_LOG"},
            {"names": ["getppid"], "action": "SCMP_ACT_TRACE", "errnoRet": 7}
        ]
    }));
    assert_exited_ok(in_child(|| {
        ensure!(no_new_privs(), 1);
        ensure!(p.load().is_ok(), 2);
        ensure!(sys(libc::SYS_getpid, [0; 3]).is_ok(), 3);
        ensure!(sys(libc::SYS_getppid, [0; 3]) == Err(libc::ENOSYS), 4);
        0
    }));
}

/// Sends `fd` over `sock` (the child's half of a socketpair).
fn pass_fd(sock: &UnixStream, fd: RawFd) -> bool {
    let fds = [fd];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(b"F")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .is_ok()
}

/// Receives one fd and the bytes sent with it.
fn take_fd(sock: RawFd, buf: &mut [u8]) -> (usize, OwnedFd) {
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
        .expect("recvmsg");
    let n = msg.bytes;
    for c in msg.cmsgs().expect("control messages") {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: SCM_RIGHTS just installed this fd in our table; nothing else owns it.
            return (n, unsafe { OwnedFd::from_raw_fd(fds[0]) });
        }
    }
    panic!("no fd received");
}

/// Waits (bounded, so a broken child cannot hang the suite) until `fd` is readable.
fn wait_readable(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, 30_000) == 1 && pfd.revents & libc::POLLIN != 0 }
}

#[test]
fn seccomp_live_notify_rule_gives_a_listener_the_parent_answers() {
    let p = program(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/berth-test-agent.sock",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    assert!(p.has_listener());
    let (ours, theirs) = UnixStream::pair().unwrap();
    let path = c"/berth-seccomp-notify-never-created";
    // SAFETY: see in_child; this one also keeps `theirs` open across fork.
    let child = match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let code = (|| {
                ensure!(no_new_privs(), 1);
                let Ok(Some(listener)) = p.load() else {
                    return 2;
                };
                ensure!(pass_fd(&theirs, listener.as_raw_fd()), 3);
                drop(listener);
                // The agent (our parent) answers 42 without running mkdir.
                ensure!(
                    sys(libc::SYS_mkdir, [path.as_ptr() as u64, 0o700, 0]) == Ok(42),
                    4
                );
                0
            })();
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(theirs);
    let (_, listener) = take_fd(ours.as_raw_fd(), &mut [0u8; 1]);
    assert!(
        wait_readable(listener.as_raw_fd()),
        "no notification arrived"
    );

    // SAFETY: zeroed plain-data structs the kernel fills in / reads.
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: RECV writes one seccomp_notif into `req`.
    let r = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut req,
        )
    };
    assert_eq!(
        r,
        0,
        "SECCOMP_IOCTL_NOTIF_RECV: {}",
        std::io::Error::last_os_error()
    );
    assert_eq!(req.data.nr, libc::SYS_mkdir as i32);
    assert_eq!(req.pid as i32, child.as_raw());
    assert_eq!(req.data.args[0], path.as_ptr() as u64);

    let mut resp: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
    resp.id = req.id;
    resp.val = 42;
    // SAFETY: SEND reads one seccomp_notif_resp.
    let r = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &mut resp,
        )
    };
    assert_eq!(
        r,
        0,
        "SECCOMP_IOCTL_NOTIF_SEND: {}",
        std::io::Error::last_os_error()
    );
    assert_exited_ok((child, waitpid(child, None).unwrap()));
    assert!(!std::path::Path::new("/berth-seccomp-notify-never-created").exists());
}

#[test]
fn seccomp_live_tsync_filters_every_thread() {
    for tsync in [true, false] {
        let mut prof = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
        });
        if tsync {
            prof["flags"] = json!(["SECCOMP_FILTER_FLAG_TSYNC"]);
        }
        let p = program(prof);
        let path = c"/proc/berth-seccomp-tsync/never";
        let status = in_child(|| {
            ensure!(no_new_privs(), 1);
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let other = std::thread::spawn(move || {
                go_rx.recv().ok();
                sys(libc::SYS_mkdir, [path.as_ptr() as u64, 0o700, 0])
            });
            ensure!(p.load().is_ok(), 2);
            go_tx.send(()).ok();
            let Ok(theirs) = other.join() else { return 3 };
            // Filtered: EPERM from the rule. Unfiltered: the kernel's own ENOENT.
            let want = if tsync { libc::EPERM } else { libc::ENOENT };
            ensure!(theirs == Err(want), 4);
            0
        });
        assert_exited_ok(status);
    }
}

#[test]
fn seccomp_live_install_returns_the_listener_even_with_tsync() {
    let profile: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "listenerPath": "/run/berth-test-agent.sock",
        "syscalls": [{"names": ["mknod"], "action": "SCMP_ACT_NOTIFY"}]
    }))
    .unwrap();
    assert_exited_ok(in_child(|| {
        ensure!(no_new_privs(), 1);
        let Ok(Some(fd)) = install(&profile) else {
            return 2;
        };
        // A live user-notification fd answers ID_VALID for unknown ids with ENOENT.
        let mut id: u64 = 1;
        // SAFETY: ID_VALID reads one u64.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &mut id) };
        ensure!(
            r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT),
            3
        );
        0
    }));
}

#[test]
fn seccomp_live_loading_needs_no_new_privs_or_cap_sys_admin() {
    let profile: oci_spec::runtime::LinuxSeccomp =
        serde_json::from_value(json!({"defaultAction": "SCMP_ACT_ALLOW"})).unwrap();
    assert_exited_ok(in_child(|| {
        // Drop CAP_SYS_ADMIN from the effective set, keep no_new_privs off.
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let mut hdr = Header {
            version: 0x2008_0522,
            pid: 0,
        };
        let mut data = [Data::default(); 2];
        // SAFETY: capget/capset with a v3 header and two data structs, as the ABI requires.
        unsafe {
            ensure!(
                libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) == 0,
                1
            );
            data[0].effective &= !(1 << CAP_SYS_ADMIN);
            ensure!(
                libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) == 0,
                2
            );
        }
        match install(&profile) {
            Err(SeccompError::NeedsNoNewPrivs) => 0,
            Err(_) => 3,
            Ok(_) => 4,
        }
    }));
}

#[test]
fn seccomp_live_docker_default_profile() {
    let p = compile(&serde_json::from_str(super::tests_compile::DOCKER_DEFAULT_X86_64).unwrap())
        .unwrap();
    let dir = tempfile::Builder::new()
        .prefix("berth-seccomp-docker")
        .tempdir()
        .unwrap();
    let sub = cstr(&dir.path().join("sub"));
    assert_exited_ok(in_child(|| {
        ensure!(no_new_privs(), 1);
        ensure!(p.load().is_ok(), 2);
        ensure!(sys(libc::SYS_getpid, [0; 3]).is_ok(), 3);
        ensure!(
            sys(libc::SYS_mkdir, [sub.as_ptr() as u64, 0o700, 0]).is_ok(),
            4
        );
        let newuts = libc::CLONE_NEWUTS as u64;
        ensure!(
            sys(libc::SYS_unshare, [newuts, 0, 0]) == Err(libc::EPERM),
            5
        );
        ensure!(sys(libc::SYS_clone3, [0; 3]) == Err(libc::ENOSYS), 6);
        let vsock = libc::AF_VSOCK as u64;
        let stream = libc::SOCK_STREAM as u64;
        ensure!(
            sys(libc::SYS_socket, [vsock, stream, 0]) == Err(libc::EPERM),
            7
        );
        let Ok(fd) = sys(libc::SYS_socket, [libc::AF_UNIX as u64, stream, 0]) else {
            return 8;
        };
        ensure!(sys(libc::SYS_close, [fd as u64, 0, 0]).is_ok(), 9);
        ensure!(sys(libc::SYS_personality, [0xffff_ffff, 0, 0]).is_ok(), 10);
        ensure!(sys(libc::SYS_mseal, [0; 3]) == Err(libc::ENOSYS), 11);
        0
    }));
    assert!(dir.path().join("sub").is_dir());
}

#[test]
fn seccomp_listener_path_receives_state_and_fd() {
    let dir = tempfile::Builder::new()
        .prefix("berth-seccomp-agent")
        .tempdir()
        .unwrap();
    let sock = dir.path().join("agent.sock");
    let agent = UnixListener::bind(&sock).unwrap();
    let file = tempfile::tempfile_in(dir.path()).unwrap();
    let state = json!({"ociVersion": "1.2.0", "id": "c1", "status": "creating", "pid": 4242,
                       "bundle": "/b"});

    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = agent.accept().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let (n, fd) = take_fd(conn.as_raw_fd(), &mut buf);
        buf.truncate(n);
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).unwrap();
        buf.extend(rest);
        (buf, fd)
    });
    send_listener(
        &sock,
        "agent-metadata",
        file.as_fd(),
        state.to_string().as_bytes(),
    )
    .unwrap();
    let (payload, fd) = receiver.join().unwrap();

    let got: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(got["ociVersion"], "1.2.0");
    assert_eq!(got["fds"], json!(["seccompFd"]));
    assert_eq!(got["pid"], 4242);
    assert_eq!(got["metadata"], "agent-metadata");
    assert_eq!(got["state"], state);
    let (a, b) = (fd_ino(fd.as_raw_fd()), fd_ino(file.as_raw_fd()));
    assert_eq!(a, b, "the agent got a different file");
}

fn fd_ino(fd: RawFd) -> (u64, u64) {
    // SAFETY: fstat fills a zeroed stat for a valid fd.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
    (st.st_dev, st.st_ino)
}

#[test]
fn seccomp_listener_path_errors_name_the_socket() {
    let dir = tempfile::Builder::new()
        .prefix("berth-seccomp-agent")
        .tempdir()
        .unwrap();
    let missing = dir.path().join("nobody-listens.sock");
    let file = tempfile::tempfile_in(dir.path()).unwrap();
    let e = send_listener(&missing, "", file.as_fd(), br#"{"pid": 1}"#).unwrap_err();
    assert!(e.to_string().contains("nobody-listens.sock"), "{e}");

    let sock = dir.path().join("agent.sock");
    let _agent = UnixListener::bind(&sock).unwrap();
    let e = send_listener(&sock, "", file.as_fd(), b"not json").unwrap_err();
    assert!(matches!(e, SeccompError::StateJson(_)), "{e}");
}
