//! The read-optimized answer view: one per DNS core, owned by that core, no locks.
//!
//! The catalog owner feeds it whole services ([`DnsView::set_service`]) and nodes
//! ([`DnsView::set_node`]); everything a query needs is computed here, once per update
//! rather than once per query: lower-case keys, combined health, SRV weights, the address
//! to answer with for A, AAAA and other query types (tagged `lan_ipv4`/`lan_ipv6`
//! addresses, service address over node address, hostnames), SRV target names, node meta
//! as TXT data, the lists of passing and of passing-or-warning instances, and the reverse
//! (PTR) indexes.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::Name;

/// Worst check status, ordered from best to worst (the order Consul aggregates in).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    #[default]
    Passing,
    Warning,
    Critical,
    /// A node or service in maintenance mode (Consul models it as a critical check).
    Maintenance,
}

/// One registered service instance, as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub node: String,
    pub node_address: String,
    pub service_id: String,
    pub service: String,
    /// The service address; empty means "the node's address". An IP or a hostname.
    pub address: String,
    pub port: u16,
    pub tags: Vec<String>,
    /// Worst service-level check.
    pub health: Health,
    /// Worst node-level check (e.g. `serfHealth`).
    pub node_health: Health,
    pub weights_passing: u32,
    pub weights_warning: u32,
    /// The service's tagged addresses (`lan_ipv4`, `lan_ipv6`, `wan`, ...), address only.
    pub tagged_addresses: BTreeMap<String, String>,
    /// The node's tagged addresses (`lan_ipv4`, `lan_ipv6`, ...).
    pub node_tagged_addresses: BTreeMap<String, String>,
    pub node_meta: BTreeMap<String, String>,
}

impl Default for Instance {
    fn default() -> Self {
        Instance {
            node: String::new(),
            node_address: String::new(),
            service_id: String::new(),
            service: String::new(),
            address: String::new(),
            port: 0,
            tags: Vec::new(),
            health: Health::Passing,
            node_health: Health::Passing,
            // Consul's default `Weights`.
            weights_passing: 1,
            weights_warning: 1,
            tagged_addresses: BTreeMap::new(),
            node_tagged_addresses: BTreeMap::new(),
            node_meta: BTreeMap::new(),
        }
    }
}

/// One catalog node, for `NODE.node.consul` and PTR lookups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeRecord {
    pub name: String,
    /// An IP or a hostname.
    pub address: String,
    pub datacenter: String,
    pub meta: BTreeMap<String, String>,
    pub tagged_addresses: BTreeMap<String, String>,
}

/// Which address families a query accepts (Consul's `TranslateAddressAccept`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// A queries: IPv4 or a hostname.
    V4,
    /// AAAA queries: IPv6 or a hostname.
    V6,
    /// Every other type (SRV, ANY, TXT...): anything.
    Any,
}

/// The address one instance answers with for one [`Family`]. Small on purpose: the
/// per-family arrays of a service are what every query reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// Nothing usable for this family.
    None,
    /// `node_target`: the IP is the node's own address, so SRV answers point at
    /// `NODE.node.DC.domain`; otherwise at `HEX.addr.DC.domain`.
    Ip { ip: IpAddr, node_target: bool },
    /// A hostname (external service): CNAME for address queries, SRV target as is.
    Host(Box<HostTarget>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostTarget {
    pub host: Name,
    /// Answered instead when the hostname is the very name being asked.
    pub node_ip: Option<IpAddr>,
}

/// What SRV answers need of an instance.
#[derive(Debug, Clone)]
pub(crate) struct SrvInfo {
    pub port: u16,
    pub weight: u16,
    /// Hash of the lower case node name and raw service address: with the port, the key
    /// under which duplicate SRV records are dropped (equal hashes are confirmed on
    /// [`Cold::dedup_key`]).
    pub dedup: u64,
    /// Hash of what the target names (the node, or the address): an SRV answer adds the
    /// target's address records only the first time a target appears.
    pub target_key: u64,
    /// Where the target's labels are in [`ServiceEntry::names`]...
    pub name_at: u32,
    pub name_len: u16,
    /// ...and what follows them.
    pub name_kind: NameKind,
    /// The node has meta (see [`Cold::meta`]).
    pub has_meta: bool,
}

/// How an SRV target's stored labels make a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameKind {
    /// No valid name: the instance is left out of SRV answers.
    None,
    /// `NODE.node.DC` or `HEX.addr.DC`, to be followed by the domain asked.
    InDomain,
    /// A whole hostname.
    Absolute,
}

