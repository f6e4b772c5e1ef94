//! Refitting a fleet's forecast, calibrating its demand distribution on the fleet's own errors,
//! and sizing it to the fleet's SLO: the same pieces the simulator's predictive policy uses.
//!
//! Each refit fits MSTL (daily and weekly seasons on the fleet's wall clock) on up to
//! `planner.history` of 5-minute buckets, and stores the median. Every stored forecast is later
//! compared, minute by minute, with what arrived: those errors calibrate the distribution
//! ([`prewarm_forecast::DemandCalibration`]: by horizon, hour of the local day and minute of the
//! hour), and replayed through the queue they choose the level to plan on in each hour
//! ([`prewarm_planner::slo`]). The calibration and the levels are stored with the forecast, so a
//! tick, or a replica started later, rebuilds exactly this distribution. They are made again
//! hourly, as the simulator makes them: a refit within [`RECALIBRATE_SECS`] of the last
//! calibration, for the same sizing settings, fits a new median and keeps them. A fleet with
//! history but no stored forecasts (just imported, say) is bootstrapped with a short backtest: fits
//! at past origins on the data before each (with the cheaper trend of
//! [`ModelSettings::BOOTSTRAP`]), stored as `backtest` rows, so its first distribution is
//! calibrated too. Until it is, the planner runs its reactive rules.

use chrono::{DateTime, Duration, DurationRound, Utc};
use chrono_tz::Tz;
use prewarm_forecast::{
    forecast, DemandCalibration, DemandDistribution, ForecastRequest, Forecaster, ModelKind,
    ModelSettings, OutlierSettings, Scored, Transform, TrendSpec,
};
use prewarm_planner::{
    defaults::CALIBRATION_WINDOW_SECS,
    slo::{self, LevelPlan, Sizing, Slo},
    PlannerConfig,
};
use prewarm_store::forecasts as stored_forecasts;
pub use prewarm_store::forecasts::{latest_live_row, ForecastRow};
use sqlx::PgPool;

use crate::config::PlannerDefaults;

/// Buckets each forecast covers: two hours, enough for missed refits plus lead and hold.
pub const HORIZON_SECS: i64 = 7_200;
/// Scored minutes per horizon group before a distribution is trusted.
pub const MIN_ERRORS: usize = 60;
/// Forecasts whose errors calibrate the next one: the simulator's window.
pub const CALIBRATION_SECS: i64 = CALIBRATION_WINDOW_SECS;
/// Bootstrap backtest origins: on the wall clock's hours over the calibration window, as the
/// simulator fits before planning starts.
const BOOTSTRAP_EVERY_SECS: i64 = prewarm_planner::defaults::BOOTSTRAP_EVERY_SECS;

/// How long a live forecast's calibration and levels are kept by the refits after it: an hour,
/// as the simulator keeps them; the refits between fit a new median.
pub const RECALIBRATE_SECS: i64 = prewarm_planner::defaults::RECALIBRATE_SECS;

/// How old a live forecast a plan reads may be: two hours (its horizon), after which the fleet
/// plans on its reactive rules until a refit.
pub const LIVE_MAX_AGE_SECS: i64 = 2 * 3_600;

/// A calibration and its levels kept from the last live forecast, as a refit within the hour
/// plans on them.
struct Kept {
    /// The stored calibration's id.
    id: i64,
    /// When they were made.
    at: DateTime<Utc>,
    calibration: DemandCalibration,
    /// None before the sizer had a day of minutes to replay.
    levels: Option<LevelPlan>,
    /// The recent forecast error, as then.
    recent_error: Option<f64>,
}

/// The settings a calibration and its levels were made for: what the SLO sizer reads (the SLO,
/// a fixed quantile, the GPU's work, the boot lead, hold and keep, the limits) and the fleet's
/// time zone. A change of any recalibrates at the next refit.
fn sizing_key(cfg: &PlannerConfig, tz: Tz) -> String {
    format!(
        "{:?} {:?} {:?} {}",
        slo::ReplayPlanner::of(cfg),
        cfg.slo,
        cfg.quantile,
        tz.name()
    )
}

/// The calibration and levels of the newest live forecast, when a refit at `now` keeps them:
/// made within [`RECALIBRATE_SECS`] for the same sizing settings (`sized_for`), and readable.
fn kept_calibration(
    stored: Option<stored_forecasts::KeptCalibration>,
    sized_for: &str,
    now: DateTime<Utc>,
) -> Option<Kept> {
    let k = stored.filter(|k| {
        (now - k.calibrated_at).num_seconds() < RECALIBRATE_SECS && k.sized_for == sized_for
    })?;
    Some(Kept {
        id: k.id,
        at: k.calibrated_at,
        calibration: serde_json::from_value(k.calibration).ok()?,
        levels: match k.levels {
            Some(l) => Some(serde_json::from_value(l).ok()?),
            None => None,
        },
        recent_error: k.recent_error,
    })
}

