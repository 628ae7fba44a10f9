//! Typed rows the [`crate::Store`] answers with, and their decoding from `events` batches.
//! Times are ns since the epoch; serialising writes them as RFC 3339 text, with the data
//! model's field names, so a front end can encode a row without touching its fields.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, MapArray, RecordBatch, StringViewArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampNanosecondType, UInt64Type};
use eddy_model::time::rfc3339;
use serde::Serialize;
use serde_json::Value;

use crate::{Error, Result};

/// A position in a time-ordered listing: the last row's time and log offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub time: i64,
    pub offset: u64,
}

impl Cursor {
    /// Opaque text form for `next_cursor`.
    pub fn encode(self) -> String {
        format!("{}.{}", self.time, self.offset)
    }

    /// Parses [`Cursor::encode`]'s form.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::InvalidQuery(format!("`cursor` `{s}` is not one this server returned"));
        let (t, o) = s.split_once('.').ok_or_else(bad)?;
        Ok(Self {
            time: t.parse().map_err(|_| bad())?,
            offset: o.parse().map_err(|_| bad())?,
        })
    }
}

/// One stored event. Fields in alphabetical order, as the JSON answers have always listed them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub received_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricPoint {
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub time: i64,
    pub value: f64,
}

/// A metric of a device: its newest sample and the newest samples asked for, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricSamples {
    pub latest: MetricPoint,
    pub points: Vec<MetricPoint>,
}

/// The recent samples of every metric of one device.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceMetrics {
    pub device_id: String,
    pub metrics: BTreeMap<String, MetricSamples>,
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

/// An integer column (cast to `Int64`).
pub(crate) fn ints(b: &RecordBatch, name: &str) -> Result<arrow::array::Int64Array> {
    Ok(arrow::compute::cast(column(b, name)?, &DataType::Int64)
        .map_err(Error::Arrow)?
        .as_primitive::<Int64Type>()
        .clone())
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
