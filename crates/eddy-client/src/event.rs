//! The event a client sends: the native event's fields, built fluently.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use eddy_proto::v1 as pb;
use serde_json::{Map, Value};

/// One event. `event_id` is filled in (UUIDv7) before the first attempt if left empty, so a
/// retried send is deduplicated by the server instead of stored twice.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    pub event_id: Option<String>,
    /// `reading` when left empty and the event has metrics.
    pub r#type: String,
    /// Default: when the server receives it.
    pub time: Option<SystemTime>,
    pub device_id: Option<String>,
    pub user_id: Option<String>,
    pub source: Option<String>,
    pub page_url: Option<String>,
    pub metrics: BTreeMap<String, f64>,
    /// Strings, numbers or booleans.
    pub properties: BTreeMap<String, Value>,
}

impl Event {
    /// An event of `type` (e.g. `reading`, `click`).
    pub fn new(r#type: impl Into<String>) -> Self {
        Self {
            r#type: r#type.into(),
            ..Self::default()
        }
    }

    /// A `reading` of `device_id`.
    pub fn reading(device_id: impl Into<String>) -> Self {
        Self::new("reading").device(device_id)
    }

    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.event_id = Some(id.into());
        self
    }

    pub fn at(mut self, time: SystemTime) -> Self {
        self.time = Some(time);
        self
    }

    pub fn device(mut self, id: impl Into<String>) -> Self {
        self.device_id = Some(id.into());
        self
    }

    pub fn user(mut self, id: impl Into<String>) -> Self {
        self.user_id = Some(id.into());
        self
    }

    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn page(mut self, url: impl Into<String>) -> Self {
        self.page_url = Some(url.into());
        self
    }

    pub fn metric(mut self, name: impl Into<String>, value: f64) -> Self {
        self.metrics.insert(name.into(), value);
        self
    }

    pub fn property(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.properties.insert(name.into(), value.into());
        self
    }

    /// Gives the event a UUIDv7 id unless it has one.
    pub(crate) fn ensure_id(&mut self) {
        if self.event_id.as_deref().is_none_or(str::is_empty) {
            self.event_id = Some(uuid::Uuid::now_v7().to_string());
        }
    }

    /// The native JSON event (HTTP).
    pub(crate) fn to_json(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                m.insert(k.into(), Value::String(v.clone()));
            }
        };
        put("event_id", &self.event_id);
        put("device_id", &self.device_id);
        put("user_id", &self.user_id);
        put("source", &self.source);
        put("page_url", &self.page_url);
        if !self.r#type.is_empty() {
            m.insert("type".into(), Value::String(self.r#type.clone()));
        }
        if let Some(t) = self.time {
            // Epoch nanoseconds: exact, and told apart from ms/s by magnitude.
            let ns = t
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            m.insert("time".into(), Value::from(ns));
        }
        if !self.metrics.is_empty() {
            m.insert(
                "metrics".into(),
                Value::Object(
                    self.metrics
                        .iter()
                        .map(|(k, v)| {
                            let v = serde_json::Number::from_f64(*v)
                                .map_or_else(|| Value::String(v.to_string()), Value::Number);
                            (k.clone(), v)
                        })
                        .collect(),
                ),
            );
        }
        if !self.properties.is_empty() {
            m.insert(
                "properties".into(),
                Value::Object(self.properties.clone().into_iter().collect()),
            );
        }
        Value::Object(m)
    }

    /// The `eddy.v1.Event` message (gRPC).
    pub(crate) fn to_proto(&self) -> pb::Event {
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        pb::Event {
            event_id: s(&self.event_id),
            r#type: self.r#type.clone(),
            time: self.time.map(prost_types::Timestamp::from),
            device_id: s(&self.device_id),
            user_id: s(&self.user_id),
            source: s(&self.source),
            page_url: s(&self.page_url),
            metrics: self.metrics.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            properties: self
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), value(v)))
                .collect(),
            received_at: None,
        }
    }
}

fn value(v: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.iter().map(value).collect(),
        }),
        Value::Object(o) => Kind::StructValue(prost_types::Struct {
            fields: o.iter().map(|(k, v)| (k.clone(), value(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_encodings_carry_every_field() {
        let t = UNIX_EPOCH + std::time::Duration::from_nanos(1_700_000_000_123_456_789);
        let mut e = Event::reading("d1")
            .at(t)
            .user("u1")
            .metric("temp", 21.5)
            .property("room", "lab");
        e.ensure_id();
        let id = e.event_id.clone().unwrap();
        let j = e.to_json();
        assert_eq!(j["event_id"], id.as_str());
        assert_eq!(j["time"], 1_700_000_000_123_456_789u64);
        assert_eq!(j["metrics"]["temp"], 21.5);
        assert_eq!(j["properties"]["room"], "lab");
        let p = e.to_proto();
        assert_eq!(p.event_id, id);
        assert_eq!(p.time.unwrap().nanos, 123_456_789);
        assert_eq!(p.metrics["temp"], 21.5);
        // An id once given stays (retries reuse it).
        e.ensure_id();
        assert_eq!(e.event_id.unwrap(), id);
    }
}
