//! Services against seams in a temp dir (WAL, file catalog, memory dedup) and a fake series
//! index: no server, no HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use eddy_log::Log;
use eddy_log::wal::{Wal, WalConfig};
use eddy_model::batch::BodyFormat;
use eddy_model::{Entry, ManualClock, codec};

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use crate::admin::{CreateKey, CreateTenant, UpdateTenant};
use crate::alerts::{
    Alert, AlertActionKind, AlertFilter, AlertPage, AlertQuery, AlertsEngine, MAX_RULES, Rule,
    RuleSpec, Severity, Status,
};
use crate::auth::{Principal, Scope, authenticate};
use crate::catalog::{Catalog, DEFAULT_TENANT};
use crate::dedup::{DedupIndex, MemoryDedup};
use crate::file_catalog::FileCatalog;
use crate::ingest::{IngestBody, IngestConfig, IngestRequest};
use crate::ops::{PipelineStatus, StoreStatus};
use crate::series::SeriesIndex;
use crate::{Error, Seams, ServiceConfig, Services};

/// A series index holding `held` series of `known` metrics, counting its lookups.
#[derive(Debug, Default)]
struct FakeSeries {
    limit: usize,
    known: Vec<String>,
    lookups: AtomicUsize,
}

impl SeriesIndex for FakeSeries {
    fn limit(&self) -> usize {
        self.limit
    }
    fn series_count(&self, _tenant: &str) -> usize {
        self.known.len()
    }
    fn unknown_series(&self, _tenant: &str, series: &[(&str, &str)]) -> Vec<usize> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        (0..series.len())
            .filter(|i| !self.known.iter().any(|k| *k == series[*i].1))
            .collect()
    }
}

/// A stream processor stand-in: applies rule changes and alert actions from the log when
/// waited on (unless stalled), like the real one does in log order.
#[derive(Debug, Default)]
struct FakeProcessor {
    log: Mutex<Option<Arc<Wal>>>,
    stalled: AtomicBool,
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    applied: u64,
    rules: BTreeMap<(String, String), Rule>,
    alerts: BTreeMap<(String, String), Alert>,
}

impl FakeProcessor {
    fn apply(&self) {
        let log = self.log.lock().unwrap().clone().unwrap();
        let mut st = self.state.lock().unwrap();
        for rec in log.read(st.applied, 10_000).unwrap() {
            st.applied = rec.offset + 1;
            match codec::decode_entry(&rec.payload).unwrap().entry {
                Some(Entry::RuleChange(c)) => {
                    let key = (c.tenant, c.rule_id);
                    match c.rule_json {
                        Some(j) => {
                            st.rules.insert(key, serde_json::from_str(&j).unwrap());
                        }
                        None => {
                            st.rules.remove(&key);
                        }
                    }
                }
                Some(Entry::AlertAction(a)) => {
                    if let Some(al) = st.alerts.get_mut(&(a.tenant, a.alert_id)) {
                        if a.action == "acknowledge" {
                            al.status = Status::Acknowledged;
                            al.acknowledged_at = Some(a.at);
                        } else {
                            al.status = Status::Resolved;
                            al.resolved_at = Some(a.at);
                            al.resolution = Some("manual".into());
                        }
                        al.note = a.note;
                    }
                }
                _ => {}
            }
        }
    }

    fn open_alert(&self, tenant: &str, id: &str) {
        self.state.lock().unwrap().alerts.insert(
            (tenant.into(), id.into()),
            Alert {
                id: id.into(),
                rule_id: "default".into(),
                rule_name: "default".into(),
                rule_kind: "zscore".into(),
                device_id: "d1".into(),
                metric: "temp".into(),
                severity: Severity::Warning,
                status: Status::Open,
                message: "temp on d1 is high".into(),
                value: Some(99.0),
                expected: Some(20.0),
                score: Some(f64::INFINITY),
                occurrences: 1,
                opened_at: 0,
                last_triggered_at: 0,
                acknowledged_at: None,
                resolved_at: None,
                resolution: None,
                note: None,
            },
        );
    }
}

