//! Emits the BPF program for a [`Ruleset`].
//!
//! Layout, in execution order:
//!
//! ```text
//!   ld arch; jeq AUDIT_ARCH_A -> section A; jeq AUDIT_ARCH_B -> section B; ...; ret BAD_ARCH
//!   section: ld nr; [x86_64 only: jge X32_SYSCALL_BIT -> x32 tree, else x86_64 tree]
//!   tree:    binary search over syscall-number intervals (jge), each leaf a ret or a rule block
//!   block:   per rule, 64-bit argument comparisons ANDed; first rule that holds returns its
//!            action, else the default action
//! ```
//!
//! Syscall numbers are grouped into intervals of equal outcome (runs of allowed syscalls
//! collapse), so the search depth is log2 of the number of intervals, not of syscalls.

use oci_spec::runtime::LinuxSeccompOperator as Op;

use super::arch::{Abi, X32_SYSCALL_BIT};
use super::bpf::{Asm, Cond, Insn, Label};
use super::rules::{AbiRules, ArgCmp, Rule, Ruleset, SyscallRules, BAD_ARCH};

/// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

/// Offsets of the low and high 32-bit halves of argument `index`; seccomp_data holds
/// arguments in the host's byte order.
fn arg_offsets(index: u8) -> (u32, u32) {
    let base = OFF_ARGS + 8 * index as u32;
    if cfg!(target_endian = "little") {
        (base, base + 4)
    } else {
        (base + 4, base)
    }
}

/// What a syscall-number interval leads to.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome<'a> {
    Ret(u32),
    Rules(&'a [Rule]),
}

