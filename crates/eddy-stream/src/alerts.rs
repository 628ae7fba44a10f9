//! Alert rules and alerts of one tenant (pure state, no I/O, checkpointed with the rollups).
//!
//! **Rules** (`/api/v1/rules`) pick series by device and metric (empty lists = all) and say
//! what is anomalous:
//! - `zscore`: the point against the rolling mean/σ of the series' last `window` points
//!   (default 100; `threshold` 3σ; fires only after `min_points`, default 20);
//! - `ewma`: the same test against an exponentially weighted mean/variance (`alpha`, default
//!   2/101 — the same memory as a 100-point window);
//! - `threshold`: `op` `>` / `<` a `value`, or `outside` `[min, max]`;
//! - `deadman`: no point of a series for `minutes` (judged by receive time against the wall
//!   clock, checked every few seconds while the processor is caught up with the log).
//!
//! Every tenant starts with the rule [`DEFAULT_RULE_ID`]: z-score, all devices and metrics,
//! severity `warning`. It can be edited, disabled or deleted like any other rule.
//!
//! **Alerts.** At most one alert per (rule, device, metric) is active (`open` or
//! `acknowledged`); further anomalous points update it (`occurrences`, `value`,
//! `last_triggered_at`) instead of opening new ones. `resolve_after` (default 5) consecutive
//! normal points resolve it (`resolution: "auto"`); a dead-man alert resolves on the next point
//! (`"data_resumed"`). Acknowledge and resolve requests arrive through the log like events, so
//! replay after a crash rebuilds exactly the same alerts. Editing or deleting a rule resolves
//! its active alerts (`"rule_changed"`, `"rule_deleted"`) and restarts its detectors. The last
//! [`MAX_ALERTS`] alerts are kept; beyond that the oldest resolved ones are forgotten, and when
//! all are active, new ones are suppressed and counted (`suppressed`).

use std::collections::{BTreeMap, HashMap};

use eddy_model::Event;
use eddy_model::time::format_rfc3339;
use serde::{Deserialize, Serialize};

use crate::detect::{DetectorConfig, EWMA_ALPHA, Ewma, ZScore};

/// Id of the rule every tenant starts with.
pub const DEFAULT_RULE_ID: &str = "default-zscore";
/// Alerts kept per tenant (active ones and the most recent resolved ones).
pub const MAX_ALERTS: usize = 10_000;
/// Rules a tenant may have.
pub const MAX_RULES: usize = 100;
/// Series state of a rule that saw no point for this long (ns) and has no active alert is
/// dropped (its detector starts afresh if the series comes back).
pub const IDLE_SERIES_NS: i64 = 7 * 86_400 * 1_000_000_000;

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Severity::Info, Severity::Warning, Severity::Critical]
            .into_iter()
            .find(|v| v.name() == s)
    }
}

/// Comparison of a threshold rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ThresholdOp {
    #[serde(rename = ">")]
    Above,
    #[serde(rename = "<")]
    Below,
    #[serde(rename = "outside")]
    Outside,
}

/// What a rule tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuleKind {
    Zscore {
        window: usize,
        threshold: f64,
        min_points: usize,
    },
    Ewma {
        alpha: f64,
        threshold: f64,
        min_points: usize,
    },
    Threshold {
        op: ThresholdOp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
    },
    Deadman {
        minutes: f64,
    },
}

impl RuleKind {
    pub fn name(&self) -> &'static str {
        match self {
            RuleKind::Zscore { .. } => "zscore",
            RuleKind::Ewma { .. } => "ewma",
            RuleKind::Threshold { .. } => "threshold",
            RuleKind::Deadman { .. } => "deadman",
        }
    }
}

/// One alert rule of a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub name: String,
    #[serde(flatten)]
    pub kind: RuleKind,
    /// Devices the rule watches; empty = all.
    pub devices: Vec<String>,
    /// Metrics the rule watches; empty = all.
    pub metrics: Vec<String>,
    pub severity: Severity,
    /// Consecutive normal points that resolve an active alert.
    pub resolve_after: u32,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A rule as the API takes it: every field optional, checked by [`RuleSpec::validate`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_after: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_points: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minutes: Option<f64>,
}

/// Why a rule was refused: the field and the reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{field}`: {reason}")]
pub struct RuleError {
    pub field: &'static str,
    pub reason: String,
}

fn rule_err(field: &'static str, reason: impl Into<String>) -> RuleError {
    RuleError {
        field,
        reason: reason.into(),
    }
}

fn positive(field: &'static str, v: f64) -> Result<f64, RuleError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(rule_err(field, "must be a positive number"))
    }
}

fn names(field: &'static str, v: Option<Vec<String>>) -> Result<Vec<String>, RuleError> {
    let mut v = v.unwrap_or_default();
    if v.len() > 1000 {
        return Err(rule_err(field, "at most 1000 entries"));
    }
    if let Some(bad) = v.iter().find(|s| s.is_empty() || s.len() > 256) {
        return Err(rule_err(
            field,
            format!("`{bad}`: entries are 1 to 256 characters"),
        ));
    }
    v.sort();
    v.dedup();
    Ok(v)
}

