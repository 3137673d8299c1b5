//! Model-based property tests of the sharded KV store.
//!
//! Random command sequences run against `LocalShards` (1 to 4 shards) and against `Model`, a
//! deliberately naive reference written straight from Consul's rules: one ordered map of
//! entries, one of tombstones, one table index, no undo logs, no per-shard anything. After every
//! step every observable is compared: each command's result, and a get of every key of the
//! alphabet, listings and key listings of many prefixes, lock delays and session replicas.
//! A second property runs the same sequence on 1 and on 4 shards and compares them directly.
//!
//! Keys come from a small alphabet with '/' so prefixes collide; values are tiny so identical
//! (no-op) writes are frequent; CAS indexes are taken from the current state, from indexes seen
//! earlier (usually stale) or made up.
//!
//! `PROPTEST_CASES=10000 cargo test -p muster-shards --test model` runs a longer search.
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use futures::executor::block_on;
use muster_shards::catalog::{HealthCheck, Node};
use muster_shards::command::{Command, CommandResult, KvOp, KvVerb, NodeRegistration};
use muster_shards::coord;
use muster_shards::kv::KvEntry;
use muster_shards::local::LocalShards;
use muster_shards::route::shard_for;
use muster_shards::session::{Behavior, Session, MAX_LOCK_DELAY_MS};
use proptest::prelude::*;
use proptest::sample::{select, Index};

// ---- The reference model -------------------------------------------------------------------

/// Why a model operation did not apply: a false condition, or an invalid request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fail {
    Refused,
    Invalid,
}

/// A command's result with error texts left out (the model does not restate them).
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Ok,
    Bool(bool),
    TxnOk(Vec<Vec<KvEntry>>),
    /// The op indexes of the failed operations, in order.
    TxnFailed(Vec<usize>),
    SessionCreated(String),
    Error,
}

fn outcome(r: CommandResult) -> Outcome {
    match r {
        CommandResult::Ok => Outcome::Ok,
        CommandResult::Bool(b) => Outcome::Bool(b),
        CommandResult::TxnOk(res) => Outcome::TxnOk(res),
        CommandResult::TxnFailed(errs) => {
            Outcome::TxnFailed(errs.iter().map(|e| e.op_index).collect())
        }
        CommandResult::SessionCreated { id } => Outcome::SessionCreated(id),
        CommandResult::Error(_) => Outcome::Error,
    }
}

#[derive(Debug, Clone)]
struct ModelSession {
    behavior: Behavior,
    lock_delay_ms: u64,
}

#[derive(Debug, Clone, Default)]
struct Model {
    entries: BTreeMap<String, KvEntry>,
    tombstones: BTreeMap<String, u64>,
    /// Raft index of the last change to the KV table.
    table_index: u64,
    /// Raft index of the last change (write or delete) of each key ever changed. Only used to
    /// predict the index a get of a *missing* key reports, which Muster defines per shard.
    changed_at: BTreeMap<String, u64>,
    sessions: BTreeMap<String, ModelSession>,
    nodes: BTreeSet<String>,
    /// Key -> leader clock (ms) until which its lock delay runs.
    lock_delays: BTreeMap<String, u64>,
}

fn without_value(mut e: KvEntry) -> KvEntry {
    e.value = Bytes::new();
    e
}

impl Model {
    fn touch(&mut self, key: &str, idx: u64) {
        self.table_index = idx;
        self.changed_at.insert(key.to_string(), idx);
    }

    /// Stores `e` (value, flags, session and lock index already decided), stamping its indexes;
    /// a write equal in content to the stored entry changes nothing and answers the stored one.
    fn write(&mut self, idx: u64, mut e: KvEntry) -> KvEntry {
        match self.entries.get(&e.key) {
            Some(x)
                if x.value == e.value
                    && x.flags == e.flags
                    && x.session == e.session
                    && x.lock_index == e.lock_index =>
            {
                return x.clone();
            }
            Some(x) => e.create_index = x.create_index,
            None => e.create_index = idx,
        }
        e.modify_index = idx;
        self.touch(&e.key, idx);
        self.entries.insert(e.key.clone(), e.clone());
        e
    }

    fn delete(&mut self, idx: u64, key: &str) {
        if self.entries.remove(key).is_some() {
            self.tombstones.insert(key.to_string(), idx);
            self.touch(key, idx);
        }
    }

