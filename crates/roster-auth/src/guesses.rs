//! [`GuessLimiter`]: bounds password guesses per user and per source, sans-IO.
//!
//! A guess is a [`crate::Verdict::Wrong`]: a response over one of our nonces that does not
//! match. Each user name and each source (an IPv4 address, or an IPv6 /64) may make
//! `per_user_max` and `per_source_max` guesses in a fixed window of `window_ms`; past that, the
//! source's requests, and the user's requests from sources it never authenticated from, are
//! refused until the window ends, without checking their answer (so the refusal tells a guesser
//! nothing). A source the user authenticated from before keeps authenticating: the real user's
//! phone registers while someone elsewhere guesses its password.
//!
//! Memory is bounded: each table keeps at most [`GUESS_KEYS_TRACKED_MAX`] keys (user names and
//! sources are hashed to 64 bits with the caller's keyed hasher) in two generations; when the
//! current generation is full the older one is dropped whole.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::net::IpAddr;

/// Default [`GuessLimits::window_ms`]: one minute, the unit operators think in.
pub const GUESS_WINDOW_MS_DEFAULT: u64 = 60_000;

/// Default [`GuessLimits::per_user_max`]: a phone with a mistyped password retries a few times a
/// minute at most; ten wrong answers a minute is already a guesser.
pub const GUESSES_PER_USER_DEFAULT: u32 = 10;

/// Default [`GuessLimits::per_source_max`]: twice the per-user bound, so that an office behind
/// one NAT address with a phone misconfigured does not lock the others out at once.
pub const GUESSES_PER_SOURCE_DEFAULT: u32 = 20;

/// Keys one table (users, sources, known sources) holds at most per generation: 65,536 keys of
/// 8 bytes and a 16-byte window are about 2 MiB per table with two generations and hash-map
/// overhead. Flushing a table to forget a counter takes as many guesses from distinct sources,
/// each bounded by the per-source limit.
pub const GUESS_KEYS_TRACKED_MAX: usize = 65_536;

/// Longest window accepted: a day; past it a lock outlives any reason for it.
pub const GUESS_WINDOW_MS_MAX: u64 = 86_400_000;

/// The limits of a [`GuessLimiter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuessLimits {
    /// Wrong answers per user name per window. Default [`GUESSES_PER_USER_DEFAULT`]; at least 1.
    pub per_user_max: u32,
    /// Wrong answers per source per window. Default [`GUESSES_PER_SOURCE_DEFAULT`]; at least 1.
    pub per_source_max: u32,
    /// The window, fixed from its first wrong answer. Default [`GUESS_WINDOW_MS_DEFAULT`];
    /// 1..=[`GUESS_WINDOW_MS_MAX`].
    pub window_ms: u64,
}

impl Default for GuessLimits {
    fn default() -> Self {
        GuessLimits {
            per_user_max: GUESSES_PER_USER_DEFAULT,
            per_source_max: GUESSES_PER_SOURCE_DEFAULT,
            window_ms: GUESS_WINDOW_MS_DEFAULT,
        }
    }
}

impl GuessLimits {
    /// Whether every field is within its documented bound.
    pub fn is_valid(&self) -> bool {
        self.per_user_max >= 1
            && self.per_source_max >= 1
            && (1..=GUESS_WINDOW_MS_MAX).contains(&self.window_ms)
    }
}

/// Which bound a refusal comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuessScope {
    /// Too many wrong answers for this user name.
    User,
    /// Too many wrong answers from this source.
    Source,
}

impl GuessScope {
    /// `user` or `source`, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            GuessScope::User => "user",
            GuessScope::Source => "source",
        }
    }
}

/// Whether an answer may be checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Check it.
    Allowed,
    /// Refuse it unchecked until the window ends (`503` with `Retry-After`).
    Limited {
        /// The bound reached.
        scope: GuessScope,
        /// Seconds until the window ends, at least 1.
        retry_after_s: u32,
    },
}

/// Counts wrong answers; see the module doc.
///
/// Method families: [`GuessLimiter::admit`] before checking an answer;
/// [`GuessLimiter::record_wrong`] and [`GuessLimiter::record_success`] after. Time is an
/// argument (milliseconds; a clock going back only shortens a window).
#[derive(Debug)]
pub struct GuessLimiter<S> {
    limits: GuessLimits,
    hasher: S,
    users: Windows,
    sources: Windows,
    known: KnownSources,
}

