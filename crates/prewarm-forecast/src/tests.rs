//! Tests of the whole forecasting path on known series.

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use prewarm_core::Trace;

use crate::{
    backtest, forecast, ForecastRequest, ModelKind, ModelSettings, OutlierSettings, Transform,
};

/// Deterministic noise in [-1, 1).
fn noise(i: usize) -> f64 {
    let x = (i as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17);
    (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// Requests per bucket with a sharp rush at 09:00 on the local wall clock of `tz`.
fn rush_at_nine(start: DateTime<Utc>, step_secs: i64, len: usize, tz: Tz) -> Vec<f64> {
    (0..len)
        .map(|i| {
            let t = (start + chrono::Duration::seconds(step_secs * i as i64)).with_timezone(&tz);
            let hour = t.hour() as f64 + t.minute() as f64 / 60.0;
            100.0 + 400.0 * (-(hour - 9.0).powi(2) / 0.5).exp() + 5.0 * noise(i)
        })
        .collect()
}

fn request(
    start: DateTime<Utc>,
    step_secs: i64,
    history: &[f64],
    tz: Option<Tz>,
    horizon: usize,
) -> ForecastRequest<'_> {
    ForecastRequest {
        start,
        step_secs,
        history,
        tz,
        horizon,
        model: ModelKind::Mstl,
        transform: Transform::None,
        outliers: Some(OutlierSettings::default()),
        settings: ModelSettings::default(),
    }
}

/// Forecasts one day after `history_end` and returns the UTC hour of the forecast peak, with and
/// without the time zone.
fn peak_hours(tz_name: &str, history_start: &str, days: usize) -> (u32, u32) {
    let tz: Tz = tz_name.parse().unwrap();
    let step = 900;
    let start: DateTime<Utc> = history_start.parse().unwrap();
    let history = rush_at_nine(start, step, days * 96, tz);
    let peak = |tz: Option<Tz>| {
        let f = forecast(&request(start, step, &history, tz, 96)).unwrap();
        let i = (0..96)
            .max_by(|a, b| f.point[*a].total_cmp(&f.point[*b]))
            .unwrap();
        (start + chrono::Duration::seconds(step * (history.len() + i) as i64)).hour()
    };
    (peak(Some(tz)), peak(None))
}

#[test]
fn new_york_spring_forward_keeps_the_rush_at_nine_local() {
    // History 2026-02-20 .. 2026-03-11 (New York moves to EDT on 2026-03-08): 9:00 EDT is 13:00Z.
    let (with_zone, without) = peak_hours("America/New_York", "2026-02-20T05:00:00Z", 19);
    assert_eq!(with_zone, 13);
    // Seasons on the UTC clock would still put it at 14:00Z, where it was for most of the history.
    assert_eq!(without, 14);
}

#[test]
fn berlin_fall_back_keeps_the_rush_at_nine_local() {
    // History 2026-10-08 .. 2026-10-27 (Berlin returns to CET on 2026-10-25): 9:00 CET is 08:00Z.
    let (with_zone, without) = peak_hours("Europe/Berlin", "2026-10-07T22:00:00Z", 19);
    assert_eq!(with_zone, 8);
    assert_eq!(without, 7);
}

#[test]
fn new_york_fall_back_with_the_change_inside_the_horizon() {
    // History ends on 2026-10-31 at 20:00 EDT; the horizon crosses the repeated 01:00 hour and
    // the next morning's rush must still land at 9:00 EST = 14:00Z.
    let tz: Tz = "America/New_York".parse().unwrap();
    let step = 900;
    let start: DateTime<Utc> = "2026-10-15T00:00:00Z".parse().unwrap();
    let len = 16 * 96 + 24 * 4;
    let history = rush_at_nine(start, step, len, tz);
    let f = forecast(&request(start, step, &history, Some(tz), 96)).unwrap();
    let i = (0..96)
        .max_by(|a, b| f.point[*a].total_cmp(&f.point[*b]))
        .unwrap();
    let peak = start + chrono::Duration::seconds(step * (len + i) as i64);
    assert_eq!(peak.to_rfc3339(), "2026-11-01T14:00:00+00:00");
}

#[test]
fn gaps_and_an_outage_are_handled_and_reported() {
    let tz: Tz = "UTC".parse().unwrap();
    let start: DateTime<Utc> = "2026-01-05T00:00:00Z".parse().unwrap();
    let mut history = rush_at_nine(start, 900, 10 * 96, tz);
    let truth = rush_at_nine(start, 900, 11 * 96, tz)[10 * 96..].to_vec();
    for v in &mut history[200..210] {
        *v = f64::NAN; // missing buckets
    }
    for v in &mut history[8 * 96 + 34..8 * 96 + 40] {
        *v = 0.0; // an outage during the rush
    }
    let f = forecast(&request(start, 900, &history, None, 96)).unwrap();
    assert_eq!(f.outliers.len(), 1, "{:?}", f.outliers);
    assert_eq!(f.outliers[0].mean_original, 0.0);
    let mae = f
        .point
        .iter()
        .zip(&truth)
        .map(|(a, b)| (a - b).abs())
        .sum::<f64>()
        / 96.0;
    assert!(mae < 15.0, "mae {mae}");
}

#[test]
fn a_log_transform_forecasts_on_the_original_scale() {
    let tz: Tz = "UTC".parse().unwrap();
    let start: DateTime<Utc> = "2026-01-05T00:00:00Z".parse().unwrap();
    let history = rush_at_nine(start, 900, 7 * 96, tz);
    let mut req = request(start, 900, &history, None, 96);
    req.transform = Transform::Log;
    let f = forecast(&req).unwrap();
    let peak = f.point.iter().cloned().fold(0.0, f64::max);
    assert!((400.0..600.0).contains(&peak), "peak {peak}");
}

#[test]
fn too_little_history_says_how_much_is_needed() {
    let start: DateTime<Utc> = "2026-01-05T00:00:00Z".parse().unwrap();
    let history = [5.0; 6];
    let e = forecast(&request(start, 300, &history, None, 12))
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least 12 points") && e.contains("1h"), "{e}");
    let mut req = request(start, 300, &history, None, 12);
    req.model = ModelKind::SnaiveWeek;
    let e = forecast(&req).unwrap_err().to_string();
    assert!(e.contains("2016 points") && e.contains("1w"), "{e}");
    let e = forecast(&request(start, 300, &[f64::NAN; 20], None, 12))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no observed values"), "{e}");
}

/// Traffic with a daily cycle, a weekday/weekend difference and noise that grows with the level.
fn seasonal_trace(days: usize) -> Trace {
    let step = 600;
    let per_day = 144;
    let values = (0..days * per_day)
        .map(|i| {
            let day = i / per_day;
            let phase = (i % per_day) as f64 / per_day as f64 * std::f64::consts::TAU;
            let weekend = if day % 7 >= 5 { 0.6 } else { 1.0 };
            let level = weekend * (300.0 + 200.0 * (phase - 1.2).sin());
            (level * (1.0 + 0.08 * noise(i))).round()
        })
        .collect();
    Trace::new("2026-01-05T00:00:00Z".parse().unwrap(), step, values)
}

#[test]
fn backtest_beats_the_baselines_and_the_band_holds_its_coverage() {
    let trace = seasonal_trace(21);
    let cfg = backtest::BacktestConfig {
        horizon: 6,
        train: 21 * 144,
        quantile: 0.9,
        models: vec![ModelKind::Mstl, ModelKind::SnaiveDay, ModelKind::SnaiveWeek],
        origins: backtest::origins_ending_at_last(trace.len(), 6, 6, 48),
        warmup: 24,
        warmup_every: 6,
        tz: None,
        transform: Transform::None,
        outliers: Some(OutlierSettings::default()),
        settings: ModelSettings::default(),
        reseason_secs: 0,
        reseason_weekly_secs: 0,
    };
    let mut fits = 0;
    let result = backtest::run(&trace, &cfg, &mut || fits += 1).unwrap();
    assert_eq!(fits, backtest::planned_fits(&cfg));
    let summary = |m: ModelKind| {
        let rows: Vec<_> = result.forecasts.iter().filter(|f| f.model == m).collect();
        let mase = rows.iter().map(|f| f.scores.mase).sum::<f64>() / rows.len() as f64;
        let covered: usize = rows.iter().map(|f| f.scores.covered).sum();
        let scored: usize = rows.iter().map(|f| f.scores.scored).sum();
        (rows.len(), mase, covered as f64 / scored as f64)
    };
    let (n, mstl, coverage) = summary(ModelKind::Mstl);
    assert_eq!(n, 48);
    let (_, day, _) = summary(ModelKind::SnaiveDay);
    let (_, week, _) = summary(ModelKind::SnaiveWeek);
    assert!(
        mstl < day && mstl < week,
        "mstl {mstl} day {day} week {week}"
    );
    assert!((0.8..=0.97).contains(&coverage), "coverage {coverage}");
}

#[test]
fn a_forecast_never_sees_data_after_its_origin() {
    let trace = seasonal_trace(8);
    let mut spoiled = trace.clone();
    let origin = 7 * 144;
    for v in &mut spoiled.requests[origin..] {
        *v = 1e6;
    }
    let cfg = backtest::BacktestConfig {
        horizon: 6,
        train: 8 * 144,
        quantile: 0.9,
        models: vec![ModelKind::Mstl],
        origins: vec![origin - 24, origin - 12, origin],
        warmup: 4,
        warmup_every: 6,
        tz: None,
        transform: Transform::None,
        outliers: Some(OutlierSettings::default()),
        settings: ModelSettings::default(),
        reseason_secs: 0,
        reseason_weekly_secs: 0,
    };
    let a = backtest::run(&trace, &cfg, &mut || {}).unwrap();
    let b = backtest::run(&spoiled, &cfg, &mut || {}).unwrap();
    for (x, y) in a.forecasts.iter().zip(&b.forecasts) {
        assert_eq!(x.point, y.point);
        assert_eq!(x.upper, y.upper);
    }
}

#[test]
fn a_fit_on_the_candidate_its_search_chose_forecasts_the_same() {
    // Three weeks of a daily cycle at 5-minute buckets, rising slowly, and the same with a flat
    // level: the trend's search chooses a candidate, and fitting that candidate alone (as refits
    // do for six hours) gives the same forecast.
    let start: DateTime<Utc> = "2026-03-02T00:00:00Z".parse().unwrap();
    for rise in [0.0, 0.02] {
        let history: Vec<f64> = (0..21 * 288)
            .map(|i| {
                let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
                100.0 + rise * i as f64 + 40.0 * (phase - 1.5).sin() + 4.0 * noise(i)
            })
            .collect();
        let searched = forecast(&request(start, 300, &history, None, 24)).unwrap();
        let spec = searched
            .trend_spec
            .expect("an MSTL fit says which candidate its trend chose");
        let mut again = request(start, 300, &history, None, 24);
        again.settings.trend_spec = Some(spec);
        let reused = forecast(&again).unwrap();
        assert_eq!(reused.trend_spec, Some(spec), "rise {rise}");
        for (a, b) in searched.point.iter().zip(&reused.point) {
            assert!((a - b).abs() <= 1e-9 * a.abs().max(1.0), "{a} against {b}");
        }
    }
    // Baselines fit no trend and say so.
    let mut naive = request(start, 300, &[1.0; 400], None, 4);
    naive.model = ModelKind::Naive;
    assert_eq!(forecast(&naive).unwrap().trend_spec, None);
}

/// A calibration is stored as JSON and a refit within the hour stores it again as read, so a
/// number read back from its JSON must be the same number to the bit (serde_json's
/// `float_roundtrip`; its default parser may be one unit in the last place off).
#[test]
fn numbers_read_back_from_json_are_the_same_to_the_bit() {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    for _ in 0..200_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
        let x = (unit - 0.5) * 10f64.powi((state % 13) as i32 - 8);
        let text = serde_json::to_string(&x).unwrap();
        let back: f64 = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back.to_bits(),
            x.to_bits(),
            "{x:e} read back from {text} as {back:e}"
        );
    }
}

