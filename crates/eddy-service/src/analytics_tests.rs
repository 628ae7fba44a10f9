//! The analytics service's own arithmetic against a store fake with fixed counts: the previous
//! period, shares and "other", funnel conversion, retention averages, defaults of ranges.

use std::collections::BTreeSet;
use std::sync::Arc;

use eddy_model::ManualClock;
use eddy_store::journeys::Cohort;
use serde_json::json;

use crate::Error;
use crate::analytics::*;
use crate::auth::{Principal, Scope};
use crate::range::{DAY_NS, TimeRange};
use crate::stats::TenantStats;
use crate::test_store::FakeStore;

const NOW: i64 = 100 * DAY_NS;

fn reader() -> Principal {
    Principal {
        tenant_id: "t1".into(),
        key_id: "k1".into(),
        scopes: BTreeSet::from([Scope::Read]),
    }
}

fn service(store: Arc<FakeStore>) -> AnalyticsService {
    AnalyticsService::new(
        store,
        Arc::new(TenantStats::default()),
        Arc::new(ManualClock::new(NOW)),
        0,
    )
}

fn range(from: i64, to: i64) -> TimeRange {
    TimeRange {
        from: Some(from),
        to: Some(to),
        now: None,
    }
}

#[tokio::test]
async fn the_summary_compares_with_the_period_of_equal_length_before_it() {
    // 3 events in the hour asked for, 2 in the hour before, 1 earlier.
    let h = DAY_NS / 24;
    let store = Arc::new(FakeStore {
        times: vec![
            NOW - 3 * h,
            NOW - 2 * h + 1,
            NOW - 2 * h + 2,
            NOW - h,
            NOW - h + 1,
            NOW - 1,
        ],
        ..Default::default()
    });
    let a = service(store.clone())
        .summary(&reader(), range(NOW - h, NOW), 10)
        .await
        .unwrap();
    assert_eq!(
        *store.asked.lock().unwrap(),
        vec![(NOW - h, NOW), (NOW - 2 * h, NOW - h)]
    );
    assert_eq!(a.previous_from, NOW - 2 * h);
    assert_eq!((a.current.events, a.previous.events), (3, 2));
    assert_eq!(a.change.events, Some(0.5));
    assert!((a.current.events_per_minute - 3.0 / 60.0).abs() < 1e-12);
    assert_eq!(a.current.error_rate, 0.0);

    // Nothing before: no change to speak of. Default range: the last 24 hours.
    let store = Arc::new(FakeStore {
        times: vec![NOW - 1],
        ..Default::default()
    });
    let a = service(store.clone())
        .summary(&reader(), TimeRange::default(), 10)
        .await
        .unwrap();
    assert_eq!((a.from, a.to), (NOW - DAY_NS, NOW));
    assert_eq!(a.change.events, None);
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["change"]["events"], serde_json::Value::Null);
    assert!(json["from"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn top_shares_are_of_the_events_with_a_value_and_the_rest_is_other() {
    let a = service(Arc::default())
        .top(&reader(), TimeRange::default(), Field::PageUrl, 2, vec![])
        .await
        .unwrap();
    let shares: Vec<f64> = a.data.iter().map(|r| r.share).collect();
    assert_eq!(shares, vec![0.6, 0.2]);
    assert_eq!((a.other.count, a.other.share), (2, 0.2));
    assert_eq!(
        (a.total, a.without_value, a.dimension.as_str()),
        (10, 3, "page_url")
    );
}

#[tokio::test]
async fn funnel_steps_carry_conversions_drops_and_medians() {
    let store = Arc::new(FakeStore {
        funnel_users: vec![10, 4, 0],
        ..Default::default()
    });
    let step = |t: &str| EventSpec {
        r#type: t.into(),
        conditions: Default::default(),
    };
    let q = FunnelRequest {
        steps: vec![step("view"), step("signup"), step("pay")],
        window_ns: None,
        range: TimeRange::default(),
        breakdown: None,
        breakdown_limit: None,
    };
    let a = service(store).funnel(&reader(), q.clone()).await.unwrap();
    assert_eq!(a.window_seconds, 86_400);
    let got: Vec<_> = a
        .steps
        .iter()
        .map(|s| {
            (
                s.users,
                s.converted,
                s.dropped,
                s.conversion_from_previous,
                s.conversion_from_first,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (10, Some(4), Some(6), Some(1.0), Some(1.0)),
            (4, Some(0), Some(4), Some(0.4), Some(0.4)),
            (0, None, None, Some(0.0), Some(0.0)),
        ]
    );
    assert_eq!(a.steps[0].median_seconds_to_convert, None);
    assert_eq!(a.steps[1].median_seconds_to_convert, Some(30.0));
    let json = serde_json::to_value(&a.steps[1]).unwrap();
    assert_eq!(
        (json["type"].clone(), json["step"].clone()),
        (json!("signup"), json!(2))
    );

    // Bad steps are refused, saying which.
    let svc = service(Arc::default());
    let mut empty = q.clone();
    empty.steps[1].r#type.clear();
    let e = svc.funnel(&reader(), empty).await.unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument { message, .. } if message.contains("step 2")),
        "{e:?}"
    );
    let message = |e: Error| match e {
        Error::InvalidArgument { message, .. } => message,
        other => panic!("{other:?}"),
    };
    let mut typed = q.clone();
    typed.steps[0].conditions.insert("type".into(), json!("x"));
    let e = svc.funnel(&reader(), typed).await.unwrap_err();
    assert!(message(e).contains("not in `where`"));
    let mut nested = q.clone();
    nested.steps[0]
        .conditions
        .insert("plan".into(), json!(["a"]));
    let e = svc.funnel(&reader(), nested).await.unwrap_err();
    assert!(message(e).contains("`where.plan`"));
    let mut many = q.clone();
    many.steps = vec![step("a"); MAX_STEPS + 1];
    let e = svc.funnel(&reader(), many).await.unwrap_err();
    assert!(message(e).contains("`steps`"));
    let mut instant = q;
    instant.window_ns = Some(0);
    let e = svc.funnel(&reader(), instant).await.unwrap_err();
    assert!(message(e).contains("`window`"));
}

#[tokio::test]
async fn retention_averages_over_the_cohorts_that_reached_a_period() {
    // Two daily cohorts: yesterday's (4 users, 2 back on day 1) and today's (2 users, whose
    // day 1 has not started, so it is left out).
    let store = Arc::new(FakeStore {
        cohorts: vec![
            Cohort {
                start: NOW - DAY_NS,
                users: 4,
                returned: vec![1, 2],
            },
            Cohort {
                start: NOW,
                users: 2,
                returned: vec![1, 0],
            },
        ],
        ..Default::default()
    });
    let spec = EventSpec {
        r#type: "signup".into(),
        conditions: Default::default(),
    };
    let q = RetentionRequest {
        cohort: spec.clone(),
        r#return: spec,
        period: Period::Day,
        periods: Some(2),
        range: TimeRange {
            to: Some(NOW + 1),
            ..TimeRange::default()
        },
    };
    let a = service(store.clone())
        .retention(&reader(), q)
        .await
        .unwrap();
    // Default range: `periods` days before `to`.
    assert_eq!(
        store.asked.lock().unwrap()[0],
        (NOW + 1 - 2 * DAY_NS, NOW + 1)
    );
    assert_eq!(a.cohorts[1].retention.len(), 1);
    let avg: Vec<_> = a
        .average
        .iter()
        .map(|p| (p.period, p.share, p.cohorts))
        .collect();
    assert_eq!(avg, vec![(0, Some(2.0 / 6.0), 2), (1, Some(0.5), 1)]);
}

#[tokio::test]
async fn a_user_without_events_is_not_found_and_the_range_defaults_to_30_days() {
    let store = Arc::new(FakeStore::default());
    let q = UserRequest {
        user_id: "u9".into(),
        range: TimeRange::default(),
        session_gap_ns: 1,
        sessions: 1,
        recent: 1,
        top: 1,
    };
    let e = service(store.clone()).user(&reader(), q).await.unwrap_err();
    assert!(
        matches!(&e, Error::NotFound(m) if m.contains("u9")),
        "{e:?}"
    );
    assert_eq!(store.asked.lock().unwrap()[0], (NOW - 30 * DAY_NS, NOW));
    let e = service(store)
        .summary(&reader(), range(NOW, NOW), 10)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }));
}

/// Click counts ask one top list of users, then one of pages per listed user.
#[tokio::test]
async fn click_counts_list_pages_per_user() {
    let q = ClickQuery {
        range: TimeRange::default(),
        event_type: None,
        user_id: Vec::new(),
        page_url: Vec::new(),
        limit: 10,
    };
    let store = Arc::new(FakeStore::default());
    let a = service(store.clone())
        .click_counts(&reader(), q)
        .await
        .unwrap();
    assert_eq!(a.event_type, "click");
    assert_eq!(a.total_clicks, 13);
    // The fixed top list has 2 values: 2 users × 2 pages.
    assert_eq!(a.data.len(), 4);
    assert_eq!(store.asked.lock().unwrap().len(), 3);
    // Users among clicks; then each user's pages among that user's clicks.
    let filters = store.top_filters.lock().unwrap();
    let click = Condition {
        field: Field::Type,
        value: json!("click"),
    };
    assert_eq!(filters[0], vec![click.clone()]);
    assert_eq!(
        filters[1],
        vec![
            click,
            Condition {
                field: Field::UserId,
                value: json!("/home"),
            }
        ]
    );
}
