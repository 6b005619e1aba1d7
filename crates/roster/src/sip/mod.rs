//! The SIP side of a node: the request path every transport shares ([`service::Service`]),
//! UDP server transactions, and the UDP, TCP and TLS transports.
//!
//! Nothing here knows how the node was started or what stores its bindings: the transports
//! take a [`Service`](service::Service) over any [`Store`](crate::store::Store).

pub mod service;
pub mod source_limit;
pub mod stream;
pub mod tls;
pub mod transaction;
pub mod udp;

/// Largest SIP message a node accepts: the registrar's answers must fit a UDP datagram, and a
/// stream connection buffers at most this much of an unfinished message.
pub const SIP_MESSAGE_SIZE_MAX: usize = roster_sip::SIP_MESSAGE_SIZE_MAX;
