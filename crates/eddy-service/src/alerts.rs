//! Alert rules and alerts of the caller's tenant (reads need `read`, changes `write`).
//!
//! Every change — a rule created, replaced, patched or deleted, an alert acknowledged or
//! resolved — is a log entry, durable before the answer, applied by the stream processor in log
//! order (so it survives a crash and replays exactly). The answer waits (up to [`APPLY_WAIT`])
//! until the processor has applied it and shows the resulting state.
//!
//! The processor is reached through the data-returning [`AlertsEngine`] seam: no closure of
//! this crate runs under its lock. A tenant's rule changes are serialised here, and each one
//! first waits until the processor has applied the previous one (or fails with 503), so the
//! check of [`MAX_RULES`] and of an existing id always sees every earlier change, even one
//! whose answer timed out or whose client went away. One process appends rule changes; a
//! multi-node deployment needs the processor to enforce the limit itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy_log::Log;
use eddy_model::time::format_rfc3339;
use eddy_model::{AlertAction, Clock, Entry, EventError, LogEntry, RuleChange, codec};
pub use eddy_stream::alerts::{MAX_RULES, RuleKind, Severity, Status};
pub use eddy_stream::{Alert, Rule, RuleSpec};
use serde::Serialize;

use crate::auth::{Principal, Scope};
use crate::{Error, Result};

/// How long a change's answer waits for the processor to apply it.
pub const APPLY_WAIT: Duration = Duration::from_secs(5);

/// Longest note of an acknowledge/resolve request, in characters.
pub const MAX_NOTE_CHARS: usize = 1000;

/// Which alerts a listing wants.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertFilter {
    pub status: Option<Status>,
    pub device_id: Option<String>,
    pub metric: Option<String>,
    pub rule_id: Option<String>,
    pub severity: Option<Severity>,
}

impl AlertFilter {
    /// Whether `a` is one of the wanted alerts.
    pub fn matches(&self, a: &Alert) -> bool {
        self.status.is_none_or(|s| a.status == s)
            && self.device_id.as_ref().is_none_or(|d| a.device_id == *d)
            && self.metric.as_ref().is_none_or(|m| a.metric == *m)
            && self.rule_id.as_ref().is_none_or(|r| a.rule_id == *r)
            && self.severity.is_none_or(|s| a.severity == s)
    }
}

/// One page of alerts: the newest `limit` matching ones, how many match in all, and how many
/// were never opened because the tenant had its maximum active.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertPage {
    pub alerts: Vec<Alert>,
    pub total: usize,
    pub suppressed: u64,
}

/// What the service asks the stream processor (the seam; the binary adapts the processor).
#[async_trait::async_trait]
pub trait AlertsEngine: Send + Sync + std::fmt::Debug {
    /// The tenant's rules (a tenant without any has the default rule).
    fn rules(&self, tenant: &str) -> Result<Vec<Rule>>;
    fn rule(&self, tenant: &str, id: &str) -> Result<Option<Rule>>;
    /// The newest `limit` alerts matching `filter`, newest first, with counts.
    fn alerts(&self, tenant: &str, filter: &AlertFilter, limit: usize) -> Result<AlertPage>;
    fn alert(&self, tenant: &str, id: &str) -> Result<Option<Alert>>;
    /// Waits (at most `timeout`) until every log record below `offset` is applied.
    async fn wait_applied(&self, offset: u64, timeout: Duration) -> bool;
}

/// A rule as answered (times as RFC 3339).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleView {
    pub id: String,
    pub name: String,
    /// `kind` (`zscore`, `ewma`, `threshold`, `deadman`) and its parameters.
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub kind: RuleKind,
    /// Devices the rule watches; empty = all.
    pub devices: Vec<String>,
    /// Metrics the rule watches; empty = all.
    pub metrics: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub severity: Severity,
    /// Consecutive normal points that resolve an active alert.
    pub resolve_after: u32,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Rule> for RuleView {
    fn from(r: Rule) -> Self {
        Self {
            created_at: format_rfc3339(r.created_at),
            updated_at: format_rfc3339(r.updated_at),
            id: r.id,
            name: r.name,
            kind: r.kind,
            devices: r.devices,
            metrics: r.metrics,
            severity: r.severity,
            resolve_after: r.resolve_after,
            enabled: r.enabled,
        }
    }
}

