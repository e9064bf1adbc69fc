//! Control groups for one container on cgroup v1, v2 and hybrid hosts.
//!
//! Contract used by the rest of the runtime (owned by the cgroups module):
//! - `CgroupManager::new(cgroups_path, container_id)` is deterministic: calling it again in a
//!   later short-lived `berth-runtime` command rebuilds the same manager from the same inputs.
//! - `apply(pid)` creates the cgroup(s) and moves `pid` in; `set(resources)` writes limits;
//!   `freeze`/`thaw`, `pids`, `stats`, `destroy`.
