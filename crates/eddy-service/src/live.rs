//! Live subscriptions of the caller's tenant, on three channels — `events` (every acknowledged
//! event, log order), `rollups` (the current 1-minute window of each metric an event touched)
//! and `alerts` (opened, acknowledged, resolved) — with optional device, type (events only)
//! and metric filters. Messages are typed ([`LiveMessage`]); front ends frame them (SSE,
//! WebSocket, webhooks).
//!
//! A subscriber that falls more than the feed's capacity behind is told ([`Next::Lagged`]) and
//! its subscription ends: memory never grows for a slow reader.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use eddy_model::time::rfc3339;
use serde::Serialize;

use crate::Result;
use crate::alerts::AlertView;
use crate::auth::{Principal, Scope};

pub use eddy_stream::alerts::Transition;
pub use eddy_stream::feed::RollupUpdate;
pub use eddy_stream::{AlertNotice, Channel, Filter, Live};

/// What a live source yields.
#[derive(Debug)]
pub enum Received {
    Message(Arc<Live>),
    /// The subscriber fell this many messages behind.
    Lagged(u64),
    /// The feed is gone (the tenant was deleted, or the server stops).
    Closed,
}

/// One subscription to a tenant's channels.
#[async_trait]
pub trait LiveSource: Send {
    async fn recv(&mut self) -> Received;
}

/// Where live messages come from (the in-process processor's feed today).
pub trait LiveFeed: Send + Sync + std::fmt::Debug {
    /// A subscription to `tenant`'s messages on `channels`, from now on.
    fn subscribe(&self, tenant: &str, channels: &BTreeSet<Channel>) -> Box<dyn LiveSource>;
}

/// The current state of one series' 1-minute window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollupView {
    pub device_id: String,
    pub metric: String,
    pub resolution: &'static str,
    #[serde(serialize_with = "rfc3339")]
    pub window_start: i64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    pub first: f64,
    pub last: f64,
}

/// An alert transition: the alert and what happened to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    /// `opened`, `acknowledged` or `resolved`.
    pub event: Transition,
    #[serde(flatten)]
    pub alert: AlertView,
}

/// A live message: `{"type": "event"|"rollup"|"alert", "timestamp": RFC 3339, "data": …}`.
/// Alerts carry at least `device_id`, `severity` and `message` in `data` (the shape
/// device-telemetry dashboards expect), plus `event` and the whole alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum LiveMessage {
    Event {
        #[serde(serialize_with = "rfc3339")]
        timestamp: i64,
        /// The event in the data model's JSON form.
        data: serde_json::Value,
    },
    Rollup {
        #[serde(serialize_with = "rfc3339")]
        timestamp: i64,
        data: RollupView,
    },
    Alert {
        #[serde(serialize_with = "rfc3339")]
        timestamp: i64,
        data: Box<AlertEvent>,
    },
}

impl LiveMessage {
    /// The message's `type`: `event`, `rollup` or `alert`.
    pub fn kind(&self) -> &'static str {
        match self {
            LiveMessage::Event { .. } => "event",
            LiveMessage::Rollup { .. } => "rollup",
            LiveMessage::Alert { .. } => "alert",
        }
    }
}

impl From<&Live> for LiveMessage {
    fn from(m: &Live) -> Self {
        match m {
            Live::Event(e) => LiveMessage::Event {
                timestamp: e.time,
                data: e.to_json(),
            },
            Live::Rollup(r) => LiveMessage::Rollup {
                timestamp: r.window_start,
                data: RollupView {
                    device_id: r.device_id.clone(),
                    metric: r.metric.clone(),
                    resolution: r.resolution.name(),
                    window_start: r.window_start,
                    count: r.count,
                    sum: r.sum,
                    min: r.min,
                    max: r.max,
                    avg: r.sum / r.count.max(1) as f64,
                    first: r.first,
                    last: r.last,
                },
            },
            Live::Alert(n) => LiveMessage::from(n),
        }
    }
}

impl From<&AlertNotice> for LiveMessage {
    fn from(n: &AlertNotice) -> Self {
        LiveMessage::Alert {
            timestamp: n.at,
            data: Box::new(AlertEvent {
                event: n.transition,
                alert: AlertView::from(n.alert.clone()),
            }),
        }
    }
}

/// What a subscription yields next.
#[derive(Debug)]
pub enum Next {
    Message(LiveMessage),
    /// Fell this many messages behind: the subscription is over (reconnect to resume).
    Lagged(u64),
    Closed,
}

/// A subscription with its filter.
pub struct Subscription {
    source: Box<dyn LiveSource>,
    filter: Filter,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next message that passes the filter.
    pub async fn next(&mut self) -> Next {
        loop {
            match self.source.recv().await {
                Received::Message(m) if self.filter.passes(&m) => {
                    return Next::Message(LiveMessage::from(m.as_ref()));
                }
                Received::Message(_) => continue,
                Received::Lagged(n) => return Next::Lagged(n),
                Received::Closed => return Next::Closed,
            }
        }
    }

    pub fn filter(&self) -> &Filter {
        &self.filter
    }
}

