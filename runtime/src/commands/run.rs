//! `run`: create, start, and (unless --detach) wait, then delete.

use anyhow::Result;
use nix::unistd::Pid;

use crate::cli::RunArgs;
use crate::commands::{create, delete, foreground, start, Global};
use crate::process::spawn;
use crate::state::Container;

pub fn run(g: &Global, a: &RunArgs) -> Result<i32> {
    // Subreaper: the init may be our grandchild (via the intermediate) and we must reap it.
    spawn::set_child_subreaper()?;
    let sigs = if a.detach {
        None
    } else {
        Some(foreground::block_signals()?)
    };
    let created = create::create(g, &a.create, !a.detach)?;
    let id = &a.create.id;
    if let Err(e) = start::start(&g.root, id) {
        let _ = delete::delete(&g.root, id, true);
        return Err(e);
    }
    let Some(sigs) = sigs else { return Ok(0) };
    let code = foreground::wait(Pid::from_raw(created.container.pid), sigs, created.pty)?;
    if !a.keep {
        if let Ok(c) = Container::load(&g.root, id) {
            delete::destroy(&g.root, &c)?;
        }
    }
    Ok(code)
}
