//! gRPC health checks (grpc.health.v1.Health/Check) and H2PING checks over HTTP/2.
//!
//! Why `h2` on the reactor rather than tonic on a helper thread: `h2` is sans-runtime (it
//! needs only tokio's I/O traits, no tokio reactor or timers), so one probe is one short local
//! task on the check's executor, bounded by the check's deadline, and thousands of gRPC checks
//! cost no threads and no cross-thread queue. The glommio stream (plain or rustls) is adapted
//! to tokio's I/O traits with `tokio-util`'s compat layer; nothing in the exchange blocks.
//! The health protocol's two messages are tiny protobufs, encoded by hand below.
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use futures::future::{select, Either};
use tokio_util::compat::FuturesAsyncReadCompatExt;

use super::net::{resolve_and_dial, split_host_port, within, BoxIo};
use super::tls::{Alpn, TlsConfigs};
use super::{Status, TlsSettings};

const HEALTH_PATH: &str = "/grpc.health.v1.Health/Check";
/// A health response is a few bytes; anything beyond this is not one.
const MAX_RESPONSE: usize = 64 * 1024;

pub(crate) struct GrpcCheck<'a> {
    /// `host:port[/service]`.
    pub target: &'a str,
    pub use_tls: bool,
    pub tls: &'a TlsSettings,
    pub timeout: Duration,
}

/// Runs one gRPC health probe: SERVING is passing, anything else critical.
pub(crate) async fn run(check: &GrpcCheck<'_>, tls: &TlsConfigs) -> (Status, String) {
    let (server, service) = match check.target.split_once('/') {
        Some((s, svc)) => (s, svc),
        None => (check.target, ""),
    };
    let deadline = Instant::now() + check.timeout;
    match within(deadline, probe(server, service, check, tls)).await {
        None => (
            Status::Critical,
            rpc_error("DeadlineExceeded", "context deadline exceeded"),
        ),
        Some(Err(e)) => (Status::Critical, e),
        Some(Ok(1)) => (
            Status::Passing,
            format!("gRPC check {}: success", check.target),
        ),
        Some(Ok(n)) => (
            Status::Critical,
            format!(
                "gRPC {} serving status: {}",
                check.target,
                serving_status_name(n)
            ),
        ),
    }
}

fn rpc_error(code: &str, desc: &str) -> String {
    format!("rpc error: code = {code} desc = {desc}")
}

/// Dials `server` and, when asked, runs TLS with ALPN "h2".
async fn connect(
    server: &str,
    use_tls: bool,
    settings: &TlsSettings,
    tls: &TlsConfigs,
) -> Result<BoxIo, String> {
    let tcp = resolve_and_dial(server).await?;
    if use_tls {
        let host = split_host_port(server).map(|(h, _)| h).unwrap_or_default();
        tls.connect(tcp, &host, settings, Alpn::H2).await
    } else {
        Ok(Box::pin(tcp))
    }
}

/// Returns the ServingStatus number, or the error text Consul would show.
async fn probe(
    server: &str,
    service: &str,
    check: &GrpcCheck<'_>,
    tls: &TlsConfigs,
) -> Result<u64, String> {
    let unavailable = |e: String| {
        rpc_error(
            "Unavailable",
            &format!(
                "connection error: desc = {}",
                super::output::go_quote(&format!("transport: Error while dialing: {e}"))
            ),
        )
    };
    let io = connect(server, check.use_tls, check.tls, tls)
        .await
        .map_err(unavailable)?;
    let (client, conn) = h2::client::handshake(io.compat())
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let scheme = if check.use_tls { "https" } else { "http" };
    let uri = format!("{scheme}://{server}{HEALTH_PATH}");
    let exchange = async move {
        let mut client = client
            .ready()
            .await
            .map_err(|e| rpc_error("Unavailable", &e.to_string()))?;
        let req = http::Request::builder()
            .method("POST")
            .uri(uri)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("user-agent", "muster-health-check")
            .body(())
            .map_err(|e| rpc_error("Internal", &e.to_string()))?;
        let (response, mut send) = client
            .send_request(req, false)
            .map_err(|e| rpc_error("Unavailable", &e.to_string()))?;
        send.send_data(frame(&encode_request(service)), true)
            .map_err(|e| rpc_error("Unavailable", &e.to_string()))?;
        let response = response.await.map_err(|e| h2_rpc_error(&e))?;
        let (parts, mut body) = response.into_parts();
        // A trailers-only response carries grpc-status in the headers.
        if let Some(st) = grpc_status(&parts.headers) {
            return Err(st);
        }
        if parts.status != http::StatusCode::OK {
            return Err(rpc_error(
                http_status_code(parts.status.as_u16()),
                &format!(
                    "unexpected HTTP status code received from server: {} ({})",
                    parts.status.as_u16(),
                    parts.status.canonical_reason().unwrap_or("")
                ),
            ));
        }
        let mut data = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| h2_rpc_error(&e))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            if data.len() + chunk.len() > MAX_RESPONSE {
                return Err(rpc_error(
                    "ResourceExhausted",
                    "grpc: received message larger than max",
                ));
            }
            data.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await.map_err(|e| h2_rpc_error(&e))?;
        if let Some(st) = trailers.as_ref().and_then(grpc_status) {
            return Err(st);
        }
        if trailers.is_none() {
            return Err(rpc_error(
                "Internal",
                "server closed the stream without sending trailers",
            ));
        }
        decode_response(&data)
    };
    drive(conn, exchange).await
}

