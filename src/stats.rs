//! Summary statistics of samples, and the warnings attached to suspicious ones.
//!
//! - `median` of an even count is the mean of the two middle values.
//! - `stddev` is the sample standard deviation (n - 1); 0 for one sample.
//! - `mad` is the raw median absolute deviation from the median (not scaled).
//! - The confidence interval of the median is distribution-free: the order statistics
//!   x(j) and x(n+1-j) with the largest j such that the binomial tail
//!   P(Bin(n, 1/2) < j) is at most (1 - level)/2, so the coverage is at least `level`.
//!   When n is too small for that (n < 6 at 95%), the interval is [min, max] and
//!   `ci_coverage` reports the coverage actually achieved (1 - 2^(1-n)).
//! - Outliers are samples whose modified z-score 0.6745 |x - median| / MAD exceeds 3.5
//!   (Iglewicz and Hoaglin).

use serde::{Deserialize, Serialize};

/// The confidence level asked of median intervals.
pub const CONFIDENCE: f64 = 0.95;

/// A summary of one set of samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    #[serde(with = "crate::report::float")]
    pub mean: f64,
    #[serde(with = "crate::report::float")]
    pub median: f64,
    #[serde(with = "crate::report::float")]
    pub stddev: f64,
    #[serde(with = "crate::report::float")]
    pub min: f64,
    #[serde(with = "crate::report::float")]
    pub max: f64,
    #[serde(with = "crate::report::float")]
    pub mad: f64,
    #[serde(with = "crate::report::float")]
    pub ci_low: f64,
    #[serde(with = "crate::report::float")]
    pub ci_high: f64,
    /// The coverage of `[ci_low, ci_high]` for the median.
    #[serde(with = "crate::report::float")]
    pub ci_coverage: f64,
    /// Samples whose modified z-score `0.6745 |x - median| / MAD` exceeds 3.5 (Iglewicz
    /// and Hoaglin). With a MAD of 0 (more than half the samples equal) the score is
    /// undefined and none is counted.
    pub outliers: usize,
}

impl Summary {
    /// Summarizes `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Summary> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let mean = sorted.iter().sum::<f64>() / n as f64;
        let variance =
            if n > 1 { sorted.iter().map(|value| (value - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
        let median = median_of_sorted(&sorted);
        let mut deviations: Vec<f64> = sorted.iter().map(|value| (value - median).abs()).collect();
        deviations.sort_by(f64::total_cmp);
        let mad = median_of_sorted(&deviations);
        let (ci_low, ci_high, ci_coverage) = median_interval(&sorted, CONFIDENCE);
        let outliers = if mad > 0.0 {
            sorted.iter().filter(|value| 0.6745 * (*value - median).abs() / mad > 3.5).count()
        } else {
            0
        };
        Some(Summary {
            n,
            mean,
            median,
            stddev: variance.sqrt(),
            min: sorted[0],
            max: sorted[n - 1],
            mad,
            ci_low,
            ci_high,
            ci_coverage,
            outliers,
        })
    }

    pub fn stat(&self, stat: crate::expr::Stat) -> f64 {
        use crate::expr::Stat;
        match stat {
            Stat::Mean => self.mean,
            Stat::Median => self.median,
            Stat::Min => self.min,
            Stat::Max => self.max,
            Stat::Stddev => self.stddev,
            Stat::Mad => self.mad,
        }
    }

    /// The relative standard deviation, stddev / mean.
    pub fn relative_stddev(&self) -> f64 {
        if self.mean != 0.0 { self.stddev / self.mean.abs() } else { 0.0 }
    }
}

/// The distribution-free interval of the median of `sorted` (ascending, non-empty) at
/// `level`: its bounds and the coverage it reaches.
pub fn median_interval(sorted: &[f64], level: f64) -> (f64, f64, f64) {
    let n = sorted.len();
    let (low_rank, coverage) = median_interval_rank(n, level);
    (sorted[low_rank - 1], sorted[n - low_rank], coverage)
}

pub fn median_of_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 { sorted[n / 2] } else { 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]) }
}

