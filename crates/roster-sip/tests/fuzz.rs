//! Bounded fuzzing inside `cargo test`, with proptest: arbitrary bytes, SIP-flavoured token soup,
//! and mutations of the valid corpus (bit flips, truncation, splicing, duplicated header lines)
//! feed `parse_message`, every typed accessor, the URI / name-addr / Via parsers and the
//! `StreamFramer` (random read splits).
//!
//! Properties: nothing panics; errors are one bounded line; output is bounded by input; every
//! parsed value's `Display` parses back to the same value; `encode` is stable after one round.
//!
//! Each property stops after [`CASES_DEFAULT`] cases or [`SECONDS_DEFAULT`] seconds, whichever
//! comes first, so the whole file stays well under 20 s in debug builds. Set
//! `ROSTER_FUZZ_SECS=<seconds>` to run each property for that long instead (no case limit).
//! For open-ended runs use the cargo-fuzz targets in `fuzz/` (`scripts/fuzz`).

mod common;

use std::fmt::Debug;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{accessor_errors, assert_reason_phrase, corpus, encode};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use roster_sip::{
    parse_message, Contacts, Frame, HeaderName, Message, NameAddr, ParseError, StreamFramer, Uri,
    Via, HEADER_COUNT_MAX, SIP_MESSAGE_SIZE_MAX,
};

/// Cases per property when `ROSTER_FUZZ_SECS` is unset.
const CASES_DEFAULT: u32 = 3_000;
/// Wall-clock budget per property when `ROSTER_FUZZ_SECS` is unset.
const SECONDS_DEFAULT: u64 = 3;
/// Cases per `TestRunner::run` call; the deadline is checked between batches.
const BATCH_CASES: u32 = 64;
/// Mutated inputs are capped a little above the message bound, to exercise `TooLarge`
/// without growing without limit.
const MUTATED_SIZE_MAX: usize = SIP_MESSAGE_SIZE_MAX + 1024;

/// Runs `test` on values of `strategy` until the case count or the time budget is used up.
fn fuzz<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let (budget, cases_max) = match std::env::var("ROSTER_FUZZ_SECS") {
        Ok(seconds) => {
            let seconds = seconds
                .parse()
                .expect("ROSTER_FUZZ_SECS must be a number of seconds");
            (Duration::from_secs(seconds), u32::MAX)
        }
        Err(_) => (Duration::from_secs(SECONDS_DEFAULT), CASES_DEFAULT),
    };
    // Config::default() honours PROPTEST_* variables, e.g. PROPTEST_RNG_SEED to replay a run.
    let base = Config {
        cases: BATCH_CASES,
        failure_persistence: None,
        ..Config::default()
    };
    let started = Instant::now();
    let mut cases_run = 0u32;
    let mut batch = 0u64;
    while cases_run < cases_max && started.elapsed() < budget {
        // A runner counts its successes, so each batch needs a fresh one (and a fresh seed).
        let rng_seed = match base.rng_seed {
            RngSeed::Fixed(seed) => RngSeed::Fixed(seed.wrapping_add(batch)),
            RngSeed::Random => RngSeed::Random,
        };
        let mut runner = TestRunner::new(Config {
            rng_seed,
            ..base.clone()
        });
        if let Err(error) = runner.run(&strategy, &test) {
            panic!("{name}: {error}");
        }
        cases_run = cases_run.saturating_add(BATCH_CASES);
        batch += 1;
    }
    eprintln!("{name}: {cases_run} cases in {:?}", started.elapsed());
}

/// Encoded forms of the valid corpus (loaded once).
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        corpus("valid")
            .into_iter()
            .map(|(_, bytes)| bytes)
            .collect()
    })
}

// ---- properties over whole messages

fn check_message(bytes: &[u8]) -> Result<(), TestCaseError> {
    let message = match parse_message(bytes) {
        Ok(message) => message,
        Err(error) => {
            assert_reason_phrase(&error.to_string());
            return Ok(());
        }
    };
    for error in accessor_errors(message.headers()) {
        assert_reason_phrase(&error.to_string());
    }
    check_typed_values_round_trip(&message)?;
    check_encode_is_stable(bytes, &message)
}

