//! Seasons reused across the fits at successive origins of one series
//! ([`Forecaster`](crate::Forecaster)): an MSTL decomposition keeps the seasons it found, and the
//! fits at the next origins, for a while, fit only the trend on the history less those seasons.
//! The decomposition is what costs in a fit, and a season learnt from days of history moves
//! little in a few hours.

use augurs::{
    mstl::{FittedTrendModel, TrendModel},
    Forecast,
};

use crate::{models::fit_error, ForecastError};

/// Seasons an MSTL decomposition found.
#[derive(Debug, Clone)]
pub(crate) struct Seasons {
    /// Local wall-clock start of the decomposed series.
    start: chrono::NaiveDateTime,
    /// Bucket width in seconds.
    step_secs: i64,
    /// Points decomposed.
    len: usize,
    /// The seasons' periods, in points, as decomposed.
    periods: Vec<usize>,
    /// Each season's component over the decomposed series.
    components: Vec<Vec<f32>>,
}

impl Seasons {
    /// Component `k` at point `i` of the decomposed series' grid: inside it the fitted value,
    /// after it the last cycle repeated, as MSTL forecasts a season.
    fn value(&self, k: usize, i: usize) -> f32 {
        let (p, c) = (self.periods[k], &self.components[k]);
        if i < self.len {
            c[i]
        } else {
            c[self.len - p + (i - self.len) % p]
        }
    }
}

/// Seasons a fit may reuse, and for how long.
pub(crate) struct Reuse<'a> {
    /// The seasons decomposed at an earlier origin (replaced when this fit decomposes anew, and
    /// not kept when its reuse span is 0).
    pub seasons: &'a mut Option<Seasons>,
    /// Decompositions made so far, counted up by each fit that decomposes.
    pub decompositions: &'a mut usize,
    /// Local wall-clock start of this fit's history.
    pub start: chrono::NaiveDateTime,
    /// Bucket width in seconds.
    pub step_secs: i64,
    /// Most points after the decomposed series' end at which its seasons are reused, for a
    /// decomposition with one (daily) season.
    pub within: usize,
    /// The same, for a decomposition with the weekly season too.
    pub within_weekly: usize,
}

impl Reuse<'_> {
    /// The kept seasons and where this fit's history starts on their grid, when a history of
    /// `len` points to be decomposed with `periods` may reuse them: the same periods and step, a
    /// start on their grid at or after theirs, and an end at or after theirs by less than
    /// `within` (`within_weekly` with more than one season).
    pub(crate) fn reusable(&self, len: usize, periods: &[usize]) -> Option<(&Seasons, usize)> {
        let s = self.seasons.as_ref()?;
        let within = self.within_for(periods);
        let step = self.step_secs.max(1);
        let offset = (self.start - s.start).num_seconds();
        let from = offset / step;
        let fresh = from + len as i64 - s.len as i64;
        (s.periods == periods
            && s.step_secs == self.step_secs
            && offset.rem_euclid(step) == 0
            && from >= 0
            && (0..within as i64).contains(&fresh))
        .then_some((s, from as usize))
    }

    /// The reuse span for a decomposition with `periods`.
    fn within_for(&self, periods: &[usize]) -> usize {
        if periods.len() > 1 {
            self.within_weekly
        } else {
            self.within
        }
    }

    /// Counts a decomposition of `len` points with `periods`, and keeps its seasons for the
    /// fits after it (unless no reuse was asked for).
    pub(crate) fn decomposed(self, len: usize, periods: Vec<usize>, components: &[Vec<f32>]) {
        *self.decompositions += 1;
        if self.within_for(&periods) > 0 {
            *self.seasons = Some(Seasons {
                start: self.start,
                step_secs: self.step_secs,
                len,
                periods,
                components: components.to_vec(),
            });
        }
    }
}

/// An MSTL forecast on seasons decomposed at an earlier origin of the same series, `history`
/// starting at point `from` of their grid: the history less those seasons (the last cycle
/// repeated past the decomposed series' end) is the deseasonalised series `trend` is fitted on,
/// and the seasons are added back to its forecast. Only the trend sees the points since the
/// decomposition.
pub(crate) fn forecast_on(
    history: &[f64],
    seasons: &Seasons,
    from: usize,
    trend: &impl TrendModel,
    horizon: usize,
) -> Result<Vec<f64>, ForecastError> {
    let k = seasons.periods.len();
    // In single precision, as the decomposition's own deseasonalised series is.
    let deseasonalised: Vec<f64> = history
        .iter()
        .enumerate()
        .map(|(i, v)| (0..k).fold(*v as f32, |d, c| d - seasons.value(c, from + i)) as f64)
        .collect();
    let fitted = trend
        .fit(&deseasonalised)
        .map_err(|e| fit_error("mstl", e))?;
    let mut forecast = Forecast {
        point: Vec::with_capacity(horizon),
        intervals: None,
    };
    fitted
        .predict_inplace(horizon, None, &mut forecast)
        .map_err(|e| fit_error("mstl", e))?;
    let end = from + history.len();
    for (h, p) in forecast.point.iter_mut().enumerate() {
        for c in 0..k {
            *p += seasons.value(c, end + h) as f64;
        }
    }
    Ok(forecast.point)
}
