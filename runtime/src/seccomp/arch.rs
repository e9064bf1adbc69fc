//! The architectures the filter can dispatch on, and their syscall numbers.

use oci_spec::runtime::Arch as OciArch;

use super::syscall_table;
use super::SeccompError;

/// Set in the syscall number of every x32 syscall (x32 shares AUDIT_ARCH_X86_64).
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A syscall ABI the compiler has a table for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Abi {
    X86_64,
    X32,
    X86,
    Aarch64,
    Arm,
}

impl Abi {
    pub const ALL: [Abi; 5] = [Abi::X86_64, Abi::X32, Abi::X86, Abi::Aarch64, Abi::Arm];

    /// The ABI of the machine we run on.
    pub fn native() -> Result<Abi, SeccompError> {
        if cfg!(target_arch = "x86_64") && cfg!(target_pointer_width = "64") {
            Ok(Abi::X86_64)
        } else if cfg!(target_arch = "x86_64") {
            Ok(Abi::X32)
        } else if cfg!(target_arch = "x86") {
            Ok(Abi::X86)
        } else if cfg!(target_arch = "aarch64") {
            Ok(Abi::Aarch64)
        } else if cfg!(all(target_arch = "arm", target_endian = "little")) {
            Ok(Abi::Arm)
        } else {
            Err(SeccompError::UnsupportedArch(format!(
                "native ({})",
                std::env::consts::ARCH
            )))
        }
    }

    /// Maps an OCI `SCMP_ARCH_*` value to an ABI we can filter, or names the one we can't.
    pub fn from_oci(arch: OciArch) -> Result<Abi, SeccompError> {
        match arch {
            OciArch::ScmpArchNative => Abi::native(),
            OciArch::ScmpArchX86_64 => Ok(Abi::X86_64),
            OciArch::ScmpArchX32 => Ok(Abi::X32),
            OciArch::ScmpArchX86 => Ok(Abi::X86),
            OciArch::ScmpArchAarch64 => Ok(Abi::Aarch64),
            OciArch::ScmpArchArm => Ok(Abi::Arm),
            other => Err(SeccompError::UnsupportedArch(oci_name(other))),
        }
    }

    /// The `SCMP_ARCH_*` name, as in config.json.
    pub fn oci_name(self) -> &'static str {
        match self {
            Abi::X86_64 => "SCMP_ARCH_X86_64",
            Abi::X32 => "SCMP_ARCH_X32",
            Abi::X86 => "SCMP_ARCH_X86",
            Abi::Aarch64 => "SCMP_ARCH_AARCH64",
            Abi::Arm => "SCMP_ARCH_ARM",
        }
    }

    /// The `seccomp_data.arch` value the kernel reports for this ABI (AUDIT_ARCH_*).
    pub fn audit_arch(self) -> u32 {
        match self {
            Abi::X86_64 | Abi::X32 => 0xc000_003e,
            Abi::X86 => 0x4000_0003,
            Abi::Aarch64 => 0xc000_00b7,
            Abi::Arm => 0x4000_0028,
        }
    }

    /// Whether syscall arguments are 64 bits wide. For 32-bit ABIs only the low word of an
    /// argument is compared, as libseccomp does.
    pub fn wide_args(self) -> bool {
        matches!(self, Abi::X86_64 | Abi::Aarch64)
    }

    fn table(self) -> &'static [(&'static str, u32)] {
        match self {
            Abi::X86_64 => syscall_table::X86_64,
            Abi::X32 => syscall_table::X32,
            Abi::X86 => syscall_table::X86,
            Abi::Aarch64 => syscall_table::AARCH64,
            Abi::Arm => syscall_table::ARM,
        }
    }

    /// The syscall number of `name` in this ABI, if it has one.
    pub fn syscall(self, name: &str) -> Option<u32> {
        let table = self.table();
        table
            .binary_search_by(|(n, _)| (*n).cmp(name))
            .ok()
            .map(|i| table[i].1)
    }
}

/// socketcall(2) call numbers (SYS_* in <linux/net.h>).
const SOCKETCALLS: [(&str, u64); 20] = [
    ("socket", 1),
    ("bind", 2),
    ("connect", 3),
    ("listen", 4),
    ("accept", 5),
    ("getsockname", 6),
    ("getpeername", 7),
    ("socketpair", 8),
    ("send", 9),
    ("recv", 10),
    ("sendto", 11),
    ("recvfrom", 12),
    ("shutdown", 13),
    ("setsockopt", 14),
    ("getsockopt", 15),
    ("sendmsg", 16),
    ("recvmsg", 17),
    ("accept4", 18),
    ("recvmmsg", 19),
    ("sendmmsg", 20),
];

/// ipc(2) call numbers (<linux/ipc.h>).
const IPC_CALLS: [(&str, u64); 12] = [
    ("semop", 1),
    ("semget", 2),
    ("semctl", 3),
    ("semtimedop", 4),
    ("msgsnd", 11),
    ("msgrcv", 12),
    ("msgget", 13),
    ("msgctl", 14),
    ("shmat", 21),
    ("shmdt", 22),
    ("shmget", 23),
    ("shmctl", 24),
];

impl Abi {
    /// On x86 (i386) socket and SysV IPC calls are also reachable through the socketcall(2)
    /// and ipc(2) multiplexers, whose first argument selects the call. Returns the
    /// multiplexer's syscall number and that selector for `name`.
    pub fn multiplexed(self, name: &str) -> Option<(u32, u64)> {
        if self != Abi::X86 {
            return None;
        }
        let find = |calls: &[(&str, u64)], mux: &str| {
            let call = calls.iter().find(|(n, _)| *n == name)?.1;
            Some((self.syscall(mux)?, call))
        };
        find(&SOCKETCALLS, "socketcall").or_else(|| find(&IPC_CALLS, "ipc"))
    }
}

/// The config.json spelling of an OCI arch value, for error messages.
fn oci_name(arch: OciArch) -> String {
    serde_json::to_value(arch)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{arch:?}"))
}
