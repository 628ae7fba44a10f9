//! Store tests against a real WAL in a temp dir: results compared with a naive computation
//! over the same generated events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eddy_log::Log;
use eddy_log::wal::{Wal, WalConfig};
use eddy_model::{Entry, Event, LogEntry, PropertyValue, TenantDeleted, Value, codec, columns};

use crate::query::{Cursor, EventFilter, Store};
use crate::{EmbeddedStore, StoreConfig};

const T0: i64 = 1_764_000_000_000_000_000;
const MIN: i64 = 60_000_000_000;

fn event(tenant: &str, i: i64) -> Event {
    let mut ev = Event {
        tenant: tenant.into(),
        event_id: format!("{tenant}-{i}"),
        // Out of order and spread over several hours.
        time: T0 + ((i * 7919) % 400) * MIN,
        received_at: T0 + 500 * MIN,
        r#type: ["reading", "click", "page_view"][(i % 3) as usize].into(),
        device_id: Some(format!("dev-{}", i % 5)),
        user_id: (i % 2 == 0).then(|| format!("user-{}", i % 4)),
        ..Default::default()
    };
    ev.metrics.insert("temp".into(), i as f64 / 2.0);
    ev.properties.insert(
        "page".into(),
        PropertyValue::from(Value::String(format!("/p/{}", i % 3))),
    );
    ev.properties.insert(
        "n".into(),
        PropertyValue::from(Value::Number((i % 4) as f64)),
    );
    ev
}

struct Fixture {
    dir: tempfile::TempDir,
    wal: Arc<Wal>,
    store: Arc<EmbeddedStore>,
}

fn config(dir: &std::path::Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir.join("store"));
    c.persist_age = Duration::from_secs(3600);
    // The tests' data is a year old by the wall clock; unless a test is about partition
    // widths, it keeps hour partitions, whose files the tests count.
    c.partitioning.hours_for = Duration::from_secs(100 * 365 * 24 * 3600);
    c
}

async fn open(dir: tempfile::TempDir, tweak: impl Fn(&mut StoreConfig)) -> Fixture {
    let wal = Arc::new(Wal::open(WalConfig::new(dir.path().join("wal"))).unwrap());
    let mut c = config(dir.path());
    tweak(&mut c);
    let store = EmbeddedStore::open(c, wal.clone()).unwrap();
    store.start();
    Fixture { dir, wal, store }
}

async fn append(wal: &Wal, entries: Vec<LogEntry>) {
    let recs = entries
        .iter()
        .map(|e| Bytes::from(codec::encode_entry(e)))
        .collect();
    wal.append(recs).unwrap().durable().await.unwrap();
}

fn ev_entry(ev: Event) -> LogEntry {
    LogEntry {
        entry: Some(Entry::Event(ev)),
    }
}

