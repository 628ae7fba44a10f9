//! Alert rules: what a rule tests ([`RuleKind`]), the rule itself, the API's input form
//! ([`RuleSpec`]) with its field-by-field validation, and back ([`Rule::to_spec`]). Pure data:
//! must not touch alerts, detector state or the processor.

use serde::{Deserialize, Serialize};

use crate::detect::EWMA_ALPHA;

/// Id of the rule every tenant starts with.
pub const DEFAULT_RULE_ID: &str = "default-zscore";
/// Rules a tenant may have.
pub const MAX_RULES: usize = 100;

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Severity::Info, Severity::Warning, Severity::Critical]
            .into_iter()
            .find(|v| v.name() == s)
    }
}

/// Comparison of a threshold rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ThresholdOp {
    #[serde(rename = ">")]
    Above,
    #[serde(rename = "<")]
    Below,
    #[serde(rename = "outside")]
    Outside,
}

/// What a rule tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuleKind {
    Zscore {
        window: usize,
        threshold: f64,
        min_points: usize,
    },
    Ewma {
        alpha: f64,
        threshold: f64,
        min_points: usize,
    },
    Threshold {
        op: ThresholdOp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
    },
    Deadman {
        minutes: f64,
    },
}

impl RuleKind {
    pub fn name(&self) -> &'static str {
        match self {
            RuleKind::Zscore { .. } => "zscore",
            RuleKind::Ewma { .. } => "ewma",
            RuleKind::Threshold { .. } => "threshold",
            RuleKind::Deadman { .. } => "deadman",
        }
    }
}

/// One alert rule of a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub name: String,
    #[serde(flatten)]
    pub kind: RuleKind,
    /// Devices the rule watches; empty = all.
    pub devices: Vec<String>,
    /// Metrics the rule watches; empty = all.
    pub metrics: Vec<String>,
    pub severity: Severity,
    /// Consecutive normal points that resolve an active alert.
    pub resolve_after: u32,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A rule as the API takes it: every field optional, checked by [`RuleSpec::validate`]. Which
/// fields apply depends on `kind`; a field that does not apply is refused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// 1 to 200 characters (default: the rule id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub name: Option<String>,
    /// Required: `zscore`, `ewma`, `threshold` or `deadman`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^(zscore|ewma|threshold|deadman)$")
    )]
    pub kind: Option<String>,
    /// Devices the rule watches (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
    /// Metrics the rule watches (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<String>>,
    /// `info`, `warning` (default) or `critical`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^(info|warning|critical)$"))]
    pub severity: Option<String>,
    /// Consecutive normal points that resolve an active alert (1 to 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10000))]
    pub resolve_after: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `zscore`: points in the baseline window (2 to 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 2, maximum = 10000))]
    pub window: Option<usize>,
    /// `zscore`, `ewma`: deviations that trigger (positive; default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0))]
    pub threshold: Option<f64>,
    /// `zscore` (1 to `window`), `ewma` (1 to 100000): points before the rule judges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100000))]
    pub min_points: Option<usize>,
    /// `ewma`: smoothing factor in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0, maximum = 1))]
    pub alpha: Option<f64>,
    /// `threshold`: `>`, `<` or `outside`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^(>|<|outside)$"))]
    pub op: Option<String>,
    /// `threshold` with `>` or `<`: the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// `threshold` with `outside`: the lower bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// `threshold` with `outside`: the upper bound (greater than `min`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// `deadman`: minutes without data that trigger (at most 10080).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0, maximum = 10080))]
    pub minutes: Option<f64>,
}

/// Why a rule was refused: the field and the reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{field}`: {reason}")]
pub struct RuleError {
    pub field: &'static str,
    pub reason: String,
}

fn rule_err(field: &'static str, reason: impl Into<String>) -> RuleError {
    RuleError {
        field,
        reason: reason.into(),
    }
}

fn positive(field: &'static str, v: f64) -> Result<f64, RuleError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(rule_err(field, "must be a positive number"))
    }
}

fn names(field: &'static str, v: Option<Vec<String>>) -> Result<Vec<String>, RuleError> {
    let mut v = v.unwrap_or_default();
    if v.len() > 1000 {
        return Err(rule_err(field, "at most 1000 entries"));
    }
    if let Some(bad) = v.iter().find(|s| s.is_empty() || s.len() > 256) {
        return Err(rule_err(
            field,
            format!("`{bad}`: entries are 1 to 256 characters"),
        ));
    }
    v.sort();
    v.dedup();
    Ok(v)
}

