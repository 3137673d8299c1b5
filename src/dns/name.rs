//! Query name -> what is being asked, following Consul's DNS naming rules.
//!
//! Matching is case-insensitive and every string in a [`Lookup`] is lower case. The
//! domain (or `alt_domain`, the longer one when both match) is stripped, then the labels
//! are scanned from the right for the first kind label (`service`, `node`, `query`,
//! `addr`, `connect`, `ingress`, `virtual`): what is left of it names the thing, what is
//! right of it is the locality (`DC`, or pairs like `NS.ns`, `AP.ap`, `PEER.peer`,
//! `DC.dc`). For SRV questions the `service` label may be left out of RFC 2782 names
//! (`_web._tcp.consul`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::{Name, RecordType};

/// Which of our domains the question used; answers are named in the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryDomain {
    Primary,
    Alt,
}

/// What a question asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// `[TAG.]NAME.service[.DC].DOMAIN`; a tag may itself contain dots.
    Service {
        name: String,
        tag: Option<String>,
        dc: Option<String>,
        peer: Option<String>,
    },
    /// `_NAME._TAG.service[.DC].DOMAIN`, or `_NAME._TAG[.DC].DOMAIN` for SRV;
    /// `_tcp` means "no tag filter".
    Rfc2782 {
        name: String,
        tag: Option<String>,
        dc: Option<String>,
        peer: Option<String>,
    },
    /// `NODE.node[.DC].DOMAIN`; a node name may contain dots.
    Node {
        name: String,
        dc: Option<String>,
        peer: Option<String>,
    },
    /// `HEX.addr[.DC].DOMAIN`: an IPv4 (8 hex digits) or IPv6 (32) address.
    Addr { ip: IpAddr, dc: Option<String> },
    /// `NAME.query[.DC].DOMAIN` or `_NAME._TAG.query[.DC].DOMAIN`.
    PreparedQuery { name: String, dc: Option<String> },
    /// The domain itself, or an SOA/NS question about any name inside it.
    Apex,
    /// A name under `arpa.`; the address when it spells a whole one.
    Ptr(Option<IpAddr>),
    /// `connect`, `ingress` and `virtual` names, which this agent does not serve.
    Unsupported,
    /// Inside our domain but not a name Consul answers: NXDOMAIN.
    Invalid,
    /// Outside our domains: for the recursors.
    Other,
}

/// A parsed question name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub lookup: Lookup,
    /// `None` for [`Lookup::Other`] and [`Lookup::Ptr`].
    pub domain: Option<QueryDomain>,
}

/// Most labels a valid name can have (255 bytes, at least two per label).
const MAX_LABELS: usize = 128;

/// Parses question `name` of type `qtype` against `domain` and `alt_domain`
/// (fully qualified, e.g. `consul.`).
pub fn parse(name: &Name, qtype: RecordType, domain: &str, alt_domain: Option<&str>) -> Parsed {
    let mut buf: [&[u8]; MAX_LABELS] = [&[]; MAX_LABELS];
    let mut n = 0;
    for label in name.iter() {
        if n == MAX_LABELS {
            return Parsed {
                lookup: Lookup::Other,
                domain: None,
            };
        }
        buf[n] = label;
        n += 1;
    }
    let labels = &buf[..n];

    let primary = suffix_len(labels, domain);
    let alt = alt_domain.and_then(|d| suffix_len(labels, d));
    let (strip, which) = match (primary, alt) {
        (Some(p), Some(a)) if a > p => (a, QueryDomain::Alt),
        (Some(p), _) => (p, QueryDomain::Primary),
        (None, Some(a)) => (a, QueryDomain::Alt),
        (None, None) => {
            let lookup = if labels
                .last()
                .is_some_and(|l| l.eq_ignore_ascii_case(b"arpa"))
            {
                Lookup::Ptr(parse_arpa(labels))
            } else {
                Lookup::Other
            };
            return Parsed {
                lookup,
                domain: None,
            };
        }
    };
    let rest = &labels[..labels.len() - strip];
    let lookup = if matches!(qtype, RecordType::SOA | RecordType::NS) {
        Lookup::Apex
    } else if rest.is_empty() {
        // Consul answers only SOA and NS at the apex; anything else there is a bad name.
        Lookup::Invalid
    } else {
        dispatch(rest, qtype)
    };
    Parsed {
        lookup,
        domain: Some(which),
    }
}

