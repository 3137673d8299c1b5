//! The synthetic catalog every workload shares, and the files generated from it: Consul
//! catalog-registration bodies for Muster, the same records as a static zone for Knot and
//! NSD, and dnsperf query files.
//!
//! Layout: instance `i` belongs to service `svc-{i % services}` and sits on node
//! `node-{i / per_node}` (10.a.b.c, never contacted). With `services >= per_node` no node
//! runs two instances of one service, so every DNS answer lists distinct addresses.
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use serde::Serialize;

/// A catalog of `services * per_service` instances, `per_node` instances per node.
#[derive(Clone, Debug, Serialize)]
pub struct Dataset {
    pub services: usize,
    pub per_service: usize,
    pub per_node: usize,
    pub datacenter: String,
}

/// One service instance of a [`Dataset`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub service: String,
    pub node: String,
    pub addr: Ipv4Addr,
    pub port: u16,
}

/// First port of instances; instance `k` of a service listens on `BASE_PORT + k`.
pub const BASE_PORT: u16 = 20_000;

impl Dataset {
    pub fn new(services: usize, per_service: usize, per_node: usize) -> Dataset {
        Dataset {
            services: services.max(1),
            per_service: per_service.max(1),
            per_node: per_node.max(1),
            datacenter: "dc1".to_string(),
        }
    }

    pub fn instances(&self) -> usize {
        self.services * self.per_service
    }

    pub fn nodes(&self) -> usize {
        self.instances().div_ceil(self.per_node)
    }

    pub fn service_name(&self, s: usize) -> String {
        format!("svc-{s}")
    }

    pub fn node_name(n: usize) -> String {
        format!("node-{n}")
    }

    pub fn node_addr(n: usize) -> Ipv4Addr {
        let n = n as u32;
        Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8)
    }

    pub fn instance(&self, i: usize) -> Instance {
        let s = i % self.services;
        let k = i / self.services;
        let n = i / self.per_node;
        Instance {
            id: format!("svc-{s}-{k}"),
            service: self.service_name(s),
            node: Self::node_name(n),
            addr: Self::node_addr(n),
            port: BASE_PORT.wrapping_add(k as u16),
        }
    }

    /// Index of instance `k` of service `s`.
    pub fn index_of(&self, s: usize, k: usize) -> usize {
        k * self.services + s
    }

    /// `PUT /v1/catalog/register` body for instance `i` with one service check in `status`.
    pub fn register_body(&self, i: usize, status: &str) -> String {
        let inst = self.instance(i);
        register_body(&inst, status)
    }

    /// Bytes of the data itself (registration bodies), the denominator of W6's RSS ratio.
    pub fn raw_bytes(&self) -> u64 {
        (0..self.instances())
            .map(|i| self.register_body(i, "passing").len() as u64)
            .sum()
    }
}

/// Catalog registration JSON for one instance, with a check bound to the service.
pub fn register_body(inst: &Instance, status: &str) -> String {
    format!(
        concat!(
            r#"{{"Node":"{node}","Address":"{addr}","Service":{{"ID":"{id}","Service":"{svc}","Port":{port}}},"#,
            r#""Checks":[{{"CheckID":"service:{id}","Name":"Service '{svc}' check","Status":"{status}","ServiceID":"{id}"}}]}}"#
        ),
        node = inst.node,
        addr = inst.addr,
        id = inst.id,
        svc = inst.service,
        port = inst.port,
        status = status,
    )
}

/// The static zone for `consul.` that answers like Muster does for this dataset:
/// `svc-N.service.consul.` has `records_per_name` A records and as many SRV records
/// (priority 1, weight 1, target `node-M.node.DC.consul.`), each target with its A record.
/// Muster returns a random `udp_answer_limit` (3) instances per plain UDP answer; a static
/// server returns the whole RRset, so the zone keeps that many per name for equal sizes.
pub fn zone_file(ds: &Dataset, records_per_name: usize) -> String {
    let per = records_per_name.clamp(1, ds.per_service);
    let mut z = String::with_capacity(ds.services * per * 120);
    z.push_str("$ORIGIN consul.\n$TTL 0\n");
    z.push_str("@ IN SOA ns.consul. hostmaster.consul. 1 3600 600 86400 0\n");
    z.push_str("@ IN NS ns.consul.\nns IN A 127.0.0.1\n");
    let dc = &ds.datacenter;
    for s in 0..ds.services {
        let name = ds.service_name(s);
        for k in 0..per {
            let inst = ds.instance(ds.index_of(s, k));
            let _ = writeln!(z, "{name}.service IN A {}", inst.addr);
        }
        for k in 0..per {
            let inst = ds.instance(ds.index_of(s, k));
            let _ = writeln!(
                z,
                "{name}.service IN SRV 1 1 {} {}.node.{dc}",
                inst.port, inst.node
            );
        }
        for k in 0..per {
            let inst = ds.instance(ds.index_of(s, k));
            let _ = writeln!(z, "{}.node.{dc} IN A {}", inst.node, inst.addr);
        }
    }
    z
}

