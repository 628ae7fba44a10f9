//! One in-memory store fake for the service tests: metric samples and event dimensions for
//! time series and dimension counts, event times for summaries, fixed top lists, funnels and
//! cohorts; it records the ranges analytics asked. What no test needs answers an error.

use std::collections::BTreeSet;
use std::sync::Mutex;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use eddy_store::analytics::{
    FunnelAnswer as StoreFunnel, FunnelQuery, Group, RetentionQuery, Summary, SummaryQuery,
    UserProfile, UserQuery,
};
use eddy_store::journeys::Cohort;
use eddy_store::{SqlAnswer, SqlQuery};
use serde_json::json;

use crate::analytics::{
    Condition, Count, FUNNEL_MAX_EVENTS, FunnelSteps, GroupedQuery, LatestMetric, Top, TopQuery,
};
use crate::query::{
    Agg, Bucket, DeviceMetrics, DevicePage, DimensionCount, DimensionQuery, EventFilter, EventPage,
    Store, Timeseries, TimeseriesQuery,
};

pub(crate) fn not_faked<T>() -> eddy_store::Result<T> {
    Err(eddy_store::Error::Task("not part of this fake".into()))
}

pub(crate) fn count(value: &str, n: u64) -> Count {
    Count {
        value: json!(value),
        count: n,
        users: n / 2,
    }
}

#[derive(Debug, Default)]
pub(crate) struct FakeStore {
    /// (device, metric, time, value).
    pub(crate) samples: Vec<(Option<&'static str>, &'static str, i64, f64)>,
    /// (type, time, user).
    pub(crate) types: Vec<(&'static str, i64, &'static str)>,
    /// Event times summaries count.
    pub(crate) times: Vec<i64>,
    /// The ranges analytics asked, in order.
    pub(crate) asked: Mutex<Vec<(i64, i64)>>,
    /// The extra tables each SQL statement was given, in order.
    pub(crate) sql_extra: Mutex<Vec<Vec<String>>>,
    /// The filters of the top lists asked, in order.
    pub(crate) top_filters: Mutex<Vec<Vec<Condition>>>,
    pub(crate) funnel_users: Vec<u64>,
    pub(crate) cohorts: Vec<Cohort>,
}

