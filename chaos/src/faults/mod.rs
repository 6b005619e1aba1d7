//! The means of harm, each undone by its own `heal`: [`firewall`] (iptables cuts, whole or a
//! share, either or both directions, between two nodes' addresses), [`relay`] (a userspace
//! UDP relay on every node-to-node path that delays packets, with jitter: this machine has no
//! netem), and [`disk`] (a tmpfs under one node's data directory, filled up and freed). Process
//! faults (SIGKILL, SIGSTOP, SIGTERM) are [`crate::cluster::Cluster`]'s.

pub mod disk;
pub mod firewall;
pub mod relay;
