//! [`Credentials`]: a user's stored digest secrets, HA1 hashes only.

use std::fmt;

use crate::algorithm::{ha1, Algorithm};

/// A user's stored digest secrets: one HA1 per algorithm, never the password.
///
/// `Debug` prints `<redacted>` in place of the hashes. Equality is for state comparisons (a
/// replicated directory), not for checking a secret: that is `constant_time_eq`'s job.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    /// The digest user name (the `username` parameter), which may differ from the AOR user.
    pub username: String,
    /// HA1 for MD5, lowercase hex, if the user may authenticate with MD5.
    pub ha1_md5: Option<String>,
    /// HA1 for SHA-256, lowercase hex, if the user may authenticate with SHA-256.
    pub ha1_sha256: Option<String>,
}

impl Credentials {
    /// Hashes `password` for both algorithms; the password itself is not kept.
    pub fn from_password(username: &str, realm: &str, password: &str) -> Credentials {
        Credentials {
            username: username.to_owned(),
            ha1_md5: Some(ha1(Algorithm::Md5, username, realm, password)),
            ha1_sha256: Some(ha1(Algorithm::Sha256, username, realm, password)),
        }
    }

    /// The stored HA1 for `algorithm`, if any.
    pub fn ha1(&self, algorithm: Algorithm) -> Option<&str> {
        match algorithm {
            Algorithm::Md5 => self.ha1_md5.as_deref(),
            Algorithm::Sha256 => self.ha1_sha256.as_deref(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("ha1_md5", &self.ha1_md5.as_ref().map(|_| Redacted))
            .field("ha1_sha256", &self.ha1_sha256.as_ref().map(|_| Redacted))
            .finish()
    }
}

/// Stands in for a secret in `Debug` output.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_hashes() {
        let credentials = Credentials::from_password("alice", "example.com", "secret");
        let printed = format!("{credentials:?}");
        let md5 = credentials.ha1(Algorithm::Md5).unwrap_or_default();
        let sha256 = credentials.ha1(Algorithm::Sha256).unwrap_or_default();
        assert!(printed.contains("alice"));
        assert!(printed.contains("<redacted>"));
        assert!(!printed.contains(md5));
        assert!(!printed.contains(sha256));
        assert!(!printed.contains("secret"));
    }

    #[test]
    fn from_password_stores_both_hashes() {
        let credentials = Credentials::from_password("alice", "example.com", "secret");
        assert_eq!(
            credentials.ha1(Algorithm::Md5),
            Some(ha1(Algorithm::Md5, "alice", "example.com", "secret").as_str())
        );
        assert_eq!(credentials.ha1(Algorithm::Sha256).map(str::len), Some(64));
    }
}
