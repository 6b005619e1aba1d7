//! A minimal SIP client for checks: one request over UDP from a chosen loopback address,
//! answering a digest challenge, with every wait bounded.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use roster_auth::{ChallengeAnswer, DigestChallenge};
use roster_sip::{parse_message, HeaderName, Message, Response};

/// How long one request waits for its answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// A user's credentials.
pub struct Credentials<'a> {
    /// Digest user name, also the AOR's user part (`sip:<user>@example.com`).
    pub user: &'a str,
    /// Password.
    pub password: &'a str,
}

/// One UDP socket sending requests to `target`.
pub struct SipClient {
    socket: UdpSocket,
    target: SocketAddr,
    sequence: u32,
}

impl SipClient {
    /// A client bound to an ephemeral port of `source` (any 127.0.0.0/8 address).
    pub fn new(source: IpAddr, target: SocketAddr) -> SipClient {
        let socket = UdpSocket::bind((source, 0)).expect("bind a loopback UDP socket");
        socket
            .set_read_timeout(Some(ANSWER_TIMEOUT))
            .expect("read timeout");
        SipClient {
            socket,
            target,
            sequence: 0,
        }
    }

    /// Sends `method` to `uri` with `extra` header lines (each ending in CRLF) and returns the
    /// parsed response, or `None` if nothing answered in time.
    pub fn send(&mut self, method: &str, uri: &str, to: &str, extra: &str) -> Option<Response> {
        self.sequence += 1;
        let local = self.socket.local_addr().ok()?;
        let n = self.sequence;
        let request = format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};rport;branch=z9hG4bK-check-{}-{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:checker@example.com>;tag=c{n}\r\nTo: <{to}>\r\n\
             Call-ID: check-{}-{}\r\nCSeq: {n} {method}\r\n{extra}Content-Length: 0\r\n\r\n",
            local.port(),
            local.port(),
            std::process::id(),
        );
        self.socket.send_to(request.as_bytes(), self.target).ok()?;
        let mut buffer = vec![0u8; 65_536];
        loop {
            let (length, _) = self.socket.recv_from(&mut buffer).ok()?;
            match parse_message(&buffer[..length]) {
                Ok(Message::Response(response)) if response.status >= 200 => return Some(response),
                _ => continue,
            }
        }
    }

    /// `method` to `uri` with `extra` header lines, answering one `401` with `credentials`;
    /// the response and the `Authorization` value sent, if one was.
    pub fn send_authenticated(
        &mut self,
        method: &str,
        uri: &str,
        to: &str,
        credentials: &Credentials<'_>,
        extra: &str,
    ) -> Option<(Response, Option<String>)> {
        let first = self.send(method, uri, to, extra)?;
        if first.status != 401 {
            return Some((first, None));
        }
        let challenge = first
            .headers
            .get_all(&HeaderName::WwwAuthenticate)
            .find_map(|value| DigestChallenge::parse(value).ok())?;
        let answer = challenge
            .answer(&ChallengeAnswer {
                username: credentials.user,
                password: credentials.password,
                method,
                uri,
                cnonce: "harness",
                nc: 1,
            })
            .to_string();
        let response = self.send(
            method,
            uri,
            to,
            &format!("Authorization: {answer}\r\n{extra}"),
        )?;
        Some((response, Some(answer)))
    }

    /// The contacts bound to `credentials.user`'s AOR, from an authenticated REGISTER query:
    /// (status, Contact values).
    pub fn bindings(&mut self, credentials: &Credentials<'_>) -> (u16, Vec<String>) {
        let aor = format!("sip:{}@example.com", credentials.user);
        match self.send_authenticated("REGISTER", "sip:example.com", &aor, credentials, "") {
            Some((response, _)) => {
                let contacts = response
                    .headers
                    .get_all(&HeaderName::Contact)
                    .map(str::to_string)
                    .collect();
                (response.status, contacts)
            }
            None => (0, Vec::new()),
        }
    }
}

/// The `expires` parameter of a Contact value from a registrar's answer.
pub fn contact_expires(contact: &str) -> Option<u32> {
    let start = contact.find(";expires=")? + ";expires=".len();
    contact[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}
