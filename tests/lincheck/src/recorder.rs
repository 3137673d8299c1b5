//! Records a concurrent history against real servers over HTTP: client threads (one `ureq`
//! agent each) issue random KV operations and note, on one monotonic clock, when each was
//! invoked and when it completed, and what it returned.
//!
//! The recorder is not tied to one process: client `i` talks to `targets[i % targets.len()]`,
//! and [`Recorder::run`] can be called again after the servers were killed, restarted,
//! partitioned or replaced; the history goes on, with the clients' state (their random
//! streams, the indexes they read) kept across runs.
//!
//! Outcomes: a request that never reached a server (connection refused) is left out; a read
//! that failed is left out (it changed nothing); a write that failed in any other way
//! (transport error, timeout, an HTTP status other than its documented answers) is recorded
//! with an unknown outcome, since it may have been applied.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::history::{History, Op, Record, Ret, TxnOp, TxnRet, Val};

/// Relative weights of the operations one client issues.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mix {
    pub get: u32,
    pub put: u32,
    /// CAS with the index this client last read for the key (`?cas=0` if it read none).
    pub cas: u32,
    pub delete: u32,
    /// Recursive read of the whole prefix or of one of its two sub-prefixes.
    pub list: u32,
    /// Recursive read as a blocking query, with the index of this client's previous one.
    pub blocking_list: u32,
    /// `/v1/txn` of random set/cas/get/delete ops on distinct keys.
    pub txn: u32,
    /// `/v1/txn` setting every key of the workload (the torn-read pattern).
    pub txn_all: u32,
}

impl Mix {
    /// Every operation kind.
    pub const MIXED: Mix = Mix {
        get: 4,
        put: 3,
        cas: 2,
        delete: 1,
        list: 2,
        blocking_list: 1,
        txn: 3,
        txn_all: 1,
    };
    /// Transactions over every key.
    pub const TXN_ALL_WRITER: Mix = Mix {
        txn_all: 1,
        ..Mix::NONE
    };
    /// Recursive reads, plain and blocking.
    pub const LIST_READER: Mix = Mix {
        list: 2,
        blocking_list: 1,
        ..Mix::NONE
    };
    pub const NONE: Mix = Mix {
        get: 0,
        put: 0,
        cas: 0,
        delete: 0,
        list: 0,
        blocking_list: 0,
        txn: 0,
        txn_all: 0,
    };

    fn pick(&self, rng: &mut fastrand::Rng) -> Kind {
        let w = [
            (self.get, Kind::Get),
            (self.put, Kind::Put),
            (self.cas, Kind::Cas),
            (self.delete, Kind::Delete),
            (self.list, Kind::List),
            (self.blocking_list, Kind::BlockingList),
            (self.txn, Kind::Txn),
            (self.txn_all, Kind::TxnAll),
        ];
        let total: u32 = w.iter().map(|(n, _)| n).sum();
        assert!(total > 0, "a mix with no operations");
        let mut x = rng.u32(0..total);
        for (n, k) in w {
            if x < n {
                return k;
            }
            x -= n;
        }
        unreachable!()
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Get,
    Put,
    Cas,
    Delete,
    List,
    BlockingList,
    Txn,
    TxnAll,
}

/// What the clients do.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Every key is under this prefix (give each history its own).
    pub prefix: String,
    /// Number of keys, split over the sub-prefixes `a/` and `b/`.
    pub keys: usize,
    /// Client `i` uses `mixes[i % mixes.len()]`.
    pub mixes: Vec<Mix>,
    pub clients: usize,
    /// Operations in a random `txn` (`txn_all` has one per key).
    pub txn_ops: (usize, usize),
    /// `wait` of blocking reads: short, so that a quiet moment does not park a client long.
    pub blocking_wait: Duration,
    /// Upper bound of one HTTP exchange; past it the op's outcome is unknown.
    pub timeout: Duration,
    pub seed: u64,
}

impl Workload {
    pub fn new(prefix: &str, clients: usize, keys: usize, seed: u64) -> Workload {
        Workload {
            prefix: prefix.to_string(),
            keys,
            mixes: vec![Mix::MIXED],
            clients,
            txn_ops: (2, 6),
            blocking_wait: Duration::from_millis(50),
            timeout: Duration::from_secs(10),
            seed,
        }
    }

