//! Helpers shared by the integration tests: corpus loading and running every typed accessor.

#![allow(dead_code)]

use std::path::PathBuf;

use roster_sip::{HeaderError, HeaderName, Headers, Message};

/// `(file stem, bytes)` of every `*.sip` file in `tests/corpus/<kind>`, sorted by name.
pub fn corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("corpus")
        .join(kind);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("reading {}: {error}", directory.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sip"))
        .map(|path| {
            let stem = path
                .file_stem()
                .expect("file stem")
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&path).expect("corpus file");
            (stem, bytes)
        })
        .collect();
    files.sort();
    files
}

/// Runs every typed accessor of `headers`, returning the errors they report.
pub fn accessor_errors(headers: &Headers) -> Vec<HeaderError> {
    let mut errors = Vec::new();
    let mut note = |result: Result<(), HeaderError>| {
        if let Err(error) = result {
            errors.push(error);
        }
    };
    note(headers.call_id().map(drop));
    note(headers.cseq().map(drop));
    note(headers.from().map(drop));
    note(headers.to().map(drop));
    note(headers.vias().map(drop));
    note(headers.top_via().map(drop));
    note(headers.contacts().map(drop));
    note(headers.expires().map(drop));
    note(headers.max_forwards().map(drop));
    for name in [HeaderName::Path, HeaderName::Route, HeaderName::RecordRoute] {
        note(headers.name_addrs(&name).map(drop));
    }
    for name in [
        HeaderName::Require,
        HeaderName::Supported,
        HeaderName::ProxyRequire,
        HeaderName::Unsupported,
    ] {
        let tags = headers.option_tags(&name);
        assert!(tags.iter().all(|tag| !tag.is_empty()));
    }
    errors
}

/// Checks that an error message is one bounded line, fit for a reason phrase.
pub fn assert_reason_phrase(text: &str) {
    assert!(!text.is_empty());
    assert!(text.len() <= 400, "error message too long: {text}");
    assert!(
        !text.contains(['\r', '\n', '\0']),
        "error message has a line break or NUL: {text:?}"
    );
}

/// The encoded form of a message.
pub fn encode(message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    message.encode(&mut out);
    out
}
