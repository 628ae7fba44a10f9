//! The analytics routes against naive computations over the events the test generated:
//! summary (and its compatibility shapes), top-N, grouped time series, one user, funnels
//! (repeated steps, re-entries, out-of-order and out-of-window conversions, breakdown),
//! retention, exports and the latest-metrics export — for two tenants that must not see each
//! other — plus the validation of every parameter.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestServer;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// One generated event (times in ms).
#[derive(Debug, Clone)]
struct Ev {
    id: String,
    time: i64,
    ty: &'static str,
    user: Option<String>,
    page: Option<&'static str>,
    source: &'static str,
    device: Option<String>,
    plan: Option<&'static str>,
    temp: Option<f64>,
}

impl Ev {
    fn json(&self) -> Value {
        let mut v =
            json!({"event_id": self.id, "time": self.time, "type": self.ty, "source": self.source});
        if let Some(u) = &self.user {
            v["user_id"] = json!(u);
        }
        if let Some(p) = self.page {
            v["page_url"] = json!(p);
        }
        if let Some(d) = &self.device {
            v["device_id"] = json!(d);
        }
        if let Some(p) = self.plan {
            v["properties"] = json!({"plan": p});
        }
        if let Some(t) = self.temp {
            v["metrics"] = json!({"temp": t});
        }
        v
    }
}

/// Users with journeys `page_view /pricing → signup → purchase` of every shape, plus clicks,
/// errors and device readings. `base` is a UTC midnight; events span 10 days from it.
fn generate(base: i64, tag: &str, users: usize) -> Vec<Ev> {
    let mut out = Vec::new();
    let mut n = 0;
    let mut ev = |time: i64, ty: &'static str, user: Option<String>, page: Option<&'static str>| {
        n += 1;
        Ev {
            id: format!("{tag}-{n}"),
            time,
            ty,
            user,
            page,
            source: if n % 3 == 0 { "ios" } else { "web" },
            device: None,
            plan: None,
            temp: None,
        }
    };
    for i in 0..users {
        let u = Some(format!("{tag}u{i}"));
        let t0 = base + (i as i64 % 10) * DAY + i as i64 * 7 * MIN + 3 * HOUR;
        let mut entry = ev(t0, "page_view", u.clone(), Some("/pricing"));
        entry.plan = Some(if i % 2 == 0 { "pro" } else { "free" });
        out.push(entry);
        let signup = match i % 4 {
            0 => Some(t0 + 10 * MIN),
            1 => Some(t0 + 2 * HOUR), // outside 1h, unless the re-entry below
            2 => None,
            _ => Some(t0 - 5 * MIN), // before the entry: out of order
        };
        if i % 5 == 0 {
            // A repeated entry; for i % 4 == 1 it brings the 2h signup into the window.
            let mut again = ev(t0 + 70 * MIN, "page_view", u.clone(), Some("/pricing"));
            again.plan = Some("free");
            out.push(again);
        }
        if let Some(s) = signup {
            out.push(ev(s, "signup", u.clone(), Some("/signup")));
            if i % 3 == 0 {
                out.push(ev(s + 20 * MIN, "purchase", u.clone(), Some("/checkout")));
                // A second purchase changes nothing.
                out.push(ev(s + 25 * MIN, "purchase", u.clone(), Some("/checkout")));
            }
        }
        // Returns on later days (retention), clicks and the odd error.
        for d in 1..=(i as i64 % 4) {
            out.push(ev(t0 + d * DAY + HOUR, "click", u.clone(), Some("/home")));
        }
        out.push(ev(
            t0 + 2 * MIN,
            "click",
            u.clone(),
            Some(if i % 3 == 0 { "/docs" } else { "/home" }),
        ));
        if i % 7 == 0 {
            out.push(ev(t0 + 3 * MIN, "error", u.clone(), Some("/home")));
        }
    }
    // Readings of 4 devices, no user.
    for k in 0..200i64 {
        let mut r = ev(base + k * 71 * MIN, "reading", None, None);
        r.device = Some(format!("{tag}d{}", k % 4));
        r.temp = Some((k % 13) as f64 + 0.5);
        out.push(r);
    }
    out
}

