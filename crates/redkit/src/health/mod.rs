//! Health of the Redis layer, as data.
//!
//! A typical `/health` endpoint PINGs Redis and dumps `INFO`; operators then
//! read raw numbers without knowing which ones matter. [`HealthReport`] does
//! the reading: ping latency, the `INFO` essentials and `DBSIZE`, plus an
//! overall [`HealthStatus`] decided by documented [`HealthThresholds`], with
//! the reasons spelled out. It never contains credentials.

mod info;
mod report;

pub use info::RedisInfo;
pub use report::{
    CacheHealth, HealthReport, HealthStatus, HealthThresholds, NodeHealth, QueueHealth, RedisHealth,
};
pub(crate) use report::{check, grade_queue};
