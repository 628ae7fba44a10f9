//! The Arrow schemas of the two tables every tenant has, and the builders that turn events
//! into record batches.
//!
//! `events` — one row per event:
//! `time`, `received_at` (timestamp ns UTC), `event_id`, `type`, `source`, `device_id`,
//! `user_id`, `page_url` (utf8), `metrics` (map utf8 → f64), `properties` (map utf8 → utf8
//! holding each value JSON-encoded — `"/home"`, `45`, `true` — so types round-trip exactly),
//! `offset` (u64, the event's log offset: a unique, stable tie-breaker for pagination).
//!
//! `metric_samples` — one row per (event, metric), the long form time-series queries scan:
//! `time`, `device_id`, `metric`, `value`, `type`, `source`.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, Float64Builder, MapBuilder, MapFieldNames, RecordBatch, StringBuilder,
    TimestampNanosecondBuilder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use eddy_model::Event;

use crate::{Error, Result};

pub use eddy_model::columns::{TZ, encode_property, ts_type};

static EVENTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    // The log's batch columns (`eddy_model::columns`) as they are, then the store's own.
    let mut fields = eddy_model::columns::event_fields();
    fields.push(Field::new("offset", DataType::UInt64, false));
    Arc::new(Schema::new(fields))
});

static SAMPLES: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("time", ts_type(), false),
        Field::new("device_id", DataType::Utf8, true),
        Field::new("metric", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, true),
    ]))
});

/// Schema of the `events` table.
pub fn events_schema() -> SchemaRef {
    EVENTS.clone()
}

/// Schema of the `metric_samples` table.
pub fn samples_schema() -> SchemaRef {
    SAMPLES.clone()
}

fn field_names() -> MapFieldNames {
    eddy_model::columns::map_field_names()
}

/// Accumulates events (with their log offsets) into `events` and `metric_samples` batches.
#[derive(Debug)]
pub struct BatchBuilder {
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
    offset: UInt64Builder,
    s_time: TimestampNanosecondBuilder,
    s_device: StringBuilder,
    s_metric: StringBuilder,
    s_value: Float64Builder,
    s_type: StringBuilder,
    s_source: StringBuilder,
    rows: usize,
    samples: usize,
    /// Smallest and largest event time seen.
    pub min_time: i64,
    pub max_time: i64,
}

impl Default for BatchBuilder {
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
                Some(field_names()),
                StringBuilder::new(),
                Float64Builder::new(),
            ),
            properties: MapBuilder::new(
                Some(field_names()),
                StringBuilder::new(),
                StringBuilder::new(),
            ),
            offset: UInt64Builder::new(),
            s_time: ts(),
            s_device: StringBuilder::new(),
            s_metric: StringBuilder::new(),
            s_value: Float64Builder::new(),
            s_type: StringBuilder::new(),
            s_source: StringBuilder::new(),
            rows: 0,
            samples: 0,
            min_time: i64::MAX,
            max_time: i64::MIN,
        }
    }
}

impl BatchBuilder {
    /// Adds one event stored at log `offset`.
    pub fn push(&mut self, ev: &Event, offset: u64) -> Result<()> {
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
            self.s_time.append_value(ev.time);
            self.s_device.append_option(ev.device_id.as_deref());
            self.s_metric.append_value(k);
            self.s_value.append_value(*v);
            self.s_type.append_value(&ev.r#type);
            self.s_source.append_option(ev.source.as_deref());
            self.samples += 1;
        }
        self.metrics.append(true).map_err(Error::Arrow)?;
        for (k, v) in &ev.properties {
            self.properties.keys().append_value(k);
            self.properties
                .values()
                .append_value(encode_property(&v.value));
        }
        self.properties.append(true).map_err(Error::Arrow)?;
        self.offset.append_value(offset);
        self.rows += 1;
        self.min_time = self.min_time.min(ev.time);
        self.max_time = self.max_time.max(ev.time);
        Ok(())
    }

    /// Events added since the last [`BatchBuilder::finish`].
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The accumulated rows as (`events`, `metric_samples`) batches; the builder starts over.
    pub fn finish(&mut self) -> Result<(RecordBatch, RecordBatch)> {
        let events: Vec<ArrayRef> = vec![
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
            Arc::new(self.offset.finish()),
        ];
        let samples: Vec<ArrayRef> = vec![
            Arc::new(self.s_time.finish()),
            Arc::new(self.s_device.finish()),
            Arc::new(self.s_metric.finish()),
            Arc::new(self.s_value.finish()),
            Arc::new(self.s_type.finish()),
            Arc::new(self.s_source.finish()),
        ];
        self.rows = 0;
        self.samples = 0;
        self.min_time = i64::MAX;
        self.max_time = i64::MIN;
        Ok((
            RecordBatch::try_new(events_schema(), events).map_err(Error::Arrow)?,
            RecordBatch::try_new(samples_schema(), samples).map_err(Error::Arrow)?,
        ))
    }
}