/// The rest of an [`Instance`], read by tag filters, SRV additional records, NS answers.
#[derive(Debug, Clone)]
pub(crate) struct Cold {
    pub node: Box<str>,
    pub dedup_key: Box<str>,
    /// Lower case.
    pub tags: Box<[Box<str>]>,
    /// Node meta as TXT data.
    pub meta: Box<[TXT]>,
    /// The raw service address when it is an IP: what PTR lookups of services match.
    ptr_ip: Option<IpAddr>,
    /// The node's address for NS glue, when it is an IP.
    pub node_ip: Option<IpAddr>,
}

impl Cold {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| &**t == tag)
    }
}

/// A service's instances, prepared for answering, as parallel arrays indexed alike.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServiceEntry {
    pub v4: Vec<Target>,
    pub v6: Vec<Target>,
    pub any: Vec<Target>,
    pub srv: Vec<SrvInfo>,
    /// SRV target labels in wire format, one after the other, so that the targets of
    /// one service sit together in memory.
    pub names: Vec<u8>,
    pub cold: Vec<Cold>,
    /// Indexes of instances whose combined health (worst of service and node) is
    /// passing...
    pub passing: Vec<u32>,
    /// ...and passing or warning.
    pub usable: Vec<u32>,
}

impl ServiceEntry {
    /// The stored labels of instance `i`'s SRV target.
    pub fn srv_labels(&self, i: usize) -> &[u8] {
        let s = &self.srv[i];
        let at = s.name_at as usize;
        &self.names[at..at + usize::from(s.name_len)]
    }

    pub fn targets(&self, family: Family) -> &[Target] {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
            Family::Any => &self.any,
        }
    }

    fn len(&self) -> usize {
        self.cold.len()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct NodeEntry {
    pub v4: Target,
    pub v6: Target,
    pub any: Target,
    pub meta: Box<[TXT]>,
}

impl NodeEntry {
    pub fn target(&self, family: Family) -> &Target {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
            Family::Any => &self.any,
        }
    }
}

/// `ns.DOMAIN` and `hostmaster.DOMAIN`, the SOA's names.
#[derive(Debug, Clone)]
pub(crate) struct SoaNames {
    pub domain: Name,
    pub mname: Name,
    pub rname: Name,
}

impl SoaNames {
    fn new(domain: Name) -> Self {
        let prefixed = |label: &[u8]| {
            Name::from_labels([label])
                .and_then(|n| n.append_domain(&domain))
                .unwrap_or_else(|_| domain.clone())
        };
        SoaNames {
            mname: prefixed(b"ns"),
            rname: prefixed(b"hostmaster"),
            domain,
        }
    }
}

/// Everything the DNS responder answers from. Not `Send`: one per DNS core.
#[derive(Debug, Clone)]
pub struct DnsView {
    datacenter: String,
    domain: SoaNames,
    alt_domain: Option<SoaNames>,
    services: HashMap<String, ServiceEntry>,
    nodes: HashMap<String, NodeEntry>,
    /// Address -> lower case node name -> node name.
    ptr_nodes: HashMap<IpAddr, BTreeMap<String, String>>,
    /// Service address -> lower case service name -> (service name, instances with it).
    ptr_services: HashMap<IpAddr, BTreeMap<String, (String, u32)>>,
    instances: usize,
}

impl DnsView {
    /// An empty view answering for `datacenter` under `domain` (e.g. `consul.`) and
    /// optionally `alt_domain`. Invalid domains fall back to Consul's `consul.`.
    pub fn new(datacenter: &str, domain: &str, alt_domain: Option<&str>) -> Self {
        let parse = |d: &str| Name::from_ascii(super::settings::fqdn_lower(d)).ok();
        let domain = parse(domain)
            .or_else(|| parse(crate::config::DEFAULT_DOMAIN))
            .unwrap_or_else(Name::root);
        DnsView {
            datacenter: datacenter.to_owned(),
            domain: SoaNames::new(domain),
            alt_domain: alt_domain.and_then(parse).map(SoaNames::new),
            services: HashMap::new(),
            nodes: HashMap::new(),
            ptr_nodes: HashMap::new(),
            ptr_services: HashMap::new(),
            instances: 0,
        }
    }

