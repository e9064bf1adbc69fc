//! Network namespaces, links and nft tables named with a test's prefix.

use std::fs;
use std::path::Path;
use std::process::Command;

use nix::mount::{umount2, MntFlags};

use super::{matches_prefix, CleanupReport, TOOL_TIMEOUT};
use crate::host::has_cmd;
use crate::process::run_timeout;

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

pub(super) fn remove_netns(prefix: &str, report: &mut CleanupReport) {
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

pub(super) fn remove_links(prefix: &str, report: &mut CleanupReport) {
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

pub(super) fn remove_nft_tables(prefix: &str, report: &mut CleanupReport) {
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
