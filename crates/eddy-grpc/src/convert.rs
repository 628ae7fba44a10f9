//! Messages of `eddy.v1` to and from the service layer's types. Nothing is decided here:
//! events become typed fields the ingest service validates, answers are copied field by
//! field.

use std::collections::BTreeMap;

use eddy_model::time::parse_time_str;
use eddy_model::{EventError, EventFields, Scalar};
use eddy_proto::v1 as pb;
use eddy_service::Error as Domain;
use eddy_service::alerts::AlertView;
use eddy_service::analytics::{
    Changes, EventSpec, FunnelAnswer, FunnelStep, LatestMetric, PeriodSummary, RetentionAnswer,
    SummaryAnswer, UserAnswer, ValueCount,
};
use eddy_service::ingest::Outcome;
use eddy_service::live::{LiveMessage, RollupView};
use eddy_service::overview::OverviewAnswer;
use eddy_service::query::{StoredEvent, TimeseriesAnswer};
use eddy_service::range::TimeRange;
use eddy_service::sql::TableInfo;
use prost_types::value::Kind;
use prost_types::{Duration, ListValue, Struct, Timestamp, Value};
use serde_json::{Map, Value as Json};

const NS: i64 = 1_000_000_000;

fn bad(message: String) -> Domain {
    Domain::invalid("invalid_parameter", message)
}

/// An instant in ns as a `Timestamp`.
pub(crate) fn ts(ns: i64) -> Timestamp {
    Timestamp {
        seconds: ns.div_euclid(NS),
        // In 0..1e9 by construction.
        nanos: ns.rem_euclid(NS) as i32,
    }
}

/// A `Timestamp` as ns, or why it cannot be one.
pub(crate) fn ns(field: &str, t: &Timestamp) -> Result<i64, Domain> {
    timestamp_ns(t).map_err(|why| bad(format!("`{field}`: {why}")))
}

/// A `Timestamp` as ns, or the reason it cannot be one.
fn timestamp_ns(t: &Timestamp) -> Result<i64, String> {
    if !(0..NS as i32).contains(&t.nanos) {
        return Err(format!(
            "nanos must be from 0 to 999999999, got {}",
            t.nanos
        ));
    }
    t.seconds
        .checked_mul(NS)
        .and_then(|s| s.checked_add(i64::from(t.nanos)))
        .ok_or_else(|| {
            format!(
                "{} s from the epoch is outside the years 1677 to 2262",
                t.seconds
            )
        })
}

/// A `Duration` as ns (positive), or why it cannot be one.
pub(crate) fn duration_ns(field: &str, d: &Duration) -> Result<i64, Domain> {
    let v = d
        .seconds
        .checked_mul(NS)
        .and_then(|s| s.checked_add(i64::from(d.nanos)))
        .ok_or_else(|| bad(format!("`{field}`: too long")))?;
    if v <= 0 {
        return Err(bad(format!("`{field}`: must be positive")));
    }
    Ok(v)
}

/// A request's range: `from`/`to`, or `last` before `to` (now by default).
pub(crate) fn range(r: Option<&pb::TimeRange>, now: i64) -> Result<TimeRange, Domain> {
    let Some(r) = r else {
        return Ok(TimeRange {
            now: Some(now),
            ..TimeRange::default()
        });
    };
    let to = r.to.as_ref().map(|t| ns("range.to", t)).transpose()?;
    let mut from = r.from.as_ref().map(|t| ns("range.from", t)).transpose()?;
    if let Some(last) = &r.last {
        if from.is_some() {
            return Err(bad("`range`: give `from` or `last`, not both".into()));
        }
        let span = duration_ns("range.last", last)?;
        from = Some(to.unwrap_or(now).saturating_sub(span));
    }
    Ok(TimeRange {
        from,
        to,
        now: Some(now),
    })
}

