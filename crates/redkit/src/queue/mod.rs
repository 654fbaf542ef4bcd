//! Durable background jobs: typed, at-least-once, with retries, delays and a
//! dead-letter list — on Redis, on the embedded store, and through outages.
//!
//! ```no_run
//! # async fn demo(kit: redkit::Redkit) -> redkit::Result<()> {
//! use std::time::Duration;
//! use redkit::queue::{EnqueueOptions, Job};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Email { to: String }
//!
//! let emails = kit.queue::<Email>("emails")?;
//! emails.enqueue(&Email { to: "a@example.com".into() }).await?;
//! emails
//!     .enqueue_with(&Email { to: "b@example.com".into() },
//!                   EnqueueOptions::new().id("welcome:b").delay(Duration::from_secs(60)))
//!     .await?;
//! let worker = emails.start_worker(|job: Job<Email>| async move {
//!     println!("sending to {}", job.payload.to);
//!     Ok(())
//! });
//! // …
//! worker.shutdown(Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! - **At-least-once.** A job is removed only when its handler returned
//!   `Ok`. A job whose worker dies (crash, SIGKILL, lost network) is taken
//!   back when its lease expires (`visibility_timeout`, renewed by a
//!   heartbeat while the handler runs) and runs again — so a handler may
//!   see a job twice and should be idempotent. The attempt number is the
//!   lease is the job's Stream entry: a lease taken over moves the job to a
//!   new entry, so the worker that lost it cannot complete, retry or
//!   dead-letter the job any more.
//! - **Retries.** A failed attempt (error, panic) is retried after a capped
//!   exponential backoff with jitter; after `max_attempts` (counting attempts
//!   lost to crashes) the job goes to the dead-letter list with its last
//!   error, where it can be listed, retried or purged. A payload that does
//!   not decode is dead-lettered at once.
//! - **Ordering.** Jobs due now start in enqueue order (Stream order). A
//!   delayed or retried job joins the line when a worker moves it to the
//!   Stream, within `poll_interval` of its due time; a job taken back from
//!   a dead worker joins the line again. With concurrency above one, or
//!   several workers, jobs may *finish* in any order.
//! - **Deduplication.** A job enqueued with an id is added only if no job
//!   of that id is waiting, delayed or running; it can be cancelled while it
//!   waits.
//! - **What a crash costs.** A worker crash: the running jobs run again after
//!   the visibility timeout (plus up to a `poll_interval` until a worker's
//!   maintenance takes them back), counted as an attempt. A Redis crash: what Redis persisted (with
//!   `appendonly yes` and `appendfsync always`, every acknowledged enqueue;
//!   with `everysec`, up to a second). In fallback mode an enqueue while
//!   Redis is unreachable is buffered in process memory (bounded by
//!   `buffer_capacity`, [`Enqueued::buffered`] says so) and delivered in order
//!   when Redis is back; a process that dies before that loses its buffer.
//!   On the embedded store jobs live as long as the process.
//!
//! # Layout
//!
//! All keys of queue `q` share the hash tag `{q}` (one Cluster slot). A job
//! due now is an entry of the Stream `rq:{q}:stream` (fields `p` payload,
//! `j` job id, `a` attempts before), read through the consumer group
//! `workers`: an entry read and not yet acknowledged is *pending*, which is
//! the lease. Jobs not due yet (delayed or waiting for a retry) are in the
//! sorted set `delayed` (by due time), dead ones in `dead` (by death time);
//! those keep payload, attempts and last error in the hashes `jobs`,
//! `attempts` and `errors`. `ids` maps a job id given by the caller (or a
//! retried job's id) to its current entry, for dedupe, cancel and state;
//! `seq` numbers delayed jobs enqueued without an id.
//!
//! The hot path is plain commands, no script: an enqueue due now without an
//! id is one `XADD` (its id is `#` and the entry id); a worker reads with one
//! `XREADGROUP` for all its free slots — on Redis blocking, on a connection
//! of its own, so a job enqueued by any process starts at once; on the
//! embedded store woken by local enqueues; one heartbeat per worker renews
//! all its leases with one `XCLAIM … JUSTID`; the successes that finish
//! together are recorded by one `XACK` + `XDEL` round trip. Every other change is one script ([`scripts`](self) has the Lua and
//! its native twin), so the embedded store behaves the same; one suite
//! (`conformance`, feature `test-util`) checks both. Every `poll_interval` a
//! worker runs the maintenance script: due delayed jobs move to the Stream,
//! and leases idle past the visibility timeout are claimed (`XAUTOCLAIM`)
//! and moved to a new entry with the lost attempt counted — so the entry id
//! is the lease token: a worker whose lease was taken over finds its entry
//! gone, and can no longer renew, complete, retry or dead-letter the job.
//! On Redis this needs version 6.2 or later (`XAUTOCLAIM`).

mod acks;
mod buffer;
mod config;
/// The shared behavioural suite (for the tests of each store).
#[cfg(feature = "test-util")]
pub mod conformance;
mod handle;
mod job;
mod keys;
mod leases;
mod metrics;
mod reader;
mod reply;
mod scripts;
mod shared;
mod worker;

pub use config::QueueConfig;
pub use handle::{DEAD_BATCH, Queue};
pub use job::{DeadJob, EnqueueOptions, Enqueued, Job, JobInfo, JobState, QueueCounts};
pub use worker::{Handler, ShutdownReport, Worker};

pub(crate) use keys::REGISTRY_KEY;
pub(crate) use shared::QueueRegistry;
