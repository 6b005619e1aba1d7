//! Registration limits: expiry bounds and the per-AOR binding limit.

use serde::{Deserialize, Serialize};

/// What to do with a REGISTER that would take an AOR past its binding limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overflow {
    /// Refuse the whole REGISTER with `403`.
    Reject,
    /// Remove the least recently refreshed bindings until the AOR is at its limit.
    EvictOldest,
}

/// The registrar's limits. Validate with [`Policy::validate`] before use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Expiry given to a contact that names none, in seconds. Default 3600.
    pub expires_default_s: u32,
    /// Shortest nonzero expiry accepted; shorter gets `423` with `Min-Expires`. Default 60.
    pub expires_min_s: u32,
    /// Longest expiry granted; longer is lowered to it. Default 7200.
    pub expires_max_s: u32,
    /// Bindings one AOR may hold at once. Default 8, bound [`BINDINGS_PER_AOR_MAX`].
    pub bindings_per_aor_max: usize,
    /// What happens past `bindings_per_aor_max`. Default [`Overflow::Reject`].
    pub overflow: Overflow,
}

/// Hard ceiling of the per-AOR binding limit: one AOR's bindings are answered in one `200 OK`,
/// which must fit a UDP datagram, and each apply copies them.
pub const BINDINGS_PER_AOR_MAX: usize = 64;

/// A [`Policy`] that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    /// Minimum above default or default above maximum.
    #[error("expiry limits must satisfy 1 <= min ({min}) <= default ({default}) <= max ({max})")]
    ExpiryOrder {
        /// `expires_min_s`.
        min: u32,
        /// `expires_default_s`.
        default: u32,
        /// `expires_max_s`.
        max: u32,
    },
    /// Binding limit of zero or above [`BINDINGS_PER_AOR_MAX`].
    #[error("bindings_per_aor_max must be between 1 and {BINDINGS_PER_AOR_MAX}, not {0}")]
    BindingLimit(usize),
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            expires_default_s: 3600,
            expires_min_s: 60,
            expires_max_s: 7200,
            bindings_per_aor_max: 8,
            overflow: Overflow::Reject,
        }
    }
}

impl Policy {
    /// Checks that the limits are consistent.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let ordered = 1 <= self.expires_min_s
            && self.expires_min_s <= self.expires_default_s
            && self.expires_default_s <= self.expires_max_s;
        if !ordered {
            return Err(PolicyError::ExpiryOrder {
                min: self.expires_min_s,
                default: self.expires_default_s,
                max: self.expires_max_s,
            });
        }
        if self.bindings_per_aor_max == 0 || self.bindings_per_aor_max > BINDINGS_PER_AOR_MAX {
            return Err(PolicyError::BindingLimit(self.bindings_per_aor_max));
        }
        Ok(())
    }

    /// The expiry granted for a requested one, or `Err(min)` when it is too brief (`423`).
    /// Zero stays zero: it asks for removal.
    pub fn grant(&self, requested_s: u32) -> Result<u32, u32> {
        if requested_s == 0 {
            Ok(0)
        } else if requested_s < self.expires_min_s {
            Err(self.expires_min_s)
        } else {
            Ok(requested_s.min(self.expires_max_s))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(Policy::default().validate(), Ok(()));
    }

    #[test]
    fn rejects_unordered_expiry() {
        let policy = Policy {
            expires_min_s: 100,
            expires_default_s: 50,
            ..Policy::default()
        };
        assert!(matches!(
            policy.validate(),
            Err(PolicyError::ExpiryOrder { .. })
        ));
    }

    #[test]
    fn rejects_binding_limits_out_of_range() {
        for limit in [0, BINDINGS_PER_AOR_MAX + 1] {
            let policy = Policy {
                bindings_per_aor_max: limit,
                ..Policy::default()
            };
            assert_eq!(policy.validate(), Err(PolicyError::BindingLimit(limit)));
        }
    }

    #[test]
    fn grant_clamps_and_refuses() {
        let policy = Policy::default();
        assert_eq!(policy.grant(0), Ok(0));
        assert_eq!(policy.grant(59), Err(60));
        assert_eq!(policy.grant(60), Ok(60));
        assert_eq!(policy.grant(100_000), Ok(7200));
    }
}
