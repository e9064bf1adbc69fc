//! What can go wrong with a layer, named so that a user can tell which layer, which entry and
//! why.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why [`unpack`](super::unpack) refused an entry: the layer asked for something that a
/// snapshot must not hold. A refusal is never retried: the same blob fails the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("`..` climbs above the layer root")]
    ClimbsOutOfRoot,
    #[error(
        "its path goes through symlink {link:?} -> {target:?}, which points outside the layer"
    )]
    SymlinkOutside { link: String, target: String },
    #[error("its path goes through more than {0} symlinks")]
    TooManySymlinks(usize),
    #[error("{path:?} is not a directory")]
    NotADirectory { path: String },
    #[error("its name has a NUL byte")]
    NulInName,
    #[error("its path is deeper than {0} directories")]
    TooDeep(usize),
    #[error("{name:?} is a whiteout name, not a directory")]
    WhiteoutAsDirectory { name: String },
    #[error("a whiteout must name an entry, not {name:?}")]
    WhiteoutName { name: String },
    #[error("a {kind} would replace the layer root")]
    ReplacesRoot { kind: &'static str },
    #[error("hard link to {target:?}: {reason}")]
    HardLink {
        target: String,
        reason: Box<Refusal>,
    },
    #[error("hard link to {target:?}: no such entry earlier in this layer")]
    HardLinkTargetMissing { target: String },
    #[error("hard link to {target:?}: it is a directory")]
    HardLinkToDirectory { target: String },
    #[error("hard link to {target:?}: it is a whiteout")]
    HardLinkToWhiteout { target: String },
    #[error("a symlink or hard link without a target")]
    NoLinkTarget,
    #[error("{kind} device {major}:{minor} outside /dev (at {path:?}): devices are only taken under the image's /dev")]
    DeviceOutsideDev {
        kind: &'static str,
        major: u32,
        minor: u32,
        path: String,
    },
    #[error("uid or gid {0} does not fit in 32 bits")]
    IdOutOfRange(u64),
    #[error("tar entry type {0:?} is not a file, directory, link, device or fifo")]
    UnsupportedType(char),
    #[error("its headers (PAX or GNU long names) exceed {0} bytes")]
    HeadersTooLarge(u64),
}

/// Where in a layer's stream an error happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    /// In the entry of this name (as the tar spells it).
    Entry(String),
    /// Reading the headers that follow the entry of this name.
    After(String),
    /// Before the first entry.
    Start,
    /// After the last entry: the end blocks and what follows them.
    End,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug quoting: a name is the layer's to choose, newlines and escapes included.
        match self {
            At::Entry(name) => write!(f, "entry {name:?}"),
            At::After(name) => write!(f, "after entry {name:?}"),
            At::Start => f.write_str("the first entry"),
            At::End => f.write_str("after the last entry"),
        }
    }
}

/// An error from [`unpack`](super::unpack), [`diff`](super::diff) or
/// [`archive_dir`](super::archive_dir).
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The layer asked for something a snapshot must not hold.
    #[error("layer {layer}: {at}: refused: {reason}")]
    Refused {
        layer: String,
        at: At,
        reason: Refusal,
    },
    /// The system refused an operation for one entry.
    #[error("layer {layer}: {at}: {op}: {source}")]
    Entry {
        layer: String,
        at: At,
        op: &'static str,
        source: io::Error,
    },
    /// The stream itself is broken: a corrupt compressed stream, a bad tar header, a
    /// truncated blob.
    #[error("layer {layer}: {at}: {source}")]
    Stream {
        layer: String,
        at: At,
        source: io::Error,
    },
    /// The destination of an unpack is not an empty directory, or a parent snapshot cannot
    /// be opened.
    #[error("layer {layer}: destination {}: {reason}", path.display())]
    Destination {
        layer: String,
        path: PathBuf,
        reason: String,
    },
    /// Reading a directory tree into a tar failed at `path` (below the tree's root, or the
    /// root itself).
    #[error("{}: {op}: {source}", path.display())]
    Archive {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
}

impl LayerError {
    /// The refusal, when the layer was refused rather than failing on the way.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            LayerError::Refused { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// Where in the layer it happened.
    pub fn at(&self) -> Option<&At> {
        match self {
            LayerError::Refused { at, .. }
            | LayerError::Entry { at, .. }
            | LayerError::Stream { at, .. } => Some(at),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_go_across_threads_and_quote_names() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<LayerError>();
        let e = LayerError::Refused {
            layer: "sha256:abc".into(),
            at: At::Entry("evil\nname".into()),
            reason: Refusal::ClimbsOutOfRoot,
        };
        assert_eq!(
            e.to_string(),
            "layer sha256:abc: entry \"evil\\nname\": refused: `..` climbs above the layer root"
        );
        assert_eq!(e.at(), Some(&At::Entry("evil\nname".into())));
    }
}