#[async_trait::async_trait]
impl AlertsEngine for FakeProcessor {
    fn rules(&self, tenant: &str) -> crate::Result<Vec<Rule>> {
        let st = self.state.lock().unwrap();
        Ok(st
            .rules
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, r)| r.clone())
            .collect())
    }
    fn rule(&self, tenant: &str, id: &str) -> crate::Result<Option<Rule>> {
        let st = self.state.lock().unwrap();
        Ok(st.rules.get(&(tenant.into(), id.into())).cloned())
    }
    fn alerts(&self, tenant: &str, f: &AlertFilter, limit: usize) -> crate::Result<AlertPage> {
        let st = self.state.lock().unwrap();
        let all: Vec<Alert> = st
            .alerts
            .iter()
            .filter(|((t, _), a)| t == tenant && f.matches(a))
            .map(|(_, a)| a.clone())
            .collect();
        Ok(AlertPage {
            total: all.len(),
            alerts: all.into_iter().take(limit).collect(),
            suppressed: 0,
        })
    }
    fn alert(&self, tenant: &str, id: &str) -> crate::Result<Option<Alert>> {
        let st = self.state.lock().unwrap();
        Ok(st.alerts.get(&(tenant.into(), id.into())).cloned())
    }
    async fn wait_applied(&self, offset: u64, _timeout: std::time::Duration) -> bool {
        if self.stalled.load(Ordering::Relaxed) {
            // Stalled: nothing new is applied.
            return self.state.lock().unwrap().applied >= offset;
        }
        self.apply();
        self.state.lock().unwrap().applied >= offset
    }
}

#[derive(Debug)]
struct FakePipeline;

impl PipelineStatus for FakePipeline {
    fn store(&self) -> StoreStatus {
        StoreStatus {
            applied_offset: 1,
            ..Default::default()
        }
    }
    fn stream_applied_offset(&self) -> u64 {
        0
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    services: Services,
    wal: Arc<Wal>,
    admin: Principal,
    admin_secret: String,
    processor: Arc<FakeProcessor>,
    catalog: Arc<dyn Catalog>,
    series: Arc<FakeSeries>,
}

fn fixture(series: FakeSeries, default_events_per_sec: u32) -> Fixture {
    let series = Arc::new(series);
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(WalConfig::new(dir.path().join("wal"))).unwrap());
    let (catalog, secret) = FileCatalog::open(dir.path(), None).unwrap();
    let catalog: Arc<dyn Catalog> = Arc::new(catalog);
    let admin = authenticate(catalog.as_ref(), secret.as_deref()).unwrap();
    let processor = Arc::new(FakeProcessor::default());
    *processor.log.lock().unwrap() = Some(wal.clone());
    let services = Services::new(
        ServiceConfig {
            ingest: IngestConfig {
                limits: eddy_model::Limits::default(),
                max_batch_events: 100,
                default_retention: std::time::Duration::ZERO,
                default_events_per_sec,
                max_pipeline_lag: std::time::Duration::ZERO,
            },
            max_result_rows: 1000,
            late_after_ns: 0,
        },
        Seams {
            log: wal.clone(),
            catalog: catalog.clone(),
            dedup: Arc::new(MemoryDedup::new(i64::MAX, 1000)),
            series: series.clone(),
            alerts: processor.clone(),
            pipeline: Arc::new(FakePipeline),
            store: Arc::new(crate::test_store::FakeStore::default()),
            rollups: Arc::new(crate::query_tests::FakeRollups::default()),
            live: Arc::new(crate::live::tests::FakeFeed::default()),
            clock: Arc::new(ManualClock::new(1_700_000_000_000_000_000)),
        },
    );
    Fixture {
        _dir: dir,
        admin_secret: secret.clone().unwrap(),
        services,
        wal,
        admin,
        processor,
        catalog,
        series,
    }
}

fn events(body: &str, partial: bool) -> IngestRequest {
    IngestRequest {
        body: IngestBody::Raw {
            body: Bytes::from(body.to_string()),
            format: BodyFormat::Json,
        },
        partial,
        sync: true,
        max_events: usize::MAX,
    }
}

