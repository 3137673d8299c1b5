//! Runner tests against real servers on 127.0.0.1 started by each test. Nothing asserts on
//! elapsed time: tests wait for conditions with generous deadlines and fail only when a
//! condition never comes.
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, UdpSocket};
use glommio::timer::Timer;
use simd_json::OwnedValue;
use tokio_util::compat::FuturesAsyncReadCompatExt;

use super::*;

/// Deadline for any awaited condition; generous so a loaded machine does not fail a test.
const PATIENCE: Duration = Duration::from_secs(20);
const FAST: Duration = Duration::from_millis(30);

fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(f)
        .expect("executor")
        .join()
        .expect("test executor");
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        Timer::new(Duration::from_millis(5)).await;
    }
}

type Events = Rc<RefCell<Vec<(String, Status, String)>>>;

fn recorder() -> (Notify, Events) {
    let events: Events = Rc::default();
    let e = events.clone();
    let notify: Notify = Rc::new(move |id: &str, status: Status, output: String| {
        e.borrow_mut().push((id.to_string(), status, output));
    });
    (notify, events)
}

fn last(events: &Events) -> Option<(Status, String)> {
    events.borrow().last().map(|(_, s, o)| (*s, o.clone()))
}

async fn wait_status(events: &Events, status: Status) -> String {
    wait_for(&format!("status {status}"), || {
        last(events).is_some_and(|(s, _)| s == status)
    })
    .await;
    last(events).unwrap().1
}

fn def(id: &str, kind: CheckKind) -> CheckDef {
    let mut d = CheckDef::new(id, kind);
    d.interval = FAST;
    d.timeout = Duration::from_secs(5);
    d
}

fn json(text: &str) -> OwnedValue {
    let mut b = text.as_bytes().to_vec();
    simd_json::to_owned_value(&mut b).expect("test json")
}

// ---------------------------------------------------------------------------------------
// A tiny HTTP/1.1 server whose answer the test changes while it runs.

#[derive(Default)]
struct HttpState {
    code: Cell<u16>,
    /// Codes to serve in order, before falling back to `code`.
    script: RefCell<Vec<u16>>,
    body: RefCell<Option<String>>,
    served: Cell<usize>,
    /// When set, connections are accepted and never answered.
    hang: Cell<bool>,
    requests: RefCell<Vec<String>>,
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        302 => "Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Whatever",
    }
}

