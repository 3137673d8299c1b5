//! Sessions. Every shard holds a full replica of the (small) session table, so that `lock`
//! checks and invalidation run on the key's own shard without a cross-core hop.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub enum Behavior {
    #[default]
    Release,
    Delete,
}

impl Behavior {
    pub fn as_str(self) -> &'static str {
        match self {
            Behavior::Release => "release",
            Behavior::Delete => "delete",
        }
    }
}

/// Consul caps the lock delay at 60 s whatever the session asked for.
pub const MAX_LOCK_DELAY_MS: u64 = 60_000;

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
pub struct ServiceCheckRef {
    pub id: String,
    pub namespace: String,
}

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
pub struct Session {
    pub id: String,
    pub name: String,
    pub node: String,
    pub node_checks: Vec<String>,
    pub service_checks: Vec<ServiceCheckRef>,
    pub lock_delay_ns: u64,
    pub behavior: Behavior,
    /// As given by the client ("10s"), empty for no TTL.
    pub ttl: String,
    pub create_index: u64,
    pub modify_index: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SessionTable {
    pub(crate) map: BTreeMap<String, Session>,
    pub(crate) index: u64,
}

impl SessionTable {
    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn get(&self, id: &str) -> Option<&Session> {
        self.map.get(id)
    }

    pub fn map(&self) -> &BTreeMap<String, Session> {
        &self.map
    }

    pub fn list(&self) -> Vec<Session> {
        self.map.values().cloned().collect()
    }

    pub fn on_node(&self, node: &str) -> Vec<Session> {
        self.map
            .values()
            .filter(|s| s.node == node)
            .cloned()
            .collect()
    }

    pub fn insert(&mut self, idx: u64, mut s: Session) {
        s.create_index = idx;
        s.modify_index = idx;
        self.map.insert(s.id.clone(), s);
        self.index = idx;
    }

    pub fn remove(&mut self, idx: u64, id: &str) -> Option<Session> {
        let s = self.map.remove(id)?;
        self.index = idx;
        Some(s)
    }
}
