//! The node's configuration: the TOML file as written ([`RawConfig`]), then checked and resolved
//! into a [`Config`] that holds only values known to work.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use roster_auth::{Algorithm, ChallengeMode, GuessLimits};
use roster_registrar::{Networks, Overflow, Policy};
use serde::Deserialize;

/// A configuration that cannot be used; the message names the key and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: std::io::Error,
    },
    /// The file is not valid TOML for a node config.
    #[error("invalid config file {path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The TOML file as written. Every field has a default except where noted.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[node]`.
    #[serde(default)]
    pub node: RawNode,
    /// `[sip]`.
    pub sip: RawSip,
    /// `[registrar]`.
    #[serde(default)]
    pub registrar: RawRegistrar,
    /// `[auth]`.
    #[serde(default)]
    pub auth: RawAuth,
    /// `[http]`.
    #[serde(default)]
    pub http: RawHttp,
    /// `[pool]`: present when the node is one of a pool; absent for a single node with its
    /// bindings in memory.
    pub pool: Option<RawPool>,
}

/// `[pool]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    /// The deployment's topology file (sites, pools, pairs, nodes; copied by `roster init`),
    /// relative to this file.
    pub topology: PathBuf,
    /// This node's id in the topology.
    pub node_id: u64,
    /// Where this node's database lives, relative to this file.
    pub data_dir: PathBuf,
    /// The node joins a running pool: it never initializes routing groups, and gets replicas
    /// only through moves (`roster pool rebalance`). Default false: the node is one of the
    /// pool's first nodes. `roster init` sets it for nodes added to an existing pool.
    #[serde(default)]
    pub join: bool,
    /// The cluster CA certificate (PEM).
    pub ca_certificate: PathBuf,
    /// This node's cluster certificate (PEM), issued by the cluster CA.
    pub node_certificate: PathBuf,
    /// This node's cluster private key (PEM).
    pub node_private_key: PathBuf,
    /// Raft heartbeat. Default 150 ms, bound 50..=1000.
    pub heartbeat_interval_ms: Option<u64>,
    /// Raft election timeout, lower end. Default 450 ms, at least three heartbeats.
    pub election_timeout_min_ms: Option<u64>,
    /// Raft election timeout, upper end. Default 700 ms, at least min + one heartbeat.
    pub election_timeout_max_ms: Option<u64>,
    /// The database's page cache, in MiB. Default 64, bound 8..=65536. Bindings live in
    /// memory anyway; the cache serves the log reads of replication and snapshots.
    pub cache_mb: Option<u64>,
    /// How often the pool balances its groups' leaders by itself, seconds (the node leading
    /// routing group 0 does it). Default 30, bound 5..=3600; 0 turns it off (then only
    /// `roster pool rebalance` does).
    pub leader_balance_interval_s: Option<u64>,
    /// How long the partner pool must be silent before this pool serves its users as their
    /// backup registrar (resiliency mode), seconds. Default 10, bound 2..=600.
    pub detection_interval_s: Option<u64>,
}

/// `[http]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Address for metrics, health and status. Default: none (no HTTP).
    pub listen: Option<SocketAddr>,
    /// File holding the bearer token of the pool admin routes (`roster node drain`, `roster
    /// pool rebalance`). Default: none (admin routes off). Keep the HTTP address on a
    /// management network.
    pub admin_token_file: Option<PathBuf>,
}

/// `[node]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    /// Name in logs and in the `Server` header. Default `roster`.
    #[serde(default = "default_node_name")]
    pub name: String,
    /// Threads running the node's async work. Default: one per CPU. Lower it when several
    /// nodes share a machine (the demo runs three).
    pub worker_threads: Option<usize>,
    /// How the node writes its log to standard error: `"text"` (default; colours only on a
    /// terminal) or `"json"` (one object per line, for a log shipper). `roster --log-format`
    /// overrides it.
    #[serde(default)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines; ANSI colours only when standard error is a terminal.
    #[default]
    Text,
    /// One JSON object per line: time, level, target, message, fields and the spans.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<LogFormat, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?} (use text or json)")),
        }
    }
}

