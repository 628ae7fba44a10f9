//! The overview a dashboard opens with, in one answer: the summary of a range beside the
//! period before it (events by type and top pages included), the newest open alerts with
//! their count, and the pipeline's health (readiness and how far store and rollups are behind
//! the log). One request means one authentication and figures from one moment; every front
//! end (HTTP `GET /api/v1/overview`, gRPC `GetOverview`) calls [`OverviewService::overview`].
//!
//! The defaults and limits of the question live here, not in the front ends.

use std::sync::Arc;

use serde::Serialize;

use crate::alerts::{AlertQuery, AlertView, AlertsService};
use crate::analytics::{AnalyticsService, SummaryAnswer};
use crate::auth::{Principal, Scope};
use crate::ops::{Lag, OpsService};
use crate::range::TimeRange;
use crate::{Error, Result};

/// Top list length unless asked (event types, pages, sources).
pub const DEFAULT_TOP: usize = 10;
/// Longest top list.
pub const MAX_TOP: usize = 1000;
/// Open alerts listed unless asked.
pub const DEFAULT_ALERTS: usize = 5;
/// Most open alerts listed.
pub const MAX_ALERTS: usize = 100;

/// What an overview asks; `None` takes the default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OverviewQuery {
    /// Default: the last 24 hours.
    pub range: TimeRange,
    /// Length of the top lists (1 to [`MAX_TOP`], default [`DEFAULT_TOP`]).
    pub top: Option<usize>,
    /// Open alerts listed (0 to [`MAX_ALERTS`], default [`DEFAULT_ALERTS`]); the count of all
    /// open alerts is answered whatever this is.
    pub alerts: Option<usize>,
}

/// The newest open alerts and how many are open.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OpenAlerts {
    /// Newest first.
    pub data: Vec<AlertView>,
    /// Open alerts in all.
    pub total: usize,
}

/// Whether ingest acknowledges and how far the consumers are behind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PipelineHealth {
    /// The log acknowledges appends.
    pub ready: bool,
    /// `ok`, `failed` or `closed`.
    pub log: &'static str,
    /// Why it is not ready, when it is not.
    pub reason: Option<&'static str>,
    /// The log's end and each consumer's position behind it (as `GET /lag`).
    pub lag: Lag,
}

/// The overview.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OverviewAnswer {
    /// As `GET /api/v1/analytics/summary` answers it.
    pub summary: SummaryAnswer,
    pub open_alerts: OpenAlerts,
    pub pipeline: PipelineHealth,
}

/// The overview service: a composition of the analytics, alerts and ops services.
#[derive(Debug)]
pub struct OverviewService {
    analytics: Arc<AnalyticsService>,
    alerts: Arc<AlertsService>,
    ops: Arc<OpsService>,
}

impl OverviewService {
    pub fn new(
        analytics: Arc<AnalyticsService>,
        alerts: Arc<AlertsService>,
        ops: Arc<OpsService>,
    ) -> Self {
        Self {
            analytics,
            alerts,
            ops,
        }
    }

    pub async fn overview(&self, caller: &Principal, q: OverviewQuery) -> Result<OverviewAnswer> {
        caller.require(Scope::Read)?;
        let bad = |m: String| Error::invalid("invalid_parameter", m);
        let top = match q.top {
            None => DEFAULT_TOP,
            Some(n) if (1..=MAX_TOP).contains(&n) => n,
            Some(n) => return Err(bad(format!("`top` {n}: 1 to {MAX_TOP}"))),
        };
        let listed = match q.alerts {
            None => DEFAULT_ALERTS,
            Some(n) if n <= MAX_ALERTS => n,
            Some(n) => return Err(bad(format!("`alerts` {n}: 0 to {MAX_ALERTS}"))),
        };
        // The pipeline first: the summary's figures are then at least as new as the lag says.
        let ready = self.ops.ready();
        let lag = self.ops.lag(caller)?;
        let summary = self.analytics.summary(caller, q.range, top).await?;
        let alerts = self.alerts.list_alerts(
            caller,
            AlertQuery {
                status: Some("open".into()),
                limit: Some(listed.max(1).to_string()),
                ..AlertQuery::default()
            },
        )?;
        let mut data = alerts.data;
        data.truncate(listed);
        Ok(OverviewAnswer {
            summary,
            open_alerts: OpenAlerts {
                data,
                total: alerts.total,
            },
            pipeline: PipelineHealth {
                ready: ready.ready,
                log: ready.log,
                reason: ready.reason,
                lag,
            },
        })
    }
}
