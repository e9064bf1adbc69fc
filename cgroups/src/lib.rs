//! Control groups for one container on cgroup v1, v2 and hybrid hosts. Shared by
//! berth-runtime (create, update, pause, ps, events) and the shim (Stats, Pids).

pub mod bpf;
mod create;
mod detect;
pub mod device_rules;
mod error;
mod freezer;
mod fsio;
mod limits;
mod manager;
mod paths;
mod stats;

pub use detect::{
    detect, own_cgroups, unescape_mountinfo, HostCgroups, Layout, OwnCgroups, UnifiedMount, V1Mount,
};
pub use device_rules::default_allowed as default_device_rules;
pub use error::Error;
pub use freezer::FreezerState;
pub use limits::cpu::shares_to_weight;
pub use limits::io::blkio_weight_to_io;
pub use limits::memory::swap_to_v2;
pub use manager::{CgroupManager, OomSource};
pub use paths::{clean_path, CgroupPaths, SystemdPath};
pub use stats::{
    Blkio, BlkioEntry, Cpu, CpuSet, CpuUsage, Hugetlb, Memory, MemoryEntry, MemoryEvents,
    OomControl, Pids, PsiData, PsiStats, Stats, Throttling,
};
