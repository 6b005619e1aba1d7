//! roster-pool's RPC decoders (what a peer node sends over QUIC) on arbitrary bytes: a thin
//! call of the public decode, so the target follows the messages' shape as it changes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roster_pool::protocol::{decode, PoolRequest, PoolResponse};

fuzz_target!(|data: &[u8]| {
    let _ = decode::<PoolRequest>(data);
    let _ = decode::<PoolResponse>(data);
});
