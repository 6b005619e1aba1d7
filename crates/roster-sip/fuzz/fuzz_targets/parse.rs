//! libFuzzer target: one input is fed to `parse_message`, every typed accessor, the value parsers
//! and the `StreamFramer` (split where the input's first byte says). Seed it with
//! `tests/corpus/valid` and `tests/corpus/malformed`:
//! `cargo +nightly fuzz run parse ../tests/corpus/valid ../tests/corpus/malformed`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster_sip::{
    parse_message, Contacts, Frame, HeaderName, Message, NameAddr, StreamFramer, Uri, Via,
    SIP_MESSAGE_SIZE_MAX,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = parse_message(data) {
        exercise(&message);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        exercise_values(text);
    }
    frame(data);
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

fn frame(data: &[u8]) {
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut framer = StreamFramer::new(SIP_MESSAGE_SIZE_MAX);
    for chunk in data.chunks(step) {
        if framer.push(chunk).is_err() {
            return;
        }
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(bytes))) => {
                    assert!(bytes.len() <= SIP_MESSAGE_SIZE_MAX);
                    let _ = parse_message(&bytes);
                }
                Ok(Some(Frame::KeepAlivePing)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
}