/// A bound count parameter: 0 means the default, above `max` is refused.
pub(crate) fn count(field: &str, v: u32, default: usize, max: usize) -> Result<usize, Domain> {
    match v as usize {
        0 => Ok(default),
        n if n <= max => Ok(n),
        _ => Err(bad(format!("`{field}`: a whole number from 1 to {max}"))),
    }
}

/// A number as JSON; NaN and infinities (which JSON cannot hold) as the strings the
/// normaliser refuses by name.
fn number(f: f64) -> Json {
    serde_json::Number::from_f64(f).map_or_else(
        || {
            Json::String(
                if f.is_nan() {
                    "NaN"
                } else if f > 0.0 {
                    "inf"
                } else {
                    "-inf"
                }
                .into(),
            )
        },
        Json::Number,
    )
}

/// A `google.protobuf.Value` as JSON.
pub(crate) fn json(v: Value) -> Json {
    match v.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::NumberValue(n)) => number(n),
        Some(Kind::StringValue(s)) => Json::String(s),
        Some(Kind::BoolValue(b)) => Json::Bool(b),
        Some(Kind::StructValue(s)) => {
            Json::Object(s.fields.into_iter().map(|(k, v)| (k, json(v))).collect())
        }
        Some(Kind::ListValue(l)) => Json::Array(l.values.into_iter().map(json).collect()),
    }
}

/// JSON as a `google.protobuf.Value`.
pub(crate) fn value(v: &Json) -> Value {
    let kind = match v {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(a) => Kind::ListValue(ListValue {
            values: a.iter().map(value).collect(),
        }),
        Json::Object(m) => Kind::StructValue(structure(m)),
    };
    Value { kind: Some(kind) }
}

/// A JSON object as a `google.protobuf.Struct`.
pub(crate) fn structure(m: &Map<String, Json>) -> Struct {
    Struct {
        fields: m.iter().map(|(k, v)| (k.clone(), value(v))).collect(),
    }
}

/// An event of a request as typed fields for the ingest service to validate like any other
/// body (no JSON is built). Empty strings are absent (proto3 cannot tell them apart); a time
/// outside what ns since the epoch can hold rejects the event, naming `time`.
pub(crate) fn event_fields(e: pb::Event) -> Result<EventFields, EventError> {
    let text = |s: String| (!s.is_empty()).then_some(s);
    let time = e
        .time
        .map(|t| timestamp_ns(&t))
        .transpose()
        .map_err(|why| EventError::new("time", why))?;
    Ok(EventFields {
        event_id: text(e.event_id),
        r#type: text(e.r#type),
        time,
        source: text(e.source),
        device_id: text(e.device_id),
        user_id: text(e.user_id),
        page_url: text(e.page_url),
        metrics: e.metrics.into_iter().collect(),
        properties: e
            .properties
            .into_iter()
            .map(|(k, v)| (k, scalar(v)))
            .collect(),
    })
}

/// A `google.protobuf.Value` as a property value.
fn scalar(v: Value) -> Scalar {
    match v.kind {
        None | Some(Kind::NullValue(_)) => Scalar::Null,
        Some(Kind::NumberValue(n)) => Scalar::Number(n),
        Some(Kind::StringValue(s)) => Scalar::String(s),
        Some(Kind::BoolValue(b)) => Scalar::Bool(b),
        Some(Kind::StructValue(_)) => Scalar::Unsupported("a struct"),
        Some(Kind::ListValue(_)) => Scalar::Unsupported("a list"),
    }
}

fn str_of(m: &Map<String, Json>, k: &str) -> String {
    m.get(k).and_then(Json::as_str).unwrap_or("").to_string()
}

fn time_of(m: &Map<String, Json>, k: &str) -> Option<Timestamp> {
    m.get(k)
        .and_then(Json::as_str)
        .and_then(|s| parse_time_str(s).ok())
        .map(ts)
}

