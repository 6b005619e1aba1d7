//! The request path shared by every transport: parse, run the registrar front, apply or look
//! up in the store, and build the response.

use std::net::SocketAddr;
use std::sync::Mutex;

use roster_registrar::{Action, CommandOutcome, Front, FrontEvent, RequestContext, Transport};
use roster_sip::{parse_message, Message, Request, Response};
use tracing::{debug, debug_span, warn, Instrument};

use crate::clock::now_ms;
use crate::store::{Applied, Store, StoreError};
use crate::telemetry;

/// `Retry-After` of a request shed under overload: one second, long enough for the queue
/// that caused it to drain at the rates measured (README), short enough that a phone told so
/// is back before its registration runs out.
pub const OVERLOAD_RETRY_AFTER_S: u32 = 1;

/// A node's request path over a [`Store`].
pub struct Service<S> {
    node: String,
    /// A `std` mutex: `handle_request` holds it for the stateless checks only, never across
    /// an `.await`.
    front: Mutex<Front>,
    store: S,
}

impl<S: Store> Service<S> {
    /// A service named `node` with this front and store.
    pub fn new(node: String, front: Front, store: S) -> Service<S> {
        Service {
            node,
            front: Mutex::new(front),
            store,
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

    /// Serves `directory` from now on: the users the node authenticates and knows changed.
    pub fn set_directory(&self, directory: roster_registrar::Directory) {
        self.with_front(|front| front.set_directory(directory));
    }

    /// The node's status document: its name, version and its store's status.
    pub fn status(&self) -> serde_json::Value {
        let directory_users = self.with_front(|front| front.directory_len());
        serde_json::json!({
            "node": self.node,
            "version": env!("CARGO_PKG_VERSION"),
            "directory_users": directory_users,
            "store": self.store.status(),
        })
    }

    /// Whether the node serves: its store can take requests.
    pub fn healthy(&self) -> bool {
        self.store.healthy()
    }

    /// Parses one message; a request comes back, anything else is counted and dropped.
    pub fn parse_request(&self, bytes: &[u8], source: SocketAddr) -> Option<Request> {
        match parse_message(bytes) {
            Ok(Message::Request(request)) => Some(request),
            Ok(Message::Response(_)) => {
                metrics::counter!(telemetry::SIP_STRAY_RESPONSES).increment(1);
                None
            }
            Err(error) => {
                metrics::counter!(telemetry::SIP_MALFORMED).increment(1);
                debug!(%source, %error, "dropped malformed message");
                None
            }
        }
    }

    /// The answer to bytes that do not parse as a request but still name where an answer
    /// goes (`416` for an unsupported URI scheme, `505` for an unsupported SIP version, `400`
    /// for too many header fields or another problem); counted.
    pub fn answer_unparsable(&self, bytes: &[u8]) -> Option<Response> {
        let response = roster_sip::error_response(bytes)?;
        metrics::counter!(telemetry::SIP_ANSWERED_UNPARSED).increment(1);
        Some(self.stamp_server(response))
    }

    /// `status` with `reason` for a message whose start is `head` (e.g. `513` for a stream
    /// message over the size limit), if it names where an answer goes; counted.
    pub fn answer_head(&self, head: &[u8], status: u16, reason: &str) -> Option<Response> {
        let response = roster_sip::error_response_with(head, status, reason)?;
        metrics::counter!(telemetry::SIP_ANSWERED_UNPARSED).increment(1);
        Some(self.stamp_server(response))
    }

    /// `503` with `Retry-After` for a request shed before any work: the node is overloaded.
    pub fn answer_overloaded(&self, request: &Request) -> Option<Response> {
        metrics::counter!(telemetry::SIP_SHED).increment(1);
        self.with_front(|front| front.answer_unavailable(request, OVERLOAD_RETRY_AFTER_S))
    }

    fn stamp_server(&self, mut response: Response) -> Response {
        let server = self.with_front(|front| front.config().server.clone());
        if let Some(server) = server {
            response
                .headers
                .push(roster_sip::HeaderName::Server, server);
        }
        response
    }

    /// Handles one request that arrived on `transport` from `source`; `None` means send
    /// nothing.
    pub async fn handle_request(
        &self,
        request: &Request,
        transport: Transport,
        source: SocketAddr,
    ) -> Option<Response> {
        let started = std::time::Instant::now();
        metrics::counter!(telemetry::SIP_REQUESTS, "transport" => transport.as_str()).increment(1);
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
            group = tracing::field::Empty,
            pool = tracing::field::Empty,
            epoch = tracing::field::Empty,
            %source,
            transport = transport.as_str(),
        );
        // Only when the span is logged: finding the group reads the directory.
        if !span.is_disabled() && !aor.is_empty() {
            let placement = self.store.placement(&aor);
            span.record("group", placement.group.as_str());
            if let (Some(pool), Some(epoch)) = (placement.pool, placement.epoch) {
                span.record("pool", pool);
                span.record("epoch", epoch);
            }
        }
        let response = self
            .respond(request, transport, source)
            .instrument(span.clone())
            .await;
        match &response {
            Some(response) => {
                let class = telemetry::status_class(response.status);
                metrics::counter!(telemetry::SIP_RESPONSES, "class" => class).increment(1);
                metrics::histogram!(telemetry::SIP_REQUEST_DURATION)
                    .record(started.elapsed().as_secs_f64());
                span.in_scope(|| debug!(status = response.status, "answered"));
            }
            None => metrics::counter!(telemetry::SIP_DROPPED).increment(1),
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
        let action = self.with_front(|front| {
            let action = front.handle_request(request, &context);
            while let Some(event) = front.poll_event() {
                report(event);
            }
            action
        })?;
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
                    served,
                } = match self.store.apply(command, now_ms).await {
                    Ok(applied) => applied,
                    Err(error) => return self.unavailable(request, error),
                };
                let response = self.with_front(|front| match &outcome {
                    CommandOutcome::Registered { bindings, .. } => {
                        front.answer_register(request, &reply, Ok(bindings), applied_ms)
                    }
                    CommandOutcome::Refused(refusal) => {
                        front.answer_register(request, &reply, Err(refusal), applied_ms)
                    }
                    CommandOutcome::Purged { .. } => {
                        Response::for_request(request, 500, "purge").with_reason("Wrong Outcome")
                    }
                });
                response.map(|response| with_served(response, served))
            }
            Action::Lookup { aor } => {
                let served = self.store.served(&aor);
                match self.store.lookup(&aor, now_ms).await {
                    Ok(bindings) => self
                        .with_front(|front| front.answer_lookup(request, &bindings, now_ms))
                        .map(|response| with_served(response, served)),
                    Err(error) => self.unavailable(request, error),
                }
            }
        }
    }

    fn unavailable(&self, request: &Request, error: StoreError) -> Option<Response> {
        // The request's fields on the line itself: at the default level its span is not logged.
        let aor = request
            .headers
            .to()
            .map(|to| to.uri.aor())
            .unwrap_or_default();
        let placement = self.store.placement(&aor);
        warn!(
            node = %self.node,
            %aor,
            group = %placement.group,
            pool = placement.pool,
            epoch = placement.epoch,
            %error,
            "store unavailable"
        );
        metrics::counter!(telemetry::STORE_UNAVAILABLE).increment(1);
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

/// Names who answered (`X-Roster-Served`, see [`crate::store::Served`]) on an answer that
/// reports bindings (`2xx`, a lookup's `302`/`480`), in a pool.
fn with_served(mut response: Response, served: Option<crate::store::Served>) -> Response {
    if let Some(served) = served {
        if matches!(response.status, 200..=299 | 302 | 480) {
            response.headers.push(
                roster_sip::HeaderName::Other(SERVED_HEADER.into()),
                served.header_value(),
            );
        }
    }
    response
}

/// The header naming the pool, epoch and mode of an answer (read by the chaos suite).
pub const SERVED_HEADER: &str = "X-Roster-Served";

/// Logs and counts what the front saw: each guess bound once per window, with who and from
/// where.
fn report(event: FrontEvent) {
    match event {
        FrontEvent::WrongAnswer => metrics::counter!(telemetry::AUTH_WRONG_ANSWERS).increment(1),
        FrontEvent::GuessLimitReached {
            scope,
            username,
            source,
            retry_after_s,
        } => {
            metrics::counter!(telemetry::AUTH_GUESS_LIMITS, "scope" => scope.as_str()).increment(1);
            warn!(
                scope = scope.as_str(),
                %username,
                %source,
                retry_after_s,
                "password guesses bounded: further answers refused until the window ends"
            );
        }
        FrontEvent::GuessRefused { scope } => {
            metrics::counter!(telemetry::AUTH_GUESS_REFUSED, "scope" => scope.as_str()).increment(1)
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
    via_destination(&request.headers, source)
}

/// [`udp_response_destination`] from the Via of `headers` (a request's, or an answer's that
/// copied them).
pub fn via_destination(headers: &roster_sip::Headers, source: SocketAddr) -> SocketAddr {
    match headers.top_via() {
        Ok(via) if via.rport().is_none() => SocketAddr::new(source.ip(), via.port.unwrap_or(5060)),
        _ => source,
    }
}
