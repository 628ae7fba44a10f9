//! Encoding of [`LogEntry`] records for the log. The log itself is payload-agnostic; this is
//! the one place that knows how an entry becomes bytes.
//!
//! Record formats (the payload is always a protobuf `LogEntry`; its variant tells them apart):
//! 1. one event per record (`Entry::Event`): every record before batches, and requests with a
//!    single event today (small, and cheap to write one at a time);
//! 2. a tenant's events in columns (`Entry::Events`, [`crate::columns`]): every request with
//!    several events, up to [`columns::MAX_EVENTS`] per record.
//!
//! Both stay readable forever; `decode` hands consumers either.

use bytes::Bytes;
use prost::Message;

use crate::columns::{self, ColumnsBuilder, EventColumns};
use crate::{Entry, Error, Event, EventBatch, LogEntry, Result};

/// Encodes an event as a log entry (record format 1).
pub fn encode_event(event: &Event) -> Vec<u8> {
    LogEntry {
        entry: Some(Entry::Event(event.clone())),
    }
    .encode_to_vec()
}

/// Encodes any log entry.
pub fn encode_entry(entry: &LogEntry) -> Vec<u8> {
    entry.encode_to_vec()
}

/// Encodes one tenant's events as few records as the limits allow: one event alone as format
/// 1, several as format 2 ([`columns::MAX_EVENTS`] and about [`columns::TARGET_BYTES`] per
/// record), in order.
pub fn encode_events(tenant: &str, events: &[Event]) -> Result<Vec<Bytes>> {
    if let [one] = events {
        return Ok(vec![Bytes::from(encode_event(one))]);
    }
    let mut out = Vec::new();
    let mut b = ColumnsBuilder::default();
    let mut bytes = 0usize;
    for ev in events {
        b.push(ev)?;
        bytes += columns::estimated_bytes(ev);
        if b.rows() >= columns::MAX_EVENTS || bytes >= columns::TARGET_BYTES {
            out.push(encode_batch(tenant, &b.finish()?)?);
            bytes = 0;
        }
    }
    if b.rows() > 0 {
        out.push(encode_batch(tenant, &b.finish()?)?);
    }
    Ok(out)
}

/// Encodes a batch of [`columns::schema`] as one record of format 2.
pub fn encode_batch(tenant: &str, batch: &arrow::array::RecordBatch) -> Result<Bytes> {
    let entry = LogEntry {
        entry: Some(Entry::Events(EventBatch {
            format: columns::FORMAT,
            tenant: tenant.to_string(),
            count: u32::try_from(batch.num_rows())
                .map_err(|_| Error::Columns("too many events for one record".into()))?,
            columns: Bytes::from(columns::to_ipc(batch)?),
        })),
    };
    Ok(Bytes::from(entry.encode_to_vec()))
}

/// Decodes a log entry.
pub fn decode_entry(bytes: &[u8]) -> Result<LogEntry> {
    Ok(LogEntry::decode(bytes)?)
}

/// What a record holds, as consumers take it.
#[derive(Debug)]
pub enum Decoded {
    /// One event (record format 1).
    Event(Event),
    /// Several events of one tenant (record format 2).
    Events(EventColumns),
    /// Anything else (tombstones, rule changes, alert actions).
    Other(Entry),
    /// An entry of a kind this build does not know (a newer writer's): skipped.
    Unknown,
}

/// Decodes a record's payload (without copying the columns' bytes out of it).
pub fn decode(payload: &Bytes) -> Result<Decoded> {
    Ok(match LogEntry::decode(payload.clone())?.entry {
        Some(Entry::Event(ev)) => Decoded::Event(ev),
        Some(Entry::Events(b)) => Decoded::Events(decode_batch(&b)?),
        Some(other) => Decoded::Other(other),
        None => Decoded::Unknown,
    })
}

