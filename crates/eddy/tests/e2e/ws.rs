//! WebSocket live feed (`/api/v1/ws`, `/ws`): the three ways to authenticate, `Origin`
//! checks, subscribe/unsubscribe/ping, filters, tenant isolation whatever the client sends,
//! a slow consumer cut off with a clear close, and many subscribers.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::common::TestServer;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn ws_url(s: &TestServer, path: &str) -> String {
    format!("{}{path}", s.url.replacen("http://", "ws://", 1))
}

/// Connects with extra handshake headers; the handshake's HTTP status on refusal.
async fn connect(s: &TestServer, path: &str, headers: &[(&str, &str)]) -> Result<Socket, u16> {
    let mut req = ws_url(s, path).into_client_request().unwrap();
    for (k, v) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
            .expect("header name");
        req.headers_mut()
            .insert(name, v.parse().expect("header value"));
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("connect: {e}"),
    }
}

/// The next JSON message (skipping pings); `None` on close, end or 10 s of silence.
async fn next(ws: &mut Socket) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

/// Reads until a message of `kind` arrives.
async fn next_of(ws: &mut Socket, kind: &str) -> Value {
    loop {
        let m = next(ws)
            .await
            .unwrap_or_else(|| panic!("no `{kind}` message"));
        if m["type"] == kind {
            return m;
        }
    }
}

