//! The forecasting models: MSTL with an AutoETS trend (daily and weekly seasons), non-seasonal
//! ETS, and the baselines every report shows (seasonal naive of last week and of yesterday,
//! and naive).
//!
//! MSTL falls back by history length: daily and weekly seasons need two weeks of history,
//! daily-only needs two days; with one to two days the one day there is is the season (yesterday,
//! smoothed, at today's level), and below that non-seasonal ETS is used. The trend's ETS is fitted
//! on at most [`ModelSettings::trend_max_points`] block means of the deseasonalised series:
//! the ETS fit is where almost all of augurs' fit time goes, and it grows with its input, while
//! the trend of an MSTL decomposition is smooth at the scale of a few buckets anyway. The fits
//! that bootstrap a new fleet's calibration ([`ModelSettings::BOOTSTRAP`]) fit the same kind of
//! trend, damped and additive, with its weights chosen on a grid instead of by ETS's search.

use std::{
    borrow::Cow,
    fmt,
    str::FromStr,
    sync::{Arc, Mutex},
};

use augurs::{
    ets::AutoETS,
    mstl::{FittedTrendModel, MSTLModel, TrendModel},
    Fit, Forecast, Predict,
};

use crate::{
    holt::DampedHolt,
    seasons::{self, Reuse},
    ForecastError,
};

/// A forecasting model a user can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// MSTL (daily and weekly seasons) with an AutoETS trend, falling back on short history.
    Mstl,
    /// Non-seasonal AutoETS.
    Ets,
    /// The value one week earlier.
    SnaiveWeek,
    /// The value one day earlier.
    SnaiveDay,
    /// The last value.
    Naive,
}

impl ModelKind {
    /// Every model, in report order.
    pub const ALL: [ModelKind; 5] = [
        ModelKind::Mstl,
        ModelKind::Ets,
        ModelKind::SnaiveWeek,
        ModelKind::SnaiveDay,
        ModelKind::Naive,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Mstl => "mstl",
            ModelKind::Ets => "ets",
            ModelKind::SnaiveWeek => "snaive-week",
            ModelKind::SnaiveDay => "snaive-day",
            ModelKind::Naive => "naive",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModelKind {
    type Err = ForecastError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelKind::ALL
            .into_iter()
            .find(|m| m.name() == s.trim())
            .ok_or_else(|| ForecastError::UnknownModel(s.to_string()))
    }
}

/// Seasonal periods of a series, in points, derived from its interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    /// Points per day.
    pub day: usize,
    /// Points per week.
    pub week: usize,
}

impl Periods {
    /// Periods for a series with buckets of `step_secs` seconds.
    pub fn for_step(step_secs: i64) -> Result<Self, ForecastError> {
        if step_secs <= 0 || 86_400 % step_secs != 0 {
            return Err(ForecastError::InvalidSetting(format!(
                "a {step_secs} s interval does not divide a day; resample to an interval such as 1m, 5m, 10m or 1h"
            )));
        }
        let day = (86_400 / step_secs) as usize;
        Ok(Self { day, week: 7 * day })
    }
}

/// What was actually fitted (after any fall-back for short history).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fitted {
    /// MSTL with daily and weekly seasons.
    MstlDailyWeekly,
    /// MSTL with a daily season (too little history for the week).
    MstlDaily,
    /// One day of history as the daily season: yesterday, smoothed, scaled to today's level (too
    /// little history for MSTL's daily season).
    OneDay,
    /// Exponential smoothing alone.
    Ets,
    /// The same time last week.
    SnaiveWeek,
    /// The same time yesterday.
    SnaiveDay,
    /// The last value.
    Naive,
}

impl Fitted {
    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Fitted::MstlDailyWeekly => "mstl(day+week)",
            Fitted::MstlDaily => "mstl(day)",
            Fitted::OneDay => "one-day season",
            Fitted::Ets => "ets",
            Fitted::SnaiveWeek => "snaive-week",
            Fitted::SnaiveDay => "snaive-day",
            Fitted::Naive => "naive",
        }
    }
}

