//! Time-series over `metric_samples`: one row per non-empty bucket, computed from raw samples.
//!
//! Aggregates: `count`, `sum`, `min`, `max`, `avg`, `first`, `last` (by time; ties broken by
//! value so the answer is deterministic) and exact percentiles `p50`, `p90`, `p95`, `p99`
//! (`percentile_cont`: linear interpolation between the two nearest ranks; DataFusion truncates
//! the interpolation weight to 1e-6, so a percentile may differ from exact float interpolation
//! by at most 1e-6 × (upper − lower rank value)). Buckets start at
//! multiples of the bucket width since the Unix epoch (UTC).

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, TimestampNanosecondType};
use datafusion::scalar::ScalarValue;

use crate::schema::TZ;
use crate::{Error, Result};

/// One aggregate of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    First,
    Last,
    /// Exact percentile, 1–99.
    P(u8),
}

impl Agg {
    /// Parses `count`, `sum`, `min`, `max`, `avg`, `first`, `last`, `p50`, `p90`, `p95`, `p99`.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "count" => Agg::Count,
            "sum" => Agg::Sum,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "avg" | "mean" => Agg::Avg,
            "first" => Agg::First,
            "last" => Agg::Last,
            "p50" | "median" => Agg::P(50),
            "p90" => Agg::P(90),
            "p95" => Agg::P(95),
            "p99" => Agg::P(99),
            other => {
                return Err(Error::InvalidQuery(format!(
                    "`agg` `{other}`: use count, sum, min, max, avg, first, last, p50, p90, p95 or p99"
                )));
            }
        })
    }

    /// The key of this aggregate in answers.
    pub fn name(self) -> String {
        match self {
            Agg::Count => "count".into(),
            Agg::Sum => "sum".into(),
            Agg::Min => "min".into(),
            Agg::Max => "max".into(),
            Agg::Avg => "avg".into(),
            Agg::First => "first".into(),
            Agg::Last => "last".into(),
            Agg::P(p) => format!("p{p}"),
        }
    }

    /// SQL of this aggregate (only fixed text and numbers we produced).
    fn sql(self) -> String {
        let expr = match self {
            Agg::Count => "count(value)".to_string(),
            Agg::Sum => "sum(value)".into(),
            Agg::Min => "min(value)".into(),
            Agg::Max => "max(value)".into(),
            Agg::Avg => "avg(value)".into(),
            Agg::First => "first_value(value ORDER BY time ASC, value ASC)".into(),
            Agg::Last => "last_value(value ORDER BY time ASC, value ASC)".into(),
            Agg::P(p) => format!(
                "percentile_cont({}) WITHIN GROUP (ORDER BY value)",
                f64::from(p) / 100.0
            ),
        };
        format!("{expr} AS \"{}\"", self.name())
    }
}

/// A time-series question.
#[derive(Debug, Clone)]
pub struct TimeseriesQuery {
    pub metric: String,
    pub device_id: Option<String>,
    pub from: i64,
    pub to: i64,
    pub bucket_secs: u64,
    pub aggs: Vec<Agg>,
    pub group_by_device: bool,
}

impl TimeseriesQuery {
    /// The SQL and its parameters.
    pub(crate) fn sql(&self) -> (String, Vec<ScalarValue>) {
        let ts = |ns| ScalarValue::TimestampNanosecond(Some(ns), Some(TZ.into()));
        let mut params = vec![
            ScalarValue::Utf8(Some(self.metric.clone())),
            ts(self.from),
            ts(self.to),
        ];
        let mut filter = "metric = $1 AND time >= $2 AND time < $3".to_string();
        if let Some(d) = &self.device_id {
            params.push(ScalarValue::Utf8(Some(d.clone())));
            filter.push_str(" AND device_id = $4");
        }
        let aggs: Vec<String> = self.aggs.iter().map(|a| a.sql()).collect();
        let (key, order) = if self.group_by_device {
            (", device_id", "device_id, bucket")
        } else {
            ("", "bucket")
        };
        let sql = format!(
            "SELECT date_bin(INTERVAL '{} seconds', time) AS bucket{key}, {} FROM metric_samples WHERE {filter} \
             GROUP BY bucket{key} ORDER BY {order}",
            self.bucket_secs,
            aggs.join(", ")
        );
        (sql, params)
    }

    /// Turns result batches into buckets per series.
    pub(crate) fn rows(&self, batches: &[RecordBatch]) -> Result<Timeseries> {
        let mut out = Timeseries {
            aggs: self.aggs.clone(),
            grouped: self.group_by_device,
            series: Vec::new(),
        };
        for b in batches {
            let bucket = arrow::compute::cast(
                b.column(0),
                &DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, Some(TZ.into())),
            )
            .map_err(Error::Arrow)?;
            let bucket = bucket.as_primitive::<TimestampNanosecondType>();
            let devices = if self.group_by_device {
                Some(arrow::compute::cast(b.column(1), &DataType::Utf8).map_err(Error::Arrow)?)
            } else {
                None
            };
            let first_agg = if self.group_by_device { 2 } else { 1 };
            let values = (0..self.aggs.len())
                .map(|i| {
                    arrow::compute::cast(b.column(first_agg + i), &DataType::Float64)
                        .map_err(Error::Arrow)
                })
                .collect::<Result<Vec<_>>>()?;
            for r in 0..b.num_rows() {
                let values = values
                    .iter()
                    .map(|c| (!c.is_null(r)).then(|| c.as_primitive::<Float64Type>().value(r)))
                    .collect();
                let device = devices
                    .as_ref()
                    .map(|d| d.as_string::<i32>())
                    .and_then(|d| (!d.is_null(r)).then(|| d.value(r).to_string()));
                out.push(
                    device,
                    Bucket {
                        time: bucket.value(r),
                        values,
                    },
                );
            }
        }
        Ok(out)
    }
}

/// One bucket of a time series: its start and one value per asked aggregate (same order as
/// [`Timeseries::aggs`]; `None` when the aggregate has no value, e.g. a NaN sum).
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub time: i64,
    pub values: Vec<Option<f64>>,
}

/// The buckets of one series (one device, or all devices together: `device_id` `None`).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesBuckets {
    pub device_id: Option<String>,
    pub buckets: Vec<Bucket>,
}

/// A time-series answer: buckets per series, values in the order of `aggs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeseries {
    pub aggs: Vec<Agg>,
    pub grouped: bool,
    pub series: Vec<SeriesBuckets>,
}

impl Timeseries {
    /// Appends a bucket to the series of `device_id` (rows arrive grouped by series).
    pub fn push(&mut self, device_id: Option<String>, bucket: Bucket) {
        match self.series.last_mut() {
            Some(s) if s.device_id == device_id => s.buckets.push(bucket),
            _ => self.series.push(SeriesBuckets {
                device_id,
                buckets: vec![bucket],
            }),
        }
    }
}
