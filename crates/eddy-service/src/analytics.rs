//! Analytics over stored events: the summary with its previous period and changes, top values
//! with shares and "other", click counts per (user, page), grouped time series, one user's
//! activity, funnels (conversion math, the event cap) and retention (averages over cohorts).
//!
//! The store computes counts (`eddy_store::analytics`); this module decides the questions
//! (ranges and their defaults, the previous period, limits) and derives what clients read
//! (shares, ratios, medians in seconds). Answers are typed; times are ns, written as RFC 3339.

use std::collections::BTreeMap;
use std::sync::Arc;

use eddy_model::Clock;
use eddy_model::time::rfc3339;
use serde::Serialize;
use serde_json::Value;

use crate::auth::{Principal, Scope};
use crate::query::Store;
use crate::range::{DAY_NS, TimeRange};
use crate::stats::{CountersSnapshot, TenantStats};
use crate::{Error, Result};

pub use eddy_store::analytics::{
    Agg, Condition, Count, EventMatch, Field, FunnelSteps, GroupedQuery, LatestMetric, Measure,
    Top, TopQuery,
};
pub use eddy_store::journeys::Period;

/// Funnels refuse more matching events than this (memory bound: ~40 B each).
pub const FUNNEL_MAX_EVENTS: usize = 50_000_000;
/// Most steps of a funnel.
pub const MAX_STEPS: usize = 16;

fn bad(message: impl Into<String>) -> Error {
    Error::invalid("invalid_parameter", message)
}

/// `a / b`, `None` when `b` is 0.
fn ratio(a: u64, b: u64) -> Option<f64> {
    (b != 0).then(|| a as f64 / b as f64)
}

/// Relative change from `before` to `now` (`None` when there was nothing before).
fn change(now: u64, before: u64) -> Option<f64> {
    (before != 0).then(|| (now as f64 - before as f64) / before as f64)
}

/// A value with its events and distinct users.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ValueCount {
    pub value: Value,
    pub count: u64,
    pub users: u64,
}

fn counts(rows: &[Count]) -> Vec<ValueCount> {
    rows.iter()
        .map(|c| ValueCount {
            value: c.value.clone(),
            count: c.count,
            users: c.users,
        })
        .collect()
}

/// The figures of one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeriodSummary {
    pub events: u64,
    pub events_per_minute: f64,
    pub users: u64,
    pub devices: u64,
    /// Events of type `error`.
    pub errors: u64,
    pub error_rate: f64,
    /// Events received more than the allowed lateness after their time.
    pub late: u64,
    pub by_type: Vec<ValueCount>,
    pub top_pages: Vec<ValueCount>,
    pub top_sources: Vec<ValueCount>,
}

impl PeriodSummary {
    fn new(s: &eddy_store::analytics::Summary, from: i64, to: i64) -> Self {
        let minutes = (to - from) as f64 / 60e9;
        Self {
            events: s.events,
            events_per_minute: s.events as f64 / minutes,
            users: s.users,
            devices: s.devices,
            errors: s.errors,
            error_rate: ratio(s.errors, s.events).unwrap_or(0.0),
            late: s.late,
            by_type: counts(&s.by_type),
            top_pages: counts(&s.top_pages),
            top_sources: counts(&s.top_sources),
        }
    }
}

/// Relative changes from the previous period (`None`: nothing then).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Changes {
    pub events: Option<f64>,
    pub users: Option<f64>,
    pub devices: Option<f64>,
    pub errors: Option<f64>,
    pub late: Option<f64>,
}

/// What ingest refused or folded for the tenant since the server started.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IngestSinceStart {
    pub events_rejected: u64,
    pub events_deduplicated: u64,
    pub requests_rate_limited: u64,
}

/// The summary: a range, the period of equal length before it, and the changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SummaryAnswer {
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub from: i64,
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub to: i64,
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub previous_from: i64,
    pub current: PeriodSummary,
    pub previous: PeriodSummary,
    pub change: Changes,
    pub ingest_since_start: IngestSinceStart,
}

/// One value of a top list.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopRow {
    pub value: Value,
    pub count: u64,
    pub users: u64,
    /// Of the events that have the field.
    pub share: f64,
}

/// The events with a value not listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Other {
    pub count: u64,
    pub share: f64,
}

