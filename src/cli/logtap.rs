//! Log taps for `/v1/agent/monitor`: each tap gets the agent's log lines at its own level
//! (more verbose than the agent's if asked, as Consul's monitor allows), formatted as text or
//! JSON, through a bounded channel. A slow reader loses lines instead of stalling a logger.
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use futures::channel::mpsc;
use log::{Level, Record};

use crate::config::LogLevel;

/// Lines buffered per tap before new ones are dropped.
const TAP_BUFFER: usize = 512;

struct Tap {
    level: LogLevel,
    json: bool,
    tx: mpsc::Sender<Bytes>,
}

/// Taps are added and removed from any executor and fed from any logging thread: a plain
/// mutex, held only to format and `try_send`, never across an await.
static TAPS: Mutex<Vec<Tap>> = Mutex::new(Vec::new());
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// The most verbose level any tap wants (a `LogLevel` as u8; `u8::MAX`: no tap).
static MOST_VERBOSE: AtomicU8 = AtomicU8::new(u8::MAX);

/// Starts a tap at `level`; lines arrive on the receiver until it is dropped.
pub fn subscribe(level: LogLevel, json: bool) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(TAP_BUFFER);
    let mut taps = TAPS.lock().unwrap_or_else(|e| e.into_inner());
    taps.push(Tap { level, json, tx });
    refresh(&taps);
    // Records above the agent's own level must still reach `log()`.
    if std::env::var_os("RUST_LOG").is_none() {
        let agent = super::logger::current_level();
        log::set_max_level(agent.to_filter().max(level.to_filter()));
    }
    rx
}

fn refresh(taps: &[Tap]) {
    COUNT.store(taps.len(), Ordering::Relaxed);
    let most = taps.iter().map(|t| t.level as u8).min().unwrap_or(u8::MAX);
    MOST_VERBOSE.store(most, Ordering::Relaxed);
}

/// Whether some tap wants a record at `level` from `target`.
pub fn wants(target: &str, level: Level) -> bool {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return false;
    }
    let most = MOST_VERBOSE.load(Ordering::Relaxed);
    most != u8::MAX && super::logger::passes(super::logger::level_of(most), target, level)
}

/// Feeds a record to every tap that wants it, dropping taps whose reader is gone.
pub fn publish(r: &Record<'_>, ts: &str) {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut taps = TAPS.lock().unwrap_or_else(|e| e.into_inner());
    let (mut text, mut json) = (None, None);
    taps.retain_mut(|t| {
        if t.tx.is_closed() {
            return false;
        }
        if !super::logger::passes(t.level, r.target(), r.level()) {
            return true;
        }
        let line = if t.json {
            json.get_or_insert_with(|| Bytes::from(super::logger::json_line(r, ts)))
                .clone()
        } else {
            text.get_or_insert_with(|| Bytes::from(super::logger::text_line(r, ts)))
                .clone()
        };
        // A full tap loses this line; a closed one is removed.
        match t.tx.try_send(line) {
            Ok(()) => true,
            Err(e) => !e.is_disconnected(),
        }
    });
    refresh(&taps);
}

/// Consul's accepted `?loglevel=` values.
pub fn parse_level(s: &str) -> Option<LogLevel> {
    Some(match s.to_ascii_uppercase().as_str() {
        "TRACE" => LogLevel::Trace,
        "DEBUG" => LogLevel::Debug,
        "INFO" => LogLevel::Info,
        "WARN" => LogLevel::Warn,
        "ERR" | "ERROR" => LogLevel::Error,
        _ => return None,
    })
}
