//! Turns an OCI `linux.seccomp` object into per-ABI syscall rules, with the semantics runc
//! gets from libseccomp.

use std::collections::BTreeMap;

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction as Action, LinuxSeccompOperator};

use super::arch::Abi;
use super::SeccompError;

/// What a syscall from an ABI the filter does not list gets: libseccomp's default.
pub const BAD_ARCH: u32 = libc::SECCOMP_RET_KILL_THREAD;

/// The kernel caps errno values at MAX_ERRNO.
const MAX_ERRNO: u32 = 4095;
const SYSCALL_MAX_ARGS: usize = 6;

/// One argument comparison. For SCMP_CMP_MASKED_EQ `value` is the mask and `value_two`
/// the expected result, compared as `(arg & value) == (value_two & value)` as in libseccomp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgCmp {
    pub index: u8,
    pub op: LinuxSeccompOperator,
    pub value: u64,
    pub value_two: u64,
}

impl ArgCmp {
    /// Whether the comparison holds for every argument value on an ABI; libseccomp drops
    /// these (a masked compare under an empty mask), which can leave a rule unconditional.
    fn is_tautology(&self, wide_args: bool) -> bool {
        let mask = if wide_args {
            self.value
        } else {
            self.value & 0xffff_ffff
        };
        self.op == LinuxSeccompOperator::ScmpCmpMaskedEq && mask == 0
    }
}

/// A conditional rule: `action` when every comparison holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub action: u32,
    pub cmps: Vec<ArgCmp>,
}

/// Everything the filter does for one syscall number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyscallRules {
    /// The action, whatever the arguments.
    Always(u32),
    /// Rules tried in order; the first whose comparisons all hold decides, else the
    /// default action.
    Conditional(Vec<Rule>),
}

/// The rules for one ABI.
#[derive(Clone, Debug)]
pub struct AbiRules {
    pub abi: Abi,
    pub syscalls: BTreeMap<u32, SyscallRules>,
    /// Syscall numbers above this one return ENOSYS instead of the default action, so that
    /// programs probing newer syscalls fall back instead of failing (runc's -ENOSYS stub).
    pub enosys_above: Option<u32>,
}

/// A whole profile, ready for code generation.
#[derive(Clone, Debug)]
pub struct Ruleset {
    pub default: u32,
    /// Native ABI first, then the listed ones, each once.
    pub abis: Vec<AbiRules>,
    /// SECCOMP_FILTER_FLAG_* bits to load the filter with.
    pub flags: libc::c_ulong,
}

/// The kernel return value for an OCI action.
fn action_value(action: Action, errno_ret: Option<u32>, whose: &str) -> Result<u32, SeccompError> {
    let data = |max: u32| -> Result<u32, SeccompError> {
        let v = errno_ret.unwrap_or(libc::EPERM as u32);
        if v > max {
            return Err(SeccompError::ErrnoRet {
                whose: whose.to_owned(),
                value: v,
                max,
            });
        }
        Ok(v)
    };
    Ok(match action {
        Action::ScmpActKill | Action::ScmpActKillThread => libc::SECCOMP_RET_KILL_THREAD,
        Action::ScmpActKillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        Action::ScmpActTrap => libc::SECCOMP_RET_TRAP,
        Action::ScmpActErrno => libc::SECCOMP_RET_ERRNO | data(MAX_ERRNO)?,
        Action::ScmpActTrace => libc::SECCOMP_RET_TRACE | data(libc::SECCOMP_RET_DATA)?,
        Action::ScmpActLog => libc::SECCOMP_RET_LOG,
        Action::ScmpActAllow => libc::SECCOMP_RET_ALLOW,
        Action::ScmpActNotify => libc::SECCOMP_RET_USER_NOTIF,
    })
}

/// Whether unknown-but-newer syscalls should get ENOSYS rather than the default action.
/// runc leaves permissive defaults alone (a tracer handles ENOSYS itself).
fn wants_enosys(s: &LinuxSeccomp, default: u32) -> bool {
    let permissive = matches!(
        s.default_action(),
        Action::ScmpActAllow | Action::ScmpActLog | Action::ScmpActTrace
    );
    !permissive && default != libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
}

/// The ABIs a filter covers: the native one always (libseccomp starts from it), then the
/// listed ones in order.
fn abis(s: &LinuxSeccomp) -> Result<Vec<Abi>, SeccompError> {
    let mut out = vec![Abi::native()?];
    for arch in s.architectures().iter().flatten() {
        let abi = Abi::from_oci(*arch)?;
        if !out.contains(&abi) {
            out.push(abi);
        }
    }
    Ok(out)
}

/// Comparison groups for one OCI syscall entry. Like runc: several comparisons on the same
/// argument index are ORed (one rule each), otherwise all comparisons are ANDed in one rule.
fn cmp_groups(
    name: &str,
    s: &oci_spec::runtime::LinuxSyscall,
) -> Result<Vec<Vec<ArgCmp>>, SeccompError> {
    let mut cmps = Vec::new();
    let mut per_index = [0usize; SYSCALL_MAX_ARGS];
    for a in s.args().iter().flatten() {
        if a.index() >= SYSCALL_MAX_ARGS {
            return Err(SeccompError::ArgIndex {
                syscall: name.to_owned(),
                index: a.index(),
            });
        }
        per_index[a.index()] += 1;
        cmps.push(ArgCmp {
            index: a.index() as u8,
            op: a.op(),
            value: a.value(),
            value_two: a.value_two().unwrap_or(0),
        });
    }
    if cmps.is_empty() {
        Ok(vec![Vec::new()])
    } else if per_index.iter().any(|&n| n > 1) {
        Ok(cmps.into_iter().map(|c| vec![c]).collect())
    } else {
        Ok(vec![cmps])
    }
}

