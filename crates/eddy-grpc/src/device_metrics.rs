//! `eddy.v1.MetricsService`: the newest device metrics, a stream of samples as events
//! arrive (the live feed's events channel, split into one message per metric), and the
//! Prometheus / JSON / CSV exports of the HTTP API.

use std::pin::Pin;

use eddy_proto::v1 as pb;
use eddy_proto::v1::metrics_service_server::MetricsService;
use eddy_service::export;
use futures_util::{Stream, StreamExt, stream};
use tonic::{Request, Response, Status};

use crate::Ctx;
use crate::analytics::{filter, live_stream};
use crate::convert::{latest, samples};
use crate::error::status;

/// The metrics service.
#[derive(Debug, Clone)]
pub(crate) struct Metrics(pub(crate) Ctx);

type SampleStream = Pin<Box<dyn Stream<Item = Result<pb::MetricSample, Status>> + Send>>;

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

#[tonic::async_trait]
impl MetricsService for Metrics {
    async fn get_metrics(
        &self,
        req: Request<pb::GetMetricsRequest>,
    ) -> Result<Response<pb::GetMetricsResponse>, Status> {
        let caller = self.0.caller(&req)?;
        let r = req.into_inner();
        let all = self
            .0
            .services
            .analytics
            .latest_metrics_of(&caller, non_empty(&r.device_id), non_empty(&r.metric))
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetMetricsResponse {
            metrics: all.into_iter().map(latest).collect(),
        }))
    }

    type StreamMetricsStream = SampleStream;

    async fn stream_metrics(
        &self,
        req: Request<pb::StreamMetricsRequest>,
    ) -> Result<Response<SampleStream>, Status> {
        let caller = self.0.caller(&req)?;
        let r = req.into_inner();
        let metric = (!r.metric.is_empty()).then(|| r.metric.clone());
        let f = filter(vec!["events".into()], r.device_id, String::new(), r.metric)?;
        let sub = self.0.services.live.subscribe(&caller, f).map_err(status)?;
        let out = live_stream(&self.0, sub).flat_map(move |m| {
            let items: Vec<Result<pb::MetricSample, Status>> = match m {
                Ok(m) => samples(&m, metric.as_deref()).into_iter().map(Ok).collect(),
                Err(s) => vec![Err(s)],
            };
            stream::iter(items)
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn export_metrics(
        &self,
        req: Request<pb::ExportMetricsRequest>,
    ) -> Result<Response<pb::ExportMetricsResponse>, Status> {
        let caller = self.0.caller(&req)?;
        let format = pb::ExportFormat::try_from(req.get_ref().format).map_err(|_| {
            status(eddy_service::Error::invalid(
                "invalid_parameter",
                format!(
                    "`format` {}: use EXPORT_FORMAT_PROMETHEUS, EXPORT_FORMAT_JSON or EXPORT_FORMAT_CSV",
                    req.get_ref().format
                ),
            ))
        })?;
        let all = self
            .0
            .services
            .analytics
            .latest_metrics(&caller)
            .await
            .map_err(status)?;
        let (content_type, data) = match format {
            pb::ExportFormat::Unspecified | pb::ExportFormat::Prometheus => (
                "text/plain; version=0.0.4; charset=utf-8",
                export::prometheus_text(&all).into_bytes(),
            ),
            pb::ExportFormat::Json => (
                "application/json",
                export::latest_json(&all).map_err(status)?,
            ),
            pb::ExportFormat::Csv => (
                "text/csv; charset=utf-8",
                export::latest_csv(&all).map_err(status)?,
            ),
        };
        Ok(Response::new(pb::ExportMetricsResponse {
            content_type: content_type.to_string(),
            data,
        }))
    }
}
