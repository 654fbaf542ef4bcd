//! The per-process state of one queue, shared by every handle and worker of
//! that name: where its scripts run, its fallback buffer and the wakeup that
//! lets a local enqueue start a local worker without waiting for a poll.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::buffer::{Buffer, BufferedJob};
use super::job::Enqueued;
use super::keys::{QueueKeys, REGISTRY_KEY};
use super::metrics;
use super::scripts;
use crate::connection::ConnectionState;
use crate::error::{Error, Result};
use crate::store::{AnyStore, Backend, Script, ScriptArg, ScriptValue, Store};

/// The queues a [`Redkit`](crate::Redkit) handle has opened, by name.
#[derive(Debug, Clone, Default)]
pub(crate) struct QueueRegistry {
    queues: Arc<Mutex<HashMap<String, Arc<QueueShared>>>>,
}

impl QueueRegistry {
    /// The shared state of queue `name`, created on first use.
    pub(crate) fn open(&self, store: &AnyStore, name: &str) -> Result<Arc<QueueShared>> {
        let mut queues = self.queues.lock();
        if let Some(shared) = queues.get(name) {
            return Ok(shared.clone());
        }
        let shared = QueueShared::new(store.clone(), QueueKeys::new(name)?);
        queues.insert(name.to_owned(), shared.clone());
        Ok(shared)
    }

    /// Every queue opened through the handle.
    pub(crate) fn all(&self) -> Vec<Arc<QueueShared>> {
        let mut queues: Vec<_> = self.queues.lock().values().cloned().collect();
        queues.sort_by(|a, b| a.keys.name().cmp(b.keys.name()));
        queues
    }
}

#[derive(Debug)]
pub(crate) struct QueueShared {
    pub(super) keys: QueueKeys,
    store: AnyStore,
    /// Woken on every local enqueue, so local workers start at once.
    pub(super) wakeup: Notify,
    /// Fallback mode only: jobs enqueued while Redis is unreachable.
    pub(super) buffer: Option<Buffer>,
    registered: AtomicBool,
}

impl QueueShared {
    fn new(store: AnyStore, keys: QueueKeys) -> Arc<Self> {
        let fallback = store.mode() == Backend::Fallback;
        let shared = Arc::new(QueueShared {
            keys,
            store,
            wakeup: Notify::new(),
            buffer: fallback.then(Buffer::default),
            registered: AtomicBool::new(false),
        });
        if fallback {
            tokio::spawn(flush_when_ready(Arc::downgrade(&shared)));
        }
        shared
    }

    pub(crate) fn name(&self) -> &str {
        self.keys.name()
    }

    /// Runs a queue script where the queue lives: the embedded store in
    /// embedded mode, Redis otherwise (never the fallback's embedded store:
    /// jobs must not stay behind in one process when Redis comes back).
    pub(super) async fn run(&self, script: &Script, args: &[ScriptArg]) -> Result<ScriptValue> {
        let keys = self.keys.all();
        match self.store.redis_store() {
            Some(redis) if self.store.mode() != Backend::Embedded => {
                redis.run_script(script, &keys, args).await
            }
            _ => {
                self.store
                    .embedded_store()
                    .run_script(script, &keys, args)
                    .await
            }
        }
    }

    fn redis_ready(&self) -> bool {
        self.store
            .redis_store()
            .is_some_and(|redis| redis.connection().state() == ConnectionState::Ready)
    }

    /// Enqueues `payload`, into the buffer while Redis is unreachable (in
    /// fallback mode) or while earlier buffered jobs wait (to keep order).
    pub(super) async fn enqueue(
        &self,
        id: Option<String>,
        payload: Bytes,
        delay: Duration,
        buffer_capacity: usize,
    ) -> Result<Enqueued> {
        self.register().await;
        let buffered = |id: Option<String>, payload: Bytes| -> Result<Enqueued> {
            let buffer = self.buffer.as_ref().ok_or(Error::Closed)?;
            let job = BufferedJob {
                id,
                payload,
                due_at: SystemTime::now() + delay,
            };
            let enqueued = buffer.push(self.keys.name(), job, buffer_capacity)?;
            metrics::buffered(self.keys.name());
            Ok(enqueued)
        };
        if let Some(buffer) = &self.buffer
            && (!buffer.is_empty() || !self.redis_ready())
        {
            return buffered(id, payload);
        }
        let args = [
            ScriptArg::from(id.as_deref().unwrap_or("")),
            ScriptArg::Bytes(payload.clone()),
            ScriptArg::Int(millis(delay)),
        ];
        match self.run(&scripts::ENQUEUE, &args).await {
            Ok(reply) => {
                let enqueued = parse_enqueued(&reply)?;
                if enqueued.added {
                    metrics::enqueued(self.keys.name());
                    self.wakeup.notify_waiters();
                }
                Ok(enqueued)
            }
            Err(error) if self.buffer.is_some() && error.is_unavailable() => buffered(id, payload),
            Err(error) => Err(error),
        }
    }

