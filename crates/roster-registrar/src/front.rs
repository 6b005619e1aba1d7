//! The stateless half of the registrar: RFC 3261 §10.3 steps 1–6 on a parsed request, and the
//! answers built from what the registry returns.

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use roster_auth::{
    Admission, AuthError, DigestAuthenticator, DigestResponse, GuessLimiter, GuessScope, Verdict,
};
use roster_sip::{Contacts, HeaderError, HeaderName, Method, NameAddr, Request, Response};

use crate::apply::Refusal;
use crate::binding::{Binding, BindingKey};
use crate::command::{Command, ContactChange, ContactUpdate, RegisterCommand};
use crate::directory::Directory;
use crate::networks::Networks;
use crate::policy::Policy;
use crate::response::{binding_contact, reply, ALLOWED_METHODS, SUPPORTED_OPTION_TAGS};

/// How a request reached the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP datagrams.
    Udp,
    /// A TCP connection.
    Tcp,
    /// A TLS connection.
    Tls,
}

impl Transport {
    /// Lowercase name, as in a `transport` URI parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// What the front needs to know besides the request.
#[derive(Clone, Copy, Debug)]
pub struct RequestContext {
    /// Now, in milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// The transport the request came on.
    pub transport: Transport,
    /// The address the request came from.
    pub source: SocketAddr,
}

/// The front's settings.
#[derive(Clone, Debug)]
pub struct FrontConfig {
    /// Domains this registrar serves, lowercase. Default: none.
    pub domains: Vec<String>,
    /// Expiry and binding limits.
    pub policy: Policy,
    /// Accept any user of a served domain, with no directory entry. Only sensible without
    /// authentication (benchmarks). Default false.
    pub open_directory: bool,
    /// The `Server` header value.
    pub server: String,
    /// Hosts that name this registrar in a REGISTER's Request-URI besides `domains`: the
    /// node's own addresses, as phones set up with a server IP send (`sip:192.0.2.10:5060`;
    /// the port is not compared). The AOR's domain is still checked. Lowercase, IPv6 without
    /// brackets. Default: none.
    pub own_hosts: Vec<String>,
    /// Sources that may look users up (a request other than REGISTER for a user) without
    /// authenticating; others are challenged, so that nobody else learns which users exist
    /// or where they are. Default: none.
    pub trusted: Networks,
}

/// Most events [`Front::poll_event`] keeps; the caller drains them after each request, so
/// one request's few events always fit.
pub const FRONT_EVENTS_MAX: usize = 64;

/// What the front saw that the caller logs or counts (it does neither itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrontEvent {
    /// A wrong answer to a challenge: a password guess.
    WrongAnswer,
    /// A bound of the guess limiter was reached; reported once per window.
    GuessLimitReached {
        /// Which bound.
        scope: GuessScope,
        /// The user name guessed at.
        username: String,
        /// The guessing source.
        source: IpAddr,
        /// Seconds until the window ends.
        retry_after_s: u32,
    },
    /// A request refused unchecked (`503`) because a bound is reached.
    GuessRefused {
        /// Which bound.
        scope: GuessScope,
    },
}

/// What to do with a request after the stateless steps.
#[derive(Debug)]
pub enum Action {
    /// Send this response; nothing else to do.
    Respond(Response),
    /// Apply `command` to the registry, then answer with [`Front::answer_register`].
    Apply {
        /// The REGISTER command.
        command: Command,
        /// What the answer needs to remember about the request.
        reply: RegisterReply,
    },
    /// Look up `aor`'s bindings, then answer with [`Front::answer_lookup`].
    Lookup {
        /// The canonical AOR to look up.
        aor: String,
    },
    /// Send nothing (an ACK, or a request that no response can be routed for).
    Drop {
        /// Why, for logs and counters.
        reason: String,
    },
}

/// Facts of a REGISTER that shape its `200 OK`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterReply {
    /// The canonical AOR.
    pub aor: String,
    /// The client supports GRUU: list `pub-gruu` for contacts with an instance.
    pub gruu: bool,
    /// Path values to echo (RFC 3327 §5.3: only when the client supports `path`).
    pub path_echo: Vec<String>,
    /// A contact used Outbound: answer with `Require: outbound` (RFC 5626 §6).
    pub outbound: bool,
}

