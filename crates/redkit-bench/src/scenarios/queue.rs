//! Job-queue scenarios.
//!
//! - `queue_enqueue`: `Queue::enqueue` of a 100-byte payload (no worker) vs
//!   a raw redis-rs `XADD` of the same JSON bytes. Both stores are emptied
//!   before each run, so each side starts from an empty queue.
//! - `queue_roundtrip`: 50 producers, each enqueueing a job and waiting for a
//!   handler to start it, a worker with concurrency 50 completing it — vs a
//!   raw redis-rs loop on a Stream: `XADD`, one consumer reading batches of
//!   up to 50 with `XREADGROUP … BLOCK` on its own connection, each entry
//!   signalled and `XACK`ed. An op is one enqueue-to-start, so the p99 is
//!   the enqueue-to-start latency.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use redis::Value;
use redkit::queue::{Job, QueueConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::{progress, ratio_report};
use crate::env::Env;
use crate::measure;
use crate::report::Report;

/// What both sides carry: the same JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Payload {
    seq: u64,
    value: String,
}

/// Producers waiting for their job to start, by sequence number.
type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>;

async fn delete(env: &Env, keys: &[&str]) {
    let mut connection = env.raw().await;
    let _: i64 = redis::cmd("DEL")
        .arg(keys)
        .query_async(&mut connection)
        .await
        .unwrap_or_else(|err| panic!("DEL: {err}"));
}

const QUEUE_KEYS: [&str; 8] = [
    "rq:{bench}:stream",
    "rq:{bench}:delayed",
    "rq:{bench}:dead",
    "rq:{bench}:jobs",
    "rq:{bench}:attempts",
    "rq:{bench}:errors",
    "rq:{bench}:ids",
    "rq:{bench}:seq",
];

pub(super) async fn enqueue(env: &Env) -> Report {
    const NAME: &str = "queue_enqueue";
    let kit = env.redkit().await;
    let queue = kit
        .queue::<Payload>("bench")
        .unwrap_or_else(|err| panic!("queue: {err}"));
    let value = env.value();
    let raw_payload = Arc::new(
        serde_json::to_vec(&Payload {
            seq: 0,
            value: value.clone(),
        })
        .unwrap_or_else(|err| panic!("json: {err}")),
    );
    let paired = measure::paired(
        env.rounds,
        || {
            progress(NAME, "raw redis-rs XADD of the same payload");
            let raw_payload = raw_payload.clone();
            async move {
                delete(env, &["bench:raw-stream"]).await;
                let connection = env.raw().await;
                measure::measure(env.load, move |_, _| {
                    let (mut connection, raw_payload) = (connection.clone(), raw_payload.clone());
                    async move {
                        let _: String = redis::cmd("XADD")
                            .arg("bench:raw-stream")
                            .arg("*")
                            .arg("d")
                            .arg(raw_payload.as_slice())
                            .query_async(&mut connection)
                            .await
                            .unwrap_or_else(|err| panic!("XADD: {err}"));
                    }
                })
                .await
            }
        },
        || {
            progress(NAME, "Queue::enqueue");
            let (queue, value) = (queue.clone(), value.clone());
            async move {
                delete(env, &QUEUE_KEYS).await;
                measure::measure(env.load, move |_, _| {
                    let (queue, value) = (queue.clone(), value.clone());
                    async move {
                        let job = Payload { seq: 0, value };
                        queue
                            .enqueue(&job)
                            .await
                            .unwrap_or_else(|err| panic!("enqueue: {err}"));
                    }
                })
                .await
            }
        },
    )
    .await;
    delete(env, &QUEUE_KEYS).await;
    delete(env, &["bench:raw-stream"]).await;
    ratio_report(NAME, "raw redis-rs XADD (same payload)", paired, Some(0.85))
}

pub(super) async fn roundtrip(env: &Env) -> Report {
    const NAME: &str = "queue_roundtrip";
    let kit = env.redkit().await;
    let config = QueueConfig::default().concurrency(env.load.tasks);
    let queue = kit
        .queue::<Payload>("bench")
        .unwrap_or_else(|err| panic!("queue: {err}"))
        .with_config(config)
        .unwrap_or_else(|err| panic!("config: {err}"));
    let value = env.value();
    let sequence = Arc::new(AtomicU64::new(0));
    let paired = measure::paired(
        env.rounds,
        || {
            progress(NAME, "raw redis-rs XADD / XREADGROUP / XACK");
            let (value, sequence) = (value.clone(), sequence.clone());
            async move { raw_roundtrip(env, value, sequence).await }
        },
        || {
            progress(NAME, "Queue::enqueue → worker (concurrency 50) → ack");
            let (queue, value, sequence) = (queue.clone(), value.clone(), sequence.clone());
            async move {
                delete(env, &QUEUE_KEYS).await;
                let waiting: Waiting = Arc::default();
                let started = waiting.clone();
                let worker = queue.start_worker(move |job: Job<Payload>| {
                    if let Some(signal) = started.lock().remove(&job.payload.seq) {
                        let _ = signal.send(());
                    }
                    std::future::ready(Ok(()))
                });
                let measurement = measure::measure(env.load, move |_, _| {
                    let (queue, value, waiting) = (queue.clone(), value.clone(), waiting.clone());
                    let seq = sequence.fetch_add(1, Ordering::Relaxed);
                    async move {
                        let (signal, started) = oneshot::channel();
                        waiting.lock().insert(seq, signal);
                        queue
                            .enqueue(&Payload { seq, value })
                            .await
                            .unwrap_or_else(|err| panic!("enqueue: {err}"));
                        started
                            .await
                            .unwrap_or_else(|_| panic!("job {seq} never started"));
                    }
                })
                .await;
                worker.shutdown(Duration::from_secs(5)).await;
                measurement
            }
        },
    )
    .await;
    delete(env, &QUEUE_KEYS).await;
    ratio_report(
        NAME,
        "raw redis-rs XADD / XREADGROUP / XACK loop",
        paired,
        Some(0.6),
    )
}

