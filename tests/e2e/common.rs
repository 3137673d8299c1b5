//! Harness: start a real `muster agent -dev` on free loopback ports, talk to it over HTTP and
//! through the CLI, and stop it when the test ends (even when the test panics).

use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_muster");

/// How long an agent may take to elect itself and answer `/v1/status/leader`.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long to wait for a process to go after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Upper bound for one HTTP exchange; generous so that 20 s blocking queries fit.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for one CLI invocation.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// Generates one `#[test]` per core count for each scenario function `fn(&Agent)`, each with
/// its own agent, so the scenarios are independent of each other and of test ordering.
macro_rules! per_core {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn cores_1() {
                $crate::common::run_scenario(stringify!($name), 1, super::$name)
            }
            #[test]
            fn cores_2() {
                $crate::common::run_scenario(stringify!($name), 2, super::$name)
            }
        }
    )+};
}

/// Polls `cond` every 50 ms until it holds or `within` elapses; panics with the message then.
macro_rules! assert_eventually {
    ($cond:expr, $within:expr, $($msg:tt)+) => {
        $crate::common::eventually($within, &format!($($msg)+), || if $cond { Some(()) } else { None })
    };
}

/// Like `per_core!` for scenarios that start their own agents (config files, flags): each gets
/// the core count and does the rest itself.
macro_rules! per_core_custom {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn cores_1() {
                super::$name(1)
            }
            #[test]
            fn cores_2() {
                super::$name(2)
            }
        }
    )+};
}

pub fn run_scenario(name: &str, cores: usize, scenario: fn(&Agent)) {
    let agent = Agent::start(name, cores);
    scenario(&agent);
}

/// Polls `f` until it returns `Some`, panicking with `what` after `within`.
pub fn eventually<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("condition not met within {within:?}: {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `f` until it returns `Some` or `within` elapses (then None), for callers that want
/// to say more than `eventually` can when giving up.
pub fn eventually_or<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Percent-encodes a KV key for use in a URL path, keeping `/` as the separator.
pub fn enc(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Percent-encodes a query-string value (everything but unreserved characters).
pub fn qenc(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A scratch directory, removed with its contents when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let seq = AGENT_SEQ.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!(
            "muster-e2e-{}-{tag}-{seq}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos()
        ));
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {p:?}: {e}"));
        TempDir(p)
    }

    /// Writes `name` inside the directory and returns its full path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap_or_else(|e| panic!("write {p:?}: {e}"));
        p
    }

    pub fn remove(&self, name: &str) {
        let p = self.0.join(name);
        std::fs::remove_file(&p).unwrap_or_else(|e| panic!("rm {p:?}: {e}"));
    }

    pub fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("invalid base64 {s:?}: {e}"))
}

/// A reply, kept whole so that failed assertions can show what the server said.
pub struct Resp {
    pub request: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    /// The `X-Consul-Index` header, which must be present and a number.
    pub fn index(&self) -> u64 {
        let h = self
            .header("X-Consul-Index")
            .unwrap_or_else(|| panic!("no X-Consul-Index header: {self:?}"));
        h.parse()
            .unwrap_or_else(|e| panic!("X-Consul-Index {h:?} is not a number ({e}): {self:?}"))
    }

    /// Asserts the status and returns self for chaining.
    #[track_caller]
    pub fn status(&self, want: u16) -> &Self {
        assert_eq!(self.status, want, "unexpected status: {self:?}");
        self
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        self.status(200)
    }

    /// Asserts a 200 whose JSON body is `true`/`false` and returns it.
    #[track_caller]
    pub fn bool(&self) -> bool {
        self.ok();
        match self.json() {
            Value::Bool(b) => b,
            other => panic!("expected a JSON boolean, got {other}: {self:?}"),
        }
    }
}

impl fmt::Debug for Resp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = String::from_utf8_lossy(&self.body);
        let shown: String = body.chars().take(2000).collect();
        write!(
            f,
            "\n  request: {}\n  status: {}\n  headers: {:?}\n  body ({} bytes): {}",
            self.request,
            self.status,
            self.headers,
            self.body.len(),
            shown
        )
    }
}

/// A cheap, `Send` handle to an agent's HTTP API, usable from other threads.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: ureq::Agent,
}

