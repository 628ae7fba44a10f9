//! A client for Eddy over HTTP or gRPC.
//!
//! ```no_run
//! # async fn demo() -> Result<(), eddy_client::Error> {
//! use eddy_client::{Client, Event};
//! let client = Client::grpc("http://127.0.0.1:50051", "KEY").await?;
//! let ack = client.send(vec![Event::reading("sensor-1").metric("temperature", 21.5)]).await?;
//! assert_eq!(ack.accepted, 1);
//! # Ok(()) }
//! ```
//!
//! - Events get client-generated ids (UUIDv7) before the first attempt, so a retry after a
//!   lost answer is acknowledged as a duplicate instead of stored twice.
//! - Retries (exponential backoff with full jitter, [`Retry`]) on 429 / 503 / connection
//!   errors over HTTP and UNAVAILABLE / RESOURCE_EXHAUSTED over gRPC; a server's
//!   `Retry-After` or `RetryInfo` is the least wait. Rejected events are never retried.
//! - Connections are reused: one pooled HTTP client, or `connections` HTTP/2 channels used in
//!   turn for gRPC.
//! - [`Batcher`] collects events and sends them by size or after a linger time;
//!   [`EventStream`] sends batches over `StreamEvents` with at most `window` unacknowledged.

mod batcher;
mod event;
mod retry;
mod stream;

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use eddy_proto::v1 as pb;
use eddy_proto::v1::analytics_service_client::AnalyticsServiceClient;
use eddy_proto::v1::event_ingestion_service_client::EventIngestionServiceClient;
use tonic::transport::Channel;
use tonic_types::StatusExt;

pub use batcher::{BatchConfig, BatchTotals, Batcher};
pub use event::Event;
pub use retry::Retry;
pub use stream::{EventStream, StreamAck};

/// An event the server refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub index: usize,
    pub field: String,
    pub reason: String,
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server refused the request as it is (bad events, bad parameters); retrying the
    /// same request cannot help.
    #[error("refused: {message}")]
    Rejected {
        message: String,
        rejected: Vec<Rejected>,
    },
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    #[error("not allowed: {0}")]
    PermissionDenied(String),
    /// The server asked to slow down or was unavailable, through every attempt.
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted { attempts: u32, last: String },
    /// Any other answer of the server.
    #[error("server answered {code}: {message}")]
    Server { code: String, message: String },
    #[error("cannot reach the server: {0}")]
    Transport(String),
    #[error("invalid client settings: {0}")]
    Config(String),
}

/// The server's acknowledgement of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ack {
    pub accepted: u64,
    pub duplicates: u64,
    /// True once the events are fsynced in the log.
    pub durable: bool,
    /// Log offsets of the stored events.
    pub offsets: Option<Range<u64>>,
    /// The events' ids, in order (with those the client generated).
    pub event_ids: Vec<String>,
    /// Only with partial sends.
    pub rejected: Vec<Rejected>,
}

impl From<pb::IngestResponse> for Ack {
    fn from(r: pb::IngestResponse) -> Self {
        Self {
            accepted: r.accepted,
            duplicates: r.duplicates,
            durable: r.durable,
            offsets: r.offsets.map(|o| o.start..o.end),
            event_ids: r.event_ids,
            rejected: r.rejected.into_iter().map(Rejected::from).collect(),
        }
    }
}

impl From<pb::RejectedEvent> for Rejected {
    fn from(x: pb::RejectedEvent) -> Self {
        Self {
            index: x.index as usize,
            field: x.field,
            reason: x.reason,
        }
    }
}

/// How one attempt ended: done, or worth another try after at least this long.
pub(crate) enum Attempt<T> {
    Done(Result<T, Error>),
    Retry {
        after: Option<Duration>,
        why: String,
    },
}

impl<T> Attempt<T> {
    /// The same outcome with a successful answer turned by `f`.
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Attempt<U> {
        match self {
            Attempt::Done(r) => Attempt::Done(r.map(f)),
            Attempt::Retry { after, why } => Attempt::Retry { after, why },
        }
    }
}

#[derive(Debug, Clone)]
enum Transport {
    Http {
        base: String,
        http: reqwest::Client,
    },
    Grpc {
        channels: Arc<Vec<Channel>>,
        next: Arc<AtomicUsize>,
    },
}

/// A client of one server and one API key. Cheap to clone (connections are shared).
#[derive(Debug, Clone)]
pub struct Client {
    transport: Transport,
    key: String,
    retry: Retry,
    /// Give events without an id one before sending (so retries deduplicate).
    client_ids: bool,
}

fn transport_error(e: impl std::fmt::Display) -> Error {
    Error::Transport(e.to_string())
}

