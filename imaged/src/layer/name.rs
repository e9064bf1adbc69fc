//! Entry names as a layer spells them, taken apart lexically before anything touches the
//! disk: the leading `/` and `./` dropped, `.` and empty components skipped, `..` resolved
//! against the components before it and refused when it would climb above the root.

use super::error::Refusal;

/// The whiteout prefix of the OCI layer format (inherited from AUFS).
pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// AUFS's own metadata (`.wh..wh.plnk`, `.wh..wh.aufs`); only the opaque marker is kept.
pub(crate) const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
/// Marks its directory opaque: nothing of the lower layers shows through it.
pub(crate) const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Deeper than this is refused: nothing real nests so deep, and every level costs a file
/// descriptor while a tree is removed or archived.
pub(crate) const MAX_DEPTH: usize = 1024;

/// The components of an entry name inside the layer root, none empty, `.` or `..`. An
/// absolute name is taken inside the root, as containerd does; a `..` that would climb
/// above the root is refused, as moby does (containerd clamps it at the root instead, which
/// writes somewhere the layer did not say).
pub(crate) fn components(raw: &[u8]) -> Result<Vec<Vec<u8>>, Refusal> {
    if raw.contains(&0) {
        return Err(Refusal::NulInName);
    }
    let mut out: Vec<Vec<u8>> = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err(Refusal::ClimbsOutOfRoot);
                }
            }
            _ => out.push(c.to_vec()),
        }
    }
    if out.len() > MAX_DEPTH {
        return Err(Refusal::TooDeep(MAX_DEPTH));
    }
    Ok(out)
}

/// What an entry's last component says, before its type is looked at.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Marker<'a> {
    /// An ordinary name.
    Plain,
    /// `.wh..wh..opq`: the parent directory hides the lower layers.
    Opaque,
    /// `.wh.NAME`: NAME of the lower layers is deleted.
    Whiteout(&'a [u8]),
    /// Other `.wh..wh.*` names: AUFS bookkeeping, meaningless on overlayfs.
    AufsMeta,
}

pub(crate) fn marker(base: &[u8]) -> Result<Marker<'_>, Refusal> {
    if base == OPAQUE_MARKER {
        return Ok(Marker::Opaque);
    }
    if base.starts_with(WHITEOUT_META_PREFIX) {
        return Ok(Marker::AufsMeta);
    }
    match base.strip_prefix(WHITEOUT_PREFIX) {
        None => Ok(Marker::Plain),
        Some(name @ (b"" | b"." | b"..")) => Err(Refusal::WhiteoutName { name: lossy(name) }),
        Some(name) => Ok(Marker::Whiteout(name)),
    }
}

/// A directory on the way to an entry may not carry a whiteout name: it would be taken for a
/// whiteout the next time the snapshot is diffed.
pub(crate) fn check_directories(parents: &[Vec<u8>]) -> Result<(), Refusal> {
    match parents.iter().find(|c| c.starts_with(WHITEOUT_PREFIX)) {
        Some(c) => Err(Refusal::WhiteoutAsDirectory { name: lossy(c) }),
        None => Ok(()),
    }
}

pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `a/b/c` from components, for messages.
pub(crate) fn display(comps: &[Vec<u8>]) -> String {
    lossy(&comps.join(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(raw: &str) -> Result<Vec<String>, Refusal> {
        components(raw.as_bytes()).map(|v| v.iter().map(|c| lossy(c)).collect())
    }

    #[test]
    fn names_are_taken_inside_the_root() {
        assert_eq!(c("etc/passwd").unwrap(), ["etc", "passwd"]);
        assert_eq!(c("/etc/passwd").unwrap(), ["etc", "passwd"]);
        assert_eq!(c("./etc//./passwd/").unwrap(), ["etc", "passwd"]);
        assert_eq!(c("a/b/../c").unwrap(), ["a", "c"]);
        assert_eq!(c("./").unwrap(), Vec::<String>::new());
        assert_eq!(c("..").unwrap_err(), Refusal::ClimbsOutOfRoot);
        assert_eq!(c("a/../../x").unwrap_err(), Refusal::ClimbsOutOfRoot);
        assert_eq!(c("/../etc").unwrap_err(), Refusal::ClimbsOutOfRoot);
        assert_eq!(components(b"a\0b").unwrap_err(), Refusal::NulInName);
        let deep = "a/".repeat(MAX_DEPTH + 1);
        assert_eq!(c(&deep).unwrap_err(), Refusal::TooDeep(MAX_DEPTH));
    }

    #[test]
    fn whiteout_markers() {
        assert_eq!(marker(b"x").unwrap(), Marker::Plain);
        assert_eq!(marker(b".wh.x").unwrap(), Marker::Whiteout(b"x"));
        assert_eq!(marker(b".wh..wh..opq").unwrap(), Marker::Opaque);
        assert_eq!(marker(b".wh..wh.plnk").unwrap(), Marker::AufsMeta);
        for bad in [&b".wh."[..], b".wh..", b".wh..."] {
            assert!(matches!(marker(bad), Err(Refusal::WhiteoutName { .. })));
        }
        assert!(check_directories(&[b"a".to_vec(), b".wh.b".to_vec()]).is_err());
    }
}
