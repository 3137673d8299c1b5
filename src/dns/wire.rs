//! The response writer: DNS wire format for the handful of record types the responder
//! sends, straight into one buffer.
//!
//! Queries are decoded with hickory-proto; answers are written here because they are
//! the hot path (every query, often many records) and hickory's general encoder costs
//! several allocations per name (compression bookkeeping) and a copy of every record
//! into its `Record` type. Tests decode every answer with hickory-proto.
//!
//! Name compression: every suffix of every name written (below offset 0x4000) is
//! remembered in a small hash table, keyed by a hash of its labels; a name is written as
//! its labels up to the longest suffix already in the message, then a pointer. Hits are
//! checked against the bytes, which are compared exactly, so the question's case is
//! kept. SRV targets are never compressed (RFC 2782), but later names may point into
//! them.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RecordType};

/// Slots of the suffix table (a power of two), and how many may be used, which keeps
/// probe sequences short.
const SUFFIX_SLOTS: usize = 128;
const MAX_SUFFIXES: usize = 96;
/// Names with more labels are written without compression.
pub(crate) const MAX_LABELS: usize = 24;
/// Pointers can only reach the first 16 KiB of a message.
const MAX_POINTER: usize = 0x3fff;
const CLASS_IN: u16 = 1;
const TYPE_OPT: u16 = 41;
const ECS_CODE: u16 = 8;

/// A name borrowed from the view, or built for this answer. Small, so records are.
#[derive(Debug, Clone)]
pub(crate) enum NameRef<'a> {
    Ref(&'a Name),
    Own(Box<Name>),
    /// Labels in wire format (length-prefixed, no root), then `suffix` when given.
    Wire {
        labels: &'a [u8],
        suffix: Option<&'a Name>,
    },
}

impl NameRef<'_> {
    /// The labels of the name, into `out`; `None` when there are more than fit.
    fn labels<'n>(&'n self, out: &mut [&'n [u8]; MAX_LABELS]) -> Option<usize> {
        let mut n = 0;
        let mut push = |l: &'n [u8]| {
            if n == MAX_LABELS {
                return false;
            }
            out[n] = l;
            n += 1;
            true
        };
        let (name, suffix) = match self {
            NameRef::Ref(name) => (Some(*name), None),
            NameRef::Own(name) => (Some(&**name), None),
            NameRef::Wire { labels, suffix } => {
                let mut rest = *labels;
                while let Some((&len, tail)) = rest.split_first() {
                    let len = usize::from(len).min(tail.len());
                    if !push(&tail[..len]) {
                        return None;
                    }
                    rest = &tail[len..];
                }
                (None, *suffix)
            }
        };
        for l in name.into_iter().chain(suffix).flat_map(Name::iter) {
            if !push(l) {
                return None;
            }
        }
        Some(n)
    }
}

/// Whose name a record carries.
#[derive(Debug, Clone)]
pub(crate) enum Owner<'a> {
    /// The question's name, exactly as asked.
    Question,
    Name(NameRef<'a>),
}

#[derive(Debug, Clone)]
pub(crate) enum Data<'a> {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv {
        weight: u16,
        port: u16,
        target: NameRef<'a>,
    },
    Txt(&'a TXT),
    Cname(NameRef<'a>),
    Ns(NameRef<'a>),
    Ptr(NameRef<'a>),
    Soa {
        mname: &'a Name,
        rname: &'a Name,
        serial: u32,
        refresh: u32,
        retry: u32,
        expire: u32,
        minimum: u32,
    },
}

/// One resource record to write.
#[derive(Debug, Clone)]
pub(crate) struct Rr<'a> {
    pub owner: Owner<'a>,
    pub ttl: u32,
    pub data: Data<'a>,
}

impl Rr<'_> {
    pub fn rtype(&self) -> RecordType {
        match self.data {
            Data::A(_) => RecordType::A,
            Data::Aaaa(_) => RecordType::AAAA,
            Data::Srv { .. } => RecordType::SRV,
            Data::Txt(_) => RecordType::TXT,
            Data::Cname(_) => RecordType::CNAME,
            Data::Ns(_) => RecordType::NS,
            Data::Ptr(_) => RecordType::PTR,
            Data::Soa { .. } => RecordType::SOA,
        }
    }
}

/// The OPT record of a reply (RFC 6891), with an echoed client subnet (RFC 7871).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplyEdns {
    pub payload: u16,
    /// (family, source prefix, scope prefix, address bytes, length of the address)
    pub subnet: Option<(u16, u8, u8, [u8; 16], usize)>,
}

