//! What a header says about an entry besides its type and data (owner, mode, times, xattrs),
//! and setting it on what the entry became without following anything.

use std::ffi::{CStr, CString};
use std::io::Read;
use std::os::fd::BorrowedFd;

use nix::fcntl::AtFlags;
use nix::sys::stat::{fchmod, fchmodat, utimensat, FchmodatFlags, Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, Gid, Uid};

use super::error::Refusal;
use super::name::lossy;
use super::sys::{set_xattr, Node};
use super::unpack::{Fail, Op};

pub(super) const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";

/// What an entry became, for the xattrs Linux allows on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Dir,
    File,
    Symlink,
    Special,
}

/// What a header says about the file, apart from its type and data.
pub(super) struct Meta {
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mode: u32,
    pub(super) atime: TimeSpec,
    pub(super) mtime: TimeSpec,
    pub(super) xattrs: Vec<(CString, Vec<u8>)>,
}

impl Meta {
    pub(super) fn of<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta, Fail> {
        let h = entry.header();
        let id = |v: u64| u32::try_from(v).map_err(|_| Fail::Refuse(Refusal::IdOutOfRange(v)));
        let uid = id(h.uid().map_err(Fail::Stream)?)?;
        let gid = id(h.gid().map_err(Fail::Stream)?)?;
        let mode = h.mode().map_err(Fail::Stream)? & 0o7777;
        let secs = h.mtime().map_err(Fail::Stream)?;
        let mut mtime = TimeSpec::new(i64::try_from(secs).unwrap_or(i64::MAX), 0);
        let mut atime = None;
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(Fail::Stream)? {
            for rec in pax {
                let rec = rec.map_err(Fail::Stream)?;
                let key = rec.key_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    let name = CString::new(name).map_err(|_| Refusal::NulInName)?;
                    xattrs.push((name, rec.value_bytes().to_vec()));
                } else if key == b"mtime" {
                    if let Some(t) = pax_time(rec.value_bytes()) {
                        mtime = t;
                    }
                } else if key == b"atime" {
                    atime = pax_time(rec.value_bytes());
                }
            }
        }
        Ok(Meta {
            uid,
            gid,
            mode,
            atime: atime.unwrap_or(mtime),
            mtime,
            xattrs,
        })
    }

    pub(super) fn mode(&self) -> Mode {
        Mode::from_bits_truncate(self.mode)
    }

    /// Owner, xattrs and mode of a regular file just made with its permission bits, where
    /// `mode_is_final` says the umask took none of them: then only setuid, setgid and
    /// sticky, which chown would clear and the create could not set, need a chmod.
    pub(super) fn apply_to_new_file(
        &self,
        layer: &str,
        fd: BorrowedFd<'_>,
        mode_is_final: bool,
    ) -> Result<(), Fail> {
        fchown(
            fd,
            Some(Uid::from_raw(self.uid)),
            Some(Gid::from_raw(self.gid)),
        )
        .op("chown")?;
        self.set_xattrs(layer, Node::Fd(fd), Kind::File)?;
        if !mode_is_final || self.mode & 0o7000 != 0 {
            fchmod(fd, self.mode()).op("chmod")?;
        }
        Ok(())
    }

    /// Owner, xattrs and mode, in that order, of an open file or directory.
    pub(super) fn apply_to_fd(
        &self,
        layer: &str,
        node: Node<'_>,
        is_dir: bool,
    ) -> Result<(), Fail> {
        let Node::Fd(fd) = node else {
            unreachable!("only called with descriptors")
        };
        fchown(
            fd,
            Some(Uid::from_raw(self.uid)),
            Some(Gid::from_raw(self.gid)),
        )
        .op("chown")?;
        self.set_xattrs(layer, node, if is_dir { Kind::Dir } else { Kind::File })?;
        fchmod(fd, self.mode()).op("chmod")
    }

    /// Owner, xattrs, mode and times of a name that must not be opened (symlink, device,
    /// fifo); none of the calls follows it.
    pub(super) fn apply_at(
        &self,
        layer: &str,
        at: BorrowedFd<'_>,
        base: &CStr,
        symlink: bool,
    ) -> Result<(), Fail> {
        fchownat(
            at,
            base,
            Some(Uid::from_raw(self.uid)),
            Some(Gid::from_raw(self.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .op("chown")?;
        self.set_xattrs(
            layer,
            Node::At(at, base),
            if symlink {
                Kind::Symlink
            } else {
                Kind::Special
            },
        )?;
        // Linux has no mode on symlinks (the no-follow chmod of one fails).
        if !symlink {
            fchmodat(at, base, self.mode(), FchmodatFlags::NoFollowSymlink).op("chmod")?;
        }
        utimensat(
            at,
            base,
            &self.atime,
            &self.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .op("set times")
    }

    fn set_xattrs(&self, layer: &str, node: Node<'_>, kind: Kind) -> Result<(), Fail> {
        for (name, value) in &self.xattrs {
            let n = name.to_bytes();
            let overlay = n
                .strip_prefix(b"trusted.overlay.")
                .or_else(|| n.strip_prefix(b"user.overlay."));
            if let Some(what) = overlay {
                // A layer made by tarring an upper directory carries overlayfs's own xattrs.
                // Opaque only hides, like `.wh..wh..opq`; the others (redirect, metacopy,
                // origin) would make overlayfs read elsewhere, and are dropped.
                if what == b"opaque" && value == b"y" && kind == Kind::Dir {
                    set_xattr(node, OPAQUE_XATTR, b"y").op("mark opaque")?;
                } else {
                    tracing::warn!(layer, xattr = %lossy(n), "overlayfs xattr in a layer dropped");
                }
                continue;
            }
            match set_xattr(node, name, value) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
                    tracing::warn!(layer, xattr = %lossy(n), "filesystem takes no such xattr; dropped");
                }
                // Linux allows user.* only on files and directories.
                Err(e)
                    if e.raw_os_error() == Some(libc::EPERM)
                        && n.starts_with(b"user.")
                        && matches!(kind, Kind::Symlink | Kind::Special) =>
                {
                    tracing::warn!(layer, xattr = %lossy(n), "user xattr on a special file dropped");
                }
                Err(e) => return Err(Fail::Io("set xattr", e)),
            }
        }
        Ok(())
    }
}

/// A PAX time, `seconds[.fraction]`, possibly negative.
fn pax_time(v: &[u8]) -> Option<TimeSpec> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let nanos: i64 = digits.parse().ok()?;
    Some(if neg {
        if nanos == 0 {
            TimeSpec::new(-secs, 0)
        } else {
            TimeSpec::new(-secs - 1, 1_000_000_000 - nanos)
        }
    } else {
        TimeSpec::new(secs, nanos)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        assert_eq!(
            pax_time(b"1700000000"),
            Some(TimeSpec::new(1_700_000_000, 0))
        );
        assert_eq!(
            pax_time(b"1700000000.5"),
            Some(TimeSpec::new(1_700_000_000, 500_000_000))
        );
        assert_eq!(pax_time(b"-1.25"), Some(TimeSpec::new(-2, 750_000_000)));
        assert_eq!(pax_time(b"x"), None);
        assert_eq!(pax_time(b"1.2x"), None);
    }
}
