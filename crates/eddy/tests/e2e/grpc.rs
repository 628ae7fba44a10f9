//! The gRPC API (`eddy.v1`) over the real binary: every RPC, the auth matrix, rejected
//! batches, message limits, a `StreamEvents` client that stops reading its acks, SIGKILL and
//! SIGTERM during a stream, client deadlines, request ids and per-method metrics.

use std::time::{Duration, Instant};

use eddy_proto::v1 as pb;
use eddy_proto::v1::analytics_service_client::AnalyticsServiceClient;
use eddy_proto::v1::event_ingestion_service_client::EventIngestionServiceClient;
use eddy_proto::v1::metrics_service_client::MetricsServiceClient;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use crate::common::TestServer;

async fn channel(s: &TestServer) -> Channel {
    assert!(!s.grpc_url.is_empty(), "gRPC is off");
    Channel::from_shared(s.grpc_url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn keyed<T>(msg: T, key: Option<&str>) -> Request<T> {
    let mut r = Request::new(msg);
    if let Some(k) = key {
        r.metadata_mut().insert("x-api-key", k.parse().unwrap());
    }
    r
}

fn event(id: &str, device: &str, temp: f64) -> pb::Event {
    pb::Event {
        event_id: id.to_string(),
        r#type: "reading".into(),
        device_id: device.into(),
        user_id: "u1".into(),
        metrics: [("temp".to_string(), temp)].into(),
        ..Default::default()
    }
}

fn now_ts() -> prost_types::Timestamp {
    let ms = crate::common::now_ms();
    prost_types::Timestamp {
        seconds: ms / 1000,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

async fn count_sql(s: &TestServer, key: &str, sql: &str) -> i64 {
    let (st, v) = s
        .post(
            "/api/v1/query",
            key,
            &serde_json::json!({ "sql": sql }).to_string(),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::OK, "{v}");
    v["data"][0]["n"].as_i64().unwrap()
}

#[tokio::test]
async fn every_rpc_answers_over_grpc() {
    let s = TestServer::spawn_quick_windows().await;
    let key = s.admin_key.clone();
    let ch = channel(&s).await;
    let mut ingest = EventIngestionServiceClient::new(ch.clone());
    let mut analytics = AnalyticsServiceClient::new(ch.clone());
    let mut metrics = MetricsServiceClient::new(ch.clone());

    // Live subscriptions first: once the call has answered, they receive what follows.
    let mut live = analytics
        .get_real_time_analytics(keyed(
            pb::GetRealTimeAnalyticsRequest {
                channels: vec!["events".into()],
                device_id: "d1".into(),
                ..Default::default()
            },
            Some(&key),
        ))
        .await
        .unwrap()
        .into_inner();
    let mut samples = metrics
        .stream_metrics(keyed(
            pb::StreamMetricsRequest {
                device_id: "d1".into(),
                metric: "temp".into(),
            },
            Some(&key),
        ))
        .await
        .unwrap()
        .into_inner();

    // One event, with a request id that comes back.
    let mut req = keyed(
        pb::IngestEventRequest {
            event: Some(pb::Event {
                time: Some(now_ts()),
                page_url: "/home".into(),
                ..event("e1", "d1", 20.0)
            }),
        },
        Some(&key),
    );
    req.metadata_mut()
        .insert("x-request-id", "req-42".parse().unwrap());
    let r = ingest.ingest_event(req).await.unwrap();
    assert_eq!(r.metadata().get("x-request-id").unwrap(), "req-42");
    // Without one, the server makes one up.
    let h = ingest
        .health(Request::new(pb::HealthRequest {}))
        .await
        .unwrap();
    assert_eq!(h.metadata().get("x-request-id").unwrap().len(), 36);
    let ack = r.into_inner();
    assert_eq!((ack.accepted, ack.duplicates, ack.durable), (1, 0, true));
    assert_eq!(ack.event_ids, vec!["e1"]);
    let first = ack.offsets.unwrap();
    assert_eq!(first.end - first.start, 1);

    // A batch: one new, one duplicate of e1.
    let ack = ingest
        .ingest_events(keyed(
            pb::IngestEventsRequest {
                events: vec![event("e2", "d1", 22.0), event("e1", "d1", 20.0)],
                ..Default::default()
            },
            Some(&key),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((ack.accepted, ack.duplicates), (1, 1));
    assert_eq!(ack.event_ids, vec!["e2", "e1"]);

    // A stream of three batches: acks in order with the client's sequence numbers.
    let batches = (0..3u64).map(move |i| pb::StreamEventsRequest {
        sequence: 100 + i,
        events: (0..10)
            .map(|j| pb::Event {
                r#type: "signup".into(),
                user_id: format!("s{i}-{j}"),
                event_id: format!("s{i}-{j}"),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    });
    let acks: Vec<pb::StreamEventsResponse> = ingest
        .stream_events(keyed(futures_util::stream::iter(batches), Some(&key)))
        .await
        .unwrap()
        .into_inner()
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(
        acks.iter().map(|a| a.sequence).collect::<Vec<_>>(),
        vec![100, 101, 102]
    );
    for a in &acks {
        let Some(pb::stream_events_response::Outcome::Ack(ack)) = &a.outcome else {
            panic!("{a:?}");
        };
        assert_eq!(ack.accepted, 10);
        assert!(ack.durable);
    }

    // The live feeds saw the device's events, in order.
    let m = tokio::time::timeout(Duration::from_secs(10), live.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(m.r#type, "event");
    let Some(pb::live_message::Data::Event(e)) = m.data else {
        panic!("{m:?}")
    };
    assert_eq!((e.event_id.as_str(), e.metrics["temp"]), ("e1", 20.0));
    assert_eq!(e.page_url, "/home");
    let sample = tokio::time::timeout(Duration::from_secs(10), samples.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            sample.device_id.as_str(),
            sample.metric.as_str(),
            sample.value
        ),
        ("d1", "temp", 20.0)
    );
    assert_eq!(sample.event_id, "e1");

    s.wait_visible().await;
    s.wait_rollups().await;
    let sum = analytics
        .get_analytics_summary(keyed(pb::GetAnalyticsSummaryRequest::default(), Some(&key)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sum.total_events, 32);
    assert_eq!(sum.event_types["reading"], 2);
    assert_eq!(sum.event_types["signup"], 30);
    assert_eq!(sum.unique_users, 31);
    assert_eq!(sum.unique_devices, 1);
    assert_eq!(sum.current.as_ref().unwrap().events, 32);
    let o = analytics
        .get_overview(keyed(
            pb::GetOverviewRequest {
                top: 1,
                alerts: Some(0),
                ..Default::default()
            },
            Some(&key),
        ))
        .await
        .unwrap()
        .into_inner();
    let top1 = analytics
        .get_analytics_summary(keyed(
            pb::GetAnalyticsSummaryRequest {
                top: 1,
                ..Default::default()
            },
            Some(&key),
        ))
        .await
        .unwrap()
        .into_inner();
    let osum = o.summary.unwrap();
    assert_eq!(osum.total_events, 32);
    assert_eq!(
        osum.current, top1.current,
        "the summary, as GetAnalyticsSummary answers it"
    );
    assert_eq!((o.open_alerts.len(), o.open_alerts_total), (0, 0));
    let p = o.pipeline.unwrap();
    assert!(p.ready && p.log == "ok" && p.reason.is_empty(), "{p:?}");
    assert!(p.end_offset > 0 && p.store_lag == 0, "{p:?}");
    let st = analytics
        .get_overview(keyed(
            pb::GetOverviewRequest {
                alerts: Some(101),
                ..Default::default()
            },
            Some(&key),
        ))
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
    let tables = analytics
        .list_tables(keyed(pb::ListTablesRequest {}, Some(&key)))
        .await
        .unwrap()
        .into_inner()
        .tables;
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "events",
            "metric_samples",
            "rollups",
            "rollup_counts",
            "alerts"
        ]
    );
    assert!(
        tables[0]
            .columns
            .iter()
            .any(|c| c.name == "time" && c.r#type.starts_with("Timestamp") && !c.nullable),
        "{:?}",
        tables[0]
    );

    let ts = analytics
        .get_time_series(keyed(
            pb::GetTimeSeriesRequest {
                metric: "temp".into(),
                aggs: vec!["avg".into(), "count".into()],
                bucket: Some(prost_types::Duration {
                    seconds: 86_400,
                    nanos: 0,
                }),
                ..Default::default()
            },
            Some(&key),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ts.aggs, vec!["avg", "count"]);
    let values: Vec<Vec<f64>> = ts.series[0]
        .buckets
        .iter()
        .map(|b| b.values.clone())
        .filter(|v| v[1] > 0.0)
        .collect();
    assert_eq!(values, vec![vec![21.0, 2.0]], "{ts:?}");

    let user = analytics
        .get_user_analytics(keyed(
            pb::GetUserAnalyticsRequest {
                user_id: "u1".into(),
                ..Default::default()
            },
            Some(&key),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(user.events, 2);
    assert_eq!(user.recent_events.len(), 2);

    let spec = |t: &str| pb::EventSpec {
        r#type: t.into(),
        r#where: Default::default(),
    };
    let funnel = analytics
        .get_funnel_analysis(keyed(
            pb::GetFunnelAnalysisRequest {
                steps: vec![spec("reading"), spec("reading")],
                ..Default::default()
            },
            Some(&key),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(funnel.steps.len(), 2);
    assert_eq!(funnel.steps[0].users, 1);
    assert_eq!(funnel.steps[1].users, 1);

    let retention = analytics
        .get_retention(keyed(
            pb::GetRetentionRequest {
                cohort: Some(spec("signup")),
                r#return: Some(spec("reading")),
                ..Default::default()
            },
            Some(&key),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retention.period, "day");
    assert_eq!(retention.cohorts.iter().map(|c| c.users).sum::<u64>(), 30);

    let q = analytics
        .query(keyed(
            pb::QueryRequest {
                sql: "SELECT type, count(*) AS n FROM events GROUP BY type ORDER BY type".into(),
                ..Default::default()
            },
            Some(&key),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(q.row_count, 2);
    assert_eq!(
        q.columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        vec!["type", "n"]
    );
    let n = |row: &prost_types::Struct| match &row.fields["n"].kind {
        Some(prost_types::value::Kind::NumberValue(v)) => *v,
        other => panic!("{other:?}"),
    };
    assert_eq!(n(&q.rows[0]), 2.0);
    assert_eq!(n(&q.rows[1]), 30.0);
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(q.arrow_ipc), None).unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 2);

    let latest = metrics
        .get_metrics(keyed(pb::GetMetricsRequest::default(), Some(&key)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(latest.metrics.len(), 1);
    assert_eq!(
        (
            latest.metrics[0].device_id.as_str(),
            latest.metrics[0].value
        ),
        ("d1", 22.0)
    );
    for (format, mime, needle) in [
        (
            pb::ExportFormat::Prometheus,
            "text/plain",
            "device_id=\"d1\"",
        ),
        (
            pb::ExportFormat::Json,
            "application/json",
            "\"device_id\":\"d1\"",
        ),
        (pb::ExportFormat::Csv, "text/csv", "d1,temp,"),
    ] {
        let x = metrics
            .export_metrics(keyed(
                pb::ExportMetricsRequest {
                    format: format as i32,
                },
                Some(&key),
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(x.content_type.starts_with(mime), "{}", x.content_type);
        let text = String::from_utf8(x.data).unwrap();
        assert!(text.contains(needle), "{format:?}: {text}");
    }

    let h = ingest
        .health(Request::new(pb::HealthRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((h.status.as_str(), h.ready), ("ok", true));
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let st = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "eddy.v1.EventIngestionService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        st.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Per-method metrics, as the process exports them.
    s.wait_metric(r#"eddy_grpc_requests_total{method="eddy.v1.EventIngestionService/IngestEvents",code="OK"} 1"#).await;
    s.wait_metric(
        r#"eddy_grpc_request_duration_seconds_count{method="eddy.v1.AnalyticsService/Query"} 1"#,
    )
    .await;
}

/// One call of each RPC with `key`; the code it ends with.
async fn call(ch: &Channel, rpc: &str, key: Option<&str>) -> Code {
    let mut ingest = EventIngestionServiceClient::new(ch.clone());
    let mut analytics = AnalyticsServiceClient::new(ch.clone());
    let mut metrics = MetricsServiceClient::new(ch.clone());
    let ev = || event("", "d1", 1.0);
    let code = |r: Result<(), Status>| r.err().map_or(Code::Ok, |s| s.code());
    match rpc {
        "IngestEvent" => code(
            ingest
                .ingest_event(keyed(pb::IngestEventRequest { event: Some(ev()) }, key))
                .await
                .map(drop),
        ),
        "IngestEvents" => code(
            ingest
                .ingest_events(keyed(
                    pb::IngestEventsRequest {
                        events: vec![ev()],
                        ..Default::default()
                    },
                    key,
                ))
                .await
                .map(drop),
        ),
        "StreamEvents" => {
            let one = futures_util::stream::iter([pb::StreamEventsRequest {
                sequence: 1,
                events: vec![ev()],
                ..Default::default()
            }]);
            match ingest.stream_events(keyed(one, key)).await {
                Err(s) => s.code(),
                Ok(r) => {
                    let acks: Vec<_> = r.into_inner().collect().await;
                    match acks.first() {
                        Some(Err(s)) => s.code(),
                        _ => Code::Ok,
                    }
                }
            }
        }
        "GetAnalyticsSummary" => code(
            analytics
                .get_analytics_summary(keyed(pb::GetAnalyticsSummaryRequest::default(), key))
                .await
                .map(drop),
        ),
        "GetTimeSeries" => code(
            analytics
                .get_time_series(keyed(
                    pb::GetTimeSeriesRequest {
                        metric: "temp".into(),
                        ..Default::default()
                    },
                    key,
                ))
                .await
                .map(drop),
        ),
        "GetRealTimeAnalytics" => code(
            analytics
                .get_real_time_analytics(keyed(pb::GetRealTimeAnalyticsRequest::default(), key))
                .await
                .map(drop),
        ),
        "GetUserAnalytics" => code(
            analytics
                .get_user_analytics(keyed(
                    pb::GetUserAnalyticsRequest {
                        user_id: "u1".into(),
                        ..Default::default()
                    },
                    key,
                ))
                .await
                .map(drop),
        ),
        "GetFunnelAnalysis" => code(
            analytics
                .get_funnel_analysis(keyed(
                    pb::GetFunnelAnalysisRequest {
                        steps: vec![pb::EventSpec {
                            r#type: "reading".into(),
                            r#where: Default::default(),
                        }],
                        ..Default::default()
                    },
                    key,
                ))
                .await
                .map(drop),
        ),
        "GetRetention" => {
            let spec = Some(pb::EventSpec {
                r#type: "reading".into(),
                r#where: Default::default(),
            });
            code(
                analytics
                    .get_retention(keyed(
                        pb::GetRetentionRequest {
                            cohort: spec.clone(),
                            r#return: spec,
                            ..Default::default()
                        },
                        key,
                    ))
                    .await
                    .map(drop),
            )
        }
        "Query" => code(
            analytics
                .query(keyed(
                    pb::QueryRequest {
                        sql: "SELECT count(*) AS n FROM events".into(),
                        ..Default::default()
                    },
                    key,
                ))
                .await
                .map(drop),
        ),
        "GetOverview" => code(
            analytics
                .get_overview(keyed(pb::GetOverviewRequest::default(), key))
                .await
                .map(drop),
        ),
        "ListTables" => code(
            analytics
                .list_tables(keyed(pb::ListTablesRequest::default(), key))
                .await
                .map(drop),
        ),
        "GetMetrics" => code(
            metrics
                .get_metrics(keyed(pb::GetMetricsRequest::default(), key))
                .await
                .map(drop),
        ),
        "StreamMetrics" => code(
            metrics
                .stream_metrics(keyed(pb::StreamMetricsRequest::default(), key))
                .await
                .map(drop),
        ),
        "ExportMetrics" => code(
            metrics
                .export_metrics(keyed(pb::ExportMetricsRequest::default(), key))
                .await
                .map(drop),
        ),
        other => panic!("no such RPC {other}"),
    }
}

const WRITES: [&str; 3] = ["IngestEvent", "IngestEvents", "StreamEvents"];
const READS: [&str; 12] = [
    "GetAnalyticsSummary",
    "GetOverview",
    "ListTables",
    "GetTimeSeries",
    "GetRealTimeAnalytics",
    "GetUserAnalytics",
    "GetFunnelAnalysis",
    "GetRetention",
    "Query",
    "GetMetrics",
    "StreamMetrics",
    "ExportMetrics",
];

#[tokio::test]
async fn every_rpc_rejects_bad_keys_without_side_effects() {
    let s = TestServer::spawn().await;
    let a = s.admin_key.clone();
    let (victim, victim_key, _) = s.tenant_with_key("victim", &["read_write"]).await;
    let (_, other_key, _) = s.tenant_with_key("other", &["read_write"]).await;
    let (read_only, _) = s.key_for(&victim, &["read"]).await;
    let (write_only, _) = s.key_for(&victim, &["write"]).await;
    let (revoked, revoked_id) = s.key_for(&victim, &["read_write"]).await;
    let (st, _) = s
        .request(
            "DELETE",
            &format!("/api/v1/tenants/{victim}/keys/{revoked_id}"),
            Some(&a),
            None,
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::NO_CONTENT);
    let ch = channel(&s).await;
    let before = s.log_end().await;
    for rpc in WRITES.iter().chain(READS.iter()) {
        for (label, key, want) in [
            ("no key", None, Code::Unauthenticated),
            ("empty key", Some(""), Code::Unauthenticated),
            (
                "unknown key",
                Some("eddy_unknown_key_0000000000000000000000"),
                Code::Unauthenticated,
            ),
            ("revoked key", Some(revoked.as_str()), Code::Unauthenticated),
        ] {
            assert_eq!(call(&ch, rpc, key).await, want, "{rpc} with {label}");
        }
        let wrong_scope = if WRITES.contains(rpc) {
            &read_only
        } else {
            &write_only
        };
        assert_eq!(
            call(&ch, rpc, Some(wrong_scope)).await,
            Code::PermissionDenied,
            "{rpc} with the wrong scope"
        );
    }
    assert_eq!(s.log_end().await, before, "a refused call changed the log");

    // The right keys work, and each tenant sees only its own events.
    for rpc in WRITES {
        assert_eq!(call(&ch, rpc, Some(&other_key)).await, Code::Ok, "{rpc}");
    }
    for rpc in READS {
        // The victim has no user `u1`: an honest NOT_FOUND, past authentication.
        let want = if rpc == "GetUserAnalytics" {
            Code::NotFound
        } else {
            Code::Ok
        };
        assert_eq!(call(&ch, rpc, Some(&victim_key)).await, want, "{rpc}");
    }
    s.wait_visible().await;
    let mut analytics = AnalyticsServiceClient::new(ch.clone());
    let victim_sum = analytics
        .get_analytics_summary(keyed(
            pb::GetAnalyticsSummaryRequest::default(),
            Some(&victim_key),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        victim_sum.total_events, 0,
        "the other tenant's events leaked"
    );
    let other_sum = analytics
        .get_analytics_summary(keyed(
            pb::GetAnalyticsSummaryRequest::default(),
            Some(&other_key),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(other_sum.total_events, 3);
    // `authorization: Bearer` works as well.
    let mut r = Request::new(pb::GetAnalyticsSummaryRequest::default());
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {other_key}").parse().unwrap(),
    );
    assert_eq!(
        analytics
            .get_analytics_summary(r)
            .await
            .unwrap()
            .into_inner()
            .total_events,
        3
    );
}

#[tokio::test]
async fn a_bad_event_changes_nothing_and_is_named() {
    let s = TestServer::spawn().await;
    let key = s.admin_key.clone();
    let mut ingest = EventIngestionServiceClient::new(channel(&s).await);
    let before = s.log_end().await;
    let batch = vec![
        event("ok-1", "d1", 1.0),
        event("bad", "d1", f64::NAN),
        event("ok-2", "d1", 2.0),
    ];
    let err = ingest
        .ingest_events(keyed(
            pb::IngestEventsRequest {
                events: batch.clone(),
                ..Default::default()
            },
            Some(&key),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("1 of 3 events"), "{}", err.message());
    let d = err.get_error_details();
    let v = &d.bad_request().unwrap().field_violations;
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].field, "events[1].metrics.temp");
    assert!(v[0].description.contains("NaN"), "{}", v[0].description);
    assert_eq!(d.error_info().unwrap().reason, "validation_failed");
    assert_eq!(
        s.log_end().await,
        before,
        "a rejected batch changed the log"
    );

    // One event: the field is `event.…`.
    let err = ingest
        .ingest_event(keyed(
            pb::IngestEventRequest {
                event: Some(pb::Event {
                    time: Some(prost_types::Timestamp {
                        seconds: 4_000_000_000,
                        nanos: 0,
                    }),
                    ..event("", "d1", 1.0)
                }),
            },
            Some(&key),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let d = err.get_error_details();
    let v = &d.bad_request().unwrap().field_violations[0];
    assert_eq!(v.field, "event.time");
    assert!(v.description.contains("future"), "{}", v.description);
    // Nothing given at all.
    let err = ingest
        .ingest_events(keyed(pb::IngestEventsRequest::default(), Some(&key)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(s.log_end().await, before);

    // With `partial`, the valid ones are stored and the bad one listed.
    let ack = ingest
        .ingest_events(keyed(
            pb::IngestEventsRequest {
                events: batch,
                partial: true,
                ..Default::default()
            },
            Some(&key),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.accepted, 2);
    assert_eq!(ack.rejected.len(), 1);
    assert_eq!(
        (ack.rejected[0].index, ack.rejected[0].field.as_str()),
        (1, "metrics.temp")
    );
    assert_eq!(ack.event_ids, vec!["ok-1", "ok-2"]);

    // In a stream, a bad batch gets an error ack and the stream goes on.
    let batches = futures_util::stream::iter([
        pb::StreamEventsRequest {
            sequence: 1,
            events: vec![event("s-bad", "d1", f64::INFINITY)],
            ..Default::default()
        },
        pb::StreamEventsRequest {
            sequence: 2,
            events: vec![event("s-ok", "d1", 3.0)],
            ..Default::default()
        },
    ]);
    let acks: Vec<_> = ingest
        .stream_events(keyed(batches, Some(&key)))
        .await
        .unwrap()
        .into_inner()
        .map(|r| r.unwrap())
        .collect()
        .await;
    let Some(pb::stream_events_response::Outcome::Error(e)) = &acks[0].outcome else {
        panic!("{acks:?}")
    };
    assert_eq!(e.code, Code::InvalidArgument as i32);
    assert_eq!(e.reason, "validation_failed");
    assert_eq!(e.rejected[0].field, "metrics.temp");
    let Some(pb::stream_events_response::Outcome::Ack(a)) = &acks[1].outcome else {
        panic!("{acks:?}")
    };
    assert_eq!((acks[1].sequence, a.accepted), (2, 1));
    s.wait_visible().await;
    assert_eq!(
        count_sql(
            &s,
            &key,
            "SELECT count(*) AS n FROM events WHERE event_id = 's-bad'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn oversized_messages_are_resource_exhausted() {
    let s = TestServer::spawn_with(&["--max-body-size", "64KiB"], &[]).await;
    let key = s.admin_key.clone();
    let mut ingest = EventIngestionServiceClient::new(channel(&s).await);
    let before = s.log_end().await;
    let big = pb::Event {
        properties: [(
            "pad".to_string(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue("x".repeat(4000))),
            },
        )]
        .into(),
        ..event("", "d1", 1.0)
    };
    let err = ingest
        .ingest_events(keyed(
            pb::IngestEventsRequest {
                events: vec![big.clone(); 20],
                ..Default::default()
            },
            Some(&key),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("more than the limit of 65536 bytes"),
        "{}",
        err.message()
    );
    assert_eq!(s.log_end().await, before);
    // The same in a stream: the call ends with the status, nothing stored.
    let too_big = futures_util::stream::iter([pb::StreamEventsRequest {
        sequence: 1,
        events: vec![big; 20],
        ..Default::default()
    }]);
    let end = ingest
        .stream_events(keyed(too_big, Some(&key)))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(end.code(), Code::ResourceExhausted, "{end:?}");
    assert_eq!(s.log_end().await, before);
    // More events than the batch limit.
    let err = ingest
        .ingest_events(keyed(
            pb::IngestEventsRequest {
                events: vec![
                    pb::Event {
                        r#type: "t".into(),
                        ..Default::default()
                    };
                    1001
                ],
                ..Default::default()
            },
            Some(&key),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("1001"), "{}", err.message());
    assert_eq!(s.log_end().await, before);
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Padded batches of 1000 events with ids `{prefix}-{batch}-{i}`.
fn padded_batch(prefix: &str, b: u64) -> pb::StreamEventsRequest {
    pb::StreamEventsRequest {
        sequence: b,
        events: (0..1000)
            .map(|i| pb::Event {
                event_id: format!("{prefix}-{b}-{i}"),
                r#type: "reading".into(),
                device_id: format!("d{}", i % 10),
                metrics: [("n".to_string(), i as f64)].into(),
                properties: [(
                    "pad".to_string(),
                    prost_types::Value {
                        kind: Some(prost_types::value::Kind::StringValue("x".repeat(100))),
                    },
                )]
                .into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Waits until `f` gives the same non-zero value twice, 500 ms apart (a stalled pipeline),
/// up to 60 s.
async fn until_steady(mut f: impl AsyncFnMut() -> u64) -> u64 {
    let t = Instant::now();
    let mut last = f().await;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = f().await;
        if now == last && now > 0 {
            return now;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "never settled");
        last = now;
    }
}

#[tokio::test]
async fn a_stream_client_that_stops_reading_acks_stalls_the_server_without_growth() {
    let s = TestServer::spawn().await;
    let key = s.admin_key.clone();
    let mut ingest = EventIngestionServiceClient::new(channel(&s).await);
    let pid = s.pid().unwrap();
    let (tx, rx) = mpsc::channel::<pb::StreamEventsRequest>(1);
    let total = 400u64;
    let producer = tokio::spawn(async move {
        let mut sent = 0u64;
        for b in 0..total {
            if tx.send(padded_batch("slow", b)).await.is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });
    // The client never reads its acks while the server would have to buffer them.
    let resp = ingest
        .stream_events(keyed(ReceiverStream::new(rx), Some(&key)))
        .await
        .unwrap();
    let rss_start = rss_kib(pid);
    let stalled_at = until_steady(async || s.log_end().await).await;
    let rss_stalled = rss_kib(pid);
    let batches_in = stalled_at / 1000;
    assert!(
        batches_in < total / 2,
        "the server read {batches_in} of {total} batches without the client taking an ack"
    );
    assert!(
        rss_stalled < rss_start + 256 * 1024,
        "RSS grew from {rss_start} KiB to {rss_stalled} KiB while stalled"
    );
    // Reading the acks again lets everything through, in order.
    let mut acks = resp.into_inner();
    let mut next = 0;
    while let Some(a) = acks.next().await {
        let a = a.unwrap();
        assert_eq!(a.sequence, next);
        next += 1;
        if next == total {
            break;
        }
    }
    assert_eq!(producer.await.unwrap(), total);
    // One record per batch of the stream.
    assert_eq!(s.log_end().await, total);
}

#[tokio::test]
async fn sigkill_during_stream_events_loses_no_acknowledged_event() {
    let mut s = TestServer::spawn().await;
    let key = s.admin_key.clone();
    let mut ingest = EventIngestionServiceClient::new(channel(&s).await);
    let pid = s.pid().unwrap();
    let (tx, rx) = mpsc::channel::<pb::StreamEventsRequest>(4);
    tokio::spawn(async move {
        for b in 0..10_000 {
            if tx.send(padded_batch("crash", b)).await.is_err() {
                break;
            }
        }
    });
    let mut acks = ingest
        .stream_events(keyed(ReceiverStream::new(rx), Some(&key)))
        .await
        .unwrap()
        .into_inner();
    let mut acked = Vec::new();
    while let Some(a) = acks.next().await {
        let Ok(a) = a else { break };
        let Some(pb::stream_events_response::Outcome::Ack(ack)) = a.outcome else {
            panic!("{a:?}")
        };
        assert_eq!(ack.accepted, 1000);
        acked.push(a.sequence);
        if acked.len() == 20 {
            // Killed with batches in flight.
            TestServer::sigkill(pid);
        }
    }
    assert!(acked.len() >= 20, "{}", acked.len());
    s.kill9();
    s.start();
    s.wait_visible().await;
    let n = count_sql(&s, &key, "SELECT count(*) AS n FROM events").await;
    let distinct = count_sql(&s, &key, "SELECT count(DISTINCT event_id) AS n FROM events").await;
    assert_eq!(n, distinct, "an event was stored twice");
    let max_acked = *acked.iter().max().unwrap() as i64;
    assert!(
        n >= acked.len() as i64 * 1000,
        "{n} events for {} acked batches",
        acked.len()
    );
    for b in [0, max_acked / 2, max_acked] {
        let one = count_sql(
            &s,
            &key,
            &format!("SELECT count(*) AS n FROM events WHERE event_id LIKE 'crash-{b}-%'"),
        )
        .await;
        assert_eq!(one, 1000, "acked batch {b}");
    }
    // Sending everything again stores only what was lost, as duplicates of the rest.
    let mut ingest = EventIngestionServiceClient::new(channel(&s).await);
    let again =
        futures_util::stream::iter((0..=max_acked as u64 + 2).map(|b| padded_batch("crash", b)));
    let acks: Vec<_> = ingest
        .stream_events(keyed(again, Some(&key)))
        .await
        .unwrap()
        .into_inner()
        .map(|r| r.unwrap())
        .collect()
        .await;
    for a in &acks {
        let Some(pb::stream_events_response::Outcome::Ack(ack)) = &a.outcome else {
            panic!("{a:?}")
        };
        if (a.sequence as i64) <= max_acked {
            assert_eq!(
                ack.duplicates, 1000,
                "batch {} was acked before",
                a.sequence
            );
        }
    }
}

#[tokio::test]
async fn sigterm_ends_streams_after_their_inflight_acks() {
    let mut s = TestServer::spawn().await;
    let key = s.admin_key.clone();
    let mut ingest = EventIngestionServiceClient::new(channel(&s).await);
    let (tx, rx) = mpsc::channel::<pb::StreamEventsRequest>(1);
    let feeder = tokio::spawn(async move {
        for b in 0..1_000_000 {
            if tx.send(padded_batch("term", b)).await.is_err() {
                break;
            }
        }
    });
    let mut acks = ingest
        .stream_events(keyed(ReceiverStream::new(rx), Some(&key)))
        .await
        .unwrap()
        .into_inner();
    let mut acked = 0u64;
    let pid = s.pid().unwrap();
    let end = loop {
        match acks.next().await {
            Some(Ok(a)) => {
                assert_eq!(a.sequence, acked, "acks out of order");
                acked += 1;
                if acked == 5 {
                    TestServer::sigterm(pid);
                }
            }
            Some(Err(status)) => break Some(status),
            None => break None,
        }
    };
    let status = end.expect("the stream must end with a status saying why");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("shutting down"),
        "{}",
        status.message()
    );
    feeder.abort();
    assert!(s.terminate().success());
    s.start();
    s.wait_visible().await;
    // Every acked batch is stored, each event once (batches read but not acked may be too).
    let acked_stored = count_sql(
        &s,
        &key,
        &format!(
            "SELECT count(DISTINCT event_id) AS n FROM events WHERE CAST(split_part(event_id, '-', 2) AS BIGINT) < {acked}"
        ),
    )
    .await;
    assert_eq!(acked_stored as u64, acked * 1000);
    let n = count_sql(&s, &key, "SELECT count(*) AS n FROM events").await;
    let distinct = count_sql(&s, &key, "SELECT count(DISTINCT event_id) AS n FROM events").await;
    assert_eq!(n, distinct, "an event was stored twice");
}

#[tokio::test]
async fn a_client_deadline_ends_a_live_stream_with_deadline_exceeded() {
    let s = TestServer::spawn().await;
    let key = s.admin_key.clone();
    let mut analytics = AnalyticsServiceClient::new(channel(&s).await);
    let mut req = keyed(pb::GetRealTimeAnalyticsRequest::default(), Some(&key));
    req.set_timeout(Duration::from_millis(300));
    let t = Instant::now();
    let mut live = analytics
        .get_real_time_analytics(req)
        .await
        .unwrap()
        .into_inner();
    let end = live.next().await.expect("the stream ends with a status");
    let status = end.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(t.elapsed() < Duration::from_secs(10));
    s.wait_metric(r#"eddy_grpc_requests_total{method="eddy.v1.AnalyticsService/GetRealTimeAnalytics",code="DEADLINE_EXCEEDED"} 1"#).await;
}

#[tokio::test]
async fn live_streams_carry_only_the_callers_tenant() {
    let s = TestServer::spawn().await;
    let (_, a_key, _) = s.tenant_with_key("a", &["read_write"]).await;
    let (_, b_key, _) = s.tenant_with_key("b", &["read_write"]).await;
    let ch = channel(&s).await;
    let mut analytics = AnalyticsServiceClient::new(ch.clone());
    let mut metrics = MetricsServiceClient::new(ch.clone());
    let mut ingest = EventIngestionServiceClient::new(ch);
    let mut live = analytics
        .get_real_time_analytics(keyed(
            pb::GetRealTimeAnalyticsRequest::default(),
            Some(&a_key),
        ))
        .await
        .unwrap()
        .into_inner();
    let mut samples = metrics
        .stream_metrics(keyed(pb::StreamMetricsRequest::default(), Some(&a_key)))
        .await
        .unwrap()
        .into_inner();
    // The other tenant's event is appended first: a leak would arrive first.
    for (key, id) in [(&b_key, "from-b"), (&a_key, "from-a")] {
        ingest
            .ingest_event(keyed(
                pb::IngestEventRequest {
                    event: Some(event(id, "shared-device", 1.0)),
                },
                Some(key),
            ))
            .await
            .unwrap();
    }
    let first_event = loop {
        let m = tokio::time::timeout(Duration::from_secs(10), live.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(pb::live_message::Data::Event(e)) = m.data {
            break e;
        }
    };
    assert_eq!(first_event.event_id, "from-a");
    let sample = tokio::time::timeout(Duration::from_secs(10), samples.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(sample.event_id, "from-a");
}