impl Client {
    /// A client of the HTTP API at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn http(base: &str, key: &str) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(Self {
            transport: Transport::Http {
                base: base.trim_end_matches('/').to_string(),
                http,
            },
            key: key.to_string(),
            retry: Retry::default(),
            client_ids: true,
        })
    }

    /// A client of the gRPC API at `url` (e.g. `http://127.0.0.1:50051`) over one HTTP/2
    /// connection.
    pub async fn grpc(url: &str, key: &str) -> Result<Self, Error> {
        Self::grpc_pooled(url, key, 1).await
    }

    /// A client of the gRPC API over `connections` HTTP/2 connections, used in turn.
    pub async fn grpc_pooled(url: &str, key: &str, connections: usize) -> Result<Self, Error> {
        let endpoint = Channel::from_shared(url.to_string())
            .map_err(|e| Error::Config(format!("`{url}`: {e}")))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10));
        let mut channels = Vec::new();
        for _ in 0..connections.max(1) {
            channels.push(endpoint.connect().await.map_err(transport_error)?);
        }
        Ok(Self {
            transport: Transport::Grpc {
                channels: Arc::new(channels),
                next: Arc::new(AtomicUsize::new(0)),
            },
            key: key.to_string(),
            retry: Retry::default(),
            client_ids: true,
        })
    }

    /// The same client with another retry policy ([`Retry::none`] for no retries).
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The same client leaving events without an id to the server (which generates one).
    /// Only for sends that are never retried (e.g. load generation with [`Retry::none`]): a
    /// retry of such events may store them twice.
    pub fn with_server_ids(mut self) -> Self {
        self.client_ids = false;
        self
    }

    pub(crate) fn prepare(&self, events: &mut [Event]) {
        if self.client_ids {
            for e in events {
                e.ensure_id();
            }
        }
    }

    /// One HTTP call with the key: its answer, or a retry when it could not be made.
    async fn http_call<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Attempt<T> {
        match req.header("x-api-key", &self.key).send().await {
            Err(e) => Attempt::Retry {
                after: None,
                why: format!("HTTP request failed: {e}"),
            },
            Ok(r) => http_answer(r).await,
        }
    }

    pub(crate) fn channel(&self) -> Option<Channel> {
        match &self.transport {
            Transport::Grpc { channels, next } => {
                let i = next.fetch_add(1, Ordering::Relaxed) % channels.len();
                Some(channels[i].clone())
            }
            Transport::Http { .. } => None,
        }
    }

    pub(crate) fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Ok(v) = self.key.parse() {
            r.metadata_mut().insert("x-api-key", v);
        }
        r
    }

    /// Sends one batch (all or nothing), retrying as the policy says. Events without an id get
    /// one first, so retries deduplicate.
    pub async fn send(&self, mut events: Vec<Event>) -> Result<Ack, Error> {
        self.prepare(&mut events);
        self.retry
            .run(|| async { self.send_once(&events, false).await })
            .await
    }

    /// Sends one event (gRPC `IngestEvent`; over HTTP a single JSON object), with retries.
    pub async fn send_one(&self, event: Event) -> Result<Ack, Error> {
        let mut events = [event];
        self.prepare(&mut events);
        self.retry
            .run(|| async { self.send_once(&events, true).await })
            .await
    }

    async fn send_once(&self, events: &[Event], single: bool) -> Attempt<Ack> {
        match &self.transport {
            Transport::Http { base, http } => {
                let body = match (single, events) {
                    (true, [one]) => one.to_json(),
                    _ => serde_json::Value::Array(events.iter().map(Event::to_json).collect()),
                };
                let req = http.post(format!("{base}/api/v1/events")).json(&body);
                self.http_call::<HttpAck>(req).await.map(|a| Ack {
                    accepted: a.accepted,
                    duplicates: a.duplicates,
                    durable: a.durable,
                    offsets: None,
                    // The ids were given (or generated here) before sending.
                    event_ids: events.iter().filter_map(|e| e.event_id.clone()).collect(),
                    rejected: Vec::new(),
                })
            }
            Transport::Grpc { .. } => {
                let Some(ch) = self.channel() else {
                    return Attempt::Done(Err(Error::Config("no gRPC channel".into())));
                };
                let mut client = EventIngestionServiceClient::new(ch);
                let answer = match (single, events) {
                    (true, [one]) => {
                        let msg = pb::IngestEventRequest {
                            event: Some(one.to_proto()),
                        };
                        client.ingest_event(self.request(msg)).await
                    }
                    _ => {
                        let msg = pb::IngestEventsRequest {
                            events: events.iter().map(Event::to_proto).collect(),
                            partial: false,
                            sync: Some(true),
                        };
                        client.ingest_events(self.request(msg)).await
                    }
                };
                match answer {
                    Ok(r) => Attempt::Done(Ok(r.into_inner().into())),
                    Err(s) => grpc_failure(s),
                }
            }
        }
    }

    /// A batcher sending this client's events by size or linger time.
    pub fn batcher(&self, config: BatchConfig) -> Batcher {
        Batcher::start(self.clone(), config)
    }

    /// A `StreamEvents` call (gRPC only) with at most `window` batches unacknowledged.
    pub async fn stream(&self, window: usize) -> Result<EventStream, Error> {
        EventStream::open(self, window).await
    }

    /// Runs one read-only SQL statement; the rows as JSON objects.
    pub async fn sql(
        &self,
        sql: &str,
    ) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, Error> {
        self.retry
            .run(|| async {
                match &self.transport {
                    Transport::Http { base, http } => {
                        let req = http
                            .post(format!("{base}/api/v1/query"))
                            .json(&serde_json::json!({ "sql": sql }));
                        self.http_call::<serde_json::Value>(req).await.map(|v| {
                            v["data"]
                                .as_array()
                                .map(|rows| {
                                    rows.iter().filter_map(|r| r.as_object().cloned()).collect()
                                })
                                .unwrap_or_default()
                        })
                    }
                    Transport::Grpc { .. } => {
                        let Some(ch) = self.channel() else {
                            return Attempt::Done(Err(Error::Config("no gRPC channel".into())));
                        };
                        let msg = pb::QueryRequest {
                            sql: sql.to_string(),
                            omit_arrow: true,
                            omit_rows: false,
                        };
                        match AnalyticsServiceClient::new(ch)
                            .query(self.request(msg))
                            .await
                        {
                            Ok(r) => {
                                let r = r.into_inner();
                                // Struct numbers are doubles: integer columns become integers
                                // again, as over HTTP.
                                let ints: std::collections::HashSet<&str> = r
                                    .columns
                                    .iter()
                                    .filter(|c| {
                                        c.r#type.starts_with("Int") || c.r#type.starts_with("UInt")
                                    })
                                    .map(|c| c.name.as_str())
                                    .collect();
                                Attempt::Done(Ok(r
                                    .rows
                                    .iter()
                                    .map(|s| {
                                        s.fields
                                            .iter()
                                            .map(|(k, v)| {
                                                let j = json(v);
                                                let j = match j.as_f64() {
                                                    Some(f)
                                                        if ints.contains(k.as_str())
                                                            && f.fract() == 0.0 =>
                                                    {
                                                        serde_json::Value::from(f as i64)
                                                    }
                                                    _ => j,
                                                };
                                                (k.clone(), j)
                                            })
                                            .collect()
                                    })
                                    .collect()))
                            }
                            Err(s) => grpc_failure(s),
                        }
                    }
                }
            })
            .await
    }

    /// Events of the last `span` (total, distinct users, per type), from the summary.
    pub async fn summary(&self, span: Duration) -> Result<Summary, Error> {
        self.retry
            .run(|| async {
                match &self.transport {
                    Transport::Http { base, http } => {
                        let req = http.get(format!(
                            "{base}/analytics/summary?from=-{}s",
                            span.as_secs().max(1)
                        ));
                        self.http_call::<serde_json::Value>(req)
                            .await
                            .map(|v| Summary {
                                total_events: v["total_events"].as_u64().unwrap_or(0),
                                unique_users: v["unique_users"].as_u64().unwrap_or(0),
                                event_types: v["event_types"]
                                    .as_object()
                                    .map(|m| {
                                        m.iter()
                                            .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                                            .collect()
                                    })
                                    .unwrap_or_default(),
                            })
                    }
                    Transport::Grpc { .. } => {
                        let Some(ch) = self.channel() else {
                            return Attempt::Done(Err(Error::Config("no gRPC channel".into())));
                        };
                        let msg = pb::GetAnalyticsSummaryRequest {
                            range: Some(pb::TimeRange {
                                last: prost_types::Duration::try_from(span).ok(),
                                ..Default::default()
                            }),
                            top: 0,
                        };
                        match AnalyticsServiceClient::new(ch)
                            .get_analytics_summary(self.request(msg))
                            .await
                        {
                            Ok(r) => {
                                let s = r.into_inner();
                                Attempt::Done(Ok(Summary {
                                    total_events: s.total_events,
                                    unique_users: s.unique_users,
                                    event_types: s.event_types.into_iter().collect(),
                                }))
                            }
                            Err(s) => grpc_failure(s),
                        }
                    }
                }
            })
            .await
    }
}

