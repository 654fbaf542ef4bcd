//! Sessions: create, get, update, destroy, touch, cycle ids, list and end
//! them per user — on Redis or the embedded store.
//!
//! Sessions usually live in Redis with a 24 h TTL and a per-user grouping
//! that nobody cleans (connect-redis, Spring Session). Here:
//!
//! - ids carry 256 bits from the OS CSPRNG and never appear in `Debug`;
//! - rolling expiry costs nothing extra on reads: the read itself extends
//!   the session (`GETEX … PX`), at most once per touch interval per instance
//!   (plain reads in between), with an optional absolute maximum lifetime;
//! - plain reads that reach Redis together share one `MGET` (auto-pipelined,
//!   as ioredis does), so under load Redis pays one command's machinery for
//!   many loads;
//! - the per-user index is updated atomically with the session (scripts) and
//!   cleaned: destroyed sessions leave it at once, expired ones on the next
//!   listing or write, and the index itself expires shortly after the user's
//!   last session (see [`Sessions`]);
//! - concurrent updates merge key by key, so one writer never silently
//!   drops another's keys: writers of one session queue inside an instance,
//!   and instances race through a version check with jittered retries;
//! - optionally, reads are served from an in-process cache kept coherent
//!   across instances by pub/sub ([`SessionConfig::local_cache`]), saving
//!   the round trip most requests would spend on their session;
//! - while Redis is down, sessions keep working from the embedded store, or
//!   fail closed ([`SessionConfig::fail_closed`]);
//! - [`SessionStore`] (feature `tower-sessions`) plugs the same storage into
//!   the standard axum session stack;
//! - [`RequiredSession`] / [`OptionalSession`] (feature `axum`) give an axum
//!   handler the request's session with one argument, reading the id from a
//!   [`SessionCookie`] through [`CookieSessions`].

mod config;
mod coordination;
#[cfg(feature = "axum")]
mod extract;
mod id;
mod keys;
mod local;
mod model;
mod scripts;
mod sessions;
#[cfg(feature = "tower-sessions")]
mod tower_store;

pub use config::SessionConfig;
#[cfg(feature = "axum")]
pub use extract::{
    CookieSessions, MAX_SESSION_COOKIES, OptionalSession, RequiredSession, SessionCookie,
    SessionRejection,
};
pub use id::SessionId;
pub use keys::{index_key, session_key};
pub use model::{Session, SessionUpdate};
pub use sessions::Sessions;
#[cfg(feature = "tower-sessions")]
pub use tower_store::SessionStore;
