//! Integration tests of the redkit library against real redis-server
//! processes (started by redkit-testkit) and the embedded store.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod cache;
mod config;
mod connection;
mod events;
mod extract;
mod fallback;
mod follow;
mod healing;
mod health;
mod properties;
mod queue;
mod ratelimit;
mod session;
mod store;
mod support;
mod tls;
mod topology;
mod tower_store;
