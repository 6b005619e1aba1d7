//! The request path shared by every transport: parse, run the registrar front, apply or look
//! up in the store, and build the response.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use roster_registrar::{Action, CommandOutcome, Front, RequestContext, Transport};
use roster_sip::{parse_message, Message, Request, Response};
use tracing::{debug, debug_span, warn, Instrument};

use crate::clock::now_ms;
use crate::store::{Applied, Store, StoreError};

/// Running totals of what a node saw, for logs and the status of later issues.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests parsed and handled.
    pub requests: AtomicU64,
    /// Responses sent, by class: index 1 for 1xx … 6 for 6xx.
    pub responses_by_class: [AtomicU64; 7],
    /// Messages dropped because they did not parse.
    pub malformed: AtomicU64,
    /// Requests dropped without an answer (no Via, stray ACK, store poisoned).
    pub dropped: AtomicU64,
    /// Retransmitted requests answered from the transaction layer.
    pub retransmissions: AtomicU64,
    /// SIP responses received (a registrar sends no requests, so they are ignored).
    pub stray_responses: AtomicU64,
}

impl Counters {
    /// Counts one response of `status`.
    pub fn count_response(&self, status: u16) {
        let class = usize::from(status / 100).min(6);
        self.responses_by_class[class].fetch_add(1, Ordering::Relaxed);
    }

    /// One line for logs.
    pub fn summary(&self) -> String {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let classes: Vec<String> = (1..=6)
            .map(|class| format!("{class}xx={}", load(&self.responses_by_class[class])))
            .collect();
        format!(
            "requests={} {} malformed={} dropped={} retransmissions={} stray_responses={}",
            load(&self.requests),
            classes.join(" "),
            load(&self.malformed),
            load(&self.dropped),
            load(&self.retransmissions),
            load(&self.stray_responses),
        )
    }
}

/// A node's request path over a [`Store`].
pub struct Service<S> {
    node: String,
    /// A `std` mutex: `handle_request` holds it for the stateless checks only, never across
    /// an `.await`.
    front: Mutex<Front>,
    store: S,
    /// What the node saw.
    pub counters: Counters,
}

impl<S: Store> Service<S> {
    /// A service named `node` with this front and store.
    pub fn new(node: String, front: Front, store: S) -> Service<S> {
        Service {
            node,
            front: Mutex::new(front),
            store,
            counters: Counters::default(),
        }
    }

    /// The node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Parses one message; a request comes back, anything else is counted and dropped.
    pub fn parse_request(&self, bytes: &[u8], source: SocketAddr) -> Option<Request> {
        match parse_message(bytes) {
            Ok(Message::Request(request)) => Some(request),
            Ok(Message::Response(_)) => {
                self.counters
                    .stray_responses
                    .fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(error) => {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                debug!(%source, %error, "dropped malformed message");
                None
            }
        }
    }

    /// Handles one request that arrived on `transport` from `source`; `None` means send
    /// nothing.
    pub async fn handle_request(
        &self,
        request: &Request,
        transport: Transport,
        source: SocketAddr,
    ) -> Option<Response> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let aor = request
            .headers
            .to()
            .map(|to| to.uri.aor())
            .unwrap_or_default();
        let span = debug_span!(
            "request",
            node = %self.node,
            method = %request.method,
            aor = %aor,
            group = "local",
            %source,
            transport = transport.as_str(),
        );
        let response = self
            .respond(request, transport, source)
            .instrument(span.clone())
            .await;
        match &response {
            Some(response) => {
                self.counters.count_response(response.status);
                span.in_scope(|| debug!(status = response.status, "answered"));
            }
            None => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        response
    }

    async fn respond(
        &self,
        request: &Request,
        transport: Transport,
        source: SocketAddr,
    ) -> Option<Response> {
        let now_ms = now_ms();
        let context = RequestContext {
            now_ms,
            transport,
            source,
        };
        let action = self.with_front(|front| front.handle_request(request, &context))?;
        match action {
            Action::Respond(response) => Some(response),
            Action::Drop { reason } => {
                debug!(%reason, "no answer");
                None
            }
            Action::Apply { command, reply } => {
                let Applied {
                    outcome,
                    at_ms: applied_ms,
                } = match self.store.apply(command, now_ms).await {
                    Ok(applied) => applied,
                    Err(error) => return self.unavailable(request, error),
                };
                self.with_front(|front| match &outcome {
                    CommandOutcome::Registered { bindings, .. } => {
                        front.answer_register(request, &reply, Ok(bindings), applied_ms)
                    }
                    CommandOutcome::Refused(refusal) => {
                        front.answer_register(request, &reply, Err(refusal), applied_ms)
                    }
                    CommandOutcome::Purged { .. } => {
                        Response::for_request(request, 500, "purge").with_reason("Wrong Outcome")
                    }
                })
            }
            Action::Lookup { aor } => match self.store.lookup(&aor, now_ms).await {
                Ok(bindings) => {
                    self.with_front(|front| front.answer_lookup(request, &bindings, now_ms))
                }
                Err(error) => self.unavailable(request, error),
            },
        }
    }

    fn unavailable(&self, request: &Request, error: StoreError) -> Option<Response> {
        warn!(%error, "store unavailable");
        let StoreError::Unavailable { retry_after_s, .. } = error;
        self.with_front(|front| front.answer_unavailable(request, retry_after_s))
    }

    fn with_front<T>(&self, f: impl FnOnce(&mut Front) -> T) -> Option<T> {
        match self.front.lock() {
            Ok(mut front) => Some(f(&mut front)),
            Err(_) => {
                warn!("registrar front lock poisoned; dropping request");
                None
            }
        }
    }
}

/// RFC 3261 §18.2.1 and RFC 3581 §4: records where the request really came from in its top
/// Via (`received`, and the `rport` value when the client asked for it).
pub fn stamp_top_via(request: &mut Request, source: SocketAddr) {
    let Ok(mut top) = request.headers.top_via() else {
        return;
    };
    let source_ip = source.ip().to_string();
    let wants_rport = top.rport().is_some();
    if wants_rport || top.host.trim_matches(['[', ']']) != source_ip {
        top.set_param("received", Some(source_ip));
    }
    if wants_rport {
        top.set_param("rport", Some(source.port().to_string()));
    }
    request.headers.set_top_via(&top);
}

/// Where a UDP response goes (RFC 3261 §18.2.2, RFC 3581 §4): the source address when the
/// client asked for `rport`, else the source IP and the Via's port (5060 by default).
pub fn udp_response_destination(request: &Request, source: SocketAddr) -> SocketAddr {
    match request.headers.top_via() {
        Ok(via) if via.rport().is_none() => SocketAddr::new(source.ip(), via.port.unwrap_or(5060)),
        _ => source,
    }
}
