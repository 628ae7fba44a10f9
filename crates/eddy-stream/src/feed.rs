//! Live fan-out: what the processor applies is offered to its tenant's subscribers on three
//! channels (the wire form is the service layer's, not this crate's):
//! - `events`: every acknowledged event, in log order;
//! - `rollups`: after each event, the current 1-minute window of each of its metrics (for the
//!   event's device);
//! - `alerts`: alert transitions (opened, acknowledged, resolved).
//!
//! One bounded broadcast channel per tenant and channel, so a subscriber can only ever see its
//! own tenant's messages and drains only the channels it asked for, and a slow subscriber falls
//! behind (and is told so) instead of growing memory. Messages of a channel are built only
//! while it has subscribers.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use eddy_model::Event;
use tokio::sync::broadcast;

use crate::alerts::AlertNotice;
use crate::rollup::{MetricAgg, Resolution};

/// Messages a subscriber may lag behind on the events or rollups channel before it is
/// dropped (alerts: 1024).
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

impl Live {
    pub fn channel(&self) -> Channel {
        match self {
            Live::Event(_) => Channel::Events,
            Live::Rollup(_) => Channel::Rollups,
            Live::Alert(_) => Channel::Alerts,
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

/// One tenant's broadcast channels, one per [`Channel`].
#[derive(Debug)]
struct Senders([broadcast::Sender<Arc<Live>>; 3]);

impl Senders {
    fn new() -> Self {
        Self(Channel::ALL.map(|c| broadcast::channel(capacity(c)).0))
    }

    fn of(&self, c: Channel) -> &broadcast::Sender<Arc<Live>> {
        &self.0[c as usize]
    }
}

fn capacity(c: Channel) -> usize {
    match c {
        Channel::Alerts => 1024,
        Channel::Events | Channel::Rollups => FEED_CAPACITY,
    }
}

/// A subscriber's receivers, one per channel it listens to; each channel is in order, and
/// each lags (and is reported) on its own.
#[derive(Debug)]
pub struct Subscription {
    receivers: Vec<broadcast::Receiver<Arc<Live>>>,
}

impl Subscription {
    /// The next message of any subscribed channel. Never resolves without channels.
    pub async fn recv(&mut self) -> Result<Arc<Live>, broadcast::error::RecvError> {
        if self.receivers.is_empty() {
            return std::future::pending().await;
        }
        // Start with a different channel each time, so a busy one cannot starve the others.
        self.receivers.rotate_left(1);
        let futures = self.receivers.iter_mut().map(|r| Box::pin(r.recv()));
        futures_util::future::select_all(futures).await.0
    }
}

/// Per-tenant, per-channel broadcast of live messages.
#[derive(Debug, Default)]
pub struct Feed {
    senders: RwLock<HashMap<String, Senders>>,
}

impl Feed {
    /// Receivers of `tenant`'s messages on `channels`, from now on.
    pub fn subscribe(&self, tenant: &str, channels: &BTreeSet<Channel>) -> Subscription {
        let make = |s: &Senders| Subscription {
            receivers: channels.iter().map(|c| s.of(*c).subscribe()).collect(),
        };
        if let Ok(s) = self.senders.read()
            && let Some(tx) = s.get(tenant)
        {
            return make(tx);
        }
        match self.senders.write() {
            Ok(mut s) => make(s.entry(tenant.to_string()).or_insert_with(Senders::new)),
            // A poisoned map: no receivers (the subscription stays silent).
            Err(_) => Subscription {
                receivers: Vec::new(),
            },
        }
    }

    /// Whether anyone listens to `tenant`'s `channel` (so messages are worth building).
    pub(crate) fn watched(&self, tenant: &str, channel: Channel) -> bool {
        self.senders.read().is_ok_and(|s| {
            s.get(tenant)
                .is_some_and(|tx| tx.of(channel).receiver_count() > 0)
        })
    }

    /// Offers messages to `tenant`'s subscribers of their channels.
    pub(crate) fn publish(&self, tenant: &str, messages: impl IntoIterator<Item = Live>) {
        if let Ok(s) = self.senders.read()
            && let Some(tx) = s.get(tenant)
        {
            for m in messages {
                let tx = tx.of(m.channel());
                if tx.receiver_count() > 0 {
                    let _ = tx.send(Arc::new(m));
                }
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
