//! The aggregates of one window: a metric series' count, sum, min, max, first, last and
//! quantiles (exact samples, then a DDSketch, then frozen), and a dimension value's event count
//! with distinct users (HyperLogLog++, then frozen). Pure values: must not touch windows maps,
//! watermarks or rollup state.

use cardinality_estimator::CardinalityEstimator;
use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config, DDSketch};

/// Relative accuracy of the quantile sketches.
pub const SKETCH_ALPHA: f64 = 0.01;
/// Windows with at most this many samples keep them and answer quantiles exactly; a sketch
/// (≈1 KiB of bins) only pays off beyond.
pub const EXACT_SAMPLES: usize = 64;

/// The quantiles rollups answer (p50, p90, p95, p99): what a closed window keeps.
pub const QUANTILES: [f64; 4] = [0.5, 0.9, 0.95, 0.99];

/// Quantile state of one window: the samples themselves while few, then a DDSketch; once the
/// window closes, just its [`QUANTILES`] (a closed window never changes again).
#[derive(Clone, Serialize, Deserialize)]
enum Quantiles {
    Exact(Vec<f64>),
    Sketch(Box<DDSketch>),
    Frozen([f64; 4]),
}

impl Quantiles {
    fn add(&mut self, v: f64) {
        match self {
            Quantiles::Exact(values) if values.len() < EXACT_SAMPLES => values.push(v),
            Quantiles::Exact(values) => {
                let mut sketch = new_sketch();
                for x in values.iter() {
                    sketch.add(*x);
                }
                sketch.add(v);
                *self = Quantiles::Sketch(Box::new(sketch));
            }
            Quantiles::Sketch(sketch) => sketch.add(v),
            // Closed windows take no samples (their events are late). Only a restart with a
            // longer allowed lateness can reopen a frozen window: its exact aggregates still
            // take the sample, its quantiles stay as they were when it closed.
            Quantiles::Frozen(_) => {}
        }
    }

    /// Exact: linear interpolation between the two nearest ranks (what the raw path's
    /// `percentile_cont` answers). Sketch: the value at rank ⌊q·(n−1)⌋ within ±α relative.
    fn quantile(&self, q: f64) -> Option<f64> {
        match self {
            Quantiles::Exact(values) => {
                if values.is_empty() || !(0.0..=1.0).contains(&q) {
                    return None;
                }
                let mut sorted = values.clone();
                sorted.sort_by(f64::total_cmp);
                let pos = q * (sorted.len() - 1) as f64;
                let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
                let (a, b) = (*sorted.get(lo)?, *sorted.get(hi)?);
                Some(a + (pos - lo as f64) * (b - a))
            }
            Quantiles::Sketch(sketch) => sketch.quantile(q).ok().flatten(),
            Quantiles::Frozen(qs) => QUANTILES
                .iter()
                .position(|x| *x == q)
                .and_then(|i| qs.get(i).copied()),
        }
    }

    /// Freezes, answering the samples or sketch it held (`None` if frozen already).
    fn freeze(&mut self) -> Option<Quantiles> {
        if matches!(self, Quantiles::Frozen(_)) {
            return None;
        }
        let qs = QUANTILES.map(|q| self.quantile(q).unwrap_or(f64::NAN));
        Some(std::mem::replace(self, Quantiles::Frozen(qs)))
    }

    /// Takes `other`'s samples as if each had been added: a sketch's bins add up exactly, so
    /// the result does not depend on the order of adds and merges.
    fn merge(&mut self, other: &Quantiles) {
        match other {
            Quantiles::Frozen(_) => {}
            Quantiles::Exact(values) => values.iter().for_each(|v| self.add(*v)),
            Quantiles::Sketch(theirs) => match self {
                Quantiles::Frozen(_) => {}
                Quantiles::Sketch(mine) => {
                    // Invariant: every sketch has the one config of `new_sketch`.
                    let _ = mine.merge(theirs);
                }
                Quantiles::Exact(values) => {
                    let mut sketch = theirs.clone();
                    values.iter().for_each(|v| sketch.add(*v));
                    *self = Quantiles::Sketch(sketch);
                }
            },
        }
    }
}

fn new_sketch() -> DDSketch {
    DDSketch::new(Config::new(SKETCH_ALPHA, 2048, 1e-9))
}

/// One sample: first/last order by event time, ties broken by value (as the raw path does, so
/// both answer the same); `offset` records where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub time: i64,
    pub offset: u64,
    pub value: f64,
}

impl Point {
    pub(crate) fn before(&self, other: &Point) -> bool {
        self.time < other.time
            || (self.time == other.time && self.value.total_cmp(&other.value).is_lt())
    }
}