impl<S: BuildHasher> GuessLimiter<S> {
    /// A limiter with `limits`, hashing keys with `hasher` (keyed at random by the caller, so a
    /// guesser cannot aim user names at another user's counter).
    ///
    /// # Panics
    ///
    /// If `limits` is not [`GuessLimits::is_valid`]; check configuration first.
    pub fn new(limits: GuessLimits, hasher: S) -> GuessLimiter<S> {
        assert!(limits.is_valid(), "invalid GuessLimits: {limits:?}");
        GuessLimiter {
            limits,
            hasher,
            users: Windows::default(),
            sources: Windows::default(),
            known: KnownSources::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> GuessLimits {
        self.limits
    }

    /// Whether an answer from `source` for `username` (`None`: a request without one, which
    /// only the source's bound refuses) may be checked at `now_ms`.
    pub fn admit(&self, username: Option<&str>, source: IpAddr, now_ms: u64) -> Admission {
        let window_ms = self.limits.window_ms;
        let source_key = self.source_key(source);
        if let Some(ends_ms) =
            self.sources
                .limited_until(source_key, self.limits.per_source_max, now_ms, window_ms)
        {
            return limited(GuessScope::Source, ends_ms, now_ms);
        }
        let Some(username) = username else {
            return Admission::Allowed;
        };
        let user_key = self.hasher.hash_one(username);
        if let Some(ends_ms) =
            self.users
                .limited_until(user_key, self.limits.per_user_max, now_ms, window_ms)
        {
            if !self
                .known
                .contains(self.hasher.hash_one((username, source_key)))
            {
                return limited(GuessScope::User, ends_ms, now_ms);
            }
        }
        Admission::Allowed
    }

    /// Counts one wrong answer; returns the bounds this answer reached, so the caller logs each
    /// once per window.
    pub fn record_wrong(&mut self, username: &str, source: IpAddr, now_ms: u64) -> Vec<Admission> {
        let window_ms = self.limits.window_ms;
        let mut reached = Vec::new();
        let source_key = self.source_key(source);
        let (count, ends_ms) = self.sources.add(source_key, now_ms, window_ms);
        if count == self.limits.per_source_max {
            reached.push(limited(GuessScope::Source, ends_ms, now_ms));
        }
        let (count, ends_ms) = self
            .users
            .add(self.hasher.hash_one(username), now_ms, window_ms);
        if count == self.limits.per_user_max {
            reached.push(limited(GuessScope::User, ends_ms, now_ms));
        }
        reached
    }

    /// Remembers that `username` authenticated from `source`, which keeps it allowed while the
    /// user's bound is reached by others.
    pub fn record_success(&mut self, username: &str, source: IpAddr) {
        let key = self.hasher.hash_one((username, self.source_key(source)));
        self.known.insert(key);
    }

    fn source_key(&self, source: IpAddr) -> u64 {
        self.hasher.hash_one(source_prefix(source))
    }
}

/// A source as counted: an IPv4 address, or the /64 of an IPv6 address (one host's share;
/// hosts get a /64 and choose addresses in it freely). IPv4-mapped IPv6 counts as IPv4.
pub fn source_prefix(source: IpAddr) -> u128 {
    match source {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => u128::from(v6) & !((1u128 << 64) - 1),
        },
    }
}

fn limited(scope: GuessScope, ends_ms: u64, now_ms: u64) -> Admission {
    let seconds = ends_ms.saturating_sub(now_ms).div_ceil(1000).max(1);
    Admission::Limited {
        scope,
        retry_after_s: u32::try_from(seconds).unwrap_or(u32::MAX),
    }
}

/// A fixed window: when it started and the wrong answers in it.
#[derive(Clone, Copy, Debug)]
struct Window {
    start_ms: u64,
    count: u32,
}

/// Windows per key in two generations of at most [`GUESS_KEYS_TRACKED_MAX`] keys each.
#[derive(Debug, Default)]
struct Windows {
    current: HashMap<u64, Window>,
    previous: HashMap<u64, Window>,
}

impl Windows {
    /// When the window of `key` ends, if its count has reached `max` and it has not ended.
    fn limited_until(&self, key: u64, max: u32, now_ms: u64, window_ms: u64) -> Option<u64> {
        let window = self.current.get(&key).or_else(|| self.previous.get(&key))?;
        let ends_ms = window.start_ms.saturating_add(window_ms);
        (window.count >= max && now_ms < ends_ms).then_some(ends_ms)
    }

