//! Compiler tests: run compiled programs in the test interpreter on synthetic syscalls.

use oci_spec::runtime::LinuxSeccomp;
use serde_json::{json, Value};

use libc::{
    SECCOMP_FILTER_FLAG_LOG, SECCOMP_FILTER_FLAG_NEW_LISTENER, SECCOMP_FILTER_FLAG_SPEC_ALLOW,
    SECCOMP_FILTER_FLAG_TSYNC, SECCOMP_FILTER_FLAG_TSYNC_ESRCH,
    SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO,
    SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_KILL_THREAD, SECCOMP_RET_LOG, SECCOMP_RET_TRACE,
    SECCOMP_RET_TRAP, SECCOMP_RET_USER_NOTIF,
};

use super::arch::{Abi, X32_SYSCALL_BIT};
use super::bpf::{Insn, BPF_JA, BPF_JMP, BPF_RET};
use super::interp::{run, Data};
use super::{compile, supported, Program, SeccompError};

const EPERM: u32 = libc::EPERM as u32;
const ENOSYS: u32 = libc::ENOSYS as u32;

pub(super) const DOCKER_DEFAULT_X86_64: &str = include_str!("docker_default_x86_64.json");

fn profile(v: Value) -> LinuxSeccomp {
    serde_json::from_value(v).expect("test profile parses")
}

fn compiled(v: Value) -> Program {
    let p = compile(&profile(v)).expect("test profile compiles");
    check_static(p.instructions());
    p
}

/// What the kernel's checker enforces on every instruction, reached or not.
fn check_static(prog: &[Insn]) {
    assert!(!prog.is_empty() && prog.len() <= 4096);
    assert!(prog.last().unwrap().is_ret(), "program must end in ret");
    for (pc, insn) in prog.iter().enumerate() {
        if insn.code & 0x07 == BPF_JMP {
            let reach = if insn.code == BPF_JMP | BPF_JA {
                insn.k as usize
            } else {
                insn.jt.max(insn.jf) as usize
            };
            assert!(
                pc + 1 + reach < prog.len(),
                "jump out of range at {pc}: {insn:?}"
            );
        }
    }
}

fn nr(abi: Abi, name: &str) -> u32 {
    abi.syscall(name)
        .unwrap_or_else(|| panic!("{name} has no number on {abi:?}"))
}

fn verdict(p: &Program, abi: Abi, name: &str, args: &[u64]) -> u32 {
    run(
        p.instructions(),
        &Data::new(abi.audit_arch(), nr(abi, name), args),
    )
    .0
}

fn verdict_nr(p: &Program, abi: Abi, nr: u32, args: &[u64]) -> u32 {
    run(p.instructions(), &Data::new(abi.audit_arch(), nr, args)).0
}

fn errno(e: u32) -> u32 {
    SECCOMP_RET_ERRNO | e
}

#[test]
fn seccomp_default_action_and_allow_rule() {
    let p = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["getpid", "read", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
    }));
    assert_eq!(verdict(&p, Abi::X86_64, "getpid", &[]), SECCOMP_RET_ALLOW);
    assert_eq!(verdict(&p, Abi::X86_64, "read", &[]), SECCOMP_RET_ALLOW);
    // Without errnoRet, ERRNO means EPERM (runc).
    assert_eq!(verdict(&p, Abi::X86_64, "mkdir", &[]), errno(EPERM));
    assert_eq!(p.flags(), 0);
    assert!(!p.has_listener());
}

#[test]
fn seccomp_default_errno_ret() {
    let p = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EACCES,
        "syscalls": [{"names": ["getpid", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
    }));
    assert_eq!(
        verdict(&p, Abi::X86_64, "mkdir", &[]),
        errno(libc::EACCES as u32)
    );
}

