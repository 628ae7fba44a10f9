//! The store's vocabulary shared by its plans and its digests: the fields questions group
//! and filter by, and the counted answers. Plain data: nothing here runs a query (the
//! DataFusion side of `Field` is in `analytics`).

use serde_json::Value;

use crate::{Error, Result};

/// An event field analytics group or filter by: a column, or one property.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    Type,
    Source,
    DeviceId,
    UserId,
    PageUrl,
    Property(String),
}

impl Field {
    /// `type`, `source`, `device_id`, `user_id`, `page_url`, or `property:KEY` (also
    /// `properties.KEY`).
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "type" | "event_type" => Field::Type,
            "source" => Field::Source,
            "device_id" => Field::DeviceId,
            "user_id" => Field::UserId,
            "page_url" => Field::PageUrl,
            other => match other
                .strip_prefix("property:")
                .or_else(|| other.strip_prefix("properties."))
            {
                Some(k) if !k.is_empty() => Field::Property(k.to_string()),
                _ => {
                    return Err(Error::InvalidQuery(format!(
                        "`{s}` is not a field; use type, source, device_id, user_id, page_url or property:KEY"
                    )));
                }
            },
        })
    }

    /// The name [`Field::parse`] reads back.
    pub fn name(&self) -> String {
        match self {
            Field::Type => "type".into(),
            Field::Source => "source".into(),
            Field::DeviceId => "device_id".into(),
            Field::UserId => "user_id".into(),
            Field::PageUrl => "page_url".into(),
            Field::Property(k) => format!("property:{k}"),
        }
    }
}

/// A value with its event count and distinct users.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Count {
    pub value: Value,
    pub count: u64,
    pub users: u64,
}

/// The most frequent values of a field among some events.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Top {
    pub rows: Vec<Count>,
    /// Events that have the field (the denominator of shares).
    pub with_value: u64,
    /// Events without it.
    pub without_value: u64,
    /// Distinct values.
    pub distinct: u64,
}

/// Totals and top lists of a time range.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    pub events: u64,
    pub users: u64,
    pub devices: u64,
    /// Events of type `error`.
    pub errors: u64,
    /// Events received more than the allowed lateness after their time.
    pub late: u64,
    pub by_type: Vec<Count>,
    pub top_pages: Vec<Count>,
    pub top_sources: Vec<Count>,
}

/// One group's series.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Group {
    /// `None` for "other".
    pub value: Option<Value>,
    /// What ranked it: events (count, metric samples) or distinct users over the range.
    pub total: u64,
    /// (bucket start ns, value), buckets without events left out.
    pub points: Vec<(i64, f64)>,
}
