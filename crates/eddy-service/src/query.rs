//! Reads of stored data and rollups: event lists, devices, a device's recent samples, time
//! series (answered from rollups when that gives the raw answer, decided here) and rollup
//! windows (with windows that missed late events re-aggregated from raw data).
//!
//! Works through two seams: the store (`eddy_store::Store`) and [`RollupReader`]; it must not
//! know which implementations they are.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use eddy_model::time::rfc3339;
use serde::Serialize;

use crate::auth::{Principal, Scope};
use crate::ops::PipelineStatus;
use crate::{Error, Result};

pub use eddy_store::Store;
pub use eddy_store::query::{
    Cursor, DevicePage, DeviceSummary, DimensionCount, DimensionQuery, EventFilter, EventPage,
};
pub use eddy_store::rows::{DeviceMetrics, MetricPoint, MetricSamples, StoredEvent};
pub use eddy_store::timeseries::{Agg, Bucket, SeriesBuckets, Timeseries, TimeseriesQuery};
pub use eddy_stream::reads::{
    CountWindow, CountWindowsQuery, MetricWindow, MetricWindowsQuery, SeriesWindowsQuery,
    WindowRange, WindowStats, Windows,
};
pub use eddy_stream::{Devices, Dimension, Resolution};

/// The rollups, read as plain rows (the stream processor in one process; another role's
/// rollup store later).
#[async_trait]
pub trait RollupReader: Send + Sync + std::fmt::Debug {
    /// Metric windows, ordered by metric, device, start.
    async fn metric_windows(
        &self,
        tenant: &str,
        q: MetricWindowsQuery,
    ) -> Result<Windows<MetricWindow>>;
    /// Count windows of a dimension, ordered by value, start.
    async fn count_windows(
        &self,
        tenant: &str,
        q: CountWindowsQuery,
    ) -> Result<Windows<CountWindow>>;
    /// One metric series' windows, or `None` when one of the range is not complete.
    async fn series_windows(
        &self,
        tenant: &str,
        q: SeriesWindowsQuery,
    ) -> Result<Option<Vec<MetricWindow>>>;
    /// The tenant's windows as the SQL tables `rollups` (metric windows) and `rollup_counts`.
    fn sql_tables(&self, tenant: &str) -> Result<Vec<eddy_store::ExtraTable>>;
}

/// Where a time series may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceChoice {
    /// Rollups when they give the raw answer, else raw data.
    #[default]
    Auto,
    /// Raw data only.
    Raw,
}

/// Where a time series answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Rollups,
    Raw,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Rollups => "rollups",
            Source::Raw => "raw",
        }
    }
}

/// A time series and where it came from. Serialises as `{"data": [{"time", "<agg>": …}]}`,
/// or, grouped by device, `{"series": [{"device_id", "data": […]}]}`; `count` is written as an
/// integer, a value without a number (NaN) as `null`. `source` is not part of it (front ends
/// say it beside the answer).
#[derive(Debug, Clone, PartialEq)]
pub struct TimeseriesAnswer {
    pub series: Timeseries,
    pub source: Source,
}

/// A bucket with the aggregates' names, for serialising.
struct NamedBucket<'a>(&'a [Agg], &'a Bucket);

impl Serialize for NamedBucket<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len() + 1))?;
        m.serialize_entry("time", &eddy_model::time::format_rfc3339(self.1.time))?;
        for (agg, v) in self.0.iter().zip(&self.1.values) {
            match (agg, v) {
                // Counts are whole numbers (f64 holds them exactly up to 2^53).
                (Agg::Count, Some(n)) => m.serialize_entry(&agg.name(), &(*n as u64))?,
                (_, Some(x)) if x.is_finite() => m.serialize_entry(&agg.name(), x)?,
                _ => m.serialize_entry(&agg.name(), &None::<f64>)?,
            }
        }
        m.end()
    }
}