/// An alert as answered (times as RFC 3339; absent values are `null`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertView {
    /// `alert-<n>`.
    pub id: String,
    pub rule_id: String,
    pub rule_name: String,
    pub rule_kind: String,
    /// `""` for events without a device.
    pub device_id: String,
    pub metric: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub severity: Severity,
    /// `open`, `acknowledged` or `resolved`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
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
    pub opened_at: String,
    pub last_triggered_at: String,
    pub acknowledged_at: Option<String>,
    pub resolved_at: Option<String>,
    /// `auto`, `manual`, `data_resumed`, `rule_changed` or `rule_deleted`.
    pub resolution: Option<String>,
    /// Note given with the last acknowledge/resolve request.
    pub note: Option<String>,
}

impl From<Alert> for AlertView {
    fn from(a: Alert) -> Self {
        Self {
            opened_at: format_rfc3339(a.opened_at),
            last_triggered_at: format_rfc3339(a.last_triggered_at),
            acknowledged_at: a.acknowledged_at.map(format_rfc3339),
            resolved_at: a.resolved_at.map(format_rfc3339),
            score: a.score.filter(|s| s.is_finite()),
            id: a.id,
            rule_id: a.rule_id,
            rule_name: a.rule_name,
            rule_kind: a.rule_kind,
            device_id: a.device_id,
            metric: a.metric,
            severity: a.severity,
            status: a.status,
            message: a.message,
            value: a.value,
            expected: a.expected,
            occurrences: a.occurrences,
            resolution: a.resolution,
            note: a.note,
        }
    }
}

/// A listing of alerts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertList {
    /// Newest first, at most `limit`.
    pub data: Vec<AlertView>,
    /// How many alerts match the filters in all.
    pub total: usize,
    /// Alerts not opened because the tenant had its maximum active.
    pub suppressed: u64,
}

/// Parameters of an alert listing, as a client spelled them (checked here).
#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    pub status: Option<String>,
    pub device_id: Option<String>,
    pub metric: Option<String>,
    pub rule_id: Option<String>,
    pub severity: Option<String>,
    pub limit: Option<String>,
}

/// An acknowledge or resolve request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertActionKind {
    Acknowledge,
    Resolve,
}

impl AlertActionKind {
    fn name(self) -> &'static str {
        match self {
            Self::Acknowledge => "acknowledge",
            Self::Resolve => "resolve",
        }
    }

    fn target(self) -> Status {
        match self {
            Self::Acknowledge => Status::Acknowledged,
            Self::Resolve => Status::Resolved,
        }
    }
}

/// Where `action` takes an alert now in `status`: `Ok(false)` when it is there already (the
/// request is answered with the alert, idempotently), `Ok(true)` when the action applies, an
/// error when it cannot.
pub fn transition(id: &str, status: Status, action: AlertActionKind) -> Result<bool> {
    if status == action.target() {
        return Ok(false);
    }
    if status == Status::Resolved {
        return Err(Error::Conflict(format!(
            "alert `{id}` is resolved; it cannot be acknowledged"
        )));
    }
    Ok(true)
}

/// A rejected rule field, in the shape of rejected events (index 0, the field, why).
pub fn invalid_rule(field: &str, reason: impl Into<String>) -> Error {
    let reason = reason.into();
    Error::rejected(
        format!("invalid rule: `{field}`: {reason}"),
        vec![EventError {
            index: 0,
            field: field.to_string(),
            reason,
        }],
    )
}

fn not_applied_yet() -> Error {
    Error::Unavailable {
        message: "the change is stored but the stream processor has not applied it yet; \
                  it will take effect shortly"
            .into(),
        retry_after_secs: 1,
    }
}

/// Checks a rule id: 1 to 64 letters, digits, `-` or `_`.
pub fn check_rule_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid_rule("id", "1 to 64 letters, digits, `-` or `_`"))
    }
}

/// The rules-and-alerts service.
#[derive(Debug)]
pub struct AlertsService {
    log: Arc<dyn Log>,
    engine: Arc<dyn AlertsEngine>,
    clock: Arc<dyn Clock>,
    /// Per tenant: held from a rule change's checks to its append, with the log offset the
    /// processor must have applied before the next change reads the rules.
    rule_changes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<u64>>>>,
}

/// A tenant's rule-change turn: every earlier change is applied; the append offset is recorded.
struct Turn {
    guard: tokio::sync::OwnedMutexGuard<u64>,
}

