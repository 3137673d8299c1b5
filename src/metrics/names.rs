//! Metric names: Consul's dotted names for what Consul also measures, and
//! `muster.*` for our own. Kinds follow Consul's telemetry reference
//! (timers are samples in milliseconds).

use super::registry::MetricDef;
use super::snapshot::MetricKind;

/// Counter: raft entries applied by the leader.
pub const RAFT_APPLY: &str = "consul.raft.apply";
/// Sample (ms): time to commit a new entry on the leader.
pub const RAFT_COMMIT_TIME: &str = "consul.raft.commitTime";
/// Sample (ms): time for the leader to write entries to its log.
pub const RAFT_LEADER_DISPATCH_LOG: &str = "consul.raft.leader.dispatchLog";
/// Sample (ms): time since the leader last heard from a follower.
pub const RAFT_LEADER_LAST_CONTACT: &str = "consul.raft.leader.lastContact";
/// Counter: times this server became leader.
pub const RAFT_STATE_LEADER: &str = "consul.raft.state.leader";
/// Counter: elections started by this server.
pub const RAFT_STATE_CANDIDATE: &str = "consul.raft.state.candidate";
/// Gauge: 1 while this server is the leader, else 0.
/// Muster's 0/1 leadership gauge under the name the issue tracker and dashboards ask for.
pub const RAFT_LEADER: &str = "consul.raft.leader";
pub const SERVER_IS_LEADER: &str = "consul.server.isLeader";
/// Sample (ms): time to apply a KV update.
pub const KVS_APPLY: &str = "consul.kvs.apply";
/// Sample (ms): time to apply a transaction.
pub const TXN_APPLY: &str = "consul.txn.apply";
/// Counter, label `service`: catalog queries for a service.
pub const CATALOG_SERVICE_QUERY: &str = "consul.catalog.service.query";
/// Counter, labels `service`, `tag`: catalog queries for a service by tag.
pub const CATALOG_SERVICE_QUERY_TAG: &str = "consul.catalog.service.query-tag";
/// Counter, label `service`: catalog queries for an unknown service.
pub const CATALOG_SERVICE_NOT_FOUND: &str = "consul.catalog.service.not-found";
/// Counter, label `service`: health queries for a service.
pub const HEALTH_SERVICE_QUERY: &str = "consul.health.service.query";
/// Sample (ms): catalog registration.
pub const CATALOG_REGISTER: &str = "consul.catalog.register";
/// Sample (ms): catalog deregistration.
pub const CATALOG_DEREGISTER: &str = "consul.catalog.deregister";
/// Sample (ms), labels `method`, `path`: HTTP API request time.
pub const API_HTTP: &str = "consul.api.http";
/// Sample (ms), label `node`: DNS domain query time.
pub const DNS_DOMAIN_QUERY: &str = "consul.dns.domain_query";
/// Sample (ms), label `node`: reverse (PTR) DNS query time.
pub const DNS_PTR_QUERY: &str = "consul.dns.ptr_query";

/// Gauge, labels `from`, `to`: messages waiting in a cross-core mesh queue.
pub const MESH_QUEUE_DEPTH: &str = "muster.mesh.queue_depth";
/// Counter, labels `from`, `to`: sends refused because a mesh queue was full.
pub const MESH_QUEUE_FULL: &str = "muster.mesh.queue_full";
/// Sample (ms), label `route`: HTTP request time per route.
pub const HTTP_REQUEST: &str = "muster.http.request";
/// Sample (ms), label `proto` (`udp`/`tcp`): DNS request time, forwarding included.
pub const DNS_REQUEST: &str = "muster.dns.request";
/// Counter, label `proto`: DNS messages dropped or answered FORMERR/NOTIMP.
pub const DNS_MALFORMED: &str = "muster.dns.malformed";
/// Counter: forwarded DNS queries that every recursor failed (answered SERVFAIL).
pub const DNS_RECURSION_FAILED: &str = "muster.dns.recursion_failed";
/// Counter: DNS queries answered SERVFAIL because too many were being forwarded.
pub const DNS_RECURSION_REJECTED: &str = "muster.dns.recursion_rejected";
/// Counter: DNS TCP connections closed at once because too many were open.
pub const DNS_TCP_REJECTED: &str = "muster.dns.tcp_rejected";

const fn def(name: &'static str, kind: MetricKind, help: &'static str) -> MetricDef {
    MetricDef { name, kind, help }
}

/// Families Consul exposes from start, for [`register_defaults`](super::register_defaults).
pub const CONSUL_DEFAULTS: &[MetricDef] = &[
    def(
        RAFT_APPLY,
        MetricKind::Counter,
        "Raft entries applied by the leader.",
    ),
    def(
        RAFT_COMMIT_TIME,
        MetricKind::Sample,
        "Time to commit a new raft entry on the leader, in ms.",
    ),
    def(
        RAFT_LEADER_DISPATCH_LOG,
        MetricKind::Sample,
        "Time for the leader to write entries to its log, in ms.",
    ),
    def(
        RAFT_LEADER_LAST_CONTACT,
        MetricKind::Sample,
        "Time since the leader last contacted a follower, in ms.",
    ),
    def(
        RAFT_STATE_LEADER,
        MetricKind::Counter,
        "Times this server became raft leader.",
    ),
    def(
        RAFT_STATE_CANDIDATE,
        MetricKind::Counter,
        "Raft elections started by this server.",
    ),
    def(
        RAFT_LEADER,
        MetricKind::Gauge,
        "1 while this server is the raft leader, else 0.",
    ),
    def(
        SERVER_IS_LEADER,
        MetricKind::Gauge,
        "1 while this server is the raft leader, else 0.",
    ),
    def(
        KVS_APPLY,
        MetricKind::Sample,
        "Time to apply a KV store update, in ms.",
    ),
    def(
        TXN_APPLY,
        MetricKind::Sample,
        "Time to apply a transaction, in ms.",
    ),
    def(
        CATALOG_SERVICE_QUERY,
        MetricKind::Counter,
        "Catalog queries for a service.",
    ),
    def(
        CATALOG_REGISTER,
        MetricKind::Sample,
        "Time to apply a catalog registration, in ms.",
    ),
    def(
        CATALOG_DEREGISTER,
        MetricKind::Sample,
        "Time to apply a catalog deregistration, in ms.",
    ),
    def(
        DNS_DOMAIN_QUERY,
        MetricKind::Sample,
        "Time spent handling a domain query, in ms.",
    ),
    def(
        DNS_PTR_QUERY,
        MetricKind::Sample,
        "Time spent handling a reverse DNS query, in ms.",
    ),
];

/// Muster's own families, for [`register_defaults`](super::register_defaults).
pub const MUSTER_DEFAULTS: &[MetricDef] = &[
    def(
        HTTP_REQUEST,
        MetricKind::Sample,
        "HTTP request time per route, in ms.",
    ),
    def(
        MESH_QUEUE_FULL,
        MetricKind::Counter,
        "Cross-core sends refused because the queue was full.",
    ),
    def(
        DNS_REQUEST,
        MetricKind::Sample,
        "DNS request time, forwarding included, in ms.",
    ),
];
