//! Replay benchmark: 4 weeks of 1-minute traffic (40,320 steps) through the predictive policy,
//! with an MSTL refit every hour from history before `now` only.

#![allow(missing_docs)] // criterion_group! makes an undocumented public function

use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use prewarm_planner::PlannerConfig;
use prewarm_sim::{
    policies::{ForecastSettings, Predictive},
    simulate, BootTime, SimConfig,
};

/// Deterministic 1-minute traffic with daily and weekly cycles and noise.
fn trace(minutes: usize) -> Vec<f64> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..minutes)
        .map(|m| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let hour = (m % 1440) as f64 / 60.0;
            let weekend = if (m / 1440) % 7 >= 5 { 0.6 } else { 1.0 };
            weekend * (600.0 + 2400.0 * (-(hour - 14.0).powi(2) / 8.0).exp()) * (1.0 + 0.2 * u)
        })
        .collect()
}

fn replay(c: &mut Criterion) {
    let requests = trace(28 * 1440);
    let start: DateTime<Utc> = "2026-01-05T00:00:00Z".parse().expect("valid time");
    let sim = SimConfig {
        capacity: prewarm_planner::Capacity::requests(2.5),
        timeout_secs: 120,
        boot: BootTime::Fixed { secs: 600 },
        price_usd_per_gpu_hour: 3.0,
        score_from_step: 2 * 1440,
        standby: None,
    };
    let mut group = c.benchmark_group("replay_4w_1m");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(60));
    group.bench_function("predictive_hourly_refits", |b| {
        b.iter(|| {
            let mut policy = Predictive::new(
                PlannerConfig::new(2.5),
                ForecastSettings::default(),
                start,
                60,
                4,
            );
            simulate(start, 60, &requests, &mut policy, &sim)
        })
    });
    group.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
