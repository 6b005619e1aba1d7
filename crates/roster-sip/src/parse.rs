//! [`parse_message`]: one complete message (a UDP datagram, or a frame from
//! [`crate::StreamFramer`]) to a [`Message`].
//!
//! The header section is read line by line in one linear pass: each line is checked for control
//! characters and UTF-8 once, then split into name and value. Header values are unfolded into
//! one `String` each.

use crate::error::{HeaderError, ParseError};
use crate::header::{Header, HeaderName, Headers};
use crate::message::{Message, Method, Request, Response};
use crate::scan::{describe_byte, excerpt, find_byte, is_control, is_token, trim_lws};
use crate::uri::Uri;
use crate::{HEADER_COUNT_MAX, HEADER_LINE_SIZE_MAX, SIP_MESSAGE_SIZE_MAX};

/// Parses one complete message.
///
/// Checks the start line (method token, SIP or SIPS Request-URI without headers, `SIP/2.0`;
/// status 100..=699 for responses), header lines (`name ':' value`, folding per RFC 3261 §7.3.1
/// unfolded to one space), the header count, the total size and Content-Length: if present, a
/// longer body is truncated to it (§18.3) and a shorter one is an error; if absent, the body is
/// the rest of the input.
/// Empty lines before the start line are skipped (§7.5).
/// Typed header syntax is not checked here (the accessors of [`Headers`] do it), so a `400` can
/// still be formed.
pub fn parse_message(buf: &[u8]) -> Result<Message, ParseError> {
    if buf.len() > SIP_MESSAGE_SIZE_MAX {
        return Err(ParseError::TooLarge {
            size: buf.len(),
            max: SIP_MESSAGE_SIZE_MAX,
        });
    }
    let buf = skip_empty_lines(buf);
    if buf.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut lines = HeadLines {
        buf,
        position: 0,
        in_start_line: true,
    };
    let start_line = lines.next_line()?.ok_or(ParseError::Empty)?;
    let start = parse_start_line(start_line)?;
    let headers = parse_header_lines(&mut lines)?;
    let body = take_body(&headers, lines.rest())?;
    let message = match start {
        StartLine::Request { method, uri } => Message::Request(Request {
            method,
            uri,
            headers,
            body,
        }),
        StartLine::Response { status, reason } => Message::Response(Response {
            status,
            reason,
            headers,
            body,
        }),
    };
    Ok(message)
}

enum StartLine {
    Request { method: Method, uri: Uri },
    Response { status: u16, reason: String },
}

/// Drops CRLF (or LF) pairs before the start line.
fn skip_empty_lines(mut buf: &[u8]) -> &[u8] {
    loop {
        if let Some(rest) = buf.strip_prefix(b"\r\n") {
            buf = rest;
        } else if let Some(rest) = buf.strip_prefix(b"\n") {
            buf = rest;
        } else {
            return buf;
        }
    }
}

/// The lines of a header section, each checked and converted to text once.
struct HeadLines<'a> {
    buf: &'a [u8],
    /// Offset of the next line; after the empty line, of the body.
    position: usize,
    in_start_line: bool,
}

impl<'a> HeadLines<'a> {
    /// The next line without its line break (CRLF, or a tolerated bare LF); `Ok(None)` at the
    /// empty line that ends the header section; [`ParseError::Incomplete`] if there is none.
    fn next_line(&mut self) -> Result<Option<&'a str>, ParseError> {
        let rest = &self.buf[self.position..];
        let newline = find_byte(rest, b'\n').ok_or(ParseError::Incomplete)?;
        self.position += newline + 1;
        let line = &rest[..newline];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Ok(None);
        }
        check_line_bytes(line, self.in_start_line)?;
        self.in_start_line = false;
        std::str::from_utf8(line)
            .map(Some)
            .map_err(|_| ParseError::NotUtf8)
    }

    /// What follows the lines returned so far: the body, once `next_line` returned `Ok(None)`.
    fn rest(&self) -> &'a [u8] {
        &self.buf[self.position..]
    }
}

