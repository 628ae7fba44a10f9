//! The analytics questions (`/api/v1/analytics/…`, export): summaries, top-N, grouped time
//! series, one user's activity, funnels, retention, and streaming exports.
//!
//! Filtering, grouping and counting run in DataFusion over the tenant's session, built from
//! expressions (user values are literals, never SQL text); what needs each user's events in
//! order (funnels, retention, sessions) is fetched as narrow columns and finished by the pure
//! functions of [`crate::journeys`].

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::functions::core::expr_fn::get_field;
use datafusion::functions_aggregate::expr_fn::{
    avg, count, count_distinct, last_value, max, min, sum,
};
use datafusion::prelude::{DataFrame, Expr, SessionContext, cast, ident, lit, when};
use datafusion::scalar::ScalarValue;
use serde_json::Value;

pub use crate::api::{Count, Field, Group, Summary, Top};
use crate::exprs::{events_in, in_range, property_candidates, ts};
use crate::funnel_pass;
use crate::journeys::{self, Cohort, FunnelTally, Period, Session};
use crate::rows::{column, ints, strings};
use crate::schema::encode_property;
use crate::{Error, Result};

impl Field {
    fn expr(&self) -> Expr {
        match self {
            Field::Type => ident("type"),
            Field::Source => ident("source"),
            Field::DeviceId => ident("device_id"),
            Field::UserId => ident("user_id"),
            Field::PageUrl => ident("page_url"),
            Field::Property(k) => get_field(ident("properties"), k.clone()),
        }
    }

    /// `field = value`. A property matches its stored encoding: a string value also matches
    /// the number or boolean it reads as (as event filters do).
    fn equals(&self, v: &Value) -> Result<Expr> {
        match (self, v) {
            (Field::Property(_), Value::String(s)) => {
                Ok(self.expr().in_list(property_candidates(s), false))
            }
            (Field::Property(_), Value::Number(n)) => Ok(self.expr().eq(lit(encode_property(
                &n.as_f64().map(eddy_model::Value::Number),
            )))),
            (Field::Property(_), Value::Bool(b)) => Ok(self
                .expr()
                .eq(lit(encode_property(&Some(eddy_model::Value::Bool(*b)))))),
            (_, Value::String(s)) => Ok(self.expr().eq(lit(s.clone()))),
            (_, Value::Number(n)) => Ok(self.expr().eq(lit(n.to_string()))),
            _ => Err(Error::InvalidQuery(format!(
                "`{}` can only be compared with a string, number or boolean",
                self.name()
            ))),
        }
    }

    /// A stored value as the answer shows it: properties decoded from their JSON encoding.
    fn decode(&self, s: &str) -> Value {
        match self {
            Field::Property(_) => {
                serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
            }
            _ => Value::String(s.to_string()),
        }
    }
}

/// `field = value`, in a step, a cohort definition or a filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: Field,
    pub value: Value,
}

/// Events of one type meeting every condition.
#[derive(Debug, Clone, PartialEq)]
pub struct EventMatch {
    pub r#type: String,
    pub conditions: Vec<Condition>,
}

impl EventMatch {
    fn expr(&self) -> Result<Expr> {
        let mut e = ident("type").eq(lit(self.r#type.clone()));
        for c in &self.conditions {
            e = e.and(c.field.equals(&c.value)?);
        }
        Ok(e)
    }
}

fn all_of(conditions: &[Condition]) -> Result<Option<Expr>> {
    let mut out: Option<Expr> = None;
    for c in conditions {
        let e = c.field.equals(&c.value)?;
        out = Some(match out {
            Some(o) => o.and(e),
            None => e,
        });
    }
    Ok(out)
}

/// What [`crate::Store::summary`] covers.
#[derive(Debug, Clone)]
pub struct SummaryQuery {
    pub from: i64,
    pub to: i64,
    /// Length of the top lists.
    pub top: usize,
    /// An event received more than this after its time counts as late.
    pub late_after_ns: i64,
}

/// What [`crate::Store::top`] ranks.
#[derive(Debug, Clone)]
pub struct TopQuery {
    pub from: i64,
    pub to: i64,
    pub field: Field,
    pub limit: usize,
    pub filter: Vec<Condition>,
}

/// What a grouped time series measures per (bucket, group).
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    Count,
    DistinctUsers,
    Metric { name: String, agg: Agg },
}

/// How metric values of a bucket are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    Avg,
    Sum,
    Min,
    Max,
    Count,
}

