//! The CLI's HTTP client, configured like Consul's: `-http-addr` / `CONSUL_HTTP_ADDR`,
//! `-token` / `CONSUL_HTTP_TOKEN` (sent as `X-Consul-Token`), TLS options, `-datacenter`
//! and `-stale`. Blocking (ureq): the CLI does not run on a reactor.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::args::go_bool;

/// Default agent address when neither the flag nor the environment gives one.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8500";

/// Flags every command that talks to an agent takes (Consul's "HTTP API Options").
#[derive(Debug, Clone, Default, Args)]
pub struct HttpFlags {
    /// Address of the agent: `host:port`, `http://host:port` or `https://host:port`.
    #[arg(long, env = "CONSUL_HTTP_ADDR", value_name = "ADDR")]
    pub http_addr: Option<String>,

    /// ACL token sent as X-Consul-Token.
    #[arg(
        long,
        env = "CONSUL_HTTP_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// File holding the ACL token.
    #[arg(long, env = "CONSUL_HTTP_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// CA certificate (PEM) to verify the agent's TLS certificate.
    #[arg(long, env = "CONSUL_CACERT", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,

    /// Directory of CA certificates (PEM).
    #[arg(long, env = "CONSUL_CAPATH", value_name = "PATH")]
    pub ca_path: Option<PathBuf>,

    /// Client certificate (PEM) for agents that verify incoming HTTPS.
    #[arg(long, env = "CONSUL_CLIENT_CERT", value_name = "PATH")]
    pub client_cert: Option<PathBuf>,

    /// Client key (PEM).
    #[arg(long, env = "CONSUL_CLIENT_KEY", value_name = "PATH")]
    pub client_key: Option<PathBuf>,
}

/// `-datacenter` and `-stale` (Consul's "API Options" for reads that reach servers).
#[derive(Debug, Clone, Default, Args)]
pub struct ServerFlags {
    /// Datacenter to query (default: the agent's).
    #[arg(long, value_name = "NAME")]
    pub datacenter: Option<String>,

    /// Let any server answer, not only the leader.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub stale: bool,
}

impl ServerFlags {
    /// Query parameters these flags add to a request.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(dc) = self.datacenter.as_deref().filter(|d| !d.is_empty()) {
            q.push(("dc", dc.to_owned()));
        }
        if self.stale {
            q.push(("stale", String::new()));
        }
        q
    }
}

/// Why a request failed; displayed as Consul's Go client would say it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// Bad client settings (address, token file, certificates).
    #[error("{0}")]
    Setup(String),
    /// No HTTP exchange happened (connection refused, DNS, TLS, ...).
    #[error("{method} \"{url}\": {detail}")]
    Transport {
        method: &'static str,
        url: String,
        detail: String,
    },
    /// The agent answered with a non-success status.
    #[error("Unexpected response code: {code} ({body})")]
    Status { code: u16, body: String },
    /// The agent answered 2xx with a body we could not decode.
    #[error("failed to decode response: {0}")]
    Decode(String),
}