/// `[sip]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSip {
    /// Domains served (required, at least one).
    pub domains: Vec<String>,
    /// UDP listen addresses. Default none.
    #[serde(default)]
    pub udp: Vec<SocketAddr>,
    /// TCP listen addresses. Default none.
    #[serde(default)]
    pub tcp: Vec<SocketAddr>,
    /// TLS listen addresses. Default none; needs `tls_certificate` and `tls_private_key`.
    #[serde(default)]
    pub tls: Vec<SocketAddr>,
    /// PEM certificate chain for TLS, relative to the config file.
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key for TLS, relative to the config file.
    pub tls_private_key: Option<PathBuf>,
    /// Open TCP and TLS connections at most. Default 10,000, bound 1..=1,000,000.
    pub connections_max: Option<usize>,
    /// A TCP or TLS connection idle this long is closed. Default 7,500 s (longer than the
    /// default maximum registration interval, so a client refreshing on time keeps its flow).
    pub connection_idle_timeout_s: Option<u64>,
    /// Open TCP and TLS connections per source address (an IPv6 /64 counts as one), except
    /// from `trusted_networks`. Default 64, bound 1..=connections_max.
    pub connections_per_source_max: Option<usize>,
    /// A message begun on a TCP or TLS connection (and a new connection's first message) must
    /// be complete within this many seconds, or the connection is closed. Default 10, bound
    /// 1..=300.
    pub message_timeout_s: Option<u64>,
    /// UDP requests per second one source address (an IPv6 /64 counts as one) may send,
    /// except from `trusted_networks`; the excess is dropped before parsing. Bursts of twice
    /// the rate pass. Default 200, bound 1..=1,000,000.
    pub source_requests_per_s_max: Option<u32>,
    /// Sources (`"10.0.0.0/8"`, `"2001:db8::/32"`, `"192.0.2.7"`) that may look users up
    /// without authenticating and are exempt from the per-source limits: edge proxies, SBCs,
    /// trusted test drivers. Default none, at most 64.
    #[serde(default)]
    pub trusted_networks: Vec<String>,
    /// Hosts that name this registrar in a REGISTER's Request-URI besides `domains` (phones
    /// set up with a server IP send `sip:192.0.2.10:5060`). Default: the IP addresses of the
    /// listen addresses (not `0.0.0.0` or `::`); `[]` accepts domains only.
    pub own_hosts: Option<Vec<String>>,
}

/// `[registrar]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistrar {
    /// Default 3600.
    pub expires_default_s: Option<u32>,
    /// Default 60.
    pub expires_min_s: Option<u32>,
    /// Default 7200.
    pub expires_max_s: Option<u32>,
    /// Default 8.
    pub bindings_per_aor_max: Option<usize>,
    /// `reject` (default) or `evict-oldest`.
    pub overflow: Option<Overflow>,
    /// How often expired bindings are purged. Default 10 s, bound 1..=3600.
    pub purge_interval_s: Option<u64>,
}