/// Number of labels of `domain` when `labels` ends with them.
fn suffix_len(labels: &[&[u8]], domain: &str) -> Option<usize> {
    let d = domain.trim_end_matches('.');
    if d.is_empty() {
        return None;
    }
    let count = d.split('.').count();
    if count > labels.len() {
        return None;
    }
    let tail = &labels[labels.len() - count..];
    let same = d
        .split('.')
        .zip(tail)
        .all(|(a, b)| a.as_bytes().eq_ignore_ascii_case(b));
    same.then_some(count)
}

fn lower(label: &[u8]) -> String {
    String::from_utf8_lossy(label).to_ascii_lowercase()
}

fn join(labels: &[&[u8]]) -> String {
    let mut s = String::new();
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        s.push_str(&lower(l));
    }
    s
}

fn is_kind(label: &[u8]) -> bool {
    [
        &b"service"[..],
        b"connect",
        b"virtual",
        b"ingress",
        b"node",
        b"query",
        b"addr",
    ]
    .iter()
    .any(|k| label.eq_ignore_ascii_case(k))
}

fn dispatch(labels: &[&[u8]], qtype: RecordType) -> Lookup {
    let mut found = None;
    for i in (0..labels.len()).rev() {
        if is_kind(labels[i]) {
            found = Some((lower(labels[i]), &labels[..i], &labels[i + 1..]));
            break;
        }
        // RFC 2782 names may leave out `service` in SRV questions.
        if qtype == RecordType::SRV && labels[i].first() == Some(&b'_') {
            found = Some(("service".to_owned(), &labels[..=i], &labels[i + 1..]));
            break;
        }
    }
    let Some((kind, parts, suffixes)) = found else {
        return Lookup::Invalid;
    };
    if parts.is_empty() {
        return Lookup::Invalid;
    }
    match kind.as_str() {
        "service" => {
            let Some(loc) = locality(suffixes) else {
                return Lookup::Invalid;
            };
            let n = parts.len();
            if n == 2 && parts[0].first() == Some(&b'_') && parts[1].first() == Some(&b'_') {
                let tag = lower(&parts[1][1..]);
                Lookup::Rfc2782 {
                    name: lower(&parts[0][1..]),
                    tag: (!tag.is_empty() && tag != "tcp").then_some(tag),
                    dc: loc.dc,
                    peer: loc.peer,
                }
            } else {
                let tag = join(&parts[..n - 1]);
                Lookup::Service {
                    name: lower(parts[n - 1]),
                    tag: (!tag.is_empty()).then_some(tag),
                    dc: loc.dc,
                    peer: loc.peer,
                }
            }
        }
        "node" => match locality(suffixes) {
            Some(loc) => Lookup::Node {
                name: join(parts),
                dc: loc.dc,
                peer: loc.peer,
            },
            None => Lookup::Invalid,
        },
        "query" => {
            let dc = match suffixes {
                [] => None,
                [dc] => Some(lower(dc)),
                _ => return Lookup::Invalid,
            };
            let n = parts.len();
            let name =
                if n >= 2 && parts[0].first() == Some(&b'_') && parts[n - 1].first() == Some(&b'_')
                {
                    // The last label is the protocol; the rest is the query name or ID.
                    join(&parts[..n - 1])[1..].to_owned()
                } else {
                    join(parts)
                };
            Lookup::PreparedQuery { name, dc }
        }
        "addr" => {
            let dc = match suffixes {
                [dc] => Some(lower(dc)),
                _ => None,
            };
            match parts {
                [hex] => match decode_hex_ip(hex) {
                    Some(ip) => Lookup::Addr { ip, dc },
                    None => Lookup::Invalid,
                },
                _ => Lookup::Invalid,
            }
        }
        _ => match locality(suffixes) {
            Some(_) => Lookup::Unsupported,
            None => Lookup::Invalid,
        },
    }
}