/// Forecasts at hourly origins of one series, each on the two weeks before it, through one
/// [`Forecaster`](crate::Forecaster) reusing its seasons for `reseason_secs`, with the number of
/// decompositions it made.
fn hourly_origins(
    series: &[f64],
    start: DateTime<Utc>,
    tz: Tz,
    origins: std::ops::Range<usize>,
    reseason_secs: i64,
) -> (Vec<Vec<f64>>, usize) {
    hourly_origins_with(
        series,
        start,
        tz,
        origins,
        14,
        crate::Forecaster::new(reseason_secs),
    )
}

/// [`hourly_origins`] on `train_days` before each origin, through `forecaster`.
fn hourly_origins_with(
    series: &[f64],
    start: DateTime<Utc>,
    tz: Tz,
    origins: std::ops::Range<usize>,
    train_days: usize,
    mut forecaster: crate::Forecaster,
) -> (Vec<Vec<f64>>, usize) {
    let step = 300;
    let (hour, train) = (12, train_days * 288);
    let forecasts = origins
        .map(|k| {
            let end = k * hour;
            let from = end - train;
            let req = ForecastRequest {
                settings: ModelSettings::BOOTSTRAP,
                ..request(
                    start + chrono::Duration::seconds(step * from as i64),
                    step,
                    &series[from..end],
                    Some(tz),
                    24,
                )
            };
            forecaster.forecast(&req).unwrap().point
        })
        .collect();
    (forecasts, forecaster.decompositions())
}

