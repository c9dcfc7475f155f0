//! A latency histogram with fixed buckets, for hook calls that take
//! microseconds to seconds: [`Histogram`] is written by the call path (a
//! bucket and the sum, two relaxed atomic adds, no lock), [`Latency`] is a
//! copy read from it, as `/metrics` exposes it (cumulative buckets) and
//! `/plugins` summarises it (quantiles).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the latency buckets, in nanoseconds: 5 µs to 2.5 s, in
/// 1-2.5-5 steps; a last bucket (`+Inf`) takes what is slower.
pub(crate) const BOUNDS_NANOS: [u64; 18] = [
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
];

/// Buckets of a histogram: one per bound, and `+Inf`.
pub(crate) const BUCKETS: usize = BOUNDS_NANOS.len() + 1;

/// A latency histogram with fixed buckets ([`BOUNDS_NANOS`]): a count per
/// bucket and the sum, in relaxed atomics.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    /// Observations per bucket (not cumulative).
    buckets: [AtomicU64; BUCKETS],
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub(crate) fn record(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket(nanos)].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Latency {
        Latency {
            buckets: self.buckets.each_ref().map(|b| b.load(Relaxed)),
            sum_nanos: self.sum_nanos.load(Relaxed),
        }
    }
}

/// The bucket `nanos` falls in: the first whose bound it does not exceed.
/// Most calls are fast, so the scan starts at the smallest bound.
fn bucket(nanos: u64) -> usize {
    BOUNDS_NANOS
        .iter()
        .position(|&bound| nanos <= bound)
        .unwrap_or(BOUNDS_NANOS.len())
}

/// A histogram read at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    /// Observations per bucket (not cumulative), `+Inf` last.
    pub buckets: [u64; BUCKETS],
    /// Their sum, in nanoseconds.
    pub sum_nanos: u64,
}

impl Latency {
    /// Observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The observations of all of `histograms`.
    pub fn merged<'a>(histograms: impl IntoIterator<Item = &'a Latency>) -> Latency {
        let mut all = Latency::default();
        for h in histograms {
            for (b, o) in all.buckets.iter_mut().zip(h.buckets) {
                *b += o;
            }
            all.sum_nanos += h.sum_nanos;
        }
        all
    }

    /// Each bucket's upper bound in nanoseconds (`None`: `+Inf`) with the
    /// observations up to it (cumulative, as Prometheus wants them).
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<u64>, u64)> + '_ {
        let bounds = BOUNDS_NANOS.iter().map(|&b| Some(b)).chain([None]);
        bounds.zip(self.buckets.iter().scan(0u64, |total, &n| {
            *total += n;
            Some(*total)
        }))
    }

    /// The `q` quantile (0 to 1) estimated as Prometheus'
    /// `histogram_quantile` does: linear within the bucket it falls in,
    /// and the last finite bound when it falls in `+Inf`. In nanoseconds;
    /// `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * count as f64;
        let mut below = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let Some(&upper) = BOUNDS_NANOS.get(i) else {
                    return Some(BOUNDS_NANOS[BOUNDS_NANOS.len() - 1] as f64);
                };
                let lower = if i == 0 { 0 } else { BOUNDS_NANOS[i - 1] };
                let within = (rank - below as f64) / n as f64;
                return Some(lower as f64 + (upper - lower) as f64 * within);
            }
            below += n;
        }
        Some(BOUNDS_NANOS[BOUNDS_NANOS.len() - 1] as f64)
    }

    /// [`Latency::quantile`] in microseconds, to 0.01 µs.
    pub fn quantile_micros(&self, q: f64) -> Option<f64> {
        self.quantile(q).map(|nanos| (nanos / 10.0).round() / 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency(observations: &[u64]) -> Latency {
        let h = Histogram::default();
        for &nanos in observations {
            h.record(Duration::from_nanos(nanos));
        }
        h.snapshot()
    }

    #[test]
    fn observations_fall_in_the_first_bucket_they_do_not_exceed() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(5_000), 0, "a bound is inclusive (le)");
        assert_eq!(bucket(5_001), 1);
        assert_eq!(bucket(10_000), 1);
        assert_eq!(bucket(999_999), 7);
        assert_eq!(bucket(1_000_000), 7);
        assert_eq!(bucket(2_500_000_000), BOUNDS_NANOS.len() - 1);
        assert_eq!(bucket(2_500_000_001), BOUNDS_NANOS.len(), "+Inf");
        assert_eq!(bucket(u64::MAX), BOUNDS_NANOS.len());
        let l = latency(&[1_000, 7_000, 7_000, 3_000_000_000]);
        assert_eq!(l.buckets[0], 1);
        assert_eq!(l.buckets[1], 2);
        assert_eq!(l.buckets[BUCKETS - 1], 1);
        assert_eq!(l.count(), 4);
        assert_eq!(l.sum_nanos, 3_000_015_000);
    }

    #[test]
    fn cumulative_buckets_end_with_the_count() {
        let l = latency(&[1_000, 7_000, 7_000, 60_000, 3_000_000_000]);
        let cumulative: Vec<(Option<u64>, u64)> = l.cumulative().collect();
        assert_eq!(cumulative.len(), BUCKETS);
        assert_eq!(cumulative[0], (Some(5_000), 1));
        assert_eq!(cumulative[1], (Some(10_000), 3));
        assert_eq!(cumulative[3], (Some(50_000), 3));
        assert_eq!(cumulative[4], (Some(100_000), 4));
        assert!(cumulative.windows(2).all(|w| w[0].1 <= w[1].1));
        assert_eq!(cumulative[BUCKETS - 1], (None, 5));
    }

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        assert_eq!(latency(&[]).quantile(0.5), None);
        // 100 calls, all in (10 µs, 25 µs]: the median halfway through it.
        let l = latency(&[20_000; 100]);
        assert_eq!(l.quantile(0.5), Some(17_500.0));
        assert_eq!(l.quantile(1.0), Some(25_000.0));
        // 99 fast calls and one slow: p50 in the first bucket, p99 at its
        // top, the slowest in its own bucket.
        let mut calls = vec![2_000; 99];
        calls.push(40_000_000);
        let l = latency(&calls);
        let p50 = l.quantile(0.5).expect("calls");
        assert!((p50 - 5_000.0 * 50.0 / 99.0).abs() < 1e-6, "{p50}");
        assert_eq!(l.quantile(0.99), Some(5_000.0));
        assert_eq!(l.quantile(1.0), Some(50_000_000.0));
        assert_eq!(l.quantile_micros(0.99), Some(5.0));
        // Past the last bound: the last bound.
        let l = latency(&[10_000_000_000]);
        assert_eq!(l.quantile(0.5), Some(2_500_000_000.0));
    }

    #[test]
    fn merged_histograms_add_up() {
        let a = Latency::merged(&[latency(&[1_000, 60_000]), latency(&[60_000, 3_000_000_000])]);
        assert_eq!(a.count(), 4);
        assert_eq!(a.buckets[4], 2);
        assert_eq!(a.sum_nanos, 3_000_121_000);
    }
}
