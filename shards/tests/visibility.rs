//! The visibility rule under every interleaving of per-shard calls.
//!
//! `SimShards` is a backend whose cross-shard calls do not run when they are made: each becomes
//! a pending call, and a scheduler decides which pending call runs next, as the cores of the
//! real runtime might. The apply loop (one task, applying a log of writes that span shards) and
//! several readers (multi-shard reads through `coord::read_all`) run concurrently on that
//! scheduler. Every read must see each write on all of its shards or on none.
//!
//! Small configurations are explored exhaustively (every order of pending calls); larger ones
//! by a seeded sample of orders. `SimShards::naive` reads like the code before the rule (no
//! stamp check, no fenced fallback): the same search must find torn reads there, which shows
//! the search can fail.
//!
//! `MUSTER_VIS_SEEDS=100000 cargo test -p muster-shards --test visibility` searches longer.
use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use muster_shards::catalog::{HealthCheck, Node};
use muster_shards::command::{Command, KvOp, KvVerb, NodeRegistration};
use muster_shards::coord::{self, Backend, Unavailable};
use muster_shards::route::shard_for;
use muster_shards::session::Session;
use muster_shards::shard::Shard;
use muster_shards::visibility::WriteEpoch;

type Pending = Box<dyn FnOnce(&mut [Shard])>;

struct Sim {
    shards: RefCell<Vec<Shard>>,
    pending: RefCell<Vec<Pending>>,
    epoch: WriteEpoch,
    fence: tokio::sync::RwLock<()>,
    /// Reads like the code before the visibility rule.
    naive: bool,
    fenced_reads: Cell<u64>,
}

#[derive(Clone)]
struct SimShards(Rc<Sim>);

impl SimShards {
    fn new(n: usize, naive: bool) -> SimShards {
        SimShards(Rc::new(Sim {
            shards: RefCell::new((0..n).map(|i| Shard::new(i, n)).collect()),
            pending: RefCell::default(),
            epoch: WriteEpoch::new(),
            fence: tokio::sync::RwLock::new(()),
            naive,
            fenced_reads: Cell::new(0),
        }))
    }
}

/// The result of a pending call, filled in when the scheduler runs it.
struct Slot<R> {
    value: Option<R>,
    waker: Option<Waker>,
}

struct SlotFuture<R>(Rc<RefCell<Slot<R>>>);

