//! The questions the REST API asks of the store, behind the [`Store`] trait.
//!
//! Filters are built as DataFusion expressions (never by splicing user input into SQL text),
//! in a session that holds only the calling tenant's tables.

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef, TimestampNanosecondType};
use async_trait::async_trait;
use datafusion::functions::core::expr_fn::get_field;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{ident, lit};
use datafusion::scalar::ScalarValue;

use crate::analytics::{
    self, FunnelAnswer, FunnelQuery, Group, GroupedQuery, LatestMetric, Measure, RetentionQuery,
    Summary, SummaryQuery, Top, TopQuery, UserProfile, UserQuery,
};
use crate::digest::{Digest, Part};
use crate::exprs::{property_candidates, ts};
use crate::journeys::Cohort;
use crate::rows::{
    DeviceMetrics, MetricPoint, MetricSamples, StoredEvent, column, events_of, strings,
};
use crate::schema::TZ;
use crate::store::{EmbeddedStore, Scan};
use crate::timeseries::Timeseries;
use crate::timeseries::TimeseriesQuery;
use crate::{Error, Result};

pub use crate::rows::Cursor;

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Inclusive lower bound of event time (ns).
    pub from: Option<i64>,
    /// Exclusive upper bound of event time (ns).
    pub to: Option<i64>,
    pub r#type: Option<String>,
    pub device_id: Option<String>,
    pub user_id: Option<String>,
    pub source: Option<String>,
    /// Property equality: name → value as text (`/home`, `45`, `true`).
    pub properties: Vec<(String, String)>,
    pub newest_first: bool,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

/// One page of events.
#[derive(Debug, Clone)]
pub struct EventPage {
    pub events: Vec<StoredEvent>,
    pub next_cursor: Option<String>,
}

/// One device: when it was seen, how often, which metrics it reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceSummary {
    pub device_id: String,
    pub first_seen: String,
    pub last_seen: String,
    pub event_count: u64,
    pub metrics: Vec<String>,
}

/// A page of devices, ordered by id.
#[derive(Debug, Clone)]
pub struct DevicePage {
    pub devices: Vec<DeviceSummary>,
    /// The last id of this page when more follow.
    pub next_cursor: Option<String>,
}

