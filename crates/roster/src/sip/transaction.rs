//! UDP server transactions (RFC 3261 §17.2), sans-IO: a retransmitted request gets the same
//! response again and is not handled twice, and final non-2xx answers to INVITE are
//! retransmitted until the ACK comes (timer G).
//!
//! Method families: [`ServerTransactions::on_request`] and [`ServerTransactions::on_response`]
//! feed events; [`ServerTransactions::poll_timeout`] says when to call
//! [`ServerTransactions::handle_timeout`], which returns what to send again. Time is an argument
//! (milliseconds, monotonic, never decreasing between calls).

use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use roster_sip::{Method, Request};

/// RFC 3261 T1: round-trip estimate.
pub const T1_MS: u64 = 500;
/// RFC 3261 T2: longest retransmit interval for INVITE responses.
pub const T2_MS: u64 = 4_000;
/// RFC 3261 T4: longest time a message stays in the network.
pub const T4_MS: u64 = 5_000;
/// Timer J (non-INVITE) and timer H (INVITE awaiting ACK): 64·T1.
pub const TIMER_J_MS: u64 = 64 * T1_MS;
/// Transactions kept at most. At 10,000 requests/s a transaction lives 32 s (timer J), so
/// 320,000 are live at that load; past the bound the oldest are forgotten early, which only
/// means a very late retransmission is handled again (CSeq ordering still holds).
pub const TRANSACTIONS_MAX: usize = 500_000;

/// What identifies a server transaction (RFC 3261 §17.2.3): a 128-bit keyed hash of branch,
/// sent-by and method, so a live transaction costs 16 bytes of key, not three strings.
/// The hash keys are random per node, so a client cannot aim a collision at another's
/// transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionKey(u128);

/// Computes [`TransactionKey`]s; cheap to clone.
#[derive(Clone, Debug)]
pub struct KeyHasher([RandomState; 2]);

impl Default for KeyHasher {
    fn default() -> Self {
        KeyHasher([RandomState::new(), RandomState::new()])
    }
}

impl KeyHasher {
    /// The key of `request`; ACK maps to the INVITE it acknowledges. `None` without a usable
    /// Via (or, for RFC 2543 branches, Call-ID, CSeq and From).
    pub fn key(&self, request: &Request) -> Option<TransactionKey> {
        let via = request.headers.top_via().ok()?;
        let method = match request.method {
            Method::Ack => Method::Invite.as_str(),
            ref other => other.as_str(),
        };
        let mut parts: [u64; 2] = [0; 2];
        for (part, state) in parts.iter_mut().zip(&self.0) {
            let mut hasher = state.build_hasher();
            via.host.to_ascii_lowercase().hash(&mut hasher);
            via.port.hash(&mut hasher);
            method.hash(&mut hasher);
            match via.branch() {
                Some(branch) if branch.starts_with("z9hG4bK") => branch.hash(&mut hasher),
                // RFC 2543 clients: fall back to Call-ID, CSeq number and From tag (§17.2.3).
                _ => {
                    request.headers.call_id().ok()?.hash(&mut hasher);
                    request.headers.cseq().ok()?.seq.hash(&mut hasher);
                    let from = request.headers.from().ok()?;
                    from.tag().unwrap_or_default().hash(&mut hasher);
                }
            }
            *part = hasher.finish();
        }
        Some(TransactionKey(
            (u128::from(parts[0]) << 64) | u128::from(parts[1]),
        ))
    }
}

/// Shards of a node's table: a resize or a timer sweep locks one shard, so the receive loop
/// never waits behind a rehash of every live transaction.
pub const TRANSACTION_SHARDS: usize = 16;

/// A socket's transactions, sharded by key.
pub struct TransactionTable {
    hasher: KeyHasher,
    /// `std` mutexes: every section is a map operation without `.await`.
    shards: Vec<Mutex<ServerTransactions>>,
}

impl Default for TransactionTable {
    fn default() -> Self {
        TransactionTable {
            hasher: KeyHasher::default(),
            shards: (0..TRANSACTION_SHARDS)
                .map(|_| {
                    Mutex::new(ServerTransactions::new(
                        TRANSACTIONS_MAX / TRANSACTION_SHARDS,
                    ))
                })
                .collect(),
        }
    }
}

