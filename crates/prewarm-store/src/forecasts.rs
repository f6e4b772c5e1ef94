//! Stored forecasts (`forecasts`): the live ones a plan reads, with their calibration and the
//! levels the SLO sizer chose, and the backtest fits that bootstrap a new fleet's calibration.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// A stored forecast's median: (origin, step seconds, median per bucket in rps, error floor in
/// rps).
pub type StoredMedian = (DateTime<Utc>, i32, Vec<f64>, f64);

/// A live forecast as a plan reads it: (id, origin, step seconds, median per bucket in rps, error
/// floor in rps, the calibration's id, the calibration, levels).
pub type LiveRow = (
    i64,
    DateTime<Utc>,
    i32,
    Vec<f64>,
    f64,
    i64,
    serde_json::Value,
    Option<serde_json::Value>,
);

/// A fleet's stored live forecast, as the operator API shows it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct ForecastRow {
    /// The forecast's id.
    pub id: i64,
    /// When it was made.
    pub made_at: DateTime<Utc>,
    /// When it starts.
    pub origin: DateTime<Utc>,
    /// Bucket width, seconds.
    pub step_secs: i32,
    /// The model as fitted.
    pub model: String,
    /// Median per bucket, requests per second.
    pub p50_rps: Vec<f64>,
    /// The quantile planned on per bucket, requests per second (once calibrated).
    pub upper_rps: Option<Vec<f64>>,
    /// The fleet's SLO when it was made.
    pub quantile: f64,
    /// Scored minutes the calibration used.
    pub errors_used: i32,
    /// Recent forecast error relative to demand.
    pub recent_error: Option<f64>,
    /// The replica that made it.
    pub replica: String,
    /// The levels the SLO sizer chose (a `LevelPlan`), when it had chosen.
    #[serde(skip)]
    pub levels: Option<serde_json::Value>,
}

/// A live forecast to store.
#[derive(Debug, Clone)]
pub struct NewLive<'a> {
    /// The fleet.
    pub fleet_id: i64,
    /// When it was made.
    pub made_at: DateTime<Utc>,
    /// When it starts.
    pub origin: DateTime<Utc>,
    /// Bucket width, seconds.
    pub step_secs: i32,
    /// The model as fitted.
    pub model: &'a str,
    /// Median per bucket, requests per second.
    pub p50_rps: &'a [f64],
    /// The quantile planned on per bucket (once calibrated).
    pub upper_rps: Option<&'a [f64]>,
    /// The fleet's SLO.
    pub quantile: f64,
    /// Error floor, requests per second.
    pub error_floor_rps: f64,
    /// Scored minutes the calibration used.
    pub errors_used: i32,
    /// Recent forecast error relative to demand.
    pub recent_error: Option<f64>,
    /// The replica that made it.
    pub replica: &'a str,
    /// The calibration planned on: made by this refit, or kept from an earlier one.
    pub calibration: Option<NewCalibration>,
    /// The levels the SLO sizer chose, as JSON.
    pub levels: Option<serde_json::Value>,
    /// The share of requests the sizer's replay predicts will time out.
    pub predicted_timed_out_share: Option<f64>,
    /// The ETS candidate the fit's trend used, as JSON, and when a search chose it.
    pub trend_spec: Option<(serde_json::Value, DateTime<Utc>)>,
    /// When the calibration and the levels were made (a refit may keep an earlier one's), and
    /// the sizing settings they were made for.
    pub calibrated: Option<(DateTime<Utc>, &'a str)>,
}

/// The calibration a live forecast plans on.
#[derive(Debug, Clone, PartialEq)]
pub enum NewCalibration {
    /// Made by this refit, as JSON: stored once, in `calibrations`.
    Made(serde_json::Value),
    /// Kept from an earlier forecast: the stored calibration's id.
    Kept(i64),
}

/// Stores a live forecast; returns its id. A calibration made with it is stored in the same
/// statement.
pub async fn insert_live(pool: &PgPool, f: &NewLive<'_>) -> Result<i64, sqlx::Error> {
    let (made, kept) = match &f.calibration {
        Some(NewCalibration::Made(json)) => (Some(json), None),
        Some(NewCalibration::Kept(id)) => (None, Some(*id)),
        None => (None, None),
    };
    sqlx::query_scalar(
        "WITH made AS (INSERT INTO calibrations (fleet_id, made_at, calibration)
                       SELECT $1, COALESCE($18, $2), $13 WHERE $13::jsonb IS NOT NULL
                       RETURNING id)
         INSERT INTO forecasts (fleet_id, made_at, origin, step_secs, kind, model, p50_rps, upper_rps,
         quantile, error_floor_rps, errors_used, recent_error, replica, calibration_id, levels,
         predicted_timed_out_share, trend_spec, trend_chosen_at, calibrated_at, sized_for)
         VALUES ($1, $2, $3, $4, 'live', $5, $6, $7, $8, $9, $10, $11, $12,
                 COALESCE((SELECT id FROM made), $20), $14, $15, $16, $17, $18, $19) RETURNING id",
    )
    .bind(f.fleet_id)
    .bind(f.made_at)
    .bind(f.origin)
    .bind(f.step_secs)
    .bind(f.model)
    .bind(f.p50_rps)
    .bind(f.upper_rps)
    .bind(f.quantile)
    .bind(f.error_floor_rps)
    .bind(f.errors_used)
    .bind(f.recent_error)
    .bind(f.replica)
    .bind(made)
    .bind(&f.levels)
    .bind(f.predicted_timed_out_share)
    .bind(f.trend_spec.as_ref().map(|(spec, _)| spec))
    .bind(f.trend_spec.as_ref().map(|(_, at)| *at))
    .bind(f.calibrated.map(|(at, _)| at))
    .bind(f.calibrated.map(|(_, key)| key))
    .bind(kept)
    .fetch_one(pool)
    .await
}

