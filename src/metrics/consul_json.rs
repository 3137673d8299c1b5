//! The JSON body of Consul's `GET /v1/agent/metrics` (go-metrics' in-memory
//! sink summary): `Timestamp`, `Gauges`, `Points`, `Counters`, `Samples`.
//!
//! Differences from Consul, all because we are cumulative (see [`Snapshot`]):
//! values cover the time since start rather than the current 10 s interval,
//! `Rate` is `Sum` per second since start, and `Timestamp` is the scrape time
//! (whole seconds) instead of the interval start. Series pre-registered by
//! [`register_defaults`](super::register_defaults) appear with zero counts.
//! `Points` is always empty: nothing in Muster emits go-metrics' `AddPoint`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::snapshot::{Aggregate, SeriesKey, Snapshot};

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Summary<'a> {
    timestamp: String,
    gauges: Vec<Gauge<'a>>,
    points: [(); 0],
    counters: Vec<Sampled<'a>>,
    samples: Vec<Sampled<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Gauge<'a> {
    name: &'a str,
    value: f64,
    labels: BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Sampled<'a> {
    name: &'a str,
    count: u64,
    rate: f64,
    sum: f64,
    min: f64,
    max: f64,
    mean: f64,
    stddev: f64,
    labels: BTreeMap<&'a str, &'a str>,
}

fn labels(key: &SeriesKey) -> BTreeMap<&str, &str> {
    key.labels.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn sampled<'a>(key: &'a SeriesKey, a: &Aggregate, elapsed_secs: f64) -> Sampled<'a> {
    Sampled {
        name: key.name,
        count: a.count(),
        rate: a.sum() / elapsed_secs,
        sum: a.sum(),
        min: a.min(),
        max: a.max(),
        mean: a.mean(),
        stddev: a.stddev(),
        labels: labels(key),
    }
}

/// Go's `time.Time.String()` for a UTC instant with whole seconds:
/// `2026-11-20 23:50:00 +0000 UTC`.
pub fn go_utc_timestamp(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    };
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} +0000 UTC",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Hinnant's
/// era-based algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

pub(crate) fn render(snap: &Snapshot, now: SystemTime) -> Vec<u8> {
    // At least one second, so a scrape right at start does not divide by ~0.
    let elapsed = snap
        .since
        .and_then(|s| now.duration_since(s).ok())
        .unwrap_or_default()
        .max(Duration::from_secs(1))
        .as_secs_f64();
    let summary = Summary {
        timestamp: go_utc_timestamp(now),
        gauges: snap
            .gauges
            .iter()
            .map(|(k, g)| Gauge {
                name: k.name,
                value: g.value(),
                labels: labels(k),
            })
            .collect(),
        points: [],
        counters: snap
            .counters
            .iter()
            .map(|(k, a)| sampled(k, a, elapsed))
            .collect(),
        samples: snap
            .samples
            .iter()
            .map(|(k, s)| sampled(k, s.aggregate(), elapsed))
            .collect(),
    };
    // Serializing these plain structs cannot fail (non-finite floats become
    // `null`); keep the endpoint answering with valid JSON regardless.
    simd_json::to_vec(&summary).unwrap_or_else(|e| {
        log::error!("metrics: JSON encoding failed: {e}");
        b"{}".to_vec()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_go_format() {
        assert_eq!(
            go_utc_timestamp(UNIX_EPOCH),
            "1970-01-01 00:00:00 +0000 UTC"
        );
        // 2026-11-20 23:50:00 UTC.
        let t = UNIX_EPOCH + Duration::from_secs(1_795_218_600) + Duration::from_millis(999);
        assert_eq!(go_utc_timestamp(t), "2026-11-20 23:50:00 +0000 UTC");
        // Leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(go_utc_timestamp(t), "2000-02-29 00:00:00 +0000 UTC");
        let t = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(go_utc_timestamp(t), "1969-12-31 23:59:59 +0000 UTC");
    }
}