impl Client {
    pub fn new(addr: &str) -> Self {
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(HTTP_TIMEOUT))
            .build()
            .new_agent();
        Client {
            base: format!("http://{addr}"),
            http,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn get(&self, path: &str) -> Resp {
        let url = self.url(path);
        let r = self.http.get(&url).call();
        collect(format!("GET {url}"), r)
    }

    pub fn delete(&self, path: &str) -> Resp {
        let url = self.url(path);
        let r = self.http.delete(&url).call();
        collect(format!("DELETE {url}"), r)
    }

    pub fn put(&self, path: &str, body: impl AsRef<[u8]>) -> Resp {
        let url = self.url(path);
        let body = body.as_ref();
        let r = self.http.put(&url).send(body);
        collect(format!("PUT {url} ({} byte body)", body.len()), r)
    }

    pub fn put_json(&self, path: &str, body: &Value) -> Resp {
        let url = self.url(path);
        let text = body.to_string();
        let r = self.http.put(&url).send(text.as_bytes());
        collect(format!("PUT {url} {text}"), r)
    }

    pub fn put_empty(&self, path: &str) -> Resp {
        let url = self.url(path);
        let r = self.http.put(&url).send_empty();
        collect(format!("PUT {url}"), r)
    }

    // ---- KV and session shorthands, each asserting the call itself succeeded ----

    /// PUT a value and assert it was written.
    #[track_caller]
    pub fn kv_put(&self, key: &str, value: impl AsRef<[u8]>) {
        let r = self.put(&format!("/v1/kv/{}", enc(key)), value);
        assert!(r.bool(), "PUT of {key:?} returned false: {r:?}");
    }

    /// GET one key's entry (the single element of the JSON array), or None on 404.
    #[track_caller]
    pub fn kv_entry(&self, key: &str) -> Option<Value> {
        let r = self.get(&format!("/v1/kv/{}", enc(key)));
        if r.status == 404 {
            return None;
        }
        let v = r.ok().json();
        let arr = v
            .as_array()
            .unwrap_or_else(|| panic!("expected an array: {r:?}"));
        assert_eq!(arr.len(), 1, "expected exactly one entry: {r:?}");
        Some(arr[0].clone())
    }

    /// GET a key's raw value, or None on 404.
    #[track_caller]
    pub fn kv_raw(&self, key: &str) -> Option<Vec<u8>> {
        let r = self.get(&format!("/v1/kv/{}?raw", enc(key)));
        if r.status == 404 {
            return None;
        }
        r.ok();
        Some(r.body)
    }

    /// Create a session from a JSON body and return its ID.
    #[track_caller]
    pub fn session_create(&self, body: &Value) -> String {
        let r = self.put_json("/v1/session/create", body);
        let v = r.ok().json();
        v["ID"]
            .as_str()
            .unwrap_or_else(|| panic!("no ID in session create reply: {r:?}"))
            .to_string()
    }

    #[track_caller]
    pub fn session_destroy(&self, id: &str) {
        let r = self.put_empty(&format!("/v1/session/destroy/{id}"));
        assert!(r.bool(), "destroy returned false: {r:?}");
    }

    /// `?acquire=` or `?release=` on a key; returns the boolean answer.
    #[track_caller]
    pub fn kv_lock(&self, key: &str, verb: &str, session: &str, value: &str) -> bool {
        self.put(&format!("/v1/kv/{}?{verb}={session}", enc(key)), value)
            .bool()
    }
}

impl Client {
    /// GET that reports a transport error (a server being killed) instead of panicking.
    pub fn try_get(&self, path: &str) -> Result<Resp, String> {
        let url = self.url(path);
        let r = self.http.get(&url).call();
        try_collect(format!("GET {url}"), r)
    }