/// The raw baseline: producers XADD and wait; one consumer with its own
/// connection reads batches of up to `tasks` entries (`XREADGROUP … BLOCK`),
/// signals each producer and XACKs each entry on a shared connection.
async fn raw_roundtrip(env: &Env, value: String, sequence: Arc<AtomicU64>) -> measure::Measurement {
    const STREAM: &str = "bench:raw-jobs";
    delete(env, &[STREAM]).await;
    let mut setup = env.raw().await;
    let _: String = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(STREAM)
        .arg("workers")
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut setup)
        .await
        .unwrap_or_else(|err| panic!("XGROUP CREATE: {err}"));
    let waiting: Waiting = Arc::default();
    let (stop, mut stopped) = oneshot::channel::<()>();
    let consumer = {
        let waiting = waiting.clone();
        let mut reader = env.raw().await;
        let acker = env.raw().await;
        let batch = env.load.tasks;
        tokio::spawn(async move {
            loop {
                let mut command = redis::cmd("XREADGROUP");
                command
                    .arg("GROUP")
                    .arg("workers")
                    .arg("c1")
                    .arg("COUNT")
                    .arg(batch)
                    .arg("BLOCK")
                    .arg(100)
                    .arg("STREAMS")
                    .arg(STREAM)
                    .arg(">");
                let read = command.query_async::<Value>(&mut reader);
                let reply = tokio::select! {
                    _ = &mut stopped => return,
                    reply = read => reply.unwrap_or_else(|err| panic!("XREADGROUP: {err}")),
                };
                for (id, payload) in entries(reply) {
                    let job: Payload = serde_json::from_slice(&payload)
                        .unwrap_or_else(|err| panic!("payload: {err}"));
                    if let Some(signal) = waiting.lock().remove(&job.seq) {
                        let _ = signal.send(());
                    }
                    let mut acker = acker.clone();
                    tokio::spawn(async move {
                        let _: i64 = redis::cmd("XACK")
                            .arg(STREAM)
                            .arg("workers")
                            .arg(id)
                            .query_async(&mut acker)
                            .await
                            .unwrap_or_else(|err| panic!("XACK: {err}"));
                    });
                }
            }
        })
    };
    let producer = env.raw().await;
    let measurement = measure::measure(env.load, move |_, _| {
        let (mut producer, waiting) = (producer.clone(), waiting.clone());
        let seq = sequence.fetch_add(1, Ordering::Relaxed);
        let payload = serde_json::to_vec(&Payload {
            seq,
            value: value.clone(),
        })
        .unwrap_or_else(|err| panic!("json: {err}"));
        async move {
            let (signal, started) = oneshot::channel();
            waiting.lock().insert(seq, signal);
            let _: String = redis::cmd("XADD")
                .arg(STREAM)
                .arg("*")
                .arg("d")
                .arg(payload)
                .query_async(&mut producer)
                .await
                .unwrap_or_else(|err| panic!("XADD: {err}"));
            started
                .await
                .unwrap_or_else(|_| panic!("entry {seq} never read"));
        }
    })
    .await;
    let _ = stop.send(());
    let _ = consumer.await;
    delete(env, &[STREAM]).await;
    measurement
}

/// `(id, payload)` of each entry of an XREADGROUP reply (one stream).
fn entries(reply: Value) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let streams = match reply {
        Value::Array(streams) => streams,
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(k, v)| Value::Array(vec![k, v]))
            .collect(),
        _ => return out,
    };
    for stream in streams {
        let Value::Array(mut parts) = stream else {
            continue;
        };
        let Some(Value::Array(items)) = parts.pop() else {
            continue;
        };
        for item in items {
            let Value::Array(mut entry) = item else {
                continue;
            };
            let (Some(Value::Array(fields)), Some(Value::BulkString(id))) =
                (entry.pop(), entry.pop())
            else {
                continue;
            };
            if let Some(Value::BulkString(payload)) = fields.into_iter().nth(1) {
                out.push((id, payload));
            }
        }
    }
    out
}
