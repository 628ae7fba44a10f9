//! `POST /api/v1/query`: one read-only SQL statement over the caller's tenant (`read` scope),
//! through DataFusion.
//!
//! What the session holds and refuses is `eddy_service::sql`'s; this route parses the body
//! and writes the Arrow answer as JSON (default), CSV, NDJSON or Arrow IPC (stream format),
//! chosen by `format` in the body or the `Accept` header.

use arrow::array::RecordBatch;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::auth::Reader;
use crate::openapi::{ErrorBody, Errors};
use crate::routes::params::{Offer, negotiate};
use crate::routes::parse_json;
use crate::routes::{ListOf, SmallBody};
use crate::state::AppState;
use crate::{Error, Result};
use eddy_service::Error as Domain;
use eddy_service::sql::{self, SqlAnswer};

/// One SQL statement and how to write its answer.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SqlRequest {
    /// One read-only statement (`SELECT`, `WITH`, `EXPLAIN`) over the tenant's `events`,
    /// `metric_samples`, `rollups`, `rollup_counts` and `alerts`.
    #[schema(min_length = 1)]
    sql: String,
    /// `json` (default), `csv`, `ndjson` or `arrow` (or `Accept`).
    #[serde(default)]
    #[schema(pattern = "^(json|csv|ndjson|arrow)$")]
    format: Option<String>,
}

/// A column of an SQL answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct SqlColumn {
    name: String,
    /// Arrow type name, e.g. `Int64`, `Utf8`, `Timestamp(Nanosecond, Some("UTC"))`.
    r#type: String,
}

/// An SQL answer as JSON: the columns, the row count and the rows as objects.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // a schema only: `render` writes it from Arrow batches
pub(crate) struct SqlAnswerBody {
    columns: Vec<SqlColumn>,
    rows: usize,
    /// One object per row, column name → value.
    data: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// How an answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    Ndjson,
    Arrow,
}

const ARROW_MIME: &str = "application/vnd.apache.arrow.stream";

/// The formats of an answer (JSON by default).
const FORMATS: &[Offer<Format>] = &[
    Offer {
        name: "json",
        media: &["application/json"],
        format: Format::Json,
    },
    Offer {
        name: "csv",
        media: &["text/csv"],
        format: Format::Csv,
    },
    Offer {
        name: "ndjson",
        media: &["application/x-ndjson"],
        format: Format::Ndjson,
    },
    Offer {
        name: "arrow",
        media: &[ARROW_MIME],
        format: Format::Arrow,
    },
];

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Ndjson => "application/x-ndjson",
            Format::Arrow => ARROW_MIME,
        }
    }
}

/// `POST /api/v1/query` with `{"sql": "…", "format"?: "json|csv|ndjson|arrow"}`.
#[utoipa::path(post, path = "/api/v1/query", tag = "sql", operation_id = "query", summary = "One read-only SQL statement over the tenant's tables", request_body(content = SqlRequest), responses((status = 200, description = "The answer as JSON, CSV, NDJSON or an Arrow IPC stream", content((SqlAnswerBody = "application/json"), (String = "text/csv"), (String = "application/x-ndjson"), (Vec<u8> = "application/vnd.apache.arrow.stream"))), (status = 413, description = "Body over 128 KiB (the query cache reads at most that)", body = ErrorBody), Errors))]
pub(crate) async fn query(
    State(state): State<AppState>,
    Reader(caller): Reader,
    headers: HeaderMap,
    SmallBody(body): SmallBody,
) -> Result<Response> {
    let req: SqlRequest = parse_json(&body)?;
    let format = negotiate(req.format.as_deref(), &headers, FORMATS)?;
    let answer = state.services.sql.query(&caller, req.sql).await?;
    render(format, &answer)
}

/// `GET /api/v1/query/tables`: the tables a statement can read, with their columns.
#[utoipa::path(get, path = "/api/v1/query/tables", tag = "sql", operation_id = "query_tables", summary = "The tables SQL statements can read, with their columns", responses((status = 200, description = "Every table of the tenant's SQL session", body = ListOf<eddy_service::sql::TableInfo>), Errors))]
pub(crate) async fn tables(
    State(state): State<AppState>,
    Reader(caller): Reader,
) -> Result<Response> {
    Ok(crate::routes::list(state.services.sql.tables(&caller)?))
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
fn render(format: Format, answer: &SqlAnswer) -> Result<Response> {
    let (schema, batches) = (&answer.schema, &answer.batches);
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let body: Vec<u8> = match format {
        Format::Json => {
            let data = sql::json_rows(answer)?;
            let columns: Vec<_> = sql::columns(answer)
                .into_iter()
                .map(|(name, r#type)| SqlColumn { name, r#type })
                .collect();
            let rows = sql::row_count(answer);
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
        Format::Arrow => sql::arrow_ipc(answer)?,
    };
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    Ok(resp)
}
