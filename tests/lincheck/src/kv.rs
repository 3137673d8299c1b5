//! The sequential model of Muster's KV store (an ordered map key -> value and flags) and the
//! entry point that checks a recorded [`History`] against it.
//!
//! Keys and values are interned to small integers so that a model state is a short vector
//! (one slot per key that occurs anywhere in the history, in key order; 0 = absent) that is
//! cheap to copy, hash and compare in the search's memo.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use thiserror::Error;

use crate::history::{History, Op, Record, Ret, TxnOp, TxnRet, Val};
use crate::wgl::{self, Event, Model, Verdict};

#[derive(Debug, Error)]
pub enum HistoryError {
    /// The result does not fit the op (`what` shows both).
    #[error("record {index}: {what}")]
    Mismatch { index: usize, what: String },
    #[error("record {index}: returns at {ret} before its call at {call}")]
    Time { index: usize, call: u64, ret: u64 },
    #[error("history has {0} keys; the model handles at most 65535")]
    TooManyKeys(usize),
}

type K = u16;
type V = u32;
const ABSENT: V = 0;

#[derive(Clone, Debug)]
enum COp {
    Get(K),
    Put(K, V),
    Cas(K, V, V),
    Delete(K),
    List(usize),
    Txn(Vec<CTxnOp>),
}

#[derive(Clone, Debug)]
enum CTxnOp {
    Set(K, V),
    Cas(K, V, V),
    Get(K),
    Delete(K),
}

#[derive(Clone, Debug)]
enum CRet {
    Value(V),
    Done(bool),
    List(Vec<(K, V)>),
    Committed(Vec<V>),
    Aborted(usize),
}

/// An operation and what it returned (`None`: unknown).
#[derive(Clone, Debug)]
pub struct Step {
    op: COp,
    ret: Option<CRet>,
}

/// The KV model of one compiled history.
pub struct KvModel {
    init: Vec<V>,
    /// For each distinct prefix of a `List`, the keys under it, in key order.
    prefixes: Vec<Vec<K>>,
}

impl KvModel {
    fn txn(&self, state: &[V], ops: &[CTxnOp]) -> (Result<Vec<V>, usize>, Vec<V>) {
        let mut s = state.to_vec();
        let mut reads = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match *op {
                CTxnOp::Set(k, v) => s[k as usize] = v,
                CTxnOp::Cas(k, v, e) => {
                    if s[k as usize] != e {
                        return (Err(i), state.to_vec());
                    }
                    s[k as usize] = v;
                }
                CTxnOp::Get(k) => {
                    if s[k as usize] == ABSENT {
                        return (Err(i), state.to_vec());
                    }
                    reads.push(s[k as usize]);
                }
                CTxnOp::Delete(k) => s[k as usize] = ABSENT,
            }
        }
        (Ok(reads), s)
    }
}

impl Model for KvModel {
    type State = Vec<V>;
    type Op = Step;

    fn init(&self) -> Vec<V> {
        self.init.clone()
    }