/// The stateless registrar: validates requests and builds answers.
///
/// Method families: [`Front::handle_request`] turns a request into an [`Action`];
/// [`Front::answer_register`], [`Front::answer_lookup`] and [`Front::answer_unavailable`] turn
/// the store's result into the response; [`Front::poll_event`] yields what to log and count.
/// Time is always an argument.
pub struct Front {
    config: FrontConfig,
    directory: Directory,
    authenticator: Option<DigestAuthenticator>,
    guesses: Option<GuessLimiter<RandomState>>,
    events: VecDeque<FrontEvent>,
}

/// A problem that ends a request with one response.
struct Reject {
    status: u16,
    reason: Option<String>,
    headers: Vec<(HeaderName, String)>,
}

impl Reject {
    fn new(status: u16, reason: impl Into<String>) -> Reject {
        Reject {
            status,
            reason: Some(reason.into()),
            headers: Vec::new(),
        }
    }

    fn with_header(mut self, name: HeaderName, value: impl Into<String>) -> Reject {
        self.headers.push((name, value.into()));
        self
    }
}

impl From<HeaderError> for Reject {
    fn from(error: HeaderError) -> Reject {
        Reject::new(error.status(), error.to_string())
    }
}

impl Front {
    /// A front serving `directory`; `authenticator` is `None` when digest authentication is off.
    pub fn new(
        config: FrontConfig,
        directory: Directory,
        authenticator: Option<DigestAuthenticator>,
    ) -> Front {
        Front {
            config,
            directory,
            authenticator,
            guesses: None,
            events: VecDeque::new(),
        }
    }

    /// Serves `directory` from now on (the node's copy of the CMS changed).
    pub fn set_directory(&mut self, directory: Directory) {
        self.directory = directory;
    }

    /// How many users the directory holds.
    pub fn directory_len(&self) -> usize {
        self.directory.len()
    }

    /// The same front bounding password guesses with `limiter`.
    #[must_use]
    pub fn with_guess_limiter(mut self, limiter: GuessLimiter<RandomState>) -> Front {
        self.guesses = Some(limiter);
        self
    }

    /// The next event to log or count, oldest first.
    pub fn poll_event(&mut self) -> Option<FrontEvent> {
        self.events.pop_front()
    }

    /// The settings in force.
    pub fn config(&self) -> &FrontConfig {
        &self.config
    }

    /// Runs the stateless steps on `request`.
    pub fn handle_request(&mut self, request: &Request, context: &RequestContext) -> Action {
        if let Err(error) = request.headers.top_via() {
            return Action::Drop {
                reason: format!("no usable Via, cannot answer: {error}"),
            };
        }
        if request.method == Method::Ack {
            return Action::Drop {
                reason: "ACK needs no answer".into(),
            };
        }
        let result = match check_common(request) {
            Err(reject) => Err(reject),
            Ok(common) if request.method == Method::Register => {
                self.register(request, common, context)
            }
            Ok(_) => self.route(request, context),
        };
        match result {
            Ok(action) => action,
            Err(reject) => Action::Respond(self.reject(request, reject)),
        }
    }

    /// The answer to a REGISTER once the registry applied (or refused) its command.
    /// `bindings` are the AOR's live bindings after the apply.
    pub fn answer_register(
        &self,
        request: &Request,
        reply_facts: &RegisterReply,
        result: Result<&[Binding], &Refusal>,
        now_ms: u64,
    ) -> Response {
        let bindings = match result {
            Ok(bindings) => bindings,
            Err(refusal) => {
                let status = refusal.status();
                return self.reject(request, Reject::new(status, refusal.to_string()));
            }
        };
        let mut response = reply(request, 200, None, &self.config.server);
        let gruu_aor = reply_facts.gruu.then_some(reply_facts.aor.as_str());
        for binding in bindings {
            let contact = binding_contact(binding, now_ms, gruu_aor);
            response.headers.push(HeaderName::Contact, contact);
        }
        for path in &reply_facts.path_echo {
            response.headers.push(HeaderName::Path, path.clone());
        }
        if reply_facts.outbound {
            response.headers.push(HeaderName::Require, "outbound");
        }
        response
            .headers
            .push(HeaderName::Supported, SUPPORTED_OPTION_TAGS.join(", "));
        response
            .headers
            .push(HeaderName::Date, crate::date::http_date(now_ms));
        response
    }

