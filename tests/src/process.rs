//! Running a command to completion with a time limit and captured output.

use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Time limit of [`run`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a finished (or killed) command left behind.
#[derive(Debug)]
pub struct Output {
    /// The command line, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The time limit expired and the command's process group was killed.
    pub timed_out: bool,
}

impl Output {
    /// Exit code, `None` when killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn success(&self) -> bool {
        !self.timed_out && self.status.success()
    }

    /// "exit code 3", "killed by signal 9", "timed out".
    pub fn describe_status(&self) -> String {
        if self.timed_out {
            return "timed out and killed".to_string();
        }
        match (self.status.code(), self.status.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => format!("{:?}", self.status),
        }
    }

    fn report(&self, expectation: &str) -> String {
        let mut msg = String::new();
        let _ = writeln!(
            msg,
            "`{}`: expected {expectation}, got {}",
            self.command,
            self.describe_status()
        );
        let _ = writeln!(msg, "--- stdout ---\n{}", self.stdout);
        let _ = write!(msg, "--- stderr ---\n{}", self.stderr);
        msg
    }

    /// Panics, showing the command and its output, unless it exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "{}", self.report("success"));
        self
    }

    /// Panics unless the command ran to the end and exited non-zero.
    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        assert!(
            !self.timed_out && self.status.code().is_some_and(|c| c != 0),
            "{}",
            self.report("a non-zero exit code")
        );
        self
    }

    /// Panics unless the command ran to the end, exited non-zero and said `needle` on
    /// stderr: a refusal must name what it refused.
    #[track_caller]
    pub fn assert_failure_mentioning(&self, needle: &str) -> &Self {
        self.assert_failure();
        assert!(
            self.stderr.contains(needle),
            "{}",
            self.report(&format!("an error mentioning {needle:?}"))
        );
        self
    }

    /// Panics unless the command exited with `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert!(
            !self.timed_out && self.status.code() == Some(code),
            "{}",
            self.report(&format!("exit code {code}"))
        );
        self
    }
}

/// Runs `cmd` with stdin from /dev/null, [`DEFAULT_TIMEOUT`], output captured.
#[track_caller]
pub fn run(cmd: &mut Command) -> Output {
    run_timeout(cmd, DEFAULT_TIMEOUT)
}

/// Like [`run`] with a chosen time limit.
#[track_caller]
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    execute(cmd, None, timeout)
}

/// Like [`run_timeout`], feeding `input` on stdin and then closing it.
#[track_caller]
pub fn run_with_input(cmd: &mut Command, input: &[u8], timeout: Duration) -> Output {
    execute(cmd, Some(input.to_vec()), timeout)
}

/// The command runs in its own process group so that a timeout kills what it
/// started too. Output is read while it runs; once it exits, what is already
/// in the pipes is taken and the rest ignored, because a daemon or container
/// it left running may hold the pipes open for ever.
#[track_caller]
fn execute(cmd: &mut Command, input: Option<Vec<u8>>, timeout: Duration) -> Output {
    let command = describe(cmd);
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("`{command}`: cannot start: {e}"));

    let writer = input.map(|data| {
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // A thread, so that a command that does not read its input cannot
        // block us; a broken pipe just means it stopped reading.
        thread::spawn(move || {
            let _ = stdin.write_all(&data);
        })
    });

    let mut stdout_pipe = child.stdout.take().expect("stdout is piped");
    let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
    set_nonblocking(&stdout_pipe, &command);
    set_nonblocking(&stderr_pipe, &command);

    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut stdout_open = true;
    let mut stderr_open = true;
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;

    let status = loop {
        if let Some(status) = try_wait(&mut child, &command) {
            break status;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            break child
                .wait()
                .unwrap_or_else(|e| panic!("`{command}`: wait after kill: {e}"));
        }
        wait_readable(&stdout_pipe, &stderr_pipe, stdout_open, stderr_open);
        stdout_open = drain(&mut stdout_pipe, &mut stdout, stdout_open);
        stderr_open = drain(&mut stderr_pipe, &mut stderr, stderr_open);
    };
    drain(&mut stdout_pipe, &mut stdout, stdout_open);
    drain(&mut stderr_pipe, &mut stderr, stderr_open);
    if let Some(writer) = writer {
        // Finished or blocked on a full pipe nobody reads; either way the
        // write end closes when the thread is gone, so do not wait for it.
        drop(writer);
    }

    Output {
        command,
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        timed_out,
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

fn try_wait(child: &mut Child, command: &str) -> Option<ExitStatus> {
    child
        .try_wait()
        .unwrap_or_else(|e| panic!("`{command}`: wait: {e}"))
}

fn set_nonblocking<F: AsFd>(pipe: &F, command: &str) {
    let fd = pipe.as_fd();
    let flags =
        fcntl(fd, FcntlArg::F_GETFL).unwrap_or_else(|e| panic!("`{command}`: F_GETFL: {e}"));
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).unwrap_or_else(|e| panic!("`{command}`: F_SETFL: {e}"));
}

/// Sleeps until a pipe has data or a short tick passes; the tick bounds how
/// late we notice the child's exit, since exit is not a pipe event when a
/// grandchild still holds the write end.
fn wait_readable(out: &ChildStdout, err: &ChildStderr, out_open: bool, err_open: bool) {
    let mut fds = Vec::with_capacity(2);
    if out_open {
        fds.push(PollFd::new(out.as_fd(), PollFlags::POLLIN));
    }
    if err_open {
        fds.push(PollFd::new(err.as_fd(), PollFlags::POLLIN));
    }
    if fds.is_empty() {
        thread::sleep(Duration::from_millis(10));
        return;
    }
    let _ = poll(&mut fds, PollTimeout::from(10u8));
}

/// Reads what is available; returns whether the pipe is still open.
fn drain<R: Read>(pipe: &mut R, buf: &mut Vec<u8>, open: bool) -> bool {
    if !open {
        return false;
    }
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match pipe.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}
