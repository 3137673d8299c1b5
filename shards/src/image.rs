//! A whole-datacenter image of the replicated state, independent of how many shards hold it:
//! what a snapshot stores (archived with rkyv) and what a restore installs.
//!
//! Each shard exports its own part ([`Image::of_shard`]); the parts are merged into one image
//! ([`Image::merge`]) in a canonical order, so two stores with the same data give byte-equal
//! archives whatever their shard count. Installing ([`Image::into_shards`]) routes every item
//! with [`shard_for`] again, so a snapshot taken with `-cores 4` restores on `-cores 1`.
//!
//! Sessions are replicated on every shard, so only one part's copy is kept. Table indexes are
//! per shard in memory; the image keeps the highest of each, and every shard gets that value
//! back, which keeps each index at or above what any reader saw before.

use std::collections::{BTreeMap, HashMap};

use crate::catalog::{Catalog, HealthCheck, Node, Service};
use crate::config_entry::{entry_key, ConfigEntry, ConfigTable};
use crate::kv::{KvEntry, KvTable};
use crate::route::shard_for;
use crate::session::{Session, SessionTable};
use crate::shard::Shard;

/// The highest index of each table.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct TableIndexes {
    pub kv: u64,
    pub sessions: u64,
    pub nodes: u64,
    pub services: u64,
    pub checks: u64,
    pub config_entries: u64,
}

impl TableIndexes {
    fn max(self, o: TableIndexes) -> TableIndexes {
        TableIndexes {
            kv: self.kv.max(o.kv),
            sessions: self.sessions.max(o.sessions),
            nodes: self.nodes.max(o.nodes),
            services: self.services.max(o.services),
            checks: self.checks.max(o.checks),
            config_entries: self.config_entries.max(o.config_entries),
        }
    }
}

/// The replicated state. Every list is sorted by its key once merged.
#[derive(Debug, Clone, Default, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Image {
    /// Highest index applied to the state.
    pub applied: u64,
    /// What the host adds to raft log indexes to get the indexes the state is stamped with.
    /// Zero until a snapshot from a server further ahead is restored; it then keeps every
    /// new index above the restored ones (the host's raft log cannot jump forward).
    pub index_offset: u64,
    pub indexes: TableIndexes,
    pub kv: Vec<KvEntry>,
    /// Deleted keys and the index of their deletion.
    pub tombstones: Vec<(String, u64)>,
    pub sessions: Vec<Session>,
    /// Keys still under a lock delay: key -> ms (leader clock) when it ends.
    pub lock_delays: Vec<(String, u64)>,
    pub nodes: Vec<Node>,
    /// Instances as (node name, service).
    pub services: Vec<(String, Service)>,
    pub checks: Vec<HealthCheck>,
    /// Last index at which each service changed.
    pub service_index: Vec<(String, u64)>,
    /// Config entries, sorted by (kind, name).
    pub config_entries: Vec<ConfigEntry>,
}

/// Rows and payload bytes of one table, as `muster snapshot inspect` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCount {
    pub table: &'static str,
    pub count: usize,
    pub bytes: usize,
}

fn map_len(m: &BTreeMap<String, String>) -> usize {
    m.iter().map(|(k, v)| k.len() + v.len()).sum()
}

impl Image {
    /// This shard's part. Sessions are included from every shard and deduplicated by
    /// [`Image::merge`].
    pub fn of_shard(s: &Shard) -> Image {
        let kv = &s.kv;
        let c = &s.catalog;
        Image {
            applied: s.applied,
            index_offset: 0,
            indexes: TableIndexes {
                kv: kv.index,
                sessions: s.sessions.index,
                nodes: c.nodes_index,
                services: c.services_index,
                checks: c.checks_index,
                config_entries: s.config.index,
            },
            kv: kv.entries.values().cloned().collect(),
            tombstones: kv.tombstones.iter().map(|(k, i)| (k.clone(), *i)).collect(),
            sessions: s.sessions.map.values().cloned().collect(),
            lock_delays: s.lock_delays.iter().map(|(k, t)| (k.clone(), *t)).collect(),
            nodes: c.nodes.values().cloned().collect(),
            services: c
                .services
                .iter()
                .map(|(k, svc)| (owner_node(k).to_string(), svc.clone()))
                .collect(),
            checks: c.checks.values().cloned().collect(),
            service_index: c
                .service_index
                .iter()
                .map(|(k, i)| (k.clone(), *i))
                .collect(),
            config_entries: s.config.entries.values().cloned().collect(),
        }
    }