    /// The answer to a routed request once its AOR's live bindings are known, highest q
    /// first: `302` listing them, or `480` when there are none.
    pub fn answer_lookup(&self, request: &Request, bindings: &[Binding], now_ms: u64) -> Response {
        if bindings.is_empty() {
            return reply(request, 480, None, &self.config.server);
        }
        let mut response = reply(request, 302, None, &self.config.server);
        for binding in bindings {
            let contact = binding_contact(binding, now_ms, None);
            response.headers.push(HeaderName::Contact, contact);
        }
        response
    }

    /// `503` with `Retry-After`: the store cannot take or answer the request now.
    pub fn answer_unavailable(&self, request: &Request, retry_after_s: u32) -> Response {
        let mut response = reply(request, 503, None, &self.config.server);
        response
            .headers
            .push(HeaderName::RetryAfter, retry_after_s.to_string());
        response
    }

    fn reject(&self, request: &Request, reject: Reject) -> Response {
        let mut response = reply(
            request,
            reject.status,
            reject.reason.as_deref(),
            &self.config.server,
        );
        for (name, value) in reject.headers {
            response.headers.push(name, value);
        }
        response
    }

    fn serves(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.config.domains.contains(&host)
    }

    /// Whether a REGISTER's Request-URI host names this registrar: a served domain, or one of
    /// its own addresses.
    fn is_registrar(&self, host: &str) -> bool {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        self.serves(host)
            || self
                .config
                .own_hosts
                .iter()
                .any(|own| own.eq_ignore_ascii_case(bare))
    }

    fn is_known(&self, aor: &str) -> bool {
        self.directory.by_aor(aor).is_some() || self.config.open_directory
    }

    /// RFC 3261 §10.3 steps 1–6.
    fn register(
        &mut self,
        request: &Request,
        common: Common,
        context: &RequestContext,
    ) -> Result<Action, Reject> {
        // Step 1: the Request-URI names a domain we hold bindings for (or this registrar by
        // its address; the AOR's domain is checked below).
        if !self.is_registrar(&request.uri.host) {
            return Err(Reject::new(404, "Domain Not Served"));
        }
        // Step 2: every Require'd extension is supported.
        check_require(request)?;
        // Step 3: authentication.
        let authenticated = self.authenticate(request, context)?;
        // Step 5 before 4: authorization needs the AOR, and an unknown AOR is a 404.
        let to = common.to;
        let aor = to.uri.aor();
        if !self.serves(&to.uri.host) || !self.is_known(&aor) {
            return Err(Reject::new(404, "Not Found"));
        }
        // Step 4: a user registers only its own AOR.
        if let Some(username) = authenticated {
            let own = self
                .directory
                .by_username(&username)
                .is_some_and(|user| user.aor == aor);
            if !own {
                return Err(Reject::new(403, "Not Allowed To Register This AOR"));
            }
        }
        // Step 6: contacts and expiry.
        let supported = request.headers.option_tags(&HeaderName::Supported);
        let contacts = request.headers.contacts()?;
        let expires_header = request.headers.expires()?;
        let change = contact_change(contacts, expires_header, &supported, &self.config.policy)?;
        let path = path_values(request)?;
        let outbound = uses_outbound(&change);
        if outbound && path.is_empty() && request.headers.vias()?.len() > 1 {
            // RFC 5626 §6: the edge proxy did not add a Path with `ob`, so there is no flow.
            return Err(Reject::new(439, "First Hop Lacks Outbound Support"));
        }
        let has = |tag: &str| supported.iter().any(|t| t == tag);
        let reply_facts = RegisterReply {
            aor: aor.clone(),
            gruu: has("gruu"),
            path_echo: if has("path") {
                path.clone()
            } else {
                Vec::new()
            },
            outbound,
        };
        // The user's own limit travels in the command: apply (on every replica) reads no
        // directory.
        let bindings_max = self
            .directory
            .by_aor(&aor)
            .and_then(|user| user.bindings_max);
        let command = RegisterCommand {
            aor,
            call_id: common.call_id,
            cseq: common.cseq,
            change,
            path,
            received: Some(format!("{}:{}", context.transport.as_str(), context.source)),
            user_agent: request
                .headers
                .get(&HeaderName::UserAgent)
                .map(str::to_string),
            bindings_max,
        };
        Ok(Action::Apply {
            command: Command::Register(command),
            reply: reply_facts,
        })
    }

