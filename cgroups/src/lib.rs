//! Control groups for one container on cgroup v1, v2 and hybrid hosts. Shared by
//! berth-runtime (create, update, pause, ps, events) and the shim (Stats, Pids).
