//! One query in, one answer out: decode with hickory-proto, answer from the [`DnsView`]
//! by Consul's rules, encode, trim to the transport's size.
//!
//! Consul's rules kept here:
//! - service lookups return instances that are passing (or warning, unless
//!   `only_passing`), never critical or in maintenance, in random order; SRV answers point
//!   at `NODE.node.DC.DOMAIN` (or `HEX.addr.DC.DOMAIN` when the service address is not
//!   the node's) with the address, and node meta as TXT, in the additional section;
//! - an unknown name, or a service with no usable instance, is NXDOMAIN; a known name with
//!   nothing of the asked type is NOERROR with no answer (NODATA); both carry the SOA
//!   (`ns.DOMAIN`, `hostmaster.DOMAIN`, serial = now) in the authority section;
//! - plain 512-byte UDP answers keep at most `udp_answer_limit` (max 8) records, every UDP
//!   answer is cut to the client's EDNS size, TCP answers to 64 KiB; TC is set on a cut
//!   answer only with `enable_truncate`;
//! - names outside our domains go to the recursors, or get REFUSED when there are none;
//!   `arpa.` names are answered from node and service addresses first.
//!
//! Headers shorter than 12 bytes and responses (QR set) are dropped; other opcodes get
//! NOTIMP; a header with the wrong section counts or a body that does not decode gets a
//! header-only FORMERR, as Consul's DNS library does.

use std::cell::RefCell;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RecordType};

use super::name::{self, Lookup, QueryDomain};
use super::settings::{DnsSettings, MAX_UDP_ANSWER_LIMIT};
use super::view::{self, DnsView, Family, NameKind, ServiceEntry, SoaNames, Target};
use super::wire::{self, Data, Head, NameRef, Owner, ReplyEdns, Rr};

/// Largest UDP answer ever sent, whatever the client advertises: a 64 KiB datagram less
/// IP and UDP headers (Consul's bound).
pub const MAX_UDP_PAYLOAD: u16 = u16::MAX - 68;
/// Size of a UDP answer for clients without EDNS (RFC 1035).
const PLAIN_UDP_SIZE: usize = 512;
/// Largest DNS message over TCP (2-byte length prefix).
const MAX_TCP_SIZE: usize = u16::MAX as usize;
/// More records than these cannot fit in 64 KiB even compressed (Consul's bounds).
const MAX_TCP_ANSWERS: usize = 4096;
const MAX_TCP_SRV_ANSWERS: usize = 1024;
/// NS answers name at most this many servers.
const MAX_NAMESERVERS: usize = 3;
const HEADER_LEN: usize = 12;

/// How the query arrived, which bounds the answer's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `max_size` caps the client's EDNS buffer size (use [`MAX_UDP_PAYLOAD`]).
    Udp {
        max_size: u16,
    },
    Tcp,
}

/// A query for a name outside our domains (or an unknown `arpa.` address) that the
/// server forwards to the recursors.
#[derive(Debug, Clone)]
pub struct Forward {
    request: Message,
    ra: bool,
}

impl Forward {
    pub fn id(&self) -> u16 {
        self.request.metadata.id
    }

    /// The question, to check that an upstream reply answers it.
    pub fn query(&self) -> &Query {
        &self.request.queries[0]
    }

    /// The answer when every recursor failed: SERVFAIL, with EDNS when the query had it.
    pub fn servfail(&self) -> Vec<u8> {
        let mut head = reply_head(&self.request, ResponseCode::ServFail);
        head.ra = self.ra;
        simple_reply(&self.request, &head, response_edns(&self.request).as_ref())
    }
}

/// What to do with one incoming message.
#[derive(Debug)]
pub enum Outcome {
    Reply(Vec<u8>),
    /// Not a query (too short, or a response): no answer at all.
    Drop,
    Recurse(Forward),
}

/// What kind of query a message was, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// A name in our domain (`consul.dns.domain_query`).
    Domain,
    /// A name under `arpa.` (`consul.dns.ptr_query`).
    Ptr,
    /// A name for the recursors.
    Other,
    /// Dropped, FORMERR or NOTIMP.
    Malformed,
}

