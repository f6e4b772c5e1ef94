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
    let (ahead, fitted, trend_spec) = fit_predict(
        req.model,
        &transformed,
        periods,
        req.step_secs,
        local_horizon,
        req.settings,
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
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    0.1 * sorted.get(sorted.len() / 2).copied().unwrap_or(0.0) + 1.0
}

#[cfg(test)]
mod tests;