    /// Replaces every instance of service `name` (case-insensitive); an empty `instances`
    /// removes the service, so that its name answers NXDOMAIN again.
    pub fn set_service(&mut self, name: &str, instances: Vec<Instance>) {
        let key = name.to_ascii_lowercase();
        if let Some(old) = self.services.remove(&key) {
            self.instances -= old.len();
            for c in &old.cold {
                if let Some(ip) = c.ptr_ip {
                    unindex_service(&mut self.ptr_services, ip, &key);
                }
            }
        }
        if instances.is_empty() {
            return;
        }
        let n = instances.len();
        let mut entry = ServiceEntry {
            v4: Vec::with_capacity(n),
            v6: Vec::with_capacity(n),
            any: Vec::with_capacity(n),
            srv: Vec::with_capacity(n),
            names: Vec::with_capacity(n * 24),
            cold: Vec::with_capacity(n),
            passing: Vec::new(),
            usable: Vec::new(),
        };
        for (i, inst) in instances.iter().enumerate() {
            if let Ok(ip) = inst.address.parse::<IpAddr>() {
                let slot = self
                    .ptr_services
                    .entry(ip)
                    .or_default()
                    .entry(key.clone())
                    .or_insert_with(|| (name.to_owned(), 0));
                slot.1 += 1;
            }
            let health = inst.health.max(inst.node_health);
            let idx = i as u32;
            match health {
                Health::Passing => {
                    entry.passing.push(idx);
                    entry.usable.push(idx);
                }
                Health::Warning => entry.usable.push(idx),
                Health::Critical | Health::Maintenance => {}
            }
            self.prepare(inst, health, &mut entry);
        }
        self.instances += entry.len();
        self.services.insert(key, entry);
    }

    /// Adds or replaces node `node.name` (case-insensitive).
    pub fn set_node(&mut self, node: NodeRecord) {
        self.remove_node(&node.name);
        let key = node.name.to_ascii_lowercase();
        if let Ok(ip) = node.address.parse::<IpAddr>() {
            self.ptr_nodes
                .entry(ip)
                .or_default()
                .insert(key.clone(), node.name.clone());
        }
        let tags = &node.tagged_addresses;
        let entry = NodeEntry {
            v4: node_target(&node.address, tags, Family::V4),
            v6: node_target(&node.address, tags, Family::V6),
            any: node_target(&node.address, tags, Family::Any),
            meta: meta_txt(&node.meta),
        };
        self.nodes.insert(key, entry);
    }

    /// Forgets node `name` (case-insensitive). Its service instances stay until their
    /// services are set again.
    pub fn remove_node(&mut self, name: &str) {
        let key = name.to_ascii_lowercase();
        if let Some(old) = self.nodes.remove(&key) {
            for t in [&old.v4, &old.v6, &old.any] {
                if let Target::Ip { ip, .. } = t {
                    if let Some(names) = self.ptr_nodes.get_mut(ip) {
                        names.remove(&key);
                        if names.is_empty() {
                            self.ptr_nodes.remove(ip);
                        }
                    }
                }
            }
        }
    }

    pub fn datacenter(&self) -> &str {
        &self.datacenter
    }

    /// The primary domain, fully qualified and lower case.
    pub fn domain(&self) -> &Name {
        &self.domain.domain
    }

    pub fn alt_domain(&self) -> Option<&Name> {
        self.alt_domain.as_ref().map(|d| &d.domain)
    }