#[test]
fn seccomp_every_action_maps_to_its_kernel_value() {
    let cases = [
        (json!({"action": "SCMP_ACT_KILL"}), SECCOMP_RET_KILL_THREAD),
        (
            json!({"action": "SCMP_ACT_KILL_THREAD"}),
            SECCOMP_RET_KILL_THREAD,
        ),
        (
            json!({"action": "SCMP_ACT_KILL_PROCESS"}),
            SECCOMP_RET_KILL_PROCESS,
        ),
        (json!({"action": "SCMP_ACT_TRAP"}), SECCOMP_RET_TRAP),
        (
            json!({"action": "SCMP_ACT_ERRNO", "errnoRet": 18}),
            errno(18),
        ),
        (json!({"action": "SCMP_ACT_ERRNO"}), errno(EPERM)),
        (
            json!({"action": "SCMP_ACT_TRACE", "errnoRet": 4242}),
            SECCOMP_RET_TRACE | 4242,
        ),
        (
            json!({"action": "SCMP_ACT_TRACE"}),
            SECCOMP_RET_TRACE | EPERM,
        ),
        (json!({"action": "SCMP_ACT_LOG"}), SECCOMP_RET_LOG),
        (json!({"action": "SCMP_ACT_NOTIFY"}), SECCOMP_RET_USER_NOTIF),
    ];
    for (rule, want) in cases {
        let mut rule = rule;
        rule["names"] = json!(["mkdir"]);
        let p = compiled(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule.clone()],
                                "listenerPath": "/run/agent.sock"}),
        );
        assert_eq!(verdict(&p, Abi::X86_64, "mkdir", &[]), want, "rule {rule}");
        assert_eq!(
            verdict(&p, Abi::X86_64, "getpid", &[]),
            SECCOMP_RET_ALLOW,
            "rule {rule}"
        );
    }
    // ALLOW as a rule under a denying default.
    let p = compiled(json!({
        "defaultAction": "SCMP_ACT_KILL_PROCESS",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"}]
    }));
    assert_eq!(verdict(&p, Abi::X86_64, "mkdir", &[]), SECCOMP_RET_ALLOW);
    assert_eq!(
        verdict(&p, Abi::X86_64, "getpid", &[]),
        SECCOMP_RET_KILL_PROCESS
    );
}

#[test]
fn seccomp_dispatches_on_every_listed_arch() {
    let p = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
                          "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "syscalls": [
            {"names": ["getpid", "exit_group", "mseal"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["socketcall"], "action": "SCMP_ACT_LOG"},
            {"names": ["set_tls"], "action": "SCMP_ACT_TRAP"}
        ]
    }));
    for abi in Abi::ALL {
        assert_eq!(
            verdict(&p, abi, "getpid", &[]),
            SECCOMP_RET_ALLOW,
            "{abi:?}"
        );
        assert_eq!(
            verdict(&p, abi, "exit_group", &[]),
            SECCOMP_RET_ALLOW,
            "{abi:?}"
        );
        assert_eq!(verdict(&p, abi, "mkdirat", &[]), errno(EPERM), "{abi:?}");
    }
    // Names that exist on one ABI only apply there.
    assert_eq!(verdict(&p, Abi::X86, "socketcall", &[]), SECCOMP_RET_LOG);
    assert_eq!(verdict(&p, Abi::Arm, "set_tls", &[]), SECCOMP_RET_TRAP);
    // The same number means different syscalls per ABI: 20 is getpid on x86, writev on x86_64.
    assert_eq!(verdict_nr(&p, Abi::X86, 20, &[]), SECCOMP_RET_ALLOW);
    assert_eq!(verdict_nr(&p, Abi::X86_64, 20, &[]), errno(EPERM));
    // An arch the filter does not list gets libseccomp's bad-arch action.
    let other = run(p.instructions(), &Data::new(0xc000_00f3, 172, &[])).0;
    assert_eq!(other, SECCOMP_RET_KILL_THREAD);
}

#[test]
fn seccomp_native_arch_only_when_none_listed() {
    let p = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
    }));
    let native = Abi::native().unwrap();
    assert_eq!(verdict(&p, native, "getpid", &[]), SECCOMP_RET_ALLOW);
    let foreign = if native == Abi::X86 {
        Abi::Arm
    } else {
        Abi::X86
    };
    assert_eq!(verdict(&p, foreign, "getpid", &[]), SECCOMP_RET_KILL_THREAD);
    // SCMP_ARCH_NATIVE names the same thing.
    let q = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_NATIVE"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
    }));
    assert_eq!(p, q);
}

