//! The container's shim: started in the bundle with the shim's `start` action, then driven
//! over ttrpc with containerd's Task API (see shim/README.md, "Using the shim from Berth").

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use containerd_shim_protos::api;
use containerd_shim_protos::TaskClient;
use ttrpc::context::Context;

use super::ContainerError;
use crate::engine::daemons::sibling_binary;

pub const SHIM_BINARY: &str = "containerd-shim-berth-v2";
/// The shim's namespace for Berth's own containers (containerd's would be `default`).
pub const NAMESPACE: &str = "berth";

fn ctx() -> Context {
    ttrpc::context::with_timeout(0)
}

fn shim_err(op: &'static str) -> impl Fn(ttrpc::Error) -> ContainerError {
    move |e| ContainerError::Shim {
        op,
        message: match e {
            ttrpc::Error::RpcStatus(s) => s.message().to_string(),
            other => other.to_string(),
        },
    }
}

pub struct Shim {
    id: String,
    client: TaskClient,
}

impl Shim {
    /// Start a shim for the bundle (or find the live one) and connect to it.
    /// The roots go into its environment for the exit command (`berth container cleanup`).
    pub fn start(id: &str, bundle: &Path, root: &Path, run: &Path) -> Result<Shim, ContainerError> {
        let out = Command::new(sibling_binary(SHIM_BINARY))
            .args(["-namespace", NAMESPACE, "-id", id, "start"])
            .current_dir(bundle)
            .env("BERTH_SHIM_RUNTIME", sibling_binary("berth-runtime"))
            .env("BERTH_ROOT", root)
            .env("BERTH_RUN", run)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| ContainerError::Shim {
                op: "start",
                message: format!("run {SHIM_BINARY}: {e}"),
            })?;
        if !out.status.success() {
            return Err(ContainerError::Shim {
                op: "start",
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let address = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Shim::connect_to(id, &address)
    }

    fn connect_to(id: &str, address: &str) -> Result<Shim, ContainerError> {
        let client = ttrpc::Client::connect(address).map_err(shim_err("connect"))?;
        Ok(Shim {
            id: id.to_string(),
            client: TaskClient::new(client),
        })
    }

    /// The running shim of this container, if one answers on its socket.
    pub fn connect(id: &str, socket: &Path) -> Option<Shim> {
        if !socket.exists() {
            return None;
        }
        let shim = Shim::connect_to(id, &format!("unix://{}", socket.display())).ok()?;
        // A socket file can outlive its shim: ask before trusting it.
        shim.client
            .connect(
                ctx(),
                &api::ConnectRequest {
                    id: id.to_string(),
                    ..Default::default()
                },
            )
            .ok()?;
        Some(shim)
    }

    pub fn create(
        &self,
        bundle: &Path,
        rootfs: Vec<containerd_shim_protos::types::mount::Mount>,
        terminal: bool,
    ) -> Result<u32, ContainerError> {
        let req = api::CreateTaskRequest {
            id: self.id.clone(),
            bundle: bundle.display().to_string(),
            rootfs,
            terminal,
            ..Default::default()
        };
        Ok(self
            .client
            .create(ctx(), &req)
            .map_err(shim_err("create"))?
            .pid)
    }

    pub fn start_process(&self, exec_id: &str) -> Result<u32, ContainerError> {
        let req = api::StartRequest {
            id: self.id.clone(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        Ok(self
            .client
            .start(ctx(), &req)
            .map_err(shim_err("start"))?
            .pid)
    }

    /// Block until the process ends; its exit status (128 + signal for a signal).
    pub fn wait(&self, exec_id: &str) -> Result<u32, ContainerError> {
        let req = api::WaitRequest {
            id: self.id.clone(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        Ok(self
            .client
            .wait(ctx(), &req)
            .map_err(shim_err("wait"))?
            .exit_status)
    }

    /// Signal 0 on the init means stop: the stop signal, then SIGKILL after the timeout.
    pub fn kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<(), ContainerError> {
        let req = api::KillRequest {
            id: self.id.clone(),
            exec_id: exec_id.to_string(),
            signal,
            all,
            ..Default::default()
        };
        self.client.kill(ctx(), &req).map_err(shim_err("kill"))?;
        Ok(())
    }

    pub fn state(&self, exec_id: &str) -> Result<api::StateResponse, ContainerError> {
        let req = api::StateRequest {
            id: self.id.clone(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        self.client.state(ctx(), &req).map_err(shim_err("state"))
    }

    pub fn delete(&self, exec_id: &str) -> Result<(), ContainerError> {
        let req = api::DeleteRequest {
            id: self.id.clone(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        self.client
            .delete(ctx(), &req)
            .map_err(shim_err("delete"))?;
        Ok(())
    }

    pub fn shutdown(&self) {
        let req = api::ShutdownRequest {
            id: self.id.clone(),
            now: true,
            ..Default::default()
        };
        // The shim exits while answering; a broken connection is success here.
        let _ = self.client.shutdown(ctx(), &req);
    }

    /// Shut the shim down and wait (up to 5 s) until its process is gone: a new shim for
    /// the same container would otherwise find the old one's socket still answering and
    /// hand its Create to a shim on its way out.
    pub fn shutdown_and_wait(&self, bundle: &Path) {
        let pid = pid_of(bundle);
        self.shutdown();
        if let Some(pid) = pid {
            wait_gone(pid);
        }
    }

    pub fn pause(&self) -> Result<(), ContainerError> {
        let req = api::PauseRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        self.client.pause(ctx(), &req).map_err(shim_err("pause"))?;
        Ok(())
    }

    pub fn resume(&self) -> Result<(), ContainerError> {
        let req = api::ResumeRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        self.client
            .resume(ctx(), &req)
            .map_err(shim_err("resume"))?;
        Ok(())
    }

    pub fn pids(&self) -> Result<Vec<u32>, ContainerError> {
        let req = api::PidsRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        Ok(self
            .client
            .pids(ctx(), &req)
            .map_err(shim_err("pids"))?
            .processes
            .iter()
            .map(|p| p.pid)
            .collect())
    }

    pub fn resize(&self, exec_id: &str, width: u32, height: u32) -> Result<(), ContainerError> {
        let req = api::ResizePtyRequest {
            id: self.id.clone(),
            exec_id: exec_id.to_string(),
            width,
            height,
            ..Default::default()
        };
        self.client
            .resize_pty(ctx(), &req)
            .map_err(shim_err("resize"))?;
        Ok(())
    }

    pub fn close_stdin(&self, exec_id: &str) -> Result<(), ContainerError> {
        let req = api::CloseIORequest {
            id: self.id.clone(),
            exec_id: exec_id.to_string(),
            stdin: true,
            ..Default::default()
        };
        self.client
            .close_io(ctx(), &req)
            .map_err(shim_err("close stdin"))?;
        Ok(())
    }

    /// Change the running container's resources: an OCI `LinuxResources` JSON.
    pub fn update(&self, resources_json: &[u8]) -> Result<(), ContainerError> {
        let mut any = containerd_shim_protos::protobuf::well_known_types::any::Any::new();
        any.type_url = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into();
        any.value = resources_json.to_vec();
        let req = api::UpdateTaskRequest {
            id: self.id.clone(),
            resources: containerd_shim_protos::protobuf::MessageField::some(any),
            ..Default::default()
        };
        self.client
            .update(ctx(), &req)
            .map_err(shim_err("update"))?;
        Ok(())
    }

    /// Exec a process described by an OCI `process` JSON, with stdio paths (FIFOs).
    pub fn exec(
        &self,
        exec_id: &str,
        process_json: &[u8],
        stdio: [&str; 3],
        terminal: bool,
    ) -> Result<(), ContainerError> {
        let mut spec = containerd_shim_protos::protobuf::well_known_types::any::Any::new();
        spec.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process".into();
        spec.value = process_json.to_vec();
        let req = api::ExecProcessRequest {
            id: self.id.clone(),
            exec_id: exec_id.to_string(),
            terminal,
            stdin: stdio[0].to_string(),
            stdout: stdio[1].to_string(),
            stderr: stdio[2].to_string(),
            spec: containerd_shim_protos::protobuf::MessageField::some(spec),
            ..Default::default()
        };
        self.client.exec(ctx(), &req).map_err(shim_err("exec"))?;
        Ok(())
    }
}

/// Clean up after a shim that died: force-delete the container with the runtime and
/// unmount its rootfs, as containerd does with the shim's `delete` action.
pub fn delete_dead(id: &str, bundle: &Path) {
    let _ = Command::new(sibling_binary(SHIM_BINARY))
        .args(["-namespace", NAMESPACE, "-id", id, "-bundle"])
        .arg(bundle)
        .arg("delete")
        .current_dir(bundle)
        .env("BERTH_SHIM_RUNTIME", sibling_binary("berth-runtime"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The pid of the bundle's shim, from the file its `start` action wrote.
pub fn pid_of(bundle: &Path) -> Option<u32> {
    std::fs::read_to_string(bundle.join("shim.pid"))
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
}

/// Wait (up to 5 s) until shim process `pid` is gone (it lingers a moment after Shutdown).
pub fn wait_gone(pid: u32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while Path::new(&format!("/proc/{pid}")).exists() && std::time::Instant::now() < deadline {
        // A zombie until its parent reaps it: gone as far as we are concerned.
        if std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
            .unwrap_or(true)
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

pub fn socket(run: &Path, id: &str) -> PathBuf {
    run.join("shim")
        .join(format!("{}.sock", &id[..16.min(id.len())]))
}