#[derive(Debug, Default)]
struct Locality {
    dc: Option<String>,
    peer: Option<String>,
}

/// `[]`, `[DC]`, or up to three `VALUE.KEY` pairs with keys `ns`, `ap`, `peer`, `dc`.
/// Namespaces and partitions other than `default` do not exist on this agent.
fn locality(labels: &[&[u8]]) -> Option<Locality> {
    match labels.len() {
        0 => Some(Locality::default()),
        1 => Some(Locality {
            dc: Some(lower(labels[0])),
            peer: None,
        }),
        2 | 4 | 6 => {
            let mut loc = Locality::default();
            for pair in labels.chunks(2) {
                let value = lower(pair[0]);
                match lower(pair[1]).as_str() {
                    "ns" | "ap" if value == "default" => {}
                    "peer" => loc.peer = Some(value),
                    "dc" => loc.dc = Some(value),
                    _ => return None,
                }
            }
            if loc.dc.is_some() && loc.peer.is_some() {
                return None;
            }
            Some(loc)
        }
        _ => None,
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn decode_hex_ip(hex: &[u8]) -> Option<IpAddr> {
    let mut bytes = [0u8; 16];
    let len = match hex.len() {
        8 => 4,
        32 => 16,
        _ => return None,
    };
    for (i, pair) in hex.chunks(2).enumerate() {
        bytes[i] = hex_val(pair[0])? << 4 | hex_val(pair[1])?;
    }
    Some(if len == 4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(bytes))
    })
}