    pub fn key(&self, i: usize) -> String {
        format!(
            "{}{}/k{i:02}",
            self.prefix,
            if i.is_multiple_of(2) { "a" } else { "b" }
        )
    }
}

/// When a run stops: whichever comes first.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Operations issued in this run, all clients together.
    pub max_ops: usize,
    pub max_time: Duration,
}

/// What one run did.
#[derive(Clone, Debug, Default)]
pub struct RunStats {
    pub completed: usize,
    pub unknown: usize,
    /// Requests that never reached a server, and failed reads: left out of the history.
    pub dropped: usize,
    /// Transport errors (connection reset, timeout) on any request.
    pub transport_errors: usize,
    /// Unexpected HTTP answers (the first few), e.g. a 500 to a PUT.
    pub http_errors: Vec<String>,
    pub elapsed: Duration,
}

/// Per-client state that lasts across runs.
struct ClientState {
    rng: fastrand::Rng,
    /// The value and `ModifyIndex` this client last read for each key (for CAS).
    seen: HashMap<String, Option<(Val, u64)>>,
    /// `X-Consul-Index` of this client's previous recursive read (for blocking reads).
    list_index: u64,
}

pub struct Recorder {
    w: Workload,
    keys: Vec<String>,
    origin: Instant,
    records: Mutex<Vec<Record>>,
    next_val: AtomicU64,
    clients: Mutex<Vec<ClientState>>,
    /// Operations issued in the current run, for [`Recorder::issued`].
    issued: AtomicUsize,
}

enum Outcome {
    Done(Ret),
    /// A write that may or may not have been applied.
    Unknown,
    /// Certainly no effect: leave it out.
    Drop,
}

impl Recorder {
    pub fn new(w: Workload) -> Recorder {
        let keys = (0..w.keys).map(|i| w.key(i)).collect();
        let clients = (0..w.clients)
            .map(|i| ClientState {
                rng: fastrand::Rng::with_seed(
                    w.seed.wrapping_mul(0x9e37_79b9).wrapping_add(i as u64),
                ),
                seen: HashMap::new(),
                list_index: 0,
            })
            .collect();
        Recorder {
            w,
            keys,
            origin: Instant::now(),
            records: Mutex::new(Vec::new()),
            next_val: AtomicU64::new(1),
            clients: Mutex::new(clients),
            issued: AtomicUsize::new(0),
        }
    }

    pub fn workload(&self) -> &Workload {
        &self.w
    }