/// Settings of the model fits.
#[derive(Debug, Clone, Copy)]
pub struct ModelSettings {
    /// Most points the MSTL trend's ETS is fitted on: a longer deseasonalised series is
    /// averaged in blocks down to this many (0 = always fit on the series' own grid). ETS
    /// fit time grows with its input, so this bounds a fit's cost whatever the history.
    pub trend_max_points: usize,
    /// Days at the end of the history the MSTL trend's ETS is fitted on (0 = all of it). The
    /// seasons are learnt from the whole history; the trend only carries the recent level and
    /// slope into the next hours, which the last days say best.
    pub trend_days: usize,
    /// Only additive errors for the trend's ETS ("AZN"; by default it also tries multiplicative
    /// ones, "ZZN", which cost twice the time).
    pub trend_additive_errors: bool,
    /// Only a damped additive trend for the trend's ETS (one candidate; by default ETS also tries
    /// no trend and an undamped one, and keeps the best by AICc).
    pub trend_damped_only: bool,
    /// The trend's ETS fits only this candidate instead of searching (the one an earlier fit on
    /// the same series chose, [`PointForecast::trend_spec`](crate::PointForecast)): a search
    /// fits up to six candidates, and the choice rarely changes from one hour to the next.
    pub trend_spec: Option<TrendSpec>,
    /// The trend is a damped additive Holt smoother whose weights are chosen on a fixed grid
    /// (`DampedHolt`) instead of by augurs' ETS (Nelder-Mead on the likelihood): the same
    /// model as ETS(A,Ad,N), a bootstrap fit 0.85 ms instead of 1.15 ms on a week of 5-minute
    /// data. It ignores the three ETS settings above.
    pub trend_grid: bool,
    /// STL's inner loops per season (STL's default for a fit without robustness weights is 2):
    /// each loop smooths the seasons, then the trend, and most of a decomposition's time is
    /// these smoothings. At least 1 (0 is taken as 1).
    pub stl_inner_loops: usize,
    /// MSTL's passes over the seasons when there are two (daily and weekly; MSTL's default is
    /// 2): each pass decomposes every season on the series less the others. One season takes
    /// one pass whatever this says. At least 1 (0 is taken as 1).
    pub mstl_iterations: usize,
}

/// The ETS candidate an MSTL trend's search chose: its error type and its trend. A fit handed it
/// back in [`ModelSettings::trend_spec`] fits that one only (with no trend, that one and an
/// undamped trend: augurs 0.10 cannot fit a spec without a trend on its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrendSpec {
    /// Multiplicative errors (else additive).
    pub multiplicative_errors: bool,
    /// The trend.
    pub trend: TrendKind,
}

/// An ETS trend: none, additive, or additive and damped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrendKind {
    /// No trend: the level alone.
    None,
    /// An additive trend.
    Additive,
    /// An additive trend, damped.
    Damped,
}

impl TrendSpec {
    /// The candidate of a fitted ETS model (`None` for a multiplicative trend, which the trend's
    /// search never tries).
    fn of(model: &augurs::ets::model::Model) -> Option<Self> {
        use augurs::ets::model::{ErrorComponent, TrendComponent};
        let kind = model.model_type();
        let trend = match (kind.trend, model.damped()) {
            (TrendComponent::None, _) => TrendKind::None,
            (TrendComponent::Additive, false) => TrendKind::Additive,
            (TrendComponent::Additive, true) => TrendKind::Damped,
            (TrendComponent::Multiplicative, _) => return None,
        };
        Some(Self {
            multiplicative_errors: kind.error == ErrorComponent::Multiplicative,
            trend,
        })
    }

    /// The ETS search that fits this candidate (and, for no trend, an undamped trend beside it).
    fn ets(self) -> AutoETS {
        let spec = match (self.multiplicative_errors, self.trend) {
            (false, TrendKind::None) => "AZN",
            (true, TrendKind::None) => "MZN",
            (false, _) => "AAN",
            (true, _) => "MAN",
        };
        AutoETS::new(1, spec)
            .expect("AZN, MZN, AAN and MAN are valid ETS specs")
            .damped(self.trend == TrendKind::Damped)
            .expect("an additive trend may be damped or not")
    }
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            trend_max_points: 1_000,
            trend_days: 0,
            trend_additive_errors: false,
            trend_damped_only: false,
            trend_spec: None,
            trend_grid: false,
            stl_inner_loops: 2,
            mstl_iterations: 2,
        }
    }
}