#[test]
fn seccomp_x32_is_told_apart_by_the_syscall_bit() {
    let rules = json!([
        {"names": ["getpid", "execve"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18}
    ]);
    let with = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
        "syscalls": rules.clone()
    }));
    assert_eq!(nr(Abi::X32, "getpid"), X32_SYSCALL_BIT | 39);
    assert_eq!(verdict(&with, Abi::X32, "getpid", &[]), SECCOMP_RET_ALLOW);
    assert_eq!(verdict(&with, Abi::X32, "mkdir", &[]), errno(18));
    assert_eq!(
        verdict(&with, Abi::X86_64, "getpid", &[]),
        SECCOMP_RET_ALLOW
    );
    assert_eq!(verdict(&with, Abi::X86_64, "mkdir", &[]), errno(18));
    // x32 has its own numbers for some syscalls (execve is 520 there, 59 on x86_64).
    assert_eq!(verdict(&with, Abi::X32, "execve", &[]), SECCOMP_RET_ALLOW);
    assert_eq!(
        verdict(&with, Abi::X86_64, "execve", &[]),
        SECCOMP_RET_ALLOW
    );
    assert_eq!(
        verdict_nr(&with, Abi::X32, X32_SYSCALL_BIT | 59, &[]),
        errno(EPERM)
    );

    // Without SCMP_ARCH_X32 an x32 syscall is a foreign arch.
    let without = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": rules
    }));
    assert_eq!(
        verdict(&without, Abi::X32, "getpid", &[]),
        SECCOMP_RET_KILL_THREAD
    );
    // ...except -1, the number a tracer uses to skip a syscall.
    assert_eq!(
        verdict_nr(&without, Abi::X86_64, u32::MAX, &[]),
        errno(EPERM)
    );
    assert_eq!(
        verdict(&without, Abi::X86_64, "getpid", &[]),
        SECCOMP_RET_ALLOW
    );
}

/// A deterministic generator; the tests need variety, not randomness.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value near `v` in one of the ways comparisons get wrong.
    fn near(&mut self, v: u64) -> u64 {
        match self.next() % 9 {
            0 => v,
            1 => v.wrapping_add(1),
            2 => v.wrapping_sub(1),
            3 => v ^ (1 << (32 + self.next() % 32)),
            4 => v ^ (1 << (self.next() % 32)),
            5 => 0,
            6 => u64::MAX,
            7 => (v & 0xffff_ffff_0000_0000) | (self.next() & 0xffff_ffff),
            _ => self.next(),
        }
    }
}

fn holds(op: &str, arg: u64, v: u64, v2: u64) -> bool {
    match op {
        "SCMP_CMP_EQ" => arg == v,
        "SCMP_CMP_NE" => arg != v,
        "SCMP_CMP_LT" => arg < v,
        "SCMP_CMP_LE" => arg <= v,
        "SCMP_CMP_GT" => arg > v,
        "SCMP_CMP_GE" => arg >= v,
        "SCMP_CMP_MASKED_EQ" => arg & v == v2 & v,
        _ => unreachable!(),
    }
}

const OPS: [&str; 7] = [
    "SCMP_CMP_EQ",
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_GT",
    "SCMP_CMP_GE",
    "SCMP_CMP_MASKED_EQ",
];

#[test]
fn seccomp_every_operator_on_64_and_32_bit_arguments() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for op in OPS {
        for round in 0..40 {
            let index = (rng.next() % 6) as usize;
            let mut v = rng.next();
            if round % 3 == 0 {
                v &= 0xffff_ffff; // values that fit in the low word are the common case
            }
            let mut v2 = rng.near(v) & v;
            if round % 4 == 0 {
                v2 |= 1 << 40; // bits outside the mask are ignored, as in libseccomp
            }
            if round % 7 == 0 {
                v &= 0xffff_ffff_0000_0000; // no low bits in the mask
            }
            let p = compiled(json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                "syscalls": [{"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7,
                    "args": [{"index": index, "value": v, "valueTwo": v2, "op": op}]}]
            }));
            for _ in 0..40 {
                let arg = rng.near(v);
                let mut args = [rng.next(); 6];
                args[index] = arg;
                for (abi, wide) in [(Abi::X86_64, true), (Abi::X86, false)] {
                    let want = if wide {
                        holds(op, arg, v, v2)
                    } else {
                        // 32-bit ABIs compare the low words only.
                        holds(op, arg & 0xffff_ffff, v & 0xffff_ffff, v2 & 0xffff_ffff)
                    };
                    let got = verdict(&p, abi, "ioctl", &args);
                    let want = if want { errno(7) } else { SECCOMP_RET_ALLOW };
                    assert_eq!(
                        got, want,
                        "{op} {abi:?} arg[{index}]={arg:#x} value={v:#x} valueTwo={v2:#x}"
                    );
                }
            }
        }
    }
}

