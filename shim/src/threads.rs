//! The shim's own threads.

use std::thread::JoinHandle;

use anyhow::{Context, Result};

/// Our own threads only copy bytes or wait; a small stack keeps them cheap.
const THREAD_STACK: usize = 256 * 1024;

pub fn spawn<F: FnOnce() + Send + 'static>(name: &str, f: F) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.to_string())
        .stack_size(THREAD_STACK)
        .spawn(f)
        .with_context(|| format!("start {name} thread"))
}
