//! Messages: [`Message`], [`Request`], [`Response`], [`Method`], the reason phrases of
//! [`reason_phrase`], building a response to a request, and encoding to bytes.
//!
//! Encoding writes full header names, CRLF line ends, and a Content-Length computed from the body
//! in place of any stored one. CR and LF inside stored text are written as spaces, so a value can
//! never inject a header field.

use std::fmt;

use crate::error::HeaderError;
use crate::header::{HeaderName, Headers};
use crate::name_addr::NameAddr;
use crate::scan::{excerpt, is_token};
use crate::uri::Uri;

/// A SIP method. Methods are case-sensitive (RFC 3261 §7.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// `REGISTER`
    Register,
    /// `INVITE`
    Invite,
    /// `ACK`
    Ack,
    /// `BYE`
    Bye,
    /// `CANCEL`
    Cancel,
    /// `OPTIONS`
    Options,
    /// `MESSAGE` (RFC 3428)
    Message,
    /// `SUBSCRIBE` (RFC 6665)
    Subscribe,
    /// `NOTIFY` (RFC 6665)
    Notify,
    /// `PUBLISH` (RFC 3903)
    Publish,
    /// `INFO` (RFC 6086)
    Info,
    /// `UPDATE` (RFC 3311)
    Update,
    /// `REFER` (RFC 3515)
    Refer,
    /// `PRACK` (RFC 3262)
    Prack,
    /// Any other token, as written.
    Extension(String),
}

impl Method {
    /// The method name as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Register => "REGISTER",
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Message => "MESSAGE",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Refer => "REFER",
            Method::Prack => "PRACK",
            Method::Extension(name) => name,
        }
    }

    /// Maps a token to a method; an unknown token is an [`Method::Extension`].
    /// A non-token is [`HeaderError::Invalid`] naming CSeq, the header field methods appear in.
    pub fn from_token(token: &str) -> Result<Method, HeaderError> {
        let method = match token {
            "REGISTER" => Method::Register,
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "MESSAGE" => Method::Message,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "PUBLISH" => Method::Publish,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "REFER" => Method::Refer,
            "PRACK" => Method::Prack,
            _ if is_token(token) => Method::Extension(token.to_string()),
            _ => {
                let reason = format!("invalid method {}", excerpt(token));
                return Err(HeaderError::invalid(HeaderName::CSeq, reason));
            }
        };
        Ok(method)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SIP request.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The method of the request line.
    pub method: Method,
    /// The Request-URI.
    pub uri: Uri,
    /// Header fields in wire order.
    pub headers: Headers,
    /// The body (exactly Content-Length bytes when parsed).
    pub body: Vec<u8>,
}

/// A SIP response.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// The status code, 100..=699.
    pub status: u16,
    /// The reason phrase (may be empty).
    pub reason: String,
    /// Header fields in wire order.
    pub headers: Headers,
    /// The body.
    pub body: Vec<u8>,
}

/// A request or a response.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

impl Message {
    /// Appends the wire form to `out`; see [`Request::encode`].
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::Request(request) => request.encode(out),
            Message::Response(response) => response.encode(out),
        }
    }

    /// The header fields of either kind.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(request) => &request.headers,
            Message::Response(response) => &response.headers,
        }
    }

    /// The body of either kind.
    pub fn body(&self) -> &[u8] {
        match self {
            Message::Request(request) => &request.body,
            Message::Response(response) => &response.body,
        }
    }
}

