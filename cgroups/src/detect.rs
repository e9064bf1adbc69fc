//! Finding the host's cgroup layout from /proc/self/mountinfo, and this process's own cgroups
//! from /proc/self/cgroup. Nothing is assumed about where hierarchies are mounted: containers
//! and distributions mount them in different places and combinations.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::fsio;

/// Which cgroup versions the host uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Only v1 hierarchies.
    V1,
    /// v1 hierarchies for the controllers plus a cgroup2 mount (usually /sys/fs/cgroup/unified)
    /// that holds whatever controllers v1 does not claim.
    Hybrid,
    /// Only the cgroup2 unified hierarchy.
    V2,
}

/// One mounted v1 hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1Mount {
    pub mountpoint: PathBuf,
    /// The cgroup mounted at `mountpoint` (not "/" inside a container without cgroupns).
    pub root: PathBuf,
    /// Controllers co-mounted on this hierarchy, e.g. ["cpu", "cpuacct"], or ["name=systemd"].
    pub controllers: Vec<String>,
}

/// The cgroup2 mount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnifiedMount {
    pub mountpoint: PathBuf,
    pub root: PathBuf,
}

/// The host's cgroup layout and mountpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCgroups {
    pub layout: Layout,
    pub v1: Vec<V1Mount>,
    pub unified: Option<UnifiedMount>,
}

impl HostCgroups {
    /// The v1 hierarchy holding `controller` ("memory", "name=systemd").
    pub fn v1_mount(&self, controller: &str) -> Option<&V1Mount> {
        self.v1
            .iter()
            .find(|m| m.controllers.iter().any(|c| c == controller))
    }

    /// A v2-only view of a cgroup2 mount: used to drive the v2 code paths on a hybrid host
    /// (tests on /sys/fs/cgroup/unified) or for a caller that wants to ignore v1.
    pub fn v2_at(mountpoint: impl Into<PathBuf>) -> Self {
        HostCgroups {
            layout: Layout::V2,
            v1: Vec::new(),
            unified: Some(UnifiedMount {
                mountpoint: mountpoint.into(),
                root: PathBuf::from("/"),
            }),
        }
    }
}

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Reads /proc/self/mountinfo once and returns the cgroup layout.
pub fn detect() -> Result<HostCgroups, Error> {
    let text = fsio::read_path(Path::new(MOUNTINFO))?;
    parse_mountinfo(&text)
}