impl Agg {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "avg" | "mean" => Agg::Avg,
            "sum" => Agg::Sum,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "count" => Agg::Count,
            _ => return None,
        })
    }
}

/// Buckets of a measure per value of a field: the top `limit` values (ranked over the whole
/// range) each as a series, the rest together as "other".
#[derive(Debug, Clone)]
pub struct GroupedQuery {
    pub from: i64,
    pub to: i64,
    pub bucket_secs: u64,
    pub field: Field,
    pub measure: Measure,
    pub limit: usize,
    pub filter: Vec<Condition>,
}

/// One user's activity.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UserProfile {
    pub first_seen: i64,
    pub last_seen: i64,
    pub events: u64,
    pub by_type: Vec<Count>,
    pub pages: Vec<Count>,
    pub devices: Vec<Count>,
    /// Newest first, at most the asked number.
    pub sessions: Vec<Session>,
    pub session_count: u64,
    /// Newest first.
    pub recent: Vec<crate::rows::StoredEvent>,
}

/// What [`crate::Store::user`] covers.
#[derive(Debug, Clone)]
pub struct UserQuery {
    pub user_id: String,
    pub from: i64,
    pub to: i64,
    pub session_gap_ns: i64,
    pub sessions: usize,
    pub recent: usize,
    pub top: usize,
}

/// A funnel: ordered steps, a conversion window, an optional breakdown.
#[derive(Debug, Clone)]
pub struct FunnelQuery {
    /// Entries (first steps) happen in `[from, to)`; later steps up to `to + window`.
    pub from: i64,
    pub to: i64,
    pub window_ns: i64,
    pub steps: Vec<EventMatch>,
    /// Split by this field's value on the entry event.
    pub breakdown: Option<Field>,
    /// At most this many breakdown groups (the largest by entering users).
    pub max_groups: usize,
    /// Refuse more matching events than this (memory bound: ~40 B each).
    pub max_events: usize,
}

/// Users per step and their median time to it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FunnelSteps {
    pub users: Vec<u64>,
    /// Median ns from entry, per step (`None`: nobody reached it).
    pub median_ns: Vec<Option<f64>>,
}

/// A funnel's answer: all users, and per breakdown value.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FunnelAnswer {
    pub overall: FunnelSteps,
    /// (breakdown value — `None` when the entry event lacks the field — , steps), largest
    /// first.
    pub groups: Vec<(Option<Value>, FunnelSteps)>,
    /// Breakdown values left out beyond `max_groups`.
    pub groups_omitted: u64,
}

/// Cohorts by first occurrence of one event, returns by another.
#[derive(Debug, Clone)]
pub struct RetentionQuery {
    /// Cohorts: users whose first-ever cohort event is in `[from, to)`.
    pub from: i64,
    pub to: i64,
    pub cohort: EventMatch,
    pub r#return: EventMatch,
    pub period: Period,
    pub periods: usize,
}

/// The latest value of one device's metric.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LatestMetric {
    pub device_id: String,
    pub metric: String,
    pub time: i64,
    pub value: f64,
}

fn u64_at(b: &RecordBatch, name: &str, row: usize) -> Result<u64> {
    let c = arrow::compute::cast(column(b, name)?, &DataType::Int64).map_err(Error::Arrow)?;
    let c = c.as_primitive::<Int64Type>();
    Ok(if c.is_null(row) {
        0
    } else {
        u64::try_from(c.value(row)).unwrap_or(0)
    })
}

fn floats(b: &RecordBatch, name: &str) -> Result<arrow::array::Float64Array> {
    Ok(arrow::compute::cast(column(b, name)?, &DataType::Float64)
        .map_err(Error::Arrow)?
        .as_primitive::<Float64Type>()
        .clone())
}

