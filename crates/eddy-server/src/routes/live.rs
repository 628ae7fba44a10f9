//! Live feeds of the caller's tenant (`read` scope), on three channels — `events` (every
//! acknowledged event, log order), `rollups` (the current 1-minute window of each metric an
//! event touched) and `alerts` (opened, acknowledged, resolved) — with optional `device_id`,
//! `type` (events only) and `metric` filters. Every message is JSON with a `type` field:
//! `{"type": "event"|"rollup"|"alert", "timestamp": …, "data": {…}}`.
//!
//! - `GET /api/v1/stream`: server-sent events (`event:` is the message type); query parameters
//!   `channels=events,rollups,alerts` (default all), `device_id`, `type`, `metric`.
//! - `GET /api/v1/ws` and `GET /ws`: WebSocket. See [`ws`] for authentication, `Origin`,
//!   messages and heartbeats.
//!
//! A subscriber more than the feed's capacity behind is told (`{"type": "error", "error":
//! "slow_consumer"}`) and disconnected (WebSocket close code 1013), never buffered without
//! bound: reconnect to resume.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use eddy_service::live::{Channel, Filter, LiveMessage, Next};
use futures_util::stream;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Result;
use crate::auth::{Caller, Reader, presented_secret};
use crate::openapi::{ErrorBody, Errors};
use crate::routes::params::unknown;
use crate::state::AppState;
use eddy_service::Error as Domain;
use eddy_service::auth::{Principal, Scope};

/// The WebSocket subprotocol Eddy speaks; a key may ride along as `eddy.key.<KEY>`.
pub(crate) const WS_PROTOCOL: &str = "eddy.v1";
const KEY_PROTOCOL_PREFIX: &str = "eddy.key.";
/// How long a connection without a key in its handshake gets to send an `auth` message.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Server ping interval; a peer silent for [`IDLE_LIMIT`] is disconnected.
const PING_INTERVAL: Duration = Duration::from_secs(20);
const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// A send the peer does not take within this long ends the connection.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

fn parse_channels(list: impl IntoIterator<Item = impl AsRef<str>>) -> Result<BTreeSet<Channel>> {
    Ok(eddy_service::live::parse_channels(list)?)
}

/// A live message as JSON text; `None` (logged, and the message skipped) if it cannot be
/// encoded — never a stand-in body.
fn text(m: &LiveMessage) -> Option<String> {
    serde_json::to_string(m)
        .map_err(
            |e| tracing::error!(error = %e, kind = m.kind(), "live message not encodable; skipped"),
        )
        .ok()
}

/// The error message a live subscriber gets before a slow-consumer disconnect.
fn slow_consumer(n: u64) -> String {
    metrics::counter!("eddy_live_slow_consumers_total").increment(1);
    json!({
        "type": "error",
        "error": "slow_consumer",
        "message": format!("this subscriber fell {n} messages behind; reconnect to resume"),
    })
    .to_string()
}

