//! RFC 4475 torture tests that a registrar can meet (and RFC 5118 IPv6 cases), checked field by
//! field. The messages are in `tests/corpus/valid/`; the invalid ones are in
//! `tests/corpus/malformed/`.

mod common;

use roster_sip::{parse_message, Contacts, HeaderName, Message, Method, Request, Response, Scheme};

fn load(name: &str) -> Message {
    let (_, bytes) = common::corpus("valid")
        .into_iter()
        .find(|(stem, _)| stem == name)
        .unwrap_or_else(|| panic!("no corpus file {name}"));
    parse_message(&bytes).unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn request(name: &str) -> Request {
    match load(name) {
        Message::Request(request) => request,
        Message::Response(_) => panic!("{name} is a response"),
    }
}

fn response(name: &str) -> Response {
    match load(name) {
        Message::Response(response) => response,
        Message::Request(_) => panic!("{name} is a request"),
    }
}

/// §3.1.1.1: folding, escaped quotes, empty Subject, LWS everywhere, mixed compact forms.
#[test]
fn wsinv_short_tortuous_invite() {
    let request = request("rfc4475-wsinv");
    let headers = &request.headers;
    assert_eq!(request.method, Method::Invite);
    assert!(request.uri.param("unknownparam").is_some());
    let to = headers.to().unwrap();
    assert_eq!(to.uri.user.as_deref(), Some("vivekg"));
    assert_eq!(to.tag(), Some("1918181833n"));
    let from = headers.from().unwrap();
    assert_eq!(from.display_name.as_deref(), Some(r#"J Rosenberg \""#));
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(headers.max_forwards(), Ok(Some(68)));
    let cseq = headers.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (9, Method::Invite));
    let vias = headers.vias().unwrap();
    let summary: Vec<_> = vias
        .iter()
        .map(|via| (via.transport.as_str(), via.host.as_str(), via.branch()))
        .collect();
    assert_eq!(
        summary,
        [
            ("UDP", "192.0.2.2", Some("390skdjuw")),
            ("TCP", "spindle.example.com", Some("z9hG4bK9ikj8")),
            ("UDP", "192.168.255.111", Some("z9hG4bK30239")),
        ]
    );
    assert_eq!(vias[0].rport(), Some(None));
    assert_eq!(headers.get(&HeaderName::Subject), Some(""));
    let new_fangled = HeaderName::parse("newfangledheader");
    assert_eq!(
        headers.get(&new_fangled),
        Some("newfangled value continued newfangled value")
    );
    let unusual = HeaderName::parse("UnknownHeaderWithUnusualValue");
    assert_eq!(headers.get(&unusual), Some(";;,,;;,;"));
    let routes = headers.name_addrs(&HeaderName::Route).unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].uri.param("unknown-no-value").unwrap().value, None);
    let Contacts::List(contacts) = headers.contacts().unwrap() else {
        panic!("expected contacts")
    };
    assert_eq!(contacts.len(), 1);
    assert_eq!(
        contacts[0].display_name.as_deref(),
        Some(r#"Quoted string """#)
    );
    assert_eq!(
        contacts[0].param("newparam").unwrap().value.as_deref(),
        Some("newvalue")
    );
    assert_eq!(contacts[0].param("secondparam").unwrap().value, None);
    assert_eq!(
        contacts[0].param("q").unwrap().value.as_deref(),
        Some("0.33")
    );
    assert_eq!(
        headers.get(&HeaderName::ContentLength),
        Some(request.body.len().to_string().as_str())
    );
}

/// §3.1.1.2: the full range of token characters, escaped NUL/BEL/DEL in a display name.
#[test]
fn intmeth_wide_range_of_valid_characters() {
    let request = request("rfc4475-intmeth");
    let method = "!interesting-Method0123456789_*+`.%indeed'~";
    assert_eq!(request.method, Method::Extension(method.into()));
    assert_eq!(
        request.uri.password.as_deref(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    let headers = &request.headers;
    assert_eq!(headers.cseq().unwrap().method, request.method);
    let to = headers.to().unwrap();
    assert_eq!(
        to.display_name.as_deref(),
        Some("BEL:\u{7} NUL:\u{0} DEL:\u{7F}")
    );
    let from = headers.from().unwrap();
    assert_eq!(
        from.display_name.as_deref(),
        Some("token1~` token2'+_ token3*%!.-")
    );
    assert_eq!(
        from.param("fromParam''~+*_!.-%")
            .unwrap()
            .unquoted()
            .as_deref(),
        Some("работающий")
    );
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(
        headers.call_id(),
        Ok("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
    );
    assert_eq!(
        headers.top_via().unwrap().branch(),
        Some("z9hG4bK-.!%66*_+`'~")
    );
    let extension = HeaderName::parse("extensionheader-!.%*+_`'~");
    assert_eq!(headers.get(&extension), Some("\u{FEFF}大停電"));
}

/// §3.1.1.3: escaped characters in URIs, compared after unescaping.
#[test]
fn esc01_escaped_uri_characters() {
    let request = request("rfc4475-esc01");
    assert_eq!(
        request.uri.aor(),
        "sip:sips%3Auser%40example.com@example.net"
    );
    let headers = &request.headers;
    assert_eq!(headers.to().unwrap().uri.aor(), "sip:user@example.com");
    assert_eq!(
        headers.from().unwrap().uri.user.as_deref(),
        Some("I%20have%20spaces")
    );
    let Contacts::List(contacts) = headers.contacts().unwrap() else {
        panic!("expected contacts")
    };
    let uri = &contacts[0].uri;
    assert!(uri.param("%6C%72").is_some());
    assert_eq!(
        uri.param("n%61me").unwrap().value.as_deref(),
        Some("v%61lue%25%34%31")
    );
    assert_eq!(
        uri.comparison_key(),
        roster_sip::Uri::parse("sip:caller@host5.example.net")
            .unwrap()
            .comparison_key()
    );
    assert_eq!(
        headers.get(&HeaderName::ContentType),
        Some("application/sdp")
    );
}

/// §3.1.1.4: escaped NULs in URIs, in a REGISTER with two Contact fields.
#[test]
fn escnull_escaped_nulls() {
    let request = request("rfc4475-escnull");
    assert_eq!(request.method, Method::Register);
    let headers = &request.headers;
    assert_eq!(
        headers.to().unwrap().uri.aor(),
        "sip:null-%00-null@example.com"
    );
    let Contacts::List(contacts) = headers.contacts().unwrap() else {
        panic!("expected contacts")
    };
    let users: Vec<_> = contacts.iter().map(|c| c.uri.user.as_deref()).collect();
    assert_eq!(users, [Some("%00"), Some("%00%00")]);
    assert_ne!(
        contacts[0].uri.comparison_key(),
        contacts[1].uri.comparison_key()
    );
    assert_eq!(headers.top_via().unwrap().rport(), Some(None));
}

/// §3.1.1.6: no LWS between a token display name and `<`.
#[test]
fn lwsdisp_display_name_without_space() {
    let request = request("rfc4475-lwsdisp");
    let from = request.headers.from().unwrap();
    assert_eq!(from.display_name.as_deref(), Some("caller"));
    assert_eq!(from.tag(), Some("323"));
}

/// §3.1.1.10: semicolons in the user part.
#[test]
fn semiuri_semicolon_in_user() {
    let request = request("rfc4475-semiuri");
    assert_eq!(
        request.uri.user.as_deref(),
        Some("user;par=u%40example.net")
    );
    assert_eq!(request.uri.host, "example.com");
    assert!(request.uri.params.is_empty());
    assert_eq!(
        request.headers.get(&HeaderName::Accept),
        Some("application/sdp, application/pkcs7-mime, multipart/mixed, multipart/signed, message/sip, message/sipfrag")
    );
}

/// §3.1.1.11: Via fields with several (and unknown) transports.
#[test]
fn transports_in_via() {
    let request = request("rfc4475-transports");
    let transports: Vec<String> = request
        .headers
        .vias()
        .unwrap()
        .into_iter()
        .map(|via| via.transport)
        .collect();
    assert_eq!(transports, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    assert_eq!(
        request.headers.call_id(),
        Ok("transports.kijh4akdnaqjkwendsasfdj")
    );
}

/// §3.1.1.12 and §3.1.1.13: an unusual (UTF-8) reason phrase and an empty one.
#[test]
fn reason_phrases() {
    let unusual = response("rfc4475-unreason");
    assert_eq!(unusual.status, 200);
    assert_eq!(
        unusual.reason,
        "= 2**3 * 5**2 но сто девяносто девять - простое"
    );
    let empty = response("rfc4475-noreason");
    assert_eq!(empty.status, 100);
    assert_eq!(empty.reason, "");
}

/// RFC 5118: IPv6 references in the Request-URI, Via (with `received`) and Contact.
#[test]
fn ipv6_register() {
    let request = request("register-ipv6");
    assert_eq!(request.uri.host, "[2001:db8::10]");
    assert_eq!(request.uri.port, Some(5070));
    let via = request.headers.top_via().unwrap();
    assert_eq!(via.host, "[2001:db8::9:1]");
    assert_eq!(via.port, Some(5060));
    assert_eq!(via.received(), Some("[2001:db8::9:255]"));
    assert_eq!(via.host_ip(), Some("2001:db8::9:1".parse().unwrap()));
    let Contacts::List(contacts) = request.headers.contacts().unwrap() else {
        panic!("expected contacts")
    };
    assert_eq!(
        contacts[0].uri.host_ip(),
        Some("2001:db8::1".parse().unwrap())
    );
    assert_eq!(contacts[0].uri.aor(), "sip:caller@[2001:db8::1]:5060");
    assert_eq!(request.headers.from().unwrap().uri.scheme, Scheme::Sip);
}

/// Compact forms parse to the full names and encode as full names.
#[test]
fn compact_forms_encode_as_full_names() {
    let request = request("register-compact");
    let names: Vec<&str> = request.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Via",
            "From",
            "To",
            "Call-ID",
            "CSeq",
            "Contact",
            "Supported",
            "Subject",
            "Content-Type",
            "Content-Length"
        ]
    );
    let mut out = Vec::new();
    request.encode(&mut out);
    let text = String::from_utf8(out).unwrap();
    for line in [
        "\r\nVia: ",
        "\r\nFrom: ",
        "\r\nCall-ID: ",
        "\r\nContent-Length: 5\r\n",
    ] {
        assert!(text.contains(line), "{line:?} missing from {text}");
    }
    assert_eq!(request.body, b"hello");
}

/// A REGISTER with several Contact fields and comma-separated contacts.
#[test]
fn multi_contact_register() {
    let request = request("register-multi-contact");
    let Contacts::List(contacts) = request.headers.contacts().unwrap() else {
        panic!("expected contacts")
    };
    let hosts: Vec<&str> = contacts.iter().map(|c| c.uri.host.as_str()).collect();
    assert_eq!(
        hosts,
        ["192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.13"]
    );
    assert_eq!(contacts[1].display_name.as_deref(), Some("Desk phone"));
    assert_eq!(
        contacts[2].param("expires").unwrap().value.as_deref(),
        Some("30")
    );
    assert_eq!(
        request.headers.from().unwrap().display_name.as_deref(),
        Some("Erin, the \"Great\"")
    );
    assert_eq!(request.headers.vias().unwrap().len(), 3);
    assert_eq!(
        request.headers.contacts().unwrap(),
        request.headers.contacts().unwrap()
    );
    let star = self::request("register-star");
    assert_eq!(star.headers.contacts(), Ok(Contacts::Star));
    assert_eq!(star.headers.expires(), Ok(Some(0)));
}

/// The outbound REGISTER of RFC 5626 with Path and instance ids.
#[test]
fn outbound_register() {
    let request = request("register-outbound");
    let headers = &request.headers;
    assert_eq!(
        headers.option_tags(&HeaderName::Supported),
        ["path", "outbound", "gruu"]
    );
    assert_eq!(headers.option_tags(&HeaderName::Require), ["outbound"]);
    assert_eq!(headers.name_addrs(&HeaderName::Path).unwrap().len(), 2);
    let Contacts::List(contacts) = headers.contacts().unwrap() else {
        panic!("expected contacts")
    };
    assert_eq!(
        contacts[0]
            .param("+sip.instance")
            .unwrap()
            .unquoted()
            .as_deref(),
        Some("<urn:uuid:00000000-0000-1000-8000-000A95A0E128>")
    );
    assert!(contacts[0].uri.param("ob").is_some());
}