    fn under(&self, prefix: &str) -> Vec<KvEntry> {
        self.entries
            .values()
            .filter(|e| e.key.starts_with(prefix))
            .cloned()
            .collect()
    }

    fn exec(&mut self, idx: u64, op: &KvOp) -> Result<Vec<KvEntry>, Fail> {
        let existing = self.entries.get(&op.key).cloned();
        let fresh = |session: String, lock_index: u64| KvEntry {
            key: op.key.clone(),
            value: op.value.clone(),
            flags: op.flags,
            session,
            lock_index,
            ..KvEntry::default()
        };
        let holder = existing
            .as_ref()
            .map(|x| x.session.clone())
            .unwrap_or_default();
        match op.verb {
            KvVerb::Set => Ok(vec![without_value(self.write(idx, fresh(holder, 0)))]),
            KvVerb::Cas => {
                let ok = match &existing {
                    None => op.index == 0,
                    Some(x) => op.index != 0 && op.index == x.modify_index,
                };
                if !ok {
                    return Err(Fail::Refused);
                }
                Ok(vec![without_value(self.write(idx, fresh(holder, 0)))])
            }
            KvVerb::Lock => {
                if op.session.is_empty() || !self.sessions.contains_key(&op.session) {
                    return Err(Fail::Invalid);
                }
                let lock_index = match &existing {
                    None => 1,
                    Some(x) if x.session == op.session => x.lock_index,
                    Some(x) if x.session.is_empty() => x.lock_index + 1,
                    Some(_) => return Err(Fail::Refused),
                };
                let e = fresh(op.session.clone(), lock_index);
                Ok(vec![without_value(self.write(idx, e))])
            }
            KvVerb::Unlock => {
                if op.session.is_empty() {
                    return Err(Fail::Invalid);
                }
                match &existing {
                    Some(x) if x.session == op.session => {
                        let e = fresh(String::new(), x.lock_index);
                        Ok(vec![without_value(self.write(idx, e))])
                    }
                    _ => Err(Fail::Refused),
                }
            }
            KvVerb::Get => existing.map(|x| vec![x]).ok_or(Fail::Refused),
            KvVerb::GetTree => Ok(self.under(&op.key)),
            KvVerb::CheckIndex => match existing {
                Some(x) if x.modify_index == op.index => Ok(vec![without_value(x)]),
                _ => Err(Fail::Refused),
            },
            KvVerb::CheckSession => match existing {
                Some(x) if x.session == op.session => Ok(vec![without_value(x)]),
                _ => Err(Fail::Refused),
            },
            KvVerb::CheckNotExists => match existing {
                Some(_) => Err(Fail::Refused),
                None => Ok(vec![]),
            },
            KvVerb::Delete => {
                self.delete(idx, &op.key);
                Ok(vec![])
            }
            KvVerb::DeleteCas => match existing {
                None => Ok(vec![]),
                Some(x) if x.modify_index == op.index => {
                    self.delete(idx, &op.key);
                    Ok(vec![])
                }
                Some(_) => Err(Fail::Refused),
            },
            KvVerb::DeleteTree => {
                let doomed: Vec<String> = self.under(&op.key).into_iter().map(|e| e.key).collect();
                if !doomed.is_empty() {
                    for k in &doomed {
                        self.entries.remove(k);
                        self.touch(k, idx);
                    }
                    // One tombstone for the whole prefix; none for "" (the table index covers it).
                    if !op.key.is_empty() {
                        self.tombstones.insert(op.key.clone(), idx);
                    }
                }
                Ok(vec![])
            }
        }
    }

