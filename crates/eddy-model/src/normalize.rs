//! Mapping one JSON event of any accepted shape onto [`Event`], with validation.
//!
//! Field aliases (first column is the data model's name):
//!
//! | field | also accepted as |
//! |---|---|
//! | `event_id` | `id`, `eventId` |
//! | `time` | `timestamp`, `time_stamp`, `ts` |
//! | `type` | `event_type`, `eventType` (default `reading` when the event has metrics) |
//! | `device_id` | `deviceId`, `sensor_id`, `sensorId` |
//! | `user_id` | `userId` |
//! | `page_url` | `pageUrl` |
//! | `metrics` | a bare top-level `value` becomes metric `value` |
//!
//! Any other top-level scalar becomes a property (so extra fields that older clients send are
//! kept, never silently dropped); other top-level objects or arrays are rejected. The tenant is
//! never read from the body: a body field named `tenant` is just a property.
//!
//! A protocol whose messages are already typed (gRPC's `eddy.v1.Event`) hands over
//! [`EventFields`] instead, checked by [`normalize_fields`] with the same rules and messages:
//! no JSON is built for it, and its time is already in ns.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};

use crate::batch::kind;
use crate::time::{epoch_float_to_ns, epoch_int_to_ns, parse_time_str};
use crate::{Event, EventError, PropertyValue, Value};

/// Size limits applied to every event.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Maximum length in bytes of `event_id`.
    pub max_id_len: usize,
    /// Maximum length in bytes of names: type, metric and property names.
    pub max_name_len: usize,
    /// Maximum length in bytes of string values (source, device, user, page, properties).
    pub max_string_len: usize,
    /// Maximum number of metrics per event.
    pub max_metrics: usize,
    /// Maximum number of properties per event.
    pub max_properties: usize,
    /// How far in the future an event time may be, in ns.
    pub max_future_skew_ns: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_id_len: 256,
            max_name_len: 128,
            max_string_len: 4096,
            max_metrics: 256,
            max_properties: 256,
            max_future_skew_ns: 3_600 * 1_000_000_000,
        }
    }
}

/// Per-tenant settings that validation needs.
#[derive(Debug, Clone)]
pub struct TenantPolicy<'a> {
    /// The tenant id (from the key).
    pub tenant: &'a str,
    /// Events older than `now - retention_ns` are rejected; 0 = keep forever.
    pub retention_ns: i64,
}

/// Normalises and validates one event. `now_ns` is the receive time.
pub fn normalize_event(
    raw: Json,
    policy: &TenantPolicy<'_>,
    limits: &Limits,
    now_ns: i64,
) -> Result<Event, EventError> {
    let Json::Object(map) = raw else {
        return Err(EventError::new(
            "",
            format!("an event must be a JSON object, got {}", kind(&raw)),
        ));
    };
    let mut b = Builder::default();
    for (key, value) in map {
        b.field(key, value, limits)?;
    }
    b.finish(policy, limits, now_ns)
}

/// One event whose fields a protocol already typed, under the data model's names (no
/// aliases). Absent fields are `None`; a protocol that cannot tell empty from absent (proto3)
/// passes empty strings as `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFields {
    pub event_id: Option<String>,
    pub r#type: Option<String>,
    /// ns since the Unix epoch; `None` = the receive time.
    pub time: Option<i64>,
    pub source: Option<String>,
    pub device_id: Option<String>,
    pub user_id: Option<String>,
    pub page_url: Option<String>,
    pub metrics: Vec<(String, f64)>,
    pub properties: Vec<(String, Scalar)>,
}

/// A property value as a typed protocol carries it.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// Absent (skipped, like JSON `null`).
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    /// A value of a kind a property cannot hold; names it ("an object", "a list").
    Unsupported(&'static str),
}

