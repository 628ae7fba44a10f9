//! The one ingestion path every protocol uses: body → events → validation → series limit →
//! all-or-nothing or partial → quota → dedup → log append → (fsync) → [`Outcome`].
//!
//! Front ends only read the body off the wire (size limits, decompression, content type) and
//! encode the outcome; what is accepted, and when it is acknowledged, is decided here.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use eddy_log::{AppendTicket, Log};
use eddy_model::batch::{BodyError, BodyFormat, check_event_count};
use eddy_model::normalize::{EventFields, normalize_fields};
use eddy_model::parse::{ParseContext, parse_body};
use eddy_model::{Clock, Event, EventError, Limits, TenantPolicy, codec};
use serde::Serialize;

use crate::auth::{Principal, Scope};
use crate::catalog::{Catalog, secs_to_ns};
use crate::dedup::{DedupIndex, DedupKey, dedup_key};
use crate::ops::{Behind, PipelineStatus};
use crate::quota::Quotas;
use crate::series::SeriesIndex;
use crate::stats::TenantStats;
use crate::{Error, Result};

/// Bodies above this size are parsed off the async runtime.
const BLOCKING_PARSE_BYTES: usize = 256 * 1024;

/// Settings of the ingest path.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Per-event limits and the allowed future skew.
    pub limits: Limits,
    /// Most events per request, whatever the route allows.
    pub max_batch_events: usize,
    /// Retention of tenants without their own (0 = forever).
    pub default_retention: Duration,
    /// Quota of tenants without their own, events/s (0 = unlimited).
    pub default_events_per_sec: u32,
    /// Ingest answers 503 (with `Retry-After`) while the store or the stream processor has
    /// not applied a record appended longer ago than this (zero turns it off).
    pub max_pipeline_lag: Duration,
}

/// A request's events as a front end hands them over.
#[derive(Debug, Clone)]
pub enum IngestBody {
    /// A body to split (any accepted JSON shape), decompressed.
    Raw { body: Bytes, format: BodyFormat },
    /// Events already apart and typed (a protocol with its own framing, e.g. gRPC messages),
    /// or why the front end could not read one (rejected at its index); validated like any
    /// other body.
    Events(Vec<Result<EventFields, EventError>>),
}

impl IngestBody {
    fn len_hint(&self) -> usize {
        match self {
            IngestBody::Raw { body, .. } => body.len(),
            // About what their JSON would take; only decides where validation runs.
            IngestBody::Events(events) => events.len() * 256,
        }
    }
}

/// One request's events, as read off the wire.
#[derive(Debug, Clone)]
pub struct IngestRequest {
    pub body: IngestBody,
    /// Store the valid events of a batch and list the rejected ones (default: all-or-nothing).
    pub partial: bool,
    /// Answer after the fsync that covers the events (default) or once queued.
    pub sync: bool,
    /// Most events this route takes per request (capped by the configured maximum).
    pub max_events: usize,
}

/// What happened to a request's events.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Outcome {
    /// Events newly stored.
    pub accepted: usize,
    /// Events whose `event_id` was already stored within the dedup window (acknowledged, not
    /// stored again).
    pub duplicates: usize,
    /// Events rejected (only with `partial`; otherwise the request fails).
    pub rejected: Vec<EventError>,
    /// Ids of the accepted and duplicate events, in request order.
    #[serde(skip)]
    pub event_ids: Vec<String>,
    /// True when the body was a batch.
    #[serde(skip)]
    pub is_batch: bool,
    /// True once fsynced; false for `sync = false` (queued only).
    pub durable: bool,
    /// Log offsets of the stored events (known once durable; empty when none was new).
    #[serde(skip)]
    pub offsets: Option<Range<u64>>,
}

/// The ingest service.
#[derive(Debug, Clone)]
pub struct IngestService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: IngestConfig,
    log: Arc<dyn Log>,
    catalog: Arc<dyn Catalog>,
    dedup: Arc<dyn DedupIndex>,
    series: Arc<dyn SeriesIndex>,
    quotas: Arc<Quotas>,
    stats: Arc<TenantStats>,
    clock: Arc<dyn Clock>,
    pipeline: Arc<dyn PipelineStatus>,
}

/// The seams the ingest service works through.
#[derive(Debug, Clone)]
pub struct IngestDeps {
    pub log: Arc<dyn Log>,
    /// The consumers' progress, for backpressure.
    pub pipeline: Arc<dyn PipelineStatus>,
    pub catalog: Arc<dyn Catalog>,
    pub dedup: Arc<dyn DedupIndex>,
    pub series: Arc<dyn SeriesIndex>,
    pub quotas: Arc<Quotas>,
    pub stats: Arc<TenantStats>,
    pub clock: Arc<dyn Clock>,
}

