//! The narrow storage interface every redkit module is built on.
//!
//! The cache, sessions and rate limiting need a handful of primitives, not
//! all of Redis: get/set with TTL, get-and-extend (`GETEX`), bulk get/set,
//! UNLINK, expire/TTL, counters, sets (for indexes), an incremental SCAN,
//! pub/sub and atomic server-side scripts. [`Store`] is exactly that list, with three implementations:
//!
//! | type | guarantees |
//! |---|---|
//! | [`RedisStore`] | Redis' own: shared by every instance, atomic per command and per script, durable as the server is configured. Fails fast with [`Error::Unavailable`](crate::Error::Unavailable) while disconnected. |
//! | [`EmbeddedStore`] | the same semantics, per process: atomic per call and per script, TTLs exact to the millisecond (lazy + active expiry), bounded by a memory budget with sampled-LRU eviction. Nothing is shared between processes; pub/sub reaches this process only. |
//! | [`AnyStore`] in fallback mode | Redis while it is `Ready`; the embedded store while it is not (and for a call that finds Redis gone). Data written during an outage stays local and is **not** copied to Redis on recovery — except the changes recovery must not undo (cache invalidations, session destroys, rate-limit penalties), which modules record in the bounded [`journal`] and which are replayed on Redis *before* this instance's calls go to Redis again. Then the embedded store is cleared, so that a later outage never serves data from an earlier one. |
//!
//! The job queue and the event log also need sorted sets, hashes and
//! streams; they reach them only inside scripts (see [`ScriptContext`]), so
//! the trait itself stays this narrow. In the embedded store those values
//! are never evicted to make room (they count against the budget).
//!
//! The same behavioural suite (`conformance`, feature `test-util`) runs against every store; a
//! difference between them is a bug unless documented here.

mod any;
mod batched_get;
#[cfg(feature = "test-util")]
pub mod conformance;
mod embedded;
mod follow;
mod glob;
pub mod journal;
mod primitives;
mod pubsub;
mod redis;
mod script;
mod stream_id;
mod ttl;

pub use any::AnyStore;
pub(crate) use batched_get::BatchedGets;
pub use embedded::{EmbeddedStats, EmbeddedStore};
pub use follow::{FollowEvent, Following, follow, follow_in_background};
pub use glob::escape_glob;
pub(crate) use glob::glob_matches;
pub use journal::Replay;
pub use primitives::{Backend, ScanCursor, ScanPage, SetEntry, Store, delete_matching, scan_all};
pub(crate) use primitives::{CursorPosition, set_then_publish_in_turn};
pub use pubsub::{Message, PubSubEvent, Subscription};
pub use redis::RedisStore;
pub use script::{NativeScript, Script, ScriptArg, ScriptContext, ScriptValue, StreamFields};
pub use stream_id::StreamId;
pub use ttl::KeyTtl;
pub(crate) use ttl::ttl_millis;