fn time_ns(e: Expr) -> Expr {
    cast(e, DataType::Int64)
}

/// The `limit` most frequent values of `field` among `events` (ties by value), with totals.
async fn top_of(events: DataFrame, field: &Field, limit: usize) -> Result<Top> {
    let f = field.expr();
    let totals = events
        .clone()
        .aggregate(
            vec![],
            vec![
                count(lit(1)).alias("all"),
                count(f.clone()).alias("with_value"),
                count_distinct(f.clone()).alias("distinct"),
            ],
        )?
        .collect()
        .await?;
    let (mut all, mut with_value, mut distinct) = (0, 0, 0);
    for b in totals.iter().filter(|b| b.num_rows() > 0) {
        all = u64_at(b, "all", 0)?;
        with_value = u64_at(b, "with_value", 0)?;
        distinct = u64_at(b, "distinct", 0)?;
    }
    let mut rows = Vec::new();
    if limit > 0 && with_value > 0 {
        let batches = events
            .filter(f.clone().is_not_null())?
            .aggregate(
                vec![f.alias("value")],
                vec![
                    count(lit(1)).alias("n"),
                    count_distinct(ident("user_id")).alias("users"),
                ],
            )?
            .sort(vec![
                ident("n").sort(false, false),
                ident("value").sort(true, false),
            ])?
            .limit(0, Some(limit))?
            .collect()
            .await?;
        for b in &batches {
            let values = strings(b, "value")?;
            for r in 0..b.num_rows() {
                rows.push(Count {
                    value: field.decode(values.value(r)),
                    count: u64_at(b, "n", r)?,
                    users: u64_at(b, "users", r)?,
                });
            }
        }
    }
    Ok(Top {
        rows,
        with_value,
        without_value: all - with_value,
        distinct,
    })
}

pub(crate) async fn top(ctx: SessionContext, q: TopQuery) -> Result<Top> {
    let mut pred = in_range(q.from, q.to);
    if let Some(f) = all_of(&q.filter)? {
        pred = pred.and(f);
    }
    top_of(events_in(&ctx, pred).await?, &q.field, q.limit).await
}

fn interval(secs: u64) -> Expr {
    let ns = i64::try_from(secs.max(1)).unwrap_or(i64::MAX / 1_000_000_000) * 1_000_000_000;
    lit(ScalarValue::new_interval_mdn(0, 0, ns))
}

fn bucket_of(secs: u64) -> Expr {
    time_ns(datafusion::functions::expr_fn::date_bin(
        interval(secs),
        ident("time"),
        ts(0),
    ))
}

