//! The command line: [`LoadArgs`] (flags as given, `clap`) → [`LoadConfig`] (checked).

use std::path::PathBuf;
use std::time::Duration;

use roster_auth::Algorithm;
use roster_sip::Uri;

use crate::arrivals::ArrivalProcess;
use crate::error::LoadError;
use crate::op::LookupMethod;
use crate::transaction::Timers;
use crate::workload::{Mix, Population, Schedule};

/// Most users × endpoints one run simulates: each costs a session (~0.5 KiB) and a
/// binding in the ledger, so a million stays within a few GiB.
pub const SESSIONS_MAX: usize = 1_000_000;

/// Highest `--rate`: far above what one client core can build and parse.
pub const RATE_PER_S_MAX: f64 = 1_000_000.0;

/// Highest `--max-outstanding`; each open transaction keeps its request (≤ 64 KiB, ~0.5 KiB
/// typically) for retransmission.
pub const OUTSTANDING_MAX: usize = 1_000_000;

/// Most TCP or TLS connections (`--connections`), each with two tasks and buffers.
pub const CONNECTIONS_MAX: usize = 10_000;

/// Longest `--duration` and `--drain`: a week, and ten minutes.
const DURATION_MAX: Duration = Duration::from_secs(7 * 24 * 3600);
const DRAIN_MAX: Duration = Duration::from_secs(600);

/// Bounds of `--t1-ms`: 10 ms (fast tests) to 10 s.
const T1_MS_MIN: u64 = 10;
const T1_MS_MAX: u64 = 10_000;

/// The SIP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// UDP, with retransmissions (Timer E).
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP (requires `--tls-ca`).
    Tls,
}

impl TransportKind {
    /// The Via token.
    pub fn via_token(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
            TransportKind::Tls => "TLS",
        }
    }

    /// Whether the transport is reliable (no retransmissions).
    pub fn reliable(self) -> bool {
        self != TransportKind::Udp
    }

    /// The default port: 5060, or 5061 for TLS.
    pub fn default_port(self) -> u16 {
        match self {
            TransportKind::Tls => 5061,
            TransportKind::Udp | TransportKind::Tcp => 5060,
        }
    }
}

/// Digest algorithms `--algorithm` can insist on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DigestAlgorithm {
    /// SHA-256 (RFC 8760).
    #[value(name = "sha-256")]
    Sha256,
    /// MD5 (RFC 2617).
    #[value(name = "md5")]
    Md5,
}

