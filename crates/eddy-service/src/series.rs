//! The series-limit seam of the ingest path: which (device, metric) series a tenant already
//! holds. The in-process stream processor answers it today (the binary adapts it); an
//! ingest-only role can answer from elsewhere, or use [`NoSeriesLimit`].

/// What the ingest path asks about a tenant's series.
pub trait SeriesIndex: Send + Sync + std::fmt::Debug {
    /// Most series a tenant may hold; 0 = unlimited (then nothing else is asked).
    fn limit(&self) -> usize;

    /// How many series the tenant holds now.
    fn series_count(&self, tenant: &str) -> usize;

    /// Indexes into `series` ((device, metric) pairs, `""` = no device) of those the tenant
    /// holds no series of yet. Asked once per request with all its pairs, so an
    /// implementation behind a lock takes it once, not per event.
    fn unknown_series(&self, tenant: &str, series: &[(&str, &str)]) -> Vec<usize>;
}

/// No series limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSeriesLimit;

impl SeriesIndex for NoSeriesLimit {
    fn limit(&self) -> usize {
        0
    }

    fn series_count(&self, _tenant: &str) -> usize {
        0
    }

    fn unknown_series(&self, _tenant: &str, _series: &[(&str, &str)]) -> Vec<usize> {
        Vec::new()
    }
}
