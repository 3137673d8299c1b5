//! Consul's KV, session and transaction rules, checked one by one through the coordinator on
//! one shard and on three shards (`LocalShards`), so every rule also holds once keys are
//! spread over shards.
//!
//! The rules come from Consul's state store (`kvs.go`, `txn.go`, `session.go`); each test
//! names the rule it pins.
use bytes::Bytes;
use futures::executor::block_on;
use muster_shards::catalog::{HealthCheck, Node};
use muster_shards::command::{Command, CommandResult, KvOp, KvVerb, NodeRegistration};
use muster_shards::coord::{self, Backend};
use muster_shards::kv::KvEntry;
use muster_shards::local::LocalShards;
use muster_shards::route::shard_for;
use muster_shards::session::{Behavior, Session};

/// Wall clock carried by every command in these tests unless a test says otherwise.
const T0: u64 = 1_700_000_000_000;

struct Db {
    b: LocalShards,
    n: usize,
}

impl Db {
    fn new(n: usize) -> Db {
        Db {
            b: LocalShards::new(n),
            n,
        }
    }

    fn apply_at(&self, idx: u64, at_ms: u64, cmd: Command) -> CommandResult {
        block_on(coord::apply(&self.b, idx, at_ms, cmd)).expect("local shards are always up")
    }

    fn apply(&self, idx: u64, cmd: Command) -> CommandResult {
        self.apply_at(idx, T0, cmd)
    }

    fn get(&self, key: &str) -> (u64, Option<KvEntry>) {
        block_on(coord::kv_get(&self.b, key)).unwrap()
    }

    fn entry(&self, key: &str) -> KvEntry {
        self.get(key)
            .1
            .unwrap_or_else(|| panic!("{key} should exist"))
    }

    fn list(&self, prefix: &str) -> (u64, Vec<KvEntry>) {
        block_on(coord::kv_list(&self.b, prefix)).unwrap()
    }

    fn keys(&self, prefix: &str, sep: &str) -> (u64, Vec<String>) {
        block_on(coord::kv_keys(&self.b, prefix, sep)).unwrap()
    }

    /// The KV table index over all shards (what Consul reports for a whole-table listing).
    fn table_index(&self) -> u64 {
        (0..self.n)
            .map(|s| self.b.shard(s).kv().index())
            .max()
            .unwrap()
    }

    fn owner(&self, key: &str) -> usize {
        shard_for(key.as_bytes(), self.n)
    }

    fn lock_delay(&self, key: &str, now_ms: u64) -> u64 {
        self.b
            .shard(self.owner(key))
            .lock_delay_remaining(key, now_ms)
    }

    fn set(&self, idx: u64, key: &str, value: &str) -> CommandResult {
        self.apply(idx, Command::Kv(op(KvVerb::Set, key, value)))
    }

    /// Registers node `name` with a `serfHealth` check in `status`.
    fn register_node(&self, idx: u64, name: &str, status: &str) {
        let reg = NodeRegistration {
            node: Node {
                node: name.to_string(),
                address: "127.0.0.1".to_string(),
                ..Node::default()
            },
            checks: vec![HealthCheck {
                check_id: "serfHealth".to_string(),
                name: "Serf Health Status".to_string(),
                status: status.to_string(),
                ..HealthCheck::default()
            }],
        };
        assert_eq!(
            self.apply(idx, Command::RegisterNode(reg)),
            CommandResult::Bool(true)
        );
    }

    fn create_session(&self, idx: u64, s: Session) -> CommandResult {
        self.apply(idx, Command::SessionCreate(s))
    }
}

fn op(verb: KvVerb, key: &str, value: &str) -> KvOp {
    KvOp {
        value: Bytes::copy_from_slice(value.as_bytes()),
        ..KvOp::new(verb, key)
    }
}

fn op_idx(verb: KvVerb, key: &str, value: &str, index: u64) -> KvOp {
    KvOp {
        index,
        ..op(verb, key, value)
    }
}

fn op_sess(verb: KvVerb, key: &str, value: &str, session: &str) -> KvOp {
    KvOp {
        session: session.to_string(),
        ..op(verb, key, value)
    }
}

fn session(id: &str, node: &str, behavior: Behavior, lock_delay_ms: u64) -> Session {
    Session {
        id: id.to_string(),
        node: node.to_string(),
        node_checks: vec!["serfHealth".to_string()],
        behavior,
        lock_delay_ns: lock_delay_ms * 1_000_000,
        ..Session::default()
    }
}

/// A node "n1" and sessions "s1", "s2" on it (release behaviour, no lock delay), at indexes 1-3.
fn with_sessions(n: usize) -> Db {
    let db = Db::new(n);
    db.register_node(1, "n1", "passing");
    for (i, id) in ["s1", "s2"].into_iter().enumerate() {
        assert_eq!(
            db.create_session(2 + i as u64, session(id, "n1", Behavior::Release, 0)),
            CommandResult::SessionCreated { id: id.to_string() }
        );
    }
    db
}

