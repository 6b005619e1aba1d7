//! The Roster node: SIP transports (UDP, TCP, TLS) around the sans-IO registrar, its
//! configuration, and the `roster` commands.
//!
//! Main types: [`config::Config`], [`service::Service`] (the request path),
//! [`transaction::ServerTransactions`] (UDP retransmissions), [`store::MemoryStore`].
//!
//! **Architecture Invariant**: this crate reads the clock ([`clock`]) and the network; the
//! registrar rules it calls do neither.
#![deny(missing_docs)]

pub mod admin;
pub mod cli_http;
pub mod clock;
pub mod config;
pub mod demo;
pub mod http;
pub mod init;
pub mod node;
pub mod node_ids;
pub mod pool;
pub mod pool_store;
pub mod secret;
pub mod service;
pub mod source_limit;
pub mod status;
pub mod store;
pub mod stream;
pub mod telemetry;
pub mod tls;
pub mod transaction;
pub mod udp;
pub mod users;