/// `roster load`: simulate N users × M endpoints against a SIP registrar.
///
/// The run registers every endpoint (the storm) at --rate, then keeps sending the --mix at
/// --rate while refreshing each binding before it expires, until --duration or --count.
/// Latency counts from each request's intended send time.
#[derive(Clone, Debug, clap::Args)]
pub struct LoadArgs {
    /// The registrar: HOST:PORT, [IPv6]:PORT, or HOST (port 5060, or 5061 with TLS).
    #[arg(value_name = "TARGET")]
    pub target: String,
    /// SIP transport.
    #[arg(long, value_enum, default_value_t = TransportKind::Udp)]
    pub transport: TransportKind,
    /// PEM file of the CA that signed the registrar's certificate (required with TLS).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Name the registrar's certificate must carry [default: the target's host].
    #[arg(long, value_name = "NAME")]
    pub tls_name: Option<String>,
    /// TCP or TLS connections, endpoints spread over them (1..=10000).
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// UDP only: the local port to send from [default: any free port]. Contacts name it
    /// (sip:USER@HOST:PORT), so with a fixed port a run refreshes the bindings an earlier run
    /// left, instead of adding one more per AOR (like SIPp's -p).
    #[arg(long, value_name = "PORT")]
    pub local_port: Option<u16>,
    /// The SIP domain: AORs are sip:<user>@DOMAIN and REGISTER goes to sip:DOMAIN.
    #[arg(long, default_value = "example.com")]
    pub domain: String,
    /// Users simulated (users × endpoints at most 1000000).
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Endpoints (contacts, each with its own Call-ID) per user.
    #[arg(long, default_value_t = 1)]
    pub endpoints: usize,
    /// User names are this prefix and a number.
    #[arg(long, default_value = "u")]
    pub user_prefix: String,
    /// The number of the first user.
    #[arg(long, default_value_t = 0)]
    pub first_user: u64,
    /// Every user's digest password (digest answers only when challenged).
    #[arg(long, value_name = "PASSWORD")]
    pub password: Option<String>,
    /// Read the password from a file: a `password: ...` line (as `roster demo` writes in
    /// DIR/credentials), else the first line.
    #[arg(long, value_name = "FILE", conflicts_with = "password")]
    pub password_file: Option<PathBuf>,
    /// Answer only challenges of this algorithm [default: the registrar's first supported].
    #[arg(long, value_enum)]
    pub algorithm: Option<DigestAlgorithm>,
    /// Operations started per second, open loop (storm and mix; refreshes come when due).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// How arrivals are spaced.
    #[arg(long, value_enum, default_value_t = ArrivalProcess::Uniform)]
    pub arrivals: ArrivalProcess,
    /// Stop starting operations after this long (e.g. 30, 30s, 500ms, 2m).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop after starting this many operations, refreshes included.
    #[arg(long)]
    pub count: Option<u64>,
    /// Most transactions in flight; a due operation waits for a free slot (its latency still
    /// counts from its intended time) and the report says how often that happened.
    #[arg(long, default_value_t = 1000)]
    pub max_outstanding: usize,
    /// Expiry requested by each REGISTER, seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub expires: u32,
    /// Refresh a binding at this fraction of its granted expiry (0 < F < 1).
    #[arg(long, value_name = "F", default_value_t = 0.5)]
    pub refresh_at: f64,
    /// Weights of the operations after the storm: register (new or early refresh),
    /// unregister, query (REGISTER without Contact), lookup (OPTIONS/INVITE to the AOR).
    /// All zero: refreshes only.
    #[arg(long, default_value = "register=40,unregister=10,query=25,lookup=25")]
    pub mix: String,
    /// What a lookup sends.
    #[arg(long, value_enum, default_value_t = LookupMethod::Options)]
    pub lookup_method: LookupMethod,
    /// RFC 3261 T1 in ms (10..=10000): UDP retransmits at T1, 2×T1, ... capped at T2 = 4 s,
    /// and a transaction times out (Timer F) at 64×T1.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub t1_ms: u64,
    /// After the last operation started, wait this long at most for the open ones.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// After the load, query every AOR and check each acknowledged binding is there; exit
    /// non-zero if any is missing or wrong.
    #[arg(long)]
    pub verify: bool,
    /// Queries per second of --verify [default: --rate].
    #[arg(long, value_name = "RATE")]
    pub verify_rate: Option<f64>,
    /// Seed of every random choice (arrivals, mix) [default: random].
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Where to send, as given (resolved when the run starts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSpec {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Transport.
    pub transport: TransportKind,
    /// For TLS: the CA to trust.
    pub tls_ca: Option<PathBuf>,
    /// For TLS: the name to verify (default: `host`).
    pub tls_name: Option<String>,
}

/// A checked run configuration.
#[derive(Clone)]
pub struct LoadConfig {
    /// Where to send.
    pub target: TargetSpec,
    /// TCP/TLS connections.
    pub connections: usize,
    /// UDP: the local port (`--local-port`); `None` for any free one.
    pub local_port: Option<u16>,
    /// Who is simulated.
    pub population: Population,
    /// When and what.
    pub schedule: Schedule,
    /// Only this digest algorithm, if set.
    pub algorithm: Option<Algorithm>,
    /// Most transactions in flight.
    pub max_outstanding: usize,
    /// T1 and T2.
    pub timers: Timers,
    /// Longest wait for open transactions at the end.
    pub drain: Duration,
    /// The JSON report's file.
    pub json: Option<PathBuf>,
    /// `--verify` and its rate.
    pub verify_rate: Option<f64>,
}

impl LoadArgs {
    /// Checks every flag and builds the configuration; reads `--password-file`.
    pub fn into_config(self) -> Result<LoadConfig, LoadError> {
        let target = parse_target(&self.target, self.transport)?;
        let target = TargetSpec {
            tls_ca: self.tls_ca.clone(),
            tls_name: self.tls_name.clone(),
            ..target
        };
        check_tls_flags(&target)?;
        check_range("--connections", self.connections, 1, CONNECTIONS_MAX)?;
        match self.local_port {
            Some(0) => {
                return Err(LoadError::flag("--local-port", "must be 1..=65535, not 0"));
            }
            Some(_) if target.transport != TransportKind::Udp => {
                return Err(LoadError::flag(
                    "--local-port",
                    "only applies to --transport udp",
                ));
            }
            _ => {}
        }
        let population = self.population()?;
        let schedule = self.schedule()?;
        check_range(
            "--max-outstanding",
            self.max_outstanding,
            1,
            OUTSTANDING_MAX,
        )?;
        if !(T1_MS_MIN..=T1_MS_MAX).contains(&self.t1_ms) {
            return Err(LoadError::flag(
                "--t1-ms",
                format!("must be {T1_MS_MIN}..={T1_MS_MAX}, not {}", self.t1_ms),
            ));
        }
        let t1 = Duration::from_millis(self.t1_ms);
        let timers = Timers {
            t1,
            t2: Timers::default().t2.max(t1),
        };
        if self.drain > DRAIN_MAX {
            return Err(LoadError::flag("--drain", "must be at most 600 s"));
        }
        let verify_rate = match (self.verify, self.verify_rate) {
            (false, Some(_)) => {
                return Err(LoadError::flag("--verify-rate", "needs --verify"));
            }
            (false, None) => None,
            (true, rate) => Some(check_rate("--verify-rate", rate.unwrap_or(self.rate))?),
        };
        Ok(LoadConfig {
            target,
            connections: self.connections,
            local_port: self.local_port,
            population,
            schedule,
            algorithm: self.algorithm.map(|a| match a {
                DigestAlgorithm::Sha256 => Algorithm::Sha256,
                DigestAlgorithm::Md5 => Algorithm::Md5,
            }),
            max_outstanding: self.max_outstanding,
            timers,
            drain: self.drain,
            json: self.json,
            verify_rate,
        })
    }

    fn population(&self) -> Result<Population, LoadError> {
        check_range("--users", self.users, 1, SESSIONS_MAX)?;
        check_range("--endpoints", self.endpoints, 1, SESSIONS_MAX)?;
        if self.users.saturating_mul(self.endpoints) > SESSIONS_MAX {
            return Err(LoadError::flag(
                "--endpoints",
                format!("--users × --endpoints must be at most {SESSIONS_MAX}"),
            ));
        }
        let probe = format!(
            "sip:{}{}@{}",
            self.user_prefix, self.first_user, self.domain
        );
        if let Err(error) = Uri::parse(&probe) {
            return Err(LoadError::flag(
                "--domain",
                format!("{probe} (from --user-prefix and --domain) is not a SIP URI: {error}"),
            ));
        }
        let password = match (&self.password, &self.password_file) {
            (Some(password), _) => Some(password.clone()),
            (None, Some(path)) => Some(read_password_file(path)?),
            (None, None) => None,
        };
        Ok(Population {
            domain: self.domain.clone(),
            user_prefix: self.user_prefix.clone(),
            first_user: self.first_user,
            users: self.users,
            endpoints: self.endpoints,
            password,
        })
    }

    fn schedule(&self) -> Result<Schedule, LoadError> {
        let rate_per_s = check_rate("--rate", self.rate)?;
        if self.duration.is_zero() || self.duration > DURATION_MAX {
            return Err(LoadError::flag(
                "--duration",
                "must be above 0 and at most 7 days",
            ));
        }
        if self.count == Some(0) {
            return Err(LoadError::flag("--count", "must be at least 1"));
        }
        if self.expires == 0 {
            return Err(LoadError::flag("--expires", "must be at least 1 s"));
        }
        if !(self.refresh_at > 0.0 && self.refresh_at < 1.0) {
            return Err(LoadError::flag(
                "--refresh-at",
                format!(
                    "must be between 0 and 1 (exclusive), not {}",
                    self.refresh_at
                ),
            ));
        }
        Ok(Schedule {
            rate_per_s,
            arrivals: self.arrivals,
            duration: self.duration,
            count: self.count,
            expires_s: self.expires,
            refresh_at: self.refresh_at,
            mix: parse_mix(&self.mix)?,
            lookup: self.lookup_method,
            seed: self.seed.unwrap_or_else(rand::random),
        })
    }
}

/// Parses `30`, `30s`, `500ms`, `2m`, `1h`, `1.5s` into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 30s, 500ms, 2m)"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is out of range"))
}

/// Parses `register=40,unregister=10,query=25,lookup=25` (missing names weigh 0).
pub fn parse_mix(text: &str) -> Result<Mix, LoadError> {
    let mut mix = Mix {
        register: 0,
        unregister: 0,
        query: 0,
        lookup: 0,
    };
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, weight)) = part.split_once('=') else {
            return Err(LoadError::flag(
                "--mix",
                format!("{part:?} is not NAME=WEIGHT"),
            ));
        };
        let weight: u32 = weight.trim().parse().map_err(|_| {
            LoadError::flag(
                "--mix",
                format!("weight {weight:?} of {name} is not a whole number"),
            )
        })?;
        if weight > 1_000_000 {
            return Err(LoadError::flag("--mix", "weights must be at most 1000000"));
        }
        let slot = match name.trim() {
            "register" => &mut mix.register,
            "unregister" => &mut mix.unregister,
            "query" => &mut mix.query,
            "lookup" => &mut mix.lookup,
            other => {
                return Err(LoadError::flag(
                    "--mix",
                    format!("unknown operation {other:?} (register, unregister, query, lookup)"),
                ))
            }
        };
        *slot = weight;
    }
    Ok(mix)
}