fn http_server(state: Rc<HttpState>) -> (SocketAddr, glommio::Task<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let task = glommio::spawn_local(async move {
        loop {
            let Ok(mut stream) = listener.accept().await else {
                return;
            };
            let state = state.clone();
            glommio::spawn_local(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                let head_end = loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    req.extend_from_slice(&buf[..n]);
                    if let Some(i) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&req[..head_end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while req.len() < head_end + len {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                state
                    .requests
                    .borrow_mut()
                    .push(String::from_utf8_lossy(&req).to_string());
                if state.hang.get() {
                    Timer::new(Duration::from_secs(60)).await;
                    return;
                }
                let resp = if head.starts_with("GET /redirect ") {
                    "HTTP/1.1 302 Found\r\nLocation: /health\r\nContent-Length: 0\r\n\r\n"
                        .to_string()
                } else {
                    let code = {
                        let mut script = state.script.borrow_mut();
                        if script.is_empty() {
                            state.code.get()
                        } else {
                            script.remove(0)
                        }
                    };
                    let body = state
                        .body
                        .borrow()
                        .clone()
                        .unwrap_or_else(|| format!("state {code}"));
                    format!(
                        "HTTP/1.1 {code} {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        reason(code),
                        body.len()
                    )
                };
                // Counted before answering: a check reports only after reading the answer.
                if !head.starts_with("GET /redirect ") {
                    state.served.set(state.served.get() + 1);
                }
                let _ = stream.write_all(resp.as_bytes()).await;
                let _ = stream.close().await;
            })
            .detach();
        }
    });
    (addr, task)
}

fn http_kind(url: String) -> CheckKind {
    CheckKind::Http {
        url,
        method: String::new(),
        headers: BTreeMap::new(),
        body: String::new(),
        disable_redirects: false,
        tls: TlsSettings::default(),
    }
}

#[test]
fn http_check_follows_the_status_code() {
    run(|| async {
        let state = Rc::new(HttpState::default());
        state.code.set(200);
        let (addr, _server) = http_server(state.clone());
        let (notify, events) = recorder();
        let checks = Checks::new(notify, None);
        let url = format!("http://{addr}/health");
        checks.add(def("web", http_kind(url.clone())));
        assert_eq!(checks.len(), 1);

        let out = wait_status(&events, Status::Passing).await;
        assert_eq!(out, format!("HTTP GET {url}: 200 OK Output: state 200"));

        state.code.set(500);
        let out = wait_status(&events, Status::Critical).await;
        assert_eq!(
            out,
            format!("HTTP GET {url}: 500 Internal Server Error Output: state 500")
        );

        state.code.set(429);
        let out = wait_status(&events, Status::Warning).await;
        assert_eq!(
            out,
            format!("HTTP GET {url}: 429 Too Many Requests Output: state 429")
        );
        assert_eq!(events.borrow()[0].0, "web");
        let req = state.requests.borrow()[0].clone();
        assert!(req.starts_with("GET /health HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("User-Agent: Consul Health Check\r\n"), "{req}");
        assert!(req.contains("Accept: text/plain, text/*, */*\r\n"), "{req}");
    });
}

#[test]
fn notify_is_called_only_on_change() {
    run(|| async {
        let state = Rc::new(HttpState::default());
        state.code.set(200);
        let (addr, _server) = http_server(state.clone());
        let (notify, events) = recorder();
        let checks = Checks::new(notify, None);
        checks.add(def("web", http_kind(format!("http://{addr}/"))));
        wait_status(&events, Status::Passing).await;
        let seen = state.served.get();
        wait_for("five more runs", || state.served.get() >= seen + 5).await;
        assert_eq!(events.borrow().len(), 1, "{:?}", events.borrow());

        // Same status, new output: reported.
        *state.body.borrow_mut() = Some("other".into());
        wait_for("output change", || events.borrow().len() == 2).await;
        assert_eq!(last(&events).unwrap().0, Status::Passing);
        assert!(last(&events).unwrap().1.ends_with("Output: other"));

        // A check registered as passing with the same output reports nothing at first.
        let (notify2, events2) = recorder();
        let checks2 = Checks::new(notify2, None);
        let mut d = def("web2", http_kind(format!("http://{addr}/")));
        d.initial_status = Status::Passing;
        d.initial_output = format!("HTTP GET http://{addr}/: 200 OK Output: other");
        checks2.add(d);
        let seen = state.served.get();
        wait_for("runs of the second check", || {
            state.served.get() >= seen + 6
        })
        .await;
        assert!(events2.borrow().is_empty(), "{:?}", events2.borrow());
    });
}

#[test]
fn http_check_sends_method_headers_and_body_and_follows_redirects() {
    run(|| async {
        let state = Rc::new(HttpState::default());
        state.code.set(201);
        let (addr, _server) = http_server(state.clone());
        let (notify, events) = recorder();
        let checks = Checks::new(notify, None);
        let mut headers = BTreeMap::new();
        headers.insert("X-Test".to_string(), vec!["a".to_string(), "b".to_string()]);
        headers.insert("Host".to_string(), vec!["example.test".to_string()]);
        let url = format!("http://{addr}/post");
        checks.add(def(
            "post",
            CheckKind::Http {
                url: url.clone(),
                method: "POST".into(),
                headers,
                body: "payload".into(),
                disable_redirects: false,
                tls: TlsSettings::default(),
            },
        ));
        let out = wait_status(&events, Status::Passing).await;
        assert_eq!(
            out,
            format!("HTTP POST {url}: 201 Whatever Output: state 201")
        );
        let req = state.requests.borrow()[0].clone();
        assert!(req.starts_with("POST /post HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("Host: example.test\r\n"), "{req}");
        assert!(req.contains("X-Test: a\r\nX-Test: b\r\n"), "{req}");
        assert!(req.contains("Content-Length: 7\r\n"), "{req}");
        assert!(req.ends_with("\r\n\r\npayload"), "{req}");
        checks.remove("post");

        // A redirect is followed; the output names the URL the check was given.
        state.code.set(200);
        let url = format!("http://{addr}/redirect");
        checks.add(def("redir", http_kind(url.clone())));
        wait_for("redirect result", || {
            events.borrow().iter().any(|(id, _, _)| id == "redir")
        })
        .await;
        let (_, status, out) = events.borrow().last().unwrap().clone();
        assert_eq!(status, Status::Passing);
        assert_eq!(out, format!("HTTP GET {url}: 200 OK Output: state 200"));

        // With redirects disabled the 302 itself is the answer: critical.
        let mut d = def("noredir", http_kind(url.clone()));
        if let CheckKind::Http {
            disable_redirects, ..
        } = &mut d.kind
        {
            *disable_redirects = true;
        }
        checks.add(d);
        wait_for("no-redirect result", || {
            events.borrow().iter().any(|(id, _, _)| id == "noredir")
        })
        .await;
        let (_, status, out) = events.borrow().last().unwrap().clone();
        assert_eq!(status, Status::Critical);
        assert_eq!(out, format!("HTTP GET {url}: 302 Found Output: "));
    });
}

#[test]
fn http_output_keeps_the_tail_of_the_body() {
    run(|| async {
        let state = Rc::new(HttpState::default());
        state.code.set(200);
        let body: String = (0..5000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        *state.body.borrow_mut() = Some(body.clone());
        let (addr, _server) = http_server(state.clone());
        let (notify, events) = recorder();
        let checks = Checks::new(notify, None);
        let mut d = def("big", http_kind(format!("http://{addr}/")));
        d.output_max_size = 100;
        checks.add(d);
        let out = wait_status(&events, Status::Passing).await;
        assert!(
            out.ends_with(&format!("Output: {}", &body[4900..])),
            "{out}"
        );
    });
}

#[test]
fn http_errors_are_critical_with_go_texts() {
    run(|| async {
        // A port nobody listens on.
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let state = Rc::new(HttpState::default());
        state.hang.set(true);
        let (hang_addr, _server) = http_server(state.clone());

        let (notify, events) = recorder();
        let checks = Checks::new(notify, None);
        checks.add(def("refused", http_kind(format!("http://{closed_addr}/"))));
        let mut d = def("hang", http_kind(format!("http://{hang_addr}/")));
        d.timeout = Duration::from_millis(200);
        checks.add(d);
        wait_for("both results", || events.borrow().len() >= 2).await;
        let evs = events.borrow().clone();
        let refused = evs.iter().find(|e| e.0 == "refused").unwrap();
        assert_eq!(refused.1, Status::Critical);
        assert_eq!(
            refused.2,
            format!(
                "Get \"http://{closed_addr}/\": dial tcp {closed_addr}: connect: connection refused"
            )
        );
        let hang = evs.iter().find(|e| e.0 == "hang").unwrap();
        assert_eq!(hang.1, Status::Critical);
        assert_eq!(
            hang.2,
            format!(
                "Get \"http://{hang_addr}/\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            )
        );
    });
}

// ---------------------------------------------------------------------------------------
// Thresholds, observed through an HTTP server serving a fixed sequence of codes.

/// Runs a check against `codes` and returns (request number, status) of each notification.
async fn threshold_events(codes: &[u16], sbp: u32, fbw: u32, fbc: u32) -> Vec<(usize, Status)> {
    let state = Rc::new(HttpState::default());
    *state.script.borrow_mut() = codes.to_vec();
    state.code.set(*codes.last().unwrap());
    let (addr, _server) = http_server(state.clone());
    let seen: Rc<RefCell<Vec<(usize, Status)>>> = Rc::default();
    let (s2, st2) = (seen.clone(), state.clone());
    let notify: Notify = Rc::new(move |_: &str, status: Status, _: String| {
        s2.borrow_mut().push((st2.served.get(), status));
    });
    let checks = Checks::new(notify, None);
    let mut d = def("t", http_kind(format!("http://{addr}/")));
    d.success_before_passing = sbp;
    d.failures_before_warning = fbw;
    d.failures_before_critical = fbc;
    checks.add(d);
    let n = codes.len();
    wait_for("all scripted answers and two more", || {
        state.served.get() >= n + 2
    })
    .await;
    checks.remove("t");
    let out = seen.borrow().clone();
    out
}

#[test]
fn success_before_passing_and_failures_before_critical() {
    run(|| async {
        use Status::*;
        let evs = threshold_events(&[200, 500, 500, 500, 200, 200], 2, 0, 3).await;
        assert_eq!(evs, vec![(1, Passing), (4, Critical), (6, Passing)]);

        let evs = threshold_events(&[200, 500, 500, 500, 500], 0, 1, 3).await;
        assert_eq!(evs, vec![(1, Passing), (2, Warning), (4, Critical)]);

        // Failures that never reach the threshold leave the status alone.
        let evs = threshold_events(&[200, 500, 500, 200, 500, 200], 0, 0, 3).await;
        assert_eq!(evs, vec![(1, Passing)]);

        // The first result counts at once, whatever the thresholds.
        let evs = threshold_events(&[500, 200, 200, 200], 3, 0, 3).await;
        assert_eq!(evs, vec![(1, Critical), (4, Passing)]);
    });
}

#[test]
fn remove_and_replace_stop_the_old_task() {
    run(|| async {
        let a = Rc::new(HttpState::default());
        a.code.set(200);
        let b = Rc::new(HttpState::default());
        b.code.set(200);
        let (addr_a, _sa) = http_server(a.clone());
        let (addr_b, _sb) = http_server(b.clone());
        let (notify, _events) = recorder();
        let checks = Checks::new(notify, None);

        checks.add(def("x", http_kind(format!("http://{addr_a}/"))));
        wait_for("runs against a", || a.served.get() >= 2).await;
        // Same id, new target: the task restarts against b.
        checks.add(def("x", http_kind(format!("http://{addr_b}/"))));
        let a_then = a.served.get();
        wait_for("runs against b", || b.served.get() >= 6).await;
        assert!(a.served.get() <= a_then + 1, "old task still running");
        assert_eq!(checks.len(), 1);

        // A sentinel on the same interval proves time passed while "x" stayed quiet.
        checks.remove("x");
        assert_eq!(checks.len(), 0);
        assert!(checks.last("x").is_none());
        let b_then = b.served.get();
        checks.add(def("sentinel", http_kind(format!("http://{addr_a}/"))));
        let a_now = a.served.get();
        wait_for("sentinel runs", || a.served.get() >= a_now + 6).await;
        assert!(b.served.get() <= b_then + 1, "removed task still running");

        // Dropping the registry cancels its tasks as well.
        drop(checks);
        let a_then = a.served.get();
        let (n2, _e2) = recorder();
        let other = Checks::new(n2, None);
        other.add(def("sentinel2", http_kind(format!("http://{addr_b}/"))));
        let b_now = b.served.get();
        wait_for("second sentinel runs", || b.served.get() >= b_now + 6).await;
        assert!(
            a.served.get() <= a_then + 1,
            "dropped registry still running"
        );
    });
}

// ---------------------------------------------------------------------------------------
// TLS: an HTTPS server with a self-signed certificate for 127.0.0.1.

fn self_signed() -> (
    rustls::pki_types::CertificateDer<'static>,
    Arc<rustls::ServerConfig>,
) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("certificate");
    let der = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        ck.signing_key.serialize_der(),
    ));
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![der.clone()], key)
    .expect("server config");
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (der, Arc::new(cfg))
}

fn https_server(cfg: Arc<rustls::ServerConfig>) -> (SocketAddr, glommio::Task<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let acceptor = futures_rustls::TlsAcceptor::from(cfg);
    let task = glommio::spawn_local(async move {
        loop {
            let Ok(stream) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            glommio::spawn_local(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let mut req = Vec::new();
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure")
                    .await;
                let _ = tls.close().await;
            })
            .detach();
        }
    });
    (addr, task)
}

fn https_kind(url: String, skip_verify: bool) -> CheckKind {
    CheckKind::Http {
        url,
        method: String::new(),
        headers: BTreeMap::new(),
        body: String::new(),
        disable_redirects: false,
        tls: TlsSettings {
            skip_verify,
            server_name: None,
        },
    }
}

#[test]
fn https_checks_verify_or_skip_verification() {
    run(|| async {
        let (cert, cfg) = self_signed();
        let (addr, _server) = https_server(cfg);
        let url = format!("https://{addr}/");
        let (notify, events) = recorder();
        let checks = Checks::new(notify, None);
        checks.add(def("skip", https_kind(url.clone(), true)));
        checks.add(def("verify", https_kind(url.clone(), false)));
        checks.add(def(
            "tcp-tls",
            CheckKind::Tcp {
                addr: addr.to_string(),
                use_tls: true,
                tls: TlsSettings {
                    skip_verify: true,
                    server_name: None,
                },
            },
        ));
        wait_for("three results", || events.borrow().len() >= 3).await;
        let evs = events.borrow().clone();
        let get = |id: &str| evs.iter().find(|e| e.0 == id).unwrap().clone();
        assert_eq!(
            get("skip"),
            (
                "skip".to_string(),
                Status::Passing,
                format!("HTTP GET {url}: 200 OK Output: secure")
            )
        );
        let verify = get("verify");
        assert_eq!(verify.1, Status::Critical);
        assert!(
            verify.2.starts_with(&format!("Get \"{url}\": tls: ")),
            "{}",
            verify.2
        );
        assert_eq!(get("tcp-tls").2, format!("TCP+TLS connect {addr}: Success"));

        // Trusting the certificate makes the verifying check pass.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let (notify2, events2) = recorder();
        let trusting = Checks::with_roots(notify2, None, Some(roots));
        trusting.add(def("verify", https_kind(url.clone(), false)));
        let out = wait_status(&events2, Status::Passing).await;
        assert_eq!(out, format!("HTTP GET {url}: 200 OK Output: secure"));
    });
}

// ---------------------------------------------------------------------------------------
// TCP and UDP.

#[test]
fn tcp_check_passes_while_listening_and_fails_when_closed() {
    run(|| async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Rc::new(Cell::new(0usize));
        let acc = accepted.clone();
        let server = glommio::spawn_local(async move {
            while let Ok(s) = listener.accept().await {
                acc.set(acc.get() + 1);
                drop(s);
            }
        });
        let (notify, events) = recorder();
        let checks = Checks::new(notify, None);
        checks.add(def(
            "tcp",
            CheckKind::Tcp {
                addr: addr.to_string(),
                use_tls: false,
                tls: TlsSettings::default(),
            },
        ));
        let out = wait_status(&events, Status::Passing).await;
        assert_eq!(out, format!("TCP connect {addr}: Success"));
        assert!(accepted.get() >= 1);

        drop(server); // cancels the accept loop, which closes the listener
        let out = wait_status(&events, Status::Critical).await;
        assert_eq!(out, format!("dial tcp {addr}: connect: connection refused"));
    });
}

#[test]
fn udp_check_semantics() {
    run(|| async {
        // An echo server: passing.
        let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
        let echo_addr = echo.local_addr().unwrap();
        let got = Rc::new(Cell::new(0usize));
        let g = got.clone();
        let _echo = glommio::spawn_local(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = echo.recv_from(&mut buf).await {
                g.set(g.get() + 1);
                let _ = echo.send_to(&buf[..n], from).await;
            }
        });
        // A silent socket: passing too (Consul counts a read timeout as success).
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let silent_addr = silent.local_addr().unwrap();
        // A closed port: the ICMP error makes it critical.
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);

        let (notify, events) = recorder();
        let checks = Checks::new(notify, None);
        for (id, addr) in [
            ("echo", echo_addr),
            ("silent", silent_addr),
            ("closed", closed_addr),
        ] {
            let mut d = def(
                id,
                CheckKind::Udp {
                    addr: addr.to_string(),
                },
            );
            d.timeout = Duration::from_millis(100);
            checks.add(d);
        }
        wait_for("three results", || {
            let evs = events.borrow();
            ["echo", "silent", "closed"]
                .iter()
                .all(|id| evs.iter().any(|e| e.0 == *id))
        })
        .await;
        let evs = events.borrow().clone();
        let get = |id: &str| evs.iter().find(|e| e.0 == id).unwrap().clone();
        assert_eq!(get("echo").1, Status::Passing,);
        assert_eq!(get("echo").2, format!("UDP connect {echo_addr}: Success"));
        assert!(got.get() >= 1);
        assert_eq!(
            get("silent").2,
            format!("UDP connect {silent_addr}: Success")
        );
        let closed = get("closed");
        assert_eq!(closed.1, Status::Critical, "{}", closed.2);
        assert!(
            closed.2.starts_with("read udp 127.0.0.1:")
                && closed
                    .2
                    .ends_with(&format!("->{closed_addr}: read: connection refused")),
            "{}",
            closed.2
        );
        drop(silent);
    });
}