    /// PUT that reports a transport error (a server being killed) instead of panicking.
    pub fn try_put(&self, path: &str, body: impl AsRef<[u8]>) -> Result<Resp, String> {
        let url = self.url(path);
        let body = body.as_ref();
        let r = self.http.put(&url).send(body);
        try_collect(format!("PUT {url} ({} byte body)", body.len()), r)
    }
}

fn collect(request: String, r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Resp {
    try_collect(request, r).unwrap_or_else(|e| panic!("{e}"))
}

fn try_collect(
    request: String,
    r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Resp, String> {
    let mut resp = r.map_err(|e| format!("{request}: transport error: {e}"))?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp
        .body_mut()
        .with_config()
        .limit(16 * 1024 * 1024)
        .read_to_vec()
        .map_err(|e| format!("{request}: reading body: {e}"))?;
    Ok(Resp {
        request,
        status,
        headers,
        body,
    })
}

/// What a CLI invocation produced.
pub struct CliOut {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Debug for CliOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "\n  muster {}\n  exit: {:?}\n  stdout: {:?}\n  stderr: {:?}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

impl CliOut {
    #[track_caller]
    pub fn success(&self) -> &Self {
        assert_eq!(self.code, Some(0), "command failed: {self:?}");
        self
    }
}

/// Runs the binary as a CLI with `CONSUL_HTTP_ADDR` set to `addr`, feeding `stdin`, with a
/// deadline so that a hung command fails the test instead of hanging it.
pub fn cli_at(addr: &str, args: &[&str], stdin: &[u8]) -> CliOut {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("CONSUL_HTTP_ADDR", addr)
        .env_remove("CONSUL_HTTP_TOKEN")
        .env_remove("CONSUL_HTTP_SSL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {BIN} {args:?}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        // The command may not read stdin at all; a broken pipe is fine then.
        let _ = input.write_all(&data);
    });
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + CLI_TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("muster {args:?} did not finish within {CLI_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = feeder.join();
    let stdout = String::from_utf8_lossy(&out_t.join().expect("stdout reader")).into_owned();
    let stderr = String::from_utf8_lossy(&err_t.join().expect("stderr reader")).into_owned();
    CliOut {
        args: args.iter().map(|s| s.to_string()).collect(),
        code: status.code(),
        stdout,
        stderr,
    }
}

/// Makes the kernel kill the child when the spawning thread goes away, so that an agent never
/// outlives a test thread even if the harness is killed before `Drop` runs.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Free loopback ports for one agent: every port is free for both TCP and UDP (serf and DNS
/// use both) and distinct from the others, as far as can be told without holding them.
pub struct Ports {
    pub http: u16,
    pub dns: u16,
    pub serf_lan: u16,
    pub serf_wan: u16,
    pub server: u16,
}

pub fn free_ports() -> Ports {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < 5 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = tcp.local_addr().expect("addr").port();
        if RESERVED.lock().unwrap().contains(&port) {
            // A restartable server's port, free only while that server is down.
            held.push((tcp, None));
            continue;
        }
        if let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)) {
            ports.push(port);
            held.push((tcp, Some(udp)));
        }
    }
    drop(held);
    Ports {
        http: ports[0],
        dns: ports[1],
        serf_lan: ports[2],
        serf_wan: ports[3],
        server: ports[4],
    }
}

static AGENT_SEQ: AtomicUsize = AtomicUsize::new(0);

/// Ports of the [`Server`]s alive in this process. A server that is killed and started again
/// keeps its ports, which are free in between; `free_ports` must not hand them to another
/// agent then. It matters more than a bind failure would suggest: glommio listens with
/// `SO_REUSEPORT`, so two agents of one user on the same port both bind it and split the
/// connections between them.
static RESERVED: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());

impl Ports {
    fn all(&self) -> [u16; 5] {
        [
            self.http,
            self.dns,
            self.serf_lan,
            self.serf_wan,
            self.server,
        ]
    }

    fn reserve(&self) {
        RESERVED.lock().unwrap().extend(self.all());
    }

    fn release(&self) {
        RESERVED.lock().unwrap().retain(|p| !self.all().contains(p));
    }
}

/// A running `muster agent -dev`, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Agent {
    pub node: String,
    pub cores: usize,
    pub ports: Ports,
    client: Client,
    child: RefCell<Option<Child>>,
    log: PathBuf,
}

impl std::ops::Deref for Agent {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Agent {
    /// Starts an agent and waits until it has a leader. Retries with fresh ports when the
    /// process dies early (another test may have taken a port between probe and bind).
    pub fn start(scenario: &str, cores: usize) -> Agent {
        Self::start_with(scenario, cores, &[])
    }

    /// `start` with more command-line arguments after the usual ones (e.g. `-config-file`).
    pub fn start_with(scenario: &str, cores: usize, extra: &[&str]) -> Agent {
        let node = format!("e2e-{}-c{cores}", scenario.replace('_', "-"));
        let mut last_err = String::new();
        for _attempt in 0..3 {
            match Self::try_start(&node, cores, extra) {
                Ok(a) => return a,
                Err(e) => last_err = e,
            }
        }
        panic!("agent {node} did not start: {last_err}");
    }