/// `[auth]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Require digest authentication for REGISTER. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Digest realm. Default: the first served domain.
    pub realm: Option<String>,
    /// Challenge algorithms, preferred first. Default `["SHA-256", "MD5"]`.
    pub algorithms: Option<Vec<String>>,
    /// Nonce lifetime. Default 300 s, bound 10..=86400.
    pub nonce_lifetime_s: Option<u64>,
    /// The users file (TOML `[[user]]` entries with `aor`, `username`, `ha1_md5`,
    /// `ha1_sha256`), relative to the config file. Default: no users.
    pub users_file: Option<PathBuf>,
    /// Accept any user of a served domain without a directory entry. Only allowed with
    /// `enabled = false`. Default false.
    #[serde(default)]
    pub open_directory: bool,
    /// The nonce key file shared by a pool's nodes (64 hex digits). Default: a random key.
    pub nonce_key_file: Option<PathBuf>,
    /// How a `401` offers `algorithms`: `"single"` (default): one `WWW-Authenticate`, for the
    /// algorithm the request names in an `Authorization`, else MD5 (when listed), which every
    /// client answers; `"every"`: one per algorithm, preferred first (RFC 8760 section 2.4).
    pub challenge: Option<String>,
    /// Wrong answers per user name per `guess_window_s` before the user's answers from
    /// sources it never authenticated from are refused (`503`). Default 10, bound 1..=10,000.
    pub guesses_per_user_max: Option<u32>,
    /// Wrong answers per source per `guess_window_s` before its requests are refused (`503`).
    /// Default 20, bound 1..=10,000.
    pub guesses_per_source_max: Option<u32>,
    /// The guess window, seconds. Default 60, bound 1..=86,400.
    pub guess_window_s: Option<u64>,
}

impl Default for RawNode {
    fn default() -> Self {
        RawNode {
            name: default_node_name(),
            worker_threads: None,
            log_format: LogFormat::Text,
        }
    }
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth {
            enabled: true,
            realm: None,
            algorithms: None,
            nonce_lifetime_s: None,
            users_file: None,
            open_directory: false,
            nonce_key_file: None,
            challenge: None,
            guesses_per_user_max: None,
            guesses_per_source_max: None,
            guess_window_s: None,
        }
    }
}

/// Most wrong answers per window a bound may allow: past ten thousand a minute the bound no
/// longer slows a guesser.
const GUESSES_MAX: u32 = 10_000;

/// Most async worker threads a node may ask for.
pub const WORKER_THREADS_MAX: usize = 256;

fn default_node_name() -> String {
    "roster".to_string()
}

fn default_true() -> bool {
    true
}

/// A checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The node's name.
    pub node_name: String,
    /// Async worker threads; `None`: one per CPU.
    pub worker_threads: Option<usize>,
    /// How the node's log is written.
    pub log_format: LogFormat,
    /// The file holding the bearer token of the admin routes (read when the node starts, as
    /// the nonce key and users files are); `None`: admin routes off.
    pub admin_token_file: Option<PathBuf>,
    /// Domains served, lowercase.
    pub domains: Vec<String>,
    /// UDP listen addresses.
    pub udp: Vec<SocketAddr>,
    /// TCP listen addresses.
    pub tcp: Vec<SocketAddr>,
    /// TLS listen addresses.
    pub tls: Vec<SocketAddr>,
    /// Certificate and key files, present whenever `tls` is not empty.
    pub tls_files: Option<(PathBuf, PathBuf)>,
    /// Stream connections at most.
    pub connections_max: usize,
    /// Idle stream connections are closed after this.
    pub connection_idle_timeout_s: u64,
    /// Stream connections per untrusted source at most.
    pub connections_per_source_max: usize,
    /// A begun stream message must complete within this.
    pub message_timeout_s: u64,
    /// UDP requests per second per untrusted source.
    pub source_requests_per_s_max: u32,
    /// Sources exempt from per-source limits that may look users up without authenticating.
    pub trusted_networks: Networks,
    /// Hosts naming this registrar in a REGISTER's Request-URI besides the domains.
    pub own_hosts: Vec<String>,
    /// Registrar limits.
    pub policy: Policy,
    /// Purge period.
    pub purge_interval_s: u64,
    /// Digest settings, `None` when authentication is off.
    pub auth: Option<AuthConfig>,
    /// Users file, if any.
    pub users_file: Option<PathBuf>,
    /// Accept any user of a served domain.
    pub open_directory: bool,
    /// HTTP address for metrics, health and status.
    pub http: Option<SocketAddr>,
    /// Pool membership, when the node is one of a pool.
    pub pool: Option<PoolConfig>,
    /// The digest nonce key file (64 hex digits), shared by the nodes of a pool so a nonce
    /// issued by one verifies on another. `None`: a random key per process.
    pub nonce_key_file: Option<PathBuf>,
}