/// An event in the data model's JSON form (live messages) as a message.
pub(crate) fn event_from_json(v: &Json) -> pb::Event {
    let Some(m) = v.as_object() else {
        return pb::Event::default();
    };
    let map = |k: &str| m.get(k).and_then(Json::as_object);
    pb::Event {
        event_id: str_of(m, "event_id"),
        r#type: str_of(m, "type"),
        time: time_of(m, "time"),
        device_id: str_of(m, "device_id"),
        user_id: str_of(m, "user_id"),
        source: str_of(m, "source"),
        page_url: str_of(m, "page_url"),
        metrics: map("metrics")
            .map(|x| {
                x.iter()
                    .map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(f64::NAN)))
                    .collect()
            })
            .unwrap_or_default(),
        properties: map("properties")
            .map(|x| x.iter().map(|(k, v)| (k.clone(), value(v))).collect())
            .unwrap_or_default(),
        received_at: time_of(m, "received_at"),
    }
}

/// A stored event as a message.
pub(crate) fn stored_event(e: StoredEvent) -> pb::Event {
    pb::Event {
        event_id: e.event_id,
        r#type: e.r#type,
        time: Some(ts(e.time)),
        device_id: e.device_id.unwrap_or_default(),
        user_id: e.user_id.unwrap_or_default(),
        source: e.source.unwrap_or_default(),
        page_url: e.page_url.unwrap_or_default(),
        metrics: e.metrics.into_iter().collect(),
        properties: e
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), value(v)))
            .collect(),
        received_at: Some(ts(e.received_at)),
    }
}

pub(crate) fn rejected(errors: &[EventError]) -> Vec<pb::RejectedEvent> {
    errors
        .iter()
        .map(|e| pb::RejectedEvent {
            index: u32::try_from(e.index).unwrap_or(u32::MAX),
            field: e.field.clone(),
            reason: e.reason.clone(),
        })
        .collect()
}

pub(crate) fn outcome(o: Outcome) -> pb::IngestResponse {
    pb::IngestResponse {
        accepted: o.accepted as u64,
        duplicates: o.duplicates as u64,
        rejected: rejected(&o.rejected),
        durable: o.durable,
        offsets: o
            .offsets
            .filter(|r| !r.is_empty())
            .map(|r| pb::OffsetRange {
                start: r.start,
                end: r.end,
            }),
        event_ids: o.event_ids,
    }
}

fn counts(v: Vec<ValueCount>) -> Vec<pb::ValueCount> {
    v.into_iter()
        .map(|c| pb::ValueCount {
            value: Some(value(&c.value)),
            count: c.count,
            users: c.users,
        })
        .collect()
}

fn period(p: PeriodSummary) -> pb::PeriodSummary {
    pb::PeriodSummary {
        events: p.events,
        events_per_minute: p.events_per_minute,
        users: p.users,
        devices: p.devices,
        errors: p.errors,
        error_rate: p.error_rate,
        late: p.late,
        by_type: counts(p.by_type),
        top_pages: counts(p.top_pages),
        top_sources: counts(p.top_sources),
    }
}

fn changes(c: Changes) -> pb::Changes {
    pb::Changes {
        events: c.events,
        users: c.users,
        devices: c.devices,
        errors: c.errors,
        late: c.late,
    }
}

pub(crate) fn summary(a: SummaryAnswer) -> pb::AnalyticsSummary {
    let cur = &a.current;
    let event_types: BTreeMap<String, u64> = cur
        .by_type
        .iter()
        .map(|c| (c.value.as_str().unwrap_or("").to_string(), c.count))
        .collect();
    pb::AnalyticsSummary {
        total_events: cur.events,
        unique_users: cur.users,
        event_types: event_types.into_iter().collect(),
        unique_devices: cur.devices,
        error_events: cur.errors,
        from: Some(ts(a.from)),
        to: Some(ts(a.to)),
        previous_from: Some(ts(a.previous_from)),
        events_rejected: a.ingest_since_start.events_rejected,
        events_deduplicated: a.ingest_since_start.events_deduplicated,
        requests_rate_limited: a.ingest_since_start.requests_rate_limited,
        current: Some(period(a.current)),
        previous: Some(period(a.previous)),
        change: Some(changes(a.change)),
    }
}