async fn send(s: &TestServer, key: &str, events: &[Ev]) {
    for chunk in events.chunks(1000) {
        let body: Vec<Value> = chunk.iter().map(Ev::json).collect();
        let (st, v) = s
            .post("/api/v1/events", key, &json!(body).to_string())
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
}

fn rfc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn q(from: i64, to: i64) -> String {
    format!("from={}&to={}", urlencode(&rfc(from)), urlencode(&rfc(to)))
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

/// value → (count, users), most frequent first, ties by value.
fn naive_top<'a>(
    evs: impl Iterator<Item = &'a Ev>,
    f: impl Fn(&Ev) -> Option<String>,
) -> Vec<(String, u64, u64)> {
    let mut m: BTreeMap<String, (u64, BTreeSet<String>)> = BTreeMap::new();
    for e in evs {
        if let Some(v) = f(e) {
            let x = m.entry(v).or_default();
            x.0 += 1;
            if let Some(u) = &e.user {
                x.1.insert(u.clone());
            }
        }
    }
    let mut v: Vec<(String, u64, u64)> = m
        .into_iter()
        .map(|(k, (n, u))| (k, n, u.len() as u64))
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

fn rows_of(v: &Value) -> Vec<(String, u64, u64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let value = match &r["value"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (
                value,
                r["count"].as_u64().unwrap(),
                r["users"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A series' points: time → value.
fn points(series: &Value) -> BTreeMap<String, f64> {
    series["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["time"].as_str().unwrap().to_string(),
                p["value"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Funnel steps per user, brute force: for each entry, the greedy earliest chain; a step's
/// time is that of its earliest completion, from the latest entry completing there.
fn naive_funnel(
    evs: &[&Ev],
    steps: &[&dyn Fn(&Ev) -> bool],
    from: i64,
    to: i64,
    window: i64,
) -> (Vec<u64>, Vec<Option<f64>>) {
    let mut by_user: BTreeMap<&str, Vec<(usize, &Ev)>> = BTreeMap::new();
    for (i, e) in evs.iter().enumerate() {
        if let Some(u) = &e.user {
            by_user.entry(u).or_default().push((i, e));
        }
    }
    let n = steps.len();
    let mut users = vec![0u64; n];
    let mut durations: Vec<Vec<i64>> = vec![vec![]; n];
    for list in by_user.values_mut() {
        list.sort_by_key(|(i, e)| (e.time, *i));
        // per step: (completion position, entry time) of the best chain so far
        let mut best: Vec<Option<(usize, i64)>> = vec![None; n];
        for (p0, (_, e0)) in list.iter().enumerate() {
            if !(steps[0](e0) && e0.time >= from && e0.time < to) {
                continue;
            }
            let mut pos = p0;
            for k in 0..n {
                if k > 0 {
                    match (pos + 1..list.len()).find(|&j| steps[k](list[j].1)) {
                        Some(j) if list[j].1.time - e0.time <= window => pos = j,
                        _ => break,
                    }
                }
                let better = match best[k] {
                    None => true,
                    Some((bp, bt)) => pos < bp || (pos == bp && e0.time > bt),
                };
                if better {
                    best[k] = Some((pos, e0.time));
                }
            }
        }
        for k in 0..n {
            if let Some((pos, entry)) = best[k] {
                users[k] += 1;
                durations[k].push(list[pos].1.time - entry);
            }
        }
    }
    let medians = durations
        .into_iter()
        .map(|mut d| {
            d.sort_unstable();
            match d.len() {
                0 => None,
                l if l % 2 == 1 => Some(d[l / 2] as f64 / 1000.0),
                l => Some((d[l / 2 - 1] + d[l / 2]) as f64 / 2000.0),
            }
        })
        .collect();
    (users, medians)
}

/// A top-N case: dimension, its value per event, a filter parameter, the filter itself.
type TopCase = (
    &'static str,
    Box<dyn Fn(&Ev) -> Option<String>>,
    &'static str,
    Box<dyn Fn(&Ev) -> bool>,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_routes_match_naive_computations_per_tenant() {
    let s = TestServer::spawn_with(&["--query-cache-staleness", "0s"], &[]).await;
    let a = s.admin_key.clone();
    let (_, b, _) = s.tenant_with_key("other", &["read", "write"]).await;
    let today = chrono::Utc::now().timestamp_millis() / DAY * DAY;
    let base = today - 16 * DAY;
    let end = today;
    let ev_a = generate(base, "a", 120);
    let ev_b = generate(base, "b", 30);
    send(&s, &a, &ev_a).await;
    send(&s, &b, &ev_b).await;
    s.wait_visible().await;

    for (key, evs, tag) in [(&a, &ev_a, "a"), (&b, &ev_b, "b")] {
        // --- summary over 5 days, against the 5 before.
        let (from, to) = (base + 5 * DAY, base + 10 * DAY);
        let (st, v) = s
            .get(
                &format!("/api/v1/analytics/summary?{}&top=3", q(from, to)),
                key,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        for (period, (f, t)) in [
            ("current", (from, to)),
            ("previous", (from - 5 * DAY, from)),
        ] {
            let inr: Vec<&Ev> = evs.iter().filter(|e| e.time >= f && e.time < t).collect();
            let c = &v[period];
            assert_eq!(c["events"], inr.len() as u64, "{tag} {period}");
            let users: BTreeSet<_> = inr.iter().filter_map(|e| e.user.clone()).collect();
            let devices: BTreeSet<_> = inr.iter().filter_map(|e| e.device.clone()).collect();
            assert_eq!(c["users"], users.len() as u64);
            assert_eq!(c["devices"], devices.len() as u64);
            assert_eq!(
                c["errors"],
                inr.iter().filter(|e| e.ty == "error").count() as u64
            );
            // Sent long after their time: every event is late.
            assert_eq!(c["late"], inr.len() as u64);
            assert_eq!(
                rows_of(&c["by_type"]),
                naive_top(inr.iter().copied(), |e| Some(e.ty.to_string()))
            );
            let pages = naive_top(inr.iter().copied(), |e| e.page.map(str::to_string));
            assert_eq!(
                rows_of(&c["top_pages"]),
                pages[..3.min(pages.len())].to_vec()
            );
            let sources = naive_top(inr.iter().copied(), |e| Some(e.source.to_string()));
            assert_eq!(rows_of(&c["top_sources"]), sources);
        }
        let (cur, prev) = (
            v["current"]["events"].as_f64().unwrap(),
            v["previous"]["events"].as_f64().unwrap(),
        );
        assert!((v["change"]["events"].as_f64().unwrap() - (cur - prev) / prev).abs() < 1e-12);
        for path in ["/analytics/summary", "/v1/analytics/summary"] {
            let (st, c) = s.get(&format!("{path}?{}", q(from, to)), key).await;
            assert_eq!(st, StatusCode::OK, "{c}");
            assert_eq!(c["total_events"], v["current"]["events"]);
            assert_eq!(c["unique_users"], v["current"]["users"]);
            assert_eq!(
                c["event_types"]["click"],
                v["current"]["by_type"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r["value"] == "click")
                    .unwrap()["count"]
            );
        }

        // --- top-N of every kind of dimension, with a filter.
        let (from, to) = (base, end);
        let all: Vec<&Ev> = evs.iter().collect();
        let cases: Vec<TopCase> = vec![
            (
                "page_url",
                Box::new(|e: &Ev| e.page.map(str::to_string)),
                "",
                Box::new(|_: &Ev| true),
            ),
            (
                "user_id",
                Box::new(|e: &Ev| e.user.clone()),
                "&type=click",
                Box::new(|e: &Ev| e.ty == "click"),
            ),
            (
                "device_id",
                Box::new(|e: &Ev| e.device.clone()),
                "",
                Box::new(|_: &Ev| true),
            ),
            (
                "property:plan",
                Box::new(|e: &Ev| e.plan.map(str::to_string)),
                "&page_url=/pricing",
                Box::new(|e: &Ev| e.page == Some("/pricing")),
            ),
            (
                "source",
                Box::new(|e: &Ev| Some(e.source.to_string())),
                "&property.plan=pro",
                Box::new(|e: &Ev| e.plan == Some("pro")),
            ),
        ];
        for (dim, f, filter, keep) in cases {
            let (st, v) = s
                .get(
                    &format!(
                        "/api/v1/analytics/top?dimension={dim}&limit=4&{}{filter}",
                        q(from, to)
                    ),
                    key,
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{dim}: {v}");
            let kept: Vec<&Ev> = all.iter().copied().filter(|e| keep(e)).collect();
            let want = naive_top(kept.iter().copied(), &f);
            assert_eq!(
                rows_of(&v["data"]),
                want[..4.min(want.len())].to_vec(),
                "{tag} {dim}{filter}"
            );
            let with: u64 = want.iter().map(|w| w.1).sum();
            assert_eq!(v["total"], with);
            assert_eq!(v["without_value"], kept.len() as u64 - with);
            assert_eq!(v["distinct"], want.len() as u64);
            let listed: u64 = want.iter().take(4).map(|w| w.1).sum();
            assert_eq!(v["other"]["count"], with - listed);
        }
        // Compatibility click counts per (user, page).
        let user = format!("{tag}u3");
        let (st, v) = s
            .get(
                &format!("/analytics/events?user_id={user}&{}", q(from, to)),
                key,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let mut want: BTreeMap<String, u64> = BTreeMap::new();
        for e in evs
            .iter()
            .filter(|e| e.ty == "click" && e.user.as_deref() == Some(&user))
        {
            *want.entry(e.page.unwrap().to_string()).or_default() += 1;
        }
        let got: BTreeMap<String, u64> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert_eq!(r["user_id"], user);
                (
                    r["page_url"].as_str().unwrap().to_string(),
                    r["clicks"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, want);
        assert_eq!(v["total_clicks"], want.values().sum::<u64>());

        // --- grouped time series: events per day by type, top 2 + other; a metric by device.
        let (st, v) = s
            .get(
                &format!(
                    "/api/v1/analytics/timeseries?measure=count&group_by=type&bucket=1d&limit=2&{}",
                    q(from, to)
                ),
                key,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let ranked = naive_top(all.iter().copied(), |e| Some(e.ty.to_string()));
        let top2: Vec<&str> = ranked.iter().take(2).map(|r| r.0.as_str()).collect();
        let series = v["series"].as_array().unwrap();
        assert_eq!(series.len(), 3);
        for sr in series {
            let mut want: BTreeMap<String, f64> = BTreeMap::new();
            for e in evs.iter() {
                let member = match sr["group"].as_str() {
                    Some(g) => e.ty == g,
                    None => !top2.contains(&e.ty),
                };
                if member {
                    *want.entry(rfc(e.time / DAY * DAY)).or_default() += 1.0;
                }
            }
            let got = points(sr);
            assert_eq!(got, want, "{tag} {}", sr["group"]);
            assert_eq!(sr["other"], sr["group"].is_null());
        }
        assert_eq!(series[0]["group"], top2[0]);
        let (st, v) = s.get(&format!("/api/v1/analytics/timeseries?measure=metric:temp&agg=max&group_by=device_id&bucket=1d&limit=10&{}", q(from, to)), key).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        for sr in v["series"].as_array().unwrap() {
            let mut want: BTreeMap<String, f64> = BTreeMap::new();
            for e in evs
                .iter()
                .filter(|e| e.device.as_deref() == sr["group"].as_str())
            {
                let x = want.entry(rfc(e.time / DAY * DAY)).or_insert(f64::MIN);
                *x = x.max(e.temp.unwrap());
            }
            let got = points(sr);
            assert_eq!(got, want);
        }
        let (st, v) = s.get(&format!("/api/v1/analytics/timeseries?measure=distinct_users&group_by=page_url&bucket=1d&limit=1&{}", q(from, to)), key).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let other = v["series"].as_array().unwrap().last().unwrap();
        assert!(other["other"].as_bool().unwrap());
        let top_page = v["series"][0]["group"].as_str().unwrap().to_string();
        let others: BTreeSet<&String> = evs
            .iter()
            .filter(|e| e.page.is_some() && e.page != Some(top_page.as_str()))
            .filter_map(|e| e.user.as_ref())
            .collect();
        assert_eq!(other["total"], others.len() as u64);
        // The same with a filter: "other" counts only the filtered events' users.
        let (st, v) = s.get(&format!("/api/v1/analytics/timeseries?measure=distinct_users&group_by=page_url&bucket=1d&limit=1&source=ios&{}", q(from, to)), key).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let other = v["series"].as_array().unwrap().last().unwrap();
        assert!(other["other"].as_bool().unwrap(), "{v}");
        let top_page = v["series"][0]["group"].as_str().unwrap().to_string();
        let others: BTreeSet<&String> = evs
            .iter()
            .filter(|e| e.source == "ios" && e.page.is_some() && e.page != Some(top_page.as_str()))
            .filter_map(|e| e.user.as_ref())
            .collect();
        assert_eq!(other["total"], others.len() as u64, "filtered other");

        // --- one user: sessions split at 30 minutes of inactivity.
        let user = format!("{tag}u5");
        let (st, v) = s
            .get(
                &format!("/api/v1/analytics/users/{user}?{}", q(from, to)),
                key,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let mut mine: Vec<&Ev> = evs
            .iter()
            .filter(|e| e.user.as_deref() == Some(&user))
            .collect();
        mine.sort_by_key(|e| e.time);
        assert_eq!(v["events"], mine.len() as u64);
        assert_eq!(v["first_seen"], rfc(mine[0].time));
        assert_eq!(v["last_seen"], rfc(mine.last().unwrap().time));
        let mut sessions: Vec<(i64, i64, u64)> = Vec::new();
        for e in &mine {
            match sessions.last_mut() {
                Some(x) if e.time - x.1 <= 30 * MIN => {
                    x.1 = e.time;
                    x.2 += 1;
                }
                _ => sessions.push((e.time, e.time, 1)),
            }
        }
        sessions.reverse();
        let got: Vec<(String, String, u64)> = v["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["start"].as_str().unwrap().into(),
                    x["end"].as_str().unwrap().into(),
                    x["events"].as_u64().unwrap(),
                )
            })
            .collect();
        let want: Vec<(String, String, u64)> =
            sessions.iter().map(|x| (rfc(x.0), rfc(x.1), x.2)).collect();
        assert_eq!(got, want);
        assert_eq!(v["session_count"], sessions.len() as u64);
        assert_eq!(
            v["recent_events"][0]["time"],
            rfc(mine.last().unwrap().time)
        );
        assert_eq!(
            rows_of(&v["by_type"]),
            naive_top(mine.iter().copied(), |e| Some(e.ty.to_string()))
        );
        let (st, _) = s
            .get(
                &format!("/api/v1/analytics/users/{tag}nobody?{}", q(from, to)),
                key,
            )
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND);

        // --- funnels: 3 steps in 1h, and a 2-step one with a breakdown by plan.
        let ordered: Vec<&Ev> = evs.iter().collect();
        let pricing = |e: &Ev| e.ty == "page_view" && e.page == Some("/pricing");
        let signup = |e: &Ev| e.ty == "signup";
        let purchase = |e: &Ev| e.ty == "purchase";
        for (ffrom, fto) in [
            (base, end),
            (base + 2 * DAY, base + 6 * DAY),
            (base + 20 * DAY, base + 21 * DAY),
        ] {
            let body = json!({
                "steps": [{"type": "page_view", "where": {"page_url": "/pricing"}}, {"type": "signup"}, "purchase"],
                "window": "1h", "from": rfc(ffrom), "to": rfc(fto),
            });
            let (st, v) = s
                .post("/api/v1/analytics/funnel", key, &body.to_string())
                .await;
            assert_eq!(st, StatusCode::OK, "{v}");
            let (users, medians) =
                naive_funnel(&ordered, &[&pricing, &signup, &purchase], ffrom, fto, HOUR);
            let steps = v["steps"].as_array().unwrap();
            for k in 0..3 {
                assert_eq!(steps[k]["users"], users[k], "{tag} step {k}: {v}");
                if k > 0 {
                    assert_eq!(
                        steps[k]["median_seconds_to_convert"].as_f64(),
                        medians[k],
                        "{tag} step {k}"
                    );
                    let want = if users[k - 1] == 0 {
                        Value::Null
                    } else {
                        json!(users[k] as f64 / users[k - 1] as f64)
                    };
                    assert_eq!(steps[k]["conversion_from_previous"], want);
                }
            }
            assert_eq!(steps[0]["type"], "page_view");
            assert_eq!(steps[2]["type"], "purchase");
        }
        // The re-entry case exists in the data: without it, fewer would convert.
        let body = json!({"steps": ["page_view", "signup"], "window": "1h", "from": rfc(base), "to": rfc(end), "breakdown": "property:plan"});
        let (st, v) = s
            .post("/api/v1/analytics/funnel", key, &body.to_string())
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let page_view = |e: &Ev| e.ty == "page_view";
        for g in v["breakdown"]["groups"].as_array().unwrap() {
            let plan = g["value"].as_str().unwrap().to_string();
            // Only entries with this plan start a chain of the group.
            let entry = |e: &Ev| e.ty == "page_view" && e.plan == Some(plan.as_str());
            let (users, _) = naive_funnel(&ordered, &[&entry, &signup], base, end, HOUR);
            assert_eq!(g["steps"][0]["users"], users[0], "{plan}");
            assert_eq!(g["steps"][1]["users"], users[1], "{plan}");
        }
        let (users, _) = naive_funnel(&ordered, &[&page_view, &signup], base, end, HOUR);
        assert_eq!(v["steps"][1]["users"], users[1]);

        // --- retention: cohorts by first page_view per day, returns by click.
        let body = json!({"cohort": "page_view", "return": {"type": "click", "where": {"page_url": "/home"}},
                          "period": "day", "periods": 4, "from": rfc(base), "to": rfc(base + 10 * DAY)});
        let (st, v) = s
            .post("/api/v1/analytics/retention", key, &body.to_string())
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let mut first: HashMap<&str, i64> = HashMap::new();
        for e in evs.iter().filter(|e| e.ty == "page_view") {
            let f = first.entry(e.user.as_deref().unwrap()).or_insert(i64::MAX);
            *f = (*f).min(e.time);
        }
        let mut want: BTreeMap<i64, (u64, Vec<u64>)> = BTreeMap::new();
        for (u, f) in &first {
            let c = f / DAY * DAY;
            let entry = want.entry(c).or_insert((0, vec![0; 5]));
            entry.0 += 1;
            for k in 0..=4i64 {
                let returned = evs.iter().any(|e| {
                    e.ty == "click"
                        && e.page == Some("/home")
                        && e.user.as_deref() == Some(*u)
                        && e.time / DAY * DAY == c + k * DAY
                        && e.time > *f
                });
                if returned {
                    entry.1[k as usize] += 1;
                }
            }
        }
        let cohorts = v["cohorts"].as_array().unwrap();
        assert_eq!(cohorts.len(), want.len());
        for (c, (start, (n, returned))) in cohorts.iter().zip(&want) {
            assert_eq!(c["start"], rfc(*start));
            assert_eq!(c["users"], *n);
            let got: Vec<u64> = c["retention"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["users"].as_u64().unwrap())
                .collect();
            // Periods that have not started yet are left out.
            let now = chrono::Utc::now().timestamp_millis();
            let started = (0..=4).filter(|k| start + k * DAY <= now).count();
            assert_eq!(
                got,
                returned[..started].to_vec(),
                "{tag} cohort {}",
                rfc(*start)
            );
        }

        // --- exports: every event, in time order; latest metrics of every device.
        let resp = reqwest::Client::new()
            .get(format!("{}/api/v1/export?format=ndjson", s.url))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let text = resp.text().await.unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), evs.len());
        let mut want_times: Vec<i64> = evs.iter().map(|e| e.time).collect();
        want_times.sort_unstable();
        let got_times: Vec<String> = lines
            .iter()
            .map(|l| l["time"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            got_times,
            want_times.iter().map(|t| rfc(*t)).collect::<Vec<_>>()
        );
        let ids: BTreeSet<&str> = lines
            .iter()
            .map(|l| l["event_id"].as_str().unwrap())
            .collect();
        assert!(ids.iter().all(|i| i.starts_with(tag)));
        let resp = reqwest::Client::new()
            .get(format!(
                "{}/api/v1/export?format=csv&{}",
                s.url,
                q(base, base + DAY)
            ))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
        let csv_text = resp.text().await.unwrap();
        let day0 = evs.iter().filter(|e| e.time < base + DAY).count();
        assert_eq!(csv_text.lines().count(), day0 + 1);
        assert!(csv_text.starts_with("time,event_id,type"));
        let resp = reqwest::Client::new()
            .get(format!("{}/api/v1/export?format=parquet", s.url))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let bytes = resp.bytes().await.unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        // The stored `events` schema: plain Utf8 strings, whatever the scan decoded them as.
        let schema = arrow::array::RecordBatchReader::schema(&reader);
        assert!(
            schema
                .fields()
                .iter()
                .all(|f| *f.data_type() != arrow::datatypes::DataType::Utf8View),
            "{schema:?}"
        );
        assert_eq!(
            schema.field_with_name("user_id").unwrap().data_type(),
            &arrow::datatypes::DataType::Utf8
        );
        let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, evs.len());

        let (st, v) = s.get("/api/v1/metrics/export?format=json", key).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let mut latest: BTreeMap<String, (i64, f64)> = BTreeMap::new();
        for e in evs.iter().filter(|e| e.temp.is_some()) {
            let x = latest
                .entry(e.device.clone().unwrap())
                .or_insert((i64::MIN, 0.0));
            if e.time > x.0 {
                *x = (e.time, e.temp.unwrap());
            }
        }
        let got: BTreeMap<String, (String, f64)> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert_eq!(r["metric"], "temp");
                (
                    r["device_id"].as_str().unwrap().into(),
                    (
                        r["time"].as_str().unwrap().into(),
                        r["value"].as_f64().unwrap(),
                    ),
                )
            })
            .collect();
        assert_eq!(
            got,
            latest
                .iter()
                .map(|(d, (t, x))| (d.clone(), (rfc(*t), *x)))
                .collect()
        );
        let resp = reqwest::Client::new()
            .get(format!("{}/api/v1/metrics/export", s.url))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        let text = resp.text().await.unwrap();
        let (d, (t, x)) = latest.iter().next().unwrap();
        assert!(
            text.contains(&format!(
                "eddy_device_metric{{device_id=\"{d}\",metric=\"temp\"}} {x} {t}\n"
            )),
            "{text}"
        );
        let (st, v) = s.get("/api/v1/metrics/export?format=csv", key).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(v.as_str().unwrap().lines().count(), latest.len() + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_routes_refuse_bad_parameters_and_missing_scopes() {
    let s = TestServer::spawn().await;
    let a = s.admin_key.clone();
    let (_, w, _) = s.tenant_with_key("writer", &["write"]).await;
    let bad_gets = [
        "/api/v1/analytics/summary?from=yesterday",
        "/api/v1/analytics/summary?from=-1h&to=-2h",
        "/api/v1/analytics/summary?top=0",
        "/api/v1/analytics/summary?colour=red",
        "/api/v1/analytics/top",
        "/api/v1/analytics/top?dimension=colour",
        "/api/v1/analytics/top?dimension=type&limit=100000",
        "/api/v1/analytics/timeseries?group_by=type&measure=median",
        "/api/v1/analytics/timeseries?group_by=type&bucket=0s",
        "/api/v1/analytics/timeseries?measure=count",
        "/api/v1/analytics/timeseries?group_by=type&agg=max",
        "/api/v1/analytics/timeseries?group_by=type&bucket=1s&from=-30d",
        "/api/v1/analytics/users/u1?session_gap=soon",
        "/api/v1/export?format=xlsx",
        "/api/v1/export?from=-1h&to=-2h",
        "/api/v1/metrics/export?format=xml",
        "/analytics/events?colour=red",
    ];
    for path in bad_gets {
        let (st, v) = s.get(path, &a).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert!(v["message"].as_str().unwrap().len() > 10, "{path}: {v}");
        let (st, _) = s.get(path, &w).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path} with a write-only key");
        let (st, _) = s.request("GET", path, None, None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{path} without a key");
    }
    let bad_posts = [
        ("/api/v1/analytics/funnel", json!({"steps": []})),
        (
            "/api/v1/analytics/funnel",
            json!({"steps": ["a"], "window": "soon"}),
        ),
        ("/api/v1/analytics/funnel", json!({"steps": [{"type": ""}]})),
        (
            "/api/v1/analytics/funnel",
            json!({"steps": [{"type": "a", "where": {"plan": [1]}}]}),
        ),
        (
            "/api/v1/analytics/funnel",
            json!({"steps": ["a"], "breakdown": "colour"}),
        ),
        (
            "/api/v1/analytics/funnel",
            json!({"steps": ["a"], "from": "-1h", "to": "-2h"}),
        ),
        (
            "/api/v1/analytics/funnel",
            json!({"steps": ["a"], "colour": 1}),
        ),
        ("/api/v1/analytics/retention", json!({"cohort": "a"})),
        (
            "/api/v1/analytics/retention",
            json!({"cohort": "a", "return": "b", "period": "month"}),
        ),
        (
            "/api/v1/analytics/retention",
            json!({"cohort": "a", "return": "b", "periods": 0}),
        ),
    ];
    for (path, body) in bad_posts {
        let (st, v) = s.post(path, &a, &body.to_string()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{path} {body}: {v}");
        let (st, _) = s.post(path, &w, &body.to_string()).await;
        assert_eq!(st, StatusCode::FORBIDDEN);
    }
    let (st, v) = s.post("/api/v1/analytics/funnel", &a, "{not json").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // Empty ranges answer zeros, not errors.
    let (st, v) = s.get("/api/v1/analytics/summary", &a).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["current"]["events"], 0);
    assert_eq!(v["change"]["events"], Value::Null);
    let (st, v) = s
        .post(
            "/api/v1/analytics/funnel",
            &a,
            &json!({"steps": ["a", "b"]}).to_string(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["steps"][0]["users"], 0);
    assert_eq!(v["steps"][1]["conversion_from_previous"], Value::Null);
    let (st, v) = s.get("/api/v1/export?format=csv", &a).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v.as_str().unwrap().lines().count(), 1, "header only");

    // Cached answers (1 s) are per path: two users are two answers, each repeated from cache.
    let evs = json!([{"type": "click", "user_id": "u1"}, {"type": "click", "user_id": "u2"}, {"type": "view", "user_id": "u2"}]);
    let (st, _) = s.post("/api/v1/events", &a, &evs.to_string()).await;
    assert_eq!(st, StatusCode::OK);
    s.wait_visible().await;
    for (user, n) in [("u1", 1), ("u2", 2), ("u1", 1), ("u2", 2)] {
        let (st, v) = s.get(&format!("/api/v1/analytics/users/{user}"), &a).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["events"], n, "{user}");
    }
}