impl RuleSpec {
    /// Checks every field and builds the rule `id`, created (or last changed) at `at`.
    pub fn validate(self, id: &str, created_at: i64, at: i64) -> Result<Rule, RuleError> {
        let kind_name = self
            .kind
            .as_deref()
            .ok_or_else(|| rule_err("kind", "required: zscore, ewma, threshold or deadman"))?;
        // Fields that belong to other kinds are refused rather than silently ignored.
        let own: &[&str] = match kind_name {
            "zscore" => &["window", "threshold", "min_points"],
            "ewma" => &["alpha", "threshold", "min_points"],
            "threshold" => &["op", "value", "min", "max"],
            "deadman" => &["minutes"],
            other => {
                return Err(rule_err(
                    "kind",
                    format!("`{other}`: use zscore, ewma, threshold or deadman"),
                ));
            }
        };
        let given = [
            ("window", self.window.is_some()),
            ("threshold", self.threshold.is_some()),
            ("min_points", self.min_points.is_some()),
            ("alpha", self.alpha.is_some()),
            ("op", self.op.is_some()),
            ("value", self.value.is_some()),
            ("min", self.min.is_some()),
            ("max", self.max.is_some()),
            ("minutes", self.minutes.is_some()),
        ];
        if let Some((field, _)) = given.iter().find(|(f, g)| *g && !own.contains(f)) {
            return Err(rule_err(
                field,
                format!("does not apply to {kind_name} rules"),
            ));
        }
        let threshold = positive("threshold", self.threshold.unwrap_or(3.0))?;
        let kind = match kind_name {
            "zscore" => {
                let window = self.window.unwrap_or(100);
                if !(2..=10_000).contains(&window) {
                    return Err(rule_err("window", "between 2 and 10000 points"));
                }
                let min_points = self.min_points.unwrap_or(20.min(window));
                if min_points == 0 || min_points > window {
                    return Err(rule_err("min_points", "between 1 and `window`"));
                }
                RuleKind::Zscore {
                    window,
                    threshold,
                    min_points,
                }
            }
            "ewma" => {
                let alpha = self.alpha.unwrap_or(EWMA_ALPHA);
                if !(alpha.is_finite() && alpha > 0.0 && alpha <= 1.0) {
                    return Err(rule_err("alpha", "in (0, 1]"));
                }
                let min_points = self.min_points.unwrap_or(20);
                if !(1..=100_000).contains(&min_points) {
                    return Err(rule_err("min_points", "between 1 and 100000"));
                }
                RuleKind::Ewma {
                    alpha,
                    threshold,
                    min_points,
                }
            }
            "threshold" => {
                let finite = |field: &'static str, v: Option<f64>| {
                    v.filter(|x| x.is_finite())
                        .ok_or_else(|| rule_err(field, "required: a finite number"))
                };
                let refuse = |field: &'static str, v: Option<f64>, op: &str| match v {
                    Some(_) => Err(rule_err(field, format!("does not apply to `{op}`"))),
                    None => Ok(()),
                };
                match self.op.as_deref() {
                    Some(o @ (">" | "<")) => {
                        refuse("min", self.min, o)?;
                        refuse("max", self.max, o)?;
                        RuleKind::Threshold {
                            op: if o == ">" {
                                ThresholdOp::Above
                            } else {
                                ThresholdOp::Below
                            },
                            value: Some(finite("value", self.value)?),
                            min: None,
                            max: None,
                        }
                    }
                    Some("outside") => {
                        refuse("value", self.value, "outside")?;
                        let (min, max) = (finite("min", self.min)?, finite("max", self.max)?);
                        if min >= max {
                            return Err(rule_err("max", "must be greater than `min`"));
                        }
                        RuleKind::Threshold {
                            op: ThresholdOp::Outside,
                            value: None,
                            min: Some(min),
                            max: Some(max),
                        }
                    }
                    Some(other) => {
                        return Err(rule_err("op", format!("`{other}`: use >, < or outside")));
                    }
                    None => return Err(rule_err("op", "required: >, < or outside")),
                }
            }
            _ => {
                let minutes = positive(
                    "minutes",
                    self.minutes
                        .ok_or_else(|| rule_err("minutes", "required: minutes without data"))?,
                )?;
                if minutes > 10_080.0 {
                    return Err(rule_err("minutes", "at most 10080 (7 days)"));
                }
                RuleKind::Deadman { minutes }
            }
        };
        let severity = match self.severity.as_deref() {
            None => Severity::Warning,
            Some(s) => Severity::parse(s).ok_or_else(|| {
                rule_err("severity", format!("`{s}`: use info, warning or critical"))
            })?,
        };
        let resolve_after = self.resolve_after.unwrap_or(5);
        if !(1..=10_000).contains(&resolve_after) {
            return Err(rule_err("resolve_after", "between 1 and 10000 points"));
        }
        let name = self.name.unwrap_or_else(|| id.to_string());
        if name.is_empty() || name.chars().count() > 200 {
            return Err(rule_err("name", "1 to 200 characters"));
        }
        Ok(Rule {
            id: id.to_string(),
            name,
            kind,
            devices: names("devices", self.devices)?,
            metrics: names("metrics", self.metrics)?,
            severity,
            resolve_after,
            enabled: self.enabled.unwrap_or(true),
            created_at,
            updated_at: at,
        })
    }
}