/// The columns of a format-2 record.
pub fn decode_batch(b: &EventBatch) -> Result<EventColumns> {
    if b.format != columns::FORMAT {
        return Err(Error::Columns(format!(
            "batch format {} is newer than this build reads ({})",
            b.format,
            columns::FORMAT
        )));
    }
    let batch = columns::from_ipc(&b.columns)?;
    if batch.num_rows() != b.count as usize {
        return Err(Error::Columns(format!(
            "the record says {} events but holds {}",
            b.count,
            batch.num_rows()
        )));
    }
    Ok(EventColumns {
        tenant: b.tenant.clone(),
        batch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PropertyValue, Value};
    use proptest::prelude::*;

    fn arb_event() -> impl Strategy<Value = Event> {
        (
            ".{0,20}",
            any::<i64>(),
            any::<i64>(),
            proptest::option::of(".{0,10}"),
            proptest::collection::btree_map("[a-z]{1,8}", -1e12f64..1e12, 0..5),
            proptest::collection::btree_map(
                "[a-z]{1,8}",
                prop_oneof![
                    ".{0,10}".prop_map(Value::String),
                    (-1e9f64..1e9).prop_map(Value::Number),
                    any::<bool>().prop_map(Value::Bool)
                ],
                0..5,
            ),
        )
            .prop_map(|(id, time, rec, dev, metrics, props)| Event {
                tenant: "t1".into(),
                event_id: id,
                time,
                received_at: rec,
                r#type: "reading".into(),
                source: None,
                device_id: dev,
                user_id: None,
                page_url: None,
                metrics,
                properties: props
                    .into_iter()
                    .map(|(k, v)| (k, PropertyValue::from(v)))
                    .collect(),
                client_id: true,
            })
    }

    /// Events of tenant `t1` with every optional field drawn.
    fn arb_full_event() -> impl Strategy<Value = Event> {
        (
            arb_event(),
            proptest::option::of(".{0,10}"),
            proptest::option::of(".{0,10}"),
            proptest::option::of(".{0,10}"),
            "[a-z_]{1,10}",
        )
            .prop_map(|(mut ev, source, user, page, ty)| {
                ev.source = source;
                ev.user_id = user;
                ev.page_url = page;
                ev.r#type = ty;
                ev.client_id = ev.event_id.len() % 2 == 0;
                ev
            })
    }

    fn decode_all(records: &[Bytes]) -> Vec<Event> {
        let mut out = Vec::new();
        for r in records {
            match decode(r).unwrap() {
                Decoded::Event(ev) => out.push(ev),
                Decoded::Events(cols) => out.extend(cols.events()),
                other => panic!("unexpected {other:?}"),
            }
        }
        out
    }

    #[test]
    fn big_requests_become_several_records_in_order() {
        let events: Vec<Event> = (0..(columns::MAX_EVENTS * 2 + 3))
            .map(|i| Event {
                tenant: "t1".into(),
                event_id: format!("e{i}"),
                time: i as i64,
                r#type: "reading".into(),
                metrics: [("v".to_string(), i as f64)].into(),
                ..Default::default()
            })
            .collect();
        let records = encode_events("t1", &events).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(decode_all(&records), events);
        // One event alone stays a format-1 record.
        let one = encode_events("t1", &events[..1]).unwrap();
        assert!(matches!(decode(&one[0]).unwrap(), Decoded::Event(_)));
        // Big events split by size, well below the log's record limit.
        let big: Vec<Event> = (0..12)
            .map(|i| Event {
                tenant: "t1".into(),
                event_id: format!("b{i}"),
                properties: [(
                    "blob".to_string(),
                    PropertyValue::from(Value::String("x".repeat(1 << 20))),
                )]
                .into(),
                ..Default::default()
            })
            .collect();
        let records = encode_events("t1", &big).unwrap();
        assert!(records.len() >= 3, "{} records", records.len());
        assert!(records.iter().all(|r| r.len() < 8 << 20));
        assert_eq!(decode_all(&records), big);
    }

    #[test]
    fn a_batch_of_an_unknown_format_or_count_is_refused() {
        let events = vec![Event::default(), Event::default()];
        let rec = encode_events("t1", &events).unwrap().remove(0);
        let Some(Entry::Events(mut b)) = LogEntry::decode(rec.clone()).unwrap().entry else {
            panic!("not a batch")
        };
        b.format = columns::FORMAT + 1;
        assert!(decode_batch(&b).unwrap_err().to_string().contains("newer"));
        b.format = columns::FORMAT;
        b.count = 3;
        assert!(decode_batch(&b).unwrap_err().to_string().contains("says 3"));
        b.columns = Bytes::from_static(b"not arrow");
        assert!(decode_batch(&b).is_err());
    }

    proptest! {
        #[test]
        fn batches_roundtrip(events in proptest::collection::vec(arb_full_event(), 1..40)) {
            let records = encode_events("t1", &events).unwrap();
            prop_assert_eq!(records.len(), 1);
            prop_assert_eq!(decode_all(&records), events);
        }

        #[test]
        fn event_roundtrips(ev in arb_event()) {
            let bytes = encode_event(&ev);
            let back = decode_entry(&bytes).unwrap();
            prop_assert_eq!(back.entry, Some(Entry::Event(ev)));
        }
    }
}
