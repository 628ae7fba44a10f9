//! Typed reads of the rollups: plain rows copied out of the processor's state under its read
//! lock (no caller code runs there), in memory or read back from the rollup files.

use std::collections::BTreeSet;

use crate::Result;
use crate::processor::Processor;
use crate::rollup::{Devices, Dimension, MetricAgg, Resolution, Series, TenantRollups};

/// Windows of one resolution starting in `[from, to)` (`from` is rounded down to its window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowRange {
    pub resolution: Resolution,
    pub from: i64,
    pub to: i64,
}

impl WindowRange {
    pub fn new(resolution: Resolution, from: i64, to: i64) -> Self {
        Self {
            resolution,
            from: resolution.window_start(from),
            to,
        }
    }

    fn tuple(self) -> (Resolution, i64, i64) {
        (self.resolution, self.from, self.to)
    }
}

/// Aggregates of one series in one window. `count`, `sum`, `min`, `max`, `avg`, `first`,
/// `last` are exact; percentiles are exact up to 64 samples, then within the sketch's 1%.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowStats {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    pub first: f64,
    /// Event time of `first` (ns).
    pub first_time: i64,
    pub last: f64,
    /// Event time of `last` (ns).
    pub last_time: i64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

impl From<&MetricAgg> for WindowStats {
    fn from(a: &MetricAgg) -> Self {
        Self {
            count: a.count,
            sum: a.sum,
            min: a.min,
            max: a.max,
            avg: a.avg(),
            first: a.first.value,
            first_time: a.first.time,
            last: a.last.value,
            last_time: a.last.time,
            p50: a.quantile(0.5),
            p90: a.quantile(0.9),
            p95: a.quantile(0.95),
            p99: a.quantile(0.99),
        }
    }
}

/// One metric window of one device (`device_id` `None`: events without a device, or — in
/// [`Processor::series_windows`] with [`Devices::Together`] — all devices together).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricWindow {
    pub metric: String,
    pub device_id: Option<String>,
    pub start: i64,
    pub stats: WindowStats,
    /// Closed by the watermark: no event can change it any more.
    pub closed: bool,
    /// Holds every event of its range (none arrived after it closed).
    pub complete: bool,
}

/// One count window of one value of a dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct CountWindow {
    pub value: String,
    pub start: i64,
    pub count: u64,
    /// HyperLogLog++ estimate.
    pub distinct_users: u64,
    pub closed: bool,
    pub complete: bool,
}

/// Windows read, with what a caller needs to judge them.
#[derive(Debug, Clone, PartialEq)]
pub struct Windows<T> {
    /// Event time up to which windows are closed.
    pub watermark: Option<i64>,
    /// Ordered by series (metric, device / value), then window start.
    pub windows: Vec<T>,
    /// Starts of the windows in range that missed late events.
    pub incomplete: BTreeSet<i64>,
    /// Metric windows: the metrics read (the one asked for, or every metric held, including
    /// those without a window in range). Empty for count windows.
    pub metrics: Vec<String>,
}

/// Which metric windows: one metric or every metric, one device or each.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricWindowsQuery {
    pub range: WindowRange,
    pub metric: Option<String>,
    pub device_id: Option<String>,
    /// At most this many windows.
    pub limit: usize,
}

/// Which count windows: one dimension, one value or each.
#[derive(Debug, Clone, PartialEq)]
pub struct CountWindowsQuery {
    pub range: WindowRange,
    pub dimension: Dimension,
    pub value: Option<String>,
    pub limit: usize,
}

/// The windows of one metric series for a time series answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesWindowsQuery {
    pub range: WindowRange,
    pub metric: String,
    pub devices: Devices,
    pub limit: usize,
}

fn device_of(d: &str) -> Option<String> {
    (!d.is_empty()).then(|| d.to_string())
}

