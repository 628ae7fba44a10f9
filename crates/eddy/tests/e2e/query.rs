//! Reading events back through the store: results compared with a naive computation over the
//! same generated events, across Parquet files, buffers and a SIGKILL; tenant isolation with
//! crafted filters; output formats; parameter errors.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestServer;

const MIN_MS: i64 = 60_000;

#[derive(Clone, Debug)]
struct Gen {
    id: String,
    time_ms: i64,
    r#type: &'static str,
    device: String,
    user: Option<String>,
    page: i64,
}

fn generate(prefix: &str, n: i64, now_ms: i64) -> Vec<Gen> {
    (0..n)
        .map(|i| Gen {
            id: format!("{prefix}-{i}"),
            // Out of order, spread over the last ~5 hours (backfill within retention).
            time_ms: now_ms - 300 * MIN_MS + ((i * 7919) % 290) * MIN_MS + i,
            r#type: ["reading", "click", "page_view"][(i % 3) as usize],
            device: format!("dev-{}", i % 4),
            user: (i % 2 == 0).then(|| format!("user-{}", i % 6)),
            page: i % 5,
        })
        .collect()
}

fn body(events: &[Gen]) -> String {
    json!(events
        .iter()
        .map(|g| json!({
            "event_id": g.id, "ts": g.time_ms, "type": g.r#type, "device_id": g.device, "user_id": g.user,
            "metrics": {"v": g.page as f64 * 1.5}, "properties": {"page": format!("/p/{}", g.page), "n": g.page}
        }))
        .collect::<Vec<_>>())
    .to_string()
}

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect()
}

fn naive(events: &[Gen], keep: impl Fn(&Gen) -> bool, newest_first: bool) -> Vec<String> {
    // Ties in time are broken by log offset, which follows the order of ingestion here.
    let mut v: Vec<(i64, usize, &Gen)> = events
        .iter()
        .enumerate()
        .filter(|(_, g)| keep(g))
        .map(|(i, g)| (g.time_ms, i, g))
        .collect();
    v.sort_by_key(|(t, i, _)| (*t, *i));
    if newest_first {
        v.reverse();
    }
    v.into_iter().map(|(_, _, g)| g.id.clone()).collect()
}

type Case = (String, Box<dyn Fn(&Gen) -> bool>, bool);

async fn check(s: &TestServer, key: &str, cases: &[Case], events: &[Gen]) {
    for (q, keep, desc) in cases {
        let got = ids(&s.list_all(key, q).await);
        assert_eq!(got, naive(events, keep, *desc), "{q}");
    }
}