/// `D.C.B.A.in-addr.arpa` and the 32 nibbles of `ip6.arpa`, reversed.
fn parse_arpa(labels: &[&[u8]]) -> Option<IpAddr> {
    let n = labels.len();
    if n < 2 {
        return None;
    }
    let zone = labels[n - 2];
    let body = &labels[..n - 2];
    if zone.eq_ignore_ascii_case(b"in-addr") && body.len() == 4 {
        let mut octets = [0u8; 4];
        for (i, l) in body.iter().rev().enumerate() {
            let s = std::str::from_utf8(l).ok()?;
            if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            octets[i] = s.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    if zone.eq_ignore_ascii_case(b"ip6") && body.len() == 32 {
        let mut bytes = [0u8; 16];
        for (i, l) in body.iter().rev().enumerate() {
            let [c] = l else { return None };
            let v = hex_val(*c)?;
            bytes[i / 2] |= if i % 2 == 0 { v << 4 } else { v };
        }
        return Some(IpAddr::V6(Ipv6Addr::from(bytes)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, qtype: RecordType) -> Parsed {
        parse(
            &Name::from_ascii(name).unwrap(),
            qtype,
            "consul.",
            Some("alt.example."),
        )
    }

    fn l(name: &str) -> Lookup {
        p(name, RecordType::A).lookup
    }

    fn svc(name: &str, tag: Option<&str>, dc: Option<&str>) -> Lookup {
        Lookup::Service {
            name: name.into(),
            tag: tag.map(Into::into),
            dc: dc.map(Into::into),
            peer: None,
        }
    }

    #[test]
    fn service_forms() {
        assert_eq!(l("web.service.consul."), svc("web", None, None));
        assert_eq!(l("WEB.Service.CONSUL"), svc("web", None, None));
        assert_eq!(l("v1.web.service.consul."), svc("web", Some("v1"), None));
        assert_eq!(
            l("a.b.web.service.dc2.consul."),
            svc("web", Some("a.b"), Some("dc2"))
        );
        assert_eq!(
            l("web.service.default.ns.dc1.dc.consul."),
            svc("web", None, Some("dc1"))
        );
        assert_eq!(l("web.service.team.ns.consul."), Lookup::Invalid);
        assert_eq!(
            l("web.service.other.peer.consul."),
            Lookup::Service {
                name: "web".into(),
                tag: None,
                dc: None,
                peer: Some("other".into())
            }
        );
        assert_eq!(l("web.service.a.peer.b.dc.consul."), Lookup::Invalid);
        assert_eq!(l("web.service.a.b.c.consul."), Lookup::Invalid);
        assert_eq!(l("service.consul."), Lookup::Invalid);
    }

    #[test]
    fn rfc2782_forms() {
        let r = |name: &str, tag: Option<&str>, dc: Option<&str>| Lookup::Rfc2782 {
            name: name.into(),
            tag: tag.map(Into::into),
            dc: dc.map(Into::into),
            peer: None,
        };
        assert_eq!(l("_web._tcp.service.consul."), r("web", None, None));
        assert_eq!(
            l("_web._V1.service.dc1.consul."),
            r("web", Some("v1"), Some("dc1"))
        );
        assert_eq!(
            p("_web._tcp.consul.", RecordType::SRV).lookup,
            r("web", None, None)
        );
        assert_eq!(
            p("_web._tcp.dc3.consul.", RecordType::SRV).lookup,
            r("web", None, Some("dc3"))
        );
        // Without SRV the service label is required.
        assert_eq!(l("_web._tcp.consul."), Lookup::Invalid);
    }

    #[test]
    fn node_addr_query_forms() {
        assert_eq!(
            l("Foo.node.consul."),
            Lookup::Node {
                name: "foo".into(),
                dc: None,
                peer: None
            }
        );
        assert_eq!(
            l("foo.bar.node.dc1.consul."),
            Lookup::Node {
                name: "foo.bar".into(),
                dc: Some("dc1".into()),
                peer: None
            }
        );
        assert_eq!(
            l("c000020A.addr.dc1.consul."),
            Lookup::Addr {
                ip: "192.0.2.10".parse().unwrap(),
                dc: Some("dc1".into())
            }
        );
        assert_eq!(
            l("20010db8000000000000000000000001.addr.consul."),
            Lookup::Addr {
                ip: "2001:db8::1".parse().unwrap(),
                dc: None
            }
        );
        assert_eq!(l("c00002.addr.consul."), Lookup::Invalid);
        assert_eq!(l("zz00020a.addr.consul."), Lookup::Invalid);
        assert_eq!(l("a.c000020a.addr.consul."), Lookup::Invalid);
        assert_eq!(
            l("geo.query.consul."),
            Lookup::PreparedQuery {
                name: "geo".into(),
                dc: None
            }
        );
        assert_eq!(
            l("_geo._tcp.query.dc2.consul."),
            Lookup::PreparedQuery {
                name: "geo".into(),
                dc: Some("dc2".into())
            }
        );
        assert_eq!(l("web.connect.consul."), Lookup::Unsupported);
        assert_eq!(l("web.ingress.consul."), Lookup::Unsupported);
    }

    #[test]
    fn domains_apex_and_others() {
        assert_eq!(p("consul.", RecordType::SOA).lookup, Lookup::Apex);
        assert_eq!(
            p("web.service.consul.", RecordType::NS).lookup,
            Lookup::Apex
        );
        assert_eq!(l("consul."), Lookup::Invalid);
        assert_eq!(l("nothing.consul."), Lookup::Invalid);
        assert_eq!(l("example.com."), Lookup::Other);
        assert_eq!(l("consul.example.com."), Lookup::Other);
        assert_eq!(l("."), Lookup::Other);
        let alt = p("web.service.ALT.example.", RecordType::A);
        assert_eq!(alt.lookup, svc("web", None, None));
        assert_eq!(alt.domain, Some(QueryDomain::Alt));
        assert_eq!(
            p("web.service.consul.", RecordType::A).domain,
            Some(QueryDomain::Primary)
        );
    }

    #[test]
    fn arpa_names() {
        assert_eq!(
            l("10.2.0.192.in-addr.arpa."),
            Lookup::Ptr(Some("192.0.2.10".parse().unwrap()))
        );
        assert_eq!(l("2.0.192.in-addr.arpa."), Lookup::Ptr(None));
        assert_eq!(l("300.2.0.192.in-addr.arpa."), Lookup::Ptr(None));
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6.arpa.";
        assert_eq!(l(v6), Lookup::Ptr(Some("2001:db8::1".parse().unwrap())));
    }
}