/// Finds the empty line ending the header section: returns the length of the header lines
/// (without the line break before the empty line) and the offset of the body.
/// Lines end in CRLF; a bare LF is tolerated.
pub(crate) fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(offset) = find_byte(&buf[from..], b'\n') {
        let newline = from + offset;
        let line_end = if newline > 0 && buf[newline - 1] == b'\r' {
            newline - 1
        } else {
            newline
        };
        match &buf[newline + 1..] {
            [b'\r', b'\n', ..] => return Some((line_end, newline + 3)),
            [b'\n', ..] => return Some((line_end, newline + 2)),
            _ => from = newline + 1,
        }
    }
    None
}

/// Rejects control characters (CR included: the line break is already removed) except HT, and
/// except controls escaped with `\` inside header values (RFC 4475 §3.1.1.2 carries NUL, BEL and
/// DEL as quoted-pairs).
fn check_line_bytes(line: &[u8], in_start_line: bool) -> Result<(), ParseError> {
    // Fast path without early exit, so that the compiler can vectorise it.
    let has_control = line
        .iter()
        .fold(false, |found, &byte| found | is_control(byte));
    if !has_control {
        return Ok(());
    }
    for (index, &byte) in line.iter().enumerate() {
        if !is_control(byte) {
            continue;
        }
        let reason = format!("control character {}", describe_byte(byte));
        if in_start_line {
            return Err(ParseError::InvalidStartLine(reason));
        }
        let escaped = index > 0 && line[index - 1] == b'\\' && byte != b'\r';
        if !escaped {
            let reason = if byte == 0 {
                "contains a NUL byte".to_string()
            } else {
                reason
            };
            return Err(ParseError::InvalidHeaderLine(reason));
        }
    }
    Ok(())
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    let is_response = line
        .get(..4)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("SIP/"));
    if is_response {
        parse_status_line(line)
    } else {
        parse_request_line(line)
    }
}

/// `SIP-Version SP Status-Code SP Reason-Phrase`; the reason may be empty.
fn parse_status_line(line: &str) -> Result<StartLine, ParseError> {
    let (version, rest) = line.split_once(' ').unwrap_or((line, ""));
    check_version(version)?;
    let rest = rest.trim_start_matches(' ');
    let code_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let after_code = &rest[code_len..];
    if code_len != 3 || !(after_code.is_empty() || after_code.starts_with([' ', '\t'])) {
        let reason = format!("status code must be three digits: {}", excerpt(line));
        return Err(ParseError::InvalidStartLine(reason));
    }
    let status: u16 = rest[..3].parse().unwrap_or(0);
    if !(100..=699).contains(&status) {
        let reason = format!("status code {status} out of range");
        return Err(ParseError::InvalidStartLine(reason));
    }
    Ok(StartLine::Response {
        status,
        reason: trim_lws(after_code).to_string(),
    })
}

/// `Method SP Request-URI SP SIP-Version`; runs of white space are tolerated (RFC 4475 §3.1.2.9).
fn parse_request_line(line: &str) -> Result<StartLine, ParseError> {
    let mut parts = line.split([' ', '\t']).filter(|part| !part.is_empty());
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        let reason = format!("expected 'METHOD URI SIP/2.0', found {}", excerpt(line));
        return Err(ParseError::InvalidStartLine(reason));
    };
    check_version(version)?;
    if !is_token(method) {
        let reason = format!("invalid method {}", excerpt(method));
        return Err(ParseError::InvalidStartLine(reason));
    }
    let method = Method::from_token(method)
        .map_err(|error| ParseError::InvalidStartLine(error.to_string()))?;
    let uri = Uri::parse(uri).map_err(|error| match error {
        HeaderError::UnsupportedScheme(scheme) => ParseError::UnsupportedScheme(scheme),
        other => ParseError::InvalidUri(other.to_string()),
    })?;
    if !uri.headers.is_empty() {
        let reason = "a Request-URI must not carry headers ('?')".to_string();
        return Err(ParseError::InvalidUri(reason));
    }
    Ok(StartLine::Request { method, uri })
}

