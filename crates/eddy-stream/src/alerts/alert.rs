//! Alerts as the API and the live feeds see them: an alert, its status, the transitions it goes
//! through and the notice of one transition. Pure data: must not touch rules' detectors or the
//! state machine that moves alerts.

use serde::{Deserialize, Serialize};

use crate::alerts::rule::Severity;

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Acknowledged,
    Resolved,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Acknowledged => "acknowledged",
            Status::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Status::Open, Status::Acknowledged, Status::Resolved]
            .into_iter()
            .find(|v| v.name() == s)
    }
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: String,
    pub rule_id: String,
    pub rule_name: String,
    pub rule_kind: String,
    /// `""` for events without a device.
    pub device_id: String,
    pub metric: String,
    pub severity: Severity,
    pub status: Status,
    pub message: String,
    /// The latest anomalous value (none for dead-man alerts).
    pub value: Option<f64>,
    /// What the detector expected (z-score/EWMA: the baseline mean).
    pub expected: Option<f64>,
    /// Distance from the baseline in standard deviations (z-score/EWMA).
    pub score: Option<f64>,
    /// Anomalous points since it opened.
    pub occurrences: u64,
    /// Event time of the point that opened it (dead-man: when the silence was noticed).
    pub opened_at: i64,
    pub last_triggered_at: i64,
    pub acknowledged_at: Option<i64>,
    pub resolved_at: Option<i64>,
    /// `auto`, `manual`, `data_resumed`, `rule_changed` or `rule_deleted`.
    pub resolution: Option<String>,
    /// Note given with the last acknowledge/resolve request.
    pub note: Option<String>,
}

impl Alert {
    pub fn is_active(&self) -> bool {
        self.status != Status::Resolved
    }
}

/// What happened to an alert (what live feeds and webhooks are told).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    Opened,
    Acknowledged,
    Resolved,
}

impl Transition {
    pub fn name(self) -> &'static str {
        match self {
            Transition::Opened => "opened",
            Transition::Acknowledged => "acknowledged",
            Transition::Resolved => "resolved",
        }
    }
}

/// An alert transition of one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertNotice {
    pub tenant: String,
    pub transition: Transition,
    /// When it happened, ns.
    pub at: i64,
    pub alert: Alert,
}

/// Parses `alert-<n>`.
pub fn alert_seq(id: &str) -> Option<u64> {
    id.strip_prefix("alert-")?.parse().ok()
}
