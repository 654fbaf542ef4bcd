//! Tasks per user: CRUD over SQLite with cache-aside through redkit's cache.
//!
//! Reads go through `Cache::get_or_set` (L1 in process, L2 in Redis, then
//! the database, once per instance for concurrent misses), caching the
//! rendered JSON body (`rendered.rs`). Every cached
//! entry of a user carries the tag `user:<id>`; every write invalidates that
//! tag after the database commit — on every instance, through the cache's
//! backplane — and then publishes a [`crate::events::TaskEvent`].

mod rendered;
mod routes;
mod validate;

pub(crate) use routes::{create, delete, get, list, update};
pub(crate) use validate::due_at_millis;
