//! Protection against the /proc/self/exe overwrite class (CVE-2019-5736).
//!
//! A process in the container can open /proc/<our pid>/exe (or trick us into exec'ing
//! `#!/proc/self/exe`) while we are inside its namespaces; if that handle is our host binary,
//! it can rewrite it. Before any process enters a container we re-exec from a sealed,
//! anonymous memfd copy, so the only thing reachable through /proc/self/exe is a read-only
//! in-memory file that dies with us.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

use anyhow::{Context, Result};

fn already_sealed() -> bool {
    std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().starts_with("/memfd:berth-runtime"))
        .unwrap_or(false)
}

fn memfd() -> Result<OwnedFd> {
    let name = c"berth-runtime";
    for flags in [
        libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING | libc::MFD_EXEC,
        libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
    ] {
        // SAFETY: memfd_create reads a C string and returns a new descriptor or -1.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
        if fd >= 0 {
            // SAFETY: the kernel just gave us this descriptor.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    Err(std::io::Error::last_os_error()).context("memfd_create for the sealed runtime copy")
}

pub fn ensure_sealed_copy() -> Result<()> {
    if already_sealed() {
        return Ok(());
    }
    let src = File::open("/proc/self/exe").context("open /proc/self/exe")?;
    let len = src.metadata()?.len() as usize;
    let dst = memfd()?;
    let mut left = len;
    while left > 0 {
        // SAFETY: copy between two descriptors we own; offsets are the files' own.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                std::ptr::null_mut(),
                dst.as_raw_fd(),
                std::ptr::null_mut(),
                left,
                0,
            )
        };
        if n <= 0 {
            // copy_file_range cannot cross some filesystems; sendfile can.
            // SAFETY: as above.
            let n2 = unsafe {
                libc::sendfile(dst.as_raw_fd(), src.as_raw_fd(), std::ptr::null_mut(), left)
            };
            if n2 <= 0 {
                return Err(std::io::Error::last_os_error())
                    .context("copy the runtime binary into a memfd");
            }
            left -= n2 as usize;
        } else {
            left -= n as usize;
        }
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on our memfd.
    if unsafe { libc::fcntl(dst.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(std::io::Error::last_os_error()).context("seal the runtime memfd");
    }
    let argv: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.into_vec()))
        .collect::<Result<_, _>>()
        .context("argument with a NUL byte")?;
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut b = k.into_vec();
            b.push(b'=');
            b.extend(v.into_vec());
            CString::new(b)
        })
        .collect::<Result<_, _>>()
        .context("environment with a NUL byte")?;
    let err = nix::unistd::fexecve(&dst, &argv, &env).unwrap_err();
    Err(anyhow::anyhow!(
        "re-exec the runtime from its sealed copy: {err}"
    ))
}
