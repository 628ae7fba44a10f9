//! Live fan-out: what the processor applies is offered to its tenant's subscribers (SSE and
//! WebSocket) on three channels:
//! - `events`: every acknowledged event, in log order;
//! - `rollups`: after each event, the current 1-minute window of each of its metrics (for the
//!   event's device);
//! - `alerts`: alert transitions (opened, acknowledged, resolved).
//!
//! One bounded broadcast channel per tenant, so a subscriber can only ever see its own
//! tenant's messages, and a slow subscriber falls behind (and is told so) instead of growing
//! memory. Messages are built only while the tenant has subscribers.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use eddy_model::Event;
use eddy_model::time::format_rfc3339;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::alerts::AlertNotice;
use crate::rollup::{MetricAgg, Resolution};

/// Messages a subscriber may lag behind before it is dropped.
pub const FEED_CAPACITY: usize = 16_384;

/// A live channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Channel {
    Events,
    Rollups,
    Alerts,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Events, Channel::Rollups, Channel::Alerts];

    pub fn name(self) -> &'static str {
        match self {
            Channel::Events => "events",
            Channel::Rollups => "rollups",
            Channel::Alerts => "alerts",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// The current state of one series' window, sent on the `rollups` channel.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupUpdate {
    pub device_id: String,
    pub metric: String,
    pub resolution: Resolution,
    pub window_start: i64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub first: f64,
    pub last: f64,
}

impl RollupUpdate {
    pub(crate) fn new(
        device_id: &str,
        metric: &str,
        resolution: Resolution,
        start: i64,
        a: &MetricAgg,
    ) -> Self {
        Self {
            device_id: device_id.to_string(),
            metric: metric.to_string(),
            resolution,
            window_start: start,
            count: a.count,
            sum: a.sum,
            min: a.min,
            max: a.max,
            first: a.first.value,
            last: a.last.value,
        }
    }
}

/// One live message of a tenant.
#[derive(Debug, Clone, PartialEq)]
pub enum Live {
    Event(Event),
    Rollup(RollupUpdate),
    Alert(AlertNotice),
}

fn num(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

impl Live {
    pub fn channel(&self) -> Channel {
        match self {
            Live::Event(_) => Channel::Events,
            Live::Rollup(_) => Channel::Rollups,
            Live::Alert(_) => Channel::Alerts,
        }
    }

    /// The wire form: `{"type": "event"|"rollup"|"alert", "timestamp": RFC 3339, "data": {…}}`.
    /// Alerts carry at least `device_id`, `severity` and `message` in `data` (the shape
    /// device-telemetry dashboards expect), plus `event` (`opened`, `acknowledged`,
    /// `resolved`) and the whole alert.
    pub fn to_json(&self) -> Value {
        match self {
            Live::Event(e) => json!({
                "type": "event",
                "timestamp": format_rfc3339(e.time),
                "data": e.to_json(),
            }),
            Live::Rollup(r) => json!({
                "type": "rollup",
                "timestamp": format_rfc3339(r.window_start),
                "data": {
                    "device_id": r.device_id,
                    "metric": r.metric,
                    "resolution": r.resolution.name(),
                    "window_start": format_rfc3339(r.window_start),
                    "count": r.count,
                    "sum": num(r.sum),
                    "min": num(r.min),
                    "max": num(r.max),
                    "avg": num(r.sum / r.count.max(1) as f64),
                    "first": num(r.first),
                    "last": num(r.last),
                },
            }),
            Live::Alert(n) => {
                let mut data = n.alert.to_json();
                data["event"] = json!(n.transition.name());
                json!({
                    "type": "alert",
                    "timestamp": format_rfc3339(n.at),
                    "data": data,
                })
            }
        }
    }
}

/// What a subscriber asked for: channels, and optional device/type/metric filters. `type`
/// filters events only; device and metric filter every channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub channels: BTreeSet<Channel>,
    pub device_id: Option<String>,
    pub r#type: Option<String>,
    pub metric: Option<String>,
}

impl Default for Filter {
    /// Every channel, no filter.
    fn default() -> Self {
        Self {
            channels: Channel::ALL.into_iter().collect(),
            device_id: None,
            r#type: None,
            metric: None,
        }
    }
}

impl Filter {
    pub fn passes(&self, m: &Live) -> bool {
        if !self.channels.contains(&m.channel()) {
            return false;
        }
        let dev = |d: &str| self.device_id.as_deref().is_none_or(|want| want == d);
        let metric = |m: &str| self.metric.as_deref().is_none_or(|want| want == m);
        match m {
            Live::Event(e) => {
                dev(e.device_id.as_deref().unwrap_or(""))
                    && self.r#type.as_deref().is_none_or(|t| e.r#type == t)
                    && self
                        .metric
                        .as_deref()
                        .is_none_or(|m| e.metrics.contains_key(m))
            }
            Live::Rollup(r) => dev(&r.device_id) && metric(&r.metric),
            Live::Alert(n) => dev(&n.alert.device_id) && metric(&n.alert.metric),
        }
    }
}

/// Per-tenant broadcast channels of live messages.
#[derive(Debug, Default)]
pub struct Feed {
    senders: RwLock<HashMap<String, broadcast::Sender<Arc<Live>>>>,
}

impl Feed {
    /// A receiver of `tenant`'s messages from now on.
    pub fn subscribe(&self, tenant: &str) -> broadcast::Receiver<Arc<Live>> {
        if let Ok(s) = self.senders.read()
            && let Some(tx) = s.get(tenant)
        {
            return tx.subscribe();
        }
        match self.senders.write() {
            Ok(mut s) => s
                .entry(tenant.to_string())
                .or_insert_with(|| broadcast::channel(FEED_CAPACITY).0)
                .subscribe(),
            // A poisoned map: hand out a receiver whose sender is gone (the stream ends).
            Err(_) => broadcast::channel(1).1,
        }
    }

    /// Whether `tenant` has subscribers (so messages are worth building).
    pub(crate) fn watched(&self, tenant: &str) -> bool {
        self.senders
            .read()
            .is_ok_and(|s| s.get(tenant).is_some_and(|tx| tx.receiver_count() > 0))
    }

    /// Offers messages to `tenant`'s subscribers.
    pub(crate) fn publish(&self, tenant: &str, messages: impl IntoIterator<Item = Live>) {
        if let Ok(s) = self.senders.read()
            && let Some(tx) = s.get(tenant)
            && tx.receiver_count() > 0
        {
            for m in messages {
                let _ = tx.send(Arc::new(m));
            }
        }
    }

    /// Ends every subscription of a deleted tenant.
    pub(crate) fn drop_tenant(&self, tenant: &str) {
        if let Ok(mut s) = self.senders.write() {
            s.remove(tenant);
        }
    }
}
