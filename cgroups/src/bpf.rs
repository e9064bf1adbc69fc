//! The cgroup v2 device controller: a BPF_PROG_TYPE_CGROUP_DEVICE program compiled from the
//! device rules and attached to the container's cgroup with the bpf(2) syscall. v2 has no
//! devices.allow file; the kernel runs this program on every open/mknod of a device node.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;

use crate::device_rules::{DevKind, DeviceRule, ACC_ALL};
use crate::error::Error;

// Values from include/uapi/linux/bpf.h.
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;
const BPF_DEVCG_DEV_BLOCK: i32 = 1;
const BPF_DEVCG_DEV_CHAR: i32 = 2;

/// One eBPF instruction, laid out like `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

// Opcodes used by the filter (class | op | source).
const LDX_MEM_W: u8 = 0x61;
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU64_MOV_K: u8 = 0xb7;
const ALU64_MOV_X: u8 = 0xbf;
const JMP_JNE_K: u8 = 0x55;
const JMP_JEQ_K: u8 = 0x15;
const JMP_EXIT: u8 = 0x95;

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

// Registers: r1 = ctx (struct bpf_cgroup_dev_ctx {u32 access_type; u32 major; u32 minor;}),
// then r2 = device type, r3 = requested access, r4 = major, r5 = minor, r1 scratch.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

/// Compiles the rules into a program returning 1 (allow) or 0 (deny). Rules are tested from
/// last to first so the first hit is the last matching rule, which is the spec's semantics.
pub fn compile(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut prog = vec![
        insn(LDX_MEM_W, R2, R1, 0, 0),
        insn(ALU32_AND_K, R2, 0, 0, 0xffff),
        insn(LDX_MEM_W, R3, R1, 0, 0),
        insn(ALU32_RSH_K, R3, 0, 0, 16),
        insn(LDX_MEM_W, R4, R1, 4, 0),
        insn(LDX_MEM_W, R5, R1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        // A block ends with "r0 = verdict; exit". Every test jumps past the block's end when
        // the rule does not match; the offsets are patched once the block's length is known.
        let mut block: Vec<Insn> = Vec::new();
        match rule.kind {
            DevKind::All => {}
            DevKind::Char => block.push(insn(JMP_JNE_K, R2, 0, 0, BPF_DEVCG_DEV_CHAR)),
            DevKind::Block => block.push(insn(JMP_JNE_K, R2, 0, 0, BPF_DEVCG_DEV_BLOCK)),
        }
        if let Some(major) = rule.major {
            block.push(insn(JMP_JNE_K, R4, 0, 0, major as i32));
        }
        if let Some(minor) = rule.minor {
            block.push(insn(JMP_JNE_K, R5, 0, 0, minor as i32));
        }
        if rule.access != ACC_ALL {
            block.push(insn(ALU64_MOV_X, R1, R3, 0, 0));
            if rule.allow {
                // An allow rule must cover every requested access bit...
                block.push(insn(ALU32_AND_K, R1, 0, 0, (!rule.access & ACC_ALL) as i32));
                block.push(insn(JMP_JNE_K, R1, 0, 0, 0));
            } else {
                // ...a deny rule refuses a request that asks for any bit it names.
                block.push(insn(ALU32_AND_K, R1, 0, 0, rule.access as i32));
                block.push(insn(JMP_JEQ_K, R1, 0, 0, 0));
            }
        }
        block.push(insn(ALU64_MOV_K, R0, 0, 0, i32::from(rule.allow)));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        let len = block.len();
        let mut conditional = false;
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JMP_JNE_K || ins.code == JMP_JEQ_K {
                ins.off = (len - i - 1) as i16;
                conditional = true;
            }
        }
        prog.extend(block);
        // A rule matching everything decides alone; the verifier rejects the dead code that
        // earlier rules would compile to.
        if !conditional {
            return prog;
        }
    }
    prog.push(insn(ALU64_MOV_K, R0, 0, 0, 0));
    prog.push(insn(JMP_EXIT, 0, 0, 0, 0));
    prog
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> Result<libc::c_long, Errno> {
    // SAFETY: `attr` is a #[repr(C)] prefix of `union bpf_attr` for `cmd`, valid for
    // size_of::<T>() bytes; the kernel zero-extends the parts we do not pass.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

fn owned_fd(raw: libc::c_long) -> OwnedFd {
    // SAFETY: the bpf syscall just returned this descriptor, and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(raw as i32) }
}

fn bpf_err(op: &'static str, source: Errno) -> Error {
    Error::Bpf {
        op,
        errno: source,
        log: String::new(),
    }
}

/// Loads the program into the kernel; on a verifier rejection the verifier's log is in the
/// error.
pub fn load(prog: &[Insn]) -> Result<OwnedFd, Error> {
    let license = b"Apache-2.0\0";
    let mut log = vec![0u8; 64 * 1024];
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"berth_device");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(owned_fd(fd)),
        Err(first) => {
            // Retry with the verifier log on: it costs time, so only when loading failed.
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let err = bpf(BPF_PROG_LOAD, &mut attr).err().unwrap_or(first);
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            Err(Error::Bpf {
                op: "load program",
                errno: err,
                log: if text.is_empty() {
                    String::new()
                } else {
                    format!(" (verifier: {text})")
                },
            })
        }
    }
}

