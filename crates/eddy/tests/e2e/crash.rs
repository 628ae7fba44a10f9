//! Crash test: concurrent clients ingest, the server is SIGKILLed at a random moment, restarted,
//! and clients retry what was not acknowledged. In the end every acknowledged event is in the
//! store exactly once (queried through the API, across Parquet files and replayed buffers),
//! and retried in-flight events are never duplicated.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use serde_json::json;

use crate::common::TestServer;

fn assert_exactly_once(rows: &[serde_json::Value], acked: &HashSet<String>) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for r in rows {
        *counts.entry(r["event_id"].as_str().unwrap()).or_default() += 1;
    }
    let missing: Vec<_> = acked
        .iter()
        .filter(|id| !counts.contains_key(id.as_str()))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "acknowledged events lost: {missing:?}");
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(dups.is_empty(), "events stored twice: {dups:?}");
    assert_eq!(
        rows.len(),
        acked.len(),
        "nothing stored that was never sent"
    );
}

const ROUNDS: usize = 20;
const CLIENTS: usize = 4;
const BATCH: usize = 25;

type Batch = Vec<String>;

async fn send(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    ids: &Batch,
    nonce: usize,
) -> Result<(), String> {
    let body: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| json!({"event_id": id, "type": "reading", "device_id": format!("dev-{}", i % 7), "metrics": {"v": nonce as f64}}))
        .collect();
    let r = client
        .post(format!("{url}/api/v1/events"))
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(json!(body).to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() == StatusCode::OK {
        Ok(())
    } else {
        Err(r.status().to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_ingest_loses_nothing_acknowledged_and_duplicates_nothing() {
    // Small segments so that crashes also land around segment rolls.
    // Small segments and persist thresholds, so crashes also land around segment rolls and
    // Parquet persists.
    let mut s = TestServer::spawn_with(
        &[
            "--wal-segment-size",
            "64KiB",
            "--store-persist-size",
            "256KiB",
        ],
        &[],
    )
    .await;
    let key = s.admin_key.clone();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let pending: Arc<Mutex<Vec<Batch>>> = Arc::default();
    let mut next_batch = 0usize;
    for round in 0..ROUNDS {
        let url = s.url.clone();
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            // Each client first retries what failed in earlier rounds, then sends new batches.
            let retry: Vec<Batch> = {
                let mut p = pending.lock().unwrap();
                let n = p.len().div_ceil(CLIENTS - c);
                p.drain(..n).collect()
            };
            let first_new = next_batch;
            next_batch += 10_000;
            let (client, url, key, acked, pending) = (
                client.clone(),
                url.clone(),
                key.clone(),
                acked.clone(),
                pending.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut queue: Vec<Batch> = retry;
                queue.reverse();
                let mut n = first_new;
                loop {
                    let batch = queue.pop().unwrap_or_else(|| {
                        n += 1;
                        (0..BATCH)
                            .map(|i| format!("r{round}-c{c}-b{n}-e{i}"))
                            .collect()
                    });
                    match send(&client, &url, &key, &batch, n).await {
                        Ok(()) => acked.lock().unwrap().extend(batch),
                        Err(_) => {
                            // Unknown outcome: the server may or may not have stored it.
                            let mut p = pending.lock().unwrap();
                            p.push(batch);
                            p.extend(queue);
                            return;
                        }
                    }
                }
            }));
        }
        let wait = rand::rng().random_range(30..300);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        s.kill9();
        for t in tasks {
            t.await.unwrap();
        }
        s.start();
    }
    // Settle: retry everything still pending against the live server.
    let leftover: Vec<Batch> = std::mem::take(&mut *pending.lock().unwrap());
    for b in &leftover {
        send(&client, &s.url, &key, b, 0).await.unwrap();
        acked.lock().unwrap().extend(b.iter().cloned());
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > ROUNDS * BATCH,
        "the test must actually ingest ({} acked)",
        acked.len()
    );

    s.wait_visible().await;
    assert_exactly_once(
        &s.list_all(&key, "/api/v1/events?limit=10000").await,
        &acked,
    );
    // And again after a graceful restart (everything persisted, WAL segments released).
    assert!(s.terminate().success());
    s.start();
    s.wait_visible().await;
    assert_exactly_once(
        &s.list_all(&key, "/api/v1/events?limit=10000").await,
        &acked,
    );
    let log = s.server_log();
    eprintln!(
        "crash test: {} events acknowledged over {ROUNDS} SIGKILLs; torn tails repaired: {}",
        acked.len(),
        log.matches("cutting it back").count()
    );
}
