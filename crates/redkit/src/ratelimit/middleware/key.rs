//! [`KeyBy`]: how a request is turned into a rate-limit key.

use std::net::IpAddr;
use std::sync::Arc;

use http::request::Parts;

/// A function from a request to its rate-limit key.
pub type KeyFn = Arc<dyn Fn(&Parts, IpAddr) -> Option<String> + Send + Sync>;

/// How a request is turned into a rate-limit key.
#[derive(Clone)]
pub enum KeyBy {
    /// The client IP (see [`TrustedProxies`](crate::ratelimit::TrustedProxies)). Default.
    ClientIp,
    /// The value of a request header (for example an API key); requests
    /// without it are keyed by client IP.
    Header(http::HeaderName),
    /// A function of the request (for example the user id an auth middleware
    /// put in the extensions); `None` falls back to the client IP.
    Custom(KeyFn),
}

impl KeyBy {
    /// A custom key function.
    pub fn custom(f: impl Fn(&Parts, IpAddr) -> Option<String> + Send + Sync + 'static) -> Self {
        KeyBy::Custom(Arc::new(f))
    }

    pub(super) fn key(&self, parts: &Parts, ip: IpAddr) -> String {
        let custom = match self {
            KeyBy::ClientIp => None,
            KeyBy::Header(name) => parts
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(|value| format!("h:{value}")),
            KeyBy::Custom(f) => f(parts, ip).map(|key| format!("c:{key}")),
        };
        custom.unwrap_or_else(|| format!("ip:{ip}"))
    }
}

impl std::fmt::Debug for KeyBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyBy::ClientIp => f.write_str("ClientIp"),
            KeyBy::Header(name) => f.debug_tuple("Header").field(name).finish(),
            KeyBy::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}
