//! Live OOM-kill notices for the container's memory cgroup, so TaskOOM goes out whenever the
//! kernel kills any process of the container, not only when the init dies of it (what
//! containerd-shim-runc-v2 does too).
//!
//! One thread per run of the init, blocked in `poll` on the kernel's notification fd and a
//! stop eventfd: on cgroup v1 an eventfd registered through `cgroup.event_control` against
//! `memory.oom_control`, on cgroup v2 inotify on `memory.events`. A notice alone is not a
//! kill (v1 also notifies when the cgroup is merely under OOM, or removed): the `oom_kill`
//! counter must have grown. The same counter, checked under the same lock when the init
//! exits, makes one kill give exactly one notice whichever path sees it first.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use berth_cgroups::{CgroupManager, OomSource};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// What to do for each OOM kill noticed (publish TaskOOM).
pub type OnOom = Box<dyn Fn() + Send + Sync>;

/// On v1 the kernel signals the eventfd just before it picks a victim, so the counter may
/// not have moved yet when we look: look again after these pauses before deciding the
/// notice was only "under OOM" (a cgroup with the OOM killer disabled, say).
const SETTLE_STEPS_MS: [u64; 8] = [0, 5, 10, 20, 40, 80, 160, 320];

/// The OOM-kill counter of one run's memory cgroup and who has been told about it.
pub struct OomCounter {
    cgroup: CgroupManager,
    at_start: u64,
    /// The count last reported; guarded so the watcher and the exit path never both
    /// report the same kill.
    reported: Mutex<u64>,
    on_oom: OnOom,
}

impl OomCounter {
    /// None when the cgroup has no readable OOM-kill counter (no memory controller).
    pub fn new(cgroup: CgroupManager, on_oom: OnOom) -> Option<OomCounter> {
        let at_start = cgroup.oom_kill_count().ok()?;
        Some(OomCounter {
            cgroup,
            at_start,
            reported: Mutex::new(at_start),
            on_oom,
        })
    }

    /// Report kills not reported yet; true if there were any. Errors (the cgroup is gone)
    /// count as no new kill.
    pub fn check(&self) -> bool {
        let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        let Ok(now) = self.cgroup.oom_kill_count() else {
            return false;
        };
        if now <= *reported {
            return false;
        }
        tracing::info!(kills = now - *reported, "OOM kill in the container");
        *reported = now;
        // Called under the lock, so a report queued here precedes anything the exit path
        // queues after its own check (TaskOOM before the TaskExit it caused).
        (self.on_oom)();
        true
    }

    /// Report what is left, and say whether the OOM killer struck at all during this run.
    pub fn check_at_exit(&self) -> bool {
        self.check();
        *self.reported.lock().unwrap_or_else(|e| e.into_inner()) > self.at_start
    }
}

/// The kernel's notification for one memory cgroup.
enum Source {
    /// v1: an eventfd registered against memory.oom_control. Holds the control file open,
    /// as the registration requires; `event_control` tells whether the cgroup still exists.
    V1 {
        event: EventFd,
        _control: File,
        event_control: PathBuf,
    },
    /// v2: inotify watching memory.events for changes.
    V2 { inotify: Inotify },
}

impl Source {
    fn open(cgroup: &CgroupManager) -> Result<Source> {
        // Watch the very file the counter is read from.
        match cgroup
            .oom_counter()
            .context("the container has no memory cgroup")?
        {
            OomSource::V1(dir) => Source::v1(dir),
            OomSource::V2(dir) => Source::v2(dir),
        }
    }

    fn v1(dir: &Path) -> Result<Source> {
        let control_path = dir.join("memory.oom_control");
        let control = File::open(&control_path)
            .with_context(|| format!("open {}", control_path.display()))?;
        let event = EventFd::from_flags(EfdFlags::EFD_CLOEXEC)
            .context("create an eventfd for OOM notices")?;
        let event_control = dir.join("cgroup.event_control");
        // "<eventfd> <fd of memory.oom_control>": the kernel's registration format.
        let line = format!("{} {}", event.as_fd().as_raw_fd(), control.as_raw_fd());
        std::fs::write(&event_control, line)
            .with_context(|| format!("register for OOM notices in {}", event_control.display()))?;
        Ok(Source::V1 {
            event,
            _control: control,
            event_control,
        })
    }

    fn v2(dir: &Path) -> Result<Source> {
        let events = dir.join("memory.events");
        let inotify =
            Inotify::init(InitFlags::IN_CLOEXEC).context("create an inotify for OOM notices")?;
        inotify
            .add_watch(&events, AddWatchFlags::IN_MODIFY)
            .with_context(|| format!("watch {}", events.display()))?;
        Ok(Source::V2 { inotify })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Source::V1 { event, .. } => event.as_fd(),
            Source::V2 { inotify } => inotify.as_fd(),
        }
    }

    /// Take the pending notice; false once the cgroup is gone and no more can come.
    fn consume(&self) -> bool {
        match self {
            Source::V1 {
                event,
                event_control,
                ..
            } => {
                let _ = event.read();
                // The kernel also signals the eventfd when it removes the cgroup.
                event_control.exists()
            }
            Source::V2 { inotify } => match inotify.read_events() {
                Ok(events) => !events.iter().any(|e| {
                    e.mask
                        .intersects(AddWatchFlags::IN_IGNORED | AddWatchFlags::IN_DELETE_SELF)
                }),
                Err(_) => true,
            },
        }
    }
}