#[test]
fn seccomp_args_of_one_rule_are_anded() {
    let p = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}
        ]}]
    }));
    assert_eq!(verdict(&p, Abi::X86_64, "kill", &[1, 9]), errno(EPERM));
    assert_eq!(
        verdict(&p, Abi::X86_64, "kill", &[1, 15]),
        SECCOMP_RET_ALLOW
    );
    assert_eq!(verdict(&p, Abi::X86_64, "kill", &[2, 9]), SECCOMP_RET_ALLOW);
}

#[test]
fn seccomp_repeated_arg_index_means_or_like_runc() {
    let p = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 19, "op": "SCMP_CMP_EQ"}
        ]}]
    }));
    assert_eq!(verdict(&p, Abi::X86_64, "kill", &[1, 9]), errno(EPERM));
    assert_eq!(verdict(&p, Abi::X86_64, "kill", &[1, 19]), errno(EPERM));
    assert_eq!(
        verdict(&p, Abi::X86_64, "kill", &[1, 15]),
        SECCOMP_RET_ALLOW
    );
}

#[test]
fn seccomp_rules_for_one_syscall_are_ored_in_order() {
    let p = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_LOG",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_GE"}]}
        ]
    }));
    assert_eq!(
        verdict(&p, Abi::X86_64, "personality", &[0]),
        SECCOMP_RET_ALLOW
    );
    assert_eq!(
        verdict(&p, Abi::X86_64, "personality", &[8]),
        SECCOMP_RET_ALLOW
    );
    assert_eq!(
        verdict(&p, Abi::X86_64, "personality", &[9]),
        SECCOMP_RET_LOG
    );
    assert_eq!(verdict(&p, Abi::X86_64, "personality", &[1]), errno(EPERM));
}

#[test]
fn seccomp_unconditional_rule_overrides_conditional_ones_like_libseccomp() {
    for order in [[0, 1], [1, 0]] {
        let rules = [
            json!({"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                   "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]}),
            json!({"names": ["kill"], "action": "SCMP_ACT_LOG"}),
        ];
        let p = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [rules[order[0]].clone(), rules[order[1]].clone()]
        }));
        assert_eq!(
            verdict(&p, Abi::X86_64, "kill", &[1, 9]),
            SECCOMP_RET_LOG,
            "order {order:?}"
        );
        assert_eq!(
            verdict(&p, Abi::X86_64, "kill", &[1, 15]),
            SECCOMP_RET_LOG,
            "order {order:?}"
        );
    }
}

#[test]
fn seccomp_rules_equal_to_the_default_need_no_code() {
    let bare = compiled(json!({"defaultAction": "SCMP_ACT_ALLOW"}));
    let redundant = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getpid", "mkdir"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}
        ]
    }));
    assert_eq!(bare, redundant);
    // ERRNO with another errno is another action, so it does need a rule.
    let other = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18}]
    }));
    assert_eq!(verdict(&other, Abi::X86_64, "mkdir", &[]), errno(18));
}

