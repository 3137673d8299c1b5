//! A small relative-error quantile sketch for timing samples.
//!
//! Values are counted in logarithmic buckets: bucket `i` holds values in
//! `(γ^(i-1), γ^i]` with `γ = (1+α)/(1-α)`, so answering a quantile with the
//! bucket's midpoint `2γ^i/(γ+1)` is off by at most `α` relative to a value that
//! was really recorded (the DDSketch construction). Counts are kept densely
//! between the lowest and highest bucket seen, which for millisecond timings
//! spanning microseconds to seconds is a few hundred `u64`s, and merging two
//! sketches is exact (bucket counts add), which is what a scrape over cores needs.
//!
//! Written here rather than pulled from a crate because we want negative and
//! zero values handled (gauge-like samples such as clock skew can be negative),
//! no bucket collapsing that silently degrades the tail, and `Send + Clone`
//! snapshots without shared state.

/// Relative accuracy of quantile estimates (1%).
pub const RELATIVE_ACCURACY: f64 = 0.01;
const GAMMA: f64 = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY);
/// `GAMMA.ln()`, precomputed because `ln` is not a const fn (checked by a test).
const LN_GAMMA: f64 = 0.020_000_666_706_669_435;
/// Magnitudes below this are counted as zero: they are far under any timing
/// resolution we have and would otherwise stretch the dense bucket range.
const MIN_MAGNITUDE: f64 = 1e-9;
/// Magnitudes above this share the top bucket; min/max stay exact elsewhere.
const MAX_MAGNITUDE: f64 = 1e15;

#[derive(Clone, Debug, Default, PartialEq)]
struct Store {
    /// Bucket index of `counts[0]`.
    offset: i32,
    counts: Vec<u64>,
}

impl Store {
    fn add(&mut self, idx: i32, n: u64) {
        if self.counts.is_empty() {
            self.offset = idx;
            self.counts.push(n);
            return;
        }
        if idx < self.offset {
            let grow = (self.offset - idx) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = idx;
        }
        let pos = (idx - self.offset) as usize;
        if pos >= self.counts.len() {
            self.counts.resize(pos + 1, 0);
        }
        self.counts[pos] += n;
    }

    fn merge(&mut self, other: &Store) {
        // Pre-size to the union range so the loop below never shifts the vector.
        if let (Some(lo), Some(hi)) = (other.low(), other.high()) {
            self.add(lo, 0);
            self.add(hi, 0);
        }
        for (i, &c) in other.counts.iter().enumerate() {
            if c > 0 {
                self.add(other.offset + i as i32, c);
            }
        }
    }

    fn low(&self) -> Option<i32> {
        (!self.counts.is_empty()).then_some(self.offset)
    }

    fn high(&self) -> Option<i32> {
        (!self.counts.is_empty()).then(|| self.offset + self.counts.len() as i32 - 1)
    }
}

/// Quantile sketch; see the module docs for the error bound.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sketch {
    positive: Store,
    /// Bucketed by magnitude.
    negative: Store,
    zero: u64,
    count: u64,
}

fn bucket_index(magnitude: f64) -> i32 {
    (magnitude.min(MAX_MAGNITUDE).ln() / LN_GAMMA).ceil() as i32
}

fn bucket_value(idx: i32) -> f64 {
    2.0 * (f64::from(idx) * LN_GAMMA).exp() / (1.0 + GAMMA)
}