/// `[pool]`, checked and with paths resolved.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// The topology file.
    pub topology: PathBuf,
    /// This node's id.
    pub node_id: u64,
    /// The database directory.
    pub data_dir: PathBuf,
    /// Cluster CA certificate.
    pub ca_certificate: PathBuf,
    /// This node's certificate.
    pub node_certificate: PathBuf,
    /// This node's key.
    pub node_private_key: PathBuf,
    /// Joins a running pool instead of creating it.
    pub join: bool,
    /// Raft heartbeat, ms.
    pub heartbeat_interval_ms: u64,
    /// Election timeout range, ms.
    pub election_timeout_ms: (u64, u64),
    /// The database's page cache, bytes.
    pub cache_bytes: u64,
    /// Period of the pool's own leader balancing; `None` when turned off.
    pub leader_balance_interval: Option<std::time::Duration>,
    /// The partner's silence that starts resiliency mode.
    pub detection_interval: std::time::Duration,
}

/// Digest authentication settings.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// The realm.
    pub realm: String,
    /// Challenge algorithms, preferred first.
    pub algorithms: Vec<Algorithm>,
    /// Nonce lifetime in seconds.
    pub nonce_lifetime_s: u64,
    /// How a challenge offers the algorithms.
    pub challenge: ChallengeMode,
    /// Password-guess bounds.
    pub guesses: GuessLimits,
}

impl Config {
    /// Reads and checks the file at `path`; relative paths inside it are resolved against its
    /// directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|reason| ConfigError::Read {
            path: path.to_path_buf(),
            reason,
        })?;
        let raw: RawConfig = toml::from_str(&text).map_err(|error| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: error.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_raw(raw, base)
    }

    /// Checks `raw`, resolving relative paths against `base`.
    pub fn from_raw(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid(message);
        let domains: Vec<String> = raw
            .sip
            .domains
            .iter()
            .map(|d| d.trim().to_ascii_lowercase())
            .collect();
        if domains.is_empty() || domains.iter().any(String::is_empty) {
            return Err(invalid("sip.domains must list at least one domain".into()));
        }
        let sip = &raw.sip;
        if sip.udp.is_empty() && sip.tcp.is_empty() && sip.tls.is_empty() {
            return Err(invalid(
                "no SIP listen address: set sip.udp, sip.tcp or sip.tls".into(),
            ));
        }
        let tls_files = match (&sip.tls_certificate, &sip.tls_private_key) {
            (Some(cert), Some(key)) => Some((base.join(cert), base.join(key))),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "sip.tls_certificate and sip.tls_private_key go together".into(),
                ))
            }
        };
        if !sip.tls.is_empty() && tls_files.is_none() {
            return Err(invalid(
                "sip.tls needs sip.tls_certificate and sip.tls_private_key".into(),
            ));
        }
        let connections_max = bounded(
            "sip.connections_max",
            sip.connections_max,
            10_000,
            1,
            1_000_000,
        )?;
        let connection_idle_timeout_s = bounded(
            "sip.connection_idle_timeout_s",
            sip.connection_idle_timeout_s,
            7_500,
            1,
            86_400 * 7,
        )?;
        let connections_per_source_max = bounded(
            "sip.connections_per_source_max",
            sip.connections_per_source_max,
            64.min(connections_max),
            1,
            connections_max,
        )?;
        let message_timeout_s =
            bounded("sip.message_timeout_s", sip.message_timeout_s, 10, 1, 300)?;
        let source_requests_per_s_max = bounded(
            "sip.source_requests_per_s_max",
            sip.source_requests_per_s_max,
            200,
            1,
            1_000_000,
        )?;
        let trusted_networks = Networks::parse(&sip.trusted_networks)
            .map_err(|error| invalid(format!("sip.trusted_networks: {error}")))?;
        let own_hosts = match &sip.own_hosts {
            Some(hosts) => hosts
                .iter()
                .map(|host| host.trim().trim_matches(['[', ']']).to_ascii_lowercase())
                .collect(),
            None => listen_hosts(sip),
        };
        let policy = policy(&raw.registrar)?;
        let purge_interval_s = bounded(
            "registrar.purge_interval_s",
            raw.registrar.purge_interval_s,
            10,
            1,
            3600,
        )?;
        let auth = auth(&raw.auth, &domains)?;
        if raw.auth.open_directory && auth.is_some() {
            return Err(invalid(
                "auth.open_directory needs auth.enabled = false: unknown users cannot authenticate"
                    .into(),
            ));
        }
        if let Some(threads) = raw.node.worker_threads {
            bounded(
                "node.worker_threads",
                Some(threads),
                1,
                1,
                WORKER_THREADS_MAX,
            )?;
        }
        Ok(Config {
            admin_token_file: raw.http.admin_token_file.map(|file| base.join(file)),
            worker_threads: raw.node.worker_threads,
            log_format: raw.node.log_format,
            node_name: raw.node.name,
            domains,
            udp: raw.sip.udp,
            tcp: raw.sip.tcp,
            tls: raw.sip.tls,
            tls_files,
            connections_max,
            connection_idle_timeout_s,
            connections_per_source_max,
            message_timeout_s,
            source_requests_per_s_max,
            trusted_networks,
            own_hosts,
            policy,
            purge_interval_s,
            auth,
            users_file: raw.auth.users_file.map(|file| base.join(file)),
            open_directory: raw.auth.open_directory,
            http: raw.http.listen,
            pool: raw.pool.map(|pool| pool_config(pool, base)).transpose()?,
            nonce_key_file: raw.auth.nonce_key_file.map(|file| base.join(file)),
        })
    }
}