/// The store seam the query layer uses.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Events of `tenant` matching `filter`, ordered by (time, offset).
    async fn events(&self, tenant: &str, filter: EventFilter) -> Result<EventPage>;

    /// Devices of `tenant` with an id after `after`, at most `limit`.
    async fn devices(
        &self,
        tenant: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<DevicePage>;

    /// For each metric of a device: its newest `points` samples (time, value), oldest first.
    /// `None` when the device has no samples.
    async fn device_metrics(
        &self,
        tenant: &str,
        device_id: &str,
        points: usize,
    ) -> Result<Option<DeviceMetrics>>;

    /// Buckets of one metric, computed from raw samples.
    async fn timeseries(&self, tenant: &str, q: TimeseriesQuery) -> Result<Timeseries>;

    /// Per (bucket, value) of an event dimension: event count and exact distinct users, from
    /// raw events.
    async fn dimension_counts(
        &self,
        tenant: &str,
        q: DimensionQuery,
    ) -> Result<Vec<DimensionCount>>;

    /// Runs one read-only SQL statement in a session holding only `tenant`'s tables
    /// (`events`, `metric_samples`, and `q.extra`), within the query timeout and memory limit.
    async fn sql(&self, tenant: &str, q: SqlQuery) -> Result<SqlAnswer>;

    /// The names of the tables a SQL statement reads, from its parse tree (CTE names left out;
    /// unquoted names lowercased, as the session resolves them). A statement that does not
    /// parse is refused with the error [`Store::sql`] would give.
    fn sql_tables(&self, sql: &str) -> Result<std::collections::BTreeSet<String>>;

    /// Totals and top lists of `[q.from, q.to)`.
    async fn summary(&self, tenant: &str, q: SummaryQuery) -> Result<Summary>;

    /// The most frequent values of a field.
    async fn top(&self, tenant: &str, q: TopQuery) -> Result<Top>;

    /// A measure per bucket and value of a field (top values, then "other").
    async fn grouped(&self, tenant: &str, q: GroupedQuery) -> Result<Vec<Group>>;

    /// One user's activity; `None` when the user has no events in the range.
    async fn user(&self, tenant: &str, q: UserQuery) -> Result<Option<UserProfile>>;

    /// Users through ordered steps (see [`crate::journeys::funnel_user`]).
    async fn funnel(&self, tenant: &str, q: FunnelQuery) -> Result<FunnelAnswer>;

    /// Cohorts by first occurrence of an event and their returns per period.
    async fn retention(&self, tenant: &str, q: RetentionQuery) -> Result<Vec<Cohort>>;

    /// The newest sample of every (device, metric).
    async fn latest_metrics(&self, tenant: &str) -> Result<Vec<LatestMetric>>;

    /// The events of `[from, to)` in `(time, offset)` order, streamed: a receiver of batches
    /// that a bounded channel feeds as the reader takes them (an error ends the stream).
    async fn export(
        &self,
        tenant: &str,
        from: i64,
        to: i64,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<RecordBatch>>>;
}

/// The tables `sql` reads, from its parse tree: CTE names left out, unquoted names lowercased.
pub fn statement_tables(sql: &str) -> Result<std::collections::BTreeSet<String>> {
    let statements = datafusion::sql::parser::DFParser::parse_sql(sql).map_err(sql_error)?;
    let mut names = std::collections::BTreeSet::new();
    for s in &statements {
        let (tables, _ctes) =
            datafusion::sql::resolve::resolve_table_references(s, true).map_err(sql_error)?;
        names.extend(tables.iter().map(|t| t.table().to_string()));
    }
    Ok(names)
}

/// What a failed SQL statement tells its caller: the statement's own errors (parsing, planning,
/// casts, arithmetic) are the caller's to fix; memory is the limit; I/O is ours.
/// The messages are Eddy's own; the engine's detail follows only where it names what to fix
/// (a position, a column), without its type names.
fn sql_error(e: datafusion::error::DataFusionError) -> Error {
    use datafusion::error::DataFusionError as D;
    use datafusion::sql::sqlparser::parser::ParserError as P;
    let refused = |what: &str| {
        Error::InvalidQuery(format!(
            "{what} statements are refused: only read-only queries run here (SELECT, WITH, EXPLAIN, SHOW)"
        ))
    };
    match e.find_root() {
        D::ResourcesExhausted(m) => Error::MemoryLimit(m.clone()),
        D::IoError(_) | D::ParquetError(_) | D::ObjectStore(_) | D::External(_) => Error::Query(e),
        D::SQL(p, _) => Error::InvalidQuery(match p.as_ref() {
            P::ParserError(m) | P::TokenizerError(m) => {
                format!("the statement does not parse: {m}")
            }
            P::RecursionLimitExceeded => "the statement is nested too deeply to parse".to_string(),
        }),
        D::Plan(m) if m.starts_with("DDL not supported") => refused("DDL (CREATE, DROP, ALTER …)"),
        D::Plan(m) if m.starts_with("DML not supported") => {
            refused("DML (INSERT, UPDATE, DELETE, COPY …)")
        }
        D::Plan(m) if m.starts_with("Statement not supported") => refused("SET and other session"),
        D::Plan(m) => Error::InvalidQuery(format!("the statement cannot be planned: {m}")),
        D::SchemaError(..) => Error::InvalidQuery(format!(
            "the statement names something the tenant's tables do not have: {}",
            e.find_root()
                .strip_backtrace()
                .trim_start_matches("Schema error: ")
        )),
        _ => Error::InvalidQuery(e.strip_backtrace()),
    }
}

/// One SQL statement over a tenant's tables (`POST /api/v1/query`).
#[derive(Debug, Clone)]
pub struct SqlQuery {
    pub sql: String,
    /// Tables other parts of Eddy contribute (rollups, alerts), already the tenant's only.
    pub extra: Vec<ExtraTable>,
    /// More rows than this is an error ([`Error::TooManyRows`]).
    pub max_rows: usize,
}

/// A table registered in a SQL session: Parquet files plus in-memory batches.
#[derive(Debug, Clone)]
pub struct ExtraTable {
    pub name: String,
    pub schema: arrow::datatypes::SchemaRef,
    pub files: Vec<std::path::PathBuf>,
    pub batches: Vec<RecordBatch>,
}

/// A SQL answer: its schema (also when there are no rows) and its batches.
#[derive(Debug, Clone)]
pub struct SqlAnswer {
    pub schema: arrow::datatypes::SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// Which dimension counts to compute: events with `time` in `[from, to)`, bucketed.
#[derive(Debug, Clone)]
pub struct DimensionQuery {
    /// `type`, `page_url` or `source`.
    pub dimension: String,
    /// Only this value of the dimension.
    pub value: Option<String>,
    pub from: i64,
    pub to: i64,
    pub bucket_secs: u64,
}

/// One (bucket, value) of [`Store::dimension_counts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimensionCount {
    /// Bucket start, ns.
    pub bucket: i64,
    pub value: String,
    pub count: u64,
    /// Distinct non-null `user_id`s.
    pub distinct_users: u64,
}

#[async_trait]
impl Store for Arc<EmbeddedStore> {
    fn sql_tables(&self, sql: &str) -> Result<std::collections::BTreeSet<String>> {
        statement_tables(sql)
    }

    async fn sql(&self, tenant: &str, q: SqlQuery) -> Result<SqlAnswer> {
        if q.sql.trim().is_empty() {
            return Err(Error::InvalidQuery("`sql` is empty".into()));
        }
        let store = Arc::clone(self);
        let owner = tenant.to_string();
        self.query(tenant, i64::MIN, i64::MAX, move |ctx| async move {
            for t in q.extra {
                crate::session::register(&ctx, &t.name, t.schema, t.files, t.batches).await?;
            }
            // Read-only: no DDL (CREATE, DROP, CREATE EXTERNAL TABLE), no DML (INSERT, COPY),
            // no statements (SET, transactions). The session has no URL tables, so a path in
            // FROM names no table.
            let options = datafusion::execution::context::SQLOptions::new()
                .with_allow_ddl(false)
                .with_allow_dml(false)
                .with_allow_statements(false);
            let df = ctx
                .sql_with_options(&q.sql, options)
                .await
                .map_err(sql_error)?;
            let schema = Arc::new(df.schema().as_arrow().clone());
            let df = match store.digest_plan(&owner, &ctx, df.logical_plan()).await? {
                Some(plan) => datafusion::dataframe::DataFrame::new(ctx.state(), plan),
                None => df,
            };
            // EXPLAIN must stay the plan's root; its answer is a few rows anyway.
            let df = match df.logical_plan() {
                LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => df,
                _ => df
                    .limit(0, Some(q.max_rows.saturating_add(1)))
                    .map_err(sql_error)?,
            };
            let batches = df.collect().await.map_err(sql_error)?;
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            if rows > q.max_rows {
                return Err(Error::TooManyRows(q.max_rows));
            }
            let (schema, batches) = without_views(&schema, batches)?;
            Ok(SqlAnswer { schema, batches })
        })
        .await
    }

    async fn summary(&self, tenant: &str, q: SummaryQuery) -> Result<Summary> {
        ordered(q.from, q.to)?;
        Ok(self
            .digest(tenant, q.from, q.to, q.late_after_ns, Part::All)
            .await?
            .summary(q.top))
    }

    async fn top(&self, tenant: &str, q: TopQuery) -> Result<Top> {
        ordered(q.from, q.to)?;
        if q.filter.is_empty() && Digest::covers(&q.field) {
            let late = self.config().late_after_ns;
            let d = self
                .digest(tenant, q.from, q.to, late, Part::Field(q.field.clone()))
                .await?;
            if let Some(top) = d.top(&q.field, q.limit) {
                return Ok(top);
            }
        }
        self.query(tenant, q.from, q.to, |ctx| analytics::top(ctx, q))
            .await
    }

    async fn grouped(&self, tenant: &str, q: GroupedQuery) -> Result<Vec<Group>> {
        ordered(q.from, q.to)?;
        self.check_buckets(q.from, q.to, q.bucket_secs)?;
        let bucket_ns = i64::try_from(q.bucket_secs)
            .ok()
            .and_then(|s| s.checked_mul(1_000_000_000));
        let distinct = match q.measure {
            Measure::Count => Some(false),
            Measure::DistinctUsers => Some(true),
            Measure::Metric { .. } => None,
        };
        if let (Some(distinct), Some(b)) = (distinct, bucket_ns)
            && q.filter.is_empty()
            && Digest::covers(&q.field)
            && b % 3_600_000_000_000 == 0
        {
            let late = self.config().late_after_ns;
            let buckets = self
                .digest_buckets(
                    tenant,
                    q.from,
                    q.to,
                    late,
                    Some(b),
                    Part::Field(q.field.clone()),
                )
                .await?;
            return Ok(crate::digest::grouped(
                &buckets, &q.field, distinct, q.limit,
            ));
        }
        self.query(tenant, q.from, q.to, |ctx| analytics::grouped(ctx, q))
            .await
    }

    async fn user(&self, tenant: &str, q: UserQuery) -> Result<Option<UserProfile>> {
        ordered(q.from, q.to)?;
        self.query(tenant, q.from, q.to, |ctx| analytics::user(ctx, q))
            .await
    }

    async fn funnel(&self, tenant: &str, q: FunnelQuery) -> Result<FunnelAnswer> {
        ordered(q.from, q.to)?;
        let to = q.to.saturating_add(q.window_ns);
        self.query_scan(tenant, q.from, to, Scan::Broad, |ctx| {
            analytics::funnel(ctx, q)
        })
        .await
    }

    async fn retention(&self, tenant: &str, q: RetentionQuery) -> Result<Vec<Cohort>> {
        ordered(q.from, q.to)?;
        // Cohorts look back to each user's first event: the whole history is in the session.
        self.query_scan(tenant, i64::MIN, i64::MAX, Scan::Broad, |ctx| {
            analytics::retention(ctx, q)
        })
        .await
    }

    async fn latest_metrics(&self, tenant: &str) -> Result<Vec<LatestMetric>> {
        self.query(tenant, i64::MIN, i64::MAX, analytics::latest_metrics)
            .await
    }

    async fn export(
        &self,
        tenant: &str,
        from: i64,
        to: i64,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<RecordBatch>>> {
        use futures_util::StreamExt;
        // Opening the session and planning count against the query timeout; streaming does
        // not (a slow reader slows only its own export: the channel holds two batches).
        ordered(from, to)?;
        let mut stream = self
            .query(tenant, from, to, move |ctx| async move {
                Ok(analytics::export_plan(&ctx, from, to)
                    .await?
                    .execute_stream()
                    .await?)
            })
            .await?;
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        self.spawn_query_task(async move {
            // The `events` schema as stored (scans decode strings as views).
            let schema = crate::schema::events_schema();
            while let Some(b) = stream.next().await {
                let b = b
                    .map_err(Error::from)
                    .and_then(|b| crate::session::cast_to(&b, &schema));
                let failed = b.is_err();
                if tx.send(b).await.is_err() || failed {
                    break;
                }
            }
        })?;
        Ok(rx)
    }

    async fn events(&self, tenant: &str, f: EventFilter) -> Result<EventPage> {
        let from = f.from.unwrap_or(i64::MIN);
        let to = f.to.unwrap_or(i64::MAX);
        if from >= to {
            return Ok(EventPage {
                events: vec![],
                next_cursor: None,
            });
        }
        let limit = f.limit.clamp(1, self.config().max_result_rows);
        self.query(tenant, from, to, move |ctx| async move {
            let mut pred = ident("time").gt_eq(ts(from)).and(ident("time").lt(ts(to)));
            for (name, v) in [
                ("type", f.r#type),
                ("device_id", f.device_id),
                ("user_id", f.user_id),
                ("source", f.source),
            ] {
                if let Some(v) = v {
                    pred = pred.and(ident(name).eq(lit(v)));
                }
            }
            for (k, v) in f.properties {
                pred = pred
                    .and(get_field(ident("properties"), k).in_list(property_candidates(&v), false));
            }
            if let Some(c) = f.cursor {
                let (t, o) = (ts(c.time), lit(c.offset));
                let after = if f.newest_first {
                    ident("time")
                        .lt(t.clone())
                        .or(ident("time").eq(t).and(ident("offset").lt(o)))
                } else {
                    ident("time")
                        .gt(t.clone())
                        .or(ident("time").eq(t).and(ident("offset").gt(o)))
                };
                pred = pred.and(after);
            }
            let asc = !f.newest_first;
            let df = ctx
                .table("events")
                .await?
                .filter(pred)?
                .sort(vec![
                    ident("time").sort(asc, false),
                    ident("offset").sort(asc, false),
                ])?
                .limit(0, Some(limit + 1))?;
            let batches = df.collect().await?;
            let mut events = events_of(&batches)?;
            let next_cursor = if events.len() > limit {
                events.truncate(limit);
                events.last().map(|e| e.cursor().encode())
            } else {
                None
            };
            Ok(EventPage {
                events,
                next_cursor,
            })
        })
        .await
    }

    async fn devices(
        &self,
        tenant: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<DevicePage> {
        let limit = limit.clamp(1, self.config().max_result_rows);
        let after = after.unwrap_or_default();
        self.query(tenant, i64::MIN, i64::MAX, move |ctx| async move {
            // `limit` is a number we produced, the only value written into the SQL text.
            let sql = format!(
                "SELECT device_id, min(time) AS first_seen, max(time) AS last_seen, count(*) AS events \
                 FROM events WHERE device_id IS NOT NULL AND device_id > $1 \
                 GROUP BY device_id ORDER BY device_id LIMIT {}",
                limit + 1
            );
            let batches = sql_collect(ctx.clone(), sql, vec![utf8(&after)]).await?;
            let mut devices = Vec::new();
            for b in &batches {
                let ids = strings(b, "device_id")?;
                let first = column(b, "first_seen")?.as_primitive::<TimestampNanosecondType>();
                let last = column(b, "last_seen")?.as_primitive::<TimestampNanosecondType>();
                let count = column(b, "events")?.as_primitive::<arrow::datatypes::Int64Type>();
                for r in 0..b.num_rows() {
                    devices.push(DeviceSummary {
                        device_id: ids.value(r).to_string(),
                        first_seen: eddy_model::time::format_rfc3339(first.value(r)),
                        last_seen: eddy_model::time::format_rfc3339(last.value(r)),
                        event_count: u64::try_from(count.value(r)).unwrap_or(0),
                        metrics: Vec::new(),
                    });
                }
            }
            let next_cursor = if devices.len() > limit {
                devices.truncate(limit);
                devices.last().map(|d| d.device_id.clone())
            } else {
                None
            };
            if let Some(last) = devices.last().map(|d| d.device_id.clone()) {
                let sql = "SELECT DISTINCT device_id, metric FROM metric_samples \
                           WHERE device_id > $1 AND device_id <= $2 ORDER BY device_id, metric";
                let batches = sql_collect(ctx, sql.to_string(), vec![utf8(&after), utf8(&last)]).await?;
                let mut names: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
                for b in &batches {
                    let (ids, metric) = (strings(b, "device_id")?, strings(b, "metric")?);
                    for r in 0..b.num_rows() {
                        names.entry(ids.value(r).to_string()).or_default().push(metric.value(r).to_string());
                    }
                }
                for d in &mut devices {
                    d.metrics = names.remove(&d.device_id).unwrap_or_default();
                }
            }
            Ok(DevicePage { devices, next_cursor })
        })
        .await
    }

    async fn timeseries(&self, tenant: &str, q: TimeseriesQuery) -> Result<Timeseries> {
        self.check_buckets(q.from, q.to, q.bucket_secs)?;
        let (from, to) = (q.from, q.to);
        self.query(tenant, from, to, move |ctx| async move {
            let (sql, params) = q.sql();
            let batches = sql_collect(ctx, sql, params).await?;
            q.rows(&batches)
        })
        .await
    }

    async fn dimension_counts(
        &self,
        tenant: &str,
        q: DimensionQuery,
    ) -> Result<Vec<DimensionCount>> {
        // The column name is interpolated: only the three dimension columns get through.
        let col: &'static str = match q.dimension.as_str() {
            "type" => "type",
            "page_url" => "page_url",
            "source" => "source",
            other => {
                return Err(Error::InvalidQuery(format!(
                    "`{other}` is not a dimension; use type, page_url or source"
                )));
            }
        };
        self.check_buckets(q.from, q.to, q.bucket_secs)?;
        let (from, to) = (q.from, q.to);
        self.query(tenant, from, to, move |ctx| async move {
            let t = |ns| ScalarValue::TimestampNanosecond(Some(ns), Some(TZ.into()));
            let mut params = vec![t(q.from), t(q.to)];
            let mut filter = format!("time >= $1 AND time < $2 AND \"{col}\" IS NOT NULL");
            if let Some(v) = &q.value {
                params.push(utf8(v));
                filter.push_str(&format!(" AND \"{col}\" = $3"));
            }
            let sql = format!(
                "SELECT CAST(date_bin(INTERVAL '{} seconds', time) AS BIGINT) AS bucket, \"{col}\" AS value, \
                 CAST(count(*) AS BIGINT) AS n, CAST(count(DISTINCT user_id) AS BIGINT) AS users \
                 FROM events WHERE {filter} GROUP BY 1, 2 ORDER BY 2, 1",
                q.bucket_secs.max(1)
            );
            let batches = sql_collect(ctx, sql, params).await?;
            let mut out = Vec::new();
            for b in &batches {
                let values = strings(b, "value")?;
                let int = |name: &str| -> Result<arrow::array::Int64Array> {
                    Ok(arrow::compute::cast(column(b, name)?, &DataType::Int64)
                        .map_err(Error::Arrow)?
                        .as_primitive::<arrow::datatypes::Int64Type>()
                        .clone())
                };
                let (bucket, n, users) = (int("bucket")?, int("n")?, int("users")?);
                for r in 0..b.num_rows() {
                    out.push(DimensionCount {
                        bucket: bucket.value(r),
                        value: values.value(r).to_string(),
                        count: u64::try_from(n.value(r)).unwrap_or(0),
                        distinct_users: u64::try_from(users.value(r)).unwrap_or(0),
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn device_metrics(
        &self,
        tenant: &str,
        device_id: &str,
        points: usize,
    ) -> Result<Option<DeviceMetrics>> {
        let points = points.clamp(1, self.config().max_result_rows);
        let device = device_id.to_string();
        self.query(tenant, i64::MIN, i64::MAX, move |ctx| async move {
            let sql = format!(
                "SELECT metric, time, value FROM ( \
                   SELECT metric, time, value, row_number() OVER (PARTITION BY metric ORDER BY time DESC) AS rn \
                   FROM metric_samples WHERE device_id = $1) \
                 WHERE rn <= {points} ORDER BY metric, time"
            );
            let batches = sql_collect(ctx, sql, vec![utf8(&device)]).await?;
            let mut metrics = std::collections::BTreeMap::<String, MetricSamples>::new();
            for b in &batches {
                let metric = strings(b, "metric")?;
                let time = column(b, "time")?.as_primitive::<TimestampNanosecondType>();
                let value = column(b, "value")?.as_primitive::<arrow::datatypes::Float64Type>();
                for r in 0..b.num_rows() {
                    let point = MetricPoint { time: time.value(r), value: value.value(r) };
                    // Rows come oldest first per metric: the last one is the latest.
                    metrics
                        .entry(metric.value(r).to_string())
                        .and_modify(|m| {
                            m.latest = point;
                            m.points.push(point);
                        })
                        .or_insert_with(|| MetricSamples { latest: point, points: vec![point] });
                }
            }
            Ok((!metrics.is_empty()).then_some(DeviceMetrics { device_id: device, metrics }))
        })
        .await
    }
}

/// An analytics range must not be empty.
fn ordered(from: i64, to: i64) -> Result<()> {
    if from >= to {
        return Err(Error::InvalidQuery("`from` must be before `to`".into()));
    }
    Ok(())
}

impl EmbeddedStore {
    /// Refuses a bucketed query whose range holds more buckets than a result may have rows.
    fn check_buckets(&self, from: i64, to: i64, bucket_secs: u64) -> Result<()> {
        let buckets =
            (to.saturating_sub(from) as u128) / (u128::from(bucket_secs.max(1)) * 1_000_000_000);
        if buckets > self.config().max_result_rows as u128 {
            return Err(Error::TooManyRows(self.config().max_result_rows));
        }
        Ok(())
    }
}

async fn sql_collect(
    ctx: datafusion::prelude::SessionContext,
    sql: String,
    params: Vec<ScalarValue>,
) -> Result<Vec<RecordBatch>> {
    Ok(ctx
        .sql(&sql)
        .await?
        .with_param_values(params)?
        .collect()
        .await?)
}

/// Sessions read strings as `Utf8View` (see [`crate::store`]); answers keep the plain `Utf8`
/// and `Binary` types, so the SQL API's column types do not depend on how a scan decodes.
fn without_views(
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let plain = crate::session::map_string_types(schema, |t| match t {
        DataType::Utf8View => Some(DataType::Utf8),
        DataType::BinaryView => Some(DataType::Binary),
        _ => None,
    });
    if plain == *schema {
        return Ok((plain, batches));
    }
    let batches = batches
        .iter()
        .map(|b| crate::session::cast_to(b, &plain))
        .collect::<Result<_>>()?;
    Ok((plain, batches))
}

fn utf8(v: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(v.to_string()))
}
