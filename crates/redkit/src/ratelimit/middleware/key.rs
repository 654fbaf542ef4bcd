//! [`KeyBy`]: how a request is turned into a rate-limit key.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use http::request::Parts;

/// A function from a request to its rate-limit key.
pub type KeyFn = Arc<dyn Fn(&Parts, IpAddr) -> Option<String> + Send + Sync>;

/// How a request is turned into a rate-limit key.
#[derive(Clone)]
pub enum KeyBy {
    /// The client IP (see [`TrustedProxies`](crate::ratelimit::TrustedProxies)). Default.
    ///
    /// An IPv6 client is keyed by its /56 network, not its address: one
    /// subscriber is given at least a /64 (usually a /56) and could rotate
    /// through its addresses, one fresh limit each (express-rate-limit keys
    /// the same /56 by default). An IPv4-mapped IPv6 address is keyed as
    /// its IPv4 address. To key every IPv6 address apart, use
    /// `KeyBy::custom(|_, ip| Some(ip.to_string()))`.
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

/// The prefix length an IPv6 client is keyed by (see [`KeyBy::ClientIp`]).
const IPV6_PREFIX_BITS: u32 = 56;

/// `ip:` and the IPv4 address, as `format!("ip:{ip}")` writes it (without
/// the formatting machinery, since every request of a client-IP policy
/// makes one); `ip:<network>/56` for IPv6.
fn ip_key(ip: IpAddr) -> String {
    let v4 = match ip.to_canonical() {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => {
            let mask = u128::MAX << (128 - IPV6_PREFIX_BITS);
            let network = Ipv6Addr::from(u128::from(v6) & mask);
            return format!("ip:{network}/{IPV6_PREFIX_BITS}");
        }
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
    fn ipv4_keys_read_as_the_address_formatted() {
        for address in [
            "0.0.0.0",
            "127.0.0.1",
            "10.0.100.9",
            "192.168.1.255",
            "255.255.255.255",
        ] {
            let ip: IpAddr = address.parse().expect("a test address");
            assert_eq!(ip_key(ip), format!("ip:{ip}"));
        }
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_56_bit_network() {
        let key = |address: &str| ip_key(address.parse().expect("a test address"));
        // Addresses a subscriber can rotate through share one key.
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "ip:2001:db8:1::/56");
        assert_eq!(
            key("2001:db8:1:ff:ffff:ffff:ffff:ffff"),
            "ip:2001:db8:1::/56"
        );
        assert_eq!(key("2001:db8:1:ab00::7"), "ip:2001:db8:1:ab00::/56");
        // The next /56 is another client.
        assert_ne!(key("2001:db8:1:100::1"), key("2001:db8:1:ff::1"));
        assert_eq!(key("::1"), "ip:::/56");
        // An IPv4-mapped address is its IPv4 client.
        assert_eq!(key("::ffff:192.0.2.1"), "ip:192.0.2.1");
    }
}