/// Every value a typed accessor returns displays as text that parses back to it.
fn check_typed_values_round_trip(message: &Message) -> Result<(), TestCaseError> {
    let headers = message.headers();
    if let Message::Request(request) = message {
        prop_assert_eq!(&Uri::parse(&request.uri.to_string()).unwrap(), &request.uri);
    }
    for via in headers.vias().unwrap_or_default() {
        prop_assert_eq!(Via::parse(&via.to_string()).unwrap(), via);
    }
    let mut name_addrs = Vec::new();
    name_addrs.extend(headers.from());
    name_addrs.extend(headers.to());
    if let Ok(Contacts::List(contacts)) = headers.contacts() {
        name_addrs.extend(contacts);
    }
    for name in [HeaderName::Path, HeaderName::Route, HeaderName::RecordRoute] {
        name_addrs.extend(headers.name_addrs(&name).unwrap_or_default());
    }
    for name_addr in name_addrs {
        prop_assert_eq!(NameAddr::parse(&name_addr.to_string()).unwrap(), name_addr);
    }
    Ok(())
}

/// `encode` output is bounded by the input, re-parses to the same message (Content-Length
/// aside), and encodes to the same bytes again.
fn check_encode_is_stable(input: &[u8], message: &Message) -> Result<(), TestCaseError> {
    let encoded = encode(message);
    // Compact names expand (`l` -> `Content-Length`) and one Content-Length may be added.
    let growth_max = (HEADER_COUNT_MAX + 1) * 24 + 64;
    prop_assert!(encoded.len() <= input.len() + growth_max);
    let reparsed = match parse_message(&encoded) {
        Ok(reparsed) => reparsed,
        // The added Content-Length or the longer names may cross a limit; nothing else may fail.
        Err(ParseError::TooLarge { .. } | ParseError::TooManyHeaders) => return Ok(()),
        Err(error) => return Err(TestCaseError::fail(format!("re-parse failed: {error}"))),
    };
    prop_assert_eq!(without_length(&reparsed), without_length(message));
    prop_assert_eq!(encode(&reparsed), encoded);
    Ok(())
}

fn without_length(message: &Message) -> Message {
    let mut message = message.clone();
    match &mut message {
        Message::Request(request) => request.headers.remove_all(&HeaderName::ContentLength),
        Message::Response(response) => response.headers.remove_all(&HeaderName::ContentLength),
    }
    message
}

/// Feeds `bytes` to a framer in reads split at `splits`, parsing every frame.
fn check_framer(bytes: &[u8], splits: &[Index], size_max: usize) -> Result<(), TestCaseError> {
    let mut offsets: Vec<usize> = splits
        .iter()
        .map(|split| split.index(bytes.len() + 1))
        .collect();
    offsets.push(0);
    offsets.push(bytes.len());
    offsets.sort_unstable();
    let mut framer = StreamFramer::new(size_max);
    let mut framed = 0usize;
    for window in offsets.windows(2) {
        if framer.push(&bytes[window[0]..window[1]]).is_err() {
            return Ok(());
        }
        prop_assert!(framer.buffered() <= 2 * size_max);
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(frame))) => {
                    prop_assert!(frame.len() <= size_max);
                    framed += frame.len();
                    check_message(&frame)?;
                }
                Ok(Some(Frame::KeepAlivePing)) => framed += 4,
                Ok(None) => break,
                Err(error) => {
                    assert_reason_phrase(&error.to_string());
                    return Ok(());
                }
            }
        }
    }
    prop_assert!(framed <= bytes.len());
    Ok(())
}

// ---- strategies