/// `GET /api/v1/stream`.
#[utoipa::path(get, path = "/api/v1/stream", tag = "live", operation_id = "sse", summary = "Server-sent events of the tenant: events, rollups, alerts", params(("channels" = Option<String>, Query, description = "Comma list: events, rollups, alerts (default all)"), ("device_id" = Option<String>, Query, description = "Only this device"), ("type" = Option<String>, Query, description = "Only this event type"), ("metric" = Option<String>, Query, description = "Only this metric")), responses((status = 200, description = "Server-sent events: `event:` names the channel, `data:` is the JSON message", content((String = "text/event-stream"))), Errors))]
pub(crate) async fn sse(
    State(state): State<AppState>,
    Reader(caller): Reader,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let p = &caller;
    let mut filter = Filter::default();
    for (k, v) in &pairs {
        match k.as_str() {
            "device_id" | "sensor_id" => filter.device_id = Some(v.clone()),
            "type" => filter.r#type = Some(v.clone()),
            "metric" => filter.metric = Some(v.clone()),
            "channels" => filter.channels = parse_channels(v.split(','))?,
            other => return Err(unknown(other, "channels, device_id, type, metric")),
        }
    }
    let sub = state.services.live.subscribe(p, filter)?;
    let messages = stream::unfold(Some(sub), |sub| async move {
        let mut sub = sub?;
        loop {
            match sub.next().await {
                Next::Message(m) => {
                    let Some(data) = text(&m) else { continue };
                    let msg = SseEvent::default().event(m.kind()).data(data);
                    return Some((Ok::<_, Infallible>(msg), Some(sub)));
                }
                Next::Lagged(n) => {
                    let msg = SseEvent::default().event("error").data(slow_consumer(n));
                    return Some((Ok(msg), None));
                }
                Next::Closed => return None,
            }
        }
    });
    Ok(Sse::new(messages)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// Whether a browser at `origin` may open a WebSocket: listed in `ws_allowed_origins` (`*`
/// allows any), or the same origin as the request's `Host`. Requests without `Origin` come
/// from non-browser clients, which `Origin` checks cannot constrain anyway: allowed.
fn origin_allowed(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let allowed = &state.config.ws_allowed_origins;
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    host.is_some_and(|h| h.eq_ignore_ascii_case(origin_host))
}

/// The key offered as subprotocol `eddy.key.<KEY>`, and whether `eddy.v1` was offered.
fn protocol_key(headers: &HeaderMap) -> (Option<&str>, bool) {
    let mut key = None;
    let mut speaks = false;
    for v in headers.get_all(header::SEC_WEBSOCKET_PROTOCOL) {
        for p in v.to_str().unwrap_or("").split(',').map(str::trim) {
            if let Some(k) = p.strip_prefix(KEY_PROTOCOL_PREFIX) {
                key = Some(k);
            } else if p == WS_PROTOCOL {
                speaks = true;
            }
        }
    }
    (key, speaks)
}

/// `GET /api/v1/ws` and `GET /ws`: the WebSocket live feed.
///
/// **Authentication** with a `read` key, whichever way the client can:
/// - `X-API-Key` / `Authorization: Bearer` on the upgrade request — native clients;
/// - subprotocols `eddy.v1, eddy.key.<KEY>` — browsers, whose WebSocket API cannot set
///   headers; the server answers `eddy.v1`, never echoing the key;
/// - a first message `{"type": "auth", "key": "<KEY>"}` within 10 s — clients that can set
///   neither (and keeps the key out of proxy logs that record headers).
///
/// A bad key in the handshake is refused with 401 before upgrading; a bad `auth` message
/// closes with 1008. `Origin`, when present, must be allowed (see [`origin_allowed`]), else
/// 403.
///
/// **Messages.** The server says `{"type": "ready", "subscription": {…}}` once authenticated.
/// Without a subscribe message the connection gets every channel of its tenant.
/// `{"type": "subscribe", "channels": [...], "filters": {"device_id", "type", "metric"}}`
/// replaces the subscription (channels default to all); `{"type": "unsubscribe", "channels":
/// [...]}` drops channels (all when omitted); `{"type": "ping"}` gets `{"type": "pong"}`.
/// Each is confirmed with `{"type": "subscribed", "subscription": {…}}`; a malformed one gets
/// `{"type": "error", "error": "bad_message", …}` and changes nothing.
///
/// **Heartbeat.** The server pings every 20 s and disconnects a peer silent for 60 s.
#[utoipa::path(get, path = "/api/v1/ws", tag = "live", operation_id = "ws", summary = "WebSocket feed (subscribe messages choose channels)", responses((status = 101, description = "Switching protocols"), (status = 400, description = "Not a WebSocket handshake, or a bad parameter", body = ErrorBody), Errors))]
pub(crate) async fn ws(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: std::result::Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response> {
    // A plain GET (no handshake) gets Eddy's JSON error, not axum's plain-text one.
    let upgrade = upgrade.map_err(|e| {
        tracing::debug!(error = %e, "not a WebSocket handshake");
        Domain::invalid(
            "not_a_websocket",
            "this route speaks WebSocket only: connect with a WebSocket client (a GET with \
             `Connection: Upgrade`, `Upgrade: websocket` and the handshake headers)",
        )
    })?;
    if !origin_allowed(&state, &headers) {
        metrics::counter!("eddy_live_origin_rejected_total").increment(1);
        return Err(Domain::PermissionDenied(
            "this Origin may not open a WebSocket here (see --ws-allowed-origins)".into(),
        )
        .into());
    }
    let (proto_key, speaks) = protocol_key(&headers);
    let secret = presented_secret(&headers)
        .filter(|s| !s.is_empty())
        .or(proto_key);
    let principal = match secret {
        Some(s) => {
            let caller = Caller::authenticate(&state, Some(s))?;
            Some(caller.require(Scope::Read)?.clone())
        }
        None => None,
    };
    let upgrade = if speaks {
        upgrade.protocols([WS_PROTOCOL])
    } else {
        upgrade
    };
    Ok(upgrade
        .max_message_size(64 << 10)
        .on_upgrade(move |socket| async move {
            metrics::gauge!("eddy_live_ws_connections").increment(1.0);
            session(state, socket, principal).await;
            metrics::gauge!("eddy_live_ws_connections").decrement(1.0);
        }))
}

/// `GET /ws`: [`ws`] at the path sensor clients use.
#[utoipa::path(get, path = "/ws", tag = "live", operation_id = "ws_root", summary = "WebSocket feed at the path sensor clients use", responses((status = 101, description = "Switching protocols"), (status = 400, description = "Not a WebSocket handshake, or a bad parameter", body = ErrorBody), Errors))]
pub(crate) async fn ws_root(
    state: State<AppState>,
    headers: HeaderMap,
    upgrade: std::result::Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response> {
    ws(state, headers, upgrade).await
}

/// A client message.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    Auth {
        key: String,
    },
    Subscribe {
        #[serde(default)]
        channels: Option<Vec<String>>,
        #[serde(default)]
        filters: Option<Filters>,
    },
    Unsubscribe {
        #[serde(default)]
        channels: Option<Vec<String>>,
    },
    Ping,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Filters {
    device_id: Option<String>,
    r#type: Option<String>,
    metric: Option<String>,
}

fn describe(f: &Filter) -> Value {
    json!({
        "channels": f.channels.iter().map(|c| c.name()).collect::<Vec<_>>(),
        "filters": {"device_id": f.device_id, "type": f.r#type, "metric": f.metric},
    })
}

async fn send(socket: &mut WebSocket, v: Value) -> bool {
    let msg = Message::Text(Utf8Bytes::from(v.to_string()));
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(msg)).await,
        Ok(Ok(()))
    )
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from(reason.to_string()),
    };
    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
}

fn bad_message(message: impl Into<String>) -> Value {
    json!({"type": "error", "error": "bad_message", "message": message.into()})
}

/// Waits for `{"type": "auth", "key": …}`.
async fn first_message_auth(state: &AppState, socket: &mut WebSocket) -> Option<Principal> {
    let deadline = tokio::time::Instant::now() + AUTH_TIMEOUT;
    loop {
        let msg = match tokio::time::timeout_at(deadline, socket.recv()).await {
            Ok(Some(Ok(m))) => m,
            Ok(_) => return None,
            Err(_) => {
                close(socket, 1008, "no key within 10 s").await;
                return None;
            }
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Ping(_) | Message::Pong(_) => continue,
            _ => {
                close(socket, 1008, "expected an auth message").await;
                return None;
            }
        };
        let key = match serde_json::from_str::<ClientMessage>(&text) {
            Ok(ClientMessage::Auth { key }) => key,
            _ => {
                let _ = send(
                    socket,
                    bad_message(
                        "authenticate first: {\"type\": \"auth\", \"key\": \"<read key>\"}",
                    ),
                )
                .await;
                close(socket, 1008, "unauthenticated").await;
                return None;
            }
        };
        let auth =
            Caller::authenticate(state, Some(&key)).and_then(|c| c.require(Scope::Read).cloned());
        return match auth {
            Ok(p) => Some(p),
            Err(e) => {
                let _ = send(
                    socket,
                    json!({"type": "error", "error": e.code(), "message": e.to_string()}),
                )
                .await;
                close(socket, 1008, e.code()).await;
                None
            }
        };
    }
}

/// Applies a client message to the subscription; the reply to send.
fn handle(text: &str, filter: &mut Filter) -> Value {
    let msg = match serde_json::from_str::<ClientMessage>(text) {
        Ok(m) => m,
        Err(e) => return bad_message(format!("not a message this server understands: {e}")),
    };
    match msg {
        ClientMessage::Ping => json!({"type": "pong"}),
        ClientMessage::Auth { .. } => bad_message("already authenticated"),
        ClientMessage::Subscribe { channels, filters } => {
            let channels = match channels {
                Some(list) => match parse_channels(&list) {
                    Ok(c) => c,
                    Err(e) => return bad_message(e.to_string()),
                },
                None => Channel::ALL.into_iter().collect(),
            };
            let f = filters.unwrap_or_default();
            *filter = Filter {
                channels,
                device_id: f.device_id,
                r#type: f.r#type,
                metric: f.metric,
            };
            json!({"type": "subscribed", "subscription": describe(filter)})
        }
        ClientMessage::Unsubscribe { channels } => {
            match channels {
                Some(list) => match parse_channels(&list) {
                    Ok(c) => filter.channels.retain(|x| !c.contains(x)),
                    Err(e) => return bad_message(e.to_string()),
                },
                None => filter.channels.clear(),
            }
            json!({"type": "subscribed", "subscription": describe(filter)})
        }
    }
}

async fn session(state: AppState, mut socket: WebSocket, principal: Option<Principal>) {
    let principal = match principal {
        Some(p) => p,
        None => match first_message_auth(&state, &mut socket).await {
            Some(p) => p,
            None => return,
        },
    };
    let mut filter = Filter::default();
    let Ok(mut sub) = state.services.live.subscribe(&principal, filter.clone()) else {
        close(&mut socket, 1008, "permission_denied").await;
        return;
    };
    if !send(
        &mut socket,
        json!({"type": "ready", "tenant_id": principal.tenant_id, "subscription": describe(&filter)}),
    )
    .await
    {
        return;
    }
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            m = sub.next() => match m {
                Next::Message(m) => {
                    let Some(data) = text(&m) else { continue };
                    let msg = Message::Text(Utf8Bytes::from(data));
                    if !matches!(tokio::time::timeout(SEND_TIMEOUT, socket.send(msg)).await, Ok(Ok(()))) {
                        return;
                    }
                }
                Next::Lagged(n) => {
                    let msg = slow_consumer(n);
                    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(msg.into()))).await;
                    close(&mut socket, 1013, "slow_consumer").await;
                    return;
                }
                Next::Closed => {
                    close(&mut socket, 1001, "tenant feed ended").await;
                    return;
                }
            },
            incoming = socket.recv() => {
                last_heard = tokio::time::Instant::now();
                match incoming {
                    Some(Ok(Message::Text(t))) => {
                        let reply = handle(&t, &mut filter);
                        if *sub.filter() != filter
                            && state.services.live.refilter(&principal, &mut sub, filter.clone()).is_err()
                        {
                            return;
                        }
                        if !send(&mut socket, reply).await {
                            return;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        if !send(&mut socket, bad_message("messages are JSON text")).await {
                            return;
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > IDLE_LIMIT {
                    close(&mut socket, 1001, "no pong").await;
                    return;
                }
                if tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Ping(Default::default()))).await.is_err() {
                    return;
                }
            }
        }
    }
}