// ---------------------------------------------------------------------------------------
// gRPC and H2PING against a small h2 server implementing grpc.health.v1.

fn grpc_server(tls: Option<Arc<rustls::ServerConfig>>) -> (SocketAddr, glommio::Task<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.map(futures_rustls::TlsAcceptor::from);
    let task = glommio::spawn_local(async move {
        loop {
            let Ok(stream) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            glommio::spawn_local(async move {
                let io: super::net::BoxIo = match acceptor {
                    Some(a) => match a.accept(stream).await {
                        Ok(t) => Box::pin(t),
                        Err(_) => return,
                    },
                    None => Box::pin(stream),
                };
                let Ok(mut conn) = h2::server::handshake(io.compat()).await else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    glommio::spawn_local(async move {
                        let mut body = req.into_body();
                        let mut data = Vec::new();
                        while let Some(Ok(chunk)) = body.data().await {
                            let _ = body.flow_control().release_capacity(chunk.len());
                            data.extend_from_slice(&chunk);
                        }
                        // Frame header, then field 1 (service) if present.
                        let service = if data.len() > 7 && data[5] == 0x0a {
                            String::from_utf8_lossy(&data[7..7 + data[6] as usize]).to_string()
                        } else {
                            String::new()
                        };
                        if service == "missing" {
                            let resp = ::http::Response::builder()
                                .status(200)
                                .header("content-type", "application/grpc")
                                .header("grpc-status", "5")
                                .header("grpc-message", "unknown%20service")
                                .body(())
                                .unwrap();
                            let _ = respond.send_response(resp, true);
                            return;
                        }
                        let status = if service == "down" { 2 } else { 1 };
                        let resp = ::http::Response::builder()
                            .status(200)
                            .header("content-type", "application/grpc")
                            .body(())
                            .unwrap();
                        let Ok(mut send) = respond.send_response(resp, false) else {
                            return;
                        };
                        let _ = send.send_data(grpc::frame(&[0x08, status]), false);
                        let mut trailers = ::http::HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        let _ = send.send_trailers(trailers);
                    })
                    .detach();
                }
            })
            .detach();
        }
    });
    (addr, task)
}