/// One backtest fit: made at `origin` on the history before it (to be scored only).
#[derive(Debug, Clone, Copy)]
pub struct NewBacktest<'a> {
    /// When the fit's forecast starts.
    pub origin: DateTime<Utc>,
    /// The model as fitted.
    pub model: &'a str,
    /// Median per bucket, requests per second.
    pub p50_rps: &'a [f64],
    /// Error floor, requests per second.
    pub error_floor_rps: f64,
}

/// Stores a fleet's backtest fits, all `step_secs` wide, made at `made_at` for an SLO of
/// `quantile`, in one statement: all of them or, on an error, none (a fleet whose bootstrap was
/// cut short is bootstrapped again, not calibrated on part of a week).
#[allow(clippy::too_many_arguments)] // the rows' shared columns
pub async fn insert_backtests(
    pool: &PgPool,
    fleet_id: i64,
    made_at: DateTime<Utc>,
    step_secs: i32,
    quantile: f64,
    replica: &str,
    fits: &[NewBacktest<'_>],
) -> Result<(), sqlx::Error> {
    if fits.is_empty() {
        return Ok(());
    }
    let mut q = sqlx::QueryBuilder::new(
        "INSERT INTO forecasts (fleet_id, made_at, origin, step_secs, kind, model, p50_rps,
         quantile, error_floor_rps, replica) ",
    );
    q.push_values(fits, |mut row, f| {
        row.push_bind(fleet_id)
            .push_bind(made_at)
            .push_bind(f.origin)
            .push_bind(step_secs)
            .push("'backtest'")
            .push_bind(f.model)
            .push_bind(f.p50_rps)
            .push_bind(quantile)
            .push_bind(f.error_floor_rps)
            .push_bind(replica);
    });
    q.build().execute(pool).await?;
    Ok(())
}

/// Whether backtest fits from `since` on are stored (the calibration was bootstrapped).
pub async fn has_backtest(
    pool: &PgPool,
    fleet_id: i64,
    since: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM forecasts WHERE fleet_id = $1 AND kind = 'backtest' AND origin >= $2)",
    )
    .bind(fleet_id)
    .bind(since)
    .fetch_one(pool)
    .await
}

/// What a refit carries over from the fleet's earlier live forecasts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LastLive {
    /// The share of requests the last sizing predicted would time out.
    pub predicted_timed_out_share: Option<f64>,
    /// The ETS candidate the last live fit's trend used, as JSON, and when a search chose it.
    pub trend_spec: Option<(serde_json::Value, DateTime<Utc>)>,
    /// The last live forecast's calibration and levels, when it was calibrated.
    pub calibration: Option<KeptCalibration>,
}

/// [`LastLive`] as read: the predicted share, the trend's candidate and when it was chosen, and
/// the newest forecast's calibration, when it was made, for which settings, its levels and its
/// recent error.
type LastLiveRow = (
    Option<f64>,
    Option<serde_json::Value>,
    Option<DateTime<Utc>>,
    Option<i64>,
    Option<serde_json::Value>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<serde_json::Value>,
    Option<f64>,
);

/// [`LastLive`] of a fleet, in one query.
pub async fn last_live(pool: &PgPool, fleet_id: i64) -> Result<LastLive, sqlx::Error> {
    let row: Option<LastLiveRow> = sqlx::query_as(
        "SELECT (SELECT predicted_timed_out_share FROM forecasts WHERE fleet_id = $1
                       AND kind = 'live' AND predicted_timed_out_share IS NOT NULL
                     ORDER BY made_at DESC, id DESC LIMIT 1),
                    t.trend_spec, t.trend_chosen_at, c.id, c.calibration, t.calibrated_at,
                    t.sized_for, t.levels, t.recent_error
             FROM (SELECT 1) one
             LEFT JOIN LATERAL (SELECT trend_spec, trend_chosen_at, calibration_id, calibrated_at,
                                       sized_for, levels, recent_error FROM forecasts
                                WHERE fleet_id = $1 AND kind = 'live'
                                ORDER BY made_at DESC, id DESC LIMIT 1) t ON true
             LEFT JOIN calibrations c ON c.id = t.calibration_id",
    )
    .bind(fleet_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map_or_else(
        LastLive::default,
        |(predicted, spec, at, id, calibration, calibrated_at, sized_for, levels, recent_error)| {
            LastLive {
                predicted_timed_out_share: predicted,
                trend_spec: spec.zip(at),
                calibration: match (id, calibration, calibrated_at, sized_for) {
                    (Some(id), Some(calibration), Some(calibrated_at), Some(sized_for)) => {
                        Some(KeptCalibration {
                            id,
                            calibrated_at,
                            sized_for,
                            calibration,
                            levels,
                            recent_error,
                        })
                    }
                    _ => None,
                },
            }
        },
    ))
}