/// A dnsperf query file: `count` lines of `svc-N.service.consul A|SRV`, services uniform at
/// random, half A and half SRV, from a seeded generator (same file for every target).
pub fn query_file(ds: &Dataset, count: usize, seed: u64) -> String {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut q = String::with_capacity(count * 32);
    for _ in 0..count {
        let s = rng.usize(0..ds.services);
        let t = if rng.bool() { "A" } else { "SRV" };
        let _ = writeln!(q, "{}.service.consul {t}", ds.service_name(s));
    }
    q
}

/// Parses a query file back into (name, qtype) pairs; qtype is 1 (A) or 33 (SRV).
pub fn parse_queries(text: &str) -> Vec<(String, u16)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next()?;
            let t = match it.next()? {
                "A" => 1,
                "SRV" => 33,
                "AAAA" => 28,
                _ => return None,
            };
            Some((name.to_string(), t))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    #[test]
    fn instances_of_a_service_are_on_distinct_nodes() {
        let ds = Dataset::new(1000, 50, 10);
        assert_eq!(ds.instances(), 50_000);
        assert_eq!(ds.nodes(), 5_000);
        for s in [0, 1, 999] {
            let nodes: BTreeSet<_> = (0..50)
                .map(|k| ds.instance(ds.index_of(s, k)).node)
                .collect();
            assert_eq!(nodes.len(), 50);
        }
        let i = ds.instance(12_345);
        assert_eq!(i.service, "svc-345");
        assert_eq!(i.id, "svc-345-12");
        assert_eq!(i.node, "node-1234");
        assert_eq!(i.addr, Ipv4Addr::new(10, 0, 4, 210));
    }

    #[test]
    fn register_body_is_consul_json() {
        let ds = Dataset::new(3, 2, 2);
        let v: serde_json::Value = serde_json::from_str(&ds.register_body(4, "critical")).unwrap();
        assert_eq!(v["Node"], "node-2");
        assert_eq!(v["Service"]["Service"], "svc-1");
        assert_eq!(v["Service"]["ID"], "svc-1-1");
        assert_eq!(v["Service"]["Port"], 20_001);
        assert_eq!(v["Checks"][0]["Status"], "critical");
        assert_eq!(v["Checks"][0]["ServiceID"], "svc-1-1");
        assert!(ds.raw_bytes() > 6 * 100);
    }

    #[test]
    fn zone_has_the_records_muster_would_answer() {
        let ds = Dataset::new(20, 5, 10);
        let z = zone_file(&ds, 3);
        assert!(z.starts_with("$ORIGIN consul.\n$TTL 0\n@ IN SOA "));
        let mut per_owner: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for l in z.lines().skip(2) {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f[1], "IN", "line {l}");
            *per_owner.entry((f[0], f[2])).or_default() += 1;
            if f[2] == "SRV" {
                assert_eq!(f.len(), 7, "line {l}");
                assert!(f[6].ends_with(".node.dc1"), "relative target: {l}");
                // Every SRV target resolves inside the zone.
                assert!(
                    z.contains(&format!("\n{} IN A ", f[6])),
                    "no A for {}",
                    f[6]
                );
            }
        }
        for s in 0..20 {
            let owner = format!("svc-{s}.service");
            assert_eq!(per_owner[&(owner.as_str(), "A")], 3);
            assert_eq!(per_owner[&(owner.as_str(), "SRV")], 3);
        }
        // Asking for more records than instances keeps them all.
        assert_eq!(zone_file(&ds, 50).matches("svc-0.service IN A").count(), 5);
    }

    #[test]
    fn query_file_is_seeded_and_covers_both_types() {
        let ds = Dataset::new(1000, 50, 10);
        let a = query_file(&ds, 10_000, 42);
        assert_eq!(a, query_file(&ds, 10_000, 42));
        assert_ne!(a, query_file(&ds, 10_000, 43));
        let qs = parse_queries(&a);
        assert_eq!(qs.len(), 10_000);
        let srv = qs.iter().filter(|(_, t)| *t == 33).count();
        assert!((4_000..6_000).contains(&srv), "srv {srv}");
        for (name, _) in &qs {
            let s: usize = name
                .strip_prefix("svc-")
                .and_then(|r| r.strip_suffix(".service.consul"))
                .unwrap()
                .parse()
                .unwrap();
            assert!(s < 1000);
        }
        let distinct: BTreeSet<_> = qs.iter().map(|(n, _)| n).collect();
        assert!(distinct.len() > 990);
    }
}