impl Processor {
    /// Metric windows of `tenant`, ordered by metric, device, start.
    pub async fn metric_windows(
        &self,
        tenant: &str,
        q: MetricWindowsQuery,
    ) -> Result<Windows<MetricWindow>> {
        let WindowRange {
            resolution: r,
            from,
            to,
        } = q.range;
        let lateness = self.config().lateness_ns();
        // Without a metric, the names come from the all-devices series: read it too.
        let series = Series::Metrics {
            metric: q.metric.clone(),
            devices: match (&q.device_id, &q.metric) {
                (Some(d), _) => Devices::One(d.clone()),
                (None, Some(_)) => Devices::Each,
                (None, None) => Devices::Any,
            },
        };
        self.read_range(tenant, q.range.tuple(), series, |t: &TenantRollups| {
            let incomplete: BTreeSet<i64> = t.incomplete_windows(r, from, to).collect();
            let names: Vec<&str> = match &q.metric {
                Some(m) => vec![m.as_str()],
                None => t.metric_names(q.device_id.as_deref()),
            };
            let windows = names
                .iter()
                .flat_map(|metric| {
                    t.metric_windows(r, metric, q.device_id.as_deref(), from, to)
                        .map(move |(device, start, a)| (*metric, device, start, a))
                })
                .take(q.limit)
                .map(|(metric, device, start, a)| MetricWindow {
                    metric: metric.to_string(),
                    device_id: device_of(device),
                    start,
                    stats: a.as_ref().into(),
                    closed: t.closed(r, start, lateness),
                    complete: !incomplete.contains(&start),
                })
                .collect();
            Windows {
                watermark: t.watermark(lateness),
                windows,
                incomplete,
                metrics: names.into_iter().map(str::to_string).collect(),
            }
        })
        .await
    }

    /// Count windows of `tenant`, ordered by value, start.
    pub async fn count_windows(
        &self,
        tenant: &str,
        q: CountWindowsQuery,
    ) -> Result<Windows<CountWindow>> {
        let WindowRange {
            resolution: r,
            from,
            to,
        } = q.range;
        let lateness = self.config().lateness_ns();
        let series = Series::Dimension(q.dimension);
        self.read_range(tenant, q.range.tuple(), series, |t: &TenantRollups| {
            let incomplete: BTreeSet<i64> = t.incomplete_windows(r, from, to).collect();
            let windows = t
                .count_windows(r, q.dimension, q.value.as_deref(), from, to)
                .take(q.limit)
                .map(|(v, start, a)| CountWindow {
                    value: v.to_string(),
                    start,
                    count: a.count,
                    distinct_users: a.distinct_users(),
                    closed: t.closed(r, start, lateness),
                    complete: !incomplete.contains(&start),
                })
                .collect();
            Windows {
                watermark: t.watermark(lateness),
                windows,
                incomplete,
                metrics: Vec::new(),
            }
        })
        .await
    }

    /// The windows of one metric series, one per window start (all devices together have a
    /// series of their own) — or `None` when a window of the range is not complete (it missed
    /// a late event, or left memory), so the caller reads raw data instead.
    pub async fn series_windows(
        &self,
        tenant: &str,
        q: SeriesWindowsQuery,
    ) -> Result<Option<Vec<MetricWindow>>> {
        let WindowRange {
            resolution: r,
            from,
            to,
        } = q.range;
        let lateness = self.config().lateness_ns();
        let series = Series::metric(&q.metric, q.devices.clone());
        self.read_range(tenant, q.range.tuple(), series, |t: &TenantRollups| {
            if !t.complete(r, from, to) {
                return None;
            }
            let window = |device: &str, start: i64, a: &MetricAgg| MetricWindow {
                metric: q.metric.clone(),
                device_id: device_of(device),
                start,
                stats: a.into(),
                closed: t.closed(r, start, lateness),
                complete: true,
            };
            Some(match &q.devices {
                Devices::Together | Devices::Any => t
                    .all_devices_windows(r, &q.metric, from, to)
                    .take(q.limit)
                    .map(|(start, a)| window("", start, &a))
                    .collect(),
                Devices::One(d) => t
                    .metric_windows(r, &q.metric, Some(d), from, to)
                    .take(q.limit)
                    .map(|(d, start, a)| window(d, start, &a))
                    .collect(),
                Devices::Each => t
                    .metric_windows(r, &q.metric, None, from, to)
                    .take(q.limit)
                    .map(|(d, start, a)| window(d, start, &a))
                    .collect(),
            })
        })
        .await
    }
}