/// Aggregates of one series in one window.
#[derive(Clone, Serialize, Deserialize)]
pub struct MetricAgg {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub first: Point,
    pub last: Point,
    /// The samples' quantile state. An hour or day window's holds only the samples not held by
    /// a pending minute window of the same series (see `pending`).
    quantiles: Quantiles,
    /// Minute windows: their samples are not yet in their hour and day windows' quantile state;
    /// they move there in one merge when the minute freezes, so a sample costs one sketch add,
    /// not three. False for hour and day windows, frozen minutes, and the minutes of
    /// checkpoints written before this (whose hours and days took every sample directly).
    #[serde(default)]
    pub(crate) pending: bool,
}

impl std::fmt::Debug for MetricAgg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricAgg")
            .field("count", &self.count)
            .field("sum", &self.sum)
            .field("min", &self.min)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl MetricAgg {
    /// A window's first sample; `quantile`: whether its quantile state takes it (an hour or
    /// day window does not while the sample waits in a pending minute).
    pub(crate) fn new(p: Point, quantile: bool) -> Self {
        Self {
            count: 1,
            sum: p.value,
            min: p.value,
            max: p.value,
            first: p,
            last: p,
            quantiles: Quantiles::Exact(if quantile { vec![p.value] } else { vec![] }),
            pending: false,
        }
    }

    /// A minute window's first sample, pending for its hour and day.
    pub(crate) fn pending_minute(p: Point) -> Self {
        Self {
            pending: true,
            ..Self::new(p, true)
        }
    }

    /// Adds a sample; `quantile` as in [`Self::new`].
    pub(crate) fn add(&mut self, p: Point, quantile: bool) {
        self.count += 1;
        self.sum += p.value;
        self.min = self.min.min(p.value);
        self.max = self.max.max(p.value);
        if p.before(&self.first) {
            self.first = p;
        }
        if self.last.before(&p) {
            self.last = p;
        }
        if quantile {
            self.quantiles.add(p.value);
        }
    }

    /// Takes the quantile samples of `minute`, one of this window's pending minutes.
    pub(crate) fn absorb(&mut self, minute: &MetricAgg) {
        self.quantiles.merge(&minute.quantiles);
    }

    pub(crate) fn is_frozen(&self) -> bool {
        matches!(self.quantiles, Quantiles::Frozen(_))
    }

    /// Mean of the window's samples.
    pub fn avg(&self) -> f64 {
        self.sum / self.count as f64
    }

    /// Quantile `q` in `[0, 1]`: exact up to [`EXACT_SAMPLES`] samples, then from the sketch
    /// (see [`SKETCH_ALPHA`]); a closed window answers only the [`QUANTILES`].
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.quantiles.quantile(q)
    }

    /// Keeps only what a closed window answers (samples or sketch → its [`QUANTILES`]). A
    /// pending minute answers what it held, for its hour and day (see [`Self::pending`]).
    pub(crate) fn freeze(&mut self) -> Option<MetricAgg> {
        let held = self.quantiles.freeze()?;
        std::mem::take(&mut self.pending).then(|| MetricAgg {
            quantiles: held,
            pending: false,
            ..self.clone()
        })
    }

    /// The [`QUANTILES`] (p50, p90, p95, p99) of the window (NaN where it has none).
    pub fn quantiles(&self) -> [f64; 4] {
        QUANTILES.map(|q| self.quantile(q).unwrap_or(f64::NAN))
    }

    /// A closed window from its persisted parts (see [`crate::persist`]).
    pub fn closed(
        count: u64,
        sum: f64,
        min: f64,
        max: f64,
        first: Point,
        last: Point,
        quantiles: [f64; 4],
    ) -> Self {
        Self {
            count,
            sum,
            min,
            max,
            first,
            last,
            quantiles: Quantiles::Frozen(quantiles),
            pending: false,
        }
    }
}

/// Distinct users of a window: the estimator while open, its estimate once closed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Users {
    Frozen(u64),
    Sketch(CardinalityEstimator<str>),
}

/// Event count and distinct users of one dimension value in one window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CountAgg {
    pub count: u64,
    pub(crate) users: Users,
}

impl CountAgg {
    /// Estimated distinct users (events without a user are not counted).
    pub fn distinct_users(&self) -> u64 {
        match &self.users {
            Users::Sketch(u) => u.estimate() as u64,
            Users::Frozen(n) => *n,
        }
    }

    pub(crate) fn freeze(&mut self) {
        self.users = Users::Frozen(self.distinct_users());
    }

    /// A closed window from its persisted parts (see [`crate::persist`]).
    pub fn closed(count: u64, distinct_users: u64) -> Self {
        Self {
            count,
            users: Users::Frozen(distinct_users),
        }
    }
}