    fn apply(&mut self, idx: u64, at_ms: u64, cmd: &Command) -> Outcome {
        match cmd {
            Command::Noop => Outcome::Ok,
            // The host applies restores; the shards answer with an error and change nothing.
            Command::Restore(_) => Outcome::Error,
            Command::Kv(op) => match self.exec(idx, op) {
                Ok(_) => Outcome::Bool(true),
                Err(Fail::Refused) => Outcome::Bool(false),
                Err(Fail::Invalid) => Outcome::Error,
            },
            Command::Txn(ops) => {
                // Run on a copy; keep it only if every op succeeded.
                let mut scratch = self.clone();
                let mut results = Vec::new();
                let mut failed = Vec::new();
                for (i, op) in ops.iter().enumerate() {
                    match scratch.exec(idx, op) {
                        Ok(r) => results.push(r),
                        Err(_) => failed.push(i),
                    }
                }
                if failed.is_empty() {
                    *self = scratch;
                    Outcome::TxnOk(results)
                } else {
                    Outcome::TxnFailed(failed)
                }
            }
            Command::SessionCreate(s) => {
                // Every node in these tests has a passing serfHealth check.
                if !self.nodes.contains(&s.node) {
                    return Outcome::Error;
                }
                let ms = ModelSession {
                    behavior: s.behavior,
                    lock_delay_ms: s.lock_delay_ns / 1_000_000,
                };
                self.sessions.insert(s.id.clone(), ms);
                Outcome::SessionCreated(s.id.clone())
            }
            Command::SessionDestroy { id } => {
                if let Some(s) = self.sessions.remove(id) {
                    let held: Vec<KvEntry> = self
                        .entries
                        .values()
                        .filter(|e| &e.session == id)
                        .cloned()
                        .collect();
                    for e in held {
                        let key = e.key.clone();
                        match s.behavior {
                            Behavior::Release => {
                                self.write(
                                    idx,
                                    KvEntry {
                                        session: String::new(),
                                        ..e
                                    },
                                );
                            }
                            Behavior::Delete => self.delete(idx, &key),
                        }
                        if s.lock_delay_ms > 0 {
                            let until = at_ms + s.lock_delay_ms.min(MAX_LOCK_DELAY_MS);
                            self.lock_delays.insert(key, until);
                        }
                    }
                }
                Outcome::Bool(true)
            }
            Command::RegisterNode(reg) => {
                self.nodes.insert(reg.node.node.clone());
                Outcome::Bool(true)
            }
            Command::DeregisterNode { node } => {
                self.nodes.remove(node);
                Outcome::Bool(true)
            }
            Command::Register(_) | Command::Deregister { .. } => {
                unreachable!("the generator makes no service registrations")
            }
            Command::Config(_) => unreachable!("the generator makes no config entries"),
        }
    }

    /// The index a get reports: the entry's ModifyIndex; for a missing key, the last change
    /// of any key that the same shard (of `n`) owns.
    fn get(&self, key: &str, n: usize) -> (u64, Option<KvEntry>) {
        match self.entries.get(key) {
            Some(e) => (e.modify_index, Some(e.clone())),
            None => {
                let owner = shard_for(key.as_bytes(), n);
                let idx = self
                    .changed_at
                    .iter()
                    .filter(|(k, _)| shard_for(k.as_bytes(), n) == owner)
                    .map(|(_, i)| *i)
                    .max()
                    .unwrap_or(0);
                (idx, None)
            }
        }
    }

    /// Consul's listing index: for "" the table index; else the highest entry or tombstone
    /// index under the prefix, falling back to the table index when there is neither.
    fn listing_index(&self, prefix: &str) -> u64 {
        if prefix.is_empty() {
            return self.table_index;
        }
        let entries = self.under(prefix).iter().map(|e| e.modify_index).max();
        let graves = self
            .tombstones
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, i)| *i)
            .max();
        match entries.max(graves) {
            Some(i) if i != 0 => i,
            _ => self.table_index,
        }
    }

    fn list(&self, prefix: &str) -> (u64, Vec<KvEntry>) {
        (self.listing_index(prefix), self.under(prefix))
    }

    /// Consul's `?keys&separator=`: walk keys in order, cut each after the first separator that
    /// follows the prefix, and skip a cut key equal to the previous cut key.
    fn keys(&self, prefix: &str, sep: &str) -> (u64, Vec<String>) {
        let mut out = Vec::new();
        let mut prev: Option<String> = None;
        for e in self.under(prefix) {
            if sep.is_empty() {
                out.push(e.key);
                continue;
            }
            match e.key[prefix.len()..].find(sep) {
                Some(at) => {
                    let cut = e.key[..prefix.len() + at + sep.len()].to_string();
                    if prev.as_deref() != Some(cut.as_str()) {
                        out.push(cut.clone());
                        prev = Some(cut);
                    }
                }
                None => out.push(e.key),
            }
        }
        (self.listing_index(prefix), out)
    }

    fn lock_delay(&self, key: &str, now_ms: u64) -> u64 {
        self.lock_delays
            .get(key)
            .map_or(0, |until| until.saturating_sub(now_ms))
    }
}

// ---- Generated steps -----------------------------------------------------------------------

