//! [`GroupKey`]: what names a Raft group on a node.

use std::fmt;
use std::str::FromStr;

use roster_topology::PoolId;
use serde::{Deserialize, Serialize};

/// Names one Raft group of a deployment: the pool whose data it holds (its *home* pool) and the
/// kind of group.
///
/// A node can hold groups of every kind at once: its own pool's routing groups, backup copies
/// of its partner pool's routing groups, and the CMS or the CMS's backup copy. The key is the
/// group's identity, fixed for its life; which pool serves a user's writes is not in the key
/// but in the CMS's ownership and epoch (a promoted backup copy keeps its key).
///
/// Its text form ([`fmt::Display`], [`FromStr`]) is `<pool>/<kind>`: `1/routing-7`,
/// `2/backup-7`, `1/cms`, `1/cms-backup`. It names the group in logs, metrics and the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupKey {
    /// The home pool of the group's data: the pool whose users a routing group (or its backup
    /// copy) holds, or the pool the CMS lives on.
    pub pool: PoolId,
    /// Which group of that pool's data, and where it lives.
    pub kind: GroupKind,
}

/// The kinds of Raft group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum GroupKind {
    /// Routing group `g` (`hash(AOR) mod G`) of the pool's users, on the pool's own nodes.
    Routing(u32),
    /// The backup copy of the pool's routing group `g`, on its partner pool's nodes.
    Backup(u32),
    /// The CMS, on the pool's own nodes.
    Cms,
    /// The CMS's backup copy, on the partner pool's nodes.
    CmsBackup,
}

/// A group key's text that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid group key {0:?} (expected POOL/routing-N, POOL/backup-N, POOL/cms or POOL/cms-backup)"
)]
pub struct GroupKeyError(pub String);

impl GroupKey {
    /// Routing group `group` of `pool`.
    pub fn routing(pool: PoolId, group: u32) -> GroupKey {
        GroupKey {
            pool,
            kind: GroupKind::Routing(group),
        }
    }

    /// The backup copy of routing group `group` of `pool` (held by `pool`'s partner).
    pub fn backup(pool: PoolId, group: u32) -> GroupKey {
        GroupKey {
            pool,
            kind: GroupKind::Backup(group),
        }
    }

    /// The CMS homed on `pool`.
    pub fn cms(pool: PoolId) -> GroupKey {
        GroupKey {
            pool,
            kind: GroupKind::Cms,
        }
    }

    /// The routing group number of a routing group or of its backup copy.
    pub fn routing_group(&self) -> Option<u32> {
        match self.kind {
            GroupKind::Routing(group) | GroupKind::Backup(group) => Some(group),
            GroupKind::Cms | GroupKind::CmsBackup => None,
        }
    }

    /// The backup copy of this group in the partner pool (a routing group's `Backup`, the CMS's
    /// `CmsBackup`); `None` for a copy.
    pub fn copy(&self) -> Option<GroupKey> {
        let kind = match self.kind {
            GroupKind::Routing(group) => GroupKind::Backup(group),
            GroupKind::Cms => GroupKind::CmsBackup,
            GroupKind::Backup(_) | GroupKind::CmsBackup => return None,
        };
        Some(GroupKey {
            pool: self.pool,
            kind,
        })
    }

    /// The group this one is the backup copy of; `None` for a group on its home pool.
    pub fn source(&self) -> Option<GroupKey> {
        let kind = match self.kind {
            GroupKind::Backup(group) => GroupKind::Routing(group),
            GroupKind::CmsBackup => GroupKind::Cms,
            GroupKind::Routing(_) | GroupKind::Cms => return None,
        };
        Some(GroupKey {
            pool: self.pool,
            kind,
        })
    }

    /// The group of pool `pool` that holds this group's data, this key being in its home
    /// pool's terms: itself on its home pool, its backup copy on the partner.
    pub fn held_in(self, pool: PoolId) -> GroupKey {
        if self.pool == pool {
            self
        } else {
            self.copy().unwrap_or(self)
        }
    }

    /// Whether the group holds the CMS (or its copy).
    pub fn is_cms(&self) -> bool {
        matches!(self.kind, GroupKind::Cms | GroupKind::CmsBackup)
    }