    fn try_start(node: &str, cores: usize, extra: &[&str]) -> Result<Agent, String> {
        let agent = Self::spawn(node, cores, extra)?;
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(st) = agent.try_wait() {
                return Err(format!(
                    "exited early with {st}; log:\n{}",
                    agent.log_tail()
                ));
            }
            if agent.leader_ready() {
                return Ok(agent);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no leader within {START_DEADLINE:?}; log:\n{}",
                    agent.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Starts `muster agent -dev` on free ports without waiting for anything, for tests that
    /// play a client's own start-up sequence.
    pub fn spawn(node: &str, cores: usize, extra: &[&str]) -> Result<Agent, String> {
        let ports = free_ports();
        let seq = AGENT_SEQ.fetch_add(1, Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!(
            "muster-e2e-{}-{seq}-{node}.log",
            std::process::id()
        ));
        let logf = File::create(&log).map_err(|e| format!("create {log:?}: {e}"))?;
        let logf2 = logf.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(BIN);
        cmd.args(["agent", "-dev", "-node", node, "-datacenter", "dc1"])
            .args(["-http-port", &ports.http.to_string()])
            .args(["-dns-port", &ports.dns.to_string()])
            .args(["-serf-lan-port", &ports.serf_lan.to_string()])
            .args(["-serf-wan-port", &ports.serf_wan.to_string()])
            .args(["-server-port", &ports.server.to_string()])
            .args(["-cores", &cores.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::from(logf))
            .stderr(Stdio::from(logf2));
        die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|e| format!("spawn {BIN}: {e}"))?;
        let agent = Agent {
            node: node.to_string(),
            cores,
            client: Client::new(&format!("127.0.0.1:{}", ports.http)),
            ports,
            child: RefCell::new(Some(child)),
            log,
        };
        Ok(agent)
    }

    /// True once `/v1/status/leader` answers a non-empty JSON string. Transport errors
    /// (not listening yet) count as "not yet".
    fn leader_ready(&self) -> bool {
        leader_ready(&self.client)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.ports.http)
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn cli(&self, args: &[&str]) -> CliOut {
        cli_at(&self.addr(), args, b"")
    }

    pub fn cli_stdin(&self, args: &[&str], stdin: &[u8]) -> CliOut {
        cli_at(&self.addr(), args, stdin)
    }

    pub fn pid(&self) -> i32 {
        self.child
            .borrow()
            .as_ref()
            .map(|c| c.id() as i32)
            .expect("agent already reaped")
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain syscall on our own child's pid, which is not yet reaped (so not reused).
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    /// The exit status if the process has exited (reaping it), else None.
    pub fn try_wait(&self) -> Option<ExitStatus> {
        let mut c = self.child.borrow_mut();
        let child = c.as_mut()?;
        child.try_wait().expect("try_wait")
    }

    /// Waits for the process to exit on its own, panicking after `within`.
    pub fn wait_exit(&self, within: Duration) -> ExitStatus {
        let st = eventually(within, &format!("agent {} to exit", self.node), || {
            self.try_wait()
        });
        // Keep the status for Drop: nothing left to stop.
        self.child.borrow_mut().take();
        st
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        // Panic messages come first: a backtrace would push them out of the tail.
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            if l.contains("panicked at") {
                out.extend(lines[i..lines.len().min(i + 2)].iter().copied());
            }
        }
        if !out.is_empty() {
            out.push("-- (panics above; last lines below) --");
        }
        let from = lines.len().saturating_sub(40);
        out.extend(lines[from..].iter().copied());
        out.join("\n")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.borrow_mut().take() {
            if child.try_wait().ok().flatten().is_none() {
                if std::thread::panicking() && std::env::var_os("MUSTER_E2E_GDB").is_some() {
                    dump_threads(child.id());
                }
                // SAFETY: our own unreaped child.
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                let deadline = Instant::now() + STOP_GRACE;
                while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "---- agent {} (cores {}, http {}) log tail ----\n{}",
                self.node,
                self.cores,
                self.ports.http,
                self.log_tail()
            );
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// With `MUSTER_E2E_GDB=1`, a failed test prints every thread's backtrace of its agent before
/// stopping it: the way to see where a hung agent is stuck.
fn dump_threads(pid: u32) {
    let out = Command::new("gdb")
        .args([
            "-p",
            &pid.to_string(),
            "-batch",
            "-ex",
            "thread apply all bt",
        ])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) => eprintln!(
            "---- gdb backtraces of agent pid {pid} ----\n{}",
            String::from_utf8_lossy(&o.stdout)
        ),
        Err(e) => eprintln!("gdb not available: {e}"),
    }
}

/// How a start that was expected to fail ended.
pub struct StartFailure {
    pub status: ExitStatus,
    pub stderr: String,
}

impl fmt::Debug for StartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit {}; stderr:\n{}", self.status, self.stderr)
    }
}

/// A server process that can be started, killed with SIGKILL and started again on the same
/// data dir and ports: `muster agent -server -bootstrap -data-dir DIR` (see [`Server::durable`]),
/// or a `-dev` agent in a chosen working directory ([`Server::dev_in`]). Every start writes
/// its stdout and stderr to files of their own, so a test can look at what one start said.
/// Whatever still runs is killed on drop.
pub struct Server {
    pub node: String,
    pub ports: Ports,
    /// Arguments after `agent` and before the port flags.
    args: Vec<String>,
    cwd: Option<PathBuf>,
    envs: Vec<(String, String)>,
    client: Client,
    child: Option<Child>,
    /// Prefix of this server's output files; start `n` writes `<prefix>-<n>.out` and `.err`.
    out_prefix: PathBuf,
    starts: usize,
}

impl std::ops::Deref for Server {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Server {
    /// A durable single server on `data_dir` (not started yet). `extra` goes after the usual
    /// flags (e.g. `-hcl` snapshot tuning).
    pub fn durable(tag: &str, data_dir: &std::path::Path, cores: usize, extra: &[&str]) -> Server {
        let node = format!("e2e-{}-c{cores}", tag.replace('_', "-"));
        let mut args: Vec<String> = vec![
            "-server".into(),
            "-bootstrap".into(),
            "-data-dir".into(),
            data_dir.display().to_string(),
            "-node".into(),
            node.clone(),
            "-datacenter".into(),
            "dc1".into(),
            "-bind".into(),
            "127.0.0.1".into(),
            "-client".into(),
            "127.0.0.1".into(),
            "-log-level".into(),
            "info".into(),
            "-cores".into(),
            cores.to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::with_args(node, args, None)
    }

    /// A `-dev` agent whose working directory is `cwd` (not started yet).
    pub fn dev_in(tag: &str, cwd: &std::path::Path, cores: usize) -> Server {
        let node = format!("e2e-{}-c{cores}", tag.replace('_', "-"));
        let args = vec![
            "-dev".into(),
            "-node".into(),
            node.clone(),
            "-datacenter".into(),
            "dc1".into(),
            "-cores".into(),
            cores.to_string(),
        ];
        Self::with_args(node, args, Some(cwd.to_path_buf()))
    }

    fn with_args(node: String, args: Vec<String>, cwd: Option<PathBuf>) -> Server {
        let ports = free_ports();
        ports.reserve();
        let seq = AGENT_SEQ.fetch_add(1, Ordering::Relaxed);
        let out_prefix =
            std::env::temp_dir().join(format!("muster-e2e-{}-{seq}-{node}", std::process::id()));
        Server {
            node,
            client: Client::new(&format!("127.0.0.1:{}", ports.http)),
            ports,
            args,
            cwd,
            envs: Vec::new(),
            child: None,
            out_prefix,
            starts: 0,
        }
    }

    /// Sets an environment variable for the starts to come.
    pub fn env(&mut self, key: &str, value: &str) {
        self.envs.push((key.to_string(), value.to_string()));
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.ports.http)
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    fn out_file(&self, n: usize, ext: &str) -> PathBuf {
        let mut p = self.out_prefix.clone().into_os_string();
        p.push(format!("-{n}.{ext}"));
        PathBuf::from(p)
    }

    fn spawn(&mut self) {
        assert!(
            self.child.is_none(),
            "server {} is already running",
            self.node
        );
        self.starts += 1;
        let out = File::create(self.out_file(self.starts, "out")).expect("create stdout file");
        let err = File::create(self.out_file(self.starts, "err")).expect("create stderr file");
        let p = &self.ports;
        let mut cmd = Command::new(BIN);
        cmd.arg("agent")
            .args(&self.args)
            .args(["-http-port", &p.http.to_string()])
            .args(["-dns-port", &p.dns.to_string()])
            .args(["-serf-lan-port", &p.serf_lan.to_string()])
            .args(["-serf-wan-port", &p.serf_wan.to_string()])
            .args(["-server-port", &p.server.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        die_with_parent(&mut cmd);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        self.child = Some(child);
    }

    /// The exit status if the process has exited (reaping it), else None.
    fn reap(&mut self) -> Option<ExitStatus> {
        let st = self.child.as_mut()?.try_wait().expect("try_wait")?;
        self.child = None;
        Some(st)
    }

    /// Starts the process and waits until it has a leader. On the first start only, a process
    /// that dies because a port was taken meanwhile is retried on fresh ports; later starts must
    /// come up on the same ports, as a restarted server does.
    pub fn start(&mut self) {
        for _attempt in 0..3 {
            match self.try_start() {
                Ok(()) => return,
                Err(f) if self.starts == 1 && f.stderr.contains("in use") => {
                    self.ports.release();
                    self.ports = free_ports();
                    self.ports.reserve();
                    self.client = Client::new(&format!("127.0.0.1:{}", self.ports.http));
                    self.starts = 0;
                }
                Err(f) => panic!("server {} did not start: {f:?}", self.node),
            }
        }
        panic!("server {} found no free ports", self.node);
    }

    /// Starts the process and waits for a leader; if the process exits first, says how.
    pub fn try_start(&mut self) -> Result<(), StartFailure> {
        self.spawn();
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = self.reap() {
                return Err(StartFailure {
                    status,
                    stderr: self.stderr(),
                });
            }
            if leader_ready(&self.client) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                panic!(
                    "server {} has no leader within {START_DEADLINE:?}; stderr:\n{}",
                    self.node,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Starts the process expecting it to refuse: it must exit (before serving a leader).
    pub fn start_refused(&mut self) -> StartFailure {
        match self.try_start() {
            Ok(()) => panic!(
                "server {} started although it should have refused; stderr:\n{}",
                self.node,
                self.stderr()
            ),
            Err(f) => f,
        }
    }

    /// SIGKILL: no shutdown code runs, as in a crash or power loss of the process. Panics if
    /// the process was already gone (it must not have died on its own).
    pub fn kill9(&mut self) {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("server {} is not running", self.node));
        if let Some(st) = child.try_wait().expect("try_wait") {
            panic!(
                "server {} died on its own before the kill ({st}); stderr:\n{}",
                self.node,
                self.stderr()
            );
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
    }

    /// SIGTERM, waiting for a clean exit (SIGKILL after a grace period).
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("server {} is not running", self.node));
        // SAFETY: our own unreaped child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                return st;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!(
                    "server {} did not stop within {STOP_GRACE:?}; stderr:\n{}",
                    self.node,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit on its own, panicking after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let node = self.node.clone();
        eventually(within, &format!("server {node} to exit"), || self.reap())
    }

    /// What the latest start wrote on stderr (the log, and the final error line).
    pub fn stderr(&self) -> String {
        std::fs::read(self.out_file(self.starts, "err"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.ports.release();
        if std::thread::panicking() {
            eprintln!(
                "---- server {} (http {}) stderr of start {} ----\n{}",
                self.node,
                self.ports.http,
                self.starts,
                self.stderr()
            );
        }
        for n in 1..=self.starts {
            let _ = std::fs::remove_file(self.out_file(n, "out"));
            let _ = std::fs::remove_file(self.out_file(n, "err"));
        }
    }
}

/// True once `/v1/status/leader` answers a non-empty JSON string. Transport errors
/// (not listening yet) count as "not yet".
pub fn leader_ready(client: &Client) -> bool {
    let url = client.url("/v1/status/leader");
    let Ok(mut r) = client.http.get(&url).call() else {
        return false;
    };
    if r.status() != 200 {
        return false;
    }
    let Ok(body) = r.body_mut().read_to_vec() else {
        return false;
    };
    matches!(serde_json::from_slice::<Value>(&body), Ok(Value::String(s)) if !s.is_empty())
}