impl Request {
    /// A request with no header fields and no body.
    pub fn new(method: Method, uri: Uri) -> Request {
        Request {
            method,
            uri,
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// Appends the wire form to `out`: request line, header fields with full names, a correct
    /// Content-Length (at the place of the first stored one, else last), an empty line, the body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(256 + self.body.len());
        push_safe(out, self.method.as_str());
        out.push(b' ');
        push_display(out, &self.uri);
        out.extend_from_slice(b" SIP/2.0\r\n");
        encode_headers_and_body(&self.headers, &self.body, out);
    }
}

impl Response {
    /// A response with the reason phrase of [`reason_phrase`], no header fields and no body.
    ///
    /// # Panics
    /// If `status` is outside 100..=699: that is a programming error, never peer input.
    pub fn new(status: u16) -> Response {
        assert!(
            (100..=699).contains(&status),
            "status code {status} out of range"
        );
        Response {
            status,
            reason: reason_phrase(status).to_string(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// A response to `request` (RFC 3261 §8.2.6.2): copies every Via (in order), From, To,
    /// Call-ID and CSeq; when `status > 100` and To has no tag, appends `;tag=<to_tag>` to To.
    ///
    /// Missing fields are skipped; a To that does not parse is copied unchanged, and an empty
    /// `to_tag` adds no tag.
    pub fn for_request(request: &Request, status: u16, to_tag: &str) -> Response {
        let mut response = Response::new(status);
        let source = &request.headers;
        for value in source.get_all(&HeaderName::Via) {
            response.headers.push(HeaderName::Via, value);
        }
        if let Some(from) = source.get(&HeaderName::From) {
            response.headers.push(HeaderName::From, from);
        }
        if let Some(to) = source.get(&HeaderName::To) {
            let needs_tag = status > 100
                && !to_tag.is_empty()
                && NameAddr::parse(to).is_ok_and(|to| to.param("tag").is_none());
            let value = if needs_tag {
                format!("{to};tag={to_tag}")
            } else {
                to.to_string()
            };
            response.headers.push(HeaderName::To, value);
        }
        for name in [HeaderName::CallId, HeaderName::CSeq] {
            if let Some(value) = source.get(&name) {
                response.headers.push(name, value);
            }
        }
        response
    }

    /// Replaces the reason phrase.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Response {
        self.reason = reason.into();
        self
    }

    /// Appends the wire form to `out`: status line, then as [`Request::encode`].
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(256 + self.body.len());
        out.extend_from_slice(b"SIP/2.0 ");
        push_display(out, &self.status);
        out.push(b' ');
        push_safe(out, &self.reason);
        out.extend_from_slice(b"\r\n");
        encode_headers_and_body(&self.headers, &self.body, out);
    }
}

fn encode_headers_and_body(headers: &Headers, body: &[u8], out: &mut Vec<u8>) {
    let mut wrote_length = false;
    for header in headers {
        if header.name == HeaderName::ContentLength {
            if !wrote_length {
                push_content_length(out, body.len());
                wrote_length = true;
            }
            continue;
        }
        push_safe(out, header.name.as_str());
        out.extend_from_slice(b": ");
        push_safe(out, &header.value);
        out.extend_from_slice(b"\r\n");
    }
    if !wrote_length {
        push_content_length(out, body.len());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

fn push_content_length(out: &mut Vec<u8>, length: usize) {
    out.extend_from_slice(b"Content-Length: ");
    push_display(out, &length);
    out.extend_from_slice(b"\r\n");
}

/// Appends `text`, writing CR and LF as spaces so no line break can be injected.
fn push_safe(out: &mut Vec<u8>, text: &str) {
    if text.bytes().any(|byte| byte == b'\r' || byte == b'\n') {
        out.extend(text.bytes().map(|byte| match byte {
            b'\r' | b'\n' => b' ',
            other => other,
        }));
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

/// Appends a `Display` value through [`push_safe`] without an intermediate `String`.
fn push_display(out: &mut Vec<u8>, value: &impl fmt::Display) {
    struct SafeWriter<'a>(&'a mut Vec<u8>);
    impl fmt::Write for SafeWriter<'_> {
        fn write_str(&mut self, text: &str) -> fmt::Result {
            push_safe(self.0, text);
            Ok(())
        }
    }
    // The writer never fails and this crate's Display impls only propagate writer errors.
    let _ = fmt::write(&mut SafeWriter(out), format_args!("{value}"));
}

/// The reason phrase for a status code (RFC 3261 §21 and later RFCs), `"Unknown"` otherwise.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400..=499 => client_error_phrase(status),
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        555 => "Push Notification Service Not Supported",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        608 => "Rejected",
        _ => "Unknown",
    }
}

fn client_error_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Conditional Request Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        417 => "Unknown Resource-Priority",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        424 => "Bad Location Information",
        428 => "Use Identity Header",
        429 => "Provide Referrer Identity",
        430 => "Flow Failed",
        433 => "Anonymity Disallowed",
        436 => "Bad Identity-Info",
        437 => "Unsupported Certificate",
        438 => "Invalid Identity Header",
        439 => "First Hop Lacks Outbound Support",
        440 => "Max-Breadth Exceeded",
        469 => "Bad Info Package",
        470 => "Consent Needed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        494 => "Security Agreement Required",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_message;

