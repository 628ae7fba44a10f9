//! The alert state machine of one tenant ([`TenantAlerts`]): rules, detector state per series,
//! and alerts — opening, updating and resolving them on points, silence, requests and rule
//! changes, bounded in number. Pure state (no I/O), checkpointed with the rollups: must not
//! touch the log, files or the live feed.

use std::collections::BTreeMap;

use crate::FastMap as HashMap;
use crate::slot_with;

use eddy_model::AsEventRef;
use eddy_model::time::format_rfc3339;
use serde::{Deserialize, Serialize};

use crate::alerts::alert::{Alert, AlertNotice, Status, Transition, alert_seq};
use crate::alerts::messages::{describe, fmt_num, series_name};
use crate::alerts::rule::{DEFAULT_RULE_ID, MAX_RULES, Rule, RuleKind, ThresholdOp};
use crate::detect::{DetectorConfig, Ewma, ZScore};

/// Alerts kept per tenant (active ones and the most recent resolved ones).
pub const MAX_ALERTS: usize = 10_000;
/// Series state of a rule that saw no point for this long (ns) and has no active alert is
/// dropped (its detector starts afresh if the series comes back).
pub const IDLE_SERIES_NS: i64 = 7 * 86_400 * 1_000_000_000;

impl Rule {
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
    pub fn observe(&mut self, e: &impl AsEventRef, out: &mut Vec<AlertNotice>) {
        let e = e.as_event_ref();
        if e.metrics.is_empty() {
            return;
        }
        let device = e.device_id.unwrap_or("");
        let Self {
            rules,
            series,
            alerts,
            next_seq,
            suppressed,
        } = self;
        for rule in rules.values() {
            if !e.metrics.names().any(|m| rule.watches(device, m)) {
                continue;
            }
            // The rule's and the device's maps are looked up once per event, not per metric.
            let per_device = slot_with(series, &rule.id, HashMap::default);
            let per_metric = slot_with(per_device, device, HashMap::default);
            for (metric, value) in e.metrics.iter() {
                if !rule.watches(device, metric) {
                    continue;
                }
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
                            out.push(notice(e.tenant, Transition::Resolved, e.received_at, a));
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
                    let mut a = opened(seq, rule, device, metric, message(), e.time);
                    (a.value, a.expected, a.score) = (Some(value), expected, score);
                    out.push(notice(e.tenant, Transition::Opened, e.received_at, &a));
                    alerts.insert(seq, a);
                    st.active = Some(seq);
                } else if let Some(seq) = st.active {
                    st.normal_streak += 1;
                    if st.normal_streak >= rule.resolve_after {
                        st.active = None;
                        st.normal_streak = 0;
                        if let Some(a) = alerts.get_mut(&seq) {
                            resolve(a, e.received_at, "auto", None);
                            out.push(notice(e.tenant, Transition::Resolved, e.received_at, a));
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
                    let message = format!(
                        "no {} data for {} minutes (last point received {})",
                        series_name(device, metric),
                        fmt_num(minutes),
                        format_rfc3339(st.last_received_at)
                    );
                    let a = opened(seq, rule, device, metric, message, now);
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

/// A new open alert of `rule` on one series, first triggered `at` (no value, expectation or
/// score yet: a dead-man alert has none).
fn opened(seq: u64, rule: &Rule, device: &str, metric: &str, message: String, at: i64) -> Alert {
    Alert {
        id: format!("alert-{seq}"),
        rule_id: rule.id.clone(),
        rule_name: rule.name.clone(),
        rule_kind: rule.kind.name().into(),
        device_id: device.to_string(),
        metric: metric.to_string(),
        severity: rule.severity,
        status: Status::Open,
        message,
        value: None,
        expected: None,
        score: None,
        occurrences: 1,
        opened_at: at,
        last_triggered_at: at,
        acknowledged_at: None,
        resolved_at: None,
        resolution: None,
        note: None,
    }
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
    use crate::alerts::rule::{RuleSpec, Severity};
    use eddy_model::Event;
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
    /// Alternates around 20 so the baseline has a spread.
    fn normal(i: i64) -> f64 {
        20.0 + [0.0, 0.5, -0.5, 1.0, -1.0][(i % 5) as usize]
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
