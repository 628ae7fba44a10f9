//! Splitting a request body into one JSON value per event.
//!
//! Accepted: a single JSON object, a JSON array of objects, `{"events": [...]}`, NDJSON (one
//! object per line), and the gateway envelope `{"event": {...}}` for any element.

use serde_json::Value;

use crate::EventError;

/// How the body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON document.
    Json,
    /// Newline-delimited JSON, one event per line.
    Ndjson,
}

/// A body split into events. Elements that failed to parse on their own (NDJSON lines) come
/// back as errors at their index, so `partial` ingestion can keep the rest.
#[derive(Debug)]
pub struct SplitBody {
    /// One entry per event, in request order.
    pub events: Vec<Result<Value, EventError>>,
    /// True when the body was a batch (array, `{"events": …}` or NDJSON), false for one object.
    pub is_batch: bool,
}

/// Why a body as a whole cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body is not valid JSON: {0}")]
    Syntax(String),
    #[error("body must be a JSON object, an array of objects or {{\"events\": [...]}}")]
    Shape,
    #[error("body holds no events")]
    Empty,
    #[error("the request holds no events")]
    NoEvents,
    #[error("batch holds {count} events, more than the limit of {max}")]
    TooMany { count: usize, max: usize },
}

/// Splits `body` into events, enforcing `max_events`.
pub fn split_body(
    body: &[u8],
    format: BodyFormat,
    max_events: usize,
) -> Result<SplitBody, BodyError> {
    let split = match format {
        BodyFormat::Json => split_json(body)?,
        BodyFormat::Ndjson => split_ndjson(body, max_events)?,
    };
    if split.events.is_empty() {
        return Err(BodyError::Empty);
    }
    if split.events.len() > max_events {
        return Err(BodyError::TooMany {
            count: split.events.len(),
            max: max_events,
        });
    }
    Ok(split)
}

/// Holds events that arrive already apart (a protocol with its own framing) to the rules of
/// a body: not none, at most `max_events`.
pub fn check_event_count(count: usize, max_events: usize) -> Result<(), BodyError> {
    if count == 0 {
        return Err(BodyError::NoEvents);
    }
    if count > max_events {
        return Err(BodyError::TooMany {
            count,
            max: max_events,
        });
    }
    Ok(())
}

fn split_json(body: &[u8]) -> Result<SplitBody, BodyError> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| BodyError::Syntax(e.to_string()))?;
    match doc {
        Value::Array(items) => Ok(SplitBody {
            events: items.into_iter().map(unwrap_envelope).collect(),
            is_batch: true,
        }),
        Value::Object(mut map) => {
            if map.len() == 1
                && matches!(map.get("events"), Some(Value::Array(_)))
                && let Some(Value::Array(items)) = map.remove("events")
            {
                return Ok(SplitBody {
                    events: items.into_iter().map(unwrap_envelope).collect(),
                    is_batch: true,
                });
            }
            Ok(SplitBody {
                events: vec![unwrap_envelope(Value::Object(map))],
                is_batch: false,
            })
        }
        _ => Err(BodyError::Shape),
    }
}

fn split_ndjson(body: &[u8], max_events: usize) -> Result<SplitBody, BodyError> {
    let mut events = Vec::new();
    for line in body.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if events.len() == max_events {
            // Count the rest without parsing it, so the error states the real size.
            let rest = body
                .split(|b| *b == b'\n')
                .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                .count();
            return Err(BodyError::TooMany {
                count: rest,
                max: max_events,
            });
        }
        let index = events.len();
        let parsed = serde_json::from_slice::<Value>(line)
            .map_err(|e| EventError {
                index,
                field: String::new(),
                reason: format!("line is not valid JSON: {e}"),
            })
            .and_then(unwrap_envelope);
        events.push(parsed);
    }
    Ok(SplitBody {
        events,
        is_batch: true,
    })
}

/// `{"event": {...}}` (gateway style) becomes its inner object.
fn unwrap_envelope(v: Value) -> Result<Value, EventError> {
    match v {
        Value::Object(mut map)
            if map.len() == 1 && matches!(map.get("event"), Some(Value::Object(_))) =>
        {
            Ok(map.remove("event").unwrap_or(Value::Null))
        }
        Value::Object(_) => Ok(v),
        other => Err(EventError::new(
            "",
            format!("an event must be a JSON object, got {}", kind(&other)),
        )),
    }
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let one = split_body(br#"{"type":"a"}"#, BodyFormat::Json, 10).unwrap();
        assert!(!one.is_batch);
        assert_eq!(one.events.len(), 1);
        let arr = split_body(br#"[{"type":"a"},{"type":"b"}]"#, BodyFormat::Json, 10).unwrap();
        assert_eq!(arr.events.len(), 2);
        let wrapped = split_body(br#"{"events":[{"type":"a"}]}"#, BodyFormat::Json, 10).unwrap();
        assert!(wrapped.is_batch);
        let gw = split_body(br#"{"event":{"type":"a"}}"#, BodyFormat::Json, 10).unwrap();
        assert_eq!(gw.events[0].as_ref().unwrap()["type"], "a");
        let nd = split_body(
            b"{\"type\":\"a\"}\n\n{bad\n{\"type\":\"c\"}\r\n",
            BodyFormat::Ndjson,
            10,
        )
        .unwrap();
        assert_eq!(nd.events.len(), 3);
        assert_eq!(nd.events[1].as_ref().unwrap_err().index, 1);
        assert_eq!(
            split_body(b"[]", BodyFormat::Json, 10).unwrap_err(),
            BodyError::Empty
        );
        assert_eq!(
            split_body(b"3", BodyFormat::Json, 10).unwrap_err(),
            BodyError::Shape
        );
        assert!(matches!(
            split_body(b"[{}, {}, {}]", BodyFormat::Json, 2),
            Err(BodyError::TooMany { count: 3, max: 2 })
        ));
        assert!(matches!(
            split_body(b"{}\n{}\n{}\n", BodyFormat::Ndjson, 2),
            Err(BodyError::TooMany { count: 3, max: 2 })
        ));
        assert!(matches!(
            split_body(b"{", BodyFormat::Json, 2),
            Err(BodyError::Syntax(_))
        ));
    }
}
