//! The DNS interface (Consul's `NAME.service.consul`, `NODE.node.consul`, `HEX.addr.consul`,
//! SOA/NS, recursion) over the agent's real UDP and TCP sockets, with data registered through
//! the HTTP API. Addresses such as 10.0.1.20 are plain data: nothing ever connects to them.
//!
//! The DNS view follows the catalog asynchronously, so every check that follows a write polls
//! until the answer shows (eventual consistency within a generous deadline, no timings).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde_json::{json, Value};

use crate::common::{eventually, Agent};

per_core!(
    service_lookups,
    node_and_addr_lookups,
    ipv6_addresses,
    negative_answers,
    apex_soa_and_ns,
    consul_service,
    health_ttl_checks,
    node_check_hides_instances,
    udp_truncation_and_tcp,
    answers_are_shuffled,
    garbage_is_survived,
    no_recursor_refuses,
);

/// Two tests (one per core count) for the scenario that needs its own agent flags.
mod recursor_forwarding {
    #[test]
    fn cores_1() {
        super::recursor_forwarding(1)
    }
    #[test]
    fn cores_2() {
        super::recursor_forwarding(2)
    }
}

/// Upper bound for the catalog -> DNS view propagation (it should take milliseconds).
const SETTLE: Duration = Duration::from_secs(10);
/// Upper bound for one DNS exchange; loopback answers come back at once.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Client side of DNS

fn dns_addr(a: &Agent) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, a.ports.dns))
}

/// A query like most stub resolvers send: RD set, no EDNS.
fn query(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::new(fastrand::u16(..), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    let name = Name::from_ascii(name).unwrap_or_else(|e| panic!("bad name {name:?}: {e}"));
    m.add_query(Query::query(name, qtype));
    m
}

/// A query with an EDNS buffer of `size` bytes, as `dig` sends.
fn query_edns(name: &str, qtype: RecordType, size: u16) -> Message {
    let mut m = query(name, qtype);
    let mut e = Edns::new();
    e.set_max_payload(size);
    m.set_edns(e);
    m
}

fn encode(m: &Message) -> Vec<u8> {
    m.to_vec().expect("encode query")
}

/// What came back, with the question, for assertion messages.
struct Reply {
    what: String,
    msg: Message,
    wire_len: usize,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "\n  query: {}\n  reply ({} bytes): {:?} {:?} aa={} tc={} ra={}\n  answers: {:#?}\n  authority: {:#?}\n  additional: {:#?}",
            self.what,
            self.wire_len,
            self.msg.metadata.response_code,
            self.msg.metadata.message_type,
            self.msg.metadata.authoritative,
            self.msg.metadata.truncation,
            self.msg.metadata.recursion_available,
            self.msg.answers,
            self.msg.authorities,
            self.msg.additionals,
        )
    }
}

impl std::ops::Deref for Reply {
    type Target = Message;
    fn deref(&self) -> &Message {
        &self.msg
    }
}

impl Reply {
    fn rcode(&self) -> ResponseCode {
        self.msg.metadata.response_code
    }

    #[track_caller]
    fn rcode_is(&self, want: ResponseCode) -> &Self {
        assert_eq!(self.rcode(), want, "unexpected rcode: {self:?}");
        self
    }

    /// NOERROR and authoritative, as every answer from our own domain.
    #[track_caller]
    fn ok(&self) -> &Self {
        self.rcode_is(ResponseCode::NoError);
        assert!(self.msg.metadata.authoritative, "AA is set: {self:?}");
        self
    }

    /// A/AAAA addresses in the answer section.
    fn ips(&self) -> BTreeSet<IpAddr> {
        ips_of(&self.msg.answers)
    }

    fn answer_types(&self) -> Vec<RecordType> {
        self.msg.answers.iter().map(|r| r.record_type()).collect()
    }

    fn srvs(&self) -> Vec<&SRV> {
        self.msg
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::SRV(s) => s,
                other => panic!("answer is not SRV ({other:?}): {self:?}"),
            })
            .collect()
    }

    /// TXT strings in the answer section, each record's strings joined.
    fn txts(&self) -> BTreeSet<String> {
        self.msg
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(t) => Some(String::from_utf8_lossy(&t.txt_data.concat()).into_owned()),
                _ => None,
            })
            .collect()
    }

    /// Name -> addresses of the A/AAAA records in the additional section.
    fn extra_addrs(&self) -> BTreeMap<String, BTreeSet<IpAddr>> {
        let mut out: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
        for r in &self.msg.additionals {
            if let Some(ip) = ip_of(r) {
                out.entry(lower(&r.name)).or_default().insert(ip);
            }
        }
        out
    }

    /// The single SOA of the authority section (negative answers, RFC 2308).
    #[track_caller]
    fn authority_soa(&self) -> &SOA {
        let soas: Vec<&SOA> = self
            .msg
            .authorities
            .iter()
            .filter_map(|r| match &r.data {
                RData::SOA(s) => Some(s),
                _ => None,
            })
            .collect();
        assert_eq!(soas.len(), 1, "one SOA in the authority section: {self:?}");
        assert_eq!(
            lower(&self.msg.authorities[0].name),
            "consul.",
            "the SOA is the zone's: {self:?}"
        );
        soas[0]
    }
}

