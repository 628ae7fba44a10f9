//! SQL aggregates answered from digests.
//!
//! The digests already hold, per file, the events and distinct users of every `type`,
//! `page_url` and `source` (the last two also per type), and the distinct users and devices of
//! all events. A statement whose only table is `events`, aggregated by nothing or by one of
//! those columns with `count(*)` and `count(DISTINCT user_id)` (ungrouped also
//! `count(DISTINCT device_id)`), and filtered by nothing but a `time` range, the group column
//! `IS NOT NULL` and one `type = '…'`, asks exactly what the digest of that range answers, as
//! it answers the summary and top routes.
//!
//! For such a statement the aggregate node of the analysed plan is replaced by the digest's
//! rows, under the node's own schema, so everything above it (projections, `HAVING`,
//! `ORDER BY`, `LIMIT`, outer queries, `EXPLAIN`) runs as planned. Every other statement, and
//! this one when digests do not hold most of the range's events (right after a restart, over
//! the memory budget), runs over the files and buffers.
//!
//! Answers are the same either way: the digest of a range is exact (roaring bitmaps of user
//! ids), and a test compares both paths over the same events.
//!
//! Statements on `metric_samples` alone are answered from the samples files' digests
//! ([`crate::sample_digest`]) the same way, when they aggregate by nothing, `metric`,
//! `device_id` or both, with `count(*)`, `sum`, `avg`, `min` and `max` of `value` and
//! `count(DISTINCT device_id | metric)`, filtered by nothing but a `time` range, one
//! `metric = '…'`, one `device_id = '…'` and `device_id IS NOT NULL` (the per-device statistics
//! of a metric that IoT dashboards ask all day). Their sums and averages may differ from a
//! scan's in the last bits, as two scans' do.

use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::common::{DFSchemaRef, ExprSchema};
use datafusion::execution::SessionState;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, EmptyRelation, LogicalPlan, Operator, Values,
};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::prelude::{Expr, lit};
use datafusion::scalar::ScalarValue;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::api::Field;
use crate::digest::{Digest, Part};
use crate::manifest::Table;
use crate::sample_digest::{SampleDigest, Stats};
use crate::{Error, Result};

/// What one aggregate column counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    Events,
    DistinctUsers,
    DistinctDevices,
}

/// What an aggregate of `events` a digest answers asks.
#[derive(Debug)]
struct EventsQuestion {
    /// The group column; `None`: one row for all events.
    field: Option<Field>,
    /// Whether events without a value of `field` are filtered out (`IS NOT NULL`).
    non_null: bool,
    /// Only events of this type (`type = '…'`).
    of_type: Option<String>,
    measures: Vec<Measure>,
    /// Inclusive lower bound of `time`, ns.
    from: i64,
    /// Exclusive upper bound of `time`, ns.
    to: i64,
}

/// A group column of `metric_samples` the samples digests keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SampleKey {
    Metric,
    Device,
}

/// What one aggregate column of `metric_samples` computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SampleMeasure {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    DistinctDevices,
    DistinctMetrics,
}

/// What an aggregate of `metric_samples` the samples digests answer asks.
#[derive(Debug)]
struct SamplesQuestion {
    /// The group columns, in the statement's order.
    group: Vec<SampleKey>,
    measures: Vec<SampleMeasure>,
    /// Only samples of this metric (`metric = '…'`).
    metric: Option<String>,
    /// Only samples of this device (`device_id = '…'`).
    device: Option<String>,
    /// Samples without a device are filtered out (`device_id IS NOT NULL`).
    with_device: bool,
    /// `[from, to)` of `time`, ns.
    from: i64,
    to: i64,
}

#[derive(Debug)]
enum Question {
    Events(EventsQuestion),
    Samples(SamplesQuestion),
}

/// What digests an aggregate needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Needs {
    /// The events digest of its range, with only this part merged.
    Events(Part),
    /// The samples digests of its range.
    Samples,
}