struct Prepared {
    /// The valid events, in request order.
    events: Vec<Event>,
    /// `events` as log records (see `eddy_model::codec::encode_events`).
    records: Vec<Bytes>,
    keys: Vec<Option<DedupKey>>,
    ids: Vec<String>,
    rejected: Vec<EventError>,
    total: usize,
    is_batch: bool,
}

impl IngestService {
    pub fn new(config: IngestConfig, deps: IngestDeps) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                log: deps.log,
                catalog: deps.catalog,
                dedup: deps.dedup,
                series: deps.series,
                quotas: deps.quotas,
                stats: deps.stats,
                clock: deps.clock,
                pipeline: deps.pipeline,
            }),
        }
    }

    /// The settings it runs with.
    pub fn config(&self) -> &IngestConfig {
        &self.inner.config
    }

    /// Ingests the events of one request into the caller's tenant.
    pub async fn ingest(&self, caller: &Principal, req: IngestRequest) -> Result<Outcome> {
        caller.require(Scope::Write)?;
        let me = &self.inner;
        let tenant = me
            .catalog
            .tenant(&caller.tenant_id)
            .map_err(|_| Error::Unauthenticated("the key's tenant no longer exists".into()))?;
        let counters = me.stats.get(&tenant.id);
        counters.requests.fetch_add(1, Ordering::Relaxed);
        me.check_pressure()?;
        let retention_ns = tenant.retention_ns(secs_to_ns(me.config.default_retention.as_secs()));
        let max_events = req.max_events.min(me.config.max_batch_events);
        let partial = req.partial;
        let sync = req.sync;
        let p = if req.body.len_hint() > BLOCKING_PARSE_BYTES {
            let inner = self.inner.clone();
            let tid = tenant.id.clone();
            tokio::task::spawn_blocking(move || {
                inner.prepare(&tid, retention_ns, req.body, max_events)
            })
            .await
            .map_err(|e| Error::Internal(format!("parse task failed: {e}")))??
        } else {
            me.prepare(&tenant.id, retention_ns, req.body, max_events)?
        };
        if !p.rejected.is_empty() {
            let n = p.rejected.len() as u64;
            counters.rejected.fetch_add(n, Ordering::Relaxed);
            metrics::counter!("eddy_events_rejected_total", "tenant" => tenant.id.clone())
                .increment(n);
            if !partial || p.events.is_empty() {
                let message = if p.total == 1 {
                    format!("the event was rejected: {}", p.rejected[0])
                } else {
                    format!(
                        "{} of {} events were rejected; nothing was stored (send it with `partial` set to store the valid ones)",
                        p.rejected.len(),
                        p.total
                    )
                };
                return Err(Error::rejected(message, p.rejected));
            }
        }
        let rate = tenant
            .events_per_sec
            .unwrap_or(me.config.default_events_per_sec);
        if let Err(wait) = me.quotas.check(&tenant.id, rate, p.events.len()) {
            counters.rate_limited.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("eddy_quota_rejections_total", "tenant" => tenant.id.clone())
                .increment(1);
            return Err(Error::ResourceExhausted {
                message: format!("tenant quota of {rate} events/s exceeded; nothing was stored"),
                retry_after_secs: wait.as_secs_f64().ceil() as u64,
            });
        }

        let Prepared {
            events,
            records,
            keys,
            ids,
            rejected,
            is_batch,
            ..
        } = p;
        let now = me.clock.now_ns();
        let mut ticket: Option<AppendTicket> = None;
        let fresh = me
            .dedup
            .reserve_and_append(&tenant.id, &keys, now, &mut |fresh| {
                // Duplicates send nothing, but the (possibly empty) append still queues behind
                // the append that first reserved their ids, so a duplicate is acknowledged only
                // once the original is durable.
                let selected = if fresh.iter().all(|f| *f) {
                    records.clone()
                } else {
                    let kept: Vec<Event> = events
                        .iter()
                        .zip(fresh)
                        .filter(|(_, f)| **f)
                        .map(|(e, _)| e.clone())
                        .collect();
                    encode(&tenant.id, &kept)?
                };
                ticket = Some(me.log.append(selected)?);
                Ok(())
            })?;
        let reserved: Vec<DedupKey> = keys
            .iter()
            .zip(&fresh)
            .filter_map(|(k, f)| if *f { *k } else { None })
            .collect();
        // Until the events are durable, their ids are released if anything goes wrong —
        // including this future being dropped (client gone, shutdown) while it waits.
        let mut release = Release {
            dedup: me.dedup.clone(),
            keys: reserved,
        };
        let Some(ticket) = ticket else {
            return Err(Error::Internal(
                "the dedup index returned without appending".into(),
            ));
        };
        let accepted = fresh.iter().filter(|f| **f).count();
        let duplicates = fresh.len() - accepted;
        let record = || {
            let c = me.stats.get(&tenant.id);
            c.accepted.fetch_add(accepted as u64, Ordering::Relaxed);
            c.deduplicated
                .fetch_add(duplicates as u64, Ordering::Relaxed);
            metrics::counter!("eddy_events_accepted_total", "tenant" => tenant.id.clone())
                .increment(accepted as u64);
            metrics::counter!("eddy_events_deduplicated_total", "tenant" => tenant.id.clone())
                .increment(duplicates as u64);
        };
        let mut offsets = None;
        if sync {
            // The append is queued and will become durable whether or not this request is
            // still waiting: the wait runs in its own task, so a request dropped now (client
            // gone, deadline passed) does not release ids of events that do get stored —
            // a resend is then a duplicate, not stored twice.
            let waited = tokio::spawn(async move {
                let r = ticket.durable().await;
                if r.is_ok() {
                    release.keys.clear();
                }
                drop(release);
                r
            })
            .await
            .map_err(|e| Error::Internal(format!("durability wait failed: {e}")))?;
            offsets = Some(waited?);
            record();
        } else {
            record();
            tokio::spawn(async move {
                match ticket.durable().await {
                    Ok(_) => release.keys.clear(),
                    Err(e) => {
                        tracing::error!(error = %e, "queued (sync=false) events could not be made durable")
                    }
                }
                drop(release);
            });
        }
        Ok(Outcome {
            accepted,
            duplicates,
            rejected,
            event_ids: ids,
            is_batch,
            durable: sync,
            offsets,
        })
    }
}