pub(crate) fn timeseries(a: TimeseriesAnswer) -> pb::TimeSeries {
    let t = a.series;
    pb::TimeSeries {
        aggs: t.aggs.iter().map(|g| g.name()).collect(),
        grouped: t.grouped,
        series: t
            .series
            .into_iter()
            .map(|s| pb::Series {
                device_id: s.device_id.unwrap_or_default(),
                buckets: s
                    .buckets
                    .into_iter()
                    .map(|b| pb::Bucket {
                        time: Some(ts(b.time)),
                        values: b
                            .values
                            .into_iter()
                            .map(|v| v.unwrap_or(f64::NAN))
                            .collect(),
                    })
                    .collect(),
            })
            .collect(),
        source: a.source.name().to_string(),
    }
}

fn rollup(r: RollupView) -> pb::RollupUpdate {
    pb::RollupUpdate {
        device_id: r.device_id,
        metric: r.metric,
        resolution: r.resolution.to_string(),
        window_start: Some(ts(r.window_start)),
        count: r.count,
        sum: r.sum,
        min: r.min,
        max: r.max,
        avg: r.avg,
        first: r.first,
        last: r.last,
    }
}

fn rfc(s: &str) -> Option<Timestamp> {
    parse_time_str(s).ok().map(ts)
}

fn alert(event: &str, a: AlertView) -> pb::Alert {
    pb::Alert {
        event: event.to_string(),
        opened_at: rfc(&a.opened_at),
        last_triggered_at: rfc(&a.last_triggered_at),
        acknowledged_at: a.acknowledged_at.as_deref().and_then(rfc),
        resolved_at: a.resolved_at.as_deref().and_then(rfc),
        id: a.id,
        rule_id: a.rule_id,
        rule_name: a.rule_name,
        rule_kind: a.rule_kind,
        device_id: a.device_id,
        metric: a.metric,
        severity: a.severity.name().to_string(),
        status: a.status.name().to_string(),
        message: a.message,
        value: a.value,
        expected: a.expected,
        score: a.score,
        occurrences: a.occurrences,
        resolution: a.resolution.unwrap_or_default(),
        note: a.note.unwrap_or_default(),
    }
}

pub(crate) fn overview(a: OverviewAnswer) -> pb::Overview {
    let lag = a.pipeline.lag;
    pb::Overview {
        summary: Some(summary(a.summary)),
        open_alerts_total: a.open_alerts.total as u64,
        open_alerts: a
            .open_alerts
            .data
            .into_iter()
            .map(|v| alert("opened", v))
            .collect(),
        pipeline: Some(pb::PipelineHealth {
            ready: a.pipeline.ready,
            log: a.pipeline.log.to_string(),
            reason: a.pipeline.reason.unwrap_or_default().to_string(),
            end_offset: lag.end_offset,
            store_lag: lag.store.lag,
            stream_lag: lag.stream.lag,
            consumers: lag
                .consumers
                .into_iter()
                .map(|c| pb::ConsumerLag {
                    name: c.name,
                    next_offset: c.next_offset,
                    lag: c.lag,
                })
                .collect(),
        }),
    }
}

pub(crate) fn tables(v: Vec<TableInfo>) -> pb::ListTablesResponse {
    pb::ListTablesResponse {
        tables: v
            .into_iter()
            .map(|t| pb::Table {
                name: t.name,
                description: t.description.to_string(),
                columns: t
                    .columns
                    .into_iter()
                    .map(|c| pb::TableColumn {
                        name: c.name,
                        r#type: c.r#type,
                        nullable: c.nullable,
                    })
                    .collect(),
            })
            .collect(),
    }
}

