//! The DNS responder without sockets: decode -> answer -> encode with `muster::dns::answer`
//! on a view of 50,000 instances over 1,000 services (50 each, on 5,000 nodes), the W1
//! design point. Queries cycle over every service:
//!
//! - `plain_udp`: no EDNS, as dnsperf sends by default: 3 shuffled records
//!   (`udp_answer_limit`), SRV with the additional A records;
//! - `edns_4096`: all 50 instances (SRV answers cut to 4,096 bytes);
//! - `tcp`: all 50 instances;
//! - `nxdomain`: unknown services (SOA in the authority section);
//! - `view_update`: replacing one service's 50 instances (what a health change costs).
//!
//! `cargo bench --bench dns -- --quick` for a fast pass.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use muster::dns::{answer, DnsSettings, DnsView, Instance, Transport, MAX_UDP_PAYLOAD};

// The allocator of the `muster` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SERVICES: usize = 1_000;
const PER_SERVICE: usize = 50;
const NODES: usize = 5_000;

fn instance(service: usize, i: usize) -> Instance {
    let node = (service * PER_SERVICE + i) % NODES;
    Instance {
        node: format!("node-{node:04}"),
        node_address: format!("10.{}.{}.{}", node / 65536, (node / 256) % 256, node % 256),
        service_id: format!("svc-{service:04}-{i}"),
        service: format!("svc-{service:04}"),
        port: 8000 + i as u16,
        tags: vec!["v1".into(), format!("zone-{}", i % 3)],
        ..Instance::default()
    }
}

fn view() -> DnsView {
    let mut v = DnsView::new("dc1", "consul.", None);
    for s in 0..SERVICES {
        let insts = (0..PER_SERVICE).map(|i| instance(s, i)).collect();
        v.set_service(&format!("svc-{s:04}"), insts);
    }
    v
}

fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn queries(qtype: RecordType, edns: Option<u16>, known: bool) -> Vec<Vec<u8>> {
    (0..SERVICES)
        .map(|s| {
            let name = if known {
                format!("svc-{s:04}.service.consul.")
            } else {
                format!("missing-{s:04}.service.consul.")
            };
            query(&name, qtype, edns)
        })
        .collect()
}

fn respond(c: &mut Criterion) {
    let view = view();
    let cfg = DnsSettings::default();
    let udp = Transport::Udp {
        max_size: MAX_UDP_PAYLOAD,
    };
    let mut g = c.benchmark_group("dns_answer");
    g.throughput(Throughput::Elements(1));
    let cases = [
        ("plain_udp", RecordType::A, None, udp, true),
        ("plain_udp", RecordType::SRV, None, udp, true),
        ("edns_4096", RecordType::A, Some(4096), udp, true),
        ("edns_4096", RecordType::SRV, Some(4096), udp, true),
        ("tcp", RecordType::A, None, Transport::Tcp, true),
        ("tcp", RecordType::SRV, None, Transport::Tcp, true),
        ("nxdomain", RecordType::A, None, udp, false),
    ];
    for (label, qtype, edns, transport, known) in cases {
        let qs = queries(qtype, edns, known);
        let mut i = 0;
        g.bench_function(BenchmarkId::new(label, qtype), |b| {
            b.iter(|| {
                i = (i + 1) % qs.len();
                black_box(answer(&view, &cfg, black_box(&qs[i]), transport))
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("dns_view");
    g.throughput(Throughput::Elements(PER_SERVICE as u64));
    let mut view = view;
    let fresh: Vec<Vec<Instance>> = (0..16)
        .map(|s| (0..PER_SERVICE).map(|i| instance(s, i)).collect())
        .collect();
    let mut i = 0;
    g.bench_function("set_service_50", |b| {
        b.iter(|| {
            i = (i + 1) % fresh.len();
            view.set_service(&format!("svc-{i:04}"), fresh[i].clone());
        })
    });
    g.finish();
}

criterion_group!(benches, respond);
criterion_main!(benches);