    /// Digest authentication; `Ok(None)` when it is off. Answers are admitted by the guess
    /// limiter first, and wrong ones counted.
    fn authenticate(
        &mut self,
        request: &Request,
        context: &RequestContext,
    ) -> Result<Option<String>, Reject> {
        let Front {
            authenticator,
            directory,
            guesses,
            events,
            ..
        } = self;
        let Some(authenticator) = authenticator.as_mut() else {
            return Ok(None);
        };
        let (now_ms, source) = (context.now_ms, context.source.ip());
        let requested = request
            .headers
            .get_all(&HeaderName::Authorization)
            .find_map(roster_auth::requested_algorithm);
        let realm = authenticator.realm();
        let parsed = request
            .headers
            .get_all(&HeaderName::Authorization)
            .find(|value| digest_realm(value).is_some_and(|r| r == realm))
            .map(DigestResponse::parse);
        if let Some(limiter) = guesses.as_ref() {
            let username = match &parsed {
                Some(Ok(response)) => Some(response.username.as_str()),
                _ => None,
            };
            if let Admission::Limited {
                scope,
                retry_after_s,
            } = limiter.admit(username, source, now_ms)
            {
                push_event(events, FrontEvent::GuessRefused { scope });
                return Err(Reject::new(503, "Too Many Failed Attempts")
                    .with_header(HeaderName::RetryAfter, retry_after_s.to_string()));
            }
        }
        let verdict = match parsed {
            None | Some(Err(AuthError::UnsupportedAlgorithm(_))) => None,
            Some(Err(error)) => {
                return Err(Reject::new(
                    400,
                    format!("Bad Authorization header: {error}"),
                ))
            }
            Some(Ok(response)) => Some(authenticator.verify_response(
                now_ms,
                request.method.as_str(),
                &response,
                |username| directory.by_username(username).map(|u| &u.credentials),
            )),
        };
        let stale = match verdict {
            Some(Verdict::Authenticated { username }) => {
                if let Some(limiter) = guesses.as_mut() {
                    limiter.record_success(&username, source);
                }
                return Ok(Some(username));
            }
            Some(Verdict::Malformed { reason }) => {
                return Err(Reject::new(
                    400,
                    format!("Bad Authorization header: {reason}"),
                ))
            }
            Some(Verdict::Wrong { username }) => {
                push_event(events, FrontEvent::WrongAnswer);
                if let Some(limiter) = guesses.as_mut() {
                    for reached in limiter.record_wrong(&username, source, now_ms) {
                        if let Admission::Limited {
                            scope,
                            retry_after_s,
                        } = reached
                        {
                            let username = username.clone();
                            push_event(
                                events,
                                FrontEvent::GuessLimitReached {
                                    scope,
                                    username,
                                    source,
                                    retry_after_s,
                                },
                            );
                        }
                    }
                }
                false
            }
            Some(Verdict::Stale) => true,
            Some(Verdict::Rejected { .. }) | None => false,
        };
        let mut reject = Reject {
            status: 401,
            reason: None,
            headers: Vec::new(),
        };
        for challenge in authenticator.challenge_for(now_ms, stale, requested) {
            reject = reject.with_header(HeaderName::WwwAuthenticate, challenge);
        }
        Err(reject)
    }

