//! JSON answers: Consul's field names and order, encoded with simd-json.
use std::collections::BTreeMap;

use base64::Engine;
use muster_shards::catalog::Node;
use muster_shards::kv::KvEntry;
use muster_shards::session::Session;
use serde::Serialize;

use super::response::Response;

pub const JSON: &str = "application/json";

pub fn json<T: Serialize + ?Sized>(v: &T, pretty: bool) -> Vec<u8> {
    let out = if pretty {
        simd_json::to_vec_pretty(v)
    } else {
        simd_json::to_vec(v)
    };
    // Serializing our own plain structs cannot fail; an empty body would be the symptom.
    out.unwrap_or_default()
}

pub fn json_response<T: Serialize + ?Sized>(status: u16, v: &T, pretty: bool) -> Response {
    Response::new(status).with_body(JSON, json(v, pretty))
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Consul's DirEntry. An empty value is `null`, as Consul stores a nil slice for it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KvOut {
    pub lock_index: u64,
    pub key: String,
    pub flags: u64,
    pub value: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub session: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl From<&KvEntry> for KvOut {
    fn from(e: &KvEntry) -> KvOut {
        KvOut {
            lock_index: e.lock_index,
            key: e.key.clone(),
            flags: e.flags,
            value: if e.value.is_empty() {
                None
            } else {
                Some(b64(&e.value))
            },
            session: e.session.clone(),
            create_index: e.create_index,
            modify_index: e.modify_index,
        }
    }
}

#[derive(Serialize)]
pub struct ServiceCheckOut {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Namespace")]
    pub namespace: String,
}

#[derive(Serialize)]
pub struct SessionOut {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Node")]
    pub node: String,
    /// Nanoseconds, as Go's time.Duration.
    #[serde(rename = "LockDelay")]
    pub lock_delay: u64,
    #[serde(rename = "Behavior")]
    pub behavior: &'static str,
    #[serde(rename = "TTL")]
    pub ttl: String,
    #[serde(rename = "NodeChecks")]
    pub node_checks: Option<Vec<String>>,
    #[serde(rename = "ServiceChecks")]
    pub service_checks: Option<Vec<ServiceCheckOut>>,
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

impl From<&Session> for SessionOut {
    fn from(s: &Session) -> SessionOut {
        SessionOut {
            id: s.id.clone(),
            name: s.name.clone(),
            node: s.node.clone(),
            lock_delay: s.lock_delay_ns,
            behavior: s.behavior.as_str(),
            ttl: s.ttl.clone(),
            node_checks: if s.node_checks.is_empty() {
                None
            } else {
                Some(s.node_checks.clone())
            },
            service_checks: if s.service_checks.is_empty() {
                None
            } else {
                Some(
                    s.service_checks
                        .iter()
                        .map(|c| ServiceCheckOut {
                            id: c.id.clone(),
                            namespace: c.namespace.clone(),
                        })
                        .collect(),
                )
            },
            create_index: s.create_index,
            modify_index: s.modify_index,
        }
    }
}

/// A catalog node as `/v1/catalog/nodes` lists it.
#[derive(Serialize)]
pub struct NodeOut {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Node")]
    pub node: String,
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Datacenter")]
    pub datacenter: String,
    #[serde(rename = "TaggedAddresses")]
    pub tagged_addresses: BTreeMap<String, String>,
    #[serde(rename = "Meta")]
    pub meta: BTreeMap<String, String>,
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

impl From<&Node> for NodeOut {
    fn from(n: &Node) -> NodeOut {
        NodeOut {
            id: n.id.clone(),
            node: n.node.clone(),
            address: n.address.clone(),
            datacenter: n.datacenter.clone(),
            tagged_addresses: n.tagged_addresses.clone(),
            meta: n.meta.clone(),
            create_index: n.create_index,
            modify_index: n.modify_index,
        }
    }
}