impl TransactionTable {
    /// The key of `request` in this table.
    pub fn key(&self, request: &Request) -> Option<TransactionKey> {
        self.hasher.key(request)
    }

    /// The shard holding `key`.
    pub fn shard(&self, key: &TransactionKey) -> &Mutex<ServerTransactions> {
        // The key is a uniform hash, so its low bits spread the shards evenly.
        &self.shards[(key.0 % TRANSACTION_SHARDS as u128) as usize]
    }

    /// Runs every shard's timers; returns what to send again.
    pub fn handle_timeout(&self, now_ms: u64) -> Vec<Transmit> {
        let mut sends = Vec::new();
        for shard in &self.shards {
            if let Ok(mut shard) = shard.lock() {
                sends.extend(shard.handle_timeout(now_ms));
            }
        }
        sends
    }
}

/// What to do with an arriving request.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A new transaction: handle the request.
    New,
    /// A retransmission: send this response again, or nothing while the first copy is still
    /// being handled.
    Retransmission(Option<Transmit>),
    /// An ACK for a final INVITE response we sent: the transaction is confirmed.
    Acknowledged,
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub destination: SocketAddr,
    /// The encoded response; a table's responses share chunks (see [`ResponseChunks`]).
    pub bytes: Bytes,
}

/// Size of the chunks responses are copied into.
const RESPONSE_CHUNK_SIZE: usize = 32 * 1024;

/// Where a table's kept responses live: copied one after another into chunks of
/// [`RESPONSE_CHUNK_SIZE`], each freed when the last response in it goes.
///
/// A response is kept for timer J (32 s). Allocated one by one, a sign-in storm's responses
/// sat between long-lived allocations of the same size (a binding's buffer, a log run in
/// sled) and, once freed, left those pages partly used: a node that had answered a storm kept
/// tens of MB more resident than its peers for good. Responses of the same few milliseconds
/// share a chunk and expire together, so a chunk is freed whole.
#[derive(Debug, Default)]
struct ResponseChunks {
    /// The unused rest of the current chunk.
    free: BytesMut,
}

impl ResponseChunks {
    /// A copy of `encoded`, in the current chunk (a new one when it does not fit).
    fn keep(&mut self, encoded: &[u8]) -> Bytes {
        if self.free.capacity() < encoded.len() {
            // The old chunk lives on in the responses cut from it.
            self.free = BytesMut::with_capacity(RESPONSE_CHUNK_SIZE.max(encoded.len()));
        }
        self.free.extend_from_slice(encoded);
        self.free.split().freeze()
    }
}

/// A table whose capacity is over this many times its length, and over
/// [`SPARSE_CAPACITY_MIN`], is shrunk to twice its length.
const SPARSE_FACTOR: usize = 4;

/// Tables this small are never shrunk.
const SPARSE_CAPACITY_MIN: usize = 1024;

/// The live UDP server transactions of a node.
#[derive(Debug, Default)]
pub struct ServerTransactions {
    entries: HashMap<TransactionKey, Entry>,
    /// (deadline, key): lazy; an entry whose deadline moved is skipped when popped.
    expiries: BinaryHeap<Reverse<(u64, TransactionKey)>>,
    /// (deadline, key) of timer G retransmissions; lazy in the same way.
    retransmits: BinaryHeap<Reverse<(u64, TransactionKey)>>,
    /// Live transactions at most in this table.
    capacity: usize,
    /// The responses kept for retransmissions.
    responses: ResponseChunks,
}

#[derive(Debug)]
struct Entry {
    response: Option<Transmit>,
    expires_at_ms: u64,
    /// Timer G: next retransmission and its interval; `None` when not retransmitting.
    retransmit: Option<(u64, u64)>,
    /// The ACK came (possibly before the response was recorded): never retransmit.
    acknowledged: bool,
}

impl ServerTransactions {
    /// No transactions; at most `capacity` live ones (the oldest go first past it).
    pub fn new(capacity: usize) -> ServerTransactions {
        ServerTransactions {
            capacity: capacity.max(1),
            ..ServerTransactions::default()
        }
    }

