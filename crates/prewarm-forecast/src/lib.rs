//! Request-rate forecasts for prewarm.
//!
//! [`forecast`] is the one entry point the service, the simulator and the backtest share: it
//! takes a raw history (gaps as NaN) on a UTC grid, moves it to the fleet's local wall-clock time,
//! fills gaps, replaces outliers, optionally transforms it, fits the chosen model and returns the
//! median forecast for the next buckets. Upper quantiles come from a [`Calibrator`] fed with
//! out-of-sample errors; [`backtest`] runs both over a history, origin by origin.

pub mod backtest;
mod conformal;
pub mod distribution;
mod error;
mod holt;
mod local;
pub mod metrics;
mod models;
mod prepare;
mod seasons;

use std::time::Instant;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

pub use conformal::Calibrator;
pub use distribution::{DemandCalibration, DemandDistribution, Scored, LEVELS, NUM_LEVELS};
pub use error::ForecastError;
pub use local::{local_time, to_local};
pub use models::{
    fit_predict, Fitted, ModelKind, ModelSettings, Periods, TrendKind, TrendSpec, MIN_ETS_POINTS,
};
pub use prepare::{interpolate, replace_outliers, OutlierRun, OutlierSettings, Transform};

/// What to forecast, from which history.
#[derive(Debug, Clone)]
pub struct ForecastRequest<'a> {
    /// Start of the history's first bucket.
    pub start: DateTime<Utc>,
    /// Bucket width in seconds.
    pub step_secs: i64,
    /// Raw history, one value per bucket, NaN where missing.
    pub history: &'a [f64],
    /// The fleet's time zone; seasons follow its wall clock. `None` is UTC.
    pub tz: Option<Tz>,
    /// Number of buckets to forecast after the history.
    pub horizon: usize,
    /// The model to fit.
    pub model: ModelKind,
    /// Transform applied before fitting.
    pub transform: Transform,
    /// Outlier replacement, or `None` to keep every value.
    pub outliers: Option<OutlierSettings>,
    /// Model settings.
    pub settings: ModelSettings,
}

/// A median forecast and what went into it.
#[derive(Debug, Clone)]
pub struct PointForecast {
    /// Median forecast per bucket after the history (UTC grid).
    pub point: Vec<f64>,
    /// The model variant that was fitted.
    pub fitted: Fitted,
    /// Outliers replaced in the history (indices on the local grid).
    pub outliers: Vec<OutlierRun>,
    /// Level below which errors are scaled as at this level (for [`Calibrator`]).
    pub error_floor: f64,
    /// Wall time of preparation and fit, in seconds.
    pub fit_secs: f64,
    /// The ETS candidate the MSTL trend chose, to fit alone next time
    /// ([`ModelSettings::trend_spec`]).
    pub trend_spec: Option<TrendSpec>,
}

/// Fits the requested model to the history and forecasts the next `horizon` buckets.
pub fn forecast(req: &ForecastRequest<'_>) -> Result<PointForecast, ForecastError> {
    forecast_reusing(req, None)
}

/// Forecasts from a run of origins of one series, as [`forecast`] does at each, except that an
/// MSTL fit reuses the seasons it decomposed at an earlier origin for a while after it: only the
/// trend is fitted anew, on the history less those seasons (their last cycle repeated past the
/// origin they were decomposed at, as MSTL forecasts them). The decomposition is what costs in a
/// fit, with the weekly season most (about 7 ms on two weeks of 5-minute data, against under 1 ms
/// for the trend), and a season learnt from days of history moves little in a few hours. Every
/// forecast still sees only the history before its own origin.
///
/// The requests must be windows of one series, on one grid, in the order of their origins; a
/// request that is not a later window of the series decomposed last (another step, an earlier
/// start, history that ends before it, or the seasons given up for the weekly one) is
/// decomposed anew.
#[derive(Debug, Clone)]
pub struct Forecaster {
    reseason_secs: i64,
    reseason_weekly_secs: i64,
    seasons: Option<seasons::Seasons>,
    decompositions: usize,
}