struct BucketList<'a>(&'a [Agg], &'a [Bucket]);

impl Serialize for BucketList<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.1.iter().map(|b| NamedBucket(self.0, b)))
    }
}

impl Serialize for TimeseriesAnswer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        #[derive(Serialize)]
        struct One<'a> {
            device_id: &'a Option<String>,
            data: BucketList<'a>,
        }
        let t = &self.series;
        let mut m = s.serialize_map(Some(1))?;
        if t.grouped {
            let series: Vec<One<'_>> = t
                .series
                .iter()
                .map(|x| One {
                    device_id: &x.device_id,
                    data: BucketList(&t.aggs, &x.buckets),
                })
                .collect();
            m.serialize_entry("series", &series)?;
        } else {
            let all: Vec<NamedBucket<'_>> = t
                .series
                .iter()
                .flat_map(|x| x.buckets.iter().map(|b| NamedBucket(&t.aggs, b)))
                .collect();
            m.serialize_entry("data", &all)?;
        }
        m.end()
    }
}

/// A sensor reading in the shape sensor clients post it (`GET /api/data/recent`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reading {
    pub id: String,
    #[serde(rename = "sensorId")]
    pub sensor_id_camel: Option<String>,
    pub sensor_id: Option<String>,
    /// The metric named `value`, else the event's only metric; `None` with several metrics and
    /// none named `value` (it would be a guess: `metrics` carries them all).
    pub value: Option<f64>,
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub timestamp: i64,
    pub metrics: BTreeMap<String, f64>,
}

impl From<StoredEvent> for Reading {
    fn from(e: StoredEvent) -> Self {
        let value = e.metrics.get("value").copied().or_else(|| {
            (e.metrics.len() == 1)
                .then(|| e.metrics.values().next().copied())
                .flatten()
        });
        Self {
            id: e.event_id,
            sensor_id_camel: e.device_id.clone(),
            sensor_id: e.device_id,
            value,
            timestamp: e.time,
            metrics: e.metrics,
        }
    }
}

/// Which rollup windows.
#[derive(Debug, Clone, PartialEq)]
pub enum RollupTarget {
    /// One metric or every metric (of one device, or of each).
    Metric {
        metric: Option<String>,
        device_id: Option<String>,
    },
    /// One dimension (one value, or each).
    Dimension {
        dimension: Dimension,
        value: Option<String>,
    },
}

/// A rollups question: windows of `resolution` starting in `[from, to)`.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupsQuery {
    pub resolution: Resolution,
    pub from: i64,
    pub to: i64,
    pub target: RollupTarget,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One metric window of a rollups answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricRollup {
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub time: i64,
    pub device_id: Option<String>,
    pub metric: String,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    pub first: f64,
    pub last: f64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    /// Closed by the watermark.
    #[serde(rename = "final")]
    pub closed: bool,
    pub complete: bool,
    /// Re-aggregated from raw data (the window missed late events).
    #[serde(skip_serializing_if = "is_false")]
    pub corrected: bool,
}

/// One count window of a rollups answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CountRollup {
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub time: i64,
    pub dimension: &'static str,
    pub value: String,
    pub count: u64,
    pub distinct_users: u64,
    #[serde(rename = "final")]
    pub closed: bool,
    pub complete: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub corrected: bool,
}

/// Rollup rows: metric windows or count windows.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum RollupRows {
    Metrics(Vec<MetricRollup>),
    Counts(Vec<CountRollup>),
}

/// A rollups answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RollupsAnswer {
    pub resolution: &'static str,
    #[serde(serialize_with = "opt_rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub watermark: Option<i64>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<RollupRow>))]
    pub data: RollupRows,
}

/// One window of a rollups answer, for the schema: a metric window or a count window (an
/// answer holds one kind; an empty list is either).
#[cfg(feature = "openapi")]
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // a schema only
enum RollupRow {
    Metric(MetricRollup),
    Count(CountRollup),
}

