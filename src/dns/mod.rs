//! The DNS interface (Consul's, port 8600): `NAME.service.consul`, `TAG.NAME.service.consul`,
//! `_NAME._TAG.service.consul`, `NODE.node.consul`, `HEX.addr.consul`, `NAME.query.consul`,
//! SOA/NS for the domain, PTR for known addresses, and forwarding of every other name to the
//! configured recursors.
//!
//! Request flow on the DNS core, with nothing crossing cores on the hot path:
//!
//! ```text
//!  UDP datagram / TCP frame
//!        |  server.rs: serve_udp / serve_tcp (glommio sockets, 2-byte framing on TCP)
//!        v
//!  answer.rs: handle()  -- header checks (drop / FORMERR / NOTIMP), hickory-proto decode
//!        |  name.rs: parse() -> Lookup (service, RFC 2782, node, addr, query, apex, ptr, other)
//!        |  view.rs: DnsView  -- read-optimized, per core, fed by the catalog owner
//!        |  health filter, per-core shuffle, limits, TTLs, NXDOMAIN vs NODATA, trimming
//!        |  wire.rs: the response writer (name compression, no per-record allocation)
//!        v
//!  Outcome::Reply(bytes) | Outcome::Drop | Outcome::Recurse(Forward)
//!                                               |  server.rs: bounded UDP/TCP forwarding,
//!                                               v  recursor after recursor, else SERVFAIL
//! ```
//!
//! The view is a plain value owned by the DNS core (`Rc<RefCell<DnsView>>`): the integrator
//! replaces a service's instances or a node's record whenever the catalog changes, and the
//! responder reads it between awaits, never holding a borrow across one.

pub mod answer;
pub mod name;
pub mod server;
mod settings;
pub mod view;
mod wire;

pub use answer::{answer, handle, Forward, Outcome, QueryKind, Transport, MAX_UDP_PAYLOAD};
pub use name::{parse, Lookup, Parsed, QueryDomain};
pub use server::{serve_tcp, serve_udp, DnsError};
pub use settings::*;
pub use view::{DnsView, Health, Instance, NodeRecord};

#[cfg(test)]
mod tests;
