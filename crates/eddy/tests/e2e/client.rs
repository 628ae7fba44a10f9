//! The client library (`eddy-client`) against the real server, over HTTP and gRPC: batching,
//! retries that honour the server's quota answers without storing anything twice, the
//! streaming handle, refusals named by event and field, and the query helpers.

use std::time::Duration;

use eddy_client::{BatchConfig, Client, Error, Event, Retry};

use crate::common::TestServer;

async fn clients(s: &TestServer, key: &str) -> Vec<(&'static str, Client)> {
    vec![
        ("http", Client::http(&s.url, key).unwrap()),
        (
            "grpc",
            Client::grpc_pooled(&s.grpc_url, key, 2).await.unwrap(),
        ),
    ]
}

async fn count(c: &Client, sql: &str) -> i64 {
    c.sql(sql).await.unwrap()[0]["n"].as_i64().unwrap()
}

#[tokio::test]
async fn batches_retry_through_a_quota_and_store_each_event_once() {
    // A burst of one 200-event batch, then 400 events/s: most batches of a fast sender are
    // refused at first and retried.
    let s = TestServer::spawn_with(&["--max-batch-events", "200"], &[]).await;
    let (s1, t) = s
        .post(
            "/api/v1/tenants",
            &s.admin_key,
            r#"{"name":"metered","events_per_sec":400}"#,
        )
        .await;
    assert_eq!(s1, reqwest::StatusCode::CREATED, "{t}");
    let (key, _) = s.key_for(t["id"].as_str().unwrap(), &["read_write"]).await;
    for (proto, c) in clients(&s, &key).await {
        let c = c.with_retry(Retry {
            attempts: 50,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
        });
        let batcher = c.batcher(BatchConfig {
            max_events: 200,
            linger: Duration::from_millis(10),
            max_pending: 4,
        });
        for i in 0..1_200 {
            batcher
                .push(Event::reading(format!("{proto}-d{}", i % 3)).metric("v", i as f64))
                .await
                .unwrap();
        }
        let totals = batcher.close().await.unwrap();
        assert!(totals.failed.is_empty(), "{proto}: {:?}", totals.failed);
        assert_eq!(totals.accepted, 1_200, "{proto}: {totals:?}");
        s.wait_visible().await;
        let like = format!("device_id LIKE '{proto}-%'");
        assert_eq!(
            count(
                &c,
                &format!("SELECT count(*) AS n FROM events WHERE {like}")
            )
            .await,
            1_200
        );
        assert_eq!(
            count(
                &c,
                &format!("SELECT count(DISTINCT event_id) AS n FROM events WHERE {like}")
            )
            .await,
            1_200
        );
    }
    // The quota really refused requests (the retries were needed).
    let text = s.metrics_text().await;
    let refused: f64 = text
        .lines()
        .filter(|l| l.starts_with("eddy_quota_rejections_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(refused > 0.0, "no quota refusal: the test proves nothing");
}

#[tokio::test]
async fn sends_name_refusals_resends_deduplicate_and_queries_answer() {
    let s = TestServer::spawn().await;
    let key = s.admin_key.clone();
    for (proto, c) in clients(&s, &key).await {
        let events: Vec<Event> = (0..3)
            .map(|i| {
                Event::new("click")
                    .id(format!("{proto}-{i}"))
                    .user(format!("{proto}-u{i}"))
            })
            .collect();
        let ack = c.send(events.clone()).await.unwrap();
        assert_eq!(
            (ack.accepted, ack.duplicates, ack.durable),
            (3, 0, true),
            "{proto}"
        );
        assert_eq!(
            ack.event_ids,
            vec![
                format!("{proto}-0"),
                format!("{proto}-1"),
                format!("{proto}-2")
            ]
        );
        // The same events again (what a retry after a lost answer sends): duplicates.
        let again = c.send(events).await.unwrap();
        assert_eq!((again.accepted, again.duplicates), (0, 3), "{proto}");

        let bad = vec![
            Event::reading("d").metric("t", 1.0),
            Event::reading("d").metric("t", f64::NAN),
        ];
        match c.send(bad).await {
            Err(Error::Rejected { rejected, .. }) => {
                assert_eq!(rejected.len(), 1, "{proto}");
                assert_eq!(
                    (rejected[0].index, rejected[0].field.as_str()),
                    (1, "metrics.t")
                );
            }
            other => panic!("{proto}: {other:?}"),
        }
        let wrong = match proto {
            "http" => Client::http(&s.url, "not-a-key").unwrap(),
            _ => Client::grpc(&s.grpc_url, "not-a-key").await.unwrap(),
        };
        assert!(matches!(
            wrong.send(vec![Event::new("x")]).await,
            Err(Error::Unauthenticated(_))
        ));
    }
    s.wait_visible().await;
    for (proto, c) in clients(&s, &key).await {
        let sum = c.summary(Duration::from_secs(3600)).await.unwrap();
        assert_eq!(sum.total_events, 6, "{proto}");
        assert_eq!(sum.event_types["click"], 6, "{proto}");
        assert_eq!(sum.unique_users, 6, "{proto}");
    }
}

#[tokio::test]
async fn the_stream_handle_holds_a_window_and_acks_in_order() {
    let s = TestServer::spawn().await;
    let c = Client::grpc(&s.grpc_url, &s.admin_key).await.unwrap();
    let mut stream = c.stream(2).await.unwrap();
    let total = 30u64;
    let (mut sent, mut acked) = (0u64, 0u64);
    while acked < total {
        if sent < total && stream.window_free() > 0 {
            let batch = (0..500)
                .map(|i| Event::reading(format!("st-{}", i % 5)).metric("x", i as f64))
                .collect();
            assert_eq!(stream.send(batch).await.unwrap(), sent);
            sent += 1;
            // Never more than the window unacknowledged.
            assert!(sent - acked <= 2);
            continue;
        }
        let ack = stream.next_ack().await.unwrap().unwrap();
        assert_eq!(ack.sequence, acked, "acks in order");
        assert_eq!(ack.result.unwrap().accepted, 500);
        acked += 1;
    }
    assert!(stream.unacked().is_empty());
    stream.finish();
    assert!(
        stream.next_ack().await.is_none(),
        "the call ends after finish"
    );
    s.wait_visible().await;
    assert_eq!(
        count(
            &c,
            "SELECT count(*) AS n FROM events WHERE device_id LIKE 'st-%'"
        )
        .await,
        15_000
    );
    // Streams are gRPC's.
    let http = Client::http(&s.url, &s.admin_key).unwrap();
    assert!(matches!(http.stream(2).await, Err(Error::Config(_))));
}