pub(crate) fn live(m: LiveMessage) -> pb::LiveMessage {
    use pb::live_message::Data;
    let kind = m.kind().to_string();
    let (timestamp, data) = match m {
        LiveMessage::Event { timestamp, data } => (timestamp, Data::Event(event_from_json(&data))),
        LiveMessage::Rollup { timestamp, data } => (timestamp, Data::Rollup(rollup(data))),
        LiveMessage::Alert { timestamp, data } => {
            let data = *data;
            (timestamp, Data::Alert(alert(data.event.name(), data.alert)))
        }
    };
    pb::LiveMessage {
        r#type: kind,
        timestamp: Some(ts(timestamp)),
        data: Some(data),
    }
}

/// The metric samples a live event carries, as messages (all, or those passing the filters).
pub(crate) fn samples(m: &pb::LiveMessage, metric: Option<&str>) -> Vec<pb::MetricSample> {
    let Some(pb::live_message::Data::Event(e)) = &m.data else {
        return Vec::new();
    };
    e.metrics
        .iter()
        .filter(|(name, _)| metric.is_none_or(|want| want == name.as_str()))
        .map(|(name, v)| pb::MetricSample {
            device_id: e.device_id.clone(),
            metric: name.clone(),
            time: e.time,
            value: *v,
            event_id: e.event_id.clone(),
        })
        .collect()
}

pub(crate) fn latest(m: LatestMetric) -> pb::MetricSample {
    pb::MetricSample {
        device_id: m.device_id,
        metric: m.metric,
        time: Some(ts(m.time)),
        value: m.value,
        event_id: String::new(),
    }
}

pub(crate) fn user(a: UserAnswer) -> pb::UserAnalytics {
    pb::UserAnalytics {
        user_id: a.user_id,
        from: Some(ts(a.from)),
        to: Some(ts(a.to)),
        first_seen: Some(ts(a.first_seen)),
        last_seen: Some(ts(a.last_seen)),
        events: a.events,
        by_type: counts(a.by_type),
        pages: counts(a.pages),
        devices: counts(a.devices),
        session_gap_seconds: a.session_gap_seconds,
        session_count: a.session_count,
        sessions: a
            .sessions
            .into_iter()
            .map(|s| pb::Session {
                start: Some(ts(s.start)),
                end: Some(ts(s.end)),
                duration_seconds: s.duration_seconds,
                events: s.events,
            })
            .collect(),
        listed_sessions_seconds: a.listed_sessions_seconds,
        recent_events: a.recent_events.into_iter().map(stored_event).collect(),
    }
}

/// A request's event spec as the service's (conditions as JSON values).
pub(crate) fn spec_in(s: pb::EventSpec) -> EventSpec {
    EventSpec {
        r#type: s.r#type,
        conditions: s.r#where.into_iter().map(|(k, v)| (k, json(v))).collect(),
    }
}

fn spec_out(s: &EventSpec) -> pb::EventSpec {
    pb::EventSpec {
        r#type: s.r#type.clone(),
        r#where: s
            .conditions
            .iter()
            .map(|(k, v)| (k.clone(), value(v)))
            .collect(),
    }
}

fn steps(v: Vec<FunnelStep>) -> Vec<pb::FunnelStep> {
    v.into_iter()
        .map(|s| pb::FunnelStep {
            event: Some(spec_out(&s.event)),
            step: u32::try_from(s.step).unwrap_or(u32::MAX),
            users: s.users,
            converted: s.converted,
            dropped: s.dropped,
            conversion_from_previous: s.conversion_from_previous,
            conversion_from_first: s.conversion_from_first,
            median_seconds_to_convert: s.median_seconds_to_convert,
        })
        .collect()
}

pub(crate) fn funnel(a: FunnelAnswer) -> pb::FunnelAnalysis {
    pb::FunnelAnalysis {
        from: Some(ts(a.from)),
        to: Some(ts(a.to)),
        window_seconds: a.window_seconds,
        steps: steps(a.steps),
        breakdown: a.breakdown.map(|b| pb::FunnelBreakdown {
            field: b.field,
            groups: b
                .groups
                .into_iter()
                .map(|g| pb::FunnelGroup {
                    value: Some(value(&g.value.unwrap_or(Json::Null))),
                    steps: steps(g.steps),
                })
                .collect(),
            omitted_groups: b.omitted_groups,
        }),
    }
}

