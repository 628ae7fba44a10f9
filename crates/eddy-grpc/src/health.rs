//! `grpc.health.v1.Health`: SERVING while the service layer reports ready (the log
//! acknowledges appends), NOT_SERVING after a log failure and once shutdown starts — for the
//! server as a whole (`""`) and for each `eddy.v1` service.

use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};

use crate::Ctx;

/// How often readiness is looked at.
const POLL: Duration = Duration::from_millis(500);

const SERVICES: [&str; 4] = [
    "",
    "eddy.v1.EventIngestionService",
    "eddy.v1.AnalyticsService",
    "eddy.v1.MetricsService",
];

/// The health service, and a task keeping its statuses up to date until shutdown.
pub(crate) fn spawn(ctx: Ctx) -> HealthServer<impl Health> {
    let (reporter, service) = tonic_health::server::health_reporter();
    let mut stopping = ctx.stopping.clone();
    tokio::spawn(async move {
        let mut last = None;
        loop {
            let stop = *stopping.borrow();
            let status = if !stop && ctx.services.ops.ready().ready {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            if last != Some(status) {
                for s in SERVICES {
                    reporter.set_service_status(s, status).await;
                }
                last = Some(status);
            }
            if stop {
                break;
            }
            tokio::select! {
                r = stopping.changed() => if r.is_err() { break },
                () = tokio::time::sleep(POLL) => {}
            }
        }
    });
    service
}