/// An aggregate of a statement that a digest answers (see the module docs).
#[derive(Debug)]
pub(crate) struct DigestAggregate {
    /// The analysed statement.
    plan: LogicalPlan,
    /// Its aggregate node, which the digest's rows replace.
    node: Aggregate,
    question: Question,
}

impl DigestAggregate {
    /// The aggregate of `plan` a digest answers, if it has one. `events` and `samples` are
    /// the plans of the session's `events` and `metric_samples` views (files and buffers);
    /// without files a table is a plain scan of its name. A statement that reads any other
    /// relation, or both, never has one, so a statement reads one snapshot of the store.
    pub(crate) fn find(
        state: &SessionState,
        plan: &LogicalPlan,
        events: Option<&LogicalPlan>,
        samples: Option<&LogicalPlan>,
    ) -> Option<Self> {
        let relation = |p: &LogicalPlan| match p {
            LogicalPlan::TableScan(t) => match t.table_name.table() {
                "events" => Some(Table::Events),
                "metric_samples" => Some(Table::MetricSamples),
                _ => None,
            },
            other if Some(other) == events => Some(Table::Events),
            other if Some(other) == samples => Some(Table::MetricSamples),
            _ => None,
        };
        let mut relations = 0;
        let mut others = 0;
        plan.apply_with_subqueries(|p| {
            if relation(p).is_some() {
                relations += 1;
                return Ok(TreeNodeRecursion::Jump);
            }
            if matches!(p, LogicalPlan::TableScan(_)) {
                others += 1;
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .ok()?;
        if relations != 1 || others != 0 {
            return None;
        }
        // Analysed, so literals compared with `time` carry casts the simplifier can fold.
        let plan = state
            .analyzer()
            .execute_and_check(plan.clone(), state.config_options(), |_, _| {})
            .ok()?;
        let start = chrono::Utc::now();
        let options = state.config_options().clone();
        let simplify = move |e: Expr, schema: DFSchemaRef| {
            let context = SimplifyContext::builder()
                .with_schema(schema)
                .with_config_options(options.clone())
                .with_query_execution_start_time(Some(start))
                .build();
            ExprSimplifier::new(context).simplify(e).ok()
        };
        // With one table scan, only the aggregate right above it can be answerable.
        let mut found = None;
        plan.apply_with_subqueries(|p| {
            if let LogicalPlan::Aggregate(a) = p
                && let Some(f) = answerable(a, &relation, &simplify)
            {
                found = Some((a.clone(), f));
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .ok()?;
        let (node, question) = found?;
        Some(Self {
            plan,
            node,
            question,
        })
    }

    /// The `time` range it counts: `[from, to)`, ns.
    pub(crate) fn range(&self) -> (i64, i64) {
        match &self.question {
            Question::Events(q) => (q.from, q.to),
            Question::Samples(q) => (q.from, q.to),
        }
    }

    /// The digests the answer needs.
    pub(crate) fn needs(&self) -> Needs {
        match &self.question {
            Question::Events(q) => Needs::Events(events_part(q)),
            Question::Samples(_) => Needs::Samples,
        }
    }

    /// The statement with its aggregate answered by `digest` (the events digest of `[from,
    /// to)`); `None` when the digest cannot answer it after all: distinct users of the events
    /// without a value of the group column are not in it.
    pub(crate) fn answer_events(self, digest: &Digest) -> Result<Option<LogicalPlan>> {
        let schema = self.node.schema.clone();
        let Question::Events(q) = &self.question else {
            return Ok(None);
        };
        let count = |m: Measure, events: u64, users: u64| -> Result<ScalarValue> {
            bigint(match m {
                Measure::Events => events,
                Measure::DistinctUsers => users,
                Measure::DistinctDevices => digest.distinct_devices(),
            })
        };
        let counts = |events: u64, users: u64| -> Result<Vec<ScalarValue>> {
            q.measures
                .iter()
                .map(|m| count(*m, events, users))
                .collect()
        };
        let mut rows: Vec<Vec<ScalarValue>> = Vec::new();
        match &q.field {
            None => match &q.of_type {
                None => rows.push(counts(digest.events(), digest.distinct_users())?),
                Some(kind) => {
                    let (events, users) = typed_events(digest, kind);
                    rows.push(counts(events, users)?);
                }
            },
            Some(field) => {
                let group_type = schema.field(0).data_type();
                let mut values: Vec<_> = digest
                    .values(field, q.of_type.as_deref())
                    .into_iter()
                    .flatten()
                    .collect();
                values.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let with_value: u64 = values.iter().map(|(_, t)| t.count).sum();
                for (value, tally) in values {
                    let mut row =
                        vec![ScalarValue::Utf8(Some(value.to_string())).cast_to(group_type)?];
                    row.extend(counts(tally.count, tally.users.len())?);
                    rows.push(row);
                }
                let events = match &q.of_type {
                    None => digest.events(),
                    Some(kind) => typed_events(digest, kind).0,
                };
                let without_value = events.saturating_sub(with_value);
                if without_value > 0 && !q.non_null {
                    if q.measures.contains(&Measure::DistinctUsers) {
                        return Ok(None);
                    }
                    let mut row = vec![ScalarValue::try_from(group_type)?];
                    row.extend(counts(without_value, 0)?);
                    rows.push(row);
                }
            }
        }
        self.replace(rows)
    }

    /// The statement with its aggregate answered by `digests` (the samples digests of `[from,
    /// to)`).
    pub(crate) fn answer_samples(
        self,
        digests: &[Arc<SampleDigest>],
    ) -> Result<Option<LogicalPlan>> {
        let Question::Samples(q) = &self.question else {
            return Ok(None);
        };
        #[derive(Default)]
        struct Acc<'a> {
            stats: Option<Stats>,
            devices: HashSet<&'a str>,
            metrics: HashSet<&'a str>,
        }
        let distinct = q.measures.iter().any(|m| {
            matches!(
                m,
                SampleMeasure::DistinctDevices | SampleMeasure::DistinctMetrics
            )
        });
        // Keyed by the group columns' values (unused places `None`), sorted at the end.
        let mut groups: HashMap<[Option<&str>; 2], Acc> = HashMap::new();
        for d in digests {
            for s in d.series(q.metric.as_deref()) {
                let device = s.device.as_deref();
                if (q.with_device && device.is_none())
                    || q.device.as_deref().is_some_and(|want| device != Some(want))
                {
                    continue;
                }
                let mut key = [None; 2];
                for (place, k) in key.iter_mut().zip(&q.group) {
                    *place = match k {
                        SampleKey::Metric => Some(&*s.metric),
                        SampleKey::Device => device,
                    };
                }
                let acc = groups.entry(key).or_default();
                match &mut acc.stats {
                    Some(mine) => mine.merge(&s.stats),
                    None => acc.stats = Some(s.stats),
                }
                if distinct {
                    if let Some(d) = device {
                        acc.devices.insert(d);
                    }
                    acc.metrics.insert(&s.metric);
                }
            }
        }
        if q.group.is_empty() && groups.is_empty() {
            groups.insert([None; 2], Acc::default());
        }
        let mut groups: Vec<([Option<&str>; 2], Acc)> = groups.into_iter().collect();
        groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let schema = self.node.schema.clone();
        let mut rows = Vec::with_capacity(groups.len());
        for (key, acc) in groups {
            let mut row = Vec::with_capacity(q.group.len() + q.measures.len());
            for (i, v) in key.into_iter().take(q.group.len()).enumerate() {
                row.push(
                    ScalarValue::Utf8(v.map(str::to_string))
                        .cast_to(schema.field(i).data_type())?,
                );
            }
            let stat = |f: fn(&Stats) -> f64| ScalarValue::Float64(acc.stats.as_ref().map(f));
            for m in &q.measures {
                row.push(match m {
                    SampleMeasure::Count => bigint(acc.stats.map_or(0, |s| s.count))?,
                    SampleMeasure::Sum => stat(|s| s.sum),
                    SampleMeasure::Avg => stat(|s| s.sum / s.count as f64),
                    SampleMeasure::Min => stat(|s| s.min),
                    SampleMeasure::Max => stat(|s| s.max),
                    SampleMeasure::DistinctDevices => bigint(acc.devices.len() as u64)?,
                    SampleMeasure::DistinctMetrics => bigint(acc.metrics.len() as u64)?,
                });
            }
            rows.push(row);
        }
        self.replace(rows)
    }

    /// The statement with its aggregate node replaced by `rows` (`None` when they do not have
    /// the node's column types).
    fn replace(self, rows: Vec<Vec<ScalarValue>>) -> Result<Option<LogicalPlan>> {
        let schema = self.node.schema.clone();
        // The answers must land in the node's own column types.
        let types_match = rows.first().is_none_or(|row| {
            row.iter()
                .zip(schema.fields())
                .all(|(v, f)| v.data_type() == *f.data_type())
        });
        if !types_match {
            return Ok(None);
        }
        let answered = if rows.is_empty() {
            LogicalPlan::EmptyRelation(EmptyRelation {
                produce_one_row: false,
                schema,
            })
        } else {
            LogicalPlan::Values(Values {
                schema,
                values: rows
                    .into_iter()
                    .map(|row| row.into_iter().map(lit).collect())
                    .collect(),
            })
        };
        let node = self.node;
        let mut answered = Some(answered);
        let plan = self
            .plan
            .transform_up_with_subqueries(|p| match p {
                LogicalPlan::Aggregate(a) if a == node => match answered.take() {
                    Some(v) => Ok(Transformed::yes(v)),
                    None => Ok(Transformed::no(LogicalPlan::Aggregate(a))),
                },
                other => Ok(Transformed::no(other)),
            })?
            .data;
        Ok(Some(plan))
    }
}

/// What `a` asks, when a digest answers it: it sits on `events` or `metric_samples` through
/// nothing but filters and aliases, and asks only what digests hold.
fn answerable(
    a: &Aggregate,
    relation: &dyn Fn(&LogicalPlan) -> Option<Table>,
    simplify: &dyn Fn(Expr, DFSchemaRef) -> Option<Expr>,
) -> Option<Question> {
    let mut filters: Vec<(Expr, DFSchemaRef)> = Vec::new();
    let mut input = a.input.as_ref();
    let table = loop {
        match input {
            LogicalPlan::Filter(f) => {
                filters.push((f.predicate.clone(), f.input.schema().clone()));
                input = f.input.as_ref();
            }
            LogicalPlan::SubqueryAlias(s) => input = s.input.as_ref(),
            other => break relation(other)?,
        }
    };
    // The conjuncts of every filter, simplified (literals folded, `now()` evaluated).
    let mut predicates = Vec::new();
    for (predicate, schema) in filters {
        let predicate = simplify(predicate, schema)?;
        predicates.extend(split_conjunction(&predicate).into_iter().cloned());
    }
    match table {
        Table::Events => events_question(a, &predicates).map(Question::Events),
        Table::MetricSamples => samples_question(a, &predicates).map(Question::Samples),
    }
}

/// What `a`, an aggregate of `events` filtered by `predicates`, asks of the events digest.
fn events_question(a: &Aggregate, predicates: &[Expr]) -> Option<EventsQuestion> {
    let field = match a.group_expr.as_slice() {
        [] => None,
        [Expr::Column(c)] => Some(match c.name.as_str() {
            "type" => Field::Type,
            "page_url" => Field::PageUrl,
            "source" => Field::Source,
            _ => return None,
        }),
        _ => return None,
    };
    let mut measures = Vec::with_capacity(a.aggr_expr.len());
    for call in calls(a)? {
        measures.push(match (call.func, call.distinct, call.column) {
            ("count", false, _) if call.never_null => Measure::Events,
            ("count", true, Some("user_id")) => Measure::DistinctUsers,
            ("count", true, Some("device_id")) if field.is_none() => Measure::DistinctDevices,
            _ => return None,
        });
    }
    let (mut from, mut to) = (i64::MIN, i64::MAX);
    let mut non_null = false;
    let mut of_type: Option<String> = None;
    for p in predicates {
        match p {
            Expr::Literal(ScalarValue::Boolean(Some(true)), _) => {}
            Expr::IsNotNull(e) => match e.as_ref() {
                Expr::Column(c) if field.as_ref().is_some_and(|f| group_name(f) == c.name) => {
                    non_null = true;
                }
                _ => return None,
            },
            Expr::BinaryExpr(b) => match column_equals(b, "type") {
                // Per-type values are kept for `page_url` and `source` only.
                Some(kind) => {
                    if of_type.as_ref().is_some_and(|k| *k != kind)
                        || field.as_ref().is_some_and(|f| *f == Field::Type)
                        || measures.contains(&Measure::DistinctDevices)
                    {
                        return None;
                    }
                    of_type = Some(kind);
                }
                None => {
                    let (lo, hi) = time_bound(b)?;
                    from = from.max(lo);
                    to = to.min(hi);
                }
            },
            _ => return None,
        }
    }
    Some(EventsQuestion {
        field,
        non_null,
        of_type,
        measures,
        from,
        to,
    })
}

/// What `a`, an aggregate of `metric_samples` filtered by `predicates`, asks of the samples
/// digests.
fn samples_question(a: &Aggregate, predicates: &[Expr]) -> Option<SamplesQuestion> {
    let mut group = Vec::with_capacity(2);
    for e in &a.group_expr {
        let Expr::Column(c) = e else { return None };
        let key = match c.name.as_str() {
            "metric" => SampleKey::Metric,
            "device_id" => SampleKey::Device,
            _ => return None,
        };
        if group.contains(&key) {
            return None;
        }
        group.push(key);
    }
    let mut measures = Vec::with_capacity(a.aggr_expr.len());
    for call in calls(a)? {
        measures.push(match (call.func, call.distinct, call.column) {
            ("count", false, _) if call.never_null => SampleMeasure::Count,
            ("count", true, Some("device_id")) => SampleMeasure::DistinctDevices,
            ("count", true, Some("metric")) => SampleMeasure::DistinctMetrics,
            ("sum", false, Some("value")) => SampleMeasure::Sum,
            ("avg", false, Some("value")) => SampleMeasure::Avg,
            ("min", _, Some("value")) => SampleMeasure::Min,
            ("max", _, Some("value")) => SampleMeasure::Max,
            _ => return None,
        });
    }
    let mut q = SamplesQuestion {
        group,
        measures,
        metric: None,
        device: None,
        with_device: false,
        from: i64::MIN,
        to: i64::MAX,
    };
    for p in predicates {
        match p {
            Expr::Literal(ScalarValue::Boolean(Some(true)), _) => {}
            Expr::IsNotNull(e) => match e.as_ref() {
                Expr::Column(c) if c.name == "device_id" => q.with_device = true,
                _ => return None,
            },
            Expr::BinaryExpr(b) => {
                if let Some(m) = column_equals(b, "metric") {
                    if q.metric.as_ref().is_some_and(|mine| *mine != m) {
                        return None;
                    }
                    q.metric = Some(m);
                } else if let Some(d) = column_equals(b, "device_id") {
                    if q.device.as_ref().is_some_and(|mine| *mine != d) {
                        return None;
                    }
                    q.device = Some(d);
                } else {
                    let (lo, hi) = time_bound(b)?;
                    q.from = q.from.max(lo);
                    q.to = q.to.min(hi);
                }
            }
            _ => return None,
        }
    }
    Some(q)
}

/// The part of an events digest `q` needs (see [`Digest::merge_all`]).
fn events_part(q: &EventsQuestion) -> Part {
    match (&q.field, &q.of_type) {
        (Some(f), Some(kind)) => Part::OfType(kind.clone(), f.clone()),
        (Some(f), None) => Part::Field(f.clone()),
        (None, Some(_)) => Part::Field(Field::Type),
        (None, None) if q.measures.iter().all(|m| *m == Measure::Events) => {
            Part::Field(Field::Type)
        }
        (None, None) => Part::All,
    }
}

/// One aggregate call of `f(x)` form: no `FILTER`, no `ORDER BY`, one argument.
struct Call<'a> {
    func: &'a str,
    distinct: bool,
    /// The argument's column, if it is one.
    column: Option<&'a str>,
    /// Whether the argument is never null (a non-null literal or a non-nullable column), so
    /// `count` of it counts rows.
    never_null: bool,
}

/// The aggregate calls of `a`, if all are of `f(x)` form.
fn calls(a: &Aggregate) -> Option<Vec<Call<'_>>> {
    let input_schema = a.input.schema();
    a.aggr_expr
        .iter()
        .map(|e| {
            let Expr::AggregateFunction(f) = unalias(e) else {
                return None;
            };
            let p = &f.params;
            if p.filter.is_some() || !p.order_by.is_empty() {
                return None;
            }
            let [arg] = p.args.as_slice() else {
                return None;
            };
            let (column, never_null) = match arg {
                Expr::Literal(v, _) => (None, !v.is_null()),
                Expr::Column(c) => (
                    Some(c.name.as_str()),
                    input_schema
                        .field_from_column(c)
                        .is_ok_and(|f| !f.is_nullable()),
                ),
                _ => (None, false),
            };
            Some(Call {
                func: f.func.name(),
                distinct: p.distinct,
                column,
                never_null,
            })
        })
        .collect()
}

/// `n` as a SQL `BIGINT`.
fn bigint(n: u64) -> Result<ScalarValue> {
    i64::try_from(n)
        .map(|n| ScalarValue::Int64(Some(n)))
        .map_err(|_| Error::Task(format!("count {n} exceeds SQL's BIGINT")))
}

/// Events and distinct users of type `kind`.
fn typed_events(digest: &Digest, kind: &str) -> (u64, u64) {
    digest
        .values(&Field::Type, None)
        .into_iter()
        .flatten()
        .find(|(v, _)| *v == kind)
        .map_or((0, 0), |(_, t)| (t.count, t.users.len()))
}

/// The column a digest field is.
fn group_name(f: &Field) -> &'static str {
    match f {
        Field::Type => "type",
        Field::PageUrl => "page_url",
        _ => "source",
    }
}

fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        other => other,
    }
}

