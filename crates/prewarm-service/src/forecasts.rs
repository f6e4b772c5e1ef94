//! Refitting a fleet's forecast and calibrating its band on the fleet's own errors.
//!
//! Each refit fits MSTL (daily and weekly seasons on the fleet's wall clock) on up to
//! `planner.history` of 5-minute buckets, and stores the median. Every stored forecast is later
//! compared with what arrived: those errors, per horizon, give the calibrated upper quantile of the
//! next forecast (split conformal, [`prewarm_forecast::Calibrator`]). A fleet with history but no
//! stored forecasts (just imported, say) is bootstrapped with a short backtest: fits at past
//! origins on the data before each, stored as `backtest` rows, so its first live band is
//! calibrated too. Until a band is calibrated, the planner runs its reactive rules.

use chrono::{DateTime, Duration, DurationRound, Utc};
use chrono_tz::Tz;
use prewarm_forecast::{
    forecast, Calibrator, ForecastRequest, ModelKind, ModelSettings, OutlierSettings, Transform,
};
use prewarm_planner::Band;
use sqlx::PgPool;

use crate::config::PlannerDefaults;

/// Buckets each forecast covers: two hours, enough for missed refits plus lead and hold.
pub const HORIZON_SECS: i64 = 7_200;
/// Errors per horizon group before a band is trusted.
pub const MIN_ERRORS: usize = 30;
/// Forecasts whose errors calibrate the next one: the last three days.
pub const CALIBRATION_SECS: i64 = 3 * 86_400;
/// Bootstrap backtest origins: every two hours over the last two days.
const BOOTSTRAP_ORIGINS: i64 = 24;
const BOOTSTRAP_EVERY_SECS: i64 = 7_200;

/// What a refit did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RefitReport {
    pub forecast_id: Option<i64>,
    pub calibrated: bool,
    pub errors_used: usize,
    pub bootstrapped: usize,
    pub recent_error: Option<f64>,
    pub fit_secs: f64,
    /// Why no forecast was made, if none was.
    pub skipped: Option<String>,
}

