//! The daemon's shared state: the store, the registry client, and the per-layer locks that
//! make concurrent pulls fetch each layer once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::digest::Digest;
use crate::registry::{RegistryClient, RegistryConfig};
use crate::store::{Recovered, Store, StoreError};

pub struct Daemon {
    pub store: Store,
    pub registry: RegistryClient,
    /// `$BERTH_RUN`: the socket and the log live there.
    pub run: PathBuf,
    /// Blobs at least this large are fetched in parallel byte ranges.
    pub range_threshold: u64,
    layers: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
}

impl Daemon {
    pub fn open(
        root: &Path,
        run: &Path,
        registry: RegistryConfig,
    ) -> anyhow::Result<(Daemon, Recovered)> {
        let (store, recovered) = Store::open(root).map_err(|e: StoreError| anyhow::anyhow!(e))?;
        let registry = RegistryClient::new(registry)?;
        Ok((
            Daemon {
                store,
                registry,
                run: run.to_path_buf(),
                range_threshold: 64 << 20,
                layers: Mutex::new(HashMap::new()),
            },
            recovered,
        ))
    }

    /// The lock of one layer (by chain id): held while it is fetched and unpacked.
    pub fn layer_lock(&self, chain: &Digest) -> Arc<tokio::sync::Mutex<()>> {
        self.layers
            .lock()
            .expect("layer lock table")
            .entry(chain.clone())
            .or_default()
            .clone()
    }

    /// Forget a layer's lock once nobody waits on it.
    pub fn release_layer_lock(&self, chain: &Digest) {
        let mut m = self.layers.lock().expect("layer lock table");
        if m.get(chain).is_some_and(|l| Arc::strong_count(l) <= 2) {
            m.remove(chain);
        }
    }
}

/// Now, as RFC 3339 with seconds (`2026-12-05T16:29:19Z`).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
