//! The simulator's accounting on hand-computed cases, and the policies on synthetic traffic.

use chrono::{DateTime, Utc};
use prewarm_planner::PlannerConfig;

use crate::{
    policies::{Clairvoyant, ForecastSettings, Hindsight, Predictive, Reactive, Static},
    simulate, simulate_from, BootTime, SimConfig,
};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn sim_cfg(boot_secs: i64, timeout_secs: i64) -> SimConfig {
    SimConfig {
        capacity: prewarm_planner::Capacity::requests(1.0),
        timeout_secs,
        boot: BootTime::Fixed { secs: boot_secs },
        price_usd_per_gpu_hour: 3.0,
        score_from_step: 0,
        standby: None,
    }
}

#[test]
fn simulator_accounting_matches_a_hand_computed_case() {
    // One GPU serving 1 rps = 60 requests a minute; 60, 150, 0, 0, 0 arrive.
    let start = t("2026-03-02T00:00:00Z");
    let (rows, s) = simulate(
        start,
        60,
        &[60.0, 150.0, 0.0, 0.0, 0.0],
        &mut Static { gpus: 1 },
        &sim_cfg(600, 120),
    );
    let served: Vec<f64> = rows.iter().map(|r| r.served_requests).collect();
    // Minute 1 serves 60 of 150; minute 2 serves 60 more (1 minute wait); minute 3 the last 30
    // (2 minutes = the timeout, still served).
    assert_eq!(served, vec![60.0, 60.0, 60.0, 30.0, 0.0]);
    assert_eq!(s.timed_out_requests, 0.0);
    assert!((s.gpu_hours - 5.0 / 60.0).abs() < 1e-12);
    assert!((s.cost_usd - 0.25).abs() < 1e-12);
    // With a 1-minute timeout the last 30 are lost after waiting through minute 2.
    let (rows, s) = simulate(
        start,
        60,
        &[60.0, 150.0, 0.0, 0.0, 0.0],
        &mut Static { gpus: 1 },
        &sim_cfg(600, 60),
    );
    assert_eq!(rows[2].timed_out_requests, 30.0);
    assert!((s.timed_out_share - 30.0 / 210.0).abs() < 1e-12);
    assert_eq!(s.p99_wait_secs, 60.0);
}

#[test]
fn a_boot_is_billed_from_its_order_and_serves_after_the_boot_time() {
    // The clairvoyant sees 120 requests a minute from minute 3 and a 2-minute boot.
    let start = t("2026-03-02T00:00:00Z");
    let demand = [0.0, 0.0, 0.0, 120.0, 120.0];
    let mut policy = Clairvoyant {
        future: demand.to_vec(),
        step_secs: 60,
        capacity: prewarm_planner::Capacity::requests(1.0),
        boot_secs: 120,
    };
    let (rows, s) = simulate(start, 60, &demand, &mut policy, &sim_cfg(120, 120));
    assert_eq!(
        rows[1].boot_orders, 2,
        "ordered at minute 1, two minutes ahead"
    );
    assert_eq!(
        (
            rows[1].gpus_ready,
            rows[1].gpus_booting,
            rows[1].gpus_billed
        ),
        (0, 2, 2)
    );
    assert_eq!(rows[3].gpus_ready, 2);
    assert_eq!(s.timed_out_requests, 0.0);
    // Billed: 2 GPUs for minutes 1 to 4.
    assert!((s.gpu_hours - 8.0 / 60.0).abs() < 1e-12);
    // Random boot times are reproducible from the seed.
    let random = SimConfig {
        boot: BootTime::Uniform {
            min_secs: 60,
            max_secs: 300,
            seed: 7,
        },
        ..sim_cfg(0, 120)
    };
    let mut reactive = Reactive {
        cfg: PlannerConfig::new(1.0),
        step_secs: 60,
        initial: 1,
    };
    let once = simulate(
        start,
        60,
        &[60.0, 200.0, 200.0, 200.0, 200.0, 200.0],
        &mut reactive.clone(),
        &random,
    );
    let twice = simulate(
        start,
        60,
        &[60.0, 200.0, 200.0, 200.0, 200.0, 200.0],
        &mut reactive,
        &random,
    );
    assert_eq!(once, twice);
    // Steps before the scored window run but do not count.
    let later = SimConfig {
        score_from_step: 2,
        ..sim_cfg(600, 120)
    };
    let (_, s) = simulate(
        start,
        60,
        &[60.0, 150.0, 0.0, 0.0, 0.0],
        &mut Static { gpus: 1 },
        &later,
    );
    assert_eq!(s.requests, 0.0);
    assert!((s.gpu_hours - 3.0 / 60.0).abs() < 1e-12);
}