/// The 1-based rank j of the lower bound of the median interval, and its coverage.
pub fn median_interval_rank(n: usize, level: f64) -> (usize, f64) {
    let tail = (1.0 - level) / 2.0;
    // cdf[k] = P(Bin(n, 1/2) <= k), accumulated in log space so large n do not underflow.
    let ln_half_n = n as f64 * 0.5f64.ln();
    let mut ln_choose = 0.0f64;
    let mut cumulative = 0.0f64;
    let mut rank = 1;
    let mut coverage = 1.0 - 2.0 * (ln_half_n).exp();
    for k in 0..n / 2 {
        // P(B <= k), the probability that fewer than k + 1 samples fall below the median.
        cumulative += (ln_choose + ln_half_n).exp();
        if cumulative > tail {
            break;
        }
        rank = k + 1;
        coverage = 1.0 - 2.0 * cumulative;
        ln_choose += ((n - k) as f64).ln() - ((k + 1) as f64).ln();
    }
    if rank == 1 {
        // Even [min, max] does not reach the level: report what it does reach.
        coverage = 1.0 - 2.0 * (ln_half_n).exp();
    }
    (rank, coverage.max(0.0))
}

/// Warnings about a run's warm (or cold) time samples.
pub fn warnings(summary: &Summary, first: Option<f64>, warmup: u32, too_short_s: f64) -> Vec<String> {
    let mut warnings = Vec::new();
    if summary.median < too_short_s {
        warnings.push(format!(
            "median time {} is too short to time reliably (below {}); increase the work per step",
            format_seconds(summary.median),
            format_seconds(too_short_s)
        ));
    }
    if summary.outliers > 0 {
        warnings.push(format!(
            "{} of {} samples are statistical outliers (modified z-score > 3.5); the machine may be noisy",
            summary.outliers, summary.n
        ));
    }
    if let Some(first) = first
        && warmup == 0
        && summary.n > 2
        && first > 2.0 * summary.median
    {
        warnings.push(format!(
                "the first sample ({}) was much slower than the median ({}): caches may not have been warm; consider `warmup = 1`",
                format_seconds(first),
                format_seconds(summary.median)
            ));
    }
    if summary.n > 2 && summary.relative_stddev() > 0.1 {
        warnings.push(format!("relative standard deviation is {:.0}% (above 10%)", 100.0 * summary.relative_stddev()));
    }
    warnings
}