/// The answer to `query`, or `None` when it must be dropped. Names for the recursors are
/// answered as if every recursor had failed; the server uses [`handle`] to forward them.
pub fn answer(
    view: &DnsView,
    cfg: &DnsSettings,
    query: &[u8],
    transport: Transport,
) -> Option<Vec<u8>> {
    match handle(view, cfg, query, transport).0 {
        Outcome::Reply(bytes) => Some(bytes),
        Outcome::Drop => None,
        Outcome::Recurse(fwd) => Some(fwd.servfail()),
    }
}

/// Decides what to do with one incoming message.
pub fn handle(
    view: &DnsView,
    cfg: &DnsSettings,
    query: &[u8],
    transport: Transport,
) -> (Outcome, QueryKind) {
    if query.len() < HEADER_LEN || query[2] & 0x80 != 0 {
        return (Outcome::Drop, QueryKind::Malformed);
    }
    let malformed = |rcode| {
        (
            Outcome::Reply(header_only(query, rcode)),
            QueryKind::Malformed,
        )
    };
    if (query[2] >> 3) & 0x0f != 0 {
        return malformed(ResponseCode::NotImp);
    }
    let count = |i: usize| u16::from_be_bytes([query[i], query[i + 1]]);
    // Exactly one question; NOTIFY and IXFR may carry one record in the answer and
    // authority sections, EDNS and TSIG two in the additional one.
    if count(4) != 1 || count(6) > 1 || count(8) > 1 || count(10) > 2 {
        return malformed(ResponseCode::FormErr);
    }
    let Ok(request) = Message::from_vec(query) else {
        return malformed(ResponseCode::FormErr);
    };
    let Some(q) = request.queries.first() else {
        return malformed(ResponseCode::FormErr);
    };
    let parsed = name::parse(
        q.name(),
        q.query_type(),
        &cfg.domain,
        cfg.alt_domain.as_deref(),
    );
    let ra = cfg.recursion_available();
    match (parsed.lookup, parsed.domain) {
        (Lookup::Other, _) => {
            let outcome = if ra {
                Outcome::Recurse(Forward { request, ra })
            } else {
                Outcome::Reply(refused(&request))
            };
            (outcome, QueryKind::Other)
        }
        (Lookup::Ptr(ip), _) => {
            let wanted = matches!(q.query_type(), RecordType::PTR | RecordType::ANY);
            let target = ip
                .filter(|_| wanted)
                .and_then(|ip| ptr_target(view, cfg, &ip));
            let outcome = match target {
                Some(target) => {
                    let mut r = Responder::new(view, cfg, &request, false, transport);
                    r.push_unit(
                        Rr {
                            owner: Owner::Question,
                            ttl: 0,
                            data: Data::Ptr(NameRef::Own(Box::new(target))),
                        },
                        &mut std::iter::empty(),
                    );
                    Outcome::Reply(r.finish())
                }
                None if ra => Outcome::Recurse(Forward { request, ra }),
                // Consul's recursion step with no recursors: SERVFAIL, "recursion available".
                None => Outcome::Reply(Forward { request, ra: true }.servfail()),
            };
            (outcome, QueryKind::Ptr)
        }
        (lookup, which) => {
            let alt = which == Some(QueryDomain::Alt);
            let mut r = Responder::new(view, cfg, &request, alt, transport);
            r.lookup(&lookup);
            (Outcome::Reply(r.finish()), QueryKind::Domain)
        }
    }
}

fn ptr_target(view: &DnsView, cfg: &DnsSettings, ip: &IpAddr) -> Option<Name> {
    if let Some(node) = view.node_by_addr(ip) {
        return view::node_fqdn(node, &cfg.datacenter, view.domain());
    }
    let service = view.service_by_addr(ip)?;
    view::service_fqdn(service, &cfg.datacenter, view.domain())
}