/// Channels by name (`events`, `rollups`, `alerts`), or which name is not one.
pub fn parse_channels(
    list: impl IntoIterator<Item = impl AsRef<str>>,
) -> Result<BTreeSet<Channel>> {
    let mut out = BTreeSet::new();
    for c in list {
        let c = c.as_ref().trim();
        out.insert(Channel::parse(c).ok_or_else(|| {
            crate::Error::invalid(
                "invalid_parameter",
                format!("`channels`: `{c}` is not a channel; use events, rollups or alerts"),
            )
        })?);
    }
    Ok(out)
}

/// The live service.
#[derive(Debug)]
pub struct LiveService {
    feed: Arc<dyn LiveFeed>,
}

impl LiveService {
    pub fn new(feed: Arc<dyn LiveFeed>) -> Self {
        Self { feed }
    }

    /// A subscription of the caller's tenant, from now on.
    pub fn subscribe(&self, p: &Principal, filter: Filter) -> Result<Subscription> {
        let p = p.require(Scope::Read)?;
        Ok(Subscription {
            source: self.feed.subscribe(&p.tenant_id, &filter.channels),
            filter,
        })
    }

    /// Changes what `sub` passes: the same source when the channels stay (nothing is missed),
    /// a new one from now on when they change.
    pub fn refilter(&self, p: &Principal, sub: &mut Subscription, filter: Filter) -> Result<()> {
        let p = p.require(Scope::Read)?;
        if filter.channels != sub.filter.channels {
            sub.source = self.feed.subscribe(&p.tenant_id, &filter.channels);
        }
        sub.filter = filter;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;

    use tokio::sync::mpsc;

    use super::*;

    /// A feed whose subscriptions yield what the test queued, and count how often it was
    /// subscribed to.
    #[derive(Debug, Default)]
    pub(crate) struct FakeFeed {
        pub(crate) queued: Mutex<Vec<Received>>,
        pub(crate) subscriptions: Mutex<Vec<(String, BTreeSet<Channel>)>>,
    }

    struct Queue(mpsc::UnboundedReceiver<Received>);

    #[async_trait]
    impl LiveSource for Queue {
        async fn recv(&mut self) -> Received {
            self.0.recv().await.unwrap_or(Received::Closed)
        }
    }

    impl LiveFeed for FakeFeed {
        fn subscribe(&self, tenant: &str, channels: &BTreeSet<Channel>) -> Box<dyn LiveSource> {
            self.subscriptions
                .lock()
                .unwrap()
                .push((tenant.to_string(), channels.clone()));
            let (tx, rx) = mpsc::unbounded_channel();
            for r in self.queued.lock().unwrap().drain(..) {
                let _ = tx.send(r);
            }
            Box::new(Queue(rx))
        }
    }

    fn event(device: &str, ty: &str) -> Received {
        Received::Message(Arc::new(Live::Event(eddy_model::Event {
            event_id: format!("{device}-{ty}"),
            r#type: ty.into(),
            device_id: Some(device.into()),
            time: 1_700_000_000_000_000_000,
            ..Default::default()
        })))
    }

    fn principal(scopes: &[Scope]) -> Principal {
        Principal {
            tenant_id: "t1".into(),
            key_id: "k".into(),
            scopes: scopes.iter().copied().collect(),
        }
    }

    #[tokio::test]
    async fn a_subscription_passes_what_its_filter_wants_then_reports_lag() {
        let feed = Arc::new(FakeFeed::default());
        *feed.queued.lock().unwrap() = vec![
            event("d2", "reading"),
            event("d1", "click"),
            event("d1", "reading"),
            Received::Lagged(7),
        ];
        let live = LiveService::new(feed.clone());
        let filter = Filter {
            device_id: Some("d1".into()),
            r#type: Some("reading".into()),
            ..Filter::default()
        };
        let mut sub = live.subscribe(&principal(&[Scope::Read]), filter).unwrap();
        let Next::Message(m) = sub.next().await else {
            panic!("a message")
        };
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["type"], "event");
        assert_eq!(json["data"]["event_id"], "d1-reading");
        assert!(json["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(matches!(sub.next().await, Next::Lagged(7)));
        assert_eq!(feed.subscriptions.lock().unwrap()[0].0, "t1");

        // A new filter on the same channels keeps the source; other channels subscribe anew.
        let same = Filter {
            device_id: Some("d2".into()),
            ..Filter::default()
        };
        live.refilter(&principal(&[Scope::Read]), &mut sub, same)
            .unwrap();
        assert_eq!(feed.subscriptions.lock().unwrap().len(), 1);
        let alerts_only = Filter {
            channels: BTreeSet::from([Channel::Alerts]),
            ..Filter::default()
        };
        live.refilter(&principal(&[Scope::Read]), &mut sub, alerts_only)
            .unwrap();
        let subs = feed.subscriptions.lock().unwrap();
        assert_eq!(subs.len(), 2);
        assert_eq!(subs[1].1, BTreeSet::from([Channel::Alerts]));
    }

    #[test]
    fn live_feeds_need_the_read_scope() {
        let live = LiveService::new(Arc::new(FakeFeed::default()));
        let e = live
            .subscribe(&principal(&[Scope::Write]), Filter::default())
            .unwrap_err();
        assert!(matches!(e, crate::Error::PermissionDenied(_)), "{e:?}");
    }
}
