//! [`Networks`]: address prefixes (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`) a registrar
//! trusts: requests from them may look users up without authenticating, and are exempt from
//! per-source limits (an edge proxy or SBC sends for thousands of phones from one address).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Most prefixes in one list; trust is for a few proxies and management networks, and the
/// check is a linear scan on every request.
pub const NETWORKS_MAX: usize = 64;

/// A prefix that does not parse; the message quotes it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid network {0:?}: expected an address or address/prefix-length")]
pub struct NetworkError(pub String);

/// One address prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix_length: u8,
}

impl Network {
    /// Whether `address` is inside the prefix. IPv4-mapped IPv6 addresses match IPv4 prefixes.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        match (self.address, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                masked(u128::from(u32::from(network)), 32, self.prefix_length)
                    == masked(u128::from(u32::from(address)), 32, self.prefix_length)
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                masked(u128::from(network), 128, self.prefix_length)
                    == masked(u128::from(address), 128, self.prefix_length)
            }
            _ => false,
        }
    }
}

impl FromStr for Network {
    type Err = NetworkError;

    fn from_str(text: &str) -> Result<Network, NetworkError> {
        let error = || NetworkError(text.chars().take(64).collect());
        let (address, prefix_length) = match text.trim().split_once('/') {
            Some((address, length)) => (address, Some(length)),
            None => (text.trim(), None),
        };
        let address = canonical(address.parse::<IpAddr>().map_err(|_| error())?);
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix_length = match prefix_length {
            None => bits,
            Some(length) => length.parse::<u8>().map_err(|_| error())?,
        };
        if prefix_length > bits {
            return Err(error());
        }
        Ok(Network {
            address,
            prefix_length,
        })
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_length)
    }
}

/// A list of prefixes; empty trusts nobody.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Networks(Vec<Network>);

impl Networks {
    /// Parses every entry; at most [`NETWORKS_MAX`].
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Networks, NetworkError> {
        if entries.len() > NETWORKS_MAX {
            return Err(NetworkError(format!("more than {NETWORKS_MAX} networks")));
        }
        entries
            .iter()
            .map(|entry| entry.as_ref().parse())
            .collect::<Result<Vec<_>, _>>()
            .map(Networks)
    }

    /// Whether any prefix contains `address`.
    pub fn contains(&self, address: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(address))
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// IPv4-mapped IPv6 as IPv4, so a dual-stack socket's peers match IPv4 prefixes.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn masked(value: u128, bits: u8, prefix_length: u8) -> u128 {
    if prefix_length == 0 {
        return 0;
    }
    let shift = u32::from(bits - prefix_length);
    (value >> shift) << shift
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn prefixes_match_their_addresses() {
        let networks =
            Networks::parse(&["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]).expect("valid networks");
        for inside in ["10.1.2.3", "192.0.2.7", "2001:db8::1", "::ffff:10.9.9.9"] {
            assert!(networks.contains(ip(inside)), "{inside}");
        }
        for outside in ["11.0.0.1", "192.0.2.8", "2001:db9::1", "127.0.0.1"] {
            assert!(!networks.contains(ip(outside)), "{outside}");
        }
        let everyone = Networks::parse(&["0.0.0.0/0"]).expect("valid");
        assert!(everyone.contains(ip("203.0.113.9")));
        assert!(!Networks::default().contains(ip("127.0.0.1")));
    }

    #[test]
    fn bad_prefixes_are_named() {
        for bad in ["10.0.0.0/33", "example.com", "10.0.0.0/x", "::/129", ""] {
            let error = Networks::parse(&[bad]).expect_err(bad);
            assert!(error.to_string().contains("invalid network"), "{error}");
        }
    }
}