/// Three weeks of 5-minute data with a daily rush, weekends at 0.6 of weekdays and a rise of
/// `rise` over the three weeks, on New York's clock across the spring change (8 March 2026).
fn three_weeks_in_new_york(rise: f64) -> (Tz, DateTime<Utc>, Vec<f64>) {
    let tz: Tz = "America/New_York".parse().unwrap();
    let start: DateTime<Utc> = "2026-02-20T05:00:00Z".parse().unwrap();
    let n = 21 * 288;
    let mut series = rush_at_nine(start, 300, n, tz);
    for (i, v) in series.iter_mut().enumerate() {
        let day = (start + chrono::Duration::seconds(300 * i as i64))
            .with_timezone(&tz)
            .weekday()
            .num_days_from_monday();
        *v *= if day >= 5 { 0.6 } else { 1.0 } * (1.0 + i as f64 / n as f64 * rise);
    }
    (tz, start, series)
}

/// The summed absolute difference of two runs of forecasts, and the second's summed level.
fn total_difference(runs: &[Vec<f64>], against: &[Vec<f64>]) -> (f64, f64) {
    let (mut diff, mut level) = (0.0, 0.0);
    for (r, f) in runs.iter().zip(against) {
        for (a, b) in r.iter().zip(f) {
            diff += (a - b).abs();
            level += b.abs();
        }
    }
    (diff, level)
}