fn opt_rfc3339<S: serde::Serializer>(
    t: &Option<i64>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

/// The read side of stored data and rollups.
#[derive(Debug)]
pub struct QueryService {
    store: Arc<dyn Store>,
    rollups: Arc<dyn RollupReader>,
    pipeline: Arc<dyn PipelineStatus>,
    max_rows: usize,
}

impl QueryService {
    /// `max_rows`: the most rows (or buckets) one answer may hold.
    pub fn new(
        store: Arc<dyn Store>,
        rollups: Arc<dyn RollupReader>,
        pipeline: Arc<dyn PipelineStatus>,
        max_rows: usize,
    ) -> Self {
        Self {
            store,
            rollups,
            pipeline,
            max_rows,
        }
    }

    /// The most rows one answer may hold (also the largest page size).
    pub fn max_rows(&self) -> usize {
        self.max_rows
    }

    fn too_large(&self, what: &str) -> Error {
        Error::invalid(
            "result_too_large",
            format!("more than {} {what}", self.max_rows),
        )
    }

    /// Events matching `f`, ordered by (time, offset); without `from` / `to` all time. A
    /// range must not be empty (`from` before `to`), as on every other route.
    pub async fn events(&self, p: &Principal, f: EventFilter) -> Result<EventPage> {
        let p = p.require(Scope::Read)?;
        crate::range::TimeRange {
            from: f.from,
            to: f.to,
            now: None,
        }
        .resolve_all_time()?;
        Ok(self.store.events(&p.tenant_id, f).await?)
    }

    /// The newest readings (events of type `reading` unless `f` names a type).
    pub async fn recent_readings(&self, p: &Principal, mut f: EventFilter) -> Result<Vec<Reading>> {
        f.r#type.get_or_insert_with(|| "reading".to_string());
        f.newest_first = true;
        let page = self.events(p, f).await?;
        Ok(page.events.into_iter().map(Reading::from).collect())
    }

    /// Devices with an id after `after`, at most `limit`, ordered by id.
    pub async fn devices(
        &self,
        p: &Principal,
        after: Option<String>,
        limit: usize,
    ) -> Result<DevicePage> {
        let p = p.require(Scope::Read)?;
        Ok(self.store.devices(&p.tenant_id, after, limit).await?)
    }

    /// The newest `points` samples of each metric of `device`.
    pub async fn device_metrics(
        &self,
        p: &Principal,
        device: &str,
        points: usize,
    ) -> Result<DeviceMetrics> {
        let p = p.require(Scope::Read)?;
        self.store
            .device_metrics(&p.tenant_id, device, points)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no metrics for device `{device}`")))
    }

    /// Buckets of one metric: from rollups when they give the raw answer (see
    /// [`Self::timeseries_from_rollups`]) unless `source` says raw, else from raw samples.
    pub async fn timeseries(
        &self,
        p: &Principal,
        mut q: TimeseriesQuery,
        source: SourceChoice,
    ) -> Result<TimeseriesAnswer> {
        let p = p.require(Scope::Read)?;
        // An aggregate asked twice (`avg,mean`) is answered once, under its name.
        let mut seen = Vec::with_capacity(q.aggs.len());
        q.aggs.retain(|a| {
            let new = !seen.contains(a);
            seen.push(*a);
            new
        });
        if q.metric.is_empty() {
            return Err(Error::invalid("invalid_parameter", "`metric` is required"));
        }
        if q.from >= q.to {
            return Err(Error::invalid(
                "invalid_parameter",
                "`from` must be before `to`",
            ));
        }
        // The same limit on both paths: the number of buckets the range can hold.
        if (q.to.saturating_sub(q.from) as u128) / (u128::from(q.bucket_secs) * 1_000_000_000)
            > self.max_rows as u128
        {
            return Err(Error::invalid(
                "result_too_large",
                format!(
                    "the range holds more than {} buckets; narrow it or widen the bucket",
                    self.max_rows
                ),
            ));
        }
        let fast = match source {
            SourceChoice::Raw => None,
            SourceChoice::Auto => self.timeseries_from_rollups(&p.tenant_id, &q).await?,
        };
        let answer = match fast {
            Some(series) => TimeseriesAnswer {
                series,
                source: Source::Rollups,
            },
            None => TimeseriesAnswer {
                series: self.store.timeseries(&p.tenant_id, q).await?,
                source: Source::Raw,
            },
        };
        metrics::counter!("eddy_timeseries_queries_total", "source" => answer.source.name())
            .increment(1);
        Ok(answer)
    }

    /// The time-series fast path: answers `q` from rollups when that gives the raw path's
    /// answer — `None` sends it to raw data. Conditions: the bucket is a rollup resolution (1m,
    /// 1h, 1d); the rollups have applied at least what the store shows; no window in the range
    /// missed a late event or left memory; and the windows cut by `from` / `to` hold no sample
    /// outside the range (checked per series with the window's first and last sample times).
    /// Every bucket is one rollup window (all devices together have their own series), so
    /// exact aggregates equal the raw path's (sums up to float addition order) and percentiles
    /// are exact up to 64 samples per bucket, else within the sketch's 1%.
    async fn timeseries_from_rollups(
        &self,
        tenant: &str,
        q: &TimeseriesQuery,
    ) -> Result<Option<Timeseries>> {
        let Some(r) = Resolution::ALL
            .into_iter()
            .find(|r| r.nanos() as u128 == u128::from(q.bucket_secs) * 1_000_000_000)
        else {
            return Ok(None);
        };
        if self.pipeline.stream_applied_offset() < self.pipeline.store_applied_offset() {
            return Ok(None);
        }
        let devices = match (&q.device_id, q.group_by_device) {
            (Some(d), _) => Devices::One(d.clone()),
            (None, true) => Devices::Each,
            (None, false) => Devices::Together,
        };
        let query = SeriesWindowsQuery {
            range: WindowRange::new(r, q.from, q.to),
            metric: q.metric.clone(),
            devices,
            limit: self.max_rows + 1,
        };
        let Some(windows) = self.rollups.series_windows(tenant, query).await? else {
            return Ok(None);
        };
        for w in &windows {
            let cut_at_from = w.start < q.from && w.stats.first_time < q.from;
            let cut_at_to = w.start.saturating_add(r.nanos()) > q.to && w.stats.last_time >= q.to;
            if cut_at_from || cut_at_to {
                return Ok(None);
            }
        }
        // More windows than an answer may hold (per-device series): the raw path decides,
        // with its own row limit, as it does for every range the rollups cannot answer whole.
        if windows.len() > self.max_rows {
            return Ok(None);
        }
        let mut out = Timeseries {
            aggs: q.aggs.clone(),
            grouped: q.group_by_device,
            series: Vec::new(),
        };
        for w in windows {
            let s = &w.stats;
            let values = q
                .aggs
                .iter()
                .map(|agg| match agg {
                    Agg::Count => Some(s.count as f64),
                    Agg::Sum => Some(s.sum),
                    Agg::Min => Some(s.min),
                    Agg::Max => Some(s.max),
                    Agg::Avg => Some(s.avg),
                    Agg::First => Some(s.first),
                    Agg::Last => Some(s.last),
                    Agg::P(p) => quantile(s, *p),
                })
                .collect();
            out.push(
                w.device_id,
                Bucket {
                    time: w.start,
                    values,
                },
            );
        }
        Ok(Some(out))
    }

    /// Rollup windows. A window that missed late events (they arrived after it closed: stored
    /// raw, not applied) is re-aggregated from raw data: metric windows by one raw time series
    /// per metric over the span of such windows (bucket = the resolution, per device), which
    /// replaces their aggregates and adds series whose every event was late; count windows by
    /// recounting raw events the same way. Such rows say `corrected`.
    pub async fn rollups(&self, p: &Principal, q: RollupsQuery) -> Result<RollupsAnswer> {
        let p = p.require(Scope::Read)?;
        if q.from >= q.to {
            return Err(Error::invalid(
                "invalid_parameter",
                "`from` must be before `to`",
            ));
        }
        let range = WindowRange::new(q.resolution, q.from, q.to);
        let (watermark, data) = match q.target {
            RollupTarget::Metric { metric, device_id } => {
                let (watermark, rows) = self
                    .metric_rollups(&p.tenant_id, range, metric, device_id)
                    .await?;
                (watermark, RollupRows::Metrics(rows))
            }
            RollupTarget::Dimension { dimension, value } => {
                let (watermark, rows) = self
                    .count_rollups(&p.tenant_id, range, dimension, value)
                    .await?;
                (watermark, RollupRows::Counts(rows))
            }
        };
        let rows = match &data {
            RollupRows::Metrics(r) => r.len(),
            RollupRows::Counts(r) => r.len(),
        };
        if rows > self.max_rows {
            return Err(
                self.too_large("rollup rows; narrow the range, the resolution or the series")
            );
        }
        Ok(RollupsAnswer {
            resolution: q.resolution.name(),
            watermark,
            data,
        })
    }

    /// Metric windows, those that missed late events re-aggregated from raw samples.
    async fn metric_rollups(
        &self,
        tenant: &str,
        range: WindowRange,
        metric: Option<String>,
        device_id: Option<String>,
    ) -> Result<(Option<i64>, Vec<MetricRollup>)> {
        let query = MetricWindowsQuery {
            range,
            metric,
            device_id: device_id.clone(),
            limit: self.max_rows + 1,
        };
        let w = self.rollups.metric_windows(tenant, query).await?;
        let mut rows: Vec<MetricRollup> = w.windows.into_iter().map(metric_row).collect();
        if let Some((from, to)) = span(&w.incomplete, range.resolution) {
            for m in &w.metrics {
                let q = TimeseriesQuery {
                    metric: m.clone(),
                    device_id: device_id.clone(),
                    from,
                    to,
                    bucket_secs: resolution_secs(range.resolution),
                    aggs: CORRECTION_AGGS.to_vec(),
                    group_by_device: true,
                };
                let raw = self.store.timeseries(tenant, q).await?;
                let fresh = raw.series.into_iter().flat_map(|s| {
                    let device = s.device_id;
                    s.buckets
                        .into_iter()
                        .filter(|b| w.incomplete.contains(&b.time))
                        .map(move |b| corrected_metric_row(m, device.clone(), &b))
                });
                merge_by_key(&mut rows, fresh, |r| {
                    (r.metric.clone(), r.device_id.clone(), r.time)
                });
            }
            rows.sort_by(|a, b| {
                (&a.metric, &a.device_id, a.time).cmp(&(&b.metric, &b.device_id, b.time))
            });
        }
        Ok((w.watermark, rows))
    }

    /// Count windows, those that missed late events recounted from raw events.
    async fn count_rollups(
        &self,
        tenant: &str,
        range: WindowRange,
        dimension: Dimension,
        value: Option<String>,
    ) -> Result<(Option<i64>, Vec<CountRollup>)> {
        let query = CountWindowsQuery {
            range,
            dimension,
            value: value.clone(),
            limit: self.max_rows + 1,
        };
        let w = self.rollups.count_windows(tenant, query).await?;
        let row = |value, time, count, distinct_users, closed, complete, corrected| CountRollup {
            time,
            dimension: dimension.name(),
            value,
            count,
            distinct_users,
            closed,
            complete,
            corrected,
        };
        let mut rows: Vec<CountRollup> = w
            .windows
            .into_iter()
            .map(|c| {
                let (closed, complete) = (c.closed, c.complete);
                row(
                    c.value,
                    c.start,
                    c.count,
                    c.distinct_users,
                    closed,
                    complete,
                    false,
                )
            })
            .collect();
        if let Some((from, to)) = span(&w.incomplete, range.resolution) {
            let q = DimensionQuery {
                dimension: dimension.name().to_string(),
                value,
                from,
                to,
                bucket_secs: resolution_secs(range.resolution),
            };
            let raw = self.store.dimension_counts(tenant, q).await?;
            let fresh = raw
                .into_iter()
                .filter(|c| w.incomplete.contains(&c.bucket))
                .map(|c| {
                    row(
                        c.value,
                        c.bucket,
                        c.count,
                        c.distinct_users,
                        true,
                        true,
                        true,
                    )
                });
            merge_by_key(&mut rows, fresh, |r| (r.value.clone(), r.time));
            rows.sort_by(|a, b| (&a.value, a.time).cmp(&(&b.value, b.time)));
        }
        Ok((w.watermark, rows))
    }
}

/// The range covering the windows `starts` of `r`, `None` when there are none.
fn span(starts: &BTreeSet<i64>, r: Resolution) -> Option<(i64, i64)> {
    Some((*starts.first()?, starts.last()?.saturating_add(r.nanos())))
}

/// Replaces the rows of `rows` that have the key of a `fresh` row with it, and adds the others.
fn merge_by_key<T, K: Eq + std::hash::Hash>(
    rows: &mut Vec<T>,
    fresh: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> K,
) {
    let mut index: HashMap<K, usize> = rows.iter().enumerate().map(|(i, r)| (key(r), i)).collect();
    for row in fresh {
        match index.get(&key(&row)) {
            Some(&i) => rows[i] = row,
            None => {
                index.insert(key(&row), rows.len());
                rows.push(row);
            }
        }
    }
}

/// A metric window re-aggregated from a raw bucket of [`CORRECTION_AGGS`].
fn corrected_metric_row(metric: &str, device_id: Option<String>, b: &Bucket) -> MetricRollup {
    let v = |i: usize| b.values.get(i).copied().flatten();
    let f = |i: usize| v(i).unwrap_or(f64::NAN);
    MetricRollup {
        time: b.time,
        device_id,
        metric: metric.to_string(),
        count: v(0).map_or(0, |n| n as u64),
        sum: f(1),
        min: f(2),
        max: f(3),
        avg: f(4),
        first: f(5),
        last: f(6),
        p50: v(7),
        p90: v(8),
        p95: v(9),
        p99: v(10),
        closed: true,
        complete: true,
        corrected: true,
    }
}

/// The aggregates a corrected metric window gets, in [`MetricRollup`]'s order.
const CORRECTION_AGGS: [Agg; 11] = [
    Agg::Count,
    Agg::Sum,
    Agg::Min,
    Agg::Max,
    Agg::Avg,
    Agg::First,
    Agg::Last,
    Agg::P(50),
    Agg::P(90),
    Agg::P(95),
    Agg::P(99),
];

fn resolution_secs(r: Resolution) -> u64 {
    u64::try_from(r.nanos() / 1_000_000_000).unwrap_or(60)
}

fn quantile(s: &WindowStats, p: u8) -> Option<f64> {
    match p {
        50 => s.p50,
        90 => s.p90,
        95 => s.p95,
        99 => s.p99,
        _ => None,
    }
}

pub(crate) fn metric_row(w: MetricWindow) -> MetricRollup {
    let s = w.stats;
    MetricRollup {
        time: w.start,
        device_id: w.device_id,
        metric: w.metric,
        count: s.count,
        sum: s.sum,
        min: s.min,
        max: s.max,
        avg: s.avg,
        first: s.first,
        last: s.last,
        p50: s.p50,
        p90: s.p90,
        p95: s.p95,
        p99: s.p99,
        closed: w.closed,
        complete: w.complete,
        corrected: false,
    }
}