/// Three days of 1-minute traffic with a daily rush.
fn daily_trace(days: usize) -> Vec<f64> {
    (0..days * 1440)
        .map(|m| {
            let hour = (m % 1440) as f64 / 60.0;
            let x = (m as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            let noise = (x % 1000) as f64 / 1000.0 - 0.5;
            (600.0 + 2400.0 * (-(hour - 14.0).powi(2) / 8.0).exp()) * (1.0 + 0.1 * noise)
        })
        .collect()
}

fn predictive(start: DateTime<Utc>) -> Predictive {
    let mut cfg = PlannerConfig::new(2.5);
    cfg.boot_lead_secs = 600;
    let settings = ForecastSettings {
        min_errors: 30,
        ..ForecastSettings::default()
    };
    Predictive::new(cfg, settings, start, 60, 4)
}

#[test]
fn replaying_a_cut_trace_leaves_every_earlier_decision_unchanged() {
    let start = t("2026-03-02T00:00:00Z");
    let trace = daily_trace(3);
    let cut = 2 * 1440 + 13 * 60;
    let cfg = SimConfig {
        capacity: prewarm_planner::Capacity::requests(2.5),
        ..sim_cfg(600, 120)
    };
    let (full, _) = simulate(start, 60, &trace, &mut predictive(start), &cfg);
    let (part, _) = simulate(start, 60, &trace[..cut], &mut predictive(start), &cfg);
    assert_eq!(&full[..cut], &part[..]);
    // The forecast was in charge during the replay, not only the fallback.
    assert!(
        full.iter().any(|r| r.reason.starts_with("pre-warm")),
        "no pre-warm decision"
    );
}

#[test]
fn refits_within_the_hour_keep_the_calibration_as_the_service_does() {
    // Refits every 15 minutes: once planning, each calibration is kept by the three refits
    // after it and made afresh at the fourth, an hour on, as the service's refits do.
    let start = t("2026-03-02T00:00:00Z");
    let trace = daily_trace(4);
    let cfg = SimConfig {
        capacity: prewarm_planner::Capacity::requests(2.5),
        ..sim_cfg(600, 120)
    };
    let mut policy = predictive(start);
    policy.forecast.refit_secs = 900;
    policy.timings = Some(crate::policies::Timings::default());
    simulate(start, 60, &trace, &mut policy, &cfg);
    let flags = policy.timings.unwrap().recalibrated;
    // The last day's refits: 96 of them.
    let last_day = &flags[flags.len() - 96..];
    for (i, fresh) in last_day.iter().enumerate() {
        assert_eq!(
            *fresh,
            i % 4 == last_day.iter().position(|f| *f).unwrap() % 4,
            "refit {i}"
        );
    }
    // An hourly replay recalibrates at every refit, as before.
    let mut hourly = predictive(start);
    hourly.timings = Some(crate::policies::Timings::default());
    simulate(start, 60, &trace, &mut hourly, &cfg);
    let flags = hourly.timings.unwrap().recalibrated;
    assert!(flags.len() > 24 && flags.iter().all(|f| *f));
}

#[test]
fn a_fleet_s_bootstrap_fits_train_on_two_weeks_at_most() {
    // Three weeks of history, planning from the last day on (as `prewarm demo` starts a fleet):
    // the bootstrap's fits read at most the two weeks before each origin, so other traffic in the
    // first five days changes none of the last hours' fits, while the live fit (three weeks)
    // sees it.
    let start = t("2026-03-02T00:00:00Z");
    let quiet = daily_trace(21);
    let mut loud = quiet.clone();
    for v in &mut loud[..5 * 1440] {
        *v *= 3.0;
    }
    let cfg = SimConfig {
        capacity: prewarm_planner::Capacity::requests(2.5),
        ..sim_cfg(600, 120)
    };
    let first = 20 * 1440;
    let medians = |trace: &[f64]| {
        let mut p = predictive(start);
        p.forecast.min_history_secs = first as i64 * 60;
        p.initial = 0;
        simulate_from(
            first,
            start,
            60,
            crate::Traffic::requests(&trace[..first + 1]),
            &mut p,
            &cfg,
        );
        p.pending_medians()
    };
    let (a, b) = (medians(&quiet), medians(&loud));
    // The bootstrap's fits whose minutes are not yet all scored (the last hour's), and the live
    // fit.
    assert!(a.len() >= 2, "{} forecasts pending", a.len());
    let (a_live, a_boot) = a.split_last().unwrap();
    let (b_live, b_boot) = b.split_last().unwrap();
    assert_eq!(a_boot, b_boot);
    assert_ne!(a_live, b_live);
}

#[test]
fn predictive_beats_reactive_on_a_daily_rush() {
    let start = t("2026-03-02T00:00:00Z");
    let trace = daily_trace(4);
    let cfg = SimConfig {
        capacity: prewarm_planner::Capacity::requests(2.5),
        ..sim_cfg(600, 120)
    };
    let (pred, _) = simulate(start, 60, &trace, &mut predictive(start), &cfg);
    let mut r = Reactive {
        cfg: PlannerConfig::new(2.5),
        step_secs: 60,
        initial: 4,
    };
    let (react, _) = simulate(start, 60, &trace, &mut r, &cfg);
    // Score the last day, when the forecast has two days of history behind it.
    let last_day = |rows: &[crate::StepRecord]| {
        let day = &rows[3 * 1440..];
        let lost: f64 = day.iter().map(|r| r.timed_out_requests).sum();
        let billed: u32 = day.iter().map(|r| r.gpus_billed).sum();
        (lost, billed)
    };
    let (p_lost, p_billed) = last_day(&pred);
    let (r_lost, r_billed) = last_day(&react);
    assert!(
        p_lost <= r_lost,
        "timed out: predictive {p_lost} reactive {r_lost}"
    );
    assert!(
        p_billed < r_billed,
        "GPU-minutes: predictive {p_billed} reactive {r_billed}"
    );
}

#[test]
fn the_band_plans_within_hours_of_the_first_day_and_then_always() {
    // Fits start after one day (yesterday is their season); the band plans as soon as their
    // errors have calibrated it, within a few hours, and from then on every step.
    let start = t("2026-03-02T00:00:00Z");
    let trace = daily_trace(3);
    let cfg = SimConfig {
        capacity: prewarm_planner::Capacity::requests(2.5),
        ..sim_cfg(600, 120)
    };
    let (rows, _) = simulate(start, 60, &trace, &mut predictive(start), &cfg);
    assert!(rows[..1440]
        .iter()
        .all(|r| r.reason.starts_with("no forecast yet") && r.forecast_p50_rps.is_none()));
    let first = rows
        .iter()
        .position(|r| r.forecast_upper_rps.is_some())
        .expect("a band");
    assert!(
        (1440..1440 + 6 * 60).contains(&first),
        "first band at minute {first}"
    );
    assert!(
        rows[first..].iter().all(|r| r.forecast_upper_rps.is_some()),
        "a step after the first band planned without one"
    );
}

#[test]
fn hindsight_picks_the_cheapest_hourly_counts_within_the_timeout_budget() {
    // Two days of 1-minute steps at 1 rps per GPU: 2 rps all day, 10 rps from 09:00 to 10:00
    // local time (Berlin, UTC+1 in March), and one 30 rps minute at 15:30 each day.
    let start = t("2026-03-02T00:00:00Z");
    let tz: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    let trace: Vec<f64> = (0..2 * 1440)
        .map(|m| {
            let local_minute = (m + 60) % 1440;
            60.0 * match local_minute {
                570 => 30.0,
                540..600 if local_minute != 570 => 10.0,
                930 => 30.0,
                _ => 2.0,
            }
        })
        .collect();
    let cfg = sim_cfg(600, 120);
    // No timed-out request allowed. A request may wait two minutes, so a burst has three
    // minutes to be served: at 15:30, 1800 requests need 10 GPUs (3 x 600). At 09:30 the
    // other requests keep coming: 10 GPUs would leave a backlog of 1200 at the end of the
    // hour, 11 clear it.
    let strict = Hindsight::fit(start, 60, &trace, &trace, tz, &cfg, 0.0);
    assert_eq!(strict.counts[8], 2);
    assert_eq!(strict.counts[9], 11);
    assert_eq!(strict.counts[15], 10);
    let (_, s) = simulate(start, 60, &trace, &mut strict.clone(), &cfg);
    assert_eq!(s.timed_out_requests, 0.0);
    // Allowing 1% (4,087 of 408,720 requests) lets the 15:00 hour drop GPUs kept only for
    // its burst.
    let loose = Hindsight::fit(start, 60, &trace, &trace, tz, &cfg, 0.01);
    assert!(loose.counts[15] < strict.counts[15], "{:?}", loose.counts);
    let (_, l) = simulate(start, 60, &trace, &mut loose.clone(), &cfg);
    assert!(l.timed_out_share <= 0.01 + 1e-9, "{}", l.timed_out_share);
    assert!(l.gpu_hours < s.gpu_hours);
    // Never cheaper than reading the future.
    let mut c = Clairvoyant {
        future: trace.clone(),
        step_secs: 60,
        capacity: prewarm_planner::Capacity::requests(1.0),
        boot_secs: 600,
    };
    let (_, cs) = simulate(start, 60, &trace, &mut c, &cfg);
    assert!(s.gpu_hours >= cs.gpu_hours);
}

/// Poisson counts per minute at `rate(minute)` (a seeded generator: the same counts every run).
fn poisson_trace(minutes: usize, rate: impl Fn(usize) -> f64) -> Vec<f64> {
    let mut state = 0x853C_49E6_748F_EA9Bu64;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..minutes)
        .map(|m| {
            // Knuth's method on parts of at most 30 (e^-30 is far from underflow).
            let mut left = rate(m);
            let mut count = 0.0;
            while left > 0.0 {
                let part = left.min(30.0);
                left -= part;
                let limit = (-part).exp();
                let mut product = uniform();
                while product > limit {
                    count += 1.0;
                    product *= uniform();
                }
            }
            count
        })
        .collect()
}