/// The most frequent values of a field.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopAnswer {
    pub dimension: String,
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub from: i64,
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub to: i64,
    /// Events that have the field.
    pub total: u64,
    pub without_value: u64,
    pub distinct: u64,
    pub data: Vec<TopRow>,
    pub other: Other,
}

/// Clicks of one user on one page.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClickRow {
    pub user_id: Value,
    pub page_url: Value,
    pub clicks: u64,
}

/// Click counts per (user, page), in the shape click-tracking clients read.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClickCounts {
    pub event_type: String,
    /// Every counted event, with or without a user.
    pub total_clicks: u64,
    pub data: Vec<ClickRow>,
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub start_time: i64,
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub end_time: i64,
}

/// Which clicks to count.
#[derive(Debug, Clone, PartialEq)]
pub struct ClickQuery {
    pub range: TimeRange,
    /// Counted event type (`click` unless given).
    pub event_type: Option<String>,
    /// Only these users / pages (every condition must hold, as with any filter).
    pub user_id: Vec<String>,
    pub page_url: Vec<String>,
    /// Users listed, and pages per user.
    pub limit: usize,
}

/// A time and a value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimeValue {
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub time: i64,
    pub value: f64,
}

/// One group's series.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupSeries {
    /// `None` for "other".
    pub group: Option<Value>,
    pub other: bool,
    pub total: u64,
    pub data: Vec<TimeValue>,
}

/// A measure per bucket for the top groups and "other".
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupedAnswer {
    pub measure: String,
    pub group_by: String,
    pub bucket_seconds: u64,
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub from: i64,
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub to: i64,
    pub series: Vec<GroupSeries>,
}

/// A grouped time-series question.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupedRequest {
    pub range: TimeRange,
    pub bucket_secs: u64,
    pub field: Field,
    pub measure: Measure,
    pub limit: usize,
    pub filter: Vec<Condition>,
}

/// Which of a user's activity to show.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRequest {
    pub user_id: String,
    /// Defaults to the last 30 days.
    pub range: TimeRange,
    pub session_gap_ns: i64,
    pub sessions: usize,
    pub recent: usize,
    pub top: usize,
}

/// One session of a user.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionView {
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub start: i64,
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub end: i64,
    pub duration_seconds: f64,
    pub events: u64,
}

/// One user's activity.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserAnswer {
    pub user_id: String,
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub from: i64,
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub to: i64,
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub first_seen: i64,
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub last_seen: i64,
    pub events: u64,
    pub by_type: Vec<ValueCount>,
    pub pages: Vec<ValueCount>,
    pub devices: Vec<ValueCount>,
    pub session_gap_seconds: i64,
    pub session_count: u64,
    /// Newest first.
    pub sessions: Vec<SessionView>,
    pub listed_sessions_seconds: f64,
    pub recent_events: Vec<crate::query::StoredEvent>,
}

/// An event of a funnel step or a cohort as the client gave it: a type and `where`
/// conditions (field or property name → string, number or boolean).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventSpec {
    #[serde(rename = "type")]
    pub r#type: String,
    #[serde(rename = "where")]
    pub conditions: BTreeMap<String, Value>,
}

impl EventSpec {
    /// The events it matches; `name` says which step or part the errors are about.
    fn parse(&self, name: &str) -> Result<EventMatch> {
        if self.r#type.is_empty() {
            return Err(bad(format!("{name}: `type` is empty")));
        }
        let mut conditions = Vec::new();
        for (k, v) in &self.conditions {
            let field = match Field::parse(k) {
                Ok(Field::Type) => {
                    return Err(bad(format!(
                        "{name}: give the type as `type`, not in `where`"
                    )));
                }
                Ok(f) => f,
                // Any other key names a property.
                Err(_) => Field::Property(k.clone()),
            };
            if !matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                return Err(bad(format!(
                    "{name}: `where.{k}` must be a string, number or boolean"
                )));
            }
            conditions.push(Condition {
                field,
                value: v.clone(),
            });
        }
        Ok(EventMatch {
            r#type: self.r#type.clone(),
            conditions,
        })
    }
}

