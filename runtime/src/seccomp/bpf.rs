//! Classic BPF instructions and a back-to-front assembler for them.
//!
//! Seccomp programs may only jump forwards, and a conditional jump reaches at most 255
//! instructions ahead. Emitting the program from its last instruction to its first means
//! every jump target already exists when the jump is written, so its distance is known at
//! once; a target that is too far is reached through a trampoline (`ja`, or a copy of the
//! `ret` it leads to) placed right after the jump.

use std::collections::HashMap;

// Opcode parts of <linux/bpf_common.h>: libc's, narrowed to the 16-bit `code` field they
// are or-ed into.
pub const BPF_LD: u16 = libc::BPF_LD as u16;
pub const BPF_ALU: u16 = libc::BPF_ALU as u16;
pub const BPF_JMP: u16 = libc::BPF_JMP as u16;
pub const BPF_RET: u16 = libc::BPF_RET as u16;
pub const BPF_W: u16 = libc::BPF_W as u16;
pub const BPF_ABS: u16 = libc::BPF_ABS as u16;
pub const BPF_AND: u16 = libc::BPF_AND as u16;
pub const BPF_JA: u16 = libc::BPF_JA as u16;
pub const BPF_JEQ: u16 = libc::BPF_JEQ as u16;
pub const BPF_JGT: u16 = libc::BPF_JGT as u16;
pub const BPF_JGE: u16 = libc::BPF_JGE as u16;
pub const BPF_K: u16 = libc::BPF_K as u16;

/// The kernel refuses longer programs.
pub const MAX_INSNS: usize = libc::BPF_MAXINSNS as usize;

/// One instruction, laid out exactly like the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

impl Insn {
    pub const fn stmt(code: u16, k: u32) -> Insn {
        Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }

    pub fn is_ret(&self) -> bool {
        self.code & 0x07 == BPF_RET
    }
}

/// Where a jump can land: the number of instructions from the label to the end of the
/// program, which stays fixed while more code is prepended.
pub type Label = usize;

/// Jump conditions the compiler uses (all compare the accumulator with a constant).
#[derive(Clone, Copy, Debug)]
pub enum Cond {
    Eq,
    Gt,
    Ge,
}

impl Cond {
    fn code(self) -> u16 {
        BPF_JMP
            | BPF_K
            | match self {
                Cond::Eq => BPF_JEQ,
                Cond::Gt => BPF_JGT,
                Cond::Ge => BPF_JGE,
            }
    }
}

/// Builds a program back to front.
#[derive(Default)]
pub struct Asm {
    /// Instructions in reverse program order.
    rev: Vec<Insn>,
    /// The nearest `ret` emitted for each return value, reused while it is in reach.
    rets: HashMap<u32, Label>,
}

impl Asm {
    /// The label of the instruction emitted last (the current program start).
    pub fn head(&self) -> Label {
        self.rev.len()
    }

    /// Distance an instruction pushed now would need to jump to reach `target`.
    fn dist(&self, target: Label) -> usize {
        self.rev.len() - target
    }

    fn push(&mut self, insn: Insn) -> Label {
        self.rev.push(insn);
        self.rev.len()
    }

    /// `ret value`, shared with an earlier identical one when a jump can still reach it.
    pub fn ret(&mut self, value: u32) -> Label {
        if let Some(&l) = self.rets.get(&value) {
            if self.dist(l) <= u8::MAX as usize {
                return l;
            }
        }
        let l = self.push(Insn::stmt(BPF_RET | BPF_K, value));
        self.rets.insert(value, l);
        l
    }

    /// A nearby stand-in for a far `target`: a copy of it when it is a `ret`, else a `ja`.
    fn trampoline(&mut self, target: Label) -> Label {
        let insn = self.rev[target - 1];
        if insn.is_ret() {
            let l = self.push(insn);
            self.rets.insert(insn.k, l);
            l
        } else {
            let k = self.dist(target) as u32;
            self.push(Insn::stmt(BPF_JMP | BPF_JA, k))
        }
    }

    /// Conditional jump on the accumulator: to `jt` when `cond` holds against `k`, else `jf`.
    pub fn jump(&mut self, cond: Cond, k: u32, mut jt: Label, mut jf: Label) -> Label {
        let max = u8::MAX as usize;
        while self.dist(jt) > max || self.dist(jf) > max {
            if self.dist(jt) > max {
                jt = self.trampoline(jt);
            } else {
                jf = self.trampoline(jf);
            }
        }
        let insn = Insn {
            code: cond.code(),
            jt: self.dist(jt) as u8,
            jf: self.dist(jf) as u8,
            k,
        };
        self.push(insn)
    }

    /// A non-jumping instruction that continues at `next`.
    pub fn stmt(&mut self, code: u16, k: u32, next: Label) -> Label {
        if next != self.head() {
            self.trampoline(next);
        }
        self.push(Insn::stmt(code, k))
    }

    /// `ld [offset]`: load a 32-bit word of `struct seccomp_data`.
    pub fn load(&mut self, offset: u32, next: Label) -> Label {
        self.stmt(BPF_LD | BPF_W | BPF_ABS, offset, next)
    }

    /// `and k`.
    pub fn and(&mut self, k: u32, next: Label) -> Label {
        self.stmt(BPF_ALU | BPF_AND | BPF_K, k, next)
    }

    /// The program in execution order, starting at `entry`, which must be the head.
    pub fn finish(mut self, entry: Label) -> Vec<Insn> {
        debug_assert_eq!(
            entry,
            self.head(),
            "program entry must be the first instruction"
        );
        self.rev.reverse();
        self.rev
    }
}