/// The string a `column = '…'` comparison (either way round) asks for.
fn column_equals(b: &BinaryExpr, column: &str) -> Option<String> {
    let v = match (b.left.as_ref(), b.op, b.right.as_ref()) {
        (Expr::Column(c), Operator::Eq, Expr::Literal(v, _))
        | (Expr::Literal(v, _), Operator::Eq, Expr::Column(c))
            if c.name == column =>
        {
            v
        }
        _ => return None,
    };
    v.try_as_str().flatten().map(str::to_string)
}

/// `[from, to)` of a comparison of `time` with a timestamp, either way round.
fn time_bound(b: &BinaryExpr) -> Option<(i64, i64)> {
    let (op, v) = match (b.left.as_ref(), b.right.as_ref()) {
        (Expr::Column(c), Expr::Literal(v, _)) if c.name == "time" => (b.op, v),
        (Expr::Literal(v, _), Expr::Column(c)) if c.name == "time" => (b.op.swap()?, v),
        _ => return None,
    };
    let ScalarValue::TimestampNanosecond(Some(t), _) = v else {
        return None;
    };
    let t = *t;
    Some(match op {
        Operator::Gt => (t.checked_add(1)?, i64::MAX),
        Operator::GtEq => (t, i64::MAX),
        Operator::Lt => (i64::MIN, t),
        Operator::LtEq => (i64::MIN, t.checked_add(1)?),
        Operator::Eq => (t, t.checked_add(1)?),
        _ => return None,
    })
}
