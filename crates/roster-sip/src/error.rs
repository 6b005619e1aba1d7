//! Error types: [`ParseError`] for whole messages, [`HeaderError`] for typed header access and
//! the URI, name-addr and Via parsers, and [`FrameError`] for stream framing.
//!
//! Every `Display` names the problem in one line without CR or LF, so the server can use it as
//! the reason phrase of a `400` response.
//! Text copied from the peer is shortened to [`crate::ERROR_EXCERPT_SIZE_MAX`] bytes and has its
//! control characters replaced, so an error never grows with its input.

use crate::header::HeaderName;
use crate::HEADER_COUNT_MAX;

/// A message could not be parsed at all (start line, header lines, size or body framing).
///
/// Typed header syntax is not checked by [`crate::parse_message`]; see [`HeaderError`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The input holds no bytes other than line breaks.
    #[error("empty message")]
    Empty,
    /// The input is longer than [`crate::SIP_MESSAGE_SIZE_MAX`].
    #[error("message too large: {size} bytes, maximum {max}")]
    TooLarge {
        /// Bytes received.
        size: usize,
        /// The limit that was exceeded.
        max: usize,
    },
    /// The request line or status line is malformed.
    #[error("invalid start line: {0}")]
    InvalidStartLine(String),
    /// The start line names a SIP version other than 2.0.
    #[error("unsupported SIP version: {0}")]
    UnsupportedVersion(String),
    /// A header line is malformed (no colon, bad name, control character, too long).
    #[error("invalid header line: {0}")]
    InvalidHeaderLine(String),
    /// More than [`HEADER_COUNT_MAX`] header fields.
    #[error("too many header fields (maximum {HEADER_COUNT_MAX})")]
    TooManyHeaders,
    /// No empty line ends the header section.
    #[error("incomplete message: no empty line after the header fields")]
    Incomplete,
    /// The Content-Length header is malformed, repeated or too large.
    #[error("invalid Content-Length header: {0}")]
    InvalidContentLength(String),
    /// Content-Length declares more body bytes than the message holds.
    #[error("body truncated: Content-Length is {declared} but only {actual} bytes follow")]
    BodyTruncated {
        /// Value of Content-Length.
        declared: usize,
        /// Bytes present after the header section.
        actual: usize,
    },
    /// The Request-URI has a scheme other than `sip` or `sips` (the server answers `416`).
    #[error("unsupported URI scheme: {0}")]
    UnsupportedScheme(String),
    /// The Request-URI is malformed.
    #[error("invalid Request-URI: {0}")]
    InvalidUri(String),
    /// The start line or a header field is not valid UTF-8.
    #[error("message header is not valid UTF-8")]
    NotUtf8,
}

impl ParseError {
    /// The status code a server would answer with, if it could form a response:
    /// `416` for an unsupported scheme, `505` for an unsupported version, `513` for an oversize
    /// message, else `400`.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::UnsupportedScheme(_) => 416,
            ParseError::UnsupportedVersion(_) => 505,
            ParseError::TooLarge { .. } => 513,
            _ => 400,
        }
    }
}

/// A header field (or a URI, name-addr or Via given to a parser directly) is missing or malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// A required header field is absent.
    #[error("missing {0} header")]
    Missing(HeaderName),
    /// A header field is present but its value is malformed.
    #[error("invalid {name} header: {reason}")]
    Invalid {
        /// The header field at fault.
        name: HeaderName,
        /// What is wrong, in a few words.
        reason: String,
    },
    /// A URI given to [`crate::Uri::parse`] is malformed.
    #[error("invalid URI: {0}")]
    InvalidUri(String),
    /// A URI has a scheme other than `sip` or `sips`.
    #[error("unsupported URI scheme: {0}")]
    UnsupportedScheme(String),
}

impl HeaderError {
    /// The status code to answer with: `416` for an unsupported scheme, else `400`.
    pub fn status(&self) -> u16 {
        match self {
            HeaderError::UnsupportedScheme(_) => 416,
            _ => 400,
        }
    }

    /// Shorthand for [`HeaderError::Invalid`].
    pub(crate) fn invalid(name: HeaderName, reason: impl Into<String>) -> HeaderError {
        HeaderError::Invalid {
            name,
            reason: reason.into(),
        }
    }
}

/// A TCP or TLS byte stream cannot be split into messages; the connection should be closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A message (or the buffered input) is larger than the framer's bound.
    #[error("stream message too large (maximum {max} bytes)")]
    TooLarge {
        /// The bound given to [`crate::StreamFramer::new`].
        max: usize,
    },
    /// A message on a stream has no Content-Length (mandatory on streams, RFC 3261 §18.3).
    #[error("stream message without Content-Length header")]
    MissingContentLength,
    /// Content-Length is malformed or repeated.
    #[error("invalid Content-Length header: {0}")]
    InvalidContentLength(String),
    /// The first line does not look like a SIP request or status line.
    #[error("invalid start line: {0}")]
    InvalidStartLine(String),
}
