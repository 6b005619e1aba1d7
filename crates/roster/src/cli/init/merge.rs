//! `roster init` run again (to add a node, or after a topology change) rewrites each existing
//! node's `roster.toml` in place: what the topology and the pool's layout decide (addresses,
//! paths, the node id, `join`) is taken from this run, the settings this run was explicitly
//! given (`--domain`, `--trusted`, `--no-auth`) are applied, and everything else an operator
//! set (`auth.algorithms`, `[registrar]` limits, `[node] log_format`, comments) is kept.

use anyhow::Context as _;
use toml_edit::DocumentMut;

/// Keys whose value comes from the topology and the layout `roster init` writes: always this
/// run's (and removed when this run writes none, e.g. `join` or an `[http]` the topology
/// dropped).
const OWNED_KEYS: [(&str, &str); 16] = [
    ("sip", "udp"),
    ("sip", "tcp"),
    ("sip", "tls"),
    ("sip", "tls_certificate"),
    ("sip", "tls_private_key"),
    ("auth", "nonce_key_file"),
    ("auth", "users_file"),
    ("http", "listen"),
    ("http", "admin_token_file"),
    ("pool", "topology"),
    ("pool", "node_id"),
    ("pool", "data_dir"),
    ("pool", "ca_certificate"),
    ("pool", "node_certificate"),
    ("pool", "node_private_key"),
    ("pool", "join"),
];

/// Which operator settings this run of `roster init` was explicitly given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Given {
    /// `--domain`: `sip.domains`.
    pub domains: bool,
    /// `--trusted`: `sip.trusted_networks`.
    pub trusted_networks: bool,
    /// `--no-auth`: `auth.enabled` and `auth.open_directory`.
    pub no_auth: bool,
}

/// `existing` (a node's configuration as it is on disk) updated from `fresh` (what this run
/// would write for a new node): owned keys and given settings from `fresh`, the rest kept.
pub fn merge(existing: &str, fresh: &str, given: Given) -> anyhow::Result<String> {
    let mut document: DocumentMut = existing
        .parse()
        .context("it is not valid TOML: fix it, or remove it to have it written anew")?;
    let fresh: DocumentMut = fresh.parse().context("the written configuration")?;
    let mut taken: Vec<(&str, &str)> = OWNED_KEYS.to_vec();
    if given.domains {
        taken.push(("sip", "domains"));
    }
    if given.trusted_networks {
        taken.push(("sip", "trusted_networks"));
    }
    if given.no_auth {
        taken.extend([("auth", "enabled"), ("auth", "open_directory")]);
    }
    for (table, key) in taken {
        match fresh.get(table).and_then(|t| t.get(key)) {
            Some(value) => {
                let section = document
                    .entry(table)
                    .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
                let Some(section) = section.as_table_like_mut() else {
                    anyhow::bail!("[{table}] is not a table");
                };
                section.insert(key, value.clone());
            }
            None => {
                if let Some(section) = document.get_mut(table).and_then(|t| t.as_table_like_mut()) {
                    section.remove(key);
                }
            }
        }
    }
    Ok(document.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITTEN: &str = "# Written by `roster init` for node 1.\n[node]\nname = \"node-1\"\n\n\
        [sip]\ndomains = [\"example.com\"]\nudp = [\"10.0.0.1:5060\"]\n\n\
        [auth]\nenabled = true\nalgorithms = [\"SHA-256\", \"MD5\"]\n\n\
        [http]\nlisten = \"10.0.0.1:8080\"\n\n[pool]\nnode_id = 1\njoin = true\n";

    #[test]
    fn operator_settings_and_comments_are_kept_topology_keys_follow_the_topology() {
        let edited = WRITTEN
            .replace(
                "algorithms = [\"SHA-256\", \"MD5\"]",
                "# MD5 off since the audit\nalgorithms = [\"SHA-256\"]",
            )
            .replace("[registrar]", "")
            + "\n[registrar]\nexpires_max_s = 3600\n";
        let fresh = WRITTEN
            .replace("10.0.0.1:5060", "10.0.0.9:5060")
            .replace("join = true\n", "");
        let merged = merge(&edited, &fresh, Given::default()).expect("merged");
        assert!(merged.contains("algorithms = [\"SHA-256\"]"), "{merged}");
        assert!(merged.contains("# MD5 off since the audit"), "{merged}");
        assert!(merged.contains("expires_max_s = 3600"), "{merged}");
        assert!(merged.contains("udp = [\"10.0.0.9:5060\"]"), "{merged}");
        assert!(!merged.contains("join"), "{merged}");
    }

    #[test]
    fn given_settings_apply_and_others_are_kept() {
        let edited = WRITTEN.replace("example.com", "corp.example");
        let fresh = WRITTEN.replace("example.com", "new.example");
        let kept = merge(&edited, &fresh, Given::default()).expect("merged");
        assert!(kept.contains("corp.example"), "{kept}");
        let given = Given {
            domains: true,
            ..Given::default()
        };
        let applied = merge(&edited, &fresh, given).expect("merged");
        assert!(applied.contains("new.example"), "{applied}");
    }

    #[test]
    fn a_damaged_configuration_is_named_not_overwritten() {
        let error = merge("[sip\n", WRITTEN, Given::default()).expect_err("not TOML");
        assert!(format!("{error:#}").contains("not valid TOML"), "{error:#}");
    }
}
