//! Live feeds. `GET /api/v1/stream`: server-sent events of the caller's tenant (`read` scope),
//! each acknowledged event as `event: event` with `{"type": "event", "data": {…}}` (the data
//! model's field names), filtered by `device_id`, `type` and `metric` (the event carries that
//! metric). A subscriber that falls more than the feed's capacity behind gets
//! `event: error` with `{"type": "error", "error": "slow_consumer", …}` and the stream ends
//! (reconnect to resume); comments keep idle connections alive.
//!
//! Channels: `events` (the default). `rollups` and `alerts` come with the alerting work.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::Caller;
use crate::catalog::Scope;
use crate::routes::query::unknown;
use crate::state::AppState;
use crate::{Error, Result};

#[derive(Debug, Default, Clone)]
struct Filter {
    device_id: Option<String>,
    r#type: Option<String>,
    metric: Option<String>,
}

impl Filter {
    fn passes(&self, e: &eddy_model::Event) -> bool {
        self.device_id
            .as_deref()
            .is_none_or(|d| e.device_id.as_deref() == Some(d))
            && self.r#type.as_deref().is_none_or(|t| e.r#type == t)
            && self
                .metric
                .as_deref()
                .is_none_or(|m| e.metrics.contains_key(m))
    }
}

pub(crate) async fn sse(
    State(state): State<AppState>,
    caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let p = caller.require(Scope::Read)?;
    let mut filter = Filter::default();
    for (k, v) in &pairs {
        match k.as_str() {
            "device_id" | "sensor_id" => filter.device_id = Some(v.clone()),
            "type" => filter.r#type = Some(v.clone()),
            "metric" => filter.metric = Some(v.clone()),
            "channels" => {
                for c in v.split(',').map(str::trim) {
                    if c != "events" {
                        return Err(Error::bad_request(
                            "invalid_parameter",
                            format!("`channels`: `{c}` is not available yet; use events"),
                        ));
                    }
                }
            }
            other => return Err(unknown(other, "channels, device_id, type, metric")),
        }
    }
    let rx = state.stream.subscribe(&p.tenant_id);
    let events = stream::unfold(Some((rx, filter)), |st| async move {
        let (mut rx, filter) = st?;
        loop {
            match rx.recv().await {
                Ok(e) if filter.passes(&e) => {
                    let data = json!({"type": "event", "data": e.to_json()}).to_string();
                    let msg = SseEvent::default().event("event").data(data);
                    return Some((Ok::<_, Infallible>(msg), Some((rx, filter))));
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => {
                    metrics::counter!("eddy_live_slow_consumers_total").increment(1);
                    let data = json!({
                        "type": "error",
                        "error": "slow_consumer",
                        "message": format!("this subscriber fell {n} events behind; reconnect to resume"),
                    })
                    .to_string();
                    return Some((Ok(SseEvent::default().event("error").data(data)), None));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