/// Splits `HOST:PORT`, `[IPv6]:PORT` or `HOST`.
pub fn parse_target(text: &str, transport: TransportKind) -> Result<TargetSpec, LoadError> {
    let bad = |problem: String| LoadError::flag("TARGET", problem);
    let text = text.trim();
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(bad(format!("{text:?}: missing ']'")));
        };
        (host, after.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            Some(_) => {
                return Err(bad(format!(
                    "{text:?}: write IPv6 addresses as [ADDR]:PORT"
                )))
            }
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(bad(format!("{text:?} has no host")));
    }
    let port = match port {
        None => transport.default_port(),
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(bad(format!("{text:?}: port {port:?} is not 1..=65535"))),
        },
    };
    Ok(TargetSpec {
        host: host.to_owned(),
        port,
        transport,
        tls_ca: None,
        tls_name: None,
    })
}

fn check_tls_flags(target: &TargetSpec) -> Result<(), LoadError> {
    match (target.transport, &target.tls_ca, &target.tls_name) {
        (TransportKind::Tls, None, _) => Err(LoadError::flag(
            "--tls-ca",
            "--transport tls needs the CA that signed the registrar's certificate",
        )),
        (TransportKind::Udp | TransportKind::Tcp, Some(_), _) => Err(LoadError::flag(
            "--tls-ca",
            "only applies to --transport tls",
        )),
        (TransportKind::Udp | TransportKind::Tcp, None, Some(_)) => Err(LoadError::flag(
            "--tls-name",
            "only applies to --transport tls",
        )),
        _ => Ok(()),
    }
}

