//! The one event record and the log entry envelope, as protobuf messages (`prost` derive, no
//! build step). Field numbers are the on-disk contract: never reuse or renumber a tag.

use std::collections::BTreeMap;

/// A normalised event: what every accepted payload shape becomes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Tenant id, always taken from the API key, never from the body.
    #[prost(string, tag = "1")]
    pub tenant: String,
    /// Client-given id (used for deduplication) or a generated UUIDv7.
    #[prost(string, tag = "2")]
    pub event_id: String,
    /// Event time, ns since the Unix epoch (UTC).
    #[prost(int64, tag = "3")]
    pub time: i64,
    /// When Eddy received the event, ns since the Unix epoch (UTC).
    #[prost(int64, tag = "4")]
    pub received_at: i64,
    /// Event type, e.g. `reading`, `click`, `page_view`, `signup`.
    #[prost(string, tag = "5")]
    pub r#type: String,
    #[prost(string, optional, tag = "6")]
    pub source: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub device_id: Option<String>,
    #[prost(string, optional, tag = "8")]
    pub user_id: Option<String>,
    #[prost(string, optional, tag = "9")]
    pub page_url: Option<String>,
    /// Numeric measurements, name → finite f64.
    #[prost(btree_map = "string, double", tag = "10")]
    pub metrics: BTreeMap<String, f64>,
    /// Free-form attributes, name → string/number/bool.
    #[prost(btree_map = "string, message", tag = "11")]
    pub properties: BTreeMap<String, PropertyValue>,
    /// True when the client supplied `event_id` (only those take part in deduplication).
    #[prost(bool, tag = "12")]
    pub client_id: bool,
}

/// A property value: string, number or bool.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PropertyValue {
    #[prost(oneof = "Value", tags = "1, 2, 3")]
    pub value: Option<Value>,
}

/// The kinds a property can hold.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    #[prost(string, tag = "1")]
    String(String),
    #[prost(double, tag = "2")]
    Number(f64),
    #[prost(bool, tag = "3")]
    Bool(bool),
}

impl From<Value> for PropertyValue {
    fn from(v: Value) -> Self {
        Self { value: Some(v) }
    }
}

/// Marks that a tenant and all its data were deleted; consumers drop what they hold for it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TenantDeleted {
    #[prost(string, tag = "1")]
    pub tenant: String,
    #[prost(int64, tag = "2")]
    pub deleted_at: i64,
}

/// A tenant's alert rule was created, replaced or deleted (`/api/v1/rules`). Rule changes go
/// through the log so that the stream processor applies them at a definite point of the event
/// stream: replay after a crash reaches exactly the same rules and alerts.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RuleChange {
    #[prost(string, tag = "1")]
    pub tenant: String,
    #[prost(string, tag = "2")]
    pub rule_id: String,
    /// The rule as JSON (the stream processor's rule format); `None` deletes the rule.
    #[prost(string, optional, tag = "3")]
    pub rule_json: Option<String>,
    /// When the change was requested, ns since the Unix epoch.
    #[prost(int64, tag = "4")]
    pub at: i64,
}

/// Someone acknowledged or resolved an alert (`POST /api/v1/alerts/{id}/…`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AlertAction {
    #[prost(string, tag = "1")]
    pub tenant: String,
    #[prost(string, tag = "2")]
    pub alert_id: String,
    /// `acknowledge` or `resolve`.
    #[prost(string, tag = "3")]
    pub action: String,
    #[prost(int64, tag = "4")]
    pub at: i64,
    /// Free text from the caller, kept on the alert.
    #[prost(string, optional, tag = "5")]
    pub note: Option<String>,
}

/// Several events of one tenant in one record (record format 2): the columns of
/// [`crate::columns`] as an Arrow IPC stream.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EventBatch {
    /// The columns' format ([`crate::columns::FORMAT`]); a reader refuses one it does not know.
    #[prost(uint32, tag = "1")]
    pub format: u32,
    #[prost(string, tag = "2")]
    pub tenant: String,
    /// Number of events (rows of the batch).
    #[prost(uint32, tag = "3")]
    pub count: u32,
    /// The Arrow IPC stream: schema, one record batch, end marker.
    #[prost(bytes = "bytes", tag = "4")]
    pub columns: bytes::Bytes,
}

/// One record of the log.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogEntry {
    #[prost(oneof = "Entry", tags = "1, 2, 3, 4, 5")]
    pub entry: Option<Entry>,
}

/// What a log record carries.
// Events are by far the common case; boxing them would cost an allocation per event to save
// space on rare tombstones.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Entry {
    #[prost(message, tag = "1")]
    Event(Event),
    #[prost(message, tag = "2")]
    TenantDeleted(TenantDeleted),
    #[prost(message, tag = "3")]
    RuleChange(RuleChange),
    #[prost(message, tag = "4")]
    AlertAction(AlertAction),
    #[prost(message, tag = "5")]
    Events(EventBatch),
}

impl Event {
    /// The event as JSON with the data model's field names (`time` as RFC 3339).
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("event_id".into(), self.event_id.clone().into());
        m.insert("time".into(), crate::time::format_rfc3339(self.time).into());
        m.insert(
            "received_at".into(),
            crate::time::format_rfc3339(self.received_at).into(),
        );
        m.insert("type".into(), self.r#type.clone().into());
        for (k, v) in [
            ("source", &self.source),
            ("device_id", &self.device_id),
            ("user_id", &self.user_id),
            ("page_url", &self.page_url),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), v.clone().into());
            }
        }
        let metrics: serde_json::Map<_, _> = self
            .metrics
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    serde_json::Number::from_f64(*v).map_or(serde_json::Value::Null, Into::into),
                )
            })
            .collect();
        m.insert("metrics".into(), metrics.into());
        let props: serde_json::Map<_, _> =
            self.properties
                .iter()
                .map(|(k, v)| {
                    let j = match &v.value {
                        Some(Value::String(s)) => s.clone().into(),
                        Some(Value::Number(n)) => serde_json::Number::from_f64(*n)
                            .map_or(serde_json::Value::Null, Into::into),
                        Some(Value::Bool(b)) => (*b).into(),
                        None => serde_json::Value::Null,
                    };
                    (k.clone(), j)
                })
                .collect();
        m.insert("properties".into(), props.into());
        serde_json::Value::Object(m)
    }
}