    /// Adds one to `key`'s live window (a new one if it ended); returns the count and the end.
    fn add(&mut self, key: u64, now_ms: u64, window_ms: u64) -> (u32, u64) {
        let carried = self
            .current
            .get(&key)
            .copied()
            .or_else(|| self.previous.remove(&key));
        let window = match carried {
            Some(window) if now_ms < window.start_ms.saturating_add(window_ms) => Window {
                count: window.count.saturating_add(1),
                ..window
            },
            _ => Window {
                start_ms: now_ms,
                count: 1,
            },
        };
        if !self.current.contains_key(&key) && self.current.len() >= GUESS_KEYS_TRACKED_MAX {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, window);
        (window.count, window.start_ms.saturating_add(window_ms))
    }
}

/// (user, source) pairs that authenticated, in two generations.
#[derive(Debug, Default)]
struct KnownSources {
    current: HashSet<u64>,
    previous: HashSet<u64>,
}

impl KnownSources {
    fn contains(&self, key: u64) -> bool {
        self.current.contains(&key) || self.previous.contains(&key)
    }

    fn insert(&mut self, key: u64) {
        if self.current.contains(&key) {
            return;
        }
        if self.current.len() >= GUESS_KEYS_TRACKED_MAX {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::RandomState;
    use std::net::Ipv6Addr;

    use super::*;

    fn limiter() -> GuessLimiter<RandomState> {
        GuessLimiter::new(
            GuessLimits {
                per_user_max: 3,
                per_source_max: 5,
                window_ms: 10_000,
            },
            RandomState::new(),
        )
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn a_source_is_limited_after_its_bound_until_the_window_ends() {
        let mut limiter = limiter();
        for (index, user) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            assert_eq!(limiter.admit(Some(user), ip(1), 0), Admission::Allowed);
            let reached = limiter.record_wrong(user, ip(1), 1_000 * index as u64);
            assert_eq!(reached.is_empty(), index < 4, "guess {index}");
        }
        assert_eq!(
            limiter.admit(None, ip(1), 4_500),
            Admission::Limited {
                scope: GuessScope::Source,
                retry_after_s: 6
            }
        );
        assert_eq!(limiter.admit(Some("f"), ip(2), 4_500), Admission::Allowed);
        assert_eq!(limiter.admit(Some("f"), ip(1), 10_000), Admission::Allowed);
        assert!(limiter.record_wrong("f", ip(1), 10_000).is_empty());
    }

    #[test]
    fn a_user_is_limited_except_from_sources_it_authenticated_from() {
        let mut limiter = limiter();
        limiter.record_success("alice", ip(9));
        for source in 1..=3 {
            limiter.record_wrong("alice", ip(source), 0);
        }
        assert_eq!(
            limiter.admit(Some("alice"), ip(4), 1),
            Admission::Limited {
                scope: GuessScope::User,
                retry_after_s: 10
            }
        );
        assert_eq!(limiter.admit(Some("alice"), ip(9), 1), Admission::Allowed);
        assert_eq!(limiter.admit(Some("bob"), ip(4), 1), Admission::Allowed);
    }

    #[test]
    fn the_reached_bound_is_reported_once_per_window() {
        let mut limiter = limiter();
        let reports: Vec<usize> = (0..6)
            .map(|_| limiter.record_wrong("alice", ip(1), 5).len())
            .collect();
        assert_eq!(reports, [0, 0, 1, 0, 1, 0]);
    }

    #[test]
    fn ipv6_sources_count_per_64() {
        let mut limiter = limiter();
        for last in 0..5u16 {
            let address = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last);
            limiter.record_wrong(&format!("u{last}"), IpAddr::V6(address), 0);
        }
        let same_64 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 9, 9, 9, 9));
        let other_64 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1));
        assert!(matches!(
            limiter.admit(Some("x"), same_64, 1),
            Admission::Limited { .. }
        ));
        assert_eq!(limiter.admit(Some("x"), other_64, 1), Admission::Allowed);
    }

    #[test]
    fn tables_stay_bounded() {
        let mut windows = Windows::default();
        for key in 0..(GUESS_KEYS_TRACKED_MAX as u64 * 3) {
            windows.add(key, 0, 1_000);
        }
        assert!(windows.current.len() <= GUESS_KEYS_TRACKED_MAX);
        assert!(windows.previous.len() <= GUESS_KEYS_TRACKED_MAX);
    }
}
