//! The agent's logger: Consul-style lines (`2024-05-11T10:50:14.123Z [INFO]  target: msg`)
//! or JSON (`-log-json`), to stderr, plus `-log-file` and `-syslog` when asked.
//!
//! The level comes from the config and can be changed at runtime by [`set_level`]
//! (config reload). Dependencies (glommio, openraft, ...) are capped at INFO unless the
//! level is TRACE, so `-log-level=debug` shows Muster's own debug lines without drowning
//! them. `RUST_LOG`, when set, replaces all of this with env_logger's own filter.
//!
//! Log writes are blocking syscalls, like every logger's writes to stderr; they are
//! short and rare enough on the hot path (no per-request logging above DEBUG).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::config::{LogConfig, LogLevel};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoggerError {
    #[error("cannot open log file {path}: {source}")]
    LogFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a logger is already installed")]
    AlreadyInstalled,
}

static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);

/// The agent's configured level now.
pub fn current_level() -> LogLevel {
    level_from_u8(LEVEL.load(Ordering::Relaxed))
}

pub(crate) fn level_of(v: u8) -> LogLevel {
    level_from_u8(v)
}

fn level_from_u8(v: u8) -> LogLevel {
    match v {
        x if x == LogLevel::Trace as u8 => LogLevel::Trace,
        x if x == LogLevel::Debug as u8 => LogLevel::Debug,
        x if x == LogLevel::Info as u8 => LogLevel::Info,
        x if x == LogLevel::Warn as u8 => LogLevel::Warn,
        _ => LogLevel::Error,
    }
}

/// Changes the agent's log level (config reload). No effect when `RUST_LOG` drives logging.
pub fn set_level(level: LogLevel) {
    LEVEL.store(level as u8, Ordering::Relaxed);
    if std::env::var_os("RUST_LOG").is_none() {
        log::set_max_level(level.to_filter());
    }
}

/// Whether a record from `target` at `level` passes when the agent logs at `configured`.
pub fn passes(configured: LogLevel, target: &str, level: Level) -> bool {
    let ours =
        target == "muster" || target.starts_with("muster::") || target.starts_with("muster_");
    let mut max = configured.to_filter();
    if !ours && configured > LogLevel::Trace && max > LevelFilter::Info {
        max = LevelFilter::Info;
    }
    level <= max
}

struct Syslog {
    sock: UnixDatagram,
    facility: u8,
    pid: u32,
}

impl Syslog {
    fn connect(facility: &str) -> Option<Syslog> {
        let sock = UnixDatagram::unbound().ok()?;
        let ok = ["/dev/log", "/var/run/syslog", "/var/run/log"]
            .iter()
            .any(|p| sock.connect(p).is_ok());
        ok.then(|| Syslog {
            sock,
            facility: facility_code(facility),
            pid: std::process::id(),
        })
    }

    fn send(&self, r: &Record<'_>) {
        let severity = match r.level() {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
            Level::Debug | Level::Trace => 7,
        };
        let pri = u32::from(self.facility) * 8 + severity;
        let msg = format!(
            "<{pri}>muster[{}]: [{}] {}: {}",
            self.pid,
            r.level(),
            r.target(),
            r.args()
        );
        // Syslog is best effort: a full or missing daemon must not stop the agent.
        let _ = self.sock.send(msg.as_bytes());
    }
}

/// Syslog facility numbers (RFC 5424); unknown names fall back to LOCAL0 as Consul does.
fn facility_code(name: &str) -> u8 {
    match name.to_ascii_uppercase().as_str() {
        "KERN" => 0,
        "USER" => 1,
        "MAIL" => 2,
        "DAEMON" => 3,
        "AUTH" => 4,
        "SYSLOG" => 5,
        "LPR" => 6,
        "NEWS" => 7,
        "UUCP" => 8,
        "CRON" => 9,
        "AUTHPRIV" => 10,
        "FTP" => 11,
        "LOCAL1" => 17,
        "LOCAL2" => 18,
        "LOCAL3" => 19,
        "LOCAL4" => 20,
        "LOCAL5" => 21,
        "LOCAL6" => 22,
        "LOCAL7" => 23,
        _ => 16,
    }
}

/// stderr plus an optional log file.
struct Tee {
    file: Option<File>,
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().write_all(buf)?;
        if let Some(f) = &mut self.file {
            f.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()?;
        if let Some(f) = &mut self.file {
            f.flush()?;
        }
        Ok(())
    }
}

struct AgentLogger {
    inner: env_logger::Logger,
    /// `RUST_LOG` is in charge of filtering.
    env_filtered: bool,
    syslog: Option<Syslog>,
}

impl AgentLogger {
    /// Whether the agent's own outputs (stderr, file, syslog) take the record.
    fn own(&self, m: &Metadata<'_>) -> bool {
        if self.env_filtered {
            return self.inner.enabled(m);
        }
        passes(
            level_from_u8(LEVEL.load(Ordering::Relaxed)),
            m.target(),
            m.level(),
        )
    }
}

