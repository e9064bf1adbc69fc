//! Parsing of OCI mount options into mount(2) flags, propagation changes, recursive
//! mount_setattr(2) attributes and filesystem data — the same vocabulary runc and crun accept.
//! Anything not recognised is filesystem data (`size=65536k`, `mode=755`, ...).

use libc::c_ulong;
use libc::{
    mount_attr, MOUNT_ATTR_NOATIME, MOUNT_ATTR_NODEV, MOUNT_ATTR_NODIRATIME, MOUNT_ATTR_NOEXEC,
    MOUNT_ATTR_NOSUID, MOUNT_ATTR_NOSYMFOLLOW, MOUNT_ATTR_RDONLY, MOUNT_ATTR_RELATIME,
    MOUNT_ATTR_STRICTATIME, MOUNT_ATTR__ATIME,
};

/// (option, clears the flag, MS_* flag)
const FLAGS: &[(&str, bool, c_ulong)] = &[
    ("async", true, libc::MS_SYNCHRONOUS),
    ("atime", true, libc::MS_NOATIME),
    ("bind", false, libc::MS_BIND),
    ("dev", true, libc::MS_NODEV),
    ("diratime", true, libc::MS_NODIRATIME),
    ("dirsync", false, libc::MS_DIRSYNC),
    ("exec", true, libc::MS_NOEXEC),
    ("iversion", false, libc::MS_I_VERSION),
    ("lazytime", false, libc::MS_LAZYTIME),
    ("loud", true, libc::MS_SILENT),
    ("mand", false, libc::MS_MANDLOCK),
    ("noatime", false, libc::MS_NOATIME),
    ("nodev", false, libc::MS_NODEV),
    ("nodiratime", false, libc::MS_NODIRATIME),
    ("noexec", false, libc::MS_NOEXEC),
    ("noiversion", true, libc::MS_I_VERSION),
    ("nolazytime", true, libc::MS_LAZYTIME),
    ("nomand", true, libc::MS_MANDLOCK),
    ("norelatime", true, libc::MS_RELATIME),
    ("nostrictatime", true, libc::MS_STRICTATIME),
    ("nosuid", false, libc::MS_NOSUID),
    ("nosymfollow", false, libc::MS_NOSYMFOLLOW),
    ("rbind", false, libc::MS_BIND | libc::MS_REC),
    ("relatime", false, libc::MS_RELATIME),
    ("remount", false, libc::MS_REMOUNT),
    ("ro", false, libc::MS_RDONLY),
    ("rw", true, libc::MS_RDONLY),
    ("silent", false, libc::MS_SILENT),
    ("strictatime", false, libc::MS_STRICTATIME),
    ("suid", true, libc::MS_NOSUID),
    ("symfollow", true, libc::MS_NOSYMFOLLOW),
    ("sync", false, libc::MS_SYNCHRONOUS),
    // crun's recursive spellings of superblock flags. The kernel has no per-mount or recursive
    // form of these, so they act like the plain ones.
    ("rsync", false, libc::MS_SYNCHRONOUS),
    ("rasync", true, libc::MS_SYNCHRONOUS),
    ("rdirsync", false, libc::MS_DIRSYNC),
    ("rmand", false, libc::MS_MANDLOCK),
    ("rnomand", true, libc::MS_MANDLOCK),
];

pub const PROPAGATION: &[(&str, c_ulong)] = &[
    ("private", libc::MS_PRIVATE),
    ("rprivate", libc::MS_PRIVATE | libc::MS_REC),
    ("shared", libc::MS_SHARED),
    ("rshared", libc::MS_SHARED | libc::MS_REC),
    ("slave", libc::MS_SLAVE),
    ("rslave", libc::MS_SLAVE | libc::MS_REC),
    ("unbindable", libc::MS_UNBINDABLE),
    ("runbindable", libc::MS_UNBINDABLE | libc::MS_REC),
];

/// (option, clears the attribute, MOUNT_ATTR_* bit), applied with AT_RECURSIVE.
const REC_ATTRS: &[(&str, bool, u64)] = &[
    ("rro", false, MOUNT_ATTR_RDONLY),
    ("rrw", true, MOUNT_ATTR_RDONLY),
    ("rnosuid", false, MOUNT_ATTR_NOSUID),
    ("rsuid", true, MOUNT_ATTR_NOSUID),
    ("rnodev", false, MOUNT_ATTR_NODEV),
    ("rdev", true, MOUNT_ATTR_NODEV),
    ("rnoexec", false, MOUNT_ATTR_NOEXEC),
    ("rexec", true, MOUNT_ATTR_NOEXEC),
    ("rnodiratime", false, MOUNT_ATTR_NODIRATIME),
    ("rdiratime", true, MOUNT_ATTR_NODIRATIME),
    ("rrelatime", false, MOUNT_ATTR_RELATIME),
    ("rnorelatime", true, MOUNT_ATTR_RELATIME),
    ("rnoatime", false, MOUNT_ATTR_NOATIME),
    ("ratime", true, MOUNT_ATTR_NOATIME),
    ("rstrictatime", false, MOUNT_ATTR_STRICTATIME),
    ("rnostrictatime", true, MOUNT_ATTR_STRICTATIME),
    ("rnosymfollow", false, MOUNT_ATTR_NOSYMFOLLOW),
    ("rsymfollow", true, MOUNT_ATTR_NOSYMFOLLOW),
];