    /// The domain a question used (the primary one unless `alt` and one is set), with
    /// its SOA names.
    pub(crate) fn soa_names(&self, alt: bool) -> &SoaNames {
        match &self.alt_domain {
            Some(d) if alt => d,
            _ => &self.domain,
        }
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    pub fn instance_count(&self) -> usize {
        self.instances
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn service(&self, key: &str) -> Option<&ServiceEntry> {
        self.services.get(key)
    }

    pub(crate) fn node(&self, key: &str) -> Option<&NodeEntry> {
        self.nodes.get(key)
    }

    /// Name of a node registered with address `ip`, the first in name order.
    pub(crate) fn node_by_addr(&self, ip: &IpAddr) -> Option<&str> {
        self.ptr_nodes
            .get(ip)
            .and_then(|m| m.values().next())
            .map(String::as_str)
    }

    /// Name of a service with an instance registered at service address `ip`.
    pub(crate) fn service_by_addr(&self, ip: &IpAddr) -> Option<&str> {
        self.ptr_services
            .get(ip)
            .and_then(|m| m.values().next())
            .map(|(n, _)| n.as_str())
    }

    fn prepare(&self, inst: &Instance, health: Health, entry: &mut ServiceEntry) {
        let weight = match health {
            Health::Passing => inst.weights_passing,
            Health::Warning => inst.weights_warning,
            Health::Critical | Health::Maintenance => 0,
        };
        let any = instance_target(inst, Family::Any);
        let name_at = entry.names.len();
        let name_kind = srv_target_labels(&inst.node, &any, &self.datacenter, &mut entry.names);
        // Longest domain either way, so the whole name always stays under 255 bytes.
        let longest_domain = self
            .alt_domain
            .as_ref()
            .map_or(0, |d| d.domain.len())
            .max(self.domain().len());
        let name_kind = if entry.names.len() - name_at + longest_domain + 1 > 255 {
            NameKind::None
        } else {
            name_kind
        };
        if name_kind == NameKind::None {
            entry.names.truncate(name_at);
        }
        let node_lower = inst.node.to_ascii_lowercase();
        let dedup_key = format!("{node_lower}:{}", inst.address);
        let target_key = match &any {
            Target::Ip {
                node_target: true, ..
            } => hash(&node_lower),
            Target::Ip { ip, .. } => hash(ip),
            Target::Host(h) => hash(&h.host.to_lowercase().to_ascii()),
            Target::None => 0,
        };
        entry.v4.push(instance_target(inst, Family::V4));
        entry.v6.push(instance_target(inst, Family::V6));
        entry.any.push(any);
        entry.srv.push(SrvInfo {
            port: inst.port,
            weight: u16::try_from(weight).unwrap_or(u16::MAX),
            dedup: hash(&dedup_key),
            target_key,
            name_at: name_at as u32,
            name_len: (entry.names.len() - name_at) as u16,
            name_kind,
            has_meta: !inst.node_meta.is_empty(),
        });
        entry.cold.push(Cold {
            node: inst.node.as_str().into(),
            dedup_key: dedup_key.into(),
            tags: inst
                .tags
                .iter()
                .map(|t| t.to_ascii_lowercase().into_boxed_str())
                .collect(),
            meta: meta_txt(&inst.node_meta),
            ptr_ip: inst.address.parse().ok(),
            node_ip: translate(&inst.node_address, &inst.node_tagged_addresses, Family::Any)
                .parse()
                .ok(),
        });
    }
}

fn hash(v: &impl std::hash::Hash) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    v.hash(&mut h);
    std::hash::Hasher::finish(&h)
}

fn unindex_service(
    idx: &mut HashMap<IpAddr, BTreeMap<String, (String, u32)>>,
    ip: IpAddr,
    key: &str,
) {
    if let Some(names) = idx.get_mut(&ip) {
        if let Some(slot) = names.get_mut(key) {
            slot.1 -= 1;
            if slot.1 == 0 {
                names.remove(key);
            }
        }
        if names.is_empty() {
            idx.remove(&ip);
        }
    }
}

/// Consul's address translation for one family: a tagged `lan_ipv6`/`lan_ipv4` address
/// when the family takes it, else the default address if its type fits. Empty = nothing.
fn translate<'a>(def: &'a str, tags: &'a BTreeMap<String, String>, family: Family) -> &'a str {
    let tagged = |k: &str| tags.get(k).map(String::as_str).filter(|s| !s.is_empty());
    if matches!(family, Family::V6 | Family::Any) {
        if let Some(v6) = tagged("lan_ipv6") {
            return v6;
        }
    }
    if matches!(family, Family::V4 | Family::Any) {
        if let Some(v4) = tagged("lan_ipv4") {
            return v4;
        }
    }
    if def.is_empty() || family == Family::Any {
        return def;
    }
    match def.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) if family == Family::V4 => def,
        Ok(IpAddr::V6(_)) if family == Family::V6 => def,
        Ok(_) => "",
        Err(_) => def,
    }
}

