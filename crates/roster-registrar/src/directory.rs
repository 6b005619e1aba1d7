//! The user directory: which AORs exist and the digest credentials that may register them.

use std::collections::HashMap;

use roster_auth::Credentials;

/// A user: one AOR and the credentials that authenticate as it.
#[derive(Clone, Debug)]
pub struct User {
    /// Canonical address of record, `sip:user@host`.
    pub aor: String,
    /// Digest credentials (HA1 hashes only); `credentials.username` is the digest user name.
    pub credentials: Credentials,
    /// The user's own binding limit (`None`: the policy's). The front puts it in the user's
    /// REGISTER commands; apply holds the AOR to `min(policy, this)`.
    pub bindings_max: Option<u32>,
}

/// A directory that cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DirectoryError {
    /// Two users share an AOR.
    #[error("duplicate user for address of record {0}")]
    DuplicateAor(String),
    /// Two users share a digest user name.
    #[error("duplicate digest user name {0}")]
    DuplicateUsername(String),
}

/// Users by AOR and by digest user name.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    users: Vec<User>,
    by_aor: HashMap<String, usize>,
    by_username: HashMap<String, usize>,
}

impl Directory {
    /// Builds a directory; AORs and user names must be unique.
    pub fn new(users: Vec<User>) -> Result<Directory, DirectoryError> {
        let mut by_aor = HashMap::with_capacity(users.len());
        let mut by_username = HashMap::with_capacity(users.len());
        for (index, user) in users.iter().enumerate() {
            if by_aor.insert(user.aor.clone(), index).is_some() {
                return Err(DirectoryError::DuplicateAor(user.aor.clone()));
            }
            let username = user.credentials.username.clone();
            if by_username.insert(username.clone(), index).is_some() {
                return Err(DirectoryError::DuplicateUsername(username));
            }
        }
        Ok(Directory {
            users,
            by_aor,
            by_username,
        })
    }

    /// The user registered under `aor`.
    pub fn by_aor(&self, aor: &str) -> Option<&User> {
        self.by_aor.get(aor).map(|&index| &self.users[index])
    }

    /// The user whose digest user name is `username`.
    pub fn by_username(&self, username: &str) -> Option<&User> {
        self.by_username
            .get(username)
            .map(|&index| &self.users[index])
    }

    /// Every user, in the order given.
    pub fn users(&self) -> &[User] {
        &self.users
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}