    /// Merges shard parts into one canonical image.
    pub fn merge(parts: Vec<Image>) -> Image {
        let mut out = Image::default();
        let mut service_index: HashMap<String, u64> = HashMap::new();
        let mut sessions: BTreeMap<String, Session> = BTreeMap::new();
        for p in parts {
            out.applied = out.applied.max(p.applied);
            out.index_offset = out.index_offset.max(p.index_offset);
            out.indexes = out.indexes.max(p.indexes);
            out.kv.extend(p.kv);
            out.tombstones.extend(p.tombstones);
            out.lock_delays.extend(p.lock_delays);
            out.nodes.extend(p.nodes);
            out.services.extend(p.services);
            out.checks.extend(p.checks);
            out.config_entries.extend(p.config_entries);
            for s in p.sessions {
                sessions.entry(s.id.clone()).or_insert(s);
            }
            for (name, idx) in p.service_index {
                let e = service_index.entry(name).or_insert(0);
                *e = (*e).max(idx);
            }
        }
        out.sessions = sessions.into_values().collect();
        out.service_index = service_index.into_iter().collect();
        out.sort();
        out
    }

    fn sort(&mut self) {
        self.kv.sort_by(|a, b| a.key.cmp(&b.key));
        self.tombstones.sort();
        self.lock_delays.sort();
        self.nodes.sort_by(|a, b| a.node.cmp(&b.node));
        self.services
            .sort_by(|a, b| (&a.0, &a.1.id).cmp(&(&b.0, &b.1.id)));
        self.checks
            .sort_by(|a, b| (&a.node, &a.check_id).cmp(&(&b.node, &b.check_id)));
        self.service_index.sort();
        self.config_entries
            .sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    }

    /// The highest index anywhere in the image.
    pub fn max_index(&self) -> u64 {
        let i = self.indexes;
        [
            self.applied,
            i.kv,
            i.sessions,
            i.nodes,
            i.services,
            i.checks,
            i.config_entries,
        ]
        .into_iter()
        .chain(self.service_index.iter().map(|(_, v)| *v))
        .chain(self.tombstones.iter().map(|(_, v)| *v))
        .chain(self.kv.iter().map(|e| e.modify_index))
        .chain(self.config_entries.iter().map(|e| e.modify_index))
        .max()
        .unwrap_or(0)
    }

    /// Raises every table index to at least `idx`: a restore at raft index `idx` replaces the
    /// tables, so blocking queries on any of them must see their index move.
    pub fn raise_indexes(&mut self, idx: u64) {
        let i = &mut self.indexes;
        for v in [
            &mut i.kv,
            &mut i.sessions,
            &mut i.nodes,
            &mut i.services,
            &mut i.checks,
            &mut i.config_entries,
        ] {
            *v = (*v).max(idx);
        }
        for (_, v) in &mut self.service_index {
            *v = (*v).max(idx);
        }
        self.applied = self.applied.max(idx);
    }

