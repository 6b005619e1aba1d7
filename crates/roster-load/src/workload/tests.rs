//! The workload against the in-memory registrar on a virtual clock.

use std::time::{Duration, Instant};

use super::*;
use crate::testing::{client_config, drive, FakeRegistrar};

const NO_MIX: Mix = Mix {
    register: 0,
    unregister: 0,
    query: 0,
    lookup: 0,
};

fn population(users: usize, endpoints: usize) -> Population {
    Population {
        domain: "example.com".into(),
        user_prefix: "u".into(),
        first_user: 0,
        users,
        endpoints,
        password: None,
    }
}

fn schedule(duration_s: u64, expires_s: u32, mix: Mix) -> Schedule {
    Schedule {
        rate_per_s: 100.0,
        arrivals: ArrivalProcess::Uniform,
        duration: Duration::from_secs(duration_s),
        count: None,
        expires_s,
        refresh_at: 0.5,
        mix,
        lookup: LookupMethod::Options,
        seed: 1,
    }
}

fn setup(population: &Population, schedule: Schedule, start: Instant) -> (Client, Workload) {
    let config = client_config("w", false);
    let addresses = vec![SocketAddr::from(([127, 0, 0, 1], 5999))];
    let mut client = Client::new(config, addresses.clone());
    let contacts = Contacts {
        link_addresses: addresses,
        transport_param: None,
    };
    let workload = Workload::new(population, schedule, &contacts, &mut client, start);
    (client, workload)
}

/// Runs `schedule` for `population` against `server` until its end; returns the start, the
/// workload and every completion.
fn run(
    population: &Population,
    schedule: Schedule,
    server: &mut FakeRegistrar,
) -> (Instant, Workload, Vec<Completion>) {
    let start = Instant::now();
    let end = start + schedule.duration;
    let (mut client, mut workload) = setup(population, schedule, start);
    let completions = drive(&mut client, &mut workload, server, (start, end), 10_000);
    (start, workload, completions)
}

fn count(completions: &[Completion], operation: Operation) -> usize {
    completions
        .iter()
        .filter(|c| c.op.operation == operation)
        .count()
}

#[test]
fn storm_registers_every_endpoint_once_at_the_rate() {
    let mut server = FakeRegistrar::new(false, 200);
    let (start, workload, completions) =
        run(&population(3, 2), schedule(1, 3600, NO_MIX), &mut server);
    assert_eq!(count(&completions, Operation::Register), 6);
    assert_eq!(completions.len(), 6, "nothing but the storm in one second");
    let offsets: Vec<u128> = completions
        .iter()
        .map(|c| (c.op.intended_at - start).as_millis())
        .collect();
    assert_eq!(offsets, [0, 10, 20, 30, 40, 50]);
    assert_eq!(workload.registered(), 6);
    let expected = workload
        .ledger()
        .expected_at(start + Duration::from_secs(2));
    assert_eq!(expected.len(), 3);
    assert!(expected.values().all(|bindings| bindings.len() == 2));
}

#[test]
fn bindings_are_refreshed_at_half_their_expiry() {
    let mut server = FakeRegistrar::new(false, 200);
    let (start, workload, completions) =
        run(&population(2, 1), schedule(31, 10, NO_MIX), &mut server);
    // Each endpoint registers at ~0 s and refreshes every 5 s: at 5, 10, ..., 30 s.
    assert_eq!(count(&completions, Operation::Register), 2);
    assert_eq!(count(&completions, Operation::Refresh), 12);
    let first_refresh = completions
        .iter()
        .find(|c| c.op.operation == Operation::Refresh)
        .map(|c| c.op.intended_at - start);
    assert_eq!(first_refresh, Some(Duration::from_secs(5)));
    // Still expected long after the last registration, until its expiry.
    assert_eq!(
        workload
            .ledger()
            .expected_for("sip:u0@example.com", start + Duration::from_secs(31))
            .len(),
        1
    );
}

#[test]
fn count_bounds_the_operations_started() {
    let mut bounded = schedule(10, 3600, NO_MIX);
    bounded.count = Some(4);
    let mut server = FakeRegistrar::new(false, 200);
    let (_, workload, completions) = run(&population(10, 1), bounded, &mut server);
    assert_eq!(completions.len(), 4);
    assert_eq!(workload.counters().started, 4);
}

#[test]
fn mix_unregisters_and_the_ledger_stops_expecting_them() {
    let mix = Mix {
        register: 0,
        unregister: 50,
        query: 25,
        lookup: 25,
    };
    let mut server = FakeRegistrar::new(false, 200);
    let (start, workload, completions) =
        run(&population(20, 1), schedule(2, 3600, mix), &mut server);
    let unregistered = count(&completions, Operation::Unregister);
    assert!(unregistered > 10, "{unregistered}");
    assert!(count(&completions, Operation::Query) > 5);
    assert!(count(&completions, Operation::Lookup) > 5);
    // The ledger expects exactly what the registrar still holds.
    let expected: usize = workload
        .ledger()
        .expected_at(start + Duration::from_secs(2))
        .values()
        .map(Vec::len)
        .sum();
    let held: usize = server.bindings.values().map(|b| b.len()).sum();
    assert_eq!(expected, held);
    assert_eq!(expected, workload.registered());
    assert!(expected < 20);
}

#[test]
fn interval_too_brief_is_retried_at_min_expires() {
    let mut server = FakeRegistrar::new(false, 200);
    server.min_expires_s = 60;
    let (_, workload, completions) = run(&population(1, 1), schedule(1, 30, NO_MIX), &mut server);
    let statuses: Vec<Option<u16>> = completions.iter().map(|c| c.outcome.status()).collect();
    assert_eq!(statuses, [Some(423), Some(200)]);
    assert_eq!(workload.counters().interval_too_brief, 1);
    assert_eq!(
        server
            .bindings
            .get("sip:u0@example.com")
            .map(|b| b.values().copied().collect::<Vec<_>>()),
        Some(vec![60])
    );
}