/// Every option name this module understands, for `berth-runtime features`.
pub fn known_options() -> Vec<&'static str> {
    let mut all: Vec<&str> = FLAGS.iter().map(|f| f.0).collect();
    all.extend(PROPAGATION.iter().map(|p| p.0));
    all.extend(REC_ATTRS.iter().map(|a| a.0));
    all.extend(["defaults", "tmpcopyup", "idmap", "ridmap", "copy-symlink"]);
    all.sort_unstable();
    all
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// MS_* flags to set.
    pub flags: c_ulong,
    /// MS_* flags the user explicitly asked to be clear (rw, suid, dev...).
    pub cleared: c_ulong,
    /// Propagation changes, applied in order after the mount.
    pub propagation: Vec<c_ulong>,
    pub rec_set: u64,
    pub rec_clr: u64,
    /// Filesystem-specific options, joined with ',' for mount(2).
    pub data: Vec<String>,
    pub tmpcopyup: bool,
    /// crun's "copy-symlink": a bind of a symlink makes the same symlink at the target.
    pub copy_symlink: bool,
    /// Some(recursive) when "idmap" or "ridmap" was given.
    pub idmap: Option<bool>,
}

impl MountOptions {
    pub fn parse<S: AsRef<str>>(options: &[S]) -> Self {
        let mut o = MountOptions::default();
        for opt in options.iter().map(AsRef::as_ref) {
            if let Some(&(_, clear, flag)) = FLAGS.iter().find(|f| f.0 == opt) {
                if clear {
                    o.flags &= !flag;
                    o.cleared |= flag;
                } else {
                    o.flags |= flag;
                    o.cleared &= !flag;
                }
            } else if let Some(&(_, flag)) = PROPAGATION.iter().find(|p| p.0 == opt) {
                o.propagation.push(flag);
            } else if let Some(&(_, clear, attr)) = REC_ATTRS.iter().find(|a| a.0 == opt) {
                if clear {
                    o.rec_clr |= attr;
                    o.rec_set &= !attr;
                } else {
                    o.rec_set |= attr;
                    o.rec_clr &= !attr;
                }
                // mount_setattr(2): an atime mode only takes effect with the whole
                // MOUNT_ATTR__ATIME field in attr_clr.
                if attr & MOUNT_ATTR__ATIME == attr {
                    o.rec_clr |= MOUNT_ATTR__ATIME;
                }
            } else {
                match opt {
                    "defaults" => {}
                    "tmpcopyup" => o.tmpcopyup = true,
                    "copy-symlink" => o.copy_symlink = true,
                    "idmap" => o.idmap = Some(o.idmap.unwrap_or(false)),
                    "ridmap" => o.idmap = Some(true),
                    _ => o.data.push(opt.to_string()),
                }
            }
        }
        o
    }

    pub fn is_bind(&self) -> bool {
        self.flags & libc::MS_BIND != 0
    }

    pub fn data_string(&self) -> String {
        self.data.join(",")
    }

    pub fn rec_attr(&self) -> Option<mount_attr> {
        (self.rec_set != 0 || self.rec_clr != 0)
            .then(|| super::sys::mount_attr_bits(self.rec_set, self.rec_clr))
    }
}

/// MS_* flags to MOUNT_ATTR_* bits, for the new mount API.
pub fn ms_to_attr(flags: c_ulong) -> u64 {
    let mut attr = 0;
    for (ms, at) in [
        (libc::MS_RDONLY, MOUNT_ATTR_RDONLY),
        (libc::MS_NOSUID, MOUNT_ATTR_NOSUID),
        (libc::MS_NODEV, MOUNT_ATTR_NODEV),
        (libc::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
        (libc::MS_NOATIME, MOUNT_ATTR_NOATIME),
        (libc::MS_STRICTATIME, MOUNT_ATTR_STRICTATIME),
        (libc::MS_NODIRATIME, MOUNT_ATTR_NODIRATIME),
        (libc::MS_NOSYMFOLLOW, MOUNT_ATTR_NOSYMFOLLOW),
    ] {
        if flags & ms != 0 {
            attr |= at;
        }
    }
    attr
}

/// The mount flags statfs(2) reports, as MS_* bits (for re-applying locked flags).
pub fn statfs_to_ms(st_flags: c_ulong) -> c_ulong {
    // Ours: libc 0.2 has no ST_NOSYMFOLLOW.
    const ST_NOSYMFOLLOW: c_ulong = 0x2000;
    let mut flags = 0;
    for (st, ms) in [
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_MANDLOCK, libc::MS_MANDLOCK),
        (libc::ST_SYNCHRONOUS, libc::MS_SYNCHRONOUS),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
        (ST_NOSYMFOLLOW, libc::MS_NOSYMFOLLOW),
    ] {
        if st_flags & st != 0 {
            flags |= ms;
        }
    }
    // MS_STRICTATIME is not stored: a mount with none of the other atime modes is strictatime.
    if flags & (libc::MS_NOATIME | libc::MS_RELATIME) == 0 {
        flags |= libc::MS_STRICTATIME;
    }
    flags
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn rootfs_options_flags_clear_and_data() {
        let o = MountOptions::parse(&[
            "rbind",
            "ro",
            "nosuid",
            "rw",
            "suid",
            "size=65536k",
            "mode=755",
            "rslave",
            "rro",
            "ratime",
            "tmpcopyup",
            "ridmap",
            "defaults",
        ]);
        assert_eq!(o.flags, libc::MS_BIND | libc::MS_REC);
        assert_eq!(o.cleared, libc::MS_RDONLY | libc::MS_NOSUID);
        assert_eq!(o.data_string(), "size=65536k,mode=755");
        assert_eq!(o.propagation, vec![libc::MS_SLAVE | libc::MS_REC]);
        assert_eq!(o.rec_set, MOUNT_ATTR_RDONLY);
        assert_eq!(o.rec_clr, MOUNT_ATTR_NOATIME | MOUNT_ATTR__ATIME);
        assert!(o.tmpcopyup);
        assert_eq!(o.idmap, Some(true));
        assert!(known_options().contains(&"nosymfollow"));
    }
}