fn check_version(version: &str) -> Result<(), ParseError> {
    if version.eq_ignore_ascii_case("SIP/2.0") {
        return Ok(());
    }
    let is_sip = version
        .get(..4)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("SIP/"));
    if is_sip {
        Err(ParseError::UnsupportedVersion(excerpt(version)))
    } else {
        let reason = format!("expected SIP/2.0, found {}", excerpt(version));
        Err(ParseError::InvalidStartLine(reason))
    }
}

/// Parses header lines up to the empty line, joining folded continuation lines with one space.
fn parse_header_lines(lines: &mut HeadLines<'_>) -> Result<Headers, ParseError> {
    // A REGISTER carries 10 to 20 fields: one allocation covers most messages.
    let mut headers = Headers::with_capacity(16);
    while let Some(line) = lines.next_line()? {
        if line.starts_with([' ', '\t']) {
            let field = headers.last_mut().ok_or_else(|| {
                ParseError::InvalidHeaderLine("continuation line before the first header".into())
            })?;
            append_continuation(field, line)?;
            continue;
        }
        if headers.len() == HEADER_COUNT_MAX {
            return Err(ParseError::TooManyHeaders);
        }
        headers.push_header(parse_header_line(line)?);
    }
    Ok(headers)
}

/// `field-name *(SP / HTAB) ":" value`.
fn parse_header_line(line: &str) -> Result<Header, ParseError> {
    let (name, value) = line.split_once(':').ok_or_else(|| {
        ParseError::InvalidHeaderLine(format!("missing ':' in {}", excerpt(line)))
    })?;
    let name = name.trim_end_matches([' ', '\t']);
    if !is_token(name) {
        let reason = format!("invalid header name {}", excerpt(name));
        return Err(ParseError::InvalidHeaderLine(reason));
    }
    let value = trim_lws(value);
    check_value_size(name, value.len())?;
    Ok(Header {
        name: HeaderName::parse(name),
        value: value.to_string(),
    })
}

fn append_continuation(field: &mut Header, line: &str) -> Result<(), ParseError> {
    let piece = trim_lws(line);
    if piece.is_empty() {
        return Ok(());
    }
    check_value_size(field.name.as_str(), field.value.len() + 1 + piece.len())?;
    if !field.value.is_empty() {
        field.value.push(' ');
    }
    field.value.push_str(piece);
    Ok(())
}

fn check_value_size(name: &str, size: usize) -> Result<(), ParseError> {
    if size > HEADER_LINE_SIZE_MAX {
        let reason = format!(
            "{} value longer than {HEADER_LINE_SIZE_MAX} bytes",
            excerpt(name)
        );
        return Err(ParseError::InvalidHeaderLine(reason));
    }
    Ok(())
}

/// The body: exactly Content-Length bytes if the header is present, else all of `rest`.
fn take_body(headers: &Headers, rest: &[u8]) -> Result<Vec<u8>, ParseError> {
    let mut values = headers.get_all(&HeaderName::ContentLength);
    let Some(value) = values.next() else {
        return Ok(rest.to_vec());
    };
    if values.next().is_some() {
        let reason = "appears more than once".to_string();
        return Err(ParseError::InvalidContentLength(reason));
    }
    let declared = parse_content_length(value).map_err(ParseError::InvalidContentLength)?;
    if declared > rest.len() {
        return Err(ParseError::BodyTruncated {
            declared,
            actual: rest.len(),
        });
    }
    Ok(rest[..declared].to_vec())
}

