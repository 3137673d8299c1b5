//! Config entries (`/v1/config`): opaque JSON bodies keyed by kind and name, each on the shard
//! that owns "kind/name". The HTTP layer decodes and validates a body before it is proposed;
//! the state machine only stores it, stamps raft indexes and enforces check-and-set.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One stored entry. `body` is the entry's JSON object as the API returns it, without the
/// raft indexes (they are added when it is served).
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
pub struct ConfigEntry {
    pub kind: String,
    pub name: String,
    pub body: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// What a config-entry write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigVerb {
    Upsert,
    /// Upsert only if the entry's ModifyIndex equals `cas` (0: only if it does not exist).
    UpsertCas,
    Delete,
    /// Delete only if the entry's ModifyIndex equals `cas`.
    DeleteCas,
}

/// One config-entry write, as proposed through raft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigOp {
    pub verb: ConfigVerb,
    pub kind: String,
    pub name: String,
    pub body: String,
    pub cas: u64,
}

impl ConfigOp {
    /// The routing key: the shard that owns it holds the entry.
    pub fn key(&self) -> String {
        entry_key(&self.kind, &self.name)
    }
}

pub fn entry_key(kind: &str, name: &str) -> String {
    format!("{kind}/{name}")
}

/// A shard's config entries. `index` moves on every write and delete on this shard, so a
/// blocking read of any entry or kind list sees it move (Consul indexes the whole table).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigTable {
    pub(crate) entries: BTreeMap<String, ConfigEntry>,
    pub(crate) index: u64,
}

impl ConfigTable {
    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn get(&self, kind: &str, name: &str) -> Option<&ConfigEntry> {
        self.entries.get(&entry_key(kind, name))
    }

    /// Entries of `kind` (every kind when `None`) on this shard, in key order.
    pub fn list(&self, kind: Option<&str>) -> Vec<ConfigEntry> {
        match kind {
            Some(k) => {
                let prefix = format!("{k}/");
                self.entries
                    .range(prefix.clone()..)
                    .take_while(|(key, _)| key.starts_with(&prefix))
                    .map(|(_, e)| e.clone())
                    .collect()
            }
            None => self.entries.values().cloned().collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Applies one write at raft index `idx`. Returns whether it took effect (a failed
    /// check-and-set answers false, as Consul's does); `changed` tells whether anything moved.
    pub fn apply(&mut self, idx: u64, op: &ConfigOp) -> (bool, bool) {
        let key = op.key();
        let current = self.entries.get(&key).map(|e| e.modify_index);
        match op.verb {
            ConfigVerb::Upsert | ConfigVerb::UpsertCas => {
                if op.verb == ConfigVerb::UpsertCas && current.unwrap_or(0) != op.cas {
                    return (false, false);
                }
                let create_index = self.entries.get(&key).map_or(idx, |e| e.create_index);
                self.entries.insert(
                    key,
                    ConfigEntry {
                        kind: op.kind.clone(),
                        name: op.name.clone(),
                        body: op.body.clone(),
                        create_index,
                        modify_index: idx,
                    },
                );
                self.index = self.index.max(idx);
                (true, true)
            }
            ConfigVerb::Delete | ConfigVerb::DeleteCas => {
                if op.verb == ConfigVerb::DeleteCas && current != Some(op.cas) {
                    return (false, false);
                }
                // A delete of a missing entry still succeeds (Consul's delete is idempotent)
                // and still moves the table index.
                self.entries.remove(&key);
                self.index = self.index.max(idx);
                (true, true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(verb: ConfigVerb, cas: u64) -> ConfigOp {
        ConfigOp {
            verb,
            kind: "service-defaults".into(),
            name: "web".into(),
            body: "{}".into(),
            cas,
        }
    }

    #[test]
    fn cas_create_update_delete() {
        let mut t = ConfigTable::default();
        assert_eq!(t.apply(5, &op(ConfigVerb::UpsertCas, 3)), (false, false));
        assert!(t.apply(5, &op(ConfigVerb::UpsertCas, 0)).0);
        assert!(!t.apply(6, &op(ConfigVerb::UpsertCas, 0)).0);
        assert!(t.apply(7, &op(ConfigVerb::UpsertCas, 5)).0);
        let e = t.get("service-defaults", "web").unwrap();
        assert_eq!((e.create_index, e.modify_index), (5, 7));
        assert!(!t.apply(8, &op(ConfigVerb::DeleteCas, 5)).0);
        assert!(t.apply(9, &op(ConfigVerb::DeleteCas, 7)).0);
        assert!(t.get("service-defaults", "web").is_none());
        assert_eq!(t.index(), 9);
    }

    #[test]
    fn list_by_kind_stops_at_the_kind() {
        let mut t = ConfigTable::default();
        for (i, (k, n)) in [
            ("mesh", "mesh"),
            ("service-defaults", "a"),
            ("service-defaults", "b"),
            ("service-defaults-x", "c"),
        ]
        .iter()
        .enumerate()
        {
            let mut o = op(ConfigVerb::Upsert, 0);
            o.kind = k.to_string();
            o.name = n.to_string();
            t.apply(i as u64 + 1, &o);
        }
        let names: Vec<String> = t
            .list(Some("service-defaults"))
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, vec!["a", "b"]);
        assert_eq!(t.list(None).len(), 4);
    }
}
