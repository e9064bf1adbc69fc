//! containerd's Task service (ttrpc) over `Service`: request checks, replies and events.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use containerd_shim_protos::api::{self, Status};
use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::topics;
use containerd_shim_protos::Task;
use nix::sys::signal::Signal;
use ttrpc::{Code, TtrpcContext};

use super::{internal, status_err, ts, Service};
use crate::mount::unmount_all;
use crate::options::process_details;
use crate::process::Proc;
use crate::reaper::Exit;
use crate::stdio::StdioSpec;

/// The exit Delete reports: the recorded one, or status 0 now for a process that never ran.
fn final_exit(exit: Option<Exit>) -> Exit {
    exit.unwrap_or(Exit {
        code: 0,
        at: SystemTime::now(),
    })
}

fn delete_response(pid: u32, exit: Exit) -> api::DeleteResponse {
    api::DeleteResponse {
        pid,
        exit_status: exit.code,
        exited_at: ts(exit.at),
        ..Default::default()
    }
}

/// The Task service as ttrpc sees it; a thin shell over `Service`.
pub struct TaskService(pub Arc<Service>);

impl Task for TaskService {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> ttrpc::Result<api::CreateTaskResponse> {
        let _working = crate::footprint::Working::begin();
        let s = &self.0;
        if s.init().is_some() {
            return Err(status_err(
                Code::ALREADY_EXISTS,
                format!("container {} already exists", req.id),
            ));
        }
        tracing::info!(id = req.id, bundle = req.bundle, "create");
        let pid = s.do_create(&req).map_err(|e| {
            if s.rootfs_mounted.swap(false, Ordering::SeqCst) {
                unmount_all(&s.bundle.join("rootfs"));
            }
            internal(e)
        })?;
        s.start_health();
        s.publisher.publish(
            topics::TASK_CREATE_EVENT_TOPIC,
            &ev::TaskCreate {
                container_id: s.ctx.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: MessageField::some(ev::TaskIO {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                    ..Default::default()
                }),
                pid,
                ..Default::default()
            },
        );
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> ttrpc::Result<api::StartResponse> {
        let _working = crate::footprint::Working::begin();
        let s = &self.0;
        let proc = s.process(&req.exec_id)?;
        if proc.is_init() {
            // Marked started before the runtime call: an init that exits at once must
            // already count as started for the restart policy.
            proc.state().started_at = Some(SystemTime::now());
            if let Err(e) = s.runtime().and_then(|r| r.start(&s.ctx.id)) {
                proc.state().started_at = None;
                return Err(internal(e));
            }
            let pid = {
                let mut st = proc.state();
                if st.exit.is_none() {
                    st.status = Status::RUNNING;
                }
                st.pid
            };
            s.write_status(&proc);
            s.publisher.publish(
                topics::TASK_START_EVENT_TOPIC,
                &ev::TaskStart {
                    container_id: s.ctx.id.clone(),
                    pid,
                    ..Default::default()
                },
            );
            return Ok(api::StartResponse {
                pid,
                ..Default::default()
            });
        }
        if proc.state().pid != 0 {
            return Err(status_err(
                Code::FAILED_PRECONDITION,
                format!("process {} already started", req.exec_id),
            ));
        }
        let pid = s.start_exec(&proc).map_err(internal)?;
        s.publisher.publish(
            topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            &ev::TaskExecStarted {
                container_id: s.ctx.id.clone(),
                exec_id: req.exec_id.clone(),
                pid,
                ..Default::default()
            },
        );
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> ttrpc::Result<api::DeleteResponse> {
        let _working = crate::footprint::Working::begin();
        let s = &self.0;
        let proc = s.process(&req.exec_id)?;
        let st = proc.state().clone();
        if !proc.is_init() {
            if st.pid != 0 && st.exit.is_none() {
                return Err(status_err(
                    Code::FAILED_PRECONDITION,
                    format!("process {} is still running", req.exec_id),
                ));
            }
            s.execs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&req.exec_id);
            return Ok(delete_response(st.pid, final_exit(st.exit)));
        }
        if st.exit.is_none() && st.status != Status::CREATED {
            return Err(status_err(
                Code::FAILED_PRECONDITION,
                format!("container {} is still running: stop it first", s.ctx.id),
            ));
        }
        proc.state().stopped_by_user = true;
        proc.notify();
        s.runtime()
            .and_then(|r| r.delete(&s.ctx.id, st.status == Status::CREATED))
            .map_err(internal)?;
        if st.exit.is_none() {
            // A created container the runtime just killed: its exit is on the way.
            proc.wait_timeout(Duration::from_secs(5));
        }
        // Stops the OOM watch: the cgroup it watched is gone.
        proc.cgroup.lock().unwrap_or_else(|e| e.into_inner()).take();
        if s.rootfs_mounted.swap(false, Ordering::SeqCst) {
            unmount_all(&s.bundle.join("rootfs"));
        }
        let _ = std::fs::remove_file(&proc.pid_file);
        let exit = final_exit(proc.state().exit);
        *s.init.lock().unwrap_or_else(|e| e.into_inner()) = None;
        s.publisher.publish(
            topics::TASK_DELETE_EVENT_TOPIC,
            &ev::TaskDelete {
                container_id: s.ctx.id.clone(),
                pid: st.pid,
                exit_status: exit.code,
                exited_at: ts(exit.at),
                id: s.ctx.id.clone(),
                ..Default::default()
            },
        );
        Ok(delete_response(st.pid, exit))
    }

    fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> ttrpc::Result<Empty> {
        let _working = crate::footprint::Working::begin();
        let s = &self.0;
        let init = s.process("")?;
        if init.state().exit.is_some() {
            return Err(status_err(
                Code::FAILED_PRECONDITION,
                format!("container {} is not running", s.ctx.id),
            ));
        }
        let mut execs = s.execs.lock().unwrap_or_else(|e| e.into_inner());
        if execs.contains_key(&req.exec_id) {
            return Err(status_err(
                Code::ALREADY_EXISTS,
                format!("process {} already exists", req.exec_id),
            ));
        }
        let spec = req.spec.as_ref().map(|a| a.value.clone());
        let proc = Arc::new(Proc::new(
            &req.exec_id,
            StdioSpec {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            },
            spec,
            s.bundle.join(format!("exec-{}.pid", req.exec_id)),
        ));
        execs.insert(req.exec_id.clone(), proc);
        drop(execs);
        s.publisher.publish(
            topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            &ev::TaskExecAdded {
                container_id: s.ctx.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            },
        );
        Ok(Empty::new())
    }

    fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> ttrpc::Result<api::StateResponse> {
        let _working = crate::footprint::Working::begin();
        let s = &self.0;
        let proc = s.process(&req.exec_id)?;
        let st = proc.state().clone();
        let status = if st.exit.is_some() {
            Status::STOPPED
        } else {
            st.status
        };
        Ok(api::StateResponse {
            id: s.process_id(&proc),
            bundle: s.bundle.display().to_string(),
            pid: st.pid,
            status: status.into(),
            stdin: proc.stdio.stdin.clone(),
            stdout: proc.stdio.stdout.clone(),
            stderr: proc.stdio.stderr.clone(),
            terminal: proc.stdio.terminal,
            exit_status: st.exit.map(|e| e.code).unwrap_or(0),
            exited_at: st.exit.map(|e| ts(e.at)).unwrap_or_default(),
            exec_id: proc.exec_id.clone(),
            ..Default::default()
        })
    }

    fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> ttrpc::Result<api::WaitResponse> {
        let _working = crate::footprint::Working::begin();
        let proc = self.0.process(&req.exec_id)?;
        let exit = proc.wait();
        Ok(api::WaitResponse {
            exit_status: exit.code,
            exited_at: ts(exit.at),
            ..Default::default()
        })
    }

    fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> ttrpc::Result<Empty> {
        let _working = crate::footprint::Working::begin();
        let s = &self.0;
        let proc = s.process(&req.exec_id)?;
        if proc.is_init() {
            if req.signal == 0 {
                s.stop(proc).map_err(internal)?;
                return Ok(Empty::new());
            }
            if s.ends_the_container(req.signal) {
                let restarting = {
                    let mut st = proc.state();
                    st.stopped_by_user = true;
                    st.restarting
                };
                proc.notify();
                if restarting {
                    // Between runs: the restart thread sees the stop and ends it.
                    return Ok(Empty::new());
                }
            }
            if proc.state().exit.is_some() && !req.all {
                return Err(status_err(
                    Code::NOT_FOUND,
                    format!("container {}: process already finished", s.ctx.id),
                ));
            }
            s.runtime()
                .and_then(|r| r.kill(&s.ctx.id, req.signal, req.all))
                .map_err(internal)?;
            return Ok(Empty::new());
        }
        let st = proc.state().clone();
        if st.exit.is_some() || st.pid == 0 {
            return Err(status_err(
                Code::NOT_FOUND,
                format!("process {}: not running", req.exec_id),
            ));
        }
        let sig = Signal::try_from(req.signal as i32).map_err(|e| {
            status_err(
                Code::INVALID_ARGUMENT,
                format!("signal {}: {e}", req.signal),
            )
        })?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(st.pid as i32), sig).map_err(|e| {
            status_err(
                Code::UNKNOWN,
                format!("signal process {} (pid {}): {e}", req.exec_id, st.pid),
            )
        })?;
        Ok(Empty::new())
    }