/// `count` keys `{prefix}{i}` that land on pairwise different shards (as many as there are shards).
fn keys_on_distinct_shards(n: usize, prefix: &str, count: usize) -> Vec<String> {
    assert!(count <= n);
    let mut seen = vec![false; n];
    let mut out = Vec::new();
    for i in 0.. {
        let k = format!("{prefix}{i}");
        let s = shard_for(k.as_bytes(), n);
        if !seen[s] {
            seen[s] = true;
            out.push(k);
            if out.len() == count {
                return out;
            }
        }
    }
    unreachable!()
}

fn txn_errors(r: &CommandResult) -> Vec<usize> {
    match r {
        CommandResult::TxnFailed(errs) => errs.iter().map(|e| e.op_index).collect(),
        other => panic!("expected a failed transaction, got {other:?}"),
    }
}

fn txn_ok(r: CommandResult) -> Vec<Vec<KvEntry>> {
    match r {
        CommandResult::TxnOk(res) => res,
        other => panic!("expected a committed transaction, got {other:?}"),
    }
}

// ---- Index rules -------------------------------------------------------------------------

fn set_stamps_create_and_modify_index(n: usize) {
    let db = Db::new(n);
    assert_eq!(db.set(10, "k", "v1"), CommandResult::Bool(true));
    let e = db.entry("k");
    assert_eq!((e.create_index, e.modify_index, e.lock_index), (10, 10, 0));
    assert_eq!(e.value, Bytes::from_static(b"v1"));
    assert_eq!(db.get("k").0, 10);

    assert_eq!(db.set(12, "k", "v2"), CommandResult::Bool(true));
    let e = db.entry("k");
    assert_eq!((e.create_index, e.modify_index), (10, 12));
    assert_eq!(e.value, Bytes::from_static(b"v2"));
    assert_eq!(db.get("k").0, 12);
    assert_eq!(db.table_index(), 12);
}

fn identical_write_moves_no_index(n: usize) {
    let db = Db::new(n);
    db.set(10, "k", "v");
    db.set(11, "other", "x");
    assert_eq!(db.set(20, "k", "v"), CommandResult::Bool(true));
    let e = db.entry("k");
    assert_eq!((e.create_index, e.modify_index), (10, 10));
    assert_eq!(db.get("k").0, 10);
    assert_eq!(
        db.table_index(),
        11,
        "a no-op write must not move the table"
    );
    assert_eq!(db.list("k").0, 10);

    // Flags are content: changing only them is a write.
    let mut f = op(KvVerb::Set, "k", "v");
    f.flags = 42;
    assert_eq!(db.apply(21, Command::Kv(f)), CommandResult::Bool(true));
    let e = db.entry("k");
    assert_eq!((e.modify_index, e.flags), (21, 42));
}

fn cas_with_index_zero_is_create_only(n: usize) {
    let db = Db::new(n);
    let cas0 = |idx, v: &str| db.apply(idx, Command::Kv(op_idx(KvVerb::Cas, "k", v, 0)));
    assert_eq!(cas0(5, "first"), CommandResult::Bool(true));
    assert_eq!(cas0(6, "second"), CommandResult::Bool(false));
    let e = db.entry("k");
    assert_eq!((e.create_index, e.modify_index), (5, 5));
    assert_eq!(e.value, Bytes::from_static(b"first"));
    assert_eq!(db.table_index(), 5);
}

fn cas_on_missing_key_with_nonzero_index_fails(n: usize) {
    let db = Db::new(n);
    let r = db.apply(5, Command::Kv(op_idx(KvVerb::Cas, "k", "v", 3)));
    assert_eq!(r, CommandResult::Bool(false));
    assert_eq!(db.get("k"), (0, None));
    assert_eq!(db.table_index(), 0);
}

fn cas_needs_the_current_modify_index(n: usize) {
    let db = Db::new(n);
    db.set(5, "k", "v1");
    db.set(6, "k", "v2");
    let stale = db.apply(7, Command::Kv(op_idx(KvVerb::Cas, "k", "v3", 5)));
    assert_eq!(stale, CommandResult::Bool(false));
    assert_eq!(db.entry("k").modify_index, 6);
    assert_eq!(db.table_index(), 6);
    let fresh = db.apply(8, Command::Kv(op_idx(KvVerb::Cas, "k", "v3", 6)));
    assert_eq!(fresh, CommandResult::Bool(true));
    let e = db.entry("k");
    assert_eq!((e.create_index, e.modify_index), (5, 8));
    assert_eq!(e.value, Bytes::from_static(b"v3"));
}

// ---- Locks ---------------------------------------------------------------------------------