/// Validates one typed event with the rules of [`normalize_event`]. `now_ns` is the receive
/// time.
pub fn normalize_fields(
    f: EventFields,
    policy: &TenantPolicy<'_>,
    limits: &Limits,
    now_ns: i64,
) -> Result<Event, EventError> {
    let mut b = Builder::default();
    let slot = |key: &str, v: Option<String>, max: usize| {
        v.map(|v| checked_string(key, v, max).map(|v| (key.to_string(), v)))
            .transpose()
    };
    b.event_id = slot("event_id", f.event_id, limits.max_id_len)?;
    b.r#type = slot("type", f.r#type, limits.max_name_len)?;
    if let Some((key, t)) = &b.r#type {
        check_name(key, t, limits)?;
    }
    b.source = slot("source", f.source, limits.max_string_len)?;
    b.device_id = slot("device_id", f.device_id, limits.max_string_len)?;
    b.user_id = slot("user_id", f.user_id, limits.max_string_len)?;
    b.page_url = slot("page_url", f.page_url, limits.max_string_len)?;
    b.time = f.time.map(|t| ("time".to_string(), t));
    for (name, v) in f.metrics {
        b.metric(name, v, limits)?;
    }
    for (name, v) in f.properties {
        b.property(format!("properties.{name}"), name, v, limits)?;
    }
    b.finish(policy, limits, now_ns)
}

#[derive(Default)]
struct Builder {
    event_id: Option<(String, String)>,
    time: Option<(String, i64)>,
    r#type: Option<(String, String)>,
    source: Option<(String, String)>,
    device_id: Option<(String, String)>,
    user_id: Option<(String, String)>,
    page_url: Option<(String, String)>,
    metrics: BTreeMap<String, f64>,
    properties: BTreeMap<String, PropertyValue>,
    extra: Vec<(String, Json)>,
    bare_value: Option<f64>,
}

/// Sets a once-only slot, refusing two spellings of the same field with different values.
fn set_once(slot: &mut Option<(String, String)>, key: String, v: String) -> Result<(), EventError> {
    if let Some((prev_key, prev)) = slot {
        if *prev != v {
            return Err(EventError::new(
                key,
                format!("conflicts with `{prev_key}` (same field, different value)"),
            ));
        }
        return Ok(());
    }
    *slot = Some((key, v));
    Ok(())
}

fn string_field(key: &str, v: Json, max: usize) -> Result<Option<String>, EventError> {
    let s = match v {
        Json::Null => return Ok(None),
        Json::String(s) => s,
        Json::Number(n) => n.to_string(),
        other => {
            return Err(EventError::new(
                key,
                format!("must be a string, got {}", kind(&other)),
            ));
        }
    };
    checked_string(key, s, max).map(Some)
}

/// A string field's value, not empty and at most `max` bytes.
fn checked_string(key: &str, s: String, max: usize) -> Result<String, EventError> {
    if s.is_empty() {
        return Err(EventError::new(key, "must not be empty"));
    }
    if s.len() > max {
        return Err(EventError::new(
            key,
            format!("is {} bytes long, more than the limit of {max}", s.len()),
        ));
    }
    Ok(s)
}