    fn register() -> Request {
        let mut request = Request::new(Method::Register, Uri::parse("sip:example.com").unwrap());
        let headers = &mut request.headers;
        headers.push(
            HeaderName::Via,
            "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b",
        );
        headers.push(HeaderName::Via, "SIP/2.0/UDP c;branch=z9hG4bK3");
        headers.push(HeaderName::From, "<sip:bob@example.com>;tag=f1");
        headers.push(HeaderName::To, "<sip:bob@example.com>");
        headers.push(HeaderName::CallId, "c1@host");
        headers.push(HeaderName::CSeq, "1 REGISTER");
        headers.push(HeaderName::Contact, "<sip:bob@192.0.2.4>");
        headers.push(HeaderName::ContentLength, "99");
        request
    }

    #[test]
    fn methods() {
        assert_eq!(Method::from_token("REGISTER"), Ok(Method::Register));
        assert_eq!(
            Method::from_token("register"),
            Ok(Method::Extension("register".into()))
        );
        assert!(Method::from_token("RE GISTER").is_err());
        assert!(Method::from_token("").is_err());
        assert_eq!(Method::Prack.to_string(), "PRACK");
        for method in [
            "INVITE",
            "ACK",
            "BYE",
            "CANCEL",
            "OPTIONS",
            "MESSAGE",
            "SUBSCRIBE",
            "NOTIFY",
            "PUBLISH",
            "INFO",
            "UPDATE",
            "REFER",
            "PRACK",
        ] {
            let parsed = Method::from_token(method).unwrap();
            assert!(!matches!(parsed, Method::Extension(_)));
            assert_eq!(parsed.as_str(), method);
        }
    }

    #[test]
    fn encode_writes_correct_content_length_in_place() {
        let mut request = register();
        request.body = b"hello".to_vec();
        let mut out = Vec::new();
        request.encode(&mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("REGISTER sip:example.com SIP/2.0\r\nVia: "));
        assert!(text.contains("Contact: <sip:bob@192.0.2.4>\r\nContent-Length: 5\r\n\r\nhello"));
        assert!(!text.contains("99"));
        let Message::Request(parsed) = parse_message(&out).unwrap() else {
            panic!("expected a request")
        };
        assert_eq!(parsed.body, b"hello");
        assert_eq!(parsed.headers.len(), request.headers.len());
    }

    #[test]
    fn encode_appends_content_length_when_absent() {
        let response = Response::new(200);
        let mut out = Vec::new();
        response.encode(&mut out);
        assert_eq!(out, b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n");
    }

    #[test]
    fn encode_never_injects_lines() {
        let mut response = Response::new(400).with_reason("bad\r\nVia: x");
        response
            .headers
            .push(HeaderName::Other("X-A".into()), "1\r\nX-B: 2");
        let mut out = Vec::new();
        response.encode(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "SIP/2.0 400 bad  Via: x\r\nX-A: 1  X-B: 2\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn response_for_request_copies_and_tags() {
        let request = register();
        let response = Response::for_request(&request, 200, "t42");
        assert_eq!(response.reason, "OK");
        let names: Vec<_> = response.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["Via", "Via", "From", "To", "Call-ID", "CSeq"]);
        assert_eq!(response.headers.to().unwrap().tag(), Some("t42"));
        assert_eq!(response.headers.vias().unwrap().len(), 3);
        let trying = Response::for_request(&request, 100, "t42");
        assert_eq!(trying.headers.to().unwrap().tag(), None);
        let mut tagged = register();
        tagged
            .headers
            .set(HeaderName::To, "<sip:bob@example.com>;tag=old");
        let response = Response::for_request(&tagged, 401, "t42");
        assert_eq!(response.headers.to().unwrap().tag(), Some("old"));
        let empty = Request::new(Method::Options, Uri::parse("sip:x").unwrap());
        assert!(Response::for_request(&empty, 200, "t").headers.is_empty());
    }

    #[test]
    fn with_reason_and_phrases() {
        assert_eq!(Response::new(423).reason, "Interval Too Brief");
        assert_eq!(reason_phrase(439), "First Hop Lacks Outbound Support");
        assert_eq!(reason_phrase(420), "Bad Extension");
        assert_eq!(reason_phrase(421), "Extension Required");
        assert_eq!(reason_phrase(416), "Unsupported URI Scheme");
        assert_eq!(reason_phrase(494), "Security Agreement Required");
        assert_eq!(reason_phrase(299), "Unknown");
        let response = Response::new(400).with_reason("Bad CSeq");
        assert_eq!(response.reason, "Bad CSeq");
        let mut out = Vec::new();
        Message::Response(response).encode(&mut out);
        assert!(out.starts_with(b"SIP/2.0 400 Bad CSeq\r\n"));
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn response_new_rejects_bad_status() {
        let _ = Response::new(99);
    }
}
