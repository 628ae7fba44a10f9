//! Parameter parsing every route shares, so each rule is written once: unknown parameters are
//! an error (a typo never widens a question), times take one syntax, whole numbers one range
//! check, `from`/`to` one set of aliases, and a route's answer format is negotiated one way
//! (`format=` first, else the first type of `Accept` the route offers, else its default).
//! Every error here is `invalid_parameter`.

use axum::http::{HeaderMap, header};
use eddy_service::Error as Domain;
use eddy_service::range::TimeRange;

use crate::{Error, Result};

/// A 400 `invalid_parameter` with `message`.
pub(crate) fn bad(message: impl Into<String>) -> Error {
    Domain::invalid("invalid_parameter", message).into()
}

/// The error for a parameter the route does not take; `known` lists those it does.
pub(crate) fn unknown(name: &str, known: &str) -> Error {
    bad(format!("unknown parameter `{name}`; use {known}"))
}

/// A time parameter: RFC 3339, epoch s/ms/µs/ns, `now`, or relative like `-24h`.
pub(crate) fn time(name: &str, v: &str, now_ns: i64) -> Result<i64> {
    let t = v.trim();
    if t == "now" {
        return Ok(now_ns);
    }
    if let Some(rel) = t.strip_prefix('-')
        && let Ok(d) = humantime::parse_duration(rel)
    {
        return Ok(now_ns.saturating_sub(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)));
    }
    eddy_model::time::parse_time_str(t).map_err(|e| {
        bad(format!(
            "`{name}`: {e} (use RFC 3339, an epoch number, `now` or e.g. `-24h`)"
        ))
    })
}

/// A whole number within `1..=max` (`limit`, `points`, `top` …).
pub(crate) fn whole(name: &str, v: &str, max: usize) -> Result<usize> {
    v.parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| bad(format!("`{name}`: a whole number from 1 to {max}")))
}

/// A bucket width in whole seconds, at least 1 s and at most `max_secs`.
pub(crate) fn bucket_secs(v: &str, max_secs: u64) -> Result<u64> {
    humantime::parse_duration(v)
        .ok()
        .filter(|d| d.subsec_nanos() == 0 && (1..=max_secs).contains(&d.as_secs()))
        .map(|d| d.as_secs())
        .ok_or_else(|| {
            let most = if max_secs == u64::MAX {
                String::new()
            } else {
                format!(
                    " to {}",
                    eddy_model::time::human_duration_ns(secs_ns(max_secs))
                )
            };
            bad(format!(
                "`bucket` `{v}`: whole seconds from 1s{most}, e.g. 10s, 1m, 1h"
            ))
        })
}

fn secs_ns(s: u64) -> i64 {
    i64::try_from(s)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000_000)
}

/// Takes `k=v` into `range` when it is a range parameter: `from` (also `start`,
/// `start_time`) or `to` (also `end`, `end_time`), read against `now` (which the range keeps
/// for its defaults). Whether it was one.
pub(crate) fn take_range(range: &mut TimeRange, k: &str, v: &str, now: i64) -> Result<bool> {
    range.now.get_or_insert(now);
    match k {
        "from" | "start" | "start_time" => range.from = Some(time(k, v, now)?),
        "to" | "end" | "end_time" => range.to = Some(time(k, v, now)?),
        _ => return Ok(false),
    }
    Ok(true)
}

/// One answer format a route offers: its `format=` name, the media types that ask for it in
/// `Accept`, and the value the route uses.
pub(crate) struct Offer<F> {
    pub(crate) name: &'static str,
    pub(crate) media: &'static [&'static str],
    pub(crate) format: F,
}

/// The format of an answer: `explicit` (`format=`) must name one of `offers`; without it, the
/// first media type of `Accept` that an offer lists; else the first offer (the default).
pub(crate) fn negotiate<F: Copy>(
    explicit: Option<&str>,
    headers: &HeaderMap,
    offers: &[Offer<F>],
) -> Result<F> {
    let Some(first) = offers.first() else {
        return Err(Domain::Internal("a route offers no answer format".into()).into());
    };
    if let Some(f) = explicit {
        return offers
            .iter()
            .find(|o| o.name == f)
            .map(|o| o.format)
            .ok_or_else(|| {
                let names: Vec<&str> = offers.iter().map(|o| o.name).collect();
                bad(format!("`format` `{f}`: use {}", names.join(", ")))
            });
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    Ok(accept
        .split(',')
        .map(|t| t.split(';').next().unwrap_or("").trim())
        .find_map(|t| offers.iter().find(|o| o.media.contains(&t)))
        .map_or(first.format, |o| o.format))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum F {
        Json,
        Csv,
    }

    const OFFERS: &[Offer<F>] = &[
        Offer {
            name: "json",
            media: &["application/json"],
            format: F::Json,
        },
        Offer {
            name: "csv",
            media: &["text/csv"],
            format: F::Csv,
        },
    ];

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, v.parse().unwrap());
        h
    }

    #[test]
    fn format_comes_from_the_parameter_then_accept_then_the_default() {
        assert_eq!(
            negotiate(Some("csv"), &accept("application/json"), OFFERS).unwrap(),
            F::Csv
        );
        assert!(negotiate(Some("xml"), &HeaderMap::new(), OFFERS).is_err());
        assert_eq!(
            negotiate(None, &accept("text/html, text/csv;q=0.9"), OFFERS).unwrap(),
            F::Csv
        );
        assert_eq!(negotiate(None, &accept("*/*"), OFFERS).unwrap(), F::Json);
        assert_eq!(negotiate(None, &HeaderMap::new(), OFFERS).unwrap(), F::Json);
    }

    #[test]
    fn times_numbers_and_buckets() {
        assert_eq!(time("from", "now", 5).unwrap(), 5);
        assert_eq!(time("from", "-1s", 2_000_000_000).unwrap(), 1_000_000_000);
        assert!(time("from", "yesterday", 0).is_err());
        assert_eq!(whole("limit", "3", 10).unwrap(), 3);
        assert!(whole("limit", "0", 10).is_err() && whole("limit", "11", 10).is_err());
        assert_eq!(bucket_secs("1m", 86_400).unwrap(), 60);
        assert!(bucket_secs("2d", 86_400).is_err() && bucket_secs("500ms", u64::MAX).is_err());
    }
}
