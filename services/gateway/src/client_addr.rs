//! The client's address, for per-address limits and logs: the TCP peer, or —
//! only when the peer is a proxy listed in `TRUSTED_PROXIES` — the address
//! that `X-Forwarded-For` names.
//!
//! `X-Forwarded-For` is read from the right: each trusted proxy appends the
//! address it received the request from, so the first address from the right
//! that is not itself a trusted proxy is the client. Anything to its left was
//! written by the client and is ignored (a client cannot pick its address).

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::request::Parts,
};
use env_config::ConfigError;

use crate::state::AppState;

/// An address range: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `fd00::/8`, or a single address.
    pub fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address.parse::<IpAddr>().ok()?, Some(prefix.parse::<u8>().ok()?)),
            None => (text.trim().parse::<IpAddr>().ok()?, None),
        };
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        (prefix <= bits).then_some(Self { network: address, prefix })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        match (self.network, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4 address mapped into IPv6 (a dual-stack listener) as plain IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// The proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`:
/// comma-separated addresses or ranges; unset: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    pub fn from_env() -> Result<Self, ConfigError> {
        env_config::string("TRUSTED_PROXIES").map_or(Ok(Self::default()), |value| Self::parse(&value))
    }

    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        value
            .split(',')
            .filter(|item| !item.trim().is_empty())
            .map(|item| {
                Cidr::parse(item).ok_or_else(|| {
                    ConfigError::invalid("TRUSTED_PROXIES", value, format_args!("{item:?} is not an address or range"))
                })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|cidr| cidr.contains(address))
    }

    /// The client behind `peer`, given the `X-Forwarded-For` values the request carried.
    pub fn client(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let hops = forwarded_for.iter().flat_map(|value| value.split(',')).map(str::trim).collect::<Vec<_>>();
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop.parse::<IpAddr>().map(canonical) {
                Ok(address) => {
                    client = address;
                    if !self.trusts(address) {
                        break;
                    }
                }
                // A hop that is no address: stop at the last one we could believe.
                Err(_) => break,
            }
        }
        client
    }
}

/// The client's address (see the module docs); unspecified when the server
/// runs without connection info (in-process router tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(addr)| addr.ip());
        let forwarded: Vec<&str> =
            parts.headers.get_all("x-forwarded-for").iter().filter_map(|value| value.to_str().ok()).collect();
        Ok(Self(state.trusted_proxies.client(peer, &forwarded)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_contain_what_they_should() {
        let cases = [
            ("10.0.0.0/8", "10.1.2.3", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("192.168.1.7", "192.168.1.7", true),
            ("192.168.1.7", "192.168.1.8", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("127.0.0.1", "::ffff:127.0.0.1", true),
            ("10.0.0.0/8", "::1", false),
        ];
        for (range, address, expected) in cases {
            assert_eq!(Cidr::parse(range).unwrap().contains(ip(address)), expected, "{range} ∋ {address}");
        }
        for bad in ["10.0.0.0/33", "::/129", "ten", "10.0.0.0/x", ""] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_client_is_the_first_untrusted_hop_from_the_right() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1").unwrap();
        let cases: [(&str, &[&str], &str); 8] = [
            // peer, X-Forwarded-For values, client
            ("203.0.113.9", &[], "203.0.113.9"),
            ("203.0.113.9", &["1.2.3.4"], "203.0.113.9"),
            ("10.0.0.5", &[], "10.0.0.5"),
            ("10.0.0.5", &["198.51.100.1"], "198.51.100.1"),
            ("10.0.0.5", &["6.6.6.6, 198.51.100.1"], "198.51.100.1"),
            ("10.0.0.5", &["6.6.6.6, 198.51.100.1, 10.0.0.9"], "198.51.100.1"),
            ("10.0.0.5", &["6.6.6.6", "198.51.100.1"], "198.51.100.1"),
            ("10.0.0.5", &["garbage, 10.0.0.7"], "10.0.0.7"),
        ];
        for (peer, forwarded, client) in cases {
            assert_eq!(proxies.client(ip(peer), forwarded), ip(client), "{peer} {forwarded:?}");
        }
        assert_eq!(TrustedProxies::default().client(ip("10.0.0.5"), &["1.1.1.1"]), ip("10.0.0.5"), "none trusted");
    }

    #[test]
    fn a_bad_proxy_list_names_the_variable() {
        let error = TrustedProxies::parse("10.0.0.0/8,proxy.local").unwrap_err().to_string();
        assert!(error.contains("TRUSTED_PROXIES") && error.contains("proxy.local"), "{error}");
        assert_eq!(TrustedProxies::parse(" ").unwrap(), TrustedProxies::default());
    }
}
