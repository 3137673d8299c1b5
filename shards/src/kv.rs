//! One shard's part of the KV table, with Consul's index rules.
//!
//! Index rules (as Consul's state store): a write stamps `ModifyIndex` with the raft index and
//! keeps `CreateIndex`; a write that changes nothing is skipped and moves no index; a delete leaves
//! a tombstone so that a blocking listing of the prefix still sees its index move; a delete of a
//! missing key changes nothing.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::command::{KvOp, KvVerb};
use crate::session::Session;

#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct KvEntry {
    pub key: String,
    pub value: Bytes,
    pub flags: u64,
    pub create_index: u64,
    pub modify_index: u64,
    pub lock_index: u64,
    /// The holder of the lock, empty when unlocked.
    pub session: String,
}

impl KvEntry {
    /// Consul's no-op write test: same value, flags, lock index and holder.
    fn same_content(&self, other: &KvEntry) -> bool {
        self.value == other.value
            && self.flags == other.flags
            && self.lock_index == other.lock_index
            && self.session == other.session
    }
}

/// Why a KV operation did not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvFailure {
    /// The operation's condition was false (CAS mismatch, lock held, ...): HTTP answers `false`.
    Refused(String),
    /// The request itself is invalid (unknown session): HTTP answers 500 with the text.
    Invalid(String),
}

impl KvFailure {
    pub fn text(&self) -> &str {
        match self {
            KvFailure::Refused(t) | KvFailure::Invalid(t) => t,
        }
    }
}

/// What the KV table looked like before a mutation, so a failed transaction can be rolled back.
#[derive(Debug, Default)]
pub struct KvUndo {
    entries: Vec<(String, Option<KvEntry>)>,
    tombstones: Vec<(String, Option<u64>)>,
    index: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KvTable {
    pub(crate) entries: BTreeMap<String, KvEntry>,
    pub(crate) tombstones: BTreeMap<String, u64>,
    /// Raft index of the last change to this shard's part of the table.
    pub(crate) index: u64,
    /// Derived: the keys each session holds on this shard.
    #[serde(skip)]
    held: HashMap<String, BTreeSet<String>>,
}

/// Keys in `map` that start with `prefix`, in order.
pub(crate) fn prefix_range<'a, V>(
    map: &'a BTreeMap<String, V>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a String, &'a V)> + 'a {
    map.range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(prefix))
}

impl KvTable {
    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&KvEntry> {
        self.entries.get(key)
    }

    /// Entries under `prefix` and the highest index among them and the prefix's tombstones
    /// (0 when there is neither: the caller then falls back to the table index).
    pub fn list(&self, prefix: &str) -> (u64, Vec<KvEntry>) {
        let mut idx = self.tombstone_index(prefix);
        let entries: Vec<KvEntry> = prefix_range(&self.entries, prefix)
            .map(|(_, e)| {
                idx = idx.max(e.modify_index);
                e.clone()
            })
            .collect();
        (idx, entries)
    }

    /// Keys under `prefix`, folded at the first `separator` after the prefix (Consul's `?keys`).
    pub fn keys(&self, prefix: &str, separator: &str) -> (u64, Vec<String>) {
        let mut idx = self.tombstone_index(prefix);
        let mut out: Vec<String> = Vec::new();
        for (k, e) in prefix_range(&self.entries, prefix) {
            idx = idx.max(e.modify_index);
            let folded = if separator.is_empty() {
                None
            } else {
                k[prefix.len()..]
                    .find(separator)
                    .map(|at| &k[..prefix.len() + at + separator.len()])
            };
            let key = folded.unwrap_or(k);
            if out.last().map(String::as_str) != Some(key) {
                out.push(key.to_string());
            }
        }
        (idx, out)
    }

    fn tombstone_index(&self, prefix: &str) -> u64 {
        // A delete-tree of "" leaves no tombstone, so the whole table is listed at the table
        // index (as Consul's kvsListTxn does); older tombstones would report a stale one.
        if prefix.is_empty() {
            return self.index;
        }
        prefix_range(&self.tombstones, prefix)
            .map(|(_, i)| *i)
            .max()
            .unwrap_or(0)
    }