fn ip_of(r: &Record) -> Option<IpAddr> {
    match &r.data {
        RData::A(A(ip)) => Some(IpAddr::V4(*ip)),
        RData::AAAA(AAAA(ip)) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

fn ips_of(records: &[Record]) -> BTreeSet<IpAddr> {
    records.iter().filter_map(ip_of).collect()
}

fn lower(n: &Name) -> String {
    n.to_ascii().to_ascii_lowercase()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("bad ip {s:?}: {e}"))
}

fn ipset(addrs: &[&str]) -> BTreeSet<IpAddr> {
    addrs.iter().map(|s| ip(s)).collect()
}

/// Sends `bytes` in one datagram and returns the first reply carrying `id` (None: timeout).
fn udp_raw(a: &Agent, bytes: &[u8], id: Option<u16>, wait: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind udp client");
    sock.connect(dns_addr(a)).expect("connect udp");
    sock.send(bytes).expect("send udp");
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 65535];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        sock.set_read_timeout(Some(left)).expect("timeout");
        match sock.recv(&mut buf) {
            Ok(n) => {
                let matches = id.is_none_or(|id| n >= 2 && buf[..2] == id.to_be_bytes());
                if matches {
                    return Some(buf[..n].to_vec());
                }
            }
            Err(e) if is_timeout(&e) => return None,
            Err(e) => panic!("udp recv from {}: {e}", dns_addr(a)),
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn decode(what: String, bytes: &[u8], sent: &Message) -> Reply {
    let msg = Message::from_vec(bytes)
        .unwrap_or_else(|e| panic!("{what}: undecodable reply ({e}): {bytes:02x?}"));
    assert_eq!(msg.metadata.id, sent.metadata.id, "{what}: reply ID");
    assert_eq!(
        msg.metadata.message_type,
        MessageType::Response,
        "{what}: QR set"
    );
    assert_eq!(
        msg.queries, sent.queries,
        "{what}: the question is echoed back"
    );
    Reply {
        what,
        wire_len: bytes.len(),
        msg,
    }
}

fn describe(m: &Message, transport: &str) -> String {
    let q = &m.queries[0];
    let edns = m
        .edns
        .as_ref()
        .map_or(String::new(), |e| format!(" edns={}", e.max_payload()));
    format!("{} {} over {transport}{edns}", q.name(), q.query_type())
}

#[track_caller]
fn udp(a: &Agent, m: &Message) -> Reply {
    let what = describe(m, "udp");
    let bytes = udp_raw(a, &encode(m), Some(m.metadata.id), EXCHANGE_TIMEOUT)
        .unwrap_or_else(|| panic!("{what}: no reply within {EXCHANGE_TIMEOUT:?}"));
    decode(what, &bytes, m)
}

fn tcp_connect(a: &Agent) -> TcpStream {
    let s = TcpStream::connect(dns_addr(a)).expect("connect tcp");
    s.set_read_timeout(Some(EXCHANGE_TIMEOUT)).expect("timeout");
    s.set_write_timeout(Some(EXCHANGE_TIMEOUT))
        .expect("timeout");
    s
}

fn write_frame(s: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    let mut frame = u16::try_from(body.len())
        .expect("frame fits")
        .to_be_bytes()
        .to_vec();
    frame.extend_from_slice(body);
    s.write_all(&frame)
}

fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut body)?;
    Ok(body)
}

#[track_caller]
fn tcp_on(s: &mut TcpStream, m: &Message) -> Reply {
    let what = describe(m, "tcp");
    write_frame(s, &encode(m)).unwrap_or_else(|e| panic!("{what}: write: {e}"));
    let body = read_frame(s).unwrap_or_else(|e| panic!("{what}: read: {e}"));
    decode(what, &body, m)
}

#[track_caller]
fn tcp(a: &Agent, m: &Message) -> Reply {
    tcp_on(&mut tcp_connect(a), m)
}

/// Asks over UDP with a 4096-byte EDNS buffer, like `dig` (no 3-record cap).
#[track_caller]
fn ask(a: &Agent, name: &str, qtype: RecordType) -> Reply {
    udp(a, &query_edns(name, qtype, 4096))
}

/// Polls `name`/`qtype` until `done` holds for the reply, which it returns.
#[track_caller]
fn settle(a: &Agent, name: &str, qtype: RecordType, done: impl Fn(&Reply) -> bool) -> Reply {
    let mut last = None;
    let deadline = Instant::now() + SETTLE;
    loop {
        let r = ask(a, name, qtype);
        if done(&r) {
            return r;
        }
        if Instant::now() >= deadline {
            last.replace(r);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "DNS answer for {name} {qtype} did not settle within {SETTLE:?}; last: {:?}",
        last.expect("a reply")
    )
}

/// Waits until `name` answers exactly the addresses `want` (empty: NXDOMAIN).
#[track_caller]
fn settle_ips(a: &Agent, name: &str, qtype: RecordType, want: &BTreeSet<IpAddr>) -> Reply {
    settle(a, name, qtype, |r| {
        if want.is_empty() {
            r.rcode() == ResponseCode::NXDomain
        } else {
            r.rcode() == ResponseCode::NoError && r.ips() == *want
        }
    })
}

// ---------------------------------------------------------------------------------------
// Registration through the HTTP API

/// One external instance, registered on its own node through `/v1/catalog/register`.
struct Ext<'a> {
    node: &'a str,
    addr: &'a str,
    service: &'a str,
    port: u16,
    tags: &'a [&'a str],
}

#[track_caller]
fn catalog_register(a: &Agent, body: Value) {
    let r = a.put_json("/v1/catalog/register", &body);
    assert!(r.bool(), "catalog register returned false: {r:?}");
}

#[track_caller]
fn register_ext(a: &Agent, e: &Ext<'_>) {
    catalog_register(
        a,
        json!({
            "Node": e.node,
            "Address": e.addr,
            "Service": {
                "ID": format!("{}-{}", e.service, e.node),
                "Service": e.service,
                "Port": e.port,
                "Tags": e.tags,
            },
        }),
    );
}

/// A service on the agent's own node with a TTL check, driven by `/v1/agent/check/*`.
#[track_caller]
fn register_ttl_service(a: &Agent, id: &str, name: &str, addr: &str, port: u16) {
    let body = json!({
        "ID": id,
        "Name": name,
        "Address": addr,
        "Port": port,
        "Check": {"TTL": "10m"},
    });
    a.put_json("/v1/agent/service/register", &body).ok();
}

#[track_caller]
fn set_ttl(a: &Agent, service_id: &str, verb: &str) {
    a.put_empty(&format!("/v1/agent/check/{verb}/service:{service_id}"))
        .ok();
}

// ---------------------------------------------------------------------------------------
// Scenarios

/// Three `web` instances on three nodes: n1 tagged primary.
fn register_web(a: &Agent) {
    for (node, addr, port, tags) in [
        ("web-1", "10.0.1.20", 8080, &["primary", "v1"][..]),
        ("web-2", "10.0.1.21", 8081, &["v1"][..]),
        ("web-3", "10.0.1.22", 8082, &["v1", "canary"][..]),
    ] {
        register_ext(
            a,
            &Ext {
                node,
                addr,
                service: "web",
                port,
                tags,
            },
        );
    }
}

fn web_ips() -> BTreeSet<IpAddr> {
    ipset(&["10.0.1.20", "10.0.1.21", "10.0.1.22"])
}