/// An agent's answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    /// Decodes a JSON body.
    pub fn json<T: serde::de::DeserializeOwned>(mut self) -> Result<T, HttpError> {
        simd_json::serde::from_slice::<T>(&mut self.body)
            .map_err(|e| HttpError::Decode(e.to_string()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Delete,
}

impl Method {
    fn go_name(self) -> &'static str {
        // Go's net/http error text capitalizes the method this way.
        match self {
            Method::Get => "Get",
            Method::Put => "Put",
            Method::Delete => "Delete",
        }
    }
}

pub struct Client {
    base: String,
    host_port: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Splits an agent address into (scheme, host:port) the way Consul's client does.
pub fn parse_addr(addr: &str, ssl_env: bool) -> Result<(&'static str, String), HttpError> {
    let a = addr.trim();
    if a.starts_with("unix://") {
        return Err(HttpError::Setup(format!(
            "{a}: unix sockets are not supported"
        )));
    }
    let (scheme, rest) = if let Some(r) = a.strip_prefix("https://") {
        ("https", r)
    } else if let Some(r) = a.strip_prefix("http://") {
        ("http", r)
    } else if a.contains("://") {
        return Err(HttpError::Setup(format!("{a}: unsupported scheme")));
    } else if ssl_env {
        ("https", a)
    } else {
        ("http", a)
    };
    let host_port = rest.trim_end_matches('/');
    if host_port.is_empty() {
        return Err(HttpError::Setup(format!(
            "{addr:?} is not an agent address"
        )));
    }
    Ok((scheme, host_port.to_owned()))
}

fn env_true(name: &str) -> bool {
    std::env::var(name)
        .ok()
        .and_then(|v| go_bool(&v).ok())
        .unwrap_or(false)
}

impl Client {
    pub fn new(flags: &HttpFlags) -> Result<Client, HttpError> {
        let addr = flags
            .http_addr
            .as_deref()
            .filter(|a| !a.is_empty())
            .unwrap_or(DEFAULT_HTTP_ADDR);
        let (scheme, host_port) = parse_addr(addr, env_true("CONSUL_HTTP_SSL"))?;
        let token = match (&flags.token, &flags.token_file) {
            (Some(t), _) if !t.is_empty() => Some(t.clone()),
            (_, Some(path)) => {
                let t = std::fs::read_to_string(path).map_err(|e| {
                    HttpError::Setup(format!("Error loading token file {}: {e}", path.display()))
                })?;
                Some(t.trim().to_owned()).filter(|t| !t.is_empty())
            }
            _ => None,
        };
        let mut cfg = ureq::Agent::config_builder().http_status_as_error(false);
        if scheme == "https" {
            cfg = cfg.tls_config(tls_config(flags)?);
        }
        let agent: ureq::Agent = cfg.build().into();
        Ok(Client {
            base: format!("{scheme}://{host_port}"),
            host_port,
            token,
            agent,
        })
    }

    /// `scheme://host:port`, for messages.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn url(&self, path: &str, query: &[(&str, String)]) -> String {
        let mut u = format!("{}{}", self.base, path);
        for (i, (k, v)) in query.iter().enumerate() {
            u.push(if i == 0 { '?' } else { '&' });
            u.push_str(k);
            if !v.is_empty() {
                u.push('=');
                u.push_str(&encode_query(v));
            }
        }
        u
    }

    /// Sends a request; any status comes back as a `Response`.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<Response, HttpError> {
        let url = self.url(path, query);
        let transport = |e: ureq::Error| HttpError::Transport {
            method: method.go_name(),
            url: url.clone(),
            detail: describe_transport(&e, &self.host_port),
        };
        let result = match method {
            Method::Get => self.with_token(self.agent.get(&url)).call(),
            Method::Delete => self.with_token(self.agent.delete(&url)).call(),
            Method::Put => self
                .with_token(self.agent.put(&url))
                .send(body.unwrap_or(&[])),
        };
        let mut resp = result.map_err(transport)?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .map_err(|e| HttpError::Transport {
                method: method.go_name(),
                url: url.clone(),
                detail: e.to_string(),
            })?;
        Ok(Response { status, body })
    }

    /// Like [`Client::send`] but non-2xx statuses are errors (Consul's `requireOK`).
    pub fn send_ok(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<Response, HttpError> {
        let r = self.send(method, path, query, body)?;
        if (200..300).contains(&r.status) {
            Ok(r)
        } else {
            Err(HttpError::Status {
                code: r.status,
                body: String::from_utf8_lossy(&r.body).trim().to_owned(),
            })
        }
    }

    fn with_token<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => req.header("X-Consul-Token", t),
            None => req,
        }
    }
}