    /// The keys `session` holds on this shard.
    pub fn held_by(&self, session: &str) -> Vec<String> {
        self.held
            .get(session)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn begin_undo(&self) -> KvUndo {
        KvUndo {
            index: self.index,
            ..KvUndo::default()
        }
    }

    pub fn rollback(&mut self, undo: KvUndo) {
        for (key, prev) in undo.entries.into_iter().rev() {
            match prev {
                Some(e) => self.put(e, None),
                None => {
                    self.remove(&key, None);
                }
            }
        }
        for (key, prev) in undo.tombstones.into_iter().rev() {
            match prev {
                Some(i) => self.tombstones.insert(key, i),
                None => self.tombstones.remove(&key),
            };
        }
        self.index = undo.index;
    }

    fn put(&mut self, e: KvEntry, undo: Option<&mut KvUndo>) {
        let prev = self.entries.insert(e.key.clone(), e.clone());
        if let Some(p) = &prev {
            self.unhold(p);
        }
        if !e.session.is_empty() {
            self.held
                .entry(e.session.clone())
                .or_default()
                .insert(e.key.clone());
        }
        if let Some(u) = undo {
            u.entries.push((e.key, prev));
        }
    }

    fn remove(&mut self, key: &str, undo: Option<&mut KvUndo>) -> Option<KvEntry> {
        let prev = self.entries.remove(key)?;
        self.unhold(&prev);
        if let Some(u) = undo {
            u.entries.push((key.to_string(), Some(prev.clone())));
        }
        Some(prev)
    }

    fn unhold(&mut self, e: &KvEntry) {
        if e.session.is_empty() {
            return;
        }
        if let Some(keys) = self.held.get_mut(&e.session) {
            keys.remove(&e.key);
            if keys.is_empty() {
                self.held.remove(&e.session);
            }
        }
    }

    fn tombstone(&mut self, key: &str, idx: u64, undo: Option<&mut KvUndo>) {
        let prev = self.tombstones.insert(key.to_string(), idx);
        if let Some(u) = undo {
            u.tombstones.push((key.to_string(), prev));
        }
    }

    /// Rebuilds derived indexes after deserialization.
    pub fn rebuild(&mut self) {
        self.held.clear();
        let held: Vec<(String, String)> = self
            .entries
            .values()
            .filter(|e| !e.session.is_empty())
            .map(|e| (e.session.clone(), e.key.clone()))
            .collect();
        for (s, k) in held {
            self.held.entry(s).or_default().insert(k);
        }
    }

    /// Writes `e` (whose indexes this function sets), unless it changes nothing.
    /// `keep_session`: a plain set keeps the current lock holder.
    fn set_entry(
        &mut self,
        idx: u64,
        mut e: KvEntry,
        keep_session: bool,
        touched: &mut Vec<String>,
        undo: Option<&mut KvUndo>,
    ) -> KvEntry {
        let existing = self.entries.get(&e.key);
        e.create_index = existing.map_or(idx, |x| x.create_index);
        if keep_session {
            e.session = existing.map(|x| x.session.clone()).unwrap_or_default();
        }
        if let Some(x) = existing {
            if x.same_content(&e) {
                return x.clone();
            }
        }
        e.modify_index = idx;
        self.index = idx;
        touched.push(e.key.clone());
        self.put(e.clone(), undo);
        e
    }

    fn delete_key(
        &mut self,
        idx: u64,
        key: &str,
        touched: &mut Vec<String>,
        mut undo: Option<&mut KvUndo>,
    ) -> bool {
        if self.remove(key, undo.as_deref_mut()).is_none() {
            return false;
        }
        self.tombstone(key, idx, undo);
        self.index = idx;
        touched.push(key.to_string());
        true
    }

    /// Deletes this shard's keys under `prefix`; one tombstone for the prefix, as Consul does.
    pub fn delete_tree(
        &mut self,
        idx: u64,
        prefix: &str,
        touched: &mut Vec<String>,
        mut undo: Option<&mut KvUndo>,
    ) -> bool {
        let keys: Vec<String> = prefix_range(&self.entries, prefix)
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            return false;
        }
        for k in &keys {
            self.remove(k, undo.as_deref_mut());
            touched.push(k.clone());
        }
        if !prefix.is_empty() {
            self.tombstone(prefix, idx, undo);
        }
        self.index = idx;
        true
    }

