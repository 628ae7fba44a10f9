//! Services against seams in a temp dir (WAL, file catalog, memory dedup) and a fake series
//! index: no server, no HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use eddy_log::Log;
use eddy_log::wal::{Wal, WalConfig};
use eddy_model::batch::BodyFormat;
use eddy_model::{Entry, ManualClock, codec};

use crate::admin::{CreateKey, CreateTenant, UpdateTenant};
use crate::auth::{Principal, Scope, authenticate};
use crate::catalog::{Catalog, DEFAULT_TENANT};
use crate::dedup::{DedupIndex, MemoryDedup};
use crate::file_catalog::FileCatalog;
use crate::ingest::{IngestConfig, IngestRequest};
use crate::series::SeriesIndex;
use crate::{Error, Seams, Services};

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
    fn unknown_metrics(&self, _tenant: &str, _device: &str, metrics: &[&str]) -> Vec<usize> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        (0..metrics.len())
            .filter(|i| !self.known.iter().any(|k| k == metrics[*i]))
            .collect()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    services: Services,
    wal: Arc<Wal>,
    admin: Principal,
}

fn fixture(series: FakeSeries, default_events_per_sec: u32) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(WalConfig::new(dir.path().join("wal"))).unwrap());
    let (catalog, secret) = FileCatalog::open(dir.path(), None).unwrap();
    let catalog: Arc<dyn Catalog> = Arc::new(catalog);
    let admin = authenticate(catalog.as_ref(), secret.as_deref()).unwrap();
    let services = Services::new(
        IngestConfig {
            limits: eddy_model::Limits::default(),
            max_batch_events: 100,
            default_retention: std::time::Duration::ZERO,
            default_events_per_sec,
        },
        Seams {
            log: wal.clone(),
            catalog,
            dedup: Arc::new(MemoryDedup::new(i64::MAX, 1000)),
            series: Arc::new(series),
            clock: Arc::new(ManualClock::new(1_700_000_000_000_000_000)),
        },
    );
    Fixture {
        _dir: dir,
        services,
        wal,
        admin,
    }
}

fn events(body: &str, partial: bool) -> IngestRequest {
    IngestRequest {
        body: Bytes::from(body.to_string()),
        format: BodyFormat::Json,
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
    let stored = f.services.catalog.keys(&t.id).unwrap();
    assert_eq!(stored[0].hash.len(), 64);
    // The new key is a write key of the new tenant.
    let p = authenticate(f.services.auth.as_ref(), Some(&created.key)).unwrap();
    assert_eq!(p.tenant_id, t.id);
    assert!(matches!(
        admin.list_tenants(&p),
        Err(Error::PermissionDenied(_))
    ));
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
    assert_eq!(s.stats.get(&t.id).snapshot().events_accepted, 1);

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
    assert_eq!(s.stats.get(&t.id).snapshot().events_accepted, 0);
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
    assert_eq!(o.offsets, Some(0..2));
    // The same id again is a duplicate, acknowledged but not stored.
    let o = s
        .ingest
        .ingest(&f.admin, events(r#"{"event_id":"a","type":"x"}"#, false))
        .await
        .unwrap();
    assert_eq!((o.accepted, o.duplicates), (0, 1));
    assert_eq!(f.wal.end_offset(), 2);
    assert_eq!(o.event_ids, vec!["a".to_string()]);
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
            assert!(e.retry_after_secs().unwrap() >= 1);
            assert!(e.to_string().contains("2 events/s"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.wal.end_offset(), 100);
    assert_eq!(
        s.stats.get(DEFAULT_TENANT).snapshot().requests_rate_limited,
        1
    );
}

#[test]
fn memory_dedup_rebuilds_from_the_log_and_drops_deleted_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(WalConfig::new(dir.path())).unwrap();
    let ev = |tenant: &str, id: &str| {
        Bytes::from(codec::encode_event(eddy_model::Event {
            tenant: tenant.into(),
            event_id: id.into(),
            r#type: "x".into(),
            client_id: true,
            ..Default::default()
        }))
    };
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
        ])
        .unwrap()
        .durable()
        .await
        .unwrap();
    });
    let d = MemoryDedup::new(i64::MAX, 100);
    assert_eq!(d.rebuild_from_log(&wal, 0).unwrap(), 4);
    assert_eq!(d.len(), 2, "a/1 and a/2; b/1 dropped by the tombstone");
}
