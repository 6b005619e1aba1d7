//! One registered contact of an AOR.

use serde::{Deserialize, Serialize};

/// What identifies a binding within its AOR.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BindingKey {
    /// RFC 3261: the Contact URI, in its RFC 3261 §19.1.4 comparison form.
    Uri(String),
    /// RFC 5626: the `+sip.instance` and `reg-id` pair of an Outbound flow.
    Flow {
        /// The instance ID as sent, e.g. `<urn:uuid:...>`.
        instance: String,
        /// The `reg-id`.
        reg_id: u32,
    },
}

/// A registered contact and the facts stored with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// How the binding is matched by later REGISTERs.
    pub key: BindingKey,
    /// The contact as returned: `<uri>` and its header parameters, without `expires`.
    pub contact: String,
    /// The q-value in thousandths (0..=1000), if the client gave one.
    pub q_milli: Option<u16>,
    /// When the binding expires, in milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// When the binding was last written, in milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
    /// Call-ID of the REGISTER that last wrote it.
    pub call_id: String,
    /// CSeq of the REGISTER that last wrote it.
    pub cseq: u32,
    /// `+sip.instance`, as sent (with its angle brackets).
    pub instance: Option<String>,
    /// `reg-id` (RFC 5626), when the binding is an Outbound flow.
    pub reg_id: Option<u32>,
    /// Path header values of the REGISTER (RFC 3327), in order.
    pub path: Vec<String>,
    /// Where the REGISTER came from, as `transport:address` (e.g. `udp:192.0.2.1:5060`).
    pub received: Option<String>,
    /// The User-Agent header of the REGISTER.
    pub user_agent: Option<String>,
}

impl Binding {
    /// Whether the binding is still live at `now_ms`.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.expires_at_ms > now_ms
    }

    /// Seconds left at `now_ms`, rounded up so a live binding never shows 0.
    pub fn remaining_s(&self, now_ms: u64) -> u32 {
        let left_ms = self.expires_at_ms.saturating_sub(now_ms);
        u32::try_from(left_ms.div_ceil(1000)).unwrap_or(u32::MAX)
    }

    /// The q-value used for ordering: absent counts as 1.0 (RFC 3261 §16.6 treats it as highest).
    pub fn q_order(&self) -> u16 {
        self.q_milli.unwrap_or(1000)
    }

    /// The GRUU instance ID: `+sip.instance` without its angle brackets.
    pub fn instance_id(&self) -> Option<&str> {
        let instance = self.instance.as_deref()?;
        Some(
            instance
                .strip_prefix('<')
                .and_then(|inner| inner.strip_suffix('>'))
                .unwrap_or(instance),
        )
    }
}
