//! The client against an in-memory registrar on a virtual clock.

use std::time::Duration;

use roster_auth::Credentials;
use roster_sip::{HeaderName, Headers};

use super::*;
use crate::op::{LookupMethod, Operation, RequestKind};
use crate::testing::{client_config, encode, FakeRegistrar};

fn client(reliable: bool) -> Client {
    client_with(
        reliable,
        Some(UserCredentials {
            username: "u1".into(),
            password: "pw".into(),
        }),
    )
}

/// A client with one session, `sip:u1@example.com` with `credentials`.
fn client_with(reliable: bool, credentials: Option<UserCredentials>) -> Client {
    let config = client_config("r1", reliable);
    let mut client = Client::new(config, vec![SocketAddr::from(([127, 0, 0, 1], 5999))]);
    let session = client.add_session(SessionSpec {
        aor: Uri::parse("sip:u1@example.com").unwrap_or_else(|e| panic!("{e}")),
        credentials,
        link: 0,
    });
    assert_eq!(session, 0);
    client
}

fn register(at: Instant) -> OpRequest {
    OpRequest {
        session: 0,
        operation: Operation::Register,
        kind: RequestKind::Register {
            contact: "sip:u1.0@127.0.0.1:5999".into(),
            expires_s: 600,
        },
        intended_at: at,
    }
}

/// Delivers every queued transmit to `server` and its answers back, at `now`; returns how
/// many requests went out.
fn exchange(client: &mut Client, server: &mut FakeRegistrar, now: Instant) -> usize {
    // Bounded: each round trip either completes the operation or answers one challenge.
    for sent in 0..10 {
        let Some(transmit) = client.poll_transmit() else {
            return sent;
        };
        if let Some(answer) = server.answer(&transmit.bytes) {
            client.handle_message(transmit.link, &answer, now);
        }
    }
    panic!("exchange did not settle");
}

#[test]
fn answers_the_challenge_then_reuses_the_nonce() {
    let start = Instant::now();
    let mut client = client(false);
    let mut server = FakeRegistrar::new(true, 200);
    let intended = start;
    let now = start + Duration::from_millis(3);
    assert_eq!(client.start(register(intended), now), Ok(()));
    assert!(client.is_busy(0));
    assert_eq!(
        exchange(&mut client, &mut server, now),
        2,
        "REGISTER, 401, REGISTER"
    );
    let Some(completion) = client.poll_completion() else {
        panic!("the operation completed");
    };
    assert_eq!(completion.outcome.status(), Some(200));
    assert_eq!(completion.op.intended_at, intended);
    assert!(!client.is_busy(0));
    assert_eq!(client.counters().challenges, 1);
    // The next operation carries credentials at once: one request, no challenge.
    assert_eq!(client.start(register(now), now), Ok(()));
    assert_eq!(exchange(&mut client, &mut server, now), 1);
    assert_eq!(
        client.poll_completion().and_then(|c| c.outcome.status()),
        Some(200)
    );
    assert_eq!(client.counters().challenges, 1);
    assert_eq!(client.outstanding(), 0);
}

#[test]
fn wrong_password_ends_with_the_401_after_one_answer() {
    let start = Instant::now();
    let mut client = client(false);
    let mut server = FakeRegistrar::new(true, 200);
    server.credentials = Credentials::from_password("u1", "example.com", "other");
    assert_eq!(client.start(register(start), start), Ok(()));
    assert_eq!(exchange(&mut client, &mut server, start), 2);
    assert_eq!(
        client.poll_completion().and_then(|c| c.outcome.status()),
        Some(401)
    );
    assert_eq!(client.counters().auth_refused, 1);
}

#[test]
fn a_challenge_without_a_password_is_counted_as_such() {
    let start = Instant::now();
    let mut client = client_with(false, None);
    let mut server = FakeRegistrar::new(true, 200);
    assert_eq!(client.start(register(start), start), Ok(()));
    assert_eq!(exchange(&mut client, &mut server, start), 1);
    assert_eq!(
        client.poll_completion().and_then(|c| c.outcome.status()),
        Some(401)
    );
    assert_eq!(client.counters().auth_refused, 1);
    assert_eq!(client.counters().challenged_without_password, 1);
}

