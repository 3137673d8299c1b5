//! Health-check runners (M3): HTTP, TCP (optionally over TLS), UDP, gRPC, H2PING, script, TTL
//! and alias checks with Consul's semantics, output texts and thresholds.
//!
//! The agent's local state and the catalog belong to the integrator. This module only runs
//! checks and reports: a [`Checks`] registry lives on one glommio executor, runs each interval
//! check as one local task (timers, no thread per check), and calls its [`Notify`] callback on
//! that executor whenever a check's status or output changes.
//!
//! Nothing here blocks the reactor: sockets are glommio's, host-name lookups and the rare
//! blocking call go to glommio's blocking pool, and script checks run on a small process-wide
//! pool of helper threads fed through a bounded queue (see `script.rs`). gRPC and H2PING speak
//! HTTP/2 with the `h2` crate directly over glommio sockets (see `grpc.rs`).
//!
//! Flow of one result: runner -> [`StatusHandler`](status) thresholds (SuccessBeforePassing,
//! FailuresBeforeWarning, FailuresBeforeCritical) -> change detection -> `notify`.
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

mod alias;
mod def;
mod grpc;
mod http;
mod net;
mod output;
mod registry;
mod script;
mod status;
mod tls;

#[cfg(test)]
mod tests;

pub use alias::{alias_result, AliasInput};
pub use def::{
    parse_check_definition, ParseOptions, ParsedCheck, SCRIPTS_DISABLED_LOCAL,
    SCRIPTS_DISABLED_REMOTE,
};
pub use registry::Checks;

/// Timeout of network checks (HTTP, TCP, UDP, gRPC, H2PING) when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of script checks when none is given.
pub const DEFAULT_SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Intervals below this are raised to it (Consul: no fork bombs from a typo).
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Output kept per check when neither the check nor the agent says otherwise.
pub const DEFAULT_OUTPUT_MAX_SIZE: usize = 4096;

/// A check's health, as Consul names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Passing,
    Warning,
    Critical,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passing => "passing",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }

    /// Parses Consul's lower-case names (the API is case-sensitive here too).
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "passing" => Some(Status::Passing),
            "warning" => Some(Status::Warning),
            "critical" => Some(Status::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Called on the registry's executor with (check id, status, output), only when the status or
/// the output differs from what was last reported (or from the initial status and output).
pub type Notify = Rc<dyn Fn(&str, Status, String)>;

/// TLS settings shared by the check kinds that can use TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// Accept any certificate (Consul's `TLSSkipVerify`).
    pub skip_verify: bool,
    /// SNI and verification name; the target's host when `None` (Consul's `TLSServerName`).
    pub server_name: Option<String>,
}

/// What a check probes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckKind {
    /// 2xx passing, 429 warning, anything else critical.
    Http {
        url: String,
        /// Empty means GET.
        method: String,
        headers: BTreeMap<String, Vec<String>>,
        body: String,
        disable_redirects: bool,
        tls: TlsSettings,
    },
    /// Passing when a connection (and, with `use_tls`, a TLS handshake) succeeds.
    Tcp {
        addr: String,
        use_tls: bool,
        tls: TlsSettings,
    },
    /// Sends a datagram; passing on any reply or on silence, critical on an error (e.g. an ICMP
    /// port unreachable surfacing as "connection refused").
    Udp { addr: String },
    /// grpc.health.v1.Health/Check; `target` is `host:port[/service]`.
    Grpc {
        target: String,
        use_tls: bool,
        tls: TlsSettings,
    },
    /// An HTTP/2 PING on `addr` (`host:port`), over TLS when `use_tls`.
    H2Ping {
        addr: String,
        use_tls: bool,
        tls: TlsSettings,
    },
    /// Runs `args` (no shell): exit 0 passing, 1 warning, anything else critical.
    Script { args: Vec<String> },
    /// Critical after `ttl` without an update through [`Checks::ttl_update`].
    Ttl { ttl: Duration },
    /// Mirrors other checks; computed by the integrator with [`alias_result`] and pushed with
    /// [`Checks::alias_update`]. Not run by the registry.
    Alias {
        node: Option<String>,
        service_id: Option<String>,
    },
}

