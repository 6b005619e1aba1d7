//! Digest header parsers on arbitrary text: `Authorization` values, challenges, and the
//! lenient algorithm hint; what parses must print and parse again to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster_auth::{requested_algorithm, DigestChallenge, DigestResponse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = requested_algorithm(text);
    let _ = DigestChallenge::parse(text);
    if let Ok(response) = DigestResponse::parse(text) {
        let printed = response.to_string();
        if printed.len() <= roster_auth::AUTHORIZATION_LENGTH_MAX {
            assert_eq!(DigestResponse::parse(&printed), Ok(response));
        }
    }
});