impl Rule {
    /// The rule every tenant starts with.
    pub fn default_zscore(at: i64) -> Self {
        Rule {
            id: DEFAULT_RULE_ID.into(),
            name: "z-score on every metric".into(),
            kind: RuleKind::Zscore {
                window: 100,
                threshold: 3.0,
                min_points: 20,
            },
            devices: Vec::new(),
            metrics: Vec::new(),
            severity: Severity::Warning,
            resolve_after: 5,
            enabled: true,
            created_at: at,
            updated_at: at,
        }
    }

    /// The rule as the API's input fields (what a merge patch applies to).
    pub fn to_spec(&self) -> RuleSpec {
        let mut s = RuleSpec {
            name: Some(self.name.clone()),
            kind: Some(self.kind.name().into()),
            devices: Some(self.devices.clone()),
            metrics: Some(self.metrics.clone()),
            severity: Some(self.severity.name().into()),
            resolve_after: Some(self.resolve_after),
            enabled: Some(self.enabled),
            ..RuleSpec::default()
        };
        match &self.kind {
            RuleKind::Zscore {
                window,
                threshold,
                min_points,
            } => {
                s.window = Some(*window);
                s.threshold = Some(*threshold);
                s.min_points = Some(*min_points);
            }
            RuleKind::Ewma {
                alpha,
                threshold,
                min_points,
            } => {
                s.alpha = Some(*alpha);
                s.threshold = Some(*threshold);
                s.min_points = Some(*min_points);
            }
            RuleKind::Threshold {
                op,
                value,
                min,
                max,
            } => {
                s.op = Some(
                    match op {
                        ThresholdOp::Above => ">",
                        ThresholdOp::Below => "<",
                        ThresholdOp::Outside => "outside",
                    }
                    .into(),
                );
                (s.value, s.min, s.max) = (*value, *min, *max);
            }
            RuleKind::Deadman { minutes } => s.minutes = Some(*minutes),
        }
        s
    }

    fn watches(&self, device: &str, metric: &str) -> bool {
        self.enabled
            && (self.devices.is_empty()
                || self
                    .devices
                    .binary_search_by(|d| d.as_str().cmp(device))
                    .is_ok())
            && (self.metrics.is_empty()
                || self
                    .metrics
                    .binary_search_by(|m| m.as_str().cmp(metric))
                    .is_ok())
    }

    fn new_detector(&self) -> Detector {
        match self.kind {
            RuleKind::Zscore {
                window,
                threshold,
                min_points,
            } => Detector::Zscore(ZScore::new(
                window,
                DetectorConfig {
                    threshold,
                    min_points,
                },
            )),
            RuleKind::Ewma {
                alpha,
                threshold,
                min_points,
            } => Detector::Ewma(Ewma::new(
                alpha,
                DetectorConfig {
                    threshold,
                    min_points,
                },
            )),
            _ => Detector::None,
        }
    }
}

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

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Detector {
    Zscore(ZScore),
    Ewma(Ewma),
    None,
}

/// State of one rule on one series.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SeriesState {
    detector: Detector,
    /// Sequence number of the active alert, if any.
    active: Option<u64>,
    normal_streak: u32,
    last_received_at: i64,
}

/// Rules, detector state and alerts of one tenant.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TenantAlerts {
    rules: BTreeMap<String, Rule>,
    /// rule id → device → metric → state.
    series: HashMap<String, HashMap<String, HashMap<String, SeriesState>>>,
    /// sequence → alert (ids are `alert-<sequence>`); a list of pairs in the checkpoint.
    #[serde(with = "crate::rollup::pairs")]
    alerts: BTreeMap<u64, Alert>,
    next_seq: u64,
    /// Alerts not opened because [`MAX_ALERTS`] were all active.
    pub suppressed: u64,
}

/// `map[key]`, inserting `make()` under an owned key only when missing.
fn slot_with<'m, V>(
    map: &'m mut HashMap<String, V>,
    key: &str,
    make: impl FnOnce() -> V,
) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), make());
    }
    // Invariant: present — inserted just above when missing.
    map.get_mut(key).unwrap_or_else(|| unreachable!())
}

fn fmt_num(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.into()
    }
}

fn series_name(device: &str, metric: &str) -> String {
    if device.is_empty() {
        metric.to_string()
    } else {
        format!("{metric} on {device}")
    }
}

/// Parses `alert-<n>`.
pub fn alert_seq(id: &str) -> Option<u64> {
    id.strip_prefix("alert-")?.parse().ok()
}

