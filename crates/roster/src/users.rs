//! The users file: AORs and their digest HA1 hashes, never passwords.
//!
//! ```toml
//! [[user]]
//! aor = "sip:alice@example.com"
//! username = "alice"
//! ha1_md5 = "…"      # MD5(username:realm:password), hex
//! ha1_sha256 = "…"   # SHA-256(username:realm:password), hex
//! ```

use std::path::Path;

use roster_auth::Credentials;
use roster_cms::UserRecord;
use roster_registrar::{Directory, User};
use roster_sip::Uri;
use roster_topology::{Deployment, PoolId};
use serde::{Deserialize, Serialize};

/// A users file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// The file could not be read.
    #[error("cannot read users file {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: std::io::Error,
    },
    /// Not valid TOML, or an entry is malformed.
    #[error("invalid users file {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with the entry.
        message: String,
    },
}

/// The file as written.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    /// The entries.
    #[serde(default)]
    pub user: Vec<UserEntry>,
}

/// One `[[user]]` entry.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// The address of record, `sip:user@domain`.
    pub aor: String,
    /// The digest user name.
    pub username: String,
    /// HA1 for MD5, lowercase hex (32 digits).
    pub ha1_md5: Option<String>,
    /// HA1 for SHA-256, lowercase hex (64 digits).
    pub ha1_sha256: Option<String>,
    /// The name of the pool the user is homed on, for a pool's CMS (`roster init` seeds the
    /// directory from this file). Default: the CMS's pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
}

impl UserEntry {
    /// An entry for a user with `password` in `realm`: both HA1 hashes, no password kept.
    pub fn from_password(aor: &str, username: &str, realm: &str, password: &str) -> UserEntry {
        let credentials = Credentials::from_password(username, realm, password);
        UserEntry {
            aor: aor.to_string(),
            username: username.to_string(),
            ha1_md5: credentials.ha1_md5,
            ha1_sha256: credentials.ha1_sha256,
            pool: None,
        }
    }
}

/// Reads the users file at `path` into a directory.
pub fn load(path: &Path) -> Result<Directory, UsersError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|reason| UsersError::Read {
        path: shown.clone(),
        reason,
    })?;
    let file: UsersFile = toml::from_str(&text).map_err(|error| UsersError::Invalid {
        path: shown.clone(),
        message: error.to_string(),
    })?;
    directory(file).map_err(|message| UsersError::Invalid {
        path: shown,
        message,
    })
}

/// The CMS records of the users file at `path`, homed on their `pool` (by name in
/// `deployment`), or on `default_home` without one.
pub fn records(
    path: &Path,
    deployment: &Deployment,
    default_home: PoolId,
) -> Result<Vec<UserRecord>, UsersError> {
    let shown = path.display().to_string();
    let invalid = |message: String| UsersError::Invalid {
        path: shown.clone(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|reason| UsersError::Read {
        path: shown.clone(),
        reason,
    })?;
    let file: UsersFile = toml::from_str(&text).map_err(|error| invalid(error.to_string()))?;
    let homes: Vec<Option<String>> = file.user.iter().map(|entry| entry.pool.clone()).collect();
    // The same checks as a single node's directory.
    let checked = directory(file).map_err(&invalid)?;
    let mut records = Vec::with_capacity(checked.len());
    for (user, home) in checked.users().iter().zip(homes) {
        let home = match home {
            None => default_home,
            Some(name) => deployment
                .pool_by_name(&name)
                .map(|pool| pool.id)
                .ok_or_else(|| {
                    invalid(format!(
                        "user {}: pool {name:?} is not in the deployment",
                        user.aor
                    ))
                })?,
        };
        records.push(UserRecord {
            aor: user.aor.clone(),
            home,
            credentials: user.credentials.clone(),
            bindings_max: None,
            enabled: true,
        });
    }
    Ok(records)
}

/// Checks the entries and builds the directory.
pub fn directory(file: UsersFile) -> Result<Directory, String> {
    let mut users = Vec::with_capacity(file.user.len());
    for (index, entry) in file.user.into_iter().enumerate() {
        let place = format!("user #{} ({})", index + 1, entry.aor);
        let uri = Uri::parse(&entry.aor).map_err(|error| format!("{place}: bad aor: {error}"))?;
        if uri.user.is_none() {
            return Err(format!("{place}: aor has no user part"));
        }
        check_hex(&place, "ha1_md5", entry.ha1_md5.as_deref(), 32)?;
        check_hex(&place, "ha1_sha256", entry.ha1_sha256.as_deref(), 64)?;
        if entry.ha1_md5.is_none() && entry.ha1_sha256.is_none() {
            return Err(format!("{place}: needs ha1_md5 or ha1_sha256"));
        }
        users.push(User {
            aor: uri.aor(),
            credentials: Credentials {
                username: entry.username,
                ha1_md5: entry.ha1_md5.map(|h| h.to_ascii_lowercase()),
                ha1_sha256: entry.ha1_sha256.map(|h| h.to_ascii_lowercase()),
            },
            bindings_max: None,
        });
    }
    Directory::new(users).map_err(|error| error.to_string())
}

fn check_hex(place: &str, key: &str, value: Option<&str>, digits: usize) -> Result<(), String> {
    match value {
        Some(hex) if hex.len() != digits || !hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Err(format!("{place}: {key} must be {digits} hex digits"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_become_a_directory() {
        let file = UsersFile {
            user: vec![UserEntry::from_password(
                "sip:Alice@Example.COM",
                "alice",
                "example.com",
                "pw",
            )],
        };
        let directory = directory(file).expect("valid");
        let user = directory.by_username("alice").expect("present");
        assert_eq!(user.aor, "sip:Alice@example.com");
    }

    #[test]
    fn bad_entries_are_named() {
        let bad_hash = UsersFile {
            user: vec![UserEntry {
                aor: "sip:a@b".into(),
                username: "a".into(),
                ha1_md5: Some("xyz".into()),
                ha1_sha256: None,
                pool: None,
            }],
        };
        assert!(directory(bad_hash).unwrap_err().contains("ha1_md5"));
        let no_user = UsersFile {
            user: vec![UserEntry::from_password("sip:b", "a", "r", "p")],
        };
        assert!(directory(no_user).unwrap_err().contains("no user part"));
    }
}
