//! Socket plumbing shared by the network checks: deadlines, `host:port` parsing, name lookup
//! off the reactor, dialing, and error texts worded as Go's net package words them (Consul
//! users match on "connection refused" and friends).
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::time::Instant;

use futures::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use glommio::timer::Timer;

/// A byte stream a check talks over: plain TCP or TLS over TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}
pub(crate) type BoxIo = Pin<Box<dyn Io>>;

/// Runs `fut` until `deadline`; `None` when the deadline came first (the future is dropped,
/// which cancels any glommio I/O it had in flight).
pub(crate) async fn within<T>(deadline: Instant, fut: impl Future<Output = T>) -> Option<T> {
    let left = deadline.saturating_duration_since(Instant::now());
    futures_lite::future::or(async { Some(fut.await) }, async {
        Timer::new(left).await;
        None
    })
    .await
}

/// Splits `host:port` / `[v6]:port` as Go's `net.SplitHostPort` does.
pub(crate) fn split_host_port(addr: &str) -> Result<(String, u16), String> {
    let missing = || format!("address {addr}: missing port in address");
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| format!("address {addr}: missing ']' in address"))?;
        let after = &rest[end + 1..];
        let port = after.strip_prefix(':').ok_or_else(missing)?;
        (&rest[..end], port)
    } else {
        let i = addr.rfind(':').ok_or_else(missing)?;
        if addr[..i].contains(':') {
            return Err(format!("address {addr}: too many colons in address"));
        }
        (&addr[..i], &addr[i + 1..])
    };
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("address {addr}: invalid port"))?;
    Ok((host.to_string(), port))
}

/// Joins a host and port back, bracketing IPv6 literals.
pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Resolves a host. Literals and `localhost` never leave the reactor; other names are looked
/// up on glommio's blocking pool because getaddrinfo blocks.
pub(crate) async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if host.is_empty() || host.eq_ignore_ascii_case("localhost") {
        return Ok(vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        ]);
    }
    let name = host.to_string();
    let looked_up = glommio::executor()
        .spawn_blocking(move || {
            (name.as_str(), port)
                .to_socket_addrs()
                .map(|it| it.collect::<Vec<_>>())
        })
        .await;
    match looked_up {
        Ok(addrs) if !addrs.is_empty() => Ok(addrs),
        Ok(_) => Err(format!("lookup {host}: no such host")),
        Err(e) => Err(format!("lookup {host}: {}", lookup_error_text(&e))),
    }
}

fn lookup_error_text(e: &io::Error) -> String {
    let s = e.to_string();
    if s.contains("Name or service not known") || s.contains("No address associated") {
        "no such host".to_string()
    } else {
        strip_os_error(&s).to_lowercase()
    }
}

/// Connects to the first address of `addrs` that accepts, as Go's dialer falls back through
/// a name's addresses. The error names the last address tried.
pub(crate) async fn dial_tcp(addrs: &[SocketAddr]) -> Result<TcpStream, String> {
    let mut last = String::from("dial tcp: no addresses");
    for addr in addrs {
        match TcpStream::connect(*addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => {
                let e: io::Error = e.into();
                last = format!("dial tcp {addr}: connect: {}", io_error_text(&e));
            }
        }
    }
    Err(last)
}

/// Resolves `host:port` and dials it, with Go's wording for every failure.
pub(crate) async fn resolve_and_dial(addr: &str) -> Result<TcpStream, String> {
    let (host, port) = split_host_port(addr).map_err(|e| format!("dial tcp: {e}"))?;
    let addrs = resolve(&host, port)
        .await
        .map_err(|e| format!("dial tcp: {e}"))?;
    dial_tcp(&addrs).await
}

/// An I/O error as Go prints a syscall error: lower case, no "(os error N)".
pub(crate) fn io_error_text(e: &io::Error) -> String {
    use io::ErrorKind::*;
    let known = match e.kind() {
        ConnectionRefused => "connection refused",
        ConnectionReset => "connection reset by peer",
        ConnectionAborted => "software caused connection abort",
        TimedOut => "i/o timeout",
        HostUnreachable => "no route to host",
        NetworkUnreachable => "network is unreachable",
        AddrNotAvailable => "cannot assign requested address",
        PermissionDenied => "permission denied",
        BrokenPipe => "broken pipe",
        UnexpectedEof => "unexpected EOF",
        NotFound => "no such file or directory",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    match e.raw_os_error() {
        Some(code) => {
            strip_os_error(&io::Error::from_raw_os_error(code).to_string()).to_lowercase()
        }
        None => strip_os_error(&e.to_string()).to_string(),
    }
}

fn strip_os_error(s: &str) -> &str {
    match s.find(" (os error") {
        Some(i) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_go() {
        assert_eq!(
            split_host_port("127.0.0.1:80").unwrap(),
            ("127.0.0.1".into(), 80)
        );
        assert_eq!(split_host_port("[::1]:53").unwrap(), ("::1".into(), 53));
        assert_eq!(split_host_port("host:1").unwrap(), ("host".into(), 1));
        assert_eq!(
            split_host_port("localhost").unwrap_err(),
            "address localhost: missing port in address"
        );
        assert!(split_host_port("::1:80").is_err());
        assert!(split_host_port("h:99999").is_err());
        assert_eq!(join_host_port("::1", 5), "[::1]:5");
    }

    #[test]
    fn error_texts_are_go_like() {
        let e = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(io_error_text(&e), "connection refused");
        let e = io::Error::from_raw_os_error(113);
        assert_eq!(io_error_text(&e), "no route to host");
    }
}
