//! The tower middleware, shaped like tower's `limit::rate`: a layer, a
//! service and a future, each in its own file.

mod future;
mod headers;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::{KeyBy, KeyFn, RateLimitLayer};
pub use service::RateLimit;
