//! `eddy.v1.EventIngestionService`: events become typed fields and go through the
//! one ingest path (`eddy_service::ingest`), so validation, limits, quotas, dedup and the
//! durable ack are the HTTP API's.
//!
//! `StreamEvents` ingests up to `stream_window` batches at once and answers them in order;
//! it reads the next batch only when an ack can go out. When the client stops reading acks,
//! HTTP/2 flow control stops the acks once the client's receive window is full, the server
//! stops reading requests, and flow control stops the client — nothing grows without bound
//! (decoded batches in process are bounded by the in-flight budget too).

use std::pin::Pin;

use eddy_proto::v1 as pb;
use eddy_proto::v1::event_ingestion_service_server::EventIngestionService;
use eddy_service::Error as Domain;
use eddy_service::auth::Principal;
use eddy_service::ingest::{IngestBody, IngestRequest, Outcome};
use futures_util::{Stream, StreamExt, future, stream};
use tonic::{Request, Response, Status, Streaming};

use crate::Ctx;
use crate::convert::{event_fields, outcome, rejected};
use crate::error::{code, single_event_status, status};

/// Most events of one `IngestEvents` call: the limit of the gRPC APIs Eddy replaces (capped
/// by `--max-batch-events`). `StreamEvents` batches may hold up to `--max-batch-events`.
const INGEST_EVENTS_MAX: usize = 1000;

/// The ingestion service.
#[derive(Debug, Clone)]
pub(crate) struct Ingest(pub(crate) Ctx);

impl Ingest {
    async fn ingest(
        &self,
        caller: &Principal,
        events: Vec<pb::Event>,
        partial: bool,
        sync: Option<bool>,
        max_events: usize,
    ) -> Result<Outcome, Domain> {
        // The in-flight budget, held while the events are processed (bodies are already
        // decoded: a refused one is dropped at once).
        let bytes: usize = events.iter().map(prost::Message::encoded_len).sum();
        let permits = u32::try_from(bytes.max(1)).unwrap_or(u32::MAX);
        let _budget = self
            .0
            .inflight
            .clone()
            .try_acquire_many_owned(permits)
            .map_err(|_| Domain::Unavailable {
                message: "the server is at its limit of ingest bytes in flight; nothing was stored, retry shortly".into(),
                retry_after_secs: 1,
            })?;
        let req = IngestRequest {
            body: IngestBody::Events(events.into_iter().map(event_fields).collect()),
            partial,
            sync: sync.unwrap_or(true),
            max_events,
        };
        self.0.services.ingest.ingest(caller, req).await
    }

    fn max_batch(&self) -> usize {
        self.0.services.ingest.config().max_batch_events
    }
}

/// A batch's failure as an ack of the stream (the stream goes on).
fn batch_error(e: &Domain) -> pb::BatchError {
    let rejected = match e {
        Domain::InvalidArgument { errors, .. } => rejected(errors),
        _ => Vec::new(),
    };
    pb::BatchError {
        code: code(e) as i32,
        reason: e.code().to_string(),
        message: match e {
            Domain::Internal(_) => "internal error; see the server log".into(),
            other => other.to_string(),
        },
        rejected,
        retry_after: e.retry_after_secs().map(|s| prost_types::Duration {
            seconds: i64::try_from(s).unwrap_or(i64::MAX),
            nanos: 0,
        }),
    }
}

type AckStream = Pin<Box<dyn Stream<Item = Result<pb::StreamEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl EventIngestionService for Ingest {
    async fn ingest_event(
        &self,
        req: Request<pb::IngestEventRequest>,
    ) -> Result<Response<pb::IngestResponse>, Status> {
        let caller = self.0.caller(&req)?;
        let Some(event) = req.into_inner().event else {
            return Err(status(Domain::invalid(
                "invalid_body",
                "`event` is required",
            )));
        };
        let o = self
            .ingest(&caller, vec![event], false, Some(true), 1)
            .await
            .map_err(single_event_status)?;
        Ok(Response::new(outcome(o)))
    }

    async fn ingest_events(
        &self,
        req: Request<pb::IngestEventsRequest>,
    ) -> Result<Response<pb::IngestResponse>, Status> {
        let caller = self.0.caller(&req)?;
        let r = req.into_inner();
        let o = self
            .ingest(&caller, r.events, r.partial, r.sync, INGEST_EVENTS_MAX)
            .await
            .map_err(status)?;
        Ok(Response::new(outcome(o)))
    }

    type StreamEventsStream = AckStream;

    async fn stream_events(
        &self,
        req: Request<Streaming<pb::StreamEventsRequest>>,
    ) -> Result<Response<AckStream>, Status> {
        let caller = self.0.caller(&req)?;
        // A key without `write` is refused before anything is read.
        caller
            .require(eddy_service::auth::Scope::Write)
            .map_err(status)?;
        let window = self.0.config.stream_window.max(1);
        let mut stopping = self.0.stopping.clone();
        let stopped = stopping.clone();
        let this = self.clone();
        let max = self.max_batch();
        let requests = req
            .into_inner()
            // Shutdown: read no more; what was read is still answered.
            .take_until(async move {
                let _ = stopping.wait_for(|s| *s).await;
            });
        let acks = requests
            .map(move |r| {
                let this = this.clone();
                let caller = caller.clone();
                async move {
                    let r = r?;
                    let outcome = match this.ingest(&caller, r.events, r.partial, r.sync, max).await
                    {
                        Ok(o) => pb::stream_events_response::Outcome::Ack(outcome(o)),
                        Err(e) => pb::stream_events_response::Outcome::Error(batch_error(&e)),
                    };
                    Ok(pb::StreamEventsResponse {
                        sequence: r.sequence,
                        outcome: Some(outcome),
                    })
                }
            })
            .buffered(window)
            // A broken request stream (a message over the size limit, a reset) ends the call
            // with its status, after the acks before it.
            .scan(false, |failed, item: Result<_, Status>| {
                if *failed {
                    return future::ready(None);
                }
                *failed = item.is_err();
                future::ready(Some(item))
            });
        let open = crate::OpenStream::new(&self.0);
        let farewell = stream::once(async move {
            drop(open);
            stopped.borrow().then(|| {
                Err(Status::unavailable(
                    "the server is shutting down; batches without an ack were not read: send them again",
                ))
            })
        })
        .filter_map(future::ready);
        Ok(Response::new(Box::pin(acks.chain(farewell))))
    }

    async fn health(
        &self,
        _req: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        let ops = &self.0.services.ops;
        let h = ops.health();
        let r = ops.ready();
        Ok(Response::new(pb::HealthResponse {
            status: h.status.to_string(),
            ready: r.ready,
            log: r.log.to_string(),
            version: h.version.to_string(),
            uptime_seconds: h.uptime_seconds,
        }))
    }
}