const SEGMENTS: [&str; 3] = ["a", "b", "ab"];

/// Every key the generator can produce: 1 to 3 segments, with or without a trailing '/'.
fn alphabet() -> Vec<String> {
    let mut out = vec![];
    let mut level: Vec<String> = vec![String::new()];
    for _ in 0..3 {
        level = level
            .iter()
            .flat_map(|p| {
                SEGMENTS.iter().map(move |s| {
                    if p.is_empty() {
                        s.to_string()
                    } else {
                        format!("{p}/{s}")
                    }
                })
            })
            .collect();
        for k in &level {
            out.push(k.clone());
            out.push(format!("{k}/"));
        }
    }
    out
}

/// Prefixes listed after every step.
const SWEEP_PREFIXES: [&str; 12] = [
    "", "a", "a/", "ab", "ab/", "b", "b/", "a/b", "a/b/", "a/a/", "b/ab/", "ab/b/a",
];

/// How a CAS-like op picks its index when it runs.
#[derive(Debug, Clone)]
enum IdxChoice {
    /// The key's ModifyIndex at the start of the step (0 when missing).
    Current,
    Zero,
    /// One of the indexes seen so far (usually stale).
    Seen(Index),
    Raw(u64),
}

#[derive(Debug, Clone)]
enum SessChoice {
    /// One of the sessions created so far, live or destroyed.
    Known(Index),
    Unknown,
    Empty,
}

#[derive(Debug, Clone)]
struct OpSpec {
    verb: KvVerb,
    key: String,
    value: &'static str,
    flags: u64,
    index: IdxChoice,
    session: SessChoice,
}

#[derive(Debug, Clone)]
enum Step {
    Kv(OpSpec),
    Txn(Vec<OpSpec>),
    Get(String),
    List(String),
    Keys(String, &'static str),
    SessionCreate {
        node_ok: bool,
        behavior: Behavior,
        lock_delay_ms: u64,
    },
    SessionDestroy(SessChoice),
}

fn key() -> BoxedStrategy<String> {
    (
        prop::collection::vec(select(&SEGMENTS[..]), 1..=3),
        any::<bool>(),
    )
        .prop_map(|(segs, slash)| {
            let mut k = segs.join("/");
            if slash {
                k.push('/');
            }
            k
        })
        .boxed()
}

fn prefix() -> BoxedStrategy<String> {
    prop_oneof![
        1 => Just(String::new()),
        3 => key(),
        3 => (key(), any::<Index>()).prop_map(|(k, i)| k[..i.index(k.len() + 1)].to_string()),
    ]
    .boxed()
}

fn idx_choice() -> impl Strategy<Value = IdxChoice> {
    prop_oneof![
        3 => Just(IdxChoice::Current),
        1 => Just(IdxChoice::Zero),
        2 => any::<Index>().prop_map(IdxChoice::Seen),
        1 => (1u64..80).prop_map(IdxChoice::Raw),
    ]
}

fn sess_choice() -> impl Strategy<Value = SessChoice> {
    prop_oneof![
        6 => any::<Index>().prop_map(SessChoice::Known),
        1 => Just(SessChoice::Unknown),
        1 => Just(SessChoice::Empty),
    ]
}

use KvVerb::*;
/// Verbs of a single `/v1/kv` write, repeated for weight.
const KV_VERBS: &[KvVerb] = &[
    Set, Set, Set, Cas, Cas, Lock, Lock, Unlock, Delete, DeleteCas, DeleteTree,
];
/// Verbs of a `/v1/txn` op, repeated for weight.
const TXN_VERBS: &[KvVerb] = &[
    Set,
    Set,
    Set,
    Cas,
    Lock,
    Unlock,
    Get,
    GetTree,
    CheckIndex,
    CheckSession,
    CheckNotExists,
    Delete,
    DeleteTree,
    DeleteCas,
];

fn op_spec(verbs: &'static [KvVerb]) -> impl Strategy<Value = OpSpec> {
    (
        select(verbs),
        key(),
        prefix(),
        select(vec!["", "x", "yy"]),
        select(vec![0u64, 7]),
        idx_choice(),
        sess_choice(),
    )
        .prop_map(|(verb, key, prefix, value, flags, index, session)| OpSpec {
            key: if verb.is_tree() { prefix } else { key },
            verb,
            value,
            flags,
            index,
            session,
        })
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => op_spec(KV_VERBS).prop_map(Step::Kv),
        5 => prop::collection::vec(op_spec(TXN_VERBS), 1..6).prop_map(Step::Txn),
        2 => key().prop_map(Step::Get),
        2 => prefix().prop_map(Step::List),
        2 => (prefix(), select(vec!["", "/"])).prop_map(|(p, s)| Step::Keys(p, s)),
        2 => (
            prop::bool::weighted(0.85),
            select(vec![Behavior::Release, Behavior::Delete]),
            select(vec![0u64, 3_000, 120_000]),
        )
            .prop_map(|(node_ok, behavior, lock_delay_ms)| Step::SessionCreate {
                node_ok,
                behavior,
                lock_delay_ms,
            }),
        1 => sess_choice().prop_map(Step::SessionDestroy),
    ]
}

