//! Outbound alert notifications: each alert transition of a tenant with a `webhook_url`
//! (`PATCH /api/v1/tenants/{id}`) is POSTed there as JSON — the live feed's alert message plus
//! `tenant_id`:
//! `{"type": "alert", "timestamp", "tenant_id", "data": {"event": "opened"|"acknowledged"|
//! "resolved", "id", "device_id", "severity", "message", …}}`, with headers
//! `X-Eddy-Event: alert.<event>` and `X-Eddy-Delivery: <alert id>.<event>` (stable across
//! retries, so a receiver can drop duplicates).
//!
//! Delivery: each attempt has a timeout (`--webhook-timeout`, default 5 s); timeouts,
//! connection errors, 408, 429 and 5xx are retried with exponential backoff (0.5 s, 1 s,
//! 2 s, … capped at 30 s) up to `--webhook-attempts` (default 6); other 4xx answers are not
//! retried. What is not delivered is dead-lettered: counted in
//! `eddy_webhook_dead_letters_total` and logged. At most [`CONCURRENCY`] deliveries run at once;
//! transitions beyond the processor's bounded queue are dropped and counted.
//!
//! Guarantee: at least once while the server runs (a restart replays log records after the
//! last checkpoint, which may notify again — the delivery id lets receivers deduplicate);
//! deliveries in flight at shutdown are abandoned.

use std::sync::Arc;
use std::time::Duration;

use eddy_service::live::{AlertNotice, LiveMessage};
use tokio::sync::{Semaphore, mpsc};

use crate::state::AppState;

/// Deliveries in flight at once.
pub(crate) const CONCURRENCY: usize = 64;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Starts delivering the processor's alert transitions.
pub(crate) fn spawn(state: AppState, mut notices: mpsc::Receiver<AlertNotice>) {
    let client = match reqwest::Client::builder()
        .timeout(state.config.webhook_timeout)
        .user_agent(concat!("eddy/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook client could not be built; webhooks are off");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    tokio::spawn(async move {
        while let Some(n) = notices.recv().await {
            let Some(url) = state.services.admin.webhook_url(&n.tenant) else {
                continue;
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let client = client.clone();
            let attempts = state.config.webhook_attempts.max(1);
            tokio::spawn(async move {
                deliver(&client, &url, &n, attempts).await;
                drop(permit);
            });
        }
    });
}

enum Outcome {
    Delivered,
    Retry(String),
    Permanent(String),
}

async fn attempt(client: &reqwest::Client, url: &str, n: &AlertNotice, body: &str) -> Outcome {
    let event = n.transition.name();
    let resp = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("x-eddy-event", format!("alert.{event}"))
        .header("x-eddy-delivery", format!("{}.{event}", n.alert.id))
        .body(body.to_string())
        .send()
        .await;
    match resp {
        Ok(r) if r.status().is_success() => Outcome::Delivered,
        Ok(r) => {
            let s = r.status();
            if s.is_server_error() || s.as_u16() == 408 || s.as_u16() == 429 {
                Outcome::Retry(format!("HTTP {s}"))
            } else {
                Outcome::Permanent(format!("HTTP {s}"))
            }
        }
        Err(e) => Outcome::Retry(failure(&e)),
    }
}

/// Why a request failed, with its real cause: reqwest's own text names only the URL, the cause
/// (DNS, refused connection, TLS) is at the end of its source chain.
fn failure(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    // The cause, never reqwest's own text: that names the URL, which may hold a token.
    let mut cause = std::error::Error::source(e);
    let mut root = None;
    while let Some(c) = cause {
        root = Some(c);
        cause = c.source();
    }
    match root {
        Some(r) => format!("{kind}: {r}"),
        None => kind.to_string(),
    }
}

/// The live feed's alert message plus the tenant.
#[derive(serde::Serialize)]
struct WebhookBody<'a> {
    #[serde(flatten)]
    message: LiveMessage,
    tenant_id: &'a str,
}

async fn deliver(client: &reqwest::Client, url: &str, n: &AlertNotice, attempts: u32) {
    let body = match serde_json::to_string(&WebhookBody {
        message: LiveMessage::from(n),
        tenant_id: &n.tenant,
    }) {
        Ok(b) => b,
        Err(e) => {
            metrics::counter!("eddy_webhook_dead_letters_total").increment(1);
            tracing::error!(error = %e, tenant = %n.tenant, alert = %n.alert.id, "webhook body not encodable; dead-lettered");
            return;
        }
    };
    let mut backoff = FIRST_BACKOFF;
    for i in 1..=attempts {
        match attempt(client, url, n, &body).await {
            Outcome::Delivered => {
                metrics::counter!("eddy_webhook_deliveries_total", "outcome" => "delivered")
                    .increment(1);
                return;
            }
            Outcome::Retry(why) if i < attempts => {
                metrics::counter!("eddy_webhook_deliveries_total", "outcome" => "retried")
                    .increment(1);
                tracing::warn!(tenant = %n.tenant, alert = %n.alert.id, attempt = i, %why, "webhook delivery failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Outcome::Retry(why) | Outcome::Permanent(why) => {
                metrics::counter!("eddy_webhook_dead_letters_total").increment(1);
                tracing::error!(tenant = %n.tenant, alert = %n.alert.id, attempts = i, %why, "webhook notification dead-lettered");
                return;
            }
        }
    }
}
