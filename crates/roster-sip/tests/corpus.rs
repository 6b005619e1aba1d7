//! Corpus tests: every malformed message fails with the expected reason (from `parse_message` or
//! a typed accessor) and never panics; every valid message parses, passes the accessors a
//! registrar uses, and round-trips through `encode`.

mod common;

use common::{accessor_errors, assert_reason_phrase, corpus, encode};
use roster_sip::{parse_message, Frame, Message, StreamFramer, SIP_MESSAGE_SIZE_MAX};

/// Each malformed file and a piece of the error message it must produce.
const MALFORMED_EXPECTED: &[(&str, &str)] = &[
    ("bad-request-uri", "invalid Request-URI"),
    ("bad-version", "unsupported SIP version"),
    (
        "bare-cr-in-header",
        "invalid header line: control character 0x0D",
    ),
    (
        "body-shorter-than-declared",
        "body truncated: Content-Length is 100",
    ),
    ("call-id-missing", "missing Call-ID header"),
    ("contact-addr-spec-with-headers", "must be enclosed in '<>'"),
    (
        "contact-param-without-value",
        "invalid Contact header: missing parameter value",
    ),
    ("contact-star-mixed", "'*' must be the only contact"),
    (
        "content-length-duplicate",
        "invalid Content-Length header: appears more than once",
    ),
    ("content-length-huge", "invalid Content-Length header"),
    (
        "content-length-negative",
        "invalid Content-Length header: not a number",
    ),
    (
        "content-length-not-number",
        "invalid Content-Length header: not a number",
    ),
    (
        "continuation-before-first-header",
        "continuation line before the first header",
    ),
    (
        "control-char-in-start-line",
        "invalid start line: control character",
    ),
    ("cseq-bad-method", "invalid CSeq header: invalid method"),
    (
        "cseq-huge",
        "invalid CSeq header: sequence number is too large",
    ),
    ("cseq-missing-method", "invalid CSeq header: missing method"),
    (
        "cseq-not-number",
        "invalid CSeq header: sequence number is not a number",
    ),
    (
        "display-name-unquoted-comma",
        "invalid From header: display name",
    ),
    ("escaped-headers-in-request-uri", "must not carry headers"),
    ("expires-not-number", "invalid Expires header: not a number"),
    (
        "from-duplicated",
        "invalid From header: appears more than once",
    ),
    ("header-name-with-space", "invalid header name"),
    ("header-value-too-long", "longer than 8192 bytes"),
    ("header-without-colon", "invalid header line: missing ':'"),
    ("lws-in-request-uri", "invalid start line"),
    (
        "max-forwards-not-number",
        "invalid Max-Forwards header: not a number",
    ),
    ("no-blank-line", "no empty line after the header fields"),
    ("non-utf8-header", "not valid UTF-8"),
    ("nul-byte-in-header", "contains a NUL byte"),
    ("only-crlf", "empty message"),
    ("oversize-message", "message too large"),
    ("request-uri-in-angle-brackets", "invalid Request-URI"),
    (
        "spaces-inside-angle-brackets",
        "invalid To header: invalid URI",
    ),
    ("start-line-garbage", "invalid start line"),
    ("start-line-missing-version", "invalid start line"),
    ("status-code-huge", "status code must be three digits"),
    ("status-code-out-of-range", "status code 700 out of range"),
    ("too-many-headers", "too many header fields"),
    ("unsupported-scheme-in-to", "unsupported URI scheme"),
    ("unsupported-scheme-request-uri", "unsupported URI scheme"),
    ("unterminated-angle-bracket", "unterminated '<'"),
    ("unterminated-ipv6-reference", "unterminated IPv6 reference"),
    (
        "unterminated-quoted-display-name",
        "unterminated quoted string",
    ),
    ("uri-bad-escape", "bad %-escape"),
    ("uri-port-out-of-range", "out of range"),
    ("via-bad-ipv6", "invalid Via header: invalid IPv6 address"),
    (
        "via-bad-protocol",
        "invalid Via header: unsupported protocol",
    ),
    ("via-bad-rport", "invalid Via header: invalid rport"),
    ("via-missing", "missing Via header"),
    ("via-missing-host", "invalid Via header: missing host"),
    ("via-missing-transport", "invalid Via header: expected '/'"),
];