/// The quantile planned on, per bucket of the fit's median, for people and metrics (the tick
/// rebuilds all levels): the level of `levels` at each bucket's local hour, or the start level
/// before the sizer has chosen.
fn planned_quantile(
    f: &Fit,
    origin: DateTime<Utc>,
    step: i64,
    calibration: &DemandCalibration,
    levels: Option<&LevelPlan>,
    tz: Tz,
) -> Vec<f64> {
    let per = (step / 60).max(1) as usize;
    let minute_medians: Vec<f64> = f
        .p50_rps
        .iter()
        .flat_map(|m| std::iter::repeat_n(*m, per))
        .collect();
    let hour_levels = prewarm_forecast::distribution::levels_of(&minute_medians);
    f.p50_rps
        .iter()
        .enumerate()
        .map(|(b, m)| {
            let at = origin + Duration::seconds(step * b as i64);
            let level = levels.map_or(
                prewarm_planner::level_index(prewarm_planner::defaults::START_LEVEL),
                |l| l.level_at(at, Some(tz)),
            );
            calibration
                .quantiles(
                    at,
                    (at - origin).num_seconds(),
                    *m,
                    hour_levels[b * per],
                    f.floor_rps,
                )
                .map_or(*m, |q| q[level])
        })
        .collect()
}

/// What a refit did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RefitReport {
    /// The stored forecast planned on, if any.
    pub forecast_id: Option<i64>,
    /// Whether the distribution is calibrated.
    pub calibrated: bool,
    /// Scored minutes behind the thinnest horizon group.
    pub errors_used: usize,
    /// Backtest fits made to bootstrap the calibration.
    pub bootstrapped: usize,
    /// Recent forecast error relative to demand.
    pub recent_error: Option<f64>,
    /// Time the fit took, seconds.
    pub fit_secs: f64,
    /// The levels the SLO sizer chose, once it has a day of scored minutes.
    pub sizing: Option<Sizing>,
    /// Why no forecast was made, if none was.
    pub skipped: Option<String>,
    /// The share of requests the fleet timed out over its last day and its last week, as its
    /// decisions' ready GPUs served its demand (once a day of decisions is known; not read when
    /// the calibration is kept).
    pub realised_timed_out_share: (Option<f64>, Option<f64>),
    /// When the calibration and levels planned on were made: now, or within the last hour when
    /// this refit kept them ([`RECALIBRATE_SECS`]).
    pub calibrated_at: Option<DateTime<Utc>>,
}

/// Which number of its samples a series adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// The work under the fleet's capacity (requests for a request-counted fleet, GPU-seconds of
    /// tokens for an LLM fleet): what is forecast and planned on.
    Work,
    /// The requests: what the SLO counts.
    Requests,
}

