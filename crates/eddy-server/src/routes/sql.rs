//! `POST /api/v1/query`: one read-only SQL statement over the caller's tenant (`read` scope),
//! through DataFusion.
//!
//! The session holds only the tenant's tables: `events` and `metric_samples` (the store),
//! `rollups` and `rollup_counts` (the stream processor's windows: persisted files plus what is
//! only in memory yet) and `alerts`. DDL, DML (`INSERT`, `COPY`) and other statements are refused,
//! and the session has no file or URL tables, so nothing outside the tenant can be named. The
//! store's query timeout, memory limit and row limit apply. Answers: JSON (default), CSV,
//! NDJSON or Arrow IPC (stream format), chosen by `format` in the body or the `Accept` header.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Caller;
use crate::openapi::Errors;
use crate::routes::parse_json;
use crate::state::AppState;
use crate::{Error, Result};
use eddy_service::Error as Domain;
use eddy_service::auth::Scope;

/// Longest statement accepted, bytes.
const MAX_SQL_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
    #[serde(default)]
    format: Option<String>,
}

/// How an answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    Ndjson,
    Arrow,
}

impl Format {
    const ARROW_MIME: &'static str = "application/vnd.apache.arrow.stream";

    fn parse(s: &str) -> Option<Self> {
        match s {
            "json" => Some(Format::Json),
            "csv" => Some(Format::Csv),
            "ndjson" => Some(Format::Ndjson),
            "arrow" => Some(Format::Arrow),
            _ => None,
        }
    }

    /// From `Accept` (first known type wins; anything else means JSON).
    fn from_accept(headers: &HeaderMap) -> Self {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        accept
            .split(',')
            .map(|t| t.split(';').next().unwrap_or("").trim())
            .find_map(|t| match t {
                "text/csv" => Some(Format::Csv),
                "application/x-ndjson" => Some(Format::Ndjson),
                Self::ARROW_MIME => Some(Format::Arrow),
                "application/json" => Some(Format::Json),
                _ => None,
            })
            .unwrap_or(Format::Json)
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Ndjson => "application/x-ndjson",
            Format::Arrow => Self::ARROW_MIME,
        }
    }
}

/// `POST /api/v1/query` with `{"sql": "…", "format"?: "json|csv|ndjson|arrow"}`.
#[utoipa::path(post, path = "/api/v1/query", tag = "sql", operation_id = "query", summary = "One read-only SQL statement over the tenant's tables", request_body(content = Object, description = "`{\"sql\": \"...\", \"format\": \"json|csv|ndjson|arrow\"}`"), responses((status = 200, description = "`{\"columns\", \"rows\", \"data\"}`, or CSV, NDJSON, Arrow IPC", body = Object), Errors))]
pub(crate) async fn query(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let p = caller.require(Scope::Read)?;
    let req: SqlRequest = parse_json(&body)?;
    let format = match req.format.as_deref() {
        Some(f) => Format::parse(f).ok_or_else(|| {
            Domain::invalid(
                "invalid_parameter",
                format!("`format` `{f}`: use json, csv, ndjson or arrow"),
            )
        })?,
        None => Format::from_accept(&headers),
    };
    if req.sql.len() > MAX_SQL_BYTES {
        return Err(Domain::invalid(
            "invalid_query",
            format!("`sql` is longer than {MAX_SQL_BYTES} bytes"),
        )
        .into());
    }
    // Tables built from the stream processor's state cost a copy of it: only those the
    // statement names (a table is named by its name as a word; unquoted names are lowercased).
    let words: std::collections::HashSet<String> = req
        .sql
        .to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map(str::to_string)
        .collect();
    let mut extra: Vec<eddy_store::ExtraTable> = Vec::new();
    if words.contains("rollups") || words.contains("rollup_counts") {
        extra.extend(
            state
                .stream
                .rollup_tables(&p.tenant_id)
                .map_err(|e| Domain::Internal(format!("rollup tables: {e}")))?
                .into_iter()
                .map(|t| eddy_store::ExtraTable {
                    name: t.name.to_string(),
                    schema: t.schema,
                    files: t.files,
                    batches: vec![t.batch],
                }),
        );
    }
    if words.contains("alerts") {
        extra.push(alerts_table(&state, &p.tenant_id)?);
    }
    let answer = state
        .query
        .sql(
            &p.tenant_id,
            eddy_store::SqlQuery {
                sql: req.sql,
                extra,
                max_rows: state.store.config().max_result_rows,
            },
        )
        .await?;
    metrics::counter!("eddy_sql_queries_total").increment(1);
    render(format, &answer.schema, &answer.batches)
}

