//! Encoding of [`LogEntry`] records for the log. The log itself is payload-agnostic; this is
//! the one place that knows how an entry becomes bytes.

use prost::Message;

use crate::{Entry, Event, LogEntry, Result};

/// Encodes an event as a log entry.
pub fn encode_event(event: Event) -> Vec<u8> {
    LogEntry {
        entry: Some(Entry::Event(event)),
    }
    .encode_to_vec()
}

/// Encodes any log entry.
pub fn encode_entry(entry: &LogEntry) -> Vec<u8> {
    entry.encode_to_vec()
}

/// Decodes a log entry.
pub fn decode_entry(bytes: &[u8]) -> Result<LogEntry> {
    Ok(LogEntry::decode(bytes)?)
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

    proptest! {
        #[test]
        fn event_roundtrips(ev in arb_event()) {
            let bytes = encode_event(ev.clone());
            let back = decode_entry(&bytes).unwrap();
            prop_assert_eq!(back.entry, Some(Entry::Event(ev)));
        }
    }
}
