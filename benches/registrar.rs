//! The registrar rules on a REGISTER: the stateless front, the apply step, and both together
//! with the response, on a registry already holding 10,000 AORs.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use roster_benches::typical_register;
use roster_registrar::{
    Action, CommandOutcome, Directory, Front, FrontConfig, Policy, Registry, RequestContext,
    Transport,
};
use roster_sip::{parse_message, Message, Request};

const NOW_MS: u64 = 1_795_378_472_000;
const AORS: u32 = 10_000;

fn front() -> Front {
    Front::new(
        FrontConfig {
            domains: vec!["example.com".into()],
            policy: Policy::default(),
            open_directory: true,
            server: "bench".into(),
            own_hosts: Vec::new(),
            trusted: Default::default(),
        },
        Directory::default(),
        None,
    )
}

fn request(n: u32, cseq: u32) -> Request {
    match parse_message(typical_register(n, cseq).as_bytes()) {
        Ok(Message::Request(request)) => request,
        _ => panic!("typical REGISTER parses"),
    }
}

fn context() -> RequestContext {
    RequestContext {
        now_ms: NOW_MS,
        transport: Transport::Udp,
        source: "192.0.2.10:5060".parse().expect("address"),
    }
}

fn populated() -> (Front, Registry) {
    let mut front = front();
    let mut registry = Registry::new(Policy::default());
    for n in 0..AORS {
        if let Action::Apply { command, .. } = front.handle_request(&request(n, 1), &context()) {
            registry.apply(&command, NOW_MS);
        }
    }
    (front, registry)
}

fn rules(c: &mut Criterion) {
    let (mut front, mut registry) = populated();
    let refresh = request(4242, 2);
    let mut group = c.benchmark_group("registrar");
    group.bench_function("front_register", |b| {
        b.iter(|| front.handle_request(std::hint::black_box(&refresh), &context()))
    });
    let Action::Apply { command, reply } = front.handle_request(&refresh, &context()) else {
        panic!("refresh is applied");
    };
    let mut cseq_clock = NOW_MS;
    group.bench_function("apply_refresh", |b| {
        b.iter_batched(
            || {
                // A fresh Call-ID each time so the CSeq rule never refuses.
                cseq_clock += 1;
                let mut command = command.clone();
                if let roster_registrar::Command::Register(register) = &mut command {
                    register.call_id = format!("bench-{cseq_clock}");
                }
                command
            },
            |command| registry.apply(&command, NOW_MS),
            BatchSize::SmallInput,
        )
    });
    // Outside the closure: criterion calls it again for each phase, and the CSeq must keep
    // rising across all of them.
    let mut cseq = 10;
    group.bench_function("register_end_to_end", |b| {
        b.iter(|| {
            cseq += 1;
            let request = request(4243, cseq);
            let Action::Apply { command, reply } = front.handle_request(&request, &context())
            else {
                panic!("applied");
            };
            let CommandOutcome::Registered { bindings, .. } = registry.apply(&command, NOW_MS)
            else {
                panic!("registered");
            };
            let response = front.answer_register(&request, &reply, Ok(&bindings), NOW_MS);
            let mut out = Vec::with_capacity(1024);
            response.encode(&mut out);
            out.len()
        })
    });
    drop(reply);
    group.finish();
}

criterion_group!(benches, rules);
criterion_main!(benches);
