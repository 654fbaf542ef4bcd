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
        custom.unwrap_or_else(|| ip_key(ip))
    }
}

/// `ip:` and the address, as `format!("ip:{ip}")` writes it; IPv4 without
/// the formatting machinery, since every request of a client-IP policy
/// makes one.
fn ip_key(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return format!("ip:{ip}");
    };
    let mut digits = itoa::Buffer::new();
    let mut key = String::with_capacity("ip:255.255.255.255".len());
    key.push_str("ip:");
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            key.push('.');
        }
        key.push_str(digits.format(octet));
    }
    key
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_keys_read_as_the_address_formatted() {
        let addresses = [
            "0.0.0.0",
            "127.0.0.1",
            "10.0.100.9",
            "192.168.1.255",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.0.2.1",
        ];
        for address in addresses {
            let ip: IpAddr = address.parse().expect("a test address");
            assert_eq!(ip_key(ip), format!("ip:{ip}"));
        }
    }
}