#[test]
fn grpc_health_checks() {
    run(|| async {
        let (addr, _server) = grpc_server(None);
        let (_, tls_cfg) = self_signed();
        let (tls_addr, _tls_server) = grpc_server(Some(tls_cfg));
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let (notify, events) = recorder();
        let checks = Checks::new(notify, None);
        let grpc = |target: String| CheckKind::Grpc {
            target,
            use_tls: false,
            tls: TlsSettings::default(),
        };
        checks.add(def("all", grpc(addr.to_string())));
        checks.add(def("svc", grpc(format!("{addr}/web"))));
        checks.add(def("down", grpc(format!("{addr}/down"))));
        checks.add(def("missing", grpc(format!("{addr}/missing"))));
        checks.add(def("refused", grpc(closed_addr.to_string())));
        checks.add(def(
            "ping",
            CheckKind::H2Ping {
                addr: addr.to_string(),
                use_tls: false,
                tls: TlsSettings::default(),
            },
        ));
        checks.add(def(
            "tls",
            CheckKind::Grpc {
                target: tls_addr.to_string(),
                use_tls: true,
                tls: TlsSettings {
                    skip_verify: true,
                    server_name: None,
                },
            },
        ));
        checks.add(def(
            "tls-ping",
            CheckKind::H2Ping {
                addr: tls_addr.to_string(),
                use_tls: true,
                tls: TlsSettings {
                    skip_verify: true,
                    server_name: None,
                },
            },
        ));
        let ids = [
            "all", "svc", "down", "missing", "refused", "ping", "tls", "tls-ping",
        ];
        wait_for("all results", || {
            let evs = events.borrow();
            ids.iter().all(|id| evs.iter().any(|e| e.0 == *id))
        })
        .await;
        let evs = events.borrow().clone();
        let get = |id: &str| {
            let e = evs.iter().find(|e| e.0 == id).unwrap();
            (e.1, e.2.clone())
        };
        assert_eq!(
            get("all"),
            (Status::Passing, format!("gRPC check {addr}: success"))
        );
        assert_eq!(
            get("svc"),
            (Status::Passing, format!("gRPC check {addr}/web: success"))
        );
        assert_eq!(
            get("down"),
            (
                Status::Critical,
                format!("gRPC {addr}/down serving status: NOT_SERVING")
            )
        );
        assert_eq!(
            get("missing"),
            (
                Status::Critical,
                "rpc error: code = NotFound desc = unknown service".to_string()
            )
        );
        let refused = get("refused");
        assert_eq!(refused.0, Status::Critical);
        assert!(
            refused
                .1
                .starts_with("rpc error: code = Unavailable desc = connection error")
                && refused.1.contains("connection refused"),
            "{}",
            refused.1
        );
        assert_eq!(
            get("ping"),
            (Status::Passing, "HTTP2 ping was successful".to_string())
        );
        assert_eq!(
            get("tls"),
            (Status::Passing, format!("gRPC check {tls_addr}: success"))
        );
        assert_eq!(
            get("tls-ping"),
            (Status::Passing, "HTTP2 ping was successful".to_string())
        );
    });
}