/// Polls the request alongside the connection that carries it (h2 makes progress only while
/// its `Connection` is polled); the connection ending first is an error.
async fn drive<C, F, T>(conn: C, exchange: F) -> Result<T, String>
where
    C: std::future::Future<Output = Result<(), h2::Error>>,
    F: std::future::Future<Output = Result<T, String>>,
{
    let conn = std::pin::pin!(conn);
    let exchange = std::pin::pin!(exchange);
    match select(exchange, conn).await {
        Either::Left((r, _)) => r,
        Either::Right((Ok(()), _)) => Err(rpc_error(
            "Unavailable",
            "connection closed before the response",
        )),
        Either::Right((Err(e), _)) => Err(h2_rpc_error(&e)),
    }
}

/// Runs one H2PING check with Consul's texts.
pub(crate) async fn run_h2ping(
    addr: &str,
    use_tls: bool,
    settings: &TlsSettings,
    timeout: Duration,
    tls: &TlsConfigs,
) -> (Status, String) {
    let deadline = Instant::now() + timeout;
    let io = match within(deadline, connect(addr, use_tls, settings, tls)).await {
        None => {
            return (
                Status::Critical,
                format!("Failed to dial to {addr}: i/o timeout"),
            )
        }
        Some(Err(e)) => return (Status::Critical, format!("Failed to dial to {addr}: {e}")),
        Some(Ok(io)) => io,
    };
    let ping = async {
        let (_client, mut conn) = h2::client::handshake(io.compat())
            .await
            .map_err(|e| format!("Failed to create client connection {e}"))?;
        let mut pinger = conn
            .ping_pong()
            .ok_or_else(|| "HTTP2 ping failed: ping already in use".to_string())?;
        let pong = pinger.ping(h2::Ping::opaque());
        drive(conn, async {
            pong.await
                .map(|_| ())
                .map_err(|e| format!("HTTP2 ping failed: {e}"))
        })
        .await
        .map_err(|e| {
            if e.starts_with("HTTP2 ping failed") {
                e
            } else {
                format!("HTTP2 ping failed: {e}")
            }
        })
    };
    match within(deadline, ping).await {
        None => (
            Status::Critical,
            "HTTP2 ping failed: context deadline exceeded".to_string(),
        ),
        Some(Err(e)) => (Status::Critical, e),
        Some(Ok(())) => (Status::Passing, "HTTP2 ping was successful".to_string()),
    }
}

fn h2_rpc_error(e: &h2::Error) -> String {
    if let Some(io) = e.get_io() {
        return rpc_error(
            "Unavailable",
            &format!(
                "error reading from server: {}",
                super::net::io_error_text(io)
            ),
        );
    }
    match e.reason() {
        Some(h2::Reason::CANCEL) => rpc_error("Canceled", &e.to_string()),
        Some(h2::Reason::REFUSED_STREAM) => rpc_error("Unavailable", &e.to_string()),
        _ => rpc_error("Internal", &e.to_string()),
    }
}

