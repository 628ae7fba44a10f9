//! Anomaly detectors for one (device, metric) series, fed in arrival order.
//!
//! - [`ZScore`]: the point's z-score against the last `window` points (default 100); fires when
//!   `|z| ≥ threshold` (default 3) once `min_points` (default 20) are known.
//! - [`Ewma`]: the same test against an exponentially weighted mean and variance (`alpha`,
//!   default [`EWMA_ALPHA`] = 2/(100+1): the same memory as the z-score's 100-point window, by
//!   the usual span correspondence).
//!
//! A point that fires enters the baseline *winsorized* (clipped to mean ± threshold·σ): one
//! spike then barely moves the baseline (so the next spike is still seen), while a level shift
//! walks the baseline over within a few dozen points instead of firing forever. Detection
//! quality is measured in the tests (spikes, level shifts, drifts) and recorded in
//! docs/benchmarks.md.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Default EWMA weight: a span of 100 points, like the z-score window.
pub const EWMA_ALPHA: f64 = 2.0 / 101.0;

/// What a detector says about one point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// The point's score: signed distance from the baseline in standard deviations.
    pub score: f64,
    /// `|score| ≥ threshold` with enough history.
    pub anomalous: bool,
    /// The baseline mean the point was compared with.
    pub expected: f64,
}

/// Settings shared by the detectors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DetectorConfig {
    pub threshold: f64,
    pub min_points: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            threshold: 3.0,
            min_points: 20,
        }
    }
}

fn verdict(x: f64, mean: f64, var: f64, enough: bool, threshold: f64) -> (Verdict, f64) {
    let sd = var.max(0.0).sqrt();
    let score = if sd > f64::EPSILON * mean.abs().max(1.0) {
        (x - mean) / sd
    } else if (x - mean).abs() > f64::EPSILON * mean.abs().max(1.0) {
        // A flat baseline: any change is infinitely unlikely under it.
        f64::INFINITY.copysign(x - mean)
    } else {
        0.0
    };
    let anomalous = enough && score.abs() >= threshold;
    // What enters the baseline: the point, or its winsorized value when it fired.
    let admitted = if anomalous && sd > 0.0 {
        mean + threshold * sd * score.signum()
    } else {
        x
    };
    (
        Verdict {
            score,
            anomalous,
            expected: mean,
        },
        admitted,
    )
}

/// Rolling z-score over the last `window` points.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZScore {
    config: DetectorConfig,
    window: usize,
    values: VecDeque<f64>,
    /// Sums of `value - shift` over the window (shifted so that the variance does not
    /// cancel catastrophically around a large mean).
    sum: f64,
    sum_sq: f64,
    /// The shift of `sum` and `sum_sq` (checkpoints before it existed hold 0: unshifted).
    #[serde(default)]
    shift: f64,
    /// Points added since the sums were last recomputed from the window.
    #[serde(default)]
    since_exact: usize,
}

impl ZScore {
    pub fn new(window: usize, config: DetectorConfig) -> Self {
        Self {
            config,
            window: window.max(2),
            values: VecDeque::with_capacity(window.max(2)),
            sum: 0.0,
            sum_sq: 0.0,
            shift: 0.0,
            since_exact: 0,
        }
    }

    /// Scores `x` against the window, then adds it.
    pub fn observe(&mut self, x: f64) -> Verdict {
        if self.values.is_empty() {
            // Shift by the first value: a flat series then sums to exactly zero.
            (self.shift, self.sum, self.sum_sq, self.since_exact) = (x, 0.0, 0.0, 0);
        }
        let n = self.values.len() as f64;
        let (mean, var) = if n >= 2.0 {
            let m = self.sum / n;
            (self.shift + m, (self.sum_sq - n * m * m) / (n - 1.0))
        } else {
            (self.values.front().copied().unwrap_or(x), 0.0)
        };
        let enough = self.values.len() >= self.config.min_points;
        let (v, admitted) = verdict(x, mean, var, enough, self.config.threshold);
        if self.values.len() == self.window
            && let Some(old) = self.values.pop_front()
        {
            let d = old - self.shift;
            self.sum -= d;
            self.sum_sq -= d * d;
        }
        self.values.push_back(admitted);
        self.since_exact += 1;
        if self.since_exact >= self.window {
            self.recompute();
        } else {
            let d = admitted - self.shift;
            self.sum += d;
            self.sum_sq += d * d;
        }
        v
    }

    /// Recomputes the sums exactly from the window, shifted by its mean: sliding additions
    /// and subtractions drift by rounding, and a flat series whose drifted mean differs from
    /// its value in the last bits would otherwise score as infinitely anomalous. Runs once
    /// per `window` points, so it costs O(1) per point.
    fn recompute(&mut self) {
        let n = self.values.len().max(1) as f64;
        self.shift = self.values.iter().sum::<f64>() / n;
        let (mut sum, mut sum_sq) = (0.0, 0.0);
        for &x in &self.values {
            let d = x - self.shift;
            sum += d;
            sum_sq += d * d;
        }
        (self.sum, self.sum_sq, self.since_exact) = (sum, sum_sq, 0);
    }
}

/// Exponentially weighted mean and variance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ewma {
    config: DetectorConfig,
    alpha: f64,
    mean: f64,
    var: f64,
    seen: usize,
}

impl Ewma {
    pub fn new(alpha: f64, config: DetectorConfig) -> Self {
        Self {
            config,
            alpha: alpha.clamp(1e-6, 1.0),
            mean: 0.0,
            var: 0.0,
            seen: 0,
        }
    }

    /// Scores `x` against the weighted baseline, then folds it in.
    pub fn observe(&mut self, x: f64) -> Verdict {
        if self.seen == 0 {
            self.mean = x;
            self.seen = 1;
            return Verdict {
                score: 0.0,
                anomalous: false,
                expected: x,
            };
        }
        let enough = self.seen >= self.config.min_points;
        let (v, admitted) = verdict(x, self.mean, self.var, enough, self.config.threshold);
        let d = admitted - self.mean;
        self.mean += self.alpha * d;
        self.var = (1.0 - self.alpha) * (self.var + self.alpha * d * d);
        self.seen += 1;
        v
    }
}
