//! Timestamps: RFC 3339 strings or epoch numbers, with the unit told apart by magnitude.
//!
//! | absolute value of the number | unit |
//! |---|---|
//! | < 1e11  | seconds (fractions allowed) — up to year 5138 |
//! | < 1e14  | milliseconds |
//! | < 1e17  | microseconds |
//! | otherwise | nanoseconds |

use chrono::{DateTime, SecondsFormat, Utc};

const SEC_LIMIT: f64 = 1e11;
const MS_LIMIT: f64 = 1e14;
const US_LIMIT: f64 = 1e17;

/// Parses an RFC 3339 timestamp (or a numeric string) into ns since the epoch.
pub fn parse_time_str(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty timestamp".into());
    }
    if t.bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        let n: f64 = t
            .parse()
            .map_err(|_| format!("`{s}` is not a number or RFC 3339 time"))?;
        if !t.contains('.')
            && let Ok(i) = t.parse::<i64>()
        {
            return epoch_int_to_ns(i);
        }
        return epoch_float_to_ns(n);
    }
    let dt = DateTime::parse_from_rfc3339(t)
        .or_else(|_| DateTime::parse_from_rfc3339(&t.replacen(' ', "T", 1)))
        .map_err(|e| format!("`{s}` is not an RFC 3339 time ({e})"))?;
    dt.timestamp_nanos_opt()
        .ok_or_else(|| format!("`{s}` is out of the representable range"))
}

/// Converts an integer epoch timestamp (s/ms/µs/ns by magnitude) to ns.
pub fn epoch_int_to_ns(v: i64) -> Result<i64, String> {
    let a = v.unsigned_abs() as f64;
    let mul: i64 = if a < SEC_LIMIT {
        1_000_000_000
    } else if a < MS_LIMIT {
        1_000_000
    } else if a < US_LIMIT {
        1_000
    } else {
        1
    };
    v.checked_mul(mul)
        .ok_or_else(|| format!("timestamp {v} is out of range"))
}

/// Converts a fractional epoch timestamp (s/ms/µs/ns by magnitude) to ns.
pub fn epoch_float_to_ns(v: f64) -> Result<i64, String> {
    if !v.is_finite() {
        return Err("timestamp must be finite".into());
    }
    let a = v.abs();
    let mul = if a < SEC_LIMIT {
        1e9
    } else if a < MS_LIMIT {
        1e6
    } else if a < US_LIMIT {
        1e3
    } else {
        1.0
    };
    let ns = (v * mul).round();
    if ns >= i64::MAX as f64 || ns <= i64::MIN as f64 {
        return Err(format!("timestamp {v} is out of range"));
    }
    Ok(ns as i64)
}

/// Formats ns since the epoch as RFC 3339 UTC with the precision the value needs.
pub fn format_rfc3339(ns: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Serde helper: ns since the epoch written as [`format_rfc3339`] text
/// (`#[serde(serialize_with = "eddy_model::time::rfc3339")]`).
pub fn rfc3339<S: serde::Serializer>(ns: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339(*ns))
}

/// A duration in ns as the largest whole unit: `30d`, `1h`, `90m`, `45s`.
pub fn human_duration_ns(ns: i64) -> String {
    let secs = ns / 1_000_000_000;
    match secs {
        0 => "0".to_string(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn units_by_magnitude() {
        assert_eq!(
            epoch_int_to_ns(1_640_995_200).unwrap(),
            1_640_995_200_000_000_000
        );
        assert_eq!(
            epoch_int_to_ns(1_699_123_456_789).unwrap(),
            1_699_123_456_789_000_000
        );
        assert_eq!(
            epoch_int_to_ns(1_699_123_456_789_123).unwrap(),
            1_699_123_456_789_123_000
        );
        assert_eq!(
            epoch_int_to_ns(1_699_123_456_789_123_456).unwrap(),
            1_699_123_456_789_123_456
        );
        assert_eq!(
            epoch_float_to_ns(1_640_995_200.5).unwrap(),
            1_640_995_200_500_000_000
        );
    }

    #[test]
    fn rfc3339_forms() {
        assert_eq!(
            parse_time_str("2025-05-25T10:00:00Z").unwrap(),
            1_748_167_200_000_000_000
        );
        assert_eq!(
            parse_time_str("2025-05-25T12:00:00+02:00").unwrap(),
            1_748_167_200_000_000_000
        );
        assert_eq!(
            parse_time_str("2025-05-25 10:00:00.123456789Z").unwrap(),
            1_748_167_200_123_456_789
        );
        assert_eq!(
            parse_time_str("1640995200").unwrap(),
            1_640_995_200_000_000_000
        );
        assert!(parse_time_str("yesterday").is_err());
        assert!(parse_time_str("").is_err());
        assert!(parse_time_str("2025-13-01T00:00:00Z").is_err());
    }

    proptest! {
        #[test]
        fn rfc3339_roundtrip(ns in -2_000_000_000_000_000_000i64..4_000_000_000_000_000_000i64) {
            prop_assert_eq!(parse_time_str(&format_rfc3339(ns)).unwrap(), ns);
        }

        #[test]
        fn seconds_ms_us_ns_agree(secs in 1_000_000_000i64..9_000_000_000i64) {
            let ns = secs * 1_000_000_000;
            prop_assert_eq!(epoch_int_to_ns(secs).unwrap(), ns);
            prop_assert_eq!(epoch_int_to_ns(secs * 1_000).unwrap(), ns);
            prop_assert_eq!(epoch_int_to_ns(secs * 1_000_000).unwrap(), ns);
            prop_assert_eq!(epoch_int_to_ns(ns).unwrap(), ns);
            prop_assert_eq!(parse_time_str(&secs.to_string()).unwrap(), ns);
        }

        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = parse_time_str(&s);
        }
    }
}
