//! Finding and killing what a test started.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{CleanupReport, SETTLE};
use crate::env::MARKER_VAR;

/// Processes whose environment carries this test's marker.
pub(super) fn marked(prefix: &str) -> BTreeSet<i32> {
    let needle = format!("{MARKER_VAR}={prefix}\0");
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .map(|env| contains(&env, needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    // The environ block starts without a NUL before its first variable.
    haystack.starts_with(needle)
        || haystack
            .windows(needle.len() + 1)
            .any(|w| w[0] == 0 && &w[1..] == needle)
}

fn all_pids() -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Container init pids from runtime state files anywhere in the test's dir
/// (runc's `init_process_pid`, or a plain `pid`), for containers outside any
/// prefixed cgroup.
///
/// A state file can outlive its container, and its pid may since belong to
/// someone else's process, so a pid counts only when it still looks like the
/// container: its start time matches the recorded one (runc's
/// `init_process_start`, berth-runtime's `pid_start`), or its
/// root directory is not the host's (it was pivoted into a rootfs).
pub(super) fn from_state_files(dir: &Path) -> BTreeSet<i32> {
    let mut pids = BTreeSet::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            // Deep enough for an engine's runtime root inside the test dir
            // (dockerd's <exec-root>/runtime-runc/moby/<id>/state.json).
            if ft.is_dir() && depth < 6 {
                stack.push((path, depth + 1));
            } else if ft.is_file() && entry.file_name() == "state.json" {
                let Ok(text) = fs::read_to_string(&path) else {
                    continue;
                };
                let Ok(state) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                // runc's name for the init's start time, then berth-runtime's.
                let start = ["init_process_start", "pid_start"]
                    .iter()
                    .find_map(|k| state.get(*k).and_then(|v| v.as_u64()));
                for key in ["pid", "init_process_pid"] {
                    let Some(pid) = state.get(key).and_then(|v| v.as_i64()) else {
                        continue;
                    };
                    let Ok(pid) = i32::try_from(pid) else {
                        continue;
                    };
                    if pid > 1
                        && pid != std::process::id() as i32
                        && still_the_container(pid, start)
                    {
                        pids.insert(pid);
                    }
                }
            }
        }
    }
    pids
}

fn still_the_container(pid: i32, recorded_start: Option<u64>) -> bool {
    if let (Some(recorded), Some(actual)) = (recorded_start, start_time(pid)) {
        return recorded == actual;
    }
    let root_of = |p: &str| fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    match (root_of(&format!("/proc/{pid}/root/")), root_of("/")) {
        (Some(theirs), Some(ours)) => theirs != ours,
        _ => false,
    }
}

/// Field 22 of /proc/PID/stat: start time in clock ticks after boot.
fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name, which may hold spaces;
    // the state is field 3, so the start time is the 20th of these.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

pub(super) fn kill_all(pids: &BTreeSet<i32>, report: &mut CleanupReport) {
    // A test may have moved itself into one of its cgroups; never kill the
    // test process (or init).
    let me = std::process::id() as i32;
    let pids: Vec<i32> = pids.iter().copied().filter(|&p| p > 1 && p != me).collect();
    for &pid in &pids {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let deadline = Instant::now() + SETTLE;
    let mut alive = pids;
    while !alive.is_empty() && Instant::now() < deadline {
        alive.retain(|&pid| is_running(pid));
        if !alive.is_empty() {
            thread::sleep(Duration::from_millis(20));
        }
    }
    for pid in alive {
        report.note(format!("process {pid} survived SIGKILL"));
    }
}

/// Alive and not a zombie (a zombie is dead; its parent just has not reaped it).
fn is_running(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may hold spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z') | Some('X') | None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_matches_the_recorded_one_for_this_process() {
        let me = std::process::id() as i32;
        let start = start_time(me).expect("own start time");
        assert!(still_the_container(me, Some(start)));
        assert!(!still_the_container(me, Some(start + 1)));
        // Without a recorded start time, a process sharing the host root is
        // not taken for a container.
        assert!(!still_the_container(me, None));
    }

    #[test]
    fn environ_marker_is_found_only_as_a_whole_variable() {
        let env = b"PATH=/bin\0BERTH_TEST_ID=bt1x2\0HOME=/";
        assert!(contains(env, b"BERTH_TEST_ID=bt1x2\0"));
        assert!(!contains(env, b"BERTH_TEST_ID=bt1x\0"));
        assert!(contains(b"BERTH_TEST_ID=bt1x2\0", b"BERTH_TEST_ID=bt1x2\0"));
        assert!(!contains(
            b"XBERTH_TEST_ID=bt1x2\0",
            b"BERTH_TEST_ID=bt1x2\0"
        ));
    }
}
