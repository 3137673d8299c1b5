//! What the responder needs from the agent's configuration, with Consul's defaults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{DnsConfig, RecursorStrategy, Soa};

pub use crate::config::{
    DEFAULT_DATACENTER, DEFAULT_DNS_UDP_ANSWER_LIMIT, DEFAULT_DOMAIN, DEFAULT_RECURSOR_TIMEOUT,
    DEFAULT_SOA_EXPIRE, DEFAULT_SOA_MIN_TTL, DEFAULT_SOA_REFRESH, DEFAULT_SOA_RETRY,
};

/// Consul serves node lookups with a TTL of 0 unless `dns_config.node_ttl` says otherwise.
pub const DEFAULT_NODE_TTL: Duration = Duration::ZERO;
/// Services without a `dns_config.service_ttl` entry (exact, `prefix*` or `*`) get TTL 0.
pub const DEFAULT_SERVICE_TTL: Duration = Duration::ZERO;
/// `a_record_limit`: 0 means every matching address is returned (subject to trimming).
pub const DEFAULT_A_RECORD_LIMIT: u32 = 0;
/// Consul's cap on `udp_answer_limit` for plain (non-EDNS) 512-byte UDP answers.
pub const MAX_UDP_ANSWER_LIMIT: u32 = 8;
/// Forwarded queries in flight per DNS core; beyond this a query gets SERVFAIL at once
/// rather than queueing behind slow recursors.
pub const DEFAULT_MAX_INFLIGHT_RECURSIONS: usize = 512;
/// Open DNS-over-TCP connections per DNS core; further connections are closed at once.
pub const DEFAULT_MAX_TCP_CONNECTIONS: usize = 1024;
/// A TCP connection idle this long between queries is closed (miekg/dns, which Consul
/// uses, closes after 8 s).
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(8);

/// The responder's settings: `domain`, `alt_domain`, `recursors` and `dns_config{}` of the
/// agent, plus the datacenter and node name. Build with [`DnsSettings::from_config`] or
/// `DnsSettings { only_passing: true, ..DnsSettings::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// Fully qualified, lower case: `consul.`.
    pub domain: String,
    /// Fully qualified, lower case, when set.
    pub alt_domain: Option<String>,
    /// This agent's datacenter: `NAME.service.DC.consul` with another DC is NXDOMAIN.
    pub datacenter: String,
    /// Label value of `consul.dns.*` timings, as Consul.
    pub node_name: String,
    pub node_ttl: Duration,
    /// Service name, `prefix*` or `*` to TTL; exact names win over the longest prefix.
    pub service_ttl: BTreeMap<String, Duration>,
    /// Warning instances are left out too, not only critical ones.
    pub only_passing: bool,
    /// Set TC when a UDP answer had to be cut (by count or by size).
    pub enable_truncate: bool,
    /// Records in a plain 512-byte UDP answer (capped at [`MAX_UDP_ANSWER_LIMIT`]).
    pub udp_answer_limit: u32,
    /// Address records in A/AAAA/ANY service answers over any transport; 0 = no limit.
    pub a_record_limit: u32,
    /// Answers always come from the local view; kept for `/v1/agent/self`.
    pub allow_stale: bool,
    pub max_stale: Duration,
    pub recursors: Vec<SocketAddr>,
    pub recursor_strategy: RecursorStrategy,
    /// Time allowed to each recursor before the next one is tried.
    pub recursor_timeout: Duration,
    pub soa: Soa,
    /// Node meta as TXT in the additional section of node and SRV answers.
    pub enable_additional_node_meta_txt: bool,
    pub disable_compression: bool,
    pub max_inflight_recursions: usize,
    pub max_tcp_connections: usize,
    pub tcp_idle_timeout: Duration,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            domain: DEFAULT_DOMAIN.to_owned(),
            alt_domain: None,
            datacenter: DEFAULT_DATACENTER.to_owned(),
            node_name: String::new(),
            node_ttl: DEFAULT_NODE_TTL,
            service_ttl: BTreeMap::new(),
            only_passing: false,
            enable_truncate: false,
            udp_answer_limit: DEFAULT_DNS_UDP_ANSWER_LIMIT,
            a_record_limit: DEFAULT_A_RECORD_LIMIT,
            allow_stale: true,
            max_stale: crate::config::DEFAULT_DNS_MAX_STALE,
            recursors: Vec::new(),
            recursor_strategy: RecursorStrategy::Sequential,
            recursor_timeout: DEFAULT_RECURSOR_TIMEOUT,
            soa: Soa::default(),
            enable_additional_node_meta_txt: true,
            disable_compression: false,
            max_inflight_recursions: DEFAULT_MAX_INFLIGHT_RECURSIONS,
            max_tcp_connections: DEFAULT_MAX_TCP_CONNECTIONS,
            tcp_idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT,
        }
    }
}

impl DnsSettings {
    /// The settings of an agent with configuration `dns` in `datacenter`, named `node_name`.
    pub fn from_config(dns: &DnsConfig, datacenter: &str, node_name: &str) -> Self {
        DnsSettings {
            domain: fqdn_lower(&dns.domain),
            alt_domain: dns.alt_domain.as_deref().map(fqdn_lower),
            datacenter: datacenter.to_owned(),
            node_name: node_name.to_owned(),
            node_ttl: dns.node_ttl,
            service_ttl: dns.service_ttl.clone(),
            only_passing: dns.only_passing,
            enable_truncate: dns.enable_truncate,
            udp_answer_limit: dns.udp_answer_limit,
            a_record_limit: dns.a_record_limit,
            allow_stale: dns.allow_stale,
            max_stale: dns.max_stale,
            recursors: dns.recursors.clone(),
            recursor_strategy: dns.recursor_strategy,
            recursor_timeout: dns.recursor_timeout,
            soa: dns.soa,
            enable_additional_node_meta_txt: dns.enable_additional_node_meta_txt,
            disable_compression: dns.disable_compression,
            ..DnsSettings::default()
        }
    }

    /// TTL in seconds for answers about `service` (already lower case): an exact
    /// `service_ttl` key, else the longest matching `prefix*` key (`*` matches all), else 0.
    pub fn service_ttl_secs(&self, service: &str) -> u32 {
        if self.service_ttl.is_empty() {
            return secs(DEFAULT_SERVICE_TTL);
        }
        if let Some(d) = self.service_ttl.get(service) {
            return secs(*d);
        }
        let mut best: Option<(usize, Duration)> = None;
        for (key, d) in &self.service_ttl {
            if let Some(prefix) = key.strip_suffix('*') {
                let hit = service.len() >= prefix.len()
                    && service.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes());
                if hit && best.is_none_or(|(len, _)| prefix.len() > len) {
                    best = Some((prefix.len(), *d));
                }
            } else if key.eq_ignore_ascii_case(service) {
                return secs(*d);
            }
        }
        secs(best.map_or(DEFAULT_SERVICE_TTL, |(_, d)| d))
    }

    pub fn node_ttl_secs(&self) -> u32 {
        secs(self.node_ttl)
    }

    /// Recursion is offered (RA) only when there is somewhere to forward to.
    pub fn recursion_available(&self) -> bool {
        !self.recursors.is_empty()
    }
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// `Consul.` / `consul` -> `consul.`
pub(crate) fn fqdn_lower(d: &str) -> String {
    let mut s = d.trim().to_ascii_lowercase();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}