/// A tenant's events as log records: one record per request batch (see
/// `eddy_model::codec::encode_events`).
fn encode(tenant: &str, events: &[Event]) -> Result<Vec<Bytes>> {
    codec::encode_events(tenant, events)
        .map_err(|e| Error::Internal(format!("encoding events for the log: {e}")))
}

/// Releases reserved event ids on drop unless they were cleared (made durable).
struct Release {
    dedup: Arc<dyn DedupIndex>,
    keys: Vec<DedupKey>,
}

impl Drop for Release {
    fn drop(&mut self) {
        if !self.keys.is_empty() {
            self.dedup.release(&self.keys);
        }
    }
}

impl Inner {
    /// Refuses new events while the pipeline is further behind the log than allowed, so a
    /// backlog the store or the processor cannot work off never grows: clients wait instead
    /// (the backlog is bounded by the rate times the allowed lag).
    fn check_pressure(&self) -> Result<()> {
        let max = self.config.max_pipeline_lag;
        if max.is_zero() {
            return Ok(());
        }
        let (who, behind) = Behind::of(self.log.as_ref(), self.pipeline.as_ref()).worst();
        if behind <= max {
            return Ok(());
        }
        metrics::counter!("eddy_ingest_backpressure_total").increment(1);
        // About the time to work off the excess, at least a second.
        let retry_after_secs = (behind - max).as_secs_f64().ceil().clamp(1.0, 30.0) as u64;
        Err(Error::Unavailable {
            message: format!(
                "the {who} is {:.1} s behind the log, more than the {:.1} s allowed (max_pipeline_lag); nothing was stored, retry later",
                behind.as_secs_f64(),
                max.as_secs_f64()
            ),
            retry_after_secs,
        })
    }

    fn prepare(
        &self,
        tenant: &str,
        retention_ns: i64,
        body: IngestBody,
        max_events: usize,
    ) -> Result<Prepared> {
        let now = self.clock.now_ns();
        let policy = TenantPolicy {
            tenant,
            retention_ns,
        };
        let limits = &self.config.limits;
        let invalid = |e: BodyError| match e {
            BodyError::TooMany { .. } => Error::TooLarge(e.to_string()),
            other => Error::invalid("invalid_body", other.to_string()),
        };
        let mut series = SeriesGate::new(self.series.as_ref(), tenant);
        match body {
            IngestBody::Raw { body, format } => {
                let cx = ParseContext {
                    policy: &policy,
                    limits,
                    now_ns: now,
                };
                let parsed = parse_body(&body, format, max_events, cx).map_err(invalid)?;
                Prepared::of(parsed.events, parsed.is_batch, &mut series, tenant)
            }
            IngestBody::Events(events) => {
                check_event_count(events.len(), max_events).map_err(invalid)?;
                let is_batch = events.len() > 1;
                let events = events
                    .into_iter()
                    .map(|fields| fields.and_then(|f| normalize_fields(f, &policy, limits, now)))
                    .collect();
                Prepared::of(events, is_batch, &mut series, tenant)
            }
        }
    }
}

