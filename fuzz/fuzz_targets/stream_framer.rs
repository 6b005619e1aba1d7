//! The TCP/TLS stream framer on arbitrary bytes cut into chunks of the size the first byte
//! says: frames within the bound come out, or an error does, never a panic. Seeded from
//! roster-sip's test corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster_sip::{parse_message, Frame, StreamFramer};

/// Small, so that the fuzzer reaches the size limit.
const SIZE_MAX: usize = 4_096;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(cut).max(1);
    let mut framer = StreamFramer::new(SIZE_MAX);
    for piece in data.chunks(chunk) {
        if framer.push(piece).is_err() {
            return;
        }
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(bytes))) => {
                    assert!(bytes.len() <= SIZE_MAX);
                    let _ = parse_message(&bytes);
                }
                Ok(Some(Frame::KeepAlivePing)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
