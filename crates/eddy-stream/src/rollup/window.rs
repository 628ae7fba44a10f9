//! The vocabulary of windows and series: window lengths ([`Resolution`]), what counts are grouped
//! by ([`Dimension`]), and which series a read wants ([`Series`], [`Devices`]). Plain values:
//! must not touch aggregates or rollup state.

use eddy_model::EventRef;
use serde::{Deserialize, Serialize};

/// A window length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Resolution {
    #[serde(rename = "1m")]
    Minute,
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "1d")]
    Day,
}

impl Resolution {
    pub const ALL: [Resolution; 3] = [Resolution::Minute, Resolution::Hour, Resolution::Day];

    /// Window length in ns.
    pub fn nanos(self) -> i64 {
        match self {
            Resolution::Minute => 60_000_000_000,
            Resolution::Hour => 3_600_000_000_000,
            Resolution::Day => 86_400_000_000_000,
        }
    }

    /// `1m`, `1h` or `1d`.
    pub fn name(self) -> &'static str {
        match self {
            Resolution::Minute => "1m",
            Resolution::Hour => "1h",
            Resolution::Day => "1d",
        }
    }

    /// Parses `1m`, `1h`, `1d`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == s)
    }

    /// Position in [`Resolution::ALL`].
    pub fn index(self) -> usize {
        match self {
            Resolution::Minute => 0,
            Resolution::Hour => 1,
            Resolution::Day => 2,
        }
    }

    /// Start of the window holding `t`.
    pub fn window_start(self, t: i64) -> i64 {
        t.div_euclid(self.nanos()) * self.nanos()
    }
}

/// What event counts are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Type,
    PageUrl,
    Source,
}

impl Dimension {
    pub const ALL: [Dimension; 3] = [Dimension::Type, Dimension::PageUrl, Dimension::Source];

    pub fn name(self) -> &'static str {
        match self {
            Dimension::Type => "type",
            Dimension::PageUrl => "page_url",
            Dimension::Source => "source",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == s)
    }

    pub(crate) fn of<'a>(self, e: &EventRef<'a>) -> Option<&'a str> {
        match self {
            Dimension::Type => Some(e.r#type),
            Dimension::PageUrl => e.page_url,
            Dimension::Source => e.source,
        }
    }
}

/// Which series a range read wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Series {
    /// Metric series: of one metric (`None`: every metric), of the devices `devices` selects.
    Metrics {
        metric: Option<String>,
        devices: Devices,
    },
    /// One dimension's count series.
    Dimension(Dimension),
}

/// Which device series of a metric a read wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Devices {
    /// Every per-device series and the all-devices series.
    Any,
    /// Every per-device series.
    Each,
    /// One device's series (`""`: events without a device).
    One(String),
    /// The series of all devices together.
    Together,
}

impl Series {
    /// Series of `metric` for the devices `devices` selects.
    pub fn metric(metric: &str, devices: Devices) -> Self {
        Series::Metrics {
            metric: Some(metric.to_string()),
            devices,
        }
    }

    /// Whether `metric`'s series are wanted.
    pub fn has_metric(&self, metric: &str) -> bool {
        match self {
            Series::Metrics { metric: m, .. } => m.as_deref().is_none_or(|m| m == metric),
            Series::Dimension(_) => false,
        }
    }

    /// Whether the series of `device` (`None`: all devices together) is wanted.
    pub fn has_device(&self, device: Option<&str>) -> bool {
        match self {
            Series::Metrics { devices, .. } => match (devices, device) {
                (Devices::Any, _) | (Devices::Each, Some(_)) | (Devices::Together, None) => true,
                (Devices::One(d), Some(x)) => d == x,
                _ => false,
            },
            Series::Dimension(_) => false,
        }
    }

    /// Whether `dim`'s count series are wanted.
    pub fn has_dimension(&self, dim: Dimension) -> bool {
        matches!(self, Series::Dimension(d) if *d == dim)
    }
}
