//! The directory's admin routes: their paths, and the JSON they take and answer, shared by a
//! pool node's admin server and `roster user`.
//!
//! Every route needs the admin bearer token. Writes go to the CMS's leader (from any node of
//! the CMS's pool or of its partner); reads answer from the node's own replica of the CMS (or
//! of its backup copy, on the partner pool), which [`ReplicaView`] names with its applied index.
//!
//! | route | method | body / query | answer |
//! | --- | --- | --- | --- |
//! | [`DIRECTORY_PATH`] | GET | | [`DirectoryInfo`] |
//! | [`USERS_PATH`] | GET | `?offset=&limit=&pool=` | [`UserPage`] |
//! | [`USERS_PATH`] | POST | [`PutUsers`] | [`PutUsersAnswer`] |
//! | [`USER_PATH`] | GET | `?aor=` | [`UserView`] |
//! | [`USERS_REMOVE_PATH`] | POST | [`RemoveUsers`] | [`RemoveUsersAnswer`] |
//! | [`USERS_ENABLED_PATH`] | POST | [`SetEnabled`] | [`UserView`] |
//!
//! A refused request answers `400` (malformed, or a pool that does not exist), `404` (no such
//! user), `409` (the user exists, the digest user name is taken), `413` (the users do not fit
//! one CMS command), or `503` with `Retry-After` (the CMS has no leader or quorum now, or its
//! pool cannot be reached from the partner), with an [`ErrorAnswer`].

use roster_auth::Credentials;
use roster_cms::{UserRecord, USERS_PER_COMMAND_MAX};
use roster_topology::{Deployment, PoolId};
use serde::{Deserialize, Serialize};

/// `GET`: what a client needs before it writes users: the realm HA1 hashes are computed in,
/// the pools users may be homed on, counts and limits.
pub const DIRECTORY_PATH: &str = "/api/v1/directory";

/// `GET`: a page of users, by AOR (`?offset=&limit=&pool=NAME`). `POST`: put users.
pub const USERS_PATH: &str = "/api/v1/users";

/// `GET ?aor=`: one user, without its hashes.
pub const USER_PATH: &str = "/api/v1/users/one";

/// `POST`: remove users by AOR.
pub const USERS_REMOVE_PATH: &str = "/api/v1/users/remove";

/// `POST`: enable or disable a user.
pub const USERS_ENABLED_PATH: &str = "/api/v1/users/enabled";

/// Users in a page when the request names no `limit`.
pub const USERS_PAGE_DEFAULT: usize = 100;

/// Users in one page at most: an answer of at most a few hundred KiB of JSON, read by the
/// commands' HTTP client within its size bound ([`USERS_ANSWER_SIZE_MAX`]).
pub const USERS_PAGE_MAX: usize = 1_000;

/// Largest answer a directory route gives, in bytes: a page of [`USERS_PAGE_MAX`] users of
/// at most about 600 bytes of JSON each, with room to spare.
pub const USERS_ANSWER_SIZE_MAX: u64 = 1024 * 1024;

/// Largest request body a directory route reads, in bytes: [`USERS_PER_COMMAND_MAX`] users of
/// at most about 700 bytes of JSON each (an AOR and a user name at their limits, two hashes).
pub const USERS_REQUEST_SIZE_MAX: usize = 256 * 1024;

/// A user to put: what `roster user add` and `roster user import` send. Never a password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// The address of record, `sip:user@domain` (made canonical by the node).
    pub aor: String,
    /// The home pool by name; default: the CMS's pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The digest user name.
    pub username: String,
    /// HA1 for MD5, lowercase hex (32 digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha1_md5: Option<String>,
    /// HA1 for SHA-256, lowercase hex (64 digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha1_sha256: Option<String>,
    /// The user's own binding limit (at least 1); default: the registrar's policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bindings_max: Option<u32>,
    /// Whether the user may register; default true.
    #[serde(default = "enabled_default")]
    pub enabled: bool,
}

fn enabled_default() -> bool {
    true
}

/// `POST` [`USERS_PATH`]: at most [`USERS_PER_COMMAND_MAX`] users, put in one CMS command
/// (all or nothing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutUsers {
    /// The users.
    pub users: Vec<NewUser>,
    /// Replace users whose AOR exists (a password change); without it an existing AOR refuses
    /// the whole request with `409`.
    #[serde(default)]
    pub replace: bool,
}

/// What a put did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutUsersAnswer {
    /// Users added.
    pub added: usize,
    /// Users replaced.
    pub replaced: usize,
}

/// `POST` [`USERS_REMOVE_PATH`]: at most [`USERS_PER_COMMAND_MAX`] AORs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveUsers {
    /// The AORs.
    pub aors: Vec<String>,
}

/// What a removal did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveUsersAnswer {
    /// Users removed.
    pub removed: usize,
    /// AORs that were not in the directory.
    pub not_found: usize,
}

/// `POST` [`USERS_ENABLED_PATH`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetEnabled {
    /// The user.
    pub aor: String,
    /// Whether it may register.
    pub enabled: bool,
}

