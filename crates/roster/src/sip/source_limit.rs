//! Per-source limits at the transports, sans-IO: [`SourceRates`] (UDP requests per second, a
//! token bucket per source) and [`SourceConnections`] (open TCP and TLS connections per
//! source). A source is an IPv4 address or an IPv6 /64; sources in the trusted networks are
//! never limited.
//!
//! One flooding source then costs the node a hash lookup per datagram or connection, and the
//! other clients keep their share.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use roster_registrar::Networks;

/// Sources one table tracks at most per generation; when the current generation is full the
/// older one is dropped whole (its sources start afresh with full buckets). 65,536 entries of
/// about 32 bytes, two generations: a few MiB.
pub const SOURCES_TRACKED_MAX: usize = 65_536;

/// The key of a source: an IPv4 address, or the /64 of an IPv6 address (a host's share),
/// as the guess limiter counts them.
pub use roster_auth::source_prefix as source_key;

/// A token bucket per source: `rate_per_s` requests a second, bursts of twice that.
#[derive(Debug)]
pub struct SourceRates {
    rate_per_s: u32,
    trusted: Networks,
    current: HashMap<u128, Bucket>,
    previous: HashMap<u128, Bucket>,
}

/// Tokens in thousandths, so that a rate below 1,000/s refills by whole thousandths per ms.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    milli_tokens: u64,
    updated_ms: u64,
}

impl SourceRates {
    /// Buckets of `rate_per_s` (at least 1), not applied to `trusted`.
    pub fn new(rate_per_s: u32, trusted: Networks) -> SourceRates {
        SourceRates {
            rate_per_s: rate_per_s.max(1),
            trusted,
            current: HashMap::new(),
            previous: HashMap::new(),
        }
    }

    /// Whether a request from `source` at `now_ms` (monotonic) may be handled; takes a token.
    pub fn admit(&mut self, source: IpAddr, now_ms: u64) -> bool {
        if self.trusted.contains(source) {
            return true;
        }
        let key = source_key(source);
        let capacity = u64::from(self.rate_per_s) * 2 * 1000;
        let bucket = match self.current.get(&key).copied() {
            Some(bucket) => bucket,
            None => {
                let carried = self.previous.remove(&key).unwrap_or(Bucket {
                    milli_tokens: capacity,
                    updated_ms: now_ms,
                });
                if self.current.len() >= SOURCES_TRACKED_MAX {
                    self.previous = std::mem::take(&mut self.current);
                }
                carried
            }
        };
        let elapsed_ms = now_ms.saturating_sub(bucket.updated_ms);
        let refilled = bucket
            .milli_tokens
            .saturating_add(elapsed_ms.saturating_mul(u64::from(self.rate_per_s)))
            .min(capacity);
        let admitted = refilled >= 1000;
        let milli_tokens = if admitted { refilled - 1000 } else { refilled };
        self.current.insert(
            key,
            Bucket {
                milli_tokens,
                updated_ms: now_ms.max(bucket.updated_ms),
            },
        );
        admitted
    }
}

/// Open connections per source, at most `per_source_max` each (trusted sources unbounded).
#[derive(Debug)]
pub struct SourceConnections {
    per_source_max: usize,
    trusted: Networks,
    /// A `std` mutex: every section is a map operation without `.await`.
    open: Mutex<HashMap<u128, usize>>,
}

impl SourceConnections {
    /// At most `per_source_max` connections per untrusted source.
    pub fn new(per_source_max: usize, trusted: Networks) -> SourceConnections {
        SourceConnections {
            per_source_max,
            trusted,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a new connection from `source`; `None` when the source is at its bound. The
    /// returned guard gives the place back when dropped.
    pub fn open(self: &std::sync::Arc<Self>, source: IpAddr) -> Option<ConnectionSlot> {
        if self.trusted.contains(source) {
            return Some(ConnectionSlot { owner: None });
        }
        let key = source_key(source);
        let mut open = self.open.lock().ok()?;
        let count = open.entry(key).or_insert(0);
        if *count >= self.per_source_max {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            owner: Some((self.clone(), key)),
        })
    }

    fn close(&self, key: u128) {
        if let Ok(mut open) = self.open.lock() {
            if let Some(count) = open.get_mut(&key) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    open.remove(&key);
                }
            }
        }
    }
}

/// One counted connection; dropping it frees the place.
#[derive(Debug)]
pub struct ConnectionSlot {
    owner: Option<(std::sync::Arc<SourceConnections>, u128)>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some((owner, key)) = self.owner.take() {
            owner.close(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn a_source_gets_its_rate_and_bursts_of_twice_it() {
        let mut rates = SourceRates::new(10, Networks::default());
        let admitted = (0..50).filter(|_| rates.admit(ip("192.0.2.1"), 0)).count();
        assert_eq!(admitted, 20, "a burst of twice the rate");
        assert!(rates.admit(ip("192.0.2.2"), 0), "other sources keep theirs");
        let later = (0..50)
            .filter(|_| rates.admit(ip("192.0.2.1"), 1_000))
            .count();
        assert_eq!(later, 10, "one second refills the rate");
    }

    #[test]
    fn trusted_sources_and_ipv6_prefixes() {
        let trusted = Networks::parse(&["10.0.0.0/8"]).expect("network");
        let mut rates = SourceRates::new(1, trusted);
        assert!((0..100).all(|_| rates.admit(ip("10.1.1.1"), 0)));
        assert!(rates.admit(ip("2001:db8::1"), 0));
        assert!(rates.admit(ip("2001:db8::2"), 0));
        assert!(!rates.admit(ip("2001:db8::3"), 0), "one /64, one bucket");
        assert!(rates.admit(ip("2001:db8:0:1::1"), 0));
    }

    #[test]
    fn connections_are_counted_per_source_and_given_back() {
        let connections = Arc::new(SourceConnections::new(2, Networks::default()));
        let first = connections.open(ip("192.0.2.1"));
        let second = connections.open(ip("192.0.2.1"));
        assert!(first.is_some() && second.is_some());
        assert!(connections.open(ip("192.0.2.1")).is_none());
        assert!(connections.open(ip("192.0.2.2")).is_some());
        drop(first);
        assert!(connections.open(ip("192.0.2.1")).is_some());
    }
}
