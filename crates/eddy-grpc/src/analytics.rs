//! `eddy.v1.AnalyticsService`: request messages become the service layer's questions (with
//! the HTTP API's defaults and bounds), answers are copied into messages.

use std::pin::Pin;

use eddy_proto::v1 as pb;
use eddy_proto::v1::analytics_service_server::AnalyticsService;
use eddy_service::Error as Domain;
use eddy_service::analytics::{Field, FunnelRequest, Period, RetentionRequest, UserRequest};
use eddy_service::live::{Channel, Filter, Next, Subscription, parse_channels};
use eddy_service::overview::OverviewQuery;
use eddy_service::query::{Agg, SourceChoice, TimeseriesQuery};
use eddy_service::range::DAY_NS;
use eddy_service::sql;
use futures_util::Stream;
use tonic::{Request, Response, Status};

use crate::Ctx;
use crate::convert::{self, count, duration_ns, range, spec_in, structure};
use crate::error::status;

/// The analytics service.
#[derive(Debug, Clone)]
pub(crate) struct Analytics(pub(crate) Ctx);

fn bad(message: String) -> Status {
    status(Domain::invalid("invalid_parameter", message))
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Live messages of a subscription until the client cancels, the feed closes or shutdown
/// starts; a subscriber that fell behind is ended with RESOURCE_EXHAUSTED.
pub(crate) fn live_stream(
    ctx: &Ctx,
    sub: Subscription,
) -> impl Stream<Item = Result<pb::LiveMessage, Status>> + Send + use<> {
    let state = (sub, ctx.stopping.clone(), crate::OpenStream::new(ctx));
    futures_util::stream::unfold(Some(state), |state| async move {
        let (mut sub, mut stopping, open) = state?;
        let next = tokio::select! {
            n = sub.next() => n,
            _ = stopping.wait_for(|s| *s) => return None,
        };
        match next {
            Next::Message(m) => Some((Ok(convert::live(m)), Some((sub, stopping, open)))),
            Next::Lagged(n) => Some((
                Err(Status::resource_exhausted(format!(
                    "this subscriber fell {n} messages behind the live feed and was ended; subscribe again"
                ))),
                None,
            )),
            Next::Closed => None,
        }
    })
}

/// A subscription filter from request fields.
pub(crate) fn filter(
    channels: Vec<String>,
    device_id: String,
    r#type: String,
    metric: String,
) -> Result<Filter, Status> {
    Ok(Filter {
        channels: if channels.is_empty() {
            Channel::ALL.into_iter().collect()
        } else {
            parse_channels(&channels).map_err(status)?
        },
        device_id: non_empty(device_id),
        r#type: non_empty(r#type),
        metric: non_empty(metric),
    })
}

type LiveStream = Pin<Box<dyn Stream<Item = Result<pb::LiveMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AnalyticsService for Analytics {
    async fn get_analytics_summary(
        &self,
        req: Request<pb::GetAnalyticsSummaryRequest>,
    ) -> Result<Response<pb::AnalyticsSummary>, Status> {
        let caller = self.0.caller(&req)?;
        let r = req.into_inner();
        let range = range(r.range.as_ref(), self.0.clock.now_ns()).map_err(status)?;
        let top = count("top", r.top, 10, 1000).map_err(status)?;
        let a = self
            .0
            .services
            .analytics
            .summary(&caller, range, top)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::summary(a)))
    }

    async fn get_time_series(
        &self,
        req: Request<pb::GetTimeSeriesRequest>,
    ) -> Result<Response<pb::TimeSeries>, Status> {
        let caller = self.0.caller(&req)?;
        let r = req.into_inner();
        let now = self.0.clock.now_ns();
        let (from, to) = range(r.range.as_ref(), now)
            .and_then(|x| x.resolve(now, DAY_NS))
            .map_err(status)?;
        let bucket_secs = match &r.bucket {
            None => 60,
            Some(d) if d.nanos == 0 && (1..=86_400).contains(&d.seconds) => d.seconds as u64,
            Some(_) => return Err(bad("`bucket`: whole seconds from 1s to 1d".into())),
        };
        let aggs = if r.aggs.is_empty() {
            vec![Agg::Avg]
        } else {
            r.aggs
                .iter()
                .map(|a| Agg::parse(a.trim()).map_err(Domain::from))
                .collect::<Result<Vec<_>, _>>()
                .map_err(status)?
        };
        let q = TimeseriesQuery {
            metric: r.metric,
            device_id: non_empty(r.device_id),
            from,
            to,
            bucket_secs,
            aggs,
            group_by_device: r.group_by_device,
        };
        let source = if r.raw {
            SourceChoice::Raw
        } else {
            SourceChoice::Auto
        };
        let a = self
            .0
            .services
            .query
            .timeseries(&caller, q, source)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::timeseries(a)))
    }

    type GetRealTimeAnalyticsStream = LiveStream;

    async fn get_real_time_analytics(
        &self,
        req: Request<pb::GetRealTimeAnalyticsRequest>,
    ) -> Result<Response<LiveStream>, Status> {
        let caller = self.0.caller(&req)?;
        let r = req.into_inner();
        let filter = filter(r.channels, r.device_id, r.r#type, r.metric)?;
        let sub = self
            .0
            .services
            .live
            .subscribe(&caller, filter)
            .map_err(status)?;
        Ok(Response::new(Box::pin(live_stream(&self.0, sub))))
    }

    async fn get_user_analytics(
        &self,
        req: Request<pb::GetUserAnalyticsRequest>,
    ) -> Result<Response<pb::UserAnalytics>, Status> {
        let caller = self.0.caller(&req)?;
        let r = req.into_inner();
        if r.user_id.is_empty() {
            return Err(bad("`user_id` is required".into()));
        }
        let q = UserRequest {
            user_id: r.user_id,
            range: match &r.range {
                // Default: all time (the service's default for a user).
                None => Default::default(),
                Some(x) => range(Some(x), self.0.clock.now_ns()).map_err(status)?,
            },
            session_gap_ns: match &r.session_gap {
                None => 30 * 60 * 1_000_000_000,
                Some(d) => duration_ns("session_gap", d).map_err(status)?,
            },
            sessions: count("sessions", r.sessions, 50, 1000).map_err(status)?,
            recent: count("recent", r.recent, 20, 1000).map_err(status)?,
            top: count("top", r.top, 20, 1000).map_err(status)?,
        };
        let a = self
            .0
            .services
            .analytics
            .user(&caller, q)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::user(a)))
    }

    async fn get_funnel_analysis(
        &self,
        req: Request<pb::GetFunnelAnalysisRequest>,
    ) -> Result<Response<pb::FunnelAnalysis>, Status> {
        let caller = self.0.caller(&req)?;
        let r = req.into_inner();
        let q = FunnelRequest {
            steps: r.steps.into_iter().map(spec_in).collect(),
            window_ns: r
                .window
                .as_ref()
                .map(|w| duration_ns("window", w))
                .transpose()
                .map_err(status)?,
            range: range(r.range.as_ref(), self.0.clock.now_ns()).map_err(status)?,
            breakdown: non_empty(r.breakdown)
                .map(|b| {
                    Field::parse(&b).map_err(|e| bad(format!("`breakdown`: {}", Domain::from(e))))
                })
                .transpose()?,
            breakdown_limit: (r.breakdown_limit > 0).then_some(r.breakdown_limit as usize),
        };
        let a = self
            .0
            .services
            .analytics
            .funnel(&caller, q)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::funnel(a)))
    }

    async fn get_retention(
        &self,
        req: Request<pb::GetRetentionRequest>,
    ) -> Result<Response<pb::Retention>, Status> {
        let caller = self.0.caller(&req)?;
        let r = req.into_inner();
        let period = match r.period.as_str() {
            "" | "day" => Period::Day,
            "week" => Period::Week,
            other => return Err(bad(format!("`period` `{other}`: use day or week"))),
        };
        let (Some(cohort), Some(ret)) = (r.cohort, r.r#return) else {
            return Err(bad("`cohort` and `return` are required".into()));
        };
        let q = RetentionRequest {
            cohort: spec_in(cohort),
            r#return: spec_in(ret),
            period,
            periods: (r.periods > 0).then_some(r.periods as usize),
            range: range(r.range.as_ref(), self.0.clock.now_ns()).map_err(status)?,
        };
        let a = self
            .0
            .services
            .analytics
            .retention(&caller, q)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::retention(a)))
    }

    async fn query(
        &self,
        req: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        let caller = self.0.caller(&req)?;
        let r = req.into_inner();
        let answer = self
            .0
            .services
            .sql
            .query(&caller, r.sql)
            .await
            .map_err(status)?;
        let rows = if r.omit_rows {
            Vec::new()
        } else {
            let json = sql::json_rows(&answer).map_err(status)?;
            let rows: Vec<serde_json::Map<String, serde_json::Value>> =
                serde_json::from_slice(&json).map_err(|e| {
                    status(Domain::Internal(format!("SQL rows not readable back: {e}")))
                })?;
            rows.iter().map(structure).collect()
        };
        Ok(Response::new(pb::QueryResponse {
            columns: sql::columns(&answer)
                .into_iter()
                .map(|(name, r#type)| pb::Column { name, r#type })
                .collect(),
            row_count: sql::row_count(&answer) as u64,
            arrow_ipc: if r.omit_arrow {
                Vec::new()
            } else {
                sql::arrow_ipc(&answer).map_err(status)?
            },
            rows,
        }))
    }

    async fn get_overview(
        &self,
        req: Request<pb::GetOverviewRequest>,
    ) -> Result<Response<pb::Overview>, Status> {
        let caller = self.0.caller(&req)?;
        let r = req.into_inner();
        let q = OverviewQuery {
            range: range(r.range.as_ref(), self.0.clock.now_ns()).map_err(status)?,
            top: (r.top != 0).then_some(r.top as usize),
            alerts: r.alerts.map(|n| n as usize),
        };
        let a = self
            .0
            .services
            .overview
            .overview(&caller, q)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::overview(a)))
    }

    async fn list_tables(
        &self,
        req: Request<pb::ListTablesRequest>,
    ) -> Result<Response<pb::ListTablesResponse>, Status> {
        let caller = self.0.caller(&req)?;
        let t = self.0.services.sql.tables(&caller).map_err(status)?;
        Ok(Response::new(convert::tables(t)))
    }
}