fn service_lookups(a: &Agent) {
    register_web(a);
    let all = web_ips();
    let r = settle_ips(a, "web.service.consul.", RecordType::A, &all);
    r.ok();
    assert!(
        r.answers
            .iter()
            .all(|rec| lower(&rec.name) == "web.service.consul."
                && rec.record_type() == RecordType::A),
        "A records owned by the question name: {r:?}"
    );
    assert!(!r.metadata.recursion_available, "no recursors: {r:?}");
    assert!(r.metadata.recursion_desired, "RD copied: {r:?}");
    assert!(
        r.answers.iter().all(|rec| rec.ttl == 0),
        "service_ttl defaults to 0: {r:?}"
    );
    assert!(r.edns.is_some(), "an EDNS query gets an EDNS answer: {r:?}");
    let r = udp(a, &query("web.service.consul.", RecordType::A));
    assert!(r.ok().edns.is_none(), "no EDNS asked, none given: {r:?}");

    // With the datacenter, and over TCP.
    let r = ask(a, "web.service.dc1.consul.", RecordType::A);
    assert_eq!(r.ok().ips(), all, "{r:?}");
    let r = tcp(a, &query("web.service.consul.", RecordType::A));
    assert_eq!(r.ok().ips(), all, "{r:?}");

    // Tag filters.
    let r = ask(a, "primary.web.service.consul.", RecordType::A);
    assert_eq!(r.ok().ips(), ipset(&["10.0.1.20"]), "{r:?}");
    let r = ask(a, "v1.web.service.consul.", RecordType::A);
    assert_eq!(r.ok().ips(), all, "{r:?}");
    let r = ask(a, "canary.web.service.dc1.consul.", RecordType::A);
    assert_eq!(r.ok().ips(), ipset(&["10.0.1.22"]), "{r:?}");
    let r = ask(a, "nosuchtag.web.service.consul.", RecordType::A);
    r.rcode_is(ResponseCode::NXDomain);

    // RFC 2782: _service._tag, where _tcp means "no tag filter".
    let r = ask(a, "_web._primary.service.consul.", RecordType::SRV);
    r.ok();
    let srvs = r.srvs();
    assert_eq!(srvs.len(), 1, "{r:?}");
    assert_eq!(srvs[0].port, 8080, "{r:?}");
    assert_eq!(srvs[0].priority, 1, "{r:?}");
    assert_eq!(srvs[0].weight, 1, "{r:?}");
    assert_eq!(lower(&srvs[0].target), "web-1.node.dc1.consul.", "{r:?}");
    assert_eq!(
        r.extra_addrs().get("web-1.node.dc1.consul."),
        Some(&ipset(&["10.0.1.20"])),
        "the target's A record is in the additional section: {r:?}"
    );
    let r = ask(a, "_web._tcp.service.consul.", RecordType::SRV);
    assert_eq!(r.ok().srvs().len(), 3, "_tcp does not filter: {r:?}");

    // Plain SRV: every instance, target NODE.node.DC.consul with its address as glue.
    for name in ["web.service.consul.", "web.service.dc1.consul."] {
        let r = ask(a, name, RecordType::SRV);
        r.ok();
        let got: BTreeSet<(String, u16)> = r
            .srvs()
            .iter()
            .map(|s| (lower(&s.target), s.port))
            .collect();
        let want: BTreeSet<(String, u16)> = [
            ("web-1.node.dc1.consul.".to_string(), 8080),
            ("web-2.node.dc1.consul.".to_string(), 8081),
            ("web-3.node.dc1.consul.".to_string(), 8082),
        ]
        .into();
        assert_eq!(got, want, "{r:?}");
        let extra = r.extra_addrs();
        for (i, target) in ["web-1", "web-2", "web-3"].iter().enumerate() {
            assert_eq!(
                extra.get(&format!("{target}.node.dc1.consul.")),
                Some(&ipset(&[&format!("10.0.1.{}", 20 + i)])),
                "glue for {target}: {r:?}"
            );
        }
    }

    // ANY answers the addresses too.
    let r = ask(a, "web.service.consul.", RecordType::ANY);
    assert_eq!(r.ok().ips(), all, "{r:?}");

    // Names are case-insensitive; the question is echoed as asked.
    let r = ask(a, "WEB.Service.CONSUL.", RecordType::A);
    assert_eq!(r.ok().ips(), all, "{r:?}");
    let r = ask(a, "PRIMARY.Web.service.DC1.Consul.", RecordType::A);
    assert_eq!(r.ok().ips(), ipset(&["10.0.1.20"]), "{r:?}");
    let r = ask(a, "_WEB._Primary.SERVICE.consul.", RecordType::SRV);
    assert_eq!(r.ok().srvs().len(), 1, "{r:?}");
    let r = ask(a, "Web-2.NODE.dc1.CONSUL.", RecordType::A);
    assert_eq!(r.ok().ips(), ipset(&["10.0.1.21"]), "{r:?}");

    // Another datacenter is not known here.
    let r = ask(a, "web.service.dc2.consul.", RecordType::A);
    r.rcode_is(ResponseCode::NXDomain);

    // Deregistering a node takes it and its instances out of DNS.
    let r = a.put_json("/v1/catalog/deregister", &json!({"Node": "web-3"}));
    assert!(r.bool(), "{r:?}");
    settle_ips(
        a,
        "web.service.consul.",
        RecordType::A,
        &ipset(&["10.0.1.20", "10.0.1.21"]),
    );
    settle_ips(a, "web-3.node.consul.", RecordType::A, &BTreeSet::new());
    let r = ask(a, "canary.web.service.consul.", RecordType::A);
    r.rcode_is(ResponseCode::NXDomain);
    // Deregistering the last instances of a service makes the name unknown.
    for node in ["web-1", "web-2"] {
        let body = json!({"Node": node, "ServiceID": format!("web-{node}")});
        let r = a.put_json("/v1/catalog/deregister", &body);
        assert!(r.bool(), "{r:?}");
    }
    settle_ips(a, "web.service.consul.", RecordType::A, &BTreeSet::new());
    let r = ask(a, "web-1.node.consul.", RecordType::A);
    assert_eq!(r.ok().ips(), ipset(&["10.0.1.20"]), "the node stays: {r:?}");
}