#[test]
fn seccomp_x86_socket_and_ipc_rules_also_cover_their_multiplexers() {
    let p = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}]},
            {"names": ["recv", "shmget"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18}
        ]
    }));
    let x86 = Abi::X86;
    assert_eq!(verdict(&p, x86, "socket", &[40]), errno(EPERM));
    assert_eq!(verdict(&p, x86, "socket", &[1]), SECCOMP_RET_ALLOW);
    // socketcall(SYS_SOCKET, args): the selector replaces the test on argument 0.
    assert_eq!(
        verdict(&p, x86, "socketcall", &[1, 0xffd0_0000]),
        errno(EPERM)
    );
    assert_eq!(
        verdict(&p, x86, "socketcall", &[2, 0xffd0_0000]),
        SECCOMP_RET_ALLOW
    );
    // recv exists on x86 only as socketcall(SYS_RECV).
    assert_eq!(verdict(&p, x86, "socketcall", &[10]), errno(18));
    assert_eq!(verdict(&p, x86, "ipc", &[23]), errno(18));
    assert_eq!(verdict(&p, x86, "ipc", &[24]), SECCOMP_RET_ALLOW);
    assert_eq!(verdict(&p, x86, "shmget", &[]), errno(18));
    // 64-bit x86 has no multiplexers.
    assert_eq!(verdict(&p, Abi::X86_64, "shmget", &[]), errno(18));
    assert_eq!(verdict(&p, Abi::X86_64, "socket", &[40]), errno(EPERM));
}

#[test]
fn seccomp_unknown_syscall_names_are_skipped() {
    let p = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["no_such_syscall", "mkdir"], "action": "SCMP_ACT_ERRNO"}]
    }));
    assert_eq!(verdict(&p, Abi::X86_64, "mkdir", &[]), errno(EPERM));
    assert_eq!(verdict(&p, Abi::X86_64, "getpid", &[]), SECCOMP_RET_ALLOW);
}

#[test]
fn seccomp_newer_syscalls_get_enosys_under_a_denying_default() {
    let p = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [{"names": ["getpid", "openat2"], "action": "SCMP_ACT_ALLOW"}]
    }));
    let openat2 = nr(Abi::X86_64, "openat2");
    assert_eq!(verdict_nr(&p, Abi::X86_64, openat2, &[]), SECCOMP_RET_ALLOW);
    assert_eq!(verdict_nr(&p, Abi::X86_64, openat2 - 1, &[]), errno(EPERM));
    assert_eq!(verdict_nr(&p, Abi::X86_64, openat2 + 1, &[]), errno(ENOSYS));
    assert_eq!(verdict_nr(&p, Abi::X86_64, 0x3fff_ffff, &[]), errno(ENOSYS));
    assert_eq!(
        verdict_nr(&p, Abi::X86, nr(Abi::X86, "openat2") + 1, &[]),
        errno(ENOSYS)
    );
    // The highest *named* syscall counts, even when its rule is dropped as redundant.
    let q = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mseal"], "action": "SCMP_ACT_ERRNO"}
        ]
    }));
    assert_eq!(verdict(&q, Abi::X86_64, "mseal", &[]), errno(EPERM));
    assert_eq!(
        verdict_nr(&q, Abi::X86_64, nr(Abi::X86_64, "mseal") + 1, &[]),
        errno(ENOSYS)
    );

    // A permissive default, or one that already says ENOSYS, gets no stub.
    for default in [
        json!({"defaultAction": "SCMP_ACT_ALLOW"}),
        json!({"defaultAction": "SCMP_ACT_LOG"}),
        json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38}),
    ] {
        let mut prof = default.clone();
        prof["syscalls"] = json!([{"names": ["getpid"], "action": "SCMP_ACT_KILL"}]);
        let p = compiled(prof);
        let want = verdict(&p, Abi::X86_64, "mkdir", &[]);
        assert_eq!(verdict_nr(&p, Abi::X86_64, 1000, &[]), want, "{default}");
    }
}

#[test]
fn seccomp_flags_are_passed_to_the_kernel() {
    let p = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                  "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
    }));
    // WAIT_KILLABLE_RECV only means something (and is only accepted) with a listener.
    assert_eq!(
        p.flags(),
        SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_LOG | SECCOMP_FILTER_FLAG_SPEC_ALLOW
    );

    let n = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "listenerPath": "/run/agent.sock",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    assert!(n.has_listener());
    assert_eq!(
        n.flags(),
        SECCOMP_FILTER_FLAG_TSYNC
            | SECCOMP_FILTER_FLAG_TSYNC_ESRCH
            | SECCOMP_FILTER_FLAG_NEW_LISTENER
            | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
    );
}