    /// Applies one KV operation. Returns the entries a transaction reports for it.
    /// `sessions` is this shard's replica of the session table (for `lock`).
    pub fn exec(
        &mut self,
        idx: u64,
        op: &KvOp,
        sessions: &BTreeMap<String, Session>,
        touched: &mut Vec<String>,
        undo: Option<&mut KvUndo>,
    ) -> Result<Vec<KvEntry>, KvFailure> {
        let key = op.key.as_str();
        let existing = self.entries.get(key);
        let refused = |what: String| Err(KvFailure::Refused(what));
        match op.verb {
            KvVerb::Set => {
                let e = self.set_entry(idx, new_entry(op), true, touched, undo);
                Ok(vec![without_value(e)])
            }
            KvVerb::Cas => {
                let ok = match existing {
                    None => op.index == 0,
                    Some(x) => op.index != 0 && x.modify_index == op.index,
                };
                if !ok {
                    return refused(format!("failed to set key {key:?}, index is stale"));
                }
                let e = self.set_entry(idx, new_entry(op), true, touched, undo);
                Ok(vec![without_value(e)])
            }
            // Consul rejects these as invalid requests (HTTP 500), not as a false condition.
            KvVerb::Lock | KvVerb::Unlock if op.session.is_empty() => {
                Err(KvFailure::Invalid("missing session".to_string()))
            }
            KvVerb::Lock => {
                if !sessions.contains_key(&op.session) {
                    return Err(KvFailure::Invalid(format!(
                        "invalid session {:?}",
                        op.session
                    )));
                }
                let mut e = new_entry(op);
                match existing {
                    Some(x) if x.session == op.session => e.lock_index = x.lock_index,
                    Some(x) if !x.session.is_empty() => {
                        return refused(format!("failed to lock key {key:?}, lock is already held"))
                    }
                    Some(x) => e.lock_index = x.lock_index + 1,
                    None => e.lock_index = 1,
                }
                let e = self.set_entry(idx, e, false, touched, undo);
                Ok(vec![without_value(e)])
            }
            KvVerb::Unlock => match existing {
                Some(x) if x.session == op.session && !op.session.is_empty() => {
                    let mut e = new_entry(op);
                    e.session.clear();
                    e.lock_index = x.lock_index;
                    let e = self.set_entry(idx, e, false, touched, undo);
                    Ok(vec![without_value(e)])
                }
                _ => refused(format!(
                    "failed to unlock key {key:?}, lock isn't held, or is held by another session"
                )),
            },
            KvVerb::Get => match existing {
                Some(x) => Ok(vec![x.clone()]),
                None => refused(format!("key {key:?} doesn't exist")),
            },
            KvVerb::GetTree => Ok(self.list(key).1),
            KvVerb::CheckIndex => match existing {
                None => refused(format!("failed to check index, key {key:?} doesn't exist")),
                Some(x) if x.modify_index != op.index => refused(format!(
                    "failed to check index, key {key:?} has a modify index of {}",
                    x.modify_index
                )),
                Some(x) => Ok(vec![without_value(x.clone())]),
            },
            KvVerb::CheckSession => match existing {
                None => refused(format!(
                    "failed to check session, key {key:?} doesn't exist"
                )),
                Some(x) if x.session != op.session => refused(format!(
                    "failed to check session, key {key:?} in session {:?}",
                    x.session
                )),
                Some(x) => Ok(vec![without_value(x.clone())]),
            },
            KvVerb::CheckNotExists => match existing {
                Some(_) => refused(format!("key {key:?} exists")),
                None => Ok(vec![]),
            },
            KvVerb::Delete => {
                self.delete_key(idx, key, touched, undo);
                Ok(vec![])
            }
            KvVerb::DeleteCas => {
                match existing {
                    Some(x) if x.modify_index == op.index => {
                        self.delete_key(idx, key, touched, undo);
                    }
                    Some(_) => {
                        return refused(format!("failed to delete key {key:?}, index is stale"))
                    }
                    // Consul reports a CAS delete of a missing key as done.
                    None => {}
                }
                Ok(vec![])
            }
            KvVerb::DeleteTree => {
                self.delete_tree(idx, key, touched, undo);
                Ok(vec![])
            }
        }
    }

    /// Session invalidation on this shard: release (or delete) every key the session holds.
    /// Returns the keys affected, which get a lock delay.
    pub fn invalidate_session(
        &mut self,
        idx: u64,
        session: &Session,
        touched: &mut Vec<String>,
    ) -> Vec<String> {
        let keys = self.held_by(&session.id);
        for k in &keys {
            if session.behavior == crate::session::Behavior::Delete {
                self.delete_key(idx, k, touched, None);
            } else if let Some(x) = self.entries.get(k) {
                let mut e = x.clone();
                e.session.clear();
                self.set_entry(idx, e, false, touched, None);
            }
        }
        keys
    }
}

fn new_entry(op: &KvOp) -> KvEntry {
    KvEntry {
        key: op.key.clone(),
        value: op.value.clone(),
        flags: op.flags,
        session: op.session.clone(),
        ..KvEntry::default()
    }
}

/// Transactions return written entries without their value, as Consul does, to save bandwidth.
fn without_value(mut e: KvEntry) -> KvEntry {
    e.value = Bytes::new();
    e
}