impl<R> Future for SlotFuture<R> {
    type Output = Result<R, Unavailable>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.0.borrow_mut();
        match slot.value.take() {
            Some(v) => Poll::Ready(Ok(v)),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Backend for SimShards {
    fn nshards(&self) -> usize {
        self.0.shards.borrow().len()
    }

    fn on_shard<R, F>(&self, s: usize, f: F) -> impl Future<Output = Result<R, Unavailable>>
    where
        R: Send + 'static,
        F: FnOnce(&mut Shard) -> R + Send + 'static,
    {
        let slot = Rc::new(RefCell::new(Slot {
            value: None,
            waker: None,
        }));
        let fill = slot.clone();
        self.0.pending.borrow_mut().push(Box::new(move |shards| {
            let r = f(&mut shards[s]);
            shards[s].take_touched();
            let mut slot = fill.borrow_mut();
            slot.value = Some(r);
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }));
        SlotFuture(slot)
    }

    fn read_stamp(&self) -> Option<u64> {
        if self.0.naive {
            return Some(0);
        }
        self.0.epoch.stamp()
    }

    fn read_still(&self, stamp: u64) -> bool {
        self.0.naive || self.0.epoch.still(stamp)
    }

    fn fenced_write<T, Fut>(&self, step: Fut) -> impl Future<Output = T>
    where
        Fut: Future<Output = T>,
    {
        let sim = self.0.clone();
        async move {
            let _excl = sim.fence.write().await;
            sim.epoch.begin_write();
            let r = step.await;
            sim.epoch.end_write();
            r
        }
    }

    fn fenced_read<R, F>(&self, f: F) -> impl Future<Output = Result<Vec<R>, Unavailable>>
    where
        R: Send + 'static,
        F: Fn(&mut Shard) -> R + Send + Sync + Clone + 'static,
    {
        let this = self.clone();
        async move {
            this.0.fenced_reads.set(this.0.fenced_reads.get() + 1);
            let _shared = this.0.fence.read().await;
            coord::on_all(&this, f).await
        }
    }
}

/// Picks which pending call runs next.
trait Chooser {
    fn choose(&mut self, options: usize) -> usize;
}

/// A seeded pseudo-random order (xorshift; no dependency needed for a test's dice).
struct Seeded(u64);

impl Chooser for Seeded {
    fn choose(&mut self, options: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % options as u64) as usize
    }
}

/// Replays a prefix of choices, then takes the first option; records how many options each
/// decision had, so the caller can enumerate every order (depth-first, like an odometer).
struct Scripted {
    script: Vec<usize>,
    at: usize,
    seen: Vec<usize>,
}

impl Chooser for Scripted {
    fn choose(&mut self, options: usize) -> usize {
        let c = self.script.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        self.seen.push(options);
        c
    }
}

const PREFIX: &str = "t/";

fn key(i: usize) -> String {
    format!("{PREFIX}{i:02}")
}

fn set(k: &str, v: &str) -> KvOp {
    KvOp {
        verb: KvVerb::Set,
        key: k.to_string(),
        value: Bytes::from(v.to_string()),
        flags: 0,
        index: 0,
        session: String::new(),
    }
}

/// A transaction setting every key to `v`: a write that spans every shard.
fn set_all(nkeys: usize, v: &str) -> Command {
    Command::Txn((0..nkeys).map(|i| set(&key(i), v)).collect())
}

/// A transaction locking every key with session `s1`: after it, every key names `s1` as holder
/// until the session is destroyed, which releases them all (on every shard) in one step.
fn lock_all(nkeys: usize, v: &str) -> Command {
    Command::Txn(
        (0..nkeys)
            .map(|i| KvOp {
                verb: KvVerb::Lock,
                session: "s1".to_string(),
                ..set(&key(i), v)
            })
            .collect(),
    )
}

fn node_and_session() -> Vec<Command> {
    vec![
        Command::RegisterNode(NodeRegistration {
            node: Node {
                node: "n1".to_string(),
                address: "127.0.0.1".to_string(),
                ..Node::default()
            },
            checks: vec![HealthCheck {
                check_id: "serfHealth".to_string(),
                status: "passing".to_string(),
                ..HealthCheck::default()
            }],
        }),
        Command::SessionCreate(Session {
            id: "s1".to_string(),
            node: "n1".to_string(),
            node_checks: vec!["serfHealth".to_string()],
            ..Session::default()
        }),
    ]
}

fn delete_all() -> Command {
    Command::Kv(KvOp {
        verb: KvVerb::DeleteTree,
        key: PREFIX.to_string(),
        value: Bytes::new(),
        flags: 0,
        index: 0,
        session: String::new(),
    })
}

/// What a reader saw: the distinct (value, lock holder) pairs under the prefix, and how many keys.
type Seen = (BTreeSet<(Vec<u8>, String)>, usize);

/// Runs the apply loop over `writes` and `readers` readers of `reads` reads each, with the
/// scheduler taking pending calls in `chooser`'s order. Returns every read's observation.
fn run(
    b: &SimShards,
    nkeys: usize,
    writes: Vec<Command>,
    readers: usize,
    reads: usize,
    chooser: &mut dyn Chooser,
) -> Vec<Seen> {
    let mut pool = LocalPool::new();
    let sp = pool.spawner();
    let seen: Rc<RefCell<Vec<Seen>>> = Rc::default();
    {
        let b = b.clone();
        sp.spawn_local(async move {
            let entries = writes
                .into_iter()
                .enumerate()
                .map(|(i, c)| (100 + i as u64, 0, c))
                .collect();
            coord::apply_batch(&b, entries).await.expect("apply");
        })
        .unwrap();
    }
    for _ in 0..readers {
        let (b, seen) = (b.clone(), seen.clone());
        sp.spawn_local(async move {
            for _ in 0..reads {
                let (_, entries) = coord::kv_list(&b, PREFIX).await.expect("read");
                let values: BTreeSet<(Vec<u8>, String)> = entries
                    .iter()
                    .map(|e| (e.value.to_vec(), e.session.clone()))
                    .collect();
                seen.borrow_mut().push((values, entries.len()));
            }
        })
        .unwrap();
    }
    loop {
        pool.run_until_stalled();
        let n = b.0.pending.borrow().len();
        if n == 0 {
            break;
        }
        let pick = chooser.choose(n);
        let call = b.0.pending.borrow_mut().swap_remove(pick);
        let mut shards = b.0.shards.borrow_mut();
        call(&mut shards);
    }
    let out = seen.borrow().clone();
    let _ = nkeys;
    out
}

/// A read is whole if all keys hold one value and holder (one write's), or none exist.
fn torn(seen: &Seen, nkeys: usize) -> bool {
    let (values, count) = seen;
    !((values.len() == 1 && *count == nkeys) || *count == 0)
}

fn prepared(nshards: usize, nkeys: usize, naive: bool) -> SimShards {
    let b = SimShards::new(nshards, naive);
    // The initial state, applied without interleaving.
    let mut pool = LocalPool::new();
    let b2 = b.clone();
    pool.spawner()
        .spawn_local(async move {
            let mut setup = node_and_session();
            setup.push(set_all(nkeys, "v0"));
            let entries = setup
                .into_iter()
                .enumerate()
                .map(|(i, c)| (1 + i as u64, 0, c))
                .collect();
            coord::apply_batch(&b2, entries).await.expect("setup");
        })
        .unwrap();
    loop {
        pool.run_until_stalled();
        let Some(call) = b.0.pending.borrow_mut().pop() else {
            break;
        };
        call(&mut b.0.shards.borrow_mut());
    }
    b
}

/// Keys that land on different shards, so every write here spans all shards.
fn keys_span_shards(nshards: usize, nkeys: usize) {
    let owners: BTreeSet<usize> = (0..nkeys)
        .map(|i| shard_for(key(i).as_bytes(), nshards))
        .collect();
    assert_eq!(owners.len(), nshards, "test keys must cover every shard");
}

/// The apply loop's log: each entry spans every shard (a transaction, a recursive delete, a
/// session destroy releasing locks on every shard).
fn writes() -> Vec<Command> {
    vec![
        set_all(8, "w1"),
        lock_all(8, "w2"),
        Command::SessionDestroy {
            id: "s1".to_string(),
        },
        delete_all(),
        set_all(8, "w3"),
    ]
}

/// Every order of pending calls for the apply loop and two readers on two shards (without the
/// rule the search stops at the first torn read: there are far more orders without the fence).
fn exhaustive(naive: bool) -> (u64, u64) {
    let (nshards, nkeys) = (2, 8);
    keys_span_shards(nshards, nkeys);
    let mut script: Vec<usize> = Vec::new();
    let (mut orders, mut torn_reads) = (0u64, 0u64);
    loop {
        let b = prepared(nshards, nkeys, naive);
        let mut ch = Scripted {
            script: script.clone(),
            at: 0,
            seen: Vec::new(),
        };
        let seen = run(&b, nkeys, writes()[1..4].to_vec(), 2, 1, &mut ch);
        orders += 1;
        torn_reads += seen.iter().filter(|s| torn(s, nkeys)).count() as u64;
        if naive && torn_reads > 0 {
            return (orders, torn_reads);
        }
        // Next order: bump the last decision that still has options left.
        let mut full: Vec<usize> = (0..ch.seen.len())
            .map(|i| script.get(i).copied().unwrap_or(0))
            .collect();
        loop {
            let Some(last) = full.len().checked_sub(1) else {
                return (orders, torn_reads);
            };
            if full[last] + 1 < ch.seen[last] {
                full[last] += 1;
                break;
            }
            full.pop();
        }
        script = full;
    }
}

#[test]
fn no_order_of_calls_shows_part_of_a_write() {
    let (orders, torn_reads) = exhaustive(false);
    eprintln!("{orders} orders searched");
    assert!(
        orders > 100,
        "the search must cover many orders, did {orders}"
    );
    assert_eq!(torn_reads, 0, "torn reads in {orders} orders");
}

#[test]
fn the_search_finds_torn_reads_without_the_rule() {
    let (orders, torn_reads) = exhaustive(true);
    eprintln!("{orders} orders searched, {torn_reads} torn reads");
    assert!(
        torn_reads > 0,
        "reads without the rule must be caught tearing ({orders} orders searched)"
    );
}

fn seeds() -> u64 {
    std::env::var("MUSTER_VIS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

fn sampled(nshards: usize, naive: bool) -> (u64, u64, u64) {
    let nkeys = 8;
    keys_span_shards(nshards, nkeys);
    let (mut reads, mut torn_reads, mut fenced) = (0, 0, 0);
    for seed in 1..=seeds() {
        let b = prepared(nshards, nkeys, naive);
        let mut ch = Seeded(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let seen = run(&b, nkeys, writes(), 3, 4, &mut ch);
        reads += seen.len() as u64;
        torn_reads += seen.iter().filter(|s| torn(s, nkeys)).count() as u64;
        fenced += b.0.fenced_reads.get();
    }
    (reads, torn_reads, fenced)
}

#[test]
fn sampled_orders_on_four_shards_show_no_torn_read() {
    let (reads, torn_reads, fenced) = sampled(4, false);
    assert_eq!(torn_reads, 0, "{torn_reads} of {reads} reads torn");
    assert!(fenced > 0, "the fenced fallback must have been exercised");
}

#[test]
fn sampled_orders_catch_torn_reads_without_the_rule() {
    let (reads, torn_reads, _) = sampled(4, true);
    assert!(torn_reads > 0, "none of {reads} naive reads torn");
}

/// The log above does what the checks assume: the lock takes every key, the destroy frees them.
#[test]
fn the_log_locks_and_releases_every_key() {
    use muster_shards::local::LocalShards;
    let b = LocalShards::new(4);
    let mut log = node_and_session();
    log.push(set_all(8, "v0"));
    log.push(lock_all(8, "w2"));
    let entries = log
        .into_iter()
        .enumerate()
        .map(|(i, c)| (1 + i as u64, 0, c))
        .collect();
    futures::executor::block_on(coord::apply_batch(&b, entries)).expect("apply");
    let (_, held) = futures::executor::block_on(coord::kv_list(&b, PREFIX)).expect("read");
    assert_eq!(held.len(), 8);
    assert!(held
        .iter()
        .all(|e| e.session == "s1" && &e.value[..] == b"w2"));
    let destroy = vec![(10, 0, writes().remove(2))];
    futures::executor::block_on(coord::apply_batch(&b, destroy)).expect("destroy");
    let (_, freed) = futures::executor::block_on(coord::kv_list(&b, PREFIX)).expect("read");
    assert!(freed.iter().all(|e| e.session.is_empty()), "{freed:?}");
}
