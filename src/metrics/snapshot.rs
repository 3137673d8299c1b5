//! Plain, `Send` copies of a registry's values, and how they merge across cores.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use super::sketch::Sketch;

/// Label pairs of one series, sorted by label name.
pub type Labels = Vec<(&'static str, String)>;

/// Identity of one series: a Consul dotted name plus its labels (sorted by name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    pub name: &'static str,
    pub labels: Labels,
}

impl SeriesKey {
    /// Builds a key, sorting `labels` into the canonical order.
    pub fn new(name: &'static str, labels: &[(&'static str, String)]) -> Self {
        let mut labels = labels.to_vec();
        labels.sort_by(|a, b| a.0.cmp(b.0));
        SeriesKey { name, labels }
    }
}

/// Running aggregate of recorded values, the fields of go-metrics'
/// `AggregateSample` minus the interval bookkeeping (we are cumulative).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Aggregate {
    count: u64,
    sum: f64,
    sum_sq: f64,
    min: f64,
    max: f64,
}

impl Default for Aggregate {
    fn default() -> Self {
        Aggregate {
            count: 0,
            sum: 0.0,
            sum_sq: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Aggregate {
    /// Adds one value; NaN is ignored so a single bad value cannot poison a series.
    #[inline]
    pub fn ingest(&mut self, v: f64) {
        if v.is_nan() {
            return;
        }
        self.count += 1;
        self.sum += v;
        self.sum_sq += v * v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Aggregate) {
        self.count += other.count;
        self.sum += other.sum;
        self.sum_sq += other.sum_sq;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Number of recorded values (for a counter: number of increments).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of recorded values (for a counter: its value).
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Smallest value, 0 when empty.
    pub fn min(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.min
        }
    }

    /// Largest value, 0 when empty.
    pub fn max(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.max
        }
    }

    /// Arithmetic mean, 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// Sample standard deviation (n-1 denominator, as go-metrics), 0 below two values.
    pub fn stddev(&self) -> f64 {
        if self.count < 2 {
            return 0.0;
        }
        let n = self.count as f64;
        // Rounding can push the numerator slightly below zero for constant series.
        let num = (n * self.sum_sq - self.sum * self.sum).max(0.0);
        (num / (n * (n - 1.0))).sqrt()
    }
}

/// Last value of a gauge and when it was set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GaugeValue {
    value: f64,
    /// `None` for a gauge only pre-registered at zero: any real value wins a merge.
    updated: Option<Instant>,
}

impl Default for GaugeValue {
    fn default() -> Self {
        GaugeValue {
            value: 0.0,
            updated: None,
        }
    }
}

impl GaugeValue {
    #[inline]
    pub(crate) fn set(&mut self, value: f64) {
        self.value = value;
        self.updated = Some(Instant::now());
    }

    pub fn value(&self) -> f64 {
        self.value
    }

    /// Last write wins across cores: a gauge is "the current value", and the
    /// monotonic clock is shared by all threads of the process.
    pub fn merge(&mut self, other: &GaugeValue) {
        if other.updated > self.updated {
            *self = *other;
        }
    }
}

/// A timing (or other distribution) series: aggregate plus quantile sketch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SampleValue {
    pub(crate) agg: Aggregate,
    pub(crate) sketch: Sketch,
}

impl SampleValue {
    #[inline]
    pub(crate) fn add(&mut self, v: f64) {
        if v.is_nan() {
            return;
        }
        self.agg.ingest(v);
        self.sketch.add(v);
    }

    pub fn aggregate(&self) -> &Aggregate {
        &self.agg
    }

    /// Estimated `q`-quantile, kept inside the exact `[min, max]`; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.sketch
            .quantile(q)
            .map(|v| v.clamp(self.agg.min, self.agg.max))
    }

    pub fn merge(&mut self, other: &SampleValue) {
        self.agg.merge(&other.agg);
        self.sketch.merge(&other.sketch);
    }
}

/// Kind of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum MetricKind {
    /// Monotonic sum of increments (`IncrCounter`).
    Counter,
    /// Last value set (`SetGauge`).
    Gauge,
    /// Distribution of values, usually timings in ms (`AddSample`/`MeasureSince`).
    Sample,
}