/// A funnel question.
#[derive(Debug, Clone, PartialEq)]
pub struct FunnelRequest {
    pub steps: Vec<EventSpec>,
    /// Conversion window (default one day).
    pub window_ns: Option<i64>,
    pub range: TimeRange,
    pub breakdown: Option<Field>,
    /// Breakdown groups shown (default 20, at most 1000).
    pub breakdown_limit: Option<usize>,
}

/// One step of a funnel answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FunnelStep {
    #[serde(flatten)]
    pub event: EventSpec,
    pub step: usize,
    pub users: u64,
    /// Users who went on to the next step (`None` on the last).
    pub converted: Option<u64>,
    pub dropped: Option<u64>,
    pub conversion_from_previous: Option<f64>,
    pub conversion_from_first: Option<f64>,
    /// From entry (`None` on the first step and where nobody arrived).
    pub median_seconds_to_convert: Option<f64>,
}

fn funnel_steps(specs: &[EventSpec], s: &FunnelSteps) -> Vec<FunnelStep> {
    specs
        .iter()
        .enumerate()
        .map(|(k, spec)| {
            let users = s.users[k];
            let next = s.users.get(k + 1).copied();
            FunnelStep {
                event: spec.clone(),
                step: k + 1,
                users,
                converted: next,
                dropped: next.map(|n| users - n),
                conversion_from_previous: if k == 0 {
                    ratio(users, users)
                } else {
                    ratio(users, s.users[k - 1])
                },
                conversion_from_first: ratio(users, s.users[0]),
                median_seconds_to_convert: match (k, s.median_ns[k]) {
                    (0, _) | (_, None) => None,
                    (_, Some(ns)) => Some(ns / 1e9),
                },
            }
        })
        .collect()
}

/// One breakdown group of a funnel.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FunnelGroup {
    /// `None` when the entry event lacks the field.
    pub value: Option<Value>,
    pub steps: Vec<FunnelStep>,
}

/// A funnel split by a field of the entry event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FunnelBreakdown {
    pub field: String,
    pub groups: Vec<FunnelGroup>,
    pub omitted_groups: u64,
}

/// A funnel's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FunnelAnswer {
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub from: i64,
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub to: i64,
    pub window_seconds: i64,
    pub steps: Vec<FunnelStep>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<FunnelBreakdown>,
}

/// A retention question.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionRequest {
    pub cohort: EventSpec,
    pub r#return: EventSpec,
    pub period: Period,
    /// Periods followed (default 14 days or 8 weeks, at most 366).
    pub periods: Option<usize>,
    /// Defaults to the last `periods` periods.
    pub range: TimeRange,
}

/// Returns of one cohort in one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeriodReturn {
    pub period: usize,
    pub users: u64,
    pub share: Option<f64>,
}

/// One cohort.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CohortView {
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub start: i64,
    pub users: u64,
    /// Periods that have started.
    pub retention: Vec<PeriodReturn>,
}

/// The share returning in one period, over the cohorts that reached it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeriodAverage {
    pub period: usize,
    pub share: Option<f64>,
    pub cohorts: u64,
}

/// A retention answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetentionAnswer {
    pub period: &'static str,
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub from: i64,
    #[serde(serialize_with = "rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub to: i64,
    pub cohort: EventSpec,
    #[serde(rename = "return")]
    pub r#return: EventSpec,
    pub cohorts: Vec<CohortView>,
    pub average: Vec<PeriodAverage>,
}

/// The analytics service.
#[derive(Debug)]
pub struct AnalyticsService {
    store: Arc<dyn Store>,
    stats: Arc<TenantStats>,
    clock: Arc<dyn Clock>,
    /// An event received more than this after its time counts as late.
    late_after_ns: i64,
}

impl AnalyticsService {
    pub fn new(
        store: Arc<dyn Store>,
        stats: Arc<TenantStats>,
        clock: Arc<dyn Clock>,
        late_after_ns: i64,
    ) -> Self {
        Self {
            store,
            stats,
            clock,
            late_after_ns,
        }
    }