#[test]
fn seccomp_invalid_profiles_are_errors_naming_the_problem() {
    let err = |v: Value| compile(&profile(v)).unwrap_err();

    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_MIPS"]}));
    assert!(matches!(e, SeccompError::UnsupportedArch(_)));
    assert!(e.to_string().contains("SCMP_ARCH_MIPS"), "{e}");

    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}));
    assert!(
        e.to_string().contains("kill") && e.to_string().contains('6'),
        "{e}"
    );

    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5000}]}));
    assert!(
        e.to_string().contains("5000") && e.to_string().contains("kill"),
        "{e}"
    );

    let e = err(json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
    assert!(matches!(e, SeccompError::NotifyDefault), "{e}");

    let e = err(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
        "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_NOTIFY"}]}),
    );
    assert!(matches!(e, SeccompError::NotifyWrite), "{e}");

    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}));
    assert!(matches!(e, SeccompError::NotifyWithoutListener), "{e}");
    assert!(e.to_string().contains("listenerPath"), "{e}");

    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": [""], "action": "SCMP_ACT_ERRNO"}]}));
    assert!(matches!(e, SeccompError::EmptySyscallName), "{e}");
}

#[test]
fn seccomp_unknown_names_in_config_json_are_rejected_by_name() {
    for (json, bad) in [
        (
            r#"{"defaultAction": "SCMP_ACT_FROBNICATE"}"#,
            "SCMP_ACT_FROBNICATE",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}"#,
            "SCMP_ARCH_VAX",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NOPE"]}"#,
            "SECCOMP_FILTER_FLAG_NOPE",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["kill"],
                "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SIMILAR"}]}]}"#,
            "SCMP_CMP_SIMILAR",
        ),
    ] {
        let e = serde_json::from_str::<LinuxSeccomp>(json).unwrap_err();
        assert!(e.to_string().contains(bad), "{e}");
    }
}

#[test]
fn seccomp_far_jumps_use_trampolines() {
    // Hundreds of syscalls with argument rules push rule blocks far beyond the 255
    // instructions a conditional jump reaches.
    let names: Vec<&str> = super::syscall_table::X86_64
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| *n != "write")
        .take(300)
        .collect();
    let rules: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            json!({"names": [n], "action": "SCMP_ACT_ERRNO", "errnoRet": i % 4000 + 1,
                "args": [{"index": i % 6, "value": i as u64 * 0x1_0000_0001, "op": "SCMP_CMP_EQ"}]})
        })
        .collect();
    let p = compiled(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}));
    assert!(p.instructions().len() > 1000, "{}", p.instructions().len());
    for (i, n) in names.iter().enumerate() {
        let mut args = [0u64; 6];
        args[i % 6] = i as u64 * 0x1_0000_0001;
        assert_eq!(
            verdict(&p, Abi::X86_64, n, &args),
            errno((i % 4000 + 1) as u32),
            "{n}"
        );
        args[i % 6] += 1;
        assert_eq!(verdict(&p, Abi::X86_64, n, &args), SECCOMP_RET_ALLOW, "{n}");
    }
}

#[test]
fn seccomp_too_large_programs_are_refused() {
    let rules: Vec<Value> = super::syscall_table::X86_64
        .iter()
        .filter(|(n, _)| *n != "write")
        .take(250)
        .map(|(n, _)| {
            let args: Vec<Value> = (0..6)
                .map(
                    |i| json!({"index": i, "value": 0x1234_5678_9abc_u64 + i, "op": "SCMP_CMP_EQ"}),
                )
                .collect();
            json!({"names": [n], "action": "SCMP_ACT_KILL", "args": args})
        })
        .collect();
    let e = compile(&profile(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}),
    ))
    .unwrap_err();
    assert!(matches!(e, SeccompError::TooLarge(n) if n > 4096), "{e}");
}