    /// Adds the name to the registry set once per process (best effort: the
    /// listing is for operators, the queue works without it).
    async fn register(&self) {
        if self.registered.load(Ordering::Relaxed) {
            return;
        }
        let name = self.keys.name();
        let done = match self.store.redis_store() {
            Some(redis) if self.store.mode() != Backend::Embedded => {
                redis.set_add(REGISTRY_KEY, &[name]).await.is_ok()
            }
            _ => self
                .store
                .embedded_store()
                .set_add(REGISTRY_KEY, &[name])
                .await
                .is_ok(),
        };
        if done {
            self.registered.store(true, Ordering::Relaxed);
        }
    }
}

fn parse_enqueued(reply: &ScriptValue) -> Result<Enqueued> {
    let bad = || Error::Script {
        script: "redkit_queue_enqueue",
        message: format!("unexpected reply {reply:?}"),
    };
    let items = reply.as_array().ok_or_else(bad)?;
    let added = items
        .first()
        .and_then(ScriptValue::as_i64)
        .ok_or_else(bad)?
        == 1;
    let id = match items.get(1) {
        Some(ScriptValue::Bytes(id)) => String::from_utf8_lossy(id).into_owned(),
        _ => return Err(bad()),
    };
    Ok(Enqueued {
        id,
        added,
        buffered: false,
    })
}

/// Milliseconds of `duration`, for script arguments.
/// (Unlike `ScriptArg::millis`, zero stays zero: a delay of 0 means due now.)
pub(super) fn millis(duration: Duration) -> i64 {
    i64::try_from(crate::clock::millis(duration)).unwrap_or(i64::MAX)
}

/// Delivers buffered jobs to Redis, in order, whenever it is ready; stops
/// when the queue's state is dropped or the connection is closed.
async fn flush_when_ready(shared: Weak<QueueShared>) {
    let mut changes = match shared
        .upgrade()
        .and_then(|s| s.store.redis_store().cloned())
    {
        Some(redis) => redis.connection().state_changes(),
        None => return,
    };
    loop {
        let Some(queue) = shared.upgrade() else {
            return;
        };
        let Some(buffer) = &queue.buffer else {
            return;
        };
        let waiting = buffer.wait_for_jobs();
        if queue.redis_ready() && !buffer.is_empty() {
            flush(&queue, buffer).await;
        }
        let retry_soon = queue.redis_ready() && !buffer.is_empty();
        // Retry at least every 100 ms while jobs wait; otherwise sleep until a
        // job is buffered or the connection changes state.
        tokio::select! {
            state = changes.next() => {
                if state.is_none() || state == Some(ConnectionState::Closed) {
                    return;
                }
            }
            () = waiting => {}
            () = tokio::time::sleep(Duration::from_millis(100)), if retry_soon => {}
        }
    }
}

async fn flush(queue: &QueueShared, buffer: &Buffer) {
    while let Some(job) = buffer.front() {
        let delay = job
            .due_at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let args = [
            ScriptArg::from(job.id.as_deref().unwrap_or("")),
            ScriptArg::Bytes(job.payload.clone()),
            ScriptArg::Int(millis(delay)),
        ];
        match queue.run(&scripts::ENQUEUE, &args).await {
            Ok(_) => {
                buffer.pop_front(&job);
                metrics::enqueued(queue.keys.name());
                queue.wakeup.notify_waiters();
            }
            Err(error) if error.is_unavailable() => return,
            Err(error) => {
                // Redis refused it (for example a key of another type): it
                // would be refused forever, so it is dropped, loudly.
                tracing::error!(queue = queue.keys.name(), %error, "dropping a buffered job Redis refused");
                buffer.pop_front(&job);
            }
        }
    }
}
