//! Behaviour tests of the DNS interface: `answer()` on a fixture view, then the glommio
//! loops over real loopback sockets (UDP, TCP, forwarding to fake recursors).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::*;

// ---------------------------------------------------------------------------------------
// Fixture

fn inst(node: &str, node_addr: &str, port: u16) -> Instance {
    Instance {
        node: node.into(),
        node_address: node_addr.into(),
        service_id: format!("svc-{node}-{port}"),
        port,
        ..Instance::default()
    }
}

/// web: 3 passing, 1 warning (weights 10/1), 1 critical, 1 in maintenance, 1 on a node
/// whose serfHealth is critical. db: tagged, with a service address. ext: a hostname.
fn fixture() -> DnsView {
    let mut v = DnsView::new("dc1", "consul.", Some("alt.test."));
    let mut meta = BTreeMap::new();
    meta.insert("rack".to_owned(), "r1".to_owned());
    let mut web = vec![
        Instance {
            node_meta: meta.clone(),
            ..inst("n1", "10.0.0.1", 8080)
        },
        inst("n2", "10.0.0.2", 8080),
        inst("n3", "10.0.0.3", 8080),
        Instance {
            health: Health::Warning,
            weights_passing: 10,
            weights_warning: 1,
            ..inst("n4", "10.0.0.4", 8080)
        },
        Instance {
            health: Health::Critical,
            ..inst("n5", "10.0.0.5", 8080)
        },
        Instance {
            health: Health::Maintenance,
            ..inst("n6", "10.0.0.6", 8080)
        },
        Instance {
            node_health: Health::Critical,
            ..inst("n7", "10.0.0.7", 8080)
        },
    ];
    for i in &mut web {
        i.service = "web".into();
    }
    v.set_service("web", web);
    v.set_service(
        "db",
        vec![
            Instance {
                tags: vec!["Primary".into(), "v1".into()],
                address: "10.1.0.1".into(),
                ..inst("n1", "10.0.0.1", 5432)
            },
            Instance {
                tags: vec!["replica".into(), "v1".into()],
                ..inst("n2", "10.0.0.2", 5432)
            },
        ],
    );
    v.set_service(
        "ext",
        vec![Instance {
            address: "db.example.com".into(),
            ..inst("n1", "10.0.0.1", 443)
        }],
    );
    v.set_service("six", web_like(6));
    v.set_service("v6", vec![inst("n6a", "2001:db8::6", 80)]);
    v.set_service(
        "consul",
        vec![
            inst("server1", "10.0.0.1", 8300),
            inst("server2", "10.0.0.2", 8300),
        ],
    );
    v.set_service(
        "down",
        vec![Instance {
            health: Health::Critical,
            ..inst("n1", "10.0.0.1", 1)
        }],
    );
    let mut node_meta = BTreeMap::new();
    node_meta.insert("rack".to_owned(), "r1".to_owned());
    node_meta.insert("rfc1035-raw".to_owned(), "plain text".to_owned());
    v.set_node(NodeRecord {
        name: "n1".into(),
        address: "10.0.0.1".into(),
        datacenter: "dc1".into(),
        meta: node_meta,
        tagged_addresses: BTreeMap::new(),
    });
    v.set_node(NodeRecord {
        name: "Server1".into(),
        address: "10.0.0.9".into(),
        datacenter: "dc1".into(),
        ..NodeRecord::default()
    });
    v.set_node(NodeRecord {
        name: "n6a".into(),
        address: "2001:db8::6".into(),
        datacenter: "dc1".into(),
        ..NodeRecord::default()
    });
    v.set_node(NodeRecord {
        name: "cname-node".into(),
        address: "host.example.org".into(),
        datacenter: "dc1".into(),
        ..NodeRecord::default()
    });
    v
}

/// `n` passing instances on nodes `h0..`, addresses 10.9.x.y.
fn web_like(n: usize) -> Vec<Instance> {
    (0..n)
        .map(|i| {
            inst(
                &format!("h{i}"),
                &format!("10.9.{}.{}", i / 250, i % 250 + 1),
                9000,
            )
        })
        .collect()
}

fn cfg() -> DnsSettings {
    DnsSettings {
        node_name: "test-node".into(),
        alt_domain: Some("alt.test.".into()),
        ..DnsSettings::default()
    }
}

fn query_msg(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

fn q(name: &str, qtype: RecordType) -> Vec<u8> {
    query_msg(name, qtype).to_vec().unwrap()
}

fn q_edns(name: &str, qtype: RecordType, size: u16) -> Vec<u8> {
    let mut m = query_msg(name, qtype);
    let mut e = Edns::new();
    e.set_max_payload(size);
    m.set_edns(e);
    m.to_vec().unwrap()
}

fn ask(view: &DnsView, cfg: &DnsSettings, query: &[u8], transport: Transport) -> Message {
    let bytes = answer(view, cfg, query, transport).expect("an answer");
    Message::from_vec(&bytes).expect("a decodable answer")
}

const UDP: Transport = Transport::Udp {
    max_size: MAX_UDP_PAYLOAD,
};

/// Like `dig`, which asks with EDNS (so the 3-record limit of plain UDP does not apply).
fn qe(name: &str, qtype: RecordType) -> Vec<u8> {
    q_edns(name, qtype, 4096)
}

fn udp(view: &DnsView, name: &str, qtype: RecordType) -> Message {
    ask(view, &cfg(), &qe(name, qtype), UDP)
}

fn ips(m: &Message) -> BTreeSet<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(A(ip)) => Some(IpAddr::V4(*ip)),
            RData::AAAA(AAAA(ip)) => Some(IpAddr::V6(*ip)),
            _ => None,
        })
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn set(addrs: &[&str]) -> BTreeSet<IpAddr> {
    addrs.iter().map(|s| ip(s)).collect()
}

fn soa_of(m: &Message) -> &hickory_proto::rr::rdata::SOA {
    assert_eq!(m.authorities.len(), 1, "one SOA in authority: {m:?}");
    match &m.authorities[0].data {
        RData::SOA(soa) => soa,
        other => panic!("not an SOA: {other:?}"),
    }
}