    /// Live transactions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A request arrived at `now_ms`.
    pub fn on_request(&mut self, key: &TransactionKey, is_ack: bool, now_ms: u64) -> Received {
        if is_ack {
            return match self.entries.get_mut(key) {
                Some(entry) => {
                    // Timer I: absorb ACK retransmissions for T4, send nothing more.
                    entry.retransmit = None;
                    entry.acknowledged = true;
                    entry.expires_at_ms = now_ms + T4_MS;
                    self.expiries.push(Reverse((entry.expires_at_ms, *key)));
                    Received::Acknowledged
                }
                None => Received::New,
            };
        }
        if let Some(entry) = self.entries.get(key) {
            return Received::Retransmission(entry.response.clone());
        }
        while self.entries.len() >= self.capacity {
            if !self.evict_earliest() {
                break;
            }
        }
        let expires_at_ms = now_ms + TIMER_J_MS;
        self.entries.insert(
            *key,
            Entry {
                response: None,
                expires_at_ms,
                retransmit: None,
                acknowledged: false,
            },
        );
        self.expiries.push(Reverse((expires_at_ms, *key)));
        Received::New
    }

    /// The response `encoded` to the transaction `key`, for `destination`, is about to be
    /// sent at `now_ms`: keeps it for retransmissions and returns what to send. `retransmit`
    /// asks for timer G (a final non-2xx answer to an INVITE over UDP).
    pub fn on_response(
        &mut self,
        key: &TransactionKey,
        destination: SocketAddr,
        encoded: &[u8],
        retransmit: bool,
        now_ms: u64,
    ) -> Transmit {
        let Some(entry) = self.entries.get_mut(key) else {
            // Forgotten early (the table was full): send it, keep nothing.
            return Transmit {
                destination,
                bytes: Bytes::copy_from_slice(encoded),
            };
        };
        let transmit = Transmit {
            destination,
            bytes: self.responses.keep(encoded),
        };
        entry.response = Some(transmit.clone());
        if entry.acknowledged {
            return transmit;
        }
        entry.expires_at_ms = now_ms + TIMER_J_MS;
        self.expiries.push(Reverse((entry.expires_at_ms, *key)));
        if retransmit {
            let next = now_ms + T1_MS;
            entry.retransmit = Some((next, T1_MS));
            self.retransmits.push(Reverse((next, *key)));
        }
        transmit
    }

    /// Forgets the transaction `key` at once: its answer was stateless (a challenge, an error
    /// or a shed request that changed nothing), so a retransmission may be handled again, and
    /// a flood of such requests keeps no memory for timer J.
    pub fn forget(&mut self, key: &TransactionKey) {
        self.entries.remove(key);
    }

