//! Closed windows as rows: what a checkpoint takes for the rollup files and what is read back
//! from them. Plain data: must not touch rollup state or files.

use crate::rollup::agg::{CountAgg, MetricAgg};
use crate::rollup::window::{Dimension, Resolution};

/// A closed metric window as persisted: which series and window, and its frozen aggregate.
#[derive(Debug, Clone)]
pub struct MetricRow {
    pub resolution: Resolution,
    pub start: i64,
    /// `None`: the series of all devices together; `Some("")`: events without a device.
    pub device: Option<String>,
    pub metric: String,
    pub agg: MetricAgg,
}

/// A closed count window as persisted.
#[derive(Debug, Clone)]
pub struct CountRow {
    pub resolution: Resolution,
    pub start: i64,
    pub dimension: Dimension,
    pub value: String,
    pub agg: CountAgg,
}

/// Closed windows taken for persistence (or read back from it).
#[derive(Debug, Clone, Default)]
pub struct Closed {
    pub metrics: Vec<MetricRow>,
    pub counts: Vec<CountRow>,
}

impl Closed {
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty() && self.counts.is_empty()
    }
}