/// A fleet's requests per `step` in `[from, to)`, NaN where nothing was received. Samples of any
/// width up to the step are summed into it; a bucket partly covered is scaled up from its part.
pub async fn series(
    pool: &PgPool,
    fleet_id: i64,
    step: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<f64>, sqlx::Error> {
    let rows: Vec<(DateTime<Utc>, i32, f64)> = sqlx::query_as(
        "SELECT bucket_start, bucket_secs, requests FROM samples
         WHERE fleet_id = $1 AND bucket_start >= $2 AND bucket_start < $3 AND bucket_secs <= $4
         ORDER BY bucket_start",
    )
    .bind(fleet_id)
    .bind(from)
    .bind(to)
    .bind(step as i32)
    .fetch_all(pool)
    .await?;
    let n = ((to - from).num_seconds() / step).max(0) as usize;
    let mut sums = vec![0.0; n];
    let mut covered = vec![0i64; n];
    for (start, secs, requests) in rows {
        let i = ((start - from).num_seconds() / step) as usize;
        if i < n {
            sums[i] += requests;
            covered[i] += secs as i64;
        }
    }
    Ok(sums
        .into_iter()
        .zip(covered)
        .map(|(s, c)| {
            if c == 0 {
                f64::NAN
            } else {
                s * step as f64 / c.min(step) as f64
            }
        })
        .collect())
}

type Fit = Option<(Vec<f64>, f64, String, f64)>;

/// [`fit`] on the blocking pool: a fit is tens of milliseconds of CPU that must not hold up the
/// runtime's workers (HTTP API, ticks).
async fn fit_blocking(
    history: Vec<f64>,
    start: DateTime<Utc>,
    step: i64,
    tz: Tz,
    horizon: usize,
) -> Fit {
    tokio::task::spawn_blocking(move || fit(&history, start, step, tz, horizon))
        .await
        .ok()
        .flatten()
}

fn fit(history: &[f64], start: DateTime<Utc>, step: i64, tz: Tz, horizon: usize) -> Fit {
    let first = history.iter().position(|v| v.is_finite())?;
    let f = forecast(&ForecastRequest {
        start: start + Duration::seconds(step * first as i64),
        step_secs: step,
        history: &history[first..],
        tz: Some(tz),
        horizon,
        model: ModelKind::Mstl,
        transform: Transform::None,
        outliers: Some(OutlierSettings::default()),
        settings: ModelSettings::default(),
    })
    .ok()?;
    let per_sec = step as f64;
    Some((
        f.point.iter().map(|p| p.max(0.0) / per_sec).collect(),
        f.error_floor / per_sec,
        format!("{:?}", f.fitted),
        f.fit_secs,
    ))
}

type StoredRow = (DateTime<Utc>, i32, Vec<f64>, f64);

/// Refits the fleet's forecast at `now` and stores it.
pub async fn refit(
    pool: &PgPool,
    fleet_id: i64,
    tz: Tz,
    quantile: f64,
    defaults: &PlannerDefaults,
    now: DateTime<Utc>,
    replica: &str,
) -> Result<RefitReport, sqlx::Error> {
    let step = defaults.step.0;
    let origin = now.duration_trunc(Duration::seconds(step)).unwrap_or(now);
    let from = origin - Duration::seconds(defaults.history.0);
    let history = series(pool, fleet_id, step, from, origin).await?;
    let mut report = RefitReport {
        forecast_id: None,
        calibrated: false,
        errors_used: 0,
        bootstrapped: 0,
        recent_error: None,
        fit_secs: 0.0,
        skipped: None,
    };
    let known_from = history.iter().position(|v| v.is_finite());
    let span = known_from.map_or(0, |i| (history.len() - i) as i64 * step);
    if span < defaults.min_history.0 {
        let newest: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT max(bucket_start) FROM samples WHERE fleet_id = $1")
                .bind(fleet_id)
                .fetch_one(pool)
                .await?;
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

    let calib_from = origin - Duration::seconds(CALIBRATION_SECS);
    let mut stored: Vec<StoredRow> = load_stored(pool, fleet_id, calib_from, origin).await?;
    let mut calibrator = Calibrator::new(quantile, horizon, 5_000);
    let observe_all = |cal: &mut Calibrator, rows: &[StoredRow]| {
        for (o, row_step, p50, floor) in rows {
            if *row_step as i64 != step {
                continue;
            }
            for (h, p) in p50.iter().enumerate().take(horizon) {
                let t = *o + Duration::seconds(step * h as i64);
                if let Some(actual) = index(t).map(|i| history[i]).filter(|a| a.is_finite()) {
                    cal.observe(h, *p, actual / step as f64, *floor);
                }
            }
        }
    };
    observe_all(&mut calibrator, &stored);
    let ready = |cal: &Calibrator| (0..horizon).all(|h| cal.count(h) >= MIN_ERRORS);
    if !ready(&calibrator) {
        // Bootstrap once: backtest fits at past origins on the data before each.
        let has_backtest: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM forecasts WHERE fleet_id = $1 AND kind = 'backtest' AND origin >= $2)",
        )
        .bind(fleet_id)
        .bind(calib_from)
        .fetch_one(pool)
        .await?;
        if !has_backtest {
            let mut rows = Vec::new();
            for k in (1..=BOOTSTRAP_ORIGINS).rev() {
                let o = origin - Duration::seconds(BOOTSTRAP_EVERY_SECS * k);
                let Some(end) = index(o) else { continue };
                let known = history[..end].iter().filter(|v| v.is_finite()).count() as i64 * step;
                if known < defaults.min_history.0 {
                    continue;
                }
                if let Some((p50, floor, model, _)) =
                    fit_blocking(history[..end].to_vec(), from, step, tz, horizon).await
                {
                    rows.push((o, p50, floor, model));
                }
            }
            for (o, p50, floor, model) in &rows {
                sqlx::query(
                    "INSERT INTO forecasts (fleet_id, made_at, origin, step_secs, kind, model, p50_rps,
                     quantile, error_floor_rps, replica) VALUES ($1, $2, $3, $4, 'backtest', $5, $6, $7, $8, $9)",
                )
                .bind(fleet_id)
                .bind(now)
                .bind(o)
                .bind(step as i32)
                .bind(model)
                .bind(p50)
                .bind(quantile)
                .bind(floor)
                .bind(replica)
                .execute(pool)
                .await?;
            }
            report.bootstrapped = rows.len();
            let new: Vec<StoredRow> = rows
                .into_iter()
                .map(|(o, p50, floor, _)| (o, step as i32, p50, floor))
                .collect();
            observe_all(&mut calibrator, &new);
            stored.extend(new);
        }
    }
    report.recent_error = recent_error(&stored, &history, index, step, defaults, origin);

    let Some((p50, floor, model, fit_secs)) =
        fit_blocking(history.clone(), from, step, tz, horizon).await
    else {
        report.skipped = Some("the model could not be fitted on this history".into());
        return Ok(report);
    };
    report.fit_secs = fit_secs;
    let calibrated = ready(&calibrator);
    let upper = calibrated.then(|| calibrator.upper_many(&p50, floor));
    report.calibrated = calibrated;
    report.errors_used = (0..horizon).map(|h| calibrator.count(h)).min().unwrap_or(0);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO forecasts (fleet_id, made_at, origin, step_secs, kind, model, p50_rps, upper_rps,
         quantile, error_floor_rps, errors_used, recent_error, replica)
         VALUES ($1, $2, $3, $4, 'live', $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
    )
    .bind(fleet_id)
    .bind(now)
    .bind(origin)
    .bind(step as i32)
    .bind(&model)
    .bind(&p50)
    .bind(&upper)
    .bind(quantile)
    .bind(floor)
    .bind(report.errors_used as i32)
    .bind(report.recent_error)
    .bind(replica)
    .fetch_one(pool)
    .await?;
    sqlx::query("DELETE FROM forecasts WHERE fleet_id = $1 AND origin < $2")
        .bind(fleet_id)
        .bind(calib_from - Duration::days(1))
        .execute(pool)
        .await?;
    report.forecast_id = Some(id);
    Ok(report)
}