fn srvs(m: &Message) -> Vec<&hickory_proto::rr::rdata::SRV> {
    m.answers
        .iter()
        .map(|r| match &r.data {
            RData::SRV(s) => s,
            other => panic!("not SRV: {other:?}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Services

#[test]
fn a_answers_only_healthy_instances() {
    let v = fixture();
    let m = udp(&v, "web.service.consul.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert!(!m.metadata.recursion_available);
    assert!(m.metadata.recursion_desired);
    assert_eq!(m.metadata.id, 0x4242);
    assert_eq!(m.queries[0].name().to_ascii(), "web.service.consul.");
    // Passing and warning; never critical, maintenance or on a critical node.
    assert_eq!(
        ips(&m),
        set(&["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"])
    );
    assert!(m.answers.iter().all(|r| r.ttl == 0));
    assert!(m
        .answers
        .iter()
        .all(|r| r.name.to_ascii() == "web.service.consul."));

    let only = DnsSettings {
        only_passing: true,
        ..cfg()
    };
    let m = ask(&v, &only, &qe("web.service.consul.", RecordType::A), UDP);
    assert_eq!(ips(&m), set(&["10.0.0.1", "10.0.0.2", "10.0.0.3"]));
}

#[test]
fn names_are_case_insensitive_and_echoed() {
    let v = fixture();
    let m = udp(&v, "WeB.SeRvIcE.CoNsUl.", RecordType::A);
    assert_eq!(ips(&m).len(), 4);
    assert_eq!(m.queries[0].name().to_ascii(), "WeB.SeRvIcE.CoNsUl.");
    assert_eq!(m.answers[0].name.to_ascii(), "WeB.SeRvIcE.CoNsUl.");
    let m = udp(&v, "PRIMARY.DB.service.dc1.consul.", RecordType::A);
    assert_eq!(ips(&m), set(&["10.1.0.1"]));
    let m = udp(&v, "n1.NODE.consul.", RecordType::A);
    assert_eq!(ips(&m), set(&["10.0.0.1"]));
    let m = udp(&v, "server1.node.consul.", RecordType::A);
    assert_eq!(ips(&m), set(&["10.0.0.9"]));
}

#[test]
fn tag_and_rfc2782_lookups() {
    let v = fixture();
    let m = udp(&v, "v1.db.service.consul.", RecordType::A);
    assert_eq!(ips(&m), set(&["10.1.0.1", "10.0.0.2"]));
    let m = udp(&v, "replica.db.service.consul.", RecordType::A);
    assert_eq!(ips(&m), set(&["10.0.0.2"]));
    let m = udp(&v, "nope.db.service.consul.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    let m = udp(&v, "_db._replica.service.consul.", RecordType::SRV);
    assert_eq!(srvs(&m).len(), 1);
    assert_eq!(srvs(&m)[0].target.to_ascii(), "n2.node.dc1.consul.");
    let m = udp(&v, "_db._tcp.service.consul.", RecordType::SRV);
    assert_eq!(srvs(&m).len(), 2, "_tcp does not filter");
    let m = udp(&v, "_db._tcp.consul.", RecordType::SRV);
    assert_eq!(srvs(&m).len(), 2, "service label optional for SRV");
    let m = udp(&v, "_db._primary.service.dc1.consul.", RecordType::SRV);
    assert_eq!(srvs(&m).len(), 1);
}

#[test]
fn srv_answers_with_additional_records() {
    let v = fixture();
    let m = udp(&v, "web.service.consul.", RecordType::SRV);
    let answers = srvs(&m);
    assert_eq!(answers.len(), 4);
    let mut targets = BTreeSet::new();
    for s in &answers {
        assert_eq!(s.priority, 1);
        assert_eq!(s.port, 8080);
        targets.insert(s.target.to_ascii());
        // n4 is warning: its warning weight (1), not its passing one (10).
        assert_eq!(s.weight, 1);
        // Every target has its address in the additional section, under the same name.
        let extra: Vec<&Record> = m
            .additionals
            .iter()
            .filter(|r| r.name == s.target && r.record_type() == RecordType::A)
            .collect();
        assert_eq!(extra.len(), 1, "additional A for {}", s.target);
    }
    assert_eq!(
        targets,
        ["n1", "n2", "n3", "n4"]
            .iter()
            .map(|n| format!("{n}.node.dc1.consul."))
            .collect()
    );
    // Node meta of n1 as TXT in the additional section (enable_additional_node_meta_txt).
    let txt: Vec<&Record> = m
        .additionals
        .iter()
        .filter(|r| r.record_type() == RecordType::TXT)
        .collect();
    assert_eq!(txt.len(), 1);
    assert_eq!(txt[0].name.to_ascii(), "n1.node.dc1.consul.");
    match &txt[0].data {
        RData::TXT(t) => assert_eq!(&*t.txt_data[0], b"rack=r1"),
        other => panic!("{other:?}"),
    }
    let no_meta = DnsSettings {
        enable_additional_node_meta_txt: false,
        ..cfg()
    };
    let m = ask(
        &v,
        &no_meta,
        &qe("web.service.consul.", RecordType::SRV),
        UDP,
    );
    assert!(m
        .additionals
        .iter()
        .all(|r| r.record_type() == RecordType::A));

    // A service address that differs from the node's: HEX.addr target.
    let m = udp(&v, "primary.db.service.consul.", RecordType::SRV);
    let s = srvs(&m)[0];
    assert_eq!(s.target.to_ascii(), "0a010001.addr.dc1.consul.");
    assert_eq!(s.port, 5432);
    assert_eq!(m.additionals.len(), 1);
    assert_eq!(m.additionals[0].name, s.target);
    assert_eq!(
        m.additionals[0].data,
        RData::A(A("10.1.0.1".parse().unwrap()))
    );
}

#[test]
fn srv_weights_follow_health() {
    let mut v = DnsView::new("dc1", "consul.", None);
    v.set_service(
        "w",
        vec![
            Instance {
                weights_passing: 10,
                weights_warning: 3,
                ..inst("a", "10.0.0.1", 1)
            },
            Instance {
                weights_passing: 10,
                weights_warning: 3,
                node_health: Health::Warning,
                ..inst("b", "10.0.0.2", 1)
            },
        ],
    );
    let m = udp(&v, "w.service.consul.", RecordType::SRV);
    let weights: BTreeMap<String, u16> = srvs(&m)
        .iter()
        .map(|s| (s.target.to_ascii(), s.weight))
        .collect();
    assert_eq!(weights["a.node.dc1.consul."], 10);
    assert_eq!(weights["b.node.dc1.consul."], 3);
}

#[test]
fn duplicate_instances_are_answered_once() {
    let mut v = DnsView::new("dc1", "consul.", None);
    v.set_service(
        "dup",
        vec![
            inst("a", "10.0.0.1", 1),
            inst("a", "10.0.0.1", 1),
            inst("a", "10.0.0.1", 2),
        ],
    );
    let m = udp(&v, "dup.service.consul.", RecordType::A);
    assert_eq!(m.answers.len(), 1);
    let m = udp(&v, "dup.service.consul.", RecordType::SRV);
    assert_eq!(m.answers.len(), 2, "same node, two ports");
    assert_eq!(m.additionals.len(), 1, "the node's address once");
}

#[test]
fn nxdomain_versus_nodata() {
    let v = fixture();
    for name in [
        "missing.service.consul.",
        "down.service.consul.",
        "missing.node.consul.",
        "geo.query.consul.",
        "web.connect.consul.",
        "junk.consul.",
        "consul.",
        "web.service.dc2.consul.",
        "n1.node.dc2.consul.",
        "web.service.peer1.peer.consul.",
    ] {
        let m = udp(&v, name, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(m.answers.is_empty());
        assert!(m.metadata.authoritative);
        let soa = soa_of(&m);
        assert_eq!(m.authorities[0].name.to_ascii(), "consul.");
        assert_eq!(soa.mname.to_ascii(), "ns.consul.");
        assert_eq!(soa.rname.to_ascii(), "hostmaster.consul.");
        assert_eq!(
            (soa.refresh, soa.retry, soa.expire, soa.minimum),
            (3600, 600, 86400, 0)
        );
        assert!(soa.serial > 1_600_000_000, "serial is the current time");
        assert_eq!(m.authorities[0].ttl, 0);
    }
    // Known names without records of the asked type: NOERROR, no answer, SOA.
    for (name, qtype) in [
        ("web.service.consul.", RecordType::AAAA),
        ("web.service.consul.", RecordType::MX),
        ("v6.service.consul.", RecordType::A),
        ("n1.node.consul.", RecordType::AAAA),
        ("n1.node.consul.", RecordType::MX),
        ("c000020a.addr.consul.", RecordType::AAAA),
    ] {
        let m = udp(&v, name, qtype);
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NoError,
            "{name} {qtype}"
        );
        assert!(m.answers.is_empty(), "{name} {qtype}");
        soa_of(&m);
    }
    let m = udp(&v, "web.service.consul.", RecordType::A);
    assert!(m.authorities.is_empty());
}

#[test]
fn any_txt_and_ipv6() {
    let v = fixture();
    let m = udp(&v, "v6.service.consul.", RecordType::AAAA);
    assert_eq!(ips(&m), set(&["2001:db8::6"]));
    let m = udp(&v, "v6.service.consul.", RecordType::ANY);
    assert_eq!(ips(&m), set(&["2001:db8::6"]));
    let m = udp(&v, "web.service.consul.", RecordType::ANY);
    assert_eq!(ips(&m).len(), 4);
    let m = udp(&v, "v6.service.consul.", RecordType::SRV);
    assert_eq!(m.additionals[0].record_type(), RecordType::AAAA);
}

#[test]
fn hostname_addresses_are_cnames() {
    let v = fixture();
    let m = udp(&v, "ext.service.consul.", RecordType::A);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(
        m.answers[0].data,
        RData::CNAME(hickory_proto::rr::rdata::CNAME(
            Name::from_ascii("db.example.com.").unwrap()
        ))
    );
    let m = udp(&v, "ext.service.consul.", RecordType::SRV);
    assert_eq!(srvs(&m)[0].target.to_ascii(), "db.example.com.");
    assert!(m.additionals.is_empty());
    let m = udp(&v, "cname-node.node.consul.", RecordType::A);
    assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
}

#[test]
fn node_lookups() {
    let v = fixture();
    let m = udp(&v, "n1.node.consul.", RecordType::A);
    assert_eq!(ips(&m), set(&["10.0.0.1"]));
    assert_eq!(m.answers[0].name.to_ascii(), "n1.node.consul.");
    // Meta in the additional section by default, RFC 1464 encoded unless rfc1035-.
    let texts: BTreeSet<Vec<u8>> = m
        .additionals
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(t.txt_data.concat()),
            _ => None,
        })
        .collect();
    assert_eq!(
        texts,
        [b"rack=r1".to_vec(), b"plain text".to_vec()]
            .into_iter()
            .collect()
    );
    let m = udp(&v, "n1.node.dc1.consul.", RecordType::TXT);
    assert_eq!(m.answers.len(), 2);
    assert!(m.answers.iter().all(|r| r.record_type() == RecordType::TXT));
    let m = udp(&v, "n1.node.consul.", RecordType::ANY);
    assert_eq!(m.answers.len(), 3);
    let no_meta = DnsSettings {
        enable_additional_node_meta_txt: false,
        ..cfg()
    };
    let m = ask(&v, &no_meta, &q("n1.node.consul.", RecordType::A), UDP);
    assert!(m.additionals.is_empty());
    let m = udp(&v, "n6a.node.consul.", RecordType::AAAA);
    assert_eq!(ips(&m), set(&["2001:db8::6"]));
}

#[test]
fn addr_lookups() {
    let v = fixture();
    let m = udp(&v, "c000020a.addr.dc1.consul.", RecordType::A);
    assert_eq!(ips(&m), set(&["192.0.2.10"]));
    let m = udp(
        &v,
        "20010db8000000000000000000000001.addr.consul.",
        RecordType::AAAA,
    );
    assert_eq!(ips(&m), set(&["2001:db8::1"]));
    let m = udp(&v, "xyz.addr.consul.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn ttls_from_settings() {
    let v = fixture();
    let mut ttls = BTreeMap::new();
    ttls.insert("*".to_owned(), Duration::from_secs(5));
    ttls.insert("we*".to_owned(), Duration::from_secs(7));
    ttls.insert("web".to_owned(), Duration::from_secs(30));
    ttls.insert("d*".to_owned(), Duration::from_secs(11));
    let c = DnsSettings {
        node_ttl: Duration::from_secs(10),
        service_ttl: ttls,
        ..cfg()
    };
    let ttl_of = |name: &str, qtype| {
        let m = ask(&v, &c, &q(name, qtype), UDP);
        let ttls: BTreeSet<u32> = m
            .answers
            .iter()
            .chain(&m.additionals)
            .map(|r| r.ttl)
            .collect();
        ttls
    };
    assert_eq!(ttl_of("web.service.consul.", RecordType::A), [30].into());
    assert_eq!(ttl_of("web.service.consul.", RecordType::SRV), [30].into());
    assert_eq!(ttl_of("db.service.consul.", RecordType::A), [11].into());
    assert_eq!(ttl_of("ext.service.consul.", RecordType::A), [5].into());
    assert_eq!(ttl_of("n1.node.consul.", RecordType::A), [10].into());
    assert_eq!(ttl_of("c000020a.addr.consul.", RecordType::A), [10].into());
    // Default: 0 everywhere.
    let m = udp(&v, "web.service.consul.", RecordType::SRV);
    assert!(m.answers.iter().chain(&m.additionals).all(|r| r.ttl == 0));
}

#[test]
fn answers_are_shuffled() {
    let mut v = DnsView::new("dc1", "consul.", None);
    v.set_service("many", web_like(8));
    let expected: BTreeSet<IpAddr> = (0..8).map(|i| ip(&format!("10.9.0.{}", i + 1))).collect();
    let mut orders = BTreeSet::new();
    let mut firsts = BTreeSet::new();
    for _ in 0..200 {
        let m = ask(
            &v,
            &cfg(),
            &q_edns("many.service.consul.", RecordType::A, 4096),
            UDP,
        );
        assert_eq!(ips(&m), expected, "always the same set");
        let order: Vec<String> = m.answers.iter().map(|r| format!("{:?}", r.data)).collect();
        firsts.insert(order[0].clone());
        orders.insert(order);
    }
    // 200 draws of 8! orders: a fixed order would show up as one.
    assert!(orders.len() > 100, "{} distinct orders", orders.len());
    assert_eq!(firsts.len(), 8, "every instance comes first sometimes");
}

#[test]
fn udp_answer_limit_and_a_record_limit() {
    let v = fixture();
    let name = "six.service.consul.";
    // Plain 512-byte UDP: udp_answer_limit (3) records, no TC unless enable_truncate.
    let m = ask(&v, &cfg(), &q(name, RecordType::A), UDP);
    assert_eq!(m.answers.len(), 3);
    assert!(!m.metadata.truncation);
    let trunc = DnsSettings {
        enable_truncate: true,
        ..cfg()
    };
    let m = ask(&v, &trunc, &q(name, RecordType::A), UDP);
    assert_eq!(m.answers.len(), 3);
    assert!(m.metadata.truncation);
    let m = ask(&v, &trunc, &q(name, RecordType::SRV), UDP);
    assert_eq!(m.answers.len(), 3);
    assert_eq!(m.additionals.len(), 3, "extras follow the kept answers");
    assert!(m.metadata.truncation);
    let limit20 = DnsSettings {
        udp_answer_limit: 20,
        ..cfg()
    };
    let mut v12 = DnsView::new("dc1", "consul.", None);
    v12.set_service("twelve", web_like(12));
    let m = ask(
        &v12,
        &limit20,
        &q("twelve.service.consul.", RecordType::A),
        UDP,
    );
    assert_eq!(m.answers.len(), 8, "capped at 8 as Consul");
    // EDNS and TCP: everything.
    let m = ask(&v, &trunc, &q_edns(name, RecordType::A, 1232), UDP);
    assert_eq!(m.answers.len(), 6);
    assert!(!m.metadata.truncation);
    let m = ask(&v, &trunc, &q(name, RecordType::A), Transport::Tcp);
    assert_eq!(m.answers.len(), 6);
    // a_record_limit applies to every transport, without TC.
    let a2 = DnsSettings {
        a_record_limit: 2,
        enable_truncate: true,
        ..cfg()
    };
    let m = ask(&v, &a2, &q(name, RecordType::A), Transport::Tcp);
    assert_eq!(m.answers.len(), 2);
    assert!(!m.metadata.truncation);
    let m = ask(&v, &a2, &q(name, RecordType::SRV), Transport::Tcp);
    assert_eq!(m.answers.len(), 6, "not for SRV");
}

#[test]
fn answers_are_cut_to_the_edns_size() {
    let mut v = DnsView::new("dc1", "consul.", None);
    v.set_service("big", web_like(300));
    let trunc = DnsSettings {
        enable_truncate: true,
        ..cfg()
    };
    for (qtype, size) in [
        (RecordType::A, 1232u16),
        (RecordType::SRV, 1232),
        (RecordType::SRV, 4096),
        (RecordType::A, 600),
    ] {
        let bytes = answer(&v, &trunc, &q_edns("big.service.consul.", qtype, size), UDP).unwrap();
        assert!(
            bytes.len() <= usize::from(size),
            "{qtype} {size}: {}",
            bytes.len()
        );
        let m = Message::from_vec(&bytes).unwrap();
        assert!(m.metadata.truncation);
        assert!(m.answers.len() > 3, "{qtype} {size}: {}", m.answers.len());
        assert!(m.edns.is_some(), "OPT kept");
        if qtype == RecordType::SRV {
            let targets: BTreeSet<Name> = srvs(&m).iter().map(|s| s.target.clone()).collect();
            let extra: BTreeSet<Name> = m.additionals.iter().map(|r| r.name.clone()).collect();
            assert_eq!(targets, extra, "additional records match the kept answers");
        }
    }
    // Without enable_truncate the answer is cut silently.
    let bytes = answer(
        &v,
        &cfg(),
        &q_edns("big.service.consul.", RecordType::A, 1232),
        UDP,
    )
    .unwrap();
    let m = Message::from_vec(&bytes).unwrap();
    assert!(bytes.len() <= 1232 && !m.metadata.truncation);
    // The server's own cap wins over the client's EDNS size.
    let bytes = answer(
        &v,
        &cfg(),
        &q_edns("big.service.consul.", RecordType::A, 4096),
        Transport::Udp { max_size: 700 },
    )
    .unwrap();
    assert!(bytes.len() <= 700);
    // TCP: all of them.
    let m = ask(
        &v,
        &cfg(),
        &q("big.service.consul.", RecordType::SRV),
        Transport::Tcp,
    );
    assert_eq!(m.answers.len(), 300);
    assert_eq!(m.additionals.len(), 300);
}

#[test]
fn edns_is_echoed() {
    let v = fixture();
    let mut m = query_msg("web.service.consul.", RecordType::A);
    let mut e = Edns::new();
    e.set_max_payload(1400);
    e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
        ip("198.51.100.0"),
        24,
        0,
    )));
    m.set_edns(e);
    let r = ask(&v, &cfg(), &m.to_vec().unwrap(), UDP);
    let edns = r.edns.expect("OPT in the answer");
    assert_eq!(edns.max_payload(), 1400);
    match edns.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet) {
        Some(EdnsOption::Subnet(s)) => {
            assert_eq!(s.addr(), ip("198.51.100.0"));
            assert_eq!(s.source_prefix(), 24);
            assert_eq!(s.scope_prefix(), 0);
        }
        other => panic!("{other:?}"),
    }
    let r = ask(&v, &cfg(), &q("web.service.consul.", RecordType::A), UDP);
    assert!(r.edns.is_none(), "no OPT without one in the query");
    let r = ask(
        &v,
        &cfg(),
        &q_edns("missing.service.consul.", RecordType::A, 1232),
        UDP,
    );
    assert!(r.edns.is_some());
}

#[test]
fn soa_ns_and_alt_domain() {
    let v = fixture();
    let m = udp(&v, "consul.", RecordType::SOA);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].record_type(), RecordType::SOA);
    assert_eq!(m.authorities.len(), 2, "NS for both servers");
    assert_eq!(m.additionals.len(), 2, "with glue");
    let m = udp(&v, "consul.", RecordType::NS);
    let ns: BTreeSet<String> = m
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::NS(n) => n.0.to_ascii(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        ns,
        ["server1.node.dc1.consul.", "server2.node.dc1.consul."]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert!(m.answers.iter().all(|r| r.name.to_ascii() == "consul."));
    assert_eq!(m.additionals.len(), 2);

    let m = udp(&v, "web.service.alt.test.", RecordType::SRV);
    assert!(srvs(&m)
        .iter()
        .all(|s| s.target.to_ascii().ends_with(".node.dc1.alt.test.")));
    let m = udp(&v, "missing.service.ALT.test.", RecordType::A);
    assert_eq!(m.authorities[0].name.to_ascii(), "alt.test.");
    assert_eq!(soa_of(&m).mname.to_ascii(), "ns.alt.test.");
    let m = udp(&v, "consul.", RecordType::AXFR);
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
}

