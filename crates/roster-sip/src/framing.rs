//! Stream framing for TCP and TLS: [`StreamFramer`] splits a byte stream into [`Frame`]s.
//!
//! Check-then-parse: the framer finds the end of the header section and reads Content-Length
//! (mandatory on streams, RFC 3261 §18.3); [`crate::parse_message`] does the full parse later.
//! Between messages a bare CRLFCRLF is a keep-alive ping to answer with CRLF (RFC 5626 §3.5.1);
//! a single CRLF (a pong, or padding) is skipped.

use crate::error::FrameError;
use crate::parse::{find_head_end, parse_content_length};
use crate::scan::excerpt;

/// One unit cut from a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The bytes of one message: header section, empty line and exactly Content-Length bytes of
    /// body.
    Message(Vec<u8>),
    /// A bare CRLFCRLF: answer with a single CRLF (RFC 5626 §3.5.1).
    KeepAlivePing,
}

/// Splits a TCP or TLS byte stream into messages and keep-alives.
///
/// Feed every read to [`StreamFramer::push`], then call [`StreamFramer::next_frame`] until it
/// returns `Ok(None)`. Any error means the stream cannot be resynchronised: close the connection.
///
/// Bounds: a message (header section and body) may be at most `size_max` bytes; the buffer holds
/// at most `2 * size_max` bytes, room for one incomplete message and one read of up to `size_max`
/// bytes, so a caller that drains frames after each push is never refused for pipelining.
#[derive(Clone, Debug)]
pub struct StreamFramer {
    /// Received bytes; those before `start` are already consumed.
    buffer: Vec<u8>,
    /// Offset of the first unconsumed byte in `buffer`.
    start: usize,
    /// Unconsumed bytes already searched for the end of the header section, so a message
    /// arriving in many small reads is not rescanned from its start each time.
    scanned: usize,
    /// Largest message accepted.
    size_max: usize,
}

/// How far a buffered message has arrived.
enum Progress {
    /// More bytes are needed.
    Incomplete,
    /// The first `usize` unconsumed bytes are one message.
    Complete(usize),
}

impl StreamFramer {
    /// A framer accepting messages of at most `size_max` bytes (normally
    /// [`crate::SIP_MESSAGE_SIZE_MAX`]).
    ///
    /// # Panics
    /// If `size_max` is zero: that is a configuration error.
    pub fn new(size_max: usize) -> StreamFramer {
        assert!(size_max > 0, "size_max must be positive");
        StreamFramer {
            buffer: Vec::new(),
            start: 0,
            scanned: 0,
            size_max,
        }
    }

    /// Appends received bytes. Fails with [`FrameError::TooLarge`] (keeping nothing of `data`)
    /// if the buffer would exceed `2 * size_max` bytes.
    pub fn push(&mut self, data: &[u8]) -> Result<(), FrameError> {
        let buffer_max = self.size_max.saturating_mul(2);
        if self.buffered().saturating_add(data.len()) > buffer_max {
            return Err(FrameError::TooLarge { max: self.size_max });
        }
        if self.start > 0 {
            // Moves at most one partial message; amortised over the messages consumed.
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(data);
        Ok(())
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.skip_single_crlfs() {
            return Ok(Some(Frame::KeepAlivePing));
        }
        match self.progress()? {
            Progress::Incomplete => Ok(None),
            Progress::Complete(size) => {
                let end = self.start + size;
                let frame = self.buffer[self.start..end].to_vec();
                self.consume(size);
                Ok(Some(Frame::Message(frame)))
            }
        }
    }

    /// Bytes received and not yet returned in a frame.
    pub fn buffered(&self) -> usize {
        self.buffer.len() - self.start
    }

    /// The bytes received and not yet returned in a frame: after an error, the start of the
    /// message at fault, from which [`crate::error_response_with`] may build an answer.
    pub fn pending(&self) -> &[u8] {
        &self.buffer[self.start..]
    }

    fn consume(&mut self, size: usize) {
        self.start += size;
        self.scanned = 0;
        if self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        }
    }

    /// Skips single CRLFs before a message; consumes a CRLFCRLF and returns `true` for a ping.
    /// Waits (leaving the bytes) while a lone CRLF might still become a ping.
    fn skip_single_crlfs(&mut self) -> bool {
        loop {
            match self.pending() {
                [b'\r', b'\n', b'\r', b'\n', ..] => {
                    self.consume(4);
                    return true;
                }
                [b'\r', b'\n'] | [b'\r', b'\n', b'\r'] | [b'\r'] => return false,
                [b'\r', b'\n', ..] => self.consume(2),
                _ => return false,
            }
        }
    }