fn rfc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[tokio::test]
async fn event_listing_matches_naive_across_files_buffers_and_a_crash() {
    let mut s = TestServer::spawn_with(&["--store-persist-size", "32KiB"], &[]).await;
    let now = crate::common::now_ms();
    let (tb, kb, _) = s.tenant_with_key("beta", &["read_write"]).await;
    let a_events = generate("a", 900, now);
    let b_events = generate("b", 300, now);
    for chunk in a_events.chunks(150) {
        assert_eq!(
            s.post("/api/v1/events", &s.admin_key, &body(chunk)).await.0,
            StatusCode::OK
        );
    }
    for chunk in b_events.chunks(150) {
        assert_eq!(
            s.post("/api/v1/events", &kb, &body(chunk)).await.0,
            StatusCode::OK
        );
    }
    s.wait_visible().await;
    // Persisting runs beside ingest: wait for files, so the answers below read files and
    // buffers together (a busy machine may not have persisted yet).
    for _ in 0..500 {
        let (_, stats) = s.get("/stats", &s.admin_key).await;
        if stats["store"]["files"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let a = s.admin_key.clone();
    let from = now - 200 * MIN_MS;
    let to = now - 100 * MIN_MS;
    let cases: Vec<Case> = vec![
        ("/api/v1/events?limit=77".into(), Box::new(|_| true), false),
        (
            "/api/v1/events?order=desc&limit=50".into(),
            Box::new(|_| true),
            true,
        ),
        (
            format!("/api/v1/events?from={}&to={}&limit=40", rfc(from), rfc(to)),
            Box::new(move |g| g.time_ms >= from && g.time_ms < to),
            false,
        ),
        (
            format!("/api/v1/events?from={from}&type=click"),
            Box::new(move |g| g.time_ms >= from && g.r#type == "click"),
            false,
        ),
        (
            "/api/v1/events?device_id=dev-2&user_id=user-4".into(),
            Box::new(|g| g.device == "dev-2" && g.user.as_deref() == Some("user-4")),
            false,
        ),
        (
            "/api/v1/events?property.page=/p/3&property.n=3".into(),
            Box::new(|g| g.page == 3),
            false,
        ),
        (
            "/api/v1/events?from=-1m".into(),
            Box::new(move |g| g.time_ms >= now - MIN_MS),
            false,
        ),
        (
            "/api/v1/events/recent?type=reading&limit=33".into(),
            Box::new(|g| g.r#type == "reading"),
            true,
        ),
    ];
    check(&s, &a, &cases, &a_events).await;
    let (_, stats) = s.get("/stats", &a).await;
    assert!(
        stats["store"]["files"].as_u64().unwrap() > 0,
        "persisted files are part of the answer: {stats}"
    );

    // SIGKILL, restart: everything acknowledged is queryable exactly once.
    s.restart();
    s.wait_visible().await;
    check(&s, &a, &cases, &a_events).await;
    let all_b = ids(&s.list_all(&kb, "/api/v1/events?limit=1000").await);
    assert_eq!(all_b, naive(&b_events, |_| true, false));
    let _ = tb;
}

#[tokio::test]
async fn a_tenant_never_sees_another_tenants_events_whatever_it_asks() {
    let s = TestServer::spawn().await;
    let (_, ka, _) = s.tenant_with_key("alpha", &["read_write"]).await;
    let (_, kb, _) = s.tenant_with_key("beta", &["read_write"]).await;
    let now = crate::common::now_ms();
    s.post("/api/v1/events", &ka, &body(&generate("secret", 50, now)))
        .await;
    s.post("/api/data", &ka, r#"{"sensorId":"alpha-sensor","value":1}"#)
        .await;
    s.wait_visible().await;
    let alpha = s.list_all(&ka, "/api/v1/events").await;
    assert_eq!(alpha.len(), 51);
    let cursor_of_alpha = {
        let (_, v) = s.get("/api/v1/events?limit=1", &ka).await;
        v["next_cursor"].as_str().unwrap().to_string()
    };
    for q in [
        "/api/v1/events".to_string(),
        "/api/v1/events?device_id=dev-1".into(),
        "/api/v1/events?user_id=user-0&type=reading".into(),
        "/api/v1/events?property.page=/p/1".into(),
        format!("/api/v1/events?cursor={cursor_of_alpha}"),
        "/api/v1/events/recent".into(),
    ] {
        let (st, v) = s.get(&q, &kb).await;
        assert_eq!(st, StatusCode::OK, "{q}");
        assert_eq!(v["data"], json!([]), "beta sees alpha's data via {q}");
    }
    let (_, v) = s.get("/api/data/recent?sensor_id=alpha-sensor", &kb).await;
    assert_eq!(v, json!([]));
    for q in [
        "/api/v1/events?tenant=alpha",
        "/api/v1/events?tenant_id=alpha",
    ] {
        assert_eq!(s.get(q, &kb).await.0, StatusCode::BAD_REQUEST, "{q}");
    }
    // A write-only key cannot read at all.
    let (wo, _) = s
        .key_for(
            s.get("/api/v1/whoami", &ka).await.1["tenant_id"]
                .as_str()
                .unwrap(),
            &["write"],
        )
        .await;
    assert_eq!(s.get("/api/v1/events", &wo).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        s.request("GET", "/api/v1/events", None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn formats_compat_shapes_and_parameter_errors() {
    let s = TestServer::spawn().await;
    let k = s.admin_key.clone();
    s.post(
        "/api/data",
        &k,
        r#"[{"sensorId":"s1","value":21.5},{"sensor_id":"s2","value":19}]"#,
    )
    .await;
    s.post(
        "/telemetry",
        &k,
        r#"{"device_id":"s1","metrics":{"temperature":22.5,"humidity":40}}"#,
    )
    .await;
    s.post("/ingest", &k, r#"{"event_id":"c1","user_id":"u1","event_type":"click","page_url":"https://example.com","properties":{"n":3,"ok":true}}"#).await;
    s.wait_visible().await;

    let (_, recent) = s.get("/api/data/recent?limit=10&sensor_id=s1", &k).await;
    let recent = recent.as_array().unwrap();
    assert_eq!(recent.len(), 2, "{recent:?}");
    assert_eq!(recent[0]["metrics"]["temperature"], 22.5, "newest first");
    assert_eq!(
        recent[0]["value"],
        Value::Null,
        "no guessing among several metrics"
    );
    assert_eq!(
        (recent[1]["sensorId"].as_str(), recent[1]["value"].as_f64()),
        (Some("s1"), Some(21.5))
    );
    let (_, v) = s.get("/api/v1/events?type=click", &k).await;
    assert_eq!(
        v["data"][0]["properties"],
        json!({"n": 3, "ok": true}),
        "property types round-trip"
    );

    let csv = s
        .client
        .get(format!("{}/api/v1/events", s.url))
        .header("x-api-key", &k)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = csv.text().await.unwrap();
    assert!(text.starts_with("time,event_id,type,"), "{text}");
    assert_eq!(text.lines().count(), 5);
    let nd = s
        .client
        .get(format!("{}/api/v1/events?format=ndjson&limit=2", s.url))
        .header("x-api-key", &k)
        .send()
        .await
        .unwrap();
    assert!(nd.headers().contains_key("x-next-cursor"));
    let text = nd.text().await.unwrap();
    assert_eq!(
        text.lines()
            .filter(|l| serde_json::from_str::<Value>(l).is_ok())
            .count(),
        2
    );

    for q in [
        "/api/v1/events?from=yesterday",
        "/api/v1/events?limit=0",
        "/api/v1/events?limit=many",
        "/api/v1/events?order=sideways",
        "/api/v1/events?cursor=abc",
        "/api/v1/events?format=xml",
        "/api/v1/events?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
        "/api/v1/events?devise_id=s1",
    ] {
        let (st, v) = s.get(q, &k).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains('`'),
            "names the parameter: {v}"
        );
    }
}

/// A server with small persist thresholds holding `n` generated events of the admin tenant.
async fn seeded_server(prefix: &str, n: i64) -> (TestServer, String, i64, Vec<Gen>) {
    let s = TestServer::spawn_with(&["--store-persist-size", "16KiB"], &[]).await;
    let k = s.admin_key.clone();
    let now = crate::common::now_ms();
    let events = generate(prefix, n, now);
    for chunk in events.chunks(100) {
        assert_eq!(
            s.post("/api/v1/events", &k, &body(chunk)).await.0,
            StatusCode::OK
        );
    }
    (s, k, now, events)
}

fn ms_of(rfc: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

#[tokio::test]
async fn devices_and_device_metrics_match_naive() {
    let (s, k, _, events) = seeded_server("d", 400).await;
    // A device with two metrics, and an event without a device.
    s.post(
        "/telemetry",
        &k,
        r#"{"device_id":"dev-9","metrics":{"temperature":20.5,"humidity":40}}"#,
    )
    .await;
    s.post("/api/v1/events", &k, r#"{"type":"signup","user_id":"u1"}"#)
        .await;
    s.wait_visible().await;

    // Devices, paged two at a time.
    let mut got = Vec::new();
    let mut cursor = String::new();
    loop {
        let q = if cursor.is_empty() {
            "/api/v1/devices?limit=2".to_string()
        } else {
            format!("/api/v1/devices?limit=2&cursor={cursor}")
        };
        let (st, v) = s.get(&q, &k).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        got.extend(v["data"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(
        got.iter()
            .map(|d| d["device_id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["dev-0", "dev-1", "dev-2", "dev-3", "dev-9"]
    );
    for d in &got[..4] {
        let id = d["device_id"].as_str().unwrap();
        let mine: Vec<&Gen> = events.iter().filter(|g| g.device == id).collect();
        assert_eq!(
            d["event_count"].as_u64().unwrap() as usize,
            mine.len(),
            "{id}"
        );
        assert_eq!(
            ms_of(&d["first_seen"]),
            mine.iter().map(|g| g.time_ms).min().unwrap(),
            "{id}"
        );
        assert_eq!(
            ms_of(&d["last_seen"]),
            mine.iter().map(|g| g.time_ms).max().unwrap(),
            "{id}"
        );
        assert_eq!(d["metrics"], json!(["v"]));
    }
    assert_eq!(got[4]["metrics"], json!(["humidity", "temperature"]));

    // Newest 3 samples of dev-1's metric `v`, oldest first, and the latest.
    let (st, v) = s.get("/api/v1/devices/dev-1/metrics?points=3", &k).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let mut mine: Vec<&Gen> = events.iter().filter(|g| g.device == "dev-1").collect();
    mine.sort_by_key(|g| g.time_ms);
    let want: Vec<(i64, f64)> = mine[mine.len() - 3..]
        .iter()
        .map(|g| (g.time_ms, g.page as f64 * 1.5))
        .collect();
    let points: Vec<(i64, f64)> = v["metrics"]["v"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (ms_of(&p["time"]), p["value"].as_f64().unwrap()))
        .collect();
    assert_eq!(points, want);
    assert_eq!(ms_of(&v["metrics"]["v"]["latest"]["time"]), want[2].0);
    let (_, v) = s.get("/api/v1/devices/dev-9/metrics", &k).await;
    assert_eq!(v["metrics"]["temperature"]["latest"]["value"], 20.5);

    // Errors and isolation.
    assert_eq!(
        s.get("/api/v1/devices/nope/metrics", &k).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get("/api/v1/devices/dev-1/metrics?points=0", &k).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        s.get("/api/v1/devices?tenant=x", &k).await.0,
        StatusCode::BAD_REQUEST
    );
    let (_, other, _) = s.tenant_with_key("other", &["read"]).await;
    let (st, v) = s.get("/api/v1/devices", &other).await;
    assert_eq!((st, v["data"].clone()), (StatusCode::OK, json!([])));
    assert_eq!(
        s.get("/api/v1/devices/dev-1/metrics", &other).await.0,
        StatusCode::NOT_FOUND
    );
}

/// Naive aggregates of one bucket's values (in time order, ties by value).
fn naive_aggs(mut vals: Vec<(i64, f64)>) -> Value {
    vals.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let n = vals.len();
    let sum: f64 = vals.iter().map(|v| v.1).sum();
    let mut sorted: Vec<f64> = vals.iter().map(|v| v.1).collect();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let idx = p * (n - 1) as f64;
        let (lo, hi) = (idx.floor() as usize, idx.ceil() as usize);
        sorted[lo] + (sorted[hi] - sorted[lo]) * (idx - lo as f64)
    };
    json!({
        "count": n, "sum": sum, "min": sorted[0], "max": sorted[n - 1], "avg": sum / n as f64,
        "first": vals[0].1, "last": vals[n - 1].1, "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99),
    })
}

/// Equal up to float rounding; percentiles additionally within DataFusion's interpolation
/// bound: its weight is truncated to 1e-6, so the error is at most 1e-6 × (max − min).
fn close(agg: &str, a: &Value, b: &Value, range: f64) -> bool {
    let slack = if agg.starts_with('p') {
        1e-6 * range
    } else {
        0.0
    };
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0) + slack,
        _ => a == b,
    }
}

#[tokio::test]
async fn timeseries_matches_naive_buckets() {
    let (s, k, now, events) = seeded_server("t", 600).await;
    s.wait_visible().await;
    let aggs = [
        "count", "sum", "min", "max", "avg", "first", "last", "p50", "p90", "p99",
    ];
    let from = now - 240 * MIN_MS;
    let to = now - 30 * MIN_MS;
    for (bucket_ms, bucket, device) in [
        (3_600_000i64, "1h", None),
        (900_000, "15m", Some("dev-2")),
        (60_000, "1m", Some("dev-1")),
    ] {
        let mut want: std::collections::BTreeMap<i64, Vec<(i64, f64)>> = Default::default();
        for g in events
            .iter()
            .filter(|g| g.time_ms >= from && g.time_ms < to && device.is_none_or(|d| g.device == d))
        {
            want.entry(g.time_ms.div_euclid(bucket_ms) * bucket_ms)
                .or_default()
                .push((g.time_ms, g.page as f64 * 1.5));
        }
        let mut q = format!(
            "/api/v1/timeseries?metric=v&from={from}&to={to}&bucket={bucket}&agg={}",
            aggs.join(",")
        );
        if let Some(d) = device {
            q.push_str(&format!("&device_id={d}"));
        }
        let (st, v) = s.get(&q, &k).await;
        assert_eq!(st, StatusCode::OK, "{q}: {v}");
        let rows = v["data"].as_array().unwrap();
        assert_eq!(rows.len(), want.len(), "{q}: one row per non-empty bucket");
        for (row, (start, vals)) in rows.iter().zip(want) {
            assert_eq!(ms_of(&row["time"]), start, "{q}");
            let expect = naive_aggs(vals);
            for a in aggs {
                assert!(
                    close(
                        a,
                        &row[a],
                        &expect[a],
                        expect["max"].as_f64().unwrap() - expect["min"].as_f64().unwrap()
                    ),
                    "{q} bucket {start} {a}: got {} want {}",
                    row[a],
                    expect[a]
                );
            }
        }
    }
    // group_by=device_id: one series per device, each equal to the filtered query.
    let base = format!("/api/v1/timeseries?metric=v&from={from}&to={to}&bucket=30m&agg=sum,count");
    let (_, grouped) = s.get(&format!("{base}&group_by=device_id"), &k).await;
    let series = grouped["series"].as_array().unwrap();
    assert_eq!(series.len(), 4);
    for sr in series {
        let (_, single) = s
            .get(
                &format!("{base}&device_id={}", sr["device_id"].as_str().unwrap()),
                &k,
            )
            .await;
        assert_eq!(sr["data"], single["data"]);
    }
    // Empty range, unknown metric, other tenant: no rows.
    let (_, v) = s
        .get(
            &format!(
                "/api/v1/timeseries?metric=v&from={}&to={}",
                now - 600 * MIN_MS,
                now - 500 * MIN_MS
            ),
            &k,
        )
        .await;
    assert_eq!(v["data"], json!([]));
    assert_eq!(
        s.get("/api/v1/timeseries?metric=nope", &k).await.1["data"],
        json!([])
    );
    let (_, other, _) = s.tenant_with_key("other", &["read"]).await;
    assert_eq!(
        s.get("/api/v1/timeseries?metric=v&from=-6h", &other)
            .await
            .1["data"],
        json!([])
    );
    // Parameter errors name the parameter.
    for q in [
        "/api/v1/timeseries",
        "/api/v1/timeseries?metric=v&bucket=7d",
        "/api/v1/timeseries?metric=v&bucket=1.5s",
        "/api/v1/timeseries?metric=v&agg=mode",
        "/api/v1/timeseries?metric=v&group_by=type",
        "/api/v1/timeseries?metric=v&from=-1h&to=-2h",
        "/api/v1/timeseries?metric=v&tenant=x",
        "/api/v1/timeseries?metric=v&from=-3650d&bucket=1s",
    ] {
        let (st, v) = s.get(q, &k).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {v}");
    }
}

#[tokio::test]
async fn query_limits_fail_clearly_and_do_not_disturb_ingest() {
    // (The timeout is tested in eddy-store, with a query that must wait.)
    // A memory pool too small for sorting a few thousand rows.
    let s = TestServer::spawn_with(&["--query-memory", "1KiB"], &[]).await;
    for chunk in generate("m", 3000, crate::common::now_ms()).chunks(1000) {
        s.post("/api/v1/events", &s.admin_key, &body(chunk)).await;
    }
    s.wait_visible().await;
    let (st, v) = s.get("/api/v1/events?limit=1000", &s.admin_key).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("more memory"),
        "{v}"
    );
    assert_eq!(
        s.post(
            "/api/v1/events",
            &s.admin_key,
            r#"{"type":"still-ingesting"}"#
        )
        .await
        .0,
        StatusCode::OK
    );

    // A row cap.
    let s = TestServer::spawn_with(&["--max-result-rows", "5"], &[]).await;
    assert_eq!(
        s.get("/api/v1/events?limit=6", &s.admin_key).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        s.get("/api/v1/events?limit=5", &s.admin_key).await.0,
        StatusCode::OK
    );
    assert_eq!(
        s.get(
            "/api/v1/timeseries?metric=v&bucket=1m&from=-1h",
            &s.admin_key
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
}