    /// The range's figures (default the last 24 hours), the previous period of equal length,
    /// the relative changes, and what ingest refused since the start.
    pub async fn summary(
        &self,
        p: &Principal,
        range: TimeRange,
        top: usize,
    ) -> Result<SummaryAnswer> {
        let p = p.require(Scope::Read)?;
        let (from, to) = range.resolve(self.clock.now_ns(), DAY_NS)?;
        let q = |from, to| eddy_store::analytics::SummaryQuery {
            from,
            to,
            top,
            late_after_ns: self.late_after_ns,
        };
        let before = from.saturating_sub(to - from);
        let cur = self.store.summary(&p.tenant_id, q(from, to)).await?;
        let prev = self.store.summary(&p.tenant_id, q(before, from)).await?;
        let CountersSnapshot {
            events_rejected,
            events_deduplicated,
            requests_rate_limited,
            ..
        } = self.stats.get(&p.tenant_id).snapshot();
        Ok(SummaryAnswer {
            from,
            to,
            previous_from: before,
            current: PeriodSummary::new(&cur, from, to),
            previous: PeriodSummary::new(&prev, before, from),
            change: Changes {
                events: change(cur.events, prev.events),
                users: change(cur.users, prev.users),
                devices: change(cur.devices, prev.devices),
                errors: change(cur.errors, prev.errors),
                late: change(cur.late, prev.late),
            },
            ingest_since_start: IngestSinceStart {
                events_rejected,
                events_deduplicated,
                requests_rate_limited,
            },
        })
    }

    /// The most frequent values of `field` (default range: the last 24 hours), each with its
    /// share of the events that have the field, and the rest as "other".
    pub async fn top(
        &self,
        p: &Principal,
        range: TimeRange,
        field: Field,
        limit: usize,
        filter: Vec<Condition>,
    ) -> Result<TopAnswer> {
        let p = p.require(Scope::Read)?;
        let (from, to) = range.resolve(self.clock.now_ns(), DAY_NS)?;
        let t = self
            .store
            .top(
                &p.tenant_id,
                TopQuery {
                    from,
                    to,
                    field: field.clone(),
                    limit,
                    filter,
                },
            )
            .await?;
        let share = |n: u64| ratio(n, t.with_value).unwrap_or(0.0);
        let listed: u64 = t.rows.iter().map(|c| c.count).sum();
        let rest = t.with_value.saturating_sub(listed);
        Ok(TopAnswer {
            dimension: field.name(),
            from,
            to,
            total: t.with_value,
            without_value: t.without_value,
            distinct: t.distinct,
            data: t
                .rows
                .iter()
                .map(|c| TopRow {
                    value: c.value.clone(),
                    count: c.count,
                    users: c.users,
                    share: share(c.count),
                })
                .collect(),
            other: Other {
                count: rest,
                share: share(rest),
            },
        })
    }

    /// Clicks per user, then per page for each listed user: `1 + users` top-N questions.
    pub async fn click_counts(&self, p: &Principal, q: ClickQuery) -> Result<ClickCounts> {
        let p = p.require(Scope::Read)?;
        let (from, to) = q.range.resolve(self.clock.now_ns(), DAY_NS)?;
        let event_type = q.event_type.unwrap_or_else(|| "click".to_string());
        let mut filter = vec![Condition {
            field: Field::Type,
            value: Value::String(event_type.clone()),
        }];
        for (field, values) in [(Field::UserId, q.user_id), (Field::PageUrl, q.page_url)] {
            filter.extend(values.into_iter().map(|v| Condition {
                field: field.clone(),
                value: Value::String(v),
            }));
        }
        let top = |field: Field, filter: Vec<Condition>| TopQuery {
            from,
            to,
            field,
            limit: q.limit,
            filter,
        };
        let users = self
            .store
            .top(&p.tenant_id, top(Field::UserId, filter.clone()))
            .await?;
        let mut data = Vec::new();
        for u in &users.rows {
            let mut f = filter.clone();
            f.push(Condition {
                field: Field::UserId,
                value: u.value.clone(),
            });
            let pages = self.store.top(&p.tenant_id, top(Field::PageUrl, f)).await?;
            data.extend(pages.rows.into_iter().map(|pg| ClickRow {
                user_id: u.value.clone(),
                page_url: pg.value,
                clicks: pg.count,
            }));
        }
        Ok(ClickCounts {
            event_type,
            total_clicks: users.with_value + users.without_value,
            data,
            start_time: from,
            end_time: to,
        })
    }

