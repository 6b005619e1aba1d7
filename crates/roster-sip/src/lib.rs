//! Sans-IO SIP (RFC 3261) messages for Roster: parse, inspect, build and serialize.
//!
//! Main types: [`Message`] ([`Request`] / [`Response`]), [`Headers`] with typed accessors,
//! [`Uri`], [`NameAddr`], [`Via`], [`CSeq`], [`Contacts`], and [`StreamFramer`] for TCP/TLS.
//! Entry points: [`parse_message`] for one datagram or frame, [`StreamFramer`] for streams,
//! [`Request::encode`] / [`Response::encode`] and [`Response::for_request`] for output.
//!
//! **Architecture Invariant**: this crate does no I/O, reads no clock and uses no randomness.
//! Every input is a byte slice; every output is a value or bytes written into a caller's buffer.
//!
//! **Architecture Invariant**: malformed input yields an error naming the problem, never a panic.
//! Memory use is bounded by [`SIP_MESSAGE_SIZE_MAX`], [`HEADER_COUNT_MAX`],
//! [`HEADER_LINE_SIZE_MAX`], [`PARAM_COUNT_MAX`] and [`LIST_ELEMENT_COUNT_MAX`], and no parser
//! recurses on its input.
//!
//! **Architecture Invariant**: encoding writes full header names, CRLF line ends and a
//! Content-Length computed from the body, and never writes CR or LF from stored text.
#![deny(missing_docs)]

pub mod error;
pub mod framing;
pub mod header;
pub mod message;
pub mod name_addr;
pub mod parse;
pub mod salvage;
mod scan;
pub mod uri;
pub mod via;

pub use error::{FrameError, HeaderError, ParseError};
pub use framing::{Frame, StreamFramer};
pub use header::{split_comma_list, CSeq, Header, HeaderName, Headers};
pub use message::{reason_phrase, Message, Method, Request, Response};
pub use name_addr::{Contacts, NameAddr};
pub use parse::parse_message;
pub use salvage::{error_response, error_response_with, SALVAGE_LINES_MAX};
pub use uri::{Param, Scheme, Uri};
pub use via::Via;

/// Largest message, header section and body together, in bytes.
/// The largest UDP payload over IPv4 (RFC 3261 §18.1.1 lets UDP messages approach it); a
/// REGISTER is typically 500 to 1500 bytes, so this leaves ample room for long Path and Contact
/// lists while bounding every per-message buffer.
pub const SIP_MESSAGE_SIZE_MAX: usize = 65_535;

/// Most header fields (lines after unfolding, not comma-separated elements) in one message.
/// A REGISTER carries 10 to 20; Via, Record-Route and Path fields of a long route stay well
/// below this, and the bound caps the `Vec<Header>` a peer can make us allocate.
pub const HEADER_COUNT_MAX: usize = 128;

/// Longest unfolded header value, in bytes.
/// The longest legitimate fields (digest Authorization, Contact lists with instance ids) are a
/// few hundred bytes; 8 KiB matches common proxy limits and bounds the input of every typed
/// parse of one field.
pub const HEADER_LINE_SIZE_MAX: usize = 8_192;

/// Most parameters on one URI, one URI's headers, or one header element (name-addr or Via).
/// An outbound Contact carries about ten (`expires`, `q`, `+sip.instance`, `reg-id`, feature
/// tags); the bound caps the `Vec<Param>` grown from one element.
pub const PARAM_COUNT_MAX: usize = 64;

/// Most elements returned by one list accessor (`vias`, `contacts`, `name_addrs`).
/// Max-Forwards starts at 70, which bounds Via and Record-Route in practice; a REGISTER binds a
/// handful of contacts. The bound caps the values allocated from one 64 KiB message.
pub const LIST_ELEMENT_COUNT_MAX: usize = 256;

/// Longest piece of peer text quoted in an error message, in bytes, so that an error's
/// `Display` fits a reason phrase and does not grow with the input.
pub const ERROR_EXCERPT_SIZE_MAX: usize = 64;

// Relations between limits, checked at compile time.
const _: () = assert!(HEADER_LINE_SIZE_MAX < SIP_MESSAGE_SIZE_MAX);
const _: () = assert!(ERROR_EXCERPT_SIZE_MAX < HEADER_LINE_SIZE_MAX);
// A full list of one-byte-long elements cannot exceed a message.
const _: () = assert!(LIST_ELEMENT_COUNT_MAX * 2 < SIP_MESSAGE_SIZE_MAX);
