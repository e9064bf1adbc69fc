//! The engine: what the commands (and, later, a Docker Engine API server) call. It owns
//! the roots and the connections to the daemons; output is the commands' business.

pub mod build;
pub mod containers;
pub mod daemons;
pub mod events;
pub mod networking;
pub mod spec;
pub mod volumes;

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Result;
use berth_imaged::client::Client as ImagesClient;
use berth_netd::client::Client as NetworksClient;

pub struct Engine {
    pub root: PathBuf,
    pub run: PathBuf,
    images: Option<ImagesClient>,
    networks: Option<NetworksClient>,
    /// imaged's inspect JSON of images this command already asked about, by image id, so
    /// that `run` asks once (to resolve the name) rather than twice (again to create).
    inspected: HashMap<String, String>,
}

impl Engine {
    /// `BERTH_ROOT` / `BERTH_RUN`, else the system defaults.
    pub fn from_env() -> Engine {
        let var = |k: &str, d: &str| {
            std::env::var_os(k)
                .map(PathBuf::from)
                .unwrap_or_else(|| d.into())
        };
        Engine {
            root: var("BERTH_ROOT", "/var/lib/berth"),
            run: var("BERTH_RUN", "/run/berth"),
            images: None,
            networks: None,
            inspected: HashMap::new(),
        }
    }

    /// The image daemon, started when its socket does not answer.
    pub async fn images(&mut self) -> Result<&mut ImagesClient> {
        if self.images.is_none() {
            let socket = self.run.join("imaged.sock");
            let client = match berth_imaged::client::connect(&socket).await {
                Ok(c) => c,
                Err(_) => {
                    // Nothing answers on it: a dead daemon's file, which would make the
                    // wait below return before the new daemon listens.
                    let _ = std::fs::remove_file(&socket);
                    daemons::spawn("berth-imaged", &self.root, &self.run, &socket, "imaged.log")?;
                    berth_imaged::client::connect(&socket).await?
                }
            };
            self.images = Some(client);
        }
        Ok(self.images.as_mut().expect("connected above"))
    }

    /// The network daemon, started when its socket does not answer. `BERTH_NETD_ARGS`
    /// (words) are added to its command line: a private pool, bridge and table for tests.
    pub async fn networks(&mut self) -> Result<&mut NetworksClient> {
        if self.networks.is_none() {
            let socket = self.run.join("netd.sock");
            let client = match berth_netd::client::connect(&socket).await {
                Ok(c) => c,
                Err(_) => {
                    // As for imaged: a dead daemon's socket file would end the wait early.
                    let _ = std::fs::remove_file(&socket);
                    daemons::spawn("berth-netd", &self.root, &self.run, &socket, "netd.log")?;
                    berth_netd::client::connect(&socket).await?
                }
            };
            self.networks = Some(client);
        }
        Ok(self.networks.as_mut().expect("connected above"))
    }

    /// Keep imaged's inspect JSON of image `id` for the `create` that follows.
    pub fn remember_inspect(&mut self, id: &str, json: String) {
        self.inspected.insert(id.to_string(), json);
    }

    /// The volumes under this root (no daemon: plain files, see `volumes`).
    pub fn volumes(&self) -> volumes::Volumes {
        volumes::Volumes::new(&self.root).with_events(&self.run)
    }
}