// ---------------------------------------------------------------------------------------
// Scripts.

fn sh(script: &str) -> CheckKind {
    CheckKind::Script {
        args: vec!["/bin/sh".into(), "-c".into(), script.into()],
    }
}

#[test]
fn script_exit_codes_and_output() {
    run(|| async {
        let (notify, events) = recorder();
        let checks = Checks::new(notify, None);
        checks.add(def("ok", sh("echo hello; exit 0")));
        checks.add(def("warn", sh("echo careful; exit 1")));
        checks.add(def("crit", sh("echo broken >&2; exit 2")));
        checks.add(def(
            "nopath",
            CheckKind::Script {
                args: vec!["/nonexistent/check".into()],
            },
        ));
        checks.add(def(
            "nocmd",
            CheckKind::Script {
                args: vec!["muster-no-such-command".into()],
            },
        ));
        let mut big = def(
            "big",
            sh("i=0; while [ $i -lt 50 ]; do echo 0123456789; i=$((i+1)); done"),
        );
        big.output_max_size = 22;
        checks.add(big);
        wait_for("six results", || {
            let evs = events.borrow();
            ["ok", "warn", "crit", "nopath", "nocmd", "big"]
                .iter()
                .all(|id| evs.iter().any(|e| e.0 == *id))
        })
        .await;
        let evs = events.borrow().clone();
        let get = |id: &str| {
            let e = evs.iter().find(|e| e.0 == id).unwrap();
            (e.1, e.2.clone())
        };
        assert_eq!(get("ok"), (Status::Passing, "hello\n".to_string()));
        assert_eq!(get("warn"), (Status::Warning, "careful\n".to_string()));
        assert_eq!(get("crit"), (Status::Critical, "broken\n".to_string()));
        assert_eq!(
            get("nopath"),
            (
                Status::Critical,
                "fork/exec /nonexistent/check: no such file or directory".to_string()
            )
        );
        assert_eq!(
            get("nocmd"),
            (
                Status::Critical,
                "exec: \"muster-no-such-command\": executable file not found in $PATH".to_string()
            )
        );
        assert_eq!(
            get("big"),
            (
                Status::Passing,
                "Captured 22 of 550 bytes\n...\n0123456789\n0123456789\n".to_string()
            )
        );
    });
}

