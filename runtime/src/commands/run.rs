//! `run`: create, start, and (unless --detach) wait, then delete.

use anyhow::Result;
use nix::unistd::Pid;

use crate::cli::RunArgs;
use crate::commands::{create, delete, foreground, start, Global};
use crate::process::spawn;

pub fn run(g: &Global, a: &RunArgs) -> Result<i32> {
    // Subreaper: the init may be our grandchild (via the intermediate) and we must reap it.
    spawn::set_child_subreaper()?;
    let sigs = if a.detach {
        None
    } else {
        Some(foreground::block_signals()?)
    };
    let created = create::create(g, &a.create, !a.detach)?;
    let c = &created.container;
    if let Err(e) = start::start_loaded(&g.root, c) {
        let _ = delete::delete(&g.root, &c.id, true);
        return Err(e);
    }
    let Some(sigs) = sigs else { return Ok(0) };
    let code = foreground::wait(Pid::from_raw(c.pid), sigs, created.pty)?;
    // Someone may have deleted it meanwhile (`delete --force` from another shell).
    if !a.keep && crate::state::dir(&g.root, &c.id).exists() {
        delete::destroy(&g.root, c)?;
    }
    Ok(code)
}