impl TenantAlerts {
    /// A tenant's alert state with the default rule, created at `at`.
    pub fn with_default_rule(at: i64) -> Self {
        let mut s = Self::default();
        s.rules
            .insert(DEFAULT_RULE_ID.into(), Rule::default_zscore(at));
        s
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.values()
    }

    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.get(id)
    }

    /// Alerts, newest first.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values().rev()
    }

    pub fn alert(&self, id: &str) -> Option<&Alert> {
        self.alerts.get(&alert_seq(id)?)
    }

    /// Feeds every metric of `e` to the rules watching it.
    pub fn observe(&mut self, e: &Event, out: &mut Vec<AlertNotice>) {
        if e.metrics.is_empty() {
            return;
        }
        let device = e.device_id.as_deref().unwrap_or("");
        let Self {
            rules,
            series,
            alerts,
            next_seq,
            suppressed,
        } = self;
        for rule in rules.values() {
            for (metric, &value) in &e.metrics {
                if !rule.watches(device, metric) {
                    continue;
                }
                let per_device = slot_with(series, &rule.id, HashMap::new);
                let per_metric = slot_with(per_device, device, HashMap::new);
                let st = slot_with(per_metric, metric, || SeriesState {
                    detector: rule.new_detector(),
                    active: None,
                    normal_streak: 0,
                    last_received_at: e.received_at,
                });
                st.last_received_at = st.last_received_at.max(e.received_at);
                // The message is built only for anomalous points (formatting it for every
                // point cost more than the rollups themselves).
                let (anomalous, expected, score) = match (&rule.kind, &mut st.detector) {
                    (RuleKind::Zscore { .. }, Detector::Zscore(d)) => {
                        let v = d.observe(value);
                        (v.anomalous, Some(v.expected), Some(v.score))
                    }
                    (RuleKind::Ewma { .. }, Detector::Ewma(d)) => {
                        let v = d.observe(value);
                        (v.anomalous, Some(v.expected), Some(v.score))
                    }
                    (
                        RuleKind::Threshold {
                            op,
                            value: limit,
                            min,
                            max,
                        },
                        _,
                    ) => {
                        let hit = match op {
                            ThresholdOp::Above => limit.is_some_and(|l| value > l),
                            ThresholdOp::Below => limit.is_some_and(|l| value < l),
                            ThresholdOp::Outside => {
                                min.is_some_and(|l| value < l) || max.is_some_and(|h| value > h)
                            }
                        };
                        (hit, None, None)
                    }
                    (RuleKind::Deadman { .. }, _) => {
                        // Data arrived: a silent series has spoken.
                        if let Some(seq) = st.active.take()
                            && let Some(a) = alerts.get_mut(&seq)
                        {
                            resolve(a, e.received_at, "data_resumed", None);
                            out.push(notice(&e.tenant, Transition::Resolved, e.received_at, a));
                        }
                        continue;
                    }
                    // A detector that does not match its rule's kind cannot arise (both are
                    // replaced together); treat it as a normal point.
                    _ => (false, None, None),
                };
                let message = || describe(&rule.kind, device, metric, value, score, expected);
                if anomalous {
                    st.normal_streak = 0;
                    if let Some(a) = st.active.and_then(|seq| alerts.get_mut(&seq)) {
                        a.occurrences += 1;
                        a.value = Some(value);
                        a.expected = expected;
                        a.score = score;
                        a.message = message();
                        a.last_triggered_at = a.last_triggered_at.max(e.time);
                        continue;
                    }
                    let Some(seq) = admit(alerts, next_seq, suppressed) else {
                        continue;
                    };
                    let a = Alert {
                        id: format!("alert-{seq}"),
                        rule_id: rule.id.clone(),
                        rule_name: rule.name.clone(),
                        rule_kind: rule.kind.name().into(),
                        device_id: device.to_string(),
                        metric: metric.clone(),
                        severity: rule.severity,
                        status: Status::Open,
                        message: message(),
                        value: Some(value),
                        expected,
                        score,
                        occurrences: 1,
                        opened_at: e.time,
                        last_triggered_at: e.time,
                        acknowledged_at: None,
                        resolved_at: None,
                        resolution: None,
                        note: None,
                    };
                    out.push(notice(&e.tenant, Transition::Opened, e.received_at, &a));
                    alerts.insert(seq, a);
                    st.active = Some(seq);
                } else if let Some(seq) = st.active {
                    st.normal_streak += 1;
                    if st.normal_streak >= rule.resolve_after {
                        st.active = None;
                        st.normal_streak = 0;
                        if let Some(a) = alerts.get_mut(&seq) {
                            resolve(a, e.received_at, "auto", None);
                            out.push(notice(&e.tenant, Transition::Resolved, e.received_at, a));
                        }
                    }
                }
            }
        }
    }

    /// Opens dead-man alerts for watched series silent for their rule's `minutes` at `now`
    /// (receive-time clock, ns).
    pub fn check_silence(&mut self, tenant: &str, now: i64, out: &mut Vec<AlertNotice>) {
        let Self {
            rules,
            series,
            alerts,
            next_seq,
            suppressed,
        } = self;
        for rule in rules.values() {
            let RuleKind::Deadman { minutes } = rule.kind else {
                continue;
            };
            if !rule.enabled {
                continue;
            }
            let limit = (minutes * 60e9) as i64;
            let Some(per_device) = series.get_mut(&rule.id) else {
                continue;
            };
            for (device, per_metric) in per_device.iter_mut() {
                for (metric, st) in per_metric.iter_mut() {
                    if st.active.is_some() || now.saturating_sub(st.last_received_at) < limit {
                        continue;
                    }
                    let Some(seq) = admit(alerts, next_seq, suppressed) else {
                        continue;
                    };
                    let a = Alert {
                        id: format!("alert-{seq}"),
                        rule_id: rule.id.clone(),
                        rule_name: rule.name.clone(),
                        rule_kind: rule.kind.name().into(),
                        device_id: device.clone(),
                        metric: metric.clone(),
                        severity: rule.severity,
                        status: Status::Open,
                        message: format!(
                            "no {} data for {} minutes (last point received {})",
                            series_name(device, metric),
                            fmt_num(minutes),
                            format_rfc3339(st.last_received_at)
                        ),
                        value: None,
                        expected: None,
                        score: None,
                        occurrences: 1,
                        opened_at: now,
                        last_triggered_at: now,
                        acknowledged_at: None,
                        resolved_at: None,
                        resolution: None,
                        note: None,
                    };
                    out.push(notice(tenant, Transition::Opened, now, &a));
                    alerts.insert(seq, a);
                    st.active = Some(seq);
                }
            }
        }
    }

    /// Applies an acknowledge/resolve request; `None` when it changes nothing (unknown alert,
    /// already in that state or past it).
    pub fn act(
        &mut self,
        tenant: &str,
        alert_id: &str,
        action: &str,
        at: i64,
        note: Option<String>,
    ) -> Option<AlertNotice> {
        let seq = alert_seq(alert_id)?;
        let a = self.alerts.get_mut(&seq)?;
        match (action, a.status) {
            ("acknowledge", Status::Open) => {
                a.status = Status::Acknowledged;
                a.acknowledged_at = Some(at);
                a.note = note.or(a.note.take());
                Some(notice(tenant, Transition::Acknowledged, at, a))
            }
            ("resolve", Status::Open | Status::Acknowledged) => {
                resolve(a, at, "manual", note);
                let (rule, device, metric) =
                    (a.rule_id.clone(), a.device_id.clone(), a.metric.clone());
                let n = notice(tenant, Transition::Resolved, at, a);
                if let Some(st) = self
                    .series
                    .get_mut(&rule)
                    .and_then(|d| d.get_mut(&device))
                    .and_then(|m| m.get_mut(&metric))
                    && st.active == Some(seq)
                {
                    st.active = None;
                    st.normal_streak = 0;
                }
                Some(n)
            }
            _ => None,
        }
    }

    /// Creates or replaces a rule (`Some`) or deletes it (`None`); the rule's active alerts
    /// are resolved and its detectors restart.
    pub fn change_rule(
        &mut self,
        tenant: &str,
        rule_id: &str,
        rule: Option<Rule>,
        at: i64,
        out: &mut Vec<AlertNotice>,
    ) {
        let why = if rule.is_some() {
            "rule_changed"
        } else {
            "rule_deleted"
        };
        if let Some(per_device) = self.series.remove(rule_id) {
            for st in per_device.values().flat_map(HashMap::values) {
                if let Some(a) = st.active.and_then(|seq| self.alerts.get_mut(&seq)) {
                    resolve(a, at, why, None);
                    out.push(notice(tenant, Transition::Resolved, at, a));
                }
            }
        }
        match rule {
            Some(r) if self.rules.contains_key(rule_id) || self.rules.len() < MAX_RULES => {
                self.rules.insert(rule_id.to_string(), r);
            }
            Some(_) => tracing::warn!(tenant, rule_id, "rule limit reached; change ignored"),
            None => {
                self.rules.remove(rule_id);
            }
        }
    }

    /// Drops state of series idle since before `now - IDLE_SERIES_NS` without active alerts.
    pub fn evict(&mut self, now: i64) {
        let cutoff = now.saturating_sub(IDLE_SERIES_NS);
        for per_device in self.series.values_mut() {
            for per_metric in per_device.values_mut() {
                per_metric.retain(|_, st| st.active.is_some() || st.last_received_at >= cutoff);
            }
            per_device.retain(|_, m| !m.is_empty());
        }
        self.series.retain(|_, d| !d.is_empty());
    }

    /// Series a rule currently tracks (for metrics and tests).
    pub fn tracked_series(&self) -> usize {
        self.series
            .values()
            .flat_map(HashMap::values)
            .map(HashMap::len)
            .sum()
    }
}

