//! JSON answers: Consul's field names and order, encoded with simd-json.
use std::collections::BTreeMap;

use base64::Engine;
use muster_shards::catalog::{HealthCheck, HealthEntry, Node, Service, Weights};
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

/// Raw JSON text stored as given (Proxy, Connect, Definition), re-emitted as JSON.
fn raw_json(text: &Option<String>) -> Option<simd_json::OwnedValue> {
    let mut bytes = text.as_ref()?.clone().into_bytes();
    simd_json::to_owned_value(&mut bytes).ok()
}

#[derive(Serialize)]
pub struct WeightsOut {
    #[serde(rename = "Passing")]
    pub passing: i32,
    #[serde(rename = "Warning")]
    pub warning: i32,
}

impl From<Weights> for WeightsOut {
    fn from(w: Weights) -> WeightsOut {
        WeightsOut {
            passing: w.passing,
            warning: w.warning,
        }
    }
}

#[derive(Serialize)]
pub struct ServiceAddressOut {
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Port")]
    pub port: u16,
}

fn tagged(s: &Service) -> Option<BTreeMap<String, ServiceAddressOut>> {
    if s.tagged_addresses.is_empty() {
        return None;
    }
    Some(
        s.tagged_addresses
            .iter()
            .map(|(k, a)| {
                (
                    k.clone(),
                    ServiceAddressOut {
                        address: a.address.clone(),
                        port: a.port,
                    },
                )
            })
            .collect(),
    )
}

/// A service as `/v1/health/service` and `/v1/catalog/node` show it (Consul's NodeService).
#[derive(Serialize)]
pub struct ServiceOut {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Service")]
    pub service: String,
    #[serde(rename = "Kind", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(rename = "Tags")]
    pub tags: Vec<String>,
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "TaggedAddresses", skip_serializing_if = "Option::is_none")]
    pub tagged_addresses: Option<BTreeMap<String, ServiceAddressOut>>,
    #[serde(rename = "Meta")]
    pub meta: BTreeMap<String, String>,
    #[serde(rename = "Port")]
    pub port: u16,
    #[serde(rename = "Weights")]
    pub weights: WeightsOut,
    #[serde(rename = "EnableTagOverride")]
    pub enable_tag_override: bool,
    #[serde(rename = "Proxy", skip_serializing_if = "Option::is_none")]
    pub proxy: Option<simd_json::OwnedValue>,
    #[serde(rename = "Connect", skip_serializing_if = "Option::is_none")]
    pub connect: Option<simd_json::OwnedValue>,
    #[serde(rename = "Datacenter", skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    #[serde(rename = "CreateIndex", skip_serializing_if = "Option::is_none")]
    pub create_index: Option<u64>,
    #[serde(rename = "ModifyIndex", skip_serializing_if = "Option::is_none")]
    pub modify_index: Option<u64>,
}

impl ServiceOut {
    /// The catalog's view, with raft indexes.
    pub fn catalog(s: &Service) -> ServiceOut {
        ServiceOut {
            create_index: Some(s.create_index),
            modify_index: Some(s.modify_index),
            ..ServiceOut::agent(s, None)
        }
    }

    /// The agent's view (`/v1/agent/services`): no indexes, with the datacenter.
    pub fn agent(s: &Service, datacenter: Option<&str>) -> ServiceOut {
        ServiceOut {
            id: s.id.clone(),
            service: s.service.clone(),
            kind: s.kind.clone(),
            tags: s.tags.clone(),
            address: s.address.clone(),
            tagged_addresses: tagged(s),
            meta: s.meta.clone(),
            port: s.port,
            weights: s.weights.into(),
            enable_tag_override: s.enable_tag_override,
            proxy: raw_json(&s.proxy),
            connect: raw_json(&s.connect),
            datacenter: datacenter.map(str::to_string),
            create_index: None,
            modify_index: None,
        }
    }
}

