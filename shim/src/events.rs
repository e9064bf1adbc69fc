//! Task events for containerd, sent the way containerd's own shims did before ttrpc
//! publishing: `<publish-binary> --address <address> publish --topic <t> --namespace <ns>`
//! with the event, wrapped in an `Any`, on stdin. One thread sends them in order.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;

use crate::reaper;

/// Cheap to clone: every clone feeds the same queue and thread, so order is kept.
#[derive(Clone)]
pub struct Publisher {
    tx: Option<Sender<(&'static str, Any)>>,
    pending: Pending,
}

/// Events queued but not yet handed to containerd. The shim waits for this to reach zero
/// before it exits, or TaskDelete — sent just before containerd asks it to shut down —
/// would be lost.
#[derive(Clone, Default)]
pub struct Pending(Arc<(Mutex<usize>, Condvar)>);

impl Pending {
    fn add(&self) {
        *self.0 .0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }

    fn done(&self) {
        let mut n = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
        self.0 .1.notify_all();
    }

    /// Wait until every queued event has been sent, for at most `timeout`.
    pub fn wait_idle(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut n = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!("{} events still unsent at exit", *n);
                return;
            }
            n = match self.0 .1.wait_timeout(n, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

impl Publisher {
    /// A publisher that drops events when containerd gave no publish binary (Berth's CLI).
    pub fn new(binary: &str, address: &str, namespace: &str) -> Result<Publisher> {
        if binary.is_empty() || address.is_empty() {
            return Ok(Publisher {
                tx: None,
                pending: Pending::default(),
            });
        }
        let pending = Pending::default();
        let sent = pending.clone();
        let (tx, rx) = channel::<(&'static str, Any)>();
        let (binary, address, namespace) = (
            binary.to_string(),
            address.to_string(),
            namespace.to_string(),
        );
        crate::threads::spawn("events", move || {
            for (topic, any) in rx {
                if let Err(e) = send(&binary, &address, &namespace, topic, &any) {
                    tracing::warn!("publish {topic}: {e:#}");
                }
                sent.done();
            }
        })?;
        Ok(Publisher {
            tx: Some(tx),
            pending,
        })
    }

    /// A handle to wait on the queue with, usable after the publisher is borrowed away.
    pub fn pending(&self) -> Pending {
        self.pending.clone()
    }

    pub fn publish<M: Message + EventType>(&self, topic: &'static str, event: &M) {
        let Some(tx) = &self.tx else { return };
        let any = Any {
            type_url: M::TYPE_URL.to_string(),
            value: match event.write_to_bytes() {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!("encode {topic} event: {e}");
                    return;
                }
            },
            ..Default::default()
        };
        self.pending.add();
        if tx.send((topic, any)).is_err() {
            self.pending.done();
        }
    }
}

/// The type URL containerd files an event under. Spelled out rather than taken from the
/// protobuf descriptors: building those costs hundreds of KiB of heap for good.
pub trait EventType {
    const TYPE_URL: &'static str;
}

macro_rules! event_types {
    ($($t:ident),*) => {
        $(impl EventType for ev::$t {
            const TYPE_URL: &'static str = concat!("containerd.events.", stringify!($t));
        })*
    };
}

event_types!(
    TaskCreate,
    TaskStart,
    TaskExit,
    TaskDelete,
    TaskExecAdded,
    TaskExecStarted,
    TaskPaused,
    TaskResumed,
    TaskOOM
);

fn send(binary: &str, address: &str, namespace: &str, topic: &str, any: &Any) -> Result<()> {
    use anyhow::{bail, Context};
    let data = any.write_to_bytes()?;
    let mut cmd = Command::new(binary);
    cmd.args([
        "--address",
        address,
        "publish",
        "--topic",
        topic,
        "--namespace",
        namespace,
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = reaper::global()
        .spawn(&mut cmd)
        .with_context(|| format!("run {binary}"))?;
    if let Some(mut stdin) = child.child.stdin.take() {
        stdin.write_all(&data).context("write event")?;
    }
    let mut err = String::new();
    if let Some(mut s) = child.child.stderr.take() {
        use std::io::Read;
        let _ = s.read_to_string(&mut err);
    }
    let exit = child.wait();
    if exit.code != 0 {
        bail!("{binary} publish exited with {}: {}", exit.code, err.trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::protobuf::MessageFull;

    #[test]
    fn type_urls_match_the_protobuf_names() {
        assert_eq!(
            ev::TaskExit::TYPE_URL,
            ev::TaskExit::descriptor().full_name()
        );
        assert_eq!(
            ev::TaskExecStarted::TYPE_URL,
            ev::TaskExecStarted::descriptor().full_name()
        );
        assert_eq!(ev::TaskOOM::TYPE_URL, ev::TaskOOM::descriptor().full_name());
    }
}