    /// A measure per bucket for the `limit` largest groups over the range (default the last
    /// 24 hours) and for all others together.
    pub async fn grouped(&self, p: &Principal, q: GroupedRequest) -> Result<GroupedAnswer> {
        let p = p.require(Scope::Read)?;
        let (from, to) = q.range.resolve(self.clock.now_ns(), DAY_NS)?;
        let measure = match &q.measure {
            Measure::Count => "count".to_string(),
            Measure::DistinctUsers => "distinct_users".to_string(),
            Measure::Metric { name, .. } => format!("metric:{name}"),
        };
        let groups = self
            .store
            .grouped(
                &p.tenant_id,
                GroupedQuery {
                    from,
                    to,
                    bucket_secs: q.bucket_secs,
                    field: q.field.clone(),
                    measure: q.measure,
                    limit: q.limit,
                    filter: q.filter,
                },
            )
            .await?;
        Ok(GroupedAnswer {
            measure,
            group_by: q.field.name(),
            bucket_seconds: q.bucket_secs,
            from,
            to,
            series: groups
                .into_iter()
                .map(|g| GroupSeries {
                    other: g.value.is_none(),
                    group: g.value,
                    total: g.total,
                    data: g
                        .points
                        .into_iter()
                        .map(|(time, value)| TimeValue { time, value })
                        .collect(),
                })
                .collect(),
        })
    }

    /// One user's activity (default range: the last 30 days); not found when the user has no
    /// events in the range.
    pub async fn user(&self, p: &Principal, q: UserRequest) -> Result<UserAnswer> {
        let p = p.require(Scope::Read)?;
        let (from, to) = q.range.resolve(self.clock.now_ns(), 30 * DAY_NS)?;
        let query = eddy_store::analytics::UserQuery {
            user_id: q.user_id.clone(),
            from,
            to,
            session_gap_ns: q.session_gap_ns,
            sessions: q.sessions,
            recent: q.recent,
            top: q.top,
        };
        let rfc = eddy_model::time::format_rfc3339;
        let Some(u) = self.store.user(&p.tenant_id, query).await? else {
            return Err(Error::NotFound(format!(
                "user `{}` has no events between {} and {}",
                q.user_id,
                rfc(from),
                rfc(to)
            )));
        };
        let total_ns: i64 = u.sessions.iter().map(|s| s.end - s.start).sum();
        Ok(UserAnswer {
            user_id: q.user_id,
            from,
            to,
            first_seen: u.first_seen,
            last_seen: u.last_seen,
            events: u.events,
            by_type: counts(&u.by_type),
            pages: counts(&u.pages),
            devices: counts(&u.devices),
            session_gap_seconds: q.session_gap_ns / 1_000_000_000,
            session_count: u.session_count,
            sessions: u
                .sessions
                .iter()
                .map(|s| SessionView {
                    start: s.start,
                    end: s.end,
                    duration_seconds: (s.end - s.start) as f64 / 1e9,
                    events: s.events,
                })
                .collect(),
            listed_sessions_seconds: total_ns as f64 / 1e9,
            recent_events: u.recent,
        })
    }

    /// Users through ordered steps within the conversion window (strict order; see
    /// `eddy_store::journeys::funnel_user` for what counts when steps repeat).
    pub async fn funnel(&self, p: &Principal, q: FunnelRequest) -> Result<FunnelAnswer> {
        let p = p.require(Scope::Read)?;
        if !(1..=MAX_STEPS).contains(&q.steps.len()) {
            return Err(bad(format!("`steps`: 1 to {MAX_STEPS} steps")));
        }
        let steps = q
            .steps
            .iter()
            .enumerate()
            .map(|(k, s)| s.parse(&format!("step {}", k + 1)))
            .collect::<Result<Vec<_>>>()?;
        let window_ns = q.window_ns.unwrap_or(DAY_NS);
        if window_ns <= 0 {
            return Err(bad("`window`: a duration such as \"1h\" or seconds"));
        }
        let (from, to) = q.range.resolve(self.clock.now_ns(), DAY_NS)?;
        let answer = self
            .store
            .funnel(
                &p.tenant_id,
                eddy_store::analytics::FunnelQuery {
                    from,
                    to,
                    window_ns,
                    steps,
                    breakdown: q.breakdown.clone(),
                    max_groups: q.breakdown_limit.unwrap_or(20).clamp(1, 1000),
                    max_events: FUNNEL_MAX_EVENTS,
                },
            )
            .await?;
        Ok(FunnelAnswer {
            from,
            to,
            window_seconds: window_ns / 1_000_000_000,
            steps: funnel_steps(&q.steps, &answer.overall),
            breakdown: q.breakdown.map(|b| FunnelBreakdown {
                field: b.name(),
                groups: answer
                    .groups
                    .iter()
                    .map(|(v, s)| FunnelGroup {
                        value: v.clone(),
                        steps: funnel_steps(&q.steps, s),
                    })
                    .collect(),
                omitted_groups: answer.groups_omitted,
            }),
        })
    }