#[test]
fn a_forecaster_reuses_its_seasons_for_a_while_and_sees_only_the_past() {
    // Three weeks with a slow rise of a fifth over them.
    let (tz, start, series) = three_weeks_in_new_york(0.2);
    let origins = 14 * 24..21 * 24;
    let (fresh, decomposed) = hourly_origins(&series, start, tz, origins.clone(), 0);
    assert_eq!(decomposed, origins.len());
    // With no reuse, every forecast is the one `forecast` makes.
    let (k, end) = (origins.start + 30, (origins.start + 30) * 12);
    let alone = forecast(&ForecastRequest {
        settings: ModelSettings::BOOTSTRAP,
        ..request(
            start + chrono::Duration::seconds(300 * (end - 14 * 288) as i64),
            300,
            &series[end - 14 * 288..end],
            Some(tz),
            24,
        )
    })
    .unwrap();
    assert_eq!(fresh[k - origins.start], alone.point);

    let (reused, decomposed) = hourly_origins(&series, start, tz, origins.clone(), 6 * 3_600);
    // A decomposition every six hours of the local clock, which the spring change moves on an
    // hour more once.
    let every_six = origins.len().div_ceil(6);
    assert!(
        (every_six..=every_six + 1).contains(&decomposed),
        "{decomposed} decompositions"
    );
    // An origin that decomposes its own history forecasts as alone; the others differ.
    let same = reused.iter().zip(&fresh).filter(|(r, f)| r == f).count();
    assert_eq!(same, decomposed);
    // The others are close to their own decomposition's forecasts: within 3% of the level.
    let (diff, level) = total_difference(&reused, &fresh);
    assert!(
        diff / level < 0.03,
        "mean difference {:.4} of the level",
        diff / level
    );
    assert!(diff > 0.0, "the reused fits fitted the trend alone");

    // What came after an origin does not move its forecast: the same origins on a series that
    // differs only after the last of them.
    let last = (origins.end - 1) * 12;
    let mut changed = series.clone();
    changed[last..].iter_mut().for_each(|v| *v *= 3.0);
    let (again, _) = hourly_origins(&changed, start, tz, origins, 6 * 3_600);
    assert_eq!(again, reused);
}

