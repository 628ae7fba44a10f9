//! Rollups through `GET /api/v1/rollups`: compared with a naive computation over the events
//! sent, tenant-isolated, validated, and exact across SIGKILLs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestServer;

const MIN_MS: i64 = 60_000;

/// Up to 64 samples a window answers exactly (interpolated, like the raw path's
/// `percentile_cont`); beyond, DDSketch: within 1% of the value at rank ⌊q·(n−1)⌋.
pub fn assert_quantile(est: f64, sorted: &[f64], q: f64) {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (sorted[pos.floor() as usize], sorted[pos.ceil() as usize]);
    let interpolated = lo + (pos - pos.floor()) * (hi - lo);
    if sorted.len() <= 64 {
        assert!(
            (est - interpolated).abs() <= 1e-9 * interpolated.abs().max(1.0),
            "p{q}: {est} vs {interpolated}"
        );
    } else {
        assert!(
            (est - lo).abs() <= 0.01 * lo.abs() + 1e-9,
            "p{q}: {est} vs {lo}"
        );
    }
}

/// Whole minutes, a few minutes back, so that every window is still open.
fn base_ms() -> i64 {
    (chrono::Utc::now().timestamp_millis() / MIN_MS - 3) * MIN_MS
}

fn window(ms: i64, width: i64) -> String {
    let start = ms.div_euclid(width) * width;
    chrono::DateTime::from_timestamp_millis(start)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test]