/// Maps an HTTP status without grpc-status to a gRPC code, as gRPC clients do.
fn http_status_code(status: u16) -> &'static str {
    match status {
        400 => "Internal",
        401 => "Unauthenticated",
        403 => "PermissionDenied",
        404 => "Unimplemented",
        429 | 502 | 503 | 504 => "Unavailable",
        _ => "Unknown",
    }
}

/// A non-OK grpc-status as Consul's error text.
fn grpc_status(headers: &http::HeaderMap) -> Option<String> {
    let code: u32 = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if code == 0 {
        return None;
    }
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    Some(rpc_error(grpc_code_name(code), &message))
}

fn grpc_code_name(code: u32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    NAMES.get(code as usize).copied().unwrap_or("Unknown")
}

fn serving_status_name(n: u64) -> String {
    match n {
        0 => "UNKNOWN".to_string(),
        1 => "SERVING".to_string(),
        2 => "NOT_SERVING".to_string(),
        3 => "SERVICE_UNKNOWN".to_string(),
        n => n.to_string(),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// gRPC length-prefixed message: uncompressed flag, big-endian length, payload.
pub(crate) fn frame(msg: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(5 + msg.len());
    v.push(0);
    v.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    v.extend_from_slice(msg);
    Bytes::from(v)
}

/// HealthCheckRequest { string service = 1; }
pub(crate) fn encode_request(service: &str) -> Vec<u8> {
    let mut v = Vec::new();
    if !service.is_empty() {
        v.push(0x0a);
        put_varint(&mut v, service.len() as u64);
        v.extend_from_slice(service.as_bytes());
    }
    v
}

/// HealthCheckResponse { ServingStatus status = 1; } inside one gRPC frame.
fn decode_response(data: &[u8]) -> Result<u64, String> {
    let internal = |m: &str| rpc_error("Internal", m);
    if data.len() < 5 {
        return Err(internal("grpc: missing response message"));
    }
    if data[0] != 0 {
        return Err(internal("grpc: compressed response not supported"));
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    let mut msg = data
        .get(5..5 + len)
        .ok_or_else(|| internal("grpc: truncated response message"))?;
    let mut status = 0;
    while msg.has_remaining() {
        let key = get_varint(&mut msg).ok_or_else(|| internal("grpc: bad protobuf"))?;
        match (key >> 3, key & 7) {
            (1, 0) => {
                status = get_varint(&mut msg).ok_or_else(|| internal("grpc: bad protobuf"))?
            }
            (_, 0) => {
                get_varint(&mut msg).ok_or_else(|| internal("grpc: bad protobuf"))?;
            }
            (_, 1) if msg.remaining() >= 8 => msg.advance(8),
            (_, 5) if msg.remaining() >= 4 => msg.advance(4),
            (_, 2) => {
                let n =
                    get_varint(&mut msg).ok_or_else(|| internal("grpc: bad protobuf"))? as usize;
                if msg.remaining() < n {
                    return Err(internal("grpc: bad protobuf"));
                }
                msg.advance(n);
            }
            _ => return Err(internal("grpc: bad protobuf")),
        }
    }
    Ok(status)
}

pub(crate) fn put_varint(v: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        v.push((n as u8) | 0x80);
        n >>= 7;
    }
    v.push(n as u8);
}

fn get_varint(b: &mut &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.first()?;
        *b = &b[1..];
        n |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protobuf_round_trip() {
        assert_eq!(encode_request(""), Vec::<u8>::new());
        assert_eq!(encode_request("ab"), vec![0x0a, 2, b'a', b'b']);
        let mut body = frame(&[0x08, 0x01]).to_vec();
        assert_eq!(decode_response(&body), Ok(1));
        body = frame(&[0x08, 0x02, 0x12, 0x01, b'x']).to_vec();
        assert_eq!(decode_response(&body), Ok(2));
        assert_eq!(decode_response(&frame(&[])), Ok(0));
        assert!(decode_response(&[0, 0]).is_err());
    }

    #[test]
    fn status_texts() {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", "12".parse().unwrap());
        h.insert("grpc-message", "no%20such".parse().unwrap());
        assert_eq!(
            grpc_status(&h).unwrap(),
            "rpc error: code = Unimplemented desc = no such"
        );
        assert_eq!(serving_status_name(2), "NOT_SERVING");
    }
}