/// A process is gone once /proc forgets it or it is a zombie.
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

#[test]
fn script_is_killed_at_its_timeout_with_its_children() {
    run(|| async {
        let (notify, events) = recorder();
        let checks = Checks::new(notify, None);
        // The script prints its child's pid, then waits for it forever.
        let mut d = def("slow", sh("sleep 300 & echo $!; wait"));
        d.timeout = Duration::from_millis(300);
        checks.add(d);
        let out = wait_status(&events, Status::Critical).await;
        let (head, pid) = out.split_once("\n\n").expect("output after the message");
        assert_eq!(head, "Timed out (300ms) running check");
        let pid: u32 = pid.trim().parse().expect("pid");
        wait_for("the script's child to die", || process_gone(pid)).await;
    });
}

#[test]
fn removing_a_running_script_kills_it() {
    run(|| async {
        let (notify, _events) = recorder();
        let checks = Checks::new(notify, None);
        let dir = std::env::temp_dir().join(format!("muster-check-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let pidfile = dir.join("pid");
        let _ = std::fs::remove_file(&pidfile);
        let mut d = def(
            "long",
            sh(&format!("echo $$ > {}; exec sleep 300", pidfile.display())),
        );
        d.timeout = Duration::from_secs(600);
        d.interval = Duration::from_millis(1);
        checks.add(d);
        wait_for("the script to start", || {
            std::fs::read_to_string(&pidfile)
                .map(|s| s.ends_with('\n'))
                .unwrap_or(false)
        })
        .await;
        let pid: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        checks.remove("long");
        wait_for("the removed script to die", || process_gone(pid)).await;
        let _ = std::fs::remove_dir_all(&dir);
    });
}

// ---------------------------------------------------------------------------------------
// TTL and alias.

#[test]
fn ttl_updates_and_expiry() {
    run(|| async {
        let (notify, events) = recorder();
        let checks = Checks::new(notify, None);
        let mut d = def(
            "ttl",
            CheckKind::Ttl {
                ttl: Duration::from_millis(200),
            },
        );
        d.output_max_size = 10;
        checks.add(d);
        // Never updated: expires with the bare text.
        let out = wait_status(&events, Status::Critical).await;
        assert_eq!(out, "TTL expired");

        let stored = checks
            .ttl_update("ttl", Status::Passing, "all good here, really".into())
            .unwrap();
        assert_eq!(stored, "all good h ... (captured 10 of 21 bytes)");
        assert_eq!(last(&events), Some((Status::Passing, stored.clone())));
        let out = wait_status(&events, Status::Critical).await;
        assert_eq!(
            out,
            format!("TTL expired (last output before timeout follows): {stored}")
        );

        // A long TTL holds the status set through updates; unchanged updates are quiet.
        let mut d = def(
            "long",
            CheckKind::Ttl {
                ttl: Duration::from_secs(3600),
            },
        );
        d.initial_status = Status::Passing;
        checks.add(d);
        let n = events.borrow().len();
        checks
            .ttl_update("long", Status::Passing, String::new())
            .unwrap();
        assert_eq!(events.borrow().len(), n);
        checks
            .ttl_update("long", Status::Warning, "hmm".into())
            .unwrap();
        assert_eq!(last(&events), Some((Status::Warning, "hmm".into())));
        checks
            .ttl_update("long", Status::Warning, "hmm".into())
            .unwrap();
        assert_eq!(events.borrow().len(), n + 1);
        assert_eq!(checks.last("long"), Some((Status::Warning, "hmm".into())));

        assert_eq!(
            checks.ttl_update("nope", Status::Passing, String::new()),
            Err(CheckError::UnknownCheck("nope".into()))
        );
        checks.add(def(
            "tcp",
            CheckKind::Tcp {
                addr: "127.0.0.1:1".into(),
                use_tls: false,
                tls: TlsSettings::default(),
            },
        ));
        assert_eq!(
            checks.ttl_update("tcp", Status::Passing, String::new()),
            Err(CheckError::NotTtl("tcp".into()))
        );
    });
}

#[test]
fn alias_checks_take_pushed_results() {
    run(|| async {
        let (notify, events) = recorder();
        let checks = Checks::new(notify, None);
        checks.add(CheckDef::new(
            "alias",
            CheckKind::Alias {
                node: None,
                service_id: Some("web".into()),
            },
        ));
        let inputs = [AliasInput {
            node: "n",
            service_id: "web",
            check_id: "c",
            name: "c",
            status: Status::Passing,
            output: "",
        }];
        let (status, output) = alias_result("", "web", "alias", &inputs, true);
        checks.alias_update("alias", status, output).unwrap();
        assert_eq!(
            last(&events),
            Some((Status::Passing, "All checks passing.".into()))
        );
        assert_eq!(
            checks.alias_update("missing", Status::Passing, String::new()),
            Err(CheckError::UnknownCheck("missing".into()))
        );
    });
}

#[test]
fn notify_may_call_back_into_the_registry() {
    run(|| async {
        let slot: Rc<RefCell<Option<Checks>>> = Rc::default();
        let s = slot.clone();
        let calls = Rc::new(Cell::new(0));
        let c = calls.clone();
        let notify: Notify = Rc::new(move |id: &str, _: Status, _: String| {
            c.set(c.get() + 1);
            // Re-entrant: remove the check from inside its own notification.
            if let Some(checks) = s.borrow().as_ref() {
                checks.remove(id);
            }
        });
        let checks = Checks::new(notify, None);
        *slot.borrow_mut() = Some(checks.clone());
        checks.add(def(
            "ttl",
            CheckKind::Ttl {
                ttl: Duration::from_millis(10),
            },
        ));
        wait_for("self-removal", || checks.is_empty()).await;
        assert_eq!(calls.get(), 1);
        slot.borrow_mut().take();
    });
}

// ---------------------------------------------------------------------------------------
// Definitions.

#[test]
fn parses_api_and_config_spellings() {
    let opts = ParseOptions::default();
    let p = parse_check_definition(
        &json(
            r#"{"ID":"api","Name":"API","Notes":"n","ServiceID":"web","HTTP":"https://127.0.0.1:5000/health",
                "Method":"POST","Header":{"X-A":["1","2"],"X-B":"3"},"Body":"{}","TLSSkipVerify":true,
                "TLSServerName":"api.local","Interval":"10s","Timeout":"1s","Status":"passing",
                "SuccessBeforePassing":2,"FailuresBeforeCritical":3,"DeregisterCriticalServiceAfter":"90m"}"#,
        ),
        &opts,
    )
    .unwrap();
    assert_eq!(p.id.as_deref(), Some("api"));
    assert_eq!(p.name.as_deref(), Some("API"));
    assert_eq!(p.service_id.as_deref(), Some("web"));
    assert_eq!(p.status, Some(Status::Passing));
    assert_eq!(
        p.deregister_critical_service_after,
        Some(Duration::from_secs(5400))
    );
    let d = p.def;
    assert_eq!(d.id, "api");
    assert_eq!(d.interval, Duration::from_secs(10));
    assert_eq!(d.timeout, Duration::from_secs(1));
    assert_eq!(d.initial_status, Status::Passing);
    assert_eq!(
        (d.success_before_passing, d.failures_before_critical),
        (2, 3)
    );
    assert_eq!(d.output_max_size, 4096);
    let mut headers = BTreeMap::new();
    headers.insert("X-A".to_string(), vec!["1".to_string(), "2".to_string()]);
    headers.insert("X-B".to_string(), vec!["3".to_string()]);
    assert_eq!(
        d.kind,
        CheckKind::Http {
            url: "https://127.0.0.1:5000/health".into(),
            method: "POST".into(),
            headers,
            body: "{}".into(),
            disable_redirects: false,
            tls: TlsSettings {
                skip_verify: true,
                server_name: Some("api.local".into())
            },
        }
    );

    let p = parse_check_definition(
        &json(
            r#"{"name":"grpc","grpc":"127.0.0.1:9000/web","grpc_use_tls":true,"tls_skip_verify":true,
                "interval":"5s","failures_before_warning":1,"failures_before_critical":2,
                "output_max_size":100}"#,
        ),
        &opts,
    )
    .unwrap();
    assert_eq!(p.def.id, "grpc");
    assert_eq!(p.def.output_max_size, 100);
    assert_eq!(p.def.failures_before_warning, 1);
    assert_eq!(
        p.def.kind,
        CheckKind::Grpc {
            target: "127.0.0.1:9000/web".into(),
            use_tls: true,
            tls: TlsSettings {
                skip_verify: true,
                server_name: None
            }
        }
    );

    let p = parse_check_definition(
        &json(r#"{"name":"s","args":["/bin/true","x"],"interval":1000000000}"#),
        &opts,
    )
    .unwrap();
    assert_eq!(
        p.def.kind,
        CheckKind::Script {
            args: vec!["/bin/true".into(), "x".into()]
        }
    );
    assert_eq!(p.def.interval, Duration::from_secs(1));
    assert_eq!(p.def.initial_status, Status::Critical);

    let p = parse_check_definition(&json(r#"{"Name":"t","TTL":"30s"}"#), &opts).unwrap();
    assert_eq!(
        p.def.kind,
        CheckKind::Ttl {
            ttl: Duration::from_secs(30)
        }
    );

    let p = parse_check_definition(
        &json(r#"{"Name":"h","H2PING":"127.0.0.1:1","Interval":"100ms"}"#),
        &opts,
    )
    .unwrap();
    // H2PING uses TLS unless told otherwise; short intervals are raised to 1s.
    assert!(matches!(
        p.def.kind,
        CheckKind::H2Ping { use_tls: true, .. }
    ));
    assert_eq!(p.def.interval, Duration::from_secs(1));

    let p = parse_check_definition(&json(r#"{"Name":"a","AliasService":"web"}"#), &opts).unwrap();
    assert_eq!(
        p.def.kind,
        CheckKind::Alias {
            node: None,
            service_id: Some("web".into())
        }
    );

    let p = parse_check_definition(
        &json(r#"{"Name":"u","UDP":"127.0.0.1:53","Interval":"10s","OutputMaxSize":99999}"#),
        &ParseOptions {
            output_max_size: 1000,
            ..ParseOptions::default()
        },
    )
    .unwrap();
    // A check may lower the agent's limit, never raise it.
    assert_eq!(p.def.output_max_size, 1000);
}

#[test]
fn rejects_definitions_as_consul_does() {
    let opts = ParseOptions::default();
    let err = |text: &str| {
        parse_check_definition(&json(text), &opts)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(r#"{"Name":"x","HTTP":"http://127.0.0.1/"}"#),
        "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"
    );
    assert_eq!(
        err(r#"{"Name":"x","TCP":"127.0.0.1:1","Interval":"1s","TTL":"1s"}"#),
        "Interval and TTL cannot both be specified"
    );
    assert_eq!(err(r#"{"Name":"x"}"#), "TTL must be > 0 for TTL checks");
    assert_eq!(
        err(r#"{"Name":"x","AliasService":"w","TTL":"1s"}"#),
        "TTL must be not be set for Alias checks"
    );
    assert_eq!(
        err(r#"{"Name":"x","AliasService":"w","TCP":"a:1","Interval":"1s"}"#),
        "Interval cannot be set for Alias checks"
    );
    assert_eq!(
        err(r#"{"Name":"x","TCP":"a:1","Interval":"soon"}"#),
        "Interval: time: invalid duration \"soon\""
    );
    assert_eq!(
        err(r#"{"Name":"x","TTL":"10s","Timeout":"1x"}"#),
        "Timeout: time: invalid duration \"1x\""
    );
    assert_eq!(
        err(r#"{"Name":"x","TTL":"10s","Status":"fine"}"#),
        "Bad check status"
    );
    assert_eq!(
        err(r#"{"Name":"x","TTL":"10s","FailuresBeforeWarning":3,"FailuresBeforeCritical":2}"#),
        "FailuresBeforeWarning can't be higher than FailuresBeforeCritical"
    );
    assert_eq!(
        err(r#"{"Name":"x","TTL":"10s","OutputMaxSize":-1}"#),
        "MaxOutputMaxSize must be positive"
    );
    assert_eq!(
        err(r#"{"Name":"x","Args":["true"],"DockerContainerID":"c","Interval":"1s"}"#),
        "Docker checks are not supported by this agent"
    );
    assert_eq!(
        err(r#"{"Name":"x","TCP":"a:1","Interval":"1s","TCPUseTLS":"maybe"}"#),
        "TCPUseTLS: expected a boolean, got string"
    );
    assert_eq!(err("[1]"), "check definition must be a JSON object");
}