async fn load_stored(
    pool: &PgPool,
    fleet_id: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<StoredRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT origin, step_secs, p50_rps, error_floor_rps FROM forecasts
         WHERE fleet_id = $1 AND origin >= $2 AND origin < $3 ORDER BY origin",
    )
    .bind(fleet_id)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
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

/// The latest calibrated live forecast made at or before `now` and no older than `max_age_secs`,
/// as a band, with its id.
pub async fn latest_band(
    pool: &PgPool,
    fleet_id: i64,
    now: DateTime<Utc>,
    max_age_secs: i64,
) -> Result<Option<(i64, Band)>, sqlx::Error> {
    let row: Option<(i64, DateTime<Utc>, i32, Vec<f64>, Vec<f64>)> = sqlx::query_as(
        "SELECT id, origin, step_secs, p50_rps, upper_rps FROM forecasts
         WHERE fleet_id = $1 AND kind = 'live' AND upper_rps IS NOT NULL
           AND made_at <= $2 AND made_at > $3
         ORDER BY made_at DESC, id DESC LIMIT 1",
    )
    .bind(fleet_id)
    .bind(now)
    .bind(now - Duration::seconds(max_age_secs))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(id, start, step, p50, upper)| {
        (
            id,
            Band {
                start,
                step_secs: step as i64,
                p50_rps: p50,
                upper_rps: upper,
            },
        )
    }))
}