    /// Distributes the image over `nshards` fresh shards, each item to the shard that owns it.
    pub fn into_shards(self, nshards: usize) -> Vec<Shard> {
        let nshards = nshards.max(1);
        let mut shards: Vec<Shard> = (0..nshards).map(|i| Shard::new(i, nshards)).collect();
        let route = |key: &str| shard_for(key.as_bytes(), nshards);
        let service_index: HashMap<String, u64> = self.service_index.into_iter().collect();
        let sessions: BTreeMap<String, Session> = self
            .sessions
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        for s in &mut shards {
            s.applied = self.applied;
            s.kv = KvTable::default();
            s.kv.index = self.indexes.kv;
            s.sessions = SessionTable {
                map: sessions.clone(),
                index: self.indexes.sessions,
            };
            s.catalog = Catalog::default();
            let c = &mut s.catalog;
            c.nodes_index = self.indexes.nodes;
            c.services_index = self.indexes.services;
            c.checks_index = self.indexes.checks;
            c.service_index = service_index.clone();
            s.config = ConfigTable {
                index: self.indexes.config_entries,
                ..ConfigTable::default()
            };
        }
        for e in self.kv {
            let k = e.key.clone();
            shards[route(&k)].kv.entries.insert(k, e);
        }
        for (k, i) in self.tombstones {
            shards[route(&k)].kv.tombstones.insert(k, i);
        }
        for (k, t) in self.lock_delays {
            shards[route(&k)].lock_delays.insert(k, t);
        }
        for n in self.nodes {
            let k = n.node.clone();
            shards[route(&k)].catalog.nodes.insert(k, n);
        }
        for (node, svc) in self.services {
            let key = format!("{node}\0{}", svc.id);
            shards[route(&node)].catalog.services.insert(key, svc);
        }
        for c in self.checks {
            let key = format!("{}\0{}", c.node, c.check_id);
            let owner = route(&c.node);
            shards[owner].catalog.checks.insert(key, c);
        }
        for e in self.config_entries {
            let k = entry_key(&e.kind, &e.name);
            shards[route(&k)].config.entries.insert(k, e);
        }
        for s in &mut shards {
            s.rebuild();
        }
        shards
    }

    /// Rows and payload bytes per table.
    pub fn counts(&self) -> Vec<TableCount> {
        let kv_bytes = self.kv.iter().map(|e| e.key.len() + e.value.len()).sum();
        let node_bytes = self
            .nodes
            .iter()
            .map(|n| {
                n.node.len() + n.address.len() + map_len(&n.meta) + map_len(&n.tagged_addresses)
            })
            .sum();
        let svc_bytes = self
            .services
            .iter()
            .map(|(n, s)| {
                n.len()
                    + s.id.len()
                    + s.service.len()
                    + s.address.len()
                    + s.tags.iter().map(String::len).sum::<usize>()
                    + map_len(&s.meta)
            })
            .sum();
        let check_bytes = self
            .checks
            .iter()
            .map(|c| {
                c.node.len() + c.check_id.len() + c.name.len() + c.output.len() + c.notes.len()
            })
            .sum();
        let session_bytes = self
            .sessions
            .iter()
            .map(|s| s.id.len() + s.name.len() + s.node.len())
            .sum();
        let tomb_bytes = self.tombstones.iter().map(|(k, _)| k.len()).sum();
        vec![
            TableCount {
                table: "KVS",
                count: self.kv.len(),
                bytes: kv_bytes,
            },
            TableCount {
                table: "Tombstone",
                count: self.tombstones.len(),
                bytes: tomb_bytes,
            },
            TableCount {
                table: "Session",
                count: self.sessions.len(),
                bytes: session_bytes,
            },
            TableCount {
                table: "Node",
                count: self.nodes.len(),
                bytes: node_bytes,
            },
            TableCount {
                table: "Service",
                count: self.services.len(),
                bytes: svc_bytes,
            },
            TableCount {
                table: "Check",
                count: self.checks.len(),
                bytes: check_bytes,
            },
            TableCount {
                table: "ConfigEntry",
                count: self.config_entries.len(),
                bytes: self
                    .config_entries
                    .iter()
                    .map(|e| e.kind.len() + e.name.len() + e.body.len())
                    .sum(),
            },
        ]
    }
}