/// Values of one or more cores' registries. `Send + Clone`, built by
/// [`snapshot_local`](super::snapshot_local) on each core and merged by whoever
/// serves a scrape.
///
/// All values are cumulative since each registry was created (process start,
/// in practice). Consul's in-memory sink instead reports the current 10 s
/// interval; we trade that for exact cross-core merging and Prometheus-style
/// monotonic counters. `Rate` in the Consul JSON is therefore the average rate
/// since start.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub(crate) since: Option<SystemTime>,
    pub(crate) counters: BTreeMap<SeriesKey, Aggregate>,
    pub(crate) gauges: BTreeMap<SeriesKey, GaugeValue>,
    pub(crate) samples: BTreeMap<SeriesKey, SampleValue>,
    pub(crate) help: BTreeMap<&'static str, &'static str>,
}

impl Snapshot {
    /// An empty snapshot, the identity of [`Snapshot::merge`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds `other` (typically another core's snapshot) into `self`: counters
    /// and samples add up, gauges keep the most recently set value.
    pub fn merge(&mut self, other: Snapshot) {
        self.since = match (self.since, other.since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for (k, v) in other.counters {
            self.counters.entry(k).or_default().merge(&v);
        }
        for (k, v) in other.gauges {
            match self.gauges.entry(k) {
                std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(&v),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(v);
                }
            }
        }
        for (k, v) in other.samples {
            match self.samples.entry(k) {
                std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(&v),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(v);
                }
            }
        }
        for (name, help) in other.help {
            self.help.entry(name).or_insert(help);
        }
    }

    /// Earliest registry creation time among merged snapshots.
    pub fn since(&self) -> Option<SystemTime> {
        self.since
    }

    /// True when no series at all is present.
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty() && self.gauges.is_empty() && self.samples.is_empty()
    }

    /// Counter series for `name` with exactly `labels` (any order).
    pub fn counter(
        &self,
        name: &'static str,
        labels: &[(&'static str, String)],
    ) -> Option<&Aggregate> {
        self.counters.get(&SeriesKey::new(name, labels))
    }

    /// Gauge series for `name` with exactly `labels` (any order).
    pub fn gauge(
        &self,
        name: &'static str,
        labels: &[(&'static str, String)],
    ) -> Option<&GaugeValue> {
        self.gauges.get(&SeriesKey::new(name, labels))
    }

    /// Sample series for `name` with exactly `labels` (any order).
    pub fn sample(
        &self,
        name: &'static str,
        labels: &[(&'static str, String)],
    ) -> Option<&SampleValue> {
        self.samples.get(&SeriesKey::new(name, labels))
    }

    /// All counter series, sorted by name then labels.
    pub fn counters(&self) -> impl Iterator<Item = (&SeriesKey, &Aggregate)> {
        self.counters.iter()
    }

    /// All gauge series, sorted by name then labels.
    pub fn gauges(&self) -> impl Iterator<Item = (&SeriesKey, &GaugeValue)> {
        self.gauges.iter()
    }

    /// All sample series, sorted by name then labels.
    pub fn samples(&self) -> impl Iterator<Item = (&SeriesKey, &SampleValue)> {
        self.samples.iter()
    }

    /// Help text registered for a family, if any.
    pub fn help(&self, name: &str) -> Option<&'static str> {
        self.help.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_stats_match_go_metrics_formulas() {
        let mut a = Aggregate::default();
        for v in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            a.ingest(v);
        }
        assert_eq!(a.count(), 8);
        assert_eq!(a.sum(), 40.0);
        assert_eq!(a.mean(), 5.0);
        assert_eq!(a.min(), 2.0);
        assert_eq!(a.max(), 9.0);
        // Sample stddev of this set: sqrt(32/7).
        assert!((a.stddev() - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        let empty = Aggregate::default();
        assert_eq!(
            (empty.min(), empty.max(), empty.mean(), empty.stddev()),
            (0.0, 0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn gauge_merge_prefers_latest_and_real_over_default() {
        let mut registered = GaugeValue::default();
        let mut first = GaugeValue::default();
        first.set(1.0);
        let mut second = GaugeValue::default();
        second.set(2.0);
        registered.merge(&first);
        assert_eq!(registered.value(), 1.0);
        registered.merge(&second);
        assert_eq!(registered.value(), 2.0);
        registered.merge(&first);
        assert_eq!(registered.value(), 2.0);
        registered.merge(&GaugeValue::default());
        assert_eq!(registered.value(), 2.0);
    }

    #[test]
    fn series_key_sorts_labels() {
        let a = SeriesKey::new("x", &[("b", "1".into()), ("a", "2".into())]);
        let b = SeriesKey::new("x", &[("a", "2".into()), ("b", "1".into())]);
        assert_eq!(a, b);
    }
}
