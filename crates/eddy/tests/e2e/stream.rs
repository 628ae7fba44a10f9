//! Rollups through `GET /api/v1/rollups`: compared with a naive computation over the events
//! sent, tenant-isolated, validated, and exact across SIGKILLs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestServer;

const MIN_MS: i64 = 60_000;

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
            // first/last by event time, ties by arrival (log) order.
            let first = vals.iter().min_by_key(|x| (x.0, x.1)).unwrap().2;
            let last = vals.iter().max_by_key(|x| (x.0, x.1)).unwrap().2;
            assert_eq!(row["first"].as_f64().unwrap(), first);
            assert_eq!(row["last"].as_f64().unwrap(), last);
            let mut sorted: Vec<f64> = vals.iter().map(|x| x.2).collect();
            sorted.sort_by(f64::total_cmp);
            for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
                let exact = sorted[(q * (sorted.len() - 1) as f64) as usize];
                let got = row[name].as_f64().unwrap();
                assert!(
                    (got - exact).abs() <= 0.01 * exact.abs() + 1e-9,
                    "{name}: {got} vs {exact}"
                );
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

    // Tenant B sees none of it, whatever it asks for.
    for q in [
        "metric=temp".to_string(),
        "metric=temp&device_id=d0".into(),
        "dimension=type".into(),
        "dimension=type&value=click&resolution=1d&from=-2d".into(),
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
        ("", "exactly one of `metric` and `dimension`"),
        ("metric=a&dimension=type", "exactly one"),
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

/// SIGKILL while events stream in (and checkpoints are written every 50 ms); clients retry
/// unacknowledged batches with the same event ids. After a final restart the rollups count
/// every acknowledged event exactly once: hour-window counts and sums per device equal the
/// naive computation over the acknowledged events.
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
    for round in 0..8 {
        let kill_after = Duration::from_millis(rand::rng().random_range(50..250));
        let started = std::time::Instant::now();
        while started.elapsed() < kill_after {
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
                Ok(r) if r.status() == StatusCode::OK => {
                    for e in &batch {
                        let c = acked
                            .entry(e["device_id"].as_str().unwrap().to_string())
                            .or_default();
                        c.0 += 1;
                        c.1 += e["metrics"]["v"].as_f64().unwrap();
                    }
                }
                _ => pending.push(batch),
            }
        }
        s.kill9();
        s.start();
        eprintln!("round {round}: {} batches pending", pending.len());
    }
    // Retry what is still unknown (dedup makes a retry of a stored batch a no-op).
    while let Some(batch) = pending.pop() {
        let (st, body) = s
            .post("/api/v1/events", &key, &json!(batch).to_string())
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        for e in &batch {
            let c = acked
                .entry(e["device_id"].as_str().unwrap().to_string())
                .or_default();
            c.0 += 1;
            c.1 += e["metrics"]["v"].as_f64().unwrap();
        }
    }
    s.wait_rollups().await;
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
    }
    assert!(
        acked.values().map(|c| c.0).sum::<u64>() > 100,
        "the test must ingest"
    );
}
