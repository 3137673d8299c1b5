//! Every check type run by the agent against servers this test starts on 127.0.0.1: HTTP,
//! TCP, UDP, gRPC (a small h2 server), TTL expiry, scripts (refused unless enabled), and the
//! SuccessBeforePassing / FailuresBeforeCritical counters.
//!
//! Not covered: DeregisterCriticalServiceAfter, whose minimum in Consul is one minute; a test
//! would need over 70 s on its own, more than this suite's budget.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use crate::agent_services::{agent_checks, wait_check, wait_check_output};
use crate::common::{eventually, Agent, TempDir};

per_core!(
    http_check_follows_status,
    tcp_check_open_then_closed,
    udp_check_echo,
    grpc_check_serving,
    ttl_check_expires,
    script_check_refused_by_default,
    success_before_passing,
    failures_before_critical,
);
per_core_custom!(script_checks_when_enabled);

/// Generous: a check with a 1 s interval reaches a new state within a few runs.
const FLIP: Duration = Duration::from_secs(15);

#[track_caller]
fn register_check(a: &Agent, def: &Value) {
    let r = a.put_json("/v1/agent/check/register", def);
    r.ok();
}

// ---- a loopback HTTP server whose answers the test controls ----

struct HttpStub {
    port: u16,
    status: Arc<AtomicU16>,
    /// Requests seen so far.
    hits: Arc<AtomicUsize>,
    /// Requests numbered above this wait (unanswered) until it grows.
    allowed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl HttpStub {
    fn start() -> HttpStub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let stub = HttpStub {
            port,
            status: Arc::new(AtomicU16::new(200)),
            hits: Arc::new(AtomicUsize::new(0)),
            allowed: Arc::new(AtomicUsize::new(usize::MAX)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (status, hits, allowed, stop) = (
            stub.status.clone(),
            stub.hits.clone(),
            stub.allowed.clone(),
            stub.stop.clone(),
        );
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (status, hits, allowed, stop) =
                            (status.clone(), hits.clone(), allowed.clone(), stop.clone());
                        thread::spawn(move || serve_one(conn, &status, &hits, &allowed, &stop));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(10))
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        stub
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/health", self.port)
    }

    fn set(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for HttpStub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.allowed.store(usize::MAX, Ordering::SeqCst);
    }
}

fn serve_one(
    mut conn: TcpStream,
    status: &AtomicU16,
    hits: &AtomicUsize,
    allowed: &AtomicUsize,
    stop: &AtomicBool,
) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
    while n > allowed.load(Ordering::SeqCst) && !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(10));
    }
    let code = status.load(Ordering::SeqCst);
    let reason = match code {
        200 => "OK",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Whatever",
    };
    let body = format!("stub says {code}");
    let resp = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(resp.as_bytes());
    let _ = conn.shutdown(Shutdown::Write);
}

fn http_check_follows_status(a: &Agent) {
    let stub = HttpStub::start();
    register_check(
        a,
        &json!({"ID": "http", "Name": "http stub", "HTTP": stub.url(), "Interval": "1s"}),
    );
    let c = wait_check(a, "http", "passing", FLIP);
    assert_eq!(c["Type"], "http", "{c}");
    let out = c["Output"].as_str().unwrap_or_default();
    assert!(
        out.contains("200") && out.contains("stub says 200"),
        "the output names the status and carries the body: {c}"
    );
    assert!(stub.hits() >= 1);

    stub.set(500);
    let c = wait_check(a, "http", "critical", FLIP);
    let out = c["Output"].as_str().unwrap_or_default();
    assert!(out.contains("500") && out.contains("stub says 500"), "{c}");

    stub.set(429);
    let c = wait_check(a, "http", "warning", FLIP);
    let out = c["Output"].as_str().unwrap_or_default();
    assert!(
        out.contains("429") && out.contains("stub says 429"),
        "429 Too Many Requests is a warning: {c}"
    );

    stub.set(200);
    wait_check(a, "http", "passing", FLIP);
}

fn tcp_check_open_then_closed(a: &Agent) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let acceptor = thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            if let Ok((c, _)) = listener.accept() {
                drop(c);
            }
            thread::sleep(Duration::from_millis(10));
        }
        // The listener closes here.
    });
    register_check(
        a,
        &json!({"ID": "tcp", "Name": "tcp stub", "TCP": format!("127.0.0.1:{port}"), "Interval": "1s"}),
    );
    let c = wait_check(a, "tcp", "passing", FLIP);
    assert_eq!(c["Type"], "tcp", "{c}");
    assert!(
        c["Output"].as_str().is_some_and(|o| o.contains("Success")),
        "{c}"
    );

    stop.store(true, Ordering::Relaxed);
    acceptor.join().expect("acceptor");
    let c = wait_check(a, "tcp", "critical", FLIP);
    assert!(
        c["Output"]
            .as_str()
            .is_some_and(|o| o.contains(&port.to_string())),
        "the output names the target: {c}"
    );
}

