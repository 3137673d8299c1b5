//! Load generators. All run on the harness's tokio runtime (pinned to the generator CPUs):
//! [`http`] a small keep-alive HTTP/1.1 client, [`load`] open- and closed-loop HTTP load,
//! [`watch`] parked blocking queries, [`dns`] a built-in UDP DNS generator and [`dnsperf`]
//! the wrapper around Debian's dnsperf.
pub mod dns;
pub mod dnsperf;
pub mod http;
pub mod load;
pub mod watch;
pub mod wrk;

use std::net::Ipv4Addr;

use serde::Serialize;

/// How requests are paced.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pace {
    /// Each connection sends its next request as soon as the previous one is answered.
    Closed,
    /// Requests are due at a fixed total rate (req/s), spread over the connections; latency
    /// is counted from when a request was due, not when it could be sent, so a stalled
    /// server cannot hide its stall (no coordinated omission).
    Open { rate: f64 },
}

impl Pace {
    pub fn from_rate(rate: Option<f64>) -> Pace {
        match rate {
            Some(r) if r > 0.0 => Pace::Open { rate: r },
            _ => Pace::Closed,
        }
    }

    pub fn label(&self) -> String {
        match self {
            Pace::Closed => "closed".to_string(),
            Pace::Open { rate } => format!("open@{rate:.0}/s"),
        }
    }
}

/// Source addresses for client sockets: 127.0.0.1..127.0.0.n. One address has ~28k
/// ephemeral ports; 50,000 connections to one server port need several.
pub fn loopback_sources(n: usize) -> Vec<Ipv4Addr> {
    (1..=n.clamp(1, 250) as u8)
        .map(|i| Ipv4Addr::new(127, 0, 0, i))
        .collect()
}

/// Enough source addresses for `conns` connections with headroom.
pub fn sources_for(conns: usize) -> Vec<Ipv4Addr> {
    loopback_sources(conns / 20_000 + 1)
}
