//! Exports: the tenant's raw events streamed as CSV, NDJSON or Parquet (batch by batch, the
//! whole answer never in memory), event lists as CSV, and the newest device metrics as
//! Prometheus text or CSV. These are file formats, the same over every protocol.

use std::io::Write;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::query::StoredEvent;
use crate::{Error, Result};
use eddy_store::analytics::LatestMetric;

/// How an export is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Ndjson,
    Parquet,
}

impl ExportFormat {
    pub fn mime(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Ndjson => "application/x-ndjson",
            ExportFormat::Parquet => "application/vnd.apache.parquet",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Ndjson => "ndjson",
            ExportFormat::Parquet => "parquet",
        }
    }
}

/// The columns of events as CSV.
pub const CSV_COLUMNS: [&str; 10] = [
    "time",
    "event_id",
    "type",
    "source",
    "device_id",
    "user_id",
    "page_url",
    "metrics",
    "properties",
    "received_at",
];

fn csv_failed(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("csv: {e}"))
}

/// Events as CSV rows of [`CSV_COLUMNS`] (with the header line when `header`); maps are JSON
/// text.
pub fn events_csv(rows: &[StoredEvent], header: bool) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if header {
        w.write_record(CSV_COLUMNS).map_err(csv_failed)?;
    }
    let rfc = eddy_model::time::format_rfc3339;
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    for e in rows {
        w.write_record([
            rfc(e.time),
            e.event_id.clone(),
            e.r#type.clone(),
            opt(&e.source),
            opt(&e.device_id),
            opt(&e.user_id),
            opt(&e.page_url),
            json_text(&e.metrics)?,
            json_text(&e.properties)?,
            rfc(e.received_at),
        ])
        .map_err(csv_failed)?;
    }
    w.into_inner().map_err(csv_failed)
}

/// JSON text of a map cell.
fn json_text<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(csv_failed)
}

/// Events as NDJSON lines.
pub fn events_ndjson(rows: &[StoredEvent]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for e in rows {
        serde_json::to_writer(&mut out, e).map_err(|e| Error::Internal(format!("ndjson: {e}")))?;
        out.push(b'\n');
    }
    Ok(out)
}

/// The newest device metrics as one Prometheus gauge family, `eddy_device_metric{device_id,
/// metric}`, with the sample's time in ms.
pub fn prometheus_text(latest: &[LatestMetric]) -> String {
    let mut out = String::from(
        "# HELP eddy_device_metric Newest value of a device metric.\n# TYPE eddy_device_metric gauge\n",
    );
    for m in latest {
        out.push_str(&format!(
            "eddy_device_metric{{device_id=\"{}\",metric=\"{}\"}} {} {}\n",
            prometheus_label(&m.device_id),
            prometheus_label(&m.metric),
            prometheus_value(m.value),
            m.time.div_euclid(1_000_000)
        ));
    }
    out
}

/// The newest device metrics as JSON: `{"data": [{"device_id", "metric", "time", "value"}]}`
/// (times RFC 3339; a value JSON cannot hold as `null`).
pub fn latest_json(latest: &[LatestMetric]) -> Result<Vec<u8>> {
    #[derive(serde::Serialize)]
    struct Row<'a> {
        device_id: &'a str,
        metric: &'a str,
        #[serde(serialize_with = "eddy_model::time::rfc3339")]
        time: i64,
        value: Option<f64>,
    }
    #[derive(serde::Serialize)]
    struct Body<'a> {
        data: Vec<Row<'a>>,
    }
    let data = latest
        .iter()
        .map(|m| Row {
            device_id: &m.device_id,
            metric: &m.metric,
            time: m.time,
            value: Some(m.value).filter(|v| v.is_finite()),
        })
        .collect();
    serde_json::to_vec(&Body { data })
        .map_err(|e| Error::Internal(format!("latest metrics not encodable as JSON: {e}")))
}

/// The newest device metrics as CSV: `device_id, metric, time, value`.
pub fn latest_csv(latest: &[LatestMetric]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["device_id", "metric", "time", "value"])
        .map_err(csv_failed)?;
    for m in latest {
        let time = eddy_model::time::format_rfc3339(m.time);
        w.write_record([&m.device_id, &m.metric, &time, &m.value.to_string()])
            .map_err(csv_failed)?;
    }
    w.into_inner().map_err(csv_failed)
}

/// A label value in the Prometheus text format: `\`, `"` and newlines escaped.
fn prometheus_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn prometheus_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

/// A `Write` whose bytes are taken out after each batch (the Parquet writer's sink).
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn take(&self) -> Bytes {
        Bytes::from(std::mem::take(
            &mut *self.0.lock().unwrap_or_else(|p| p.into_inner()),
        ))
    }
}