/// A batch record's events (`eddy_model::columns`, stored at log `offset`) as (`events`,
/// `metric_samples`) batches, column by column: the first ten columns are taken as they are,
/// positions are added, and the samples are the metrics maps' entries with their event's
/// columns gathered beside them.
pub fn from_columns(cols: &RecordBatch, offset: u64) -> Result<(RecordBatch, RecordBatch)> {
    use arrow::array::{Array, AsArray, UInt32Array, UInt64Array};
    use eddy_model::columns::{EVENT_FIELDS, position};
    let n = cols.num_rows();
    let mut events: Vec<ArrayRef> = cols.columns()[..EVENT_FIELDS].to_vec();
    events.push(Arc::new(UInt64Array::from_iter_values(
        (0..n).map(|i| position(offset, i)),
    )));
    let metrics = cols.column(8).as_map();
    let offsets = metrics.value_offsets();
    let (first, last) = (offsets[0] as usize, offsets[n] as usize);
    let mut parents = Vec::with_capacity(last - first);
    for i in 0..n {
        let k = (offsets[i + 1] - offsets[i]) as usize;
        parents.extend(std::iter::repeat_n(i as u32, k));
    }
    let parents = UInt32Array::from(parents);
    let take = |c: usize| arrow::compute::take(cols.column(c), &parents, None);
    let samples: Vec<ArrayRef> = vec![
        take(0).map_err(Error::Arrow)?,
        take(5).map_err(Error::Arrow)?,
        metrics.keys().slice(first, last - first),
        metrics.values().slice(first, last - first),
        take(3).map_err(Error::Arrow)?,
        take(4).map_err(Error::Arrow)?,
    ];
    Ok((
        RecordBatch::try_new(events_schema(), events).map_err(Error::Arrow)?,
        RecordBatch::try_new(samples_schema(), samples).map_err(Error::Arrow)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use eddy_model::{PropertyValue, Value};

    #[test]
    fn builder_matches_schemas() {
        let mut b = BatchBuilder::default();
        let mut ev = Event {
            tenant: "t".into(),
            event_id: "e1".into(),
            time: 5,
            received_at: 6,
            r#type: "reading".into(),
            ..Default::default()
        };
        ev.metrics.insert("temp".into(), 21.5);
        ev.metrics.insert("hum".into(), 40.0);
        ev.properties.insert(
            "page".into(),
            PropertyValue::from(Value::String("/x".into())),
        );
        ev.properties
            .insert("n".into(), PropertyValue::from(Value::Number(45.0)));
        b.push(&ev, 7).unwrap();
        b.push(
            &Event {
                event_id: "e2".into(),
                r#type: "click".into(),
                time: 9,
                ..Default::default()
            },
            8,
        )
        .unwrap();
        let (e, s) = b.finish().unwrap();
        assert_eq!(e.num_rows(), 2);
        assert_eq!(s.num_rows(), 2);
        assert_eq!(e.schema(), events_schema());
        assert_eq!(b.rows(), 0);
        assert_eq!(encode_property(&Some(Value::Number(45.0))), "45");
        // A batch record's columns give the same rows as the builder, positions aside.
        let evs = [ev.clone(), ev.clone()];
        let mut cb = eddy_model::columns::ColumnsBuilder::default();
        for e in &evs {
            cb.push(e).unwrap();
            b.push(e, 0).unwrap();
        }
        let (ce, cs) = from_columns(&cb.finish().unwrap(), 3).unwrap();
        let (be, bs) = b.finish().unwrap();
        assert_eq!(cs, bs);
        assert_eq!(ce.columns()[..10], be.columns()[..10]);
        let pos = ce.column(10).as_primitive::<arrow::datatypes::UInt64Type>();
        assert_eq!(pos.values().to_vec(), vec![3 << 20, (3 << 20) + 1]);
        assert_eq!(encode_property(&Some(Value::Number(0.5))), "0.5");
        assert_eq!(
            encode_property(&Some(Value::String("a\"b".into()))),
            "\"a\\\"b\""
        );
    }
}
