//! What wraps every call: the client's deadline (`grpc-timeout`; past it the call is dropped,
//! which cancels its work, and answered DEADLINE_EXCEEDED — also mid-stream), the request id
//! (`x-request-id` kept or generated, echoed in the response headers and logged), and
//! per-method metrics: `eddy_grpc_requests_total{method,code}` and
//! `eddy_grpc_request_duration_seconds{method}`, taken when the call ends (for streams: when
//! the stream ends). Unknown method paths are counted as `unknown`, so clients cannot grow the
//! label set. The help texts are with the process's others (`eddy-server`'s `metrics.rs`).

use std::collections::HashSet;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use prost::Message;
use tonic::{Code, Status};
use tracing::Instrument;

/// Every method path served (`package.Service/Method`), for the metric labels.
pub(crate) fn known_methods() -> Arc<HashSet<String>> {
    let mut out = HashSet::new();
    for set in [
        eddy_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ] {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            continue;
        };
        for f in set.file {
            for s in &f.service {
                for m in &s.method {
                    out.insert(format!("{}.{}/{}", f.package(), s.name(), m.name()));
                }
            }
        }
    }
    for v in ["v1", "v1alpha"] {
        out.insert(format!(
            "grpc.reflection.{v}.ServerReflection/ServerReflectionInfo"
        ));
    }
    Arc::new(out)
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_timeout(v: &HeaderValue) -> Option<Duration> {
    let s = v.to_str().ok()?;
    if s.len() < 2 || s.len() > 9 {
        return None;
    }
    let (digits, unit) = s.split_at(s.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn deadline_status() -> Status {
    Status::deadline_exceeded("the client's deadline passed; the call was cancelled")
}

fn code_name(c: Code) -> &'static str {
    match c {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// tonic refuses an undecodable message with INTERNAL (Eddy: INVALID_ARGUMENT) and a message
/// over the size limit with OUT_OF_RANGE, in its own words; Eddy
/// answers RESOURCE_EXHAUSTED (the limit is a resource, as the HTTP API's 413) and says which
/// limit. Rewrites `grpc-status` / `grpc-message` in `headers` (or trailers) in place.
fn size_limit_in_eddys_words(headers: &mut HeaderMap) {
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    let m = status.message();
    // A body that is not a valid message: tonic answers INTERNAL with prost's words.
    if status.code() == Code::Internal && m.starts_with("failed to decode Protobuf message") {
        headers.remove("grpc-status-details-bin");
        let detail = m
            .trim_start_matches("failed to decode Protobuf message")
            .trim_start_matches(':')
            .trim();
        let s = Status::invalid_argument(format!(
            "the request is not a valid message of this method ({detail}); check the client's eddy.v1 protos"
        ));
        if s.add_header(headers).is_err() {
            tracing::debug!("could not rewrite a decode-error status");
        }
        return;
    }
    if status.code() != Code::OutOfRange {
        return;
    }
    let (what, hint) = if m.contains("decoded message length too large") {
        (
            "request message",
            "send smaller batches or raise --max-body-size",
        )
    } else if m.contains("encoded message length too large") {
        (
            "answer",
            "ask for less (a narrower range, fewer rows) or raise --max-body-size",
        )
    } else {
        return;
    };
    let numbers: Vec<&str> = m
        .split(|c: char| !c.is_ascii_digit())
        .filter(|x| !x.is_empty())
        .collect();
    let message = match numbers.as_slice() {
        [found, limit, ..] => {
            format!("the {what} is {found} bytes, more than the limit of {limit} bytes; {hint}")
        }
        _ => format!("the {what} is larger than the message size limit; {hint}"),
    };
    headers.remove("grpc-status-details-bin");
    if Status::resource_exhausted(message)
        .add_header(headers)
        .is_err()
    {
        tracing::debug!("could not rewrite a size-limit status");
    }
}

fn code_in(headers: &HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32)
}

/// The layer around the routes.
#[derive(Debug, Clone)]
pub(crate) struct Telemetry<S> {
    inner: S,
    known: Arc<HashSet<String>>,
}

impl<S> Telemetry<S> {
    pub(crate) fn new(inner: S, known: Arc<HashSet<String>>) -> Self {
        Self { inner, known }
    }
}

impl<S, B> tower::Service<Request<B>> for Telemetry<S>
where
    S: tower::Service<Request<B>, Response = Response<tonic::body::Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Observed>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let path = req.uri().path().trim_start_matches('/');
        let method: Arc<str> = if self.known.contains(path) {
            path.into()
        } else {
            "unknown".into()
        };
        let deadline = req
            .headers()
            .get("grpc-timeout")
            .and_then(parse_timeout)
            .map(|d| tokio::time::Instant::now() + d);
        let request_id = req
            .headers()
            .get("x-request-id")
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .cloned()
            .unwrap_or_else(|| {
                HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                    .unwrap_or(HeaderValue::from_static("invalid"))
            });
        req.headers_mut().insert("x-request-id", request_id.clone());
        // The service that was polled ready takes the call; a clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // The call's logs (the services' included) carry its method and request id.
        let span = tracing::info_span!(
            "grpc",
            method = %method,
            request_id = %request_id.to_str().unwrap_or("")
        );
        Box::pin(
            async move {
                let start = Instant::now();
                tracing::debug!("gRPC call");
                // Counted as CANCELLED if the client goes away before the answer starts.
                let mut pending = Pending {
                    method: Some(method.clone()),
                    start,
                };
                let call = inner.call(req);
                let resp = match deadline {
                    Some(at) => match tokio::time::timeout_at(at, call).await {
                        Ok(r) => r?,
                        Err(_) => deadline_status().into_http(),
                    },
                    None => call.await?,
                };
                pending.method = None;
                let (mut parts, body) = resp.into_parts();
                parts.headers.insert("x-request-id", request_id);
                size_limit_in_eddys_words(&mut parts.headers);
                let early = code_in(&parts.headers);
                Ok(Response::from_parts(
                    parts,
                    Observed {
                        inner: body,
                        method,
                        start,
                        code: early,
                        deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
                        done: false,
                    },
                ))
            }
            .instrument(span),
        )
    }
}

