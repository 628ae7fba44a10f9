//! Reading an ingest request's body off the wire: content type (JSON or NDJSON), the
//! in-flight budget, the body limit, gzip with a decompressed cap. What happens to the events
//! is `eddy_service::ingest`'s to decide.

use std::io::Read;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use eddy_model::batch::BodyFormat;
use eddy_service::Error as Domain;

use crate::state::AppState;
use crate::{Error, Result};

/// A request body in memory, with its share of the in-flight budget (released on drop).
#[derive(Debug)]
pub struct RequestBody {
    pub bytes: Bytes,
    pub format: BodyFormat,
    _budget: tokio::sync::OwnedSemaphorePermit,
}

fn reserve(state: &AppState, bytes: usize) -> Result<tokio::sync::OwnedSemaphorePermit> {
    let n = u32::try_from(bytes.min(state.config.max_inflight_bytes)).unwrap_or(u32::MAX);
    state
        .inflight
        .clone()
        .try_acquire_many_owned(n.max(1))
        .map_err(|_| -> Error {
            metrics::counter!("eddy_inflight_rejections_total").increment(1);
            Domain::Unavailable {
                message:
                    "the server is processing as much request data as it may hold; retry shortly"
                        .into(),
                retry_after_secs: 1,
            }
            .into()
        })
}

/// Reads, size-checks and decompresses a request body, and tells its framing. The body's
/// bytes count against the in-flight budget until the returned value is dropped.
pub async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<RequestBody> {
    let mut form_encoded = false;
    let format = match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        None => BodyFormat::Json,
        Some(ct) => {
            let mime = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            match mime.as_str() {
                "application/json" | "text/json" | "" => BodyFormat::Json,
                m if m.ends_with("+json") => BodyFormat::Json,
                "application/x-ndjson"
                | "application/ndjson"
                | "application/jsonl"
                | "application/x-jsonlines"
                | "application/jsonlines" => BodyFormat::Ndjson,
                // `curl -d` labels every body this way; accepted only if it is plainly JSON.
                "application/x-www-form-urlencoded" => {
                    form_encoded = true;
                    BodyFormat::Json
                }
                other => {
                    return Err(Error::UnsupportedMediaType(format!(
                        "content type `{other}` is not accepted; send application/json or application/x-ndjson"
                    )));
                }
            }
        }
    };
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_ascii_lowercase())
    {
        None => false,
        Some(e) if e.is_empty() || e == "identity" => false,
        Some(e) if e == "gzip" || e == "x-gzip" => true,
        Some(other) => {
            return Err(Error::UnsupportedMediaType(format!(
                "content encoding `{other}` is not accepted; use gzip or none"
            )));
        }
    };
    let max = state.config.max_body_bytes;
    // Reserve before reading: the declared length when there is one (the limit otherwise),
    // or the decompression cap for gzip.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(max, |n| n.min(max));
    let budget = reserve(
        state,
        if gzip {
            state.config.max_decompressed_bytes
        } else {
            declared
        },
    )?;
    let raw = axum::body::to_bytes(body, max).await.map_err(|_| {
        Domain::TooLarge(format!(
            "request body is larger than the limit of {max} bytes"
        ))
    })?;
    if form_encoded
        && !matches!(
            raw.iter().find(|b| !b.is_ascii_whitespace()),
            Some(b'{' | b'[')
        )
    {
        return Err(Error::UnsupportedMediaType(
            "form-encoded bodies are not accepted; send JSON (application/json) or NDJSON (application/x-ndjson)".into(),
        ));
    }
    if !gzip {
        return Ok(RequestBody {
            bytes: raw,
            format,
            _budget: budget,
        });
    }
    let cap = state.config.max_decompressed_bytes;
    let out = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, Domain> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .take(cap as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| Domain::invalid("invalid_gzip", format!("body is not valid gzip: {e}")))?;
        if out.len() > cap {
            return Err(Domain::TooLarge(format!(
                "decompressed body is larger than the limit of {cap} bytes"
            )));
        }
        Ok(out)
    })
    .await
    .map_err(|e| Domain::Internal(format!("decompression task failed: {e}")))??;
    Ok(RequestBody {
        bytes: Bytes::from(out),
        format,
        _budget: budget,
    })
}