impl Forecaster {
    /// Seasons are decomposed anew once the history runs `reseason_secs` past the origin they
    /// were decomposed at (0: at every origin, exactly as [`forecast`]), whichever seasons were
    /// fitted; [`Forecaster::weekly`] sets another span for decompositions with the weekly season.
    pub fn new(reseason_secs: i64) -> Self {
        let reseason_secs = reseason_secs.max(0);
        Self {
            reseason_secs,
            reseason_weekly_secs: reseason_secs,
            seasons: None,
            decompositions: 0,
        }
    }

    /// Decompositions with the weekly season are reused for `reseason_secs` instead: a weekly
    /// season moves less in an hour than a daily one, and costs several times more to decompose.
    pub fn weekly(mut self, reseason_secs: i64) -> Self {
        self.reseason_weekly_secs = reseason_secs.max(0);
        self
    }

    /// The forecast at the next origin (see [`Forecaster`]).
    pub fn forecast(&mut self, req: &ForecastRequest<'_>) -> Result<PointForecast, ForecastError> {
        forecast_reusing(req, Some(self))
    }

    /// MSTL decompositions made so far (the rest of the MSTL fits reused one).
    pub fn decompositions(&self) -> usize {
        self.decompositions
    }
}

fn forecast_reusing(
    req: &ForecastRequest<'_>,
    forecaster: Option<&mut Forecaster>,
) -> Result<PointForecast, ForecastError> {
    let started = Instant::now();
    if req.horizon == 0 {
        return Err(ForecastError::InvalidSetting(
            "the horizon must be at least one bucket".into(),
        ));
    }
    let periods = Periods::for_step(req.step_secs)?;
    let local = to_local(req.start, req.step_secs, req.history, req.tz)?;
    let mut values = interpolate(&local.values)?;
    let outliers = match req.outliers {
        Some(settings) => replace_outliers(&mut values, periods.day, settings),
        None => Vec::new(),
    };
    let error_floor = error_floor(&values);

    let n_utc = req.history.len();
    let targets: Vec<DateTime<Utc>> = (0..req.horizon)
        .map(|h| req.start + chrono::Duration::seconds(req.step_secs * (n_utc + h) as i64))
        .collect();
    let slots = local::target_slots(&local, &targets, req.tz)?;
    let last = values.len() - 1;
    let local_horizon = slots
        .iter()
        .copied()
        .max()
        .unwrap_or(last)
        .saturating_sub(last)
        .max(1);

    let transformed: Vec<f64> = values.iter().map(|v| req.transform.forward(*v)).collect();
    let reuse = forecaster.map(|f| seasons::Reuse {
        seasons: &mut f.seasons,
        decompositions: &mut f.decompositions,
        start: local.start,
        step_secs: req.step_secs,
        within: (f.reseason_secs / req.step_secs) as usize,
        within_weekly: (f.reseason_weekly_secs / req.step_secs) as usize,
    });
    let (ahead, fitted, trend_spec) = models::fit_predict_reusing(
        req.model,
        &transformed,
        periods,
        req.step_secs,
        local_horizon,
        req.settings,
        reuse,
    )?;
    let point = slots
        .iter()
        .map(|&s| {
            if s > last {
                req.transform.inverse(ahead[s - last - 1])
            } else {
                // After an autumn change a target can fall in a local hour already observed.
                values[s]
            }
        })
        .collect();
    Ok(PointForecast {
        point,
        fitted,
        outliers,
        error_floor,
        fit_secs: started.elapsed().as_secs_f64(),
        trend_spec,
    })
}

/// A tenth of the median level plus one: errors of forecasts near zero are scaled as at this
/// level so that quiet hours do not produce huge relative errors.
fn error_floor(values: &[f64]) -> f64 {
    let median = if values.is_empty() {
        0.0
    } else {
        prepare::upper_median(values.iter().copied())
    };
    0.1 * median + 1.0
}

#[cfg(test)]
mod tests;