/// Records a call whose future was dropped before it answered (the client went away).
struct Pending {
    /// `None` once the call answered (its body records it then).
    method: Option<Arc<str>>,
    start: Instant,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(method) = self.method.take() {
            record(&method, Code::Cancelled, self.start);
        }
    }
}

fn record(method: &str, code: Code, start: Instant) {
    metrics::counter!("eddy_grpc_requests_total", "method" => method.to_string(), "code" => code_name(code))
        .increment(1);
    metrics::histogram!("eddy_grpc_request_duration_seconds", "method" => method.to_string())
        .record(start.elapsed().as_secs_f64());
}

/// A response body that ends the call at the client's deadline and records the call's
/// outcome when it is dropped.
pub(crate) struct Observed {
    inner: tonic::body::Body,
    method: Arc<str>,
    start: Instant,
    /// The status once known (headers of a trailers-only answer, or the trailers).
    code: Option<Code>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    done: bool,
}

impl std::fmt::Debug for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("method", &self.method)
            .field("code", &self.code)
            .finish_non_exhaustive()
    }
}

impl Body for Observed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(d) = this.deadline.as_mut()
            && d.as_mut().poll(cx).is_ready()
        {
            this.done = true;
            this.code = Some(Code::DeadlineExceeded);
            let mut trailers = HeaderMap::new();
            if deadline_status().add_header(&mut trailers).is_ok() {
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match frame.into_trailers() {
                    Ok(mut t) => {
                        size_limit_in_eddys_words(&mut t);
                        this.code = code_in(&t).or(this.code);
                        this.done = true;
                        Frame::trailers(t)
                    }
                    Err(data) => data,
                };
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(status))) => {
                this.code = Some(status.code());
                this.done = true;
                Poll::Ready(Some(Err(status)))
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        // Dropped before a status was sent: the client went away.
        let code = self
            .code
            .unwrap_or(if self.done || self.inner.is_end_stream() {
                Code::Unknown
            } else {
                Code::Cancelled
            });
        record(&self.method, code, self.start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_as_the_protocol_spells_them() {
        let p = |s: &str| parse_timeout(&HeaderValue::from_str(s).unwrap());
        assert_eq!(p("500m"), Some(Duration::from_millis(500)));
        assert_eq!(p("2S"), Some(Duration::from_secs(2)));
        assert_eq!(p("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(p("10u"), Some(Duration::from_micros(10)));
        assert_eq!(p("123456789S"), None, "more than 8 digits");
        assert_eq!(p("5x"), None);
        assert_eq!(p("S"), None);
    }

    #[test]
    fn size_limits_are_resource_exhausted_in_eddys_words() {
        let mut h = HeaderMap::new();
        Status::out_of_range(
            "Error, decoded message length too large: found 81020 bytes, the limit is: 65536 bytes",
        )
        .add_header(&mut h)
        .unwrap();
        size_limit_in_eddys_words(&mut h);
        let s = Status::from_header_map(&h).unwrap();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(
            s.message(),
            "the request message is 81020 bytes, more than the limit of 65536 bytes; send smaller batches or raise --max-body-size"
        );
        let mut h = HeaderMap::new();
        Status::internal("failed to decode Protobuf message: invalid wire type value: 7")
            .add_header(&mut h)
            .unwrap();
        size_limit_in_eddys_words(&mut h);
        let s = Status::from_header_map(&h).unwrap();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("invalid wire type"), "{}", s.message());
        // Other statuses stay as they are.
        let mut h = HeaderMap::new();
        Status::out_of_range("page 9 of 3")
            .add_header(&mut h)
            .unwrap();
        size_limit_in_eddys_words(&mut h);
        assert_eq!(
            Status::from_header_map(&h).unwrap().code(),
            Code::OutOfRange
        );
    }

    #[test]
    fn every_api_method_is_known() {
        let k = known_methods();
        for m in [
            "eddy.v1.EventIngestionService/StreamEvents",
            "eddy.v1.AnalyticsService/Query",
            "eddy.v1.MetricsService/ExportMetrics",
            "grpc.health.v1.Health/Check",
            "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert!(k.contains(m), "{m}");
        }
    }
}