/// Steps, each with the gap to the next raft index (raft indexes are not dense in practice:
/// other entries, e.g. catalog ones, are interleaved).
fn steps() -> impl Strategy<Value = Vec<(Step, u64)>> {
    prop::collection::vec((step(), 1u64..=3), 1..50)
}

// ---- Running a sequence ----------------------------------------------------------------------

const NODE: &str = "n1";
const T0: u64 = 1_700_000_000_000;

/// What resolves generated choices into concrete commands: indexes and sessions seen so far.
#[derive(Default)]
struct Seen {
    indexes: Vec<u64>,
    sessions: Vec<String>,
}

impl Seen {
    fn resolve(&self, spec: &OpSpec, current: impl Fn(&str) -> u64) -> KvOp {
        let index = match &spec.index {
            IdxChoice::Current => current(&spec.key),
            IdxChoice::Zero => 0,
            IdxChoice::Seen(i) if !self.indexes.is_empty() => *i.get(&self.indexes),
            IdxChoice::Seen(_) => 0,
            IdxChoice::Raw(n) => *n,
        };
        KvOp {
            verb: spec.verb,
            key: spec.key.clone(),
            value: Bytes::from_static(spec.value.as_bytes()),
            flags: spec.flags,
            index,
            session: self.session(&spec.session),
        }
    }

    fn session(&self, c: &SessChoice) -> String {
        match c {
            SessChoice::Known(i) if !self.sessions.is_empty() => i.get(&self.sessions).clone(),
            SessChoice::Known(_) | SessChoice::Unknown => "no-such-session".to_string(),
            SessChoice::Empty => String::new(),
        }
    }

    /// Turns a write step into its command at raft index `idx` (`None` for reads).
    fn command(&mut self, step: &Step, idx: u64, current: impl Fn(&str) -> u64) -> Option<Command> {
        Some(match step {
            Step::Kv(spec) => Command::Kv(self.resolve(spec, &current)),
            Step::Txn(specs) => {
                Command::Txn(specs.iter().map(|s| self.resolve(s, &current)).collect())
            }
            Step::SessionCreate {
                node_ok,
                behavior,
                lock_delay_ms,
            } => {
                let id = format!("sess-{idx}");
                self.sessions.push(id.clone());
                Command::SessionCreate(Session {
                    id,
                    node: if *node_ok { NODE } else { "ghost" }.to_string(),
                    node_checks: vec!["serfHealth".to_string()],
                    behavior: *behavior,
                    lock_delay_ns: lock_delay_ms * 1_000_000,
                    ..Session::default()
                })
            }
            Step::SessionDestroy(c) => Command::SessionDestroy {
                id: self.session(c),
            },
            Step::Get(_) | Step::List(_) | Step::Keys(..) => return None,
        })
    }

    /// Remembers the indexes a result reports, as material for stale CAS indexes.
    fn note(&mut self, r: &Outcome) {
        if let Outcome::TxnOk(res) = r {
            for e in res.iter().flatten() {
                self.indexes.push(e.modify_index);
                self.indexes.push(e.create_index);
            }
        }
    }
}

fn node_registration() -> Command {
    Command::RegisterNode(NodeRegistration {
        node: Node {
            node: NODE.to_string(),
            address: "127.0.0.1".to_string(),
            ..Node::default()
        },
        checks: vec![HealthCheck {
            check_id: "serfHealth".to_string(),
            status: "passing".to_string(),
            ..HealthCheck::default()
        }],
    })
}

fn at_ms(idx: u64) -> u64 {
    T0 + idx * 1_000
}