    /// Whether a whole message is buffered, checking its start line and size on the way.
    fn progress(&mut self) -> Result<Progress, FrameError> {
        let pending = &self.buffer[self.start..];
        if pending.is_empty() || pending == b"\r" || pending.starts_with(b"\r\n") {
            return Ok(Progress::Incomplete);
        }
        check_start_line(pending)?;
        // Resume a little before the last scan: the terminator may straddle two reads.
        let resume = self.scanned.saturating_sub(3);
        let Some((head_len, body_start)) = find_head_end(&pending[resume..]) else {
            self.scanned = pending.len();
            if pending.len() >= self.size_max {
                return Err(FrameError::TooLarge { max: self.size_max });
            }
            return Ok(Progress::Incomplete);
        };
        let (head_len, body_start) = (resume + head_len, resume + body_start);
        let body_len = content_length(&pending[..head_len])?;
        let size = body_start.saturating_add(body_len);
        if size > self.size_max {
            return Err(FrameError::TooLarge { max: self.size_max });
        }
        if pending.len() < size {
            return Ok(Progress::Incomplete);
        }
        Ok(Progress::Complete(size))
    }
}

/// Rejects a first line that cannot start a SIP message, once it is complete (or as long as a
/// SIP start line could be): it must contain `SIP/`.
fn check_start_line(pending: &[u8]) -> Result<(), FrameError> {
    const START_LINE_CHECK_SIZE_MAX: usize = 1024;
    let line_end = pending.iter().position(|&byte| byte == b'\n');
    let line = match line_end {
        Some(end) => &pending[..end],
        None if pending.len() >= START_LINE_CHECK_SIZE_MAX => pending,
        None => return Ok(()),
    };
    let has_version = line
        .windows(4)
        .any(|window| window.eq_ignore_ascii_case(b"SIP/"));
    if has_version {
        Ok(())
    } else {
        let shown = excerpt(&String::from_utf8_lossy(&line[..line.len().min(64)]));
        Err(FrameError::InvalidStartLine(format!(
            "not a SIP start line: {shown}"
        )))
    }
}

/// Finds Content-Length (or `l`) in a header section, without a full parse; folded values are
/// joined.
fn content_length(head: &[u8]) -> Result<usize, FrameError> {
    let mut found: Option<String> = None;
    let mut in_length_field = false;
    for line in head.split(|&byte| byte == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            if let (true, Some(value)) = (in_length_field, found.as_mut()) {
                value.push(' ');
                value.push_str(&String::from_utf8_lossy(line));
            }
            continue;
        }
        in_length_field = false;
        let Some(colon) = line.iter().position(|&byte| byte == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii_end();
        if !(name.eq_ignore_ascii_case(b"Content-Length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        if found.is_some() {
            let reason = "appears more than once".to_string();
            return Err(FrameError::InvalidContentLength(reason));
        }
        found = Some(String::from_utf8_lossy(&line[colon + 1..]).into_owned());
        in_length_field = true;
    }
    let value = found.ok_or(FrameError::MissingContentLength)?;
    parse_content_length(value.trim_matches([' ', '\t'])).map_err(FrameError::InvalidContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = b"OPTIONS sip:a SIP/2.0\r\nl: 3\r\n\r\nabc";

    #[test]
    fn whole_message() {
        let mut framer = StreamFramer::new(1000);
        framer.push(MESSAGE).unwrap();
        assert_eq!(
            framer.next_frame(),
            Ok(Some(Frame::Message(MESSAGE.to_vec())))
        );
        assert_eq!(framer.next_frame(), Ok(None));
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn keep_alives() {
        let mut framer = StreamFramer::new(1000);
        framer.push(b"\r\n\r\n\r\n").unwrap();
        assert_eq!(framer.next_frame(), Ok(Some(Frame::KeepAlivePing)));
        assert_eq!(framer.next_frame(), Ok(None));
        assert_eq!(framer.buffered(), 2);
        framer.push(MESSAGE).unwrap();
        assert_eq!(
            framer.next_frame(),
            Ok(Some(Frame::Message(MESSAGE.to_vec())))
        );
    }

    #[test]
    fn folded_content_length() {
        let mut framer = StreamFramer::new(1000);
        framer
            .push(b"OPTIONS sip:a SIP/2.0\r\nContent-Length:\r\n 2\r\n\r\nab")
            .unwrap();
        assert!(matches!(framer.next_frame(), Ok(Some(Frame::Message(_)))));
    }

    #[test]
    fn rejects_non_sip_start_line() {
        let mut framer = StreamFramer::new(1000);
        framer.push(b"GET / HTTP/1.1\r\n").unwrap();
        assert!(matches!(
            framer.next_frame(),
            Err(FrameError::InvalidStartLine(_))
        ));
        let mut framer = StreamFramer::new(4000);
        framer.push(&[0x16; 2000]).unwrap();
        assert!(matches!(
            framer.next_frame(),
            Err(FrameError::InvalidStartLine(_))
        ));
    }
}
