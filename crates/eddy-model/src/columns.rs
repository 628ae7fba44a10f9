//! Events in columns: the payload of a batch log record ([`crate::EventBatch`], record format
//! 2). A request's events travel through the log as one Arrow record batch (an Arrow IPC
//! stream: the schema message, one record batch, the end marker), so the store appends them
//! without decoding event by event, and any Arrow reader — in any language, e.g. a consumer of
//! a Kafka topic later — can read them.
//!
//! Columns of format 1 of the batch (in this order; readers look columns up by name and ignore
//! columns they do not know, so a later format may add columns):
//! `time`, `received_at` (timestamp ns UTC), `event_id`, `type`, `source`, `device_id`,
//! `user_id`, `page_url` (utf8), `metrics` (map utf8 → f64), `properties` (map utf8 → utf8
//! holding each value JSON-encoded — `"/home"`, `45`, `true` — so types round-trip exactly),
//! `client_id` (bool: the client gave the id, so it takes part in deduplication). The first ten
//! are the store's `events` columns as they are.
//!
//! An event's position is `record offset << 20 | index in the record` ([`position`]); a
//! record holds at most [`MAX_EVENTS`] events. Positions of events in single-event records
//! (format 1, and every record written before batches) are `record offset << 20` too.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float64Builder, MapArray, MapBuilder, MapFieldNames,
    RecordBatch, StringArray, StringBuilder, TimestampNanosecondArray, TimestampNanosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Fields, Float64Type, Schema, SchemaRef, TimeUnit};

use crate::{Error, Event, PropertyValue, Result, Value};

/// The batch format this build writes (the `format` field of [`crate::EventBatch`]).
pub const FORMAT: u32 = 1;

/// Most events one record holds (a request with more becomes several records).
pub const MAX_EVENTS: usize = 4096;

/// Bits of a position that hold the index within the record.
pub const INDEX_BITS: u32 = 20;

/// Target size of one record's events (estimated before encoding); a request above it becomes
/// several records, well below the log's 16 MiB record limit.
pub const TARGET_BYTES: usize = 4 << 20;

/// The position of the event at `index` of the record at log `offset`: unique, and ordered as
/// the log is.
pub fn position(offset: u64, index: usize) -> u64 {
    (offset << INDEX_BITS) | index as u64
}

/// Time zone of every timestamp column.
pub const TZ: &str = "UTC";

/// Timestamp type of every time column.
pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some(TZ.into()))
}

/// A map column's type: utf8 keys to `value`.
pub fn map_type(value: DataType) -> DataType {
    let entries = Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![
            Field::new("keys", DataType::Utf8, false),
            Field::new("values", value, true),
        ])),
        false,
    );
    DataType::Map(Arc::new(entries), false)
}

/// The fields every events table starts with (the store adds its own after them).
pub fn event_fields() -> Vec<Field> {
    vec![
        Field::new("time", ts_type(), false),
        Field::new("received_at", ts_type(), false),
        Field::new("event_id", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, true),
        Field::new("device_id", DataType::Utf8, true),
        Field::new("user_id", DataType::Utf8, true),
        Field::new("page_url", DataType::Utf8, true),
        Field::new("metrics", map_type(DataType::Float64), true),
        Field::new("properties", map_type(DataType::Utf8), true),
    ]
}

/// Number of [`event_fields`].
pub const EVENT_FIELDS: usize = 10;

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = event_fields();
    fields.push(Field::new("client_id", DataType::Boolean, false));
    Arc::new(Schema::new(fields))
});

