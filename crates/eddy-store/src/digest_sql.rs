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

use crate::analytics::Field;
use crate::digest::{Digest, Part};
use crate::{Error, Result};

/// What one aggregate column counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    Events,
    DistinctUsers,
    DistinctDevices,
}

/// What an aggregate a digest answers asks.
#[derive(Debug)]
struct Question {
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
    /// The aggregate of `plan` a digest answers, if it has one. `events` is the plan of the
    /// session's `events` view (files and buffers); without files the table is a plain scan
    /// named `events`. A statement that reads any other relation never has one, so a
    /// statement reads one snapshot of the store.
    pub(crate) fn find(
        state: &SessionState,
        plan: &LogicalPlan,
        events: Option<&LogicalPlan>,
    ) -> Option<Self> {
        let is_events = |p: &LogicalPlan| match p {
            LogicalPlan::TableScan(t) => t.table_name.table() == "events",
            other => Some(other) == events,
        };
        let mut relations = 0;
        let mut others = 0;
        plan.apply_with_subqueries(|p| {
            if is_events(p) {
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
                && let Some(f) = answerable(a, &is_events, &simplify)
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
        (self.question.from, self.question.to)
    }

    /// The part of a digest the answer needs (see [`Digest::merge_all`]).
    pub(crate) fn part(&self) -> Part {
        let q = &self.question;
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

    /// The statement with its aggregate answered by `digest` (the digest of `[from, to)`);
    /// `None` when the digest cannot answer it after all: distinct users of the events without
    /// a value of the group column are not in it.
    pub(crate) fn answer(self, digest: &Digest) -> Result<Option<LogicalPlan>> {
        let schema = self.node.schema.clone();
        let q = &self.question;
        let count = |m: Measure, events: u64, users: u64| -> Result<ScalarValue> {
            let n = match m {
                Measure::Events => events,
                Measure::DistinctUsers => users,
                Measure::DistinctDevices => digest.distinct_devices(),
            };
            i64::try_from(n)
                .map(|n| ScalarValue::Int64(Some(n)))
                .map_err(|_| Error::Task(format!("count {n} exceeds SQL's BIGINT")))
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
        // The counts must land in the node's own column types.
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

/// What `a` asks, when a digest answers it: it sits on `events` through nothing but filters
/// and aliases, and asks only what digests hold.
fn answerable(
    a: &Aggregate,
    is_events: &dyn Fn(&LogicalPlan) -> bool,
    simplify: &dyn Fn(Expr, DFSchemaRef) -> Option<Expr>,
) -> Option<Question> {
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
    let mut predicates: Vec<(Expr, DFSchemaRef)> = Vec::new();
    let mut input = a.input.as_ref();
    loop {
        match input {
            LogicalPlan::Filter(f) => {
                predicates.push((f.predicate.clone(), f.input.schema().clone()));
                input = f.input.as_ref();
            }
            LogicalPlan::SubqueryAlias(s) => input = s.input.as_ref(),
            events if is_events(events) => break,
            _ => return None,
        }
    }
    let input_schema = a.input.schema();
    let mut measures = Vec::with_capacity(a.aggr_expr.len());
    for e in &a.aggr_expr {
        let Expr::AggregateFunction(f) = unalias(e) else {
            return None;
        };
        let p = &f.params;
        if f.func.name() != "count" || p.filter.is_some() || !p.order_by.is_empty() {
            return None;
        }
        let [arg] = p.args.as_slice() else {
            return None;
        };
        measures.push(match (p.distinct, arg) {
            (false, Expr::Literal(v, _)) if !v.is_null() => Measure::Events,
            (false, Expr::Column(c))
                if input_schema
                    .field_from_column(c)
                    .is_ok_and(|f| !f.is_nullable()) =>
            {
                Measure::Events
            }
            (true, Expr::Column(c)) if c.name == "user_id" => Measure::DistinctUsers,
            (true, Expr::Column(c)) if c.name == "device_id" && field.is_none() => {
                Measure::DistinctDevices
            }
            _ => return None,
        });
    }
    let (mut from, mut to) = (i64::MIN, i64::MAX);
    let mut non_null = false;
    let mut of_type: Option<String> = None;
    for (predicate, schema) in predicates {
        let predicate = simplify(predicate, schema)?;
        for p in split_conjunction(&predicate) {
            match p {
                Expr::Literal(ScalarValue::Boolean(Some(true)), _) => {}
                Expr::IsNotNull(e) => match e.as_ref() {
                    Expr::Column(c) if field.as_ref().is_some_and(|f| group_name(f) == c.name) => {
                        non_null = true;
                    }
                    _ => return None,
                },
                Expr::BinaryExpr(b) => match type_equals(b) {
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
    }
    Some(Question {
        field,
        non_null,
        of_type,
        measures,
        from,
        to,
    })
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

/// The type a `type = '…'` comparison (either way round) asks for.
fn type_equals(b: &BinaryExpr) -> Option<String> {
    let v = match (b.left.as_ref(), b.op, b.right.as_ref()) {
        (Expr::Column(c), Operator::Eq, Expr::Literal(v, _))
        | (Expr::Literal(v, _), Operator::Eq, Expr::Column(c))
            if c.name == "type" =>
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
