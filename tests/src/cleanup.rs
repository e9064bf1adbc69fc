//! Undoing everything a test may have left on the host.
//!
//! Things are found by the test's prefix or by living under its temp dir, not
//! by a record of what the test did, so clean-up also catches what the
//! programs under test created on their own (containers, cgroups, netns).

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::env::MARKER_VAR;
use crate::host::{has_cmd, is_root};
use crate::process::run_timeout;

/// How long killed processes get to disappear and busy cgroups to empty.
const SETTLE: Duration = Duration::from_secs(10);
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// What clean-up could not undo; empty when everything is gone.
#[derive(Debug, Default)]
pub struct CleanupReport {
    pub problems: Vec<String>,
}

impl CleanupReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    fn note(&mut self, problem: String) {
        self.problems.push(problem);
    }
}

impl fmt::Display for CleanupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// Whether `name` contains `prefix` as a whole prefix: `bt12x1` matches
/// `bt12x1-web` and `/x/bt12x1`, but not `bt12x10-web` (another test's).
pub(crate) fn matches_prefix(name: &str, prefix: &str) -> bool {
    name.match_indices(prefix).any(|(i, _)| {
        !name[i + prefix.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

pub(crate) fn clean(prefix: &str, dir: &Path) -> CleanupReport {
    let mut report = CleanupReport::default();
    let cgroups = find_cgroups(prefix);
    thaw(&cgroups);

    let mut pids = marked_processes(prefix);
    pids.extend(state_file_pids(&dir.join("run")));
    for cg in &cgroups {
        pids.extend(cgroup_pids(cg));
    }
    kill_all(&pids, &mut report);

    unmount_under(dir, &mut report);
    remove_cgroups(&cgroups, &mut report);
    if is_root() {
        remove_netns(prefix, &mut report);
        remove_links(prefix, &mut report);
        remove_nft_tables(prefix, &mut report);
    }
    if let Err(e) = remove_tree(dir) {
        report.note(e);
    }
    report
}

// ---- processes -------------------------------------------------------------

/// Processes whose environment carries this test's marker.
fn marked_processes(prefix: &str) -> BTreeSet<i32> {
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

/// Container init pids from runtime state files (runc's `init_process_pid`,
/// or a plain `pid`), for containers outside any prefixed cgroup.
///
/// A state file can outlive its container, and its pid may since belong to
/// someone else's process, so a pid counts only when it still looks like the
/// container: its start time matches the recorded one (runc's
/// `init_process_start`, berth-runtime's `pid_start`), or its
/// root directory is not the host's (it was pivoted into a rootfs).
fn state_file_pids(run_dir: &Path) -> BTreeSet<i32> {
    let mut pids = BTreeSet::new();
    let mut stack = vec![(run_dir.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() && depth < 4 {
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

fn kill_all(pids: &BTreeSet<i32>, report: &mut CleanupReport) {
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

// ---- mounts ----------------------------------------------------------------

/// Mount points, as the kernel lists them for this process.
pub(crate) fn mount_points() -> Vec<(PathBuf, String)> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let mount_point = fields.nth(4)?;
            let fstype = line.split_once(" - ")?.1.split(' ').next()?;
            Some((PathBuf::from(unescape(mount_point)), fstype.to_string()))
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    mount_points()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// Detaches every mount under `dir`, deepest first, repeating for stacked
/// mounts and for mounts that propagation brought back.
fn unmount_under(dir: &Path, report: &mut CleanupReport) {
    for _ in 0..16 {
        let mut mounts = mounts_under(dir);
        if mounts.is_empty() {
            return;
        }
        mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for m in &mounts {
            let _ = umount2(m, MntFlags::MNT_DETACH);
        }
    }
    for m in mounts_under(dir) {
        report.note(format!("mount {} could not be detached", m.display()));
    }
}

// ---- cgroups ---------------------------------------------------------------

/// Cgroups named with the prefix in every mounted hierarchy (v1 and v2),
/// outermost matches only: their subtrees go with them.
fn find_cgroups(prefix: &str) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|(_, fstype)| fstype == "cgroup" || fstype == "cgroup2")
        .map(|(p, _)| p)
        .collect();
    roots.sort();
    roots.dedup();
    let mut found = Vec::new();
    for root in roots {
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let path = entry.path();
                if matches_prefix(&entry.file_name().to_string_lossy(), prefix) {
                    found.push(path);
                } else {
                    stack.push(path);
                }
            }
        }
    }
    found
}

/// Every cgroup directory in the subtree, children before parents.
fn subtree_post_order(top: &Path) -> Vec<PathBuf> {
    let mut order = Vec::new();
    let mut stack = vec![top.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
        order.push(dir);
    }
    order.reverse();
    order
}

/// Frozen tasks do not act on SIGKILL until thawed.
fn thaw(cgroups: &[PathBuf]) {
    for top in cgroups {
        for cg in subtree_post_order(top) {
            let _ = fs::write(cg.join("freezer.state"), "THAWED");
            let _ = fs::write(cg.join("cgroup.freeze"), "0");
        }
    }
}

fn cgroup_pids(top: &Path) -> BTreeSet<i32> {
    subtree_post_order(top)
        .iter()
        .filter_map(|cg| fs::read_to_string(cg.join("cgroup.procs")).ok())
        .flat_map(|procs| {
            procs
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

fn remove_cgroups(cgroups: &[PathBuf], report: &mut CleanupReport) {
    for top in cgroups {
        // Anything that entered after the first sweep (a late fork) goes now.
        let late = cgroup_pids(top);
        if !late.is_empty() {
            kill_all(&late, report);
        }
        for cg in subtree_post_order(top) {
            if let Err(e) = rmdir_retrying(&cg) {
                report.note(format!("cgroup {}: rmdir: {e}", cg.display()));
            }
        }
    }
}

/// rmdir of a cgroup fails with EBUSY until the kernel has finished tearing
/// down the last task that left it.
fn rmdir_retrying(cg: &Path) -> std::io::Result<()> {
    let deadline = Instant::now() + SETTLE;
    loop {
        match fs::remove_dir(cg) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() < deadline && e.raw_os_error() == Some(libc::EBUSY) => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

// ---- network ---------------------------------------------------------------

fn tool(report: &mut CleanupReport, what: &str, cmd: &mut Command) -> Option<String> {
    let out = run_timeout(cmd, TOOL_TIMEOUT);
    if out.success() {
        Some(out.stdout)
    } else {
        report.note(format!(
            "{what}: `{}` {}: {}",
            out.command,
            out.describe_status(),
            out.stderr.trim()
        ));
        None
    }
}

fn remove_netns(prefix: &str, report: &mut CleanupReport) {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !matches_prefix(&name, prefix) {
            continue;
        }
        if has_cmd("ip") {
            tool(
                report,
                &format!("netns {name}"),
                Command::new("ip").args(["netns", "delete", &name]),
            );
        } else {
            let path = entry.path();
            let _ = umount2(&path, MntFlags::MNT_DETACH);
            if let Err(e) = fs::remove_file(&path) {
                report.note(format!("netns {}: {e}", path.display()));
            }
        }
    }
}

fn remove_links(prefix: &str, report: &mut CleanupReport) {
    if !has_cmd("ip") {
        return;
    }
    let Some(listing) = tool(
        report,
        "list links",
        Command::new("ip").args(["-o", "link", "show"]),
    ) else {
        return;
    };
    // "7: name@peer: <FLAGS> ..." - the peer part is not the name.
    for line in listing.lines() {
        let Some(name) = line
            .split(": ")
            .nth(1)
            .map(|n| n.split('@').next().unwrap_or(n))
        else {
            continue;
        };
        if matches_prefix(name, prefix) {
            let out = run_timeout(
                Command::new("ip").args(["link", "delete", name]),
                TOOL_TIMEOUT,
            );
            // Deleting one end of a veth pair already took the other.
            if !out.success() && link_exists(name) {
                report.note(format!("link {name}: {}", out.stderr.trim()));
            }
        }
    }
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn remove_nft_tables(prefix: &str, report: &mut CleanupReport) {
    if !has_cmd("nft") {
        return;
    }
    let Some(listing) = tool(
        report,
        "list nft tables",
        Command::new("nft").args(["list", "tables"]),
    ) else {
        return;
    };
    for line in listing.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["table", family, name] = words[..] {
            if matches_prefix(name, prefix) {
                tool(
                    report,
                    &format!("nft table {family} {name}"),
                    Command::new("nft").args(["delete", "table", family, name]),
                );
            }
        }
    }
}

// ---- files -----------------------------------------------------------------

/// Removes `dir` after detaching its mounts, and refuses while any mount is
/// left: deleting through a leftover bind mount would delete the mount's
/// source, which may be anything on the host.
pub(crate) fn remove_tree(dir: &Path) -> Result<(), String> {
    let mut report = CleanupReport::default();
    unmount_under(dir, &mut report);
    if let Some(m) = mounts_under(dir).first() {
        return Err(format!(
            "{}: not removed, {} is still mounted",
            dir.display(),
            m.display()
        ));
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: remove: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_match_needs_a_non_digit_after_it() {
        assert!(matches_prefix("bt12x1-web", "bt12x1"));
        assert!(matches_prefix("bt12x1", "bt12x1"));
        assert!(matches_prefix("/berth/bt12x1-c/sub", "bt12x1"));
        assert!(!matches_prefix("bt12x10-web", "bt12x1"));
        assert!(matches_prefix("bt12x10-bt12x1-x", "bt12x1"));
        assert!(!matches_prefix("bt123x1-web", "bt12x1"));
    }

    #[test]
    fn start_time_matches_runc_recording_for_this_process() {
        let me = std::process::id() as i32;
        let start = start_time(me).expect("own start time");
        assert!(still_the_container(me, Some(start)));
        assert!(!still_the_container(me, Some(start + 1)));
        // Without a recorded start time, a process sharing the host root is
        // not taken for a container.
        assert!(!still_the_container(me, None));
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape(r"/tmp/back\134slash"), r"/tmp/back\slash");
        assert_eq!(unescape(r"/tmp/\04"), r"/tmp/\04");
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
