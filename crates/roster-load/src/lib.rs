//! `roster load`: a load generator for any RFC 3261 registrar, Roster or not.
//!
//! It simulates N users × M endpoints over UDP, TCP or TLS: a registration storm, then
//! refreshes before each binding expires and a mix of registrations, unregistrations, queries
//! and lookups at an open-loop rate. It answers digest challenges (SHA-256, MD5, `qop=auth`),
//! runs RFC 3261 client transactions (Timer E retransmissions over UDP, Timer F timeouts),
//! measures latency from each request's intended send time in HDR histograms, and records
//! every acknowledged registration in a [`Ledger`] that `--verify` (or a chaos suite) checks
//! against the registrar afterwards.
//!
//! Main types: [`LoadArgs`] → [`LoadConfig`] (the command line), [`Workload`] and
//! [`Verifier`] (what to send, as [`Source`]s), [`Client`] (sessions, transactions, digest),
//! [`ClientTransaction`] (timers), [`Ledger`] (acknowledged bindings), [`Stats`] and
//! [`Report`]. Entry points: [`run_command`], [`run`], [`verify`].
//!
//! **Architecture Invariant**: everything that decides — transactions and their timers,
//! digest answers, the workload's schedule, the ledger and the checks — is sans-IO: fed bytes
//! and `Instant`s, tested on a virtual clock. Only `link`, `driver`, `progress` and `run`
//! touch sockets, the clock or the terminal.
#![deny(missing_docs)]

pub mod arrivals;
pub mod client;
pub mod config;
pub mod digest;
pub mod driver;
pub mod error;
pub mod ledger;
pub mod link;
pub mod op;
pub mod progress;
pub mod report;
pub mod request;
pub mod run;
pub mod source;
pub mod stats;
pub mod transaction;
pub mod verify;
pub mod workload;

#[cfg(test)]
mod testing;

pub use client::Client;
pub use config::{LoadArgs, LoadConfig};
pub use error::LoadError;
pub use ledger::{Ack, ExpectedBinding, Ledger};
pub use link::Target;
pub use report::Report;
pub use run::{run, run_command, verify, VerifyOptions};
pub use source::Source;
pub use stats::Stats;
pub use transaction::ClientTransaction;
pub use verify::{Verifier, VerifyReport};
pub use workload::Workload;
