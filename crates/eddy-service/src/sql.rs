//! One read-only SQL statement over the caller's tenant. The session holds only the tenant's
//! tables: `events` and `metric_samples` (the store), `rollups` and `rollup_counts` (the
//! rollups' windows, persisted and in memory) and `alerts`. The tables built from engine state
//! cost a copy of it, so only those the statement names — read from its parse tree, not by
//! matching words — are built. DDL, DML and session statements are refused by the store; its
//! query timeout, memory limit and row limit apply. Answers are Arrow batches; front ends
//! encode them.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Serialize;

use crate::alerts::{Alert, AlertFilter, AlertsEngine};
use crate::auth::{Principal, Scope};
use crate::query::{RollupReader, Store};
use crate::{Error, Result};

pub use eddy_store::{ExtraTable, SqlAnswer};

/// Why an answer cannot be written in an encoding (a column type it has no form for).
fn unrenderable(encoding: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid(
        "unsupported_result",
        format!(
            "the result cannot be written as {encoding}: {e}; select scalar columns or ask for JSON rows"
        ),
    )
}

/// The answer as an Arrow IPC stream: the schema, then the batches (every protocol that
/// offers Arrow sends these bytes).
pub fn arrow_ipc(answer: &SqlAnswer) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &answer.schema)
        .map_err(|e| unrenderable("Arrow IPC", e))?;
    for b in &answer.batches {
        w.write(b).map_err(|e| unrenderable("Arrow IPC", e))?;
    }
    w.finish().map_err(|e| unrenderable("Arrow IPC", e))?;
    drop(w);
    Ok(out)
}

/// The answer's rows as a JSON array of objects, column name → value, nulls written out.
pub fn json_rows(answer: &SqlAnswer) -> Result<Vec<u8>> {
    let refs: Vec<&RecordBatch> = answer.batches.iter().collect();
    let mut data = Vec::new();
    let mut w = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::JsonArray>(&mut data);
    w.write_batches(&refs)
        .and_then(|()| w.finish())
        .map_err(|e| unrenderable("JSON", e))?;
    drop(w);
    if data.is_empty() {
        data.extend_from_slice(b"[]");
    }
    Ok(data)
}

/// The answer's columns: name and Arrow type name (e.g. `Int64`, `Utf8`).
pub fn columns(answer: &SqlAnswer) -> Vec<(String, String)> {
    answer
        .schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().to_string()))
        .collect()
}

/// Rows in the answer.
pub fn row_count(answer: &SqlAnswer) -> usize {
    answer.batches.iter().map(RecordBatch::num_rows).sum()
}

/// A column of a table statements can read.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ColumnInfo {
    pub name: String,
    /// Arrow type name, as [`columns`] writes it (e.g. `Utf8`, `Timestamp(ns, "UTC")`).
    #[serde(rename = "type")]
    pub r#type: String,
    pub nullable: bool,
}

/// A table statements can read.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TableInfo {
    pub name: String,
    pub description: &'static str,
    pub columns: Vec<ColumnInfo>,
}

/// The tables of a session, in the order they are documented: name, what a row is, schema.
/// The schemas are the engines' own (the ones the session registers), so a listed column is
/// one a statement can name.
fn session_tables() -> [(&'static str, &'static str, SchemaRef); 5] {
    [
        (
            "events",
            "one row per stored event (metrics and properties as maps)",
            eddy_store::schema::events_schema(),
        ),
        (
            "metric_samples",
            "one row per metric reading of an event",
            eddy_store::schema::samples_schema(),
        ),
        (
            "rollups",
            "one row per (device, metric, resolution, window): the rollups' aggregates",
            eddy_stream::persist::metrics_schema(),
        ),
        (
            "rollup_counts",
            "one row per (dimension, value, window): events and distinct users per type, page and source",
            eddy_stream::persist::counts_schema(),
        ),
        (
            "alerts",
            "one row per alert, open or closed",
            alerts_schema(),
        ),
    ]
}

/// Longest statement accepted, bytes.
pub const MAX_SQL_BYTES: usize = 64 * 1024;

/// The SQL service.
#[derive(Debug)]
pub struct SqlService {
    store: Arc<dyn Store>,
    rollups: Arc<dyn RollupReader>,
    alerts: Arc<dyn AlertsEngine>,
    max_rows: usize,
}

impl SqlService {
    pub fn new(
        store: Arc<dyn Store>,
        rollups: Arc<dyn RollupReader>,
        alerts: Arc<dyn AlertsEngine>,
        max_rows: usize,
    ) -> Self {
        Self {
            store,
            rollups,
            alerts,
            max_rows,
        }
    }