pub(crate) async fn grouped(ctx: SessionContext, q: GroupedQuery) -> Result<Vec<Group>> {
    let f = q.field.expr();
    let mut pred = in_range(q.from, q.to).and(f.clone().is_not_null());
    if let Some(c) = all_of(&q.filter)? {
        pred = pred.and(c);
    }
    let (measure, rank) = match &q.measure {
        Measure::Count => (cast(count(lit(1)), DataType::Float64), count(lit(1))),
        Measure::DistinctUsers => (
            cast(count_distinct(ident("user_id")), DataType::Float64),
            count_distinct(ident("user_id")),
        ),
        Measure::Metric { name, agg } => {
            let v = get_field(ident("metrics"), name.clone());
            pred = pred.and(v.clone().is_not_null());
            let m = match agg {
                Agg::Avg => avg(v.clone()),
                Agg::Sum => sum(v.clone()),
                Agg::Min => min(v.clone()),
                Agg::Max => max(v.clone()),
                Agg::Count => count(v.clone()),
            };
            (cast(m, DataType::Float64), count(v))
        }
    };
    let events = events_in(&ctx, pred).await?;
    let ranked = events
        .clone()
        .aggregate(vec![f.clone().alias("value")], vec![rank.alias("total")])?
        .sort(vec![
            ident("total").sort(false, false),
            ident("value").sort(true, false),
        ])?
        .collect()
        .await?;
    let mut order: Vec<(String, u64)> = Vec::new();
    for b in &ranked {
        let values = strings(b, "value")?;
        for r in 0..b.num_rows() {
            order.push((values.value(r).to_string(), u64_at(b, "total", r)?));
        }
    }
    if order.is_empty() {
        return Ok(vec![]);
    }
    let limit = q.limit.min(order.len());
    let top: Vec<Expr> = order[..limit].iter().map(|(v, _)| lit(v.clone())).collect();
    let has_other = order.len() > limit;
    let group = if has_other {
        when(f.clone().in_list(top, false), f.clone()).otherwise(lit(ScalarValue::Utf8(None)))?
    } else {
        f.clone()
    };
    let batches = events
        .clone()
        .aggregate(
            vec![bucket_of(q.bucket_secs).alias("bucket"), group.alias("g")],
            vec![measure.alias("m")],
        )?
        .sort(vec![ident("bucket").sort(true, false)])?
        .collect()
        .await?;
    let index: HashMap<&str, usize> = order[..limit]
        .iter()
        .enumerate()
        .map(|(i, (v, _))| (v.as_str(), i))
        .collect();
    let mut groups: Vec<Group> = order[..limit]
        .iter()
        .map(|(v, total)| Group {
            value: Some(q.field.decode(v)),
            total: *total,
            points: vec![],
        })
        .collect();
    if has_other {
        let total = match q.measure {
            // Distinct users are not additive: "other" ranks by its own count below.
            Measure::DistinctUsers => 0,
            _ => order[limit..].iter().map(|(_, t)| t).sum(),
        };
        groups.push(Group {
            value: None,
            total,
            points: vec![],
        });
    }
    for b in &batches {
        let (bucket, g, m) = (ints(b, "bucket")?, strings(b, "g")?, floats(b, "m")?);
        for r in 0..b.num_rows() {
            let i = if g.is_null(r) {
                limit
            } else {
                match index.get(g.value(r)) {
                    Some(i) => *i,
                    None => continue,
                }
            };
            if let Some(grp) = groups.get_mut(i) {
                grp.points.push((bucket.value(r), m.value(r)));
            }
        }
    }
    if has_other && q.measure == Measure::DistinctUsers {
        // The other group's distinct users over the whole range (same filters).
        let others: Vec<Expr> = order[limit..].iter().map(|(v, _)| lit(v.clone())).collect();
        let n = events
            .filter(f.in_list(others, false))?
            .aggregate(vec![], vec![count_distinct(ident("user_id")).alias("n")])?
            .collect()
            .await?;
        if let (Some(b), Some(g)) = (n.iter().find(|b| b.num_rows() > 0), groups.last_mut()) {
            g.total = u64_at(b, "n", 0)?;
        }
    }
    Ok(groups)
}

pub(crate) async fn user(ctx: SessionContext, q: UserQuery) -> Result<Option<UserProfile>> {
    let pred = in_range(q.from, q.to).and(ident("user_id").eq(lit(q.user_id.clone())));
    let events = events_in(&ctx, pred).await?;
    let times = events
        .clone()
        .sort(vec![
            ident("time").sort(true, false),
            ident("offset").sort(true, false),
        ])?
        .select(vec![time_ns(ident("time")).alias("t")])?
        .collect()
        .await?;
    let mut all: Vec<i64> = Vec::new();
    for b in &times {
        all.extend(ints(b, "t")?.values().iter().copied());
    }
    let (Some(&first_seen), Some(&last_seen)) = (all.first(), all.last()) else {
        return Ok(None);
    };
    let mut sessions = journeys::sessions(&all, q.session_gap_ns);
    let session_count = sessions.len() as u64;
    sessions.reverse();
    sessions.truncate(q.sessions);
    let recent = events
        .clone()
        .sort(vec![
            ident("time").sort(false, false),
            ident("offset").sort(false, false),
        ])?
        .limit(0, Some(q.recent))?
        .collect()
        .await?;
    Ok(Some(UserProfile {
        first_seen,
        last_seen,
        events: all.len() as u64,
        by_type: top_of(events.clone(), &Field::Type, 1000).await?.rows,
        pages: top_of(events.clone(), &Field::PageUrl, q.top).await?.rows,
        devices: top_of(events, &Field::DeviceId, q.top).await?.rows,
        sessions,
        session_count,
        recent: crate::rows::events_of(&recent)?,
    }))
}