/// Mount options of a v1 cgroup mount that are not controllers.
fn is_v1_option(opt: &str) -> bool {
    matches!(
        opt,
        "rw" | "ro" | "xattr" | "noprefix" | "clone_children" | "cpuset_v2_mode" | "favordynmods"
    ) || opt.starts_with("release_agent=")
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`). Public for the
/// runtime's own mountinfo reading (`--no-pivot`).
pub fn unescape_mountinfo(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_string();
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = std::str::from_utf8(&bytes[i + 1..i + 4]).ok();
            if let Some(v) = oct.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn parse_mountinfo(text: &str) -> Result<HostCgroups, Error> {
    let mut v1: Vec<V1Mount> = Vec::new();
    let mut unified: Option<UnifiedMount> = None;
    for line in text.lines() {
        // id parent maj:min root mountpoint opts [optional...] - fstype source superopts
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        let fstype = r.next().unwrap_or("");
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        let _source = r.next();
        let superopts = r.next().unwrap_or("");
        let l: Vec<&str> = left.split(' ').collect();
        if l.len() < 5 {
            continue;
        }
        let root = PathBuf::from(unescape_mountinfo(l[3]));
        let mountpoint = PathBuf::from(unescape_mountinfo(l[4]));
        if fstype == "cgroup2" {
            // Several cgroup2 mounts can exist (bind mounts); the conventional places win.
            let preferred = mountpoint == Path::new("/sys/fs/cgroup")
                || mountpoint == Path::new("/sys/fs/cgroup/unified");
            if unified.is_none() || preferred {
                unified = Some(UnifiedMount { mountpoint, root });
            }
            continue;
        }
        let controllers: Vec<String> = superopts
            .split(',')
            .filter(|o| !is_v1_option(o))
            .map(str::to_string)
            .collect();
        if controllers.is_empty() {
            continue;
        }
        // The same hierarchy mounted twice: keep the first, like runc's mountinfo scan.
        if v1.iter().any(|m| m.controllers == controllers) {
            continue;
        }
        v1.push(V1Mount {
            mountpoint,
            root,
            controllers,
        });
    }
    let layout = match (v1.is_empty(), unified.is_some()) {
        (false, true) => Layout::Hybrid,
        (false, false) => Layout::V1,
        (true, true) => Layout::V2,
        (true, false) => return Err(Error::NoCgroupMounts),
    };
    Ok(HostCgroups {
        layout,
        v1,
        unified,
    })
}

/// This process's cgroup in each hierarchy: v1 controller name -> path, and "" -> the cgroup2
/// path. Used to resolve relative cgroups paths the way runc does.
pub type OwnCgroups = BTreeMap<String, PathBuf>;

pub fn own_cgroups() -> Result<OwnCgroups, Error> {
    let path = Path::new("/proc/self/cgroup");
    let text = fsio::read_path(path)?;
    parse_proc_cgroup(path, &text)
}

pub(crate) fn parse_proc_cgroup(path: &Path, text: &str) -> Result<OwnCgroups, Error> {
    let mut own = OwnCgroups::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(ctrls), Some(cg)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                reason: format!("line {line:?} is not id:controllers:path"),
            });
        };
        if ctrls.is_empty() {
            own.insert(String::new(), PathBuf::from(cg));
        } else {
            for c in ctrls.split(',') {
                own.insert(c.to_string(), PathBuf::from(cg));
            }
        }
    }
    Ok(own)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,release_agent=/x,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn parses_hybrid_with_separate_cpu_and_cpuacct() {
        let h = parse_mountinfo(HYBRID).unwrap();
        assert_eq!(h.layout, Layout::Hybrid);
        assert_eq!(
            h.v1_mount("cpuacct").unwrap().mountpoint,
            Path::new("/sys/fs/cgroup/cpuacct")
        );
        assert_eq!(h.v1_mount("cpu").unwrap().controllers, vec!["cpu"]);
        assert_eq!(
            h.v1_mount("name=systemd").unwrap().mountpoint,
            Path::new("/sys/fs/cgroup/systemd")
        );
        assert_eq!(
            h.unified.unwrap().mountpoint,
            Path::new("/sys/fs/cgroup/unified")
        );
    }

    #[test]
    fn parses_v2_only_and_comounted_v1() {
        let v2 = "25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(parse_mountinfo(v2).unwrap().layout, Layout::V2);
        let v1 =
            "3 1 0:2 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup ro,cpu,cpuacct\n";
        let h = parse_mountinfo(v1).unwrap();
        assert_eq!(h.layout, Layout::V1);
        assert_eq!(h.v1[0].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(h.v1[0].root, Path::new("/docker/abc"));
    }

    #[test]
    fn no_cgroup_mounts_is_an_error() {
        let none = "22 1 0:5 / /proc rw - proc proc rw\n";
        assert!(matches!(parse_mountinfo(none), Err(Error::NoCgroupMounts)));
    }

    #[test]
    fn unescapes_octal_in_mountpoints() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), "/a b");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
    }

    #[test]
    fn parses_proc_self_cgroup() {
        let own = parse_proc_cgroup(
            Path::new("x"),
            "4:memory:/a/b\n1:cpu,cpuacct:/\n9:name=systemd:/s\n0::/u\n",
        )
        .unwrap();
        assert_eq!(own["memory"], Path::new("/a/b"));
        assert_eq!(own["cpuacct"], Path::new("/"));
        assert_eq!(own["name=systemd"], Path::new("/s"));
        assert_eq!(own[""], Path::new("/u"));
        assert!(parse_proc_cgroup(Path::new("x"), "garbage\n").is_err());
    }
}