impl ModelSettings {
    /// The settings of the backtest fits that bootstrap a new fleet's calibration: the trend on
    /// the last day's block means, a damped additive trend with additive errors fitted on a grid
    /// (`DampedHolt`), a fraction of a default fit's time. A week of hourly such fits is what a
    /// fleet's first refit costs; their errors calibrate the distribution as the default fit's
    /// do (`prewarm backtest --trend-days 1 --trend-points 200 --trend-grid`: quantile coverage
    /// close to the default's on the bundled traces, docs/measurements.md).
    pub const BOOTSTRAP: Self = Self {
        trend_max_points: 200,
        trend_days: 1,
        trend_additive_errors: true,
        trend_damped_only: true,
        trend_spec: None,
        trend_grid: true,
        stl_inner_loops: 2,
        mstl_iterations: 2,
    };
}

/// Fits `kind` to a gap-free `history` and returns the point forecast for the next `horizon`
/// points, with the variant that was fitted and the ETS candidate an MSTL fit's trend chose (to
/// fit alone next time with [`ModelSettings::trend_spec`]).
pub fn fit_predict(
    kind: ModelKind,
    history: &[f64],
    periods: Periods,
    step_secs: i64,
    horizon: usize,
    settings: ModelSettings,
) -> Result<(Vec<f64>, Fitted, Option<TrendSpec>), ForecastError> {
    fit_predict_reusing(kind, history, periods, step_secs, horizon, settings, None)
}

pub(crate) fn fit_predict_reusing(
    kind: ModelKind,
    history: &[f64],
    periods: Periods,
    step_secs: i64,
    horizon: usize,
    settings: ModelSettings,
    reuse: Option<Reuse<'_>>,
) -> Result<(Vec<f64>, Fitted, Option<TrendSpec>), ForecastError> {
    let n = history.len();
    if n == 0 {
        return Err(ForecastError::NoData);
    }
    let too_short = |needed: usize| ForecastError::TooShort {
        model: kind.name().to_string(),
        needed,
        needed_human: prewarm_core::format_duration(needed as i64 * step_secs),
        have: n,
    };
    let chosen = Arc::new(Mutex::new(None));
    let fitted = match kind {
        ModelKind::Naive => Ok((vec![history[n - 1]; horizon], Fitted::Naive)),
        ModelKind::SnaiveDay => seasonal_naive(history, periods.day, horizon)
            .map(|f| (f, Fitted::SnaiveDay))
            .ok_or_else(|| too_short(periods.day)),
        ModelKind::SnaiveWeek => seasonal_naive(history, periods.week, horizon)
            .map(|f| (f, Fitted::SnaiveWeek))
            .ok_or_else(|| too_short(periods.week)),
        ModelKind::Ets => {
            if n < MIN_ETS_POINTS {
                return Err(too_short(MIN_ETS_POINTS));
            }
            fit_ets(history, horizon).map(|f| (f, Fitted::Ets))
        }
        ModelKind::Mstl => {
            let trend = BlockEtsTrend::new(n, periods, settings, chosen.clone());
            if n >= 2 * periods.week {
                fit_mstl(
                    history,
                    vec![periods.day, periods.week],
                    trend,
                    &settings,
                    horizon,
                    reuse,
                )
                .map(|f| (f, Fitted::MstlDailyWeekly))
            } else if n >= 2 * periods.day {
                fit_mstl(history, vec![periods.day], trend, &settings, horizon, reuse)
                    .map(|f| (f, Fitted::MstlDaily))
            } else if n >= periods.day && periods.day >= 2 {
                Ok((
                    one_day_season(history, periods.day, horizon),
                    Fitted::OneDay,
                ))
            } else if n >= MIN_ETS_POINTS {
                fit_ets(history, horizon).map(|f| (f, Fitted::Ets))
            } else {
                Err(too_short(MIN_ETS_POINTS))
            }
        }
    }?;
    let spec = *chosen.lock().unwrap_or_else(|e| e.into_inner());
    Ok((fitted.0, fitted.1, spec))
}

/// Fewest points a non-seasonal ETS fit is attempted on.
pub const MIN_ETS_POINTS: usize = 12;