/// Interns strings borrowed from result batches as dense indexes.
struct Interner<'a> {
    ids: HashMap<&'a str, u32>,
    names: Vec<&'a str>,
}

impl<'a> Interner<'a> {
    fn new() -> Self {
        Self {
            ids: HashMap::new(),
            names: Vec::new(),
        }
    }

    fn id(&mut self, s: &'a str) -> u32 {
        if let Some(i) = self.ids.get(s) {
            return *i;
        }
        let i = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.ids.insert(s, i);
        self.names.push(s);
        i
    }
}

pub(crate) async fn funnel(ctx: SessionContext, q: FunnelQuery) -> Result<FunnelAnswer> {
    let n = q.steps.len();
    let end = q.to.saturating_add(q.window_ns);
    let mut step_exprs = Vec::with_capacity(n);
    for (k, s) in q.steps.iter().enumerate() {
        let mut e = s.expr()?;
        if k == 0 {
            // Entries only inside the range; later steps may follow up to `to + window`.
            e = e.and(ident("time").lt(ts(q.to)));
        }
        step_exprs.push(e);
    }
    let any = step_exprs
        .iter()
        .cloned()
        .reduce(Expr::or)
        .ok_or_else(|| Error::InvalidQuery("a funnel needs steps".into()))?;
    let mut cols = vec![
        ident("user_id"),
        time_ns(ident("time")).alias("t"),
        ident("offset"),
    ];
    let mut mask = lit(0i64);
    for (k, e) in step_exprs.into_iter().enumerate() {
        mask = mask + when(e, lit(1i64 << k)).otherwise(lit(0i64))?;
    }
    cols.push(mask.alias("mask"));
    if let Some(b) = &q.breakdown {
        cols.push(b.expr().alias("b"));
    }
    let batches = events_in(
        &ctx,
        in_range(q.from, end)
            .and(ident("user_id").is_not_null())
            .and(any),
    )
    .await?
    .select(cols)?
    .limit(0, Some(q.max_events.saturating_add(1)))?
    .collect()
    .await?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows > q.max_events {
        return Err(Error::InvalidQuery(format!(
            "more than {} events match the funnel's steps; narrow the range or the steps",
            q.max_events
        )));
    }
    let tasks = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    let (overall, groups) =
        funnel_pass::tally(batches, tasks, n, q.window_ns, q.breakdown.is_some()).await?;
    let finish = |mut t: FunnelTally| FunnelSteps {
        median_ns: (0..n).map(|k| t.median(k)).collect(),
        users: t.users,
    };
    let mut groups: Vec<(Option<String>, FunnelTally)> = groups.into_iter().collect();
    // Most entering users first, then by value ("no value" sorts as "").
    groups.sort_by(|a, b| {
        b.1.users[0].cmp(&a.1.users[0]).then_with(|| {
            a.0.as_deref()
                .unwrap_or("")
                .cmp(b.0.as_deref().unwrap_or(""))
        })
    });
    let omitted = groups.len().saturating_sub(q.max_groups) as u64;
    groups.truncate(q.max_groups);
    Ok(FunnelAnswer {
        overall: finish(overall),
        groups: groups
            .into_iter()
            .map(|(v, t)| {
                let value = match (&q.breakdown, v) {
                    (Some(f), Some(v)) => Some(f.decode(&v)),
                    _ => None,
                };
                (value, finish(t))
            })
            .collect(),
        groups_omitted: omitted,
    })
}