#[test]
fn seccomp_docker_default_profile_is_small_and_correct() {
    let p = compile(&serde_json::from_str(DOCKER_DEFAULT_X86_64).unwrap()).unwrap();
    check_static(p.instructions());
    let len = p.instructions().len();
    assert!(
        len < 1024,
        "Docker's default profile compiled to {len} instructions"
    );

    let x = Abi::X86_64;
    let allow = SECCOMP_RET_ALLOW;
    let deny = errno(EPERM);
    for name in [
        "read",
        "write",
        "openat",
        "execve",
        "exit_group",
        "futex_waitv",
        "arch_prctl",
    ] {
        assert_eq!(verdict(&p, x, name, &[]), allow, "{name}");
    }
    for name in [
        "mount",
        "unshare",
        "setns",
        "bpf",
        "kexec_load",
        "init_module",
        "reboot",
    ] {
        assert_eq!(verdict(&p, x, name, &[]), deny, "{name}");
    }
    let (clone_newns, sigchld) = (0x0002_0000u64, 17u64);
    assert_eq!(verdict(&p, x, "clone", &[sigchld | 0x0100_0f00]), allow);
    assert_eq!(verdict(&p, x, "clone", &[sigchld | clone_newns]), deny);
    assert_eq!(verdict(&p, x, "clone3", &[]), errno(ENOSYS));
    assert_eq!(verdict(&p, x, "personality", &[0xffff_ffff]), allow);
    assert_eq!(verdict(&p, x, "personality", &[0x0040_0000]), deny);
    assert_eq!(verdict(&p, x, "socket", &[libc::AF_UNIX as u64]), allow);
    assert_eq!(verdict(&p, x, "socket", &[libc::AF_VSOCK as u64]), deny);
    // Syscalls newer than the profile: ENOSYS so libc falls back.
    assert_eq!(verdict(&p, x, "mseal", &[]), errno(ENOSYS));
    // 32-bit x86 and x32 processes get the same profile.
    assert_eq!(verdict(&p, Abi::X86, "socketcall", &[]), allow);
    assert_eq!(verdict(&p, Abi::X86, "getpid", &[]), allow);
    assert_eq!(verdict(&p, Abi::X86, "mount", &[]), deny);
    assert_eq!(verdict(&p, Abi::X32, "read", &[]), allow);
    assert_eq!(verdict(&p, Abi::X32, "mount", &[]), deny);
    // Anything else is a foreign arch.
    assert_eq!(
        verdict(&p, Abi::Aarch64, "read", &[]),
        SECCOMP_RET_KILL_THREAD
    );

    // The binary search keeps any syscall's path short.
    let worst = super::syscall_table::X86_64
        .iter()
        .map(|(_, nr)| run(p.instructions(), &Data::new(x.audit_arch(), *nr, &[])).1)
        .max()
        .unwrap();
    assert!(worst <= 16, "the slowest syscall runs {worst} instructions");
}

#[test]
fn seccomp_programs_end_in_ret_and_jump_forward() {
    let p = compile(&serde_json::from_str(DOCKER_DEFAULT_X86_64).unwrap()).unwrap();
    check_static(p.instructions());
    assert_eq!(
        p.instructions()[p.instructions().len() - 1].code & 0x07,
        BPF_RET
    );
}

#[test]
fn seccomp_features_describe_what_compiles() {
    let f = supported();
    let v = serde_json::to_value(&f).unwrap();
    for key in [
        "enabled",
        "actions",
        "operators",
        "archs",
        "knownFlags",
        "supportedFlags",
    ] {
        assert!(v.get(key).is_some(), "features lack {key}: {v}");
    }
    assert_eq!(v["enabled"], json!(true));
    // Everything advertised must be accepted by the compiler.
    for action in &f.actions {
        if action == "SCMP_ACT_NOTIFY" {
            continue;
        }
        compiled(json!({"defaultAction": action}));
    }
    for op in &f.operators {
        compiled(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["kill"],
            "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": op}]}]}),
        );
    }
    for arch in &f.archs {
        compiled(json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [arch]}));
    }
    assert_eq!(
        serde_json::to_value(f.to_oci()).unwrap(),
        v,
        "oci-spec's shape differs"
    );
    assert_eq!(f.actions.len(), 9);
    assert_eq!(f.operators.len(), 7);
    assert!(f.supported_flags.iter().all(|s| f.known_flags.contains(s)));
    // Kernel 4.14+ takes these.
    assert!(f
        .supported_flags
        .contains(&"SECCOMP_FILTER_FLAG_TSYNC".to_owned()));
    assert!(f
        .supported_flags
        .contains(&"SECCOMP_FILTER_FLAG_LOG".to_owned()));
}