impl CheckKind {
    /// Consul's type name, as `/v1/agent/checks` reports it in `Type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            CheckKind::Http { .. } => "http",
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Udp { .. } => "udp",
            CheckKind::Grpc { .. } => "grpc",
            CheckKind::H2Ping { .. } => "h2ping",
            CheckKind::Script { .. } => "script",
            CheckKind::Ttl { .. } => "ttl",
            CheckKind::Alias { .. } => "alias",
        }
    }

    pub fn is_script(&self) -> bool {
        matches!(self, CheckKind::Script { .. })
    }

    /// Kinds the registry runs on an interval.
    pub fn is_interval(&self) -> bool {
        !matches!(self, CheckKind::Ttl { .. } | CheckKind::Alias { .. })
    }
}

/// One check as the registry runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckDef {
    pub id: String,
    pub kind: CheckKind,
    /// Time between the end of one run and the start of the next; zero is raised to
    /// [`MIN_INTERVAL`]. The first run comes after a random stagger in `[0, interval)`.
    pub interval: Duration,
    /// Zero means the kind's default ([`DEFAULT_TIMEOUT`], [`DEFAULT_SCRIPT_TIMEOUT`]).
    pub timeout: Duration,
    /// The status the integrator registered the check with (Consul: critical by default).
    pub initial_status: Status,
    /// The output the integrator holds for the check (empty for a new one); a result equal to
    /// (`initial_status`, `initial_output`) is not reported.
    pub initial_output: String,
    pub success_before_passing: u32,
    /// Zero means the same as `failures_before_critical`.
    pub failures_before_warning: u32,
    pub failures_before_critical: u32,
    /// Bytes of output kept; zero means [`DEFAULT_OUTPUT_MAX_SIZE`].
    pub output_max_size: usize,
}

impl CheckDef {
    /// A check with Consul's defaults: 10s interval, kind-default timeout, critical, no
    /// thresholds, 4096 bytes of output.
    pub fn new(id: impl Into<String>, kind: CheckKind) -> CheckDef {
        CheckDef {
            id: id.into(),
            kind,
            interval: Duration::from_secs(10),
            timeout: Duration::ZERO,
            initial_status: Status::Critical,
            initial_output: String::new(),
            success_before_passing: 0,
            failures_before_warning: 0,
            failures_before_critical: 0,
            output_max_size: DEFAULT_OUTPUT_MAX_SIZE,
        }
    }

    /// The timeout in force: the given one, or the kind's default.
    pub fn effective_timeout(&self) -> Duration {
        if !self.timeout.is_zero() {
            self.timeout
        } else if self.kind.is_script() {
            DEFAULT_SCRIPT_TIMEOUT
        } else {
            DEFAULT_TIMEOUT
        }
    }

    pub fn effective_output_max_size(&self) -> usize {
        if self.output_max_size == 0 {
            DEFAULT_OUTPUT_MAX_SIZE
        } else {
            self.output_max_size
        }
    }
}

/// Errors of check definitions and of the registry's update calls. The `Display` texts are
/// Consul's where Consul has one, so the HTTP layer can pass them through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// A definition that Consul's validation rejects (the text is Consul's).
    #[error("{0}")]
    Invalid(String),
    /// A field of the wrong type or with a bad value, named.
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    /// `Status` is not passing, warning or critical.
    #[error("Bad check status")]
    BadStatus,
    /// A check type this agent does not run (Docker, OS service).
    #[error("{0} checks are not supported by this agent")]
    Unsupported(&'static str),
    #[error("Unknown check ID {0:?}")]
    UnknownCheck(String),
    /// Consul: pass/warn/fail/update on a check that is not a TTL check.
    #[error("CheckID {0:?} does not have associated TTL")]
    NotTtl(String),
    #[error("CheckID {0:?} is not an alias check")]
    NotAlias(String),
}