fn entries(log: &dyn Log) -> Vec<Entry> {
    log.read(0, 1000)
        .unwrap()
        .iter()
        .filter_map(|r| codec::decode_entry(&r.payload).unwrap().entry)
        .collect()
}

#[tokio::test]
async fn keys_are_answered_without_their_hash_and_the_secret_only_once() {
    let f = fixture(FakeSeries::default(), 0);
    let admin = &f.services.admin;
    let t = admin
        .create_tenant(
            &f.admin,
            CreateTenant {
                name: "acme".into(),
                events_per_sec: None,
                retention: Some("90d".into()),
            },
        )
        .unwrap();
    assert_eq!(t.retention.as_deref(), Some("90d"));
    assert_eq!(t.retention_secs, Some(90 * 86_400));
    let created = admin
        .create_key(
            &f.admin,
            &t.id,
            CreateKey {
                name: "ingest".into(),
                scopes: vec!["write".into()],
            },
        )
        .unwrap();
    let v = serde_json::to_value(&created).unwrap();
    assert_eq!(v["key"], created.key.as_str());
    assert!(v.get("hash").is_none(), "{v}");
    assert!(created.key.starts_with(&created.view.prefix));
    let listed = serde_json::to_value(admin.list_keys(&f.admin, &t.id).unwrap()).unwrap();
    let text = listed.to_string();
    assert!(
        !text.contains("hash") && !text.contains(&created.key),
        "{text}"
    );
    // The stored record does hold the hash: the view drops it by type.
    let stored = f.catalog.keys(&t.id).unwrap();
    assert_eq!(stored[0].hash.len(), 64);
    // The new key is a write key of the new tenant.
    let p = authenticate(f.services.auth.as_ref(), Some(&created.key)).unwrap();
    assert_eq!(p.tenant_id, t.id);
    assert!(matches!(
        admin.list_tenants(&p),
        Err(Error::PermissionDenied(_))
    ));
    // No key revokes itself: the admin would lock itself out.
    let own = (f.admin.tenant_id.clone(), f.admin.key_id.clone());
    assert!(matches!(
        admin.revoke_key(&f.admin, &own.0, &own.1),
        Err(Error::Conflict(_))
    ));
    assert!(authenticate(f.services.auth.as_ref(), Some(&f.admin_secret)).is_ok());
    admin.revoke_key(&f.admin, &t.id, &created.view.id).unwrap();
    assert!(authenticate(f.services.auth.as_ref(), Some(&created.key)).is_err());
}