fn host_name(s: &str) -> Option<Name> {
    let labels: Vec<&[u8]> = s
        .trim_end_matches('.')
        .split('.')
        .map(str::as_bytes)
        .collect();
    Name::from_labels(labels).ok()
}

fn host_target(s: &str, node_ip: Option<IpAddr>) -> Target {
    host_name(s).map_or(Target::None, |host| {
        Target::Host(Box::new(HostTarget { host, node_ip }))
    })
}

/// Which address an instance answers with (Consul's `nodeServiceRecords` rules).
fn instance_target(inst: &Instance, family: Family) -> Target {
    let svc = translate(&inst.address, &inst.tagged_addresses, family);
    let node = translate(&inst.node_address, &inst.node_tagged_addresses, family);
    if svc.is_empty() && node.is_empty() {
        return Target::None;
    }
    let node_ip = node.parse::<IpAddr>().ok();
    let raw_node_ip = inst.node_address.parse::<IpAddr>().ok();
    if svc.is_empty() {
        return match node_ip {
            Some(ip) => Target::Ip {
                ip,
                // A translated (tagged) node address is not the node's name's address.
                node_target: node == inst.node_address,
            },
            None => host_target(node, None),
        };
    }
    match svc.parse::<IpAddr>() {
        Ok(ip) => Target::Ip {
            ip,
            node_target: Some(ip) == raw_node_ip,
        },
        Err(_) => host_target(svc, node_ip),
    }
}

fn node_target(address: &str, tags: &BTreeMap<String, String>, family: Family) -> Target {
    let addr = translate(address, tags, family);
    if addr.is_empty() {
        return Target::None;
    }
    match addr.parse::<IpAddr>() {
        Ok(ip) => Target::Ip {
            ip,
            node_target: true,
        },
        Err(_) => host_target(addr, None),
    }
}

/// `NODE.node.DC.DOMAIN`.
pub(crate) fn node_fqdn(node: &str, dc: &str, domain: &Name) -> Option<Name> {
    let mut labels: Vec<&[u8]> = node.split('.').map(str::as_bytes).collect();
    labels.push(b"node");
    labels.push(dc.as_bytes());
    Name::from_labels(labels).ok()?.append_domain(domain).ok()
}

/// `SERVICE.service.DC.DOMAIN`.
pub(crate) fn service_fqdn(service: &str, dc: &str, domain: &Name) -> Option<Name> {
    Name::from_labels([service.as_bytes(), b"service", dc.as_bytes()])
        .ok()?
        .append_domain(domain)
        .ok()
}

/// `HEX.addr.DC.DOMAIN`: 8 hex digits for IPv4, 32 for IPv6.
#[cfg(test)]
fn addr_fqdn(ip: &IpAddr, dc: &str, domain: &Name) -> Option<Name> {
    let hex = match ip {
        IpAddr::V4(v4) => hex_encode(&v4.octets()),
        IpAddr::V6(v6) => hex_encode(&v6.octets()),
    };
    Name::from_labels([hex.as_bytes(), b"addr", dc.as_bytes()])
        .ok()?
        .append_domain(domain)
        .ok()
}

fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Appends to `out` the wire labels of the SRV target for an instance's
/// [`Family::Any`] address: `NODE.node.DC` or `HEX.addr.DC` (the domain follows), or
/// a hostname.
fn srv_target_labels(node: &str, any: &Target, dc: &str, out: &mut Vec<u8>) -> NameKind {
    fn push(out: &mut Vec<u8>, label: &[u8]) -> bool {
        if label.is_empty() || label.len() > 63 {
            return false;
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label);
        true
    }
    let ok = match any {
        Target::None => false,
        Target::Ip {
            node_target: true, ..
        } => {
            node.split('.').all(|l| push(out, l.as_bytes()))
                && push(out, b"node")
                && push(out, dc.as_bytes())
        }
        Target::Ip { ip, .. } => {
            let hex = match ip {
                IpAddr::V4(v4) => hex_encode(&v4.octets()),
                IpAddr::V6(v6) => hex_encode(&v6.octets()),
            };
            push(out, hex.as_bytes()) && push(out, b"addr") && push(out, dc.as_bytes())
        }
        Target::Host(h) => {
            for l in h.host.iter() {
                push(out, l);
            }
            return NameKind::Absolute;
        }
    };
    if ok {
        NameKind::InDomain
    } else {
        NameKind::None
    }
}