/// The specific IP addresses among the SIP listen addresses, once each.
fn listen_hosts(sip: &RawSip) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    for address in sip.udp.iter().chain(&sip.tcp).chain(&sip.tls) {
        let host = address.ip().to_string();
        if !address.ip().is_unspecified() && !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    hosts
}

fn pool_config(raw: RawPool, base: &Path) -> Result<PoolConfig, ConfigError> {
    if raw.node_id == 0 {
        return Err(ConfigError::Invalid(
            "pool.node_id must be 1 or more".into(),
        ));
    }
    use roster_raft::config::{
        GroupConfigOptions, ELECTION_HEARTBEATS_MIN, ELECTION_TIMEOUT_MS_MAX,
        HEARTBEAT_INTERVAL_MS_MAX, HEARTBEAT_INTERVAL_MS_MIN,
    };
    let defaults = GroupConfigOptions::default();
    let heartbeat_interval_ms = bounded(
        "pool.heartbeat_interval_ms",
        raw.heartbeat_interval_ms,
        defaults.heartbeat_interval_ms,
        HEARTBEAT_INTERVAL_MS_MIN,
        HEARTBEAT_INTERVAL_MS_MAX,
    )?;
    let min = bounded(
        "pool.election_timeout_min_ms",
        raw.election_timeout_min_ms,
        defaults
            .election_timeout_min_ms
            .max(ELECTION_HEARTBEATS_MIN * heartbeat_interval_ms),
        ELECTION_HEARTBEATS_MIN * heartbeat_interval_ms,
        ELECTION_TIMEOUT_MS_MAX,
    )?;
    let max = bounded(
        "pool.election_timeout_max_ms",
        raw.election_timeout_max_ms,
        defaults
            .election_timeout_max_ms
            .max(min + heartbeat_interval_ms),
        min + heartbeat_interval_ms,
        ELECTION_TIMEOUT_MS_MAX,
    )?;
    Ok(PoolConfig {
        topology: base.join(raw.topology),
        node_id: raw.node_id,
        data_dir: base.join(raw.data_dir),
        ca_certificate: base.join(raw.ca_certificate),
        node_certificate: base.join(raw.node_certificate),
        node_private_key: base.join(raw.node_private_key),
        join: raw.join,
        heartbeat_interval_ms,
        election_timeout_ms: (min, max),
        cache_bytes: bounded(
            "pool.cache_mb",
            raw.cache_mb,
            CACHE_MB_DEFAULT,
            CACHE_MB_MIN,
            CACHE_MB_MAX,
        )? * 1024
            * 1024,
        leader_balance_interval: match raw.leader_balance_interval_s {
            Some(0) => None,
            seconds => Some(std::time::Duration::from_secs(bounded(
                "pool.leader_balance_interval_s",
                seconds,
                LEADER_BALANCE_INTERVAL_S_DEFAULT,
                LEADER_BALANCE_INTERVAL_S_MIN,
                LEADER_BALANCE_INTERVAL_S_MAX,
            )?)),
        },
        detection_interval: std::time::Duration::from_secs(bounded(
            "pool.detection_interval_s",
            raw.detection_interval_s,
            DETECTION_INTERVAL_S_DEFAULT,
            DETECTION_INTERVAL_S_MIN,
            DETECTION_INTERVAL_S_MAX,
        )?),
    })
}