/// Header fields of a reply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    pub id: u16,
    pub opcode: u8,
    pub aa: bool,
    pub tc: bool,
    pub rd: bool,
    pub ra: bool,
    pub cd: bool,
    pub rcode: ResponseCode,
}

impl Head {
    fn flags(&self) -> [u8; 2] {
        let mut hi = 0x80 | (self.opcode & 0x0f) << 3;
        if self.aa {
            hi |= 0x04;
        }
        if self.tc {
            hi |= 0x02;
        }
        if self.rd {
            hi |= 0x01;
        }
        let mut lo = self.rcode.low();
        if self.ra {
            lo |= 0x80;
        }
        if self.cd {
            lo |= 0x10;
        }
        [hi, lo]
    }
}

/// Writes a whole message into `buf`: header, the question, the three sections, OPT.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_message(
    buf: &mut Vec<u8>,
    head: &Head,
    question: Option<&Query>,
    answers: &[Rr<'_>],
    authority: &[Rr<'_>],
    additional: &[&[Rr<'_>]],
    edns: Option<&ReplyEdns>,
    compress: bool,
) {
    buf.clear();
    let mut w = Writer {
        buf,
        compress,
        suffixes: [(0, 0); SUFFIX_SLOTS],
        nsuffixes: 0,
        qname: None,
    };
    w.buf.extend_from_slice(&head.id.to_be_bytes());
    w.buf.extend_from_slice(&head.flags());
    let extra: usize =
        additional.iter().map(|s| s.len()).sum::<usize>() + usize::from(edns.is_some());
    for n in [
        usize::from(question.is_some()),
        answers.len(),
        authority.len(),
        extra,
    ] {
        w.u16(u16::try_from(n).unwrap_or(u16::MAX));
    }
    if let Some(q) = question {
        w.qname = Some(q.name());
        w.name(&NameRef::Ref(q.name()), true);
        w.u16(u16::from(q.query_type()));
        w.u16(u16::from(q.query_class()));
    }
    for rr in answers.iter().chain(authority) {
        w.rr(rr);
    }
    for rr in additional.iter().flat_map(|s| s.iter()) {
        w.rr(rr);
    }
    if let Some(e) = edns {
        w.opt(e, head.rcode);
    }
}

struct Writer<'b, 'q> {
    buf: &'b mut Vec<u8>,
    compress: bool,
    /// (hash of a suffix, its offset); offset 0 marks a free slot (the header is there).
    suffixes: [(u64, u16); SUFFIX_SLOTS],
    nsuffixes: usize,
    qname: Option<&'q Name>,
}

impl Writer<'_, '_> {
    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Writes `name`, compressed unless `may_point` is false or compression is off.
    fn name(&mut self, name: &NameRef<'_>, may_point: bool) {
        let mut labels: [&[u8]; MAX_LABELS] = [&[]; MAX_LABELS];
        let Some(n) = name.labels(&mut labels) else {
            // Unusually deep: written in full and never pointed at.
            self.deep_name(name);
            return;
        };
        let labels = &labels[..n];
        // hashes[i]: hash of labels[i..].
        let mut hashes = [0u64; MAX_LABELS];
        let mut h = SEED;
        for i in (0..n).rev() {
            h = hash_label(h, labels[i]);
            hashes[i] = h;
        }
        let mut starts = [0usize; MAX_LABELS];
        let mut written = 0;
        let mut pointer = None;
        for i in 0..n {
            if may_point && self.compress {
                if let Some(at) = self.find(hashes[i], &labels[i..]) {
                    pointer = Some(at);
                    break;
                }
            }
            starts[i] = self.buf.len();
            self.buf.push(labels[i].len() as u8);
            self.buf.extend_from_slice(labels[i]);
            written = i + 1;
        }
        match pointer {
            Some(at) => self.u16(0xc000 | at),
            None => self.buf.push(0),
        }
        // Now that the name is complete, its new suffixes can be pointed at.
        if self.compress {
            for i in 0..written {
                if starts[i] > MAX_POINTER || self.nsuffixes >= MAX_SUFFIXES {
                    break;
                }
                self.insert(hashes[i], starts[i] as u16);
            }
        }
    }

    fn deep_name(&mut self, name: &NameRef<'_>) {
        let mut label = |l: &[u8]| {
            self.buf.push(l.len() as u8);
            self.buf.extend_from_slice(l);
        };
        match name {
            NameRef::Ref(n) => n.iter().for_each(&mut label),
            NameRef::Own(n) => n.iter().for_each(&mut label),
            NameRef::Wire { labels, suffix } => {
                let mut rest = *labels;
                while let Some((&len, tail)) = rest.split_first() {
                    let len = usize::from(len).min(tail.len());
                    label(&tail[..len]);
                    rest = &tail[len..];
                }
                if let Some(s) = suffix {
                    s.iter().for_each(&mut label);
                }
            }
        }
        self.buf.push(0);
    }

    fn insert(&mut self, hash: u64, at: u16) {
        let mut slot = (hash as usize) & (SUFFIX_SLOTS - 1);
        loop {
            let (h, pos) = self.suffixes[slot];
            if pos == 0 {
                self.suffixes[slot] = (hash, at);
                self.nsuffixes += 1;
                return;
            }
            if h == hash {
                // Most likely the same suffix already remembered; if not, a chance to
                // compress is lost, nothing more (lookups check the bytes).
                return;
            }
            slot = (slot + 1) & (SUFFIX_SLOTS - 1);
        }
    }

    /// A position where exactly `suffix` (of hash `hash`) is spelled.
    fn find(&self, hash: u64, suffix: &[&[u8]]) -> Option<u16> {
        let mut slot = (hash as usize) & (SUFFIX_SLOTS - 1);
        loop {
            let (h, pos) = self.suffixes[slot];
            if pos == 0 {
                return None;
            }
            if h == hash && spells(self.buf, usize::from(pos), suffix) {
                return Some(pos);
            }
            slot = (slot + 1) & (SUFFIX_SLOTS - 1);
        }
    }

    fn rr(&mut self, rr: &Rr<'_>) {
        match &rr.owner {
            Owner::Question if self.compress && self.qname.is_some() => self.u16(0xc00c),
            Owner::Question => match self.qname {
                Some(q) => self.name(&NameRef::Ref(q), false),
                None => self.buf.push(0),
            },
            Owner::Name(n) => self.name(n, true),
        }
        self.u16(u16::from(rr.rtype()));
        self.u16(CLASS_IN);
        self.u32(rr.ttl);
        let len_at = self.buf.len();
        self.u16(0);
        match &rr.data {
            Data::A(ip) => self.buf.extend_from_slice(&ip.octets()),
            Data::Aaaa(ip) => self.buf.extend_from_slice(&ip.octets()),
            Data::Srv {
                weight,
                port,
                target,
            } => {
                self.u16(1);
                self.u16(*weight);
                self.u16(*port);
                self.name(target, false);
            }
            Data::Txt(txt) => {
                for s in txt.txt_data.iter() {
                    let s = &s[..s.len().min(255)];
                    self.buf.push(s.len() as u8);
                    self.buf.extend_from_slice(s);
                }
            }
            Data::Cname(n) | Data::Ns(n) | Data::Ptr(n) => self.name(n, true),
            Data::Soa {
                mname,
                rname,
                serial,
                refresh,
                retry,
                expire,
                minimum,
            } => {
                self.name(&NameRef::Ref(mname), true);
                self.name(&NameRef::Ref(rname), true);
                for v in [serial, refresh, retry, expire, minimum] {
                    self.u32(*v);
                }
            }
        }
        let len = (self.buf.len() - len_at - 2) as u16;
        self.buf[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
    }

    fn opt(&mut self, e: &ReplyEdns, rcode: ResponseCode) {
        self.buf.push(0);
        self.u16(TYPE_OPT);
        self.u16(e.payload.max(512));
        self.u32(u32::from(rcode.high()) << 24);
        match &e.subnet {
            None => self.u16(0),
            Some((family, source, scope, addr, len)) => {
                let len = *len;
                self.u16(4 + 4 + len as u16);
                self.u16(ECS_CODE);
                self.u16(4 + len as u16);
                self.u16(*family);
                self.buf.push(*source);
                self.buf.push(*scope);
                self.buf.extend_from_slice(&addr[..len]);
            }
        }
    }
}

const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// Hash of a label followed by a suffix of hash `rest`. Weak on purpose (only the first
/// and last 8 bytes of a label count): every hit is checked against the bytes, and
/// this runs for every label of every name written.
fn hash_label(rest: u64, label: &[u8]) -> u64 {
    let n = label.len();
    let (head, tail) = if n >= 8 {
        let word = |b: &[u8]| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        (word(&label[..8]), word(&label[n - 8..]))
    } else {
        let mut w = 0u64;
        for (i, &b) in label.iter().enumerate() {
            w |= u64::from(b) << (8 * i);
        }
        (w, 0)
    };
    let mut h = rest.rotate_left(23) ^ head ^ tail.rotate_left(32) ^ (n as u64);
    h = h.wrapping_mul(0x9fb2_1c65_1e98_df25);
    h ^ (h >> 29)
}

/// Whether the name at `at` in `buf` (following pointers) is exactly `suffix`.
fn spells(buf: &[u8], mut at: usize, suffix: &[&[u8]]) -> bool {
    let mut hops = 0;
    for label in suffix {
        let Some(len) = resolve(buf, &mut at, &mut hops) else {
            return false;
        };
        if len != label.len() || buf.get(at + 1..at + 1 + len) != Some(*label) {
            return false;
        }
        at += 1 + len;
    }
    resolve(buf, &mut at, &mut hops) == Some(0)
}

/// Follows pointers from `at` to a label; its length.
fn resolve(buf: &[u8], at: &mut usize, hops: &mut u32) -> Option<usize> {
    loop {
        let b = *buf.get(*at)?;
        if b & 0xc0 == 0xc0 {
            *hops += 1;
            if *hops > 64 {
                return None;
            }
            let lo = *buf.get(*at + 1)?;
            *at = usize::from(u16::from_be_bytes([b & 0x3f, lo]));
            continue;
        }
        return Some(usize::from(b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Message;
    use hickory_proto::rr::RData;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn compressed_message_decodes() {
        let q = Query::query(n("Web.Service.consul."), RecordType::SRV);
        let t1 = n("n1.node.dc1.consul.");
        let t2 = n("n2.node.dc1.consul.");
        let srv = |t: &Name| Rr {
            owner: Owner::Question,
            ttl: 5,
            data: Data::Srv {
                weight: 3,
                port: 80,
                target: NameRef::Own(Box::new(t.clone())),
            },
        };
        let a = |t: &Name, ip: [u8; 4]| Rr {
            owner: Owner::Name(NameRef::Own(Box::new(t.clone()))),
            ttl: 5,
            data: Data::A(Ipv4Addr::from(ip)),
        };
        let head = Head {
            id: 9,
            opcode: 0,
            aa: true,
            tc: false,
            rd: true,
            ra: false,
            cd: false,
            rcode: ResponseCode::NoError,
        };
        let answers = [srv(&t1), srv(&t2)];
        let extras = [a(&t1, [10, 0, 0, 1]), a(&t2, [10, 0, 0, 2])];
        let mut sizes = Vec::new();
        for compress in [true, false] {
            let mut buf = Vec::new();
            write_message(
                &mut buf,
                &head,
                Some(&q),
                &answers,
                &[],
                &[&extras],
                Some(&ReplyEdns {
                    payload: 1232,
                    subnet: None,
                }),
                compress,
            );
            let m = Message::from_vec(&buf).unwrap();
            assert_eq!(m.metadata.id, 9);
            assert!(m.metadata.authoritative && m.metadata.recursion_desired);
            assert_eq!(m.queries[0].name().to_ascii(), "Web.Service.consul.");
            assert_eq!(m.answers.len(), 2);
            assert_eq!(m.answers[1].name.to_ascii(), "Web.Service.consul.");
            match &m.answers[1].data {
                RData::SRV(s) => assert_eq!(s.target.to_ascii(), "n2.node.dc1.consul."),
                other => panic!("{other:?}"),
            }
            assert_eq!(m.additionals[1].name.to_ascii(), "n2.node.dc1.consul.");
            assert_eq!(m.edns.unwrap().max_payload(), 1232);
            sizes.push(buf.len());
        }
        // Header 12, question 24, two SRV of 12 + 26 (targets in full, RFC 2782), two A
        // of 16 whose owners point into the SRV targets, OPT 11.
        assert_eq!(sizes[0], 12 + 24 + 2 * 38 + 2 * 16 + 11);
        assert!(sizes[1] > sizes[0] + 60, "{sizes:?}");
    }
}