/// A 12-byte reply to an unusable query: same ID, opcode and RD, no sections.
fn header_only(query: &[u8], rcode: ResponseCode) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    out[0] = query[0];
    out[1] = query[1];
    out[2] = 0x80 | (query[2] & 0x79);
    out[3] = rcode.low();
    out
}

/// RD and CD are copied from the query (RFC 6895).
fn reply_head(request: &Message, rcode: ResponseCode) -> Head {
    let md = &request.metadata;
    Head {
        id: md.id,
        opcode: u8::from(OpCode::Query),
        aa: false,
        tc: false,
        rd: md.recursion_desired,
        ra: false,
        cd: md.checking_disabled,
        rcode,
    }
}

fn simple_reply(request: &Message, head: &Head, edns: Option<&ReplyEdns>) -> Vec<u8> {
    let mut buf = Vec::with_capacity(128);
    wire::write_message(
        &mut buf,
        head,
        request.queries.first(),
        &[],
        &[],
        &[],
        edns,
        true,
    );
    buf
}

/// REFUSED as Consul's DNS library sends it for names nobody handles: no AA, no EDNS.
fn refused(request: &Message) -> Vec<u8> {
    simple_reply(request, &reply_head(request, ResponseCode::Refused), None)
}

/// The OPT record of a reply: the client's own UDP size and, when it sent one, its client
/// subnet with scope 0 (the answer does not depend on the client's address).
fn response_edns(request: &Message) -> Option<ReplyEdns> {
    let req = request.edns.as_ref()?;
    let subnet = match req.option(EdnsCode::Subnet) {
        Some(EdnsOption::Subnet(s)) => {
            let (family, octets) = match s.addr() {
                IpAddr::V4(v4) => {
                    let mut a = [0u8; 16];
                    a[..4].copy_from_slice(&v4.octets());
                    (1u16, a)
                }
                IpAddr::V6(v6) => (2u16, v6.octets()),
            };
            let max = if family == 1 { 4 } else { 16 };
            let len = usize::from(s.source_prefix()).div_ceil(8).min(max);
            Some((family, s.source_prefix(), 0, octets, len))
        }
        _ => None,
    };
    Some(ReplyEdns {
        payload: req.max_payload(),
        subnet,
    })
}

/// Per-thread buffers reused by every query, so answering allocates little.
#[derive(Default)]
struct Scratch {
    ids: Vec<u32>,
    seen: Vec<(u64, u16, u32)>,
    targets: Vec<u64>,
    ips: Vec<IpAddr>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Builds the reply to one in-domain (or PTR) question.
///
/// Answer records are grouped in units (an answer and the additional records that go
/// with it) so that trimming removes whole units and keeps the additional section in
/// step with the answers, as Consul does.
struct Responder<'a> {
    view: &'a DnsView,
    cfg: &'a DnsSettings,
    request: &'a Message,
    q: &'a Query,
    names: &'a SoaNames,
    rcode: ResponseCode,
    answers: Vec<Rr<'a>>,
    extras: Vec<Rr<'a>>,
    /// End of each unit in `answers` and `extras`.
    units: Vec<(usize, usize)>,
    /// Additional records of no unit, dropped first when trimming.
    tail: Vec<Rr<'a>>,
    authority: Vec<Rr<'a>>,
    /// Records were left out because of a count limit.
    trimmed: bool,
    /// Most units a reply may hold on this transport.
    unit_cap: usize,
    size_limit: usize,
}