impl Sketch {
    /// Records one value; NaN is ignored.
    pub fn add(&mut self, v: f64) {
        if v.is_nan() {
            return;
        }
        if v > MIN_MAGNITUDE {
            self.positive.add(bucket_index(v), 1);
        } else if v < -MIN_MAGNITUDE {
            self.negative.add(bucket_index(-v), 1);
        } else {
            self.zero += 1;
        }
        self.count += 1;
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds `other`'s counts to this sketch; exact.
    pub fn merge(&mut self, other: &Sketch) {
        self.positive.merge(&other.positive);
        self.negative.merge(&other.negative);
        self.zero += other.zero;
        self.count += other.count;
    }

    /// Estimate of the `q`-quantile (`q` in `[0, 1]`, clamped): the value of rank
    /// `floor(q * (count - 1))` in sorted order, within [`RELATIVE_ACCURACY`].
    /// `None` when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
        let rank = (q * (self.count - 1) as f64).floor() as u64;
        let mut seen = 0u64;
        // Ascending order: most negative first, then zero, then positives.
        for (i, &c) in self.negative.counts.iter().enumerate().rev() {
            seen += c;
            if seen > rank {
                return Some(-bucket_value(self.negative.offset + i as i32));
            }
        }
        seen += self.zero;
        if seen > rank {
            return Some(0.0);
        }
        for (i, &c) in self.positive.counts.iter().enumerate() {
            seen += c;
            if seen > rank {
                return Some(bucket_value(self.positive.offset + i as i32));
            }
        }
        // Unreachable while counts and `count` agree; answer the top bucket anyway.
        Some(self.positive.high().map_or(0.0, bucket_value))
    }

    /// Number of dense buckets held (memory footprint check in tests).
    #[cfg(test)]
    fn buckets(&self) -> usize {
        self.positive.counts.len() + self.negative.counts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    fn assert_close(got: f64, want: f64) {
        let tol = RELATIVE_ACCURACY * want.abs() + 1e-12;
        assert!(
            (got - want).abs() <= tol,
            "got {got}, want {want} within {tol}"
        );
    }

    #[test]
    fn ln_gamma_constant_matches() {
        assert!((GAMMA.ln() - LN_GAMMA).abs() < 1e-15);
    }

    #[test]
    fn empty_has_no_quantile() {
        assert_eq!(Sketch::default().quantile(0.5), None);
    }

    #[test]
    fn uniform_quantiles_within_tolerance() {
        let mut s = Sketch::default();
        let mut values: Vec<f64> = (1..=10_000).map(f64::from).collect();
        for &v in &values {
            s.add(v);
        }
        values.sort_by(f64::total_cmp);
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_close(s.quantile(q).unwrap(), exact_quantile(&values, q));
        }
    }

    #[test]
    fn exponential_and_mixed_sign_quantiles_within_tolerance() {
        let mut rng = StdRng::seed_from_u64(0x5eed);
        let mut s = Sketch::default();
        let mut values = Vec::new();
        for i in 0..50_000 {
            // Exponential with mean 5 ms, a few zeros and negatives.
            let u: f64 = rng.random();
            let mut v = -5.0 * (1.0 - u).ln();
            if i % 97 == 0 {
                v = 0.0;
            } else if i % 13 == 0 {
                v = -v;
            }
            values.push(v);
            s.add(v);
        }
        values.sort_by(f64::total_cmp);
        for q in [0.01, 0.05, 0.25, 0.5, 0.9, 0.99] {
            assert_close(s.quantile(q).unwrap(), exact_quantile(&values, q));
        }
        assert!(
            s.buckets() < 2_000,
            "dense store too large: {}",
            s.buckets()
        );
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut all = Sketch::default();
        let mut parts = vec![Sketch::default(); 4];
        for i in 0..10_000 {
            let v: f64 = rng.random_range(0.001..2_000.0);
            all.add(v);
            parts[i % 4].add(v);
        }
        let mut merged = Sketch::default();
        for p in &parts {
            merged.merge(p);
        }
        assert_eq!(merged.count(), all.count());
        for q in [0.1, 0.5, 0.9, 0.99] {
            assert_eq!(merged.quantile(q), all.quantile(q));
        }
    }

    #[test]
    fn nan_ignored_and_extremes_clamped() {
        let mut s = Sketch::default();
        s.add(f64::NAN);
        assert_eq!(s.count(), 0);
        s.add(f64::INFINITY);
        s.add(1e-30);
        assert_eq!(s.count(), 2);
        assert_eq!(s.quantile(0.0), Some(0.0));
        assert!(s.quantile(1.0).unwrap() > 1e14);
    }
}