/// The node of a "node\0service_id" catalog key.
fn owner_node(key: &str) -> &str {
    key.split('\0').next().unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Registration;
    use crate::command::{KvOp, KvVerb};

    fn put(s: &mut [Shard], idx: u64, key: &str, val: &str) {
        let n = s.len();
        let mut op = KvOp::new(KvVerb::Set, key);
        op.value = bytes::Bytes::copy_from_slice(val.as_bytes());
        s[shard_for(key.as_bytes(), n)].kv_write(idx, &op).unwrap();
    }

    fn sample(n: usize) -> Vec<Shard> {
        let mut s: Vec<Shard> = (0..n).map(|i| Shard::new(i, n)).collect();
        for i in 0..50u64 {
            put(&mut s, i + 1, &format!("k/{i}"), &format!("v{i}"));
        }
        for i in 0..20u64 {
            let node = format!("node-{i}");
            let reg = Registration {
                node: Node {
                    node: node.clone(),
                    address: format!("10.0.0.{i}"),
                    ..Node::default()
                },
                service: Some(Service {
                    id: format!("web-{i}"),
                    service: "web".into(),
                    port: 80,
                    ..Service::default()
                }),
                checks: vec![HealthCheck {
                    node: node.clone(),
                    check_id: format!("c{i}"),
                    status: "passing".into(),
                    service_id: format!("web-{i}"),
                    service_name: "web".into(),
                    ..HealthCheck::default()
                }],
                ..Registration::default()
            };
            let owner = shard_for(node.as_bytes(), n);
            s[owner].register(100 + i, &reg).unwrap();
        }
        let sess = Session {
            id: "s1".into(),
            node: "node-1".into(),
            ..Session::default()
        };
        for sh in &mut s {
            sh.session_insert(200, sess.clone());
        }
        for (i, name) in ["web", "api", "db"].iter().enumerate() {
            let op = crate::config_entry::ConfigOp {
                verb: crate::config_entry::ConfigVerb::Upsert,
                kind: "service-defaults".into(),
                name: name.to_string(),
                body: format!("{{\"Protocol\":\"http{i}\"}}"),
                cas: 0,
            };
            s[shard_for(op.key().as_bytes(), n)].config_apply(300 + i as u64, &op);
        }
        s
    }

    #[test]
    fn image_is_independent_of_shard_count() {
        let one = Image::merge(sample(1).iter().map(Image::of_shard).collect());
        let four = Image::merge(sample(4).iter().map(Image::of_shard).collect());
        assert_eq!(one, four);
        assert_eq!(one.kv.len(), 50);
        assert_eq!(one.nodes.len(), 20);
        assert_eq!(one.services.len(), 20);
        assert_eq!(one.sessions.len(), 1);
        assert_eq!(one.config_entries.len(), 3);
        assert_eq!(one.indexes.config_entries, 302);
    }

    #[test]
    fn reshards_on_install() {
        let img = Image::merge(sample(3).iter().map(Image::of_shard).collect());
        let shards = img.clone().into_shards(2);
        for s in &shards {
            for e in s.kv().entries.values() {
                assert_eq!(shard_for(e.key.as_bytes(), 2), s.id());
            }
            assert_eq!(s.sessions().list().len(), 1);
        }
        let again = Image::merge(shards.iter().map(Image::of_shard).collect());
        assert_eq!(img, again);
        // Derived indexes are rebuilt: the service is found by name.
        let total: usize = shards
            .iter()
            .map(|s| s.catalog().by_name.get("web").map_or(0, |k| k.len()))
            .sum();
        assert_eq!(total, 20);
        let entries: usize = shards.iter().map(|s| s.config().len()).sum();
        assert_eq!(entries, 3);
        for s in &shards {
            assert_eq!(s.config().index(), 302);
        }
    }

    #[test]
    fn rkyv_round_trip_with_validation() {
        let img = Image::merge(sample(2).iter().map(Image::of_shard).collect());
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&img).unwrap();
        let archived = rkyv::access::<ArchivedImage, rkyv::rancor::Error>(&bytes).unwrap();
        let back: Image = rkyv::deserialize::<Image, rkyv::rancor::Error>(archived).unwrap();
        assert_eq!(img, back);
        let mut bad = bytes.to_vec();
        let n = bad.len();
        // The root pointer lives at the end: corrupting it must fail validation, not crash.
        bad[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(&bad);
        assert!(rkyv::access::<ArchivedImage, rkyv::rancor::Error>(&aligned).is_err());
    }

    #[test]
    fn raise_indexes_only_raises() {
        let mut img = Image::merge(sample(1).iter().map(Image::of_shard).collect());
        let before = img.indexes;
        img.raise_indexes(150);
        assert_eq!(img.indexes.sessions, before.sessions.max(150));
        assert!(img.indexes.kv >= 150 && img.indexes.nodes >= 150);
        assert!(img.service_index.iter().all(|(_, i)| *i >= 150));
    }
}
