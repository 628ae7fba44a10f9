//! The text of an alert: how an anomalous point or a silent series is described. Pure
//! formatting: must not touch alert state.

use crate::alerts::rule::{RuleKind, ThresholdOp};

/// The message of an anomalous point under a z-score, EWMA or threshold rule.
pub(super) fn describe(
    kind: &RuleKind,
    device: &str,
    metric: &str,
    value: f64,
    score: Option<f64>,
    expected: Option<f64>,
) -> String {
    match kind {
        RuleKind::Zscore { threshold, .. } | RuleKind::Ewma { threshold, .. } => zmsg(
            device,
            metric,
            value,
            score.unwrap_or(f64::NAN),
            expected.unwrap_or(f64::NAN),
            *threshold,
        ),
        RuleKind::Threshold {
            op,
            value: limit,
            min,
            max,
        } => {
            let what = match op {
                ThresholdOp::Above => format!("above {}", fmt_num(limit.unwrap_or(f64::NAN))),
                ThresholdOp::Below => format!("below {}", fmt_num(limit.unwrap_or(f64::NAN))),
                ThresholdOp::Outside => format!(
                    "outside [{}, {}]",
                    fmt_num(min.unwrap_or(f64::NAN)),
                    fmt_num(max.unwrap_or(f64::NAN))
                ),
            };
            format!(
                "{} = {} is {what}",
                series_name(device, metric),
                fmt_num(value)
            )
        }
        RuleKind::Deadman { .. } => String::new(),
    }
}

pub(super) fn zmsg(
    device: &str,
    metric: &str,
    value: f64,
    score: f64,
    expected: f64,
    threshold: f64,
) -> String {
    let dir = if score >= 0.0 { "above" } else { "below" };
    let sigma = if score.is_finite() {
        format!("{}σ", fmt_num(score.abs()))
    } else {
        "infinitely many σ (flat baseline)".into()
    };
    format!(
        "{} = {} is {sigma} {dir} the expected {} (threshold {}σ)",
        series_name(device, metric),
        fmt_num(value),
        fmt_num(expected),
        fmt_num(threshold)
    )
}

/// `v` rounded to 4 decimals, without trailing zeros. Rounds, then prints the shortest form
/// (exact `{:.4}` formatting cost more than the rollups on a busy alert).
pub(super) fn fmt_num(v: f64) -> String {
    let r = (v * 1e4).round() / 1e4;
    if !r.is_finite() || r.abs() >= 1e15 {
        // Beyond 1e15 the scaling loses nothing worth showing; print exactly.
        let s = format!("{v:.4}");
        return s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    if r == 0.0 { "0".into() } else { format!("{r}") }
}

pub(super) fn series_name(device: &str, metric: &str) -> String {
    if device.is_empty() {
        metric.to_string()
    } else {
        format!("{metric} on {device}")
    }
}

#[cfg(test)]
mod tests {
    use super::fmt_num;

    #[test]
    fn numbers_print_with_at_most_four_decimals_and_no_trailing_zeros() {
        for (v, want) in [
            (1024.77, "1024.77"),
            (0.1 + 0.2, "0.3"),
            (3.0, "3"),
            (-2.50004, "-2.5"),
            (1.23456, "1.2346"),
            (-0.00001, "0"),
            (0.0, "0"),
            (1e20, "100000000000000000000"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(fmt_num(v), want, "{v}");
        }
    }
}
