//! A tiny /proc/self/mountinfo parser for `--no-pivot`, which must find the host's procfs and
//! sysfs mounts to detach them. The cgroup layout comes from berth-cgroups instead.

use std::path::PathBuf;

use berth_cgroups::unescape_mountinfo as unescape;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The path inside the filesystem that is mounted (field 4).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fs_type: String,
}

pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            Some(MountInfo {
                root: PathBuf::from(unescape(pre.get(3)?)),
                mount_point: PathBuf::from(unescape(pre.get(4)?)),
                fs_type: post.split(' ').next()?.to_string(),
            })
        })
        .collect()
}

pub fn read_mountinfo() -> std::io::Result<Vec<MountInfo>> {
    Ok(parse_mountinfo(&std::fs::read_to_string(
        "/proc/self/mountinfo",
    )?))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn rootfs_mountinfo_parses_roots_mountpoints_and_types() {
        let text = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
            32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:5 - cgroup cgroup rw,cpu,cpuacct\n\
            41 31 0:38 /a\\040b /mnt/x\\040y rw - cgroup2 cgroup2 rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[1].mount_point,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(m[1].fs_type, "cgroup");
        assert_eq!(m[2].root, PathBuf::from("/a b"));
        assert_eq!(m[2].mount_point, PathBuf::from("/mnt/x y"));
    }
}
