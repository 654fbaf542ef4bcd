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
use super::metrics::QueueMetrics;
use super::scripts;
use crate::connection::ConnectionState;
use crate::error::{Error, Result};
use crate::store::{AnyStore, Backend, RedisStore, Script, ScriptArg, ScriptValue, Store};

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
    /// This queue's metric handles.
    pub(super) metrics: QueueMetrics,
}

impl QueueShared {
    fn new(store: AnyStore, keys: QueueKeys) -> Arc<Self> {
        let fallback = store.mode() == Backend::Fallback;
        let metrics = QueueMetrics::new(keys.name());
        let shared = Arc::new(QueueShared {
            metrics,
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

    /// Where the queue lives: Redis (`Some`), or the embedded store in
    /// embedded mode (never the fallback's embedded store: jobs must not
    /// stay behind in one process when Redis comes back).
    pub(super) fn redis(&self) -> Option<&RedisStore> {
        self.store
            .redis_store()
            .filter(|_| self.store.mode() != Backend::Embedded)
    }

    /// Runs a queue script where the queue lives.
    pub(super) async fn run(&self, script: &Script, args: &[ScriptArg]) -> Result<ScriptValue> {
        let keys = self.keys.all();
        match self.redis() {
            Some(redis) => redis.run_script(script, &keys, args).await,
            None => {
                self.store
                    .embedded_store()
                    .run_script(script, &keys, args)
                    .await
            }
        }
    }

    /// Runs one of the hot path's one-command scripts: on Redis as that
    /// command (`command`), on the embedded store as its native twin.
    async fn hot(
        &self,
        script: &Script,
        args: &[ScriptArg],
        command: impl FnOnce(&str) -> redis::Cmd,
    ) -> Result<ScriptValue> {
        match self.redis() {
            Some(redis) => {
                let stream = redis.key(self.keys.all()[0]);
                let reply: redis::Value = redis.connection().query(&command(&stream)).await?;
                Ok(stream_reply(reply))
            }
            None => self.run(script, args).await,
        }
    }

    /// `XADD stream * p payload`: a job due now without an id; its entry id.
    pub(super) async fn add(&self, payload: Bytes) -> Result<String> {
        let Some(redis) = self.redis() else {
            return match self
                .run(&scripts::ADD, &[ScriptArg::Bytes(payload)])
                .await?
            {
                ScriptValue::Bytes(entry) => Ok(String::from_utf8_lossy(&entry).into_owned()),
                other => Err(Error::Script {
                    script: "redkit_queue_add",
                    message: format!("unexpected reply {other:?}"),
                }),
            };
        };
        let stream = redis.key(self.keys.all()[0]);
        let mut command = redis::cmd("XADD");
        command.arg(&*stream).arg("*").arg("p").arg(&payload[..]);
        redis.connection().query::<String>(&command).await
    }

    /// `XREADGROUP … COUNT count … >`: leases up to `count` new entries.
    pub(super) async fn read(&self, count: usize) -> Result<ScriptValue> {
        let command = |stream: &str| read_command(stream, count, None);
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        self.hot(&scripts::READ, &[ScriptArg::Int(count)], command)
            .await
    }

    /// `XACK` + `XDEL` of leased entries in one round trip; returns how many
    /// were still leased (for the others the lease was taken over and
    /// nothing changed).
    pub(super) async fn ack(&self, entries: &[String]) -> Result<u64> {
        let acked = match self.redis() {
            Some(redis) => {
                let stream = redis.key(self.keys.all()[0]);
                let stream = &*stream;
                let mut pipeline = redis::pipe();
                pipeline
                    .cmd("XACK")
                    .arg(stream)
                    .arg(scripts::GROUP)
                    .arg(entries)
                    .cmd("XDEL")
                    .arg(stream)
                    .arg(entries);
                let (acked, _deleted): (i64, i64) =
                    redis.connection().query_pipeline(&pipeline).await?;
                acked
            }
            None => self
                .run(&scripts::ACK, &entry_args(entries))
                .await?
                .as_i64()
                .unwrap_or(0),
        };
        Ok(u64::try_from(acked).unwrap_or(0))
    }

    /// `XCLAIM … 0 entry… JUSTID`: renews the leases of `entries` in one
    /// round trip; returns the ones still held (a missing one is lost).
    pub(super) async fn touch(&self, entries: &[String]) -> Result<Vec<String>> {
        let command = |stream: &str| {
            let mut command = redis::cmd("XCLAIM");
            command
                .arg(stream)
                .arg(scripts::GROUP)
                .arg(scripts::CONSUMER)
                .arg(0)
                .arg(entries)
                .arg("JUSTID");
            command
        };
        let reply = self
            .hot(&scripts::TOUCH, &entry_args(entries), command)
            .await?;
        Ok(reply
            .as_array()
            .unwrap_or_default()
            .iter()
            .filter_map(|id| match id {
                ScriptValue::Bytes(id) => Some(String::from_utf8_lossy(id).into_owned()),
                _ => None,
            })
            .collect())
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
            self.metrics.buffered();
            Ok(enqueued)
        };
        if let Some(buffer) = &self.buffer
            && (!buffer.is_empty() || !self.redis_ready())
        {
            return buffered(id, payload);
        }
        match self.store_job(id.clone(), payload.clone(), delay).await {
            Ok(enqueued) => {
                if enqueued.added {
                    self.metrics.enqueued();
                    // On Redis, workers wait in a blocking read that the
                    // XADD itself ends.
                    if self.redis().is_none() {
                        self.wakeup.notify_waiters();
                    }
                }
                Ok(enqueued)
            }
            Err(error) if self.buffer.is_some() && error.is_unavailable() => buffered(id, payload),
            Err(error) => Err(error),
        }
    }

    /// Stores a job where the queue lives: a job due now without an id is
    /// one `XADD`; one with an id or a delay goes through [`scripts::ENQUEUE`].
    async fn store_job(
        &self,
        id: Option<String>,
        payload: Bytes,
        delay: Duration,
    ) -> Result<Enqueued> {
        if id.is_none() && delay.is_zero() {
            let entry = self.add(payload).await?;
            let mut id = String::with_capacity(entry.len() + 1);
            id.push('#');
            id.push_str(&entry);
            return Ok(Enqueued {
                id,
                added: true,
                buffered: false,
            });
        }
        let args = [
            ScriptArg::from(id.as_deref().unwrap_or("")),
            ScriptArg::Bytes(payload),
            ScriptArg::Int(millis(delay)),
        ];
        parse_enqueued(&self.run(&scripts::ENQUEUE, &args).await?)
    }

    /// Adds the name to the registry set once per process (best effort: the
    /// listing is for operators, the queue works without it).
    async fn register(&self) {
        if self.registered.load(Ordering::Relaxed) {
            return;
        }
        let name = self.keys.name();
        let done = match self.redis() {
            Some(redis) => redis.set_add(REGISTRY_KEY, &[name]).await.is_ok(),
            None => self
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

/// `XREADGROUP GROUP workers worker COUNT count [BLOCK ms] STREAMS stream >`:
/// up to `count` entries never delivered to the group, waiting up to
/// `block` for the first (never 0 ms, which would mean forever).
pub(super) fn read_command(stream: &str, count: usize, block: Option<Duration>) -> redis::Cmd {
    let mut command = redis::cmd("XREADGROUP");
    command
        .arg("GROUP")
        .arg(scripts::GROUP)
        .arg(scripts::CONSUMER)
        .arg("COUNT")
        .arg(count);
    if let Some(block) = block {
        command.arg("BLOCK").arg(crate::clock::millis(block).max(1));
    }
    command.arg("STREAMS").arg(stream).arg(">");
    command
}

/// A reply of the hot path's commands, in the shape their scripts return.
pub(super) fn stream_reply(reply: redis::Value) -> ScriptValue {
    ScriptValue::from_redis(flatten_map(reply))
}

/// An `XREADGROUP` reply in RESP3 is a map (stream → entries); as
/// `[[stream, entries]…]` it has the RESP2 shape the parser reads.
fn flatten_map(reply: redis::Value) -> redis::Value {
    match reply {
        redis::Value::Map(pairs) => redis::Value::Array(
            pairs
                .into_iter()
                .map(|(key, value)| redis::Value::Array(vec![key, value]))
                .collect(),
        ),
        other => other,
    }
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
        match queue
            .store_job(job.id.clone(), job.payload.clone(), delay)
            .await
        {
            Ok(_) => {
                buffer.pop_front(&job);
                queue.metrics.enqueued();
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

/// Stream entry ids as script arguments.
fn entry_args(entries: &[String]) -> Vec<ScriptArg> {
    entries
        .iter()
        .map(|entry| ScriptArg::from(entry.as_str()))
        .collect()
}