impl RuleSpec {
    /// Checks every field and builds the rule `id`, created (or last changed) at `at`.
    pub fn validate(self, id: &str, created_at: i64, at: i64) -> Result<Rule, RuleError> {
        let kind_name = self
            .kind
            .as_deref()
            .ok_or_else(|| rule_err("kind", "required: zscore, ewma, threshold or deadman"))?;
        // Fields that belong to other kinds are refused rather than silently ignored.
        let own: &[&str] = match kind_name {
            "zscore" => &["window", "threshold", "min_points"],
            "ewma" => &["alpha", "threshold", "min_points"],
            "threshold" => &["op", "value", "min", "max"],
            "deadman" => &["minutes"],
            other => {
                return Err(rule_err(
                    "kind",
                    format!("`{other}`: use zscore, ewma, threshold or deadman"),
                ));
            }
        };
        let given = [
            ("window", self.window.is_some()),
            ("threshold", self.threshold.is_some()),
            ("min_points", self.min_points.is_some()),
            ("alpha", self.alpha.is_some()),
            ("op", self.op.is_some()),
            ("value", self.value.is_some()),
            ("min", self.min.is_some()),
            ("max", self.max.is_some()),
            ("minutes", self.minutes.is_some()),
        ];
        if let Some((field, _)) = given.iter().find(|(f, g)| *g && !own.contains(f)) {
            return Err(rule_err(
                field,
                format!("does not apply to {kind_name} rules"),
            ));
        }
        let threshold = positive("threshold", self.threshold.unwrap_or(3.0))?;
        let kind = match kind_name {
            "zscore" => {
                let window = self.window.unwrap_or(100);
                if !(2..=10_000).contains(&window) {
                    return Err(rule_err("window", "between 2 and 10000 points"));
                }
                let min_points = self.min_points.unwrap_or(20.min(window));
                if min_points == 0 || min_points > window {
                    return Err(rule_err("min_points", "between 1 and `window`"));
                }
                RuleKind::Zscore {
                    window,
                    threshold,
                    min_points,
                }
            }
            "ewma" => {
                let alpha = self.alpha.unwrap_or(EWMA_ALPHA);
                if !(alpha.is_finite() && alpha > 0.0 && alpha <= 1.0) {
                    return Err(rule_err("alpha", "in (0, 1]"));
                }
                let min_points = self.min_points.unwrap_or(20);
                if !(1..=100_000).contains(&min_points) {
                    return Err(rule_err("min_points", "between 1 and 100000"));
                }
                RuleKind::Ewma {
                    alpha,
                    threshold,
                    min_points,
                }
            }
            "threshold" => {
                let finite = |field: &'static str, v: Option<f64>| {
                    v.filter(|x| x.is_finite())
                        .ok_or_else(|| rule_err(field, "required: a finite number"))
                };
                let refuse = |field: &'static str, v: Option<f64>, op: &str| match v {
                    Some(_) => Err(rule_err(field, format!("does not apply to `{op}`"))),
                    None => Ok(()),
                };
                match self.op.as_deref() {
                    Some(o @ (">" | "<")) => {
                        refuse("min", self.min, o)?;
                        refuse("max", self.max, o)?;
                        RuleKind::Threshold {
                            op: if o == ">" {
                                ThresholdOp::Above
                            } else {
                                ThresholdOp::Below
                            },
                            value: Some(finite("value", self.value)?),
                            min: None,
                            max: None,
                        }
                    }
                    Some("outside") => {
                        refuse("value", self.value, "outside")?;
                        let (min, max) = (finite("min", self.min)?, finite("max", self.max)?);
                        if min >= max {
                            return Err(rule_err("max", "must be greater than `min`"));
                        }
                        RuleKind::Threshold {
                            op: ThresholdOp::Outside,
                            value: None,
                            min: Some(min),
                            max: Some(max),
                        }
                    }
                    Some(other) => {
                        return Err(rule_err("op", format!("`{other}`: use >, < or outside")));
                    }
                    None => return Err(rule_err("op", "required: >, < or outside")),
                }
            }
            _ => {
                let minutes = positive(
                    "minutes",
                    self.minutes
                        .ok_or_else(|| rule_err("minutes", "required: minutes without data"))?,
                )?;
                if minutes > 10_080.0 {
                    return Err(rule_err("minutes", "at most 10080 (7 days)"));
                }
                RuleKind::Deadman { minutes }
            }
        };
        let severity = match self.severity.as_deref() {
            None => Severity::Warning,
            Some(s) => Severity::parse(s).ok_or_else(|| {
                rule_err("severity", format!("`{s}`: use info, warning or critical"))
            })?,
        };
        let resolve_after = self.resolve_after.unwrap_or(5);
        if !(1..=10_000).contains(&resolve_after) {
            return Err(rule_err("resolve_after", "between 1 and 10000 points"));
        }
        let name = self.name.unwrap_or_else(|| id.to_string());
        if name.is_empty() || name.chars().count() > 200 {
            return Err(rule_err("name", "1 to 200 characters"));
        }
        Ok(Rule {
            id: id.to_string(),
            name,
            kind,
            devices: names("devices", self.devices)?,
            metrics: names("metrics", self.metrics)?,
            severity,
            resolve_after,
            enabled: self.enabled.unwrap_or(true),
            created_at,
            updated_at: at,
        })
    }
}

impl Rule {
    /// The rule every tenant starts with.
    pub fn default_zscore(at: i64) -> Self {
        Rule {
            id: DEFAULT_RULE_ID.into(),
            name: "z-score on every metric".into(),
            kind: RuleKind::Zscore {
                window: 100,
                threshold: 3.0,
                min_points: 20,
            },
            devices: Vec::new(),
            metrics: Vec::new(),
            severity: Severity::Warning,
            resolve_after: 5,
            enabled: true,
            created_at: at,
            updated_at: at,
        }
    }

