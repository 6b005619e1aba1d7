//! [`LoadError`]: everything that stops a run, each naming the problem.

use std::time::Duration;

/// Why `roster load` (or [`crate::verify`]) could not run or did not pass.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A flag has a bad value, or flags contradict each other.
    #[error("{flag}: {problem}")]
    Flag {
        /// The flag, e.g. `--rate`.
        flag: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The target's host name did not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host as given.
        host: String,
        /// Why.
        reason: String,
    },
    /// The `--tls-ca` file could not be used.
    #[error("cannot use --tls-ca {path}: {reason}")]
    TlsCa {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A local socket could not be opened.
    #[error("cannot open a local {what} socket: {reason}")]
    Socket {
        /// `UDP`.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A TCP or TLS connection to the target could not be made.
    #[error("cannot connect to {target} over {transport}: {reason}")]
    Connect {
        /// The target address.
        target: String,
        /// `TCP` or `TLS`.
        transport: &'static str,
        /// Why (refused, timed out, ...).
        reason: String,
    },
    /// The TLS handshake with the target failed (certificate not trusted, wrong name, ...).
    #[error("TLS handshake with {target} failed: {reason}")]
    TlsHandshake {
        /// The target address.
        target: String,
        /// rustls's reason.
        reason: String,
    },
    /// Requests were sent but not one response came back.
    #[error("nothing answered at {target}: {sent} requests sent, no response within {waited:?}")]
    NothingAnswered {
        /// The target address.
        target: String,
        /// Requests sent, retransmissions included.
        sent: u64,
        /// How long the run waited.
        waited: Duration,
    },
    /// The registrar asked for credentials, and no password was given.
    #[error(
        "no registration was acknowledged: the registrar challenged {challenges} requests for \
         credentials, but no password was given (--password PASSWORD or --password-file FILE; \
         `roster demo` writes its password to DIR/credentials)"
    )]
    NoPassword {
        /// Challenges left unanswered.
        challenges: u64,
    },
    /// The registrar answered, but refused every registration (wrong domain, user names or
    /// password, usually).
    #[error("no registration was acknowledged: the registrar answered {answered} requests; registrations got {outcomes}")]
    NothingAcknowledged {
        /// Operations that got a final response.
        answered: u64,
        /// The registrations' outcomes with counts, e.g. `404 ×100`.
        outcomes: String,
    },
    /// `--verify` found acknowledged bindings missing or wrong.
    #[error(
        "verification failed: {missing} acknowledged bindings missing, {expires_early} listed \
         with less time than acknowledged, {unverified} AORs could not be queried"
    )]
    VerifyFailed {
        /// Bindings not listed.
        missing: u64,
        /// Bindings listed with less time left than acknowledged.
        expires_early: u64,
        /// AORs whose query failed.
        unverified: u64,
    },
    /// The JSON report could not be written.
    #[error("cannot write the JSON report {path}: {reason}")]
    Json {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

impl LoadError {
    /// A [`LoadError::Flag`].
    pub fn flag(flag: &'static str, problem: impl Into<String>) -> LoadError {
        LoadError::Flag {
            flag,
            problem: problem.into(),
        }
    }
}