/// `[pool] cache_mb` default: sled's page cache of a node. At a million bindings that is
/// about 67 bytes per binding, next to the few hundred the bindings themselves take.
const CACHE_MB_DEFAULT: u64 = 64;
const CACHE_MB_MIN: u64 = 8;
const CACHE_MB_MAX: u64 = 65_536;
/// Seconds between two runs of the pool's own leader balancing, unless configured.
const LEADER_BALANCE_INTERVAL_S_DEFAULT: u64 = 30;
const LEADER_BALANCE_INTERVAL_S_MIN: u64 = 5;
const LEADER_BALANCE_INTERVAL_S_MAX: u64 = 3_600;
/// `[pool] detection_interval_s` default: `roster_pool::DETECTION_INTERVAL_DEFAULT`.
const DETECTION_INTERVAL_S_DEFAULT: u64 = roster_pool::DETECTION_INTERVAL_DEFAULT.as_secs();
/// Shorter than two missed pings (one a second) is not a silence.
const DETECTION_INTERVAL_S_MIN: u64 = 2;
/// Longer than ten minutes leaves a lost site's users unserved for too long to be useful.
const DETECTION_INTERVAL_S_MAX: u64 = 600;

fn bounded<T>(key: &str, value: Option<T>, default: T, min: T, max: T) -> Result<T, ConfigError>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    let value = value.unwrap_or(default);
    if value < min || value > max {
        return Err(ConfigError::Invalid(format!(
            "{key} = {value} is out of range {min}..={max}"
        )));
    }
    Ok(value)
}

fn policy(raw: &RawRegistrar) -> Result<Policy, ConfigError> {
    let defaults = Policy::default();
    let policy = Policy {
        expires_default_s: raw.expires_default_s.unwrap_or(defaults.expires_default_s),
        expires_min_s: raw.expires_min_s.unwrap_or(defaults.expires_min_s),
        expires_max_s: raw.expires_max_s.unwrap_or(defaults.expires_max_s),
        bindings_per_aor_max: raw
            .bindings_per_aor_max
            .unwrap_or(defaults.bindings_per_aor_max),
        overflow: raw.overflow.unwrap_or(defaults.overflow),
    };
    policy
        .validate()
        .map_err(|error| ConfigError::Invalid(format!("registrar: {error}")))?;
    Ok(policy)
}

