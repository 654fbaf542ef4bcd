//! Which address a request comes from, without trusting spoofable headers.
//!
//! `X-Forwarded-For` and `Forwarded` are written by whoever sends the request.
//! They are read only when the direct peer is one of the configured trusted
//! proxies; then the client is the right-most address in the chain that is not
//! itself a trusted proxy (the left-most entries are the client's own claims).

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;

use crate::error::{Error, Result};

/// Proxies whose forwarding headers are believed: addresses or CIDR ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    ranges: Vec<(IpAddr, u8)>,
}

impl TrustedProxies {
    /// Trusts nobody: the peer address is the client (the default).
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses `10.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8` entries.
    pub fn parse<I, S>(entries: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut ranges = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            let (address, bits) = match entry.split_once('/') {
                Some((address, bits)) => (address, Some(bits)),
                None => (entry, None),
            };
            let address: IpAddr = address.parse().map_err(|_| {
                Error::invalid_config(
                    "trusted proxy",
                    format!("{entry:?} is not an IP address"),
                    "an address or CIDR range such as 10.0.0.0/8 or ::1",
                )
            })?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => max,
                Some(bits) => bits
                    .parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| {
                        Error::invalid_config(
                            "trusted proxy",
                            format!("{entry:?} has an invalid prefix length"),
                            format!("a prefix length from 0 to {max}"),
                        )
                    })?,
            };
            ranges.push((address, bits));
        }
        Ok(TrustedProxies { ranges })
    }

    /// Whether `address` is a trusted proxy.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.ranges
            .iter()
            .any(|(network, bits)| in_range(address, canonical(*network), *bits))
    }

    /// The client address of a request from `peer` with `headers`.
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer.ip());
        if !self.contains(peer) {
            return peer;
        }
        let chain = forwarded_chain(headers);
        chain
            .iter()
            .rev()
            .copied()
            .find(|address| !self.contains(*address))
            .or_else(|| chain.first().copied())
            .unwrap_or(peer)
    }
}

fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(address),
        v4 => v4,
    }
}

fn in_range(address: IpAddr, network: IpAddr, bits: u8) -> bool {
    match (address, network) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Addresses from `Forwarded: for=…` (preferred) or `X-Forwarded-For`, in
/// order (client first). Unparsable entries are skipped.
fn forwarded_chain(headers: &HeaderMap) -> Vec<IpAddr> {
    let forwarded: Vec<IpAddr> = headers
        .get_all(http::header::FORWARDED)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .flat_map(|element| element.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            name.eq_ignore_ascii_case("for")
                .then(|| parse_node(value))?
        })
        .collect();
    if !forwarded.is_empty() {
        return forwarded;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(parse_node)
        .collect()
}

/// `1.2.3.4`, `"[2001:db8::1]:443"`, `1.2.3.4:80`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Ok(address) = node.parse::<IpAddr>() {
        return Some(address);
    }
    if let Ok(socket) = node.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    node.strip_prefix('[')
        .and_then(|rest| rest.split(']').next())
        .and_then(|inner| inner.parse().ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn spoofed_headers_from_an_untrusted_peer_are_ignored() {
        let proxies = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        let peer: SocketAddr = "203.0.113.9:5000".parse().unwrap();
        let spoofed = headers(&[("x-forwarded-for", "1.1.1.1"), ("forwarded", "for=2.2.2.2")]);
        assert_eq!(proxies.client_ip(peer, &spoofed), peer.ip());
        assert_eq!(TrustedProxies::none().client_ip(peer, &spoofed), peer.ip());
    }

    #[test]
    fn a_trusted_proxy_chain_yields_the_rightmost_untrusted_address() {
        let proxies = TrustedProxies::parse(["10.0.0.0/8", "::1"]).unwrap();
        let peer: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        // The client claims 9.9.9.9; the edge proxy saw 198.51.100.7.
        let chain = headers(&[("x-forwarded-for", "9.9.9.9, 198.51.100.7, 10.0.0.5")]);
        assert_eq!(proxies.client_ip(peer, &chain).to_string(), "198.51.100.7");
        let forwarded = headers(&[(
            "forwarded",
            "for=\"[2001:db8::1]:4711\";proto=https, for=10.0.0.5",
        )]);
        assert_eq!(
            proxies.client_ip(peer, &forwarded).to_string(),
            "2001:db8::1"
        );
        let v6_peer: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(
            proxies.client_ip(v6_peer, &chain).to_string(),
            "198.51.100.7"
        );
        // No header: the proxy itself.
        assert_eq!(proxies.client_ip(peer, &HeaderMap::new()), peer.ip());
    }

    #[test]
    fn bad_entries_are_refused_clearly() {
        let error = TrustedProxies::parse(["10.0.0.0/33"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("prefix length"), "{error}");
        assert!(TrustedProxies::parse(["proxy.local"]).is_err());
    }
}