    /// Operations issued so far in the current (or last) run.
    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }

    /// Operations in the history so far, over all runs (grows monotonically).
    pub fn recorded(&self) -> usize {
        self.records.lock().unwrap().len()
    }

    /// The history so far, ordered by call time.
    pub fn history(&self) -> History {
        let mut records = self.records.lock().unwrap().clone();
        records.sort_by_key(|r| r.call);
        History {
            initial: Vec::new(),
            records,
        }
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// A value never written before in this history (see [`Op::Cas`] for why it matters).
    fn fresh(&self, rng: &mut fastrand::Rng) -> Val {
        let n = self.next_val.fetch_add(1, Ordering::SeqCst);
        // A few flag values, so that flags are checked too.
        Val::new(format!("v{n}"), rng.u64(0..3))
    }

    /// Runs every client until `limits` or `stop`. Client `i` talks to
    /// `targets[i % targets.len()]` (`host:port`).
    pub fn run(&self, targets: &[String], limits: Limits, stop: &AtomicBool) -> RunStats {
        assert!(!targets.is_empty(), "no targets");
        self.issued.store(0, Ordering::SeqCst);
        let started = Instant::now();
        let mut states = std::mem::take(&mut *self.clients.lock().unwrap());
        let stats: Vec<RunStats> = std::thread::scope(|s| {
            let handles: Vec<_> = states
                .iter_mut()
                .enumerate()
                .map(|(i, st)| {
                    let target = &targets[i % targets.len()];
                    s.spawn(move || self.client(i, st, target, limits, started, stop))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("client thread panicked"))
                .collect()
        });
        *self.clients.lock().unwrap() = states;
        let mut total = RunStats {
            elapsed: started.elapsed(),
            ..RunStats::default()
        };
        for st in stats {
            total.completed += st.completed;
            total.unknown += st.unknown;
            total.dropped += st.dropped;
            total.transport_errors += st.transport_errors;
            for e in st.http_errors {
                if total.http_errors.len() < 10 {
                    total.http_errors.push(e);
                }
            }
        }
        total
    }

    fn client(
        &self,
        id: usize,
        st: &mut ClientState,
        target: &str,
        limits: Limits,
        started: Instant,
        stop: &AtomicBool,
    ) -> RunStats {
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(self.w.timeout))
            .build()
            .new_agent();
        let c = Conn {
            http,
            base: format!("http://{target}"),
        };
        let mix = self.w.mixes[id % self.w.mixes.len()];
        let mut stats = RunStats::default();
        loop {
            if stop.load(Ordering::SeqCst) || started.elapsed() >= limits.max_time {
                break;
            }
            if self.issued.fetch_add(1, Ordering::SeqCst) >= limits.max_ops {
                break;
            }
            let kind = mix.pick(&mut st.rng);
            let (op, call, outcome) = self.one(kind, st, &c, &mut stats);
            match outcome {
                Outcome::Done(ret) => {
                    stats.completed += 1;
                    let t = self.now();
                    self.push(Record {
                        client: id,
                        op,
                        call,
                        ret: Some((t, ret)),
                    });
                }
                Outcome::Unknown => {
                    stats.unknown += 1;
                    self.push(Record {
                        client: id,
                        op,
                        call,
                        ret: None,
                    });
                }
                Outcome::Drop => {
                    stats.dropped += 1;
                    // A server that is down refuses at once: do not spin on it.
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        stats
    }

    fn push(&self, r: Record) {
        self.records.lock().unwrap().push(r);
    }

    fn key(&self, rng: &mut fastrand::Rng) -> String {
        self.keys[rng.usize(0..self.keys.len())].clone()
    }

    /// Issues one operation; returns it, its call time and its outcome.
    fn one(
        &self,
        kind: Kind,
        st: &mut ClientState,
        c: &Conn,
        stats: &mut RunStats,
    ) -> (Op, u64, Outcome) {
        let rng = &mut st.rng;
        match kind {
            Kind::Get => {
                let key = self.key(rng);
                let call = self.now();
                let out = match c.get(&format!("/v1/kv/{key}")) {
                    Ok((404, _, _)) => {
                        st.seen.insert(key.clone(), None);
                        Outcome::Done(Ret::Value(None))
                    }
                    Ok((200, body, _)) => match entries(&body).as_deref() {
                        Some([(k, v, idx)]) if *k == key => {
                            st.seen.insert(key.clone(), Some((v.clone(), *idx)));
                            Outcome::Done(Ret::Value(Some(v.clone())))
                        }
                        _ => read_error(stats, "GET", 200, &body),
                    },
                    Ok((s, body, _)) => read_error(stats, "GET", s, &body),
                    Err(e) => transport(stats, e, false),
                };
                (Op::Get { key }, call, out)
            }
            Kind::Put => {
                let key = self.key(rng);
                let val = self.fresh(rng);
                let call = self.now();
                let r = c.put(&format!("/v1/kv/{key}?flags={}", val.flags), &val.data);
                let out = write_bool(stats, "PUT", r);
                (Op::Put { key, val }, call, out)
            }
            Kind::Cas => {
                let key = self.key(rng);
                let val = self.fresh(rng);
                let (expect, index) = match st.seen.get(&key) {
                    Some(Some((v, i))) => (Some(v.clone()), *i),
                    _ => (None, 0),
                };
                let call = self.now();
                let r = c.put(
                    &format!("/v1/kv/{key}?cas={index}&flags={}", val.flags),
                    &val.data,
                );
                let out = write_bool(stats, "CAS", r);
                (Op::Cas { key, val, expect }, call, out)
            }
            Kind::Delete => {
                let key = self.key(rng);
                let call = self.now();
                let r = c.delete(&format!("/v1/kv/{key}"));
                let out = write_bool(stats, "DELETE", r);
                (Op::Delete { key }, call, out)
            }
            Kind::List | Kind::BlockingList => {
                let prefix = match rng.u8(0..3) {
                    0 => format!("{}a/", self.w.prefix),
                    1 => format!("{}b/", self.w.prefix),
                    _ => self.w.prefix.clone(),
                };
                let mut path = format!("/v1/kv/{prefix}?recurse");
                if matches!(kind, Kind::BlockingList) && st.list_index > 0 {
                    path.push_str(&format!(
                        "&index={}&wait={}ms",
                        st.list_index,
                        self.w.blocking_wait.as_millis()
                    ));
                }
                let call = self.now();
                let out = match c.get(&path) {
                    Ok((404, _, idx)) => {
                        st.list_index = idx.unwrap_or(st.list_index);
                        Outcome::Done(Ret::List(Vec::new()))
                    }
                    Ok((200, body, idx)) => match entries(&body) {
                        Some(es) => {
                            st.list_index = idx.unwrap_or(st.list_index);
                            let mut l = Vec::with_capacity(es.len());
                            for (k, v, i) in es {
                                st.seen.insert(k.clone(), Some((v.clone(), i)));
                                l.push((k, v));
                            }
                            Outcome::Done(Ret::List(l))
                        }
                        None => read_error(stats, "LIST", 200, &body),
                    },
                    Ok((s, body, _)) => read_error(stats, "LIST", s, &body),
                    Err(e) => transport(stats, e, false),
                };
                (Op::List { prefix }, call, out)
            }
            Kind::Txn | Kind::TxnAll => {
                let ops = if matches!(kind, Kind::TxnAll) {
                    self.keys
                        .iter()
                        .map(|k| TxnOp::Set {
                            key: k.clone(),
                            val: self.fresh(rng),
                        })
                        .collect()
                } else {
                    let n = rng
                        .usize(self.w.txn_ops.0..=self.w.txn_ops.1)
                        .min(self.keys.len());
                    let mut ks = self.keys.clone();
                    rng.shuffle(&mut ks);
                    ks.truncate(n);
                    ks.into_iter()
                        .map(|key| match rng.u8(0..10) {
                            0..=4 => TxnOp::Set {
                                val: self.fresh(rng),
                                key,
                            },
                            5..=6 => TxnOp::Get { key },
                            7 => TxnOp::Delete { key },
                            _ => {
                                let expect = match st.seen.get(&key) {
                                    Some(Some((v, _))) => Some(v.clone()),
                                    _ => None,
                                };
                                TxnOp::Cas {
                                    val: self.fresh(rng),
                                    key,
                                    expect,
                                }
                            }
                        })
                        .collect::<Vec<_>>()
                };
                let body = txn_body(&ops, &st.seen);
                let call = self.now();
                let out = match c.put("/v1/txn", body.as_bytes()) {
                    Ok((200, body, _)) => match txn_reads(&ops, &body) {
                        Some(reads) => {
                            for (k, v, i) in &reads {
                                st.seen.insert(k.clone(), Some((v.clone(), *i)));
                            }
                            let reads = reads.into_iter().map(|(_, v, _)| v).collect();
                            Outcome::Done(Ret::Txn(TxnRet::Committed { reads }))
                        }
                        None => write_error(stats, "TXN", 200, &body),
                    },
                    Ok((409, body, _)) => match txn_failed(&body) {
                        Some(first_failed) => {
                            Outcome::Done(Ret::Txn(TxnRet::Aborted { first_failed }))
                        }
                        None => write_error(stats, "TXN", 409, &body),
                    },
                    Ok((s, body, _)) => write_error(stats, "TXN", s, &body),
                    Err(e) => transport(stats, e, true),
                };
                (Op::Txn(ops), call, out)
            }
        }
    }
}

struct Conn {
    http: ureq::Agent,
    base: String,
}

type Reply = Result<(u16, Vec<u8>, Option<u64>), ureq::Error>;

impl Conn {
    fn get(&self, path: &str) -> Reply {
        reply(self.http.get(format!("{}{path}", self.base)).call())
    }
    fn put(&self, path: &str, body: &[u8]) -> Reply {
        reply(self.http.put(format!("{}{path}", self.base)).send(body))
    }
    fn delete(&self, path: &str) -> Reply {
        reply(self.http.delete(format!("{}{path}", self.base)).call())
    }
}

fn reply(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut r = r?;
    let index = r
        .headers()
        .get("X-Consul-Index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = r.body_mut().with_config().limit(16 << 20).read_to_vec()?;
    Ok((r.status().as_u16(), body, index))
}

/// A transport error: a request that never reached the server is dropped, any other is an
/// unknown outcome for a write and dropped for a read.
fn transport(stats: &mut RunStats, e: ureq::Error, write: bool) -> Outcome {
    let refused = matches!(&e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused)
        || matches!(e, ureq::Error::ConnectionFailed);
    if refused {
        return Outcome::Drop;
    }
    stats.transport_errors += 1;
    if write {
        Outcome::Unknown
    } else {
        Outcome::Drop
    }
}

fn note(stats: &mut RunStats, what: &str, status: u16, body: &[u8]) {
    if stats.http_errors.len() < 10 {
        let body: String = String::from_utf8_lossy(body).chars().take(300).collect();
        stats.http_errors.push(format!("{what}: {status} {body}"));
    }
}

fn read_error(stats: &mut RunStats, what: &str, status: u16, body: &[u8]) -> Outcome {
    note(stats, what, status, body);
    Outcome::Drop
}

fn write_error(stats: &mut RunStats, what: &str, status: u16, body: &[u8]) -> Outcome {
    note(stats, what, status, body);
    Outcome::Unknown
}

fn write_bool(stats: &mut RunStats, what: &str, r: Reply) -> Outcome {
    match r {
        Ok((200, body, _)) => match body.as_slice() {
            b"true" => Outcome::Done(Ret::Done(true)),
            b"false" => Outcome::Done(Ret::Done(false)),
            _ => write_error(stats, what, 200, &body),
        },
        Ok((s, body, _)) => write_error(stats, what, s, &body),
        Err(e) => transport(stats, e, true),
    }
}

fn b64(d: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(d)
}

/// A KV entry of a reply: key, value with flags, `ModifyIndex`.
fn entry(e: &Value) -> Option<(String, Val, u64)> {
    let key = e.get("Key")?.as_str()?.to_string();
    let data = match e.get("Value")? {
        Value::Null => Vec::new(),
        Value::String(s) => base64::engine::general_purpose::STANDARD.decode(s).ok()?,
        _ => return None,
    };
    let flags = e.get("Flags")?.as_u64()?;
    let index = e.get("ModifyIndex")?.as_u64()?;
    Some((key, Val { data, flags }, index))
}

fn entries(body: &[u8]) -> Option<Vec<(String, Val, u64)>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.as_array()?.iter().map(entry).collect()
}

fn txn_body(ops: &[TxnOp], seen: &HashMap<String, Option<(Val, u64)>>) -> String {
    let ops: Vec<Value> = ops
        .iter()
        .map(|o| match o {
            TxnOp::Set { key, val } => {
                json!({"KV": {"Verb": "set", "Key": key, "Value": b64(&val.data), "Flags": val.flags}})
            }
            TxnOp::Cas { key, val, expect } => {
                let index = match (expect, seen.get(key)) {
                    (Some(_), Some(Some((_, i)))) => *i,
                    _ => 0,
                };
                json!({"KV": {"Verb": "cas", "Key": key, "Value": b64(&val.data), "Flags": val.flags, "Index": index}})
            }
            TxnOp::Get { key } => json!({"KV": {"Verb": "get", "Key": key}}),
            TxnOp::Delete { key } => json!({"KV": {"Verb": "delete", "Key": key}}),
        })
        .collect();
    Value::Array(ops).to_string()
}

/// The entries a committed txn's gets returned, in op order. Sets and CASes report one
/// entry each (without its value), deletes none.
fn txn_reads(ops: &[TxnOp], body: &[u8]) -> Option<Vec<(String, Val, u64)>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let results = v.get("Results")?.as_array()?;
    let mut it = results.iter();
    let mut reads = Vec::new();
    for o in ops {
        match o {
            TxnOp::Set { key, .. } | TxnOp::Cas { key, .. } => {
                let r = it.next()?.get("KV")?;
                if r.get("Key")?.as_str()? != key {
                    return None;
                }
            }
            TxnOp::Get { key } => {
                let e = entry(it.next()?.get("KV")?)?;
                if e.0 != *key {
                    return None;
                }
                reads.push(e);
            }
            TxnOp::Delete { .. } => {}
        }
    }
    it.next().is_none().then_some(reads)
}

fn txn_failed(body: &[u8]) -> Option<usize> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("Errors")?
        .as_array()?
        .iter()
        .map(|e| e.get("OpIndex").and_then(Value::as_u64).map(|i| i as usize))
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .min()
}
