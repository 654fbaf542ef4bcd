//! HTTP handlers, one module per concern.

pub(crate) mod admin;
pub(crate) mod health;
pub(crate) mod metrics;