async fn send(ws: &mut Socket, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// Asserts that the next message is event `id`: a sentinel sent after something that must not
/// arrive (it would have arrived first, the feed being in log order).
async fn next_is_event(ws: &mut Socket, id: &str, why: &str) {
    let m = next(ws).await.unwrap();
    assert_eq!(
        (m["type"].as_str(), m["data"]["event_id"].as_str()),
        (Some("event"), Some(id)),
        "{why}: {m}"
    );
}

async fn post_reading(s: &TestServer, key: &str, id: &str, device: &str, v: f64) {
    let (st, b) = s
        .post(
            "/api/v1/events",
            key,
            &json!({"event_id": id, "device_id": device, "metrics": {"temp": v}}).to_string(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn every_way_to_authenticate_works_and_bad_keys_are_refused() {
    let s = TestServer::spawn().await;
    let key = s.admin_key.clone();
    let (_, write_only, _) = s.tenant_with_key("w", &["write"]).await;

    // 1. Header, on the compatibility path; no subscribe message: every channel.
    let mut a = connect(&s, "/ws", &[("x-api-key", &key)]).await.unwrap();
    let ready = next(&mut a).await.unwrap();
    assert_eq!(ready["type"], "ready");
    assert_eq!(
        ready["subscription"]["channels"],
        json!(["events", "rollups", "alerts"])
    );
    // 2. Subprotocol (browsers): the server picks eddy.v1 and never echoes the key.
    let mut req = ws_url(&s, "/api/v1/ws").into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        format!("eddy.v1, eddy.key.{key}").parse().unwrap(),
    );
    let (mut b, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        "eddy.v1"
    );
    assert_eq!(next(&mut b).await.unwrap()["type"], "ready");
    // 3. First message.
    let mut c = connect(&s, "/api/v1/ws", &[]).await.unwrap();
    send(&mut c, json!({"type": "auth", "key": key})).await;
    assert_eq!(next(&mut c).await.unwrap()["type"], "ready");

    post_reading(&s, &key, "w1", "d1", 21.5).await;
    for ws in [&mut a, &mut b, &mut c] {
        // Each channel is in order; across channels the order is not fixed.
        let (mut event, mut rollup) = (None, None);
        while event.is_none() || rollup.is_none() {
            let m = next(ws).await.expect("an event and a rollup");
            match m["type"].as_str() {
                Some("event") => event = Some(m),
                Some("rollup") => rollup = Some(m),
                _ => {}
            }
        }
        let (m, r) = (event.unwrap(), rollup.unwrap());
        assert_eq!(m["data"]["event_id"], "w1");
        assert_eq!(m["data"]["metrics"]["temp"], 21.5);
        assert_eq!(
            (r["data"]["metric"].as_str(), r["data"]["count"].as_u64()),
            (Some("temp"), Some(1))
        );
    }

    // Refusals: bad or write-only key in the handshake, bad first message.
    assert_eq!(
        connect(&s, "/api/v1/ws", &[("x-api-key", "eddy_bogus")])
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        connect(&s, "/api/v1/ws", &[("x-api-key", &write_only)])
            .await
            .err(),
        Some(403)
    );
    for first in [
        json!({"type": "auth", "key": "eddy_bogus"}),
        json!({"type": "auth", "key": write_only}),
        json!({"type": "subscribe"}),
    ] {
        let mut d = connect(&s, "/api/v1/ws", &[]).await.unwrap();
        send(&mut d, first.clone()).await;
        let err = next(&mut d).await.unwrap();
        assert_eq!(err["type"], "error", "{first}: {err}");
        match tokio::time::timeout(Duration::from_secs(5), d.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => assert_eq!(f.code, CloseCode::Policy),
            other => panic!("{first}: expected a policy close, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn origins_are_checked_against_the_allowlist() {
    let s =
        TestServer::spawn_with(&["--ws-allowed-origins", "https://dash.example.com"], &[]).await;
    let key = s.admin_key.clone();
    let host = s.url.trim_start_matches("http://").to_string();
    let same = format!("http://{host}");
    for (origin, ok) in [
        ("https://evil.example.com", false),
        ("https://dash.example.com", true),
        (same.as_str(), true),
    ] {
        let r = connect(&s, "/api/v1/ws", &[("x-api-key", &key), ("origin", origin)]).await;
        assert_eq!(r.is_ok(), ok, "{origin}: {:?}", r.err());
        if !ok {
            assert_eq!(r.err(), Some(403));
        }
    }
}

#[tokio::test]
async fn subscriptions_filter_and_tenants_stay_isolated() {
    let s = TestServer::spawn().await;
    let key = s.admin_key.clone();
    let (_, b_key, _) = s.tenant_with_key("bolt", &["read", "write"]).await;
    let mut ws = connect(&s, "/api/v1/ws", &[("x-api-key", &key)])
        .await
        .unwrap();
    next_of(&mut ws, "ready").await;
    send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "pong");
    send(
        &mut ws,
        json!({"type": "subscribe", "channels": ["events"], "filters": {"device_id": "d1"}}),
    )
    .await;
    let sub = next(&mut ws).await.unwrap();
    assert_eq!(sub["type"], "subscribed");
    assert_eq!(sub["subscription"]["channels"], json!(["events"]));
    assert_eq!(sub["subscription"]["filters"]["device_id"], "d1");
    // Malformed messages are answered and change nothing.
    for bad in [
        json!({"type": "subscribe", "channels": ["weather"]}),
        json!({"type": "dance"}),
        json!({"type": "subscribe", "filters": {"tenant": "x"}}),
    ] {
        send(&mut ws, bad.clone()).await;
        let e = next(&mut ws).await.unwrap();
        assert_eq!(
            (e["type"].as_str(), e["error"].as_str()),
            (Some("error"), Some("bad_message")),
            "{bad}"
        );
    }
    ws.send(Message::Text("not json".into())).await.unwrap();
    assert_eq!(next(&mut ws).await.unwrap()["error"], "bad_message");

    // Tenant B subscribes to everything, naming A's device: it gets only its own data.
    let mut b = connect(&s, "/api/v1/ws", &[("x-api-key", &b_key)])
        .await
        .unwrap();
    next_of(&mut b, "ready").await;
    send(
        &mut b,
        json!({"type": "subscribe", "filters": {"device_id": "d1"}}),
    )
    .await;
    next_of(&mut b, "subscribed").await;

    post_reading(&s, &key, "x0", "d0", 1.0).await;
    post_reading(&s, &key, "x1", "d1", 2.0).await;
    let m = next(&mut ws).await.unwrap();
    assert_eq!(
        (m["type"].as_str(), m["data"]["event_id"].as_str()),
        (Some("event"), Some("x1"))
    );
    post_reading(&s, &key, "x1b", "d1", 2.5).await;
    next_is_event(&mut ws, "x1b", "no rollups, no other device").await;
    post_reading(&s, &b_key, "b1", "d1", 3.0).await;
    // B gets its own event and rollups (value 3.0) — never one of A's (1.0, 2.0, 2.5), which
    // would have come first.
    loop {
        let m = next(&mut b).await.unwrap();
        match m["type"].as_str() {
            Some("event") => {
                assert_eq!(m["data"]["event_id"], "b1", "tenant B saw A's event: {m}");
                break;
            }
            Some("rollup") => assert!(
                m["data"]["min"] == 3.0 && m["data"]["max"] == 3.0,
                "tenant B saw A's data in a rollup: {m}"
            ),
            _ => panic!("unexpected message for tenant B: {m}"),
        }
    }

    // Unsubscribing from everything stops the flow; the connection stays.
    send(&mut ws, json!({"type": "unsubscribe"})).await;
    assert_eq!(
        next(&mut ws).await.unwrap()["subscription"]["channels"],
        json!([])
    );
    post_reading(&s, &key, "x2", "d1", 2.0).await;
    // Once the processor has fanned x2 out (to nobody), subscribing again must answer first,
    // then the next event.
    s.wait_rollups().await;
    send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(
        next(&mut ws).await.unwrap()["type"],
        "pong",
        "x2 arrived while unsubscribed"
    );
    send(
        &mut ws,
        json!({"type": "subscribe", "channels": ["events"], "filters": {"device_id": "d1"}}),
    )
    .await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "subscribed");
    post_reading(&s, &key, "x3", "d1", 2.0).await;
    next_is_event(&mut ws, "x3", "only events after subscribing again").await;
}

#[tokio::test]
async fn alerts_arrive_in_the_documented_shape() {
    let s = TestServer::spawn().await;
    let key = s.admin_key.clone();
    let (st, _) = s
        .post(
            "/api/v1/rules",
            &key,
            r#"{"id": "hot", "kind": "threshold", "op": ">", "value": 50, "severity": "critical"}"#,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let mut ws = connect(&s, "/ws", &[("x-api-key", &key)]).await.unwrap();
    next_of(&mut ws, "ready").await;
    post_reading(&s, &key, "hot1", "sensor-001", 75.0).await;
    let a = next_of(&mut ws, "alert").await;
    assert!(a["timestamp"].is_string(), "{a}");
    assert_eq!(a["data"]["device_id"], "sensor-001");
    assert_eq!(a["data"]["severity"], "critical");
    assert_eq!(a["data"]["message"], "temp on sensor-001 = 75 is above 50");
    assert_eq!(a["data"]["event"], "opened");
    let id = a["data"]["id"].as_str().unwrap().to_string();
    let (st, _) = s
        .post(&format!("/api/v1/alerts/{id}/acknowledge"), &key, "")
        .await;
    assert_eq!(st, StatusCode::OK);
    let a = next_of(&mut ws, "alert").await;
    assert_eq!(
        (a["data"]["event"].as_str(), a["data"]["status"].as_str()),
        (Some("acknowledged"), Some("acknowledged"))
    );
}

/// A subscriber that does not read is cut off with close code 1013 after being told why;
/// ingest is not slowed and memory does not grow.
#[tokio::test]
async fn a_slow_subscriber_is_closed_with_a_reason() {
    let s = TestServer::spawn().await;
    let key = s.admin_key.clone();
    let mut slow = connect(&s, "/api/v1/ws", &[("x-api-key", &key)])
        .await
        .unwrap();
    next_of(&mut slow, "ready").await;
    s.flood(&key).await;
    s.wait_rollups().await;
    let mut received = 0u64;
    let mut told = false;
    loop {
        match tokio::time::timeout(Duration::from_secs(15), slow.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let m: Value = serde_json::from_str(&t).unwrap();
                if m["type"] == "error" {
                    assert_eq!(m["error"], "slow_consumer");
                    told = true;
                } else {
                    received += 1;
                }
            }
            Ok(Some(Ok(Message::Close(Some(f))))) => {
                assert_eq!(u16::from(f.code), 1013, "{f:?}");
                assert_eq!(f.reason, "slow_consumer");
                break;
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("expected a close after {received} messages, got {other:?}"),
        }
    }
    assert!(told, "the reason came before the close");
    assert!(received < 80_000, "it fell behind ({received} delivered)");
}

#[tokio::test]
async fn many_subscribers_all_receive_every_event() {
    let s = TestServer::spawn().await;
    let key = s.admin_key.clone();
    let mut sockets = Vec::new();
    for _ in 0..25 {
        let mut ws = connect(&s, "/api/v1/ws", &[("x-api-key", &key)])
            .await
            .unwrap();
        next_of(&mut ws, "ready").await;
        send(
            &mut ws,
            json!({"type": "subscribe", "channels": ["events"]}),
        )
        .await;
        next_of(&mut ws, "subscribed").await;
        sockets.push(ws);
    }
    for i in 0..10 {
        post_reading(&s, &key, &format!("m{i}"), "d", i as f64).await;
    }
    for ws in &mut sockets {
        for i in 0..10 {
            let m = next(ws).await.unwrap();
            assert_eq!(m["data"]["event_id"], format!("m{i}"));
        }
    }
}
