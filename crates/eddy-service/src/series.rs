//! The series-limit seam of the ingest path: which (device, metric) series a tenant already
//! holds. The in-process stream processor answers it today (the binary adapts it); an
//! ingest-only role can answer from elsewhere, or use [`NoSeriesLimit`].

/// What the ingest path asks about a tenant's series.
pub trait SeriesIndex: Send + Sync + std::fmt::Debug {
    /// Most series a tenant may hold; 0 = unlimited (then nothing else is asked).
    fn limit(&self) -> usize;

    /// How many series the tenant holds now.
    fn series_count(&self, tenant: &str) -> usize;

    /// Indexes into `metrics` of those the tenant holds no series of for `device` yet.
    fn unknown_metrics(&self, tenant: &str, device: &str, metrics: &[&str]) -> Vec<usize>;
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

    fn unknown_metrics(&self, _tenant: &str, _device: &str, _metrics: &[&str]) -> Vec<usize> {
        Vec::new()
    }
}