    /// Users grouped by the period of their first-ever `cohort` event within the range; per
    /// later period, the share that did a `return` event (in period 0: after their first
    /// event). Periods that have not started yet are left out; the average of a period is
    /// over the cohorts that reached it.
    pub async fn retention(&self, p: &Principal, q: RetentionRequest) -> Result<RetentionAnswer> {
        let p = p.require(Scope::Read)?;
        let period = q.period;
        let periods = q.periods.unwrap_or(match period {
            Period::Day => 14,
            Period::Week => 8,
        });
        if !(1..=366).contains(&periods) {
            return Err(bad("`periods`: 1 to 366"));
        }
        let now = self.clock.now_ns();
        let len = period.nanos() * i64::try_from(periods).unwrap_or(1);
        let (from, to) = q.range.resolve(now, len)?;
        let cohorts = self
            .store
            .retention(
                &p.tenant_id,
                eddy_store::analytics::RetentionQuery {
                    from,
                    to,
                    cohort: q.cohort.parse("cohort")?,
                    r#return: q.r#return.parse("return")?,
                    period,
                    periods,
                },
            )
            .await?;
        // Per period: (returned, cohort users, cohorts).
        let mut totals = vec![(0u64, 0u64, 0u64); periods + 1];
        let views = cohorts
            .iter()
            .map(|c| {
                let started = |k: usize| c.start + period.nanos() * k as i64 <= now;
                let retention = c
                    .returned
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| started(*k))
                    .map(|(k, n)| {
                        totals[k].0 += n;
                        totals[k].1 += c.users;
                        totals[k].2 += 1;
                        PeriodReturn {
                            period: k,
                            users: *n,
                            share: ratio(*n, c.users),
                        }
                    })
                    .collect();
                CohortView {
                    start: c.start,
                    users: c.users,
                    retention,
                }
            })
            .collect();
        Ok(RetentionAnswer {
            period: period.name(),
            from,
            to,
            cohort: q.cohort,
            r#return: q.r#return,
            cohorts: views,
            average: totals
                .iter()
                .enumerate()
                .filter(|(_, t)| t.2 > 0)
                .map(|(k, t)| PeriodAverage {
                    period: k,
                    share: ratio(t.0, t.1),
                    cohorts: t.2,
                })
                .collect(),
        })
    }

    /// The events of the range (default all time) in `(time, offset)` order, encoded as
    /// `format` chunk by chunk.
    pub async fn export(
        &self,
        p: &Principal,
        range: TimeRange,
        format: crate::export::ExportFormat,
    ) -> Result<crate::export::ExportStream> {
        let p = p.require(Scope::Read)?;
        let (from, to) = range.resolve_all_time()?;
        let rx = self.store.export(&p.tenant_id, from, to).await?;
        crate::export::ExportStream::start(format, rx).await
    }

    /// The newest sample of every (device, metric).
    pub async fn latest_metrics(&self, p: &Principal) -> Result<Vec<LatestMetric>> {
        let p = p.require(Scope::Read)?;
        Ok(self.store.latest_metrics(&p.tenant_id).await?)
    }

    /// The newest sample of every (device, metric), of one device and/or one metric only.
    pub async fn latest_metrics_of(
        &self,
        p: &Principal,
        device_id: Option<&str>,
        metric: Option<&str>,
    ) -> Result<Vec<LatestMetric>> {
        let mut all = self.latest_metrics(p).await?;
        all.retain(|m| {
            device_id.is_none_or(|d| d == m.device_id) && metric.is_none_or(|x| x == m.metric)
        });
        Ok(all)
    }
}
