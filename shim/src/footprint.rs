//! Keeping an idle shim small. There is one shim per container, so what each one keeps
//! resident while idle is paid a hundred times over.
//!
//! Most of a shim's resident size is not its own data but code pages of its binary and of
//! libc: on each page fault the kernel maps the neighbouring 64 KiB of the file as well
//! ("fault-around"), and nothing unmaps them again. Code is never written, so dropping
//! those mappings once the shim has gone quiet loses nothing: the pages stay in the page
//! cache, shared by every shim, and come back on first use. Freed heap goes back to the
//! kernel at the same moment.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// How long the shim must be quiet before it trims.
const QUIET: Duration = Duration::from_secs(2);

static BUSY: Mutex<bool> = Mutex::new(false);
static WOKEN: Condvar = Condvar::new();

/// Note that the shim did some work; it trims once it has been quiet for a while.
pub fn activity() {
    *BUSY.lock().unwrap_or_else(|e| e.into_inner()) = true;
    WOKEN.notify_one();
}

/// Marks activity when created and again when dropped, around a request.
pub struct Working;

impl Working {
    pub fn begin() -> Working {
        activity();
        Working
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        activity();
    }
}

pub fn start_trimmer() -> anyhow::Result<()> {
    crate::threads::spawn("trim", || loop {
        let mut busy = BUSY.lock().unwrap_or_else(|e| e.into_inner());
        while !*busy {
            busy = WOKEN.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        // Wait for a quiet spell with no new activity.
        loop {
            *busy = false;
            let (b, timeout) = WOKEN
                .wait_timeout(busy, QUIET)
                .unwrap_or_else(|e| e.into_inner());
            busy = b;
            if timeout.timed_out() && !*busy {
                break;
            }
        }
        drop(busy);
        trim();
    })?;
    Ok(())
}

/// Drop code pages from our page tables and give freed heap back.
pub fn trim() {
    drop_code_pages();
    // SAFETY: malloc_trim only walks and shrinks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn drop_code_pages() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        // Executable file mappings only: never written, so refaulting them from the file
        // gives back the same bytes. Read-only data is left alone, since relocated pages
        // there are private copies.
        // Files only (a path), not [vdso] and the like.
        if perms != "r-xp" || !f.nth(3).is_some_and(|p| p.starts_with('/')) {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        // SAFETY: a whole private, never-written file mapping of this process, taken from
        // /proc/self/maps; MADV_DONTNEED only unmaps pages the next access maps again.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn trimming_keeps_the_process_working() {
        super::trim();
        // Code in every library still runs after its pages were dropped.
        let v: Vec<String> = (0..1000).map(|i| format!("{i}")).collect();
        assert_eq!(v[999], "999");
        assert!(std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .contains("VmRSS"));
    }
}
