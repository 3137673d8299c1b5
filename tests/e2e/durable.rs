//! Durability of a real server process (`muster agent -server -bootstrap -data-dir DIR`):
//! acknowledged writes survive `kill -9` at random points, a torn log tail is cut, damage to
//! acknowledged data (mid-log, version, snapshots) is refused without touching the data dir, a
//! corrupt newest snapshot falls back to the previous one, the node ID is persisted, and
//! `muster snapshot save|inspect|restore` moves the whole state from one server to another.
//!
//! The crash tests run a few pinned seeds by default; `MUSTER_CRASH_SEEDS=N` adds `N` more,
//! starting at `MUSTER_CRASH_SEED_BASE` (default: from the clock, printed), which is also how a
//! failing extra seed is replayed: `MUSTER_CRASH_SEED_BASE=<seed> MUSTER_CRASH_SEEDS=1`.
//!
//! The on-disk layout these tests damage is the one documented in `src/raft/log_store/format.rs`
//! and `src/raft/snapshot.rs`; the walker below is written from that documentation on purpose
//! (not with the server's own parser), so a change of format shows up here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{
    cli_at, enc, eventually, eventually_or, unb64, CliOut, Client, Resp, Server, TempDir,
};
use crate::kv::u;

/// Size of the values written; big enough that a batch of them spans several records' worth
/// of bytes, small enough to write thousands quickly.
const VALUE_LEN: usize = 256;
/// Snapshot knobs that make snapshots (and log purges) happen within a second of writing.
const TINY_SNAPSHOTS: [&str; 6] = [
    "-hcl",
    "raft_snapshot_threshold = 10",
    "-hcl",
    "raft_snapshot_interval = \"200ms\"",
    "-hcl",
    "raft_trailing_logs = 5",
];
/// Bound for conditions that need a few snapshot intervals.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Values and KV helpers
// ---------------------------------------------------------------------------------------------

/// The value written to `key` with sequence number `seq`: names both, padded to [`VALUE_LEN`]
/// with a pattern that depends on them, so a value can only match the write that produced it.
fn value_for(key: &str, seq: u64) -> Vec<u8> {
    let mut v = format!("{key} seq={seq:012} ").into_bytes();
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ key.len() as u64;
    while v.len() < VALUE_LEN {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(b'a' + (x % 26) as u8);
    }
    v
}

/// The sequence number a stored value carries.
fn seq_of(value: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(value);
    let at = text
        .find(" seq=")
        .unwrap_or_else(|| panic!("value without a sequence number: {text:?}"));
    text[at + 5..at + 17]
        .parse()
        .unwrap_or_else(|e| panic!("bad sequence number in {text:?}: {e}"))
}

/// The decoded value of a KV entry.
fn entry_value(e: &Value) -> Vec<u8> {
    match &e["Value"] {
        Value::Null => Vec::new(),
        Value::String(s) => unb64(s),
        other => panic!("Value is not base64 text: {other}"),
    }
}

/// Every entry under `prefix`, by key, and the reply's index.
fn kv_tree(c: &Client, prefix: &str) -> (BTreeMap<String, Value>, u64) {
    let r = c.get(&format!("/v1/kv/{}?recurse", enc(prefix)));
    if r.status == 404 {
        return (BTreeMap::new(), r.index());
    }
    let list = match r.ok().json() {
        Value::Array(v) => v,
        other => panic!("expected an array: {other}"),
    };
    let map = list
        .into_iter()
        .map(|e| {
            let k = e["Key"].as_str().expect("Key").to_string();
            (k, e)
        })
        .collect();
    (map, r.index())
}

/// Writes `key` once more and returns the entry (its indexes) as read back.
#[track_caller]
fn write_and_read(c: &Client, key: &str, seq: u64) -> Value {
    let r = c.put(&format!("/v1/kv/{}", enc(key)), value_for(key, seq));
    assert!(r.bool(), "write after restart refused: {r:?}");
    let r = c.get(&format!("/v1/kv/{}", enc(key)));
    r.ok().json()[0].clone()
}

// ---------------------------------------------------------------------------------------------
// Data-dir helpers
// ---------------------------------------------------------------------------------------------

fn sorted_files(dir: &Path, prefix: &str, suffix: &str) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(prefix) && n.ends_with(suffix)
        })
        .collect();
    v.sort();
    v
}

/// Log segments in index order (their names are zero-padded first indexes).
fn segments(data: &Path) -> Vec<PathBuf> {
    sorted_files(&data.join("raft"), "seg-", ".log")
}

/// Snapshot files, oldest first (names are zero-padded `<index>-<term>`).
fn snapshots(data: &Path) -> Vec<PathBuf> {
    sorted_files(&data.join("snapshots"), "", ".snap")
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Every file (with its bytes) and directory (as `None`) under `root`, by relative path.
fn tree(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Option<Vec<u8>>>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("list {dir:?}: {e}")) {
            let p = e.expect("dir entry").path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if p.is_dir() {
                out.insert(rel, None);
                walk(root, &p, out);
            } else {
                let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("read {p:?}: {e}"));
                out.insert(rel, Some(bytes));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[track_caller]
fn assert_tree_unchanged(
    before: &BTreeMap<String, Option<Vec<u8>>>,
    after: &BTreeMap<String, Option<Vec<u8>>>,
) {
    let mut diffs = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => diffs.push(format!("{k}: removed")),
            Some(w) if w != v => diffs.push(format!(
                "{k}: changed ({:?} -> {:?} bytes)",
                v.as_ref().map(Vec::len),
                w.as_ref().map(Vec::len)
            )),
            _ => {}
        }
    }
    for k in after.keys().filter(|k| !before.contains_key(*k)) {
        diffs.push(format!("{k}: created"));
    }
    assert!(
        diffs.is_empty(),
        "a refused start modified the data dir: {diffs:?}"
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {to:?}: {e}"));
    for e in std::fs::read_dir(from).unwrap_or_else(|e| panic!("list {from:?}: {e}")) {
        let p = e.expect("dir entry").path();
        let dst = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).unwrap_or_else(|e| panic!("copy {p:?}: {e}"));
        }
    }
}