    /// When [`ServerTransactions::handle_timeout`] has work next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        let expiry = self.expiries.peek().map(|Reverse((at, _))| *at);
        let retransmit = self.retransmits.peek().map(|Reverse((at, _))| *at);
        match (expiry, retransmit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Ends transactions whose time is up and returns the responses to send again.
    #[must_use]
    pub fn handle_timeout(&mut self, now_ms: u64) -> Vec<Transmit> {
        while let Some(Reverse((at, _))) = self.expiries.peek() {
            if *at > now_ms {
                break;
            }
            let Some(Reverse((at, key))) = self.expiries.pop() else {
                break;
            };
            if self
                .entries
                .get(&key)
                .is_some_and(|e| e.expires_at_ms == at)
            {
                self.entries.remove(&key);
            }
        }
        let mut sends = Vec::new();
        while let Some(Reverse((at, _))) = self.retransmits.peek() {
            if *at > now_ms {
                break;
            }
            let Some(Reverse((at, key))) = self.retransmits.pop() else {
                break;
            };
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            let Some((next, interval)) = entry.retransmit else {
                continue;
            };
            if next != at {
                continue;
            }
            if let Some(transmit) = &entry.response {
                sends.push(transmit.clone());
            }
            let interval = (interval * 2).min(T2_MS);
            entry.retransmit = Some((now_ms + interval, interval));
            self.retransmits.push(Reverse((now_ms + interval, key)));
        }
        self.shrink_if_sparse();
        sends
    }

    /// Gives back the memory of a storm that has passed: a map and heaps sized for its peak
    /// are shrunk once they are mostly empty.
    fn shrink_if_sparse(&mut self) {
        let sparse = |capacity: usize, len: usize| {
            capacity > SPARSE_CAPACITY_MIN && capacity > SPARSE_FACTOR * len
        };
        if sparse(self.entries.capacity(), self.entries.len()) {
            self.entries.shrink_to(2 * self.entries.len());
        }
        for heap in [&mut self.expiries, &mut self.retransmits] {
            if sparse(heap.capacity(), heap.len()) {
                heap.shrink_to(2 * heap.len());
            }
        }
    }

    /// Forgets the transaction that expires first; false when there is none.
    fn evict_earliest(&mut self) -> bool {
        while let Some(Reverse((at, key))) = self.expiries.pop() {
            if self
                .entries
                .get(&key)
                .is_some_and(|e| e.expires_at_ms == at)
            {
                self.entries.remove(&key);
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_sip::{parse_message, Message};

    fn request(method: &str, branch: &str) -> Request {
        let text = format!(
            "{method} sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch={branch}\r\n\
             From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c\r\n\
             CSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        match parse_message(text.as_bytes()) {
            Ok(Message::Request(request)) => request,
            other => panic!("bad test request: {other:?}"),
        }
    }

    fn destination() -> SocketAddr {
        "192.0.2.1:5070".parse().expect("address")
    }

    fn transmit(bytes: &[u8]) -> Transmit {
        Transmit {
            destination: destination(),
            bytes: Bytes::copy_from_slice(bytes),
        }
    }

    #[test]
    fn retransmission_gets_the_same_response() {
        let mut transactions = ServerTransactions::new(TRANSACTIONS_MAX);
        let hasher = KeyHasher::default();
        let key = hasher.key(&request("REGISTER", "z9hG4bK1")).expect("key");
        assert_eq!(transactions.on_request(&key, false, 0), Received::New);
        assert_eq!(
            transactions.on_request(&key, false, 10),
            Received::Retransmission(None)
        );
        assert_eq!(
            transactions.on_response(&key, destination(), b"200", false, 20),
            transmit(b"200")
        );
        assert_eq!(
            transactions.on_request(&key, false, 30),
            Received::Retransmission(Some(transmit(b"200")))
        );
        // Timer J ends it.
        assert!(transactions.handle_timeout(20 + TIMER_J_MS).is_empty());
        assert!(transactions.is_empty());
        assert_eq!(transactions.on_request(&key, false, 40_000), Received::New);
    }

    #[test]
    fn different_branch_or_method_is_a_new_transaction() {
        let mut transactions = ServerTransactions::new(TRANSACTIONS_MAX);
        let hasher = KeyHasher::default();
        let a = hasher.key(&request("REGISTER", "z9hG4bK1")).expect("key");
        let b = hasher.key(&request("REGISTER", "z9hG4bK2")).expect("key");
        let c = hasher.key(&request("OPTIONS", "z9hG4bK1")).expect("key");
        for key in [&a, &b, &c] {
            assert_eq!(transactions.on_request(key, false, 0), Received::New);
        }
    }

    #[test]
    fn invite_failure_retransmits_until_ack() {
        let mut transactions = ServerTransactions::new(TRANSACTIONS_MAX);
        let hasher = KeyHasher::default();
        let invite = hasher.key(&request("INVITE", "z9hG4bK9")).expect("key");
        let ack = hasher.key(&request("ACK", "z9hG4bK9")).expect("key");
        assert_eq!(invite, ack);
        transactions.on_request(&invite, false, 0);
        transactions.on_response(&invite, destination(), b"302", true, 0);
        assert_eq!(transactions.poll_timeout(), Some(T1_MS));
        assert_eq!(transactions.handle_timeout(T1_MS), vec![transmit(b"302")]);
        assert_eq!(transactions.handle_timeout(T1_MS + 999), vec![]);
        assert_eq!(
            transactions.handle_timeout(3 * T1_MS),
            vec![transmit(b"302")]
        );
        assert_eq!(
            transactions.on_request(&ack, true, 2000),
            Received::Acknowledged
        );
        assert!(transactions.handle_timeout(10_000).is_empty());
        assert!(transactions.is_empty(), "timer I ended it");
    }

    #[test]
    fn ack_before_recorded_response_stops_timer_g() {
        let mut transactions = ServerTransactions::new(TRANSACTIONS_MAX);
        let hasher = KeyHasher::default();
        let invite = hasher.key(&request("INVITE", "z9hG4bK7")).expect("key");
        transactions.on_request(&invite, false, 0);
        assert_eq!(
            transactions.on_request(&invite, true, 1),
            Received::Acknowledged
        );
        transactions.on_response(&invite, destination(), b"302", true, 2);
        assert!(transactions.handle_timeout(10 * T1_MS).is_empty());
    }

    #[test]
    fn stray_ack_is_new() {
        let mut transactions = ServerTransactions::new(TRANSACTIONS_MAX);
        let hasher = KeyHasher::default();
        let ack = hasher.key(&request("ACK", "z9hG4bK5")).expect("key");
        assert_eq!(transactions.on_request(&ack, true, 0), Received::New);
        assert!(transactions.is_empty());
    }

    #[test]
    fn kept_responses_share_chunks_and_keep_their_bytes() {
        let mut chunks = ResponseChunks::default();
        let a = chunks.keep(b"SIP/2.0 200 OK a");
        let b = chunks.keep(b"SIP/2.0 200 OK bb");
        assert_eq!(&a[..], b"SIP/2.0 200 OK a");
        assert_eq!(&b[..], b"SIP/2.0 200 OK bb");
        // Adjacent in one allocation.
        assert_eq!(a.as_ptr().wrapping_add(a.len()), b.as_ptr());
        // Larger than a chunk: a chunk of its own.
        let large = vec![7u8; RESPONSE_CHUNK_SIZE + 1];
        assert_eq!(chunks.keep(&large), large);
        // A full chunk is replaced, and what was cut from it stays intact.
        let filler = vec![1u8; 1000];
        let kept: Vec<Bytes> = (0..100).map(|_| chunks.keep(&filler)).collect();
        assert!(kept.iter().all(|response| response[..] == filler[..]));
        assert_eq!(&a[..], b"SIP/2.0 200 OK a");
    }

    #[test]
    fn a_forgotten_transaction_still_gets_its_response_sent() {
        let mut transactions = ServerTransactions::new(1);
        let hasher = KeyHasher::default();
        let first = hasher.key(&request("REGISTER", "z9hG4bK1")).expect("key");
        let second = hasher.key(&request("REGISTER", "z9hG4bK2")).expect("key");
        transactions.on_request(&first, false, 0);
        transactions.on_request(&second, false, 1);
        assert_eq!(transactions.len(), 1, "the first was evicted");
        assert_eq!(
            transactions.on_response(&first, destination(), b"200", false, 2),
            transmit(b"200")
        );
    }

    /// The keys of `count` REGISTERs with distinct branches.
    fn storm(hasher: &KeyHasher, count: usize) -> Vec<TransactionKey> {
        (0..count)
            .map(|n| {
                hasher
                    .key(&request("REGISTER", &format!("z9hG4bK{n}")))
                    .expect("key")
            })
            .collect()
    }

    #[test]
    fn tables_shrink_once_a_storm_has_passed() {
        let mut transactions = ServerTransactions::new(TRANSACTIONS_MAX);
        let hasher = KeyHasher::default();
        for key in storm(&hasher, 20_000) {
            transactions.on_request(&key, false, 0);
            transactions.on_response(&key, destination(), b"200", false, 0);
        }
        let peak = transactions.entries.capacity();
        assert!(peak >= 20_000);
        // One transaction of the quiet time after.
        let late = hasher
            .key(&request("REGISTER", "z9hG4bKlate"))
            .expect("key");
        transactions.on_request(&late, false, TIMER_J_MS);
        assert!(transactions.handle_timeout(TIMER_J_MS).is_empty());
        assert_eq!(transactions.len(), 1);
        assert!(
            transactions.entries.capacity() <= SPARSE_CAPACITY_MIN,
            "map still sized for the storm: {} of {peak}",
            transactions.entries.capacity()
        );
        assert!(transactions.expiries.capacity() <= SPARSE_CAPACITY_MIN);
        // And still works.
        assert_eq!(
            transactions.on_request(&late, false, TIMER_J_MS + 1),
            Received::Retransmission(None)
        );
    }

    #[test]
    fn steady_load_does_not_shrink() {
        let mut transactions = ServerTransactions::new(TRANSACTIONS_MAX);
        for key in storm(&KeyHasher::default(), 5_000) {
            transactions.on_request(&key, false, 0);
        }
        let capacity = transactions.entries.capacity();
        assert!(transactions.handle_timeout(1).is_empty());
        assert_eq!(transactions.entries.capacity(), capacity);
    }
}
