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

use std::borrow::Cow;
use std::collections::BTreeMap;

use std::fmt;

use serde::Deserializer;
use serde::de::{self, Deserialize, IgnoredAny, MapAccess, SeqAccess, Visitor};

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

/// Validates one typed event with the rules JSON events follow. `now_ns` is the receive
/// time.
pub fn normalize_fields(
    f: EventFields,
    policy: &TenantPolicy<'_>,
    limits: &Limits,
    now_ns: i64,
) -> Result<Event, EventError> {
    let mut b = Builder::default();
    let slot = |key: &'static str, v: Option<String>, max: usize| {
        v.map(|v| checked_string(key, v, max).map(|v| (key, v)))
            .transpose()
    };
    b.event_id = slot("event_id", f.event_id, limits.max_id_len)?;
    b.r#type = slot("type", f.r#type, limits.max_name_len)?;
    if let Some((key, t)) = &b.r#type {
        check_name("", key, t, limits)?;
    }
    b.source = slot("source", f.source, limits.max_string_len)?;
    b.device_id = slot("device_id", f.device_id, limits.max_string_len)?;
    b.user_id = slot("user_id", f.user_id, limits.max_string_len)?;
    b.page_url = slot("page_url", f.page_url, limits.max_string_len)?;
    b.time = f.time.map(|t| ("time", t));
    for (name, v) in f.metrics {
        b.metric(name, v, limits)?;
    }
    for (name, v) in f.properties {
        b.property("properties.", name, v, limits)?;
    }
    b.finish(policy, limits, now_ns)
}