#[test]
fn on_poisson_traffic_the_slo_planner_holds_the_least_fleet_that_meets_the_slo() {
    // Poisson arrivals at a steady 240 a minute, 1 GPU serving 0.5 rps (30 a minute): the mean
    // needs 8 GPUs. The least fleet that keeps timed-out requests within 0.1% with a 2-minute
    // queue is found by replaying every fixed size on the same counts (the analytic least size of
    // this trace); the planner, told only the SLO, must meet it with that fleet or one more.
    let start = t("2026-03-02T00:00:00Z");
    let days = 5;
    let trace = poisson_trace(days * 1440, |_| 240.0);
    let scored_from = 3 * 1440;
    let cfg = SimConfig {
        capacity: prewarm_planner::Capacity::requests(0.5),
        score_from_step: scored_from,
        ..sim_cfg(600, 120)
    };
    let slo = prewarm_planner::Slo::default().max_timeout_share;
    let least = (1..40)
        .find(|&n| {
            let (_, s) = simulate(start, 60, &trace, &mut Static { gpus: n }, &cfg);
            s.timed_out_share <= slo
        })
        .unwrap();
    assert!((8..=10).contains(&least), "least size {least}");
    let mut planner_cfg = PlannerConfig::new(0.5);
    planner_cfg.boot_lead_secs = 600;
    let mut policy = Predictive::new(planner_cfg, ForecastSettings::default(), start, 60, least);
    let (rows, s) = simulate(start, 60, &trace, &mut policy, &cfg);
    assert!(
        s.timed_out_share <= slo,
        "timed out {:.4}% over the SLO",
        100.0 * s.timed_out_share
    );
    let mut ready: Vec<u32> = rows[scored_from..].iter().map(|r| r.gpus_ready).collect();
    ready.sort_unstable();
    let median = ready[ready.len() / 2];
    assert!(
        (least..=least + 1).contains(&median),
        "the planner holds {median} GPUs most of the time; the least size is {least}"
    );
}