impl<'a> Responder<'a> {
    fn new(
        view: &'a DnsView,
        cfg: &'a DnsSettings,
        request: &'a Message,
        alt: bool,
        transport: Transport,
    ) -> Self {
        let q = &request.queries[0];
        let (size_limit, unit_cap) = match transport {
            Transport::Udp { max_size } => {
                let asked = request
                    .edns
                    .as_ref()
                    .map_or(PLAIN_UDP_SIZE, |e| usize::from(e.max_payload()));
                let limit = asked.min(usize::from(max_size)).max(PLAIN_UDP_SIZE);
                let cap = if limit == PLAIN_UDP_SIZE {
                    cfg.udp_answer_limit.clamp(1, MAX_UDP_ANSWER_LIMIT) as usize
                } else {
                    usize::MAX
                };
                (limit, cap)
            }
            Transport::Tcp => {
                let cap = if q.query_type() == RecordType::SRV {
                    MAX_TCP_SRV_ANSWERS
                } else {
                    MAX_TCP_ANSWERS
                };
                (MAX_TCP_SIZE, cap)
            }
        };
        Responder {
            view,
            cfg,
            request,
            q,
            names: view.soa_names(alt),
            rcode: ResponseCode::NoError,
            answers: Vec::new(),
            extras: Vec::new(),
            units: Vec::new(),
            tail: Vec::new(),
            authority: Vec::new(),
            trimmed: false,
            unit_cap,
            size_limit,
        }
    }

    fn qtype(&self) -> RecordType {
        self.q.query_type()
    }

    fn push_unit(&mut self, answer: Rr<'a>, extras: &mut dyn Iterator<Item = Rr<'a>>) {
        self.answers.push(answer);
        self.extras.extend(extras);
        self.units.push((self.answers.len(), self.extras.len()));
    }

    /// Whether one more unit may be added; notes that the answer was cut when not.
    fn room(&mut self) -> bool {
        if self.units.len() >= self.unit_cap {
            self.trimmed = true;
            return false;
        }
        true
    }

    fn lookup(&mut self, lookup: &Lookup) {
        if matches!(self.qtype(), RecordType::AXFR | RecordType::IXFR) {
            self.rcode = ResponseCode::NotImp;
            return;
        }
        match lookup {
            Lookup::Service {
                name,
                tag,
                dc,
                peer,
            }
            | Lookup::Rfc2782 {
                name,
                tag,
                dc,
                peer,
            } => {
                if peer.is_some() || !self.local_dc(dc.as_deref()) {
                    return self.nxdomain();
                }
                self.service(name, tag.as_deref());
            }
            Lookup::Node { name, dc, peer } => {
                if peer.is_some() || !self.local_dc(dc.as_deref()) {
                    return self.nxdomain();
                }
                self.node(name);
            }
            Lookup::Addr { ip, .. } => self.addr(*ip),
            Lookup::Apex => self.apex(),
            // Prepared queries are not stored by this agent yet: an unknown query is
            // NXDOMAIN in Consul too.
            Lookup::PreparedQuery { .. }
            | Lookup::Unsupported
            | Lookup::Invalid
            | Lookup::Ptr(_)
            | Lookup::Other => self.nxdomain(),
        }
    }

    fn local_dc(&self, dc: Option<&str>) -> bool {
        dc.is_none_or(|dc| dc.eq_ignore_ascii_case(&self.cfg.datacenter))
    }

    fn nxdomain(&mut self) {
        self.rcode = ResponseCode::NXDomain;
        self.answers.clear();
        self.extras.clear();
        self.units.clear();
        self.tail.clear();
    }

