//! Undoing everything a test may have left on the host.
//!
//! Things are found by the test's prefix or by living under its temp dir, not
//! by a record of what the test did, so clean-up also catches what the
//! programs under test created on their own (containers, cgroups, netns).

mod cgroups;
mod mounts;
mod network;
mod processes;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) use mounts::remove_tree;

use crate::host::is_root;

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
    let prefixed = cgroups::find(prefix);
    cgroups::thaw(&prefixed);

    let mut pids = processes::marked(prefix);
    pids.extend(processes::from_state_files(dir));
    let outside_state = runtime_state_outside(prefix);
    for state in &outside_state {
        pids.extend(processes::from_state_files(state));
    }
    for cg in &prefixed {
        pids.extend(cgroups::pids(cg));
    }
    // Containers that engines under test (dockerd, podman) put in cgroups
    // of their own naming: their cgroups empty out when they die.
    let holding = cgroups::holding(&pids);
    processes::kill_all(&pids, &mut report);
    cgroups::remove_emptied(&holding);

    mounts::unmount_under(dir, &mut report);
    cgroups::remove(&prefixed, &mut report);
    if is_root() {
        network::remove_netns(prefix, &mut report);
        network::remove_links(prefix, &mut report);
        network::remove_nft_tables(prefix, &mut report);
    }
    for state in outside_state.iter().map(PathBuf::as_path).chain([dir]) {
        if let Err(e) = remove_tree(state) {
            report.note(e);
        }
    }
    report
}

/// Runtime state kept outside the test's dir, in directories named with its
/// prefix: containerd-shim-runc-v2 keeps runc's state in
/// `/run/containerd/runc/<namespace>` whatever containerd's own `--state`.
fn runtime_state_outside(prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/run/containerd/runc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| matches_prefix(&e.file_name().to_string_lossy(), prefix))
        .map(|e| e.path())
        .collect()
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
}