#[test]
fn other_names_and_ptr() {
    let v = fixture();
    // No recursors: REFUSED, without AA.
    let m = udp(&v, "example.com.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(!m.metadata.authoritative);
    assert_eq!(m.queries.len(), 1);
    // With recursors, answer() alone can only say that forwarding failed.
    let rec = DnsSettings {
        recursors: vec!["127.0.0.1:9".parse().unwrap()],
        ..cfg()
    };
    let m = ask(&v, &rec, &q("example.com.", RecordType::A), UDP);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(m.metadata.recursion_available);
    match handle(&v, &rec, &q("example.com.", RecordType::A), UDP).0 {
        Outcome::Recurse(f) => assert_eq!(f.id(), 0x4242),
        other => panic!("{other:?}"),
    }
    let m = ask(&v, &rec, &q("web.service.consul.", RecordType::A), UDP);
    assert!(m.metadata.recursion_available);

    let m = udp(&v, "1.0.0.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        m.answers[0].data,
        RData::PTR(hickory_proto::rr::rdata::PTR(
            Name::from_ascii("n1.node.dc1.consul.").unwrap()
        ))
    );
    let m = udp(&v, "1.0.1.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(
        m.answers[0].data,
        RData::PTR(hickory_proto::rr::rdata::PTR(
            Name::from_ascii("db.service.dc1.consul.").unwrap()
        ))
    );
    let m = udp(&v, "77.0.0.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

#[test]
fn view_updates_replace_and_remove() {
    let mut v = fixture();
    v.set_service("web", vec![inst("z", "10.7.7.7", 1)]);
    assert_eq!(
        ips(&udp(&v, "web.service.consul.", RecordType::A)),
        set(&["10.7.7.7"])
    );
    v.set_service("WEB", vec![]);
    let m = udp(&v, "web.service.consul.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    v.remove_node("N1");
    let m = udp(&v, "n1.node.consul.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = udp(&v, "1.0.0.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

// ---------------------------------------------------------------------------------------
// Malformed input

fn expect_header_only(v: &DnsView, query: &[u8], rcode: u8) {
    let bytes = answer(v, &cfg(), query, UDP).expect("a reply");
    assert_eq!(bytes.len(), 12);
    assert_eq!(&bytes[..2], &query[..2]);
    assert!(bytes[2] & 0x80 != 0);
    assert_eq!(bytes[3] & 0x0f, rcode);
}

#[test]
fn malformed_queries() {
    let v = fixture();
    for n in 0..12 {
        assert!(
            answer(&v, &cfg(), &vec![0u8; n], UDP).is_none(),
            "{n} bytes"
        );
    }
    let good = q("web.service.consul.", RecordType::A);
    // A response is never answered.
    let mut resp = good.clone();
    resp[2] |= 0x80;
    assert!(answer(&v, &cfg(), &resp, UDP).is_none());
    // Other opcodes: NOTIMP.
    let mut update = good.clone();
    update[2] = (update[2] & 0x87) | (5 << 3);
    expect_header_only(&v, &update, 4);
    // Question count other than one, a cut question: FORMERR.
    let mut two = good.clone();
    two[5] = 2;
    expect_header_only(&v, &two, 1);
    let mut zero = good.clone();
    zero[5] = 0;
    expect_header_only(&v, &zero, 1);
    expect_header_only(&v, &good[..good.len() - 3], 1);
    let mut answers = good.clone();
    answers[7] = 5;
    expect_header_only(&v, &answers, 1);
    // Trailing bytes after a whole query are ignored, as most servers do.
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[1, 2, 3]);
    assert!(answer(&v, &cfg(), &trailing, UDP).is_some());
}

#[test]
fn random_bytes_never_panic() {
    let v = fixture();
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let good = q_edns("_web._tcp.service.consul.", RecordType::SRV, 1232);
    for round in 0..20_000 {
        let bytes: Vec<u8> = if round % 2 == 0 {
            let n = rng.usize(0..600);
            (0..n).map(|_| rng.u8(..)).collect()
        } else {
            // Mutations of a real query reach deeper into the decoder.
            let mut b = good.clone();
            for _ in 0..rng.usize(1..6) {
                let i = rng.usize(..b.len());
                b[i] = rng.u8(..);
            }
            b.truncate(rng.usize(1..=b.len()));
            b
        };
        for t in [UDP, Transport::Tcp] {
            if let Some(reply) = answer(&v, &cfg(), &bytes, t) {
                assert!(reply.len() >= 12);
                assert_eq!(&reply[..2], &bytes[..2], "the query's ID");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The loops, over loopback

mod net {
    use super::*;
    use futures::channel::{mpsc, oneshot};
    use futures::future::{select, Either};
    use futures::StreamExt;
    use glommio::net::{TcpListener, UdpSocket};
    use std::cell::RefCell;
    use std::io::{Read, Write};
    use std::pin::pin;

    const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

    enum Cmd {
        SetService(String, Vec<Instance>, std::sync::mpsc::Sender<()>),
    }

    pub(super) struct TestServer {
        pub udp: SocketAddr,
        pub tcp: SocketAddr,
        cmds: mpsc::UnboundedSender<Cmd>,
        stop: Option<oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl TestServer {
        pub fn start(view: DnsView, cfg: DnsSettings) -> TestServer {
            let (addr_tx, addr_rx) = std::sync::mpsc::channel();
            let (stop, stop_rx) = oneshot::channel::<()>();
            let (cmds, mut cmd_rx) = mpsc::unbounded::<Cmd>();
            let thread = std::thread::spawn(move || {
                let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                    .io_memory(1 << 20)
                    .make()
                    .expect("executor");
                ex.run(async move {
                    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
                    let udp = UdpSocket::bind(local).expect("bind udp");
                    let tcp = TcpListener::bind(local).expect("bind tcp");
                    addr_tx
                        .send((udp.local_addr().unwrap(), tcp.local_addr().unwrap()))
                        .unwrap();
                    let view = Rc::new(RefCell::new(view));
                    let cfg = Rc::new(cfg);
                    let control = {
                        let view = Rc::clone(&view);
                        async move {
                            while let Some(Cmd::SetService(name, insts, ack)) = cmd_rx.next().await
                            {
                                view.borrow_mut().set_service(&name, insts);
                                let _ = ack.send(());
                            }
                        }
                    };
                    glommio::spawn_local(control).detach();
                    let u = glommio::spawn_local(serve_udp(udp, Rc::clone(&view), Rc::clone(&cfg)));
                    let t = glommio::spawn_local(serve_tcp(tcp, view, cfg));
                    let servers = pin!(futures::future::join(u, t));
                    match select(servers, stop_rx).await {
                        Either::Left((res, _)) => panic!("servers returned: {res:?}"),
                        Either::Right(_) => {}
                    }
                });
            });
            let (udp, tcp) = addr_rx.recv().expect("server addresses");
            TestServer {
                udp,
                tcp,
                cmds,
                stop: Some(stop),
                thread: Some(thread),
            }
        }

        pub fn set_service(&self, name: &str, insts: Vec<Instance>) {
            let (tx, rx) = std::sync::mpsc::channel();
            self.cmds
                .unbounded_send(Cmd::SetService(name.into(), insts, tx))
                .unwrap();
            rx.recv_timeout(CLIENT_TIMEOUT).expect("view updated");
        }

        pub fn udp_client(&self) -> std::net::UdpSocket {
            let s = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            s.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
            s.connect(self.udp).unwrap();
            s
        }

        pub fn udp_ask(&self, query: &[u8]) -> Message {
            let s = self.udp_client();
            s.send(query).unwrap();
            recv_msg(&s)
        }

        pub fn tcp_client(&self) -> std::net::TcpStream {
            let s = std::net::TcpStream::connect(self.tcp).unwrap();
            s.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
            s
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    pub(super) fn recv_msg(s: &std::net::UdpSocket) -> Message {
        let mut buf = vec![0u8; 65535];
        let n = s.recv(&mut buf).expect("an answer in time");
        Message::from_vec(&buf[..n]).expect("decodable")
    }

    pub(super) fn tcp_send(s: &mut std::net::TcpStream, query: &[u8]) {
        let mut frame = (query.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(query);
        s.write_all(&frame).unwrap();
    }

    pub(super) fn tcp_recv(s: &mut std::net::TcpStream) -> Message {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).expect("a length in time");
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut body).unwrap();
        Message::from_vec(&body).expect("decodable")
    }

    /// A recursor on a std thread: answers `A 203.0.113.7` to everything, or `rcode`
    /// with no answer, or nothing at all (`None`).
    pub(super) struct FakeRecursor {
        pub addr: SocketAddr,
        pub hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    pub(super) fn fake_udp_recursor(rcode: Option<ResponseCode>) -> FakeRecursor {
        let sock = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = sock.local_addr().unwrap();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65535];
            while let Ok((n, peer)) = sock.recv_from(&mut buf) {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(rcode) = rcode else { continue };
                if let Some(reply) = fake_reply(&buf[..n], rcode) {
                    let _ = sock.send_to(&reply, peer);
                }
            }
        });
        FakeRecursor { addr, hits }
    }

    pub(super) fn fake_tcp_recursor() -> SocketAddr {
        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                let mut len = [0u8; 2];
                if s.read_exact(&mut len).is_err() {
                    continue;
                }
                let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if s.read_exact(&mut body).is_err() {
                    continue;
                }
                if let Some(reply) = fake_reply(&body, ResponseCode::NoError) {
                    let mut frame = (reply.len() as u16).to_be_bytes().to_vec();
                    frame.extend_from_slice(&reply);
                    let _ = s.write_all(&frame);
                }
            }
        });
        addr
    }

    fn fake_reply(query: &[u8], rcode: ResponseCode) -> Option<Vec<u8>> {
        let req = Message::from_vec(query).ok()?;
        let mut m = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
        m.metadata.response_code = rcode;
        m.metadata.recursion_available = true;
        m.add_queries(req.queries.clone());
        if rcode == ResponseCode::NoError {
            m.add_answer(Record::from_rdata(
                req.queries[0].name().clone(),
                60,
                RData::A(A("203.0.113.7".parse().unwrap())),
            ));
        }
        m.to_vec().ok()
    }
}

use net::*;

#[test]
fn udp_and_tcp_loops_answer() {
    let server = TestServer::start(fixture(), cfg());
    let m = server.udp_ask(&qe("web.service.consul.", RecordType::A));
    assert_eq!(ips(&m).len(), 4);
    let m = server.udp_ask(&q("n1.node.dc1.consul.", RecordType::A));
    assert_eq!(ips(&m), set(&["10.0.0.1"]));

    // Several queries on one TCP connection, answered in order.
    let mut s = server.tcp_client();
    for (i, name) in [
        "web.service.consul.",
        "missing.service.consul.",
        "db.service.consul.",
    ]
    .iter()
    .enumerate()
    {
        let mut m = query_msg(name, RecordType::SRV);
        m.metadata.id = 100 + i as u16;
        tcp_send(&mut s, &m.to_vec().unwrap());
        let r = tcp_recv(&mut s);
        assert_eq!(r.metadata.id, 100 + i as u16);
        let expect = if i == 1 {
            ResponseCode::NXDomain
        } else {
            ResponseCode::NoError
        };
        assert_eq!(r.metadata.response_code, expect);
    }
    // Two queries written back to back before reading.
    tcp_send(&mut s, &q("web.service.consul.", RecordType::A));
    tcp_send(&mut s, &q("six.service.consul.", RecordType::A));
    assert_eq!(ips(&tcp_recv(&mut s)).len(), 4);
    assert_eq!(ips(&tcp_recv(&mut s)).len(), 6);
}

#[test]
fn truncation_then_tcp_fallback() {
    let mut v = DnsView::new("dc1", "consul.", None);
    v.set_service("many", web_like(40));
    let server = TestServer::start(
        v,
        DnsSettings {
            enable_truncate: true,
            ..cfg()
        },
    );
    for qtype in [RecordType::A, RecordType::SRV] {
        let m = server.udp_ask(&q("many.service.consul.", qtype));
        assert!(m.metadata.truncation, "{qtype}");
        assert_eq!(m.answers.len(), 3);
        let mut s = server.tcp_client();
        tcp_send(&mut s, &q("many.service.consul.", qtype));
        let m = tcp_recv(&mut s);
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 40);
    }
}

#[test]
fn garbage_never_stops_the_server() {
    let server = TestServer::start(fixture(), cfg());
    let s = server.udp_client();
    let mut rng = fastrand::Rng::with_seed(7);
    // Batches small enough that no socket buffer overflows: after each, a real query
    // must still be answered.
    for batch in 0..10u16 {
        for i in 0..50 {
            let n = if i % 5 == 0 {
                rng.usize(0..12)
            } else {
                rng.usize(12..300)
            };
            let bytes: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            s.send(&bytes).unwrap();
        }
        let mut m = Message::from_vec(&qe("web.service.consul.", RecordType::A)).unwrap();
        m.metadata.id = 0xbe00 + batch;
        s.send(&m.to_vec().unwrap()).unwrap();
        // Skip the FORMERR/NOTIMP/REFUSED replies to the garbage.
        loop {
            if let Some(r) = recv_msg_lenient(&s) {
                if r.metadata.id == 0xbe00 + batch && r.queries.len() == 1 {
                    assert_eq!(ips(&r).len(), 4);
                    break;
                }
            }
        }
    }
    // TCP: a garbage frame, a short frame, then a real query on a fresh connection.
    let mut t = server.tcp_client();
    tcp_send(&mut t, &[1, 2, 3]);
    tcp_send(&mut t, &q("web.service.consul.", RecordType::A));
    let r = tcp_recv(&mut t);
    assert_eq!(
        ips(&r).len(),
        4,
        "short frames are dropped, the next one answered"
    );
    let mut t = server.tcp_client();
    t.write_all(&[0, 50, 1, 2]).unwrap();
    drop(t);
    let mut t = server.tcp_client();
    tcp_send(&mut t, &q("web.service.consul.", RecordType::A));
    assert_eq!(ips(&tcp_recv(&mut t)).len(), 4);
}

/// Waits (up to 10 s) for a condition another thread makes true.
fn eventually(cond: impl Fn() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("condition never became true");
}

fn recv_msg_lenient(s: &std::net::UdpSocket) -> Option<Message> {
    let mut buf = vec![0u8; 65535];
    let n = s.recv(&mut buf).expect("replies keep coming");
    Message::from_vec(&buf[..n]).ok()
}

#[test]
fn live_view_updates_are_seen() {
    let server = TestServer::start(fixture(), cfg());
    server.set_service("web", vec![inst("x", "10.5.5.5", 1)]);
    let m = server.udp_ask(&qe("web.service.consul.", RecordType::A));
    assert_eq!(ips(&m), set(&["10.5.5.5"]));
    server.set_service("web", vec![]);
    let m = server.udp_ask(&qe("web.service.consul.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn forwarding_tries_recursors_in_turn() {
    let silent = fake_udp_recursor(None);
    let failing = fake_udp_recursor(Some(ResponseCode::ServFail));
    let good = fake_udp_recursor(Some(ResponseCode::NoError));
    let server = TestServer::start(
        fixture(),
        DnsSettings {
            recursors: vec![silent.addr, failing.addr, good.addr],
            recursor_timeout: Duration::from_millis(300),
            ..cfg()
        },
    );
    let mut m = query_msg("www.example.com.", RecordType::A);
    m.metadata.id = 0x1234;
    let r = server.udp_ask(&m.to_vec().unwrap());
    assert_eq!(r.metadata.id, 0x1234, "the client's ID is restored");
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(ips(&r), set(&["203.0.113.7"]));
    assert_eq!(r.queries[0].name().to_ascii(), "www.example.com.");
    use std::sync::atomic::Ordering::SeqCst;
    eventually(|| silent.hits.load(SeqCst) == 1);
    eventually(|| failing.hits.load(SeqCst) == 1);
    assert_eq!(good.hits.load(SeqCst), 1);
    // Names in our domain never leave the agent.
    server.udp_ask(&qe("web.service.consul.", RecordType::A));
    assert_eq!(good.hits.load(SeqCst), 1);
    // PTR of an unknown address goes to the recursors too.
    let r = server.udp_ask(&q("9.9.9.9.in-addr.arpa.", RecordType::PTR));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(good.hits.load(SeqCst), 2);
}

#[test]
fn forwarding_failure_is_servfail() {
    let silent = fake_udp_recursor(None);
    let failing = fake_udp_recursor(Some(ResponseCode::Refused));
    let server = TestServer::start(
        fixture(),
        DnsSettings {
            recursors: vec![failing.addr, silent.addr],
            recursor_timeout: Duration::from_millis(200),
            ..cfg()
        },
    );
    let r = server.udp_ask(&q_edns("www.example.com.", RecordType::A, 1232));
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert!(r.metadata.recursion_available);
    assert!(r.edns.is_some());
    // An NXDOMAIN from a recursor is an answer, not a failure.
    let nx = fake_udp_recursor(Some(ResponseCode::NXDomain));
    let server = TestServer::start(
        fixture(),
        DnsSettings {
            recursors: vec![nx.addr],
            ..cfg()
        },
    );
    let r = server.udp_ask(&q("nothing.example.", RecordType::A));
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn forwarding_over_tcp_and_concurrently() {
    let tcp_rec = fake_tcp_recursor();
    let udp_rec = fake_udp_recursor(Some(ResponseCode::NoError));
    // Same port for both is not guaranteed, so use two servers.
    let server = TestServer::start(
        fixture(),
        DnsSettings {
            recursors: vec![tcp_rec],
            ..cfg()
        },
    );
    let mut s = server.tcp_client();
    tcp_send(&mut s, &q("www.example.com.", RecordType::A));
    let r = tcp_recv(&mut s);
    assert_eq!(ips(&r), set(&["203.0.113.7"]));
    // Many UDP forwards in flight at once, each answered to its own ID.
    let server = TestServer::start(
        fixture(),
        DnsSettings {
            recursors: vec![udp_rec.addr],
            ..cfg()
        },
    );
    let c = server.udp_client();
    for id in 0..50u16 {
        let mut m = query_msg(&format!("h{id}.example.com."), RecordType::A);
        m.metadata.id = id;
        c.send(&m.to_vec().unwrap()).unwrap();
    }
    let mut seen = BTreeSet::new();
    for _ in 0..50 {
        let r = recv_msg(&c);
        assert_eq!(
            r.queries[0].name().to_ascii(),
            format!("h{}.example.com.", r.metadata.id)
        );
        seen.insert(r.metadata.id);
    }
    assert_eq!(seen.len(), 50);
}

#[test]
fn forwarding_is_bounded() {
    let silent = fake_udp_recursor(None);
    let server = TestServer::start(
        fixture(),
        DnsSettings {
            recursors: vec![silent.addr],
            recursor_timeout: Duration::from_secs(30),
            max_inflight_recursions: 2,
            ..cfg()
        },
    );
    let c = server.udp_client();
    for id in 0..3u16 {
        let mut m = query_msg("slow.example.com.", RecordType::A);
        m.metadata.id = id;
        c.send(&m.to_vec().unwrap()).unwrap();
    }
    // The third finds both slots taken: SERVFAIL at once, while the others still wait.
    let r = recv_msg(&c);
    assert_eq!(r.metadata.id, 2);
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    // The loop keeps answering local names meanwhile.
    let m = server.udp_ask(&qe("web.service.consul.", RecordType::A));
    assert_eq!(ips(&m).len(), 4);
}
