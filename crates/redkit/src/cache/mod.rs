//! A multi-tier cache: L1 in process, L2 in the store, coherent across
//! instances.
//!
//! Services tend to hand-write cache-aside on Redis; the better ones add
//! tags, pattern invalidation and an in-process tier. This module is all of
//! it, with the resilience of .NET's FusionCache:
//!
//! - **Tiers**: reads go L1 ([quick_cache], bounded by bytes, holding decoded values)
//!   → L2 (the [`Store`](crate::store::Store): Redis, or the embedded store) →
//!   loader; an L2 hit fills L1. An L1 hit hands out a clone of the decoded
//!   value: cache a reference-counted type (`Arc<T>`, with serde's `rc`
//!   feature, or a `Bytes`-backed type) and a hit is a reference-count bump,
//!   not a copy.
//! - **Coherence**: every write and
//!   invalidation publishes a small message (never the value); other instances
//!   evict their L1 entry. Writes are announced once stored, coalesced while
//!   a publish is in flight (one `PUBLISH` per batch). After the backplane reconnects, an instance drops
//!   its whole L1 and cached tag versions, since messages may have been missed.
//! - **Tags**: version counters, O(1) to invalidate (see [below](self#tags)).
//! - **Stampede protection**: single-flight per instance; optionally a short
//!   Redis lock (`SET NX PX`, released by compare-and-delete) across instances.
//! - **Stale-while-revalidate, fail-safe, soft and hard timeouts**, per entry
//!   ([`EntryOptions`]); a circuit breaker skips L2 after repeated failures.
//! - **Bulk**: `get_many` is one `MGET`, `set_many` one pipeline; prefix
//!   invalidation and `clear` use `SCAN COUNT` + `UNLINK` pages, never `KEYS`.
//! - **Codecs**: JSON (default) or MessagePack, LZ4 above a size; a stored
//!   value that does not decode is a miss, deleted and counted — never a panic.
//! - **Hostile keys**: control characters and over-long keys are refused with
//!   a clear error; glob characters are escaped wherever a pattern is built.
//!
//! # Coherence
//! The stored format is described in `envelope.rs`, the messages in
//! `backplane.rs`.
//!
//! # Tags
//! Each tag has a version in the store; an entry records its tags' versions and
//! is valid while they are current. Invalidating a tag sets a new random
//! version and publishes it (a counter would go backwards after `FLUSHALL`).
//! Invalidated entries are dropped when met and expire with their TTL; tag
//! versions have no TTL (removed by `clear`).
//!
//! # Healing
//! An invalidation the store refuses (Redis out of memory) is pinned locally,
//! published, and retried until Redis takes it; one made on the embedded
//! fallback during an outage is journaled and replayed on Redis before Redis
//! serves again (`recovery.rs`). A failing loader with a stale value is not
//! called again for the fail-safe throttle.

mod backplane;
mod breaker;
mod builder;
mod codec;
mod engine;
mod envelope;
mod flight;
mod handle;
mod invalidate;
mod key;
mod l1;
mod load;
mod local_tier;
mod options;
mod recovery;
mod stats;
mod tags;

pub use builder::CacheBuilder;
pub use codec::Codec;
pub use handle::Cache;
pub use options::{EntryOptions, Loaded};
pub(crate) use stats::CacheRegistry;
pub use stats::CacheStats;