/// Formats seconds with a unit that keeps three or four significant digits.
pub fn format_seconds(seconds: f64) -> String {
    let magnitude = seconds.abs();
    if !seconds.is_finite() {
        format!("{seconds}")
    } else if magnitude >= 1.0 {
        format!("{seconds:.3} s")
    } else if magnitude >= 1e-3 {
        format!("{:.3} ms", seconds * 1e3)
    } else if magnitude >= 1e-6 {
        format!("{:.3} µs", seconds * 1e6)
    } else {
        format!("{:.1} ns", seconds * 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::{Summary, format_seconds, median_interval_rank, warnings};

    #[test]
    fn summary_of_known_samples() {
        let summary = Summary::of(&[3.0, 1.0, 2.0, 4.0, 100.0]).unwrap();
        assert_eq!(summary.n, 5);
        assert_eq!(summary.median, 3.0);
        assert_eq!(summary.mean, 22.0);
        assert_eq!(summary.min, 1.0);
        assert_eq!(summary.max, 100.0);
        assert_eq!(summary.mad, 1.0);
        assert_eq!(summary.outliers, 1);
        // Squared deviations 441 + 400 + 361 + 324 + 6084 = 7610, over n - 1 = 4.
        assert!((summary.stddev - (7610.0f64 / 4.0).sqrt()).abs() < 1e-12, "{}", summary.stddev);
        // n = 5 cannot reach 95%: the interval is [min, max] with coverage 1 - 2/32.
        assert_eq!((summary.ci_low, summary.ci_high), (1.0, 100.0));
        assert!((summary.ci_coverage - 0.9375).abs() < 1e-12);
    }

    #[test]
    fn even_count_median() {
        let summary = Summary::of(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(summary.median, 2.5);
        assert_eq!(summary.mad, 1.0);
        assert!(Summary::of(&[]).is_none());
        let one = Summary::of(&[7.0]).unwrap();
        assert_eq!((one.median, one.stddev, one.ci_low, one.ci_high), (7.0, 0.0, 7.0, 7.0));
    }

    #[test]
    fn median_interval_ranks() {
        // Known values of the binomial order-statistic interval at 95%.
        assert_eq!(median_interval_rank(6, 0.95).0, 1);
        assert!((median_interval_rank(6, 0.95).1 - 0.96875).abs() < 1e-12);
        assert_eq!(median_interval_rank(10, 0.95).0, 2);
        assert!((median_interval_rank(10, 0.95).1 - 0.978_515_625).abs() < 1e-9);
        assert_eq!(median_interval_rank(20, 0.95).0, 6);
        assert_eq!(median_interval_rank(100, 0.95).0, 40);
        let (rank, coverage) = median_interval_rank(5000, 0.95);
        assert!(rank > 2400 && rank < 2500 && coverage >= 0.95, "{rank} {coverage}");
        // The interval's ends are those order statistics, from both sides: the 2nd and
        // the 9th of ten.
        let shuffled = [7.0, 3.0, 10.0, 1.0, 5.0, 9.0, 2.0, 8.0, 4.0, 6.0];
        let summary = Summary::of(&shuffled).unwrap();
        assert_eq!((summary.ci_low, summary.ci_high), (2.0, 9.0));
        assert!((summary.ci_coverage - 0.978_515_625).abs() < 1e-9);
    }

    /// Nine samples with median 4 and MAD 2, so the fence of the modified z-score,
    /// 0.6745 |x - 4| / 2 > 3.5, lies 10.378 from the median on either side: -6.5 is
    /// beyond it (3.541), 14.3 within it (3.474).
    #[test]
    fn outliers_lie_beyond_the_modified_z_score_fence_on_either_side() {
        let summary = Summary::of(&[-6.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 14.3]).unwrap();
        assert_eq!((summary.median, summary.mad), (4.0, 2.0));
        assert_eq!(summary.outliers, 1);
        let summary = Summary::of(&[-6.3, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 14.5]).unwrap();
        assert_eq!(summary.outliers, 1, "the high side too");
        // Most samples equal: the MAD is 0 and no score is defined.
        let summary = Summary::of(&[1.0, 1.0, 1.0, 1.0, 5.0]).unwrap();
        assert_eq!((summary.mad, summary.outliers), (0.0, 0));
    }

    /// Each warning from the samples that call for it, and none from the same samples
    /// on the safe side of its bound.
    #[test]
    fn measurement_warnings() {
        let warned = |values: &[f64], first: Option<f64>, warmup: u32| {
            warnings(&Summary::of(values).unwrap(), first, warmup, 10e-6)
        };
        let steady = [1.0e-3, 1.01e-3, 0.99e-3];
        assert!(warned(&steady, Some(1.0e-3), 0).is_empty());
        assert_eq!(
            warned(&[5e-6, 5e-6, 5e-6], None, 1),
            ["median time 5.000 µs is too short to time reliably (below 10.000 µs); increase the work per step"]
        );
        assert!(warned(&[20e-6, 20e-6, 20e-6], None, 1).is_empty());
        assert_eq!(
            warned(&[-6.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 14.3], None, 1)[0],
            "1 of 9 samples are statistical outliers (modified z-score > 3.5); the machine may be noisy"
        );
        // A first sample more than twice the median, with no warm-up before it.
        assert_eq!(
            warned(&steady, Some(2.5e-3), 0),
            [
                "the first sample (2.500 ms) was much slower than the median (1.000 ms): caches may not have been warm; consider `warmup = 1`"
            ]
        );
        assert!(warned(&steady, Some(1.9e-3), 0).is_empty(), "less than twice the median");
        assert!(warned(&steady, Some(2.5e-3), 1).is_empty(), "after a warm-up step");
        assert!(warned(&steady[..2], Some(2.5e-3), 0).is_empty(), "two samples say nothing of the first");
        // Standard deviations of 0.2 and 0.05 around a mean of 1.
        assert_eq!(warned(&[0.8, 1.0, 1.2], None, 1), ["relative standard deviation is 20% (above 10%)"]);
        assert!(warned(&[0.95, 1.0, 1.05], None, 1).is_empty());
    }

    #[test]
    fn seconds_format() {
        assert_eq!(format_seconds(1.5), "1.500 s");
        assert_eq!(format_seconds(0.0123), "12.300 ms");
        assert_eq!(format_seconds(2.5e-6), "2.500 µs");
        assert_eq!(format_seconds(3e-9), "3.0 ns");
    }
}