fn udp_check_echo(a: &Agent) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let port = sock.local_addr().expect("addr").port();
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicUsize::new(0));
    let (stop2, received2) = (stop.clone(), received.clone());
    let echo = thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop2.load(Ordering::Relaxed) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                received2.fetch_add(1, Ordering::SeqCst);
                let _ = sock.send_to(&buf[..n], from);
            }
        }
    });
    register_check(
        a,
        &json!({"ID": "udp", "Name": "udp echo", "UDP": format!("127.0.0.1:{port}"), "Interval": "1s"}),
    );
    let c = wait_check(a, "udp", "passing", FLIP);
    assert_eq!(c["Type"], "udp", "{c}");
    assert_eventually!(
        received.load(Ordering::SeqCst) > 0,
        FLIP,
        "the check sent a datagram to the echo server"
    );
    stop.store(true, Ordering::Relaxed);
    echo.join().expect("echo");
}

fn ttl_check_expires(a: &Agent) {
    register_check(a, &json!({"ID": "short", "Name": "short ttl", "TTL": "1s"}));
    a.put_empty("/v1/agent/check/pass/short?note=alive").ok();
    // Passing for at most a second; do not insist on seeing it, only on how it ends.
    wait_check_output(a, "short", "critical", "TTL expired", FLIP);
}

fn script_check_refused_by_default(a: &Agent) {
    let r = a.put_json(
        "/v1/agent/check/register",
        &json!({"ID": "script", "Name": "script", "Args": ["/bin/true"], "Interval": "1s"}),
    );
    r.status(400);
    assert!(
        r.text().contains("enable_script_checks"),
        "the error names the setting: {r:?}"
    );
    assert!(!agent_checks(a).contains_key("script"));

    // Also inside a service definition.
    let r = a.put_json(
        "/v1/agent/service/register",
        &json!({"Name": "scripted", "Check": {"Args": ["/bin/true"], "Interval": "1s"}}),
    );
    r.status(400);
    a.get("/v1/agent/service/scripted").status(404);
}

fn script_checks_when_enabled(cores: usize) {
    let dir = TempDir::new("script-cfg");
    let cfg = dir.write("scripts.hcl", "enable_script_checks = true\n");
    let cfg = cfg.display().to_string();
    let a = Agent::start_with("script_checks_when_enabled", cores, &["-config-file", &cfg]);
    let a = &a;
    for (id, code, want) in [
        ("exit0", 0, "passing"),
        ("exit1", 1, "warning"),
        ("exit2", 2, "critical"),
    ] {
        register_check(
            a,
            &json!({
                "ID": id,
                "Name": id,
                "Args": ["/bin/sh", "-c", format!("echo script-{id}; exit {code}")],
                "Interval": "1s"
            }),
        );
        // The script's output is captured.
        let c = wait_check_output(a, id, want, &format!("script-{id}"), FLIP);
        assert_eq!(c["Type"], "script", "{c}");
    }
}

/// Waits until the stub has received request number `n` (which it holds unanswered when
/// `allowed` is below it).
fn wait_hits(stub: &HttpStub, n: usize) {
    eventually(FLIP, &format!("request #{n} at the stub"), || {
        (stub.hits() >= n).then_some(())
    });
}

fn success_before_passing(a: &Agent) {
    let stub = HttpStub::start();
    register_check(
        a,
        &json!({
            "ID": "sbp",
            "Name": "needs three",
            "HTTP": stub.url(),
            "Interval": "1s",
            "SuccessBeforePassing": 3
        }),
    );
    // Consul applies a check's first result at once, whatever the thresholds.
    wait_check(a, "sbp", "passing", FLIP);
    stub.set(500);
    wait_check(a, "sbp", "critical", FLIP);
    // Recovery: two successes answered, the third held back: still critical.
    let seen = stub.hits();
    stub.allowed.store(seen, Ordering::SeqCst);
    wait_hits(&stub, seen + 1);
    stub.set(200);
    stub.allowed.store(seen + 2, Ordering::SeqCst);
    wait_hits(&stub, seen + 3);
    let checks = agent_checks(a);
    assert_eq!(
        checks["sbp"]["Status"], "critical",
        "two successes are not enough: {}",
        checks["sbp"]
    );
    stub.allowed.store(usize::MAX, Ordering::SeqCst);
    wait_check(a, "sbp", "passing", FLIP);
}