/// The calibration and levels of a fleet's newest live forecast, to keep for the refits within
/// the hour after them ([`LastLive::calibration`]).
#[derive(Debug, Clone, PartialEq)]
pub struct KeptCalibration {
    /// The stored calibration's id (a refit that keeps it refers to it).
    pub id: i64,
    /// When they were made.
    pub calibrated_at: DateTime<Utc>,
    /// The sizing settings they were made for.
    pub sized_for: String,
    /// The calibration, as JSON.
    pub calibration: serde_json::Value,
    /// The levels the SLO sizer chose, as JSON (none before it had a day to replay).
    pub levels: Option<serde_json::Value>,
    /// Recent forecast error relative to demand, as then.
    pub recent_error: Option<f64>,
}

/// The medians of the forecasts (live and backtest) whose origin is in `[from, to)`, oldest first.
pub async fn medians(
    pool: &PgPool,
    fleet_id: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<StoredMedian>, sqlx::Error> {
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

/// Drops a fleet's forecasts whose origin is before `before`, and its calibrations made before
/// `calibrations_before` (a forecast that referred to one keeps its median, no longer
/// calibrated).
pub async fn prune(
    pool: &PgPool,
    fleet_id: i64,
    before: DateTime<Utc>,
    calibrations_before: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let forecasts = sqlx::query("DELETE FROM forecasts WHERE fleet_id = $1 AND origin < $2")
        .bind(fleet_id)
        .bind(before)
        .execute(pool)
        .await?
        .rows_affected();
    sqlx::query("DELETE FROM calibrations WHERE fleet_id = $1 AND made_at < $2")
        .bind(fleet_id)
        .bind(calibrations_before)
        .execute(pool)
        .await?;
    Ok(forecasts)
}

/// The two latest calibrated live forecasts made in `(made_after, made_by]`, newest first.
pub async fn latest_live(
    pool: &PgPool,
    fleet_id: i64,
    made_by: DateTime<Utc>,
    made_after: DateTime<Utc>,
) -> Result<Vec<LiveRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT f.id, f.origin, f.step_secs, f.p50_rps, f.error_floor_rps, c.id, c.calibration,
                f.levels
         FROM forecasts f JOIN calibrations c ON c.id = f.calibration_id
         WHERE f.fleet_id = $1 AND f.kind = 'live' AND f.made_at <= $2 AND f.made_at > $3
         ORDER BY f.made_at DESC, f.id DESC LIMIT 2",
    )
    .bind(fleet_id)
    .bind(made_by)
    .bind(made_after)
    .fetch_all(pool)
    .await
}

/// For every fleet of `fleet_ids` that has any, the ids of its two latest calibrated live
/// forecasts made in `(made_after, made_by]`, newest first: one query for many fleets, so that a
/// tick reads a forecast's rows only when a refit has replaced it.
pub async fn latest_live_ids(
    pool: &PgPool,
    fleet_ids: &[i64],
    made_by: DateTime<Utc>,
    made_after: DateTime<Utc>,
) -> Result<std::collections::HashMap<i64, Vec<i64>>, sqlx::Error> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT f.id, l.id FROM unnest($1::bigint[]) AS f (id)
         CROSS JOIN LATERAL (
           SELECT id, made_at FROM forecasts
           WHERE fleet_id = f.id AND kind = 'live' AND calibration_id IS NOT NULL
             AND made_at <= $2 AND made_at > $3
           ORDER BY made_at DESC, id DESC LIMIT 2) l
         ORDER BY f.id, l.made_at DESC, l.id DESC",
    )
    .bind(fleet_ids)
    .bind(made_by)
    .bind(made_after)
    .fetch_all(pool)
    .await?;
    let mut out: std::collections::HashMap<i64, Vec<i64>> = Default::default();
    for (fleet, id) in rows {
        out.entry(fleet).or_default().push(id);
    }
    Ok(out)
}

/// The fleet's latest live forecast as stored.
pub async fn latest_live_row(
    pool: &PgPool,
    fleet_id: i64,
) -> Result<Option<ForecastRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, made_at, origin, step_secs, model, p50_rps, upper_rps, quantile, errors_used,
                recent_error, replica, levels
         FROM forecasts WHERE fleet_id = $1 AND kind = 'live' ORDER BY made_at DESC, id DESC LIMIT 1",
    )
    .bind(fleet_id)
    .fetch_optional(pool)
    .await
}
