//! roster-raft's log entry and snapshot decoders (what the disk and peers hand back) on
//! arbitrary bytes: thin calls of the public decode functions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster_raft::codec::decode_entry;
use roster_raft::GroupState;

fuzz_target!(|data: &[u8]| {
    let _ = decode_entry(data);
    let _ = GroupState::decode_snapshot(data);
});