#[test]
fn a_burst_at_half_past_the_hour_is_met_by_gpus_there_at_half_past_only() {
    // Poisson at 120 a minute, and on a random half of the hours a client adds 600 a minute from
    // :30 to :34 (longer than the queue can absorb). 1 GPU serves 1 rps (60 a minute). The least
    // fleet holding the bursts is 12 GPUs at :30 (720 a minute, what a burst needs), against 2
    // to 3 the rest of the hour. The planner must meet the SLO, and hold no burst-sized fleet
    // through the quiet half of the hour.
    let start = t("2026-03-02T00:00:00Z");
    let days = 6;
    let hour_has_burst = |h: usize| ((h as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 63) == 1;
    let trace = poisson_trace(days * 1440, |m| {
        let burst = hour_has_burst(m / 60) && (30..35).contains(&(m % 60));
        120.0 + if burst { 600.0 } else { 0.0 }
    });
    let scored_from = 3 * 1440;
    let cfg = SimConfig {
        score_from_step: scored_from,
        ..sim_cfg(600, 120)
    };
    let mut planner_cfg = PlannerConfig::new(1.0);
    planner_cfg.boot_lead_secs = 600;
    let mut policy = Predictive::new(planner_cfg, ForecastSettings::default(), start, 60, 4);
    let (rows, s) = simulate(start, 60, &trace, &mut policy, &cfg);
    let slo = prewarm_planner::Slo::default().max_timeout_share;
    assert!(
        s.timed_out_share <= slo,
        "timed out {:.4}% over the SLO",
        100.0 * s.timed_out_share
    );
    let scored = &rows[scored_from..];
    let mean_ready = |minutes: std::ops::Range<usize>| {
        let picked: Vec<f64> = scored
            .iter()
            .enumerate()
            .filter(|(i, _)| minutes.contains(&((scored_from + i) % 60)))
            .map(|(_, r)| r.gpus_ready as f64)
            .collect();
        picked.iter().sum::<f64>() / picked.len() as f64
    };
    let at_burst = mean_ready(30..35);
    let quiet = mean_ready(50..60);
    // A burst needs 720 a minute, 12 GPUs, 13 with its Poisson noise; a few more for the queue
    // that built up before the fleet caught up is the most a planner that meets the SLO may hold.
    assert!(
        (12.0..=16.0).contains(&at_burst),
        "{at_burst:.1} GPUs ready at :30 to :34"
    );
    assert!(
        quiet <= 0.6 * at_burst,
        "{quiet:.1} GPUs ready at :50 to :59 against {at_burst:.1} at :30"
    );
}

/// Holds the running tier at `desired(step)` GPUs with standby able to hold `pool`, through the
/// planner's own tier orders.
struct Tiered<F: Fn(usize) -> u32> {
    initial: u32,
    desired: F,
    pool: u32,
}

impl<F: Fn(usize) -> u32> crate::Policy for Tiered<F> {
    fn name(&self) -> &str {
        "tiered"
    }
    fn initial_gpus(&self) -> u32 {
        self.initial
    }
    fn decide(
        &mut self,
        _now: DateTime<Utc>,
        past: &[f64],
        state: &prewarm_planner::FleetState,
    ) -> prewarm_planner::Decision {
        let desired = (self.desired)(past.len());
        let sb = prewarm_planner::StandbyConfig::new(self.pool);
        prewarm_planner::Decision {
            desired_gpus: desired,
            orders: prewarm_planner::standby::orders_for(desired, state, &sb, self.pool, 0),
            reason: String::new(),
            breach: None,
            forecast_p50_rps: None,
            forecast_upper_rps: None,
        }
    }
}

fn standby_sim(fail_share: f64) -> SimConfig {
    SimConfig {
        standby: Some(crate::StandbySim {
            resume: BootTime::Fixed { secs: 120 },
            price_share: 0.01,
            fail_share,
            seed: 1,
        }),
        ..sim_cfg(600, 120)
    }
}

#[test]
fn a_stopped_gpu_serves_nothing_and_bills_the_standby_price() {
    // 4 GPUs ready at 1 rps each, 240 requests a minute. At minute 0 two are stopped: they serve
    // nothing from that minute on, and are billed at 1% of the price until resumed at minute 5;
    // the resume bills in full from its order and serves 2 minutes later.
    let start = t("2026-03-02T00:00:00Z");
    let mut policy = Tiered {
        initial: 4,
        desired: |step| {
            if (1..5).contains(&step) || step == 0 {
                2
            } else {
                4
            }
        },
        pool: 2,
    };
    let (rows, s) = simulate(start, 60, &[240.0; 10], &mut policy, &standby_sim(0.0));
    assert_eq!(rows[0].stop_orders, 2);
    assert_eq!((rows[0].gpus_ready, rows[0].gpus_standby), (2, 2));
    assert_eq!(
        rows[0].served_requests, 120.0,
        "a stopped GPU is not counted ready"
    );
    assert_eq!(rows[0].gpus_billed, 2);
    assert_eq!(rows[5].resume_orders, 2);
    assert_eq!((rows[5].gpus_resuming, rows[5].gpus_billed), (2, 4));
    assert_eq!(rows[6].gpus_ready, 2, "still resuming");
    assert_eq!(rows[7].gpus_ready, 4, "resumed after 2 minutes");
    // Standby for minutes 0 to 4: 2 GPUs x 5 minutes.
    assert!((s.standby_gpu_hours - 10.0 / 60.0).abs() < 1e-12);
    let running: f64 = rows.iter().map(|r| r.gpus_billed as f64).sum::<f64>() / 60.0;
    assert!((s.cost_usd - 3.0 * (running + 0.01 * 10.0 / 60.0)).abs() < 1e-9);
    assert_eq!((s.resumes, s.failed_resumes), (2, 0));
}

#[test]
fn a_failed_resume_falls_back_to_a_cold_boot_at_the_next_decision() {
    // Every resume fails (the cloud has no capacity for the stopped instances): a minute after
    // the resume order the GPUs are gone, and the next decision boots the shortfall cold.
    let start = t("2026-03-02T00:00:00Z");
    let mut policy = Tiered {
        initial: 4,
        desired: |step| if step < 5 { 2 } else { 4 },
        pool: 2,
    };
    let (rows, s) = simulate(start, 60, &[120.0; 12], &mut policy, &standby_sim(1.0));
    assert_eq!(rows[5].resume_orders, 2);
    assert_eq!(rows[6].gpus_standby + rows[6].gpus_resuming, 0);
    assert_eq!(rows[6].boot_orders, 2, "the failed resumes are booted cold");
    assert_eq!((s.resumes, s.failed_resumes), (2, 2));
}

#[test]
fn replaying_a_cut_trace_with_standby_leaves_every_earlier_decision_unchanged() {
    let start = t("2026-03-02T00:00:00Z");
    let trace = daily_trace(3);
    let cut = 2 * 1440 + 13 * 60;
    let cfg = SimConfig {
        capacity: prewarm_planner::Capacity::requests(2.5),
        ..standby_sim(0.05)
    };
    let tiered = || {
        let mut p = predictive(start);
        p.cfg.standby = Some(prewarm_planner::StandbyConfig::new(100));
        p
    };
    let (full, _) = simulate(start, 60, &trace, &mut tiered(), &cfg);
    let (part, _) = simulate(start, 60, &trace[..cut], &mut tiered(), &cfg);
    assert_eq!(&full[..cut], &part[..]);
    assert!(
        full.iter().any(|r| r.resume_orders > 0) && full.iter().any(|r| r.stop_orders > 0),
        "the tier was used"
    );
}

#[test]
fn standby_catches_bursts_for_less_within_the_slo() {
    // The bursts at half past the hour above: a cold planner must hold burst-sized capacity
    // wherever a burst is likely; with standby it holds less running and resumes in 2 minutes
    // what a burst needs (5% of resumes failing and booted cold), for at least 10% less.
    let start = t("2026-03-02T00:00:00Z");
    let hour_has_burst = |h: usize| ((h as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 63) == 1;
    let trace = poisson_trace(6 * 1440, |m| {
        let burst = hour_has_burst(m / 60) && (30..35).contains(&(m % 60));
        120.0 + if burst { 600.0 } else { 0.0 }
    });
    let cfg = SimConfig {
        score_from_step: 3 * 1440,
        ..standby_sim(0.05)
    };
    let policy = |standby: bool| {
        let mut planner_cfg = PlannerConfig::new(1.0);
        planner_cfg.boot_lead_secs = 600;
        planner_cfg.standby = standby.then(|| prewarm_planner::StandbyConfig::new(100));
        Predictive::new(planner_cfg, ForecastSettings::default(), start, 60, 4)
    };
    let (_, cold) = simulate(start, 60, &trace, &mut policy(false), &cfg);
    let (_, warm) = simulate(start, 60, &trace, &mut policy(true), &cfg);
    assert!(
        warm.cost_usd < 0.9 * cold.cost_usd,
        "with standby ${:.2}, without ${:.2}",
        warm.cost_usd,
        cold.cost_usd
    );
    // A 5-minute burst is partly over before a resume ordered on its first minute serves (a
    // minute to see it, two to resume): the first minutes of a burst the level did not plan for
    // are lost. Measured: about 0.2% timed out against 0.08% without standby; bounded here so a
    // regression shows.
    assert!(
        warm.timed_out_share <= 0.003,
        "timed out {:.4}% with standby ({:.4}% without)",
        100.0 * warm.timed_out_share,
        100.0 * cold.timed_out_share
    );
    assert!(warm.resumes > 0 && warm.standby_gpu_hours > 0.0);
}

#[test]
fn an_llm_fleet_s_queue_serves_gpu_work_and_counts_lost_requests() {
    // A GPU prefills 1,000 and decodes 100 tokens a second. Each request: 1,000 prompt and 100
    // output tokens, two GPU-seconds. 60 requests a minute for two minutes, then none: 120
    // GPU-seconds a minute against one GPU's 60.
    let capacity = prewarm_planner::Capacity::tokens(1_000.0, 100.0).unwrap();
    let work_of = |requests: f64| {
        capacity.work(&prewarm_planner::Load {
            requests,
            tokens_in: requests * 1_000.0,
            tokens_out: requests * 100.0,
        })
    };
    let requests = [60.0, 60.0, 0.0, 0.0];
    let work: Vec<f64> = requests.iter().map(|r| work_of(*r)).collect();
    assert_eq!(work, vec![120.0, 120.0, 0.0, 0.0]);
    let cfg = SimConfig {
        capacity,
        ..sim_cfg(60, 60)
    };
    let (rows, s) = crate::simulate_traffic(
        t("2026-03-02T00:00:00Z"),
        60,
        crate::Traffic::work(&work, &requests),
        &mut Static { gpus: 1 },
        &cfg,
    );
    // Minute 0's work is served by the end of minute 1; minute 1's half waits past the
    // 60-second timeout: 60 GPU-seconds, which 30 requests carried.
    assert_eq!(rows[2].timed_out_requests, 30.0, "{rows:?}");
    assert_eq!(s.requests, 120.0);
    assert!((s.timed_out_share - 0.25).abs() < 1e-12, "{s:?}");
    // Counted in requests at the same mean (a GPU serving 0.5 requests/s), the same queue.
    let by_requests = SimConfig {
        capacity: prewarm_planner::Capacity::requests(0.5),
        ..cfg
    };
    let (_, r) = simulate(
        t("2026-03-02T00:00:00Z"),
        60,
        &requests,
        &mut Static { gpus: 1 },
        &by_requests,
    );
    assert!((r.timed_out_share - s.timed_out_share).abs() < 1e-12);
}

/// Five days of 1-minute LLM traffic: a flat 600 requests a minute, whose prompts are four
/// times longer from 13:00 to 17:00 (a batch client's long documents). Per minute: (requests,
/// prompt tokens, output tokens).
fn mix_shift_trace(days: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for m in 0..days * 1440 {
        let hour = (m % 1440) / 60;
        let x = (m as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        let noise = 1.0 + 0.1 * ((x % 1000) as f64 / 1000.0 - 0.5);
        let requests = 600.0 * noise;
        let prompt = if (13..17).contains(&hour) {
            4_000.0
        } else {
            1_000.0
        };
        out.0.push(requests);
        out.1.push(requests * prompt);
        out.2.push(requests * 200.0);
    }
    out
}

#[test]
fn planning_in_tokens_keeps_the_slo_where_request_counts_miss_the_work() {
    let start = t("2026-03-02T00:00:00Z");
    let (requests, tokens_in, tokens_out) = mix_shift_trace(5);
    let capacity = prewarm_planner::Capacity::tokens(20_000.0, 2_000.0).unwrap();
    let work: Vec<f64> = (0..requests.len())
        .map(|i| {
            capacity.work(&prewarm_planner::Load {
                requests: requests[i],
                tokens_in: tokens_in[i],
                tokens_out: tokens_out[i],
            })
        })
        .collect();
    let sim = SimConfig {
        capacity,
        score_from_step: 3 * 1440,
        ..sim_cfg(600, 120)
    };
    let settings = || ForecastSettings {
        min_errors: 30,
        ..ForecastSettings::default()
    };
    // In tokens: it forecasts the work, whose afternoon rise it learns.
    let mut cfg = PlannerConfig::with_capacity(capacity);
    cfg.boot_lead_secs = 600;
    let mut tokens = Predictive::new(cfg, settings(), start, 60, 10);
    tokens.requests = Some(requests.clone().into());
    let (_, in_tokens) = crate::simulate_traffic(
        start,
        60,
        crate::Traffic::work(&work, &requests),
        &mut tokens,
        &sim,
    );
    // Counting requests with a GPU matched to the mean work per request: the flat request rate
    // hides the afternoon's four-times-longer prompts.
    let per_request = work.iter().sum::<f64>() / requests.iter().sum::<f64>();
    let mut cfg = PlannerConfig::new(1.0 / per_request);
    cfg.boot_lead_secs = 600;
    let mut counted = Predictive::new(cfg, settings(), start, 60, 10);
    let (_, in_requests) = crate::simulate_traffic(
        start,
        60,
        crate::Traffic {
            planned_on: &requests,
            work: &work,
            requests: &requests,
        },
        &mut counted,
        &sim,
    );
    assert!(
        in_tokens.timed_out_share <= 0.001,
        "in tokens: {in_tokens:?}"
    );
    assert!(
        in_requests.timed_out_share > 10.0 * in_tokens.timed_out_share.max(1e-4),
        "in requests: {in_requests:?} against {in_tokens:?}"
    );
}

#[test]
fn the_hpa_scales_up_at_once_and_down_only_after_its_window_within_its_tolerance() {
    use crate::{policies::Hpa, Policy};
    use prewarm_planner::{FleetState, Order};
    let start = t("2026-03-02T00:00:00Z");
    let capacity = prewarm_planner::Capacity::requests(1.0);
    let mut hpa = Hpa::new(capacity, 60, 0.5, 300, 1, 2);
    let state = |gpus: u32| FleetState {
        gpus_ready: gpus,
        ..FleetState::default()
    };
    let at = |m: i64| start + chrono::Duration::minutes(m);
    // 3 rps on 2 GPUs at a 50% target: 6 GPUs, at once.
    let d = hpa.decide(at(0), &[180.0], &state(2));
    assert_eq!(
        (d.desired_gpus, d.orders.clone()),
        (6, vec![Order::Boot(4)])
    );
    // Within 10% of the target: no change.
    let d = hpa.decide(at(1), &[190.0], &state(6));
    assert_eq!(d.desired_gpus, 6, "{d:?}");
    // Demand falls to 1 rps: 2 GPUs recommended, but the window still holds 6.
    for m in 2..6 {
        let d = hpa.decide(at(m), &[60.0], &state(6));
        assert_eq!(d.desired_gpus, 6, "minute {m}: {d:?}");
    }
    // Five minutes after the last recommendation of 6, down to 2.
    let d = hpa.decide(at(6), &[60.0], &state(6));
    assert_eq!(
        (d.desired_gpus, d.orders.clone()),
        (2, vec![Order::Terminate(4)])
    );
}

#[test]
fn the_tuned_hpa_is_the_cheapest_rule_within_the_slo_on_the_trace_itself() {
    use crate::policies::{tune_hpa, Hpa};
    let start = t("2026-03-02T00:00:00Z");
    let trace = daily_trace(3);
    let cfg = SimConfig {
        capacity: prewarm_planner::Capacity::requests(2.5),
        ..sim_cfg(600, 120)
    };
    let base = Hpa::new(cfg.capacity, 60, 0.7, 300, 1, 10);
    let (tuned, met) = tune_hpa(start, crate::Traffic::requests(&trace), &cfg, &base, 0.001);
    assert!(met);
    let (_, s) = simulate(start, 60, &trace, &mut tuned.clone(), &cfg);
    assert!(s.timed_out_share <= 0.001, "{s:?}");
    // Every cheaper setting of the grid misses the SLO.
    for target in crate::policies::TUNED_HPA_TARGETS {
        for window in crate::policies::TUNED_HPA_SCALE_INS {
            let mut other = Hpa::new(cfg.capacity, 60, target, window, 1, 10);
            let (_, o) = simulate(start, 60, &trace, &mut other, &cfg);
            assert!(
                o.cost_usd >= s.cost_usd - 1e-9 || o.timed_out_share > 0.001,
                "target {target}, window {window}: {o:?} against {s:?}"
            );
        }
    }
}

#[test]
fn a_fleet_with_a_day_and_a_half_of_history_plans_on_its_one_day_season_and_beats_the_reactive_rules(
) {
    // 36 hours of a daily rush, replayed from its start and scored whole: the first day has no
    // forecast (the reactive rules run), from then on yesterday is the season.
    let start = t("2026-03-02T00:00:00Z");
    let trace = daily_trace(2)[..36 * 60].to_vec();
    let cfg = SimConfig {
        capacity: prewarm_planner::Capacity::requests(2.5),
        ..sim_cfg(600, 120)
    };
    let (pred_rows, pred) = simulate(start, 60, &trace, &mut predictive(start), &cfg);
    let mut reactive = Reactive {
        cfg: PlannerConfig::new(2.5),
        step_secs: 60,
        initial: 4,
    };
    let (_, react) = simulate(start, 60, &trace, &mut reactive, &cfg);
    assert!(
        pred_rows[25 * 60..]
            .iter()
            .any(|r| r.reason.starts_with("pre-warm") || r.reason.starts_with("scale down")),
        "the second day plans on a forecast"
    );
    assert!(
        pred.gpu_hours <= 0.9 * react.gpu_hours && pred.timed_out_share <= react.timed_out_share,
        "predictive {pred:?} against reactive {react:?}"
    );
}