/// One event's fields as they are read, in any order, under any alias; [`Builder::finish`]
/// applies the rules that need the whole event.
#[derive(Default)]
pub(crate) struct Builder {
    event_id: Option<(&'static str, String)>,
    time: Option<(&'static str, i64)>,
    r#type: Option<(&'static str, String)>,
    source: Option<(&'static str, String)>,
    device_id: Option<(&'static str, String)>,
    user_id: Option<(&'static str, String)>,
    page_url: Option<(&'static str, String)>,
    metrics: BTreeMap<String, f64>,
    properties: BTreeMap<String, PropertyValue>,
    extra: Vec<(String, Raw)>,
    bare_value: Option<f64>,
}

/// Sets a once-only slot, refusing two spellings of the same field with different values.
fn set_once(
    slot: &mut Option<(&'static str, String)>,
    key: &'static str,
    v: String,
) -> Result<(), EventError> {
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

fn string_field(key: &str, v: Raw, max: usize) -> Result<Option<String>, EventError> {
    let s = match v {
        Raw::Null => return Ok(None),
        Raw::Str(s) => s,
        Raw::Num(n) => n.to_string(),
        other => {
            return Err(EventError::new(
                key,
                format!("must be a string, got {}", other.kind()),
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

impl From<Raw> for Scalar {
    fn from(v: Raw) -> Self {
        match v {
            Raw::Null => Scalar::Null,
            Raw::Bool(b) => Scalar::Bool(b),
            // serde_json numbers are always representable as f64 (no arbitrary precision).
            Raw::Num(n) => Scalar::Number(n.as_f64().unwrap_or(f64::NAN)),
            Raw::Str(s) => Scalar::String(s),
            Raw::Other(kind) => Scalar::Unsupported(kind),
        }
    }
}

/// Checks a name; errors name the field `{prefix}{name}` (or `prefix` alone when the name is
/// the value of a field, like `type`).
fn check_name(prefix: &str, field: &str, name: &str, limits: &Limits) -> Result<(), EventError> {
    let fail = |reason: String| Err(EventError::new(format!("{prefix}{field}"), reason));
    if name.is_empty() {
        return fail("name must not be empty".into());
    }
    if name.len() > limits.max_name_len {
        return fail(format!(
            "name is longer than the limit of {} bytes",
            limits.max_name_len
        ));
    }
    if name.chars().any(char::is_control) {
        return fail("name must not contain control characters".into());
    }
    Ok(())
}

fn finite_number(field: impl Fn() -> String, v: &Raw) -> Result<f64, EventError> {
    match v {
        Raw::Num(n) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .ok_or_else(|| EventError::new(field(), "must be a finite number")),
        // JSON cannot spell NaN/Inf as numbers, but clients spell them as strings.
        Raw::Str(s)
            if matches!(
                s.to_ascii_lowercase().as_str(),
                "nan" | "inf" | "-inf" | "infinity" | "-infinity" | "+inf"
            ) =>
        {
            Err(EventError::new(
                field(),
                "NaN and infinities are not accepted",
            ))
        }
        other => Err(EventError::new(
            field(),
            format!("must be a number, got {}", other.kind()),
        )),
    }
}

/// An unknown top-level field that holds an object or an array.
pub(crate) fn nested_field(key: &str, kind: &str) -> EventError {
    EventError::new(
        key,
        format!(
            "unknown field `{key}` holds {kind}; put nested data under `properties` or `metrics`"
        ),
    )
}

impl Builder {
    /// A top-level field other than `metrics` and `properties`.
    pub(crate) fn field(
        &mut self,
        key: &str,
        value: Raw,
        limits: &Limits,
    ) -> Result<(), EventError> {
        let string_slot = |key: &str| -> Option<(&'static str, usize)> {
            Some(match key {
                "event_id" => ("event_id", limits.max_id_len),
                "id" => ("id", limits.max_id_len),
                "eventId" => ("eventId", limits.max_id_len),
                "type" => ("type", limits.max_name_len),
                "event_type" => ("event_type", limits.max_name_len),
                "eventType" => ("eventType", limits.max_name_len),
                "source" => ("source", limits.max_string_len),
                "device_id" => ("device_id", limits.max_string_len),
                "deviceId" => ("deviceId", limits.max_string_len),
                "sensor_id" => ("sensor_id", limits.max_string_len),
                "sensorId" => ("sensorId", limits.max_string_len),
                "user_id" => ("user_id", limits.max_string_len),
                "userId" => ("userId", limits.max_string_len),
                "page_url" => ("page_url", limits.max_string_len),
                "pageUrl" => ("pageUrl", limits.max_string_len),
                _ => return None,
            })
        };
        if let Some((key, max)) = string_slot(key) {
            let Some(v) = string_field(key, value, max)? else {
                return Ok(());
            };
            let slot = match key {
                "event_id" | "id" | "eventId" => &mut self.event_id,
                "type" | "event_type" | "eventType" => {
                    check_name("", key, &v, limits)?;
                    &mut self.r#type
                }
                "source" => &mut self.source,
                "device_id" | "deviceId" | "sensor_id" | "sensorId" => &mut self.device_id,
                "user_id" | "userId" => &mut self.user_id,
                _ => &mut self.page_url,
            };
            return set_once(slot, key, v);
        }
        let time_key = match key {
            "time" => Some("time"),
            "timestamp" => Some("timestamp"),
            "time_stamp" => Some("time_stamp"),
            "ts" => Some("ts"),
            _ => None,
        };
        if let Some(key) = time_key {
            let ns = match &value {
                Raw::Null => return Ok(()),
                Raw::Str(s) => parse_time_str(s),
                Raw::Num(n) => match n.as_i64() {
                    Some(i) => epoch_int_to_ns(i),
                    None => n
                        .as_f64()
                        .map_or(Err("not a usable number".into()), epoch_float_to_ns),
                },
                other => Err(format!(
                    "must be an RFC 3339 string or an epoch number, got {}",
                    other.kind()
                )),
            }
            .map_err(|r| EventError::new(key, r))?;
            if let Some((prev_key, prev)) = &self.time
                && *prev != ns
            {
                return Err(EventError::new(key, format!("conflicts with `{prev_key}`")));
            }
            self.time = Some((key, ns));
            return Ok(());
        }
        match key {
            "value" => {
                if value != Raw::Null {
                    self.bare_value = Some(finite_number(|| "value".into(), &value)?);
                }
            }
            "metrics" | "properties" => {
                // Only as a value the parser did not stream in (it streams objects and null).
                return Err(EventError::new(
                    key,
                    format!("must be an object, got {}", value.kind()),
                ));
            }
            _ => self.extra.push((key.to_string(), value)),
        }
        Ok(())
    }

    /// One entry of `metrics` as JSON gives it.
    pub(crate) fn metric_value(
        &mut self,
        name: Cow<'_, str>,
        v: Raw,
        limits: &Limits,
    ) -> Result<(), EventError> {
        if v == Raw::Null {
            return check_name("metrics.", &name, &name, limits);
        }
        let f = finite_number(|| format!("metrics.{name}"), &v)?;
        self.metric(name.into_owned(), f, limits)
    }

    fn metric(&mut self, name: String, v: f64, limits: &Limits) -> Result<(), EventError> {
        check_name("metrics.", &name, &name, limits)?;
        if !v.is_finite() {
            return Err(EventError::new(
                format!("metrics.{name}"),
                "NaN and infinities are not accepted",
            ));
        }
        self.metrics.insert(name, v);
        Ok(())
    }

    /// A property; errors name the field `{prefix}{name}`.
    pub(crate) fn property(
        &mut self,
        prefix: &str,
        name: String,
        v: Scalar,
        limits: &Limits,
    ) -> Result<(), EventError> {
        check_name(prefix, &name, &name, limits)?;
        let field = || format!("{prefix}{name}");
        let value = match v {
            Scalar::Null => return Ok(()),
            Scalar::Bool(b) => Value::Bool(b),
            Scalar::Number(n) if n.is_finite() => Value::Number(n),
            Scalar::Number(_) => {
                return Err(EventError::new(field(), "must be a finite number"));
            }
            Scalar::String(s) => {
                if s.len() > limits.max_string_len {
                    return Err(EventError::new(
                        field(),
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
                    field(),
                    format!("must be a string, number or boolean, got {kind}"),
                ));
            }
        };
        match self.properties.entry(name) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(value.into());
                Ok(())
            }
            std::collections::btree_map::Entry::Occupied(slot) => Err(EventError::new(
                format!("{prefix}{}", slot.key()),
                "property given twice",
            )),
        }
    }

    pub(crate) fn finish(
        mut self,
        policy: &TenantPolicy<'_>,
        limits: &Limits,
        now_ns: i64,
    ) -> Result<Event, EventError> {
        for (key, value) in std::mem::take(&mut self.extra) {
            if let Raw::Other(kind) = value {
                return Err(nested_field(&key, kind));
            }
            self.property("", key, value.into(), limits)?;
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

/// One JSON value where a scalar is expected: objects and arrays are skipped and kept only
/// as their kind, for the error that names it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Raw {
    Null,
    Bool(bool),
    Num(serde_json::Number),
    Str(String),
    /// An object or an array ("an object", "an array").
    Other(&'static str),
}

impl Raw {
    /// How errors name the value's kind.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Raw::Null => "null",
            Raw::Bool(_) => "a boolean",
            Raw::Num(_) => "a number",
            Raw::Str(_) => "a string",
            Raw::Other(k) => k,
        }
    }

    pub(crate) fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Raw, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Raw::Other("an array"))
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

pub(crate) struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Num(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Num(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Raw, E> {
        // The JSON parser yields only finite numbers.
        Ok(serde_json::Number::from_f64(v).map_or(Raw::Other("a number"), Raw::Num))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Raw, A::Error> {
        Raw::skip_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Raw::Other("an object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::normalize_event;
    use serde_json::Value as Json;
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