    fn soa(&self) -> Rr<'a> {
        let serial = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |t| t.as_secs() as u32);
        let soa = &self.cfg.soa;
        let names = self.names;
        Rr {
            owner: Owner::Name(NameRef::Ref(&names.domain)),
            ttl: soa.min_ttl,
            data: Data::Soa {
                mname: &names.mname,
                rname: &names.rname,
                serial,
                refresh: soa.refresh,
                retry: soa.retry,
                expire: soa.expire,
                minimum: soa.min_ttl,
            },
        }
    }

    fn service(&mut self, name: &str, tag: Option<&str>) {
        let view = self.view;
        let Some(entry) = view.service(name) else {
            return self.nxdomain();
        };
        let base = if self.cfg.only_passing {
            &entry.passing
        } else {
            &entry.usable
        };
        let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
        scratch.ids.clear();
        match tag {
            None => scratch.ids.extend_from_slice(base),
            Some(tag) => scratch.ids.extend(
                base.iter()
                    .copied()
                    .filter(|&i| entry.cold[i as usize].has_tag(tag)),
            ),
        }
        if scratch.ids.is_empty() {
            self.nxdomain();
        } else {
            let ttl = self.cfg.service_ttl_secs(name);
            if self.qtype() == RecordType::SRV {
                self.srv_units(entry, &mut scratch, ttl);
            } else {
                self.address_units(entry, &mut scratch, ttl);
            }
        }
        SCRATCH.with(|s| *s.borrow_mut() = scratch);
    }

    fn srv_units(&mut self, entry: &'a ServiceEntry, scratch: &mut Scratch, ttl: u32) {
        let meta_txt = self.cfg.enable_additional_node_meta_txt;
        let Scratch {
            ids, seen, targets, ..
        } = scratch;
        seen.clear();
        targets.clear();
        for i in Shuffled::new(ids) {
            let i = i as usize;
            let srv = &entry.srv[i];
            let dup = seen.iter().any(|&(h, port, j)| {
                h == srv.dedup
                    && port == srv.port
                    && entry.cold[j as usize].dedup_key == entry.cold[i].dedup_key
            });
            if dup {
                continue;
            }
            let any = &entry.any[i];
            let target = match srv.name_kind {
                NameKind::None => continue,
                NameKind::InDomain => NameRef::Wire {
                    labels: entry.srv_labels(i),
                    suffix: Some(&self.names.domain),
                },
                NameKind::Absolute => NameRef::Wire {
                    labels: entry.srv_labels(i),
                    suffix: None,
                },
            };
            if !self.room() {
                return;
            }
            // A target already answered has its address records in the message already.
            let first = !targets.contains(&srv.target_key);
            if first {
                targets.push(srv.target_key);
            }
            seen.push((srv.dedup, srv.port, i as u32));
            let record = Rr {
                owner: Owner::Question,
                ttl,
                data: Data::Srv {
                    weight: srv.weight,
                    port: srv.port,
                    target: target.clone(),
                },
            };
            let mut extras: [Option<Rr<'a>>; 1] = [None];
            let mut meta: &'a [hickory_proto::rr::rdata::TXT] = &[];
            if first {
                if let Target::Ip { ip, node_target } = any {
                    extras[0] = Some(address_rr(Owner::Name(target.clone()), ttl, *ip));
                    if *node_target && meta_txt && srv.has_meta {
                        meta = &entry.cold[i].meta;
                    }
                }
            }
            let meta_rrs = meta.iter().map(|t| Rr {
                owner: Owner::Name(target.clone()),
                ttl,
                data: Data::Txt(t),
            });
            self.push_unit(record, &mut extras.into_iter().flatten().chain(meta_rrs));
        }
    }

    fn address_units(&mut self, entry: &'a ServiceEntry, scratch: &mut Scratch, ttl: u32) {
        let qtype = self.qtype();
        let family = match qtype {
            RecordType::A => Family::V4,
            RecordType::AAAA => Family::V6,
            _ => Family::Any,
        };
        let limit = match self.cfg.a_record_limit {
            0 => usize::MAX,
            n => n as usize,
        };
        let targets = entry.targets(family);
        let Scratch { ids, ips, .. } = scratch;
        ips.clear();
        let mut cname: Option<Rr<'a>> = None;
        for i in Shuffled::new(ids) {
            let ip = match &targets[i as usize] {
                Target::None => continue,
                Target::Ip { ip, .. } => *ip,
                Target::Host(h) => match h.node_ip {
                    Some(ip) if h.host.eq_ignore_root_case(self.q.name()) => ip,
                    _ => {
                        if cname.is_none() {
                            cname = Some(Rr {
                                owner: Owner::Question,
                                ttl,
                                data: Data::Cname(NameRef::Ref(&h.host)),
                            });
                        }
                        continue;
                    }
                },
            };
            if !ip_fits(qtype, &ip) || ips.contains(&ip) {
                continue;
            }
            if !self.room() {
                return;
            }
            ips.push(ip);
            self.push_unit(
                address_rr(Owner::Question, ttl, ip),
                &mut std::iter::empty(),
            );
            if self.units.len() >= limit {
                return;
            }
        }
        if self.units.is_empty() {
            if let Some(cname) = cname {
                self.push_unit(cname, &mut std::iter::empty());
            }
        }
    }

    fn node(&mut self, name: &str) {
        let view = self.view;
        let Some(node) = view.node(name) else {
            return self.nxdomain();
        };
        let qtype = self.qtype();
        if !matches!(
            qtype,
            RecordType::A | RecordType::AAAA | RecordType::ANY | RecordType::TXT
        ) {
            return;
        }
        let ttl = self.cfg.node_ttl_secs();
        if qtype != RecordType::TXT {
            let family = match qtype {
                RecordType::A => Family::V4,
                RecordType::AAAA => Family::V6,
                _ => Family::Any,
            };
            match node.target(family) {
                Target::Ip { ip, .. } if ip_fits(qtype, ip) => {
                    self.push_unit(
                        address_rr(Owner::Question, ttl, *ip),
                        &mut std::iter::empty(),
                    );
                }
                Target::Host(h) => self.push_unit(
                    Rr {
                        owner: Owner::Question,
                        ttl,
                        data: Data::Cname(NameRef::Ref(&h.host)),
                    },
                    &mut std::iter::empty(),
                ),
                Target::Ip { .. } | Target::None => {}
            }
        }
        let in_answer = matches!(qtype, RecordType::TXT | RecordType::ANY);
        if !in_answer && !self.cfg.enable_additional_node_meta_txt {
            return;
        }
        for t in node.meta.iter() {
            let rr = Rr {
                owner: Owner::Question,
                ttl,
                data: Data::Txt(t),
            };
            if in_answer {
                self.push_unit(rr, &mut std::iter::empty());
            } else {
                self.tail.push(rr);
            }
        }
    }

    fn addr(&mut self, ip: IpAddr) {
        let rr = address_rr(Owner::Question, self.cfg.node_ttl_secs(), ip);
        if ip_fits(self.qtype(), &ip) && self.qtype() != RecordType::TXT {
            self.push_unit(rr, &mut std::iter::empty());
        } else {
            self.tail.push(rr);
        }
    }

    /// SOA or NS asked of a name in our domain.
    fn apex(&mut self) {
        let (ns, glue) = self.nameservers();
        if self.qtype() == RecordType::SOA {
            let soa = self.soa();
            self.push_unit(soa, &mut std::iter::empty());
            self.authority = ns;
            self.tail = glue;
        } else {
            for (rr, glue) in ns.into_iter().zip(glue) {
                self.push_unit(rr, &mut std::iter::once(glue));
            }
        }
    }

    /// NS records for up to three random servers (the `consul` service's nodes) and
    /// their addresses.
    fn nameservers(&self) -> (Vec<Rr<'a>>, Vec<Rr<'a>>) {
        let mut ns = Vec::new();
        let mut glue = Vec::new();
        let Some(entry) = self.view.service("consul") else {
            return (ns, glue);
        };
        let base = if self.cfg.only_passing {
            &entry.passing
        } else {
            &entry.usable
        };
        let mut ids = base.clone();
        let ttl = self.cfg.node_ttl_secs();
        let mut seen: Vec<&str> = Vec::new();
        for i in Shuffled::new(&mut ids) {
            let cold = &entry.cold[i as usize];
            let valid = !cold.node.is_empty()
                && cold
                    .node
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !valid || seen.contains(&&*cold.node) {
                continue;
            }
            let Some(ip) = cold.node_ip else { continue };
            let lower = cold.node.to_ascii_lowercase();
            let domain = &self.names.domain;
            let Some(fqdn) = view::node_fqdn(&lower, &self.cfg.datacenter, domain) else {
                continue;
            };
            seen.push(&cold.node);
            ns.push(Rr {
                owner: Owner::Name(NameRef::Ref(domain)),
                ttl,
                data: Data::Ns(NameRef::Own(Box::new(fqdn.clone()))),
            });
            glue.push(address_rr(
                Owner::Name(NameRef::Own(Box::new(fqdn))),
                ttl,
                ip,
            ));
            if ns.len() == MAX_NAMESERVERS {
                break;
            }
        }
        (ns, glue)
    }

    fn finish(mut self) -> Vec<u8> {
        let mut head = reply_head(self.request, self.rcode);
        head.aa = true;
        head.ra = self.cfg.recursion_available();
        let edns = response_edns(self.request);
        if self.rcode == ResponseCode::NXDomain
            || (self.rcode == ResponseCode::NoError && self.answers.is_empty())
        {
            self.authority = vec![self.soa()];
        }
        if self.trimmed && self.cfg.enable_truncate {
            head.tc = true;
        }
        let mut units = self.units.len();
        let mut buf = Vec::with_capacity(512);
        self.encode(&mut buf, &head, edns.as_ref(), units, true, true);
        if buf.len() > self.size_limit {
            // Like Consul: the NS section and stray additional records go first, then
            // whole units, the most that fit found by binary search.
            let with_authority = self.answers.is_empty();
            let fits = |r: &Self, buf: &mut Vec<u8>, k: usize| {
                r.encode(buf, &head, edns.as_ref(), k, false, with_authority);
                buf.len() <= r.size_limit
            };
            let (mut lo, mut hi) = (0usize, units);
            if !fits(&self, &mut buf, hi) {
                while lo + 1 < hi {
                    let mid = lo + (hi - lo) / 2;
                    if fits(&self, &mut buf, mid) {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                units = lo;
            }
            if self.cfg.enable_truncate || (units == 0 && !self.units.is_empty()) {
                head.tc = true;
            }
            self.encode(&mut buf, &head, edns.as_ref(), units, false, with_authority);
            if buf.len() > self.size_limit {
                // Even the question does not fit: say so and let the client use TCP.
                head.tc = true;
                self.encode(&mut buf, &head, None, 0, false, false);
            }
        }
        buf
    }

    /// Encodes the reply with the first `units` units into `buf`.
    fn encode(
        &self,
        buf: &mut Vec<u8>,
        head: &Head,
        edns: Option<&ReplyEdns>,
        units: usize,
        with_tail: bool,
        with_authority: bool,
    ) {
        let (a_end, x_end) = match units {
            0 => (0, 0),
            k => self.units[k - 1],
        };
        let tail: &[Rr<'_>] = if with_tail { &self.tail } else { &[] };
        let authority: &[Rr<'_>] = if with_authority { &self.authority } else { &[] };
        wire::write_message(
            buf,
            head,
            Some(self.q),
            &self.answers[..a_end],
            authority,
            &[&self.extras[..x_end], tail],
            edns,
            !self.cfg.disable_compression,
        );
    }
}

fn ip_fits(qtype: RecordType, ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => matches!(
            qtype,
            RecordType::A | RecordType::ANY | RecordType::TXT | RecordType::SRV
        ),
        IpAddr::V6(_) => matches!(
            qtype,
            RecordType::AAAA | RecordType::ANY | RecordType::TXT | RecordType::SRV
        ),
    }
}

fn address_rr(owner: Owner<'_>, ttl: u32, ip: IpAddr) -> Rr<'_> {
    let data = match ip {
        IpAddr::V4(v4) => Data::A(v4),
        IpAddr::V6(v6) => Data::Aaaa(v6),
    };
    Rr { owner, ttl, data }
}

/// Lazy Fisher-Yates: yields the indexes in uniformly random order, drawing only as many
/// random numbers as items taken, from this thread's RNG.
struct Shuffled<'a> {
    ids: &'a mut [u32],
    next: usize,
}

impl<'a> Shuffled<'a> {
    fn new(ids: &'a mut [u32]) -> Self {
        Shuffled { ids, next: 0 }
    }
}

impl Iterator for Shuffled<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let n = self.ids.len();
        if self.next >= n {
            return None;
        }
        let j = fastrand::usize(self.next..n);
        self.ids.swap(self.next, j);
        self.next += 1;
        Some(self.ids[self.next - 1])
    }
}
