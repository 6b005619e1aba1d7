//! The SIP parser: one input is fed to `parse_message`, every typed accessor and the value
//! parsers (what parses must print and parse again to itself), and, when it does not parse,
//! to `error_response` (the answer to an unparsable request). Seeded from roster-sip's test
//! corpus (`crates/roster-sip/tests/corpus/{valid,malformed}`); see `scripts/fuzz`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster_sip::{error_response, parse_message, Contacts, HeaderName, Message, NameAddr, Uri, Via};

fuzz_target!(|data: &[u8]| {
    match parse_message(data) {
        Ok(message) => exercise(&message),
        Err(_) => {
            if let Some(response) = error_response(data) {
                let mut encoded = Vec::new();
                response.encode(&mut encoded);
                assert!(parse_message(&encoded).is_ok(), "an error answer must parse");
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        exercise_values(text);
    }
});

fn exercise(message: &Message) {
    let headers = message.headers();
    let _ = headers.call_id();
    let _ = headers.cseq();
    let _ = headers.expires();
    let _ = headers.max_forwards();
    let _ = headers.top_via();
    for name in [HeaderName::Require, HeaderName::Supported, HeaderName::ProxyRequire] {
        let _ = headers.option_tags(&name);
    }
    if let Ok(vias) = headers.vias() {
        for via in vias {
            assert_eq!(Via::parse(&via.to_string()).unwrap(), via);
        }
    }
    let mut name_addrs: Vec<NameAddr> = Vec::new();
    name_addrs.extend(headers.from());
    name_addrs.extend(headers.to());
    if let Ok(Contacts::List(contacts)) = headers.contacts() {
        name_addrs.extend(contacts);
    }
    for name in [HeaderName::Path, HeaderName::Route, HeaderName::RecordRoute] {
        name_addrs.extend(headers.name_addrs(&name).unwrap_or_default());
    }
    for name_addr in name_addrs {
        assert_eq!(NameAddr::parse(&name_addr.to_string()).unwrap(), name_addr);
    }
    let mut encoded = Vec::new();
    message.encode(&mut encoded);
    if let Ok(again) = parse_message(&encoded) {
        let mut twice = Vec::new();
        again.encode(&mut twice);
        assert_eq!(twice, encoded);
    }
}

fn exercise_values(text: &str) {
    if let Ok(uri) = Uri::parse(text) {
        assert_eq!(Uri::parse(&uri.to_string()).unwrap(), uri);
        let _ = (uri.aor(), uri.comparison_key());
    }
    if let Ok(name_addr) = NameAddr::parse(text) {
        assert_eq!(NameAddr::parse(&name_addr.to_string()).unwrap(), name_addr);
    }
    if let Ok(via) = Via::parse(text) {
        assert_eq!(Via::parse(&via.to_string()).unwrap(), via);
    }
}