/// Node meta as TXT data: `key=value` with RFC 1464 escaping, or the bare value for keys
/// starting `rfc1035-`. Character strings hold at most 255 bytes, so longer texts are
/// split over several strings of one record.
fn meta_txt(meta: &BTreeMap<String, String>) -> Box<[TXT]> {
    meta.iter()
        .map(|(k, v)| {
            let text = if k.len() >= 8 && k.as_bytes()[..8].eq_ignore_ascii_case(b"rfc1035-") {
                v.clone()
            } else {
                rfc1464(k, v)
            };
            let chunks: Vec<&[u8]> = if text.is_empty() {
                vec![&[][..]]
            } else {
                text.as_bytes().chunks(255).collect()
            };
            TXT::from_bytes(chunks)
        })
        .collect()
}

/// RFC 1464 attribute encoding: in the key, backquote backquotes, `=` and leading and
/// trailing spaces; in the value, backquotes only.
fn rfc1464(key: &str, value: &str) -> String {
    let lead = key.len() - key.trim_start_matches(' ').len();
    let trail = if lead == key.len() {
        0
    } else {
        key.len() - key.trim_end_matches(' ').len()
    };
    let mut out = String::with_capacity(key.len() + value.len() + 8);
    for _ in 0..lead {
        out.push_str("` ");
    }
    for c in key[lead..key.len() - trail].chars() {
        match c {
            '`' => out.push_str("``"),
            '=' => out.push_str("`="),
            c => out.push(c),
        }
    }
    for _ in 0..trail {
        out.push_str("` ");
    }
    out.push('=');
    out.push_str(&value.replace('`', "``"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1464_escaping() {
        assert_eq!(rfc1464("a", "b"), "a=b");
        assert_eq!(rfc1464("a=b", "c`d"), "a`=b=c``d");
        assert_eq!(rfc1464("  k ", "v"), "` ` k` =v");
        assert_eq!(rfc1464("   ", "v"), "` ` ` =v");
    }

    #[test]
    fn translate_prefers_tagged_addresses() {
        let mut tags = BTreeMap::new();
        tags.insert("lan_ipv6".to_owned(), "::1".to_owned());
        assert_eq!(translate("10.0.0.1", &tags, Family::V4), "10.0.0.1");
        assert_eq!(translate("10.0.0.1", &tags, Family::V6), "::1");
        assert_eq!(translate("10.0.0.1", &tags, Family::Any), "::1");
        let none = BTreeMap::new();
        assert_eq!(translate("10.0.0.1", &none, Family::V6), "");
        assert_eq!(
            translate("db.example.com", &none, Family::V6),
            "db.example.com"
        );
    }

    #[test]
    fn hex_addr_names() {
        let d = Name::from_ascii("consul.").unwrap();
        let n = addr_fqdn(&"192.0.2.10".parse().unwrap(), "dc1", &d).unwrap();
        assert_eq!(n.to_ascii(), "c000020a.addr.dc1.consul.");
        let n = addr_fqdn(&"2001:db8::1".parse().unwrap(), "dc1", &d).unwrap();
        assert_eq!(
            n.to_ascii(),
            "20010db8000000000000000000000001.addr.dc1.consul."
        );
    }

    #[test]
    fn service_updates_keep_ptr_index_exact() {
        let mut v = DnsView::new("dc1", "consul.", None);
        let inst = |addr: &str| Instance {
            node: "n1".into(),
            node_address: "10.0.0.1".into(),
            address: addr.into(),
            ..Instance::default()
        };
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        v.set_service("Web", vec![inst("10.0.0.9"), inst("10.0.0.9")]);
        assert_eq!(v.service_by_addr(&ip), Some("Web"));
        v.set_service("web", vec![inst("10.0.0.8")]);
        assert_eq!(v.service_by_addr(&ip), None);
        assert_eq!(v.instance_count(), 1);
        v.set_service("WEB", vec![]);
        assert_eq!(v.service_count(), 0);
        assert!(v.ptr_services.is_empty());
    }

    #[test]
    fn hot_arrays_stay_small() {
        // Every query reads these per instance; keep them within a few words.
        assert!(std::mem::size_of::<Target>() <= 24);
        assert!(std::mem::size_of::<SrvInfo>() <= 32);
    }
}