fn tls_config(flags: &HttpFlags) -> Result<ureq::tls::TlsConfig, HttpError> {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
    let read = |p: &PathBuf| {
        std::fs::read(p)
            .map_err(|e| HttpError::Setup(format!("Error loading {}: {e}", p.display())))
    };
    let certs_in = |pem: &[u8], p: &PathBuf| -> Result<Vec<Certificate<'static>>, HttpError> {
        ureq::tls::parse_pem(pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                Ok(_) => None,
                Err(e) => Some(Err(HttpError::Setup(format!(
                    "Error parsing {}: {e}",
                    p.display()
                )))),
            })
            .collect()
    };
    let mut b = TlsConfig::builder();
    if std::env::var("CONSUL_HTTP_SSL_VERIFY")
        .ok()
        .and_then(|v| go_bool(&v).ok())
        == Some(false)
    {
        b = b.disable_verification(true);
    }
    let mut roots = Vec::new();
    if let Some(p) = &flags.ca_file {
        roots.extend(certs_in(&read(p)?, p)?);
    }
    if let Some(dir) = &flags.ca_path {
        let rd = std::fs::read_dir(dir)
            .map_err(|e| HttpError::Setup(format!("Error loading {}: {e}", dir.display())))?;
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for p in files {
            roots.extend(certs_in(&read(&p)?, &p)?);
        }
    }
    if !roots.is_empty() {
        b = b.root_certs(RootCerts::Specific(Arc::new(roots)));
    }
    match (&flags.client_cert, &flags.client_key) {
        (Some(c), Some(k)) => {
            let chain = certs_in(&read(c)?, c)?;
            let key = PrivateKey::from_pem(&read(k)?)
                .map_err(|e| HttpError::Setup(format!("Error parsing {}: {e}", k.display())))?;
            b = b.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        (None, None) => {}
        _ => {
            return Err(HttpError::Setup(
                "-client-cert and -client-key must be given together".to_owned(),
            ))
        }
    }
    Ok(b.build())
}

/// Words a transport failure like Go's net/http does, so scripts matching
/// "connection refused" keep working.
fn describe_transport(e: &ureq::Error, host_port: &str) -> String {
    if let ureq::Error::Io(io) = e {
        if io.kind() == std::io::ErrorKind::ConnectionRefused {
            return format!("dial tcp {host_port}: connect: connection refused");
        }
        return format!("dial tcp {host_port}: {io}");
    }
    let s = e.to_string();
    if s.to_ascii_lowercase().contains("connection refused") {
        return format!("dial tcp {host_port}: connect: connection refused");
    }
    s
}

/// Percent-encodes a query value (keys are ours and plain).
pub fn encode_query(v: &str) -> String {
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

/// Percent-encodes a KV key for the URL path, keeping `/` (Consul keys are paths).
pub fn encode_path(key: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_forms() {
        assert_eq!(
            parse_addr("127.0.0.1:8500", false).unwrap(),
            ("http", "127.0.0.1:8500".to_owned())
        );
        assert_eq!(
            parse_addr("http://127.0.0.1:8500", false).unwrap(),
            ("http", "127.0.0.1:8500".to_owned())
        );
        assert_eq!(
            parse_addr("https://h:8501/", false).unwrap(),
            ("https", "h:8501".to_owned())
        );
        assert_eq!(
            parse_addr("127.0.0.1:8501", true).unwrap(),
            ("https", "127.0.0.1:8501".to_owned())
        );
        assert!(parse_addr("unix:///tmp/consul.sock", false).is_err());
        assert!(parse_addr("ftp://x", false).is_err());
        assert!(parse_addr("http://", false).is_err());
    }

    #[test]
    fn encoding() {
        assert_eq!(encode_path("a b/c?d"), "a%20b/c%3Fd");
        assert_eq!(encode_query("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn status_error_text() {
        let e = HttpError::Status {
            code: 500,
            body: "boom".to_owned(),
        };
        assert_eq!(e.to_string(), "Unexpected response code: 500 (boom)");
        let e = HttpError::Transport {
            method: "Get",
            url: "http://127.0.0.1:1/v1/kv/x".to_owned(),
            detail: "dial tcp 127.0.0.1:1: connect: connection refused".to_owned(),
        };
        assert_eq!(
            e.to_string(),
            "Get \"http://127.0.0.1:1/v1/kv/x\": dial tcp 127.0.0.1:1: connect: connection refused"
        );
    }

    #[test]
    fn server_flags_query() {
        let f = ServerFlags {
            datacenter: Some("dc2".to_owned()),
            stale: true,
        };
        assert_eq!(
            f.query(),
            vec![("dc", "dc2".to_owned()), ("stale", String::new())]
        );
        assert!(ServerFlags::default().query().is_empty());
    }
}