/// Rows per Parquet row group of an export (its in-progress group is what stays in memory).
const EXPORT_ROW_GROUP: usize = 64 * 1024;

/// Encodes batches of events one by one, carrying the Parquet writer between them.
struct Encoder {
    format: ExportFormat,
    parquet: Option<(parquet::arrow::ArrowWriter<Shared>, Shared)>,
    header: bool,
}

fn parquet_failed(e: parquet::errors::ParquetError) -> Error {
    Error::Internal(format!("parquet: {e}"))
}

impl Encoder {
    fn encode(&mut self, b: &RecordBatch) -> Result<Bytes> {
        match self.format {
            ExportFormat::Ndjson => {
                Ok(events_ndjson(&eddy_store::rows::events_of(std::slice::from_ref(b))?)?.into())
            }
            ExportFormat::Csv => {
                let rows = eddy_store::rows::events_of(std::slice::from_ref(b))?;
                let header = std::mem::take(&mut self.header);
                Ok(events_csv(&rows, header)?.into())
            }
            ExportFormat::Parquet => {
                if self.parquet.is_none() {
                    let sink = Shared::default();
                    let props = parquet::file::properties::WriterProperties::builder()
                        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                        .set_max_row_group_row_count(Some(EXPORT_ROW_GROUP))
                        .build();
                    let w =
                        parquet::arrow::ArrowWriter::try_new(sink.clone(), b.schema(), Some(props))
                            .map_err(parquet_failed)?;
                    self.parquet = Some((w, sink));
                }
                let Some((w, sink)) = self.parquet.as_mut() else {
                    return Ok(Bytes::new());
                };
                w.write(b).map_err(parquet_failed)?;
                Ok(sink.take())
            }
        }
    }

    /// What is left to write after the last batch (the Parquet footer; the CSV header when
    /// there were no rows).
    fn finish(&mut self) -> Result<Bytes> {
        match self.format {
            ExportFormat::Csv if self.header => {
                self.header = false;
                Ok(events_csv(&[], true)?.into())
            }
            ExportFormat::Parquet => {
                if self.parquet.is_none() {
                    self.encode(&RecordBatch::new_empty(eddy_store::schema::events_schema()))?;
                }
                match self.parquet.take() {
                    Some((w, sink)) => {
                        w.close().map_err(parquet_failed)?;
                        Ok(sink.take())
                    }
                    None => Ok(Bytes::new()),
                }
            }
            _ => Ok(Bytes::new()),
        }
    }
}

/// Where an export stream is.
enum Stage {
    First(Option<RecordBatch>),
    More,
    Done,
}

/// An export's encoded bytes, chunk by chunk, as the store reads batches (a bounded channel:
/// a slow reader slows the scan, nothing piles up).
pub struct ExportStream {
    format: ExportFormat,
    stage: Stage,
    rx: mpsc::Receiver<eddy_store::Result<RecordBatch>>,
    encoder: Encoder,
}

impl std::fmt::Debug for ExportStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportStream")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl ExportStream {
    /// Takes the first batch (or error) before the caller answers, so a failing query is a
    /// proper error rather than a broken body.
    pub(crate) async fn start(
        format: ExportFormat,
        mut rx: mpsc::Receiver<eddy_store::Result<RecordBatch>>,
    ) -> Result<Self> {
        let first = rx.recv().await.transpose()?;
        Ok(Self {
            format,
            stage: Stage::First(first),
            rx,
            encoder: Encoder {
                format,
                parquet: None,
                header: true,
            },
        })
    }

    pub fn format(&self) -> ExportFormat {
        self.format
    }

    /// The next chunk; `None` at the end. After an error the stream ends (an export cut short
    /// must not look whole: the caller ends its response without a proper end).
    pub async fn next(&mut self) -> Option<Result<Bytes>> {
        let batch = match std::mem::replace(&mut self.stage, Stage::More) {
            Stage::Done => {
                self.stage = Stage::Done;
                return None;
            }
            Stage::First(b) => b,
            Stage::More => match self.rx.recv().await {
                Some(Ok(b)) => Some(b),
                Some(Err(e)) => {
                    self.stage = Stage::Done;
                    return Some(Err(e.into()));
                }
                None => None,
            },
        };
        let out = match batch {
            Some(b) => self.encoder.encode(&b),
            None => {
                self.stage = Stage::Done;
                self.encoder.finish()
            }
        };
        if out.is_err() {
            self.stage = Stage::Done;
        }
        Some(out)
    }
}