/// One row of `/v1/catalog/service/:name` (Consul's ServiceNode).
#[derive(Serialize)]
pub struct ServiceNodeOut {
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
    #[serde(rename = "NodeMeta")]
    pub node_meta: BTreeMap<String, String>,
    #[serde(rename = "ServiceKind")]
    pub service_kind: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    #[serde(rename = "ServiceName")]
    pub service_name: String,
    #[serde(rename = "ServiceTags")]
    pub service_tags: Vec<String>,
    #[serde(rename = "ServiceAddress")]
    pub service_address: String,
    #[serde(rename = "ServiceTaggedAddresses", skip_serializing_if = "Option::is_none")]
    pub service_tagged_addresses: Option<BTreeMap<String, ServiceAddressOut>>,
    #[serde(rename = "ServiceWeights")]
    pub service_weights: WeightsOut,
    #[serde(rename = "ServiceMeta")]
    pub service_meta: BTreeMap<String, String>,
    #[serde(rename = "ServicePort")]
    pub service_port: u16,
    #[serde(rename = "ServiceEnableTagOverride")]
    pub service_enable_tag_override: bool,
    #[serde(rename = "ServiceProxy", skip_serializing_if = "Option::is_none")]
    pub service_proxy: Option<simd_json::OwnedValue>,
    #[serde(rename = "ServiceConnect", skip_serializing_if = "Option::is_none")]
    pub service_connect: Option<simd_json::OwnedValue>,
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

impl ServiceNodeOut {
    pub fn new(n: &Node, s: &Service) -> ServiceNodeOut {
        ServiceNodeOut {
            id: n.id.clone(),
            node: n.node.clone(),
            address: n.address.clone(),
            datacenter: n.datacenter.clone(),
            tagged_addresses: n.tagged_addresses.clone(),
            node_meta: n.meta.clone(),
            service_kind: s.kind.clone(),
            service_id: s.id.clone(),
            service_name: s.service.clone(),
            service_tags: s.tags.clone(),
            service_address: s.address.clone(),
            service_tagged_addresses: tagged(s),
            service_weights: s.weights.into(),
            service_meta: s.meta.clone(),
            service_port: s.port,
            service_enable_tag_override: s.enable_tag_override,
            service_proxy: raw_json(&s.proxy),
            service_connect: raw_json(&s.connect),
            create_index: s.create_index,
            modify_index: s.modify_index,
        }
    }
}

/// A health check as every API lists it.
#[derive(Serialize)]
pub struct CheckOut {
    #[serde(rename = "Node")]
    pub node: String,
    #[serde(rename = "CheckID")]
    pub check_id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "Notes")]
    pub notes: String,
    #[serde(rename = "Output")]
    pub output: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    #[serde(rename = "ServiceName")]
    pub service_name: String,
    #[serde(rename = "ServiceTags")]
    pub service_tags: Vec<String>,
    #[serde(rename = "Type")]
    pub check_type: String,
    #[serde(rename = "Definition")]
    pub definition: simd_json::OwnedValue,
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

impl From<&HealthCheck> for CheckOut {
    fn from(c: &HealthCheck) -> CheckOut {
        CheckOut {
            node: c.node.clone(),
            check_id: c.check_id.clone(),
            name: c.name.clone(),
            status: c.status.clone(),
            notes: c.notes.clone(),
            output: c.output.clone(),
            service_id: c.service_id.clone(),
            service_name: c.service_name.clone(),
            service_tags: c.service_tags.clone(),
            check_type: c.check_type.clone(),
            definition: raw_json(&c.definition)
                .unwrap_or_else(|| simd_json::OwnedValue::from(simd_json::owned::Object::new())),
            create_index: c.create_index,
            modify_index: c.modify_index,
        }
    }
}

/// One row of `/v1/health/service/:name`.
#[derive(Serialize)]
pub struct HealthOut {
    #[serde(rename = "Node")]
    pub node: NodeOut,
    #[serde(rename = "Service")]
    pub service: ServiceOut,
    #[serde(rename = "Checks")]
    pub checks: Vec<CheckOut>,
}

impl From<&HealthEntry> for HealthOut {
    fn from(e: &HealthEntry) -> HealthOut {
        HealthOut {
            node: NodeOut::from(&e.node),
            service: ServiceOut::catalog(&e.service),
            checks: e.checks.iter().map(CheckOut::from).collect(),
        }
    }
}