#[tokio::test]
async fn tenant_deletion_writes_a_tombstone_then_forgets_keys_and_dedup() {
    let f = fixture(FakeSeries::default(), 0);
    let s = &f.services;
    let t = s
        .admin
        .create_tenant(
            &f.admin,
            CreateTenant {
                name: "gone".into(),
                events_per_sec: None,
                retention: None,
            },
        )
        .unwrap();
    let key = s
        .admin
        .create_key(
            &f.admin,
            &t.id,
            CreateKey {
                name: String::new(),
                scopes: vec!["read_write".into()],
            },
        )
        .unwrap();
    let writer = authenticate(s.auth.as_ref(), Some(&key.key)).unwrap();
    let o = s
        .ingest
        .ingest(&writer, events(r#"{"event_id":"e1","type":"a"}"#, false))
        .await
        .unwrap();
    assert_eq!((o.accepted, o.offsets.clone()), (1, Some(0..1)));
    assert_eq!(s.dedup.len(), 1);
    assert_eq!(s.ops.counters(&writer).unwrap().events_accepted, 1);

    // Not the default tenant, not an unknown one, not without the admin scope.
    assert!(matches!(
        s.admin.delete_tenant(&f.admin, DEFAULT_TENANT).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        s.admin.delete_tenant(&f.admin, "tn_nope").await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        s.admin.delete_tenant(&writer, &t.id).await,
        Err(Error::PermissionDenied(_))
    ));
    assert_eq!(f.wal.end_offset(), 1, "refusals write nothing");

    s.admin.delete_tenant(&f.admin, &t.id).await.unwrap();
    let log = entries(f.wal.as_ref());
    assert!(
        matches!(log.last(), Some(Entry::TenantDeleted(d)) if d.tenant == t.id),
        "{log:?}"
    );
    assert!(matches!(
        s.admin.get_tenant(&f.admin, &t.id),
        Err(Error::NotFound(_))
    ));
    assert!(s.auth.authenticate(&key.key).is_none(), "its keys are gone");
    assert_eq!(s.dedup.len(), 0, "its event ids are forgotten");
    assert_eq!(s.ops.counters(&writer).unwrap().events_accepted, 0);
    // A request already holding the principal finds the tenant gone.
    assert!(matches!(
        s.ingest
            .ingest(&writer, events(r#"{"type":"a"}"#, false))
            .await,
        Err(Error::Unauthenticated(_))
    ));
}

#[tokio::test]
async fn update_tenant_validates_before_it_changes_anything() {
    let f = fixture(FakeSeries::default(), 0);
    let a = &f.services.admin;
    let bad = a.update_tenant(
        &f.admin,
        DEFAULT_TENANT,
        UpdateTenant {
            retention: Some(Some("lots".into())),
            ..Default::default()
        },
    );
    match bad {
        Err(Error::InvalidArgument { code, message, .. }) => {
            assert_eq!(code, "invalid_retention");
            assert!(message.contains("`retention` `lots`"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let bad_url = a.update_tenant(
        &f.admin,
        DEFAULT_TENANT,
        UpdateTenant {
            webhook_url: Some(Some("ftp://example.com/x".into())),
            ..Default::default()
        },
    );
    assert!(matches!(
        bad_url,
        Err(Error::InvalidArgument {
            code: "invalid_webhook_url",
            ..
        })
    ));
    let t = a.get_tenant(&f.admin, DEFAULT_TENANT).unwrap();
    assert_eq!((t.retention, t.webhook_url), (None, None));
    let t = a
        .update_tenant(
            &f.admin,
            DEFAULT_TENANT,
            UpdateTenant {
                events_per_sec: Some(Some(5)),
                retention: Some(Some("0".into())),
                webhook_url: Some(Some("http://127.0.0.1:9/hook".into())),
            },
        )
        .unwrap();
    assert_eq!(t.events_per_sec, Some(5));
    assert_eq!(t.retention_secs, Some(0));
    assert_eq!(t.webhook_url.as_deref(), Some("http://127.0.0.1:9/hook"));
    let t = a
        .update_tenant(
            &f.admin,
            DEFAULT_TENANT,
            UpdateTenant {
                events_per_sec: Some(None),
                webhook_url: Some(Some(String::new())),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((t.events_per_sec, t.webhook_url), (None, None));
    assert_eq!(t.retention_secs, Some(0), "absent fields are kept");
}

#[tokio::test]
async fn ingest_is_all_or_nothing_unless_partial() {
    let f = fixture(FakeSeries::default(), 0);
    let s = &f.services;
    let batch = r#"[{"event_id":"a","type":"x"},{"type":"x","metrics":{"t":"hot"}},{"type":"x"}]"#;
    match s.ingest.ingest(&f.admin, events(batch, false)).await {
        Err(Error::InvalidArgument { code, errors, .. }) => {
            assert_eq!(code, "validation_failed");
            assert_eq!(errors.len(), 1);
            assert_eq!(
                (errors[0].index, errors[0].field.as_str()),
                (1, "metrics.t")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.wal.end_offset(), 0, "nothing stored");
    assert_eq!(s.dedup.len(), 0, "nothing reserved");
    let o = s
        .ingest
        .ingest(&f.admin, events(batch, true))
        .await
        .unwrap();
    assert_eq!((o.accepted, o.duplicates, o.rejected.len()), (2, 0, 1));
    assert!(o.is_batch && o.durable);
    // The request's two valid events are one (batch) record.
    assert_eq!(o.offsets, Some(0..1));
    // The same id again is a duplicate, acknowledged but not stored.
    let o = s
        .ingest
        .ingest(&f.admin, events(r#"{"event_id":"a","type":"x"}"#, false))
        .await
        .unwrap();
    assert_eq!((o.accepted, o.duplicates), (0, 1));
    assert_eq!(f.wal.end_offset(), 1);
    assert_eq!(o.event_ids, vec!["a".to_string()]);
    // A batch with a duplicate stores only its new events.
    let o = s
        .ingest
        .ingest(
            &f.admin,
            events(
                r#"[{"event_id":"a","type":"x"},{"event_id":"c","type":"x"},{"event_id":"d","type":"x"}]"#,
                false,
            ),
        )
        .await
        .unwrap();
    assert_eq!((o.accepted, o.duplicates, o.offsets), (2, 1, Some(1..2)));
    let rec = f.wal.read(1, 10).unwrap();
    let stored = match codec::decode(&rec[0].payload).unwrap() {
        codec::Decoded::Events(c) => c.events(),
        other => panic!("{other:?}"),
    };
    let ids: Vec<&str> = stored.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["c", "d"]);
    // Too many events for the route.
    let mut req = events(r#"[{"type":"x"},{"type":"x"}]"#, false);
    req.max_events = 1;
    assert!(matches!(
        s.ingest.ingest(&f.admin, req).await,
        Err(Error::TooLarge(_))
    ));
}

#[tokio::test]
async fn ingest_needs_the_write_scope() {
    let f = fixture(FakeSeries::default(), 0);
    let mut reader = f.admin.clone();
    reader.scopes = [Scope::Read].into_iter().collect();
    assert!(matches!(
        f.services
            .ingest
            .ingest(&reader, events(r#"{"type":"x"}"#, false))
            .await,
        Err(Error::PermissionDenied(_))
    ));
    assert_eq!(f.wal.end_offset(), 0);
}

#[tokio::test]
async fn series_limit_counts_held_series_and_the_requests_own() {
    let f = fixture(
        FakeSeries {
            limit: 3,
            known: vec!["t".into(), "h".into()],
            ..Default::default()
        },
        0,
    );
    let s = &f.services;
    // `t` is held; `p` is the third series; `q` would be the fourth.
    let batch = r#"[{"device_id":"d","metrics":{"t":1}},{"device_id":"d","metrics":{"p":1}},{"device_id":"d","metrics":{"p":2}},{"device_id":"d","metrics":{"q":1}}]"#;
    let o = s
        .ingest
        .ingest(&f.admin, events(batch, true))
        .await
        .unwrap();
    assert_eq!(o.accepted, 3);
    assert_eq!(o.rejected.len(), 1);
    assert_eq!(
        (o.rejected[0].index, o.rejected[0].field.as_str()),
        (3, "metrics.q")
    );
    assert!(
        o.rejected[0].reason.contains("limit of 3 series"),
        "{:?}",
        o.rejected
    );
    // The index (the processor, behind its lock) is asked once for the request, not per event.
    assert_eq!(f.series.lookups.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn quota_refusal_stores_nothing_and_says_when_to_retry() {
    let f = fixture(FakeSeries::default(), 2);
    let s = &f.services;
    // The burst is one batch (100 here) or one second's worth, whichever is larger.
    let hundred = format!("[{}]", vec![r#"{"type":"x"}"#; 100].join(","));
    s.ingest
        .ingest(&f.admin, events(&hundred, false))
        .await
        .unwrap();
    match s.ingest.ingest(&f.admin, events(&hundred, false)).await {
        Err(e @ Error::ResourceExhausted { .. }) => {
            // 100 more events at 2 events/s: about 50 s.
            let wait = e.retry_after_secs().unwrap();
            assert!((45..=51).contains(&wait), "{wait}");
            assert!(e.to_string().contains("2 events/s"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.wal.end_offset(), 1, "the first hundred, as one record");
    assert_eq!(s.ops.counters(&f.admin).unwrap().requests_rate_limited, 1);
}

#[test]
fn memory_dedup_rebuilds_from_the_log_and_drops_deleted_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(WalConfig::new(dir.path())).unwrap();
    let event = |tenant: &str, id: &str, client_id: bool| eddy_model::Event {
        tenant: tenant.into(),
        event_id: id.into(),
        r#type: "x".into(),
        client_id,
        ..Default::default()
    };
    let ev = |tenant: &str, id: &str| Bytes::from(codec::encode_event(&event(tenant, id, true)));
    // A batch record: two client ids and a generated one (never a dedup key).
    let batch = codec::encode_events(
        "a",
        &[
            event("a", "3", true),
            event("a", "gen", false),
            event("a", "4", true),
        ],
    )
    .unwrap();
    assert_eq!(batch.len(), 1);
    let tomb = eddy_model::LogEntry {
        entry: Some(Entry::TenantDeleted(eddy_model::TenantDeleted {
            tenant: "b".into(),
            deleted_at: 0,
        })),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        wal.append(vec![
            ev("a", "1"),
            ev("b", "1"),
            codec::encode_entry(&tomb).into(),
            ev("a", "2"),
            batch[0].clone(),
        ])
        .unwrap()
        .durable()
        .await
        .unwrap();
    });
    let d = MemoryDedup::new(i64::MAX, 100);
    assert_eq!(d.rebuild_from_log(&wal, 0).unwrap(), 5);
    assert_eq!(
        d.len(),
        4,
        "a/1, a/2 and the batch's a/3, a/4; b/1 dropped by the tombstone"
    );
}

fn threshold(max: f64) -> RuleSpec {
    serde_json::from_value(serde_json::json!({"kind": "threshold", "op": ">", "value": max}))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_rule_limit_holds_under_concurrent_creates() {
    let f = Arc::new(fixture(FakeSeries::default(), 0));
    for i in 0..MAX_RULES - 1 {
        f.services
            .alerts
            .create_rule(&f.admin, Some(format!("r{i}")), threshold(1.0))
            .await
            .unwrap();
    }
    // Eight at once for the last free place: exactly one gets it.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let f = f.clone();
            tokio::spawn(async move {
                f.services
                    .alerts
                    .create_rule(&f.admin, Some(format!("last{i}")), threshold(1.0))
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(Error::Conflict(m)) => assert!(m.contains("at most"), "{m}"),
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(
        f.services.alerts.list_rules(&f.admin).unwrap().len(),
        MAX_RULES
    );
    // Replacing an existing rule is no new rule; a new one by PUT is refused.
    let (_, created) = f
        .services
        .alerts
        .put_rule(&f.admin, "r0", threshold(2.0))
        .await
        .unwrap();
    assert!(!created);
    assert!(matches!(
        f.services
            .alerts
            .put_rule(&f.admin, "fresh", threshold(2.0))
            .await,
        Err(Error::Conflict(_))
    ));
}

#[tokio::test]
async fn rules_are_validated_named_and_patched_through_the_log() {
    let f = fixture(FakeSeries::default(), 0);
    let a = &f.services.alerts;
    let bad: RuleSpec =
        serde_json::from_value(serde_json::json!({"kind": "threshold", "op": ">"})).unwrap();
    match a.create_rule(&f.admin, None, bad).await {
        Err(Error::InvalidArgument { code, errors, .. }) => {
            assert_eq!(code, "validation_failed");
            assert_eq!(errors.len(), 1, "{errors:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        a.create_rule(&f.admin, Some("no spaces".into()), threshold(1.0))
            .await,
        Err(Error::InvalidArgument { .. })
    ));
    assert_eq!(f.wal.end_offset(), 0, "refused rules write nothing");
    let r = a.create_rule(&f.admin, None, threshold(5.0)).await.unwrap();
    assert!(r.id.starts_with("rule-"), "{}", r.id);
    assert!(matches!(
        a.create_rule(&f.admin, Some(r.id.clone()), threshold(5.0))
            .await,
        Err(Error::Conflict(_))
    ));
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        (v["kind"].as_str(), v["value"].as_f64()),
        (Some("threshold"), Some(5.0))
    );
    assert!(v["created_at"].as_str().unwrap().ends_with('Z'), "{v}");
    let mut patch = serde_json::Map::new();
    patch.insert("value".into(), serde_json::json!(7.5));
    patch.insert("name".into(), serde_json::json!("hot"));
    let p = a.patch_rule(&f.admin, &r.id, patch).await.unwrap();
    assert_eq!(
        (p.name.as_str(), p.created_at.as_str()),
        ("hot", r.created_at.as_str())
    );
    assert_eq!(serde_json::to_value(&p).unwrap()["value"], 7.5);
    a.delete_rule(&f.admin, &r.id).await.unwrap();
    assert!(matches!(
        a.get_rule(&f.admin, &r.id),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        a.delete_rule(&f.admin, &r.id).await,
        Err(Error::NotFound(_))
    ));
    // Stored but not applied in time: the client hears so (503), and it takes effect later.
    f.processor.stalled.store(true, Ordering::Relaxed);
    match a
        .create_rule(&f.admin, Some("later".into()), threshold(1.0))
        .await
    {
        Err(e @ Error::Unavailable { .. }) => assert_eq!(e.retry_after_secs(), Some(1)),
        other => panic!("{other:?}"),
    }
    // While the processor has not applied it, the next change waits for it (and here, stalled,
    // is refused): it cannot pass the id or limit checks on rules that are out of date.
    let end = f.wal.end_offset();
    assert!(matches!(
        a.create_rule(&f.admin, Some("later".into()), threshold(1.0))
            .await,
        Err(Error::Unavailable { .. })
    ));
    assert_eq!(f.wal.end_offset(), end, "nothing appended meanwhile");
    f.processor.stalled.store(false, Ordering::Relaxed);
    let again = a
        .create_rule(&f.admin, Some("later".into()), threshold(1.0))
        .await;
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
    assert!(a.get_rule(&f.admin, "later").is_ok());
}

#[tokio::test]
async fn alert_transitions_are_idempotent_and_a_resolved_alert_stays_resolved() {
    let f = fixture(FakeSeries::default(), 0);
    let a = &f.services.alerts;
    f.processor.open_alert(DEFAULT_TENANT, "alert-1");
    let mut reader = f.admin.clone();
    reader.scopes = [Scope::Read].into_iter().collect();
    assert!(matches!(
        a.act(&reader, "alert-1", AlertActionKind::Acknowledge, None)
            .await,
        Err(Error::PermissionDenied(_))
    ));
    assert!(matches!(
        a.act(
            &f.admin,
            "alert-1",
            AlertActionKind::Acknowledge,
            Some("x".repeat(1001))
        )
        .await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        a.act(&f.admin, "alert-9", AlertActionKind::Resolve, None)
            .await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(f.wal.end_offset(), 0);
    let v = a
        .act(
            &f.admin,
            "alert-1",
            AlertActionKind::Acknowledge,
            Some("on it".into()),
        )
        .await
        .unwrap();
    assert_eq!(
        (v.status, v.note.as_deref()),
        (Status::Acknowledged, Some("on it"))
    );
    assert!(v.acknowledged_at.is_some() && v.score.is_none(), "{v:?}");
    // Again: answered with the alert, nothing appended.
    a.act(&f.admin, "alert-1", AlertActionKind::Acknowledge, None)
        .await
        .unwrap();
    assert_eq!(f.wal.end_offset(), 1);
    let v = a
        .act(&f.admin, "alert-1", AlertActionKind::Resolve, None)
        .await
        .unwrap();
    assert_eq!(v.status, Status::Resolved);
    match a
        .act(&f.admin, "alert-1", AlertActionKind::Acknowledge, None)
        .await
    {
        Err(Error::Conflict(m)) => assert!(m.contains("resolved"), "{m}"),
        other => panic!("{other:?}"),
    }
    a.act(&f.admin, "alert-1", AlertActionKind::Resolve, None)
        .await
        .unwrap();
    assert_eq!(f.wal.end_offset(), 2);
    // Listing: filters and limits are checked here, for every protocol.
    let list = a
        .list_alerts(
            &reader,
            AlertQuery {
                status: Some("resolved".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((list.total, list.data.len()), (1, 1));
    for bad in [
        AlertQuery {
            status: Some("closed".into()),
            ..Default::default()
        },
        AlertQuery {
            severity: Some("fatal".into()),
            ..Default::default()
        },
        AlertQuery {
            limit: Some("0".into()),
            ..Default::default()
        },
    ] {
        assert!(matches!(
            a.list_alerts(&reader, bad),
            Err(Error::InvalidArgument {
                code: "invalid_parameter",
                ..
            })
        ));
    }
}

#[tokio::test]
async fn ops_answers_readiness_stats_and_lag_for_the_callers_tenant() {
    let f = fixture(FakeSeries::default(), 0);
    let ops = &f.services.ops;
    assert!(ops.ready().ready);
    f.services
        .ingest
        .ingest(&f.admin, events(r#"{"type":"x"}"#, false))
        .await
        .unwrap();
    let st = ops.stats(&f.admin).unwrap();
    assert_eq!(
        (st.tenant_id.as_str(), st.since_start.events_accepted),
        (DEFAULT_TENANT, 1)
    );
    assert_eq!(st.log.end_offset, 1);
    let lag = ops.lag(&f.admin).unwrap();
    assert_eq!((lag.store.lag, lag.stream.lag), (0, 1));
    let mut writer = f.admin.clone();
    writer.scopes = [Scope::Write].into_iter().collect();
    assert!(matches!(
        ops.stats(&writer),
        Err(Error::PermissionDenied(_))
    ));
    f.wal.inject_sync_failure();
    let _ = f
        .services
        .ingest
        .ingest(&f.admin, events(r#"{"type":"x"}"#, false))
        .await;
    let r = ops.ready();
    assert!(!r.ready);
    assert_eq!((r.status, r.log), ("not_ready", "failed"));
}

/// The SQL service builds the engine tables only when the statement's parse tree reads them.
#[tokio::test]
async fn sql_builds_only_the_tables_a_statement_reads() {
    let store = Arc::new(crate::test_store::FakeStore::default());
    let processor = Arc::new(FakeProcessor::default());
    processor.open_alert("t1", "alert-1");
    let sql = crate::sql::SqlService::new(
        store.clone(),
        Arc::new(crate::query_tests::FakeRollups::default()),
        processor,
        1000,
    );
    let p = Principal {
        tenant_id: "t1".into(),
        key_id: "k".into(),
        scopes: [Scope::Read].into_iter().collect(),
    };
    for statement in [
        "SELECT count(*) FROM events",
        "SELECT 'alerts' AS rollups FROM events",
        "WITH alerts AS (SELECT 1) SELECT * FROM alerts",
        "SELECT * FROM rollups",
        "SELECT a.id FROM alerts a JOIN rollup_counts c ON true",
    ] {
        sql.query(&p, statement.into()).await.unwrap();
    }
    let built = store.sql_extra.lock().unwrap().clone();
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        built,
        vec![
            names(&[]),
            names(&[]),
            names(&[]),
            names(&["rollups", "rollup_counts"]),
            names(&["rollups", "rollup_counts", "alerts"]),
        ]
    );
    // Too long, empty, unparsable, or without the read scope: refused before any table is
    // built.
    for bad in [
        "x".repeat(crate::sql::MAX_SQL_BYTES + 1),
        " ".into(),
        "SELEC 1".into(),
    ] {
        let e = sql.query(&p, bad).await.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    }
    let writer = Principal {
        scopes: [Scope::Write].into_iter().collect(),
        ..p
    };
    let e = sql.query(&writer, "SELECT 1".into()).await.unwrap_err();
    assert!(matches!(e, Error::PermissionDenied(_)), "{e:?}");
    assert_eq!(store.sql_extra.lock().unwrap().len(), 5);
}