/// Schema of a batch record's events ([`FORMAT`] 1).
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// A property value as stored: its JSON encoding.
pub fn encode_property(v: &Option<Value>) -> String {
    match v {
        Some(Value::String(s)) => serde_json::Value::String(s.clone()).to_string(),
        // Whole numbers are written without a fraction, so `3` comes back as `3`, not `3.0`.
        Some(Value::Number(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => format!("{}", *n as i64),
        Some(Value::Number(n)) => {
            serde_json::Number::from_f64(*n).map_or_else(|| "null".into(), |n| n.to_string())
        }
        Some(Value::Bool(b)) => b.to_string(),
        None => "null".into(),
    }
}

/// A stored property value back from its JSON encoding.
pub fn decode_property(text: &str) -> Option<Value> {
    match serde_json::from_str::<serde_json::Value>(text).ok()? {
        serde_json::Value::String(s) => Some(Value::String(s)),
        serde_json::Value::Number(n) => n.as_f64().map(Value::Number),
        serde_json::Value::Bool(b) => Some(Value::Bool(b)),
        _ => None,
    }
}

/// Names of a map column's parts.
pub fn map_field_names() -> MapFieldNames {
    MapFieldNames {
        entry: "entries".into(),
        key: "keys".into(),
        value: "values".into(),
    }
}

/// Accumulates events into a batch of [`schema`].
#[derive(Debug)]
pub struct ColumnsBuilder {
    time: TimestampNanosecondBuilder,
    received_at: TimestampNanosecondBuilder,
    event_id: StringBuilder,
    r#type: StringBuilder,
    source: StringBuilder,
    device_id: StringBuilder,
    user_id: StringBuilder,
    page_url: StringBuilder,
    metrics: MapBuilder<StringBuilder, Float64Builder>,
    properties: MapBuilder<StringBuilder, StringBuilder>,
    client_id: BooleanBuilder,
    rows: usize,
}

impl Default for ColumnsBuilder {
    fn default() -> Self {
        let ts = || TimestampNanosecondBuilder::new().with_timezone(TZ);
        Self {
            time: ts(),
            received_at: ts(),
            event_id: StringBuilder::new(),
            r#type: StringBuilder::new(),
            source: StringBuilder::new(),
            device_id: StringBuilder::new(),
            user_id: StringBuilder::new(),
            page_url: StringBuilder::new(),
            metrics: MapBuilder::new(
                Some(map_field_names()),
                StringBuilder::new(),
                Float64Builder::new(),
            ),
            properties: MapBuilder::new(
                Some(map_field_names()),
                StringBuilder::new(),
                StringBuilder::new(),
            ),
            client_id: BooleanBuilder::new(),
            rows: 0,
        }
    }
}

impl ColumnsBuilder {
    /// Adds one event (its tenant is the record's, not a column).
    pub fn push(&mut self, ev: &Event) -> Result<()> {
        self.time.append_value(ev.time);
        self.received_at.append_value(ev.received_at);
        self.event_id.append_value(&ev.event_id);
        self.r#type.append_value(&ev.r#type);
        self.source.append_option(ev.source.as_deref());
        self.device_id.append_option(ev.device_id.as_deref());
        self.user_id.append_option(ev.user_id.as_deref());
        self.page_url.append_option(ev.page_url.as_deref());
        for (k, v) in &ev.metrics {
            self.metrics.keys().append_value(k);
            self.metrics.values().append_value(*v);
        }
        self.metrics.append(true).map_err(arrow_error)?;
        for (k, v) in &ev.properties {
            self.properties.keys().append_value(k);
            self.properties
                .values()
                .append_value(encode_property(&v.value));
        }
        self.properties.append(true).map_err(arrow_error)?;
        self.client_id.append_value(ev.client_id);
        self.rows += 1;
        Ok(())
    }

    /// Events added since the last [`ColumnsBuilder::finish`].
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The accumulated events as one batch; the builder starts over.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.received_at.finish()),
            Arc::new(self.event_id.finish()),
            Arc::new(self.r#type.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.device_id.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.page_url.finish()),
            Arc::new(self.metrics.finish()),
            Arc::new(self.properties.finish()),
            Arc::new(self.client_id.finish()),
        ];
        self.rows = 0;
        RecordBatch::try_new(schema(), columns).map_err(arrow_error)
    }
}

/// A rough size of an event in a batch, to split big requests into records.
pub fn estimated_bytes(ev: &Event) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    64 + ev.event_id.len()
        + ev.r#type.len()
        + opt(&ev.source)
        + opt(&ev.device_id)
        + opt(&ev.user_id)
        + opt(&ev.page_url)
        + ev.metrics.keys().map(|k| k.len() + 12).sum::<usize>()
        + ev.properties
            .iter()
            .map(|(k, v)| {
                k.len()
                    + 8
                    + match &v.value {
                        Some(Value::String(s)) => s.len() + 2,
                        _ => 24,
                    }
            })
            .sum::<usize>()
}

/// Writes a batch as an Arrow IPC stream.
pub fn to_ipc(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(batch.get_array_memory_size() + 1024);
    {
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema())
            .map_err(arrow_error)?;
        w.write(batch).map_err(arrow_error)?;
        w.finish().map_err(arrow_error)?;
    }
    Ok(out)
}