/// A fleet's work (or requests) per `step` in `[from, to)` (buckets start at `from`, NaN where
/// nothing was received): samples narrower than an hour are spread over the buckets they overlap
/// in proportion to the overlap, and a bucket partly covered is scaled up from its part. With a
/// step of a minute, a 5-minute sample is spread evenly over its minutes, as the simulator
/// spreads a trace's buckets.
#[allow(clippy::too_many_arguments)]
pub async fn series(
    pool: &PgPool,
    fleet_id: i64,
    capacity: &prewarm_planner::Capacity,
    measure: Measure,
    step: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<f64>, sqlx::Error> {
    let rows =
        prewarm_store::samples::raw_buckets_overlapping(pool, fleet_id, capacity, from, to).await?;
    Ok(bucketed(&rows, measure, step, from, to))
}

/// [`series`] of buckets already read: any that overlap `[from, to)` count (others are left
/// out), so one read can serve several windows within it.
fn bucketed(
    rows: &[prewarm_store::samples::RawBucket],
    measure: Measure,
    step: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<f64> {
    let n = ((to - from).num_seconds() / step).max(0) as usize;
    let mut sums = vec![0.0; n];
    let mut covered = vec![0i64; n];
    for b in rows {
        let value = match measure {
            Measure::Work => b.work,
            Measure::Requests => b.requests,
        };
        if !value.is_finite() {
            continue;
        }
        let secs = b.secs as i64;
        let first = (b.start - from).num_seconds();
        let mut t = first;
        while t < first + secs {
            let bucket = t.div_euclid(step);
            let end = ((bucket + 1) * step).min(first + secs);
            if (0..n as i64).contains(&bucket) {
                sums[bucket as usize] += value * (end - t) as f64 / secs as f64;
                covered[bucket as usize] += end - t;
            }
            t = end;
        }
    }
    sums.into_iter()
        .zip(covered)
        .map(|(s, c)| {
            if c == 0 {
                f64::NAN
            } else {
                s * step as f64 / c.min(step) as f64
            }
        })
        .collect()
}

/// A fleet's work (or requests) per minute in `[from, to)` ([`series`] with a step of a minute).
pub async fn minute_series(
    pool: &PgPool,
    fleet_id: i64,
    capacity: &prewarm_planner::Capacity,
    measure: Measure,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<f64>, sqlx::Error> {
    series(pool, fleet_id, capacity, measure, 60, from, to).await
}

/// A fitted median: per bucket in requests per second, its error floor, the model, fit seconds.
#[derive(Debug, Clone)]
struct Fit {
    p50_rps: Vec<f64>,
    floor_rps: f64,
    model: String,
    fit_secs: f64,
    trend_spec: Option<TrendSpec>,
}

/// Runs `work`, all CPU, on a blocking thread once one of the machine's cores is free for it: as
/// many such parts of refits run at once as there are cores, however many refits are in flight (a
/// refit spends much of its time waiting on the database, so more refits than cores run at once;
/// their fits, scoring, calibration and sizing queue here instead of crowding the ticks off the
/// async workers).
async fn on_a_core<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    static CORES: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let _core = CORES
        .get_or_init(|| tokio::sync::Semaphore::new(crate::engine::cores()))
        .acquire()
        .await;
    tokio::task::spawn_blocking(work).await
}

/// [`on_a_core`] for work that does not fail: a panic in it panics the refit, as it would inline.
async fn on_a_core_or_panic<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match on_a_core(work).await {
        Ok(done) => done,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("a refit's work on a core did not finish: {e}"),
    }
}

/// The forecasts `stored` scored against the calibration window's `minutes` (from `from`), and the
/// distribution calibrated on them, on a core.
async fn score_and_calibrate(
    stored: Vec<StoredRow>,
    minutes: Vec<f64>,
    from: DateTime<Utc>,
    tz: Tz,
) -> (
    Vec<StoredRow>,
    Vec<Scored>,
    prewarm_planner::refit::Calibrated,
) {
    on_a_core_or_panic(move || {
        let records = score(&stored, &minutes, from);
        let calibrated = prewarm_planner::refit::calibrate(&records, Some(tz));
        (stored, records, calibrated)
    })
    .await
}

/// The bootstrap's fits, at each of `origins` (its origin and its training window in
/// `history`, which starts at `from`), in one task on a core ([`on_a_core`]): successive fits
/// reuse the seasons of an earlier one
/// ([`bootstrap_forecaster`](prewarm_planner::refit::bootstrap_forecaster)).
async fn bootstrap_fits(
    history: Vec<f64>,
    from: DateTime<Utc>,
    step: i64,
    tz: Tz,
    horizon: usize,
    origins: Vec<(DateTime<Utc>, usize, usize)>,
) -> Vec<(DateTime<Utc>, Result<Fit, String>)> {
    let asked: Vec<DateTime<Utc>> = origins.iter().map(|(o, _, _)| *o).collect();
    let fitted = on_a_core(move || {
        let mut forecaster = prewarm_planner::refit::bootstrap_forecaster();
        origins
            .into_iter()
            .map(|(o, first, end)| {
                let fitted = fit_reusing(
                    &history[first..end],
                    from + Duration::seconds(step * first as i64),
                    step,
                    tz,
                    horizon,
                    ModelSettings::BOOTSTRAP,
                    Some(&mut forecaster),
                );
                (o, fitted)
            })
            .collect()
    })
    .await;
    // A fit that panics fails the origins' fits, as each would alone.
    fitted.unwrap_or_else(|e| {
        let e = format!("the bootstrap's fits did not finish: {e}");
        asked.into_iter().map(|o| (o, Err(e.clone()))).collect()
    })
}

/// [`fit_reusing`] on a core ([`on_a_core`]): a fit is milliseconds to tens of milliseconds of
/// CPU that must not hold up the runtime's workers (HTTP API, ticks).
async fn fit_blocking(
    history: Vec<f64>,
    start: DateTime<Utc>,
    step: i64,
    tz: Tz,
    horizon: usize,
    settings: ModelSettings,
) -> Result<Fit, String> {
    on_a_core(move || fit_reusing(&history, start, step, tz, horizon, settings, None))
        .await
        .map_err(|e| format!("the fit did not finish: {e}"))?
}

/// Fits the model on `history`, through `forecaster` when given (the bootstrap's fits at
/// successive origins reuse its seasons); the error says why it could not be fitted (kept in the
/// fleet's refit note and the decision's reason, and counted as a refit error).
fn fit_reusing(
    history: &[f64],
    start: DateTime<Utc>,
    step: i64,
    tz: Tz,
    horizon: usize,
    settings: ModelSettings,
    forecaster: Option<&mut Forecaster>,
) -> Result<Fit, String> {
    let first = history
        .iter()
        .position(|v| v.is_finite())
        .ok_or("the history holds no observed bucket")?;
    let req = ForecastRequest {
        start: start + Duration::seconds(step * first as i64),
        step_secs: step,
        history: &history[first..],
        tz: Some(tz),
        horizon,
        model: ModelKind::Mstl,
        transform: Transform::None,
        outliers: Some(OutlierSettings::default()),
        settings,
    };
    let f = match forecaster {
        Some(forecaster) => forecaster.forecast(&req),
        None => forecast(&req),
    }
    .map_err(|e| e.to_string())?;
    let per_sec = step as f64;
    Ok(Fit {
        p50_rps: f.point.iter().map(|p| p.max(0.0) / per_sec).collect(),
        floor_rps: f.error_floor / per_sec,
        model: format!("{:?}", f.fitted),
        fit_secs: f.fit_secs,
        trend_spec: f.trend_spec,
    })
}

/// A stored forecast's median: (origin, step seconds, median per bucket in rps, floor in rps).
type StoredRow = stored_forecasts::StoredMedian;

/// The level of a stored median per minute ([`prewarm_forecast::distribution::levels_of`]), its
/// buckets `per` minutes wide.
fn minute_levels(p50: &[f64], per: usize) -> Vec<f64> {
    let minute_medians: Vec<f64> = p50
        .iter()
        .flat_map(|m| std::iter::repeat_n(*m, per))
        .collect();
    prewarm_forecast::distribution::levels_of(&minute_medians)
}

/// The scored minutes of stored forecasts: each minute a forecast covers and whose actual is
/// known (`minutes[i]` is the requests of the minute starting `from + i` minutes), ordered by
/// minute and horizon (forecasts with the same origin in the order given).
fn score(rows: &[StoredRow], minutes: &[f64], from: DateTime<Utc>) -> Vec<Scored> {
    // Each record and the index of its minute, in the rows' order.
    let total: usize = rows
        .iter()
        .map(|(_, step, p50, _)| p50.len() * (*step as usize / 60).max(1))
        .sum();
    let mut scored: Vec<Scored> = Vec::with_capacity(total);
    let mut minute_of: Vec<u32> = Vec::with_capacity(total);
    // The start of each minute from `from`, made once a forecast on whole minutes needs it.
    let mut minute_start: Vec<DateTime<Utc>> = Vec::new();
    for (origin, step, p50, floor) in rows {
        let step = *step as i64;
        let per = (step / 60).max(1) as usize;
        let levels = minute_levels(p50, per);
        let since_from = *origin - from;
        // Made on a whole minute from `from`, in whole-minute steps (as stored forecasts are):
        // each record's minute and time without date arithmetic.
        let whole =
            since_from.subsec_nanos() == 0 && since_from.num_seconds() % 60 == 0 && step % 60 == 0;
        if whole && minute_start.is_empty() {
            minute_start = (0..minutes.len() as i64)
                .map(|i| from + Duration::minutes(i))
                .collect();
        }
        for (b, median) in p50.iter().enumerate() {
            for k in 0..per {
                let ahead = step * b as i64 + 60 * k as i64;
                let i = if whole {
                    since_from.num_minutes() + ahead / 60
                } else {
                    (since_from + Duration::seconds(ahead)).num_minutes()
                };
                let Some((i, actual)) = usize::try_from(i)
                    .ok()
                    .and_then(|i| Some((i, minutes.get(i)?)))
                    .filter(|(_, a)| a.is_finite())
                else {
                    continue;
                };
                minute_of.push(i as u32);
                scored.push(Scored {
                    at: if whole {
                        minute_start[i]
                    } else {
                        *origin + Duration::seconds(ahead)
                    },
                    horizon_secs: ahead,
                    median_rps: *median,
                    level_rps: levels[b * per + k],
                    actual_rps: actual / 60.0,
                    floor_rps: *floor,
                });
            }
        }
    }
    // By minute (a counting sort: a week is 10,080 minutes, and a fleet refitted every 15
    // minutes scores some 80,000), then by time and horizon within each minute; both stable.
    let mut next = vec![0usize; minutes.len() + 1];
    for i in &minute_of {
        next[*i as usize + 1] += 1;
    }
    for i in 0..minutes.len() {
        next[i + 1] += next[i];
    }
    let starts = next.clone();
    let mut order = vec![0u32; scored.len()];
    for (j, i) in minute_of.iter().enumerate() {
        order[next[*i as usize]] = j as u32;
        next[*i as usize] += 1;
    }
    let mut out: Vec<Scored> = order.iter().map(|j| scored[*j as usize]).collect();
    for w in starts.windows(2) {
        if w[1] - w[0] > 1 {
            out[w[0]..w[1]].sort_by_key(|r| (r.at, r.horizon_secs));
        }
    }
    out
}

/// Refits the fleet's forecast at `now` and stores it with its calibration and levels.
#[allow(clippy::too_many_arguments)]
pub async fn refit(
    pool: &PgPool,
    fleet_id: i64,
    tz: Tz,
    cfg: &PlannerConfig,
    defaults: &PlannerDefaults,
    now: DateTime<Utc>,
    replica: &str,
) -> Result<RefitReport, sqlx::Error> {
    let slo = &cfg.slo;
    let capacity = &cfg.capacity;
    let lead_secs = cfg.boot_lead_secs;
    let step = defaults.step.0;
    let origin = now.duration_trunc(Duration::seconds(step)).unwrap_or(now);
    let from = origin - Duration::seconds(defaults.history.0);
    // The calibration and levels of the newest live forecast are kept for the refits within the
    // hour after they were made, for the same sizing settings: those refits fit a new median
    // only (the simulator keeps them alike, `defaults::RECALIBRATE_SECS`). A week of errors moves little in 15 minutes,
    // and the calibration, the sizer and their reads are most of a refit.
    let sized_for = sizing_key(cfg, tz);
    let mut last = stored_forecasts::last_live(pool, fleet_id).await?;
    // The levels planned on until now start the next sizing's search (read when it runs).
    let last_levels = last.calibration.as_ref().and_then(|k| k.levels.clone());
    let kept = kept_calibration(last.calibration.take(), &sized_for, now);
    let calib_from = origin - Duration::seconds(CALIBRATION_SECS);
    // The history, and (to recalibrate) the calibration window's minutes to now, the realised
    // record's too: one read when the history spans the calibration window, as by default.
    let (history, to_now) = match kept {
        Some(_) => (
            series(pool, fleet_id, capacity, Measure::Work, step, from, origin).await?,
            Vec::new(),
        ),
        None if from <= calib_from => {
            let rows = prewarm_store::samples::raw_buckets_overlapping(
                pool, fleet_id, capacity, from, now,
            )
            .await?;
            (
                bucketed(&rows, Measure::Work, step, from, origin),
                bucketed(&rows, Measure::Work, 60, calib_from, now),
            )
        }
        None => (
            series(pool, fleet_id, capacity, Measure::Work, step, from, origin).await?,
            minute_series(pool, fleet_id, capacity, Measure::Work, calib_from, now).await?,
        ),
    };
    let mut report = RefitReport {
        forecast_id: None,
        calibrated: false,
        errors_used: 0,
        bootstrapped: 0,
        recent_error: None,
        fit_secs: 0.0,
        sizing: None,
        skipped: None,
        realised_timed_out_share: (None, None),
        calibrated_at: None,
    };
    let known_from = history.iter().position(|v| v.is_finite());
    let span = known_from.map_or(0, |i| (history.len() - i) as i64 * step);
    if span < defaults.min_history.0 {
        let newest = prewarm_store::samples::newest(pool, fleet_id).await?;
        report.skipped = Some(match newest {
            // History there is, but none of it recent: say so, and what to do.
            Some(t) if t < from => format!(
                "the newest sample is from {} ({} days before now), and a forecast reads only the last {}; push current samples, or import an old trace with `prewarm import --shift-to-now` to replay it as recent",
                t.format("%Y-%m-%d %H:%M UTC"),
                (now - t).num_days(),
                prewarm_core::format_duration(defaults.history.0)
            ),
            _ => format!(
                "{} of recent history, {} needed; the reactive rules plan meanwhile",
                prewarm_core::format_duration(span),
                prewarm_core::format_duration(defaults.min_history.0)
            ),
        });
        return Ok(report);
    }
    let horizon = (HORIZON_SECS / step) as usize;
    let index = |t: DateTime<Utc>| -> Option<usize> {
        let off = (t - from).num_seconds();
        (off >= 0 && off % step == 0)
            .then_some((off / step) as usize)
            .filter(|i| *i < history.len())
    };

    let calibration_minutes = (origin - calib_from).num_minutes() as usize;
    let minutes = &to_now[..to_now.len().min(calibration_minutes)];
    let (mut stored, mut records, mut calibrated) = match &kept {
        Some(k) => (
            Vec::new(),
            Vec::new(),
            prewarm_planner::refit::Calibrated {
                calibration: k.calibration.clone(),
            },
        ),
        None => {
            let stored = load_stored(pool, fleet_id, calib_from, origin).await?;
            score_and_calibrate(stored, minutes.to_vec(), calib_from, tz).await
        }
    };
    if !calibrated.is_calibrated(MIN_ERRORS) {
        // Bootstrap once: backtest fits at past origins on the data before each.
        let has_backtest = stored_forecasts::has_backtest(pool, fleet_id, calib_from).await?;
        if !has_backtest {
            let newest = origin
                .duration_trunc(Duration::seconds(BOOTSTRAP_EVERY_SECS))
                .unwrap_or(origin);
            let count = CALIBRATION_SECS / BOOTSTRAP_EVERY_SECS;
            // (origin, first and end of its training window in the history)
            let mut origins = Vec::new();
            for k in (0..count).rev() {
                let o = newest - Duration::seconds(BOOTSTRAP_EVERY_SECS * k);
                if o >= origin {
                    continue;
                }
                let Some(end) = index(o) else { continue };
                // At most the bootstrap's training window before the origin.
                let first = end.saturating_sub(
                    (prewarm_planner::defaults::BOOTSTRAP_TRAIN_SECS / step) as usize,
                );
                let known =
                    history[first..end].iter().filter(|v| v.is_finite()).count() as i64 * step;
                if known >= prewarm_planner::defaults::MIN_FIT_HISTORY_SECS {
                    origins.push((o, first, end));
                }
            }
            let fitted = bootstrap_fits(history.clone(), from, step, tz, horizon, origins).await;
            let mut rows = Vec::new();
            for (o, fitted) in fitted {
                match fitted {
                    Ok(f) => rows.push((o, f)),
                    Err(e) => tracing::debug!(fleet_id, error = %e, "a bootstrap fit failed"),
                }
            }
            let fits: Vec<stored_forecasts::NewBacktest> = rows
                .iter()
                .map(|(o, f)| stored_forecasts::NewBacktest {
                    origin: *o,
                    model: &f.model,
                    p50_rps: &f.p50_rps,
                    error_floor_rps: f.floor_rps,
                })
                .collect();
            stored_forecasts::insert_backtests(
                pool,
                fleet_id,
                now,
                step as i32,
                slo.max_timeout_share,
                replica,
                &fits,
            )
            .await?;
            report.bootstrapped = rows.len();
            stored.extend(
                rows.into_iter()
                    .map(|(o, f)| (o, step as i32, f.p50_rps, f.floor_rps)),
            );
            (stored, records, calibrated) =
                score_and_calibrate(stored, minutes.to_vec(), calib_from, tz).await;
        }
    }
    report.recent_error = match &kept {
        Some(k) => k.recent_error,
        None => recent_error(&stored, &history, index, step, defaults, origin),
    };

    // The live fit's trend reuses the ETS candidate a search chose within the last six hours,
    // once the fleet has a week of history.
    let reuse = last
        .trend_spec
        .filter(|(_, at)| {
            prewarm_planner::refit::reuses_trend_spec((now - *at).num_seconds(), span)
        })
        .and_then(|(spec, at)| Some((serde_json::from_value::<TrendSpec>(spec).ok()?, at)));
    let settings = ModelSettings {
        trend_spec: reuse.map(|(spec, _)| spec),
        ..ModelSettings::default()
    };
    let fitted = fit_blocking(history.clone(), from, step, tz, horizon, settings).await;
    let f = match fitted {
        Ok(f) => f,
        Err(e) => {
            report.skipped = Some(format!(
                "the model could not be fitted on this history: {e}"
            ));
            return Ok(report);
        }
    };
    report.fit_secs = f.fit_secs;
    report.errors_used = calibrated.errors_used();
    report.calibrated = calibrated.is_calibrated(MIN_ERRORS);
    let sizing = if report.calibrated && kept.is_none() {
        // The fleet's record, then the replay and the sizing on a core (`Replay::size` reads the
        // record only once the replay holds a day).
        let (realised_week, realised_day) =
            realised(pool, fleet_id, now, capacity, slo, (calib_from, &to_now)).await?;
        let predicted = last.predicted_timed_out_share;
        let last_levels: Option<LevelPlan> =
            last_levels.and_then(|l| serde_json::from_value(l).ok());
        let cfg = cfg.clone();
        let sizing;
        (calibrated, sizing) = on_a_core_or_panic(move || {
            let sizing = calibrated.replay(&records, lead_secs).size(
                &cfg,
                realised_week,
                realised_day,
                predicted,
                Some(tz),
                last_levels.as_ref(),
            );
            (calibrated, sizing)
        })
        .await;
        if sizing.is_some() {
            report.realised_timed_out_share = (realised_day, realised_week);
        }
        sizing
    } else {
        None
    };
    report.sizing = sizing.clone();
    let calibration = &calibrated.calibration;
    // The levels planned on, and the timed-out share their replay predicted: the sizer's, or
    // the kept ones.
    let (level_plan, predicted_share, calibrated_at) = match &kept {
        Some(k) => (k.levels, last.predicted_timed_out_share, k.at),
        None => (
            sizing.as_ref().map(|s| s.levels),
            sizing.as_ref().map(|s| s.timed_out_share),
            now,
        ),
    };
    report.calibrated_at = report.calibrated.then_some(calibrated_at);
    let planned = report
        .calibrated
        .then(|| planned_quantile(&f, origin, step, calibration, level_plan.as_ref(), tz));
    // A calibration made now is stored once; the refits that keep it refer to it.
    let calibration_stored = match &kept {
        _ if !report.calibrated => None,
        Some(k) => Some(stored_forecasts::NewCalibration::Kept(k.id)),
        None => serde_json::to_value(calibration)
            .ok()
            .map(stored_forecasts::NewCalibration::Made),
    };
    let levels_json = level_plan.and_then(|l| serde_json::to_value(l).ok());
    let id = stored_forecasts::insert_live(
        pool,
        &stored_forecasts::NewLive {
            fleet_id,
            made_at: now,
            origin,
            step_secs: step as i32,
            model: &f.model,
            p50_rps: &f.p50_rps,
            upper_rps: planned.as_deref(),
            quantile: slo.max_timeout_share,
            error_floor_rps: f.floor_rps,
            errors_used: report.errors_used as i32,
            recent_error: report.recent_error,
            replica,
            calibration: calibration_stored,
            levels: levels_json,
            predicted_timed_out_share: predicted_share,
            trend_spec: reuse
                .or_else(|| f.trend_spec.map(|spec| (spec, now)))
                .and_then(|(spec, at)| Some((serde_json::to_value(spec).ok()?, at))),
            calibrated: report
                .calibrated
                .then_some((calibrated_at, sized_for.as_str())),
        },
    )
    .await?;
    // A calibration is read with the live forecasts of the last LIVE_MAX_AGE_SECS only, each
    // made within RECALIBRATE_SECS of it.
    stored_forecasts::prune(
        pool,
        fleet_id,
        calib_from - Duration::days(1),
        now - Duration::seconds(LIVE_MAX_AGE_SECS + RECALIBRATE_SECS),
    )
    .await?;
    report.forecast_id = Some(id);
    Ok(report)
}

/// The timed-out share the fleet realised over its last week ([`slo::REALISED_WINDOW_SECS`]) and
/// over its last day, read once: its minute demand served by the GPUs its decisions found ready,
/// through the SLO's queue. Each is `None` before its window holds a day of decisions.
async fn realised(
    pool: &PgPool,
    fleet_id: i64,
    now: DateTime<Utc>,
    capacity: &prewarm_planner::Capacity,
    slo: &Slo,
    (read_from, read): (DateTime<Utc>, &[f64]),
) -> Result<(Option<f64>, Option<f64>), sqlx::Error> {
    let from = (now - Duration::seconds(slo::REALISED_WINDOW_SECS))
        .duration_trunc(Duration::minutes(1))
        .unwrap_or(now);
    let ready = prewarm_store::ledger::ready_when_acting(pool, fleet_id, from, now).await?;
    // The work per minute from `from` to now: taken from what the refit read, when it covers it.
    let skip = (from - read_from).num_minutes();
    let want = (now - from).num_seconds() / 60;
    let minutes = match usize::try_from(skip) {
        Ok(skip)
            if read_from + Duration::minutes(skip as i64) == from
                && skip as i64 + want == read.len() as i64 =>
        {
            read[skip..].to_vec()
        }
        _ => minute_series(pool, fleet_id, capacity, Measure::Work, from, now).await?,
    };
    let requests = if capacity.is_tokens() {
        minute_series(pool, fleet_id, capacity, Measure::Requests, from, now).await?
    } else {
        minutes.clone()
    };
    let mut by_minute = vec![None; minutes.len()];
    for (at, gpus) in ready {
        let i = (at - from).num_minutes();
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| by_minute.get_mut(i)) {
            *slot = Some(gpus.max(0) as u32);
        }
    }
    // The share over the minutes from `first` on, when a day of decisions is among them.
    let share = |first: usize| {
        let mut rows = (Vec::new(), Vec::new(), Vec::new());
        for ((w, q), g) in minutes[first..]
            .iter()
            .zip(&requests[first..])
            .zip(&by_minute[first..])
        {
            if let (Some(g), true) = (g, w.is_finite()) {
                rows.0.push(*w);
                rows.1.push(if q.is_finite() { *q } else { *w });
                rows.2.push(*g);
            }
        }
        let decided = by_minute[first..].iter().filter(|g| g.is_some()).count();
        (decided >= 23 * 60)
            .then(|| slo::realised_timed_out_share(&rows.0, &rows.1, &rows.2, capacity, slo))
    };
    Ok((share(0), share(minutes.len().saturating_sub(1_440))))
}

