//! One shard's part of the catalog: nodes, their service instances and their checks, all
//! partitioned by node name, so that one registration (node + service + checks) is applied on
//! one shard. Queries by service name are scatter-gathered; each shard keeps a per-service
//! index so that blocking queries on one service wake only for that service.
//!
//! Index rules follow Consul's state store: a write that changes nothing moves no index; a
//! service's index moves when one of its instances, their checks, or their node's checks or
//! node record change; the table indexes move on every change to the table.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::kv::prefix_range;

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
pub struct ServiceAddress {
    pub address: String,
    pub port: u16,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct Weights {
    pub passing: i32,
    pub warning: i32,
}

impl Default for Weights {
    /// Consul's defaults.
    fn default() -> Weights {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

/// A service instance on a node (Consul's NodeService).
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
pub struct Service {
    pub id: String,
    pub service: String,
    pub kind: String,
    pub tags: Vec<String>,
    pub address: String,
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    pub meta: BTreeMap<String, String>,
    pub port: u16,
    pub weights: Weights,
    pub enable_tag_override: bool,
    /// `Proxy` and `Connect` as the client sent them (JSON text), returned as given.
    pub proxy: Option<String>,
    pub connect: Option<String>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Equal but for raft indexes: Consul's test for a write that changes nothing.
fn same_but_indexes<T: Clone + PartialEq>(a: &T, b: &T, zero: fn(&mut T)) -> bool {
    let (mut a, mut b) = (a.clone(), b.clone());
    zero(&mut a);
    zero(&mut b);
    a == b
}

impl Service {
    pub fn same_content(&self, o: &Service) -> bool {
        same_but_indexes(self, o, |s| {
            s.create_index = 0;
            s.modify_index = 0;
        })
    }
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
    /// The check's definition (interval, timeout, target...) as JSON text, for the API.
    pub definition: Option<String>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl HealthCheck {
    pub fn same_content(&self, o: &HealthCheck) -> bool {
        same_but_indexes(self, o, |c| {
            c.create_index = 0;
            c.modify_index = 0;
        })
    }
}

/// A catalog registration: Consul's `/v1/catalog/register` payload.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Registration {
    pub node: Node,
    pub skip_node_update: bool,
    pub service: Option<Service>,
    pub checks: Vec<HealthCheck>,
}

/// What a catalog write changed, for watchers and the DNS view.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CatalogChange {
    pub nodes: bool,
    pub services: bool,
    pub checks: bool,
    /// Services whose instances, or whose health, changed on this shard.
    pub service_names: BTreeSet<String>,
    pub node_names: BTreeSet<String>,
}

impl CatalogChange {
    pub fn is_empty(&self) -> bool {
        !self.nodes && !self.services && !self.checks && self.service_names.is_empty()
    }
}

/// An instance as health queries return it: the node, the service, and every check that
/// applies (the node's own checks and the instance's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEntry {
    pub node: Node,
    pub service: Service,
    pub checks: Vec<HealthCheck>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Catalog {
    pub(crate) nodes: BTreeMap<String, Node>,
    /// Keyed "node\0service_id": a node's services are one contiguous range.
    pub(crate) services: BTreeMap<String, Service>,
    /// Keyed "node\0check_id".
    pub(crate) checks: BTreeMap<String, HealthCheck>,
    pub(crate) nodes_index: u64,
    pub(crate) services_index: u64,
    pub(crate) checks_index: u64,
    /// Last index at which anything about a service changed on this shard. Kept after the
    /// last instance goes, so a blocking query on a vanished service still sees its index move.
    pub(crate) service_index: HashMap<String, u64>,
    /// Derived: service name -> "node\0service_id" keys.
    #[serde(skip)]
    pub(crate) by_name: HashMap<String, BTreeSet<String>>,
}

fn pair(node: &str, id: &str) -> String {
    format!("{node}\0{id}")
}

fn node_prefix(node: &str) -> String {
    format!("{node}\0")
}

impl Catalog {
    pub fn nodes_index(&self) -> u64 {
        self.nodes_index
    }

    pub fn services_index(&self) -> u64 {
        self.services_index
    }

    pub fn checks_index(&self) -> u64 {
        self.checks_index
    }

    /// The index of one service on this shard (0 if never seen here).
    pub fn service_index(&self, name: &str) -> u64 {
        self.service_index.get(name).copied().unwrap_or(0)
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    pub fn check(&self, node: &str, id: &str) -> Option<&HealthCheck> {
        self.checks.get(&pair(node, id))
    }

    pub fn node_checks(&self, node: &str) -> Vec<HealthCheck> {
        let p = node_prefix(node);
        prefix_range(&self.checks, &p)
            .map(|(_, c)| c.clone())
            .collect()
    }

    pub fn node_services(&self, node: &str) -> Vec<Service> {
        let p = node_prefix(node);
        prefix_range(&self.services, &p)
            .map(|(_, s)| s.clone())
            .collect()
    }

    pub fn service(&self, node: &str, id: &str) -> Option<&Service> {
        self.services.get(&pair(node, id))
    }

    /// Every instance of `name` on this shard, with its node.
    pub fn service_instances(&self, name: &str) -> Vec<(Node, Service)> {
        let Some(keys) = self.by_name.get(name) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|k| {
                let s = self.services.get(k)?;
                let node_name = k.split('\0').next()?;
                Some((self.nodes.get(node_name)?.clone(), s.clone()))
            })
            .collect()
    }

    /// Every instance of `name` on this shard with the checks that apply to it.
    pub fn health_instances(&self, name: &str) -> Vec<HealthEntry> {
        self.service_instances(name)
            .into_iter()
            .map(|(node, service)| {
                let checks = prefix_range(&self.checks, &node_prefix(&node.node))
                    .map(|(_, c)| c)
                    .filter(|c| c.service_id.is_empty() || c.service_id == service.id)
                    .cloned()
                    .collect();
                HealthEntry {
                    node,
                    service,
                    checks,
                }
            })
            .collect()
    }

    /// Service name -> tags (union over instances) on this shard.
    pub fn service_tags(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.service_tags_on(|_| true)
    }

    /// Like [`Catalog::service_tags`], counting only instances on nodes that `node_ok` accepts
    /// (Consul's `?node-meta=` on `/v1/catalog/services`).
    pub fn service_tags_on(
        &self,
        node_ok: impl Fn(&Node) -> bool,
    ) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (k, s) in &self.services {
            let node = k.split('\0').next().and_then(|n| self.nodes.get(n));
            if node.is_some_and(&node_ok) {
                out.entry(s.service.clone())
                    .or_default()
                    .extend(s.tags.iter().cloned());
            }
        }
        out
    }

    /// Checks of every instance of service `name`.
    pub fn service_checks(&self, name: &str) -> Vec<HealthCheck> {
        self.checks
            .values()
            .filter(|c| c.service_name == name)
            .cloned()
            .collect()
    }

    /// Checks in `state` ("any" for all).
    pub fn checks_in_state(&self, state: &str) -> Vec<HealthCheck> {
        self.checks
            .values()
            .filter(|c| state == "any" || c.status == state)
            .cloned()
            .collect()
    }

    pub fn all_checks(&self) -> impl Iterator<Item = &HealthCheck> {
        self.checks.values()
    }

    fn bump_service(&mut self, idx: u64, name: &str, ch: &mut CatalogChange) {
        self.service_index.insert(name.to_string(), idx);
        ch.service_names.insert(name.to_string());
    }

    /// A node-level change (record or node check) changes the health of all its services.
    fn bump_node_services(&mut self, idx: u64, node: &str, ch: &mut CatalogChange) {
        let names: Vec<String> = prefix_range(&self.services, &node_prefix(node))
            .map(|(_, s)| s.service.clone())
            .collect();
        for n in names {
            self.bump_service(idx, &n, ch);
        }
        ch.node_names.insert(node.to_string());
    }

    /// Inserts or updates a node. Returns whether it changed.
    pub fn ensure_node(&mut self, idx: u64, mut n: Node, ch: &mut CatalogChange) -> bool {
        if let Some(x) = self.nodes.get(&n.node) {
            if x.same_content(&n) {
                return false;
            }
            n.create_index = x.create_index;
        } else {
            n.create_index = idx;
        }
        n.modify_index = idx;
        let name = n.node.clone();
        self.nodes.insert(name.clone(), n);
        self.nodes_index = idx;
        ch.nodes = true;
        self.bump_node_services(idx, &name, ch);
        true
    }

    fn ensure_service(&mut self, idx: u64, node: &str, mut s: Service, ch: &mut CatalogChange) {
        let key = pair(node, &s.id);
        if let Some(x) = self.services.get(&key) {
            if x.same_content(&s) {
                return;
            }
            s.create_index = x.create_index;
            if x.service != s.service {
                let old = x.service.clone();
                self.unindex(&old, &key);
                self.bump_service(idx, &old, ch);
            }
        } else {
            s.create_index = idx;
        }
        s.modify_index = idx;
        let name = s.service.clone();
        self.by_name
            .entry(name.clone())
            .or_default()
            .insert(key.clone());
        self.services.insert(key, s);
        self.services_index = idx;
        ch.services = true;
        self.bump_service(idx, &name, ch);
    }

    fn unindex(&mut self, name: &str, key: &str) {
        if let Some(set) = self.by_name.get_mut(name) {
            set.remove(key);
            if set.is_empty() {
                self.by_name.remove(name);
            }
        }
    }

    fn ensure_check(&mut self, idx: u64, mut c: HealthCheck, ch: &mut CatalogChange) {
        let key = pair(&c.node, &c.check_id);
        if let Some(x) = self.checks.get(&key) {
            if x.same_content(&c) {
                return;
            }
            c.create_index = x.create_index;
        } else {
            c.create_index = idx;
        }
        c.modify_index = idx;
        let (node, service) = (c.node.clone(), c.service_name.clone());
        self.checks.insert(key, c);
        self.checks_index = idx;
        ch.checks = true;
        if service.is_empty() {
            self.bump_node_services(idx, &node, ch);
        } else {
            self.bump_service(idx, &service, ch);
        }
    }

    /// Consul's catalog registration: the node (unless `skip_node_update` and it exists), the
    /// service, then the checks, each check bound to the node and, when it names one, to a
    /// service of that node.
    pub fn register(
        &mut self,
        idx: u64,
        reg: &Registration,
        ch: &mut CatalogChange,
    ) -> Result<(), String> {
        let node_name = reg.node.node.clone();
        if node_name.is_empty() {
            return Err("Must provide node".into());
        }
        if !(reg.skip_node_update && self.nodes.contains_key(&node_name)) {
            if reg.node.address.is_empty() && !self.nodes.contains_key(&node_name) {
                return Err("Must provide address".into());
            }
            let mut n = reg.node.clone();
            if n.address.is_empty() {
                if let Some(x) = self.nodes.get(&node_name) {
                    n.address = x.address.clone();
                }
            }
            self.ensure_node(idx, n, ch);
        }
        // Validate every check before writing any service or check: all-or-nothing.
        let mut services_after: BTreeMap<String, Service> = self
            .node_services(&node_name)
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        if let Some(s) = &reg.service {
            if s.service.is_empty() {
                return Err("Must provide service name".into());
            }
            let mut s = s.clone();
            if s.id.is_empty() {
                s.id = s.service.clone();
            }
            services_after.insert(s.id.clone(), s);
        }
        let mut checks = Vec::with_capacity(reg.checks.len());
        for c in &reg.checks {
            let mut c = c.clone();
            if !c.node.is_empty() && c.node != node_name {
                return Err(format!(
                    "Node '{}' for check '{}' doesn't match register request node '{}'",
                    c.node, c.check_id, node_name
                ));
            }
            c.node = node_name.clone();
            if c.check_id.is_empty() {
                c.check_id = c.name.clone();
            }
            if c.check_id.is_empty() {
                return Err("Must provide check ID or name".into());
            }
            if c.status.is_empty() {
                c.status = "critical".into();
            }
            if !c.service_id.is_empty() {
                let Some(s) = services_after.get(&c.service_id) else {
                    return Err(format!(
                        "Unknown service ID '{}' for check ID '{}'",
                        c.service_id, c.check_id
                    ));
                };
                c.service_name = s.service.clone();
                c.service_tags = s.tags.clone();
            } else {
                c.service_name.clear();
                c.service_tags.clear();
            }
            checks.push(c);
        }
        if let Some(s) = &reg.service {
            let mut s = s.clone();
            if s.id.is_empty() {
                s.id = s.service.clone();
            }
            self.ensure_service(idx, &node_name, s, ch);
        }
        for c in checks {
            self.ensure_check(idx, c, ch);
        }
        Ok(())
    }

    /// Removes a whole node with its services and checks. Returns whether it existed.
    pub fn remove_node(&mut self, idx: u64, node: &str, ch: &mut CatalogChange) -> bool {
        let services: Vec<String> = self.node_services(node).into_iter().map(|s| s.id).collect();
        for s in services {
            self.remove_service(idx, node, &s, ch);
        }
        let checks: Vec<String> = self
            .node_checks(node)
            .into_iter()
            .map(|c| c.check_id)
            .collect();
        for c in checks {
            self.remove_check(idx, node, &c, ch);
        }
        if self.nodes.remove(node).is_none() {
            return false;
        }
        self.nodes_index = idx;
        ch.nodes = true;
        ch.node_names.insert(node.to_string());
        true
    }

    /// Removes a service instance and its checks.
    pub fn remove_service(
        &mut self,
        idx: u64,
        node: &str,
        id: &str,
        ch: &mut CatalogChange,
    ) -> bool {
        let key = pair(node, id);
        let Some(s) = self.services.remove(&key) else {
            return false;
        };
        self.unindex(&s.service, &key);
        let checks: Vec<String> = prefix_range(&self.checks, &node_prefix(node))
            .filter(|(_, c)| c.service_id == id)
            .map(|(_, c)| c.check_id.clone())
            .collect();
        for c in checks {
            self.remove_check(idx, node, &c, ch);
        }
        self.services_index = idx;
        ch.services = true;
        self.bump_service(idx, &s.service, ch);
        true
    }

    pub fn remove_check(&mut self, idx: u64, node: &str, id: &str, ch: &mut CatalogChange) -> bool {
        let Some(c) = self.checks.remove(&pair(node, id)) else {
            return false;
        };
        self.checks_index = idx;
        ch.checks = true;
        if c.service_name.is_empty() {
            self.bump_node_services(idx, node, ch);
        } else {
            self.bump_service(idx, &c.service_name, ch);
        }
        true
    }

    /// Rebuilds derived indexes after deserialization.
    pub fn rebuild(&mut self) {
        self.by_name.clear();
        for (k, s) in &self.services {
            self.by_name
                .entry(s.service.clone())
                .or_default()
                .insert(k.clone());
        }
    }
}
