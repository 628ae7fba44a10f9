//! Live feed (`GET /api/v1/stream`, server-sent events): receive, channels, filters, tenant
//! isolation, auth, and a slow consumer that is told and cut off instead of growing memory.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestServer;

/// Reads server-sent events from a streaming response.
pub(crate) struct SseReader {
    resp: reqwest::Response,
    buf: String,
}

impl SseReader {
    pub(crate) async fn open(s: &TestServer, key: &str, query: &str) -> Self {
        let resp = s
            .client
            .get(format!("{}/api/v1/stream?{query}", s.url))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        Self {
            resp,
            buf: String::new(),
        }
    }

    /// The next `(event name, data)`; `None` when the stream ends or nothing comes in 10 s.
    pub(crate) async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut name, mut data) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((name, serde_json::from_str(&data).unwrap()));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.resp.chunk())
                .await
                .ok()?
                .ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test]
async fn events_arrive_filtered_and_only_to_their_tenant() {
    let s = TestServer::spawn().await;
    let key = s.admin_key.clone();
    let (_, b_key, _) = s.tenant_with_key("bolt", &["read", "write"]).await;
    let mut all = SseReader::open(&s, &key, "channels=events").await;
    let mut d1 = SseReader::open(&s, &key, "device_id=d1&metric=temp").await;
    let mut b = SseReader::open(&s, &b_key, "channels=events").await;
    let batch = json!([
        {"event_id": "a0", "device_id": "d0", "metrics": {"temp": 1.0}},
        {"event_id": "a1", "device_id": "d1", "metrics": {"hum": 2.0}},
        {"event_id": "a2", "device_id": "d1", "metrics": {"temp": 3.0}},
    ]);
    let (st, _) = s.post("/api/v1/events", &key, &batch.to_string()).await;
    assert_eq!(st, StatusCode::OK);
    for id in ["a0", "a1", "a2"] {
        let (name, msg) = all.next().await.expect("an event");
        assert_eq!(
            (name.as_str(), msg["type"].as_str()),
            ("event", Some("event"))
        );
        assert_eq!(msg["data"]["event_id"], id, "in log order");
    }
    let (_, msg) = d1.next().await.unwrap();
    assert_eq!(msg["data"]["event_id"], "a2", "device and metric filters");
    assert_eq!(msg["data"]["metrics"]["temp"], 3.0);
    // Tenant B gets nothing of A's: its first message is its own marker.
    let (st, _) = s
        .post(
            "/api/v1/events",
            &b_key,
            &json!({"event_id": "b-marker", "type": "marker"}).to_string(),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, msg) = b.next().await.unwrap();
    assert_eq!(msg["data"]["event_id"], "b-marker");
}

#[tokio::test]
async fn the_stream_checks_keys_scopes_and_parameters() {
    let s = TestServer::spawn().await;
    let (_, write_only, _) = s.tenant_with_key("w", &["write"]).await;
    for (key, q, want) in [
        ("eddy_bogus", "", StatusCode::UNAUTHORIZED),
        (write_only.as_str(), "", StatusCode::FORBIDDEN),
        (
            s.admin_key.as_str(),
            "channels=weather",
            StatusCode::BAD_REQUEST,
        ),
        (
            s.admin_key.as_str(),
            "tenant=other",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = s
            .client
            .get(format!("{}/api/v1/stream?{q}", s.url))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "{q}");
    }
}

/// A subscriber that does not read falls behind; it is told (`slow_consumer`) and its stream
/// ends, while ingest goes on.
#[tokio::test]
async fn a_slow_consumer_is_told_and_cut_off() {
    let s = TestServer::spawn().await;
    let key = s.admin_key.clone();
    let mut slow = SseReader::open(&s, &key, "").await;
    // Far more than the feed's capacity plus what the socket buffers hold.
    s.flood(&key).await;
    s.wait_rollups().await;
    let mut received = 0;
    loop {
        match slow.next().await {
            Some((name, msg)) if name == "error" => {
                assert_eq!(msg["error"], "slow_consumer", "{msg}");
                break;
            }
            Some(_) => received += 1,
            None => panic!("the stream ended without saying why after {received} events"),
        }
    }
    assert!(received < 40_000, "it fell behind ({received} delivered)");
    assert!(slow.next().await.is_none(), "and the stream ends");
}

/// The rollups and alerts channels: a reading updates its 1-minute window; crossing a
/// threshold rule opens an alert, pushed in the BRIEF's shape.
#[tokio::test]
async fn rollups_and_alerts_channels_carry_their_messages() {
    let s = TestServer::spawn().await;
    let key = s.admin_key.clone();
    let (st, r) = s
        .post(
            "/api/v1/rules",
            &key,
            &json!({"id": "hot", "kind": "threshold", "op": ">", "value": 50, "severity": "critical"}).to_string(),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let mut sse = SseReader::open(&s, &key, "channels=rollups,alerts&device_id=d1").await;
    for (i, v) in [10.0, 70.0].into_iter().enumerate() {
        let (st, _) = s
            .post(
                "/api/v1/events",
                &key,
                &json!({"event_id": format!("r{i}"), "device_id": "d1", "metrics": {"temp": v}})
                    .to_string(),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
    }
    // Each channel is in order; across channels the order is not fixed.
    let (mut rollups, mut alerts) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let (name, m) = sse.next().await.unwrap();
        assert_eq!(name, m["type"].as_str().unwrap());
        if name == "rollup" {
            rollups.push(m)
        } else {
            alerts.push(m)
        }
    }
    assert_eq!(
        (rollups.len(), alerts.len()),
        (2, 1),
        "{rollups:?} {alerts:?}"
    );
    let m = &rollups[0];
    assert_eq!(m["data"]["device_id"], "d1");
    assert_eq!(m["data"]["resolution"], "1m");
    let (count, last) = (
        m["data"]["count"].as_u64().unwrap(),
        m["data"]["last"].clone(),
    );
    assert_eq!((count, last), (1, json!(10.0)));
    let m = &rollups[1];
    assert_eq!(m["data"]["count"], 2);
    assert_eq!(m["data"]["max"], 70.0);
    let m = &alerts[0];
    assert!(m["timestamp"].is_string());
    assert_eq!(m["data"]["device_id"], "d1");
    assert_eq!(m["data"]["severity"], "critical");
    assert_eq!(m["data"]["event"], "opened");
    assert_eq!(m["data"]["rule_id"], "hot");
    assert_eq!(m["data"]["message"], "temp on d1 = 70 is above 50");
}