fn lock_needs_an_existing_session(n: usize) {
    let db = with_sessions(n);
    let r = db.apply(10, Command::Kv(op_sess(KvVerb::Lock, "k", "v", "nope")));
    match r {
        CommandResult::Error(text) => assert!(text.contains("invalid session"), "{text}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(db.get("k").1, None);
}

/// Consul answers a lock or unlock without a session with an error ("missing session", HTTP
/// 500), not with `false`; in a transaction it fails the op.
fn lock_and_unlock_need_a_session(n: usize) {
    let db = with_sessions(n);
    db.apply(10, Command::Kv(op_sess(KvVerb::Lock, "k", "v", "s1")));
    for verb in [KvVerb::Lock, KvVerb::Unlock] {
        let r = db.apply(11, Command::Kv(op_sess(verb, "k", "w", "")));
        match r {
            CommandResult::Error(text) => assert!(text.contains("missing session"), "{text}"),
            other => panic!("{verb:?}: expected an error, got {other:?}"),
        }
        let r = db.apply(12, Command::Txn(vec![op_sess(verb, "k", "w", "")]));
        assert_eq!(txn_errors(&r), [0]);
    }
    let e = db.entry("k");
    assert_eq!((e.session.as_str(), e.modify_index), ("s1", 10));
}

fn lock_held_by_another_session_is_refused(n: usize) {
    let db = with_sessions(n);
    let r = db.apply(10, Command::Kv(op_sess(KvVerb::Lock, "k", "mine", "s1")));
    assert_eq!(r, CommandResult::Bool(true));
    let e = db.entry("k");
    assert_eq!((e.session.as_str(), e.lock_index), ("s1", 1));
    assert_eq!((e.create_index, e.modify_index), (10, 10));

    let r = db.apply(11, Command::Kv(op_sess(KvVerb::Lock, "k", "theirs", "s2")));
    assert_eq!(r, CommandResult::Bool(false));
    assert_eq!(db.entry("k"), e, "a refused lock changes nothing");
}

fn relock_by_the_holder_keeps_lock_index(n: usize) {
    let db = with_sessions(n);
    db.apply(10, Command::Kv(op_sess(KvVerb::Lock, "k", "a", "s1")));
    let r = db.apply(11, Command::Kv(op_sess(KvVerb::Lock, "k", "b", "s1")));
    assert_eq!(r, CommandResult::Bool(true));
    let e = db.entry("k");
    assert_eq!(e.lock_index, 1);
    assert_eq!(e.session, "s1");
    assert_eq!((e.create_index, e.modify_index), (10, 11));
    assert_eq!(e.value, Bytes::from_static(b"b"));

    // Re-locking with the same content is a no-op write.
    db.apply(12, Command::Kv(op_sess(KvVerb::Lock, "k", "b", "s1")));
    assert_eq!(db.entry("k").modify_index, 11);
}

fn lock_after_release_increments_lock_index(n: usize) {
    let db = with_sessions(n);
    db.apply(10, Command::Kv(op_sess(KvVerb::Lock, "k", "a", "s1")));
    let r = db.apply(11, Command::Kv(op_sess(KvVerb::Unlock, "k", "a", "s1")));
    assert_eq!(r, CommandResult::Bool(true));
    assert_eq!(db.entry("k").lock_index, 1);
    let r = db.apply(12, Command::Kv(op_sess(KvVerb::Lock, "k", "b", "s2")));
    assert_eq!(r, CommandResult::Bool(true));
    let e = db.entry("k");
    assert_eq!((e.session.as_str(), e.lock_index), ("s2", 2));
    assert_eq!((e.create_index, e.modify_index), (10, 12));

    // An unlocked key that already exists is locked with LockIndex + 1 too.
    db.set(13, "plain", "x");
    db.apply(14, Command::Kv(op_sess(KvVerb::Lock, "plain", "x", "s1")));
    let e = db.entry("plain");
    assert_eq!((e.lock_index, e.create_index, e.modify_index), (1, 13, 14));
}

fn unlock_only_by_the_holder(n: usize) {
    let db = with_sessions(n);
    let unheld = db.apply(9, Command::Kv(op_sess(KvVerb::Unlock, "k", "a", "s1")));
    assert_eq!(
        unheld,
        CommandResult::Bool(false),
        "unlock of a missing key"
    );
    assert_eq!(db.get("k").1, None);

    db.apply(10, Command::Kv(op_sess(KvVerb::Lock, "k", "a", "s1")));
    let r = db.apply(11, Command::Kv(op_sess(KvVerb::Unlock, "k", "b", "s2")));
    assert_eq!(r, CommandResult::Bool(false));
    assert_eq!(db.entry("k").session, "s1");
    assert_eq!(db.entry("k").modify_index, 10);

    let r = db.apply(12, Command::Kv(op_sess(KvVerb::Unlock, "k", "b", "s1")));
    assert_eq!(r, CommandResult::Bool(true));
    let e = db.entry("k");
    assert_eq!(e.session, "");
    assert_eq!((e.lock_index, e.modify_index), (1, 12));
    assert_eq!(e.value, Bytes::from_static(b"b"));

    let again = db.apply(13, Command::Kv(op_sess(KvVerb::Unlock, "k", "b", "s1")));
    assert_eq!(again, CommandResult::Bool(false), "unlock of an unheld key");
}

fn plain_set_keeps_the_holder(n: usize) {
    let db = with_sessions(n);
    db.apply(10, Command::Kv(op_sess(KvVerb::Lock, "k", "a", "s1")));
    // A set that names another session still keeps the holder: only lock/unlock change it.
    let r = db.apply(11, Command::Kv(op_sess(KvVerb::Set, "k", "b", "s2")));
    assert_eq!(r, CommandResult::Bool(true));
    let e = db.entry("k");
    assert_eq!(e.session, "s1");
    assert_eq!(e.value, Bytes::from_static(b"b"));
    assert_eq!(e.modify_index, 11);
    // Consul's kvsSetTxn keeps the session but not LockIndex, which a plain set carries as 0.
    assert_eq!(e.lock_index, 0);
    // The holder still holds it: another session cannot lock, the holder can release.
    let r = db.apply(12, Command::Kv(op_sess(KvVerb::Lock, "k", "c", "s2")));
    assert_eq!(r, CommandResult::Bool(false));
    let r = db.apply(13, Command::Kv(op_sess(KvVerb::Unlock, "k", "c", "s1")));
    assert_eq!(r, CommandResult::Bool(true));

    // A set (or CAS) never attaches a session to a key nobody holds.
    db.apply(14, Command::Kv(op_sess(KvVerb::Set, "free", "x", "s1")));
    assert_eq!(db.entry("free").session, "");
    db.apply(15, Command::Kv(op_sess(KvVerb::Cas, "free2", "x", "s1")));
    assert_eq!(db.entry("free2").session, "");
}

// ---- Deletes -------------------------------------------------------------------------------

fn delete_of_a_missing_key_changes_no_index(n: usize) {
    let db = Db::new(n);
    db.set(5, "a/x", "1");
    let before = (
        db.table_index(),
        db.list("").0,
        db.list("a/").0,
        db.get("nope").0,
    );
    let r = db.apply(9, Command::Kv(op(KvVerb::Delete, "nope", "")));
    assert_eq!(r, CommandResult::Bool(true));
    let r = db.apply(10, Command::Kv(op(KvVerb::Delete, "a/nope", "")));
    assert_eq!(r, CommandResult::Bool(true));
    let after = (
        db.table_index(),
        db.list("").0,
        db.list("a/").0,
        db.get("nope").0,
    );
    assert_eq!(before, after);
    assert_eq!(after.0, 5);
}

fn delete_leaves_a_tombstone(n: usize) {
    let db = Db::new(n);
    db.set(5, "c/1", "x");
    db.set(6, "c/2", "y");
    db.apply(7, Command::Kv(op(KvVerb::Delete, "c/2", "")));
    assert_eq!(db.get("c/2").1, None);
    db.set(8, "elsewhere", "z");
    // Without the tombstone the listing would say 5 and a watcher of c/ would miss the delete.
    assert_eq!(db.list("c/").0, 7);
    assert_eq!(db.keys("c/", "").0, 7);
    assert_eq!(db.list("c/").1.len(), 1);
}

fn delete_cas(n: usize) {
    let db = Db::new(n);
    let dcas =
        |idx, key: &str, i| db.apply(idx, Command::Kv(op_idx(KvVerb::DeleteCas, key, "", i)));
    assert_eq!(dcas(5, "missing", 3), CommandResult::Bool(true));
    assert_eq!(dcas(6, "missing", 0), CommandResult::Bool(true));
    assert_eq!(db.table_index(), 0, "nothing was deleted");

    db.set(7, "k", "v");
    assert_eq!(dcas(8, "k", 6), CommandResult::Bool(false));
    assert_eq!(dcas(8, "k", 0), CommandResult::Bool(false));
    assert!(db.get("k").1.is_some());
    assert_eq!(dcas(9, "k", 7), CommandResult::Bool(true));
    assert_eq!(db.get("k").1, None);
    assert_eq!(db.list("k").0, 9);
}

fn delete_tree_tombstones_the_prefix(n: usize) {
    let db = Db::new(n);
    for (i, k) in ["a/x", "a/y", "a/z/1", "ab", "b"].into_iter().enumerate() {
        db.set(5 + i as u64, k, "v");
    }
    let r = db.apply(20, Command::Kv(op(KvVerb::DeleteTree, "a/", "")));
    assert_eq!(r, CommandResult::Bool(true));
    assert_eq!(db.list("a/").1, vec![]);
    assert_eq!(db.keys("", "").1, vec!["ab".to_string(), "b".to_string()]);
    db.set(21, "b", "moved");
    // The prefix's tombstone, not the (newer) table index.
    assert_eq!(db.list("a/").0, 20);
    assert_eq!(db.keys("a/", "/").0, 20);
    assert_eq!(
        db.list("a").0,
        20,
        "a shorter prefix sees the tombstone too"
    );
    assert_eq!(db.list("b").0, 21);
    // A longer prefix sees neither entries nor tombstones, so it falls back to the table index.
    assert_eq!(db.list("a/z/").0, 21);

    // Deleting an empty tree changes nothing.
    db.apply(22, Command::Kv(op(KvVerb::DeleteTree, "zzz/", "")));
    assert_eq!(db.table_index(), 21);
    assert_eq!(db.list("zzz/").0, 21);
}

// ---- Listings ------------------------------------------------------------------------------

fn list_index_is_max_of_entries_and_tombstones(n: usize) {
    let db = Db::new(n);
    db.set(5, "p/1", "a");
    db.set(6, "p/2", "b");
    db.set(7, "p/3", "c");
    db.apply(8, Command::Kv(op(KvVerb::Delete, "p/3", "")));
    db.set(9, "q", "x");
    let (idx, entries) = db.list("p/");
    assert_eq!(idx, 8);
    assert_eq!(
        entries.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        ["p/1", "p/2"]
    );
    db.set(10, "p/1", "a2");
    assert_eq!(db.list("p/").0, 10);
    // Nothing under the prefix, ever: the table index.
    assert_eq!(db.list("nothing/").0, 10);
    assert_eq!(db.keys("nothing/", "/"), (10, vec![]));
    // An empty store answers 0.
    assert_eq!(Db::new(n).list("x").0, 0);
}

fn list_is_in_key_order_with_values(n: usize) {
    let db = Db::new(n);
    let keys = ["m", "a/b", "a", "z/1", "a/a", "b"];
    for (i, k) in keys.into_iter().enumerate() {
        db.set(1 + i as u64, k, k);
    }
    let (_, entries) = db.list("");
    let mut sorted = keys.to_vec();
    sorted.sort();
    assert_eq!(
        entries.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        sorted
    );
    for e in &entries {
        assert_eq!(e.value, Bytes::copy_from_slice(e.key.as_bytes()));
    }
}

/// The whole-table listing is at the table index, even after `delete-tree ""` (which leaves no
/// tombstone) when older tombstones remain: Consul's kvsListTxn uses the table index for "".
fn whole_table_listing_after_deleting_everything(n: usize) {
    let db = Db::new(n);
    db.set(1, "a", "x");
    db.apply(2, Command::Kv(op(KvVerb::Delete, "a", "")));
    db.set(3, "b", "y");
    db.set(4, "c", "z");
    assert_eq!(db.list("").0, 4);
    db.apply(5, Command::Kv(op(KvVerb::DeleteTree, "", "")));
    assert_eq!(db.list(""), (5, vec![]));
    assert_eq!(db.keys("", "/"), (5, vec![]));
    assert_eq!(db.table_index(), 5);
}

fn keys_fold_at_the_separator(n: usize) {
    let db = Db::new(n);
    let keys = [
        "config/app/cache",
        "config/app/database/host",
        "config/app/database/pool/size",
        "config/app/database/port",
        "config/app/zz/",
        "config/other",
        "configx",
    ];
    for (i, k) in keys.into_iter().enumerate() {
        db.set(1 + i as u64, k, "v");
    }
    let (idx, got) = db.keys("config/app/", "/");
    assert_eq!(
        got,
        ["config/app/cache", "config/app/database/", "config/app/zz/"]
    );
    assert_eq!(idx, 5);
    let (_, got) = db.keys("config/", "/");
    assert_eq!(got, ["config/app/", "config/other"]);
    let (_, got) = db.keys("config", "/");
    assert_eq!(got, ["config/", "configx"]);
    // No separator: every key under the prefix.
    let (idx, got) = db.keys("config/app/", "");
    assert_eq!(got, keys[..5]);
    assert_eq!(idx, 5);
    let (idx, got) = db.keys("", "/");
    assert_eq!(got, ["config/", "configx"]);
    assert_eq!(idx, 7);
}

// ---- Sessions ------------------------------------------------------------------------------

fn session_create_validates_node_and_checks(n: usize) {
    let db = Db::new(n);
    let err = |r: CommandResult| match r {
        CommandResult::Error(t) => t,
        other => panic!("expected an error, got {other:?}"),
    };
    let t = err(db.create_session(1, session("s", "n1", Behavior::Release, 0)));
    assert!(t.contains("Missing node registration"), "{t}");

    db.register_node(2, "n1", "passing");
    let mut s = session("s", "n1", Behavior::Release, 0);
    s.node_checks = vec!["serfHealth".into(), "nope".into()];
    let t = err(db.create_session(3, s));
    assert!(t.contains("Missing check 'nope'"), "{t}");

    db.register_node(4, "n2", "critical");
    let t = err(db.create_session(5, session("s", "n2", Behavior::Release, 0)));
    assert!(t.contains("critical"), "{t}");
    for sh in 0..n {
        assert!(db.b.shard(sh).sessions().get("s").is_none());
    }

    let r = db.create_session(6, session("s", "n1", Behavior::Release, 0));
    assert_eq!(r, CommandResult::SessionCreated { id: "s".into() });
    // Every shard holds a replica, so a lock on any shard sees the session.
    for sh in 0..n {
        let got = db.b.shard(sh).sessions().get("s").cloned().unwrap();
        assert_eq!((got.create_index, got.modify_index), (6, 6));
    }
    // A node whose check recovered accepts sessions.
    db.register_node(7, "n2", "passing");
    let r = db.create_session(8, session("s2", "n2", Behavior::Release, 0));
    assert_eq!(r, CommandResult::SessionCreated { id: "s2".into() });
}

/// Locks `keys` (spread over all shards) with a session of `behavior` and `delay_ms`, and an
/// unrelated key with "s2"; returns the db after destroying the session at index 20.
fn destroy_holding(n: usize, behavior: Behavior, delay_ms: u64, keys: &[String]) -> Db {
    let db = with_sessions(n);
    let r = db.create_session(4, session("s", "n1", behavior, delay_ms));
    assert_eq!(r, CommandResult::SessionCreated { id: "s".into() });
    for (i, k) in keys.iter().enumerate() {
        let r = db.apply(
            5 + i as u64,
            Command::Kv(op_sess(KvVerb::Lock, k, "held", "s")),
        );
        assert_eq!(r, CommandResult::Bool(true));
    }
    db.apply(15, Command::Kv(op_sess(KvVerb::Lock, "other", "o", "s2")));
    db.set(16, "free", "f");
    let r = db.apply_at(20, T0, Command::SessionDestroy { id: "s".into() });
    assert_eq!(r, CommandResult::Bool(true));
    for sh in 0..n {
        assert!(db.b.shard(sh).sessions().get("s").is_none());
    }
    db
}

fn session_destroy_releases_held_keys(n: usize) {
    let keys = keys_on_distinct_shards(n, "lock/", n);
    let db = destroy_holding(n, Behavior::Release, 15_000, &keys);
    for (i, k) in keys.iter().enumerate() {
        let e = db.entry(k);
        assert_eq!(e.session, "", "{k} released");
        assert_eq!(e.value, Bytes::from_static(b"held"), "{k} keeps its value");
        assert_eq!(e.lock_index, 1);
        assert_eq!((e.create_index, e.modify_index), (5 + i as u64, 20));
        assert_eq!(db.lock_delay(k, T0), 15_000);
        assert_eq!(db.lock_delay(k, T0 + 5_000), 10_000);
        assert_eq!(db.lock_delay(k, T0 + 15_000), 0);
    }
    assert_eq!(db.entry("other").session, "s2");
    assert_eq!(db.lock_delay("other", T0), 0);
    assert_eq!(db.lock_delay("free", T0), 0);
    // Released keys can be locked again, with the next LockIndex.
    let r = db.apply(
        21,
        Command::Kv(op_sess(KvVerb::Lock, &keys[0], "new", "s2")),
    );
    assert_eq!(r, CommandResult::Bool(true));
    assert_eq!(db.entry(&keys[0]).lock_index, 2);
    // Locks by the destroyed session are now invalid.
    let r = db.apply(22, Command::Kv(op_sess(KvVerb::Lock, "x", "v", "s")));
    assert!(matches!(r, CommandResult::Error(_)), "{r:?}");
}

fn session_destroy_deletes_held_keys(n: usize) {
    let keys = keys_on_distinct_shards(n, "eph/", n);
    let db = destroy_holding(n, Behavior::Delete, 5_000, &keys);
    for k in &keys {
        assert_eq!(db.get(k).1, None, "{k} deleted");
        assert_eq!(db.lock_delay(k, T0 + 1_000), 4_000);
    }
    // The deletes left tombstones: the listing of their prefix moved to the destroy's index.
    assert_eq!(db.list("eph/"), (20, vec![]));
    assert_eq!(db.entry("other").session, "s2");
    assert_eq!(db.entry("free").modify_index, 16);
}

fn lock_delay_is_capped_at_60s(n: usize) {
    let keys = keys_on_distinct_shards(n, "cap/", n);
    let db = destroy_holding(n, Behavior::Release, 3_600_000, &keys);
    for k in &keys {
        assert_eq!(db.lock_delay(k, T0), 60_000);
    }
    // No lock delay at all when the session asked for none.
    let db = destroy_holding(n, Behavior::Release, 0, &keys);
    for k in &keys {
        assert_eq!(db.lock_delay(k, T0), 0);
    }
}

// ---- Transactions --------------------------------------------------------------------------

fn txn_is_all_or_nothing_across_shards(n: usize) {
    let db = Db::new(n);
    let ks = keys_on_distinct_shards(n, "t/", n.min(2));
    let (k0, k1) = (&ks[0], ks.last().unwrap());
    db.set(5, k0, "old");
    let before: Vec<_> = (0..n).map(|s| db.b.shard(s).kv().index()).collect();

    // The first two ops would succeed; the last fails on another shard (CAS on a missing key).
    let r = db.apply(
        10,
        Command::Txn(vec![
            op(KvVerb::Set, k0, "new"),
            op(KvVerb::Set, "t/another", "x"),
            // On one shard k1 is k0, whose index is 5: the CAS fails there as well.
            op_idx(KvVerb::Cas, k1, "y", 99),
        ]),
    );
    assert_eq!(txn_errors(&r), [2]);
    let e = db.entry(k0);
    assert_eq!((e.value.as_ref(), e.modify_index), (&b"old"[..], 5));
    assert_eq!(db.get("t/another").1, None);
    let after: Vec<_> = (0..n).map(|s| db.b.shard(s).kv().index()).collect();
    assert_eq!(before, after, "no shard's index moved");
}

fn txn_rolls_back_every_verb(n: usize) {
    let db = with_sessions(n);
    db.set(5, "x/1", "a");
    db.set(6, "x/2", "b");
    db.apply(7, Command::Kv(op_sess(KvVerb::Lock, "x/3", "c", "s1")));
    let snapshot = db.list("");
    let ops = vec![
        op(KvVerb::Set, "x/1", "changed"),
        op(KvVerb::Delete, "x/2", ""),
        op_sess(KvVerb::Unlock, "x/3", "c", "s1"),
        op_sess(KvVerb::Lock, "x/4", "d", "s2"),
        op(KvVerb::DeleteTree, "x/", ""),
        op(KvVerb::Set, "y", "new"),
        op(KvVerb::Get, "never", ""),
    ];
    let r = db.apply(10, Command::Txn(ops));
    assert_eq!(txn_errors(&r), [6]);
    assert_eq!(db.list(""), snapshot);
    // The rolled-back unlock did not release s1's hold, nor did the rolled-back lock take one.
    let r = db.apply(11, Command::Kv(op_sess(KvVerb::Lock, "x/3", "c", "s2")));
    assert_eq!(r, CommandResult::Bool(false));
    let r = db.apply(12, Command::SessionDestroy { id: "s2".into() });
    assert_eq!(r, CommandResult::Bool(true));
    assert_eq!(db.get("x/4").1, None);
}

fn txn_errors_carry_op_indexes(n: usize) {
    let db = with_sessions(n);
    db.set(5, "k1", "v");
    let ops = vec![
        op(KvVerb::Set, "a", "1"),
        op_idx(KvVerb::Cas, "k1", "v2", 4),
        op(KvVerb::Get, "a", ""),
        op(KvVerb::CheckNotExists, "k1", ""),
        op_idx(KvVerb::CheckIndex, "k1", "", 5),
        op_sess(KvVerb::Lock, "b", "", "nope"),
        op_sess(KvVerb::CheckSession, "k1", "", "s1"),
        op_idx(KvVerb::DeleteCas, "k1", "", 3),
    ];
    let r = db.apply(10, Command::Txn(ops));
    assert_eq!(txn_errors(&r), [1, 3, 5, 6, 7]);
    if let CommandResult::TxnFailed(errs) = &r {
        assert!(errs.iter().all(|e| !e.what.is_empty()));
        assert!(errs[2].what.contains("invalid session"), "{}", errs[2].what);
    }
    assert_eq!(db.get("a").1, None);
    assert_eq!(db.table_index(), 5);
}

fn txn_results_in_op_order(n: usize) {
    let db = with_sessions(n);
    db.set(5, "k", "v");
    let ops = vec![
        op(KvVerb::Set, "z", "1"),
        op(KvVerb::Set, "a", "2"),
        op(KvVerb::Get, "k", ""),
        op_idx(KvVerb::Cas, "k", "v2", 5),
        op_idx(KvVerb::CheckIndex, "k", "", 10),
        op_sess(KvVerb::Lock, "m", "3", "s1"),
        op_sess(KvVerb::CheckSession, "m", "", "s1"),
        op(KvVerb::CheckNotExists, "nope", ""),
        op(KvVerb::Delete, "a", ""),
        op(KvVerb::GetTree, "", ""),
        op_idx(KvVerb::DeleteCas, "z", "", 10),
    ];
    let res = txn_ok(db.apply(10, Command::Txn(ops)));
    assert_eq!(res.len(), 11);
    let one = |i: usize| -> &KvEntry {
        assert_eq!(res[i].len(), 1, "op {i}");
        &res[i][0]
    };
    // Writes report the entry without its value, at the transaction's index.
    assert_eq!((one(0).key.as_str(), one(0).modify_index), ("z", 10));
    assert!(one(0).value.is_empty());
    assert_eq!(one(1).key, "a");
    // A get reports the value as it was at that point of the transaction.
    assert_eq!(
        (one(2).key.as_str(), one(2).value.as_ref()),
        ("k", &b"v"[..])
    );
    assert_eq!((one(3).key.as_str(), one(3).modify_index), ("k", 10));
    assert_eq!(one(4).key, "k", "check-index sees the earlier CAS");
    assert_eq!((one(5).session.as_str(), one(5).lock_index), ("s1", 1));
    assert_eq!(one(6).key, "m");
    assert!(res[7].is_empty() && res[8].is_empty() && res[10].is_empty());
    // get-tree: in key order over all shards, with values, after the delete of "a".
    let tree: Vec<(&str, &[u8])> = res[9]
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_ref()))
        .collect();
    assert_eq!(tree, [("k", &b"v2"[..]), ("m", b"3"), ("z", b"1")]);
    // After the transaction: everything at index 10.
    assert_eq!(db.get("z").1, None);
    assert_eq!(db.get("a").1, None);
    assert_eq!(db.entry("k").modify_index, 10);
    assert_eq!(db.list("").0, 10);
}

