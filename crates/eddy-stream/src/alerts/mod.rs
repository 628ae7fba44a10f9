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
//!
//! Files, in their one-way order: `rule` (the rule model, validation, `to_spec`), `alert`
//! (the alert model and its transitions), `messages` (the text of an alert), `machine` (the
//! per-tenant state machine: detectors, opening, updating and resolving alerts). This file only
//! re-exports them.

mod alert;
mod machine;
mod messages;
mod rule;

pub use alert::{Alert, AlertNotice, Status, Transition, alert_seq};
pub use machine::{IDLE_SERIES_NS, MAX_ALERTS, TenantAlerts};
pub use rule::{
    DEFAULT_RULE_ID, MAX_RULES, Rule, RuleError, RuleKind, RuleSpec, Severity, ThresholdOp,
};
