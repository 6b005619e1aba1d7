//! Building the requests the load sends ([`build_request`]) and the ACK of a non-2xx answer to
//! an INVITE ([`build_ack`]), with `roster-sip` types.

use std::net::SocketAddr;

use roster_sip::{HeaderName, Method, Request, Response, Uri};

use crate::op::{LookupMethod, RequestKind};

/// `Max-Forwards` of every request (RFC 3261 §8.1.1.6 recommends 70).
const MAX_FORWARDS: &str = "70";

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("roster-load/", env!("CARGO_PKG_VERSION"));

/// The facts of one request; named fields, since most are strings.
#[derive(Clone, Debug)]
pub struct RequestParts<'a> {
    /// What to send.
    pub kind: &'a RequestKind,
    /// The registrar's domain URI (`sip:example.com`): REGISTER's Request-URI.
    pub domain_uri: &'a Uri,
    /// The session's AOR (From, and To of a REGISTER; the Request-URI of a lookup).
    pub aor: &'a Uri,
    /// The From tag of the session.
    pub from_tag: &'a str,
    /// The Call-ID of the session.
    pub call_id: &'a str,
    /// The CSeq number.
    pub cseq: u32,
    /// The Via branch (starting with the RFC 3261 magic cookie `z9hG4bK`).
    pub branch: &'a str,
    /// The Via transport: `UDP`, `TCP` or `TLS`.
    pub via_transport: &'a str,
    /// The Via sent-by: the local address of the socket or connection.
    pub sent_by: SocketAddr,
    /// `Authorization` or `Proxy-Authorization`, when credentials are known.
    pub authorization: Option<(HeaderName, String)>,
}

/// The method and Request-URI of a request of `kind`.
pub fn method_and_uri(kind: &RequestKind, domain_uri: &Uri, aor: &Uri) -> (Method, Uri) {
    match kind {
        RequestKind::Register { .. } | RequestKind::Unregister { .. } | RequestKind::Query => {
            (Method::Register, domain_uri.clone())
        }
        RequestKind::Lookup(LookupMethod::Options) => (Method::Options, aor.clone()),
        RequestKind::Lookup(LookupMethod::Invite) => (Method::Invite, aor.clone()),
    }
}

/// The request for `parts`.
pub fn build_request(parts: RequestParts<'_>) -> Request {
    let (method, uri) = method_and_uri(parts.kind, parts.domain_uri, parts.aor);
    let cseq = format!("{} {}", parts.cseq, method);
    let mut request = Request::new(method, uri);
    let headers = &mut request.headers;
    headers.push(
        HeaderName::Via,
        format!(
            "SIP/2.0/{} {};rport;branch={}",
            parts.via_transport, parts.sent_by, parts.branch
        ),
    );
    headers.push(HeaderName::MaxForwards, MAX_FORWARDS);
    headers.push(
        HeaderName::From,
        format!("<{}>;tag={}", parts.aor, parts.from_tag),
    );
    headers.push(HeaderName::To, format!("<{}>", parts.aor));
    headers.push(HeaderName::CallId, parts.call_id);
    headers.push(HeaderName::CSeq, cseq);
    match parts.kind {
        RequestKind::Register { contact, expires_s } => {
            headers.push(HeaderName::Contact, format!("<{contact}>"));
            headers.push(HeaderName::Expires, expires_s.to_string());
        }
        RequestKind::Unregister { contact } => {
            headers.push(HeaderName::Contact, format!("<{contact}>"));
            headers.push(HeaderName::Expires, "0");
        }
        RequestKind::Query | RequestKind::Lookup(_) => {}
    }
    if let Some((name, value)) = parts.authorization {
        headers.push(name, value);
    }
    headers.push(HeaderName::UserAgent, USER_AGENT);
    request
}