fn seasonal_naive(history: &[f64], period: usize, horizon: usize) -> Option<Vec<f64>> {
    let n = history.len();
    (n >= period).then(|| {
        (0..horizon)
            .map(|h| history[n - period + h % period])
            .collect()
    })
}

/// The daily season from the one day of history there is: the same time yesterday, averaged over
/// about twenty minutes around each bucket (two buckets either side, at least), and scaled by how
/// the last two hours compare with the same two hours yesterday (between a half and twice).
fn one_day_season(history: &[f64], period: usize, horizon: usize) -> Vec<f64> {
    let n = history.len();
    let mean = |s: &[f64]| {
        let known: Vec<f64> = s.iter().copied().filter(|v| v.is_finite()).collect();
        (!known.is_empty()).then(|| known.iter().sum::<f64>() / known.len() as f64)
    };
    let window = (period / 12).max(1);
    let recent = mean(&history[n - window..]);
    let before = (n >= period + window)
        .then(|| mean(&history[n - period - window..n - period]))
        .flatten();
    let level = match (recent, before) {
        (Some(r), Some(b)) if b > 0.0 => (r / b).clamp(0.5, 2.0),
        _ => 1.0,
    };
    let half = (period / 288 * 2).max(2);
    (0..horizon)
        .map(|h| {
            let at = n - period + h % period;
            let from = at.saturating_sub(half).max(n - period);
            let to = (at + half + 1).min(n);
            mean(&history[from..to]).unwrap_or(0.0).max(0.0) * level
        })
        .collect()
}

pub(crate) fn fit_error(model: &str, e: impl fmt::Display) -> ForecastError {
    ForecastError::Fit {
        model: model.to_string(),
        message: e.to_string(),
    }
}

pub(crate) fn trend_ets(
    additive_errors: bool,
    damped_only: bool,
    spec: Option<TrendSpec>,
) -> AutoETS {
    if let Some(spec) = spec {
        return spec.ets();
    }
    // A trend spec of "N" never fits in augurs 0.10; "ZZN" selects the error and trend types.
    let spec = match (additive_errors, damped_only) {
        (true, false) => "AZN",
        (false, false) => "ZZN",
        (true, true) => "AAN",
        (false, true) => "ZAN",
    };
    let ets = AutoETS::new(1, spec).expect("AZN, ZZN, AAN and ZAN are valid ETS specs");
    if damped_only {
        ets.damped(true)
            .expect("a damped trend is allowed with an additive trend")
    } else {
        ets
    }
}

fn fit_ets(history: &[f64], horizon: usize) -> Result<Vec<f64>, ForecastError> {
    let fitted = trend_ets(false, false, None)
        .fit(history)
        .map_err(|e| fit_error("ets", e))?;
    let forecast = fitted
        .predict(horizon, None)
        .map_err(|e| fit_error("ets", e))?;
    Ok(forecast.point)
}

fn fit_mstl(
    history: &[f64],
    periods: Vec<usize>,
    trend: BlockEtsTrend,
    settings: &ModelSettings,
    horizon: usize,
    reuse: Option<Reuse<'_>>,
) -> Result<Vec<f64>, ForecastError> {
    if let Some((seasons, from)) = reuse
        .as_ref()
        .and_then(|r| r.reusable(history.len(), &periods))
    {
        return seasons::forecast_on(history, seasons, from, &trend, horizon);
    }
    let mut stl = augurs::mstl::stlrs::StlParams::new();
    stl.inner_loops(settings.stl_inner_loops.max(1));
    let mut params = augurs::mstl::stlrs::MstlParams::new();
    params.stl_params(stl);
    params.iterations(settings.mstl_iterations.max(1));
    let model = MSTLModel::new(periods.clone(), trend).mstl_params(params);
    let fitted = model.fit(history).map_err(|e| fit_error("mstl", e))?;
    let forecast = fitted
        .predict(horizon, None)
        .map_err(|e| fit_error("mstl", e))?;
    if let Some(reuse) = reuse {
        reuse.decomposed(history.len(), periods, fitted.fit().seasonal());
    }
    Ok(forecast.point)
}

