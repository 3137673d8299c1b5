//! Latency histograms: HDR histograms in microseconds, one per generator task, merged at
//! the end so that no lock sits on the hot path.
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency kept (longer ones are clamped): 10 minutes covers blocking queries.
pub const MAX_US: u64 = 600_000_000;

/// A latency histogram in microseconds with 3 significant digits.
#[derive(Clone, Debug)]
pub struct Latency {
    h: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    pub fn new() -> Latency {
        Latency {
            h: Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds"),
        }
    }

    pub fn record(&mut self, d: Duration) {
        self.record_us(d.as_micros().min(u128::from(MAX_US)) as u64);
    }

    /// Records `us` microseconds; 0 counts as 1 (the histogram's lowest value).
    pub fn record_us(&mut self, us: u64) {
        self.record_n(us, 1);
    }

    pub fn record_n(&mut self, us: u64, n: u64) {
        let v = us.clamp(1, MAX_US);
        self.h
            .record_n(v, n)
            .expect("value is clamped into the histogram's range");
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Latency) {
        self.h
            .add(&other.h)
            .expect("histograms share the same bounds");
    }

    pub fn len(&self) -> u64 {
        self.h.len()
    }

    pub fn is_empty(&self) -> bool {
        self.h.is_empty()
    }

    pub fn summary(&self) -> Summary {
        if self.h.is_empty() {
            return Summary::default();
        }
        let q = |q: f64| self.h.value_at_quantile(q);
        Summary {
            count: self.h.len(),
            mean_us: self.h.mean(),
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: self.h.max(),
        }
    }
}

/// Percentiles of a [`Latency`], as stored in result files.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_and_keeps_extremes() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        for us in 1..=1000 {
            a.record_us(us);
        }
        for _ in 0..1000 {
            b.record_us(50_000);
        }
        a.merge(&b);
        let s = a.summary();
        assert_eq!(s.count, 2000);
        // Half the values are 1..=1000 µs, half are 50 ms: the median sits at the boundary.
        assert!(s.p50_us <= 1001, "p50 {}", s.p50_us);
        assert!(s.p90_us >= 49_950, "p90 {}", s.p90_us);
        assert!((49_950..=50_050).contains(&s.max_us), "max {}", s.max_us);
    }

    #[test]
    fn merging_per_task_histograms_equals_one_histogram() {
        let mut whole = Latency::new();
        let mut parts = vec![Latency::new(), Latency::new(), Latency::new()];
        let mut rng = fastrand::Rng::with_seed(7);
        for i in 0..30_000 {
            let v = rng.u64(1..2_000_000);
            whole.record_us(v);
            parts[i % 3].record_us(v);
        }
        let mut merged = Latency::new();
        for p in &parts {
            merged.merge(p);
        }
        assert_eq!(merged.summary(), whole.summary());
    }

    #[test]
    fn clamps_out_of_range_values() {
        let mut h = Latency::new();
        h.record_us(0);
        h.record(Duration::from_secs(3600));
        let s = h.summary();
        assert_eq!(s.count, 2);
        assert!(s.max_us >= MAX_US - MAX_US / 1000);
        assert_eq!(Latency::new().summary(), Summary::default());
    }
}
