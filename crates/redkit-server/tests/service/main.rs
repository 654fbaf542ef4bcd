//! End-to-end tests of `redkit serve`: in-process servers on port 0 against
//! the embedded store and real redis-server processes, and the binary itself.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]
// The futures of whole test bodies nest the service's futures deeply;
// computing their layout needs more than the default 128 levels.
#![recursion_limit = "256"]

mod api;
mod binary;
mod bodies;
mod cluster_failover;
mod dashboard;
mod doctor;
mod faults;
mod health;
mod instances;
mod limits;
mod ops;
mod outage;
mod queue_cli;
mod reminders;
mod support;