impl Prepared {
    /// The request's normalised events (or their rejections), through the series limit, and
    /// the valid ones encoded as log records.
    fn of(
        mut events: Vec<Result<Event, EventError>>,
        is_batch: bool,
        series: &mut SeriesGate<'_>,
        tenant: &str,
    ) -> Result<Self> {
        series.admit(&mut events);
        let total = events.len();
        let mut p = Self {
            events: Vec::with_capacity(total),
            records: Vec::new(),
            keys: Vec::with_capacity(total),
            ids: Vec::with_capacity(total),
            rejected: Vec::new(),
            total,
            is_batch,
        };
        for (index, ev) in events.into_iter().enumerate() {
            p.push(index, ev, tenant);
        }
        p.records = encode(tenant, &p.events)?;
        Ok(p)
    }

    /// Adds the event at `index` of the request, or its rejection.
    fn push(&mut self, index: usize, event: Result<Event, EventError>, tenant: &str) {
        match event {
            Ok(ev) => {
                self.keys
                    .push(ev.client_id.then(|| dedup_key(tenant, &ev.event_id)));
                self.ids.push(ev.event_id.clone());
                self.events.push(ev);
            }
            Err(mut e) => {
                e.index = index;
                self.rejected.push(e);
            }
        }
    }
}

/// The per-tenant series limit, applied while a request is prepared: counts the series the
/// index holds plus those earlier events of the request add. (Series still in flight in other
/// requests are not counted, so a burst can pass the limit by that much.)
struct SeriesGate<'a> {
    index: &'a dyn SeriesIndex,
    tenant: &'a str,
    limit: usize,
    held: usize,
    added: HashSet<(String, String)>,
}

impl<'a> SeriesGate<'a> {
    fn new(index: &'a dyn SeriesIndex, tenant: &'a str) -> Self {
        let limit = index.limit();
        let held = if limit == 0 {
            0
        } else {
            index.series_count(tenant)
        };
        Self {
            index,
            tenant,
            limit,
            held,
            added: HashSet::new(),
        }
    }

    /// Rejects, in request order, the events that would add series beyond the limit. The
    /// index is asked once for the whole request (it may sit behind the processor's lock).
    fn admit(&mut self, events: &mut [std::result::Result<eddy_model::Event, EventError>]) {
        if self.limit == 0 {
            return;
        }
        // (event index, device, metric) of every series the index does not hold.
        let unknown: Vec<(usize, String, String)> = {
            let mut pairs = Vec::new();
            let mut owner = Vec::new();
            for (i, ev) in events.iter().enumerate() {
                let Ok(ev) = ev else { continue };
                let device = ev.device_id.as_deref().unwrap_or("");
                for m in ev.metrics.keys() {
                    pairs.push((device, m.as_str()));
                    owner.push(i);
                }
            }
            if pairs.is_empty() {
                return;
            }
            let mut found = self.index.unknown_series(self.tenant, &pairs);
            found.sort_unstable();
            found
                .into_iter()
                .filter_map(|k| {
                    let (d, m) = pairs.get(k)?;
                    Some((*owner.get(k)?, d.to_string(), m.to_string()))
                })
                .collect()
        };
        for group in unknown.chunk_by(|a, b| a.0 == b.0) {
            let new: Vec<(String, String)> = group
                .iter()
                .map(|(_, d, m)| (d.clone(), m.clone()))
                .filter(|s| !self.added.contains(s))
                .collect();
            if let Some((device, first)) = new.first()
                && self.held + self.added.len() + new.len() > self.limit
            {
                events[group[0].0] = Err(EventError {
                    index: 0,
                    field: format!("metrics.{first}"),
                    reason: format!(
                        "would start a new series (device `{device}`, metric `{first}`), but the tenant already has its limit of {} series",
                        self.limit
                    ),
                });
                continue;
            }
            self.added.extend(new);
        }
    }
}