/// A JSON value as a property value.
fn scalar(v: Json) -> Scalar {
    match v {
        Json::Null => Scalar::Null,
        Json::Bool(b) => Scalar::Bool(b),
        // serde_json numbers are always representable as f64 (no arbitrary precision).
        Json::Number(n) => Scalar::Number(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => Scalar::String(s),
        other => Scalar::Unsupported(kind(&other)),
    }
}

fn check_name(field: &str, name: &str, limits: &Limits) -> Result<(), EventError> {
    if name.is_empty() {
        return Err(EventError::new(field, "name must not be empty"));
    }
    if name.len() > limits.max_name_len {
        return Err(EventError::new(
            field,
            format!(
                "name is longer than the limit of {} bytes",
                limits.max_name_len
            ),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(EventError::new(
            field,
            "name must not contain control characters",
        ));
    }
    Ok(())
}

fn finite_number(field: &str, v: &Json) -> Result<f64, EventError> {
    match v {
        Json::Number(n) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .ok_or_else(|| EventError::new(field, "must be a finite number")),
        // serde_json cannot produce NaN/Inf from JSON, but clients spell them as strings.
        Json::String(s)
            if matches!(
                s.to_ascii_lowercase().as_str(),
                "nan" | "inf" | "-inf" | "infinity" | "-infinity" | "+inf"
            ) =>
        {
            Err(EventError::new(
                field,
                "NaN and infinities are not accepted",
            ))
        }
        other => Err(EventError::new(
            field,
            format!("must be a number, got {}", kind(other)),
        )),
    }
}

impl Builder {
    fn field(&mut self, key: String, value: Json, limits: &Limits) -> Result<(), EventError> {
        match key.as_str() {
            "event_id" | "id" | "eventId" => {
                if let Some(v) = string_field(&key, value, limits.max_id_len)? {
                    set_once(&mut self.event_id, key, v)?;
                }
            }
            "time" | "timestamp" | "time_stamp" | "ts" => {
                let ns = match &value {
                    Json::Null => return Ok(()),
                    Json::String(s) => parse_time_str(s),
                    Json::Number(n) => match n.as_i64() {
                        Some(i) => epoch_int_to_ns(i),
                        None => n
                            .as_f64()
                            .map_or(Err("not a usable number".into()), epoch_float_to_ns),
                    },
                    other => Err(format!(
                        "must be an RFC 3339 string or an epoch number, got {}",
                        kind(other)
                    )),
                }
                .map_err(|r| EventError::new(key.clone(), r))?;
                if let Some((prev_key, prev)) = &self.time
                    && *prev != ns
                {
                    return Err(EventError::new(key, format!("conflicts with `{prev_key}`")));
                }
                self.time = Some((key, ns));
            }
            "type" | "event_type" | "eventType" => {
                if let Some(v) = string_field(&key, value, limits.max_name_len)? {
                    check_name(&key, &v, limits)?;
                    set_once(&mut self.r#type, key, v)?;
                }
            }
            "source" => {
                if let Some(v) = string_field(&key, value, limits.max_string_len)? {
                    set_once(&mut self.source, key, v)?;
                }
            }
            "device_id" | "deviceId" | "sensor_id" | "sensorId" => {
                if let Some(v) = string_field(&key, value, limits.max_string_len)? {
                    set_once(&mut self.device_id, key, v)?;
                }
            }
            "user_id" | "userId" => {
                if let Some(v) = string_field(&key, value, limits.max_string_len)? {
                    set_once(&mut self.user_id, key, v)?;
                }
            }
            "page_url" | "pageUrl" => {
                if let Some(v) = string_field(&key, value, limits.max_string_len)? {
                    set_once(&mut self.page_url, key, v)?;
                }
            }
            "value" => {
                if !value.is_null() {
                    self.bare_value = Some(finite_number("value", &value)?);
                }
            }
            "metrics" => match value {
                Json::Null => {}
                Json::Object(m) => self.metrics(m, limits)?,
                other => {
                    return Err(EventError::new(
                        "metrics",
                        format!("must be an object of name → number, got {}", kind(&other)),
                    ));
                }
            },
            "properties" => match value {
                Json::Null => {}
                Json::Object(m) => {
                    for (name, v) in m {
                        self.property(format!("properties.{name}"), name, scalar(v), limits)?;
                    }
                }
                other => {
                    return Err(EventError::new(
                        "properties",
                        format!("must be an object, got {}", kind(&other)),
                    ));
                }
            },
            _ => self.extra.push((key, value)),
        }
        Ok(())
    }

    fn metrics(&mut self, m: Map<String, Json>, limits: &Limits) -> Result<(), EventError> {
        for (name, v) in m {
            if v.is_null() {
                check_name(&format!("metrics.{name}"), &name, limits)?;
                continue;
            }
            let f = finite_number(&format!("metrics.{name}"), &v)?;
            self.metric(name, f, limits)?;
        }
        Ok(())
    }

    fn metric(&mut self, name: String, v: f64, limits: &Limits) -> Result<(), EventError> {
        let field = || format!("metrics.{name}");
        check_name(&field(), &name, limits)?;
        if !v.is_finite() {
            return Err(EventError::new(
                field(),
                "NaN and infinities are not accepted",
            ));
        }
        self.metrics.insert(name, v);
        Ok(())
    }

    fn property(
        &mut self,
        field: String,
        name: String,
        v: Scalar,
        limits: &Limits,
    ) -> Result<(), EventError> {
        check_name(&field, &name, limits)?;
        let value = match v {
            Scalar::Null => return Ok(()),
            Scalar::Bool(b) => Value::Bool(b),
            Scalar::Number(n) if n.is_finite() => Value::Number(n),
            Scalar::Number(_) => {
                return Err(EventError::new(field, "must be a finite number"));
            }
            Scalar::String(s) => {
                if s.len() > limits.max_string_len {
                    return Err(EventError::new(
                        field,
                        format!(
                            "is {} bytes long, more than the limit of {}",
                            s.len(),
                            limits.max_string_len
                        ),
                    ));
                }
                Value::String(s)
            }
            Scalar::Unsupported(kind) => {
                return Err(EventError::new(
                    field,
                    format!("must be a string, number or boolean, got {kind}"),
                ));
            }
        };
        if self.properties.insert(name, value.into()).is_some() {
            return Err(EventError::new(field, "property given twice"));
        }
        Ok(())
    }

    fn finish(
        mut self,
        policy: &TenantPolicy<'_>,
        limits: &Limits,
        now_ns: i64,
    ) -> Result<Event, EventError> {
        for (key, value) in std::mem::take(&mut self.extra) {
            match value {
                Json::Object(_) | Json::Array(_) => {
                    return Err(EventError::new(
                        key.clone(),
                        format!(
                            "unknown field `{key}` holds {}; put nested data under `properties` or `metrics`",
                            kind(&value)
                        ),
                    ));
                }
                v => self.property(key.clone(), key, scalar(v), limits)?,
            }
        }
        if let Some(v) = self.bare_value
            && self.metrics.insert("value".into(), v).is_some()
        {
            return Err(EventError::new("value", "conflicts with `metrics.value`"));
        }
        if self.metrics.len() > limits.max_metrics {
            return Err(EventError::new(
                "metrics",
                format!(
                    "{} metrics, more than the limit of {}",
                    self.metrics.len(),
                    limits.max_metrics
                ),
            ));
        }
        if self.properties.len() > limits.max_properties {
            return Err(EventError::new(
                "properties",
                format!(
                    "{} properties, more than the limit of {}",
                    self.properties.len(),
                    limits.max_properties
                ),
            ));
        }
        let r#type = match self.r#type {
            Some((_, t)) => t,
            None if !self.metrics.is_empty() => "reading".to_string(),
            None => {
                return Err(EventError::new(
                    "type",
                    "is required (or send metrics, which makes a `reading`)",
                ));
            }
        };
        let time = match self.time {
            Some((key, t)) => {
                if t > now_ns.saturating_add(limits.max_future_skew_ns) {
                    return Err(EventError::new(
                        key,
                        format!(
                            "is more than {} in the future",
                            crate::time::human_duration_ns(limits.max_future_skew_ns)
                        ),
                    ));
                }
                if policy.retention_ns > 0 && t < now_ns.saturating_sub(policy.retention_ns) {
                    return Err(EventError::new(
                        key,
                        format!(
                            "is older than the tenant's retention of {}",
                            crate::time::human_duration_ns(policy.retention_ns)
                        ),
                    ));
                }
                t
            }
            None => now_ns,
        };
        let (event_id, client_id) = match self.event_id {
            Some((_, id)) => (id, true),
            None => (crate::id::generate(), false),
        };
        Ok(Event {
            tenant: policy.tenant.to_string(),
            event_id,
            time,
            received_at: now_ns,
            r#type,
            source: self.source.map(|s| s.1),
            device_id: self.device_id.map(|s| s.1),
            user_id: self.user_id.map(|s| s.1),
            page_url: self.page_url.map(|s| s.1),
            metrics: self.metrics,
            properties: self.properties,
            client_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_764_000_000_000_000_000; // 2025-11-24

    fn norm(v: Json) -> Result<Event, EventError> {
        let p = TenantPolicy {
            tenant: "t1",
            retention_ns: 30 * 86_400 * 1_000_000_000,
        };
        normalize_event(v, &p, &Limits::default(), NOW)
    }

    #[test]
    fn sensor_reading_shapes() {
        for key in ["sensorId", "sensor_id", "device_id", "deviceId"] {
            let e = norm(
                json!({key: "sensor-001", "value": 23.5, "timestamp": "2025-11-23T10:00:00Z"}),
            )
            .unwrap();
            assert_eq!(e.device_id.as_deref(), Some("sensor-001"));
            assert_eq!(e.metrics["value"], 23.5);
            assert_eq!(e.r#type, "reading");
            assert_eq!(e.tenant, "t1");
            assert!(!e.client_id);
        }
    }

    #[test]
    fn telemetry_and_click_and_product() {
        let t = norm(json!({"device_id":"d","ts":1_763_999_000_000i64,"metrics":{"temperature":23.5,"humidity":45.2}})).unwrap();
        assert_eq!(t.time, 1_763_999_000_000_000_000);
        assert_eq!(t.metrics.len(), 2);
        let c = norm(json!({"event_id":"test_123","user_id":"user_1","event_type":"click","page_url":"https://example.com","time_stamp":"2025-11-23T20:00:00Z"})).unwrap();
        assert_eq!(
            (c.event_id.as_str(), c.r#type.as_str(), c.client_id),
            ("test_123", "click", true)
        );
        assert_eq!(c.page_url.as_deref(), Some("https://example.com"));
        let p = norm(json!({"id":"event_123","user_id":"user_456","event_type":"page_view","properties":{"page":"/dashboard","duration":"45"},"timestamp":1_763_990_000,"source":"web-app"})).unwrap();
        assert_eq!(
            p.properties["page"],
            Value::String("/dashboard".into()).into()
        );
        assert_eq!(p.source.as_deref(), Some("web-app"));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({"type":"x","metrics":{"t":"hot"}}), "metrics.t"),
            (json!({"type":"x","value":"NaN"}), "value"),
            (json!({"type":"x","timestamp":"soon"}), "timestamp"),
            (json!({"type":"x","ts": NOW + 7_200_000_000_000i64}), "ts"),
            (json!({"type":"x","time":"2020-01-01T00:00:00Z"}), "time"),
            (json!({"metrics":{}}), "type"),
            (json!({"type":"x","nested":{"a":1}}), "nested"),
            (json!({"type":"x","properties":{"a":[1]}}), "properties.a"),
            (
                json!({"type":"x","sensorId":"a","device_id":"b"}),
                "sensorId",
            ),
            (
                json!({"type":"x","device_id":"x".repeat(5000)}),
                "device_id",
            ),
            (json!({"type":"","value":1}), "type"),
            (json!({"type":"x","value":1,"metrics":{"value":2}}), "value"),
        ];
        for (body, field) in cases {
            let err = norm(body.clone()).unwrap_err();
            assert!(
                err.field == field || err.field.ends_with(field),
                "{body}: {err}"
            );
        }
    }

    #[test]
    fn missing_time_is_receive_time_and_extras_become_properties() {
        let e = norm(json!({"type":"signup","plan":"pro","tenant":"evil","seats":3})).unwrap();
        assert_eq!(e.time, NOW);
        assert_eq!(e.received_at, NOW);
        assert_eq!(e.tenant, "t1");
        assert_eq!(e.properties["tenant"], Value::String("evil".into()).into());
        assert_eq!(e.properties["seats"], Value::Number(3.0).into());
    }

    fn fields(t: &str) -> EventFields {
        EventFields {
            r#type: Some(t.into()),
            ..Default::default()
        }
    }

    #[test]
    fn typed_fields_follow_the_json_rules() {
        let p = TenantPolicy {
            tenant: "t1",
            retention_ns: 30 * 86_400 * 1_000_000_000,
        };
        let l = Limits::default();
        let typed = EventFields {
            event_id: Some("e1".into()),
            time: Some(NOW - 1_000),
            device_id: Some("d1".into()),
            metrics: vec![("temp".into(), 21.5)],
            properties: vec![
                ("ok".into(), Scalar::Bool(true)),
                ("gone".into(), Scalar::Null),
                ("n".into(), Scalar::Number(3.0)),
            ],
            ..Default::default()
        };
        let json = json!({"event_id":"e1","time":NOW - 1_000,"device_id":"d1",
            "metrics":{"temp":21.5},"properties":{"ok":true,"gone":null,"n":3}});
        // Epoch integers in ns are ns; the two paths give the same event.
        let a = normalize_fields(typed, &p, &l, NOW).unwrap();
        let b = normalize_event(json, &p, &l, NOW).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.r#type, "reading");
        assert!(a.client_id);

        let cases = [
            (
                EventFields {
                    metrics: vec![("bad".into(), f64::NAN)],
                    ..fields("x")
                },
                "metrics.bad",
            ),
            (
                EventFields {
                    properties: vec![("nested".into(), Scalar::Unsupported("an object"))],
                    ..fields("x")
                },
                "properties.nested",
            ),
            (
                EventFields {
                    properties: vec![("inf".into(), Scalar::Number(f64::INFINITY))],
                    ..fields("x")
                },
                "properties.inf",
            ),
            (
                EventFields {
                    time: Some(NOW + 7_200_000_000_000),
                    ..fields("x")
                },
                "time",
            ),
            (
                EventFields {
                    device_id: Some(String::new()),
                    ..fields("x")
                },
                "device_id",
            ),
            (fields("bad\ntype"), "type"),
            (EventFields::default(), "type"),
        ];
        for (f, field) in cases {
            let err = normalize_fields(f.clone(), &p, &l, NOW).unwrap_err();
            assert_eq!(err.field, field, "{f:?}: {err}");
        }
    }
}
