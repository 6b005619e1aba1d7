//! [`UserRecord`]: one user of the directory.

use std::fmt;

use roster_auth::Credentials;
use roster_topology::PoolId;
use serde::{Deserialize, Serialize};

/// Longest address of record, in bytes: an AOR comes from a SIP URI, which fits a SIP message.
pub const AOR_LENGTH_MAX: usize = 256;

/// Longest digest user name, in bytes.
pub const USERNAME_LENGTH_MAX: usize = 128;

/// One user: an address of record, the pool it is homed on, and how it authenticates.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Canonical address of record, `sip:user@domain`.
    pub aor: String,
    /// The pool the user is homed on.
    pub home: PoolId,
    /// The digest user name and HA1 hashes (never the password).
    pub credentials: Credentials,
    /// Bindings the user may hold at most; `None`: the registrar's policy.
    pub bindings_max: Option<u32>,
    /// A disabled user cannot register or be reached (`403`).
    pub enabled: bool,
}

/// A user record that cannot be stored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    /// The AOR is not `sip:` or `sips:` with a user part, or is too long.
    #[error(
        "invalid address of record {0:?}: expected sip:user@domain, at most {AOR_LENGTH_MAX} bytes"
    )]
    Aor(String),
    /// The user name is empty, too long or has control characters.
    #[error("invalid digest user name {0:?}")]
    Username(String),
    /// A hash is not lowercase hex of the right length.
    #[error("user {aor}: {which} must be {digits} lowercase hex digits")]
    Hash {
        /// The user.
        aor: String,
        /// Which hash.
        which: &'static str,
        /// The digits it must have.
        digits: usize,
    },
    /// Neither hash is given: the user could never authenticate.
    #[error("user {0}: no HA1 hash (MD5 or SHA-256)")]
    NoHash(String),
    /// A binding limit of 0.
    #[error("user {0}: bindings_max must be at least 1")]
    BindingsMax(String),
}

impl UserRecord {
    /// Checks the record's shape (not its place in a directory).
    pub fn validate(&self) -> Result<(), UserError> {
        let aor = &self.aor;
        let shaped = aor.len() <= AOR_LENGTH_MAX
            && (aor.starts_with("sip:") || aor.starts_with("sips:"))
            && aor.split_once(':').is_some_and(|(_, rest)| {
                rest.split_once('@')
                    .is_some_and(|(user, host)| !user.is_empty() && !host.is_empty())
            })
            && !aor
                .bytes()
                .any(|byte| byte.is_ascii_control() || byte == b' ');
        if !shaped {
            return Err(UserError::Aor(aor.clone()));
        }
        let username = &self.credentials.username;
        if username.is_empty()
            || username.len() > USERNAME_LENGTH_MAX
            || username.chars().any(char::is_control)
        {
            return Err(UserError::Username(username.clone()));
        }
        let hashes = [
            ("ha1_md5", &self.credentials.ha1_md5, 32),
            ("ha1_sha256", &self.credentials.ha1_sha256, 64),
        ];
        for (which, hash, digits) in hashes {
            if let Some(hash) = hash {
                let hex = hash.len() == digits
                    && hash
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                if !hex {
                    return Err(UserError::Hash {
                        aor: aor.clone(),
                        which,
                        digits,
                    });
                }
            }
        }
        if self.credentials.ha1_md5.is_none() && self.credentials.ha1_sha256.is_none() {
            return Err(UserError::NoHash(aor.clone()));
        }
        if self.bindings_max == Some(0) {
            return Err(UserError::BindingsMax(aor.clone()));
        }
        Ok(())
    }
}

/// The hashes stay out of logs (`Credentials` redacts them).
impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("aor", &self.aor)
            .field("home", &self.home)
            .field("credentials", &self.credentials)
            .field("bindings_max", &self.bindings_max)
            .field("enabled", &self.enabled)
            .finish()
    }
}
