//! Durable events: an append-only, capped log per topic that readers can
//! resume from the last id they saw.
//!
//! Pub/sub forgets: a subscriber that is away misses what was published
//! meanwhile. An [`EventLog`] keeps each topic's recent events on a Stream
//! (`ev:{topic}`; the embedded store has the same structure), so a reader
//! that comes back with the id of the last event it saw gets everything
//! after it — or learns for certain that it cannot ([`Replay::Gap`]: the id
//! is unknown, malformed or older than what is kept), and never silently
//! misses events.
//!
//! A topic keeps its newest `max_len` events (default 1000) and disappears
//! after `max_age` (default 24 h) without appends. [`EventLog::append_once`]
//! takes a deduplication key, so a retried producer (for example a job that
//! ran twice) appends an event once.

mod log;
mod scripts;

pub use log::{Event, EventLog, EventLogConfig, Followed, Replay};
