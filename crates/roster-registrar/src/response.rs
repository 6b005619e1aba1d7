//! Building the responses of the registrar and the redirect server.

use roster_sip::{HeaderName, Request, Response};

use crate::binding::Binding;

/// Option tags this registrar supports (`Supported`, and what `Require` may name).
pub const SUPPORTED_OPTION_TAGS: [&str; 3] = ["path", "outbound", "gruu"];

/// Methods listed in `Allow`: REGISTER, and what the redirect server answers.
pub(crate) const ALLOWED_METHODS: &str =
    "REGISTER, OPTIONS, INVITE, ACK, CANCEL, MESSAGE, SUBSCRIBE, NOTIFY, PUBLISH, REFER, INFO, UPDATE";

/// A response to `request` with the RFC 3261 §8.2.6.2 headers, our To tag and `Server`.
/// `reason`, when given, replaces the standard phrase (control characters removed).
pub(crate) fn reply(
    request: &Request,
    status: u16,
    reason: Option<&str>,
    server: &str,
) -> Response {
    let mut response = Response::for_request(request, status, &to_tag(request));
    if let Some(reason) = reason {
        response = response.with_reason(sanitize_reason(reason));
    }
    response.headers.push(HeaderName::Server, server);
    response
}

/// The `Contact` value listing one binding with its remaining expiry, as in a `200 OK` to a
/// REGISTER (RFC 3261 §10.3 step 8) or a `302` (§21.3.3).
pub(crate) fn binding_contact(binding: &Binding, now_ms: u64, gruu_aor: Option<&str>) -> String {
    let mut value = format!(
        "{};expires={}",
        binding.contact,
        binding.remaining_s(now_ms)
    );
    if let (Some(aor), Some(instance_id)) = (gruu_aor, binding.instance_id()) {
        // RFC 5627 §5.4: pub-gruu is the AOR with a `gr` parameter carrying the instance ID.
        value.push_str(&format!(";pub-gruu=\"{aor};gr={instance_id}\""));
    }
    value
}

/// A To tag that is the same for every retransmission of a request: a hash of its Call-ID,
/// From tag and CSeq. Not a secret; only needs to be unique per dialog-forming response.
fn to_tag(request: &Request) -> String {
    let mut hash = Fnv1a::new();
    hash.write(request.headers.call_id().unwrap_or_default().as_bytes());
    if let Ok(from) = request.headers.from() {
        hash.write(from.tag().unwrap_or_default().as_bytes());
    }
    if let Some(cseq) = request.headers.get(&HeaderName::CSeq) {
        hash.write(cseq.as_bytes());
    }
    format!("{:016x}", hash.finish())
}

fn sanitize_reason(reason: &str) -> String {
    reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// 64-bit FNV-1a: small, fast, deterministic, for tags only.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator so ("ab","c") and ("a","bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