fn txn_get_tree_in_key_order(n: usize) {
    let db = Db::new(n);
    let mut keys: Vec<String> = (0..40).map(|i| format!("g/{:02}", (i * 17) % 40)).collect();
    for (i, k) in keys.iter().enumerate() {
        db.set(1 + i as u64, k, k);
    }
    db.set(100, "h/outside", "x");
    let res = txn_ok(db.apply(101, Command::Txn(vec![op(KvVerb::GetTree, "g/", "")])));
    keys.sort();
    let got: Vec<&str> = res[0].iter().map(|e| e.key.as_str()).collect();
    assert_eq!(got, keys);
    assert!(res[0].iter().all(|e| e.value == e.key.as_bytes()));
    // A read-only transaction moves nothing.
    assert_eq!(db.table_index(), 100);
}

fn txn_writes_share_one_index(n: usize) {
    let db = Db::new(n);
    let ks = keys_on_distinct_shards(n, "w/", n);
    let ops = ks.iter().map(|k| op(KvVerb::Set, k, "v")).collect();
    let res = txn_ok(db.apply(7, Command::Txn(ops)));
    assert_eq!(res.len(), n);
    for k in &ks {
        let e = db.entry(k);
        assert_eq!((e.create_index, e.modify_index), (7, 7));
    }
    for s in 0..n {
        assert_eq!(db.b.shard(s).kv().index(), 7);
    }
    // An identical transaction is a no-op everywhere.
    let ops = ks.iter().map(|k| op(KvVerb::Set, k, "v")).collect();
    let res = txn_ok(db.apply(8, Command::Txn(ops)));
    assert!(res.iter().all(|r| r[0].modify_index == 7));
    assert_eq!(db.table_index(), 7);
}