/// The ACK for a non-2xx final `response` to `invite` (RFC 3261 §17.1.1.3): the INVITE's
/// Request-URI, top Via, From, Call-ID and Route, the response's To, and CSeq with method ACK.
pub fn build_ack(invite: &Request, response: &Response) -> Request {
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    let source = &invite.headers;
    if let Some(via) = source.get(&HeaderName::Via) {
        ack.headers.push(HeaderName::Via, via);
    }
    ack.headers.push(HeaderName::MaxForwards, MAX_FORWARDS);
    for name in [HeaderName::From, HeaderName::CallId] {
        if let Some(value) = source.get(&name) {
            ack.headers.push(name, value);
        }
    }
    let to = response
        .headers
        .get(&HeaderName::To)
        .or_else(|| source.get(&HeaderName::To));
    if let Some(to) = to {
        ack.headers.push(HeaderName::To, to);
    }
    if let Ok(cseq) = source.cseq() {
        ack.headers
            .push(HeaderName::CSeq, format!("{} ACK", cseq.seq));
    }
    for route in source.get_all(&HeaderName::Route) {
        ack.headers.push(HeaderName::Route, route);
    }
    ack
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_sip::{parse_message, Message};

    fn uri(text: &str) -> Uri {
        match Uri::parse(text) {
            Ok(uri) => uri,
            Err(error) => panic!("{text}: {error}"),
        }
    }

    fn domain_and_aor() -> (Uri, Uri) {
        (uri("sip:example.com"), uri("sip:u7@example.com"))
    }

    fn encode_and_parse(request: &Request) -> Request {
        let mut bytes = Vec::new();
        request.encode(&mut bytes);
        match parse_message(&bytes) {
            Ok(Message::Request(parsed)) => parsed,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn register_carries_contact_expires_and_credentials() {
        let kind = RequestKind::Register {
            contact: "sip:u7.0@127.0.0.1:5999".into(),
            expires_s: 600,
        };
        let (domain, aor) = domain_and_aor();
        let request = encode_and_parse(&build_request(RequestParts {
            kind: &kind,
            domain_uri: &domain,
            aor: &aor,
            from_tag: "t1",
            call_id: "c1@load",
            cseq: 9,
            branch: "z9hG4bK-1",
            via_transport: "UDP",
            sent_by: SocketAddr::from(([127, 0, 0, 1], 5999)),
            authorization: Some((HeaderName::Authorization, "Digest x=1".into())),
        }));
        assert_eq!(request.method, Method::Register);
        assert_eq!(request.uri.to_string(), "sip:example.com");
        let headers = &request.headers;
        assert_eq!(headers.cseq().map(|c| c.seq), Ok(9));
        assert_eq!(headers.expires(), Ok(Some(600)));
        assert_eq!(
            headers.top_via().map(|v| v.branch().map(str::to_owned)),
            Ok(Some("z9hG4bK-1".into()))
        );
        assert_eq!(
            headers.from().map(|f| f.tag().map(str::to_owned)),
            Ok(Some("t1".into()))
        );
        assert_eq!(headers.get(&HeaderName::Authorization), Some("Digest x=1"));
        let contacts = headers.contacts();
        assert!(
            matches!(&contacts, Ok(roster_sip::Contacts::List(list)) if list.len() == 1),
            "{contacts:?}"
        );
    }

    #[test]
    fn query_has_no_contact_and_lookup_targets_the_aor() {
        let (domain, aor) = domain_and_aor();
        let build = |kind: &RequestKind| {
            encode_and_parse(&build_request(RequestParts {
                kind,
                domain_uri: &domain,
                aor: &aor,
                from_tag: "t",
                call_id: "c",
                cseq: 1,
                branch: "z9hG4bK-2",
                via_transport: "TCP",
                sent_by: SocketAddr::from(([127, 0, 0, 1], 1)),
                authorization: None,
            }))
        };
        let query = build(&RequestKind::Query);
        assert_eq!(query.headers.get(&HeaderName::Contact), None);
        assert_eq!(query.headers.get(&HeaderName::Expires), None);
        let lookup = build(&RequestKind::Lookup(LookupMethod::Invite));
        assert_eq!(
            (lookup.method.clone(), lookup.uri.to_string()),
            (Method::Invite, "sip:u7@example.com".into())
        );
        let mut response = Response::for_request(&lookup, 302, "totag");
        response
            .headers
            .push(HeaderName::Contact, "<sip:x@192.0.2.1>");
        let ack = encode_and_parse(&build_ack(&lookup, &response));
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(
            ack.headers.cseq().map(|c| (c.seq, c.method)),
            Ok((1, Method::Ack))
        );
        assert_eq!(
            ack.headers.to().map(|t| t.tag().map(str::to_owned)),
            Ok(Some("totag".into()))
        );
        assert_eq!(
            ack.headers.top_via().map(|v| v.branch().map(str::to_owned)),
            Ok(Some("z9hG4bK-2".into()))
        );
    }
}
