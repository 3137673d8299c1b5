//! `muster catalog datacenters|nodes|services`: read-only views of the catalog, printed as
//! Consul's CLI prints them.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use serde::Deserialize;

use super::args::{go_bool, key_value};
use super::http::{encode_path, Client, HttpError, HttpFlags, Method, ServerFlags};
use super::kv::load_data_source;
use super::table::{columnize, key_values};
use super::{error_line, info_line};

#[derive(Debug, Clone, Subcommand)]
pub enum CatalogCommand {
    /// Lists all known datacenters
    Datacenters(DatacentersArgs),
    /// Lists all nodes in the given datacenter
    Nodes(NodesArgs),
    /// Lists all registered services in a datacenter
    Services(ServicesArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DatacentersArgs {
    #[command(flatten)]
    pub http: HttpFlags,
    #[command(flatten)]
    pub server: ServerFlags,
    /// Consul takes none; kept to report "Too many arguments".
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct NodesArgs {
    /// Print full node IDs, tagged addresses and metadata.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub detailed: bool,
    /// Sort by estimated round-trip time from this node ("_agent": this agent).
    #[arg(long, default_value = "")]
    pub near: String,
    /// Only nodes with this `key=value` metadata (repeatable).
    #[arg(long = "node-meta", value_name = "key=value", value_parser = key_value)]
    pub node_meta: Vec<(String, String)>,
    /// Only nodes providing this service (ID or name).
    #[arg(long, default_value = "")]
    pub service: String,
    /// Filter expression applied by the agent ("@file" or "-" read it).
    #[arg(long, default_value = "")]
    pub filter: String,
    #[command(flatten)]
    pub http: HttpFlags,
    #[command(flatten)]
    pub server: ServerFlags,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ServicesArgs {
    /// Only the services of this node (ID or name).
    #[arg(long, default_value = "")]
    pub node: String,
    /// Only services on nodes with this `key=value` metadata (repeatable).
    #[arg(long = "node-meta", value_name = "key=value", value_parser = key_value)]
    pub node_meta: Vec<(String, String)>,
    /// Print each service's tags beside it.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub tags: bool,
    #[command(flatten)]
    pub http: HttpFlags,
    #[command(flatten)]
    pub server: ServerFlags,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

/// What the node table needs of a node, from `/v1/catalog/nodes` or (`-service`) from the
/// node half of `/v1/catalog/service/:name` rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CatalogNode {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(rename = "Node", default)]
    pub node: String,
    #[serde(rename = "Address", default)]
    pub address: String,
    #[serde(rename = "Datacenter", default)]
    pub datacenter: String,
    #[serde(rename = "TaggedAddresses", default)]
    pub tagged_addresses: Option<BTreeMap<String, String>>,
    /// `Meta` on nodes, `NodeMeta` on service rows.
    #[serde(rename = "Meta", alias = "NodeMeta", default)]
    pub meta: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct NodeService {
    #[serde(rename = "Service", default)]
    service: String,
    #[serde(rename = "Tags", default)]
    tags: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct NodeServices {
    #[serde(rename = "Services", default)]
    services: Option<BTreeMap<String, NodeService>>,
}

/// `/v1/catalog/services`: service name to tags (null when a service has none).
type ServiceTags = BTreeMap<String, Option<Vec<String>>>;

pub fn run(cmd: CatalogCommand) -> i32 {
    match cmd {
        CatalogCommand::Datacenters(a) => datacenters(a),
        CatalogCommand::Nodes(a) => nodes(a),
        CatalogCommand::Services(a) => services(a),
    }
}

fn no_args(args: &[String]) -> Result<(), i32> {
    if args.is_empty() {
        Ok(())
    } else {
        error_line(&format!(
            "Too many arguments (expected 0, got {})",
            args.len()
        ));
        Err(1)
    }
}

fn connect(http: &HttpFlags) -> Result<Client, i32> {
    Client::new(http).map_err(|e| {
        error_line(&format!("Error connecting to Consul agent: {e}"));
        1
    })
}

/// `node-meta=key:value` query parameters, one per distinct key (a later flag wins, as
/// with Consul's map-valued flags).
fn node_meta_query(pairs: &[(String, String)]) -> Vec<(&'static str, String)> {
    let map: BTreeMap<&str, &str> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    map.into_iter()
        .map(|(k, v)| ("node-meta", format!("{k}:{v}")))
        .collect()
}

fn datacenters(a: DatacentersArgs) -> i32 {
    if let Err(code) = no_args(&a.args) {
        return code;
    }
    let client = match connect(&a.http) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Consul's client sends no query options with this request: -datacenter and -stale
    // are accepted but have no effect.
    let dcs: Result<Vec<String>, HttpError> = client
        .send_ok(Method::Get, "/v1/catalog/datacenters", &[], None)
        .and_then(|r| r.json());
    match dcs {
        Ok(dcs) => {
            for dc in dcs {
                info_line(&dc);
            }
            0
        }
        Err(e) => {
            error_line(&format!("Error listing datacenters: {e}"));
            1
        }
    }
}

/// `k1=v1, k2=v2`, sorted by key.
fn map_to_kv(m: Option<&BTreeMap<String, String>>) -> String {
    m.map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
    .unwrap_or_default()
}

/// The `catalog nodes` table; the short form keeps the node ID up to its first dash.
pub fn nodes_table(nodes: &[CatalogNode], detailed: bool) -> String {
    let header: &[&str] = if detailed {
        &["Node", "ID", "Address", "DC", "TaggedAddresses", "Meta"]
    } else {
        &["Node", "ID", "Address", "DC"]
    };
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for n in nodes {
        if detailed {
            rows.push(vec![
                n.node.clone(),
                n.id.clone(),
                n.address.clone(),
                n.datacenter.clone(),
                map_to_kv(n.tagged_addresses.as_ref()),
                map_to_kv(n.meta.as_ref()),
            ]);
        } else {
            let id = match n.id.find('-') {
                Some(i) if i > 0 => &n.id[..i],
                _ => n.id.as_str(),
            };
            rows.push(vec![
                n.node.clone(),
                id.to_owned(),
                n.address.clone(),
                n.datacenter.clone(),
            ]);
        }
    }
    columnize(&rows)
}

fn nodes(a: NodesArgs) -> i32 {
    if let Err(code) = no_args(&a.args) {
        return code;
    }
    let client = match connect(&a.http) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let filter = if a.filter.is_empty() {
        String::new()
    } else {
        match load_data_source(&a.filter, &mut std::io::stdin().lock()) {
            Ok(d) => String::from_utf8_lossy(&d).into_owned(),
            Err(e) => {
                error_line(&format!("Could not process filter argument: {e}"));
                return 1;
            }
        }
    };
    let mut q = a.server.query();
    if !a.near.is_empty() {
        q.push(("near", a.near.clone()));
    }
    q.extend(node_meta_query(&a.node_meta));
    if !filter.is_empty() {
        q.push(("filter", filter));
    }
    let (path, what) = if a.service.is_empty() {
        ("/v1/catalog/nodes".to_owned(), "Error listing nodes")
    } else {
        (
            format!("/v1/catalog/service/{}", encode_path(&a.service)),
            "Error listing nodes for service",
        )
    };
    let nodes: Vec<CatalogNode> = match client
        .send_ok(Method::Get, &path, &q, None)
        .and_then(|r| r.json::<Option<Vec<CatalogNode>>>())
    {
        Ok(n) => n.unwrap_or_default(),
        Err(e) => {
            error_line(&format!("{what}: {e}"));
            return 1;
        }
    };
    if nodes.is_empty() {
        // Consul reports this on stderr but still exits 0.
        error_line("No nodes match the given query - try expanding your search.");
        return 0;
    }
    info_line(&nodes_table(&nodes, a.detailed));
    0
}

/// `catalog services` output: names sorted, one per line; with tags, a second column
/// aligned as Go's tabwriter (padding 6) aligns it.
pub fn services_output(services: &BTreeMap<String, Vec<String>>, tags: bool) -> String {
    if !tags {
        return services.keys().cloned().collect::<Vec<_>>().join("\n");
    }
    let rows: Vec<(&str, String)> = services
        .iter()
        .map(|(name, t)| {
            let mut t = t.clone();
            t.sort();
            (name.as_str(), t.join(","))
        })
        .collect();
    key_values(&rows).trim().to_owned()
}

fn services(a: ServicesArgs) -> i32 {
    if let Err(code) = no_args(&a.args) {
        return code;
    }
    let client = match connect(&a.http) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut q = a.server.query();
    q.extend(node_meta_query(&a.node_meta));
    let services: BTreeMap<String, Vec<String>> = if a.node.is_empty() {
        let r: Result<Option<ServiceTags>, HttpError> = client
            .send_ok(Method::Get, "/v1/catalog/services", &q, None)
            .and_then(|r| r.json());
        match r {
            Ok(m) => m
                .unwrap_or_default()
                .into_iter()
                .map(|(k, t)| (k, t.unwrap_or_default()))
                .collect(),
            Err(e) => {
                error_line(&format!("Error listing services: {e}"));
                return 1;
            }
        }
    } else {
        let path = format!("/v1/catalog/node/{}", encode_path(&a.node));
        let r: Result<Option<NodeServices>, HttpError> = client
            .send_ok(Method::Get, &path, &q, None)
            .and_then(|r| r.json());
        match r {
            Ok(n) => {
                let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for s in n.and_then(|n| n.services).unwrap_or_default().into_values() {
                    // Instances of one service pool their tags, duplicates included.
                    m.entry(s.service)
                        .or_default()
                        .extend(s.tags.unwrap_or_default());
                }
                m
            }
            Err(e) => {
                error_line(&format!("Error listing services for node: {e}"));
                return 1;
            }
        }
    };
    if services.is_empty() {
        error_line("No services match the given query - try expanding your search.");
        return 0;
    }
    info_line(&services_output(&services, a.tags));
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, id: &str, addr: &str) -> CatalogNode {
        CatalogNode {
            id: id.into(),
            node: name.into(),
            address: addr.into(),
            datacenter: "dc1".into(),
            ..CatalogNode::default()
        }
    }

    #[test]
    fn short_table_cuts_id_at_first_dash() {
        let ns = vec![
            node(
                "worker-01",
                "1b662d97-8b5c-3cc2-0ac0-96f55ad423b5",
                "10.4.5.31",
            ),
            node("w2", "", "10.4.4.158"),
            node("w3", "-leading", "10.0.0.3"),
        ];
        assert_eq!(
            nodes_table(&ns, false),
            "\
Node       ID        Address     DC
worker-01  1b662d97  10.4.5.31   dc1
w2                   10.4.4.158  dc1
w3         -leading  10.0.0.3    dc1"
        );
    }

    #[test]
    fn detailed_table_lists_maps_sorted() {
        let mut n = node("n1", "1b662d97-8b5c-3cc2-0ac0-96f55ad423b5", "10.4.5.31");
        n.tagged_addresses = Some(BTreeMap::from([
            ("wan".to_owned(), "1.2.3.4".to_owned()),
            ("lan".to_owned(), "10.4.5.31".to_owned()),
        ]));
        n.meta = Some(BTreeMap::from([("rack".to_owned(), "r1".to_owned())]));
        assert_eq!(
            nodes_table(&[n], true),
            "\
Node  ID                                    Address    DC   TaggedAddresses             Meta
n1    1b662d97-8b5c-3cc2-0ac0-96f55ad423b5  10.4.5.31  dc1  lan=10.4.5.31, wan=1.2.3.4  rack=r1"
        );
    }

    #[test]
    fn service_rows_decode_node_meta() {
        let mut b = br#"[{"ID":"abc-def","Node":"n","Address":"1.1.1.1","Datacenter":"dc1","TaggedAddresses":null,"NodeMeta":{"a":"b"},"ServiceName":"web"}]"#.to_vec();
        let ns: Vec<CatalogNode> = simd_json::serde::from_slice(&mut b).unwrap();
        assert_eq!(map_to_kv(ns[0].meta.as_ref()), "a=b");
        assert_eq!(ns[0].tagged_addresses, None);
    }

    #[test]
    fn services_plain_and_with_tags() {
        let m = BTreeMap::from([
            (
                "redis".to_owned(),
                vec!["v1".to_owned(), "primary".to_owned()],
            ),
            ("consul".to_owned(), vec![]),
            ("postgresql".to_owned(), vec!["leader".to_owned()]),
        ]);
        assert_eq!(services_output(&m, false), "consul\npostgresql\nredis");
        // Go's tabwriter pads even an empty last cell; only the end of the output is trimmed.
        assert_eq!(
            services_output(&m, true),
            "consul          \npostgresql      leader\nredis           primary,v1"
        );
    }

    #[test]
    fn node_meta_last_value_wins() {
        let q = node_meta_query(&[
            ("b".into(), "1".into()),
            ("a".into(), "x:y".into()),
            ("b".into(), "2".into()),
        ]);
        assert_eq!(
            q,
            vec![
                ("node-meta", "a:x:y".to_owned()),
                ("node-meta", "b:2".to_owned())
            ]
        );
    }
}
