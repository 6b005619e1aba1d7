//! The Roster daemon: a SIP registrar node, alone with its bindings in memory or one of a pool
//! keeping them in Raft groups, and the few types the `roster` commands share with it.
//!
//! Main types: [`config::Config`], [`node::run`] (a node from start to stop),
//! [`sip::service::Service`] (the request path), [`store::Store`] with [`store::MemoryStore`]
//! and [`store::PoolStore`], [`sip::transaction::ServerTransactions`] (UDP retransmissions).
//!
//! Layout, top down; each module uses only those below it:
//!
//! ```text
//! witness       the witness of a pair of pools (a third site): its configuration, and the
//!               process's QUIC server answering heartbeats and its GET /status
//! node          a node's startup and shutdown: reads its files, builds the request path
//!               over its store, serves SIP and HTTP; a pool member's database, cluster
//!               network, replicas and bootstrap; periodic purge, gauges, leader balancing
//! overview      the deployment as this node sees it (every node of both pools, replication,
//!               the CMS), gathered with short timeouts for the status page and the CLI
//! pool_admin    the admin server's operations (drain, rebalance) over a pool node
//! user_admin    the directory's admin operations (users in the CMS) over a pool node
//! backup        the backup status document and its per-direction gauges, over a pool node
//! http          the HTTP endpoint: metrics, health, status, backup status, admin routes
//!               behind a token; it knows the traits it calls (StatusSource, BackupSource,
//!               Admin, UsersAdmin), never the node
//! sip           the request path (service), UDP server transactions, UDP, TCP, TLS
//! store         the Store trait, MemoryStore, PoolStore
//! telemetry     metric names and the Prometheus recorder
//! config        the node's TOML → a checked Config (reads no other file)
//! topology      a pool's topology file
//! users         the users file (HA1 hashes)
//! secret        writing files only their owner may read (keys, tokens, hashes)
//! admin_api     the admin routes, bearer token and JSON documents (directory, backup
//!               status), shared with the commands
//! http_client   a minimal HTTP/1.0 client (the commands, and overview's gathering)
//! clock         the one wall-clock read, and a monotonic clock
//! diagnose      who holds a data directory's lock or an address (from /proc), for errors
//! ```
//!
//! The commands (`roster start`, `demo`, `init`, `user`, `cert`, `pool`, `node`, `load`) live
//! in the binary, under `src/cli/`: they call [`node::run`] to start a node and otherwise share
//! only [`config`], [`topology`], [`users`], [`admin_api`], [`http_client`] and
//! [`overview`]'s types with the daemon, so the daemon
//! never depends on a command, nor on the commands' HTTP client.
//!
//! **Architecture Invariant**: this crate reads the clock ([`clock`]) and the network; the
//! registrar rules it calls do neither.
#![deny(missing_docs)]

pub mod admin_api;
pub mod backup;
pub mod clock;
pub mod config;
pub mod diagnose;
pub mod http;
pub mod http_client;
pub mod node;
pub mod overview;
pub mod pool_admin;
pub mod secret;
pub mod sip;
pub mod store;
pub mod telemetry;
pub mod topology;
pub mod user_admin;
pub mod users;
pub mod witness;

#[cfg(test)]
mod test_support;