/// The native HTTP ack.
#[derive(serde::Deserialize)]
struct HttpAck {
    accepted: u64,
    duplicates: u64,
    durable: bool,
}

/// The flat summary figures.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    pub total_events: u64,
    pub unique_users: u64,
    pub event_types: std::collections::BTreeMap<String, u64>,
}

fn json(v: &prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => (*b).into(),
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Some(Kind::StringValue(s)) => s.clone().into(),
        Some(Kind::ListValue(l)) => l.values.iter().map(json).collect(),
        Some(Kind::StructValue(s)) => s
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

/// An HTTP answer: the body on success, a retry on 429/503, an error otherwise.
async fn http_answer<T: serde::de::DeserializeOwned>(r: reqwest::Response) -> Attempt<T> {
    let status = r.status();
    let after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body: serde_json::Value = match r.json().await {
        Ok(b) => b,
        Err(e) => {
            return Attempt::Retry {
                after,
                why: format!("unreadable answer ({status}): {e}"),
            };
        }
    };
    let message = body["message"].as_str().unwrap_or("").to_string();
    match status.as_u16() {
        200..=299 => Attempt::Done(serde_json::from_value(body).map_err(|e| Error::Server {
            code: status.to_string(),
            message: format!("unexpected answer: {e}"),
        })),
        429 | 503 => Attempt::Retry {
            after,
            why: format!("{status}: {message}"),
        },
        400 | 413 | 422 => Attempt::Done(Err(Error::Rejected {
            rejected: body["errors"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| Rejected {
                            index: e["index"].as_u64().unwrap_or(0) as usize,
                            field: e["field"].as_str().unwrap_or("").to_string(),
                            reason: e["reason"].as_str().unwrap_or("").to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            message,
        })),
        401 => Attempt::Done(Err(Error::Unauthenticated(message))),
        403 => Attempt::Done(Err(Error::PermissionDenied(message))),
        _ => Attempt::Done(Err(Error::Server {
            code: status.to_string(),
            message,
        })),
    }
}

/// A failed gRPC call: a retry on UNAVAILABLE / RESOURCE_EXHAUSTED (after `RetryInfo`), an
/// error otherwise.
pub(crate) fn grpc_failure<T>(s: tonic::Status) -> Attempt<T> {
    use tonic::Code;
    let d = s.get_error_details();
    match s.code() {
        // An oversized message is RESOURCE_EXHAUSTED too, but without RetryInfo: no retry.
        Code::Unavailable | Code::ResourceExhausted
            if s.code() == Code::Unavailable || d.retry_info().is_some() =>
        {
            Attempt::Retry {
                after: d.retry_info().and_then(|r| r.retry_delay),
                why: format!("{:?}: {}", s.code(), s.message()),
            }
        }
        Code::InvalidArgument | Code::ResourceExhausted | Code::OutOfRange => {
            Attempt::Done(Err(Error::Rejected {
                message: s.message().to_string(),
                rejected: d
                    .bad_request()
                    .map(|b| {
                        b.field_violations
                            .iter()
                            .map(|v| violation(&v.field, &v.description))
                            .collect()
                    })
                    .unwrap_or_default(),
            }))
        }
        Code::Unauthenticated => Attempt::Done(Err(Error::Unauthenticated(s.message().into()))),
        Code::PermissionDenied => Attempt::Done(Err(Error::PermissionDenied(s.message().into()))),
        other => Attempt::Done(Err(Error::Server {
            code: format!("{other:?}"),
            message: s.message().to_string(),
        })),
    }
}

/// `events[3].metrics.t` → index 3, field `metrics.t`.
fn violation(field: &str, reason: &str) -> Rejected {
    let (index, field) = field
        .strip_prefix("events[")
        .and_then(|r| r.split_once(']'))
        .map(|(i, rest)| {
            (
                i.parse().unwrap_or(0),
                rest.trim_start_matches('.').to_string(),
            )
        })
        .unwrap_or((0, field.trim_start_matches("event.").to_string()));
    Rejected {
        index,
        field,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_name_index_and_field() {
        let v = violation("events[3].metrics.t", "bad");
        assert_eq!((v.index, v.field.as_str()), (3, "metrics.t"));
        let v = violation("event.time", "bad");
        assert_eq!((v.index, v.field.as_str()), (0, "time"));
    }

    #[test]
    fn only_retryable_statuses_are_retried() {
        let mut d = tonic_types::ErrorDetails::new();
        d.set_retry_info(Some(Duration::from_secs(2)));
        let quota = tonic::Status::with_error_details(tonic::Code::ResourceExhausted, "q", d);
        assert!(matches!(
            grpc_failure::<()>(quota),
            Attempt::Retry { after: Some(a), .. } if a == Duration::from_secs(2)
        ));
        let too_big = tonic::Status::resource_exhausted("message too large");
        assert!(matches!(
            grpc_failure::<()>(too_big),
            Attempt::Done(Err(Error::Rejected { .. }))
        ));
        assert!(matches!(
            grpc_failure::<()>(tonic::Status::unavailable("down")),
            Attempt::Retry { after: None, .. }
        ));
        assert!(matches!(
            grpc_failure::<()>(tonic::Status::unauthenticated("no")),
            Attempt::Done(Err(Error::Unauthenticated(_)))
        ));
    }
}