#[test]
fn malformed_corpus_lists_every_file() {
    let files: Vec<String> = corpus("malformed")
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let expected: Vec<String> = MALFORMED_EXPECTED
        .iter()
        .map(|(name, _)| name.to_string())
        .collect();
    assert_eq!(files, expected, "corpus files and expectations differ");
    assert!(files.len() >= 25);
}

#[test]
fn malformed_corpus_fails_with_named_problem() {
    for (name, bytes) in corpus("malformed") {
        let expected = MALFORMED_EXPECTED
            .iter()
            .find(|(file, _)| *file == name)
            .map(|(_, expected)| *expected)
            .unwrap_or_else(|| panic!("{name}: no expectation"));
        let messages: Vec<String> = match parse_message(&bytes) {
            Err(error) => vec![error.to_string()],
            Ok(message) => accessor_errors(message.headers())
                .iter()
                .map(ToString::to_string)
                .collect(),
        };
        assert!(!messages.is_empty(), "{name}: parsed without any error");
        for message in &messages {
            assert_reason_phrase(message);
        }
        assert!(
            messages.iter().any(|message| message.contains(expected)),
            "{name}: expected an error containing {expected:?}, got {messages:?}"
        );
    }
}

#[test]
fn malformed_corpus_never_panics_the_framer() {
    for (name, bytes) in corpus("malformed") {
        let mut framer = StreamFramer::new(SIP_MESSAGE_SIZE_MAX);
        for chunk in bytes.chunks(1000) {
            if framer.push(chunk).is_err() {
                break;
            }
            while let Ok(Some(frame)) = framer.next_frame() {
                if let Frame::Message(frame) = frame {
                    assert!(frame.len() <= SIP_MESSAGE_SIZE_MAX, "{name}");
                    let _ = parse_message(&frame);
                }
            }
        }
        assert!(framer.buffered() <= 2 * SIP_MESSAGE_SIZE_MAX, "{name}");
    }
}

#[test]
fn valid_corpus_parses_and_passes_accessors() {
    let files = corpus("valid");
    assert!(files.len() >= 15);
    for (name, bytes) in files {
        let message = parse_message(&bytes).unwrap_or_else(|error| panic!("{name}: {error}"));
        let errors = accessor_errors(message.headers());
        assert!(errors.is_empty(), "{name}: accessor errors {errors:?}");
    }
}

#[test]
fn valid_corpus_round_trips_through_encode() {
    for (name, bytes) in corpus("valid") {
        let first = parse_message(&bytes).unwrap_or_else(|error| panic!("{name}: {error}"));
        let encoded = encode(&first);
        let second =
            parse_message(&encoded).unwrap_or_else(|error| panic!("{name} re-parse: {error}"));
        if bytes_have_content_length(&first) {
            assert_eq!(second, first, "{name}: round trip changed the message");
        } else {
            // Encoding adds the Content-Length that the datagram lacked; nothing else changes.
            let mut expected = first.clone();
            add_content_length(&mut expected);
            assert_eq!(second, expected, "{name}: round trip changed the message");
        }
        assert_eq!(encode(&second), encoded, "{name}: encoding is not stable");
    }
}

#[test]
fn valid_corpus_frames_from_one_stream() {
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for (_, bytes) in corpus("valid") {
        let message = parse_message(&bytes).expect("valid corpus");
        let encoded = encode(&message);
        stream.extend_from_slice(b"\r\n\r\n");
        expected.push(Frame::KeepAlivePing);
        stream.extend_from_slice(&encoded);
        expected.push(Frame::Message(encoded));
    }
    for chunk_size in [1, 7, 100, 1500, stream.len()] {
        let mut framer = StreamFramer::new(SIP_MESSAGE_SIZE_MAX);
        let mut frames = Vec::new();
        for chunk in stream.chunks(chunk_size) {
            framer.push(chunk).expect("push");
            while let Some(frame) = framer.next_frame().expect("frame") {
                frames.push(frame);
            }
        }
        assert_eq!(frames, expected, "chunk size {chunk_size}");
        assert_eq!(framer.buffered(), 0);
    }
}

fn bytes_have_content_length(message: &Message) -> bool {
    message
        .headers()
        .get(&roster_sip::HeaderName::ContentLength)
        .is_some()
}

fn add_content_length(message: &mut Message) {
    let (headers, length) = match message {
        Message::Request(request) => (&mut request.headers, request.body.len()),
        Message::Response(response) => (&mut response.headers, response.body.len()),
    };
    headers.push(roster_sip::HeaderName::ContentLength, length.to_string());
}