/// Reads the one batch of an Arrow IPC stream and checks it has the columns of [`schema`].
pub fn from_ipc(bytes: &[u8]) -> Result<RecordBatch> {
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(arrow_error)?;
    let mut batches = Vec::with_capacity(1);
    for b in reader {
        batches.push(b.map_err(arrow_error)?);
    }
    let batch = match batches.len() {
        1 => batches.pop().ok_or_else(|| corrupt("no batch"))?,
        n => return Err(corrupt(format!("{n} batches in one record, expected 1"))),
    };
    // Projected to the known columns in their order, so readers may index them.
    let known = schema();
    let mut columns = Vec::with_capacity(known.fields().len());
    for f in known.fields() {
        let c = batch
            .column_by_name(f.name())
            .ok_or_else(|| corrupt(format!("no `{}` column", f.name())))?;
        if c.data_type() != f.data_type() {
            return Err(corrupt(format!(
                "column `{}` is {}, expected {}",
                f.name(),
                c.data_type(),
                f.data_type()
            )));
        }
        columns.push(c.clone());
    }
    RecordBatch::try_new(known, columns).map_err(arrow_error)
}

/// A decoded batch record: the tenant and its events' columns ([`schema`]).
#[derive(Debug, Clone)]
pub struct EventColumns {
    pub tenant: String,
    pub batch: RecordBatch,
}

impl EventColumns {
    /// Number of events.
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    /// True when the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn ts(&self, i: usize) -> &TimestampNanosecondArray {
        self.batch.column(i).as_primitive()
    }

    fn utf8(&self, i: usize) -> &StringArray {
        self.batch.column(i).as_string()
    }

    fn map(&self, i: usize) -> &MapArray {
        self.batch.column(i).as_map()
    }

    /// Event times (ns).
    pub fn times(&self) -> &TimestampNanosecondArray {
        self.ts(0)
    }

    /// Receive times (ns).
    pub fn received(&self) -> &TimestampNanosecondArray {
        self.ts(1)
    }

    /// Event ids.
    pub fn event_ids(&self) -> &StringArray {
        self.utf8(2)
    }

    /// Whether each id was the client's.
    pub fn client_ids(&self) -> &arrow::array::BooleanArray {
        self.batch.column(10).as_boolean()
    }

    /// The events as records, in order (for consumers that keep owned events).
    pub fn events(&self) -> Vec<Event> {
        (0..self.len()).map(|i| self.event(i)).collect()
    }

    /// Event `i` as a record (`i < len()`).
    pub fn event(&self, i: usize) -> Event {
        let (metrics, props) = (self.map(8), self.map(9));
        let m_keys = metrics.keys().as_string::<i32>();
        let m_values = metrics.values().as_primitive::<Float64Type>();
        let p_keys = props.keys().as_string::<i32>();
        let p_values = props.values().as_string::<i32>();
        let opt = |a: &StringArray| a.is_valid(i).then(|| a.value(i).to_string());
        let m_off = metrics.value_offsets();
        let p_off = props.value_offsets();
        Event {
            tenant: self.tenant.clone(),
            event_id: self.event_ids().value(i).to_string(),
            time: self.times().value(i),
            received_at: self.received().value(i),
            r#type: self.utf8(3).value(i).to_string(),
            source: opt(self.utf8(4)),
            device_id: opt(self.utf8(5)),
            user_id: opt(self.utf8(6)),
            page_url: opt(self.utf8(7)),
            metrics: (m_off[i] as usize..m_off[i + 1] as usize)
                .map(|j| (m_keys.value(j).to_string(), m_values.value(j)))
                .collect::<BTreeMap<_, _>>(),
            properties: (p_off[i] as usize..p_off[i + 1] as usize)
                .map(|j| {
                    (
                        p_keys.value(j).to_string(),
                        PropertyValue {
                            value: p_values
                                .is_valid(j)
                                .then(|| decode_property(p_values.value(j)))
                                .flatten(),
                        },
                    )
                })
                .collect(),
            client_id: self.client_ids().value(i),
        }
    }
}

fn arrow_error(e: arrow::error::ArrowError) -> Error {
    Error::Columns(e.to_string())
}

fn corrupt(why: impl std::fmt::Display) -> Error {
    Error::Columns(format!("not a batch of events: {why}"))
}
