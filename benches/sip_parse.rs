//! Parsing and encoding a typical REGISTER.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use roster_benches::typical_register;
use roster_sip::{parse_message, Message};

fn parse(c: &mut Criterion) {
    let text = typical_register(42, 1);
    let bytes = text.as_bytes();
    let mut group = c.benchmark_group("sip");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("parse_register", |b| {
        b.iter(|| parse_message(std::hint::black_box(bytes)))
    });
    group.bench_function("parse_register_and_typed_headers", |b| {
        b.iter(|| {
            let Ok(Message::Request(request)) = parse_message(std::hint::black_box(bytes)) else {
                panic!("typical REGISTER parses");
            };
            let headers = &request.headers;
            (
                headers.top_via().is_ok(),
                headers.from().is_ok(),
                headers.to().is_ok(),
                headers.cseq().is_ok(),
                headers.contacts().is_ok(),
                headers.expires().is_ok(),
            )
        })
    });
    let Ok(message) = parse_message(bytes) else {
        panic!("typical REGISTER parses");
    };
    group.bench_function("encode_register", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            out.clear();
            message.encode(&mut out);
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
