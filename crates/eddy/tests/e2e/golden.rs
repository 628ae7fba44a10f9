//! Snapshot (golden) tests of response shapes: the keys and value types of every read route's
//! answer (and of an error), compared with `tests/golden/shapes.json`, so the API does not
//! change by accident. After an intended change: `UPDATE_GOLDEN=1 cargo test --release -p eddy
//! --test e2e golden` rewrites the file, and the diff shows what clients will see.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Map, Value, json};

use crate::common::TestServer;
use crate::contract::Contract;

/// The shape of a value: objects keep their keys (sorted) with the shapes of their values;
/// arrays become one element whose shape merges all elements' (so optional keys show);
/// scalars become their type name.
fn shape(v: &Value) -> Value {
    match v {
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
        Value::Array(items) => {
            let merged = items.iter().map(shape).reduce(merge);
            Value::Array(merged.into_iter().collect())
        }
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
    }
}

/// Merges two shapes: objects by key, differing scalars as `"a|b"`.
fn merge(a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Object(mut x), Value::Object(y)) => {
            for (k, v) in y {
                let m = match x.remove(&k) {
                    Some(old) => merge(old, v),
                    None => v,
                };
                x.insert(k, m);
            }
            Value::Object(x)
        }
        (Value::Array(x), Value::Array(y)) => {
            Value::Array(x.into_iter().chain(y).reduce(merge).into_iter().collect())
        }
        (a, b) if a == b => a,
        (Value::String(a), Value::String(b)) => {
            let mut names: Vec<&str> = a.split('|').chain(b.split('|')).collect();
            names.sort_unstable();
            names.dedup();
            json!(names.join("|"))
        }
        (a, b) => json!(format!("{a}|{b}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_shapes_match_the_golden_file() {
    let s = TestServer::spawn_quick_windows().await;
    let k = s.admin_key.clone();
    let now = chrono::Utc::now().timestamp_millis();
    let t = |mins: i64| now - mins * 60_000;
    let events = json!([
        {"event_id": "g1", "type": "page_view", "user_id": "u1", "page_url": "/pricing", "source": "web", "time": t(50), "properties": {"plan": "pro"}},
        {"event_id": "g2", "type": "signup", "user_id": "u1", "page_url": "/signup", "source": "web", "time": t(45)},
        {"event_id": "g3", "type": "click", "user_id": "u2", "page_url": "/home", "source": "ios", "time": t(40)},
        {"event_id": "g4", "type": "reading", "device_id": "d1", "time": t(30), "metrics": {"temp": 21.5}},
        {"event_id": "g5", "type": "reading", "device_id": "d1", "time": t(3), "metrics": {"temp": 22.0}},
        {"event_id": "g6", "type": "error", "user_id": "u2", "time": t(2)},
    ]);
    let (st, v) = s.post("/api/v1/events", &k, &events.to_string()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.wait_visible().await;
    s.wait_rollups().await;
    let gets = [
        "/api/v1/events?limit=2",
        "/api/v1/events/recent?limit=2",
        "/api/data/recent?limit=2",
        "/api/v1/devices",
        "/api/v1/devices/d1/metrics",
        "/api/v1/timeseries?metric=temp&bucket=1m&from=-1h",
        "/api/v1/rollups?metric=temp&from=-1h",
        "/api/v1/rollups?dimension=type&from=-1h",
        "/api/v1/analytics/aggregates?from=-1h",
        "/api/v1/analytics/summary?from=-1h",
        "/api/v1/overview?from=-1h",
        "/api/v1/query/tables",
        "/analytics/summary?from=-1h",
        "/v1/analytics/summary?from=-1h",
        "/api/v1/analytics/top?dimension=page_url&from=-1h",
        "/analytics/events?user_id=u2&from=-1h",
        "/api/v1/analytics/timeseries?group_by=type&bucket=1h&limit=1&from=-1h",
        "/api/v1/analytics/users/u1?from=-1h",
        "/api/v1/metrics/export?format=json",
        "/api/v1/rules",
        "/api/v1/alerts",
        "/api/v1/tenants",
        "/api/v1/whoami",
        "/stats",
        "/lag",
        "/health",
        "/ready",
        "/api/v1/analytics/top",
    ];
    let (_, doc) = s.get("/api/v1/openapi.json", &k).await;
    let contract = Contract::new(doc);
    let mut broken = Vec::new();
    let mut got: BTreeMap<String, Value> = BTreeMap::new();
    for path in gets {
        let (st, v) = s.get(path, &k).await;
        if let Err(e) = contract.check("GET", path, st.as_u16(), &v) {
            broken.push(e);
        }
        got.insert(
            format!("GET {path}"),
            json!({"status": st.as_u16(), "body": shape(&v)}),
        );
    }
    let posts = [
        (
            "/api/v1/query",
            json!({"sql": "SELECT type, count(*) AS n FROM events GROUP BY type"}),
        ),
        (
            "/api/v1/analytics/funnel",
            json!({"steps": [{"type": "page_view", "where": {"page_url": "/pricing"}}, "signup"], "window": "1h", "from": "-1h", "breakdown": "property:plan"}),
        ),
        (
            "/api/v1/analytics/retention",
            json!({"cohort": "page_view", "return": "signup", "periods": 2}),
        ),
        (
            "/api/v1/events",
            json!([{"type": "x", "time": "yesterday"}]),
        ),
    ];
    for (path, body) in posts {
        let (st, v) = s.post(path, &k, &body.to_string()).await;
        if let Err(e) = contract.check("POST", path, st.as_u16(), &v) {
            broken.push(e);
        }
        got.insert(
            format!("POST {path} {body}"),
            json!({"status": st.as_u16(), "body": shape(&v)}),
        );
    }
    // The check itself can fail: a wrong type, an undocumented status.
    assert!(
        contract
            .check("GET", "/api/v1/devices", 200, &json!({"data": 5}))
            .is_err()
    );
    assert!(
        contract
            .check(
                "GET",
                "/api/v1/devices",
                200,
                &json!({"data": [{"device_id": 1}], "next_cursor": null})
            )
            .is_err()
    );
    assert!(contract.check("GET", "/health", 418, &json!({})).is_err());
    assert!(
        broken.is_empty(),
        "answers the OpenAPI document does not describe:\n{}",
        broken.join("\n")
    );
    let got = Value::Object(got.into_iter().collect::<Map<String, Value>>());
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/shapes.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
        return;
    }
    let want: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    for (route, w) in want.as_object().unwrap() {
        assert_eq!(
            got.get(route),
            Some(w),
            "{route}: the response shape changed (UPDATE_GOLDEN=1 to accept)"
        );
    }
    assert_eq!(
        got, want,
        "routes were added or removed (UPDATE_GOLDEN=1 to accept)"
    );
}

#[test]
fn shapes_merge_optional_keys_and_mixed_types() {
    let v = json!([{"a": 1, "b": "x"}, {"a": null, "c": [true]}]);
    assert_eq!(
        shape(&v),
        json!([{"a": "null|number", "b": "string", "c": ["bool"]}])
    );
}