    /// Whether the group lives on its home pool's nodes (a routing group, the CMS), rather
    /// than on the partner's (a backup copy).
    pub fn is_home(&self) -> bool {
        matches!(self.kind, GroupKind::Routing(_) | GroupKind::Cms)
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pool = self.pool;
        match self.kind {
            GroupKind::Routing(group) => write!(f, "{pool}/routing-{group}"),
            GroupKind::Backup(group) => write!(f, "{pool}/backup-{group}"),
            GroupKind::Cms => write!(f, "{pool}/cms"),
            GroupKind::CmsBackup => write!(f, "{pool}/cms-backup"),
        }
    }
}

impl FromStr for GroupKey {
    type Err = GroupKeyError;

    fn from_str(text: &str) -> Result<GroupKey, GroupKeyError> {
        let invalid = || GroupKeyError(text.to_string());
        let (pool, kind) = text.split_once('/').ok_or_else(invalid)?;
        let pool: PoolId = canonical_number(pool).ok_or_else(invalid)?;
        let kind = match kind {
            "cms" => GroupKind::Cms,
            "cms-backup" => GroupKind::CmsBackup,
            _ => {
                if let Some(group) = kind.strip_prefix("routing-") {
                    GroupKind::Routing(canonical_number(group).ok_or_else(invalid)?)
                } else if let Some(group) = kind.strip_prefix("backup-") {
                    GroupKind::Backup(canonical_number(group).ok_or_else(invalid)?)
                } else {
                    return Err(invalid());
                }
            }
        };
        Ok(GroupKey { pool, kind })
    }
}

/// A decimal number without sign or leading zeros, so that each key has one text form.
fn canonical_number<T: FromStr>(digits: &str) -> Option<T> {
    let canonical = !digits.is_empty()
        && digits.bytes().all(|byte| byte.is_ascii_digit())
        && (digits.len() == 1 || !digits.starts_with('0'));
    canonical.then(|| digits.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_held_at_home_or_in_its_copy() {
        assert_eq!(GroupKey::routing(1, 3).held_in(1), GroupKey::routing(1, 3));
        assert_eq!(GroupKey::routing(1, 3).held_in(2), GroupKey::backup(1, 3));
        assert_eq!(
            GroupKey::cms(1).held_in(2),
            GroupKey::cms(1).copy().unwrap()
        );
    }

    #[test]
    fn text_form_round_trips() {
        let keys = [
            GroupKey::routing(1, 0),
            GroupKey::routing(3, 1023),
            GroupKey::backup(2, 7),
            GroupKey::cms(1),
            GroupKey {
                pool: 65535,
                kind: GroupKind::CmsBackup,
            },
        ];
        for key in keys {
            let text = key.to_string();
            assert_eq!(text.parse::<GroupKey>(), Ok(key), "{text}");
        }
        assert_eq!(GroupKey::backup(2, 7).to_string(), "2/backup-7");
    }

    #[test]
    fn malformed_text_is_refused() {
        for text in [
            "",
            "1",
            "1/",
            "/cms",
            "01/cms",
            "1/routing-",
            "1/routing-07",
            "1/routing--1",
            "1/leader-3",
            "70000/cms",
            "1/cms/x",
            "x/cms",
        ] {
            assert!(text.parse::<GroupKey>().is_err(), "{text:?}");
        }
    }

    #[test]
    fn copies_and_sources_pair_up() {
        for key in [GroupKey::routing(3, 9), GroupKey::cms(3)] {
            let copy = key.copy().expect("a home group has a copy");
            assert!(!copy.is_home());
            assert_eq!(copy.source(), Some(key));
            assert_eq!(copy.copy(), None);
            assert_eq!(key.source(), None);
        }
    }

    #[test]
    fn kinds_say_where_they_live() {
        assert!(GroupKey::routing(1, 0).is_home());
        assert!(GroupKey::cms(1).is_home());
        assert!(!GroupKey::backup(1, 0).is_home());
        assert_eq!(GroupKey::backup(1, 5).routing_group(), Some(5));
        assert_eq!(GroupKey::cms(1).routing_group(), None);
    }
}