impl Log for AgentLogger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        self.own(m) || super::logtap::wants(m.target(), m.level())
    }

    fn log(&self, r: &Record<'_>) {
        if self.own(r.metadata()) {
            self.inner.log(r);
            if let Some(s) = &self.syslog {
                s.send(r);
            }
        }
        if super::logtap::wants(r.target(), r.level()) {
            super::logtap::publish(r, &timestamp_millis(std::time::SystemTime::now()));
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

fn log_file_path(p: &Path) -> PathBuf {
    let s = p.to_string_lossy();
    if s.ends_with('/') || p.is_dir() {
        p.join("muster.log")
    } else {
        p.to_path_buf()
    }
}

/// Consul's level column: `[INFO]  `, `[DEBUG] `, `[ERROR] `.
fn level_tag(l: Level) -> &'static str {
    match l {
        Level::Error => "[ERROR] ",
        Level::Warn => "[WARN]  ",
        Level::Info => "[INFO]  ",
        Level::Debug => "[DEBUG] ",
        Level::Trace => "[TRACE] ",
    }
}

fn json_string(s: &str) -> String {
    super::kv::go_json_string(s)
}

/// A text log line as the agent writes it, with its newline.
pub(crate) fn text_line(r: &Record<'_>, ts: &str) -> String {
    format!(
        "{ts} {}{}: {}\n",
        level_tag(r.level()),
        r.target(),
        r.args()
    )
}

/// A `-log-json` line, with its newline.
pub(crate) fn json_line(r: &Record<'_>, ts: &str) -> String {
    format!(
        "{{\"@level\":\"{}\",\"@message\":{},\"@module\":{},\"@timestamp\":\"{ts}\"}}\n",
        r.level().as_str().to_ascii_lowercase(),
        json_string(&r.args().to_string()),
        json_string(r.target()),
    )
}

/// `2024-05-11T10:50:14.123Z`, as env_logger's millisecond timestamps read.
fn timestamp_millis(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since the epoch to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Installs the process logger. Returns warnings to log once it is up (e.g. no syslog).
pub fn install(cfg: &LogConfig) -> Result<Vec<String>, LoggerError> {
    let mut warnings = Vec::new();
    let file = match &cfg.file {
        Some(p) => {
            let path = log_file_path(p);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                let _ = std::fs::create_dir_all(dir);
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|source| LoggerError::LogFile {
                    path: path.clone(),
                    source,
                })?;
            if cfg.rotate_bytes > 0 || cfg.rotate_max_files > 0 {
                warnings.push(
                    "log rotation is not implemented yet; the log file grows without bound"
                        .to_owned(),
                );
            }
            Some(f)
        }
        None => None,
    };
    let syslog = if cfg.enable_syslog {
        let s = Syslog::connect(&cfg.syslog_facility);
        if s.is_none() {
            warnings
                .push("syslog requested but no syslog socket (/dev/log) is available".to_owned());
        }
        s
    } else {
        None
    };

    let env_filtered = std::env::var_os("RUST_LOG").is_some();
    let mut builder = env_logger::Builder::new();
    if env_filtered {
        builder.parse_env(env_logger::Env::default());
    } else {
        builder.filter_level(LevelFilter::Trace);
    }
    let json = cfg.json;
    builder.format(move |buf, r| {
        let ts = buf.timestamp_millis();
        if json {
            writeln!(
                buf,
                "{{\"@level\":\"{}\",\"@message\":{},\"@module\":{},\"@timestamp\":\"{ts}\"}}",
                r.level().as_str().to_ascii_lowercase(),
                json_string(&r.args().to_string()),
                json_string(r.target()),
            )
        } else {
            writeln!(
                buf,
                "{ts} {}{}: {}",
                level_tag(r.level()),
                r.target(),
                r.args()
            )
        }
    });
    builder.target(env_logger::Target::Pipe(Box::new(Tee { file })));
    let inner = builder.build();
    let max = if env_filtered {
        inner.filter()
    } else {
        cfg.level.to_filter()
    };
    LEVEL.store(cfg.level as u8, Ordering::Relaxed);
    log::set_boxed_logger(Box::new(AgentLogger {
        inner,
        env_filtered,
        syslog,
    }))
    .map_err(|_| LoggerError::AlreadyInstalled)?;
    log::set_max_level(max);
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_are_capped_at_info() {
        assert!(passes(LogLevel::Debug, "muster::http", Level::Debug));
        assert!(passes(LogLevel::Debug, "muster", Level::Debug));
        assert!(!passes(LogLevel::Debug, "openraft::engine", Level::Debug));
        assert!(passes(LogLevel::Debug, "glommio::sys", Level::Info));
        assert!(passes(LogLevel::Trace, "openraft::engine", Level::Trace));
        assert!(!passes(LogLevel::Warn, "muster::http", Level::Info));
        assert!(!passes(LogLevel::Warn, "glommio", Level::Info));
    }

    #[test]
    fn timestamps_read_like_env_logger() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_715_424_614_123);
        assert_eq!(timestamp_millis(t), "2024-05-11T10:50:14.123Z");
        assert_eq!(
            timestamp_millis(std::time::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn facilities() {
        assert_eq!(facility_code("local0"), 16);
        assert_eq!(facility_code("LOCAL7"), 23);
        assert_eq!(facility_code("daemon"), 3);
        assert_eq!(facility_code("bogus"), 16);
    }

    #[test]
    fn level_column_matches_consul() {
        assert_eq!(level_tag(Level::Info), "[INFO]  ");
        assert_eq!(level_tag(Level::Debug), "[DEBUG] ");
    }
}
