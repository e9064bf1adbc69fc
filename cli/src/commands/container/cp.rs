//! `cp`: Docker's rules for where a copy lands, over engine::containers::copy, which keeps
//! every path inside the root it belongs to.

use std::ffi::OsString;
use std::path::Path;

use anyhow::Result;
use clap::Args;

use super::engine_failure;
use crate::engine::containers::copy::{self, CopyError, Owner, Root};
use crate::engine::Engine;
use crate::Failure;

#[derive(Args, Debug)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// Suppress progress output during copy
    #[arg(short, long)]
    pub quiet: bool,
    /// CONTAINER:SRC_PATH or SRC_PATH or -
    pub src: String,
    /// CONTAINER:DEST_PATH or DEST_PATH or -
    pub dest: String,
}

/// `name:path` names a container's path; a local path with a colon starts with `/` or `.`.
fn split_arg(a: &str) -> Option<(&str, &str)> {
    if a.starts_with('/') || a.starts_with('.') {
        return None;
    }
    a.split_once(':').filter(|(c, _)| !c.is_empty())
}

fn fail(e: CopyError) -> Failure {
    Failure::new(1, format!("Error response from daemon: {e}"))
}

/// The container's root as its processes see it: through a live process (mounts and
/// volumes included), else its mounted rootfs.
fn container_root(engine: &Engine, what: &str) -> Result<(Root, String)> {
    let rec = engine.container(what).map_err(|e| engine_failure(e, 1))?;
    let st = engine.state_of(&rec);
    let dir = if st.status.is_live() && st.pid > 0 {
        format!("/proc/{}/root", st.pid)
    } else {
        engine
            .bundle_dir(&rec.id)
            .join("rootfs")
            .display()
            .to_string()
    };
    let root = Root::open(Path::new(&dir), &rec.name).map_err(fail)?;
    Ok((root, rec.id))
}

pub async fn cp(engine: &mut Engine, a: &CpArgs) -> Result<()> {
    match (split_arg(&a.src), split_arg(&a.dest)) {
        (Some(_), Some(_)) => {
            Err(Failure::new(1, "copying between containers is not supported").into())
        }
        (None, None) => Err(Failure::new(1, "must specify at least one container source").into()),
        (Some((c, src)), None) => {
            let (root, _) = container_root(engine, c)?;
            let host = Root::open(Path::new("/"), "the host").map_err(fail)?;
            let owner = if a.archive {
                Owner::Keep
            } else {
                Owner::Set(
                    nix::unistd::geteuid().as_raw(),
                    nix::unistd::getegid().as_raw(),
                )
            };
            if a.dest == "-" {
                return copy::archive(&root, src, a.follow_link, None, std::io::stdout().lock())
                    .map_err(|e| fail(e).into());
            }
            let dest = std::path::absolute(&a.dest)?.display().to_string();
            transfer(&root, src, &host, &dest, a.follow_link, owner)
        }
        (None, Some((c, dest))) => {
            let (root, _) = container_root(engine, c)?;
            let owner = if a.archive {
                Owner::Keep
            } else {
                Owner::Set(0, 0)
            };
            if a.src == "-" {
                return copy::extract(&root, dest, std::io::stdin().lock(), owner)
                    .map_err(|e| fail(e).into());
            }
            let host = Root::open(Path::new("/"), "the host").map_err(fail)?;
            let src = std::path::absolute(&a.src)?.display().to_string();
            let src = if a.src.ends_with("/.") {
                format!("{src}/.")
            } else {
                src
            };
            if host.kind(&src).is_none() {
                return Err(
                    Failure::new(1, format!("lstat {src}: no such file or directory")).into(),
                );
            }
            transfer(&host, &src, &root, dest, a.follow_link, owner)
        }
    }
}

/// Copy `src` of `from` to `dest` of `to` as `cp -a` would: into `dest` when it is a
/// directory, else as `dest` (its parent must exist).
fn transfer(
    from: &Root,
    src: &str,
    to: &Root,
    dest: &str,
    follow: bool,
    owner: Owner,
) -> Result<()> {
    let src_is_dir = from.kind(src).ok_or_else(|| {
        Failure::new(
            1,
            format!(
                "Error response from daemon: Could not find the file {src} in {}",
                from.label
            ),
        )
    })?;
    let (into, rename) = match to.kind(dest) {
        Some(true) => (dest.to_string(), None),
        Some(false) if src_is_dir => {
            return Err(
                Failure::new(1, format!("cannot copy a directory to a file: {dest}")).into(),
            )
        }
        _ if dest.ends_with('/') => {
            return Err(
                Failure::new(1, format!("destination directory {dest} does not exist")).into(),
            )
        }
        _ => {
            let p = Path::new(dest);
            let parent = p
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "/".into());
            if to.kind(&parent) != Some(true) {
                return Err(Failure::new(
                    1,
                    format!(
                        "destination directory {parent} does not exist in {}",
                        to.label
                    ),
                )
                .into());
            }
            (parent, p.file_name().map(OsString::from))
        }
    };
    let (reader, writer) = copy::pipe()?;
    let result = std::thread::scope(|s| {
        let producer = s.spawn(move || copy::archive(from, src, follow, rename, writer));
        let extracted = copy::extract(to, &into, reader, owner);
        let archived = producer
            .join()
            .unwrap_or_else(|_| Err(CopyError::Invalid("the archiving thread panicked".into())));
        // The archive's own error first: an extract error may only be its echo.
        archived.and(extracted)
    });
    result.map_err(|e| fail(e).into())
}