/// A running watcher; dropping it stops the thread.
pub struct OomWatch {
    stop: Arc<EventFd>,
}

impl Drop for OomWatch {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
    }
}

impl OomWatch {
    /// Start watching `counter`'s cgroup. An error means no live notices (the exit path
    /// still reports an OOM kill of the init).
    pub fn start(counter: Arc<OomCounter>) -> Result<OomWatch> {
        let source = Source::open(&counter.cgroup)?;
        let stop = Arc::new(
            EventFd::from_flags(EfdFlags::EFD_CLOEXEC).context("create the OOM watch's stop fd")?,
        );
        let stopped = stop.clone();
        crate::threads::spawn("oom", move || watch(&counter, &source, &stopped))?;
        Ok(OomWatch { stop })
    }
}

fn watch(counter: &OomCounter, source: &Source, stop: &EventFd) {
    loop {
        let (notice, stopped) = match wait(source.fd(), stop, PollTimeout::NONE) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("OOM watch: poll: {e}");
                return;
            }
        };
        if stopped {
            return;
        }
        if !notice {
            continue;
        }
        if !source.consume() {
            // The cgroup is gone: count what it saw last and stop.
            counter.check();
            return;
        }
        for ms in SETTLE_STEPS_MS {
            if ms > 0 && matches!(wait_stop(stop, Duration::from_millis(ms)), Ok(true)) {
                return;
            }
            if counter.check() {
                break;
            }
        }
    }
}

/// Block until `notice` or `stop` is readable (or `timeout`); which of them is.
fn wait(notice: BorrowedFd, stop: &EventFd, timeout: PollTimeout) -> nix::Result<(bool, bool)> {
    let mut fds = [
        PollFd::new(notice, PollFlags::POLLIN),
        PollFd::new(stop.as_fd(), PollFlags::POLLIN),
    ];
    loop {
        match poll(&mut fds, timeout) {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
    Ok((ready(&fds[0]), ready(&fds[1])))
}

/// Sleep for `d` unless stopped first; true if stopped.
fn wait_stop(stop: &EventFd, d: Duration) -> nix::Result<bool> {
    let ms = u16::try_from(d.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(stop.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::from(ms))?;
    Ok(fds[0].revents().is_some_and(|r| !r.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_cgroups::{CgroupPaths, Layout};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    /// A directory laid out like a cgroup2 memory cgroup: the inotify path and the counter
    /// logic are the same on a plain file, which lets this run on a host without cgroup2's
    /// memory controller.
    fn fake_v2(tag: &str) -> (PathBuf, CgroupManager) {
        let dir = std::env::temp_dir().join(format!("berth-shim-oom-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        write_events(&dir, 0);
        let cgroup = CgroupManager::from_paths(CgroupPaths {
            layout: Layout::V2,
            v1: Default::default(),
            unified: Some(dir.clone()),
        })
        .unwrap();
        (dir, cgroup)
    }

    fn write_events(dir: &Path, kills: u64) {
        std::fs::write(
            dir.join("memory.events"),
            format!("low 0\nhigh 0\nmax 3\noom 2\noom_kill {kills}\noom_group_kill 0\n"),
        )
        .unwrap();
    }

    fn counting() -> (Arc<AtomicU32>, OnOom) {
        let n = Arc::new(AtomicU32::new(0));
        let m = n.clone();
        (
            n,
            Box::new(move || {
                m.fetch_add(1, Ordering::SeqCst);
            }),
        )
    }

    fn until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn each_kill_is_reported_once_and_only_kills_count() {
        let (dir, cgroup) = fake_v2("once");
        let (n, on_oom) = counting();
        let counter = Arc::new(OomCounter::new(cgroup, on_oom).unwrap());
        let watch = OomWatch::start(counter.clone()).unwrap();

        write_events(&dir, 1);
        until("the first kill's notice", || n.load(Ordering::SeqCst) == 1);
        // The exit path finds the kill already reported: no second notice.
        assert!(counter.check_at_exit());
        assert_eq!(n.load(Ordering::SeqCst), 1);

        // A change that is not a kill (the file rewritten with the same count) says nothing;
        // the next kill is reported once more.
        write_events(&dir, 1);
        write_events(&dir, 2);
        until("the second kill's notice", || n.load(Ordering::SeqCst) == 2);
        drop(watch);
        assert!(!counter.check());
        assert_eq!(n.load(Ordering::SeqCst), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_exit_path_reports_a_kill_nobody_watched() {
        let (dir, cgroup) = fake_v2("exit");
        let (n, on_oom) = counting();
        let counter = OomCounter::new(cgroup, on_oom).unwrap();
        assert!(!counter.check_at_exit());
        write_events(&dir, 3);
        assert!(counter.check_at_exit());
        assert!(counter.check_at_exit());
        assert_eq!(n.load(Ordering::SeqCst), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_cgroup_without_a_counter_has_no_watch() {
        let dir = std::env::temp_dir().join(format!("berth-shim-oom-none-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cgroup = CgroupManager::from_paths(CgroupPaths {
            layout: Layout::V2,
            v1: Default::default(),
            unified: Some(dir.clone()),
        })
        .unwrap();
        let (_, on_oom) = counting();
        assert!(OomCounter::new(cgroup, on_oom).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
