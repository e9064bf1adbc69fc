//! COPY and ADD: sources from the context or another image's root, written into the
//! step's snapshot through `fsops`; ADD of a local tar extracted entry by entry.

use std::collections::BTreeMap;
use std::path::Path;

use super::context::{Source, Tree};
use super::executor::*;
use super::fsops::{self, Attrs, Root};
use super::meta::*;
use super::BuildError;
use crate::build::instructions::{Copy as CopyInstr, Source as CopySource};
use crate::build::plan::Step;
use crate::engine::containers::bundle;

pub(super) async fn copy_step(
    sh: &Shared<'_>,
    step: &Step,
    c: &CopyInstr,
    add: bool,
    before: &ImageState,
    digest: Option<&str>,
    results: &BTreeMap<usize, StageResult<'_>>,
) -> Result<String, BuildError> {
    let kw = if add { "ADD" } else { "COPY" };
    let mut work = Work::new(sh)?;
    let r = async {
        let (root, _) = work.mount(sh, &before.id, "rootfs").await?;
        let from_tree = match &step.copy_from {
            Some(base) => {
                let image = from_image(sh, base, step, results).await?;
                let (dir, _) = work.mount(sh, &image, "from").await?;
                Some(Tree::root(dir))
            }
            None => None,
        };
        let tree = from_tree.as_ref().unwrap_or(&sh.ctx.tree);
        let mut sources: Vec<Result<Source, (String, String)>> = Vec::new();
        for s in &c.sources {
            match s {
                CopySource::Path(p) => {
                    for found in tree
                        .resolve(p, from_tree.is_none())
                        .map_err(|e| copy_failed(sh, step.line, kw, e))?
                    {
                        sources.push(Ok(found));
                    }
                }
                CopySource::Heredoc(h) => sources.push(Err((h.name.clone(), h.content.clone()))),
            }
        }
        let owner = match &c.chown {
            Some(u) => Some(
                tokio::task::block_in_place(|| bundle::resolve_user(&root, u, &[]))
                    .map(|(u, g, _)| (u, g))
                    .map_err(|e| sh.fail(step.line, format!("{kw} --chown={u}: {e}")))?,
            ),
            None => None,
        };
        let chmod = match &c.chmod {
            Some(m) => Some(
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| sh.fail(step.line, format!("invalid chmod parameter: {m}")))?,
            ),
            None => None,
        };
        let attrs = Attrs { owner, chmod };
        let dest = if c.dest.starts_with('/') {
            c.dest.clone()
        } else {
            format!("{}/{}", workdir(before).trim_end_matches('/'), c.dest)
        };
        let many = sources.len() > 1;
        tokio::task::block_in_place(|| copy_into(&root, tree, &sources, &dest, many, attrs, add))
            .map_err(|e| sh.fail(step.line, format!("{kw} failed: {e}")))?;
        work.unmount_all();
        let what = match (&step.copy_from, sources.first()) {
            (Some(_), _) | (_, None) => "multi",
            (None, Some(Ok(s))) if !many && !s.host.is_dir() => "file",
            (None, Some(Ok(_))) if !many => "dir",
            _ => "multi",
        };
        let hex = digest.unwrap_or_default().trim_start_matches("sha256:");
        let created_by = format!(
            "{} #(nop) {kw} {what}:{hex} in {} ",
            shell(&before.config).join(" "),
            c.dest
        );
        commit_snapshot(sh, &work, &before.config, &created_by, false).await
    }
    .await;
    work.cleanup(sh).await;
    r
}

