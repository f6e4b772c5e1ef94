//! Fit-time benchmarks of MSTL with an ETS trend.
//!
//! `fit_mstl_4w_5m`: one fit of 4 weeks of 5-minute data (8,064 points, periods 288 and 2016),
//! with the trend's ETS fitted on at most 1,000 block means (the default) and on the full grid.
//! `bootstrap_fit_1w_5m`: one fit of a week of 5-minute data with the settings that bootstrap a
//! new fleet's calibration (`ModelSettings::BOOTSTRAP`: the trend on the last day, fitted on a
//! grid), and the same with the trend's ETS instead (one damped candidate, as they were before).
//! `refit_1000_series`: 1,000 such series refitted on all cores, timed once per sample.

#![allow(missing_docs)] // criterion_group! makes an undocumented public function

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use prewarm_forecast::{
    forecast, ForecastRequest, ModelKind, ModelSettings, OutlierSettings, Transform,
};

/// Deterministic traffic: daily and weekly cycles, a slow trend and noise; `seed` varies it.
fn series(seed: u64, len: usize) -> Vec<f64> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let day = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
            let weekend = if (i / 288) % 7 >= 5 { 0.6 } else { 1.0 };
            let level = 200.0 + 0.01 * i as f64 + (seed % 50) as f64;
            (weekend * level * (1.0 + 0.5 * (day - 1.5).sin()) * (1.0 + 0.1 * u)).max(0.0)
        })
        .collect()
}

fn request(history: &[f64], trend_max_points: usize) -> ForecastRequest<'_> {
    with_settings(
        history,
        ModelSettings {
            trend_max_points,
            ..ModelSettings::default()
        },
    )
}

fn with_settings(history: &[f64], settings: ModelSettings) -> ForecastRequest<'_> {
    let start: DateTime<Utc> = "2026-01-05T00:00:00Z".parse().expect("valid time");
    ForecastRequest {
        start,
        step_secs: 300,
        history,
        tz: None,
        horizon: 12,
        model: ModelKind::Mstl,
        transform: Transform::None,
        outliers: Some(OutlierSettings::default()),
        settings,
    }
}

fn fit_one(c: &mut Criterion) {
    let history = series(1, 8_064);
    let mut group = c.benchmark_group("fit_mstl_4w_5m");
    group.sample_size(20);
    group.bench_function("trend_on_1000_blocks", |b| {
        b.iter(|| forecast(&request(&history, 1_000)).expect("fit"))
    });
    group.bench_function("trend_on_full_grid", |b| {
        b.iter(|| forecast(&request(&history, 0)).expect("fit"))
    });
    group.finish();
}

fn bootstrap_fit(c: &mut Criterion) {
    let history = series(2, 2_016);
    let mut group = c.benchmark_group("bootstrap_fit_1w_5m");
    group.sample_size(50);
    group.bench_function("trend_on_a_grid", |b| {
        b.iter(|| forecast(&with_settings(&history, ModelSettings::BOOTSTRAP)).expect("fit"))
    });
    let ets = ModelSettings {
        trend_grid: false,
        ..ModelSettings::BOOTSTRAP
    };
    group.bench_function("trend_by_ets", |b| {
        b.iter(|| forecast(&with_settings(&history, ets)).expect("fit"))
    });
    group.finish();
}

fn refit_fleet(c: &mut Criterion) {
    let fleet: Vec<Vec<f64>> = (0..1_000).map(|s| series(s, 8_064)).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut group = c.benchmark_group("refit_1000_series");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(60));
    group.bench_function(format!("{threads}_threads"), |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                std::thread::scope(|scope| {
                    for chunk in fleet.chunks(fleet.len().div_ceil(threads)) {
                        scope.spawn(move || {
                            for history in chunk {
                                forecast(&request(history, 1_000)).expect("fit");
                            }
                        });
                    }
                });
            }
            started.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, fit_one, bootstrap_fit, refit_fleet);
criterion_main!(benches);
