//! Rolling-origin backtests.
//!
//! At each origin every model is fitted on the history before the origin only, forecasts the
//! horizon, and is compared with what came. The upper quantile of each model is calibrated from
//! its own earlier out-of-sample errors: first from warm-up origins placed before the first
//! scored origin, then from every scored forecast whose actuals are known by the next origin.

use chrono_tz::Tz;
use prewarm_core::Trace;

use crate::{
    metrics::{score, seasonal_naive_scale, Scores},
    Calibrator, Fitted, ForecastError, ForecastRequest, Forecaster, ModelKind, ModelSettings,
    OutlierSettings, Periods, Transform,
};

/// How to run a backtest. Counts are in buckets of the trace.
#[derive(Debug, Clone)]
pub struct BacktestConfig {
    /// Buckets forecast at each origin.
    pub horizon: usize,
    /// Most buckets of history each fit may use.
    pub train: usize,
    /// Upper quantile, e.g. 0.9.
    pub quantile: f64,
    /// Models to compare.
    pub models: Vec<ModelKind>,
    /// Scored origins (bucket indices; history is everything before), ascending.
    pub origins: Vec<usize>,
    /// Warm-up origins placed before the first scored origin to seed calibration.
    pub warmup: usize,
    /// Spacing of warm-up origins, in buckets.
    pub warmup_every: usize,
    /// The series' time zone.
    pub tz: Option<Tz>,
    /// Transform before fitting.
    pub transform: Transform,
    /// Outlier replacement settings, or none.
    pub outliers: Option<OutlierSettings>,
    /// Model settings.
    pub settings: ModelSettings,
    /// Fits reuse the seasons an earlier origin's fit decomposed for this long
    /// ([`crate::Forecaster`], as the fits that bootstrap a new fleet do); 0: every fit
    /// decomposes its own history.
    pub reseason_secs: i64,
    /// The same for fits with the weekly season ([`crate::Forecaster::weekly`]).
    pub reseason_weekly_secs: i64,
}

/// `count` origins `every` buckets apart, the last one leaving exactly `horizon` buckets to score.
pub fn origins_ending_at_last(
    len: usize,
    horizon: usize,
    every: usize,
    count: usize,
) -> Vec<usize> {
    let Some(last) = len.checked_sub(horizon) else {
        return Vec::new();
    };
    let mut origins: Vec<usize> = (0..count)
        .map_while(|k| last.checked_sub(k * every))
        .filter(|o| *o > 0)
        .collect();
    origins.reverse();
    origins
}

/// One model's forecast at one origin, and how it scored.
#[derive(Debug, Clone)]
pub struct OriginForecast {
    /// The model fitted.
    pub model: ModelKind,
    /// When the forecast starts.
    pub origin: usize,
    /// The model as fitted (which seasons).
    pub fitted: Fitted,
    /// Point forecast per bucket.
    pub point: Vec<f64>,
    /// Upper band per bucket.
    pub upper: Vec<f64>,
    /// What arrived per bucket.
    pub actual: Vec<f64>,
    /// The forecast's error scores.
    pub scores: Scores,
    /// Time the fit took, seconds.
    pub fit_secs: f64,
    /// Outliers replaced before fitting.
    pub outliers_replaced: usize,
    /// The fit's error floor, in requests per bucket (what the demand distribution scales by).
    pub error_floor: f64,
}

/// A model that could not be fitted at an origin (e.g. too little history), and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    /// The forecasting model.
    pub model: ModelKind,
    /// When the forecast starts.
    pub origin: usize,
    /// Why the model could not be fitted.
    pub reason: String,
}

/// Everything a backtest produced.
#[derive(Debug, Clone, Default)]
pub struct BacktestResult {
    /// Every forecast made.
    pub forecasts: Vec<OriginForecast>,
    /// Origins where a model could not be fitted.
    pub skipped: Vec<Skipped>,
}

/// Number of fits [`run`] will attempt (for progress bars).
pub fn planned_fits(cfg: &BacktestConfig) -> usize {
    cfg.models.len() * (cfg.origins.len() + cfg.warmup)
}