    /// A request other than REGISTER: OPTIONS to the server, or a redirect for an AOR. A
    /// lookup from an untrusted source must authenticate first: before that, every user, real
    /// or not, gets the same challenge.
    fn route(&mut self, request: &Request, context: &RequestContext) -> Result<Action, Reject> {
        let uri = &request.uri;
        if uri.user.is_none() {
            return match request.method {
                Method::Options => Ok(Action::Respond(self.options_answer(request))),
                _ => Err(Reject::new(404, "Not Found")),
            };
        }
        if request.method == Method::Cancel {
            // Every INVITE is answered at once, so no transaction is left to cancel.
            return Err(Reject::new(481, "Call/Transaction Does Not Exist"));
        }
        if !self.config.trusted.contains(context.source.ip()) {
            self.authenticate(request, context)?;
        }
        let aor = uri.aor();
        if !self.serves(&uri.host) || !self.is_known(&aor) {
            return Err(Reject::new(404, "Not Found"));
        }
        Ok(Action::Lookup { aor })
    }

    fn options_answer(&self, request: &Request) -> Response {
        let mut response = reply(request, 200, None, &self.config.server);
        response.headers.push(HeaderName::Allow, ALLOWED_METHODS);
        response
            .headers
            .push(HeaderName::Supported, SUPPORTED_OPTION_TAGS.join(", "));
        response.headers.push(HeaderName::Accept, "application/sdp");
        response
    }
}

fn push_event(events: &mut VecDeque<FrontEvent>, event: FrontEvent) {
    if events.len() < FRONT_EVENTS_MAX {
        events.push_back(event);
    }
}

/// The headers every request needs, parsed once.
struct Common {
    to: NameAddr,
    call_id: String,
    cseq: u32,
}

/// Checks the headers every request needs before anything else is looked at.
fn check_common(request: &Request) -> Result<Common, Reject> {
    request.headers.from()?;
    let to = request.headers.to()?;
    let call_id = request.headers.call_id()?.to_string();
    let cseq = request.headers.cseq()?;
    if cseq.method != request.method {
        return Err(Reject::new(400, "CSeq Method Does Not Match Request"));
    }
    Ok(Common {
        to,
        call_id,
        cseq: cseq.seq,
    })
}

fn check_require(request: &Request) -> Result<(), Reject> {
    let unsupported: Vec<String> = request
        .headers
        .option_tags(&HeaderName::Require)
        .into_iter()
        .filter(|tag| !SUPPORTED_OPTION_TAGS.contains(&tag.as_str()))
        .collect();
    if unsupported.is_empty() {
        return Ok(());
    }
    Err(Reject::new(420, "Bad Extension")
        .with_header(HeaderName::Unsupported, unsupported.join(", ")))
}

/// The `realm` parameter of a `Digest` Authorization value, if it has one.
fn digest_realm(value: &str) -> Option<String> {
    let rest = value.trim_start();
    let scheme_end = rest.find(char::is_whitespace)?;
    if !rest[..scheme_end].eq_ignore_ascii_case("digest") {
        return None;
    }
    roster_sip::split_comma_list(&rest[scheme_end..])
        .into_iter()
        .find_map(|part| {
            let (name, value) = part.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("realm")
                .then(|| value.trim().trim_matches('"').to_string())
        })
}

