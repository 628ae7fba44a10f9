//! The one ingestion path every route uses: body → events → validation → quota → dedup →
//! log append → (fsync) → outcome.

use std::io::Read;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use eddy_model::batch::{BodyError, BodyFormat, split_body};
use eddy_model::normalize::normalize_event;
use eddy_model::{EventError, TenantPolicy, codec};
use serde::Serialize;

use crate::catalog::Principal;
use crate::dedup::dedup_key;
use crate::state::AppState;
use crate::{Error, Result};

/// Bodies above this size are parsed off the async runtime.
const BLOCKING_PARSE_BYTES: usize = 256 * 1024;

/// How one request wants its events handled.
#[derive(Debug, Clone, Copy)]
pub struct IngestOptions {
    /// Store the valid events of a batch and list the rejected ones (default: all-or-nothing).
    pub partial: bool,
    /// Answer after fsync (default) or once queued.
    pub sync: bool,
    /// Most events this route accepts per request.
    pub max_events: usize,
}

/// What happened to a request's events.
#[derive(Debug, Serialize)]
pub struct Outcome {
    /// Events newly stored.
    pub accepted: usize,
    /// Events whose `event_id` was already stored within the dedup window (acknowledged, not
    /// stored again).
    pub duplicates: usize,
    /// Events rejected (only with `partial=true`; otherwise the request fails).
    pub rejected: Vec<EventError>,
    /// Ids of the accepted and duplicate events, in request order.
    #[serde(skip)]
    pub event_ids: Vec<String>,
    /// True when the body was a batch.
    #[serde(skip)]
    pub is_batch: bool,
    /// True once fsynced; false for `sync=false` (queued only).
    pub durable: bool,
}

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
        .map_err(|_| {
            metrics::counter!("eddy_inflight_rejections_total").increment(1);
            Error::Unavailable {
                message:
                    "the server is processing as much request data as it may hold; retry shortly"
                        .into(),
                retry_after_secs: 1,
            }
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
        Error::PayloadTooLarge(format!(
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
    let out = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .take(cap as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| {
                Error::bad_request("invalid_gzip", format!("body is not valid gzip: {e}"))
            })?;
        if out.len() > cap {
            return Err(Error::PayloadTooLarge(format!(
                "decompressed body is larger than the limit of {cap} bytes"
            )));
        }
        Ok(out)
    })
    .await
    .map_err(|e| Error::Internal(format!("decompression task failed: {e}")))??;
    Ok(RequestBody {
        bytes: Bytes::from(out),
        format,
        _budget: budget,
    })
}

struct Prepared {
    records: Vec<Bytes>,
    keys: Vec<Option<crate::dedup::DedupKey>>,
    ids: Vec<String>,
    rejected: Vec<EventError>,
    total: usize,
    is_batch: bool,
}

fn prepare(
    state: &AppState,
    tenant: &str,
    retention_ns: i64,
    body: &[u8],
    format: BodyFormat,
    max_events: usize,
) -> Result<Prepared> {
    let split = split_body(body, format, max_events).map_err(|e| match e {
        BodyError::TooMany { .. } => Error::PayloadTooLarge(e.to_string()),
        other => Error::bad_request("invalid_body", other.to_string()),
    })?;
    let now = state.clock.now_ns();
    let policy = TenantPolicy {
        tenant,
        retention_ns,
    };
    let total = split.events.len();
    let mut p = Prepared {
        records: Vec::with_capacity(total),
        keys: Vec::with_capacity(total),
        ids: Vec::with_capacity(total),
        rejected: Vec::new(),
        total,
        is_batch: split.is_batch,
    };
    let mut series = SeriesGate::new(state, tenant);
    for (index, raw) in split.events.into_iter().enumerate() {
        let normalized = raw
            .and_then(|v| normalize_event(v, &policy, &state.config.limits, now))
            .and_then(|ev| series.admit(state, tenant, ev));
        match normalized {
            Ok(ev) => {
                p.keys
                    .push(ev.client_id.then(|| dedup_key(tenant, &ev.event_id)));
                p.ids.push(ev.event_id.clone());
                p.records.push(Bytes::from(codec::encode_event(ev)));
            }
            Err(mut e) => {
                e.index = index;
                p.rejected.push(e);
            }
        }
    }
    Ok(p)
}

/// The per-tenant series limit, applied while a request is prepared: counts the series the
/// stream processor holds plus those earlier events of the request add. (Series still in
/// flight in other requests are not counted, so a burst can pass the limit by that much.)
struct SeriesGate {
    limit: usize,
    held: usize,
    added: std::collections::HashSet<(String, String)>,
}

impl SeriesGate {
    fn new(state: &AppState, tenant: &str) -> Self {
        let limit = state.stream.config().max_series_per_tenant;
        let held = if limit == 0 {
            0
        } else {
            state.stream.read(tenant, |r| r.series_count()).unwrap_or(0)
        };
        Self {
            limit,
            held,
            added: Default::default(),
        }
    }

    /// Passes `ev` through, or rejects it if it would add series beyond the limit.
    fn admit(
        &mut self,
        state: &AppState,
        tenant: &str,
        ev: eddy_model::Event,
    ) -> std::result::Result<eddy_model::Event, EventError> {
        if self.limit == 0 || ev.metrics.is_empty() {
            return Ok(ev);
        }
        let device = ev.device_id.as_deref().unwrap_or("");
        // One look at the processor's state per event (ingest hot path), then this request's.
        let unknown: Vec<&String> = state
            .stream
            .read(tenant, |r| {
                ev.metrics
                    .keys()
                    .filter(|m| !r.has_series(device, m))
                    .collect()
            })
            .unwrap_or_default();
        let new: Vec<&String> = unknown
            .into_iter()
            .filter(|m| !self.added.contains(&(device.to_string(), m.to_string())))
            .collect();
        if let Some(first) = new.first()
            && self.held + self.added.len() + new.len() > self.limit
        {
            return Err(EventError {
                index: 0,
                field: format!("metrics.{first}"),
                reason: format!(
                    "would start a new series (device `{device}`, metric `{first}`), but the tenant already has its limit of {} series",
                    self.limit
                ),
            });
        }
        for m in new {
            self.added.insert((device.to_string(), m.clone()));
        }
        Ok(ev)
    }
}

/// Ingests the events of one request for the caller's tenant.
pub async fn ingest(
    state: &AppState,
    caller: &Principal,
    body: Bytes,
    format: BodyFormat,
    opts: IngestOptions,
) -> Result<Outcome> {
    let tenant = state
        .catalog
        .tenant(&caller.tenant_id)
        .map_err(|_| Error::Unauthorized("the key's tenant no longer exists".into()))?;
    let counters = state.stats.get(&tenant.id);
    counters
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let retention_ns = i64::try_from(
        tenant
            .retention_secs
            .unwrap_or(state.config.default_retention.as_secs()),
    )
    .unwrap_or(i64::MAX / 1_000_000_000)
    .saturating_mul(1_000_000_000);
    let p = if body.len() > BLOCKING_PARSE_BYTES {
        let st = state.clone();
        let tid = tenant.id.clone();
        tokio::task::spawn_blocking(move || {
            prepare(&st, &tid, retention_ns, &body, format, opts.max_events)
        })
        .await
        .map_err(|e| Error::Internal(format!("parse task failed: {e}")))??
    } else {
        prepare(
            state,
            &tenant.id,
            retention_ns,
            &body,
            format,
            opts.max_events,
        )?
    };
    let tenant_label = tenant.id.clone();
    if !p.rejected.is_empty() {
        let n = p.rejected.len() as u64;
        counters
            .rejected
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("eddy_events_rejected_total", "tenant" => tenant_label.clone())
            .increment(n);
        if !opts.partial || p.records.is_empty() {
            let message = if p.total == 1 {
                format!("the event was rejected: {}", p.rejected[0])
            } else {
                format!(
                    "{} of {} events were rejected; nothing was stored (use ?partial=true to store the valid ones)",
                    p.rejected.len(),
                    p.total
                )
            };
            return Err(Error::Validation {
                message,
                errors: p.rejected,
            });
        }
    }
    let rate = tenant
        .events_per_sec
        .unwrap_or(state.config.default_events_per_sec);
    if let Err(wait) = state.quotas.check(&tenant.id, rate, p.records.len()) {
        counters
            .rate_limited
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("eddy_quota_rejections_total", "tenant" => tenant_label).increment(1);
        return Err(Error::TooManyRequests {
            message: format!("tenant quota of {rate} events/s exceeded; nothing was stored"),
            retry_after_secs: wait.as_secs_f64().ceil() as u64,
        });
    }

    let Prepared {
        records,
        keys,
        ids,
        rejected,
        is_batch,
        ..
    } = p;
    let now = state.clock.now_ns();
    let mut fresh_flags = Vec::new();
    let ticket = state.dedup.reserve_then(&tenant.id, &keys, now, |fresh| {
        fresh_flags = fresh.to_vec();
        // Duplicates send nothing, but the (possibly empty) append still queues behind the
        // append that first reserved their ids, so a duplicate is acknowledged only once the
        // original is durable.
        let selected: Vec<Bytes> = records
            .iter()
            .zip(fresh)
            .filter(|(_, f)| **f)
            .map(|(r, _)| r.clone())
            .collect();
        state.log.append(selected)
    })?;
    let reserved: Vec<_> = keys
        .iter()
        .zip(&fresh_flags)
        .filter_map(|(k, f)| if *f { *k } else { None })
        .collect();
    let accepted = fresh_flags.iter().filter(|f| **f).count();
    let duplicates = fresh_flags.len() - accepted;
    let record = |state: &AppState| {
        let c = state.stats.get(&tenant.id);
        c.accepted
            .fetch_add(accepted as u64, std::sync::atomic::Ordering::Relaxed);
        c.deduplicated
            .fetch_add(duplicates as u64, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("eddy_events_accepted_total", "tenant" => tenant.id.clone())
            .increment(accepted as u64);
        metrics::counter!("eddy_events_deduplicated_total", "tenant" => tenant.id.clone())
            .increment(duplicates as u64);
    };
    if opts.sync {
        if let Err(e) = ticket.durable().await {
            state.dedup.release(&reserved);
            return Err(e.into());
        }
        record(state);
    } else {
        record(state);
        let st = state.clone();
        tokio::spawn(async move {
            if let Err(e) = ticket.durable().await {
                st.dedup.release(&reserved);
                tracing::error!(error = %e, "queued (sync=false) events could not be made durable");
            }
        });
    }
    Ok(Outcome {
        accepted,
        duplicates,
        rejected,
        event_ids: ids,
        is_batch,
        durable: opts.sync,
    })
}