/// A pool, by id and name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolName {
    /// Its id.
    pub id: PoolId,
    /// Its name.
    pub name: String,
}

impl PoolName {
    /// Pool `id` of `deployment` (its id as its name if the deployment lacks it).
    pub fn of(deployment: &Deployment, id: PoolId) -> PoolName {
        PoolName {
            id,
            name: deployment
                .pool(id)
                .map_or_else(|| id.to_string(), |spec| spec.name.clone()),
        }
    }
}

/// One user as the routes show it: never its hashes, only which it has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    /// The address of record.
    pub aor: String,
    /// Its home pool.
    pub pool: PoolName,
    /// The digest user name.
    pub username: String,
    /// The algorithms it has an HA1 hash for (`MD5`, `SHA-256`).
    pub algorithms: Vec<String>,
    /// Its own binding limit; `null`: the registrar's policy.
    pub bindings_max: Option<u32>,
    /// Whether it may register.
    pub enabled: bool,
}

/// Which replica of the CMS a read came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaView {
    /// `cms` (a replica of the CMS itself, on the CMS's pool) or `cms-backup` (its backup copy
    /// on the partner pool, behind the CMS by the backup stream's lag).
    pub kind: String,
    /// The last log index the replica applied.
    pub applied_index: Option<u64>,
}

/// `GET` [`USERS_PATH`]: a page of users, by AOR.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPage {
    /// Users matching (all, or those homed on `pool`).
    pub total: usize,
    /// The first user's position among them.
    pub offset: usize,
    /// The page size asked for (at most [`USERS_PAGE_MAX`]).
    pub limit: usize,
    /// The home pool asked for.
    pub pool: Option<PoolName>,
    /// The users.
    pub users: Vec<UserView>,
    /// Where the page was read.
    pub replica: ReplicaView,
}

/// Users homed on one pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolUsers {
    /// The pool.
    pub pool: PoolName,
    /// Users homed on it.
    pub users: usize,
}

/// `GET` [`DIRECTORY_PATH`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryInfo {
    /// The digest realm the node challenges in (HA1 hashes must be computed in it); `null`
    /// when the node does not authenticate.
    pub realm: Option<String>,
    /// The SIP domains served.
    pub domains: Vec<String>,
    /// The pool the CMS lives on (users without a pool are homed there).
    pub cms_pool: PoolName,
    /// The answering node's pool.
    pub pool: PoolName,
    /// Users in the directory.
    pub users: usize,
    /// Every pool of the deployment with its users.
    pub pools: Vec<PoolUsers>,
    /// Users one put or removal may carry ([`USERS_PER_COMMAND_MAX`]).
    pub users_per_command_max: usize,
    /// Where the counts were read.
    pub replica: ReplicaView,
}

/// The body of a refused request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    /// What is wrong, for the operator.
    pub error: String,
    /// The user it is about, when one (an AOR that exists, or does not, or appears twice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aor: Option<String>,
    /// The digest user name it is about, when one (taken by another AOR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// When to try again, in seconds (with `503`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u32>,
}

/// `text` as a canonical AOR (`sip:user@host`, host in lowercase), or why not.
pub fn canonical_aor(text: &str) -> Result<String, String> {
    let uri = roster_sip::Uri::parse(text.trim())
        .map_err(|error| format!("invalid address of record {text:?}: {error}"))?;
    if uri.user.as_deref().is_none_or(str::is_empty) {
        return Err(format!(
            "invalid address of record {text:?}: no user part (expected sip:user@domain)"
        ));
    }
    Ok(uri.aor())
}

impl NewUser {
    /// The user for `aor` with both HA1 hashes of `password` in `realm` (the password itself
    /// is dropped here: only hashes leave the machine).
    pub fn from_password(aor: &str, username: &str, realm: &str, password: &str) -> NewUser {
        let credentials = Credentials::from_password(username, realm, password);
        NewUser {
            aor: aor.to_string(),
            pool: None,
            username: username.to_string(),
            ha1_md5: credentials.ha1_md5,
            ha1_sha256: credentials.ha1_sha256,
            bindings_max: None,
            enabled: true,
        }
    }

    /// The CMS's record of this user, checked as the CMS checks it, its AOR canonical, its
    /// hashes in lowercase; `home` maps a pool name (or none: the CMS's pool) to its id.
    pub fn to_record(
        &self,
        home: impl FnOnce(Option<&str>) -> Result<PoolId, String>,
    ) -> Result<UserRecord, String> {
        let aor = canonical_aor(&self.aor)?;
        let record = UserRecord {
            aor,
            home: home(self.pool.as_deref())?,
            credentials: Credentials {
                username: self.username.clone(),
                ha1_md5: self.ha1_md5.as_deref().map(str::to_ascii_lowercase),
                ha1_sha256: self.ha1_sha256.as_deref().map(str::to_ascii_lowercase),
            },
            bindings_max: self.bindings_max,
            enabled: self.enabled,
        };
        record.validate().map_err(|error| error.to_string())?;
        Ok(record)
    }
}