/// An MSTL trend model that fits AutoETS on block means of the deseasonalised series' last
/// [`ModelSettings::trend_days`] and interpolates its forecast back onto the series' grid.
#[derive(Debug, Clone)]
struct BlockEtsTrend {
    /// Fine points averaged into each block.
    block: usize,
    /// Fine points at the end of the series the trend is fitted on.
    window: usize,
    /// Only additive errors for the ETS.
    additive_errors: bool,
    /// Only a damped additive trend.
    damped_only: bool,
    /// Only this candidate.
    spec: Option<TrendSpec>,
    /// A damped Holt smoother fitted on a grid instead of the ETS search.
    grid: bool,
    /// Where the fit leaves the candidate it chose.
    chosen: Arc<Mutex<Option<TrendSpec>>>,
}

impl BlockEtsTrend {
    fn new(
        n: usize,
        periods: Periods,
        settings: ModelSettings,
        chosen: Arc<Mutex<Option<TrendSpec>>>,
    ) -> Self {
        let window = match settings.trend_days {
            0 => n,
            days => (days * periods.day).clamp(1, n),
        };
        let block = match settings.trend_max_points {
            0 => 1,
            max => window.div_ceil(max).max(1),
        };
        Self {
            block,
            window,
            additive_errors: settings.trend_additive_errors,
            damped_only: settings.trend_damped_only,
            spec: settings.trend_spec,
            grid: settings.trend_grid,
            chosen,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl TrendModel for BlockEtsTrend {
    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed(if self.grid {
            "block damped Holt (grid)"
        } else {
            "block AutoETS"
        })
    }

    fn fit(&self, y: &[f64]) -> Result<Box<dyn FittedTrendModel + Sync + Send>, BoxError> {
        let n = y.len();
        let window = self.window.clamp(1, n);
        // Keep at least 24 blocks so ETS has something to fit on.
        let block = self.block.clamp(1, (window / 24).max(1));
        // Blocks are aligned to the end of the series so the last block is complete and recent.
        let blocks = window / block;
        let skip = n - blocks * block;
        let means: Vec<f64> = y[skip..]
            .chunks_exact(block)
            .map(|c| c.iter().sum::<f64>() / block as f64)
            .collect();
        let (fitted, in_sample) = if self.grid {
            let (holt, in_sample) = DampedHolt::fit(&means);
            (Coarse::Holt(holt), in_sample)
        } else {
            let fitted =
                trend_ets(self.additive_errors, self.damped_only, self.spec).fit(&means)?;
            *self.chosen.lock().unwrap_or_else(|e| e.into_inner()) = TrendSpec::of(fitted.model());
            let in_sample = fitted.predict_in_sample(None)?.point;
            (Coarse::Ets(Box::new(fitted)), in_sample)
        };
        Ok(Box::new(FittedBlockEts {
            block,
            n,
            skip,
            fitted,
            in_sample,
        }))
    }
}

#[derive(Debug)]
struct FittedBlockEts {
    block: usize,
    n: usize,
    skip: usize,
    fitted: Coarse,
    in_sample: Vec<f64>,
}

/// The trend model fitted on the block means.
#[derive(Debug)]
enum Coarse {
    Ets(Box<augurs::ets::FittedAutoETS>),
    Holt(DampedHolt),
}

impl Coarse {
    fn predict(&self, horizon: usize) -> Result<Vec<f64>, BoxError> {
        Ok(match self {
            Coarse::Ets(fitted) => fitted.predict(horizon, None)?.point,
            Coarse::Holt(holt) => holt.predict(horizon),
        })
    }
}

impl FittedBlockEts {
    /// Trend values at fine offsets from the last point (1 = the next bucket), interpolated
    /// between block forecasts.
    fn interpolate(
        &self,
        steps: std::ops::RangeInclusive<i64>,
        forecast: &mut Forecast,
    ) -> Result<(), BoxError> {
        let blocks = self.in_sample.len();
        let ahead = (*steps.end()).max(1) as usize / self.block + 3;
        let coarse = self.fitted.predict(ahead)?;
        // Block forecasts sit at the centres of future blocks; the fine points before the
        // first future centre are extrapolated from the first two (exact for a linear trend).
        let first = self.centre(blocks as f64);
        for step in steps {
            let pos = (self.n as i64 - 1 + step) as f64;
            let x = (pos - first) / self.block as f64;
            let i = (x.floor().max(0.0) as usize).min(coarse.len() - 2);
            let frac = x - i as f64;
            forecast
                .point
                .push(coarse[i] + frac * (coarse[i + 1] - coarse[i]));
        }
        Ok(())
    }

    /// Position (in fine points, fractional) of the centre of block `b`.
    fn centre(&self, b: f64) -> f64 {
        self.skip as f64 + b * self.block as f64 + (self.block as f64 - 1.0) / 2.0
    }
}

impl FittedTrendModel for FittedBlockEts {
    fn predict_inplace(
        &self,
        horizon: usize,
        _level: Option<f64>,
        forecast: &mut Forecast,
    ) -> Result<(), BoxError> {
        self.interpolate(1..=horizon as i64, forecast)
    }

    fn predict_in_sample_inplace(
        &self,
        _level: Option<f64>,
        forecast: &mut Forecast,
    ) -> Result<(), BoxError> {
        let first = self.in_sample.first().copied().unwrap_or(0.0);
        forecast.point = (0..self.n)
            .map(|i| {
                if i < self.skip {
                    first
                } else {
                    self.in_sample[(i - self.skip) / self.block]
                }
            })
            .collect();
        Ok(())
    }

    fn training_data_size(&self) -> Option<usize> {
        Some(self.n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daily and weekly periods of a grid with `per_day` points a day.
    fn periods(per_day: usize) -> Periods {
        Periods {
            day: per_day,
            week: 7 * per_day,
        }
    }

    fn daily_pattern(days: usize, per_day: usize) -> Vec<f64> {
        (0..days * per_day)
            .map(|i| {
                let phase = (i % per_day) as f64 / per_day as f64 * std::f64::consts::TAU;
                100.0 + 50.0 * phase.sin() + ((i * 7919) % 13) as f64 * 0.5
            })
            .collect()
    }

    #[test]
    fn model_names_round_trip_and_unknown_is_rejected() {
        for m in ModelKind::ALL {
            assert_eq!(m.name().parse::<ModelKind>().unwrap(), m);
        }
        let e = "prophet".parse::<ModelKind>().unwrap_err().to_string();
        assert!(e.contains("choose from mstl"), "{e}");
    }

    #[test]
    fn seasonal_naive_repeats_the_last_season() {
        let p = Periods { day: 4, week: 28 };
        let history = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let (f, _, _) = fit_predict(
            ModelKind::SnaiveDay,
            &history,
            p,
            21_600,
            6,
            ModelSettings::default(),
        )
        .unwrap();
        assert_eq!(f, vec![5.0, 6.0, 7.0, 8.0, 5.0, 6.0]);
        let (f, _, _) = fit_predict(
            ModelKind::Naive,
            &history,
            p,
            21_600,
            2,
            ModelSettings::default(),
        )
        .unwrap();
        assert_eq!(f, vec![8.0, 8.0]);
        let e = fit_predict(
            ModelKind::SnaiveWeek,
            &history,
            p,
            21_600,
            2,
            ModelSettings::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("needs at least 28 points") && e.contains("1w"),
            "{e}"
        );
    }

    #[test]
    fn mstl_learns_a_daily_cycle_and_falls_back_on_short_history() {
        let per_day = 48;
        let p = periods(per_day);
        let history = daily_pattern(5, per_day);
        let truth = daily_pattern(6, per_day)[5 * per_day..].to_vec();
        let (f, fitted, _) = fit_predict(
            ModelKind::Mstl,
            &history,
            p,
            1_800,
            per_day,
            ModelSettings::default(),
        )
        .unwrap();
        assert_eq!(fitted, Fitted::MstlDaily);
        let mae: f64 = f
            .iter()
            .zip(&truth)
            .map(|(a, b)| (a - b).abs())
            .sum::<f64>()
            / per_day as f64;
        // The cycle's amplitude is 50; a model that learnt it is off by a few units at most.
        assert!(mae < 5.0, "mae {mae}");

        // One day and a half: yesterday is the season, at today's level.
        let (f, fitted, _) = fit_predict(
            ModelKind::Mstl,
            &history[..per_day * 3 / 2],
            p,
            1_800,
            per_day,
            ModelSettings::default(),
        )
        .unwrap();
        assert_eq!(fitted, Fitted::OneDay);
        let truth = &history[per_day * 3 / 2..per_day * 5 / 2];
        let mae: f64 =
            f.iter().zip(truth).map(|(a, b)| (a - b).abs()).sum::<f64>() / per_day as f64;
        assert!(mae < 10.0, "mae {mae}");

        let (_, fitted, _) = fit_predict(
            ModelKind::Mstl,
            &history[..40],
            p,
            1_800,
            4,
            ModelSettings::default(),
        )
        .unwrap();
        assert_eq!(fitted, Fitted::Ets);
        let e = fit_predict(
            ModelKind::Mstl,
            &history[..5],
            p,
            1_800,
            4,
            ModelSettings::default(),
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                ForecastError::TooShort {
                    needed: 12,
                    have: 5,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn block_trend_follows_a_linear_trend() {
        let per_day = 24;
        let p = periods(per_day);
        let history: Vec<f64> = daily_pattern(4, per_day)
            .iter()
            .enumerate()
            .map(|(i, v)| v + i as f64 * 0.5)
            .collect();
        let n = history.len();
        let (f, _, _) = fit_predict(
            ModelKind::Mstl,
            &history,
            p,
            3_600,
            6,
            ModelSettings {
                trend_max_points: 24,
                ..ModelSettings::default()
            },
        )
        .unwrap();
        let truth: Vec<f64> = daily_pattern(5, per_day)[n..n + 6]
            .iter()
            .enumerate()
            .map(|(i, v)| v + (n + i) as f64 * 0.5)
            .collect();
        for (a, b) in f.iter().zip(&truth) {
            assert!((a - b).abs() < 8.0, "forecast {a} truth {b}");
        }
    }

    #[test]
    fn the_bootstrap_trend_forecasts_as_the_default_and_its_window_is_bounded() {
        let per_day = 24;
        let p = periods(per_day);
        // Five days at one level, then two days of a level 40 higher.
        let history: Vec<f64> = daily_pattern(7, per_day)
            .iter()
            .enumerate()
            .map(|(i, v)| v + if i >= 5 * per_day { 40.0 } else { 0.0 })
            .collect();
        let n = history.len();
        let fit = |settings| fit_predict(ModelKind::Mstl, &history, p, 3_600, 6, settings);
        let (cheap, _, _) = fit(ModelSettings::BOOTSTRAP).unwrap();
        let (full, _, _) = fit(ModelSettings::default()).unwrap();
        let truth = &daily_pattern(8, per_day)[n..n + 6];
        for ((a, d), b) in cheap.iter().zip(&full).zip(truth) {
            assert!(
                (a - (b + 40.0)).abs() < 15.0,
                "forecast {a} truth {}",
                b + 40.0
            );
            assert!((a - d).abs() < 2.0, "bootstrap {a} default {d}");
        }
        // The window: a day of fine points, in at most 200 blocks; the whole history by default.
        let t = BlockEtsTrend::new(n, p, ModelSettings::BOOTSTRAP, Default::default());
        assert_eq!((t.window, t.block), (per_day, 1));
        assert!(t.additive_errors && t.damped_only);
        // Its trend is a damped Holt smoother fitted on a grid; the default searches ETS's error
        // and trend types.
        assert!(
            t.grid && !BlockEtsTrend::new(n, p, ModelSettings::default(), Default::default()).grid
        );
        let means = &history[n - per_day..];
        let (holt, in_sample) = DampedHolt::fit(means);
        assert_eq!(in_sample.len(), means.len());
        assert!(holt.phi < 1.0, "the trend is damped");
        let five_min = periods(288);
        let t = BlockEtsTrend::new(
            6_048,
            five_min,
            ModelSettings::BOOTSTRAP,
            Default::default(),
        );
        assert_eq!((t.window, t.block), (288, 2));
        let t = BlockEtsTrend::new(
            6_048,
            five_min,
            ModelSettings::default(),
            Default::default(),
        );
        assert_eq!((t.window, t.block), (6_048, 7));
        assert!(!t.additive_errors);
    }
}
