//! The exec trampoline: protection against the /proc/self/exe overwrite class
//! (CVE-2019-5736) without copying the runtime.
//!
//! The container's init is a fork of the runtime, so its /proc/self/exe is our host binary.
//! If the image replaces the program we are about to run with `#!/proc/self/exe`, execve
//! would run the host binary inside the container, which could then reopen it for writing.
//! So the last execve goes through a sealed, 158-byte memfd program instead: it immediately
//! execs its argv[0] with the rest of argv, and the only thing /proc/self/exe can reach at
//! that point is that read-only trampoline. (runc copies its whole multi-megabyte binary into
//! a memfd on every start for the same guarantee; see also exe_guard, the fallback.)
//! Before the execve our process is non-dumpable, so other container processes cannot open
//! /proc/PID/exe on it either.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{anyhow, Context, Result};

/// x86_64: execve(argv[0], &argv[1], envp); exit(127).
///   mov rdi,[rsp+8]; lea rsi,[rsp+16]; mov rax,[rsp]; lea rdx,[rsp+rax*8+16]
///   mov eax,59; syscall; mov edi,127; mov eax,60; syscall
#[cfg(target_arch = "x86_64")]
const CODE: &[u8] = &[
    0x48, 0x8b, 0x7c, 0x24, 0x08, 0x48, 0x8d, 0x74, 0x24, 0x10, 0x48, 0x8b, 0x04, 0x24, 0x48, 0x8d,
    0x54, 0xc4, 0x10, 0xb8, 0x3b, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xbf, 0x7f, 0x00, 0x00, 0x00, 0xb8,
    0x3c, 0x00, 0x00, 0x00, 0x0f, 0x05,
];

#[cfg(target_arch = "x86_64")]
const MACHINE: u16 = 62; // EM_X86_64

const EHDR: usize = 64;
const PHDR: usize = 56;
const BASE: u64 = 0x40_0000;

/// A minimal static ELF64 executable: one PT_LOAD segment holding headers and code.
#[cfg(target_arch = "x86_64")]
fn elf() -> Vec<u8> {
    let total = (EHDR + PHDR + CODE.len()) as u64;
    let mut e = Vec::with_capacity(total as usize);
    e.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]); // 64-bit, LE, version 1, SysV
    e.extend_from_slice(&[0; 8]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&MACHINE.to_le_bytes());
    e.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    e.extend_from_slice(&(BASE + (EHDR + PHDR) as u64).to_le_bytes()); // entry
    e.extend_from_slice(&(EHDR as u64).to_le_bytes()); // phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // shoff
    e.extend_from_slice(&0u32.to_le_bytes()); // flags
    e.extend_from_slice(&(EHDR as u16).to_le_bytes());
    e.extend_from_slice(&(PHDR as u16).to_le_bytes());
    e.extend_from_slice(&1u16.to_le_bytes()); // phnum
    e.extend_from_slice(&[0; 6]); // shentsize, shnum, shstrndx
    e.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    e.extend_from_slice(&5u32.to_le_bytes()); // PF_R | PF_X
    e.extend_from_slice(&0u64.to_le_bytes()); // offset
    e.extend_from_slice(&BASE.to_le_bytes()); // vaddr
    e.extend_from_slice(&BASE.to_le_bytes()); // paddr
    e.extend_from_slice(&total.to_le_bytes()); // filesz
    e.extend_from_slice(&total.to_le_bytes()); // memsz
    e.extend_from_slice(&0x1000u64.to_le_bytes()); // align
    e.extend_from_slice(CODE);
    e
}

/// Whether this architecture has a trampoline (else the runtime re-execs from a sealed copy).
pub const SUPPORTED: bool = cfg!(target_arch = "x86_64");

pub struct Trampoline {
    fd: OwnedFd,
}

impl Trampoline {
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }

    /// None where there is no trampoline for this architecture; the caller then falls back
    /// to re-executing the runtime from a sealed copy.
    #[cfg(target_arch = "x86_64")]
    pub fn create() -> Result<Option<Trampoline>> {
        let name = c"berth-exec";
        let mut fd = -1;
        for flags in [
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING | libc::MFD_EXEC,
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        ] {
            // SAFETY: memfd_create reads a C string and returns a new descriptor or -1.
            fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
            if fd >= 0 {
                break;
            }
        }
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .context("memfd_create for the exec trampoline");
        }
        // SAFETY: the kernel just gave us this descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let bytes = elf();
        let mut file = std::fs::File::from(fd);
        std::io::Write::write_all(&mut file, &bytes).context("write the exec trampoline")?;
        let fd = OwnedFd::from(file);
        let seals =
            libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
        // SAFETY: fcntl on our memfd.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(std::io::Error::last_os_error()).context("seal the exec trampoline");
        }
        Ok(Some(Trampoline { fd }))
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub fn create() -> Result<Option<Trampoline>> {
        Ok(None)
    }

    /// execve `exe` with `argv` and `envp` through the trampoline. Returns only on error.
    pub fn exec(&self, exe: &CStr, argv: &[CString], envp: &[CString]) -> anyhow::Error {
        let mut full: Vec<&CStr> = Vec::with_capacity(argv.len() + 1);
        full.push(exe);
        full.extend(argv.iter().map(|a| a.as_c_str()));
        // execve of the /proc magic link, not execveat(fd): seccomp profiles written for
        // runc allow execve but do not always list execveat. Without /proc, use the fd.
        let path = CString::new(self.proc_path()).unwrap_or_default();
        let err = match nix::unistd::execve(&path, &full, envp).unwrap_err() {
            nix::errno::Errno::ENOENT => nix::unistd::fexecve(&self.fd, &full, envp).unwrap_err(),
            e => e,
        };
        anyhow!("exec {exe:?} through the trampoline: {err}")
    }

    /// Path that runs the trampoline from a child process (hooks run with std::process).
    pub fn proc_path(&self) -> String {
        format!("/proc/self/fd/{}", self.fd.as_raw_fd())
    }
}

/// Make the calling process non-dumpable: container processes then cannot open
/// /proc/PID/exe (our host binary) or ptrace us before we exec.
pub fn set_non_dumpable() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use std::os::unix::process::{CommandExt, ExitStatusExt};

    #[test]
    fn trampoline_runs_its_argv0_with_the_rest_of_argv_and_env() {
        let t = Trampoline::create().unwrap().unwrap();
        let out = std::process::Command::new(t.proc_path())
            .arg0("/bin/sh")
            .args(["sh-name", "-c", "echo \"$0 $1 $T\"", "zero", "one"])
            .env("T", "env-ok")
            .output()
            .unwrap();
        assert!(out.status.success(), "{:?}", out);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "zero one env-ok\n");
    }

    #[test]
    fn trampoline_exits_127_when_the_program_is_missing() {
        let t = Trampoline::create().unwrap().unwrap();
        let st = std::process::Command::new(t.proc_path())
            .arg0("/nonexistent/program")
            .status()
            .unwrap();
        assert_eq!(st.code(), Some(127), "{st:?} {:?}", st.signal());
    }
}
