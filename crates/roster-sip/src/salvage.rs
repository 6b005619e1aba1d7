//! Answers to requests that cannot be parsed: [`error_response`] reads the few header fields a
//! response needs (Via, From, To, Call-ID, CSeq) from bytes [`crate::parse_message`] refused,
//! so that a server can say `416`, `505`, `513` or `400` instead of staying silent.
//!
//! The scan is lenient (it needs neither a valid start line nor the empty line that ends the
//! header section, and skips lines it cannot read) but bounded: at most
//! [`SIP_MESSAGE_SIZE_MAX`] bytes and [`SALVAGE_LINES_MAX`] lines are looked at.

use crate::error::ParseError;
use crate::header::{HeaderName, Headers};
use crate::message::{Message, Response};
use crate::parse::parse_message;
use crate::scan::is_control;
use crate::SIP_MESSAGE_SIZE_MAX;

/// Most lines looked at for the fields a response needs: a message of [`SIP_MESSAGE_SIZE_MAX`]
/// bytes has at most this many lines of 16 bytes, and a request that hides its Via after
/// thousands of lines gets no answer.
pub const SALVAGE_LINES_MAX: usize = 4_096;

/// The answer to `bytes` if [`crate::parse_message`] refuses them and they still read as a
/// request: the status of the refusal ([`ParseError::status`]) with the problem as reason.
/// `None` when `bytes` parse, look like a response, or lack a usable Via, From, To, Call-ID
/// or CSeq (no answer could be routed or matched).
pub fn error_response(bytes: &[u8]) -> Option<Response> {
    let error = match parse_message(bytes) {
        Ok(_) => return None,
        Err(error) => error,
    };
    if matches!(error, ParseError::Empty) {
        return None;
    }
    error_response_with(bytes, error.status(), &error.to_string())
}

/// An answer with `status` and `reason` to the request whose start (at least its header
/// fields) is `bytes`, e.g. `513` for a message a stream framer found too large. `None` as
/// for [`error_response`].
pub fn error_response_with(bytes: &[u8], status: u16, reason: &str) -> Option<Response> {
    let bytes = &bytes[..bytes.len().min(SIP_MESSAGE_SIZE_MAX)];
    let mut lines = bytes
        .split(|&byte| byte == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let start_line = lines.find(|line| !line.is_empty())?;
    if start_line.len() >= 4 && start_line[..4].eq_ignore_ascii_case(b"SIP/") {
        return None;
    }
    let mut headers = Headers::new();
    for line in lines.take(SALVAGE_LINES_MAX) {
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = readable_field(line) else {
            continue;
        };
        let name = HeaderName::parse(name);
        let wanted = [
            HeaderName::Via,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ];
        if wanted.contains(&name) && (name == HeaderName::Via || headers.get(&name).is_none()) {
            headers.push(name, value.trim());
        }
    }
    headers.top_via().ok()?;
    headers.from().ok()?;
    headers.to().ok()?;
    headers.call_id().ok()?;
    headers.cseq().ok()?;
    let mut response = Response::new(status);
    response.reason = reason_phrase_text(reason);
    let tag = stateless_tag(&headers);
    for value in headers.get_all(&HeaderName::Via) {
        response.headers.push(HeaderName::Via, value);
    }
    for name in [
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ] {
        let Some(value) = headers.get(&name) else {
            continue;
        };
        let value = if name == HeaderName::To && headers.to().is_ok_and(|to| to.tag().is_none()) {
            format!("{value};tag={tag}")
        } else {
            value.to_string()
        };
        response.headers.push(name, value);
    }
    // A response is itself parseable, or nothing is sent.
    let mut encoded = Vec::new();
    response.encode(&mut encoded);
    matches!(parse_message(&encoded), Ok(Message::Response(_))).then_some(response)
}

/// `name: value` of a line without control characters (other than tab) and in UTF-8.
fn readable_field(line: &[u8]) -> Option<(&str, &str)> {
    if line.iter().any(|&byte| is_control(byte) && byte != b'\t') {
        return None;
    }
    if line
        .first()
        .is_some_and(|byte| matches!(byte, b' ' | b'\t'))
    {
        return None;
    }
    let line = std::str::from_utf8(line).ok()?;
    let (name, value) = line.split_once(':')?;
    let name = name.trim_end();
    (!name.is_empty()).then_some((name, value))
}

/// The reason phrase: the problem in one line of printable text.
fn reason_phrase_text(reason: &str) -> String {
    reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A To tag that is the same for every retransmission of one request (FNV-1a of its Call-ID
/// and CSeq), so that a stateless answer is the same answer each time.
fn stateless_tag(headers: &Headers) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let parts = [
        headers.get(&HeaderName::CallId).unwrap_or_default(),
        headers.get(&HeaderName::CSeq).unwrap_or_default(),
    ];
    for byte in parts.iter().flat_map(|part| part.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &str = "Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKx;rport\r\n\
        From: <sip:bob@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n\
        Call-ID: c1\r\nCSeq: 1 REGISTER\r\n";

    fn answer(start_line: &str, extra: &str) -> Option<Response> {
        let text = format!("{start_line}\r\n{FIELDS}{extra}Content-Length: 0\r\n\r\n");
        error_response(text.as_bytes())
    }

    #[test]
    fn unsupported_scheme_and_version_get_416_and_505() {
        let r = answer("REGISTER tel:+15551234 SIP/2.0", "").expect("an answer");
        assert_eq!(r.status, 416);
        assert_eq!(r.headers.call_id(), Ok("c1"));
        assert!(r.headers.to().expect("To").tag().is_some());
        let r = answer("REGISTER sip:example.com SIP/3.0", "").expect("an answer");
        assert_eq!(r.status, 505);
        assert_eq!(r.headers.vias().expect("Via").len(), 1);
    }

    #[test]
    fn too_many_headers_get_400_and_oversize_513() {
        let many: String = (0..200).map(|i| format!("X-{i}: v\r\n")).collect();
        let r = answer("OPTIONS sip:example.com SIP/2.0", &many).expect("an answer");
        assert_eq!(r.status, 400);
        assert!(r.reason.contains("too many header fields"), "{}", r.reason);
        let head = format!("REGISTER sip:example.com SIP/2.0\r\n{FIELDS}Content-Length: 99999");
        let r = error_response_with(head.as_bytes(), 513, "Message Too Large").expect("an answer");
        assert_eq!(r.status, 513);
    }

    #[test]
    fn no_answer_without_the_fields_or_to_a_response() {
        assert!(error_response(b"\x16\x03\x01garbage").is_none());
        assert!(answer("SIP/3.0 200 OK", "").is_none());
        let text = "REGISTER tel:+1 SIP/2.0\r\nTo: <sip:a@b>\r\n\r\n";
        assert!(error_response(text.as_bytes()).is_none());
        let fine = format!("OPTIONS sip:a SIP/2.0\r\n{FIELDS}\r\n");
        assert!(error_response(fine.as_bytes()).is_none());
    }

    #[test]
    fn the_answer_is_the_same_for_a_retransmission() {
        let first = answer("REGISTER sip:a SIP/7.0", "");
        let again = answer("REGISTER sip:a SIP/7.0", "");
        assert_eq!(first, again);
    }
}