impl AlertsService {
    pub fn new(log: Arc<dyn Log>, engine: Arc<dyn AlertsEngine>, clock: Arc<dyn Clock>) -> Self {
        Self {
            log,
            engine,
            clock,
            rule_changes: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for the tenant's turn to change rules, and until the processor has applied the
    /// tenant's previous change.
    async fn turn(&self, tenant: &str) -> Result<Turn> {
        let lock = {
            // A panic elsewhere leaves only this map of locks behind; keep going.
            let mut m = self.rule_changes.lock().unwrap_or_else(|p| p.into_inner());
            m.entry(tenant.to_string()).or_default().clone()
        };
        let guard = lock.lock_owned().await;
        if !self.engine.wait_applied(*guard, APPLY_WAIT).await {
            return Err(not_applied_yet());
        }
        Ok(Turn { guard })
    }

    /// Appends `entry` durably and waits until the stream processor has applied it. With a
    /// rule-change turn, records the offset the next change must see applied.
    async fn append_and_apply(&self, entry: Entry, turn: Option<&mut Turn>) -> Result<()> {
        let bytes = codec::encode_entry(&LogEntry { entry: Some(entry) });
        let range = self.log.append(vec![bytes.into()])?.durable().await?;
        if let Some(t) = turn {
            *t.guard = range.end;
        }
        if !self.engine.wait_applied(range.end, APPLY_WAIT).await {
            return Err(not_applied_yet());
        }
        Ok(())
    }

    fn rule_view(&self, tenant: &str, id: &str) -> Result<RuleView> {
        self.engine
            .rule(tenant, id)?
            .map(RuleView::from)
            .ok_or_else(|| Error::NotFound(format!("no rule `{id}`")))
    }

    /// Validates `spec` as rule `id` and stores it.
    async fn store_rule(
        &self,
        turn: &mut Turn,
        tenant: &str,
        id: &str,
        spec: RuleSpec,
        created_at: Option<i64>,
    ) -> Result<RuleView> {
        let now = self.clock.now_ns();
        let rule = spec
            .validate(id, created_at.unwrap_or(now), now)
            .map_err(|e| invalid_rule(e.field, e.reason))?;
        let json = serde_json::to_string(&rule)
            .map_err(|e| Error::Internal(format!("rule {id} not encodable: {e}")))?;
        self.append_and_apply(
            Entry::RuleChange(RuleChange {
                tenant: tenant.to_string(),
                rule_id: id.to_string(),
                rule_json: Some(json),
                at: now,
            }),
            Some(turn),
        )
        .await?;
        self.rule_view(tenant, id)
    }

    pub fn list_rules(&self, caller: &Principal) -> Result<Vec<RuleView>> {
        let p = caller.require(Scope::Read)?;
        Ok(self
            .engine
            .rules(&p.tenant_id)?
            .into_iter()
            .map(RuleView::from)
            .collect())
    }

    pub fn get_rule(&self, caller: &Principal, id: &str) -> Result<RuleView> {
        let p = caller.require(Scope::Read)?;
        self.rule_view(&p.tenant_id, id)
    }

    /// Creates a rule; its id is generated (`rule-…`) when none is given.
    pub async fn create_rule(
        &self,
        caller: &Principal,
        id: Option<String>,
        spec: RuleSpec,
    ) -> Result<RuleView> {
        let p = caller.require(Scope::Write)?;
        let id = id.unwrap_or_else(|| {
            format!("rule-{}", &uuid::Uuid::now_v7().simple().to_string()[20..])
        });
        check_rule_id(&id)?;
        let mut turn = self.turn(&p.tenant_id).await?;
        let rules = self.engine.rules(&p.tenant_id)?;
        if rules.iter().any(|r| r.id == id) {
            return Err(Error::Conflict(format!(
                "rule `{id}` exists; replace or patch it instead"
            )));
        }
        if rules.len() >= MAX_RULES {
            return Err(Error::Conflict(format!(
                "a tenant may have at most {MAX_RULES} rules"
            )));
        }
        self.store_rule(&mut turn, &p.tenant_id, &id, spec, None)
            .await
    }

    /// Creates or replaces rule `id`; says which (`true` = created).
    pub async fn put_rule(
        &self,
        caller: &Principal,
        id: &str,
        spec: RuleSpec,
    ) -> Result<(RuleView, bool)> {
        let p = caller.require(Scope::Write)?;
        check_rule_id(id)?;
        let mut turn = self.turn(&p.tenant_id).await?;
        let rules = self.engine.rules(&p.tenant_id)?;
        let existing = rules.iter().find(|r| r.id == id).map(|r| r.created_at);
        if existing.is_none() && rules.len() >= MAX_RULES {
            return Err(Error::Conflict(format!(
                "a tenant may have at most {MAX_RULES} rules"
            )));
        }
        let view = self
            .store_rule(&mut turn, &p.tenant_id, id, spec, existing)
            .await?;
        Ok((view, existing.is_none()))
    }

    /// A JSON merge patch (RFC 7386) over the rule's fields: `null` removes a field.
    pub async fn patch_rule(
        &self,
        caller: &Principal,
        id: &str,
        patch: serde_json::Map<String, serde_json::Value>,
    ) -> Result<RuleView> {
        let p = caller.require(Scope::Write)?;
        let mut turn = self.turn(&p.tenant_id).await?;
        let current = self
            .engine
            .rule(&p.tenant_id, id)?
            .ok_or_else(|| Error::NotFound(format!("no rule `{id}`")))?;
        let mut merged = serde_json::to_value(current.to_spec())
            .map_err(|e| Error::Internal(format!("rule {id} not encodable: {e}")))?;
        if let Some(o) = merged.as_object_mut() {
            for (k, v) in patch {
                if v.is_null() {
                    o.remove(&k);
                } else {
                    o.insert(k, v);
                }
            }
        }
        let spec: RuleSpec = serde_json::from_value(merged)
            .map_err(|e| Error::invalid("invalid_body", format!("invalid rule: {e}")))?;
        self.store_rule(&mut turn, &p.tenant_id, id, spec, Some(current.created_at))
            .await
    }

    /// Deletes a rule; its active alerts resolve (`rule_deleted`).
    pub async fn delete_rule(&self, caller: &Principal, id: &str) -> Result<()> {
        let p = caller.require(Scope::Write)?;
        let mut turn = self.turn(&p.tenant_id).await?;
        self.rule_view(&p.tenant_id, id)?;
        self.append_and_apply(
            Entry::RuleChange(RuleChange {
                tenant: p.tenant_id.clone(),
                rule_id: id.to_string(),
                rule_json: None,
                at: self.clock.now_ns(),
            }),
            Some(&mut turn),
        )
        .await
    }

    /// Alerts, newest first (default 100, at most 10 000).
    pub fn list_alerts(&self, caller: &Principal, q: AlertQuery) -> Result<AlertList> {
        let p = caller.require(Scope::Read)?;
        let bad = |m: String| Error::invalid("invalid_parameter", m);
        let filter = AlertFilter {
            status: q
                .status
                .map(|v| {
                    Status::parse(&v).ok_or_else(|| {
                        bad(format!(
                            "`status` `{v}`: use open, acknowledged or resolved"
                        ))
                    })
                })
                .transpose()?,
            severity: q
                .severity
                .map(|v| {
                    Severity::parse(&v).ok_or_else(|| {
                        bad(format!("`severity` `{v}`: use info, warning or critical"))
                    })
                })
                .transpose()?,
            device_id: q.device_id,
            metric: q.metric,
            rule_id: q.rule_id,
        };
        let limit = match q.limit {
            None => 100,
            Some(v) => v
                .parse()
                .ok()
                .filter(|n| (1..=10_000).contains(n))
                .ok_or_else(|| bad(format!("`limit` `{v}`: 1 to 10000")))?,
        };
        let page = self.engine.alerts(&p.tenant_id, &filter, limit)?;
        Ok(AlertList {
            data: page.alerts.into_iter().map(AlertView::from).collect(),
            total: page.total,
            suppressed: page.suppressed,
        })
    }

    pub fn get_alert(&self, caller: &Principal, id: &str) -> Result<AlertView> {
        let p = caller.require(Scope::Read)?;
        self.alert_view(&p.tenant_id, id)
    }

    fn alert_view(&self, tenant: &str, id: &str) -> Result<AlertView> {
        self.engine
            .alert(tenant, id)?
            .map(AlertView::from)
            .ok_or_else(|| Error::NotFound(format!("no alert `{id}`")))
    }

    /// Acknowledges or resolves an alert, with an optional note; answers the alert after.
    pub async fn act(
        &self,
        caller: &Principal,
        id: &str,
        action: AlertActionKind,
        note: Option<String>,
    ) -> Result<AlertView> {
        let p = caller.require(Scope::Write)?;
        if note
            .as_ref()
            .is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS)
        {
            return Err(Error::invalid(
                "invalid_body",
                format!("`note`: at most {MAX_NOTE_CHARS} characters"),
            ));
        }
        let status = self
            .engine
            .alert(&p.tenant_id, id)?
            .map(|a| a.status)
            .ok_or_else(|| Error::NotFound(format!("no alert `{id}`")))?;
        if transition(id, status, action)? {
            self.append_and_apply(
                Entry::AlertAction(AlertAction {
                    tenant: p.tenant_id.clone(),
                    alert_id: id.to_string(),
                    action: action.name().to_string(),
                    at: self.clock.now_ns(),
                    note,
                }),
                None,
            )
            .await?;
        }
        self.alert_view(&p.tenant_id, id)
    }
}