    /// The rule as the API's input fields (what a merge patch applies to).
    pub fn to_spec(&self) -> RuleSpec {
        let mut s = RuleSpec {
            name: Some(self.name.clone()),
            kind: Some(self.kind.name().into()),
            devices: Some(self.devices.clone()),
            metrics: Some(self.metrics.clone()),
            severity: Some(self.severity.name().into()),
            resolve_after: Some(self.resolve_after),
            enabled: Some(self.enabled),
            ..RuleSpec::default()
        };
        match &self.kind {
            RuleKind::Zscore {
                window,
                threshold,
                min_points,
            } => {
                s.window = Some(*window);
                s.threshold = Some(*threshold);
                s.min_points = Some(*min_points);
            }
            RuleKind::Ewma {
                alpha,
                threshold,
                min_points,
            } => {
                s.alpha = Some(*alpha);
                s.threshold = Some(*threshold);
                s.min_points = Some(*min_points);
            }
            RuleKind::Threshold {
                op,
                value,
                min,
                max,
            } => {
                s.op = Some(
                    match op {
                        ThresholdOp::Above => ">",
                        ThresholdOp::Below => "<",
                        ThresholdOp::Outside => "outside",
                    }
                    .into(),
                );
                (s.value, s.min, s.max) = (*value, *min, *max);
            }
            RuleKind::Deadman { minutes } => s.minutes = Some(*minutes),
        }
        s
    }

    pub(crate) fn watches(&self, device: &str, metric: &str) -> bool {
        self.enabled
            && (self.devices.is_empty()
                || self
                    .devices
                    .binary_search_by(|d| d.as_str().cmp(device))
                    .is_ok())
            && (self.metrics.is_empty()
                || self
                    .metrics
                    .binary_search_by(|m| m.as_str().cmp(metric))
                    .is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_764_000_000_000_000_000;

    fn spec(json: serde_json::Value) -> RuleSpec {
        serde_json::from_value(json).unwrap()
    }

    fn rule(id: &str, json: serde_json::Value) -> Rule {
        spec(json).validate(id, T0, T0).unwrap()
    }

    fn err(json: serde_json::Value) -> RuleError {
        spec(json).validate("r", T0, T0).unwrap_err()
    }

    #[test]
    fn specs_are_validated_field_by_field() {
        assert_eq!(err(serde_json::json!({})).field, "kind");
        assert_eq!(err(serde_json::json!({"kind": "magic"})).field, "kind");
        assert_eq!(
            err(serde_json::json!({"kind": "zscore", "value": 3})).field,
            "value"
        );
        assert_eq!(
            err(serde_json::json!({"kind": "zscore", "window": 1})).field,
            "window"
        );
        assert_eq!(
            err(serde_json::json!({"kind": "zscore", "threshold": -1})).field,
            "threshold"
        );
        assert_eq!(err(serde_json::json!({"kind": "threshold"})).field, "op");
        assert_eq!(
            err(serde_json::json!({"kind": "threshold", "op": ">"})).field,
            "value"
        );
        assert_eq!(
            err(serde_json::json!({"kind": "threshold", "op": "outside", "min": 5, "max": 1}))
                .field,
            "max"
        );
        assert_eq!(
            err(serde_json::json!({"kind": "threshold", "op": ">", "value": 1, "min": 0})).field,
            "min"
        );
        assert_eq!(err(serde_json::json!({"kind": "deadman"})).field, "minutes");
        assert_eq!(
            err(serde_json::json!({"kind": "deadman", "minutes": 5, "severity": "fatal"})).field,
            "severity"
        );
        assert_eq!(
            err(serde_json::json!({"kind": "deadman", "minutes": 5, "devices": [""]})).field,
            "devices"
        );
        assert!(
            serde_json::from_value::<RuleSpec>(serde_json::json!({"kind": "zscore", "bogus": 1}))
                .is_err()
        );
        let r = rule("z", serde_json::json!({"kind": "zscore"}));
        assert_eq!(
            r.kind,
            RuleKind::Zscore {
                window: 100,
                threshold: 3.0,
                min_points: 20
            }
        );
        assert_eq!(
            (r.severity, r.resolve_after, r.enabled),
            (Severity::Warning, 5, true)
        );
    }

    #[test]
    fn rules_roundtrip_through_json_and_spec() {
        for j in [
            serde_json::json!({"kind": "zscore", "window": 50, "metrics": ["temp"]}),
            serde_json::json!({"kind": "ewma", "alpha": 0.1, "severity": "critical"}),
            serde_json::json!({"kind": "threshold", "op": ">", "value": 90, "devices": ["b", "a"]}),
            serde_json::json!({"kind": "threshold", "op": "outside", "min": 1, "max": 2}),
            serde_json::json!({"kind": "deadman", "minutes": 2.5, "name": "quiet"}),
        ] {
            let r = rule("x", j);
            let back: Rule = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
            assert_eq!(back, r);
            assert_eq!(r.to_spec().validate("x", T0, T0).unwrap(), r);
        }
    }
}