/// RFC 3261 §10.3 step 6 for the Contact headers of one REGISTER.
fn contact_change(
    contacts: Contacts,
    expires_header: Option<u32>,
    supported: &[String],
    policy: &Policy,
) -> Result<ContactChange, Reject> {
    let list = match contacts {
        Contacts::Star if expires_header == Some(0) => return Ok(ContactChange::RemoveAll),
        Contacts::Star => {
            return Err(Reject::new(400, "Contact * Requires Expires: 0"));
        }
        Contacts::List(list) if list.is_empty() => return Ok(ContactChange::Query),
        Contacts::List(list) => list,
    };
    let outbound_supported = supported.iter().any(|tag| tag == "outbound");
    let mut updates = Vec::with_capacity(list.len());
    let mut too_brief = None;
    for contact in &list {
        let requested_s = contact_expires(contact)?
            .or(expires_header)
            .unwrap_or(policy.expires_default_s);
        match policy.grant(requested_s) {
            Ok(expires_s) => updates.push(contact_update(contact, expires_s, outbound_supported)?),
            Err(min) => too_brief = Some(min),
        }
    }
    if let Some(min) = too_brief {
        return Err(Reject::new(423, "Interval Too Brief")
            .with_header(HeaderName::MinExpires, min.to_string()));
    }
    let flows = updates.iter().filter(|u| u.reg_id.is_some()).count();
    if flows > 1 {
        // RFC 5626 §6: at most one Contact with a reg-id in one REGISTER.
        return Err(Reject::new(400, "More Than One Contact With reg-id"));
    }
    Ok(ContactChange::Update(updates))
}

fn contact_expires(contact: &NameAddr) -> Result<Option<u32>, Reject> {
    let Some(param) = contact.param("expires") else {
        return Ok(None);
    };
    let value = param.unquoted().unwrap_or_default();
    parse_delta_seconds(&value)
        .map(Some)
        .ok_or_else(|| Reject::new(400, "Invalid Contact expires Parameter"))
}

/// RFC 3261 delta-seconds; values past 2^32-1 mean 2^32-1 (§20.19).
fn parse_delta_seconds(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse::<u32>().unwrap_or(u32::MAX))
}

/// RFC 3261 qvalue: "0" / "1" with up to three decimals, in thousandths.
fn parse_q_milli(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits_ok = fraction.len() <= 3 && fraction.bytes().all(|b| b.is_ascii_digit());
    if !digits_ok {
        return None;
    }
    let fraction_milli = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(fraction_milli),
        "1" if fraction_milli == 0 => Some(1000),
        _ => None,
    }
}

fn contact_update(
    contact: &NameAddr,
    expires_s: u32,
    outbound_supported: bool,
) -> Result<ContactUpdate, Reject> {
    let q_milli = match contact.param("q") {
        None => None,
        Some(param) => Some(
            parse_q_milli(&param.unquoted().unwrap_or_default())
                .ok_or_else(|| Reject::new(400, "Invalid Contact q Parameter"))?,
        ),
    };
    let instance = contact.param("+sip.instance").and_then(|p| p.unquoted());
    let reg_id = match contact.param("reg-id") {
        None => None,
        Some(param) => Some(
            param
                .unquoted()
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|&id| id > 0)
                .ok_or_else(|| Reject::new(400, "Invalid Contact reg-id Parameter"))?,
        ),
    };
    if reg_id.is_some() && instance.is_none() {
        return Err(Reject::new(400, "reg-id Without +sip.instance"));
    }
    // RFC 5626 §6: without `Supported: outbound` the registrar ignores reg-id.
    let reg_id = reg_id.filter(|_| outbound_supported);
    let key = match (&instance, reg_id) {
        (Some(instance), Some(reg_id)) => BindingKey::Flow {
            instance: instance.clone(),
            reg_id,
        },
        _ => BindingKey::Uri(contact.uri.comparison_key()),
    };
    let mut stored = contact.clone();
    stored
        .params
        .retain(|p| !p.name.eq_ignore_ascii_case("expires"));
    stored.display_name = None;
    Ok(ContactUpdate {
        key,
        contact: stored.to_string(),
        q_milli,
        expires_s,
        instance,
        reg_id,
    })
}

fn path_values(request: &Request) -> Result<Vec<String>, Reject> {
    Ok(request
        .headers
        .name_addrs(&HeaderName::Path)?
        .iter()
        .map(NameAddr::to_string)
        .collect())
}

fn uses_outbound(change: &ContactChange) -> bool {
    match change {
        ContactChange::Update(updates) => updates.iter().any(|u| u.reg_id.is_some()),
        ContactChange::Query | ContactChange::RemoveAll => false,
    }
}

#[cfg(test)]
mod tests;
