//! Picking the advertise address when binding to all interfaces, as Consul does:
//! 0.0.0.0 advertises the single private IPv4 address of the host, `::` the single
//! global IPv6 address; none or several is an error asking for `-bind`/`-advertise`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;

struct IfAddr {
    iface: String,
    ip: IpAddr,
}

fn interface_addrs() -> Result<Vec<IfAddr>, String> {
    let addrs = getifaddrs().map_err(|e| format!("cannot list network interfaces: {e}"))?;
    let mut out = Vec::new();
    for a in addrs {
        if !a.flags.contains(InterfaceFlags::IFF_UP)
            || a.flags.contains(InterfaceFlags::IFF_LOOPBACK)
        {
            continue;
        }
        let Some(sa) = a.address else { continue };
        let ip = if let Some(v4) = sa.as_sockaddr_in() {
            IpAddr::V4(Ipv4Addr::from(v4.ip()))
        } else if let Some(v6) = sa.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        out.push(IfAddr {
            iface: a.interface_name,
            ip,
        });
    }
    Ok(out)
}

/// Interfaces carrying a default route, from /proc/net/route. Hosts with bridges
/// (docker0, virbr0) have several private addresses; the default route tells which
/// one the rest of the network reaches.
fn default_route_interfaces() -> Vec<String> {
    let Ok(text) = std::fs::read_to_string("/proc/net/route") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let iface = cols.next()?;
            let dest = cols.next()?;
            (dest == "00000000").then(|| iface.to_owned())
        })
        .collect()
}

pub(crate) fn is_private_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) // RFC 6598 shared space
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    let seg0 = ip.segments()[0];
    !ip.is_loopback()
        && !ip.is_unspecified()
        && !ip.is_multicast()
        && (seg0 & 0xffc0) != 0xfe80 // link-local
        && (seg0 & 0xfe00) != 0xfc00 // unique local
}

pub(super) fn detect_advertise(bind: IpAddr) -> Result<IpAddr, String> {
    let addrs = interface_addrs()?;
    let routed = default_route_interfaces();
    let pick = |want: &dyn Fn(&IpAddr) -> bool| -> Vec<IpAddr> {
        let all: Vec<&IfAddr> = addrs.iter().filter(|a| want(&a.ip)).collect();
        let on_default: Vec<IpAddr> = all
            .iter()
            .filter(|a| routed.contains(&a.iface))
            .map(|a| a.ip)
            .collect();
        if on_default.is_empty() {
            all.iter().map(|a| a.ip).collect()
        } else {
            on_default
        }
    };
    let (found, what) = match bind {
        IpAddr::V4(_) => (
            pick(&|ip| matches!(ip, IpAddr::V4(v4) if is_private_v4(*v4))),
            "private IPv4",
        ),
        IpAddr::V6(_) => (
            pick(&|ip| matches!(ip, IpAddr::V6(v6) if is_global_v6(*v6))),
            "public IPv6",
        ),
    };
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!(
            "No {what} address found; bind to a specific address with -bind or set -advertise"
        )),
        many => Err(format!(
            "Multiple {what} addresses found ({}). Please configure one with 'bind' and/or 'advertise'.",
            many.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges() {
        assert!(is_private_v4(Ipv4Addr::new(10, 1, 2, 3)));
        assert!(is_private_v4(Ipv4Addr::new(172, 16, 0, 1)));
        assert!(is_private_v4(Ipv4Addr::new(192, 168, 1, 1)));
        assert!(is_private_v4(Ipv4Addr::new(100, 64, 0, 1)));
        assert!(!is_private_v4(Ipv4Addr::new(100, 128, 0, 1)));
        assert!(!is_private_v4(Ipv4Addr::new(8, 8, 8, 8)));
    }

    #[test]
    fn global_v6() {
        assert!(is_global_v6("2001:db8::1".parse().unwrap()));
        assert!(!is_global_v6("fe80::1".parse().unwrap()));
        assert!(!is_global_v6("fd00::1".parse().unwrap()));
        assert!(!is_global_v6(Ipv6Addr::LOCALHOST));
    }
}
