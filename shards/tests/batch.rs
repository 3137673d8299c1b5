//! `coord::apply_batch` groups runs of single-shard writes into one call per shard. Whatever
//! the grouping, the outcome must be what applying the same entries one by one gives: the same
//! results and the same state. Checked over random logs that mix KV writes, lock operations,
//! session creation, registrations whose checks go critical (invalidating bound sessions),
//! deregistrations and transactions, split into random batches, on 1 and 3 shards.
use bytes::Bytes;
use futures::executor::block_on;
use muster_shards::catalog::{HealthCheck, Node, Registration, Service};
use muster_shards::command::{Command, CommandResult, KvOp, KvVerb};
use muster_shards::coord;
use muster_shards::image::Image;
use muster_shards::local::LocalShards;
use muster_shards::session::Session;
use proptest::prelude::*;

const NODES: [&str; 3] = ["n1", "n2", "n3"];

fn register(node: &str, check_status: &str, svc: u8) -> Command {
    Command::Register(Box::new(Registration {
        node: Node {
            node: node.into(),
            address: "10.0.0.1".into(),
            ..Node::default()
        },
        service: Some(Service {
            id: format!("web-{svc}"),
            service: "web".into(),
            port: 80,
            ..Service::default()
        }),
        checks: vec![HealthCheck {
            node: node.into(),
            check_id: "chk".into(),
            name: "chk".into(),
            status: check_status.into(),
            ..HealthCheck::default()
        }],
        ..Registration::default()
    }))
}

fn kv(verb: KvVerb, key: u8, session: &str) -> Command {
    let mut op = KvOp::new(verb, format!("k/{key}"));
    op.value = Bytes::from(format!("v{key}"));
    op.session = session.to_string();
    Command::Kv(op)
}

fn command() -> impl Strategy<Value = Command> {
    let node = proptest::sample::select(NODES.to_vec());
    let sid = proptest::sample::select(vec!["s-n1", "s-n2", "s-n3"]);
    prop_oneof![
        3 => (0u8..8).prop_map(|k| kv(KvVerb::Set, k, "")),
        1 => (0u8..8).prop_map(|k| kv(KvVerb::Delete, k, "")),
        2 => ((0u8..8), sid.clone()).prop_map(|(k, s)| kv(KvVerb::Lock, k, s)),
        1 => ((0u8..8), sid.clone()).prop_map(|(k, s)| kv(KvVerb::Unlock, k, s)),
        3 => (node.clone(), prop::bool::ANY, 0u8..3).prop_map(|(n, ok, svc)| {
            register(n, if ok { "passing" } else { "critical" }, svc)
        }),
        1 => node.clone().prop_map(session_for),
        1 => node.clone().prop_map(|n| Command::DeregisterNode { node: n.into() }),
        1 => (0u8..8, 0u8..8).prop_map(|(a, b)| {
            let mut x = KvOp::new(KvVerb::Set, format!("k/{a}"));
            x.value = Bytes::from_static(b"t");
            let mut y = KvOp::new(KvVerb::Set, format!("k/{b}"));
            y.value = Bytes::from_static(b"u");
            Command::Txn(vec![x, y])
        }),
    ]
}

/// One session per node, bound to its check, so a critical check invalidates it.
fn session_for(node: &str) -> Command {
    Command::SessionCreate(Session {
        id: format!("s-{node}"),
        node: node.into(),
        node_checks: vec!["chk".into()],
        ..Session::default()
    })
}

fn state(b: &LocalShards, n: usize) -> Image {
    Image::merge((0..n).map(|i| Image::of_shard(&b.shard(i))).collect())
}

fn one_by_one(log: &[Command], n: usize) -> (Vec<CommandResult>, Image) {
    let b = LocalShards::new(n);
    let results = log
        .iter()
        .enumerate()
        .map(|(i, c)| block_on(coord::apply(&b, i as u64 + 1, 1_000, c.clone())).unwrap())
        .collect();
    (results, state(&b, n))
}

fn batched(log: &[Command], cuts: &[usize], n: usize) -> (Vec<CommandResult>, Image) {
    let b = LocalShards::new(n);
    let mut results = Vec::new();
    let mut start = 0;
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (log.len() + 1)).collect();
    bounds.push(log.len());
    bounds.sort_unstable();
    for end in bounds {
        if end <= start {
            continue;
        }
        let entries = (start..end)
            .map(|i| (i as u64 + 1, 1_000, log[i].clone()))
            .collect();
        results.extend(block_on(coord::apply_batch(&b, entries)).unwrap());
        start = end;
    }
    (results, state(&b, n))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn batches_equal_one_by_one(
        log in proptest::collection::vec(command(), 1..60),
        cuts in proptest::collection::vec(0usize..64, 0..4),
        n in prop::sample::select(vec![1usize, 3]),
    ) {
        let (want_results, want_state) = one_by_one(&log, n);
        let (got_results, got_state) = batched(&log, &cuts, n);
        prop_assert_eq!(got_results, want_results);
        prop_assert_eq!(got_state, want_state);
    }
}
