//! Key lifetimes: what a key has left, and the rule every store applies to
//! a TTL it is given (a leaf: the store trait and script contexts use it).

use std::time::Duration;

use crate::error::Result;

/// The remaining life of a key (Redis' `PTTL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTtl {
    /// The key does not exist.
    Missing,
    /// The key exists and does not expire.
    Persistent,
    /// The key expires after this long (millisecond precision).
    ExpiresIn(Duration),
}

/// Rejects a zero TTL and rounds sub-millisecond ones up to 1 ms.
pub(crate) fn ttl_millis(ttl: Duration) -> Result<u64> {
    if ttl.is_zero() {
        return Err(crate::Error::invalid_input(
            "ttl",
            "zero; expected a duration of at least 1 ms, or no TTL",
        ));
    }
    Ok(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
}