async fn rollups_match_a_naive_computation_and_stay_in_their_tenant() {
    let s = TestServer::spawn().await;
    let (_, a_key, _) = s.tenant_with_key("acme", &["read", "write"]).await;
    let (_, b_key, _) = s.tenant_with_key("bolt", &["read", "write"]).await;
    let base = base_ms();
    let mut rng = rand::rng();
    let mut events = Vec::new();
    // (device, minute) → values; (type, minute) → (count, users)
    // (time ms, arrival index, value)
    type Samples = Vec<(i64, usize, f64)>;
    let mut samples: BTreeMap<(String, String), Samples> = BTreeMap::new();
    let mut counts: BTreeMap<(String, String), (u64, BTreeSet<String>)> = BTreeMap::new();
    for i in 0..600usize {
        // Out of order within three minutes.
        let t = base + rng.random_range(0..3 * MIN_MS);
        let dev = format!("d{}", i % 3);
        let v = (rng.random_range(-1000..1000) as f64) / 10.0;
        let ty = ["reading", "click"][i % 2];
        let user = format!("u{}", i % 7);
        events.push(json!({"time": t, "type": ty, "device_id": dev, "user_id": user, "metrics": {"temp": v}}));
        samples
            .entry((dev, window(t, MIN_MS)))
            .or_default()
            .push((t, i, v));
        let c = counts
            .entry((ty.to_string(), window(t, MIN_MS)))
            .or_default();
        c.0 += 1;
        c.1.insert(user);
    }
    let (st, body) = s
        .post("/api/v1/events", &a_key, &json!(events).to_string())
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    s.wait_rollups().await;

    let from = window(base - MIN_MS, MIN_MS);
    for dev in ["d0", "d1", "d2"] {
        let (st, v) = s
            .get(
                &format!(
                    "/api/v1/rollups?metric=temp&device_id={dev}&resolution=1m&from={from}&to=now"
                ),
                &a_key,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let rows = v["data"].as_array().unwrap();
        let expected: Vec<_> = samples.iter().filter(|((d, _), _)| d == dev).collect();
        assert_eq!(rows.len(), expected.len(), "{v}");
        for (row, ((_, w), vals)) in rows.iter().zip(expected) {
            assert_eq!(row["time"].as_str().unwrap().replace(".000", ""), *w);
            assert_eq!(row["device_id"], dev);
            assert_eq!(row["count"], vals.len());
            let sum: f64 = vals.iter().map(|x| x.2).sum();
            assert!((row["sum"].as_f64().unwrap() - sum).abs() < 1e-9);
            assert!((row["avg"].as_f64().unwrap() - sum / vals.len() as f64).abs() < 1e-9);
            let min = vals.iter().map(|x| x.2).fold(f64::INFINITY, f64::min);
            let max = vals.iter().map(|x| x.2).fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(
                (row["min"].as_f64().unwrap(), row["max"].as_f64().unwrap()),
                (min, max)
            );
            // first/last by event time, ties by value (as the raw path answers).
            let cmp = |a: &&(i64, usize, f64), b: &&(i64, usize, f64)| {
                a.0.cmp(&b.0).then(a.2.total_cmp(&b.2))
            };
            let first = vals.iter().min_by(cmp).unwrap().2;
            let last = vals.iter().max_by(cmp).unwrap().2;
            assert_eq!(row["first"].as_f64().unwrap(), first);
            assert_eq!(row["last"].as_f64().unwrap(), last);
            let mut sorted: Vec<f64> = vals.iter().map(|x| x.2).collect();
            sorted.sort_by(f64::total_cmp);
            for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
                assert_quantile(row[name].as_f64().unwrap(), &sorted, q);
            }
            assert_eq!(row["final"], false, "windows within the lateness stay open");
        }
    }
    let (st, v) = s
        .get(
            &format!("/api/v1/rollups?dimension=type&resolution=1m&from={from}"),
            &a_key,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let got: BTreeMap<(String, String), (u64, u64)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                (
                    r["value"].as_str().unwrap().to_string(),
                    r["time"].as_str().unwrap().replace(".000", ""),
                ),
                (
                    r["count"].as_u64().unwrap(),
                    r["distinct_users"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    let want: BTreeMap<(String, String), (u64, u64)> = counts
        .iter()
        .map(|(k, (c, u))| (k.clone(), (*c, u.len() as u64)))
        .collect();
    assert_eq!(got, want, "small user sets are counted exactly");
    // Hour and day windows hold all 600.
    for res in ["1h", "1d"] {
        let (_, v) = s
            .get(
                &format!("/api/v1/rollups?dimension=type&resolution={res}&from=-2d"),
                &a_key,
            )
            .await;
        let total: u64 = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["count"].as_u64().unwrap())
            .sum();
        assert_eq!(total, 600, "{res}: {v}");
    }

    // The compatibility aggregates route: hourly rows of every metric, the same numbers.
    let (st, v) = s
        .get("/api/v1/analytics/aggregates?device_id=d1", &a_key)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let rows = v["data"].as_array().unwrap();
    assert_eq!(v["resolution"], "1h");
    let n: u64 = rows.iter().map(|r| r["count"].as_u64().unwrap()).sum();
    let expected: usize = samples
        .iter()
        .filter(|((d, _), _)| d == "d1")
        .map(|(_, v)| v.len())
        .sum();
    assert_eq!(n as usize, expected, "{v}");
    assert!(
        rows.iter()
            .all(|r| r["metric"] == "temp" && r["device_id"] == "d1")
    );
    let (_, all) = s.get("/api/v1/analytics/aggregates", &a_key).await;
    let n: u64 = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["count"].as_u64().unwrap())
        .sum();
    assert_eq!(n, 600, "{all}");

    // Tenant B sees none of it, whatever it asks for.
    for q in [
        "metric=temp".to_string(),
        "metric=temp&device_id=d0".into(),
        "dimension=type".into(),
        "dimension=type&value=click&resolution=1d&from=-2d".into(),
        "resolution=1d".into(),
    ] {
        let (st, v) = s.get(&format!("/api/v1/rollups?{q}"), &b_key).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(v["data"], json!([]), "{q}: {v}");
    }
}

#[tokio::test]
async fn rollup_parameters_are_validated_and_read_scope_required() {
    let s = TestServer::spawn().await;
    let (_, write_only, _) = s.tenant_with_key("w", &["write"]).await;
    let key = s.admin_key.clone();
    for (q, needle) in [
        ("metric=a&dimension=type", "not both"),
        ("dimension=colour", "`dimension` `colour`"),
        ("metric=a&resolution=5m", "`resolution` `5m`"),
        ("metric=a&bogus=1", "bogus"),
        ("metric=a&from=now&to=-1h", "`from` must be before `to`"),
        ("metric=a&value=x", "`value` goes with `dimension`"),
        (
            "dimension=type&device_id=x",
            "`device_id` goes with `metric`",
        ),
        ("metric=a&from=yesterday", "`from`"),
    ] {
        let (st, v) = s.get(&format!("/api/v1/rollups?{q}"), &key).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {v}");
        assert!(v["message"].as_str().unwrap().contains(needle), "{q}: {v}");
    }
    let (st, _) = s.get("/api/v1/rollups?metric=a", &write_only).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s.get("/api/v1/rollups?metric=a", "eddy_bogus").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

/// Adds an acknowledged batch to the per-device (count, sum) of metric `v`.
fn count_acked(acked: &mut BTreeMap<String, (u64, f64)>, batch: &[Value]) {
    for e in batch {
        let c = acked
            .entry(e["device_id"].as_str().unwrap().to_string())
            .or_default();
        c.0 += 1;
        c.1 += e["metrics"]["v"].as_f64().unwrap();
    }
}

/// SIGKILL while events stream in (and checkpoints are written every 50 ms): at random
/// moments in even rounds, and in odd rounds exactly while a checkpoint is being written (a
/// watcher thread kills the server the moment `checkpoint.zst.tmp` exists). Clients retry
/// unacknowledged batches with the same event ids. After a final restart the rollups count
/// every acknowledged event exactly once: day-window counts and sums per device equal the
/// naive computation over the acknowledged events and the raw store's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_stay_exact_across_sigkills() {
    let mut s = TestServer::spawn_with(&["--stream-checkpoint-interval", "50ms"], &[]).await;
    let key = s.admin_key.clone();
    let base = base_ms();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // (device) → (count, sum) over acknowledged events.
    let mut acked: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    let mut pending: Vec<Vec<Value>> = Vec::new();
    let mut n = 0u64;
    let tmp = s.data_dir().join("stream").join("checkpoint.zst.tmp");
    let mut checkpoint_kills = 0;
    for round in 0..12 {
        let kill_after = Duration::from_millis(rand::rng().random_range(50..250));
        let started = std::time::Instant::now();
        // Odd rounds: a watcher polls for a checkpoint in progress and kills right then.
        let killed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = (round % 2 == 1).then(|| {
            let (tmp, killed, pid) = (tmp.clone(), killed.clone(), s.pid().unwrap());
            std::thread::spawn(move || {
                let t = std::time::Instant::now();
                while t.elapsed() < Duration::from_secs(5) {
                    if tmp.exists() {
                        TestServer::sigkill(pid);
                        killed.store(true, std::sync::atomic::Ordering::SeqCst);
                        return;
                    }
                    std::hint::spin_loop();
                }
            })
        });
        let done = |started: std::time::Instant| match &watcher {
            Some(_) => {
                killed.load(std::sync::atomic::Ordering::SeqCst)
                    || started.elapsed() > Duration::from_secs(5)
            }
            None => started.elapsed() >= kill_after,
        };
        while !done(started) {
            let batch = pending.pop().unwrap_or_else(|| {
                (0..20)
                    .map(|_| {
                        n += 1;
                        json!({"event_id": format!("e{n}"), "time": base + (n % 120) as i64 * 1000,
                               "device_id": format!("d{}", n % 4), "metrics": {"v": (n % 13) as f64}})
                    })
                    .collect()
            });
            let r = client
                .post(format!("{}/api/v1/events", s.url))
                .header("x-api-key", &key)
                .json(&batch)
                .send()
                .await;
            match r {
                Ok(r) if r.status() == StatusCode::OK => count_acked(&mut acked, &batch),
                _ => pending.push(batch),
            }
        }
        if let Some(w) = watcher {
            w.join().unwrap();
            if killed.load(std::sync::atomic::Ordering::SeqCst) {
                checkpoint_kills += 1;
            }
        }
        s.kill9();
        s.start();
        eprintln!("round {round}: {} batches pending", pending.len());
    }
    assert!(
        checkpoint_kills >= 4,
        "kills landed inside checkpoint writes ({checkpoint_kills} of 6)"
    );
    // Retry what is still unknown (dedup makes a retry of a stored batch a no-op).
    while let Some(batch) = pending.pop() {
        let (st, body) = s
            .post("/api/v1/events", &key, &json!(batch).to_string())
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        count_acked(&mut acked, &batch);
    }
    s.wait_rollups().await;
    s.wait_visible().await;
    for (dev, (count, sum)) in &acked {
        let (st, v) = s
            .get(
                &format!("/api/v1/rollups?metric=v&device_id={dev}&resolution=1d&from=-2d"),
                &key,
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        let rows = v["data"].as_array().unwrap();
        let got_count: u64 = rows.iter().map(|r| r["count"].as_u64().unwrap()).sum();
        let got_sum: f64 = rows.iter().map(|r| r["sum"].as_f64().unwrap()).sum();
        assert_eq!(
            got_count, *count,
            "{dev}: every acknowledged event exactly once"
        );
        assert_eq!(got_sum, *sum, "{dev}");
        // And the raw events the store kept say the same.
        let (_, raw) = timeseries(
            &s,
            &key,
            &format!("metric=v&device_id={dev}&bucket=1d&agg=count,sum&from=-2d&source=raw"),
        )
        .await;
        let rows = raw["data"].as_array().unwrap();
        let raw_count: u64 = rows.iter().map(|r| r["count"].as_u64().unwrap()).sum();
        let raw_sum: f64 = rows.iter().map(|r| r["sum"].as_f64().unwrap()).sum();
        assert_eq!((raw_count, raw_sum), (*count, *sum), "{dev}: raw store");
    }
    assert!(
        acked.values().map(|c| c.0).sum::<u64>() > 100,
        "the test must ingest"
    );
}

async fn timeseries(s: &TestServer, key: &str, q: &str) -> (String, Value) {
    let r = s
        .client
        .get(format!("{}/api/v1/timeseries?{q}", s.url))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{q}");
    let source = r.headers()["x-eddy-source"].to_str().unwrap().to_string();
    (source, r.json().await.unwrap())
}

/// Checks a fast-path answer against the raw one; `samples(bucket start ms)` gives the sorted
/// values the test sent into that bucket.
fn assert_same_rows(fast: &Value, raw: &Value, what: &str, samples: impl Fn(i64) -> Vec<f64>) {
    let (f, r) = (fast.as_array().unwrap(), raw.as_array().unwrap());
    assert_eq!(f.len(), r.len(), "{what}: {fast} vs {raw}");
    for (a, b) in f.iter().zip(r) {
        assert_eq!(a["time"], b["time"], "{what}");
        assert_eq!(a["count"], b["count"], "{what}");
        for k in ["min", "max", "first", "last"] {
            assert_eq!(a[k].as_f64(), b[k].as_f64(), "{what} {k}: {a} vs {b}");
        }
        for k in ["sum", "avg"] {
            let (x, y) = (a[k].as_f64().unwrap(), b[k].as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-9 * y.abs().max(1.0),
                "{what} {k}: {x} vs {y}"
            );
        }
        let start = chrono::DateTime::parse_from_rfc3339(a["time"].as_str().unwrap())
            .unwrap()
            .timestamp_millis();
        let sorted = samples(start);
        assert_eq!(sorted.len() as u64, b["count"].as_u64().unwrap(), "{what}");
        for (k, q) in [("p50", 0.5), ("p95", 0.95)] {
            // Raw: percentile_cont (interpolation weight truncated to 1e-6 by DataFusion).
            let pos = q * (sorted.len() - 1) as f64;
            let (lo, hi) = (sorted[pos.floor() as usize], sorted[pos.ceil() as usize]);
            let exact = lo + (pos - pos.floor()) * (hi - lo);
            let y = b[k].as_f64().unwrap();
            assert!(
                (y - exact).abs() <= 1e-6 * (hi - lo).abs() + 1e-9,
                "{what} raw {k}"
            );
            // Rollups: exact up to 64 samples, else the sketch's bound.
            assert_quantile(a[k].as_f64().unwrap(), &sorted, q);
        }
    }
}

/// `/api/v1/timeseries` answers from rollups when they give the raw path's answer (1m/1h/1d
/// buckets, complete windows), and falls back to raw data otherwise; both answers agree.
#[tokio::test]
async fn timeseries_fast_path_equals_the_raw_path_and_falls_back_when_it_would_not() {
    let s = TestServer::spawn().await;
    let key = s.admin_key.clone();
    let base = base_ms();
    let mut rng = rand::rng();
    let mut events = Vec::new();
    let mut sent: Vec<(i64, &str, f64)> = Vec::new();
    for i in 0..900usize {
        // Device d0 is busy (more than 64 samples a minute: sketch); d1, d2 are sparse.
        let dev = if i % 3 == 0 || i < 300 {
            "d0"
        } else if i % 2 == 0 {
            "d1"
        } else {
            "d2"
        };
        let t = base + rng.random_range(0..3 * MIN_MS);
        let v = (rng.random_range(0..5000) as f64) / 10.0 - 100.0;
        events.push(json!({"time": t, "device_id": dev, "metrics": {"temp": v}}));
        sent.push((t, dev, v));
    }
    let (st, body) = s
        .post("/api/v1/events", &key, &json!(events).to_string())
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    s.wait_visible().await;
    s.wait_rollups().await;

    let aggs = "agg=count,sum,avg,min,max,first,last,p50,p95";
    let from = base - MIN_MS;
    for extra in ["", "&device_id=d0", "&device_id=d1", "&group_by=device_id"] {
        for bucket in ["1m", "1h", "1d"] {
            let q = format!("metric=temp&bucket={bucket}&from={from}&to=now&{aggs}{extra}");
            let (src, fast) = timeseries(&s, &key, &q).await;
            let (raw_src, raw) = timeseries(&s, &key, &format!("{q}&source=raw")).await;
            assert_eq!((src.as_str(), raw_src.as_str()), ("rollups", "raw"), "{q}");
            let width = match bucket {
                "1m" => MIN_MS,
                "1h" => 60 * MIN_MS,
                _ => 1440 * MIN_MS,
            };
            let samples = |device: Option<String>| {
                let sent = &sent;
                move |start: i64| {
                    let mut v: Vec<f64> = sent
                        .iter()
                        .filter(|(t, d, _)| {
                            *t >= start
                                && *t < start + width
                                && device.as_deref().is_none_or(|x| x == *d)
                        })
                        .map(|x| x.2)
                        .collect();
                    v.sort_by(f64::total_cmp);
                    v
                }
            };
            if extra.contains("group_by") {
                let (f, r) = (
                    fast["series"].as_array().unwrap(),
                    raw["series"].as_array().unwrap(),
                );
                assert_eq!(f.len(), r.len());
                for (a, b) in f.iter().zip(r) {
                    assert_eq!(a["device_id"], b["device_id"]);
                    let dev = a["device_id"].as_str().unwrap().to_string();
                    assert_same_rows(&a["data"], &b["data"], &q, samples(Some(dev)));
                }
            } else {
                let dev = extra.strip_prefix("&device_id=").map(str::to_string);
                assert_same_rows(&fast["data"], &raw["data"], &q, samples(dev));
            }
        }
    }
    // A range starting inside a window that has earlier samples: raw.
    let (src, _) = timeseries(
        &s,
        &key,
        &format!("metric=temp&bucket=1m&from={}&to=now", base + MIN_MS / 2),
    )
    .await;
    assert_eq!(src, "raw");
    // A bucket that is not a rollup resolution: raw.
    let (src, _) = timeseries(
        &s,
        &key,
        &format!("metric=temp&bucket=10s&from={from}&to=now"),
    )
    .await;
    assert_eq!(src, "raw");
    // A late event (behind the watermark) leaves its minute incomplete: that range goes raw,
    // and raw data has the event.
    let late = base - 30 * MIN_MS;
    let (st, _) = s
        .post(
            "/api/v1/events",
            &key,
            &json!({"time": late, "device_id": "d1", "metrics": {"temp": 1.0}}).to_string(),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    s.wait_visible().await;
    s.wait_rollups().await;
    let q = format!(
        "metric=temp&bucket=1m&from={}&to=now&agg=count",
        late - late.rem_euclid(MIN_MS)
    );
    let (src, v) = timeseries(&s, &key, &q).await;
    assert_eq!(src, "raw", "{v}");
    assert_eq!(v["data"][0]["count"], 1);
    let (src, _) = timeseries(
        &s,
        &key,
        &format!("metric=temp&bucket=1m&from={from}&to=now"),
    )
    .await;
    assert_eq!(
        src, "rollups",
        "ranges without the late window stay on rollups"
    );
}

/// The per-tenant series limit: events that would start a series beyond it are rejected with
/// the metric named; known series, events without metrics and other tenants go on.
#[tokio::test]
async fn the_series_limit_rejects_new_series_clearly() {
    let s = TestServer::spawn_with(&["--max-series-per-tenant", "3"], &[]).await;
    let key = s.admin_key.clone();
    let (_, other, _) = s.tenant_with_key("other", &["read", "write"]).await;
    let reading =
        |dev: &str, metric: &str| json!({"device_id": dev, "metrics": {metric: 1.0}}).to_string();
    for dev in ["d0", "d1"] {
        let (st, v) = s.post("/api/v1/events", &key, &reading(dev, "temp")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    // The limit counts what the processor holds (requests in flight are not counted).
    s.wait_rollups().await;
    // Within one request, series count as they come: the third fits, the fourth does not.
    let batch = json!([
        {"device_id": "d2", "metrics": {"temp": 1.0}},
        {"device_id": "d3", "metrics": {"temp": 1.0}},
    ]);
    let (st, v) = s.post("/api/v1/events", &key, &batch.to_string()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["errors"][0]["index"], 1, "{v}");
    assert_eq!(v["errors"][0]["field"], "metrics.temp", "{v}");
    assert!(
        v["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("limit of 3 series"),
        "{v}"
    );
    let (st, v) = s
        .post("/api/v1/events?partial=true", &key, &batch.to_string())
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.wait_rollups().await;
    for (body, want) in [
        (reading("d4", "temp"), StatusCode::BAD_REQUEST),
        (reading("d0", "humidity"), StatusCode::BAD_REQUEST),
        (reading("d0", "temp"), StatusCode::OK),
        (
            json!({"type": "click", "user_id": "u"}).to_string(),
            StatusCode::OK,
        ),
    ] {
        let (st, v) = s.post("/api/v1/events", &key, &body).await;
        assert_eq!(st, want, "{body}: {v}");
    }
    let (st, _) = s
        .post("/api/v1/events", &other, &reading("d9", "temp"))
        .await;
    assert_eq!(st, StatusCode::OK, "another tenant has its own limit");
    let (_, v) = s.get("/api/v1/rollups?resolution=1d&from=-2d", &key).await;
    let devices: BTreeSet<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(devices, BTreeSet::from(["d0", "d1", "d2"]), "{v}");
}

/// Late events are stored raw and counted late; asking for their closed windows re-aggregates
/// those windows from the store (`corrected`), including a series whose every event was late.
#[tokio::test]
async fn late_events_are_corrected_from_the_store_when_their_windows_are_read() {
    let s = TestServer::spawn().await;
    let key = s.admin_key.clone();
    let now = crate::common::now_ms();
    let minute = (now - 30 * MIN_MS) / MIN_MS * MIN_MS;
    let post = |t: i64, dev: &str, v: f64| {
        json!({"time": t, "device_id": dev, "user_id": format!("u-{dev}"), "metrics": {"temp": v}})
            .to_string()
    };
    for body in [
        post(minute + 1000, "d1", 1.0),
        post(minute + 2000, "d1", 2.0),
        post(now, "d1", 5.0),
    ] {
        let (st, b) = s.post("/api/v1/events", &key, &body).await;
        assert_eq!(st, StatusCode::OK, "{b}");
    }
    s.wait_rollups().await;
    // The watermark (now − 5 min) has closed `minute`: these two are late for it.
    for body in [
        post(minute + 3000, "d1", 10.0),
        post(minute + 4000, "d2", 7.0),
    ] {
        let (st, b) = s.post("/api/v1/events", &key, &body).await;
        assert_eq!(st, StatusCode::OK, "{b}");
    }
    s.wait_rollups().await;
    s.wait_visible().await;
    let q = format!(
        "/api/v1/rollups?metric=temp&resolution=1m&from={}&to={}",
        window(minute - MIN_MS, MIN_MS),
        window(minute + 2 * MIN_MS, MIN_MS)
    );
    let (st, v) = s.get(&q, &key).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let rows = v["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    let (d1, d2) = (&rows[0], &rows[1]);
    assert_eq!(
        (
            &d1["device_id"],
            &d1["count"],
            &d1["sum"],
            &d1["max"],
            &d1["last"]
        ),
        (
            &json!("d1"),
            &json!(3),
            &json!(13.0),
            &json!(10.0),
            &json!(10.0)
        ),
        "{d1}"
    );
    assert_eq!(
        (&d1["corrected"], &d1["complete"], &d1["final"]),
        (&json!(true), &json!(true), &json!(true))
    );
    assert_eq!(
        (&d2["device_id"], &d2["count"], &d2["sum"]),
        (&json!("d2"), &json!(1), &json!(7.0)),
        "a series whose only event was late: {d2}"
    );
    // One device; and a window without late events is not touched.
    let (_, v) = s.get(&format!("{q}&device_id=d1"), &key).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"][0]["count"], 3);
    let (_, v) = s
        .get(
            &format!(
                "/api/v1/rollups?metric=temp&device_id=d1&resolution=1m&from={}",
                window(now, MIN_MS)
            ),
            &key,
        )
        .await;
    assert_eq!(v["data"][0]["complete"], true, "{v}");
    assert!(v["data"][0].get("corrected").is_none(), "{v}");
    // Dimension rows of that window are recounted from raw events too.
    let (_, v) = s
        .get(
            &format!(
                "/api/v1/rollups?dimension=type&resolution=1m&from={}&to={}",
                window(minute, MIN_MS),
                window(minute + MIN_MS, MIN_MS)
            ),
            &key,
        )
        .await;
    let rows = v["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(
        (
            &rows[0]["value"],
            &rows[0]["count"],
            &rows[0]["distinct_users"],
            &rows[0]["corrected"]
        ),
        (&json!("reading"), &json!(4), &json!(2), &json!(true)),
        "two on time, two late (one of them the only event of u-d2): {v}"
    );
}

/// Closed windows reach the rollup files before the checkpoint that covers them, stay exact
/// across SIGKILLs (some landing while files are written), and are read back when a query
/// reaches past memory (minute windows stay 10 minutes here): three hours of minute windows
/// from `/api/v1/rollups` equal the naive computation, and the time-series fast path answers
/// them like the raw path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_windows_persist_across_sigkills_and_answer_past_memory() {
    const HOUR_MS: i64 = 3_600_000;
    let mut s = TestServer::spawn_with(
        &[
            "--allowed-lateness",
            "1s",
            "--stream-checkpoint-interval",
            "50ms",
            "--rollup-horizons",
            "10m,7d,90d",
        ],
        &[],
    )
    .await;
    let key = s.admin_key.clone();
    let start = (chrono::Utc::now().timestamp_millis() / HOUR_MS - 4) * HOUR_MS;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let files = s.data_dir().join("stream").join("rollups").join("default");
    // (device, minute start ms) → (count, sum) of every event sent (each is retried until
    // acknowledged; retries of stored events are deduplicated).
    let mut naive: BTreeMap<(String, i64), (u64, f64)> = BTreeMap::new();
    let mut kills_in_writes = 0;
    // 3 hours, an event every 5 s (4 devices in turn), 10 minutes per batch.
    for b in 0..18i64 {
        let batch: Vec<Value> = (0..120i64)
            .map(|i| {
                let n = b * 120 + i;
                json!({"event_id": format!("p{n}"), "time": start + n * 5000,
                       "device_id": format!("d{}", n % 4), "metrics": {"v": (n % 11) as f64}})
            })
            .collect();
        for e in &batch {
            let t = e["time"].as_i64().unwrap();
            let c = naive
                .entry((
                    e["device_id"].as_str().unwrap().to_string(),
                    t.div_euclid(MIN_MS) * MIN_MS,
                ))
                .or_default();
            c.0 += 1;
            c.1 += e["metrics"]["v"].as_f64().unwrap();
        }
        // Every third batch: kill the server as soon as it writes a rollup file.
        let watcher = (b % 3 == 1).then(|| {
            let (dir, pid) = (files.clone(), s.pid().unwrap());
            std::thread::spawn(move || {
                let t = std::time::Instant::now();
                while t.elapsed() < Duration::from_secs(5) {
                    let writing = std::fs::read_dir(&dir).is_ok_and(|entries| {
                        entries
                            .flatten()
                            .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
                    });
                    if writing {
                        TestServer::sigkill(pid);
                        return true;
                    }
                    std::hint::spin_loop();
                }
                false
            })
        });
        loop {
            let r = client
                .post(format!("{}/api/v1/events", s.url))
                .header("x-api-key", &key)
                .json(&batch)
                .send()
                .await;
            if matches!(&r, Ok(r) if r.status() == StatusCode::OK) {
                break;
            }
            s.kill9();
            s.start();
        }
        if let Some(w) = watcher {
            if w.join().unwrap() {
                kills_in_writes += 1;
            }
            s.kill9();
            s.start();
        }
    }
    assert!(
        kills_in_writes >= 2,
        "kills landed while rollup files were written ({kills_in_writes} of 6)"
    );
    s.wait_rollups().await;
    s.wait_visible().await;
    // Wait for a checkpoint (its flush goes first) and for the eviction pass (every 5 s) to
    // drop minute windows past the 10-minute horizon from memory.
    let windows_in_memory = |m: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix("eddy_stream_windows "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::MAX)
    };
    let t = std::time::Instant::now();
    while !(s.data_dir().join("stream/checkpoint.zst").exists()
        && windows_in_memory(&s.metrics_text().await) < naive.len() as f64)
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no checkpoint and eviction: {}",
            s.metrics_text().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        std::fs::read_dir(&files).unwrap().count() > 0,
        "closed windows are in files"
    );
    let (from, to) = (start, start + 3 * HOUR_MS);
    let rfc = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let (st, v) = s
        .get(
            &format!(
                "/api/v1/rollups?metric=v&resolution=1m&from={}&to={}",
                rfc(from),
                rfc(to)
            ),
            &key,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let got: BTreeMap<(String, i64), (u64, f64)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let t = chrono::DateTime::parse_from_rfc3339(r["time"].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            (
                (r["device_id"].as_str().unwrap().to_string(), t),
                (r["count"].as_u64().unwrap(), r["sum"].as_f64().unwrap()),
            )
        })
        .collect();
    assert_eq!(got.len(), naive.len(), "every minute window of three hours");
    assert_eq!(got, naive, "each exactly once");
    // The fast path reads them too, and agrees with the raw events.
    let q = format!(
        "metric=v&bucket=1m&agg=count,sum,min,max,first,last&from={}&to={}",
        rfc(from),
        rfc(to)
    );
    let (source, fast) = timeseries(&s, &key, &q).await;
    assert_eq!(source, "rollups", "windows past memory come from the files");
    let (_, raw) = timeseries(&s, &key, &format!("{q}&source=raw")).await;
    assert_eq!(fast["data"], raw["data"]);
    assert_eq!(fast["data"].as_array().unwrap().len(), 180);
    let range = format!("resolution=1m&from={}&to={}", rfc(from), rfc(to));
    // One device; every metric without naming one (the compatibility route); counts.
    let (_, one) = s
        .get(
            &format!("/api/v1/rollups?metric=v&device_id=d1&{range}"),
            &key,
        )
        .await;
    let one = one["data"].as_array().unwrap();
    assert_eq!(one.len(), naive.keys().filter(|(d, _)| d == "d1").count());
    assert!(one.iter().all(|r| r["device_id"] == "d1"));
    let (_, every) = s
        .get(&format!("/api/v1/analytics/aggregates?{range}"), &key)
        .await;
    assert_eq!(every["data"].as_array().unwrap().len(), naive.len());
    let (_, counts) = s
        .get(&format!("/api/v1/rollups?dimension=type&{range}"), &key)
        .await;
    let counted: u64 = counts["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 18 * 120, "every event once in the type counts");
    let (source, one_fast) = timeseries(&s, &key, &format!("{q}&device_id=d2")).await;
    assert_eq!(source, "rollups");
    let (_, one_raw) = timeseries(&s, &key, &format!("{q}&device_id=d2&source=raw")).await;
    assert_eq!(one_fast["data"], one_raw["data"]);
    let metrics = s.metrics_text().await;
    let reads: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("eddy_stream_rollup_file_reads_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(reads >= 2.0, "answered from the files: {reads}");
}
