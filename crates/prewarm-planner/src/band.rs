//! A forecast band in requests per second: median and upper quantile per bucket.

use chrono::{DateTime, Duration, Utc};

/// Forecast of a fleet's demand: bucket `i` covers `[start + i*step, start + (i+1)*step)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    pub start: DateTime<Utc>,
    pub step_secs: i64,
    pub p50_rps: Vec<f64>,
    pub upper_rps: Vec<f64>,
}

impl Band {
    /// End of the last bucket.
    pub fn end(&self) -> DateTime<Utc> {
        self.start + Duration::seconds(self.step_secs * self.p50_rps.len() as i64)
    }

    fn index(&self, t: DateTime<Utc>) -> Option<usize> {
        let offset = (t - self.start).num_seconds();
        (offset >= 0)
            .then(|| (offset / self.step_secs) as usize)
            .filter(|i| *i < self.p50_rps.len())
    }

    /// Median and upper quantile at `t`.
    pub fn at(&self, t: DateTime<Utc>) -> Option<(f64, f64)> {
        self.index(t).map(|i| (self.p50_rps[i], self.upper_rps[i]))
    }

    /// Whether the band has values for all of `[from, to)`.
    pub fn covers(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
        from >= self.start && to <= self.end()
    }

    /// Largest upper quantile over the buckets that overlap `[from, to)`.
    pub fn max_upper(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
        let first = self
            .index(from.max(self.start))
            .unwrap_or(self.p50_rps.len());
        let last = self
            .index(to - Duration::nanoseconds(1))
            .unwrap_or(self.p50_rps.len().saturating_sub(1));
        self.upper_rps
            .get(first..=last.max(first).min(self.upper_rps.len().saturating_sub(1)))
            .unwrap_or(&[])
            .iter()
            .copied()
            .fold(0.0, f64::max)
    }
}