fn node_and_addr_lookups(a: &Agent) {
    catalog_register(
        a,
        json!({
            "Node": "db-1",
            "Address": "10.0.1.30",
            "NodeMeta": {"rack": "r1", "env": "prod"},
        }),
    );
    let want = ipset(&["10.0.1.30"]);
    let r = settle_ips(a, "db-1.node.consul.", RecordType::A, &want);
    r.ok();
    assert_eq!(r.answer_types(), vec![RecordType::A], "{r:?}");
    assert_eq!(lower(&r.answers[0].name), "db-1.node.consul.", "{r:?}");
    assert_eq!(r.answers[0].ttl, 0, "node_ttl defaults to 0: {r:?}");
    // enable_additional_node_meta_txt defaults to true: the meta rides along as TXT.
    let extra_txt: BTreeSet<String> = r
        .additionals
        .iter()
        .filter_map(|rec| match &rec.data {
            RData::TXT(t) => Some(String::from_utf8_lossy(&t.txt_data.concat()).into_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(
        extra_txt,
        ["rack=r1".to_string(), "env=prod".to_string()].into(),
        "{r:?}"
    );
    let r = ask(a, "db-1.node.dc1.consul.", RecordType::A);
    assert_eq!(r.ok().ips(), want, "{r:?}");
    let r = tcp(a, &query("db-1.node.dc1.consul.", RecordType::A));
    assert_eq!(r.ok().ips(), want, "{r:?}");
    let r = ask(a, "DB-1.Node.Consul.", RecordType::A);
    assert_eq!(r.ok().ips(), want, "{r:?}");

    // Node meta as TXT, key=value (RFC 1464).
    let meta: BTreeSet<String> = ["rack=r1".to_string(), "env=prod".to_string()].into();
    let r = ask(a, "db-1.node.consul.", RecordType::TXT);
    r.ok();
    assert_eq!(r.txts(), meta, "{r:?}");
    assert!(r.ips().is_empty(), "a TXT question gets no A: {r:?}");
    let r = ask(a, "db-1.node.dc1.consul.", RecordType::TXT);
    assert_eq!(r.ok().txts(), meta, "{r:?}");

    // ANY: the address and the meta.
    let r = ask(a, "db-1.node.consul.", RecordType::ANY);
    r.ok();
    assert_eq!(r.ips(), want, "{r:?}");
    assert_eq!(r.txts(), meta, "{r:?}");

    // Hex-encoded addresses need no registration at all.
    let r = ask(a, "0a000114.addr.dc1.consul.", RecordType::A);
    r.ok();
    assert_eq!(r.ips(), ipset(&["10.0.1.20"]), "{r:?}");
    assert_eq!(lower(&r.answers[0].name), "0a000114.addr.dc1.consul.");
    let r = ask(a, "0A00011E.addr.DC1.consul.", RecordType::A);
    assert_eq!(r.ok().ips(), want, "{r:?}");
    let r = ask(
        a,
        "20010db8000000000000000000000020.addr.dc1.consul.",
        RecordType::AAAA,
    );
    assert_eq!(r.ok().ips(), ipset(&["2001:db8::20"]), "{r:?}");

    let r = ask(a, "no-such-node.node.consul.", RecordType::A);
    r.rcode_is(ResponseCode::NXDomain);
    r.authority_soa();

    // Reverse lookups of a node's address name the node.
    let r = ask(a, "30.1.0.10.in-addr.arpa.", RecordType::PTR);
    r.ok();
    let ptrs: Vec<String> = r
        .answers
        .iter()
        .filter_map(|rec| match &rec.data {
            RData::PTR(p) => Some(lower(&p.0)),
            _ => None,
        })
        .collect();
    assert_eq!(ptrs, vec!["db-1.node.dc1.consul.".to_string()], "{r:?}");
}

fn ipv6_addresses(a: &Agent) {
    catalog_register(
        a,
        json!({
            "Node": "v6-1",
            "Address": "10.0.1.40",
            "Service": {"ID": "v6svc-1", "Service": "v6svc", "Address": "2001:db8::40", "Port": 7000},
        }),
    );
    catalog_register(a, json!({"Node": "v6-node", "Address": "2001:db8::41"}));
    let want = ipset(&["2001:db8::40"]);
    let r = settle_ips(a, "v6svc.service.consul.", RecordType::AAAA, &want);
    r.ok();
    assert_eq!(r.answer_types(), vec![RecordType::AAAA], "{r:?}");
    let r = tcp(a, &query("v6svc.service.consul.", RecordType::AAAA));
    assert_eq!(r.ok().ips(), want, "{r:?}");

    // Asked for A, Consul's address translation finds no IPv4 service address and falls
    // back to the node's address.
    let r = ask(a, "v6svc.service.consul.", RecordType::A);
    assert_eq!(r.ok().ips(), ipset(&["10.0.1.40"]), "{r:?}");

    // SRV: the service address differs from the node's, so the target is HEX.addr.DC.consul.
    let r = ask(a, "v6svc.service.consul.", RecordType::SRV);
    r.ok();
    let srvs = r.srvs();
    assert_eq!(srvs.len(), 1, "{r:?}");
    let target = "20010db8000000000000000000000040.addr.dc1.consul.";
    assert_eq!(lower(&srvs[0].target), target, "{r:?}");
    assert_eq!(srvs[0].port, 7000, "{r:?}");
    assert_eq!(r.extra_addrs().get(target), Some(&want), "{r:?}");

    // A node with an IPv6 address.
    let want = ipset(&["2001:db8::41"]);
    let r = settle_ips(a, "v6-node.node.consul.", RecordType::AAAA, &want);
    r.ok();
    let r = ask(a, "v6-node.node.consul.", RecordType::A);
    r.ok();
    assert!(r.answers.is_empty(), "{r:?}");
}

fn negative_answers(a: &Agent) {
    register_web(a);
    settle_ips(a, "web.service.consul.", RecordType::A, &web_ips());

    for (name, qtype) in [
        ("nosuch.service.consul.", RecordType::A),
        ("nosuch.service.consul.", RecordType::SRV),
        ("_nosuch._tcp.service.consul.", RecordType::SRV),
        ("nosuch.service.dc1.consul.", RecordType::AAAA),
        ("nosuch.node.consul.", RecordType::A),
        ("nosuch.node.dc1.consul.", RecordType::TXT),
    ] {
        for r in [
            ask(a, name, qtype),
            udp(a, &query(name, qtype)),
            tcp(a, &query(name, qtype)),
        ] {
            r.rcode_is(ResponseCode::NXDomain);
            assert!(r.metadata.authoritative, "{r:?}");
            assert!(r.answers.is_empty(), "{r:?}");
            let soa = r.authority_soa();
            assert_eq!(lower(&soa.mname), "ns.consul.", "{r:?}");
            assert_eq!(lower(&soa.rname), "hostmaster.consul.", "{r:?}");
        }
    }

    // A known service asked for a type it has nothing of: NOERROR, no answer, and the SOA
    // (Consul's errNoData, RFC 2308 NODATA).
    for r in [
        ask(a, "web.service.consul.", RecordType::AAAA),
        tcp(a, &query("primary.web.service.consul.", RecordType::AAAA)),
    ] {
        r.ok();
        assert!(r.answers.is_empty(), "{r:?}");
        r.authority_soa();
    }
    // A known node likewise answers NOERROR with nothing (Consul adds no SOA there, so
    // only the empty answer is checked).
    for (name, qtype) in [
        ("web-1.node.consul.", RecordType::AAAA),
        ("web-1.node.dc1.consul.", RecordType::MX),
    ] {
        let r = ask(a, name, qtype);
        r.ok();
        assert!(r.answers.is_empty(), "{r:?}");
    }
}

fn apex_soa_and_ns(a: &Agent) {
    let node = a.node.to_ascii_lowercase();
    let ns_name = format!("{node}.node.dc1.consul.");
    let r = settle(a, "consul.", RecordType::NS, |r| !r.answers.is_empty());
    r.ok();
    let ns: Vec<String> = r
        .answers
        .iter()
        .map(|rec| match &rec.data {
            RData::NS(n) => lower(&n.0),
            other => panic!("not NS ({other:?}): {r:?}"),
        })
        .collect();
    assert_eq!(ns, vec![ns_name.clone()], "the one server: {r:?}");
    assert!(
        r.answers.iter().all(|rec| lower(&rec.name) == "consul."),
        "{r:?}"
    );
    assert_eq!(
        r.extra_addrs().get(&ns_name),
        Some(&ipset(&["127.0.0.1"])),
        "glue for the server: {r:?}"
    );

    for r in [
        ask(a, "consul.", RecordType::SOA),
        tcp(a, &query("CONSUL.", RecordType::SOA)),
    ] {
        r.ok();
        assert_eq!(r.answers.len(), 1, "{r:?}");
        assert_eq!(lower(&r.answers[0].name), "consul.", "{r:?}");
        let RData::SOA(soa) = &r.answers[0].data else {
            panic!("not SOA: {r:?}");
        };
        assert_eq!(lower(&soa.mname), "ns.consul.", "{r:?}");
        assert_eq!(lower(&soa.rname), "hostmaster.consul.", "{r:?}");
        assert!(soa.serial > 0, "{r:?}");
        // Consul's dns_config.soa defaults.
        assert_eq!(
            (soa.refresh, soa.retry, soa.expire, soa.minimum),
            (3600, 600, 86400, 0),
            "{r:?}"
        );
    }
}

fn consul_service(a: &Agent) {
    let r = a.get("/v1/catalog/service/consul");
    let v = r.ok().json();
    let inst = &v[0];
    let addr = inst["ServiceAddress"]
        .as_str()
        .filter(|s| !s.is_empty())
        .or_else(|| inst["Address"].as_str())
        .unwrap_or_else(|| panic!("an address for the consul service: {r:?}"))
        .to_string();
    let port = inst["ServicePort"]
        .as_u64()
        .unwrap_or_else(|| panic!("ServicePort: {r:?}"));
    let want = ipset(&[&addr]);
    assert_eq!(
        want,
        ipset(&["127.0.0.1"]),
        "a dev agent advertises loopback"
    );
    settle_ips(a, "consul.service.consul.", RecordType::A, &want).ok();
    let r = tcp(a, &query("consul.service.dc1.consul.", RecordType::A));
    assert_eq!(r.ok().ips(), want, "{r:?}");
    let r = ask(a, "consul.service.consul.", RecordType::SRV);
    r.ok();
    let srvs = r.srvs();
    assert_eq!(srvs.len(), 1, "{r:?}");
    assert_eq!(u64::from(srvs[0].port), port, "{r:?}");
    assert_eq!(port, u64::from(a.ports.server), "the server RPC port");
    let target = format!("{}.node.dc1.consul.", a.node.to_ascii_lowercase());
    assert_eq!(lower(&srvs[0].target), target, "{r:?}");
    assert_eq!(r.extra_addrs().get(&target), Some(&want), "{r:?}");
}

fn health_ttl_checks(a: &Agent) {
    register_ttl_service(a, "api-1", "api", "10.0.2.1", 9001);
    register_ttl_service(a, "api-2", "api", "10.0.2.2", 9002);
    let both = ipset(&["10.0.2.1", "10.0.2.2"]);
    let two = ipset(&["10.0.2.2"]);
    let none = BTreeSet::new();

    set_ttl(a, "api-1", "pass");
    set_ttl(a, "api-2", "pass");
    settle_ips(a, "api.service.consul.", RecordType::A, &both);

    // A critical instance is left out; passing again, it is back.
    set_ttl(a, "api-1", "fail");
    settle_ips(a, "api.service.consul.", RecordType::A, &two);
    let r = ask(a, "api.service.consul.", RecordType::SRV);
    let ports: Vec<u16> = r.ok().srvs().iter().map(|s| s.port).collect();
    assert_eq!(
        ports,
        vec![9002],
        "SRV leaves the critical one out too: {r:?}"
    );
    set_ttl(a, "api-1", "pass");
    settle_ips(a, "api.service.consul.", RecordType::A, &both);

    // Warning instances are returned by default (only_passing = false).
    set_ttl(a, "api-2", "warn");
    // The agent syncs the check to the catalog asynchronously, as Consul's anti-entropy does.
    eventually(SETTLE, "api-2's check shows warning in the catalog", || {
        let r = a.get("/v1/health/checks/api");
        let v = r.ok().json();
        let warn = v.as_array().is_some_and(|checks| {
            checks
                .iter()
                .any(|c| c["ServiceID"] == "api-2" && c["Status"] == "warning")
        });
        warn.then_some(())
    });
    for _ in 0..5 {
        let r = ask(a, "api.service.consul.", RecordType::A);
        assert_eq!(r.ok().ips(), both, "warning is still served: {r:?}");
    }

    // Every instance critical: the name has nothing to offer (NXDOMAIN, as Consul).
    set_ttl(a, "api-1", "fail");
    set_ttl(a, "api-2", "fail");
    let r = settle_ips(a, "api.service.consul.", RecordType::A, &none);
    r.authority_soa();
    set_ttl(a, "api-2", "pass");
    settle_ips(a, "api.service.consul.", RecordType::A, &two);

    // Deregistered through the agent: gone from DNS.
    a.put_empty("/v1/agent/service/deregister/api-2").ok();
    settle_ips(a, "api.service.consul.", RecordType::A, &none);
    set_ttl(a, "api-1", "pass");
    settle_ips(
        a,
        "api.service.consul.",
        RecordType::A,
        &ipset(&["10.0.2.1"]),
    );
}

fn node_check_hides_instances(a: &Agent) {
    let node_check = |status: &str| {
        json!({
            "Node": "sick-1",
            "Address": "10.0.4.1",
            "Check": {"CheckID": "node-health", "Name": "node health", "Status": status},
        })
    };
    catalog_register(a, node_check("passing"));
    for (svc, port) in [("cache", 6379), ("queue", 5672)] {
        catalog_register(
            a,
            json!({
                "Node": "sick-1",
                "Address": "10.0.4.1",
                "Service": {"ID": format!("{svc}-sick"), "Service": svc, "Port": port},
            }),
        );
    }
    register_ext(
        a,
        &Ext {
            node: "well-1",
            addr: "10.0.4.2",
            service: "cache",
            port: 6379,
            tags: &[],
        },
    );
    // A service-level check in warning on a third node: still served.
    catalog_register(
        a,
        json!({
            "Node": "warm-1",
            "Address": "10.0.4.3",
            "Service": {"ID": "cache-warm", "Service": "cache", "Port": 6379},
            "Check": {"CheckID": "cache-warm-check", "Name": "c", "Status": "warning", "ServiceID": "cache-warm"},
        }),
    );
    let cache_all = ipset(&["10.0.4.1", "10.0.4.2", "10.0.4.3"]);
    let sick = ipset(&["10.0.4.1"]);
    settle_ips(a, "cache.service.consul.", RecordType::A, &cache_all);
    settle_ips(a, "queue.service.consul.", RecordType::A, &sick);

    // The node-level check goes critical: every instance on that node is hidden.
    catalog_register(a, node_check("critical"));
    settle_ips(
        a,
        "cache.service.consul.",
        RecordType::A,
        &ipset(&["10.0.4.2", "10.0.4.3"]),
    );
    settle_ips(a, "queue.service.consul.", RecordType::A, &BTreeSet::new());
    let r = ask(a, "cache.service.consul.", RecordType::SRV);
    let targets: BTreeSet<String> = r.ok().srvs().iter().map(|s| lower(&s.target)).collect();
    assert!(
        !targets.contains("sick-1.node.dc1.consul."),
        "SRV hides the node too: {r:?}"
    );
    // The node itself still resolves: node lookups do not look at health.
    let r = ask(a, "sick-1.node.consul.", RecordType::A);
    assert_eq!(r.ok().ips(), sick, "{r:?}");

    catalog_register(a, node_check("passing"));
    settle_ips(a, "cache.service.consul.", RecordType::A, &cache_all);
    settle_ips(a, "queue.service.consul.", RecordType::A, &sick);
}

const BIG: usize = 30;

fn register_big(a: &Agent) -> BTreeSet<IpAddr> {
    let mut all = BTreeSet::new();
    for i in 0..BIG {
        let node = format!("big-{i:02}");
        let addr = format!("10.0.5.{}", i + 1);
        register_ext(
            a,
            &Ext {
                node: &node,
                addr: &addr,
                service: "big",
                port: 10_000 + i as u16,
                tags: &[],
            },
        );
        all.insert(ip(&addr));
    }
    let r = settle(a, "big.service.consul.", RecordType::A, |r| {
        r.rcode() == ResponseCode::NoError && r.ips() == all
    });
    assert_eq!(r.answers.len(), BIG, "{r:?}");
    all
}

fn udp_truncation_and_tcp(a: &Agent) {
    let all = register_big(a);

    // Plain UDP (no EDNS): at most udp_answer_limit (default 3) records, and TC stays clear
    // because enable_truncate defaults to false (Consul trims silently).
    for qtype in [RecordType::A, RecordType::ANY] {
        let r = udp(a, &query("big.service.consul.", qtype));
        r.ok();
        assert!(
            r.wire_len <= 512,
            "a plain UDP answer fits 512 bytes: {r:?}"
        );
        assert_eq!(r.answers.len(), 3, "udp_answer_limit = 3: {r:?}");
        assert!(r.ips().is_subset(&all), "{r:?}");
        assert!(
            !r.metadata.truncation,
            "TC only with enable_truncate: {r:?}"
        );
    }
    let r = udp(a, &query("big.service.consul.", RecordType::SRV));
    r.ok();
    assert_eq!(r.srvs().len(), 3, "{r:?}");
    assert!(r.wire_len <= 512, "{r:?}");
    let glue: BTreeSet<String> = r.extra_addrs().into_keys().collect();
    let targets: BTreeSet<String> = r.srvs().iter().map(|s| lower(&s.target)).collect();
    assert_eq!(glue, targets, "the glue follows the kept answers: {r:?}");

    // TCP returns everything, on one connection for several questions.
    let mut s = tcp_connect(a);
    for _ in 0..3 {
        let r = tcp_on(&mut s, &query("big.service.consul.", RecordType::A));
        r.ok();
        assert_eq!(r.answers.len(), BIG, "{r:?}");
        assert_eq!(r.ips(), all, "{r:?}");
        assert!(!r.metadata.truncation, "{r:?}");
    }
    // Pipelined: two questions written at once, two answers in order.
    let (q1, q2) = (
        query("big.service.consul.", RecordType::A),
        query("big-07.node.consul.", RecordType::A),
    );
    let mut both = Vec::new();
    for q in [&q1, &q2] {
        let body = encode(q);
        both.extend_from_slice(&u16::try_from(body.len()).expect("len").to_be_bytes());
        both.extend_from_slice(&body);
    }
    s.write_all(&both).expect("write two frames");
    let r1 = decode(
        "pipelined 1".into(),
        &read_frame(&mut s).expect("reply 1"),
        &q1,
    );
    assert_eq!(r1.ok().ips(), all, "{r1:?}");
    let r2 = decode(
        "pipelined 2".into(),
        &read_frame(&mut s).expect("reply 2"),
        &q2,
    );
    assert_eq!(r2.ok().ips(), ipset(&["10.0.5.8"]), "{r2:?}");

    let r = tcp_on(&mut s, &query("big.service.consul.", RecordType::SRV));
    r.ok();
    assert_eq!(r.srvs().len(), BIG, "{r:?}");
    let glue: BTreeSet<IpAddr> = r.extra_addrs().into_values().flatten().collect();
    assert_eq!(glue, all, "every target's address as glue: {r:?}");

    // A large EDNS buffer over UDP holds them all too.
    let r = udp(a, &query_edns("big.service.consul.", RecordType::A, 4096));
    assert_eq!(r.ok().ips(), all, "{r:?}");
}

fn answers_are_shuffled(a: &Agent) {
    let all = register_big(a);
    let mut orders = HashSet::new();
    let mut s = tcp_connect(a);
    for _ in 0..20 {
        let r = tcp_on(&mut s, &query("big.service.consul.", RecordType::A));
        r.ok();
        assert_eq!(r.ips(), all, "the same set every time: {r:?}");
        let order: Vec<IpAddr> = r.answers.iter().filter_map(ip_of).collect();
        assert_eq!(order.len(), BIG, "no duplicates: {r:?}");
        orders.insert(order);
    }
    assert!(
        orders.len() > 1,
        "20 answers of 30 records all came in the same order"
    );

    // The 3 records of plain UDP answers are drawn from all instances.
    let mut seen = BTreeSet::new();
    for _ in 0..40 {
        let r = udp(a, &query("big.service.consul.", RecordType::A));
        seen.extend(r.ok().ips());
    }
    assert!(
        seen.len() > 3,
        "40 plain UDP answers only ever named {seen:?}"
    );
    assert!(seen.is_subset(&all));
}

/// A deterministic byte source, so that a failure can be replayed.
fn garbage(rng: &mut fastrand::Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.u8(..)).collect()
}

fn garbage_is_survived(a: &Agent) {
    register_web(a);
    settle_ips(a, "web.service.consul.", RecordType::A, &web_ips());
    let mut rng = fastrand::Rng::with_seed(0x6d75_7374_6572);

    let valid = encode(&query("web.service.consul.", RecordType::A));
    // Header claims one question, then a name whose compression pointer points at itself.
    let ptr_loop: Vec<u8> = vec![
        0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1,
    ];
    // A response (QR set) must not be answered.
    let response = {
        let mut m = valid.clone();
        m[2] |= 0x80;
        m
    };
    let mut udp_junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        valid[..5].to_vec(),
        valid[..11].to_vec(),
        valid[..12].to_vec(),
        valid[..valid.len() - 3].to_vec(),
        ptr_loop.clone(),
        response.clone(),
        // 65535 questions announced, none present.
        vec![0x12, 0x35, 0x01, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0],
        // A label length byte of 127 (labels end at 63).
        {
            let mut m = vec![0x12, 0x36, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0x7f];
            m.extend(std::iter::repeat_n(b'a', 127));
            m.extend([0, 0, 1, 0, 1]);
            m
        },
        // Another opcode (STATUS).
        {
            let mut m = valid.clone();
            m[2] = (m[2] & 0x87) | (2 << 3);
            m
        },
        vec![0xff; 1500],
    ];
    for len in [12usize, 13, 20, 64, 100, 300, 512, 1400, 4000] {
        for _ in 0..5 {
            udp_junk.push(garbage(&mut rng, len));
        }
    }
    // Everything is sent first, each from its own socket, then whatever came back is
    // read: replies are optional, but any reply must be a DNS response to that message.
    let sent: Vec<(UdpSocket, &Vec<u8>)> = udp_junk
        .iter()
        .map(|junk| {
            let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind udp client");
            sock.connect(dns_addr(a)).expect("connect udp");
            sock.send(junk).expect("send junk");
            (sock, junk)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_millis(300);
    let mut buf = vec![0u8; 65535];
    for (sock, junk) in &sent {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        sock.set_read_timeout(Some(left)).expect("timeout");
        let Ok(n) = sock.recv(&mut buf) else { continue };
        let reply = &buf[..n];
        assert!(
            junk.len() >= 12,
            "a message shorter than a header is dropped, not answered: {junk:02x?} -> {reply:02x?}"
        );
        assert!(
            reply.len() >= 12,
            "reply to {junk:02x?} is a DNS header: {reply:02x?}"
        );
        assert_ne!(reply[2] & 0x80, 0, "a reply has QR set: {reply:02x?}");
        assert_eq!(reply[..2], junk[..2], "the reply echoes the ID");
    }
    // A bad query that decodes as a header gets FORMERR, as Consul's DNS library does.
    let r = udp_raw(a, &ptr_loop, Some(0x1234), EXCHANGE_TIMEOUT)
        .expect("an answer to a malformed query");
    assert_eq!(r[3] & 0x0f, 1, "FORMERR: {r:02x?}");
    assert!(
        udp_raw(a, &response, None, Duration::from_millis(300)).is_none(),
        "a response is never answered"
    );
    still_answering(a);

    // TCP: partial frames, empty frames, random frames, then a valid query on a fresh
    // connection. Each connection is closed by us or by the server; nothing may hang it.
    let tcp_junk: Vec<Vec<u8>> = vec![
        vec![0],
        vec![0, 0],
        vec![0, 100, 1, 2, 3],
        vec![0xff, 0xff],
        [&[0u8, 12][..], &valid[..12]].concat(),
        [&[0u8, 18][..], &ptr_loop[..]].concat(),
        garbage(&mut rng, 7),
        garbage(&mut rng, 300),
    ];
    let mut conns = Vec::new();
    for junk in &tcp_junk {
        let mut s = tcp_connect(a);
        let _ = s.write_all(junk);
        conns.push(s);
    }
    for _ in 0..10 {
        let mut s = tcp_connect(a);
        let len = rng.usize(12..600);
        let _ = write_frame(&mut s, &garbage(&mut rng, len));
        conns.push(s);
    }
    let deadline = Instant::now() + Duration::from_millis(300);
    for mut s in conns {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        s.set_read_timeout(Some(left)).expect("timeout");
        let mut sink = [0u8; 512];
        let _ = s.read(&mut sink);
    }
    // Garbage framed correctly, then a valid question on the same connection: the
    // connection keeps serving.
    let mut s = tcp_connect(a);
    write_frame(&mut s, &ptr_loop).expect("write junk frame");
    let reply = read_frame(&mut s).expect("FORMERR for a malformed frame");
    assert_eq!(reply[3] & 0x0f, 1, "FORMERR: {reply:02x?}");
    let r = tcp_on(&mut s, &query("web.service.consul.", RecordType::A));
    assert_eq!(r.ok().ips(), web_ips(), "{r:?}");
    still_answering(a);
}

fn still_answering(a: &Agent) {
    assert!(a.try_wait().is_none(), "the agent is still running");
    let r = ask(a, "web.service.consul.", RecordType::A);
    assert_eq!(r.ok().ips(), web_ips(), "{r:?}");
    let r = udp(a, &query("web-1.node.consul.", RecordType::A));
    assert_eq!(r.ok().ips(), ipset(&["10.0.1.20"]), "{r:?}");
    let r = tcp(a, &query("web.service.consul.", RecordType::SRV));
    assert_eq!(r.ok().srvs().len(), 3, "{r:?}");
}

fn no_recursor_refuses(a: &Agent) {
    // Consul registers no handler for names outside its domain when it has no recursors,
    // and its DNS library refuses those names.
    for (name, qtype) in [
        ("example.com.", RecordType::A),
        ("www.example.org.", RecordType::AAAA),
        ("consul.io.", RecordType::SRV),
    ] {
        for r in [udp(a, &query(name, qtype)), tcp(a, &query(name, qtype))] {
            r.rcode_is(ResponseCode::Refused);
            assert!(r.answers.is_empty(), "{r:?}");
            assert!(!r.metadata.recursion_available, "{r:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Recursors

/// A tiny authoritative server on 127.0.0.1 (UDP and TCP on one port) that knows
/// `example.com. A 127.0.0.42`, says NXDOMAIN to everything else, and records what it saw.
struct FakeRecursor {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

const UPSTREAM_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 42);

impl FakeRecursor {
    fn start() -> FakeRecursor {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind fake udp");
            let port = udp.local_addr().expect("addr").port();
            if let Ok(tcp) = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
                break (udp, tcp);
            }
        };
        let port = udp.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        tcp.set_nonblocking(true).expect("nonblocking");
        let (seen_u, stop_u) = (Arc::clone(&seen), Arc::clone(&stop));
        let udp_thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65535];
            while !stop_u.load(Ordering::Relaxed) {
                let Ok((n, peer)) = udp.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = fake_answer(&buf[..n], "udp", &seen_u) {
                    let _ = udp.send_to(&reply, peer);
                }
            }
        });
        let (seen_t, stop_t) = (Arc::clone(&seen), Arc::clone(&stop));
        let tcp_thread = std::thread::spawn(move || {
            while !stop_t.load(Ordering::Relaxed) {
                let mut s = match tcp.accept() {
                    Ok((s, _)) => s,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                while let Ok(body) = read_frame(&mut s) {
                    match fake_answer(&body, "tcp", &seen_t) {
                        Some(reply) if write_frame(&mut s, &reply).is_ok() => {}
                        _ => break,
                    }
                }
            }
        });
        FakeRecursor {
            port,
            seen,
            stop,
            threads: vec![udp_thread, tcp_thread],
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("seen").clone()
    }
}

impl Drop for FakeRecursor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn fake_answer(query: &[u8], proto: &str, seen: &Mutex<Vec<String>>) -> Option<Vec<u8>> {
    let req = Message::from_vec(query).ok()?;
    let q = req.queries.first()?.clone();
    seen.lock()
        .expect("seen")
        .push(format!("{proto} {} {}", lower(q.name()), q.query_type()));
    let mut m = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = req.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.add_query(q.clone());
    if lower(q.name()) == "example.com." {
        if q.query_type() == RecordType::A {
            m.add_answer(Record::from_rdata(
                q.name().clone(),
                300,
                RData::A(A(UPSTREAM_IP)),
            ));
        }
    } else {
        m.metadata.response_code = ResponseCode::NXDomain;
    }
    m.to_vec().ok()
}

fn recursor_forwarding(cores: usize) {
    let fake = FakeRecursor::start();
    let recursor = format!("127.0.0.1:{}", fake.port);
    let a = Agent::start_with("recursor_forwarding", cores, &["-recursor", &recursor]);

    let upstream = ipset(&[&UPSTREAM_IP.to_string()]);
    for r in [
        udp(&a, &query("example.com.", RecordType::A)),
        ask(&a, "example.com.", RecordType::A),
        tcp(&a, &query("example.com.", RecordType::A)),
        udp(&a, &query("EXAMPLE.com.", RecordType::A)),
    ] {
        r.rcode_is(ResponseCode::NoError);
        assert_eq!(r.ips(), upstream, "the recursor's answer: {r:?}");
        assert!(r.metadata.recursion_available, "{r:?}");
    }
    // The recursor's NXDOMAIN is passed on, not turned into a failure.
    let r = udp(&a, &query("missing.example.net.", RecordType::A));
    r.rcode_is(ResponseCode::NXDomain);
    // NOERROR with no data from upstream too.
    let r = tcp(&a, &query("example.com.", RecordType::AAAA));
    r.rcode_is(ResponseCode::NoError);
    assert!(r.answers.is_empty(), "{r:?}");

    // Our own domain is still answered locally, now with RA set.
    let want = ipset(&["127.0.0.1"]);
    let r = settle_ips(&a, "consul.service.consul.", RecordType::A, &want);
    assert!(r.metadata.recursion_available, "{r:?}");
    let r = ask(&a, "nosuch.service.consul.", RecordType::A);
    r.rcode_is(ResponseCode::NXDomain);
    assert!(r.metadata.authoritative, "{r:?}");

    let seen = fake.seen();
    assert!(
        seen.iter().any(|s| s.starts_with("udp example.com.")),
        "UDP queries went upstream over UDP: {seen:?}"
    );
    assert!(
        seen.iter().all(|s| !s.contains(".consul.")),
        "the consul domain is never forwarded: {seen:?}"
    );

    // With the recursor gone, forwarded names fail with SERVFAIL (after the recursor timeout).
    drop(fake);
    let r = eventually(SETTLE * 2, "SERVFAIL once the recursor is gone", || {
        let r = udp(&a, &query("example.com.", RecordType::A));
        (r.rcode() == ResponseCode::ServFail).then_some(r)
    });
    assert!(r.answers.is_empty(), "{r:?}");
    still_local(&a);
}

fn still_local(a: &Agent) {
    let r = ask(a, "consul.service.consul.", RecordType::A);
    assert_eq!(r.ok().ips(), ipset(&["127.0.0.1"]), "{r:?}");
}