pub(crate) async fn retention(ctx: SessionContext, q: RetentionQuery) -> Result<Vec<Cohort>> {
    // First-ever cohort event per user (all history before `to`), kept when inside the range.
    let firsts = events_in(
        &ctx,
        ident("time")
            .lt(ts(q.to))
            .and(ident("user_id").is_not_null())
            .and(q.cohort.expr()?),
    )
    .await?
    .aggregate(
        vec![ident("user_id")],
        vec![min(time_ns(ident("time"))).alias("first")],
    )?
    .filter(ident("first").gt_eq(lit(q.from)))?
    .collect()
    .await?;
    let bucket_secs = u64::try_from(q.period.nanos() / 1_000_000_000).unwrap_or(86_400);
    let horizon = q.to.saturating_add(
        q.period.nanos().saturating_mul(
            i64::try_from(q.periods)
                .unwrap_or(i64::MAX)
                .saturating_add(1),
        ),
    );
    let returns = events_in(
        &ctx,
        in_range(q.from, horizon)
            .and(ident("user_id").is_not_null())
            .and(q.r#return.expr()?),
    )
    .await?
    .aggregate(
        vec![
            ident("user_id"),
            time_ns(datafusion::functions::expr_fn::date_bin(
                interval(bucket_secs),
                ident("time"),
                ts(q.period.origin()),
            ))
            .alias("bucket"),
        ],
        vec![max(time_ns(ident("time"))).alias("last")],
    )?
    .collect()
    .await?;
    let mut users = Interner::new();
    let user_cols: Vec<_> = firsts
        .iter()
        .map(|b| strings(b, "user_id"))
        .collect::<Result<_>>()?;
    let mut first = Vec::new();
    for (b, u) in firsts.iter().zip(&user_cols) {
        let f = ints(b, "first")?;
        for r in 0..b.num_rows() {
            first.push((users.id(u.value(r)), f.value(r)));
        }
    }
    let return_cols: Vec<_> = returns
        .iter()
        .map(|b| strings(b, "user_id"))
        .collect::<Result<_>>()?;
    let mut back = Vec::new();
    for (b, u) in returns.iter().zip(&return_cols) {
        let (bucket, last) = (ints(b, "bucket")?, ints(b, "last")?);
        for r in 0..b.num_rows() {
            // Users without a cohort event are of no cohort.
            if let Some(&id) = users.ids.get(u.value(r)) {
                back.push((id, bucket.value(r), last.value(r)));
            }
        }
    }
    Ok(journeys::retention(&first, &back, q.period, q.periods))
}

pub(crate) async fn latest_metrics(ctx: SessionContext) -> Result<Vec<LatestMetric>> {
    let batches = ctx
        .table("metric_samples")
        .await?
        .aggregate(
            vec![ident("device_id"), ident("metric")],
            vec![
                max(time_ns(ident("time"))).alias("t"),
                last_value(
                    ident("value"),
                    vec![
                        ident("time").sort(true, false),
                        ident("value").sort(true, false),
                    ],
                )
                .alias("v"),
            ],
        )?
        .sort(vec![
            ident("device_id").sort(true, true),
            ident("metric").sort(true, false),
        ])?
        .collect()
        .await?;
    let mut out = Vec::new();
    for b in &batches {
        let (device, metric) = (strings(b, "device_id")?, strings(b, "metric")?);
        let (t, v) = (ints(b, "t")?, floats(b, "v")?);
        for r in 0..b.num_rows() {
            out.push(LatestMetric {
                device_id: if device.is_null(r) {
                    String::new()
                } else {
                    device.value(r).to_string()
                },
                metric: metric.value(r).to_string(),
                time: t.value(r),
                value: v.value(r),
            });
        }
    }
    Ok(out)
}

/// The events of `[from, to)` in `(time, offset)` order, as a plan to stream (DataFusion's
/// sort spills to disk beyond the query memory limit, so the answer never sits in memory).
pub(crate) async fn export_plan(ctx: &SessionContext, from: i64, to: i64) -> Result<DataFrame> {
    Ok(events_in(ctx, in_range(from, to)).await?.sort(vec![
        ident("time").sort(true, false),
        ident("offset").sort(true, false),
    ])?)
}