async fn caught_up(f: &Fixture) {
    for _ in 0..500 {
        if f.store.applied_offset() == f.wal.end_offset() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("store did not catch up");
}

/// Appends `evs` as batch records (per tenant, in order, at most `columns::MAX_EVENTS` events
/// each) and records them with their positions in `all`.
async fn append_recorded(f: &Fixture, evs: Vec<Event>, all: &mut Vec<(u64, Event)>) {
    let mut by_tenant: Vec<(String, Vec<Event>)> = Vec::new();
    for ev in evs {
        match by_tenant.iter_mut().find(|(t, _)| *t == ev.tenant) {
            Some((_, v)) => v.push(ev),
            None => by_tenant.push((ev.tenant.clone(), vec![ev])),
        }
    }
    let mut offset = f.wal.end_offset();
    let mut records = Vec::new();
    for (tenant, evs) in &by_tenant {
        let mut k = 0;
        for rec in codec::encode_events(tenant, evs).unwrap() {
            let n = match codec::decode(&rec).unwrap() {
                codec::Decoded::Event(_) => 1,
                codec::Decoded::Events(c) => c.len(),
                other => panic!("{other:?}"),
            };
            for i in 0..n {
                all.push((columns::position(offset, i), evs[k].clone()));
                k += 1;
            }
            offset += 1;
            records.push(rec);
        }
    }
    f.wal.append(records).unwrap().durable().await.unwrap();
}

/// Waits (at most 5 s) until `cond` holds.
async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Waits until everything in the log is in Parquet files.
async fn all_persisted(f: &Fixture) {
    for _ in 0..500 {
        if f.store.stats().persisted_offset == f.wal.end_offset() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the store did not persist everything");
}

/// Simulates a crash (no graceful persist) and opens the store again.
async fn crash_and_reopen(f: Fixture, tweak: impl Fn(&mut StoreConfig)) -> Fixture {
    f.store.crash().await;
    let Fixture { dir, wal, store } = f;
    drop(store);
    drop(wal);
    open(dir, tweak).await
}

async fn all_ids(store: &Arc<EmbeddedStore>, tenant: &str, filter: EventFilter) -> Vec<String> {
    let mut out = Vec::new();
    let mut f = EventFilter {
        limit: 37,
        ..filter
    };
    loop {
        let page = store.events(tenant, f.clone()).await.unwrap();
        out.extend(page.events.iter().map(|e| e.event_id.clone()));
        match page.next_cursor {
            Some(c) => f.cursor = Some(Cursor::parse(&c).unwrap()),
            None => return out,
        }
    }
}

fn naive(
    events: &[(u64, Event)],
    tenant: &str,
    keep: impl Fn(&Event) -> bool,
    newest_first: bool,
) -> Vec<String> {
    let mut v: Vec<_> = events
        .iter()
        .filter(|(_, e)| e.tenant == tenant && keep(e))
        .collect();
    v.sort_by_key(|(o, e)| (e.time, *o));
    if newest_first {
        v.reverse();
    }
    v.into_iter().map(|(_, e)| e.event_id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_match_naive_filters_through_buffers_files_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let f = open(dir, |c| c.persist_bytes = 20_000).await;
    let mut all = Vec::new();
    for chunk in 0..6 {
        let evs: Vec<Event> = (chunk * 100..chunk * 100 + 100)
            .flat_map(|i| [event("a", i), event("b", i)])
            .collect();
        append_recorded(&f, evs, &mut all).await;
    }
    caught_up(&f).await;
    let check = |store: Arc<EmbeddedStore>, all: Vec<(u64, Event)>| async move {
        let base = EventFilter::default();
        assert_eq!(
            all_ids(&store, "a", base.clone()).await,
            naive(&all, "a", |_| true, false)
        );
        assert_eq!(
            all_ids(
                &store,
                "b",
                EventFilter {
                    newest_first: true,
                    ..base.clone()
                }
            )
            .await,
            naive(&all, "b", |_| true, true)
        );
        let ranged = EventFilter {
            from: Some(T0 + 100 * MIN),
            to: Some(T0 + 250 * MIN),
            r#type: Some("click".into()),
            ..base.clone()
        };
        assert_eq!(
            all_ids(&store, "a", ranged).await,
            naive(
                &all,
                "a",
                |e| e.time >= T0 + 100 * MIN && e.time < T0 + 250 * MIN && e.r#type == "click",
                false
            )
        );
        let by_dev = EventFilter {
            device_id: Some("dev-3".into()),
            user_id: Some("user-2".into()),
            ..base.clone()
        };
        assert_eq!(
            all_ids(&store, "a", by_dev).await,
            naive(
                &all,
                "a",
                |e| e.device_id.as_deref() == Some("dev-3")
                    && e.user_id.as_deref() == Some("user-2"),
                false
            )
        );
        let by_prop = EventFilter {
            properties: vec![("page".into(), "/p/1".into()), ("n".into(), "3".into())],
            ..base.clone()
        };
        let want = naive(
            &all,
            "a",
            |e| {
                e.event_id
                    .rsplit('-')
                    .next()
                    .unwrap()
                    .parse::<i64>()
                    .map(|i| i % 3 == 1 && i % 4 == 3)
                    .unwrap()
            },
            false,
        );
        assert!(!want.is_empty());
        assert_eq!(all_ids(&store, "a", by_prop).await, want);
        let empty = EventFilter {
            from: Some(T0 - 10 * MIN),
            to: Some(T0 - MIN),
            ..base.clone()
        };
        assert!(all_ids(&store, "a", empty).await.is_empty());
        assert!(all_ids(&store, "nobody", base).await.is_empty());
    };
    check(f.store.clone(), all.clone()).await;
    // The small persist threshold writes files in the background.
    for _ in 0..500 {
        if f.store.stats().files > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = f.store.stats();
    assert!(stats.files > 0, "{stats:?}");
    check(f.store.clone(), all.clone()).await;
    // A value round-trips exactly, with the data model's names.
    let page = f
        .store
        .events(
            "a",
            EventFilter {
                limit: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // The wire form of a stored event: the data model's names, RFC 3339 times.
    let e = serde_json::to_value(&page.events[0]).unwrap();
    assert_eq!(e["properties"]["n"], serde_json::json!(0));
    assert!(
        e["properties"]["page"].is_string()
            && e["metrics"]["temp"].is_number()
            && e["time"].as_str().unwrap().ends_with('Z')
    );

    // Crash (no graceful persist): reopen from the manifest + log replay.
    let f = crash_and_reopen(f, |_| {}).await;
    caught_up(&f).await;
    check(f.store.clone(), all.clone()).await;
    // Graceful shutdown persists everything.
    f.store.shutdown().await;
    let stats = f.store.stats();
    assert_eq!(stats.persisted_offset, f.wal.end_offset());
    assert_eq!(stats.buffered_bytes, 0);
    let Fixture { dir, wal, store } = f;
    drop(store);
    drop(wal);
    let f = open(dir, |_| {}).await;
    check(f.store.clone(), all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_tenant_is_dropped_from_buffers_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let f = open(dir, |c| {
        c.persist_bytes = 1;
        c.query_timeout = Duration::from_millis(300);
    })
    .await;
    append(
        &f.wal,
        (0..50)
            .flat_map(|i| [ev_entry(event("a", i)), ev_entry(event("b", i))])
            .collect(),
    )
    .await;
    caught_up(&f).await;
    all_persisted(&f).await;
    assert!(f.store.dir_has("a"));
    append(
        &f.wal,
        vec![LogEntry {
            entry: Some(Entry::TenantDeleted(TenantDeleted {
                tenant: "a".into(),
                deleted_at: T0,
            })),
        }],
    )
    .await;
    caught_up(&f).await;
    assert!(
        all_ids(&f.store, "a", EventFilter::default())
            .await
            .is_empty()
    );
    assert_eq!(
        all_ids(&f.store, "b", EventFilter::default()).await.len(),
        50
    );
    for _ in 0..500 {
        if !f.store.dir_has("a") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !f.store.dir_has("a"),
        "files leave the disk after the query grace period"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_files_from_an_interrupted_persist_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let f = open(dir, |c| c.persist_bytes = 1).await;
    append(&f.wal, (0..20).map(|i| ev_entry(event("a", i))).collect()).await;
    caught_up(&f).await;
    f.store.shutdown().await;
    let Fixture { dir, wal, store } = f;
    drop(store);
    drop(wal);
    let orphan = dir.path().join("store/a/events/0/orphan.parquet");
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, b"half-written").unwrap();
    let f = open(dir, |_| {}).await;
    assert!(!orphan.exists());
    assert_eq!(
        all_ids(&f.store, "a", EventFilter::default()).await.len(),
        20
    );
}

#[tokio::test]
async fn bad_cursor_is_a_clear_error() {
    assert!(Cursor::parse("x.y").is_err());
    assert_eq!(
        Cursor::parse(
            &Cursor {
                time: -5,
                offset: 9
            }
            .encode()
        )
        .unwrap(),
        Cursor {
            time: -5,
            offset: 9
        }
    );
    let _ = BTreeMap::<u8, u8>::new();
}

#[derive(Debug)]
struct TestRetention {
    now: std::sync::atomic::AtomicI64,
}

impl crate::RetentionPolicy for TestRetention {
    fn retention_ns(&self, tenant: &str) -> i64 {
        if tenant == "a" { 120 * MIN } else { 0 }
    }
    fn now_ns(&self) -> i64 {
        self.now.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_expired_hours_per_tenant_with_an_injected_clock() {
    let dir = tempfile::tempdir().unwrap();
    let f = open(dir, |c| {
        c.persist_bytes = 1;
        c.retention_interval = Duration::from_millis(20);
        c.query_timeout = Duration::from_millis(500);
    })
    .await;
    let policy = Arc::new(TestRetention {
        now: std::sync::atomic::AtomicI64::new(T0),
    });
    f.store.set_retention(policy.clone());
    let mut all = Vec::new();
    let evs: Vec<Event> = (0..300)
        .flat_map(|i| [event("a", i), event("b", i)])
        .collect();
    all.extend(evs.iter().cloned().enumerate().map(|(k, e)| (k as u64, e)));
    append(&f.wal, evs.into_iter().map(ev_entry).collect()).await;
    caught_up(&f).await;
    all_persisted(&f).await;
    // Nothing has expired at T0: two retention passes after everything was persisted (the
    // first may have begun before).
    let passes = f.store.retention_passes();
    wait_for("two retention passes", || {
        f.store.retention_passes() >= passes + 2
    })
    .await;
    assert_eq!(
        all_ids(&f.store, "a", EventFilter::default()).await.len(),
        300
    );
    let files_before = f.store.stats().files;

    // Five hours later, tenant a (2 h retention) keeps only hours whose newest row is newer than
    // T0 + 3 h; T0 is on an hour boundary, so exactly the events from T0 + 180 min remain.
    policy
        .now
        .store(T0 + 300 * MIN, std::sync::atomic::Ordering::SeqCst);
    let want = naive(&all, "a", |e| e.time >= T0 + 180 * MIN, false);
    let mut got = Vec::new();
    for _ in 0..500 {
        got = all_ids(&f.store, "a", EventFilter::default()).await;
        if got.len() == want.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(got, want);
    assert_eq!(
        all_ids(&f.store, "b", EventFilter::default()).await.len(),
        300,
        "b keeps forever"
    );
    assert!(f.store.stats().files < files_before);
    // The expired files leave the disk once no query can still be reading them.
    let mut on_disk = usize::MAX;
    for _ in 0..500 {
        on_disk = walk_parquet(&f.dir.path().join("store/a"));
        if on_disk == f.store.stats_files_of("a") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(on_disk, f.store.stats_files_of("a"));
}

fn walk_parquet(dir: &std::path::Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                n += 1;
            }
        }
    }
    n
}

/// Asserts that every events file under `dir` holds its rows in (type, time) order (the order
/// type-filtered scans rely on to skip other types' pages), and returns how many it checked.
fn assert_events_files_in_type_time_order(dir: &std::path::Path) -> usize {
    use arrow::array::{Array, AsArray};
    let mut stack = vec![dir.to_path_buf()];
    let mut checked = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let in_events = p.components().any(|c| c.as_os_str() == "events");
            if !in_events || p.extension().is_none_or(|x| x != "parquet") {
                continue;
            }
            let file = std::fs::File::open(&p).unwrap();
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap();
            let mut rows: Vec<(String, i64)> = Vec::new();
            for b in reader {
                let b = b.unwrap();
                let types = b.column_by_name("type").unwrap().as_string::<i32>();
                let times = b
                    .column_by_name("time")
                    .unwrap()
                    .as_primitive::<arrow::datatypes::TimestampNanosecondType>();
                assert_eq!(types.null_count(), 0);
                rows.extend(
                    (0..b.num_rows()).map(|r| (types.value(r).to_string(), times.value(r))),
                );
            }
            assert!(
                rows.windows(2).all(|w| w[0] <= w[1]),
                "{} is not in (type, time) order",
                p.display()
            );
            checked += 1;
        }
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_its_time_limit_fails_with_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let f = open(dir, |c| c.query_timeout = Duration::from_millis(50)).await;
    let r: crate::Result<()> = f
        .store
        .run_query(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        })
        .await;
    assert!(matches!(r, Err(crate::Error::Timeout(_))), "{r:?}");
    // The store keeps working.
    append(&f.wal, vec![ev_entry(event("a", 1))]).await;
    caught_up(&f).await;
    assert_eq!(
        all_ids(&f.store, "a", EventFilter::default()).await.len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_are_compacted_into_one_per_partition_without_changing_answers() {
    let dir = tempfile::tempdir().unwrap();
    let f = open(dir, |c| {
        c.persist_bytes = 1;
        c.compact_min_files = 10_000; // no compaction yet
    })
    .await;
    let mut all = Vec::new();
    for chunk in 0..6 {
        let evs: Vec<Event> = (chunk * 50..chunk * 50 + 50)
            .map(|i| event("a", i))
            .collect();
        append_recorded(&f, evs, &mut all).await;
        caught_up(&f).await;
        all_persisted(&f).await;
    }
    assert!(
        f.store.max_files_per_partition() > 1,
        "several persists wrote several files per hour"
    );
    let store_dir = f.dir.path().join("store");
    assert!(assert_events_files_in_type_time_order(&store_dir) > 6);
    let want = naive(&all, "a", |_| true, false);
    assert_eq!(all_ids(&f.store, "a", EventFilter::default()).await, want);
    f.store.shutdown().await;
    let Fixture { dir, wal, store } = f;
    drop(store);
    drop(wal);

    let f = open(dir, |c| c.compact_min_files = 2).await;
    for _ in 0..500 {
        if f.store.max_files_per_partition() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(f.store.max_files_per_partition(), 1);
    assert_eq!(all_ids(&f.store, "a", EventFilter::default()).await, want);
    // Compaction writes merged files in the same order.
    assert!(assert_events_files_in_type_time_order(&store_dir) > 0);
    // Crash right after: the manifest alone decides; nothing lost, nothing doubled.
    let f = crash_and_reopen(f, |_| {}).await;
    caught_up(&f).await;
    assert_eq!(all_ids(&f.store, "a", EventFilter::default()).await, want);
}

/// Events for digest tests: every summary field varies, some are missing, some are late.
fn digest_event(tenant: &str, i: i64) -> Event {
    let time = T0 + ((i * 7919) % 400) * MIN + (i % 7) * 1_000_000_000;
    Event {
        tenant: tenant.into(),
        event_id: format!("{tenant}-{i}"),
        time,
        // Every fifth arrives 10 minutes after its time (late at the default 5 min).
        received_at: time + if i % 5 == 0 { 10 * MIN } else { MIN / 2 },
        r#type: ["page_view", "click", "error", "signup"][(i % 4) as usize].into(),
        source: (i % 3 != 0).then(|| ["web", "ios"][(i % 2) as usize].into()),
        device_id: (i % 6 != 0).then(|| format!("dev-{}", i % 9)),
        user_id: (i % 4 != 1).then(|| format!("user-{}", i % 23)),
        page_url: (i % 5 != 4).then(|| format!("/p/{}", i % 6)),
        // Quarters, so sums are exact in any order (and scans and digests agree to the bit).
        metrics: [
            ("temp", i % 3 != 1, ((i * 37) % 101) as f64 / 4.0 - 5.0),
            ("hum", i % 2 == 0, (i % 13) as f64 * 2.5),
        ]
        .into_iter()
        .filter(|(_, has, _)| *has)
        .map(|(m, _, v)| (m.to_string(), v))
        .collect(),
        ..Default::default()
    }
}

/// The summary of `tenant`'s events in `[from, to)`, counted one by one.
fn naive_summary(
    all: &[(u64, Event)],
    tenant: &str,
    from: i64,
    to: i64,
    top: usize,
) -> crate::analytics::Summary {
    use std::collections::{BTreeSet, HashMap};
    let evs: Vec<&Event> = all
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e.tenant == tenant && e.time >= from && e.time < to)
        .collect();
    let distinct = |f: &dyn Fn(&Event) -> Option<String>| -> u64 {
        evs.iter()
            .filter_map(|e| f(e))
            .collect::<BTreeSet<_>>()
            .len() as u64
    };
    let ranked = |f: &dyn Fn(&Event) -> Option<String>, limit: usize| {
        let mut m: HashMap<String, (u64, BTreeSet<String>)> = HashMap::new();
        for e in &evs {
            if let Some(v) = f(e) {
                let t = m.entry(v).or_default();
                t.0 += 1;
                t.1.extend(e.user_id.clone());
            }
        }
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(&b.0)));
        v.into_iter()
            .take(limit)
            .map(|(value, (count, users))| crate::analytics::Count {
                value: serde_json::Value::String(value),
                count,
                users: users.len() as u64,
            })
            .collect::<Vec<_>>()
    };
    crate::analytics::Summary {
        events: evs.len() as u64,
        users: distinct(&|e| e.user_id.clone()),
        devices: distinct(&|e| e.device_id.clone()),
        errors: evs.iter().filter(|e| e.r#type == "error").count() as u64,
        late: evs
            .iter()
            .filter(|e| e.received_at - e.time > 5 * MIN)
            .count() as u64,
        by_type: ranked(&|e| Some(e.r#type.clone()), 1000),
        top_pages: ranked(&|e| e.page_url.clone(), top),
        top_sources: ranked(&|e| e.source.clone(), top),
    }
}

/// Ranges that cover whole files, cut files at both edges, hold nothing, or one instant; and
/// one that cuts only the last hour's files (digests answer the rest of it).
fn digest_ranges() -> Vec<(i64, i64)> {
    let hour = 60 * MIN;
    let h0 = T0.div_euclid(hour) * hour;
    vec![
        (i64::MIN / 2, i64::MAX / 2),
        (i64::MIN / 2, T0 + 390 * MIN),
        (h0 + hour, h0 + 4 * hour),
        (T0 + 37 * MIN + 3, T0 + 301 * MIN),
        (T0 + 90 * MIN, T0 + 91 * MIN),
        (T0 - 10 * hour, T0 - 9 * hour),
        (T0 + 17 * MIN, T0 + 17 * MIN + 1_000_000_000),
    ]
}

async fn assert_summaries(f: &Fixture, all: &[(u64, Event)], tenants: &[&str], when: &str) {
    use crate::analytics::{Field, GroupedQuery, Measure, SummaryQuery, TopQuery};
    for tenant in tenants {
        for (from, to) in digest_ranges() {
            let got = f
                .store
                .summary(
                    tenant,
                    SummaryQuery {
                        from,
                        to,
                        top: 3,
                        late_after_ns: 5 * MIN,
                    },
                )
                .await
                .unwrap();
            let want = naive_summary(all, tenant, from, to, 3);
            assert_eq!(got, want, "{when}: summary of {tenant} in [{from}, {to})");
            let top = f
                .store
                .top(
                    tenant,
                    TopQuery {
                        from,
                        to,
                        field: Field::PageUrl,
                        limit: 2,
                        filter: vec![],
                    },
                )
                .await
                .unwrap();
            let all_pages = naive_summary(all, tenant, from, to, usize::MAX).top_pages;
            assert_eq!(top.rows, all_pages[..all_pages.len().min(2)], "{when}: top");
            assert_eq!(
                top.with_value,
                all_pages.iter().map(|c| c.count).sum::<u64>(),
                "{when}: events with a page"
            );
            assert_eq!(top.distinct, all_pages.len() as u64, "{when}: pages");
            assert_eq!(top.with_value + top.without_value, want.events);
            if from == i64::MIN / 2 {
                continue; // too many buckets for a series
            }
            for (field, measure, bucket_secs) in [
                (Field::Type, Measure::Count, 3600),
                (Field::PageUrl, Measure::DistinctUsers, 3600),
                (Field::Source, Measure::Count, 86_400),
                (Field::PageUrl, Measure::Count, 7200),
            ] {
                let q = GroupedQuery {
                    from,
                    to,
                    bucket_secs,
                    field,
                    measure,
                    limit: 2,
                    filter: vec![],
                };
                let got = f.store.grouped(tenant, q.clone()).await.unwrap();
                // The scanning plan (what filtered series use) is the reference.
                let want = f
                    .store
                    .query(tenant, from, to, |ctx| crate::analytics::grouped(ctx, q))
                    .await
                    .unwrap();
                assert_eq!(got, want, "{when}: series of {tenant} in [{from}, {to})");
            }
        }
    }
}

/// An answer's rows as `a|b|c` lines (NULL for null).
fn rows_of(batches: &[arrow::array::RecordBatch]) -> Vec<String> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let cols: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c, &opts).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            let cells: Vec<String> = cols.iter().map(|c| c.value(r).to_string()).collect();
            out.push(cells.join("|"));
        }
    }
    out
}

async fn sql_rows(store: &Arc<EmbeddedStore>, tenant: &str, sql: &str) -> Vec<String> {
    let q = crate::SqlQuery {
        sql: sql.into(),
        extra: vec![],
        max_rows: 10_000,
    };
    let a = store.sql(tenant, q).await.unwrap();
    rows_of(&a.batches)
}

/// Whether `sql` is answered from digests (see [`crate::digest_sql`]).
async fn from_digests(store: &Arc<EmbeddedStore>, tenant: &str, sql: &str) -> bool {
    let ctx = store
        .session(tenant, i64::MIN, i64::MAX, crate::Scan::Selective)
        .await
        .unwrap();
    let plan = ctx.sql(sql).await.unwrap().logical_plan().clone();
    store
        .digest_plan(tenant, &ctx, &plan)
        .await
        .unwrap()
        .is_some()
}

/// SQL counts by `type`, `page_url` and `source` equal counting one by one, whether digests
/// answer them (`digests`: they must for the whole range) or the files are scanned.
async fn assert_sql_counts(
    f: &Fixture,
    all: &[(u64, Event)],
    tenants: &[&str],
    digests: bool,
    when: &str,
) {
    use std::collections::BTreeSet;
    let at = |ns: i64| {
        chrono::DateTime::from_timestamp_nanos(ns)
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    };
    for tenant in tenants {
        for (from, to) in digest_ranges() {
            let (a, b, last) = (at(from), at(to), at(to - 1));
            let naive = naive_summary(all, tenant, from, to, usize::MAX);
            let evs: Vec<&Event> = all
                .iter()
                .map(|(_, e)| e)
                .filter(|e| e.tenant == *tenant && e.time >= from && e.time < to)
                .collect();
            let lines = |counts: &[crate::analytics::Count], users: bool| -> Vec<String> {
                let mut v: Vec<String> = counts
                    .iter()
                    .map(|c| {
                        let value = c.value.as_str().unwrap();
                        match users {
                            true => format!("{value}|{}|{}", c.count, c.users),
                            false => format!("{value}|{}", c.count),
                        }
                    })
                    .collect();
                v.sort();
                v
            };
            let pageless = evs.iter().filter(|e| e.page_url.is_none());
            let pageless_users: BTreeSet<_> =
                pageless.clone().filter_map(|e| e.user_id.clone()).collect();
            let mut pages = lines(&naive.top_pages, true);
            if pageless.clone().count() > 0 {
                pages.insert(
                    0,
                    format!("NULL|{}|{}", pageless.count(), pageless_users.len()),
                );
            }
            let mut top_two: Vec<_> = naive.by_type.iter().filter(|c| c.count > 1).collect();
            top_two.sort_by(|x, y| {
                y.count
                    .cmp(&x.count)
                    .then(x.value.as_str().cmp(&y.value.as_str()))
            });
            let statements = [
                (
                    format!(
                        "SELECT type, count(*) AS n, count(DISTINCT user_id) AS u FROM events WHERE time >= '{a}' AND time < '{b}' GROUP BY type ORDER BY type"
                    ),
                    lines(&naive.by_type, true),
                    Some(true),
                ),
                (
                    format!(
                        "SELECT page_url, count(*) AS n, count(DISTINCT user_id) AS u FROM events WHERE time >= '{a}' AND time < '{b}' GROUP BY page_url ORDER BY page_url NULLS FIRST"
                    ),
                    pages.clone(),
                    // The distinct users of events without a page are not in digests.
                    Some(pages.first().is_none_or(|p| !p.starts_with("NULL"))),
                ),
                (
                    format!(
                        "SELECT page_url, count(1) FROM events WHERE time >= '{a}' AND time < '{b}' GROUP BY 1 ORDER BY 1 NULLS FIRST"
                    ),
                    pages
                        .iter()
                        .map(|p| p.rsplit_once('|').unwrap().0.to_string())
                        .collect(),
                    Some(true),
                ),
                (
                    format!(
                        "SELECT s.source AS src, count(s.type) AS n, count(DISTINCT s.user_id) AS u FROM events s WHERE s.source IS NOT NULL AND s.time BETWEEN '{a}' AND '{last}' GROUP BY s.source ORDER BY src"
                    ),
                    lines(&naive.top_sources, true),
                    Some(true),
                ),
                (
                    format!(
                        "SELECT count(*) AS n, count(DISTINCT user_id) AS u, count(DISTINCT device_id) AS d FROM events WHERE time >= '{a}' AND '{b}' > time"
                    ),
                    vec![format!(
                        "{}|{}|{}",
                        naive.events, naive.users, naive.devices
                    )],
                    Some(true),
                ),
                (
                    format!(
                        "SELECT type, n FROM (SELECT type, count(*) AS n FROM events WHERE time >= '{a}' AND time < '{b}' GROUP BY type) WHERE n > 1 ORDER BY n DESC, type LIMIT 2"
                    ),
                    top_two
                        .iter()
                        .take(2)
                        .map(|c| format!("{}|{}", c.value.as_str().unwrap(), c.count))
                        .collect(),
                    Some(true),
                ),
            ];
            // Per type: (value or None) → (events, distinct users).
            let of_type = |kind: &str, key: &dyn Fn(&Event) -> Option<String>| {
                let mut m: BTreeMap<Option<String>, (u64, BTreeSet<String>)> = BTreeMap::new();
                for e in evs.iter().filter(|e| e.r#type == kind) {
                    let t = m.entry(key(e)).or_default();
                    t.0 += 1;
                    t.1.extend(e.user_id.clone());
                }
                m
            };
            let mut viewed: Vec<(String, usize, u64)> =
                of_type("page_view", &|e| e.page_url.clone())
                    .into_iter()
                    .filter_map(|(p, (n, u))| Some((p?, u.len(), n)))
                    .collect();
            viewed.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
            let clicks = of_type("click", &|_| None);
            let clicks = clicks.get(&None).map_or((0, 0), |(n, u)| (*n, u.len()));
            let error_sources: Vec<String> = of_type("error", &|e| e.source.clone())
                .into_iter()
                .map(|(s, (n, _))| format!("{}|{n}", s.as_deref().unwrap_or("NULL")))
                .collect();
            let statements = statements.into_iter().chain([
                (
                    format!("SELECT page_url, count(DISTINCT user_id) AS users, count(*) AS n FROM events WHERE type = 'page_view' AND page_url IS NOT NULL AND time >= '{a}' AND time < '{b}' GROUP BY page_url ORDER BY users DESC, page_url LIMIT 3"),
                    viewed.iter().take(3).map(|(p, u, n)| format!("{p}|{u}|{n}")).collect(),
                    Some(true),
                ),
                (
                    format!("SELECT count(*), count(DISTINCT user_id) FROM events WHERE time >= '{a}' AND time < '{b}' AND 'click' = type"),
                    vec![format!("{}|{}", clicks.0, clicks.1)],
                    Some(true),
                ),
                (
                    format!("SELECT source, count(*) FROM events WHERE type = 'error' AND time >= '{a}' AND time < '{b}' GROUP BY source ORDER BY source NULLS FIRST"),
                    error_sources,
                    Some(true),
                ),
            ]);
            // `>` from the first event's time leaves that event out.
            let first = evs.iter().map(|e| e.time).min().unwrap_or(from);
            let after = naive_summary(all, tenant, first + 1, to, usize::MAX);
            let statements = statements.into_iter().chain([(
                format!("SELECT type, count(*) FROM events WHERE time > '{}' AND time <= '{last}' GROUP BY type ORDER BY type", at(first)),
                lines(&after.by_type, false),
                None, // digests hold most of it only while the first hour has many files
            )]);
            for (sql, want, answerable) in statements {
                // A tenant without files has nothing to answer from digests.
                let used = answerable
                    .filter(|_| from == i64::MIN / 2)
                    .map(|a| digests && a && !evs.is_empty());
                assert_sql(f, tenant, &sql, &want, used, when).await;
            }
            if from == i64::MIN / 2 && !evs.is_empty() {
                let explain = "EXPLAIN SELECT type, count(*) FROM events GROUP BY type";
                let scanned = [
                    "SELECT type, count(*) FROM events WHERE user_id = 'user-1' GROUP BY type",
                    "SELECT type, count(*) FROM events WHERE type = 'click' GROUP BY type",
                    "SELECT page_url, count(*) FROM events WHERE type = 'click' AND type = 'error' GROUP BY page_url",
                    "SELECT count(DISTINCT device_id) FROM events WHERE type = 'click'",
                    "SELECT page_url, count(*) FROM events WHERE type <> 'click' GROUP BY page_url",
                    "SELECT device_id, count(*) FROM events GROUP BY device_id",
                    "SELECT type, count(user_id) FROM events GROUP BY type",
                    "SELECT type, sum(1) FROM events GROUP BY type",
                    "SELECT page_url, count(DISTINCT device_id) FROM events GROUP BY page_url",
                    "SELECT type, count(*) FROM events WHERE time > now() - INTERVAL '1 hour' OR type = 'x' GROUP BY type",
                    "SELECT type, count(*) FROM events GROUP BY type UNION ALL SELECT metric, count(*) FROM metric_samples GROUP BY metric",
                    "SELECT e.type, count(*) FROM events e JOIN events f ON e.event_id = f.event_id GROUP BY e.type",
                    "SELECT type, count(*) FROM (SELECT * FROM events WHERE source = 'web') GROUP BY type",
                    "WITH events AS (SELECT * FROM metric_samples) SELECT count(*) FROM events",
                    "SELECT type, count(*) FROM events WHERE time > now() - INTERVAL '1 hour' GROUP BY ROLLUP(type)",
                ];
                assert_digest_plans(f, tenant, explain, &scanned, digests, when).await;
            }
        }
    }
}

/// `sql` answers `want`, and (when `digests` is given) is answered from digests or not.
async fn assert_sql(
    f: &Fixture,
    tenant: &str,
    sql: &str,
    want: &[String],
    digests: Option<bool>,
    when: &str,
) {
    assert_eq!(sql_rows(&f.store, tenant, sql).await, want, "{when}: {sql}");
    if let Some(digests) = digests {
        let used = from_digests(&f.store, tenant, sql).await;
        assert_eq!(used, digests, "{when}: digests for {sql}");
    }
}

/// `EXPLAIN` shows the plan that runs (the digest's rows with `digests`, else the scan), and
/// the `scanned` statements are never answered from digests.
async fn assert_digest_plans(
    f: &Fixture,
    tenant: &str,
    explain: &str,
    scanned: &[&str],
    digests: bool,
    when: &str,
) {
    let explained = sql_rows(&f.store, tenant, explain).await.join("\n");
    assert_eq!(
        explained.contains("Values: "),
        digests,
        "{when}: {explained}"
    );
    assert_eq!(
        explained.contains("parquet"),
        !digests,
        "{when}: {explained}"
    );
    for sql in scanned {
        assert!(
            !from_digests(&f.store, tenant, sql).await,
            "{when}: no digests for {sql}"
        );
    }
}

/// [`assert_sql_counts`] and [`assert_sql_samples`].
async fn assert_sql_answers(
    f: &Fixture,
    all: &[(u64, Event)],
    tenants: &[&str],
    digests: bool,
    when: &str,
) {
    assert_sql_counts(f, all, tenants, digests, when).await;
    assert_sql_samples(f, all, tenants, digests, when).await;
}

/// A float as SQL answers show it.
fn float_cell(v: f64) -> String {
    rows_of(&[arrow::array::RecordBatch::try_from_iter([(
        "v",
        Arc::new(arrow::array::Float64Array::from(vec![v])) as _,
    )])
    .unwrap()])
    .remove(0)
}

/// SQL statistics of `metric_samples` by `metric` and `device_id` equal computing them one by
/// one, whether the samples digests answer them (`digests`: they must for the whole range) or
/// the files are scanned.
async fn assert_sql_samples(
    f: &Fixture,
    all: &[(u64, Event)],
    tenants: &[&str],
    digests: bool,
    when: &str,
) {
    use std::collections::BTreeSet;
    type Sample = (String, Option<String>, f64);
    let at = |ns: i64| {
        chrono::DateTime::from_timestamp_nanos(ns)
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    };
    let cell = |v: &Option<String>| v.clone().unwrap_or_else(|| "NULL".into());
    for tenant in tenants {
        for (from, to) in digest_ranges() {
            let (a, b, last) = (at(from), at(to), at(to - 1));
            let samples: Vec<Sample> = all
                .iter()
                .map(|(_, e)| e)
                .filter(|e| e.tenant == *tenant && e.time >= from && e.time < to)
                .flat_map(|e| {
                    e.metrics
                        .iter()
                        .map(|(m, v)| (m.clone(), e.device_id.clone(), *v))
                })
                .collect();
            // Rows grouped by `key` (in key order, NULL first), each as the cells `show` makes.
            let grouped = |keep: &dyn Fn(&Sample) -> bool,
                           key: &dyn Fn(&Sample) -> Vec<Option<String>>,
                           show: &dyn Fn(&[&Sample]) -> Vec<String>|
             -> Vec<String> {
                let mut m: BTreeMap<Vec<Option<String>>, Vec<&Sample>> = BTreeMap::new();
                for s in samples.iter().filter(|s| keep(s)) {
                    m.entry(key(s)).or_default().push(s);
                }
                m.into_iter()
                    .map(|(k, rows)| {
                        let mut cells: Vec<String> = k.iter().map(cell).collect();
                        cells.extend(show(&rows));
                        cells.join("|")
                    })
                    .collect()
            };
            let count = |rows: &[&Sample]| rows.len().to_string();
            let sum = |rows: &[&Sample]| rows.iter().map(|s| s.2).sum::<f64>();
            let min = |rows: &[&Sample]| rows.iter().map(|s| s.2).fold(f64::INFINITY, f64::min);
            let max = |rows: &[&Sample]| rows.iter().map(|s| s.2).fold(f64::NEG_INFINITY, f64::max);
            let distinct = |rows: &[&Sample], of: &dyn Fn(&Sample) -> Option<String>| {
                rows.iter()
                    .filter_map(|s| of(s))
                    .collect::<BTreeSet<_>>()
                    .len()
                    .to_string()
            };
            let temp = |s: &Sample| s.0 == "temp";
            let hum = |s: &Sample| s.0 == "hum";
            let device = |s: &Sample| vec![s.1.clone()];
            let hum_rows: Vec<&Sample> = samples.iter().filter(|s| hum(s)).collect();
            let hum_stats = if hum_rows.is_empty() {
                "0|NULL|NULL|NULL|NULL|0|0".to_string()
            } else {
                [
                    count(&hum_rows),
                    float_cell(sum(&hum_rows)),
                    float_cell(sum(&hum_rows) / hum_rows.len() as f64),
                    float_cell(min(&hum_rows)),
                    float_cell(max(&hum_rows)),
                    distinct(&hum_rows, &|s| s.1.clone()),
                    "1".into(),
                ]
                .join("|")
            };
            let mut busiest = grouped(&temp, &device, &|r| vec![count(r)]);
            busiest.retain(|l| l.rsplit_once('|').unwrap().1.parse::<usize>().unwrap() > 3);
            busiest.sort_by_key(|l| {
                let (d, n) = l.rsplit_once('|').unwrap();
                (
                    std::cmp::Reverse(n.parse::<usize>().unwrap()),
                    d.to_string(),
                )
            });
            busiest.truncate(2);
            let statements = [
                (
                    format!(
                        "SELECT device_id, count(*) AS n, avg(value) AS mean, max(value) AS hi FROM metric_samples WHERE metric = 'temp' AND time >= '{a}' AND time < '{b}' GROUP BY device_id ORDER BY device_id NULLS FIRST"
                    ),
                    grouped(&temp, &device, &|r| {
                        vec![
                            count(r),
                            float_cell(sum(r) / r.len() as f64),
                            float_cell(max(r)),
                        ]
                    }),
                    true,
                ),
                (
                    format!(
                        "SELECT metric, device_id, count(value), sum(value), min(value) FROM metric_samples WHERE time >= '{a}' AND time < '{b}' GROUP BY metric, device_id ORDER BY 1, 2 NULLS FIRST"
                    ),
                    grouped(&|_| true, &|s| vec![Some(s.0.clone()), s.1.clone()], &|r| {
                        vec![count(r), float_cell(sum(r)), float_cell(min(r))]
                    }),
                    true,
                ),
                (
                    format!(
                        "SELECT device_id, metric, max(value) AS hi FROM metric_samples WHERE time >= '{a}' AND time < '{b}' GROUP BY device_id, metric ORDER BY 1 NULLS FIRST, 2"
                    ),
                    grouped(&|_| true, &|s| vec![s.1.clone(), Some(s.0.clone())], &|r| {
                        vec![float_cell(max(r))]
                    }),
                    true,
                ),
                (
                    format!(
                        "SELECT count(*), sum(value), avg(value), min(value), max(value), count(DISTINCT device_id), count(DISTINCT metric) FROM metric_samples WHERE time BETWEEN '{a}' AND '{last}' AND 'hum' = metric"
                    ),
                    vec![hum_stats],
                    true,
                ),
                (
                    format!(
                        "SELECT metric, count(DISTINCT device_id) AS devices, count(*) FROM metric_samples WHERE device_id IS NOT NULL AND time >= '{a}' AND time < '{b}' GROUP BY metric ORDER BY metric"
                    ),
                    grouped(&|s| s.1.is_some(), &|s| vec![Some(s.0.clone())], &|r| {
                        vec![distinct(r, &|s| s.1.clone()), count(r)]
                    }),
                    true,
                ),
                (
                    format!(
                        "SELECT max(m.value) - min(m.value) AS spread FROM metric_samples m WHERE m.device_id = 'dev-1' AND m.metric = 'temp' AND m.time >= '{a}' AND m.time < '{b}'"
                    ),
                    {
                        let r: Vec<&Sample> = samples
                            .iter()
                            .filter(|s| temp(s) && s.1.as_deref() == Some("dev-1"))
                            .collect();
                        vec![if r.is_empty() {
                            "NULL".into()
                        } else {
                            float_cell(max(&r) - min(&r))
                        }]
                    },
                    true,
                ),
                (
                    format!(
                        "SELECT device_id, n FROM (SELECT device_id, count(*) AS n FROM metric_samples WHERE metric = 'temp' AND time >= '{a}' AND time < '{b}' GROUP BY device_id) WHERE n > 3 ORDER BY n DESC, device_id LIMIT 2"
                    ),
                    busiest,
                    true,
                ),
            ];
            for (sql, want, answerable) in statements {
                let used =
                    (from == i64::MIN / 2).then_some(digests && answerable && !samples.is_empty());
                assert_sql(f, tenant, &sql, &want, used, when).await;
            }
            if from == i64::MIN / 2 && !samples.is_empty() {
                let explain =
                    "EXPLAIN SELECT device_id, avg(value) FROM metric_samples GROUP BY device_id";
                let scanned = [
                    "SELECT device_id, avg(value) FROM metric_samples WHERE value > 3 GROUP BY device_id",
                    "SELECT source, count(*) FROM metric_samples GROUP BY source",
                    "SELECT device_id, count(*) FROM metric_samples WHERE type = 'click' GROUP BY device_id",
                    "SELECT device_id, count(device_id) FROM metric_samples GROUP BY device_id",
                    "SELECT device_id, sum(DISTINCT value) FROM metric_samples GROUP BY device_id",
                    "SELECT device_id, avg(value * 2) FROM metric_samples GROUP BY device_id",
                    "SELECT device_id, median(value) FROM metric_samples GROUP BY device_id",
                    "SELECT device_id, count(*) FROM metric_samples WHERE metric = 'temp' OR metric = 'hum' GROUP BY device_id",
                    "SELECT metric, count(*) FROM metric_samples WHERE metric = 'temp' AND metric = 'hum' GROUP BY metric",
                    "SELECT metric, count(*) FROM metric_samples WHERE device_id <> 'dev-1' GROUP BY metric",
                    "SELECT date_trunc('hour', time), avg(value) FROM metric_samples GROUP BY 1",
                    "SELECT metric, count(*) FROM metric_samples GROUP BY GROUPING SETS ((metric), ())",
                    "SELECT m.device_id, count(*) FROM metric_samples m JOIN events e ON m.device_id = e.device_id GROUP BY m.device_id",
                    "WITH metric_samples AS (SELECT * FROM events) SELECT count(*) FROM metric_samples",
                ];
                assert_digest_plans(f, tenant, explain, &scanned, digests, when).await;
            }
        }
    }
}

/// Every value a digest answers: counts, distinct users and devices, and per field (and per
/// type for `page_url` and `source`) each value's events and users.
fn digest_values(d: &crate::digest::Digest) -> Vec<String> {
    use crate::analytics::Field;
    let mut out = vec![format!(
        "{} {} {}",
        d.events(),
        d.distinct_users(),
        d.distinct_devices()
    )];
    for kind in [
        None,
        Some("page_view"),
        Some("click"),
        Some("error"),
        Some("signup"),
    ] {
        for field in [Field::Type, Field::PageUrl, Field::Source] {
            if kind.is_some() && field == Field::Type {
                continue;
            }
            let mut v: Vec<String> = d
                .values(&field, kind)
                .into_iter()
                .flatten()
                .map(|(v, t)| format!("{kind:?} {field:?} {v} {} {}", t.count, t.users.len()))
                .collect();
            v.sort();
            out.extend(v);
        }
    }
    out
}

#[test]
fn digests_folded_in_parts_and_merged_equal_one_fold() {
    use crate::digest::{Dictionary, Digest, Part};
    let mut b = crate::schema::BatchBuilder::default();
    for i in 0..500 {
        b.push(&digest_event("a", i), i as u64).unwrap();
    }
    let (batch, _) = b.finish().unwrap();
    let dict = std::sync::Mutex::new(Dictionary::default());
    let mut whole = Digest::new(5 * MIN);
    whole.fold(&batch, &dict).unwrap();
    let mut parts = Vec::new();
    for (start, len) in [(0, 120), (120, 300), (420, 80)] {
        let mut d = Digest::new(5 * MIN);
        d.fold(&batch.slice(start, len), &dict).unwrap();
        parts.push(d);
    }
    let mut merged = Digest::new(5 * MIN);
    for p in &parts {
        merged.merge(p);
    }
    let want = digest_values(&whole);
    assert!(want.len() > 20 && want.iter().any(|v| v.starts_with("Some(\"error\") Source")));
    assert_eq!(digest_values(&merged), want, "merge");
    let refs: Vec<&Digest> = parts.iter().collect();
    let untyped: Vec<String> = want
        .iter()
        .filter(|v| !v.starts_with("Some("))
        .cloned()
        .collect();
    assert_eq!(
        digest_values(&Digest::merge_all(5 * MIN, &refs, &Part::All)),
        untyped,
        "merge_all, all"
    );
    let only_errors = Digest::merge_all(
        5 * MIN,
        &refs,
        &Part::OfType("error".into(), crate::analytics::Field::Source),
    );
    let errors: Vec<String> = want
        .iter()
        .filter(|v| v.starts_with("Some(\"error\") Source") || v.starts_with("None Type"))
        .cloned()
        .collect();
    assert_eq!(
        digest_values(&only_errors)[1..],
        errors[..],
        "merge_all, one type's sources"
    );
}

async fn digests_built(f: &Fixture, at_least: usize) {
    for _ in 0..500 {
        if f.store.digested_files() >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("digests were not built");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summaries_from_digests_equal_counting_through_persists_compaction_restarts_and_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let f = open(dir, |c| {
        c.persist_bytes = 1;
        c.compact_min_files = 10_000;
    })
    .await;
    let mut all = Vec::new();
    for chunk in 0..4 {
        let evs: Vec<Event> = (chunk * 150..chunk * 150 + 150)
            .flat_map(|i| [digest_event("a", i), digest_event("b", i * 3)])
            .collect();
        append_recorded(&f, evs, &mut all).await;
        caught_up(&f).await;
        all_persisted(&f).await;
    }
    assert!(f.store.max_files_per_partition() > 1);
    let files = f.store.stats_files_of("a") + f.store.stats_files_of("b");
    assert_eq!(
        f.store.digested_files(),
        files,
        "every persisted file has a digest"
    );
    assert_summaries(&f, &all, &["a", "b", "nobody"], "after persists").await;
    assert_sql_answers(&f, &all, &["a", "b", "nobody"], true, "after persists").await;
    f.store.shutdown().await;
    let Fixture { dir, wal, store } = f;
    drop(store);
    drop(wal);

    // Restart with compaction: merged files get digests; the rest are rebuilt from disk.
    let f = open(dir, |c| {
        c.compact_min_files = 2;
        c.persist_bytes = 1 << 30;
    })
    .await;
    for _ in 0..500 {
        if f.store.max_files_per_partition() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(f.store.max_files_per_partition(), 1);
    digests_built(
        &f,
        f.store.stats_files_of("a") + f.store.stats_files_of("b"),
    )
    .await;
    // Unpersisted events are counted from the buffers beside the digests.
    let evs: Vec<Event> = (600..700).map(|i| digest_event("a", i)).collect();
    append_recorded(&f, evs, &mut all).await;
    caught_up(&f).await;
    assert_summaries(&f, &all, &["a", "b"], "after compaction, with buffers").await;
    let when = "after compaction, with buffers";
    assert_sql_answers(&f, &all, &["a", "b"], true, when).await;
    f.store.shutdown().await;
    let Fixture { dir, wal, store } = f;
    drop(store);
    drop(wal);

    // A budget too small for any digest: every file is scanned, the answers are the same.
    let f = open(dir, |c| c.digest_memory_bytes = 1).await;
    wait_for("the digest rebuild", || f.store.digest_rebuild_finished()).await;
    assert_eq!(f.store.digested_files(), 0);
    assert_summaries(&f, &all, &["a", "b"], "without digests").await;
    assert_sql_answers(&f, &all, &["a", "b"], false, "without digests").await;
}

/// Every answer that scans events, computed over one tenant's store.
#[derive(Debug, PartialEq)]
struct Scanned {
    funnel: crate::analytics::FunnelAnswer,
    retention: Vec<crate::journeys::Cohort>,
    user: Option<crate::analytics::UserProfile>,
    filtered_top: crate::analytics::Top,
    sql: Vec<arrow::array::RecordBatch>,
    by_user: Vec<String>,
}

async fn scanned(store: &Arc<EmbeddedStore>, tenant: &str) -> Scanned {
    use crate::analytics::UserQuery;
    use crate::analytics::{Condition, EventMatch, Field, FunnelQuery, RetentionQuery, TopQuery};
    use crate::journeys::Period;
    let step = |t: &str| EventMatch {
        r#type: t.into(),
        conditions: vec![],
    };
    let (from, to) = (T0, T0 + 400 * MIN);
    let funnel = store
        .funnel(
            tenant,
            FunnelQuery {
                from,
                to,
                window_ns: 90 * MIN,
                // (clicks of `digest_event` have no user)
                steps: vec![step("page_view"), step("error"), step("signup")],
                breakdown: Some(Field::Source),
                max_groups: 10,
                max_events: 1_000_000,
            },
        )
        .await
        .unwrap();
    let retention = store
        .retention(
            tenant,
            RetentionQuery {
                from: T0 - 86_400_000_000_000,
                to,
                cohort: step("page_view"),
                r#return: step("signup"),
                period: Period::Day,
                periods: 3,
            },
        )
        .await
        .unwrap();
    let user = store
        .user(
            tenant,
            UserQuery {
                user_id: "user-3".into(),
                from,
                to,
                session_gap_ns: 30 * MIN,
                sessions: 5,
                recent: 5,
                top: 5,
            },
        )
        .await
        .unwrap();
    let filtered_top = store
        .top(
            tenant,
            TopQuery {
                from,
                to,
                field: Field::PageUrl,
                limit: 5,
                filter: vec![Condition {
                    field: Field::Source,
                    value: serde_json::json!("web"),
                }],
            },
        )
        .await
        .unwrap();
    let mut sql = Vec::new();
    for q in [
        "SELECT type, count(*) AS n, count(DISTINCT user_id) AS u FROM events GROUP BY type ORDER BY type",
        "SELECT event_id, source, page_url, device_id FROM events WHERE user_id = 'user-3' ORDER BY event_id",
        "SELECT device_id, metric, count(*) AS n, sum(value) AS s FROM metric_samples GROUP BY 1, 2 ORDER BY 1, 2",
    ] {
        let a = store
            .sql(
                tenant,
                crate::SqlQuery {
                    sql: q.into(),
                    extra: vec![],
                    max_rows: 10_000,
                },
            )
            .await
            .unwrap();
        // Scans decode strings as views; answers keep Utf8.
        assert!(
            a.schema
                .fields()
                .iter()
                .all(|f| *f.data_type() != arrow::datatypes::DataType::Utf8View),
            "{:?}",
            a.schema
        );
        sql.push(arrow::compute::concat_batches(&a.schema, &a.batches).unwrap());
    }
    let by_user = all_ids(
        store,
        tenant,
        EventFilter {
            user_id: Some("user-3".into()),
            ..Default::default()
        },
    )
    .await;
    Scanned {
        funnel,
        retention,
        user,
        filtered_top,
        sql,
        by_user,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_answer_the_same_from_buffers_and_from_parquet_files() {
    let dir = tempfile::tempdir().unwrap();
    let f = open(dir, |c| c.persist_bytes = 1 << 30).await;
    let mut all = Vec::new();
    for tenant in ["a", "b"] {
        let n = if tenant == "a" { 900 } else { 200 };
        let evs = (0..n)
            .map(|i| {
                let mut e = digest_event(tenant, i);
                if i % 3 == 0 {
                    e.metrics.insert("temp".into(), i as f64 / 4.0);
                }
                e
            })
            .collect();
        append_recorded(&f, evs, &mut all).await;
    }
    caught_up(&f).await;
    assert_eq!(f.store.stats().persisted_offset, 0, "all in buffers");
    let from_buffers = [scanned(&f.store, "a").await, scanned(&f.store, "b").await];
    assert!(from_buffers[0].funnel.overall.users[2] > 0);
    assert!(from_buffers[0].user.is_some() && !from_buffers[0].by_user.is_empty());
    assert!(!from_buffers[0].retention.is_empty() && !from_buffers[0].filtered_top.rows.is_empty());
    assert!(from_buffers[0].sql.iter().all(|b| b.num_rows() > 0));
    assert_ne!(from_buffers[0], from_buffers[1], "tenants differ");
    // Graceful shutdown persists everything; the reopened store reads only files.
    f.store.shutdown().await;
    let Fixture { dir, wal, store } = f;
    drop(store);
    drop(wal);
    let f = open(dir, |_| {}).await;
    caught_up(&f).await;
    assert_eq!(f.store.stats().buffered_bytes, 0, "all in files");
    let from_files = [scanned(&f.store, "a").await, scanned(&f.store, "b").await];
    assert_eq!(from_files, from_buffers);
}

#[test]
fn the_tables_a_statement_reads_come_from_its_parse_tree() {
    let tables = |sql: &str| crate::query::statement_tables(sql).unwrap();
    let names = |v: &[&str]| {
        v.iter()
            .map(|s| s.to_string())
            .collect::<std::collections::BTreeSet<_>>()
    };
    // A word in a string literal or a column alias names no table; a CTE is not a table.
    assert_eq!(
        tables("SELECT 'alerts' AS rollups FROM events"),
        names(&["events"])
    );
    assert_eq!(
        tables("WITH alerts AS (SELECT 1) SELECT * FROM alerts JOIN Rollup_Counts ON true"),
        names(&["rollup_counts"])
    );
    assert_eq!(
        tables("SELECT * FROM (SELECT * FROM \"alerts\") a WHERE id IN (SELECT id FROM rollups)"),
        names(&["alerts", "rollups"])
    );
    assert!(crate::query::statement_tables("SELEC 1").is_err());
}

/// The committed WAL segment written with record format 1 (one event per record), as every log
/// before batch records holds it.
fn format1_fixture() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/wal-format1")
}

/// The fixture's entries: tenant `fx`'s events, a tenant `gone` deleted after its events, more
/// of `fx`'s.
fn format1_entries() -> Vec<LogEntry> {
    let mut out: Vec<LogEntry> = (0..30).map(|i| ev_entry(event("fx", i))).collect();
    out.extend((0..5).map(|i| ev_entry(event("gone", i))));
    out.push(LogEntry {
        entry: Some(Entry::TenantDeleted(TenantDeleted {
            tenant: "gone".into(),
            deleted_at: T0,
        })),
    });
    out.extend((30..40).map(|i| ev_entry(event("fx", i))));
    out
}

/// Writes the fixture again (`cargo test -p eddy-store -- --ignored write_format1_fixture`);
/// only for a deliberate change: the committed bytes are the compatibility contract.
#[tokio::test]
#[ignore]
async fn write_format1_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(WalConfig::new(dir.path().join("wal"))).unwrap();
    append(&wal, format1_entries()).await;
    wal.shutdown().unwrap();
    let out = format1_fixture();
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    for f in std::fs::read_dir(dir.path().join("wal")).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "wal") {
            std::fs::copy(&f, out.join(f.file_name().unwrap())).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_written_before_batch_records_reads_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    std::fs::create_dir_all(&wal_dir).unwrap();
    for f in std::fs::read_dir(format1_fixture()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, wal_dir.join(f.file_name().unwrap())).unwrap();
    }
    let f = open(dir, |c| c.persist_bytes = 1).await;
    caught_up(&f).await;
    // The fixture's records decode as they were written.
    let read = f.wal.read(0, 100).unwrap();
    let entries: Vec<LogEntry> = read
        .iter()
        .map(|r| codec::decode_entry(&r.payload).unwrap())
        .collect();
    assert_eq!(entries, format1_entries());
    let mut all: Vec<(u64, Event)> = read
        .iter()
        .filter_map(|r| match codec::decode(&r.payload).unwrap() {
            codec::Decoded::Event(ev) if ev.tenant == "fx" => {
                Some((columns::position(r.offset, 0), ev))
            }
            _ => None,
        })
        .collect();
    assert_eq!(all.len(), 40);
    check_fx(&f.store, &all).await;
    // Batch records appended after the old ones sit beside them, in log order.
    append_recorded(&f, (40..60).map(|i| event("fx", i)).collect(), &mut all).await;
    caught_up(&f).await;
    check_fx(&f.store, &all).await;
    all_persisted(&f).await;
    check_fx(&f.store, &all).await;
    let f = crash_and_reopen(f, |_| {}).await;
    caught_up(&f).await;
    check_fx(&f.store, &all).await;
}

/// Tenant `fx` holds exactly `all` (order, metrics) and tenant `gone` nothing.
async fn check_fx(store: &Arc<EmbeddedStore>, all: &[(u64, Event)]) {
    assert_eq!(
        all_ids(store, "fx", EventFilter::default()).await,
        naive(all, "fx", |_| true, false)
    );
    let page = store
        .events(
            "fx",
            EventFilter {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let sum: f64 = page.events.iter().map(|e| e.metrics["temp"]).sum();
    let want: f64 = all.iter().map(|(_, e)| e.metrics["temp"]).sum();
    assert_eq!(sum, want);
    assert!(
        all_ids(store, "gone", EventFilter::default())
            .await
            .is_empty()
    );
}

/// Waits (at most 60 s) until `cond` holds.
async fn wait_long(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..6000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn widths(store: &EmbeddedStore) -> BTreeMap<crate::partition::Width, usize> {
    let mut out = BTreeMap::new();
    for f in &store.state.read().unwrap().manifest.files {
        *out.entry(f.width).or_default() += 1;
    }
    out
}

/// Ten months of hourly readings of 10 devices (72k events), sent in time order in requests of
/// 500 with small persists, as a history import is: months become month partitions, the last
/// weeks day partitions, only the last two days hour partitions — a few hundred files where
/// one per hour and table made 14,400 — and every event answers. As time goes on, the hour
/// partitions roll into days.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_history_import_ends_in_a_bounded_number_of_files() {
    use crate::partition::Width;
    const HOUR: i64 = 60 * MIN;
    let hours = 300 * 24;
    let start = T0 - hours * HOUR;
    let dir = tempfile::tempdir().unwrap();
    let history = |c: &mut StoreConfig| {
        c.persist_bytes = 256 << 10;
        c.partitioning = crate::partition::Partitioning::default();
    };
    let f = open(dir, history).await;
    let policy = Arc::new(TestRetention {
        now: std::sync::atomic::AtomicI64::new(T0),
    });
    f.store.set_retention(policy.clone());
    let evs: Vec<Event> = (0..hours)
        .flat_map(|h| {
            (0..10).map(move |d| Event {
                tenant: "h".into(),
                event_id: format!("h{h}-{d}"),
                time: start + h * HOUR,
                received_at: T0,
                r#type: "reading".into(),
                device_id: Some(format!("dev-{d}")),
                metrics: [("temp".to_string(), (h % 50) as f64 + d as f64)].into(),
                ..Default::default()
            })
        })
        .collect();
    let want_sum: i64 = evs.iter().map(|e| e.metrics["temp"] as i64).sum();
    let mut all = Vec::new();
    for chunk in evs.chunks(500) {
        append_recorded(&f, chunk.to_vec(), &mut all).await;
    }
    caught_up(&f).await;
    all_persisted(&f).await;
    // 8 months, ~62 days and 48 hours of partitions, two tables; compaction merges what
    // several persists wrote into one partition.
    wait_long("compaction", || f.store.stats().files <= 300).await;
    let w = widths(&f.store);
    assert!(w[&Width::Month] >= 16 && w[&Width::Day] >= 100, "{w:?}");
    assert!(w[&Width::Hour] <= 2 * 48 + 2, "{w:?}");
    let check = |store: Arc<EmbeddedStore>| async move {
        assert_eq!(
            sql_rows(
                &store,
                "h",
                "SELECT count(*), CAST(sum(value) AS BIGINT) FROM metric_samples"
            )
            .await,
            vec![format!("{}|{}", hours * 10, want_sum)]
        );
        assert_eq!(
            sql_rows(&store, "h", "SELECT count(*) FROM events").await,
            vec![(hours * 10).to_string()]
        );
    };
    check(f.store.clone()).await;
    // Three days later the hour partitions have rolled into days.
    policy
        .now
        .store(T0 + 72 * HOUR, std::sync::atomic::Ordering::SeqCst);
    wait_long("hours rolling into days", || {
        !widths(&f.store).contains_key(&Width::Hour)
    })
    .await;
    assert!(f.store.stats().files <= 230, "{:?}", widths(&f.store));
    check(f.store.clone()).await;
    let f = crash_and_reopen(f, history).await;
    f.store.set_retention(policy.clone());
    caught_up(&f).await;
    check(f.store.clone()).await;
    assert!(!widths(&f.store).contains_key(&Width::Hour));
}