    fn step(&self, s: &Vec<V>, step: &Step) -> Option<Vec<V>> {
        let with = |k: K, v: V| {
            let mut n = s.clone();
            n[k as usize] = v;
            n
        };
        match (&step.op, &step.ret) {
            (COp::Get(k), Some(CRet::Value(v))) => (s[*k as usize] == *v).then(|| s.clone()),
            (COp::Get(_), _) => Some(s.clone()),
            (COp::Put(k, v), None | Some(CRet::Done(true))) => Some(with(*k, *v)),
            (COp::Cas(k, v, e), ret) => {
                let ok = s[*k as usize] == *e;
                match ret {
                    Some(CRet::Done(b)) if *b != ok => None,
                    _ if ok => Some(with(*k, *v)),
                    _ => Some(s.clone()),
                }
            }
            (COp::Delete(k), None | Some(CRet::Done(true))) => Some(with(*k, ABSENT)),
            (COp::List(p), Some(CRet::List(got))) => {
                let mut it = got.iter();
                for &k in &self.prefixes[*p] {
                    let v = s[k as usize];
                    if v != ABSENT && it.next() != Some(&(k, v)) {
                        return None;
                    }
                }
                it.next().is_none().then(|| s.clone())
            }
            (COp::List(_), _) => Some(s.clone()),
            (COp::Txn(ops), ret) => {
                let (res, next) = self.txn(s, ops);
                match (ret, res) {
                    (None, _) => Some(next),
                    (Some(CRet::Committed(want)), Ok(got)) if *want == got => Some(next),
                    (Some(CRet::Aborted(want)), Err(got)) if *want == got => Some(next),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// Interning tables of one history.
struct Tables {
    keys: Vec<String>,
    key_ids: HashMap<String, K>,
    vals: Vec<Val>,
    val_ids: HashMap<Val, V>,
    prefixes: Vec<String>,
    prefix_ids: HashMap<String, usize>,
}

impl Tables {
    fn new(h: &History) -> Result<Tables, HistoryError> {
        // Every key named anywhere, results included: a key in a result that nothing wrote
        // gets a slot that stays absent, so that result can never be matched.
        let mut keys = BTreeSet::new();
        let add_op = |op: &Op, keys: &mut BTreeSet<String>| match op {
            Op::Get { key } | Op::Put { key, .. } | Op::Cas { key, .. } | Op::Delete { key } => {
                keys.insert(key.clone());
            }
            Op::List { .. } => {}
            Op::Txn(ops) => {
                for o in ops {
                    let (TxnOp::Set { key, .. }
                    | TxnOp::Cas { key, .. }
                    | TxnOp::Get { key }
                    | TxnOp::Delete { key }) = o;
                    keys.insert(key.clone());
                }
            }
        };
        for (k, _) in &h.initial {
            keys.insert(k.clone());
        }
        for r in &h.records {
            add_op(&r.op, &mut keys);
            if let Some((_, Ret::List(l))) = &r.ret {
                keys.extend(l.iter().map(|(k, _)| k.clone()));
            }
        }
        if keys.len() > K::MAX as usize {
            return Err(HistoryError::TooManyKeys(keys.len()));
        }
        let keys: Vec<String> = keys.into_iter().collect();
        let key_ids = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i as K))
            .collect();
        Ok(Tables {
            keys,
            key_ids,
            vals: vec![Val::new("<absent>", 0)],
            val_ids: HashMap::new(),
            prefixes: Vec::new(),
            prefix_ids: HashMap::new(),
        })
    }

    fn k(&self, key: &str) -> K {
        self.key_ids[key]
    }

    fn v(&mut self, v: &Val) -> V {
        if let Some(&id) = self.val_ids.get(v) {
            return id;
        }
        let id = self.vals.len() as V;
        self.vals.push(v.clone());
        self.val_ids.insert(v.clone(), id);
        id
    }

    fn opt(&mut self, v: &Option<Val>) -> V {
        v.as_ref().map_or(ABSENT, |v| self.v(v))
    }

    fn prefix(&mut self, p: &str) -> usize {
        if let Some(&id) = self.prefix_ids.get(p) {
            return id;
        }
        let id = self.prefixes.len();
        self.prefixes.push(p.to_string());
        self.prefix_ids.insert(p.to_string(), id);
        id
    }

    fn compile(&mut self, index: usize, r: &Record) -> Result<Step, HistoryError> {
        let op = match &r.op {
            Op::Get { key } => COp::Get(self.k(key)),
            Op::Put { key, val } => COp::Put(self.k(key), self.v(val)),
            Op::Cas { key, val, expect } => COp::Cas(self.k(key), self.v(val), self.opt(expect)),
            Op::Delete { key } => COp::Delete(self.k(key)),
            Op::List { prefix } => COp::List(self.prefix(prefix)),
            Op::Txn(ops) => COp::Txn(
                ops.iter()
                    .map(|o| match o {
                        TxnOp::Set { key, val } => CTxnOp::Set(self.k(key), self.v(val)),
                        TxnOp::Cas { key, val, expect } => {
                            CTxnOp::Cas(self.k(key), self.v(val), self.opt(expect))
                        }
                        TxnOp::Get { key } => CTxnOp::Get(self.k(key)),
                        TxnOp::Delete { key } => CTxnOp::Delete(self.k(key)),
                    })
                    .collect(),
            ),
        };
        let Some((t, ret)) = &r.ret else {
            return Ok(Step { op, ret: None });
        };
        if *t < r.call {
            return Err(HistoryError::Time {
                index,
                call: r.call,
                ret: *t,
            });
        }
        let bad = || HistoryError::Mismatch {
            index,
            what: format!("{:?} cannot return {ret:?}", r.op),
        };
        let ret = match (&r.op, ret) {
            (Op::Get { .. }, Ret::Value(v)) => CRet::Value(self.opt(v)),
            (Op::Put { .. } | Op::Cas { .. } | Op::Delete { .. }, Ret::Done(b)) => CRet::Done(*b),
            (Op::List { .. }, Ret::List(l)) => {
                CRet::List(l.iter().map(|(k, v)| (self.k(k), self.v(v))).collect())
            }
            (Op::Txn(ops), Ret::Txn(TxnRet::Committed { reads })) => {
                let gets = ops
                    .iter()
                    .filter(|o| matches!(o, TxnOp::Get { .. }))
                    .count();
                if gets != reads.len() {
                    return Err(bad());
                }
                CRet::Committed(reads.iter().map(|v| self.v(v)).collect())
            }
            (Op::Txn(ops), Ret::Txn(TxnRet::Aborted { first_failed })) => {
                if *first_failed >= ops.len() {
                    return Err(bad());
                }
                CRet::Aborted(*first_failed)
            }
            _ => return Err(bad()),
        };
        Ok(Step { op, ret: Some(ret) })
    }
}

/// The result of checking one history.
#[derive(Debug)]
pub struct Report {
    pub linearizable: Option<bool>,
    /// Operations checked (unknown-outcome reads are left out: they cannot matter).
    pub ops: usize,
    /// Of those, operations whose outcome was unknown.
    pub unknown: usize,
    pub elapsed: Duration,
    pub steps: u64,
    pub memo: usize,
    /// For a history that is not linearizable: where the search got stuck, readably.
    pub explanation: Option<String>,
}

impl Report {
    pub fn summary(&self) -> String {
        let verdict = match self.linearizable {
            Some(true) => "linearizable",
            Some(false) => "NOT linearizable",
            None => "undecided (time budget exceeded)",
        };
        format!(
            "{verdict}: {} ops ({} unknown outcome), checked in {:.3}s ({} steps, {} memoized states)",
            self.ops,
            self.unknown,
            self.elapsed.as_secs_f64(),
            self.steps,
            self.memo
        )
    }
}

/// Checks `history` against the KV model, giving up (`linearizable: None`) after `budget`.
pub fn check_history(history: &History, budget: Duration) -> Result<Report, HistoryError> {
    let mut t = Tables::new(history)?;
    let mut init = vec![ABSENT; t.keys.len()];
    for (k, v) in &history.initial {
        init[t.k(k) as usize] = t.v(v);
    }
    let mut events = Vec::new();
    let mut origin = Vec::new();
    for (i, r) in history.records.iter().enumerate() {
        if r.ret.is_none() && !r.op.writes() {
            continue;
        }
        let step = t.compile(i, r)?;
        events.push(Event {
            op: step,
            call: r.call,
            ret: r.ret.as_ref().map(|(t, _)| *t),
        });
        origin.push(i);
    }
    let prefixes = t
        .prefixes
        .iter()
        .map(|p| {
            t.keys
                .iter()
                .enumerate()
                .filter(|(_, k)| k.starts_with(p.as_str()))
                .map(|(i, _)| i as K)
                .collect()
        })
        .collect();
    let model = KvModel { init, prefixes };
    let out = wgl::check(&model, &events, budget);
    let explanation = match &out.verdict {
        Verdict::NotLinearizable(f) => Some(explain(history, &t, &origin, &events, f)),
        _ => None,
    };
    Ok(Report {
        linearizable: match out.verdict {
            Verdict::Linearizable => Some(true),
            Verdict::NotLinearizable(_) => Some(false),
            Verdict::Unknown => None,
        },
        ops: events.len(),
        unknown: events.iter().filter(|e| e.ret.is_none()).count(),
        elapsed: out.elapsed,
        steps: out.steps,
        memo: out.memo,
        explanation,
    })
}

fn show(r: &Record) -> String {
    let ret = match &r.ret {
        Some((t, ret)) => format!("-> {ret:?} [{}..{}]", r.call, t),
        None => format!("-> unknown [{}..]", r.call),
    };
    format!("client {} {:?} {ret}", r.client, r.op)
}

fn explain(
    h: &History,
    t: &Tables,
    origin: &[usize],
    events: &[Event<Step>],
    f: &wgl::Failure<Vec<V>>,
) -> String {
    let mut s = String::new();
    let stuck = &h.records[origin[f.stuck]];
    let _ = writeln!(
        s,
        "no linearization: after {} ops, none of the pending ops can come next before this \
         one returns:\n  #{} {}",
        f.longest.len(),
        origin[f.stuck],
        show(stuck)
    );
    let state: BTreeMap<&str, &Val> = f
        .state
        .iter()
        .enumerate()
        .filter(|(_, v)| **v != ABSENT)
        .map(|(k, v)| (t.keys[k].as_str(), &t.vals[*v as usize]))
        .collect();
    let _ = writeln!(s, "state then: {state:?}");
    let _ = writeln!(s, "last ops of the longest linearization found:");
    for &e in f.longest.iter().rev().take(8).rev() {
        let _ = writeln!(s, "  #{} {}", origin[e], show(&h.records[origin[e]]));
    }
    let done: std::collections::HashSet<usize> = f.longest.iter().copied().collect();
    let end = h.records[origin[f.stuck]]
        .ret
        .as_ref()
        .map_or(u64::MAX, |(t, _)| *t);
    let _ = writeln!(s, "ops not linearized that were called before it returned:");
    let mut n = 0;
    for (e, ev) in events.iter().enumerate() {
        if !done.contains(&e) && e != f.stuck && ev.call <= end {
            n += 1;
            if n <= 12 {
                let _ = writeln!(s, "  #{} {}", origin[e], show(&h.records[origin[e]]));
            }
        }
    }
    if n > 12 {
        let _ = writeln!(s, "  ... and {} more", n - 12);
    }
    s
}