/// Pieces of SIP syntax, to reach deeper than uniformly random bytes.
const TOKENS: &[&str] = &[
    "REGISTER ",
    "OPTIONS ",
    "SIP/2.0 ",
    "SIP/2.0",
    " 200 OK",
    "sip:",
    "sips:",
    "tel:",
    "user",
    "@",
    "example.com",
    "[::1]",
    "[2001:db8::1]",
    ":5060",
    ":",
    ";",
    ",",
    "=",
    "?",
    "&",
    "<",
    ">",
    "\"",
    "\\",
    "\\\"",
    " ",
    "\t",
    "\r\n",
    "\r\n ",
    "\r\n\r\n",
    "\n",
    "\r",
    "\0",
    "*",
    "%",
    "%41",
    "%zz",
    "Via: ",
    "v: ",
    "SIP/2.0/UDP ",
    "SIP / 2.0 / TCP ",
    "branch=z9hG4bK1",
    "rport",
    "received=",
    "Contact: ",
    "m: ",
    "From: ",
    "To: ",
    "tag=",
    "Call-ID: ",
    "CSeq: ",
    "1 ",
    "Content-Length: ",
    "l: ",
    "0",
    "5",
    "99999999999",
    "-1",
    "Expires: ",
    "Max-Forwards: ",
    "Path: ",
    "Route: ",
    "Supported: ",
    "lr",
    "q=0.5",
    "expires=60",
    "\u{e9}",
    "\u{FEFF}",
    "\u{7f}",
];

fn token_soup() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(proptest::sample::select(TOKENS), 0..120)
        .prop_map(|tokens| tokens.concat().into_bytes())
}

#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Truncate(Index),
    Delete(Index, usize),
    Insert(Index, &'static str),
    Splice {
        source: Index,
        start: Index,
        len: usize,
        at: Index,
    },
    DuplicateLine(Index, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::SetByte(at, byte)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), 1usize..64).prop_map(|(at, len)| Mutation::Delete(at, len)),
        (any::<Index>(), proptest::sample::select(TOKENS))
            .prop_map(|(at, token)| Mutation::Insert(at, token)),
        (any::<Index>(), any::<Index>(), 1usize..200, any::<Index>()).prop_map(
            |(source, start, len, at)| Mutation::Splice {
                source,
                start,
                len,
                at
            }
        ),
        (any::<Index>(), 1usize..200)
            .prop_map(|(line, copies)| Mutation::DuplicateLine(line, copies)),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let len = bytes.len();
    match mutation {
        Mutation::FlipBit(at, bit) if len > 0 => bytes[at.index(len)] ^= 1 << bit,
        Mutation::SetByte(at, byte) if len > 0 => bytes[at.index(len)] = *byte,
        Mutation::Truncate(at) => bytes.truncate(at.index(len + 1)),
        Mutation::Delete(at, count) if len > 0 => {
            let start = at.index(len);
            bytes.drain(start..(start + count).min(len));
        }
        Mutation::Insert(at, token) => {
            let at = at.index(len + 1);
            bytes.splice(at..at, token.bytes());
        }
        Mutation::Splice {
            source,
            start,
            len: count,
            at,
        } => {
            let source = &seeds()[source.index(seeds().len())];
            let start = start.index(source.len());
            let piece = &source[start..(start + count).min(source.len())];
            let at = at.index(len + 1);
            bytes.splice(at..at, piece.iter().copied());
        }
        Mutation::DuplicateLine(line, copies) => duplicate_line(bytes, line, *copies),
        _ => {}
    }
    bytes.truncate(MUTATED_SIZE_MAX);
}

/// Repeats one line (with its line break) `copies` times in place: exercises header count and
/// duplicate-field checks.
fn duplicate_line(bytes: &mut Vec<u8>, line: &Index, copies: usize) {
    let starts: Vec<usize> = std::iter::once(0)
        .chain(
            bytes
                .iter()
                .enumerate()
                .filter(|(_, &byte)| byte == b'\n')
                .map(|(index, _)| index + 1),
        )
        .filter(|&start| start < bytes.len())
        .collect();
    if starts.is_empty() {
        return;
    }
    let start = starts[line.index(starts.len())];
    let end = bytes[start..]
        .iter()
        .position(|&byte| byte == b'\n')
        .map_or(bytes.len(), |offset| start + offset + 1);
    let copy = bytes[start..end].to_vec();
    let repeated = copy.repeat(copies);
    bytes.splice(start..start, repeated);
}

fn mutated_seed() -> impl Strategy<Value = Vec<u8>> {
    (any::<Index>(), proptest::collection::vec(mutation(), 1..8)).prop_map(|(seed, mutations)| {
        let mut bytes = seeds()[seed.index(seeds().len())].clone();
        for mutation in &mutations {
            apply(&mut bytes, mutation);
        }
        bytes
    })
}