/// Adds one rule the way libseccomp merges them: an unconditional rule overrides any
/// conditional ones, and the first unconditional rule for a syscall stays.
fn add_rule(map: &mut BTreeMap<u32, SyscallRules>, nr: u32, rule: Rule) {
    use std::collections::btree_map::Entry;
    match map.entry(nr) {
        Entry::Vacant(e) => {
            e.insert(if rule.cmps.is_empty() {
                SyscallRules::Always(rule.action)
            } else {
                SyscallRules::Conditional(vec![rule])
            });
        }
        Entry::Occupied(mut e) => match e.get_mut() {
            SyscallRules::Always(_) => {}
            SyscallRules::Conditional(rules) => {
                if rule.cmps.is_empty() {
                    *e.get_mut() = SyscallRules::Always(rule.action);
                } else if !rules.contains(&rule) {
                    rules.push(rule);
                }
            }
        },
    }
}

/// The rule libseccomp derives for a multiplexer (socketcall, ipc): argument 0 must select
/// the call, replacing any comparison the profile made on it; the others stay as written.
fn muxed_rule(action: u32, cmps: &[ArgCmp], call: u64) -> Rule {
    let select = ArgCmp {
        index: 0,
        op: LinuxSeccompOperator::ScmpCmpEq,
        value: call,
        value_two: 0,
    };
    let rest = cmps.iter().filter(|c| c.index != 0).copied();
    Rule {
        action,
        cmps: std::iter::once(select).chain(rest).collect(),
    }
}

/// SECCOMP_FILTER_FLAG_* bits for a profile; `listener` says whether a rule notifies.
fn filter_flags(s: &LinuxSeccomp, listener: bool) -> Result<libc::c_ulong, SeccompError> {
    use oci_spec::runtime::LinuxSeccompFilterFlag as F;
    let mut flags = 0;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            F::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            F::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            F::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            // The kernel only accepts it together with a listener; without one it means nothing.
            F::SeccompFilterFlagWaitKillableRecv if listener => {
                libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
            }
            F::SeccompFilterFlagWaitKillableRecv => 0,
        };
    }
    if !listener {
        return Ok(flags);
    }
    let path = s.listener_path().as_deref();
    if path.is_none_or(|p| p.as_os_str().is_empty()) {
        // The fd would have nowhere to go and notified syscalls would block for good.
        return Err(SeccompError::NotifyWithoutListener);
    }
    flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
    // TSYNC alone would report a failed sync as a thread id, which collides with the
    // listener fd the same call returns; TSYNC_ESRCH makes it an error instead.
    if flags & libc::SECCOMP_FILTER_FLAG_TSYNC != 0 {
        flags |= libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
    }
    Ok(flags)
}

/// Resolves a profile into rules per ABI, the ENOSYS cut-offs and the filter flags.
pub fn build(s: &LinuxSeccomp) -> Result<Ruleset, SeccompError> {
    if s.default_action() == Action::ScmpActNotify {
        return Err(SeccompError::NotifyDefault);
    }
    let default = action_value(s.default_action(), s.default_errno_ret(), "defaultAction")?;
    let abis = abis(s)?;
    let mut tables: Vec<AbiRules> = abis
        .iter()
        .map(|&abi| AbiRules {
            abi,
            syscalls: BTreeMap::new(),
            enosys_above: None,
        })
        .collect();
    let mut listener = false;
    let mut highest: Vec<Option<u32>> = vec![None; abis.len()];

    for entry in s.syscalls().iter().flatten() {
        let notify = entry.action() == Action::ScmpActNotify;
        listener |= notify;
        for name in entry.names() {
            if name.is_empty() {
                return Err(SeccompError::EmptySyscallName);
            }
            if notify && name == "write" {
                return Err(SeccompError::NotifyWrite);
            }
            let action = action_value(entry.action(), entry.errno_ret(), name)?;
            let groups = cmp_groups(name, entry)?;
            let mut known = false;
            for (i, t) in tables.iter_mut().enumerate() {
                let direct = t.abi.syscall(name);
                let muxed = t.abi.multiplexed(name);
                if direct.is_none() && muxed.is_none() {
                    continue;
                }
                known = true;
                highest[i] = highest[i].max(direct);
                // libseccomp refuses rules that repeat the default; runc skips them.
                if action == default {
                    continue;
                }
                let wide = t.abi.wide_args();
                for cmps in &groups {
                    let cmps: Vec<ArgCmp> = cmps
                        .iter()
                        .filter(|c| !c.is_tautology(wide))
                        .copied()
                        .collect();
                    if let Some(nr) = direct {
                        let rule = Rule {
                            action,
                            cmps: cmps.clone(),
                        };
                        add_rule(&mut t.syscalls, nr, rule);
                    }
                    if let Some((mux, call)) = muxed {
                        add_rule(&mut t.syscalls, mux, muxed_rule(action, &cmps, call));
                    }
                }
            }
            if !known {
                tracing::debug!(syscall = %name, "seccomp: syscall unknown on every filtered architecture, skipped");
            }
        }
    }

    if wants_enosys(s, default) {
        for (t, max) in tables.iter_mut().zip(highest) {
            t.enosys_above = max;
        }
    }

    let flags = filter_flags(s, listener)?;

    Ok(Ruleset {
        default,
        abis: tables,
        flags,
    })
}