pub(crate) fn retention(a: RetentionAnswer) -> pb::Retention {
    let period = |k: usize| u32::try_from(k).unwrap_or(u32::MAX);
    pb::Retention {
        period: a.period.to_string(),
        from: Some(ts(a.from)),
        to: Some(ts(a.to)),
        cohort: Some(spec_out(&a.cohort)),
        r#return: Some(spec_out(&a.r#return)),
        cohorts: a
            .cohorts
            .into_iter()
            .map(|c| pb::Cohort {
                start: Some(ts(c.start)),
                users: c.users,
                retention: c
                    .retention
                    .into_iter()
                    .map(|r| pb::PeriodReturn {
                        period: period(r.period),
                        users: r.users,
                        share: r.share,
                    })
                    .collect(),
            })
            .collect(),
        average: a
            .average
            .into_iter()
            .map(|x| pb::PeriodAverage {
                period: period(x.period),
                share: x.share,
                cohorts: x.cohorts,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_refuse_what_ns_cannot_hold() {
        for n in [0, 1, -1, 1_700_000_000_123_456_789, -NS - 5] {
            assert_eq!(ns("t", &ts(n)).unwrap(), n);
        }
        let far = Timestamp {
            seconds: 10_000_000_000,
            nanos: 0,
        };
        let e = ns("time", &far).unwrap_err();
        assert_eq!(e.code(), "invalid_parameter");
        assert!(e.to_string().contains("`time`"), "{e}");
        assert!(
            ns(
                "t",
                &Timestamp {
                    seconds: 0,
                    nanos: -1
                }
            )
            .is_err()
        );
    }

    #[test]
    fn events_become_typed_fields() {
        let e = pb::Event {
            event_id: "e1".into(),
            r#type: String::new(),
            time: Some(ts(1_700_000_000_000_000_001)),
            device_id: "d1".into(),
            metrics: [("temp".to_string(), 21.5)].into(),
            properties: [
                (
                    "ok".to_string(),
                    Value {
                        kind: Some(Kind::BoolValue(true)),
                    },
                ),
                (
                    "nested".to_string(),
                    Value {
                        kind: Some(Kind::ListValue(ListValue::default())),
                    },
                ),
            ]
            .into(),
            ..Default::default()
        };
        let mut f = event_fields(e).unwrap();
        f.properties.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(f.event_id.as_deref(), Some("e1"));
        assert_eq!(f.r#type, None, "empty strings are absent");
        assert_eq!(f.time, Some(1_700_000_000_000_000_001));
        assert_eq!(f.metrics, vec![("temp".to_string(), 21.5)]);
        assert_eq!(
            f.properties,
            vec![
                ("nested".to_string(), Scalar::Unsupported("a list")),
                ("ok".to_string(), Scalar::Bool(true)),
            ]
        );
        let far = pb::Event {
            time: Some(Timestamp {
                seconds: i64::MAX / 2,
                nanos: 0,
            }),
            ..Default::default()
        };
        let err = event_fields(far).unwrap_err();
        assert_eq!(err.field, "time");
        assert!(err.reason.contains("1677 to 2262"), "{err}");
    }

    #[test]
    fn ranges_take_from_to_or_last() {
        let now = 100 * NS;
        let r = range(
            Some(&pb::TimeRange {
                last: Some(Duration {
                    seconds: 10,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            now,
        )
        .unwrap();
        assert_eq!(r.from, Some(90 * NS));
        assert_eq!(r.to, None);
        let both = pb::TimeRange {
            from: Some(ts(0)),
            last: Some(Duration {
                seconds: 10,
                nanos: 0,
            }),
            ..Default::default()
        };
        assert!(range(Some(&both), now).is_err());
        assert_eq!(count("top", 0, 10, 1000).unwrap(), 10);
        assert!(count("top", 1001, 10, 1000).is_err());
    }
}
