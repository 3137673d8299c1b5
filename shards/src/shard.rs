//! A shard: the state one core owns, and the operations the coordinator runs on it.
use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, CatalogChange, Node, Registration};
use crate::command::{KvOp, TxnError};
use crate::config_entry::{ConfigOp, ConfigTable};
use crate::kv::{KvEntry, KvFailure, KvTable};
use crate::route::shard_for;
use crate::session::{Session, SessionTable, MAX_LOCK_DELAY_MS};

/// Tables whose index a blocking query can wait on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Kv,
    Sessions,
    Nodes,
    Services,
    Checks,
    ConfigEntries,
}

/// What a write changed on this shard, for waking blocking queries.
#[derive(Debug, Default, Clone)]
pub struct Touched {
    pub keys: Vec<String>,
    pub tables: Vec<Table>,
    /// Services whose instances or health changed (for per-service waiters and the DNS view).
    pub services: BTreeSet<String>,
    /// Nodes whose record, services or checks changed.
    pub nodes: BTreeSet<String>,
}

impl Touched {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.tables.is_empty() && self.services.is_empty()
    }

    fn table(&mut self, t: Table) {
        if !self.tables.contains(&t) {
            self.tables.push(t);
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Shard {
    id: usize,
    nshards: usize,
    pub(crate) kv: KvTable,
    pub(crate) sessions: SessionTable,
    pub(crate) catalog: Catalog,
    pub(crate) config: ConfigTable,
    /// Key -> ms (leader clock) until which `lock` is refused after its holder was invalidated.
    pub(crate) lock_delays: HashMap<String, u64>,
    /// Highest raft index applied on this shard.
    pub(crate) applied: u64,
    #[serde(skip)]
    touched: Touched,
}

/// Results of a transaction's operations on one shard: (op index, entries).
pub type TxnPart = Vec<(usize, Vec<KvEntry>)>;

impl Shard {
    pub fn new(id: usize, nshards: usize) -> Shard {
        Shard {
            id,
            nshards,
            ..Shard::default()
        }
    }

    pub fn id(&self) -> usize {
        self.id
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    pub fn kv(&self) -> &KvTable {
        &self.kv
    }

    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn config(&self) -> &ConfigTable {
        &self.config
    }

    /// A config-entry write on the shard that owns "kind/name". Returns whether it took
    /// effect (false: a failed check-and-set).
    pub fn config_apply(&mut self, idx: u64, op: &ConfigOp) -> bool {
        debug_assert!(self.owns(&op.key()));
        self.advance(idx);
        let (ok, changed) = self.config.apply(idx, op);
        if changed {
            self.touched.table(Table::ConfigEntries);
        }
        ok
    }

    /// Debug-time guard of habit 1: a shard only ever sees keys it owns.
    fn owns(&self, key: &str) -> bool {
        shard_for(key.as_bytes(), self.nshards) == self.id
    }

    /// Takes what the last writes changed, for the caller to wake waiters.
    pub fn take_touched(&mut self) -> Touched {
        std::mem::take(&mut self.touched)
    }

    fn note_kv(&mut self, keys: Vec<String>) {
        if !keys.is_empty() {
            self.touched.table(Table::Kv);
            self.touched.keys.extend(keys);
        }
    }

    fn advance(&mut self, idx: u64) {
        self.applied = self.applied.max(idx);
    }

    /// A single KV write from `/v1/kv` on the key's owner shard.
    pub fn kv_write(&mut self, idx: u64, op: &KvOp) -> Result<(), KvFailure> {
        debug_assert!(op.verb.is_tree() || self.owns(&op.key));
        self.advance(idx);
        let mut touched = Vec::new();
        let r = self
            .kv
            .exec(idx, op, self.sessions.map(), &mut touched, None);
        self.note_kv(touched);
        r.map(|_| ())
    }

    /// This shard's operations of a transaction, in transaction order. All-or-nothing on this
    /// shard: on any failure, or when `commit` is false (the dry run of a multi-shard
    /// transaction), every change is rolled back before returning.
    pub fn kv_txn(
        &mut self,
        idx: u64,
        ops: &[(usize, KvOp)],
        commit: bool,
    ) -> Result<TxnPart, Vec<TxnError>> {
        let mut undo = self.kv.begin_undo();
        let mut touched = Vec::new();
        let mut results = Vec::with_capacity(ops.len());
        let mut errors = Vec::new();
        for (at, op) in ops {
            debug_assert!(op.verb.is_tree() || self.owns(&op.key));
            match self
                .kv
                .exec(idx, op, self.sessions.map(), &mut touched, Some(&mut undo))
            {
                Ok(entries) => results.push((*at, entries)),
                Err(f) => errors.push(TxnError {
                    op_index: *at,
                    what: f.text().to_string(),
                }),
            }
        }
        if !errors.is_empty() || !commit {
            self.kv.rollback(undo);
            return if errors.is_empty() {
                Ok(results)
            } else {
                Err(errors)
            };
        }
        self.advance(idx);
        self.note_kv(touched);
        Ok(results)
    }

    /// Deletes this shard's part of a prefix.
    pub fn kv_delete_tree(&mut self, idx: u64, prefix: &str) {
        self.advance(idx);
        let mut touched = Vec::new();
        self.kv.delete_tree(idx, prefix, &mut touched, None);
        self.note_kv(touched);
    }

    /// The lock delay in force on `key` at `now_ms`, in ms remaining (0: none).
    pub fn lock_delay_remaining(&self, key: &str, now_ms: u64) -> u64 {
        self.lock_delays
            .get(key)
            .map_or(0, |until| until.saturating_sub(now_ms))
    }

    /// Checks a session's node and node checks, on the node's shard (Consul's texts).
    pub fn session_precheck(&self, s: &Session) -> Result<(), String> {
        if self.catalog.node(&s.node).is_none() {
            return Err(format!("Missing node registration for node {:?}", s.node));
        }
        for c in &s.node_checks {
            match self.catalog.check(&s.node, c) {
                None => return Err(format!("Missing check '{c}' registration")),
                Some(h) if h.status == "critical" => {
                    return Err(format!("Check '{c}' is in critical state"))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    pub fn session_insert(&mut self, idx: u64, s: Session) {
        self.advance(idx);
        self.sessions.insert(idx, s);
        self.touched.table(Table::Sessions);
    }

    /// Removes the session from this replica and releases or deletes the keys it holds here,
    /// putting them under its lock delay from `at_ms`.
    pub fn session_destroy(&mut self, idx: u64, at_ms: u64, id: &str) -> bool {
        self.advance(idx);
        let Some(s) = self.sessions.remove(idx, id) else {
            return false;
        };
        self.touched.table(Table::Sessions);
        let mut touched = Vec::new();
        let keys = self.kv.invalidate_session(idx, &s, &mut touched);
        let delay_ms = (s.lock_delay_ns / 1_000_000).min(MAX_LOCK_DELAY_MS);
        if delay_ms > 0 {
            // Expired delays are dropped here so the map stays as small as the live delays.
            self.lock_delays.retain(|_, until| *until > at_ms);
            for k in keys {
                self.lock_delays.insert(k, at_ms + delay_ms);
            }
        }
        self.note_kv(touched);
        true
    }

    fn note_catalog(&mut self, ch: CatalogChange) {
        if ch.nodes {
            self.touched.table(Table::Nodes);
        }
        if ch.services {
            self.touched.table(Table::Services);
        }
        if ch.checks {
            self.touched.table(Table::Checks);
        }
        self.touched.services.extend(ch.service_names);
        self.touched.nodes.extend(ch.node_names);
    }

    /// Checks of `node` that are critical now, as (node, check id): sessions bound to them die.
    fn critical_checks(&self, node: &str) -> Vec<String> {
        self.catalog
            .node_checks(node)
            .into_iter()
            .filter(|c| c.status == "critical")
            .map(|c| c.check_id)
            .collect()
    }

    /// A catalog registration on the node's shard. Returns the node's checks that are critical
    /// afterwards, or Consul's error text.
    pub fn register(&mut self, idx: u64, reg: &Registration) -> Result<Vec<String>, String> {
        debug_assert!(self.owns(&reg.node.node));
        self.advance(idx);
        let mut ch = CatalogChange::default();
        let r = self.catalog.register(idx, reg, &mut ch);
        self.note_catalog(ch);
        r.map(|()| self.critical_checks(&reg.node.node))
    }

    /// Deregisters a node, one of its services, or one of its checks. Returns the check IDs
    /// that no longer exist on the node (sessions bound to them die).
    pub fn deregister(
        &mut self,
        idx: u64,
        node: &str,
        service_id: Option<&str>,
        check_id: Option<&str>,
    ) -> Vec<String> {
        debug_assert!(self.owns(node));
        self.advance(idx);
        let before: BTreeSet<String> = self
            .catalog
            .node_checks(node)
            .into_iter()
            .map(|c| c.check_id)
            .collect();
        let mut ch = CatalogChange::default();
        match (service_id, check_id) {
            (Some(s), _) => {
                self.catalog.remove_service(idx, node, s, &mut ch);
            }
            (None, Some(c)) => {
                self.catalog.remove_check(idx, node, c, &mut ch);
            }
            (None, None) => {
                self.catalog.remove_node(idx, node, &mut ch);
            }
        }
        if let (Some(_), Some(c)) = (service_id, check_id) {
            self.catalog.remove_check(idx, node, c, &mut ch);
        }
        self.note_catalog(ch);
        let after: BTreeSet<String> = self
            .catalog
            .node_checks(node)
            .into_iter()
            .map(|c| c.check_id)
            .collect();
        before.difference(&after).cloned().collect()
    }

    pub fn node(&self, name: &str) -> Option<Node> {
        self.catalog.node(name).cloned()
    }

    /// Called after deserializing a snapshot image.
    pub fn rebuild(&mut self) {
        self.kv.rebuild();
        self.catalog.rebuild();
    }
}