    /// The tables a statement of the caller can read, with their columns. Costs nothing: no
    /// table is built.
    pub fn tables(&self, p: &Principal) -> Result<Vec<TableInfo>> {
        p.require(Scope::Read)?;
        Ok(session_tables()
            .into_iter()
            .map(|(name, description, schema)| TableInfo {
                name: name.to_string(),
                description,
                columns: schema
                    .fields()
                    .iter()
                    .map(|f| ColumnInfo {
                        name: f.name().clone(),
                        r#type: f.data_type().to_string(),
                        nullable: f.is_nullable(),
                    })
                    .collect(),
            })
            .collect())
    }

    /// Runs `sql` over the caller's tenant.
    pub async fn query(&self, p: &Principal, sql: String) -> Result<SqlAnswer> {
        let p = p.require(Scope::Read)?;
        if sql.len() > MAX_SQL_BYTES {
            return Err(Error::invalid(
                "invalid_query",
                format!("`sql` is longer than {MAX_SQL_BYTES} bytes"),
            ));
        }
        if sql.trim().is_empty() {
            return Err(Error::invalid("invalid_query", "`sql` is empty"));
        }
        let names = self.store.sql_tables(&sql)?;
        let mut extra = Vec::new();
        if names.contains("rollups") || names.contains("rollup_counts") {
            extra.extend(self.rollups.sql_tables(&p.tenant_id)?);
        }
        if names.contains("alerts") {
            let page = self
                .alerts
                .alerts(&p.tenant_id, &AlertFilter::default(), usize::MAX)?;
            extra.push(alerts_table(&page.alerts)?);
        }
        let answer = self
            .store
            .sql(
                &p.tenant_id,
                eddy_store::SqlQuery {
                    sql,
                    extra,
                    max_rows: self.max_rows,
                },
            )
            .await?;
        metrics::counter!("eddy_sql_queries_total").increment(1);
        Ok(answer)
    }
}

/// Schema of the `alerts` table.
pub fn alerts_schema() -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("rule_id", DataType::Utf8, false),
        Field::new("rule_name", DataType::Utf8, false),
        Field::new("rule_kind", DataType::Utf8, false),
        Field::new("device_id", DataType::Utf8, true),
        Field::new("metric", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("message", DataType::Utf8, false),
        Field::new("value", DataType::Float64, true),
        Field::new("expected", DataType::Float64, true),
        Field::new("score", DataType::Float64, true),
        Field::new("occurrences", DataType::UInt64, false),
        Field::new("opened_at", ts(), false),
        Field::new("last_triggered_at", ts(), false),
        Field::new("acknowledged_at", ts(), true),
        Field::new("resolved_at", ts(), true),
        Field::new("resolution", DataType::Utf8, true),
        Field::new("note", DataType::Utf8, true),
    ]))
}

/// Alerts as the `alerts` table.
pub fn alerts_table(alerts: &[Alert]) -> Result<ExtraTable> {
    let schema = alerts_schema();
    let text = |f: fn(&Alert) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(alerts.iter().map(f)))
    };
    let opt_text = |f: fn(&Alert) -> Option<&str>| -> ArrayRef {
        Arc::new(StringArray::from_iter(alerts.iter().map(f)))
    };
    let num = |f: fn(&Alert) -> Option<f64>| -> ArrayRef {
        Arc::new(Float64Array::from_iter(alerts.iter().map(f)))
    };
    let time = |f: fn(&Alert) -> Option<i64>| -> ArrayRef {
        Arc::new(TimestampNanosecondArray::from_iter(alerts.iter().map(f)).with_timezone("UTC"))
    };
    let columns: Vec<ArrayRef> = vec![
        text(|a| &a.id),
        text(|a| &a.rule_id),
        text(|a| &a.rule_name),
        text(|a| &a.rule_kind),
        opt_text(|a| (!a.device_id.is_empty()).then_some(a.device_id.as_str())),
        text(|a| &a.metric),
        text(|a| a.severity.name()),
        text(|a| a.status.name()),
        text(|a| &a.message),
        num(|a| a.value),
        num(|a| a.expected),
        num(|a| a.score),
        Arc::new(UInt64Array::from_iter_values(
            alerts.iter().map(|a| a.occurrences),
        )),
        time(|a| Some(a.opened_at)),
        time(|a| Some(a.last_triggered_at)),
        time(|a| a.acknowledged_at),
        time(|a| a.resolved_at),
        opt_text(|a| a.resolution.as_deref()),
        opt_text(|a| a.note.as_deref()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::Internal(format!("alerts table: {e}")))?;
    Ok(ExtraTable {
        name: "alerts".into(),
        schema,
        files: Vec::new(),
        batches: vec![batch],
    })
}