    fn pids(
        &self,
        _ctx: &TtrpcContext,
        _req: api::PidsRequest,
    ) -> ttrpc::Result<api::PidsResponse> {
        let _working = crate::footprint::Working::begin();
        let s = &self.0;
        let pids = s
            .runtime()
            .and_then(|r| r.ps(&s.ctx.id))
            .map_err(internal)?;
        // Running exec'd processes by pid, to name them as containerd's runc shim does.
        let execs: HashMap<u32, String> = s
            .execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter_map(|p| {
                let st = p.state();
                (st.pid != 0 && st.exit.is_none()).then(|| (st.pid, p.exec_id.clone()))
            })
            .collect();
        Ok(api::PidsResponse {
            processes: pids
                .into_iter()
                .map(|pid| containerd_shim_protos::types::task::ProcessInfo {
                    pid,
                    info: execs
                        .get(&pid)
                        .map(|id| MessageField::some(process_details(id)))
                        .unwrap_or_default(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    fn pause(&self, _ctx: &TtrpcContext, _req: api::PauseRequest) -> ttrpc::Result<Empty> {
        let _working = crate::footprint::Working::begin();
        let s = &self.0;
        let proc = s.process("")?;
        s.runtime()
            .and_then(|r| r.pause(&s.ctx.id))
            .map_err(internal)?;
        proc.state().status = Status::PAUSED;
        s.write_status(&proc);
        s.publisher.publish(
            topics::TASK_PAUSED_EVENT_TOPIC,
            &ev::TaskPaused {
                container_id: s.ctx.id.clone(),
                ..Default::default()
            },
        );
        Ok(Empty::new())
    }

    fn resume(&self, _ctx: &TtrpcContext, _req: api::ResumeRequest) -> ttrpc::Result<Empty> {
        let _working = crate::footprint::Working::begin();
        let s = &self.0;
        let proc = s.process("")?;
        s.runtime()
            .and_then(|r| r.resume(&s.ctx.id))
            .map_err(internal)?;
        proc.state().status = Status::RUNNING;
        s.write_status(&proc);
        s.publisher.publish(
            topics::TASK_RESUMED_EVENT_TOPIC,
            &ev::TaskResumed {
                container_id: s.ctx.id.clone(),
                ..Default::default()
            },
        );
        Ok(Empty::new())
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: api::ResizePtyRequest) -> ttrpc::Result<Empty> {
        let _working = crate::footprint::Working::begin();
        let proc = self.0.process(&req.exec_id)?;
        let io = proc.io.lock().unwrap_or_else(|e| e.into_inner());
        let console = io
            .as_ref()
            .and_then(|io| io.console.as_ref())
            .ok_or_else(|| status_err(Code::FAILED_PRECONDITION, "process has no terminal"))?;
        crate::stdio::resize(console, req.width, req.height).map_err(internal)?;
        Ok(Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> ttrpc::Result<Empty> {
        let _working = crate::footprint::Working::begin();
        let proc = self.0.process(&req.exec_id)?;
        if req.stdin {
            let io = proc.io.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(io) = io.as_ref() {
                io.close_stdin();
            }
        }
        Ok(Empty::new())
    }

    fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> ttrpc::Result<Empty> {
        let _working = crate::footprint::Working::begin();
        let s = &self.0;
        let resources = req
            .resources
            .as_ref()
            .ok_or_else(|| status_err(Code::INVALID_ARGUMENT, "update without resources"))?;
        s.runtime()
            .and_then(|r| r.update(&s.ctx.id, &resources.value))
            .map_err(internal)?;
        Ok(Empty::new())
    }

    fn stats(
        &self,
        _ctx: &TtrpcContext,
        _req: api::StatsRequest,
    ) -> ttrpc::Result<api::StatsResponse> {
        let _working = crate::footprint::Working::begin();
        let s = &self.0;
        let proc = s.process("")?;
        let st = proc.state().clone();
        if st.exit.is_some() || st.pid == 0 {
            return Err(status_err(
                Code::FAILED_PRECONDITION,
                format!("container {} is not running", s.ctx.id),
            ));
        }
        let known = proc
            .cgroup
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let stats = match known {
            Some(c) => c.metrics(),
            None => crate::stats::collect(st.pid),
        }
        .map_err(internal)?;
        Ok(api::StatsResponse {
            stats: MessageField::some(stats),
            ..Default::default()
        })
    }

    fn connect(
        &self,
        _ctx: &TtrpcContext,
        _req: api::ConnectRequest,
    ) -> ttrpc::Result<api::ConnectResponse> {
        let _working = crate::footprint::Working::begin();
        let s = &self.0;
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: s.init().map(|p| p.state().pid).unwrap_or(0),
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, req: api::ShutdownRequest) -> ttrpc::Result<Empty> {
        let _working = crate::footprint::Working::begin();
        let s = &self.0;
        if s.init().is_some() && !req.now {
            return Ok(Empty::new());
        }
        tracing::info!("shutdown");
        s.exit_soon();
        Ok(Empty::new())
    }
}