/// Ids of the device programs attached to a cgroup.
fn attached(cgroup: &File) -> Result<Vec<u32>, Error> {
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr).map_err(|e| bpf_err("query attached programs", e))?;
    ids.truncate(attr.prog_cnt as usize);
    Ok(ids)
}

/// Compiles `rules`, attaches the program to the cgroup at `dir`, then detaches the programs
/// that were there before, so an update never leaves a window with no filter at all.
pub fn apply(dir: &Path, rules: &[DeviceRule]) -> Result<(), Error> {
    let cgroup = File::open(dir).map_err(|source| Error::Read {
        path: dir.to_path_buf(),
        err: source,
    })?;
    let old = attached(&cgroup)?;
    let prog = load(&compile(rules))?;
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| bpf_err("attach program", e))?;
    for id in old {
        let mut get = GetFdAttr {
            prog_id: id,
            ..Default::default()
        };
        let old_fd = match bpf(BPF_PROG_GET_FD_BY_ID, &mut get) {
            Ok(fd) => owned_fd(fd),
            // Detached by someone else meanwhile.
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(bpf_err("open attached program", e)),
        };
        let mut detach = AttachAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_bpf_fd: old_fd.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        match bpf(BPF_PROG_DETACH, &mut detach) {
            Ok(_) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(bpf_err("detach old program", e)),
        }
    }
    Ok(())
}

/// How many device programs are attached to the cgroup at `dir` (for tests and diagnostics).
pub fn attached_count(dir: &Path) -> Result<usize, Error> {
    let cgroup = File::open(dir).map_err(|source| Error::Read {
        path: dir.to_path_buf(),
        err: source,
    })?;
    Ok(attached(&cgroup)?.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device_rules::{ACC_READ, ACC_WRITE};

    #[test]
    fn jumps_land_on_the_next_rule() {
        let rules = vec![DeviceRule {
            allow: true,
            kind: DevKind::Char,
            major: Some(1),
            minor: Some(3),
            access: ACC_READ | ACC_WRITE,
        }];
        let p = compile(&rules);
        // prologue 6 + block (type, major, minor, mov, and, jne, mov r0, exit) 8 + epilogue 2
        assert_eq!(p.len(), 16);
        // The first test in the block skips the 7 instructions after it.
        assert_eq!(p[6].off, 7);
        assert_eq!(p[11].off, 2);
        assert_eq!(p[13].code, JMP_EXIT);
        assert_eq!(p[14].imm, 0);
    }

    #[test]
    fn verifier_accepts_compiled_program() {
        let rules = vec![
            DeviceRule {
                allow: false,
                kind: DevKind::All,
                major: None,
                minor: None,
                access: ACC_ALL,
            },
            DeviceRule {
                allow: true,
                kind: DevKind::Block,
                major: Some(8),
                minor: None,
                access: ACC_READ,
            },
            DeviceRule {
                allow: false,
                kind: DevKind::Char,
                major: Some(1),
                minor: Some(3),
                access: ACC_WRITE,
            },
        ];
        load(&compile(&rules)).expect("program loads");
    }
}