fn check_range(flag: &'static str, value: usize, min: usize, max: usize) -> Result<(), LoadError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(LoadError::flag(
            flag,
            format!("must be {min}..={max}, not {value}"),
        ))
    }
}

fn check_rate(flag: &'static str, rate: f64) -> Result<f64, LoadError> {
    if rate.is_finite() && rate > 0.0 && rate <= RATE_PER_S_MAX {
        Ok(rate)
    } else {
        Err(LoadError::flag(
            flag,
            format!("must be above 0 and at most {RATE_PER_S_MAX} per second, not {rate}"),
        ))
    }
}

fn read_password_file(path: &PathBuf) -> Result<String, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        LoadError::flag(
            "--password-file",
            format!("cannot read {}: {error}", path.display()),
        )
    })?;
    let labelled = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("password:"))
        .map(str::trim);
    let first = text.lines().map(str::trim).find(|line| !line.is_empty());
    match labelled.or(first) {
        Some(password) if !password.is_empty() => Ok(password.to_owned()),
        _ => Err(LoadError::flag(
            "--password-file",
            format!("{} holds no password", path.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadArgs,
    }

    fn config(line: &[&str]) -> Result<LoadConfig, String> {
        let args = std::iter::once("load").chain(line.iter().copied());
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        cli.args.into_config().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_sane() {
        let Ok(config) = config(&["127.0.0.1"]) else {
            panic!("defaults must validate");
        };
        assert_eq!(
            (config.target.host.as_str(), config.target.port),
            ("127.0.0.1", 5060)
        );
        assert_eq!(config.schedule.duration, Duration::from_secs(10));
        assert_eq!(config.timers.timer_f(), Duration::from_secs(32));
        assert_eq!(config.schedule.mix.unregister, 10);
        assert!(config.verify_rate.is_none());
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let cases: [(&[&str], &str); 14] = [
            (&["h:99999"], "TARGET"),
            (&["::1"], "[ADDR]:PORT"),
            (&["h", "--rate", "0"], "--rate"),
            (&["h", "--rate", "nan"], "--rate"),
            (&["h", "--duration", "5parsecs"], "unknown unit"),
            (&["h", "--users", "0"], "--users"),
            (
                &["h", "--users", "1000", "--endpoints", "2000"],
                "--endpoints",
            ),
            (&["h", "--mix", "register=1,dance=2"], "dance"),
            (&["h", "--transport", "tls"], "--tls-ca"),
            (&["h", "--tls-ca", "x.pem"], "only applies"),
            (&["h", "--t1-ms", "1"], "--t1-ms"),
            (&["h", "--refresh-at", "1.5"], "--refresh-at"),
            (&["h", "--local-port", "0"], "--local-port"),
            (
                &["h", "--transport", "tcp", "--local-port", "5191"],
                "only applies",
            ),
        ];
        for (line, needle) in cases {
            match config(line) {
                Ok(_) => panic!("{line:?} must be refused"),
                Err(message) => assert!(message.contains(needle), "{line:?}: {message}"),
            }
        }
    }

    #[test]
    fn targets_durations_and_mixes_parse() {
        let target = parse_target("[::1]:5070", TransportKind::Udp);
        assert!(matches!(target, Ok(t) if t.host == "::1" && t.port == 5070));
        let target = parse_target("registrar.example", TransportKind::Tls);
        assert!(matches!(target, Ok(t) if t.port == 5061));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        let mix = parse_mix("query=3, lookup=1");
        assert!(matches!(mix, Ok(m) if m.query == 3 && m.lookup == 1 && m.register == 0));
    }

    #[test]
    fn password_file_reads_the_demo_credentials_format() {
        let dir = std::env::temp_dir().join(format!("roster-load-pw-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let demo = dir.join("credentials");
        let plain = dir.join("plain");
        let empty = dir.join("empty");
        let written = std::fs::write(
            &demo,
            "domain: example.com\nusers: u0 … u9\npassword: s3cret\n",
        )
        .and_then(|()| std::fs::write(&plain, "\nhunter2\n"))
        .and_then(|()| std::fs::write(&empty, "\n"));
        assert!(written.is_ok());
        assert_eq!(read_password_file(&demo).ok().as_deref(), Some("s3cret"));
        assert_eq!(read_password_file(&plain).ok().as_deref(), Some("hunter2"));
        assert!(read_password_file(&empty).is_err());
        assert!(read_password_file(&dir.join("absent")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