/// Splits the whole u32 syscall-number space into intervals `(first number, outcome)`,
/// sorted, merging neighbours that return the same thing.
fn intervals<'a>(t: &'a AbiRules, default: u32) -> Vec<(u32, Outcome<'a>)> {
    let mut out: Vec<(u32, Outcome<'a>)> = Vec::new();
    let mut push = |start: u32, o: Outcome<'a>| {
        let same =
            matches!((out.last(), o), (Some((_, Outcome::Ret(a))), Outcome::Ret(b)) if *a == b);
        if !same {
            out.push((start, o));
        }
    };
    let mut next: u64 = 0;
    for (&nr, rules) in &t.syscalls {
        if u64::from(nr) > next {
            push(next as u32, Outcome::Ret(default));
        }
        push(
            nr,
            match rules {
                SyscallRules::Always(a) => Outcome::Ret(*a),
                SyscallRules::Conditional(r) => Outcome::Rules(r),
            },
        );
        next = u64::from(nr) + 1;
    }
    match t.enosys_above {
        Some(max) => {
            if u64::from(max) >= next {
                push(next as u32, Outcome::Ret(default));
            }
            if u64::from(max) < u64::from(u32::MAX) {
                push(
                    max + 1,
                    Outcome::Ret(libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
                );
            }
        }
        None if next <= u64::from(u32::MAX) => push(next as u32, Outcome::Ret(default)),
        None => {}
    }
    out
}

/// Code testing one argument comparison: continues at `t` when it holds, else at `f`.
fn emit_cmp(asm: &mut Asm, abi: Abi, cmp: &ArgCmp, t: Label, f: Label) -> Label {
    let (lo_off, hi_off) = arg_offsets(cmp.index);
    let (hi, lo) = ((cmp.value >> 32) as u32, cmp.value as u32);
    // libseccomp compares (arg & mask) with (valueTwo & mask): bits outside the mask never matter.
    let want = cmp.value_two & cmp.value;
    let (want_hi, want_lo) = ((want >> 32) as u32, want as u32);

    // The low word decides once the high words are equal (or on 32-bit ABIs, alone).
    let low = match cmp.op {
        // An empty mask leaves nothing to compare in this word.
        Op::ScmpCmpMaskedEq if lo == 0 => t,
        op => {
            let j = match op {
                Op::ScmpCmpEq => asm.jump(Cond::Eq, lo, t, f),
                Op::ScmpCmpNe => asm.jump(Cond::Eq, lo, f, t),
                Op::ScmpCmpGt => asm.jump(Cond::Gt, lo, t, f),
                Op::ScmpCmpGe => asm.jump(Cond::Ge, lo, t, f),
                Op::ScmpCmpLt => asm.jump(Cond::Ge, lo, f, t),
                Op::ScmpCmpLe => asm.jump(Cond::Gt, lo, f, t),
                Op::ScmpCmpMaskedEq => {
                    let j = asm.jump(Cond::Eq, want_lo, t, f);
                    asm.and(lo, j)
                }
            };
            asm.load(lo_off, j)
        }
    };
    if !abi.wide_args() {
        return low;
    }
    let j = match cmp.op {
        Op::ScmpCmpEq => asm.jump(Cond::Eq, hi, low, f),
        Op::ScmpCmpNe => asm.jump(Cond::Eq, hi, low, t),
        Op::ScmpCmpGt | Op::ScmpCmpGe => {
            let eq = asm.jump(Cond::Eq, hi, low, f);
            asm.jump(Cond::Gt, hi, t, eq)
        }
        Op::ScmpCmpLt | Op::ScmpCmpLe => {
            let eq = asm.jump(Cond::Eq, hi, low, t);
            asm.jump(Cond::Gt, hi, f, eq)
        }
        Op::ScmpCmpMaskedEq => {
            if hi == 0 {
                return low;
            }
            let j = asm.jump(Cond::Eq, want_hi, low, f);
            asm.and(hi, j)
        }
    };
    asm.load(hi_off, j)
}

/// Code for one syscall's conditional rules; A holds nothing useful on entry.
fn emit_rules(asm: &mut Asm, abi: Abi, rules: &[Rule], default: u32) -> Label {
    let mut next = asm.ret(default);
    for rule in rules.iter().rev() {
        let mut ok = asm.ret(rule.action);
        for cmp in rule.cmps.iter().rev() {
            ok = emit_cmp(asm, abi, cmp, ok, next);
        }
        next = ok;
    }
    next
}

/// Binary search over intervals; A holds the syscall number on entry.
fn emit_tree(asm: &mut Asm, abi: Abi, iv: &[(u32, Outcome<'_>)], default: u32) -> Label {
    match iv {
        [] => asm.ret(default),
        [(_, Outcome::Ret(v))] => asm.ret(*v),
        [(_, Outcome::Rules(r))] => emit_rules(asm, abi, r, default),
        _ => {
            let mid = iv.len() / 2;
            let right = emit_tree(asm, abi, &iv[mid..], default);
            let left = emit_tree(asm, abi, &iv[..mid], default);
            asm.jump(Cond::Ge, iv[mid].0, right, left)
        }
    }
}

fn emit_abi(asm: &mut Asm, t: Option<&AbiRules>, default: u32) -> Label {
    match t {
        Some(t) => emit_tree(asm, t.abi, &intervals(t, default), default),
        None => asm.ret(BAD_ARCH),
    }
}

/// One `seccomp_data.arch` value's section; A is loaded with the syscall number.
fn emit_section(asm: &mut Asm, audit: u32, rs: &Ruleset) -> Label {
    let find = |abi: Abi| rs.abis.iter().find(|t| t.abi == abi);
    let tree = if audit == Abi::X86_64.audit_arch() {
        // x86_64 and x32 share the audit arch; the x32 bit in the number tells them apart.
        let x32 = match find(Abi::X32) {
            Some(t) => emit_abi(asm, Some(t), rs.default),
            None => {
                // Number -1 also has the bit set: tracers use it to skip a syscall and the
                // filter sees it again afterwards, so it gets the default action, not a kill
                // (as with libseccomp).
                let default = asm.ret(rs.default);
                let bad = asm.ret(BAD_ARCH);
                asm.jump(Cond::Eq, u32::MAX, default, bad)
            }
        };
        let x86_64 = emit_abi(asm, find(Abi::X86_64), rs.default);
        asm.jump(Cond::Ge, X32_SYSCALL_BIT, x32, x86_64)
    } else {
        let t = rs.abis.iter().find(|t| t.abi.audit_arch() == audit);
        emit_abi(asm, t, rs.default)
    };
    asm.load(OFF_NR, tree)
}

pub fn generate(rs: &Ruleset) -> Vec<Insn> {
    let mut audits: Vec<u32> = Vec::new();
    for t in &rs.abis {
        if !audits.contains(&t.abi.audit_arch()) {
            audits.push(t.abi.audit_arch());
        }
    }
    let mut asm = Asm::default();
    // Later sections first, so the native one (checked first) sits nearest the dispatch.
    let mut sections: Vec<(u32, Label)> = audits
        .iter()
        .rev()
        .map(|&a| (a, emit_section(&mut asm, a, rs)))
        .collect();
    sections.reverse();
    let mut next = asm.ret(BAD_ARCH);
    for &(audit, label) in sections.iter().rev() {
        next = asm.jump(Cond::Eq, audit, label, next);
    }
    let entry = asm.load(OFF_ARCH, next);
    asm.finish(entry)
}