fn failures_before_critical(a: &Agent) {
    let stub = HttpStub::start();
    register_check(
        a,
        &json!({
            "ID": "fbc",
            "Name": "tolerates two",
            "HTTP": stub.url(),
            "Interval": "1s",
            "FailuresBeforeCritical": 3
        }),
    );
    wait_check(a, "fbc", "passing", FLIP);
    // From the next request on: failures, of which only two are answered at first.
    let seen = stub.hits();
    stub.allowed.store(seen, Ordering::SeqCst);
    wait_hits(&stub, seen + 1);
    stub.set(500);
    stub.allowed.store(seen + 2, Ordering::SeqCst);
    wait_hits(&stub, seen + 3);
    let checks = agent_checks(a);
    assert_eq!(
        checks["fbc"]["Status"], "passing",
        "two failures are tolerated: {}",
        checks["fbc"]
    );
    stub.allowed.store(usize::MAX, Ordering::SeqCst);
    let c = wait_check(a, "fbc", "critical", FLIP);
    assert!(
        c["Output"].as_str().is_some_and(|o| o.contains("500")),
        "{c}"
    );
}

// ---- gRPC: a grpc.health.v1 server on h2 ----

/// Serves grpc.health.v1.Health/Check: SERVING for the empty service and "healthy",
/// NOT_SERVING for anything else. Runs on its own glommio executor (the crate's runtime)
/// with h2 over tokio-util's compat layer, until the returned flag is set.
fn start_grpc_health() -> (u16, Arc<AtomicBool>) {
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    glommio::LocalExecutorBuilder::default()
        .name("grpc-health-stub")
        .spawn(move || async move {
            let l = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            port_tx
                .send(l.local_addr().expect("addr").port())
                .expect("send port");
            let accept = async move {
                loop {
                    if let Ok(conn) = l.accept().await {
                        glommio::spawn_local(grpc_conn(conn)).detach();
                    }
                }
            };
            let watch = async move {
                while !stop2.load(Ordering::Relaxed) {
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                }
            };
            // Stopping drops the listener and, with the executor, every connection.
            futures::future::select(Box::pin(accept), Box::pin(watch)).await;
        })
        .expect("spawn grpc executor");
    let port = port_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("grpc stub port");
    (port, stop)
}

async fn grpc_conn(conn: glommio::net::TcpStream) {
    use tokio_util::compat::FuturesAsyncReadCompatExt;
    let Ok(mut h2c) = h2::server::handshake(conn.compat()).await else {
        return;
    };
    while let Some(Ok((req, mut respond))) = h2c.accept().await {
        let path = req.uri().path().to_string();
        let mut body = req.into_body();
        let mut msg = Vec::new();
        while let Some(Ok(chunk)) = body.data().await {
            let _ = body.flow_control().release_capacity(chunk.len());
            msg.extend_from_slice(&chunk);
        }
        let service = decode_service(&msg);
        let serving =
            path == "/grpc.health.v1.Health/Check" && (service.is_empty() || service == "healthy");
        // HealthCheckResponse { status = 1 (SERVING) | 2 (NOT_SERVING) }, length-prefixed.
        let status_byte = if serving { 1u8 } else { 2u8 };
        let frame = vec![0u8, 0, 0, 0, 2, 0x08, status_byte];
        let head = http::Response::builder()
            .status(200)
            .header("content-type", "application/grpc")
            .body(())
            .expect("response");
        let Ok(mut send) = respond.send_response(head, false) else {
            continue;
        };
        let _ = send.send_data(bytes::Bytes::from(frame), false);
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let _ = send.send_trailers(trailers);
    }
}

/// The `service` field (1, a string) of a length-prefixed HealthCheckRequest.
fn decode_service(msg: &[u8]) -> String {
    let Some(pb) = msg.get(5..) else {
        return String::new();
    };
    if pb.len() >= 2 && pb[0] == 0x0a {
        let len = pb[1] as usize;
        if let Some(s) = pb.get(2..2 + len) {
            return String::from_utf8_lossy(s).into_owned();
        }
    }
    String::new()
}

fn grpc_check_serving(a: &Agent) {
    let (port, stop) = start_grpc_health();
    register_check(
        a,
        &json!({"ID": "grpc", "Name": "grpc health", "GRPC": format!("127.0.0.1:{port}"), "Interval": "1s"}),
    );
    register_check(
        a,
        &json!({"ID": "grpc-svc", "Name": "grpc named", "GRPC": format!("127.0.0.1:{port}/healthy"), "Interval": "1s"}),
    );
    register_check(
        a,
        &json!({"ID": "grpc-sick", "Name": "grpc sick", "GRPC": format!("127.0.0.1:{port}/sick"), "Interval": "1s"}),
    );
    let c = wait_check(a, "grpc", "passing", FLIP);
    assert_eq!(c["Type"], "grpc", "{c}");
    wait_check(a, "grpc-svc", "passing", FLIP);
    wait_check_output(a, "grpc-sick", "critical", "NOT_SERVING", FLIP);
    stop.store(true, Ordering::Relaxed);
    // Once the server is gone, the check fails.
    wait_check(a, "grpc", "critical", FLIP);
}
