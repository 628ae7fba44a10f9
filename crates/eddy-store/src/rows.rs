//! Typed rows the [`crate::Store`] answers with, and their decoding from `events` batches.
//! Times are ns since the epoch; serialising writes them as RFC 3339 text, with the data
//! model's field names, so a front end can encode a row without touching its fields.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, MapArray, RecordBatch, StringViewArray};
use arrow::datatypes::{DataType, Float64Type, TimestampNanosecondType, UInt64Type};
use eddy_model::time::rfc3339;
use serde::Serialize;
use serde_json::Value;

use crate::query::Cursor;
use crate::timeseries::Agg;
use crate::{Error, Result};

/// One stored event. Fields in alphabetical order, as the JSON answers have always listed them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub event_id: String,
    pub metrics: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_url: Option<String>,
    /// Property values as the event carried them (strings, numbers, booleans, lists, objects).
    pub properties: BTreeMap<String, Value>,
    #[serde(serialize_with = "rfc3339")]
    pub received_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    pub time: i64,
    #[serde(rename = "type")]
    pub r#type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The event's log offset (its position among events of the same time).
    #[serde(skip)]
    pub offset: u64,
}

impl StoredEvent {
    /// Where a listing that ended with this event goes on.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            time: self.time,
            offset: self.offset,
        }
    }
}

/// One sample of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MetricPoint {
    #[serde(serialize_with = "rfc3339")]
    pub time: i64,
    pub value: f64,
}

/// A metric of a device: its newest sample and the newest samples asked for, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricSamples {
    pub latest: MetricPoint,
    pub points: Vec<MetricPoint>,
}

/// The recent samples of every metric of one device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceMetrics {
    pub device_id: String,
    pub metrics: BTreeMap<String, MetricSamples>,
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

/// A time-series answer. Serialises as `{"data": [{"time", "<agg>": …}]}`, or, grouped by
/// device, `{"series": [{"device_id", "data": […]}]}`; `count` is written as an integer.
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

impl Serialize for Timeseries {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        #[derive(Serialize)]
        struct One<'a> {
            device_id: &'a Option<String>,
            data: BucketList<'a>,
        }
        let mut m = s.serialize_map(Some(1))?;
        if self.grouped {
            let series: Vec<One<'_>> = self
                .series
                .iter()
                .map(|x| One {
                    device_id: &x.device_id,
                    data: BucketList(&self.aggs, &x.buckets),
                })
                .collect();
            m.serialize_entry("series", &series)?;
        } else {
            let all: Vec<NamedBucket<'_>> = self
                .series
                .iter()
                .flat_map(|x| x.buckets.iter().map(|b| NamedBucket(&self.aggs, b)))
                .collect();
            m.serialize_entry("data", &all)?;
        }
        m.end()
    }
}

pub(crate) fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Arc<dyn Array>> {
    batch
        .column_by_name(name)
        .ok_or_else(|| Error::Task(format!("result has no column `{name}`")))
}

/// A string column as a `StringViewArray`, the type sessions read strings as (other string
/// types are cast: views of the same bytes, nothing copied but the short values).
pub(crate) fn strings(batch: &RecordBatch, name: &str) -> Result<StringViewArray> {
    let c = column(batch, name)?;
    let c = if c.data_type() == &DataType::Utf8View {
        c.clone()
    } else {
        arrow::compute::cast(c, &DataType::Utf8View).map_err(Error::Arrow)?
    };
    Ok(c.as_string_view().clone())
}

/// A `metrics` map cell.
fn metric_map(map: &MapArray, row: usize) -> BTreeMap<String, f64> {
    if map.is_null(row) {
        return BTreeMap::new();
    }
    let entries = map.value(row);
    let keys = entries.column(0).as_string::<i32>();
    let values = entries.column(1).as_primitive::<Float64Type>();
    (0..entries.len())
        .map(|i| (keys.value(i).to_string(), values.value(i)))
        .collect()
}

/// A `properties` map cell (values are stored as JSON text, see `schema::encode_property`).
fn property_map(map: &MapArray, row: usize) -> BTreeMap<String, Value> {
    if map.is_null(row) {
        return BTreeMap::new();
    }
    let entries = map.value(row);
    let keys = entries.column(0).as_string::<i32>();
    let values = entries.column(1).as_string::<i32>();
    (0..entries.len())
        .map(|i| {
            let v = serde_json::from_str(values.value(i)).unwrap_or(Value::Null);
            (keys.value(i).to_string(), v)
        })
        .collect()
}

/// Decodes rows of the `events` schema (with its `offset` column).
pub fn events_of(batches: &[RecordBatch]) -> Result<Vec<StoredEvent>> {
    let mut out = Vec::new();
    for b in batches {
        let time = column(b, "time")?.as_primitive::<TimestampNanosecondType>();
        let received = column(b, "received_at")?.as_primitive::<TimestampNanosecondType>();
        let offset = column(b, "offset")?.as_primitive::<UInt64Type>();
        let (id, ty, source, device, user, page) = (
            strings(b, "event_id")?,
            strings(b, "type")?,
            strings(b, "source")?,
            strings(b, "device_id")?,
            strings(b, "user_id")?,
            strings(b, "page_url")?,
        );
        let (id, ty, source, device, user, page) = (&id, &ty, &source, &device, &user, &page);
        let metrics = column(b, "metrics")?.as_map();
        let props = column(b, "properties")?.as_map();
        let opt = |c: &StringViewArray, r: usize| (!c.is_null(r)).then(|| c.value(r).to_string());
        for r in 0..b.num_rows() {
            out.push(StoredEvent {
                device_id: opt(device, r),
                event_id: id.value(r).to_string(),
                metrics: metric_map(metrics, r),
                page_url: opt(page, r),
                properties: property_map(props, r),
                received_at: received.value(r),
                source: opt(source, r),
                time: time.value(r),
                r#type: ty.value(r).to_string(),
                user_id: opt(user, r),
                offset: offset.value(r),
            });
        }
    }
    Ok(out)
}
