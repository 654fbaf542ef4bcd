//! HTTP handlers, one module per concern.

pub(crate) mod health;
pub(crate) mod metrics;
