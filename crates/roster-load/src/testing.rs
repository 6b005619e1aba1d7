//! Test support: an in-memory registrar answering the client's bytes, and a bounded driver of
//! a client and a source on a virtual clock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use roster_auth::{Credentials, DigestAuthenticator, DigestConfig, Verdict};
use roster_sip::{parse_message, Contacts, HeaderName, Message, Method, Response};

use roster_sip::Uri;

use crate::client::{Client, ClientConfig, Completion};
use crate::source::Source;
use crate::transaction::Timers;

/// A registrar that challenges requests without good credentials (when `auth`), answers
/// REGISTER with `status` (echoing contacts with `;expires=`), keeps bindings when `store`,
/// refuses expiries below `min_expires_s` with `423`, and answers lookups `302`.
pub struct FakeRegistrar {
    pub authenticator: Option<DigestAuthenticator>,
    pub credentials: Credentials,
    pub status: u16,
    pub store: bool,
    pub min_expires_s: u32,
    pub bindings: BTreeMap<String, BTreeMap<String, u32>>,
    pub requests: u64,
    now_ms: u64,
}

impl FakeRegistrar {
    pub fn new(auth: bool, status: u16) -> FakeRegistrar {
        FakeRegistrar {
            authenticator: auth
                .then(|| DigestAuthenticator::new(DigestConfig::new("example.com"), [3; 32])),
            credentials: Credentials::from_password("u1", "example.com", "pw"),
            status,
            store: true,
            min_expires_s: 0,
            bindings: BTreeMap::new(),
            requests: 0,
            now_ms: 0,
        }
    }

    /// The answer to one message, if any (ACKs get none).
    pub fn answer(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let Ok(Message::Request(request)) = parse_message(bytes) else {
            panic!("the client sent something that does not parse");
        };
        if request.method == Method::Ack {
            return None;
        }
        self.requests += 1;
        self.now_ms += 10;
        if let Some(authenticator) = &mut self.authenticator {
            let verdict = request
                .headers
                .get(&HeaderName::Authorization)
                .map(|value| {
                    authenticator.verify(self.now_ms, request.method.as_str(), value, |_| {
                        Some(&self.credentials)
                    })
                });
            if !matches!(verdict, Some(Verdict::Authenticated { .. })) {
                let stale = verdict == Some(Verdict::Stale);
                let mut response = Response::for_request(&request, 401, "t");
                for value in authenticator.challenge(self.now_ms, stale) {
                    response.headers.push(HeaderName::WwwAuthenticate, value);
                }
                return Some(encode(&response));
            }
        }
        let aor = request
            .headers
            .to()
            .map(|to| to.uri.aor())
            .unwrap_or_default();
        if request.method != Method::Register {
            let mut response = Response::for_request(&request, 302, "t");
            for (contact, expires) in self.bindings.get(&aor).into_iter().flatten() {
                response.headers.push(
                    HeaderName::Contact,
                    format!("<{contact}>;expires={expires}"),
                );
            }
            return Some(encode(&response));
        }
        let expires = request.headers.expires().ok().flatten().unwrap_or(3600);
        if expires > 0 && expires < self.min_expires_s {
            let mut response = Response::for_request(&request, 423, "t");
            response
                .headers
                .push(HeaderName::MinExpires, self.min_expires_s.to_string());
            return Some(encode(&response));
        }
        let mut response = Response::for_request(&request, self.status, "t");
        if let Ok(Contacts::List(contacts)) = request.headers.contacts() {
            for contact in contacts {
                let key = contact.uri.to_string();
                if !self.store {
                    response
                        .headers
                        .push(HeaderName::Contact, format!("<{key}>;expires={expires}"));
                } else if expires == 0 {
                    self.bindings.entry(aor.clone()).or_default().remove(&key);
                } else {
                    self.bindings
                        .entry(aor.clone())
                        .or_default()
                        .insert(key, expires);
                }
            }
        }
        if self.store {
            for (contact, expires) in self.bindings.get(&aor).into_iter().flatten() {
                response.headers.push(
                    HeaderName::Contact,
                    format!("<{contact}>;expires={expires}"),
                );
            }
        }
        Some(encode(&response))
    }
}

/// A client configuration for `sip:example.com` with the default timers.
pub fn client_config(run_tag: &str, reliable: bool) -> ClientConfig {
    ClientConfig {
        domain_uri: Uri::parse("sip:example.com").unwrap_or_else(|e| panic!("{e}")),
        via_transport: if reliable { "TCP" } else { "UDP" },
        reliable,
        timers: Timers::default(),
        algorithm: None,
        run_tag: run_tag.into(),
    }
}

pub fn encode(response: &Response) -> Vec<u8> {
    let mut bytes = Vec::new();
    response.encode(&mut bytes);
    bytes
}

/// Runs `source` on `client` against `server` on a virtual clock from `start` until the
/// source is finished and nothing is outstanding, answering every request at once;
/// returns every completion. With nothing due the clock jumps to `end`. Bounded by
/// `steps_max` clock steps so a livelock fails.
pub fn drive(
    client: &mut Client,
    source: &mut dyn Source,
    server: &mut FakeRegistrar,
    (start, end): (Instant, Instant),
    steps_max: usize,
) -> Vec<Completion> {
    let mut now = start;
    let mut completions = Vec::new();
    for _ in 0..steps_max {
        client.handle_timeout(now);
        while let Some(op) = source.poll_op(now, client) {
            if let Err(error) = client.start(op, now) {
                panic!("{error}");
            }
        }
        while let Some(transmit) = client.poll_transmit() {
            if let Some(answer) = server.answer(&transmit.bytes) {
                client.handle_message(transmit.link, &answer, now);
            }
        }
        while let Some(completion) = client.poll_completion() {
            source.handle_completion(&completion);
            completions.push(completion);
        }
        if source.is_finished(now) && client.outstanding() == 0 {
            return completions;
        }
        let next = [client.poll_timeout(), source.due_at()]
            .into_iter()
            .flatten()
            .min();
        now = match next {
            Some(at) if at > now => at,
            // A due operation skipped as busy: step the clock a little.
            Some(_) => now + Duration::from_millis(1),
            None => end.max(now + Duration::from_millis(1)),
        };
    }
    panic!("drive did not finish within {steps_max} steps");
}