fn splits() -> impl Strategy<Value = Vec<Index>> {
    proptest::collection::vec(any::<Index>(), 0..12)
}

// ---- tests

#[test]
fn fuzz_arbitrary_bytes() {
    let strategy = (proptest::collection::vec(any::<u8>(), 0..2048), splits());
    fuzz("arbitrary bytes", strategy, |(bytes, splits)| {
        check_message(&bytes)?;
        check_framer(&bytes, &splits, 1024)
    });
}

#[test]
fn fuzz_token_soup() {
    fuzz("token soup", (token_soup(), splits()), |(bytes, splits)| {
        check_message(&bytes)?;
        check_framer(&bytes, &splits, SIP_MESSAGE_SIZE_MAX)
    });
}

#[test]
fn fuzz_mutated_corpus() {
    fuzz(
        "mutated corpus",
        (mutated_seed(), splits()),
        |(bytes, splits)| {
            check_message(&bytes)?;
            check_framer(&bytes, &splits, SIP_MESSAGE_SIZE_MAX)
        },
    );
}

#[test]
fn fuzz_value_parsers() {
    let text = proptest::collection::vec(proptest::sample::select(TOKENS), 0..24)
        .prop_map(|tokens| tokens.concat());
    fuzz("value parsers", text, |text| {
        for candidate in [
            text.clone(),
            format!("sip:{text}"),
            format!("SIP/2.0/UDP {text}"),
        ] {
            if let Ok(uri) = Uri::parse(&candidate) {
                prop_assert_eq!(Uri::parse(&uri.to_string()).unwrap(), uri.clone());
                prop_assert!(uri.aor().len() <= 3 * candidate.len() + 8);
                prop_assert!(uri.comparison_key().len() <= 3 * candidate.len() + 64);
            }
            if let Ok(name_addr) = NameAddr::parse(&candidate) {
                prop_assert_eq!(NameAddr::parse(&name_addr.to_string()).unwrap(), name_addr);
            }
            if let Ok(via) = Via::parse(&candidate) {
                prop_assert_eq!(Via::parse(&via.to_string()).unwrap(), via);
            }
            for error in [
                Uri::parse(&candidate).err(),
                NameAddr::parse(&candidate).err(),
                Via::parse(&candidate).err(),
            ]
            .into_iter()
            .flatten()
            {
                assert_reason_phrase(&error.to_string());
            }
            let _ = roster_sip::split_comma_list(&candidate);
        }
        Ok(())
    });
}

/// Valid messages with keep-alives, split at random: the framer returns exactly them.
#[test]
fn fuzz_framer_reassembles_valid_streams() {
    let stream = proptest::collection::vec((any::<Index>(), 0usize..3, 0usize..2), 1..6);
    fuzz(
        "framer reassembly",
        (stream, splits()),
        |(parts, splits)| {
            let mut bytes = Vec::new();
            let mut expected = Vec::new();
            for (seed, pings, single_crlfs) in parts {
                for _ in 0..pings {
                    bytes.extend_from_slice(b"\r\n\r\n");
                    expected.push(Frame::KeepAlivePing);
                }
                let message = parse_message(&seeds()[seed.index(seeds().len())]).unwrap();
                let encoded = encode(&message);
                bytes.extend_from_slice(&encoded);
                expected.push(Frame::Message(encoded));
                if single_crlfs == 1 {
                    bytes.extend_from_slice(b"\r\n");
                }
            }
            let mut offsets: Vec<usize> = splits
                .iter()
                .map(|split| split.index(bytes.len() + 1))
                .collect();
            offsets.extend([0, bytes.len()]);
            offsets.sort_unstable();
            let mut framer = StreamFramer::new(SIP_MESSAGE_SIZE_MAX);
            let mut frames = Vec::new();
            for window in offsets.windows(2) {
                framer.push(&bytes[window[0]..window[1]]).unwrap();
                while let Some(frame) = framer.next_frame().unwrap() {
                    frames.push(frame);
                }
            }
            prop_assert_eq!(frames, expected);
            Ok(())
        },
    );
}