/// Runs the backtest on `trace`, calling `progress` after every fit.
pub fn run(
    trace: &Trace,
    cfg: &BacktestConfig,
    progress: &mut dyn FnMut(),
) -> Result<BacktestResult, ForecastError> {
    if !(0.5..1.0).contains(&cfg.quantile) {
        return Err(ForecastError::InvalidSetting(format!(
            "quantile {} must be at least 0.5 and below 1",
            cfg.quantile
        )));
    }
    if cfg.horizon == 0 || cfg.origins.is_empty() {
        return Err(ForecastError::InvalidSetting(
            "no origin to score: the trace is shorter than the horizon, or no origin was asked for"
                .into(),
        ));
    }
    let periods = Periods::for_step(trace.step_secs)?;
    let first = cfg.origins[0];
    let warmups: Vec<usize> = (1..=cfg.warmup)
        .rev()
        .filter_map(|k| first.checked_sub(cfg.horizon + (k - 1) * cfg.warmup_every.max(1)))
        .filter(|w| *w > 0)
        .collect();

    let mut result = BacktestResult::default();
    for &model in &cfg.models {
        let mut calibrator = Calibrator::new(cfg.quantile, cfg.horizon, 4_000);
        let mut forecaster = Forecaster::new(cfg.reseason_secs).weekly(cfg.reseason_weekly_secs);
        let mut fit_at = |origin: usize| {
            let from = origin.saturating_sub(cfg.train);
            let req = ForecastRequest {
                start: trace.timestamp(from),
                step_secs: trace.step_secs,
                history: &trace.requests[from..origin],
                tz: cfg.tz,
                horizon: cfg.horizon,
                model,
                transform: cfg.transform,
                outliers: cfg.outliers,
                settings: cfg.settings,
            };
            forecaster.forecast(&req)
        };
        let actual_at = |origin: usize| -> Vec<f64> {
            (origin..origin + cfg.horizon)
                .map(|i| trace.requests.get(i).copied().unwrap_or(f64::NAN))
                .collect()
        };

        for &w in &warmups {
            if let Ok(f) = fit_at(w) {
                for (step, (p, a)) in f.point.iter().zip(actual_at(w)).enumerate() {
                    calibrator.observe(step, *p, a, f.error_floor);
                }
            }
            progress();
        }
        // Warm-up origins that fell before the trace's start still count for the progress bar.
        (warmups.len()..cfg.warmup).for_each(|_| progress());

        // Scored forecasts whose actuals are not yet all fed to the calibrator:
        // (origin, point, floor, steps already fed).
        let mut pending: Vec<(usize, Vec<f64>, f64, usize)> = Vec::new();
        for &origin in &cfg.origins {
            for (o, point, floor, fed) in pending.iter_mut() {
                while *fed < point.len() && *o + *fed < origin {
                    let a = trace.requests[*o + *fed];
                    calibrator.observe(*fed, point[*fed], a, *floor);
                    *fed += 1;
                }
            }
            pending.retain(|(_, point, _, fed)| *fed < point.len());

            let fitted = fit_at(origin);
            progress();
            let f = match fitted {
                Ok(f) => f,
                Err(e @ (ForecastError::TooShort { .. } | ForecastError::NoData)) => {
                    result.skipped.push(Skipped {
                        model,
                        origin,
                        reason: e.to_string(),
                    });
                    continue;
                }
                Err(e) => return Err(e),
            };
            let upper: Vec<f64> = f
                .point
                .iter()
                .enumerate()
                .map(|(step, p)| calibrator.upper(step, *p, f.error_floor).unwrap_or(*p))
                .collect();
            let actual = actual_at(origin);
            let from = origin.saturating_sub(cfg.train);
            let scale = seasonal_naive_scale(&trace.requests[from..origin], periods.day)
                .unwrap_or(f64::NAN);
            let scores = score(&f.point, &upper, &actual, cfg.quantile, scale);
            pending.push((origin, f.point.clone(), f.error_floor, 0));
            result.forecasts.push(OriginForecast {
                model,
                origin,
                fitted: f.fitted,
                point: f.point,
                upper,
                actual,
                scores,
                fit_secs: f.fit_secs,
                outliers_replaced: f.outliers.iter().map(|r| r.len).sum(),
                error_floor: f.error_floor,
            });
        }
    }
    Ok(result)
}