#[test]
fn a_weekly_decomposition_is_reused_for_its_own_span() {
    let (tz, start, series) = three_weeks_in_new_york(0.0);
    let origins = 14 * 24..21 * 24;
    let spans = || crate::Forecaster::new(6 * 3_600).weekly(24 * 3_600);
    // Two weeks of history fit the weekly season: a decomposition a day (one more for the
    // spring change's hour).
    let (reused, decomposed) =
        hourly_origins_with(&series, start, tz, origins.clone(), 14, spans());
    let days = origins.len().div_ceil(24);
    assert!(
        (days..=days + 1).contains(&decomposed),
        "{decomposed} decompositions with the weekly season"
    );
    let (fresh, every) = hourly_origins_with(
        &series,
        start,
        tz,
        origins.clone(),
        14,
        crate::Forecaster::new(0),
    );
    assert_eq!(every, origins.len());
    let (diff, level) = total_difference(&reused, &fresh);
    assert!(
        diff / level < 0.03,
        "mean difference {:.4} of the level",
        diff / level
    );
    // A week of history fits the daily season alone: its span stays six hours.
    let (_, decomposed) = hourly_origins_with(&series, start, tz, origins.clone(), 7, spans());
    let quarters = origins.len().div_ceil(6);
    assert!(
        (quarters..=quarters + 1).contains(&decomposed),
        "{decomposed} decompositions with the daily season alone"
    );
}

#[test]
fn a_forecaster_decomposes_anew_for_a_window_that_is_not_a_later_one() {
    let tz: Tz = "Europe/Berlin".parse().unwrap();
    let start: DateTime<Utc> = "2026-01-05T00:00:00Z".parse().unwrap();
    let series = rush_at_nine(start, 300, 21 * 288, tz);
    let mut forecaster = crate::Forecaster::new(6 * 3_600);
    let at = |end: usize| ForecastRequest {
        settings: ModelSettings::BOOTSTRAP,
        ..request(
            start + chrono::Duration::seconds(300 * (end - 7 * 288) as i64),
            300,
            &series[end - 7 * 288..end],
            Some(tz),
            24,
        )
    };
    let later = 15 * 288;
    forecaster.forecast(&at(later)).unwrap();
    // An hour later: reused.
    forecaster.forecast(&at(later + 12)).unwrap();
    assert_eq!(forecaster.decompositions(), 1);
    // An earlier window, then one further on than the reuse reaches: each decomposed anew, and
    // each the forecast `forecast` makes.
    for end in [later - 12, later + 7 * 12] {
        let f = forecaster.forecast(&at(end)).unwrap();
        assert_eq!(f.point, forecast(&at(end)).unwrap().point);
    }
    assert_eq!(forecaster.decompositions(), 3);
}
