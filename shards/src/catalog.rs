//! One shard's part of the catalog, partitioned by node name.
//!
//! This holds nodes and their checks; services and the full registration rules build on it.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::kv::prefix_range;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Node {
    fn same_content(&self, o: &Node) -> bool {
        self.id == o.id
            && self.address == o.address
            && self.datacenter == o.datacenter
            && self.tagged_addresses == o.tagged_addresses
            && self.meta == o.meta
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HealthCheck {
    pub node: String,
    pub check_id: String,
    pub name: String,
    /// passing, warning, critical, maintenance
    pub status: String,
    pub notes: String,
    pub output: String,
    pub service_id: String,
    pub service_name: String,
    pub service_tags: Vec<String>,
    pub check_type: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl HealthCheck {
    fn same_content(&self, o: &HealthCheck) -> bool {
        self.name == o.name
            && self.status == o.status
            && self.notes == o.notes
            && self.output == o.output
            && self.service_id == o.service_id
            && self.service_name == o.service_name
            && self.service_tags == o.service_tags
            && self.check_type == o.check_type
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Catalog {
    nodes: BTreeMap<String, Node>,
    /// Keyed by "node\0check_id" so a node's checks are one contiguous range.
    checks: BTreeMap<String, HealthCheck>,
    nodes_index: u64,
    checks_index: u64,
}

fn check_key(node: &str, id: &str) -> String {
    format!("{node}\0{id}")
}

impl Catalog {
    pub fn nodes_index(&self) -> u64 {
        self.nodes_index
    }

    pub fn checks_index(&self) -> u64 {
        self.checks_index
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    pub fn node_checks(&self, node: &str) -> Vec<HealthCheck> {
        let prefix = format!("{node}\0");
        prefix_range(&self.checks, &prefix)
            .map(|(_, c)| c.clone())
            .collect()
    }

    pub fn check(&self, node: &str, id: &str) -> Option<&HealthCheck> {
        self.checks.get(&check_key(node, id))
    }

    /// Inserts or updates a node; unchanged content moves no index. Returns whether it changed.
    pub fn ensure_node(&mut self, idx: u64, mut n: Node) -> bool {
        if let Some(x) = self.nodes.get(&n.node) {
            if x.same_content(&n) {
                return false;
            }
            n.create_index = x.create_index;
        } else {
            n.create_index = idx;
        }
        n.modify_index = idx;
        self.nodes.insert(n.node.clone(), n);
        self.nodes_index = idx;
        true
    }

    pub fn ensure_check(&mut self, idx: u64, mut c: HealthCheck) -> bool {
        let key = check_key(&c.node, &c.check_id);
        if let Some(x) = self.checks.get(&key) {
            if x.same_content(&c) {
                return false;
            }
            c.create_index = x.create_index;
        } else {
            c.create_index = idx;
        }
        c.modify_index = idx;
        self.checks.insert(key, c);
        self.checks_index = idx;
        true
    }

    /// Removes a node and its checks. Returns whether the node existed.
    pub fn remove_node(&mut self, idx: u64, node: &str) -> bool {
        if self.nodes.remove(node).is_none() {
            return false;
        }
        let prefix = format!("{node}\0");
        let keys: Vec<String> = prefix_range(&self.checks, &prefix)
            .map(|(k, _)| k.clone())
            .collect();
        if !keys.is_empty() {
            for k in keys {
                self.checks.remove(&k);
            }
            self.checks_index = idx;
        }
        self.nodes_index = idx;
        true
    }
}