/// The copy itself, into the mounted snapshot at `root`.
pub(super) fn copy_into(
    root_path: &Path,
    tree: &Tree,
    sources: &[Result<Source, (String, String)>],
    dest: &str,
    many: bool,
    attrs: Attrs,
    add: bool,
) -> std::io::Result<()> {
    let root = Root::open(root_path)?;
    let owner = attrs.owner.unwrap_or((0, 0));
    let dest_is_dir = dest.ends_with('/') || many || root.is_dir(dest)?;
    for s in sources {
        match s {
            Err((name, content)) => {
                let (dir, _, file) = target(&root, dest, dest_is_dir, name, attrs)?;
                let mode = attrs.chmod.unwrap_or(0o644);
                fsops::write_file(&dir, &file, &mut content.as_bytes(), mode, owner)?;
            }
            Ok(src) => {
                let meta = std::fs::metadata(&src.host)?;
                if meta.is_dir() {
                    let dir = root.mkdir_all(dest, attrs)?;
                    tree.copy_dir_contents(src, &root, &dir, dest, attrs)?;
                } else if add && is_archive(&src.host) {
                    let dir = root.mkdir_all(dest, attrs)?;
                    extract(&root, &src.host, dest, &dir, attrs)?;
                } else {
                    let base = src
                        .host
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let (dir, dir_path, file) = target(&root, dest, dest_is_dir, &base, attrs)?;
                    tree.copy_entry(src, &root, &dir, &dir_path, &file, attrs)?;
                }
            }
        }
    }
    Ok(())
}

/// The directory (its fd and path in the root) and name a single file lands at.
pub(super) fn target(
    root: &Root,
    dest: &str,
    dest_is_dir: bool,
    name: &str,
    attrs: Attrs,
) -> std::io::Result<(std::os::fd::OwnedFd, String, String)> {
    if dest_is_dir {
        return Ok((
            root.mkdir_all(dest, attrs)?,
            dest.to_string(),
            name.to_string(),
        ));
    }
    let trimmed = dest.trim_end_matches('/');
    let (parent, file) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
    Ok((
        root.mkdir_all(parent, attrs)?,
        parent.to_string(),
        file.to_string(),
    ))
}

pub(super) fn is_archive(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 262];
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let n = f.read(&mut head).unwrap_or(0);
    (n >= 2 && head[..2] == [0x1f, 0x8b]) || (n >= 262 && &head[257..262] == b"ustar")
}

/// `ADD x.tar[.gz] /dest`: the archive's entries written inside the root, each path
/// cleaned so that none climbs above `dest`.
pub(super) fn extract(
    root: &Root,
    archive: &Path,
    dest: &str,
    _dest_fd: &std::os::fd::OwnedFd,
    attrs: Attrs,
) -> std::io::Result<()> {
    use std::io::Read;
    let mut f = std::fs::File::open(archive)?;
    let mut head = [0u8; 2];
    let n = f.read(&mut head)?;
    let f = std::fs::File::open(archive)?;
    let reader: Box<dyn Read> = if n == 2 && head == [0x1f, 0x8b] {
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        Box::new(f)
    };
    let mut a = tar::Archive::new(reader);
    for entry in a.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let rel = clean_abs(&path);
        if rel == "/" {
            continue;
        }
        let full = format!("{}{rel}", dest.trim_end_matches('/'));
        let (parent, name) = full.rsplit_once('/').unwrap_or(("", &full));
        let name = name.to_string();
        let dir = root.mkdir_all(parent, attrs)?;
        let h = entry.header();
        let owner = attrs
            .owner
            .unwrap_or((h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32));
        let mode = h.mode().unwrap_or(0o644);
        match h.entry_type() {
            tar::EntryType::Directory => {
                fsops::make_dir(&dir, &name, mode, owner)?;
            }
            tar::EntryType::Symlink => {
                if let Some(t) = entry.link_name()? {
                    fsops::symlink(&dir, &name, &t, owner)?;
                }
            }
            tar::EntryType::Link => {
                if let Some(t) = entry.link_name()? {
                    let t = format!(
                        "{}{}",
                        dest.trim_end_matches('/'),
                        clean_abs(&t.to_string_lossy())
                    );
                    fsops::hard_link(root, &t, &dir, &name)?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                fsops::write_file(&dir, &name, &mut entry, mode, owner)?;
            }
            _ => {}
        }
    }
    Ok(())
}