/// Parses a Content-Length value: digits only, at most [`SIP_MESSAGE_SIZE_MAX`].
pub(crate) fn parse_content_length(value: &str) -> Result<usize, String> {
    let value = trim_lws(value);
    if value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!("not a number: {}", excerpt(value)));
    }
    let significant = value.trim_start_matches('0');
    // Six digits hold SIP_MESSAGE_SIZE_MAX; more would only overflow the parse below.
    let length = if significant.len() > 6 {
        None
    } else if significant.is_empty() {
        Some(0)
    } else {
        significant.parse::<usize>().ok()
    };
    match length {
        Some(length) if length <= SIP_MESSAGE_SIZE_MAX => Ok(length),
        _ => Err(format!(
            "{} exceeds the maximum message size {SIP_MESSAGE_SIZE_MAX}",
            excerpt(value)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTER: &str = "REGISTER sip:registrar.example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKnashds7;rport\r\n\
        Max-Forwards: 70\r\n\
        To: Bob <sip:bob@example.com>\r\n\
        From: Bob <sip:bob@example.com>;tag=456248\r\n\
        Call-ID: 843817637684230@998sdasdh09\r\n\
        CSeq: 1826 REGISTER\r\n\
        Contact: <sip:bob@192.0.2.4>\r\n\
        Expires: 7200\r\n\
        Content-Length: 0\r\n\r\n";

    fn request(text: &str) -> Request {
        match parse_message(text.as_bytes()) {
            Ok(Message::Request(request)) => request,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn error(text: &[u8]) -> ParseError {
        parse_message(text).expect_err("expected an error")
    }

    #[test]
    fn parses_register() {
        let request = request(REGISTER);
        assert_eq!(request.method, Method::Register);
        assert_eq!(request.uri.host, "registrar.example.com");
        assert_eq!(request.headers.len(), 9);
        assert_eq!(request.headers.call_id(), Ok("843817637684230@998sdasdh09"));
        assert_eq!(request.headers.cseq().unwrap().seq, 1826);
        assert_eq!(request.headers.expires(), Ok(Some(7200)));
        assert_eq!(request.headers.top_via().unwrap().rport(), Some(None));
        assert!(request.body.is_empty());
    }

    #[test]
    fn parses_response() {
        let text = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a\r\nl: 2\r\n\r\nhi";
        let Ok(Message::Response(response)) = parse_message(text.as_bytes()) else {
            panic!("expected a response")
        };
        assert_eq!(response.status, 200);
        assert_eq!(response.reason, "OK");
        assert_eq!(response.body, b"hi");
        let text = "SIP/2.0 183 \r\n\r\n";
        let Ok(Message::Response(response)) = parse_message(text.as_bytes()) else {
            panic!("expected a response")
        };
        assert_eq!(response.reason, "");
        let text = "SIP/2.0 200 Καλό \u{1F600}\r\n\r\n";
        assert!(parse_message(text.as_bytes()).is_ok());
        let text = "SIP/2.0 699\r\n\r\n";
        assert!(parse_message(text.as_bytes()).is_ok());
    }

    #[test]
    fn unfolds_continuation_lines() {
        let text = "OPTIONS sip:a SIP/2.0\r\nSubject: one\r\n two\r\n\t three\r\nRoute:\r\n <sip:x;lr>\r\nX-Empty:\r\n\r\n";
        let request = request(text);
        assert_eq!(
            request.headers.get(&HeaderName::Subject),
            Some("one two three")
        );
        assert_eq!(request.headers.get(&HeaderName::Route), Some("<sip:x;lr>"));
        assert_eq!(request.headers.get(&HeaderName::parse("x-empty")), Some(""));
        assert!(matches!(
            error(b"OPTIONS sip:a SIP/2.0\r\n folded: x\r\n\r\n"),
            ParseError::InvalidHeaderLine(_)
        ));
    }

    #[test]
    fn tolerates_leading_crlf_bare_lf_and_odd_spacing() {
        let text = "\r\n\r\nOPTIONS  sip:a   SIP/2.0 \nTo : sip:a\nl:0\n\n";
        let request = request(text);
        assert_eq!(request.headers.get(&HeaderName::To), Some("sip:a"));
        assert_eq!(request.headers.get(&HeaderName::ContentLength), Some("0"));
    }

    #[test]
    fn content_length_truncates_or_rejects() {
        let text = "OPTIONS sip:a SIP/2.0\r\nContent-Length: 3\r\n\r\nabcdef";
        assert_eq!(request(text).body, b"abc");
        let text = "OPTIONS sip:a SIP/2.0\r\n\r\nabcdef";
        assert_eq!(request(text).body, b"abcdef");
        let text = "OPTIONS sip:a SIP/2.0\r\nContent-Length: 9\r\n\r\nabc";
        assert_eq!(
            error(text.as_bytes()),
            ParseError::BodyTruncated {
                declared: 9,
                actual: 3
            }
        );
        for value in [
            "-1",
            "x",
            "",
            "1 2",
            "99999999999999999999999",
            "70000",
            "+3",
        ] {
            let text = format!("OPTIONS sip:a SIP/2.0\r\nContent-Length: {value}\r\n\r\n");
            assert!(
                matches!(error(text.as_bytes()), ParseError::InvalidContentLength(_)),
                "{value}"
            );
        }
        let text = "OPTIONS sip:a SIP/2.0\r\nl: 0\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(
            error(text.as_bytes()),
            ParseError::InvalidContentLength(_)
        ));
        let text = "OPTIONS sip:a SIP/2.0\r\nContent-Length: 0000000000000000002\r\n\r\nab";
        assert_eq!(request(text).body, b"ab");
    }

    #[test]
    fn start_line_errors() {
        assert_eq!(error(b""), ParseError::Empty);
        assert_eq!(error(b"\r\n\r\n"), ParseError::Empty);
        assert_eq!(
            error(b"OPTIONS sip:a SIP/2.0\r\nTo: x\r\n"),
            ParseError::Incomplete
        );
        type Check = fn(&ParseError) -> bool;
        let cases: [(&[u8], Check); 12] = [
            (b"OPTIONS sip:a\r\n\r\n", |e| {
                matches!(e, ParseError::InvalidStartLine(_))
            }),
            (b"OPTIONS sip:a SIP/2.0 x\r\n\r\n", |e| {
                matches!(e, ParseError::InvalidStartLine(_))
            }),
            (b"OPTIONS sip:a SIP/7.0\r\n\r\n", |e| {
                matches!(e, ParseError::UnsupportedVersion(_))
            }),
            (b"OPTIONS sip:a HTTP/1.1\r\n\r\n", |e| {
                matches!(e, ParseError::InvalidStartLine(_))
            }),
            (b"OPT(ONS sip:a SIP/2.0\r\n\r\n", |e| {
                matches!(e, ParseError::InvalidStartLine(_))
            }),
            (b"OPTIONS tel:+1 SIP/2.0\r\n\r\n", |e| {
                matches!(e, ParseError::UnsupportedScheme(_))
            }),
            (b"OPTIONS <sip:a> SIP/2.0\r\n\r\n", |e| {
                matches!(e, ParseError::InvalidUri(_))
            }),
            (b"OPTIONS sip:a?x=y SIP/2.0\r\n\r\n", |e| {
                matches!(e, ParseError::InvalidUri(_))
            }),
            (b"SIP/2.0 4294967301 Huge\r\n\r\n", |e| {
                matches!(e, ParseError::InvalidStartLine(_))
            }),
            (b"SIP/2.0 099 Low\r\n\r\n", |e| {
                matches!(e, ParseError::InvalidStartLine(_))
            }),
            (b"SIP/2.0 20 OK\r\n\r\n", |e| {
                matches!(e, ParseError::InvalidStartLine(_))
            }),
            (b"SIP/1.0 200 OK\r\n\r\n", |e| {
                matches!(e, ParseError::UnsupportedVersion(_))
            }),
        ];
        for (input, check) in cases {
            let parsed = error(input);
            assert!(
                check(&parsed),
                "{:?} -> {parsed:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(error(b"OPTIONS sip:a SIP/7.0\r\n\r\n").status(), 505);
        assert_eq!(error(b"OPTIONS tel:+1 SIP/2.0\r\n\r\n").status(), 416);
    }

    #[test]
    fn header_line_errors() {
        let cases: [&[u8]; 6] = [
            b"OPTIONS sip:a SIP/2.0\r\nNoColon\r\n\r\n",
            b"OPTIONS sip:a SIP/2.0\r\nBad Name: x\r\n\r\n",
            b"OPTIONS sip:a SIP/2.0\r\n: x\r\n\r\n",
            b"OPTIONS sip:a SIP/2.0\r\nX: a\0b\r\n\r\n",
            b"OPTIONS sip:a SIP/2.0\r\nX: a\rb\r\n\r\n",
            b"OPTIONS sip:a SIP/2.0\r\nX: \x1b[31m\r\n\r\n",
        ];
        for input in cases {
            assert!(
                matches!(error(input), ParseError::InvalidHeaderLine(_)),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let nul_in_start = b"OPTIONS sip:a\0 SIP/2.0\r\n\r\n";
        assert!(matches!(
            error(nul_in_start),
            ParseError::InvalidStartLine(_)
        ));
        let escaped_nul = b"OPTIONS sip:a SIP/2.0\r\nTo: \"a\\\0\" <sip:a>\r\n\r\n";
        assert!(parse_message(escaped_nul).is_ok());
        let latin1 = b"OPTIONS sip:a SIP/2.0\r\nSubject: caf\xe9\r\n\r\n";
        assert_eq!(error(latin1), ParseError::NotUtf8);
        let binary_body = b"OPTIONS sip:a SIP/2.0\r\nl: 2\r\n\r\n\xff\0";
        assert_eq!(request_bytes(binary_body).body, b"\xff\0");
    }

    fn request_bytes(input: &[u8]) -> Request {
        match parse_message(input) {
            Ok(Message::Request(request)) => request,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn limits() {
        let mut text = String::from("OPTIONS sip:a SIP/2.0\r\n");
        for index in 0..HEADER_COUNT_MAX {
            text.push_str(&format!("X-{index}: v\r\n"));
        }
        assert!(parse_message(format!("{text}\r\n").as_bytes()).is_ok());
        text.push_str("X-last: v\r\n\r\n");
        assert_eq!(error(text.as_bytes()), ParseError::TooManyHeaders);

        let huge = vec![b'a'; SIP_MESSAGE_SIZE_MAX + 1];
        assert_eq!(
            error(&huge),
            ParseError::TooLarge {
                size: SIP_MESSAGE_SIZE_MAX + 1,
                max: SIP_MESSAGE_SIZE_MAX
            }
        );
        let long_value = "v".repeat(HEADER_LINE_SIZE_MAX + 1);
        let text = format!("OPTIONS sip:a SIP/2.0\r\nX: {long_value}\r\n\r\n");
        assert!(matches!(
            error(text.as_bytes()),
            ParseError::InvalidHeaderLine(_)
        ));
        let half = "v".repeat(HEADER_LINE_SIZE_MAX / 2 + 1);
        let text = format!("OPTIONS sip:a SIP/2.0\r\nX: {half}\r\n {half}\r\n\r\n");
        assert!(matches!(
            error(text.as_bytes()),
            ParseError::InvalidHeaderLine(_)
        ));
    }

    #[test]
    fn errors_display_the_problem() {
        let text = "OPTIONS sip:a SIP/2.0\r\nContent-Length: -5\r\n\r\n";
        assert_eq!(
            error(text.as_bytes()).to_string(),
            "invalid Content-Length header: not a number: \"-5\""
        );
        let text = format!("OPTIONS sip:a SIP/2.0\r\n{}\r\n\r\n", "x".repeat(1000));
        let shown = error(text.as_bytes()).to_string();
        assert!(
            shown.starts_with("invalid header line: missing ':'"),
            "{shown}"
        );
        assert!(shown.len() < 120, "{shown}");
    }
}