fn auth(raw: &RawAuth, domains: &[String]) -> Result<Option<AuthConfig>, ConfigError> {
    if !raw.enabled {
        return Ok(None);
    }
    let algorithms = match &raw.algorithms {
        None => vec![Algorithm::Sha256, Algorithm::Md5],
        Some(names) => names
            .iter()
            .map(|name| {
                name.parse::<Algorithm>().map_err(|_| {
                    ConfigError::Invalid(format!(
                        "auth.algorithms: unknown algorithm {name:?} (use \"SHA-256\" or \"MD5\")"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    if algorithms.is_empty() {
        return Err(ConfigError::Invalid(
            "auth.algorithms must name at least one algorithm".into(),
        ));
    }
    let nonce_lifetime_s = bounded(
        "auth.nonce_lifetime_s",
        raw.nonce_lifetime_s,
        300,
        10,
        86_400,
    )?;
    let challenge = match raw.challenge.as_deref() {
        None | Some("single") => ChallengeMode::Single,
        Some("every") => ChallengeMode::Every,
        Some(other) => {
            return Err(ConfigError::Invalid(format!(
                "auth.challenge: unknown mode {other:?} (use \"single\" or \"every\")"
            )))
        }
    };
    let defaults = GuessLimits::default();
    let guesses = GuessLimits {
        per_user_max: bounded(
            "auth.guesses_per_user_max",
            raw.guesses_per_user_max,
            defaults.per_user_max,
            1,
            GUESSES_MAX,
        )?,
        per_source_max: bounded(
            "auth.guesses_per_source_max",
            raw.guesses_per_source_max,
            defaults.per_source_max,
            1,
            GUESSES_MAX,
        )?,
        window_ms: bounded(
            "auth.guess_window_s",
            raw.guess_window_s,
            defaults.window_ms / 1000,
            1,
            86_400,
        )? * 1000,
    };
    Ok(Some(AuthConfig {
        realm: raw.realm.clone().unwrap_or_else(|| domains[0].clone()),
        algorithms,
        nonce_lifetime_s,
        challenge,
        guesses,
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|error| ConfigError::Syntax {
            path: "test.toml".into(),
            message: error.to_string(),
        })?;
        Config::from_raw(raw, Path::new("/etc/roster"))
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let config = parse("[sip]\ndomains = [\"Example.com\"]\nudp = [\"127.0.0.1:5060\"]\n")
            .expect("valid");
        assert_eq!(config.domains, ["example.com"]);
        assert_eq!(config.policy, Policy::default());
        let auth = config.auth.expect("auth on by default");
        assert_eq!(auth.realm, "example.com");
        assert_eq!(auth.algorithms, [Algorithm::Sha256, Algorithm::Md5]);
        assert_eq!(auth.challenge, ChallengeMode::Single);
        assert_eq!(auth.guesses, GuessLimits::default());
        assert_eq!(config.own_hosts, ["127.0.0.1"]);
        assert!(config.trusted_networks.is_empty());
        assert_eq!(config.connections_per_source_max, 64);
        assert_eq!(config.message_timeout_s, 10);
        assert_eq!(config.source_requests_per_s_max, 200);
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let config = parse(
            "[sip]\ndomains = [\"a\"]\ntls = [\"127.0.0.1:5061\"]\ntls_certificate = \"c.pem\"\n\
             tls_private_key = \"k.pem\"\n[auth]\nusers_file = \"users.toml\"\n\
             [http]\nadmin_token_file = \"../admin.token\"\n",
        )
        .expect("valid");
        assert_eq!(
            config.tls_files,
            Some(("/etc/roster/c.pem".into(), "/etc/roster/k.pem".into()))
        );
        assert_eq!(config.users_file, Some("/etc/roster/users.toml".into()));
        assert_eq!(
            config.admin_token_file,
            Some("/etc/roster/../admin.token".into())
        );
    }

    #[test]
    fn problems_are_named() {
        let cases = [
            ("[sip]\ndomains = []\nudp = [\"127.0.0.1:1\"]", "sip.domains"),
            ("[sip]\ndomains = [\"a\"]", "no SIP listen address"),
            ("[sip]\ndomains = [\"a\"]\ntls = [\"127.0.0.1:1\"]", "sip.tls needs"),
            (
                "[sip]\ndomains = [\"a\"]\nudp = [\"127.0.0.1:1\"]\n[registrar]\nexpires_min_s = 9999",
                "registrar:",
            ),
            (
                "[sip]\ndomains = [\"a\"]\nudp = [\"127.0.0.1:1\"]\n[auth]\nopen_directory = true",
                "auth.open_directory",
            ),
            (
                "[sip]\ndomains = [\"a\"]\nudp = [\"127.0.0.1:1\"]\n[auth]\nalgorithms = [\"SHA-512\"]",
                "auth.algorithms",
            ),
            ("[sip]\ndomains = [\"a\"]\nudp = [\"nonsense\"]", "invalid"),
            ("[sip]\ndomains = [\"a\"]\nudp = [\"127.0.0.1:1\"]\ntypo = 1", "typo"),
            (
                "[node]\nworker_threads = 0\n[sip]\ndomains = [\"a\"]\nudp = [\"127.0.0.1:1\"]",
                "node.worker_threads = 0",
            ),
            (
                "[sip]\ndomains = [\"a\"]\nudp = [\"127.0.0.1:1\"]\ntrusted_networks = [\"10.0.0.0/33\"]",
                "sip.trusted_networks",
            ),
            (
                "[sip]\ndomains = [\"a\"]\nudp = [\"127.0.0.1:1\"]\n[auth]\nchallenge = \"both\"",
                "auth.challenge",
            ),
            (
                "[sip]\ndomains = [\"a\"]\nudp = [\"127.0.0.1:1\"]\n[auth]\nguesses_per_user_max = 0",
                "auth.guesses_per_user_max = 0",
            ),
            (
                "[node]\nlog_format = \"xml\"\n[sip]\ndomains = [\"a\"]\nudp = [\"127.0.0.1:1\"]",
                "log_format",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(text).expect_err(text).to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    /// The `[pool]` section of a minimal pool node's configuration with `extra` keys.
    fn pool_config(extra: &str) -> Result<PoolConfig, ConfigError> {
        parse(&format!(
            "[sip]\ndomains = [\"a\"]\nudp = [\"127.0.0.1:1\"]\n[pool]\ntopology = \"t.toml\"\n\
             node_id = 1\ndata_dir = \"d\"\nca_certificate = \"ca.pem\"\n\
             node_certificate = \"n.pem\"\nnode_private_key = \"n.key\"\n{extra}"
        ))
        .map(|config| config.pool.expect("a pool node"))
    }

    #[test]
    fn leader_balancing_defaults_to_30_s_and_0_turns_it_off() {
        let pool = |extra: &str| pool_config(extra).map(|pool| pool.leader_balance_interval);
        assert_eq!(pool("").expect("valid"), Some(Duration::from_secs(30)));
        assert_eq!(
            pool("leader_balance_interval_s = 120").expect("valid"),
            Some(Duration::from_secs(120))
        );
        assert_eq!(pool("leader_balance_interval_s = 0").expect("valid"), None);
        let error = pool("leader_balance_interval_s = 2")
            .expect_err("below the bound")
            .to_string();
        assert!(
            error.contains("pool.leader_balance_interval_s = 2"),
            "{error}"
        );
    }

    #[test]
    fn the_detection_interval_defaults_to_10_s_within_its_bounds() {
        let pool = |extra: &str| pool_config(extra).map(|pool| pool.detection_interval);
        assert_eq!(pool("").expect("valid"), Duration::from_secs(10));
        assert_eq!(
            pool("detection_interval_s = 3").expect("valid"),
            Duration::from_secs(3)
        );
        let error = pool("detection_interval_s = 1")
            .expect_err("below the bound")
            .to_string();
        assert!(error.contains("pool.detection_interval_s = 1"), "{error}");
    }
}