fn flip_byte(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap_or_else(|e| panic!("read {path:?}: {e}"));
    assert!(
        at < b.len(),
        "{path:?} has {} bytes, cannot flip {at}",
        b.len()
    );
    b[at] ^= 0x5A;
    std::fs::write(path, b).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// One batch of a segment, found by walking the documented format: a BATCH record
/// (`len u32 | crc u32 | kind u8 = 1 | body_len u32`), `body_len` bytes of records, zero padding
/// up to the segment's block size.
#[derive(Debug, Clone, Copy)]
struct BatchSpan {
    /// Offset of the BATCH record.
    at: usize,
    /// Offset just past the last body record (the padding starts here).
    end: usize,
    /// ENTRY records in the body.
    entries: usize,
}

const RECORD_HEADER: usize = 9;
const BATCH_HEADER: usize = RECORD_HEADER + 4;

/// The segment's block size and its complete batches, in file order. Stops at zeros, at the end
/// of the file, or at a batch that does not hold together (a torn write: after a crash the last
/// batch may be incomplete).
fn walk_segment(seg: &[u8]) -> (usize, Vec<BatchSpan>) {
    assert_eq!(&seg[0..8], b"MUSTRLOG", "segment magic");
    assert_eq!(le_u32(seg, 8), 1, "this walker reads format version 1");
    let block = le_u32(seg, 12) as usize;
    assert!(block.is_power_of_two() && block >= 512, "block {block}");
    let mut out = Vec::new();
    let mut pos = block;
    while pos + BATCH_HEADER <= seg.len() {
        let (len, kind) = (le_u32(seg, pos) as usize, seg[pos + 8]);
        if len != 4 || kind != 1 {
            // Zeros after the last batch, or a torn one.
            break;
        }
        let body = pos + BATCH_HEADER;
        let end = body + le_u32(seg, pos + RECORD_HEADER) as usize;
        if end > seg.len() {
            break;
        }
        // The body is a run of records of kinds 2 (ENTRY), 3 (TRUNCATE), 4 (COMMITTED).
        let (mut r, mut entries) = (body, 0);
        while r < end {
            let (rlen, rkind) = (le_u32(seg, r) as usize, seg[r + 8]);
            assert!(
                (2..=4).contains(&rkind),
                "record kind {rkind} at byte {r} of a batch at {pos}"
            );
            entries += usize::from(rkind == 2);
            r += RECORD_HEADER + rlen;
        }
        assert_eq!(r, end, "records of the batch at {pos} overrun its body");
        out.push(BatchSpan {
            at: pos,
            end,
            entries,
        });
        pos = end.div_ceil(block) * block;
    }
    (block, out)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Crash tests
// ---------------------------------------------------------------------------------------------

/// What one crash run does.
#[derive(Debug, Clone, Copy)]
struct Plan {
    seed: u64,
    cores: usize,
    /// Snapshot every ~10 entries (with log purges) instead of Consul's defaults.
    tiny_snapshots: bool,
    /// One writer registers catalog nodes and creates sessions.
    catalog_and_sessions: bool,
    kv_writers: usize,
    /// Kill / restart / verify rounds on the same data dir.
    cycles: usize,
}

impl Plan {
    fn from_seed(seed: u64) -> Plan {
        let mut rng = fastrand::Rng::with_seed(seed);
        Plan {
            seed,
            cores: rng.usize(1..=2),
            tiny_snapshots: rng.bool(),
            catalog_and_sessions: rng.bool(),
            kv_writers: rng.usize(3..=6),
            cycles: rng.usize(2..=3),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct ReadBack {
    seq: u64,
    create: u64,
    modify: u64,
}

/// What one key went through, as seen by its only writer.
#[derive(Debug, Clone, Default)]
struct KeyLog {
    /// Sequence number of the last PUT sent.
    attempted: Option<u64>,
    /// Sequence number of the last PUT answered 200 `true`.
    acked: Option<u64>,
    /// The last GET of the key, with the indexes it showed.
    read: Option<ReadBack>,
}

struct KvWriter {
    id: usize,
    prefix: String,
    keys: Vec<KeyLog>,
    next_seq: u64,
    rng: fastrand::Rng,
}

const KEYS_PER_WRITER: usize = 8;

impl KvWriter {
    fn key(&self, j: usize) -> String {
        format!("{}w{}/k{j}", self.prefix, self.id)
    }
}

/// Catalog registrations and sessions, as seen by their only writer.
#[derive(Default)]
struct CatalogLog {
    next: usize,
    /// Node names registered and acknowledged.
    nodes_acked: Vec<String>,
    /// A registration sent but not answered when the server died.
    node_in_flight: Option<String>,
    sessions_acked: Vec<String>,
}

fn node_body(name: &str, i: usize) -> Value {
    json!({
        "Datacenter": "dc1",
        "Node": name,
        "Address": "127.0.0.1",
        "NodeMeta": {"crash": "yes"},
        "Service": {"ID": format!("web-{i}"), "Service": "crash-web", "Port": 8000 + i},
        "Check": {
            "CheckID": format!("web-{i}-alive"),
            "Name": "alive",
            "Status": "passing",
            "ServiceID": format!("web-{i}"),
        },
    })
}

/// Shared between the writers and the thread that kills the server.
struct Flags {
    /// Set just before SIGKILL: transport errors after it are the kill, before it a failure.
    killing: AtomicBool,
    acks: AtomicU64,
    /// Highest raft index any reply showed.
    max_index: AtomicU64,
    /// First unexpected failure of a writer.
    failure: Mutex<Option<String>>,
}

impl Flags {
    /// Whether a transport error is the kill; records it as a failure otherwise.
    fn on_transport_error(&self, e: String) {
        if !self.killing.load(Ordering::SeqCst) {
            self.failure
                .lock()
                .unwrap()
                .get_or_insert(format!("server unreachable before the kill: {e}"));
        }
    }

    fn seen(&self, r: &Resp) {
        if let Some(i) = r.header("X-Consul-Index").and_then(|h| h.parse().ok()) {
            self.max_index.fetch_max(i, Ordering::SeqCst);
        }
    }
}

/// Writes until the server goes away. One PUT in flight at a time, so for each key the stored
/// value is either the last acknowledged or the last attempted one.
fn kv_writer_loop(w: &mut KvWriter, c: &Client, f: &Flags) {
    loop {
        let j = w.rng.usize(0..KEYS_PER_WRITER);
        let key = w.key(j);
        let seq = w.next_seq;
        w.next_seq += 1;
        w.keys[j].attempted = Some(seq);
        match c.try_put(&format!("/v1/kv/{}", enc(&key)), value_for(&key, seq)) {
            Err(e) => return f.on_transport_error(e),
            Ok(r) if r.status == 200 => {
                if r.body != b"true" {
                    f.failure
                        .lock()
                        .unwrap()
                        .get_or_insert(format!("PUT answered 200 but not true: {r:?}"));
                    return;
                }
                w.keys[j].acked = Some(seq);
                f.acks.fetch_add(1, Ordering::SeqCst);
            }
            // Back-pressure is a legitimate "not accepted".
            Ok(r) if r.status == 429 || r.status == 503 => continue,
            Ok(r) => {
                f.failure
                    .lock()
                    .unwrap()
                    .get_or_insert(format!("unexpected answer to a PUT: {r:?}"));
                return;
            }
        }
        if w.rng.u8(0..10) < 3 {
            let r = match c.try_get(&format!("/v1/kv/{}", enc(&key))) {
                Err(e) => return f.on_transport_error(e),
                Ok(r) => r,
            };
            if r.status != 200 {
                f.failure
                    .lock()
                    .unwrap()
                    .get_or_insert(format!("acknowledged key not readable: {r:?}"));
                return;
            }
            f.seen(&r);
            let e = r.json()[0].clone();
            let got = seq_of(&entry_value(&e));
            if got != seq {
                f.failure.lock().unwrap().get_or_insert(format!(
                    "{key}: read back seq {got} right after writing {seq}: {r:?}"
                ));
                return;
            }
            let rb = ReadBack {
                seq,
                create: u(&e, "CreateIndex"),
                modify: u(&e, "ModifyIndex"),
            };
            f.max_index.fetch_max(rb.modify, Ordering::SeqCst);
            w.keys[j].read = Some(rb);
        }
    }
}

fn catalog_writer_loop(cat: &mut CatalogLog, prefix: &str, c: &Client, f: &Flags) {
    loop {
        let i = cat.next;
        cat.next += 1;
        let name = format!("{prefix}n{i}");
        cat.node_in_flight = Some(name.clone());
        let r = match c.try_put("/v1/catalog/register", node_body(&name, i).to_string()) {
            Err(e) => return f.on_transport_error(e),
            Ok(r) => r,
        };
        if r.status != 200 || r.body != b"true" {
            f.failure
                .lock()
                .unwrap()
                .get_or_insert(format!("catalog register failed: {r:?}"));
            return;
        }
        cat.node_in_flight = None;
        cat.nodes_acked.push(name);
        f.acks.fetch_add(1, Ordering::SeqCst);

        let body = json!({"Name": format!("{prefix}s{i}")}).to_string();
        let r = match c.try_put("/v1/session/create", body) {
            Err(e) => return f.on_transport_error(e),
            Ok(r) => r,
        };
        if r.status != 200 {
            f.failure
                .lock()
                .unwrap()
                .get_or_insert(format!("session create failed: {r:?}"));
            return;
        }
        let id = r.json()["ID"]
            .as_str()
            .unwrap_or_else(|| panic!("no session ID: {r:?}"))
            .to_string();
        cat.sessions_acked.push(id);
        f.acks.fetch_add(1, Ordering::SeqCst);
    }
}

/// Everything one crash run tracks across its cycles.
struct CrashState {
    plan: Plan,
    prefix: String,
    writers: Vec<KvWriter>,
    catalog: CatalogLog,
    /// Highest raft index seen in any reply so far (before and after restarts).
    max_index: u64,
}

/// Runs the writers, kills the server once `target` writes were acknowledged (and, with tiny
/// snapshots, once a new snapshot was written during this cycle), while the writers are still
/// going: every writer has a request in flight at the kill, so it lands in the middle of a
/// group-commit batch, or between its write and its fsync, as often as anywhere else.
fn write_then_kill(srv: &mut Server, data: &Path, st: &mut CrashState, cycle: usize) {
    let mut rng = fastrand::Rng::with_seed(st.plan.seed ^ ((cycle as u64 + 1) << 32));
    let target = rng.u64(60..=300);
    let extra_delay = Duration::from_micros(rng.u64(0..3000));
    let snap_before = snapshots(data).last().cloned();
    let flags = Flags {
        killing: AtomicBool::new(false),
        acks: AtomicU64::new(0),
        max_index: AtomicU64::new(st.max_index),
        failure: Mutex::new(None),
    };
    let client = srv.client();
    let tiny = st.plan.tiny_snapshots;
    thread::scope(|s| {
        for w in st.writers.iter_mut() {
            let (c, f) = (client.clone(), &flags);
            s.spawn(move || kv_writer_loop(w, &c, f));
        }
        if st.plan.catalog_and_sessions {
            let (c, f, cat, prefix) = (client.clone(), &flags, &mut st.catalog, &st.prefix);
            s.spawn(move || catalog_writer_loop(cat, prefix, &c, f));
        }
        let ready = eventually_or(SNAPSHOT_WAIT, || {
            let failed = flags.failure.lock().unwrap().is_some();
            let enough = flags.acks.load(Ordering::SeqCst) >= target;
            let snapped = !tiny || snapshots(data).last() != snap_before.as_ref();
            (failed || (enough && snapped)).then_some(())
        });
        thread::sleep(extra_delay);
        flags.killing.store(true, Ordering::SeqCst);
        srv.kill9();
        if let Some(e) = flags.failure.lock().unwrap().as_ref() {
            panic!("seed {}: cycle {cycle}: {e}", st.plan.seed);
        }
        assert!(
            ready.is_some(),
            "seed {}: cycle {cycle}: within {SNAPSHOT_WAIT:?}, {} of {target} writes acknowledged, \
             snapshots {:?} (before: {snap_before:?})",
            st.plan.seed,
            flags.acks.load(Ordering::SeqCst),
            snapshots(data)
        );
    });
    if let Some(e) = flags.failure.lock().unwrap().as_ref() {
        panic!("seed {}: cycle {cycle}: {e}", st.plan.seed);
    }
    st.max_index = flags.max_index.load(Ordering::SeqCst);
    eprintln!(
        "seed {} cycle {cycle}: killed after {} acknowledged writes (target {target}), highest \
         index seen {}, snapshots {:?}",
        st.plan.seed,
        flags.acks.load(Ordering::SeqCst),
        st.max_index,
        snapshots(data)
            .iter()
            .map(|p| file_name(p))
            .collect::<Vec<_>>()
    );
}

/// After a restart: every acknowledged write is there with its value and, where it was read
/// back before the kill, with the same indexes. Then the state seen becomes the baseline for
/// the next cycle.
fn verify_after_restart(srv: &Server, st: &mut CrashState, cycle: usize) {
    let seed = st.plan.seed;
    // Writes that were in flight at the kill: how many made it, how many did not.
    let (mut landed, mut vanished) = (0, 0);
    let (mut found, index) = kv_tree(srv, &st.prefix);
    st.max_index = st.max_index.max(index);
    for w in st.writers.iter_mut() {
        for j in 0..KEYS_PER_WRITER {
            let key = w.key(j);
            let log = &mut w.keys[j];
            let in_flight = log.attempted.is_some() && log.attempted != log.acked;
            let Some(attempted) = log.attempted else {
                assert!(
                    found.remove(&key).is_none(),
                    "seed {seed} cycle {cycle}: {key} exists but was never written"
                );
                continue;
            };
            let Some(e) = found.remove(&key) else {
                assert!(
                    log.acked.is_none(),
                    "seed {seed} cycle {cycle}: {key}: acknowledged write (seq {:?}) lost",
                    log.acked
                );
                vanished += usize::from(in_flight);
                continue;
            };
            let value = entry_value(&e);
            let seq = seq_of(&value);
            assert!(
                value == value_for(&key, seq),
                "seed {seed} cycle {cycle}: {key}: value is not the one written with seq {seq}: {e}"
            );
            assert!(
                log.acked.is_none_or(|a| seq >= a) && seq <= attempted,
                "seed {seed} cycle {cycle}: {key}: stored seq {seq}, last acknowledged {:?}, \
                 last attempted {attempted}",
                log.acked
            );
            assert!(
                log.acked == Some(seq) || seq == attempted,
                "seed {seed} cycle {cycle}: {key}: stored seq {seq} is neither the last \
                 acknowledged ({:?}) nor the write in flight ({attempted})",
                log.acked
            );
            if in_flight {
                if seq == attempted {
                    landed += 1;
                } else {
                    vanished += 1;
                }
            }
            let (create, modify) = (u(&e, "CreateIndex"), u(&e, "ModifyIndex"));
            if let Some(rb) = log.read {
                assert_eq!(
                    create, rb.create,
                    "seed {seed} cycle {cycle}: {key}: CreateIndex changed across the restart \
                     (read back before: {rb:?}): {e}"
                );
                if rb.seq == seq {
                    assert_eq!(
                        modify, rb.modify,
                        "seed {seed} cycle {cycle}: {key}: ModifyIndex changed across the \
                         restart (read back before: {rb:?}): {e}"
                    );
                }
            }
            st.max_index = st.max_index.max(modify);
            *log = KeyLog {
                attempted: Some(seq),
                acked: Some(seq),
                read: Some(ReadBack {
                    seq,
                    create,
                    modify,
                }),
            };
        }
    }
    assert!(
        found.is_empty(),
        "seed {seed} cycle {cycle}: keys nobody wrote: {:?}",
        found.keys().collect::<Vec<_>>()
    );

    let cat = &mut st.catalog;
    for name in &cat.nodes_acked {
        let r = srv.get(&format!("/v1/catalog/node/{name}"));
        let v = r.ok().json();
        assert_eq!(
            v["Node"]["Node"],
            name.as_str(),
            "seed {seed} cycle {cycle}: acknowledged registration lost: {r:?}"
        );
        let services = v["Services"].as_object().map_or(0, |m| m.len());
        assert_eq!(services, 1, "seed {seed} cycle {cycle}: {r:?}");
        st.max_index = st.max_index.max(r.index());
        let r = srv.get(&format!("/v1/health/node/{name}"));
        let checks = r.ok().json();
        assert_eq!(
            checks.as_array().map(Vec::len),
            Some(1),
            "seed {seed} cycle {cycle}: check of {name} lost: {r:?}"
        );
        assert_eq!(checks[0]["Status"], "passing", "{r:?}");
    }
    if let Some(name) = cat.node_in_flight.take() {
        // Either outcome is right for a write nobody answered; keep it if it made it.
        if srv.get(&format!("/v1/catalog/node/{name}")).ok().json()["Node"]["Node"] == *name {
            cat.nodes_acked.push(name);
        }
    }
    for id in &cat.sessions_acked {
        let r = srv.get(&format!("/v1/session/info/{id}"));
        let v = r.ok().json();
        assert_eq!(
            v[0]["ID"],
            id.as_str(),
            "seed {seed} cycle {cycle}: acknowledged session lost: {r:?}"
        );
        st.max_index = st.max_index.max(r.index());
    }

    // Writes go on, and their indexes are above everything seen before the kill.
    let key = format!("crash-after/{seed}/{cycle}");
    let e = write_and_read(srv, &key, cycle as u64);
    let (create, modify) = (u(&e, "CreateIndex"), u(&e, "ModifyIndex"));
    assert!(
        create > st.max_index && modify > st.max_index,
        "seed {seed} cycle {cycle}: a write after the restart got indexes {create}/{modify}, \
         not above {} seen before: {e}",
        st.max_index
    );
    st.max_index = modify;
    eprintln!(
        "seed {seed} cycle {cycle}: verified after restart; writes in flight at the kill: \
         {landed} applied, {vanished} not"
    );
}

fn crash_run(plan: Plan) {
    eprintln!("crash run: {plan:?}");
    let tmp = TempDir::new(&format!("crash-{}", plan.seed));
    let data = tmp.0.join("data");
    let extra: &[&str] = if plan.tiny_snapshots {
        &TINY_SNAPSHOTS
    } else {
        &[]
    };
    let mut srv = Server::durable(&format!("crash-{}", plan.seed), &data, plan.cores, extra);
    srv.start();
    let prefix = format!("crash/{}/", plan.seed);
    let mut st = CrashState {
        plan,
        writers: (0..plan.kv_writers)
            .map(|id| KvWriter {
                id,
                prefix: prefix.clone(),
                keys: vec![KeyLog::default(); KEYS_PER_WRITER],
                next_seq: 1,
                rng: fastrand::Rng::with_seed(plan.seed.wrapping_mul(31).wrapping_add(id as u64)),
            })
            .collect(),
        prefix,
        catalog: CatalogLog::default(),
        max_index: 0,
    };
    for cycle in 0..plan.cycles {
        write_then_kill(&mut srv, &data, &mut st, cycle);
        srv.start();
        verify_after_restart(&srv, &mut st, cycle);
    }
    if plan.tiny_snapshots {
        assert!(
            !snapshots(&data).is_empty(),
            "seed {}: no snapshot was written",
            plan.seed
        );
    }
    if plan.catalog_and_sessions {
        assert!(
            !st.catalog.nodes_acked.is_empty() && !st.catalog.sessions_acked.is_empty(),
            "seed {}: the catalog writer got nothing acknowledged",
            plan.seed
        );
    }
}

#[test]
fn crash_tiny_snapshots_with_catalog_and_sessions() {
    crash_run(Plan {
        seed: 0x5EED_0001,
        cores: 2,
        tiny_snapshots: true,
        catalog_and_sessions: true,
        kv_writers: 5,
        cycles: 2,
    });
}

#[test]
fn crash_default_thresholds() {
    crash_run(Plan {
        seed: 0x5EED_0002,
        cores: 1,
        tiny_snapshots: false,
        catalog_and_sessions: false,
        kv_writers: 6,
        cycles: 2,
    });
}

#[test]
fn crash_tiny_snapshots_one_core() {
    crash_run(Plan {
        seed: 0x5EED_0003,
        cores: 1,
        tiny_snapshots: true,
        catalog_and_sessions: true,
        kv_writers: 4,
        cycles: 3,
    });
}

/// `MUSTER_CRASH_SEEDS=N` more seeds, each with a plan drawn from the seed.
#[test]
fn crash_more_seeds() {
    let n: u64 = match std::env::var("MUSTER_CRASH_SEEDS") {
        Ok(v) => v.parse().expect("MUSTER_CRASH_SEEDS is a number"),
        Err(_) => return,
    };
    let base: u64 = match std::env::var("MUSTER_CRASH_SEED_BASE") {
        Ok(v) => v.parse().expect("MUSTER_CRASH_SEED_BASE is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64,
    };
    eprintln!(
        "crash seeds {base}..{} (MUSTER_CRASH_SEED_BASE={base})",
        base + n
    );
    for seed in base..base + n {
        crash_run(Plan::from_seed(seed));
    }
}

// ---------------------------------------------------------------------------------------------
// Damaged logs and snapshots
// ---------------------------------------------------------------------------------------------

/// A server with `n` keys written one after another (so each is its own batch), every one read
/// back, then killed with SIGKILL. Returns the server (stopped) and the entries read back.
fn written_then_killed(tag: &str, data: &Path, n: usize, extra: &[&str]) -> (Server, Vec<Value>) {
    let mut srv = Server::durable(tag, data, 1, extra);
    srv.start();
    let entries = (0..n)
        .map(|i| write_and_read(&srv, &format!("{tag}/k{i:03}"), i as u64))
        .collect();
    srv.kill9();
    (srv, entries)
}

/// Every entry is there, unchanged, with its indexes.
#[track_caller]
fn assert_entries(c: &Client, entries: &[Value]) {
    for e in entries {
        let key = e["Key"].as_str().expect("Key");
        let got = c
            .kv_entry(key)
            .unwrap_or_else(|| panic!("acknowledged key {key} lost"));
        for f in ["Value", "Flags", "CreateIndex", "ModifyIndex", "LockIndex"] {
            assert_eq!(got[f], e[f], "{key}: {f} differs: before {e}, now {got}");
        }
    }
}

fn max_modify(entries: &[Value]) -> u64 {
    entries
        .iter()
        .map(|e| u(e, "ModifyIndex"))
        .max()
        .unwrap_or(0)
}

/// How the tail of the last segment is damaged.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// The file ends this many bytes into the last batch (a write that stopped there).
    CutAt(usize),
    /// The bytes from this offset in the last batch to its end are zeros (blocks never written).
    ZeroFrom(usize),
}

/// "The last record" here is the last batch: the log's unit of durability (one `O_DIRECT` write
/// and one fdatasync; a batch is valid only as a whole). With one writer and every PUT
/// acknowledged before the next, the last batch holds exactly the last PUT's entry. Damage at
/// any offset inside it must drop that batch (that write) and keep every earlier one.
#[test]
fn torn_tail_is_cut_and_the_rest_is_kept() {
    const N: usize = 10;
    let tmp = TempDir::new("torn");
    let base = tmp.0.join("base");
    let (_, entries) = written_then_killed("torn", &base, N, &[]);
    let segs = segments(&base);
    assert_eq!(segs.len(), 1, "one segment expected: {segs:?}");
    let bytes = std::fs::read(&segs[0]).unwrap();
    let (block, batches) = walk_segment(&bytes);
    let last = *batches.last().expect("batches");
    assert_eq!(
        bytes.len(),
        last.end.div_ceil(block) * block,
        "the segment ends with the last batch's padding (not preallocated)"
    );
    let last_key = format!("torn/k{:03}", N - 1);
    let tail = &bytes[last.at..last.end];
    assert!(
        last.entries == 1 && contains(tail, last_key.as_bytes()),
        "the last batch ({last:?}) should hold exactly the entry of the last PUT ({last_key})"
    );
    let body = last.at + BATCH_HEADER;
    let damages = [
        Damage::CutAt(5),
        Damage::CutAt((last.end - last.at) / 2),
        Damage::CutAt(last.end - last.at - 1),
        Damage::ZeroFrom(body - last.at + 1),
    ];
    let kept = &entries[..N - 1];
    for (n, damage) in damages.into_iter().enumerate() {
        let dir = tmp.0.join(format!("d{n}"));
        copy_tree(&base, &dir);
        let seg = segments(&dir).pop().unwrap();
        let mut b = std::fs::read(&seg).unwrap();
        match damage {
            Damage::CutAt(k) => b.truncate(last.at + k),
            Damage::ZeroFrom(k) => {
                assert!(b[last.at + k..last.end].iter().any(|&x| x != 0));
                b[last.at + k..last.end].fill(0);
            }
        }
        std::fs::write(&seg, &b).unwrap();

        let mut srv = Server::durable(&format!("torn-{n}"), &dir, 1, &[]);
        srv.start();
        let log = srv.stderr();
        let said = format!(
            "{}: torn or corrupt tail at byte {}",
            seg.display(),
            last.at
        );
        assert!(
            log.contains(&said),
            "{damage:?}: no log line about the cut ({said:?}); stderr:\n{log}"
        );
        assert_entries(&srv, kept);
        assert!(
            srv.kv_entry(&last_key).is_none(),
            "{damage:?}: the damaged last batch was not dropped"
        );
        let e = write_and_read(&srv, "torn/after", 1);
        assert!(
            u(&e, "ModifyIndex") > max_modify(kept),
            "{damage:?}: index went backwards: {e}"
        );
        srv.kill9();
        // The cut is durable: a second start sees a clean log with the new write.
        srv.start();
        assert!(
            !srv.stderr().contains("torn or corrupt tail"),
            "{damage:?}: the tail was not cut for good:\n{}",
            srv.stderr()
        );
        assert_entries(&srv, kept);
        assert_entries(&srv, &[e]);
    }
}

#[test]
fn mid_log_corruption_is_refused_and_the_data_dir_untouched() {
    let tmp = TempDir::new("midlog");
    let data = tmp.0.join("data");
    let (mut srv, _) = written_then_killed("midlog", &data, 6, &[]);
    let seg = segments(&data).pop().unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    let (_, batches) = walk_segment(&bytes);
    // The batch holding the second PUT: early, with valid batches after it.
    let b = *batches
        .iter()
        .find(|b| contains(&bytes[b.at..b.end], b"midlog/k001"))
        .expect("batch of midlog/k001");
    assert!(batches.last().unwrap().at > b.at);
    flip_byte(&seg, (b.at + BATCH_HEADER + b.end) / 2);
    let before = tree(&data);

    let f = srv.start_refused();
    assert!(!f.status.success(), "{f:?}");
    for want in [
        "==> agent stopped: raft failed to start:".to_string(),
        seg.display().to_string(),
        format!("corrupt at byte {}", b.at),
        "refusing to start".to_string(),
    ] {
        assert!(f.stderr.contains(&want), "stderr lacks {want:?}: {f:?}");
    }
    assert_tree_unchanged(&before, &tree(&data));
}

#[test]
fn other_log_format_version_is_refused() {
    let tmp = TempDir::new("version");
    let data = tmp.0.join("data");
    let (mut srv, _) = written_then_killed("version", &data, 2, &[]);
    let seg = segments(&data).pop().unwrap();
    let mut b = std::fs::read(&seg).unwrap();
    b[8..12].copy_from_slice(&2u32.to_le_bytes());
    std::fs::write(&seg, &b).unwrap();
    let before = tree(&data);

    let f = srv.start_refused();
    assert!(!f.status.success(), "{f:?}");
    for want in [
        "==> agent stopped: raft failed to start:".to_string(),
        seg.display().to_string(),
        "format version 2 is not supported".to_string(),
    ] {
        assert!(f.stderr.contains(&want), "stderr lacks {want:?}: {f:?}");
    }
    assert_tree_unchanged(&before, &tree(&data));
}

#[test]
fn corrupt_newest_snapshot_falls_back_and_all_corrupt_is_refused() {
    let tmp = TempDir::new("snapfall");
    let data = tmp.0.join("data");
    let mut srv = Server::durable("snapfall", &data, 2, &TINY_SNAPSHOTS);
    srv.start();
    let mut entries = Vec::new();
    let mut n = 0u64;
    let mut write_some = |srv: &Server, entries: &mut Vec<Value>, k: u64| {
        for _ in 0..k {
            entries.push(write_and_read(srv, &format!("snapfall/k{n:04}"), n));
            n += 1;
        }
    };
    // Two snapshots taken while this test wrote (the older one after some of its writes).
    let mut taken = 0;
    while taken < 2 {
        let before = snapshots(&data).last().cloned();
        write_some(&srv, &mut entries, 15);
        eventually(SNAPSHOT_WAIT, "a snapshot after 15 writes", || {
            (snapshots(&data).last() != before.as_ref()).then_some(())
        });
        taken += 1;
    }
    // And some entries only in the log (fewer than the threshold: no snapshot covers them).
    write_some(&srv, &mut entries, 4);
    srv.kill9();
    let snaps = snapshots(&data);
    assert_eq!(snaps.len(), 2, "two snapshots are kept: {snaps:?}");
    let both = tmp.0.join("both");
    copy_tree(&data, &both);

    // The newest is damaged in its body: the previous one plus the log has everything.
    let newest = snaps[1].clone();
    let len = std::fs::metadata(&newest).unwrap().len() as usize;
    flip_byte(&newest, len / 2);
    srv.start();
    let log = srv.stderr();
    assert!(
        log.contains(&file_name(&newest)) && log.contains("trying the previous snapshot"),
        "no log line about falling back from {newest:?}:\n{log}"
    );
    assert_entries(&srv, &entries);
    let e = write_and_read(&srv, "snapfall/after", 0);
    assert!(u(&e, "ModifyIndex") > max_modify(&entries), "{e}");
    srv.kill9();

    // Both damaged: nothing to start from.
    for s in snapshots(&both) {
        let len = std::fs::metadata(&s).unwrap().len() as usize;
        flip_byte(&s, len / 2);
    }
    let before = tree(&both);
    let mut srv = Server::durable("snapfall-both", &both, 2, &TINY_SNAPSHOTS);
    let f = srv.start_refused();
    assert!(!f.status.success(), "{f:?}");
    for want in [
        "==> agent stopped: raft failed to start:",
        "snapshot",
        "corrupt",
    ] {
        assert!(f.stderr.contains(want), "stderr lacks {want:?}: {f:?}");
    }
    assert_tree_unchanged(&before, &tree(&both));
}

// ---------------------------------------------------------------------------------------------
// Node ID
// ---------------------------------------------------------------------------------------------

fn node_id(c: &Client) -> String {
    let r = c.get("/v1/agent/self");
    r.ok().json()["Config"]["NodeID"]
        .as_str()
        .unwrap_or_else(|| panic!("no Config.NodeID: {r:?}"))
        .to_string()
}

#[test]
fn node_id_is_persisted_and_dev_writes_no_files() {
    let tmp = TempDir::new("nodeid");
    let data = tmp.0.join("data");
    let mut srv = Server::durable("nodeid", &data, 1, &[]);
    srv.start();
    let id = node_id(&srv);
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let on_disk = std::fs::read_to_string(data.join("node-id")).expect("node-id file");
    assert_eq!(on_disk.trim(), id, "DIR/node-id holds the node ID");
    srv.kill9();
    srv.start();
    assert_eq!(node_id(&srv), id, "same node ID after kill -9 and restart");
    srv.stop();
    srv.start();
    assert_eq!(node_id(&srv), id, "same node ID after a clean restart");

    // -dev: state in memory only, not a file anywhere it could go.
    let cwd = TempDir::new("dev-cwd");
    let home = TempDir::new("dev-home");
    let mut dev = Server::dev_in("dev-nofiles", &cwd.0, 1);
    dev.env("HOME", &home.path());
    dev.env("TMPDIR", &home.path());
    dev.start();
    dev.kv_put("dev/k", "v");
    assert!(!node_id(&dev).is_empty());
    dev.stop();
    for d in [&cwd, &home] {
        let t = tree(&d.0);
        assert!(t.is_empty(), "-dev created files: {:?}", t.keys());
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshot save / restore / inspect through the CLI
// ---------------------------------------------------------------------------------------------

/// Runs `muster snapshot <verb> -http-addr=<server> FILE`; `CONSUL_HTTP_ADDR` points nowhere, so
/// only the flag can make it work.
fn snapshot_cli(srv: &Server, verb: &str, file: &Path) -> CliOut {
    let flag = format!("-http-addr={}", srv.addr());
    let file = file.display().to_string();
    cli_at("127.0.0.1:1", &["snapshot", verb, &flag, &file], b"")
}

/// KV keys (with flags, a binary and an empty value, a held lock), sessions, and external
/// catalog nodes with services and checks. Returns the number of KV keys.
fn populate(a: &Server) -> usize {
    for (i, (node, svc, status)) in [
        ("ext-1", "web", "passing"),
        ("ext-2", "db", "warning"),
        ("ext-3", "web", "critical"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = a.put_json(
            "/v1/catalog/register",
            &json!({
                "Datacenter": "dc1",
                "Node": node,
                "Address": format!("127.0.0.{}", i + 10),
                "TaggedAddresses": {"lan": format!("127.0.0.{}", i + 10)},
                "NodeMeta": {"rack": format!("r{i}")},
                "Service": {
                    "ID": format!("{svc}-{i}"),
                    "Service": svc,
                    "Tags": [format!("v{i}"), "primary"],
                    "Meta": {"version": format!("1.{i}")},
                    "Port": 8000 + i,
                },
                "Check": {
                    "CheckID": format!("{svc}-{i}-check"),
                    "Name": "service check",
                    "Status": status,
                    "Output": format!("output {i}"),
                    "ServiceID": format!("{svc}-{i}"),
                },
            }),
        );
        assert!(r.bool(), "{r:?}");
    }
    // A node-level check and a second service on one node.
    let r = a.put_json(
        "/v1/catalog/register",
        &json!({
            "Node": "ext-1",
            "Address": "127.0.0.10",
            "SkipNodeUpdate": true,
            "Service": {"ID": "cache-1", "Service": "cache", "Port": 6379},
            "Checks": [
                {"CheckID": "disk", "Name": "disk", "Status": "passing"},
                {"CheckID": "cache-1-check", "Name": "cache", "Status": "passing", "ServiceID": "cache-1"}
            ],
        }),
    );
    assert!(r.bool(), "{r:?}");
    // Sessions on external nodes, with no checks: nothing about the servers' own members can
    // invalidate them after the restore.
    let holder = a.session_create(&json!({"Node": "ext-1", "NodeChecks": [], "Name": "holder"}));
    a.session_create(&json!({
        "Node": "ext-2",
        "NodeChecks": [],
        "Name": "other",
        "Behavior": "delete",
        "LockDelay": "5s",
    }));
    let mut keys = 0;
    for i in 0..25 {
        a.kv_put(&format!("app/config/k{i:02}"), format!("value {i}"));
        keys += 1;
    }
    let r = a.put("/v1/kv/flags/f?flags=42", "flagged");
    assert!(r.bool(), "{r:?}");
    a.kv_put("bin/blob", [0u8, 159, 146, 150, 255, 1]);
    a.kv_put("empty", "");
    a.kv_put("app/config/k00", "value 0, again");
    assert!(a.kv_lock("locks/leader", "acquire", &holder, "me"));
    keys + 4
}

/// Everything a restore carries, minus what belongs to the servers themselves (their own node,
/// its `serfHealth` check and `consul` service, and sessions on it).
fn restorable_state(c: &Client, servers: &[&str]) -> Value {
    let own = |v: &Value| servers.contains(&v["Node"].as_str().unwrap_or(""));
    let list = |path: &str| -> Vec<Value> {
        let r = c.get(path);
        if r.status == 404 {
            return Vec::new();
        }
        match r.ok().json() {
            Value::Array(v) => v,
            other => panic!("{path}: expected an array: {other}"),
        }
    };
    let mut sessions: Vec<Value> = list("/v1/session/list")
        .into_iter()
        .filter(|s| !own(s))
        .collect();
    sessions.sort_by_key(|s| s["ID"].as_str().unwrap_or("").to_string());
    let nodes: Vec<Value> = list("/v1/catalog/nodes")
        .into_iter()
        .filter(|n| !own(n))
        .collect();
    let mut services = c.get("/v1/catalog/services").ok().json();
    services
        .as_object_mut()
        .expect("services map")
        .remove("consul");
    let mut checks: Vec<Value> = list("/v1/health/state/any")
        .into_iter()
        .filter(|ch| !own(ch))
        .collect();
    checks.sort_by_key(|ch| format!("{}/{}", ch["Node"], ch["CheckID"]));
    json!({
        "kv": list("/v1/kv/?recurse"),
        "sessions": sessions,
        "nodes": nodes,
        "services": services,
        "checks": checks,
    })
}

/// Highest `X-Consul-Index` over the endpoints a restore affects.
fn max_table_index(c: &Client) -> u64 {
    [
        "/v1/kv/?recurse",
        "/v1/session/list",
        "/v1/catalog/nodes",
        "/v1/catalog/services",
        "/v1/health/state/any",
    ]
    .iter()
    .map(|p| c.get(p).index())
    .max()
    .unwrap()
}

/// Highest CreateIndex/ModifyIndex of any item in a `restorable_state`.
fn max_item_index(state: &Value) -> u64 {
    fn walk(v: &Value, max: &mut u64) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "CreateIndex" || k == "ModifyIndex" {
                        *max = (*max).max(x.as_u64().unwrap_or(0));
                    }
                    walk(x, max);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, max)),
            _ => {}
        }
    }
    let mut max = 0;
    walk(state, &mut max);
    max
}

/// A populated server A, a saved snapshot of it, and a fresh server B (own empty data dir)
/// holding one key of its own.
struct SnapshotPair {
    // Fields drop in order: the servers go before their directories.
    a: Server,
    b: Server,
    file: PathBuf,
    keys: usize,
    tmp: TempDir,
}

fn snapshot_pair(tag: &str) -> SnapshotPair {
    let tmp = TempDir::new(tag);
    let mut a = Server::durable(&format!("{tag}-a"), &tmp.0.join("a"), 2, &[]);
    a.start();
    let keys = populate(&a);
    let file = tmp.0.join("a.snap");
    let out = snapshot_cli(&a, "save", &file);
    out.success();
    assert!(
        out.stdout.contains("Saved and verified snapshot to index"),
        "{out:?}"
    );
    let mut b = Server::durable(&format!("{tag}-b"), &tmp.0.join("b"), 1, &[]);
    b.start();
    b.kv_put("b-only", "this key is not in the snapshot");
    SnapshotPair {
        a,
        b,
        file,
        keys,
        tmp,
    }
}

#[test]
fn snapshot_save_inspect_restore_round_trip() {
    let p = snapshot_pair("snaprt");
    let (a, b, file, keys, tmp) = (&p.a, &p.b, &p.file, p.keys, &p.tmp);
    let (a_node, b_node) = (a.node.clone(), b.node.clone());
    let servers = [a_node.as_str(), b_node.as_str()];
    let want = restorable_state(a, &servers);
    assert_eq!(want["kv"].as_array().unwrap().len(), keys, "{want}");

    // inspect: index, term and per-table counts of what A holds.
    let out = cli_at(
        "127.0.0.1:1",
        &["snapshot", "inspect", &file.display().to_string()],
        b"",
    );
    out.success();
    let field = |name: &str| -> u64 {
        out.stdout
            .lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(name)).then(|| w.next()?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no {name} line: {out:?}"))
    };
    let (index, term) = (field("Index"), field("Term"));
    assert!(index >= max_item_index(&want), "{out:?}");
    assert!(term >= 1, "{out:?}");
    for (table, count) in [
        ("KVS", keys as u64),
        ("Session", 2),
        // ext-1..3 and A's own node, each check and service including A's.
        ("Node", 4),
        ("Service", 5),
        ("Check", 6),
    ] {
        assert_eq!(field(table), count, "{table} count: {out:?}");
    }
    // GET /v1/snapshot is the same format, and says which index it covers.
    let r = a.get("/v1/snapshot");
    r.ok();
    let direct = tmp.0.join("direct.snap");
    std::fs::write(&direct, &r.body).unwrap();
    let out = cli_at(
        "127.0.0.1:1",
        &["snapshot", "inspect", &direct.display().to_string()],
        b"",
    );
    out.success();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Index", &r.index().to_string()]),
        "X-Consul-Index {} is the snapshot's index: {out:?}",
        r.index()
    );

    // Damaged files are refused, by the CLI and by the HTTP API, and B is left as it was.
    let b_before = restorable_state(b, &[]);
    let b_index_before = max_table_index(b);
    let good = std::fs::read(file).unwrap();
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x5A;
    let bad_files = [
        ("truncated", good[..good.len() / 2].to_vec(), "truncated"),
        ("flipped", flipped, "checksum"),
    ];
    for (name, bytes, says) in &bad_files {
        let path = tmp.0.join(format!("{name}.snap"));
        std::fs::write(&path, bytes).unwrap();
        let out = snapshot_cli(b, "restore", &path);
        assert_ne!(out.code, Some(0), "{name} file restored: {out:?}");
        assert!(
            out.stderr.contains("Error restoring snapshot") && out.stderr.contains(says),
            "{name}: {out:?}"
        );
        let r = b.put("/v1/snapshot", bytes);
        assert!(
            (400..500).contains(&r.status) && r.text().contains("snapshot"),
            "{name} file over HTTP: {r:?}"
        );
        let out = cli_at(
            "127.0.0.1:1",
            &["snapshot", "inspect", &path.display().to_string()],
            b"",
        );
        assert_ne!(out.code, Some(0), "{name} file inspected: {out:?}");
        assert!(
            out.stderr.contains("Error extracting snapshot data"),
            "{out:?}"
        );
    }
    assert_eq!(
        restorable_state(b, &[]),
        b_before,
        "a refused restore changed B"
    );

    // The good file: B now holds exactly A's data, with A's item indexes; B's table indexes do
    // not go backwards.
    let out = snapshot_cli(b, "restore", file);
    out.success();
    assert!(out.stdout.contains("Restored snapshot"), "{out:?}");
    assert!(
        b.kv_entry("b-only").is_none(),
        "restore replaces the whole state"
    );
    assert_eq!(restorable_state(b, &servers), want, "B after the restore");
    assert!(
        max_table_index(b) >= b_index_before.max(index),
        "table indexes went backwards after the restore"
    );
    let locked = b.kv_entry("locks/leader").expect("locked key");
    assert_eq!(
        locked,
        a.kv_entry("locks/leader").unwrap(),
        "the lock and its session"
    );

    // Durable: B restarted after a crash still has it.
    let mut p = p;
    p.b.kill9();
    p.b.start();
    assert_eq!(
        restorable_state(&p.b, &servers),
        want,
        "B after a restart following the restore"
    );
}

/// After a restore, new writes must get raft indexes above every index the restored data
/// carries, as Consul's (hashicorp/raft's) restore guarantees by moving the log index past the
/// snapshot's: otherwise a blocking query at the `X-Consul-Index` it was given never wakes, and
/// `ModifyIndex` goes backwards.
#[test]
fn snapshot_restore_keeps_indexes_increasing() {
    let p = snapshot_pair("snapidx");
    let servers = [p.a.node.as_str(), p.b.node.as_str()];
    snapshot_cli(&p.b, "restore", &p.file).success();
    let restored = restorable_state(&p.b, &servers);
    let seen = max_item_index(&restored).max(max_table_index(&p.b));
    let e = write_and_read(&p.b, "after-restore", 1);
    assert!(
        u(&e, "CreateIndex") > seen && u(&e, "ModifyIndex") > seen,
        "a write after the restore got index {} but the restored data shows indexes up to \
         {seen}: indexes went backwards: {e}",
        u(&e, "ModifyIndex")
    );
}

/// A restore replaces the catalog with the snapshot's, which does not hold this server's own
/// node; the leader must put it back (Consul re-asserts leadership after a restore, which
/// reconciles the members into the catalog), or this server has no `serfHealth`, no `consul`
/// service entry, and anti-entropy cannot sync its services.
#[test]
fn snapshot_restore_keeps_the_servers_own_registration() {
    let p = snapshot_pair("snapself");
    snapshot_cli(&p.b, "restore", &p.file).success();
    let node = p.b.node.clone();
    let got = eventually_or(Duration::from_secs(10), || {
        let r = p.b.get(&format!("/v1/health/node/{node}"));
        let checks = r.ok().json();
        checks
            .as_array()?
            .iter()
            .any(|c| c["CheckID"] == "serfHealth" && c["Status"] == "passing")
            .then_some(())
    });
    assert!(
        got.is_some(),
        "server {node} is not back in its own catalog after a restore: nodes {}",
        p.b.get("/v1/catalog/nodes").text()
    );
    let r = p.b.get("/v1/catalog/service/consul");
    let v = r.ok().json();
    assert!(
        v.as_array()
            .is_some_and(|l| l.iter().any(|s| s["Node"] == node.as_str())),
        "the consul service is not on {node}: {r:?}"
    );
}
