//! Keeps the DNS executor's answer view in step with the catalog. Shards note the services and
//! nodes a write touched; after each batch that changed the catalog, the apply loop collects
//! them and the DNS executor reads the current instances of each from every shard and replaces
//! them in its view before the write is acknowledged. Answers come from the view alone: no
//! query crosses a core.
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;

use futures::future::join_all;
use muster_shards::catalog::{HealthCheck, HealthEntry, Node};

use super::core::{core, Shards};
use crate::dns::view::{DnsView, Health, Instance, NodeRecord};

thread_local! {
    static VIEW: RefCell<Option<Rc<RefCell<DnsView>>>> = const { RefCell::new(None) };
}

/// Installs the view on this (the DNS) executor and loads every service and node into it.
pub fn install(view: Rc<RefCell<DnsView>>) {
    VIEW.with(|v| *v.borrow_mut() = Some(view));
    glommio::spawn_local(async {
        if let Err(e) = load_all().await {
            log::error!("DNS view: initial load failed: {e}");
        }
    })
    .detach();
}

async fn load_all() -> Result<(), super::mesh::CallError> {
    let (services, nodes) = all_names().await?;
    refresh(services, nodes).await
}

/// Every service and node name in the catalog.
pub async fn all_names() -> Result<(BTreeSet<String>, BTreeSet<String>), super::mesh::CallError> {
    let n = core().placement.nshards();
    let parts = join_all((0..n).map(|s| {
        Shards::default().call(s, |sh| {
            let c = sh.catalog();
            (
                c.service_tags().into_keys().collect::<Vec<_>>(),
                c.nodes().map(|n| n.node.clone()).collect::<Vec<_>>(),
            )
        })
    }))
    .await;
    let mut services = BTreeSet::new();
    let mut nodes = BTreeSet::new();
    for p in parts {
        let (s, n) = p?;
        services.extend(s);
        nodes.extend(n);
    }
    Ok((services, nodes))
}

/// Re-reads the given names plus every name now in the catalog into the DNS view: after the
/// whole state was replaced, `before` holds the names that may have disappeared.
pub async fn reload(
    before: (BTreeSet<String>, BTreeSet<String>),
) -> Result<(), super::mesh::CallError> {
    let (mut services, mut nodes) = all_names().await?;
    services.extend(before.0);
    nodes.extend(before.1);
    let c = core();
    c.mesh
        .call(c.placement.dns, move || refresh(services, nodes))
        .await?
}

/// Brings the DNS view up to date with every write applied so far. The raft apply loop calls
/// it after a batch that changed the catalog and before acknowledging it, so a client that
/// registered a service can resolve it at once (read-your-writes, as Consul's DNS gives).
pub async fn flush() -> Result<(), super::mesh::CallError> {
    let c = core();
    let execs: BTreeSet<usize> = c.placement.shards.iter().copied().collect();
    let taken = join_all(execs.into_iter().map(|e| {
        c.mesh.call(e, || async {
            let c = core();
            let mut p = c.dns_pending.borrow_mut();
            (std::mem::take(&mut p.0), std::mem::take(&mut p.1))
        })
    }))
    .await;
    let mut services = BTreeSet::new();
    let mut nodes = BTreeSet::new();
    for t in taken {
        let (s, n) = t?;
        services.extend(s);
        nodes.extend(n);
    }
    if services.is_empty() && nodes.is_empty() {
        return Ok(());
    }
    c.mesh
        .call(c.placement.dns, move || refresh(services, nodes))
        .await?
}

fn worst(checks: &[&HealthCheck]) -> Health {
    checks
        .iter()
        .map(|c| {
            if c.check_type == "maintenance" {
                Health::Maintenance
            } else {
                match c.status.as_str() {
                    "passing" => Health::Passing,
                    "warning" => Health::Warning,
                    "maintenance" => Health::Maintenance,
                    _ => Health::Critical,
                }
            }
        })
        .max()
        .unwrap_or(Health::Passing)
}

fn instance(e: HealthEntry) -> Instance {
    let svc: Vec<&HealthCheck> = e
        .checks
        .iter()
        .filter(|c| !c.service_id.is_empty())
        .collect();
    let node: Vec<&HealthCheck> = e
        .checks
        .iter()
        .filter(|c| c.service_id.is_empty())
        .collect();
    Instance {
        node: e.node.node.clone(),
        node_address: e.node.address.clone(),
        service_id: e.service.id.clone(),
        service: e.service.service.clone(),
        address: e.service.address.clone(),
        port: e.service.port,
        tags: e.service.tags.clone(),
        health: worst(&svc),
        node_health: worst(&node),
        weights_passing: u32::try_from(e.service.weights.passing).unwrap_or(1),
        weights_warning: u32::try_from(e.service.weights.warning).unwrap_or(1),
        tagged_addresses: e
            .service
            .tagged_addresses
            .iter()
            .map(|(k, a)| (k.clone(), a.address.clone()))
            .collect::<BTreeMap<_, _>>(),
        node_tagged_addresses: e.node.tagged_addresses.clone(),
        node_meta: e.node.meta.clone(),
    }
}

/// Re-reads the given services and nodes into the view: one call per shard for all of them,
/// however many names a batch touched.
async fn refresh(
    services: BTreeSet<String>,
    nodes: BTreeSet<String>,
) -> Result<(), super::mesh::CallError> {
    let Some(view) = VIEW.with(|v| v.borrow().clone()) else {
        return Ok(());
    };
    let n = core().placement.nshards();
    let services: Arc<Vec<String>> = Arc::new(services.into_iter().collect());
    let nodes: Arc<Vec<String>> = Arc::new(nodes.into_iter().collect());
    let parts = join_all((0..n).map(|s| {
        let (services, nodes) = (services.clone(), nodes.clone());
        Shards::default().call(s, move |sh| {
            let c = sh.catalog();
            let instances: Vec<Vec<HealthEntry>> =
                services.iter().map(|q| c.health_instances(q)).collect();
            // Only the owner shard has a node; the others answer None.
            let records: Vec<Option<Node>> = nodes.iter().map(|q| c.node(q).cloned()).collect();
            (instances, records)
        })
    }))
    .await;
    let mut per_service: Vec<Vec<Instance>> = vec![Vec::new(); services.len()];
    let mut per_node: Vec<Option<Node>> = vec![None; nodes.len()];
    for p in parts {
        let (instances, records) = p?;
        for (slot, found) in per_service.iter_mut().zip(instances) {
            slot.extend(found.into_iter().map(instance));
        }
        for (slot, found) in per_node.iter_mut().zip(records) {
            if found.is_some() {
                *slot = found;
            }
        }
    }
    let mut v = view.borrow_mut();
    for (name, instances) in services.iter().zip(per_service) {
        v.set_service(name, instances);
    }
    for (name, node) in nodes.iter().zip(per_node) {
        match node {
            Some(node) => v.set_node(NodeRecord {
                name: node.node,
                address: node.address,
                datacenter: node.datacenter,
                meta: node.meta,
                tagged_addresses: node.tagged_addresses,
            }),
            None => v.remove_node(name),
        }
    }
    Ok(())
}