#[test]
fn udp_loss_is_repaired_by_a_retransmission() {
    let start = Instant::now();
    let mut client = client(false);
    let mut server = FakeRegistrar::new(false, 200);
    assert_eq!(client.start(register(start), start), Ok(()));
    let lost = client.poll_transmit();
    assert!(lost.is_some());
    assert_eq!(
        client.poll_timeout(),
        Some(start + Duration::from_millis(500))
    );
    let later = start + Duration::from_millis(500);
    client.handle_timeout(later);
    let again = client.poll_transmit();
    assert_eq!(again, lost, "a retransmission is the same bytes");
    let Some(answer) = again.and_then(|t| server.answer(&t.bytes)) else {
        panic!("the server answers");
    };
    client.handle_message(0, &answer, later);
    // A duplicate of the answer matches nothing any more.
    client.handle_message(0, &answer, later);
    let completion = client.poll_completion();
    assert_eq!(
        completion.as_ref().and_then(|c| c.outcome.status()),
        Some(200)
    );
    assert_eq!(completion.map(|c| c.sent_at), Some(start));
    assert_eq!(client.counters().retransmissions, 1);
    assert_eq!(client.counters().stray_responses, 1);
}

#[test]
fn silence_times_out_at_timer_f_and_tcp_never_retransmits() {
    for reliable in [false, true] {
        let start = Instant::now();
        let mut client = client(reliable);
        assert_eq!(client.start(register(start), start), Ok(()));
        let mut sends = 0;
        let mut now = start;
        // Bounded: Timer F fires after at most 11 firings of Timer E.
        for _ in 0..20 {
            while client.poll_transmit().is_some() {
                sends += 1;
            }
            let Some(deadline) = client.poll_timeout() else {
                break;
            };
            now = deadline;
            client.handle_timeout(now);
        }
        let completion = client.poll_completion();
        assert!(matches!(
            completion.as_ref().map(|c| &c.outcome),
            Some(Outcome::TimedOut)
        ));
        assert_eq!(now - start, Duration::from_secs(32));
        assert_eq!(sends, if reliable { 1 } else { 11 });
        assert_eq!(client.outstanding(), 0);
    }
}

#[test]
fn a_busy_session_refuses_a_second_operation() {
    let start = Instant::now();
    let mut client = client(false);
    assert_eq!(client.start(register(start), start), Ok(()));
    assert_eq!(
        client.start(register(start), start),
        Err(StartError::Busy(0))
    );
    let mut unknown = register(start);
    unknown.session = 9;
    assert_eq!(
        client.start(unknown, start),
        Err(StartError::UnknownSession(9))
    );
}

#[test]
fn invite_lookup_acks_the_redirect() {
    let start = Instant::now();
    let mut client = client(false);
    let mut server = FakeRegistrar::new(false, 302);
    let lookup = OpRequest {
        session: 0,
        operation: Operation::Lookup,
        kind: RequestKind::Lookup(LookupMethod::Invite),
        intended_at: start,
    };
    assert_eq!(client.start(lookup, start), Ok(()));
    let Some(invite) = client.poll_transmit() else {
        panic!("INVITE sent");
    };
    let Some(answer) = server.answer(&invite.bytes) else {
        panic!("answered");
    };
    client.handle_message(0, &answer, start);
    let ack = client.poll_transmit().map(|t| parse_message(&t.bytes));
    assert!(
        matches!(&ack, Some(Ok(Message::Request(r))) if r.method == Method::Ack),
        "{ack:?}"
    );
    assert_eq!(
        client.poll_completion().and_then(|c| c.outcome.status()),
        Some(302)
    );
}

#[test]
fn a_closed_connection_fails_its_operations_only() {
    let start = Instant::now();
    let mut client = client(true);
    assert_eq!(client.start(register(start), start), Ok(()));
    client.handle_link_closed(1, start);
    assert_eq!(client.outstanding(), 1);
    client.handle_link_closed(0, start);
    let completion = client.poll_completion();
    assert!(matches!(
        completion.map(|c| c.outcome),
        Some(Outcome::TransportError)
    ));
    assert!(!client.is_busy(0));
}

#[test]
fn garbage_and_foreign_responses_are_counted_not_fatal() {
    let start = Instant::now();
    let mut client = client(false);
    client.handle_message(0, b"\x00\x01garbage", start);
    let mut headers = Headers::new();
    headers.push(
        HeaderName::Via,
        "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKother.1",
    );
    let foreign = Response {
        status: 200,
        reason: "OK".into(),
        headers,
        body: Vec::new(),
    };
    client.handle_message(0, &encode(&foreign), start);
    assert_eq!(client.counters().unparsable, 1);
    assert_eq!(client.counters().stray_responses, 1);
}