fn run(b: &LocalShards, idx: u64, cmd: Command) -> Outcome {
    outcome(block_on(coord::apply(b, idx, at_ms(idx), cmd)).unwrap())
}

fn get(b: &LocalShards, key: &str) -> (u64, Option<KvEntry>) {
    block_on(coord::kv_get(b, key)).unwrap()
}

fn list(b: &LocalShards, prefix: &str) -> (u64, Vec<KvEntry>) {
    block_on(coord::kv_list(b, prefix)).unwrap()
}

fn keys(b: &LocalShards, prefix: &str, sep: &str) -> (u64, Vec<String>) {
    block_on(coord::kv_keys(b, prefix, sep)).unwrap()
}

fn lock_delay(b: &LocalShards, n: usize, key: &str, now_ms: u64) -> u64 {
    b.shard(shard_for(key.as_bytes(), n))
        .lock_delay_remaining(key, now_ms)
}

/// Every shard's replica of the session table, as the set of live ids (all must agree).
fn session_ids(b: &LocalShards, n: usize) -> Result<BTreeSet<String>, TestCaseError> {
    let ids =
        |s: usize| -> BTreeSet<String> { b.shard(s).sessions().map().keys().cloned().collect() };
    let first = ids(0);
    for s in 1..n {
        prop_assert_eq!(&ids(s), &first, "session replica of shard {}", s);
    }
    Ok(first)
}

fn table_index(b: &LocalShards, n: usize) -> u64 {
    (0..n).map(|s| b.shard(s).kv().index()).max().unwrap()
}

/// Compares every observable of `b` (n shards) with the model at clock `now_ms`.
fn sweep(
    m: &Model,
    b: &LocalShards,
    n: usize,
    now_ms: u64,
    alphabet: &[String],
) -> Result<(), TestCaseError> {
    for k in alphabet {
        prop_assert_eq!(get(b, k), m.get(k, n), "get {:?}", k);
        prop_assert_eq!(
            lock_delay(b, n, k, now_ms),
            m.lock_delay(k, now_ms),
            "lock delay of {:?}",
            k
        );
    }
    for p in SWEEP_PREFIXES {
        prop_assert_eq!(list(b, p), m.list(p), "list {:?}", p);
        for sep in ["", "/"] {
            prop_assert_eq!(
                keys(b, p, sep),
                m.keys(p, sep),
                "keys {:?} sep {:?}",
                p,
                sep
            );
        }
    }
    prop_assert_eq!(table_index(b, n), m.table_index);
    let live: BTreeSet<String> = m.sessions.keys().cloned().collect();
    prop_assert_eq!(session_ids(b, n)?, live);
    Ok(())
}

fn check_against_model(n: usize, steps: &[(Step, u64)]) -> Result<(), TestCaseError> {
    let alphabet = alphabet();
    let b = LocalShards::new(n);
    let mut m = Model::default();
    let mut seen = Seen::default();
    let mut idx = 1;
    prop_assert_eq!(
        run(&b, idx, node_registration()),
        m.apply(idx, at_ms(idx), &node_registration())
    );
    for (i, (step, gap)) in steps.iter().enumerate() {
        match step {
            Step::Get(k) => prop_assert_eq!(get(&b, k), m.get(k, n), "step {}: get {:?}", i, k),
            Step::List(p) => prop_assert_eq!(list(&b, p), m.list(p), "step {}: list {:?}", i, p),
            Step::Keys(p, sep) => {
                prop_assert_eq!(keys(&b, p, sep), m.keys(p, sep), "step {}: keys {:?}", i, p)
            }
            _ => {
                idx += gap;
                let current = |k: &str| m.entries.get(k).map_or(0, |e| e.modify_index);
                let cmd = seen.command(step, idx, current).expect("a write step");
                let want = m.apply(idx, at_ms(idx), &cmd);
                let got = run(&b, idx, cmd.clone());
                prop_assert_eq!(&got, &want, "step {} at index {}: {:?}", i, idx, cmd);
                seen.note(&got);
                seen.indexes.push(idx);
            }
        }
        sweep(&m, &b, n, at_ms(idx), &alphabet)?;
    }
    Ok(())
}