async fn load_stored(
    pool: &PgPool,
    fleet_id: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<StoredRow>, sqlx::Error> {
    stored_forecasts::medians(pool, fleet_id, from, to).await
}

/// Mean absolute error over mean actual, over the last day, at the boot lead's horizon: the
/// forecast error the operator sees in `/metrics`.
fn recent_error(
    stored: &[StoredRow],
    history: &[f64],
    index: impl Fn(DateTime<Utc>) -> Option<usize>,
    step: i64,
    defaults: &PlannerDefaults,
    origin: DateTime<Utc>,
) -> Option<f64> {
    let h = (defaults.boot_lead.0 / step) as usize;
    let (mut err, mut sum, mut n) = (0.0, 0.0, 0);
    for (o, _, p50, _) in stored.iter().filter(|r| r.0 >= origin - Duration::days(1)) {
        let t = *o + Duration::seconds(step * h as i64);
        if let (Some(p), Some(a)) = (
            p50.get(h),
            index(t).map(|i| history[i]).filter(|a| a.is_finite()),
        ) {
            err += (p - a / step as f64).abs();
            sum += a / step as f64;
            n += 1;
        }
    }
    (n > 0 && sum > 0.0).then(|| err / sum)
}

/// The latest calibrated live forecast, as a plan reads it.
#[derive(Debug, Clone)]
pub struct LiveForecast {
    /// The row's id.
    pub id: i64,
    /// The demand distribution.
    pub distribution: DemandDistribution,
    /// The levels the SLO sizer chose (`None` until it had a day of scored minutes).
    pub levels: Option<LevelPlan>,
}

/// The latest calibrated live forecast made at or before `now` and no older than `max_age_secs`,
/// with its distribution rebuilt for every minute it covers, and the last hour of the forecast
/// before it in front (recent demand is compared with what was expected of it).
pub async fn latest(
    pool: &PgPool,
    fleet_id: i64,
    now: DateTime<Utc>,
    max_age_secs: i64,
) -> Result<Option<LiveForecast>, sqlx::Error> {
    type Row = stored_forecasts::LiveRow;
    let rows =
        stored_forecasts::latest_live(pool, fleet_id, now, now - Duration::seconds(max_age_secs))
            .await?;
    let read = |row: &Row| -> Option<DemandCalibration> {
        let (id, _, _, _, _, _, calibration, _) = row;
        match serde_json::from_value::<DemandCalibration>(calibration.clone()) {
            Ok(c) => Some(c),
            Err(_) => {
                tracing::warn!(
                    fleet_id,
                    forecast = id,
                    "a stored calibration does not read back; the next refit replaces it"
                );
                None
            }
        }
    };
    let rebuild = |row: &Row, calibration: &DemandCalibration| -> Option<DemandDistribution> {
        let (_, origin, step, p50, floor, _, _, _) = row;
        let per = (*step as usize / 60).max(1);
        let minutes: Vec<f64> = p50
            .iter()
            .flat_map(|m| std::iter::repeat_n(*m, per))
            .collect();
        calibration.distribution(*origin, *origin, &minutes, *floor)
    };
    let Some(newest) = rows.first() else {
        return Ok(None);
    };
    let Some(calibration) = read(newest) else {
        return Ok(None);
    };
    let Some(mut distribution) = rebuild(newest, &calibration) else {
        return Ok(None);
    };
    // The forecast before it, on its own calibration (read again only when it differs).
    let previous = rows.get(1).and_then(|row| {
        if row.5 == newest.5 {
            rebuild(row, &calibration)
        } else {
            rebuild(row, &read(row)?)
        }
    });
    if let Some(previous) = previous {
        distribution = distribution.after(&previous, prewarm_planner::NOWCAST_HISTORY_MINUTES);
    }
    Ok(Some(LiveForecast {
        id: newest.0,
        distribution,
        levels: newest
            .7
            .clone()
            .and_then(|l| serde_json::from_value(l).ok()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`score`] as it was first written: every minute of every forecast, then a stable sort.
    fn score_by_sorting(rows: &[StoredRow], minutes: &[f64], from: DateTime<Utc>) -> Vec<Scored> {
        let mut out = Vec::new();
        for (origin, step, p50, floor) in rows {
            let step = *step as i64;
            let per = (step / 60).max(1) as usize;
            let levels = minute_levels(p50, per);
            for (b, median) in p50.iter().enumerate() {
                for k in 0..per {
                    let at = *origin + Duration::seconds(step * b as i64 + 60 * k as i64);
                    let i = (at - from).num_minutes();
                    let Some(actual) = usize::try_from(i)
                        .ok()
                        .and_then(|i| minutes.get(i))
                        .filter(|a| a.is_finite())
                    else {
                        continue;
                    };
                    out.push(Scored {
                        at,
                        horizon_secs: (at - *origin).num_seconds(),
                        median_rps: *median,
                        level_rps: levels[b * per + k],
                        actual_rps: actual / 60.0,
                        floor_rps: *floor,
                    });
                }
            }
        }
        out.sort_by_key(|r| (r.at, r.horizon_secs));
        out
    }

    #[test]
    fn scoring_orders_by_minute_and_horizon_as_a_sort_does() {
        let from: DateTime<Utc> = "2026-03-02T00:00:00Z".parse().unwrap();
        // A day of minutes, some unknown.
        let minutes: Vec<f64> = (0..1_440)
            .map(|i| {
                if i % 97 == 5 {
                    f64::NAN
                } else {
                    (i % 13) as f64
                }
            })
            .collect();
        let row = |offset_secs: i64, step: i32, len: usize, base: f64| -> StoredRow {
            (
                from + Duration::seconds(offset_secs),
                step,
                (0..len).map(|b| base + b as f64).collect(),
                0.5,
            )
        };
        let rows = vec![
            // Before the window (partly scored), on it, a minute step, two with the same origin,
            // one off the minute (scored on its own seconds), and one running past the window's
            // end.
            row(-3_600, 300, 24, 1.0),
            row(0, 300, 24, 2.0),
            row(900, 60, 120, 3.0),
            row(3_600, 300, 24, 4.0),
            row(3_600, 300, 24, 5.0),
            row(5_430, 300, 24, 6.0),
            row(86_400 - 1_800, 300, 24, 7.0),
            // A step not of whole minutes.
            row(7_200, 90, 40, 8.0),
        ];
        let got = score(&rows, &minutes, from);
        let expected = score_by_sorting(&rows, &minutes, from);
        assert!(got.len() > 500, "{} scored", got.len());
        assert_eq!(got, expected);
    }
}