/// The message of an anomalous point under a z-score, EWMA or threshold rule.
fn describe(
    kind: &RuleKind,
    device: &str,
    metric: &str,
    value: f64,
    score: Option<f64>,
    expected: Option<f64>,
) -> String {
    match kind {
        RuleKind::Zscore { threshold, .. } | RuleKind::Ewma { threshold, .. } => zmsg(
            device,
            metric,
            value,
            score.unwrap_or(f64::NAN),
            expected.unwrap_or(f64::NAN),
            *threshold,
        ),
        RuleKind::Threshold {
            op,
            value: limit,
            min,
            max,
        } => {
            let what = match op {
                ThresholdOp::Above => format!("above {}", fmt_num(limit.unwrap_or(f64::NAN))),
                ThresholdOp::Below => format!("below {}", fmt_num(limit.unwrap_or(f64::NAN))),
                ThresholdOp::Outside => format!(
                    "outside [{}, {}]",
                    fmt_num(min.unwrap_or(f64::NAN)),
                    fmt_num(max.unwrap_or(f64::NAN))
                ),
            };
            format!(
                "{} = {} is {what}",
                series_name(device, metric),
                fmt_num(value)
            )
        }
        RuleKind::Deadman { .. } => String::new(),
    }
}

fn zmsg(
    device: &str,
    metric: &str,
    value: f64,
    score: f64,
    expected: f64,
    threshold: f64,
) -> String {
    let dir = if score >= 0.0 { "above" } else { "below" };
    let sigma = if score.is_finite() {
        format!("{}σ", fmt_num(score.abs()))
    } else {
        "infinitely many σ (flat baseline)".into()
    };
    format!(
        "{} = {} is {sigma} {dir} the expected {} (threshold {}σ)",
        series_name(device, metric),
        fmt_num(value),
        fmt_num(expected),
        fmt_num(threshold)
    )
}