/// The same sequence on 1 and on 4 shards, compared with each other (no model involved).
fn check_one_vs_four(steps: &[(Step, u64)]) -> Result<(), TestCaseError> {
    let alphabet = alphabet();
    let (b1, b4) = (LocalShards::new(1), LocalShards::new(4));
    let mut seen = Seen::default();
    let mut idx = 1;
    prop_assert_eq!(
        run(&b1, idx, node_registration()),
        run(&b4, idx, node_registration())
    );
    for (i, (step, gap)) in steps.iter().enumerate() {
        match step {
            Step::Get(k) => {
                prop_assert_eq!(get(&b1, k).1, get(&b4, k).1, "step {}: get {:?}", i, k)
            }
            Step::List(p) => {
                prop_assert_eq!(list(&b1, p), list(&b4, p), "step {}: list {:?}", i, p)
            }
            Step::Keys(p, sep) => prop_assert_eq!(
                keys(&b1, p, sep),
                keys(&b4, p, sep),
                "step {}: keys {:?} {:?}",
                i,
                p,
                sep
            ),
            _ => {
                idx += gap;
                let current = |k: &str| get(&b1, k).1.map_or(0, |e| e.modify_index);
                let cmd = seen.command(step, idx, current).expect("a write step");
                let one = run(&b1, idx, cmd.clone());
                let four = run(&b4, idx, cmd.clone());
                prop_assert_eq!(&one, &four, "step {} at index {}: {:?}", i, idx, cmd);
                seen.note(&one);
                seen.indexes.push(idx);
            }
        }
        let now = at_ms(idx);
        for k in &alphabet {
            let (i1, e1) = get(&b1, k);
            let (i4, e4) = get(&b4, k);
            prop_assert_eq!(&e1, &e4, "get {:?}", k);
            // A missing key reports its own shard's table index, which depends on the layout;
            // it can never be ahead of the whole table's.
            if e1.is_some() {
                prop_assert_eq!(i1, i4, "get index of {:?}", k);
            } else {
                prop_assert!(i4 <= i1, "get index of missing {:?}: {} > {}", k, i4, i1);
            }
            prop_assert_eq!(lock_delay(&b1, 1, k, now), lock_delay(&b4, 4, k, now));
        }
        for p in SWEEP_PREFIXES {
            prop_assert_eq!(list(&b1, p), list(&b4, p), "list {:?}", p);
            for sep in ["", "/"] {
                prop_assert_eq!(
                    keys(&b1, p, sep),
                    keys(&b4, p, sep),
                    "keys {:?} {:?}",
                    p,
                    sep
                );
            }
        }
        prop_assert_eq!(table_index(&b1, 1), table_index(&b4, 4));
        prop_assert_eq!(session_ids(&b1, 1)?, session_ids(&b4, 4)?);
    }
    Ok(())
}

/// 256 cases unless `PROPTEST_CASES` says otherwise.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn shards_agree_with_the_model(n in 1usize..=4, steps in steps()) {
        check_against_model(n, &steps)?;
    }

    #[test]
    fn one_shard_agrees_with_four(steps in steps()) {
        check_one_vs_four(&steps)?;
    }
}

/// The model itself, on a few hand-checked facts, so a wrong model cannot silently agree
/// with a wrong implementation.
#[test]
fn model_sanity() {
    let mut m = Model::default();
    let set = |k: &str, v: &'static str| {
        Command::Kv(KvOp {
            value: Bytes::from_static(v.as_bytes()),
            ..KvOp::new(KvVerb::Set, k)
        })
    };
    assert_eq!(m.apply(3, 0, &set("a/b", "x")), Outcome::Bool(true));
    assert_eq!(m.apply(4, 0, &set("a/b", "x")), Outcome::Bool(true));
    assert_eq!(m.entries["a/b"].modify_index, 3);
    assert_eq!(m.apply(5, 0, &set("a/c/d", "y")), Outcome::Bool(true));
    assert_eq!(m.keys("a/", "/"), (5, vec!["a/b".into(), "a/c/".into()]));
    m.apply(6, 0, &Command::Kv(KvOp::new(KvVerb::DeleteTree, "a/c")));
    m.apply(7, 0, &set("z", "1"));
    assert_eq!(m.list("a/c"), (6, vec![]));
    assert_eq!(m.list("a/"), (6, m.list("a/b").1));
    assert_eq!(m.list(""), (7, m.list("").1));
    assert_eq!(m.get("nope", 1).0, 7);
    assert_eq!(alphabet().len(), 2 * (3 + 9 + 27));
}