impl UserView {
    /// How the routes show `record`, homed on `pool`.
    pub fn of(record: &UserRecord, pool: PoolName) -> UserView {
        let mut algorithms = Vec::new();
        if record.credentials.ha1_sha256.is_some() {
            algorithms.push("SHA-256".to_string());
        }
        if record.credentials.ha1_md5.is_some() {
            algorithms.push("MD5".to_string());
        }
        UserView {
            aor: record.aor.clone(),
            pool,
            username: record.credentials.username.clone(),
            algorithms,
            bindings_max: record.bindings_max,
            enabled: record.enabled,
        }
    }
}

/// Splits `records` into runs that each fit one CMS command: at most
/// [`USERS_PER_COMMAND_MAX`] users, and at most `bytes_max` bytes of encoded records (a command
/// must fit one log entry, `roster_raft::REQUEST_SIZE_MAX`, and users with long AORs and names
/// fill it before 256 of them do). `size` gives a record's encoded size.
pub fn command_runs(
    records: &[UserRecord],
    bytes_max: usize,
    size: impl Fn(&UserRecord) -> usize,
) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (index, record) in records.iter().enumerate() {
        let record_bytes = size(record);
        let full = index - start == USERS_PER_COMMAND_MAX || bytes + record_bytes > bytes_max;
        if full && index > start {
            runs.push(start..index);
            start = index;
            bytes = 0;
        }
        bytes += record_bytes;
    }
    if start < records.len() {
        runs.push(start..records.len());
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(aor: &str) -> NewUser {
        NewUser::from_password(aor, "alice", "example.com", "secret")
    }

    #[test]
    fn a_new_user_becomes_a_checked_canonical_record() {
        let mut alice = user("sip:alice@EXAMPLE.com");
        alice.ha1_md5 = alice.ha1_md5.map(|hash| hash.to_ascii_uppercase());
        let record = alice.to_record(|pool| {
            assert_eq!(pool, None);
            Ok(7)
        });
        let record = record.expect("valid");
        assert_eq!(record.aor, "sip:alice@example.com");
        assert_eq!(record.home, 7);
        assert!(record
            .credentials
            .ha1_md5
            .as_deref()
            .is_some_and(|hash| hash.bytes().all(|b| !b.is_ascii_uppercase())));
        assert!(record.enabled);
    }

    #[test]
    fn bad_users_are_refused_by_name() {
        let no_user = user("sip:example.com").to_record(|_| Ok(1)).unwrap_err();
        assert!(no_user.contains("no user part"), "{no_user}");
        let mut no_hash = user("sip:alice@example.com");
        no_hash.ha1_md5 = None;
        no_hash.ha1_sha256 = None;
        let error = no_hash.to_record(|_| Ok(1)).unwrap_err();
        assert!(error.contains("no HA1 hash"), "{error}");
        let mut short = user("sip:alice@example.com");
        short.ha1_sha256 = Some("abc".into());
        let error = short.to_record(|_| Ok(1)).unwrap_err();
        assert!(error.contains("ha1_sha256"), "{error}");
        let mut zero = user("sip:alice@example.com");
        zero.bindings_max = Some(0);
        assert!(zero.to_record(|_| Ok(1)).is_err());
        let mut pooled = user("sip:alice@example.com");
        pooled.pool = Some("mars".into());
        let error = pooled
            .to_record(|pool| Err(format!("no pool {pool:?}")))
            .unwrap_err();
        assert!(error.contains("mars"), "{error}");
    }

    #[test]
    fn a_view_shows_which_hashes_not_the_hashes() {
        let record = user("sip:alice@example.com")
            .to_record(|_| Ok(1))
            .expect("valid");
        let view = UserView::of(
            &record,
            PoolName {
                id: 1,
                name: "east".into(),
            },
        );
        let json = serde_json::to_string(&view).expect("json");
        assert!(
            json.contains("\"algorithms\":[\"SHA-256\",\"MD5\"]"),
            "{json}"
        );
        for hash in [&record.credentials.ha1_md5, &record.credentials.ha1_sha256] {
            let hash = hash.as_deref().expect("hash");
            assert!(!json.contains(hash), "{json}");
        }
    }

    #[test]
    fn runs_respect_the_count_and_the_bytes() {
        let records: Vec<UserRecord> = (0..600)
            .map(|i| {
                user(&format!("sip:u{i}@example.com"))
                    .to_record(|_| Ok(1))
                    .expect("valid")
            })
            .collect();
        let runs = command_runs(&records, usize::MAX, |_| 100);
        assert_eq!(runs, [0..256, 256..512, 512..600]);
        let runs = command_runs(&records, 1_000, |_| 100);
        assert_eq!(runs.len(), 60);
        assert!(runs.iter().all(|run| run.len() == 10));
        // A record larger than the budget still goes, alone.
        let runs = command_runs(&records[..3], 50, |_| 100);
        assert_eq!(runs, [0..1, 1..2, 2..3]);
        assert!(command_runs(&[], 50, |_| 100).is_empty());
    }
}