fn resolve(a: &mut Alert, at: i64, why: &str, note: Option<String>) {
    a.status = Status::Resolved;
    a.resolved_at = Some(at);
    a.resolution = Some(why.into());
    if note.is_some() {
        a.note = note;
    }
}

fn notice(tenant: &str, transition: Transition, at: i64, a: &Alert) -> AlertNotice {
    AlertNotice {
        tenant: tenant.to_string(),
        transition,
        at,
        alert: a.clone(),
    }
}

/// A sequence number for a new alert, making room by forgetting the oldest resolved alert;
/// `None` (counted) when every kept alert is active.
fn admit(
    alerts: &mut BTreeMap<u64, Alert>,
    next_seq: &mut u64,
    suppressed: &mut u64,
) -> Option<u64> {
    if alerts.len() >= MAX_ALERTS {
        let oldest_resolved = alerts.iter().find(|(_, a)| !a.is_active()).map(|(k, _)| *k);
        match oldest_resolved {
            Some(k) => {
                alerts.remove(&k);
            }
            None => {
                *suppressed += 1;
                return None;
            }
        }
    }
    *next_seq += 1;
    Some(*next_seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_764_000_000_000_000_000;
    const SEC: i64 = 1_000_000_000;

    fn point(device: &str, metric: &str, value: f64, i: i64) -> Event {
        let mut e = Event {
            tenant: "t".into(),
            event_id: format!("e{i}"),
            time: T0 + i * SEC,
            received_at: T0 + i * SEC,
            r#type: "reading".into(),
            device_id: Some(device.into()),
            ..Default::default()
        };
        e.metrics.insert(metric.into(), value);
        e
    }

    fn spec(json: serde_json::Value) -> RuleSpec {
        serde_json::from_value(json).unwrap()
    }

    fn rule(id: &str, json: serde_json::Value) -> Rule {
        spec(json).validate(id, T0, T0).unwrap()
    }

    /// A tenant's alert state with only rule `id`, and an empty notice list.
    fn with_rule(id: &str, json: serde_json::Value) -> (TenantAlerts, Vec<AlertNotice>) {
        let mut a = TenantAlerts::default();
        let mut out = Vec::new();
        a.change_rule("t", id, Some(rule(id, json)), T0, &mut out);
        (a, out)
    }

    fn err(json: serde_json::Value) -> RuleError {
        spec(json).validate("r", T0, T0).unwrap_err()
    }

    /// Alternates around 20 so the baseline has a spread.
    fn normal(i: i64) -> f64 {
        20.0 + [0.0, 0.5, -0.5, 1.0, -1.0][(i % 5) as usize]
    }

    #[test]
    fn specs_are_validated_field_by_field() {
        assert_eq!(err(serde_json::json!({})).field, "kind");
        assert_eq!(err(serde_json::json!({"kind": "magic"})).field, "kind");
        assert_eq!(
            err(serde_json::json!({"kind": "zscore", "value": 3})).field,
            "value"
        );
        assert_eq!(
            err(serde_json::json!({"kind": "zscore", "window": 1})).field,
            "window"
        );
        assert_eq!(
            err(serde_json::json!({"kind": "zscore", "threshold": -1})).field,
            "threshold"
        );
        assert_eq!(err(serde_json::json!({"kind": "threshold"})).field, "op");
        assert_eq!(
            err(serde_json::json!({"kind": "threshold", "op": ">"})).field,
            "value"
        );
        assert_eq!(
            err(serde_json::json!({"kind": "threshold", "op": "outside", "min": 5, "max": 1}))
                .field,
            "max"
        );
        assert_eq!(
            err(serde_json::json!({"kind": "threshold", "op": ">", "value": 1, "min": 0})).field,
            "min"
        );
        assert_eq!(err(serde_json::json!({"kind": "deadman"})).field, "minutes");
        assert_eq!(
            err(serde_json::json!({"kind": "deadman", "minutes": 5, "severity": "fatal"})).field,
            "severity"
        );
        assert_eq!(
            err(serde_json::json!({"kind": "deadman", "minutes": 5, "devices": [""]})).field,
            "devices"
        );
        assert!(
            serde_json::from_value::<RuleSpec>(serde_json::json!({"kind": "zscore", "bogus": 1}))
                .is_err()
        );
        let r = rule("z", serde_json::json!({"kind": "zscore"}));
        assert_eq!(
            r.kind,
            RuleKind::Zscore {
                window: 100,
                threshold: 3.0,
                min_points: 20
            }
        );
        assert_eq!(
            (r.severity, r.resolve_after, r.enabled),
            (Severity::Warning, 5, true)
        );
    }

    #[test]
    fn rules_roundtrip_through_json_and_spec() {
        for j in [
            serde_json::json!({"kind": "zscore", "window": 50, "metrics": ["temp"]}),
            serde_json::json!({"kind": "ewma", "alpha": 0.1, "severity": "critical"}),
            serde_json::json!({"kind": "threshold", "op": ">", "value": 90, "devices": ["b", "a"]}),
            serde_json::json!({"kind": "threshold", "op": "outside", "min": 1, "max": 2}),
            serde_json::json!({"kind": "deadman", "minutes": 2.5, "name": "quiet"}),
        ] {
            let r = rule("x", j);
            let back: Rule = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
            assert_eq!(back, r);
            assert_eq!(r.to_spec().validate("x", T0, T0).unwrap(), r);
        }
    }

    #[test]
    fn a_spike_opens_one_alert_repeats_update_it_normal_points_resolve_it() {
        let mut a = TenantAlerts::with_default_rule(T0);
        let mut out = Vec::new();
        let mut i = 0;
        for _ in 0..50 {
            a.observe(&point("d1", "temp", normal(i), i), &mut out);
            i += 1;
        }
        assert!(out.is_empty(), "normal data opens nothing: {out:?}");
        a.observe(&point("d1", "temp", 80.0, i), &mut out);
        i += 1;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].transition, Transition::Opened);
        let id = out[0].alert.id.clone();
        assert_eq!(out[0].alert.device_id, "d1");
        assert_eq!(out[0].alert.severity, Severity::Warning);
        assert!(
            out[0].alert.message.contains("temp on d1 = 80"),
            "{}",
            out[0].alert.message
        );
        a.observe(&point("d1", "temp", 85.0, i), &mut out);
        i += 1;
        assert_eq!(out.len(), 1, "a repeat updates the open alert");
        let al = a.alert(&id).unwrap();
        assert_eq!((al.occurrences, al.value), (2, Some(85.0)));
        for _ in 0..4 {
            a.observe(&point("d1", "temp", normal(i), i), &mut out);
            i += 1;
        }
        assert_eq!(out.len(), 1, "4 normal points are not enough");
        a.observe(&point("d1", "temp", normal(i), i), &mut out);
        i += 1;
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].transition, Transition::Resolved);
        let al = a.alert(&id).unwrap();
        assert_eq!(
            (al.status, al.resolution.as_deref()),
            (Status::Resolved, Some("auto"))
        );
        a.observe(&point("d1", "temp", 90.0, i), &mut out);
        assert_eq!(out.len(), 3);
        assert_ne!(out[2].alert.id, id, "after resolution a new alert opens");
    }

    #[test]
    fn threshold_rules_respect_their_scope() {
        let (mut a, mut out) = with_rule(
            "hot",
            serde_json::json!({"kind": "threshold", "op": ">", "value": 30, "devices": ["d1"], "metrics": ["temp"], "severity": "critical"}),
        );
        a.observe(&point("d2", "temp", 50.0, 0), &mut out);
        a.observe(&point("d1", "hum", 50.0, 1), &mut out);
        a.observe(&point("d1", "temp", 30.0, 2), &mut out);
        assert!(out.is_empty(), "out of scope or not above: {out:?}");
        a.observe(&point("d1", "temp", 30.5, 3), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].alert.severity, Severity::Critical);
        assert_eq!(out[0].alert.message, "temp on d1 = 30.5 is above 30");
        let mut b = TenantAlerts::default();
        b.change_rule(
            "t",
            "band",
            Some(rule(
                "band",
                serde_json::json!({"kind": "threshold", "op": "outside", "min": 10, "max": 20}),
            )),
            T0,
            &mut out,
        );
        out.clear();
        for (i, v) in [10.0, 20.0, 15.0].into_iter().enumerate() {
            b.observe(&point("d", "x", v, i as i64), &mut out);
        }
        assert!(out.is_empty());
        b.observe(&point("d", "x", 9.9, 5), &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn deadman_opens_once_on_silence_and_resolves_when_data_resumes() {
        let (mut a, mut out) = with_rule(
            "quiet",
            serde_json::json!({"kind": "deadman", "minutes": 2}),
        );
        a.observe(&point("d1", "temp", 1.0, 0), &mut out);
        a.check_silence("t", T0 + 119 * SEC, &mut out);
        assert!(out.is_empty());
        a.check_silence("t", T0 + 120 * SEC, &mut out);
        assert_eq!(out.len(), 1);
        assert!(
            out[0]
                .alert
                .message
                .starts_with("no temp on d1 data for 2 minutes"),
            "{}",
            out[0].alert.message
        );
        a.check_silence("t", T0 + 500 * SEC, &mut out);
        assert_eq!(out.len(), 1, "one alert per silence");
        a.observe(&point("d1", "temp", 1.0, 600), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].alert.resolution.as_deref(), Some("data_resumed"));
    }

    #[test]
    fn acknowledge_and_resolve_follow_the_lifecycle() {
        let (mut a, mut out) = with_rule(
            "hot",
            serde_json::json!({"kind": "threshold", "op": ">", "value": 1}),
        );
        a.observe(&point("d", "x", 5.0, 0), &mut out);
        let id = out[0].alert.id.clone();
        assert!(a.act("t", "alert-999", "acknowledge", T0, None).is_none());
        let n = a
            .act("t", &id, "acknowledge", T0 + SEC, Some("on it".into()))
            .unwrap();
        assert_eq!(n.transition, Transition::Acknowledged);
        assert!(
            a.act("t", &id, "acknowledge", T0 + SEC, None).is_none(),
            "already acknowledged"
        );
        a.observe(&point("d", "x", 6.0, 1), &mut out);
        assert_eq!(out.len(), 1, "an acknowledged alert still absorbs repeats");
        assert_eq!(a.alert(&id).unwrap().occurrences, 2);
        let n = a.act("t", &id, "resolve", T0 + 2 * SEC, None).unwrap();
        assert_eq!(n.alert.resolution.as_deref(), Some("manual"));
        assert_eq!(n.alert.note.as_deref(), Some("on it"));
        assert!(a.act("t", &id, "resolve", T0 + 3 * SEC, None).is_none());
        assert!(a.act("t", &id, "acknowledge", T0 + 3 * SEC, None).is_none());
        a.observe(&point("d", "x", 7.0, 2), &mut out);
        assert_eq!(out.len(), 2, "the condition persists: a new alert");
        assert_ne!(out[1].alert.id, id);
    }

    #[test]
    fn changing_or_deleting_a_rule_resolves_its_alerts() {
        let mut a = TenantAlerts::default();
        let mut out = Vec::new();
        let hot = rule(
            "hot",
            serde_json::json!({"kind": "threshold", "op": ">", "value": 1}),
        );
        a.change_rule("t", "hot", Some(hot.clone()), T0, &mut out);
        a.observe(&point("d", "x", 5.0, 0), &mut out);
        a.change_rule("t", "hot", Some(hot), T0 + SEC, &mut out);
        assert_eq!(out[1].alert.resolution.as_deref(), Some("rule_changed"));
        a.observe(&point("d", "x", 5.0, 1), &mut out);
        a.change_rule("t", "hot", None, T0 + 2 * SEC, &mut out);
        assert_eq!(out[3].alert.resolution.as_deref(), Some("rule_deleted"));
        assert!(a.rule("hot").is_none());
        a.observe(&point("d", "x", 5.0, 2), &mut out);
        assert_eq!(out.len(), 4, "no rule, no alert");
    }

    #[test]
    fn alerts_are_bounded_oldest_resolved_first_then_suppressed() {
        let (mut a, mut out) = with_rule(
            "hot",
            serde_json::json!({"kind": "threshold", "op": ">", "value": 1}),
        );
        a.observe(&point("first", "x", 5.0, 0), &mut out);
        a.act("t", "alert-1", "resolve", T0, None).unwrap();
        for i in 1..MAX_ALERTS as i64 {
            a.observe(&point(&format!("d{i}"), "x", 5.0, i), &mut out);
        }
        assert_eq!(a.alerts().count(), MAX_ALERTS);
        a.observe(&point("one-more", "x", 5.0, 0), &mut out);
        assert_eq!(a.alerts().count(), MAX_ALERTS);
        assert!(a.alert("alert-1").is_none(), "the resolved one made room");
        assert_eq!(a.suppressed, 0);
        a.observe(&point("too-many", "x", 5.0, 0), &mut out);
        assert_eq!(a.suppressed, 1, "all active: the new one is suppressed");
        assert_eq!(a.alerts().count(), MAX_ALERTS);
    }
}
