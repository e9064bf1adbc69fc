//! A tiny classic-BPF interpreter for tests: runs a compiled filter on a synthetic
//! `struct seccomp_data` the way the kernel would, and rejects anything the kernel's
//! checker would (backward or out-of-range jumps, falling off the end, bad loads).

use super::bpf::*;

/// `struct seccomp_data`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Data {
    pub nr: u32,
    pub arch: u32,
    pub ip: u64,
    pub args: [u64; 6],
}

impl Data {
    pub fn new(arch: u32, nr: u32, args: &[u64]) -> Data {
        let mut d = Data {
            nr,
            arch,
            ..Data::default()
        };
        d.args[..args.len()].copy_from_slice(args);
        d
    }

    fn bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..4].copy_from_slice(&self.nr.to_ne_bytes());
        b[4..8].copy_from_slice(&self.arch.to_ne_bytes());
        b[8..16].copy_from_slice(&self.ip.to_ne_bytes());
        for (i, a) in self.args.iter().enumerate() {
            b[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        b
    }
}

/// Runs `prog` and returns its verdict and how many instructions ran.
pub fn run(prog: &[Insn], data: &Data) -> (u32, usize) {
    assert!(
        !prog.is_empty() && prog.len() <= MAX_INSNS,
        "program length {}",
        prog.len()
    );
    let mem = data.bytes();
    let mut a: u32 = 0;
    let mut pc = 0usize;
    let mut steps = 0usize;
    loop {
        let insn = *prog
            .get(pc)
            .unwrap_or_else(|| panic!("fell off the end at {pc}"));
        steps += 1;
        let code = insn.code;
        match code & 0x07 {
            BPF_LD => {
                assert_eq!(
                    code,
                    BPF_LD | BPF_W | BPF_ABS,
                    "unsupported load at {pc}: {insn:?}"
                );
                let off = insn.k as usize;
                assert!(
                    off & 3 == 0 && off + 4 <= 64,
                    "bad load offset at {pc}: {off}"
                );
                a = u32::from_ne_bytes(mem[off..off + 4].try_into().unwrap());
                pc += 1;
            }
            BPF_ALU => {
                assert_eq!(
                    code,
                    BPF_ALU | BPF_AND | BPF_K,
                    "unsupported alu at {pc}: {insn:?}"
                );
                a &= insn.k;
                pc += 1;
            }
            BPF_JMP => {
                let next = pc + 1;
                let target = if code == BPF_JMP | BPF_JA {
                    next + insn.k as usize
                } else {
                    let taken = match code & 0xf0 {
                        BPF_JEQ => a == insn.k,
                        BPF_JGT => a > insn.k,
                        BPF_JGE => a >= insn.k,
                        _ => panic!("unsupported jump at {pc}: {insn:?}"),
                    };
                    // Both branches must stay inside the program.
                    assert!(
                        next + (insn.jt as usize) < prog.len(),
                        "jt out of range at {pc}"
                    );
                    assert!(
                        next + (insn.jf as usize) < prog.len(),
                        "jf out of range at {pc}"
                    );
                    next + if taken { insn.jt } else { insn.jf } as usize
                };
                assert!(target < prog.len(), "jump out of range at {pc}");
                pc = target;
            }
            BPF_RET => {
                assert_eq!(code, BPF_RET | BPF_K, "unsupported ret at {pc}: {insn:?}");
                return (insn.k, steps);
            }
            _ => panic!("unsupported instruction at {pc}: {insn:?}"),
        }
    }
}
