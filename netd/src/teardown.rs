//! Deleting links off the request path.
//!
//! The kernel answers a link deletion only after the device is fully unregistered, which
//! waits for RCU grace periods: 15–45 ms for a veth here, most of a container's detach. And it
//! does so inside the `sendmsg` of the netlink socket that asked, blocking whatever thread
//! polls that socket. So deletions go to a thread of their own with its own netlink
//! connection: the daemon's workers and its main connection are never held up, and a caller
//! chooses whether to wait (disconnecting a running container must cut it off before
//! answering) or not (a removed sandbox's rules, lease and netns file are already gone, so
//! nothing can reach the veth while the kernel finishes it).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use crate::link::{self, LinkError};

type Job = (String, oneshot::Sender<Result<(), LinkError>>);

pub struct Teardown {
    tx: mpsc::UnboundedSender<Job>,
    /// Deletions asked for and not finished.
    pending: Arc<watch::Sender<usize>>,
}

impl Teardown {
    /// Starts the thread. It is made from the caller's thread, so it lives in the daemon's
    /// network namespace (the daemon's threads never leave it).
    pub fn start() -> Result<Teardown, LinkError> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let pending = Arc::new(watch::channel(0usize).0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LinkError::Io("teardown runtime".into(), e))?;
        let (conn, h) = {
            let _g = rt.enter();
            let (conn, h, _) = rtnetlink::new_connection()
                .map_err(|e| LinkError::Io("teardown netlink socket".into(), e))?;
            (conn, h)
        };
        let left = pending.clone();
        std::thread::Builder::new()
            .name("netd-teardown".into())
            .spawn(move || {
                rt.block_on(async move {
                    tokio::spawn(conn);
                    while let Some((name, done)) = rx.recv().await {
                        let r = link::delete(&h, &name).await;
                        if let Err(e) = &r {
                            tracing::warn!("delete link {name}: {e}");
                        }
                        let _ = done.send(r);
                        left.send_modify(|n| *n -= 1);
                    }
                })
            })
            .map_err(|e| LinkError::Io("teardown thread".into(), e))?;
        Ok(Teardown { tx, pending })
    }

    /// Queues the deletion of link `name` (absent is fine); the receiver says when it is done.
    pub fn delete(&self, name: &str) -> oneshot::Receiver<Result<(), LinkError>> {
        let (done, rx) = oneshot::channel();
        self.pending.send_modify(|n| *n += 1);
        if let Err(e) = self.tx.send((name.to_string(), done)) {
            // The thread is gone (it never exits while we hold `tx`): answer at once.
            self.pending.send_modify(|n| *n -= 1);
            let _ = e.0 .1.send(Err(LinkError::Io(
                format!("delete link {name}"),
                std::io::Error::other("teardown thread stopped"),
            )));
        }
        rx
    }

    /// Deletes `name` and waits for the kernel to finish.
    pub async fn delete_now(&self, name: &str) -> Result<(), LinkError> {
        self.delete(name).await.unwrap_or_else(|_| {
            Err(LinkError::Io(
                format!("delete link {name}"),
                std::io::Error::other("teardown thread stopped"),
            ))
        })
    }

    /// Waits until every queued deletion is done (at shutdown).
    pub async fn idle(&self) {
        let mut rx = self.pending.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}