#[async_trait]
impl Store for FakeStore {
    async fn events(&self, _: &str, _: EventFilter) -> eddy_store::Result<EventPage> {
        Ok(EventPage {
            events: vec![],
            next_cursor: None,
        })
    }
    async fn devices(
        &self,
        _: &str,
        _: Option<String>,
        _: usize,
    ) -> eddy_store::Result<DevicePage> {
        not_faked()
    }
    async fn device_metrics(
        &self,
        _: &str,
        _: &str,
        _: usize,
    ) -> eddy_store::Result<Option<DeviceMetrics>> {
        Ok(None)
    }
    async fn timeseries(&self, _: &str, q: TimeseriesQuery) -> eddy_store::Result<Timeseries> {
        let width = i64::try_from(q.bucket_secs).unwrap() * 1_000_000_000;
        let mut rows: Vec<_> = self
            .samples
            .iter()
            .filter(|(d, m, t, _)| {
                *m == q.metric
                    && (q.from..q.to).contains(t)
                    && q.device_id.as_deref().is_none_or(|x| Some(x) == *d)
            })
            .map(|(d, _, t, v)| {
                let d = if q.group_by_device {
                    d.map(str::to_string)
                } else {
                    None
                };
                (d, t - t.rem_euclid(width), *t, *v)
            })
            .collect();
        rows.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
        let mut out = Timeseries {
            aggs: q.aggs.clone(),
            grouped: q.group_by_device,
            series: vec![],
        };
        let mut i = 0;
        while i < rows.len() {
            let (d, b) = (rows[i].0.clone(), rows[i].1);
            let vals: Vec<f64> = rows[i..]
                .iter()
                .take_while(|r| r.0 == d && r.1 == b)
                .map(|r| r.3)
                .collect();
            i += vals.len();
            let n = vals.len() as f64;
            let sum: f64 = vals.iter().sum();
            let values = q
                .aggs
                .iter()
                .map(|a| match a {
                    Agg::Count => Some(n),
                    Agg::Sum => Some(sum),
                    Agg::Min => vals.iter().copied().reduce(f64::min),
                    Agg::Max => vals.iter().copied().reduce(f64::max),
                    Agg::Avg => Some(sum / n),
                    Agg::First => vals.first().copied(),
                    Agg::Last => vals.last().copied(),
                    Agg::P(_) => None,
                })
                .collect();
            out.push(d, Bucket { time: b, values });
        }
        Ok(out)
    }
    async fn dimension_counts(
        &self,
        _: &str,
        q: DimensionQuery,
    ) -> eddy_store::Result<Vec<DimensionCount>> {
        let width = i64::try_from(q.bucket_secs).unwrap() * 1_000_000_000;
        let mut out: Vec<DimensionCount> = Vec::new();
        let mut users: Vec<BTreeSet<&str>> = Vec::new();
        for (ty, t, user) in &self.types {
            if !(q.from..q.to).contains(t) || q.value.as_deref().is_some_and(|v| v != *ty) {
                continue;
            }
            let bucket = t - t.rem_euclid(width);
            match out
                .iter()
                .position(|c| c.value == *ty && c.bucket == bucket)
            {
                Some(i) => {
                    out[i].count += 1;
                    users[i].insert(user);
                }
                None => {
                    out.push(DimensionCount {
                        bucket,
                        value: ty.to_string(),
                        count: 1,
                        distinct_users: 0,
                    });
                    users.push(BTreeSet::from([*user]));
                }
            }
        }
        for (c, u) in out.iter_mut().zip(users) {
            c.distinct_users = u.len() as u64;
        }
        Ok(out)
    }
    async fn sql(&self, _: &str, q: SqlQuery) -> eddy_store::Result<SqlAnswer> {
        let names = q.extra.iter().map(|t| t.name.clone()).collect();
        self.sql_extra.lock().unwrap().push(names);
        Ok(SqlAnswer {
            schema: std::sync::Arc::new(arrow::datatypes::Schema::empty()),
            batches: vec![],
        })
    }
    fn sql_tables(&self, sql: &str) -> eddy_store::Result<BTreeSet<String>> {
        eddy_store::query::statement_tables(sql)
    }
    async fn summary(&self, _: &str, q: SummaryQuery) -> eddy_store::Result<Summary> {
        self.asked.lock().unwrap().push((q.from, q.to));
        let events = self
            .times
            .iter()
            .filter(|t| (q.from..q.to).contains(t))
            .count() as u64;
        Ok(Summary {
            events,
            users: events / 2,
            devices: 0,
            errors: events / 4,
            late: 0,
            by_type: vec![count("click", events)],
            top_pages: vec![],
            top_sources: vec![],
        })
    }
    async fn top(&self, _: &str, q: TopQuery) -> eddy_store::Result<Top> {
        self.asked.lock().unwrap().push((q.from, q.to));
        self.top_filters.lock().unwrap().push(q.filter.clone());
        Ok(Top {
            rows: vec![count("/home", 6), count("/pricing", 2)],
            with_value: 10,
            without_value: 3,
            distinct: 4,
        })
    }
    async fn grouped(&self, _: &str, _: GroupedQuery) -> eddy_store::Result<Vec<Group>> {
        not_faked()
    }
    async fn user(&self, _: &str, q: UserQuery) -> eddy_store::Result<Option<UserProfile>> {
        self.asked.lock().unwrap().push((q.from, q.to));
        Ok(None)
    }
    async fn funnel(&self, _: &str, q: FunnelQuery) -> eddy_store::Result<StoreFunnel> {
        assert_eq!(q.max_events, FUNNEL_MAX_EVENTS);
        let n = self.funnel_users.len();
        Ok(StoreFunnel {
            overall: FunnelSteps {
                users: self.funnel_users.clone(),
                median_ns: (0..n).map(|k| Some(k as f64 * 30e9)).collect(),
            },
            groups: vec![],
            groups_omitted: 0,
        })
    }
    async fn retention(&self, _: &str, q: RetentionQuery) -> eddy_store::Result<Vec<Cohort>> {
        self.asked.lock().unwrap().push((q.from, q.to));
        Ok(self.cohorts.clone())
    }
    async fn latest_metrics(&self, _: &str) -> eddy_store::Result<Vec<LatestMetric>> {
        not_faked()
    }
    async fn export(
        &self,
        _: &str,
        _: i64,
        _: i64,
    ) -> eddy_store::Result<tokio::sync::mpsc::Receiver<eddy_store::Result<RecordBatch>>> {
        not_faked()
    }
}
