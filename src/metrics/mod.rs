//! Metrics, thread-per-core style.
//!
//! Each executor thread records into its own thread-local registry
//! ([`incr_counter`], [`set_gauge`], [`add_sample`], [`measure_since`], or
//! pre-resolved [`CounterHandle`]/[`GaugeHandle`]/[`SampleHandle`] on hot
//! paths): no locks, no atomics, nothing shared. A scrape asks every core for
//! [`snapshot_local`] (a `Send` copy), folds the answers with
//! [`Snapshot::merge`], and renders the result as Consul's
//! `/v1/agent/metrics` JSON ([`Snapshot::to_consul_json`]) or as Prometheus
//! text ([`Snapshot::to_prometheus`], served with [`PROMETHEUS_CONTENT_TYPE`]).
//!
//! Names are Consul's dotted names (see [`names`]); Prometheus names replace
//! every character outside `[a-zA-Z0-9_:]` with `_`. Timings are milliseconds.
//! Values are cumulative since start, unlike Consul's 10 s in-memory interval.
//!
//! Labels are `(&'static str, String)` pairs; pass them sorted by label name to
//! keep the free functions allocation-free (other orders work, at the cost of
//! one allocation per call).

mod consul_json;
pub mod names;
mod prometheus;
mod registry;
mod sketch;
mod snapshot;

use std::time::SystemTime;

pub use consul_json::go_utc_timestamp;
pub use prometheus::{prometheus_name, PROMETHEUS_CONTENT_TYPE, SUMMARY_QUANTILES};
pub use registry::{
    add_sample, counter, gauge, incr_counter, measure_since, register_defaults, sample, set_gauge,
    snapshot_local, CounterHandle, GaugeHandle, MetricDef, SampleHandle, DROPPED_SERIES,
    MAX_SERIES_PER_FAMILY,
};
pub use sketch::{Sketch, RELATIVE_ACCURACY};
pub use snapshot::{Aggregate, GaugeValue, Labels, MetricKind, SampleValue, SeriesKey, Snapshot};

impl Snapshot {
    /// The `/v1/agent/metrics` JSON body, stamped with `now` (also the end of
    /// the window over which `Rate` is computed).
    pub fn to_consul_json(&self, now: SystemTime) -> Vec<u8> {
        consul_json::render(self, now)
    }

    /// The `/v1/agent/metrics?format=prometheus` body (text format 0.0.4).
    pub fn to_prometheus(&self) -> String {
        prometheus::render(self)
    }
}

#[cfg(test)]
mod tests;