fn unrenderable(format: Format, e: impl std::fmt::Display) -> Error {
    Domain::invalid(
        "unsupported_result",
        format!(
            "the result cannot be written as {format:?}: {e}; select scalar columns or ask for json"
        ),
    )
    .into()
}

/// Writes the answer in `format`.
fn render(format: Format, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Response> {
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let body: Vec<u8> = match format {
        Format::Json => {
            let mut data = Vec::new();
            let mut w = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::JsonArray>(&mut data);
            w.write_batches(&refs)
                .and_then(|()| w.finish())
                .map_err(|e| unrenderable(format, e))?;
            drop(w);
            if data.is_empty() {
                data.extend_from_slice(b"[]");
            }
            let columns: Vec<_> = schema
                .fields()
                .iter()
                .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
                .collect();
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            let mut out = Vec::with_capacity(data.len() + 256);
            out.extend_from_slice(b"{\"columns\":");
            let columns = serde_json::to_vec(&columns).map_err(|e| {
                Domain::Internal(format!(
                    "the SQL answer's column list is not encodable: {e}"
                ))
            })?;
            out.extend_from_slice(&columns);
            out.extend_from_slice(format!(",\"rows\":{rows},\"data\":").as_bytes());
            out.extend_from_slice(&data);
            out.push(b'}');
            out
        }
        Format::Ndjson => {
            let mut out = Vec::new();
            let mut w = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::LineDelimited>(&mut out);
            w.write_batches(&refs)
                .and_then(|()| w.finish())
                .map_err(|e| unrenderable(format, e))?;
            drop(w);
            out
        }
        Format::Csv => {
            let mut out = Vec::new();
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            if batches.is_empty() {
                // The header alone, from the schema.
                w.write(&RecordBatch::new_empty(schema.clone()))
                    .map_err(|e| unrenderable(format, e))?;
            }
            for b in batches {
                w.write(b).map_err(|e| unrenderable(format, e))?;
            }
            drop(w);
            out
        }
        Format::Arrow => {
            let mut out = Vec::new();
            let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, schema)
                .map_err(|e| unrenderable(format, e))?;
            for b in batches {
                w.write(b).map_err(|e| unrenderable(format, e))?;
            }
            w.finish().map_err(|e| unrenderable(format, e))?;
            drop(w);
            out
        }
    };
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    Ok(resp)
}

/// The tenant's alerts as the `alerts` table.
fn alerts_table(state: &AppState, tenant: &str) -> Result<eddy_store::ExtraTable> {
    let ts = || DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
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
    ]));
    let alerts: Vec<eddy_stream::Alert> = state
        .stream
        .read_alerts(tenant, |a| a.alerts().cloned().collect())
        .map_err(|e| Domain::Internal(format!("alerts: {e}")))?;
    let text = |f: fn(&eddy_stream::Alert) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(alerts.iter().map(f)))
    };
    let opt_text = |f: fn(&eddy_stream::Alert) -> Option<&str>| -> ArrayRef {
        Arc::new(StringArray::from_iter(alerts.iter().map(f)))
    };
    let num = |f: fn(&eddy_stream::Alert) -> Option<f64>| -> ArrayRef {
        Arc::new(Float64Array::from_iter(alerts.iter().map(f)))
    };
    let time = |f: fn(&eddy_stream::Alert) -> Option<i64>| -> ArrayRef {
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
        .map_err(|e| Domain::Internal(format!("alerts table: {e}")))?;
    Ok(eddy_store::ExtraTable {
        name: "alerts".into(),
        schema,
        files: Vec::new(),
        batches: vec![batch],
    })
}
