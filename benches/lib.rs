//! Shared inputs of Roster's benchmarks: typical messages as a phone sends them.
#![deny(missing_docs)]

/// A REGISTER as a typical soft phone sends it (about 550 bytes), for user `u{n}`.
pub fn typical_register(n: u32, cseq: u32) -> String {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bK-{n}-{cseq}\r\n\
         Max-Forwards: 70\r\n\
         From: \"User {n}\" <sip:u{n}@example.com>;tag=as{n}f\r\n\
         To: \"User {n}\" <sip:u{n}@example.com>\r\n\
         Call-ID: {n}-reg@192.0.2.10\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:u{n}@192.0.2.10:5060;transport=udp>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-00000000{n:04}>\";q=0.8\r\n\
         Expires: 3600\r\n\
         Supported: path, gruu\r\n\
         Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, NOTIFY\r\n\
         User-Agent: BenchPhone/1.0\r\n\
         Content-Length: 0\r\n\r\n"
    )
}
