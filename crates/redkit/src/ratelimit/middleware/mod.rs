//! The tower middleware, shaped like tower's `limit::rate`: a layer, a
//! service and a future, each in its own file.

mod config;
pub mod future;
mod headers;
mod key;
mod layer;
mod service;

pub use key::{KeyBy, KeyFn};
pub use layer::RateLimitLayer;
pub use service::RateLimit;