#[test]
fn keys_on_distinct_shards_really_are() {
    let ks = keys_on_distinct_shards(3, "x/", 3);
    let mut shards: Vec<usize> = ks.iter().map(|k| shard_for(k.as_bytes(), 3)).collect();
    shards.sort();
    assert_eq!(shards, [0, 1, 2]);
    assert_eq!(LocalShards::new(3).nshards(), 3);
}

macro_rules! on_1_and_3_shards {
    ($($name:ident),* $(,)?) => {
        mod one_shard {
            $( #[test] fn $name() { super::$name(1) } )*
        }
        mod three_shards {
            $( #[test] fn $name() { super::$name(3) } )*
        }
    };
}

on_1_and_3_shards!(
    set_stamps_create_and_modify_index,
    identical_write_moves_no_index,
    cas_with_index_zero_is_create_only,
    cas_on_missing_key_with_nonzero_index_fails,
    cas_needs_the_current_modify_index,
    lock_needs_an_existing_session,
    lock_and_unlock_need_a_session,
    lock_held_by_another_session_is_refused,
    relock_by_the_holder_keeps_lock_index,
    lock_after_release_increments_lock_index,
    unlock_only_by_the_holder,
    plain_set_keeps_the_holder,
    delete_of_a_missing_key_changes_no_index,
    delete_leaves_a_tombstone,
    delete_cas,
    delete_tree_tombstones_the_prefix,
    list_index_is_max_of_entries_and_tombstones,
    list_is_in_key_order_with_values,
    whole_table_listing_after_deleting_everything,
    keys_fold_at_the_separator,
    session_create_validates_node_and_checks,
    session_destroy_releases_held_keys,
    session_destroy_deletes_held_keys,
    lock_delay_is_capped_at_60s,
    txn_is_all_or_nothing_across_shards,
    txn_rolls_back_every_verb,
    txn_errors_carry_op_indexes,
    txn_results_in_op_order,
    txn_get_tree_in_key_order,
    txn_writes_share_one_index,
);

#[test]
fn deregistering_a_node_destroys_its_sessions_and_releases_their_locks() {
    use futures::executor::block_on;
    use muster_shards::catalog::{HealthCheck, Node};
    use muster_shards::command::{Command, CommandResult, KvOp, KvVerb, NodeRegistration};
    use muster_shards::coord::{apply, kv_get};
    use muster_shards::local::LocalShards;
    use muster_shards::session::Session;

    for n in [1, 3] {
        let b = LocalShards::new(n);
        let reg = NodeRegistration {
            node: Node {
                node: "n1".into(),
                address: "127.0.0.1".into(),
                ..Node::default()
            },
            checks: vec![HealthCheck {
                check_id: "serfHealth".into(),
                status: "passing".into(),
                ..HealthCheck::default()
            }],
        };
        block_on(apply(&b, 1, 0, Command::RegisterNode(reg))).unwrap();
        let s = Session {
            id: "s1".into(),
            node: "n1".into(),
            node_checks: vec!["serfHealth".into()],
            ..Session::default()
        };
        let r = block_on(apply(&b, 2, 0, Command::SessionCreate(s))).unwrap();
        assert_eq!(r, CommandResult::SessionCreated { id: "s1".into() });
        let mut lock = KvOp::new(KvVerb::Lock, "held");
        lock.session = "s1".into();
        assert_eq!(
            block_on(apply(&b, 3, 0, Command::Kv(lock))).unwrap(),
            CommandResult::Bool(true)
        );
        block_on(apply(
            &b,
            4,
            0,
            Command::DeregisterNode { node: "n1".into() },
        ))
        .unwrap();
        for i in 0..n {
            assert!(b.shard(i).sessions().get("s1").is_none(), "{n} shards");
        }
        let (_, e) = block_on(kv_get(&b, "held")).unwrap();
        assert_eq!(e.unwrap().session, "", "{n} shards");
    }
}
