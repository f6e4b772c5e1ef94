//! The planner's rules, each on a hand-made case.

use chrono::{DateTime, NaiveDate, Utc};

use crate::{
    plan, CalendarOverride, Decision, Demand, DemandDistribution, FleetState, Forecast, Order,
    OverMax, OverrideAction, PlanInput, PlannerConfig, Strategy, LEVELS,
};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// Quantiles of a minute whose median is `p50`: 10% below it under the median, 10% above it over
/// the median.
fn spread(p50: f64) -> [f64; crate::NUM_LEVELS] {
    LEVELS.map(|l| {
        if l < 0.5 {
            0.9 * p50
        } else if l > 0.5 {
            1.1 * p50
        } else {
            p50
        }
    })
}

/// A distribution of 1-minute buckets from `start`: `base` rps, `rush` rps from `rush_from` on.
fn band(start: &str, minutes: usize, base: f64, rush: f64, rush_from: &str) -> DemandDistribution {
    let start = t(start);
    let from = ((t(rush_from) - start).num_minutes()) as usize;
    let p50: Vec<f64> = (0..minutes)
        .map(|m| if m >= from { rush } else { base })
        .collect();
    DemandDistribution {
        start,
        quantiles: p50.iter().map(|v| spread(*v)).collect(),
        median_rps: p50,
    }
}

/// The hand-computed cases plan at 80% load on the 0.98 quantile (1.1 x the median here), with no
/// queue to spread demand over (a timeout of zero: each minute needs its own demand; the queue's
/// credit is tested in `slo`).
fn cfg10() -> PlannerConfig {
    let mut cfg = PlannerConfig::new(10.0);
    cfg.target_utilization = 0.8;
    cfg.quantile = Some(0.98);
    cfg.slo.timeout_secs = 0;
    cfg
}

fn decide(
    now: &str,
    demand: &[f64],
    forecast: Option<&DemandDistribution>,
    state: &FleetState,
    cfg: &PlannerConfig,
) -> Decision {
    plan(
        &PlanInput {
            now: t(now),
            demand: Demand {
                step_secs: 60,
                rps: demand,
            },
            forecast: forecast.map(|d| Forecast {
                distribution: d,
                levels: None,
            }),
            state,
            strategy: if forecast.is_some() {
                Strategy::Predictive
            } else {
                Strategy::Reactive
            },
        },
        cfg,
    )
}

fn ready(n: u32) -> FleetState {
    FleetState {
        gpus_ready: n,
        booting: Vec::new(),
        ..FleetState::default()
    }
}

#[test]
fn pre_warm_orders_one_boot_lead_time_before_the_rush() {
    // 10 rps per GPU at 80%: base 14 rps (upper 15.4) needs 2 GPUs, the 9:00 rush of 80 rps
    // (upper 88) needs 11. With a 10-minute boot lead the order goes out at 08:50, not before.
    let cfg = cfg10();
    let b = band(
        "2026-03-02T08:00:00Z",
        180,
        14.0,
        80.0,
        "2026-03-02T09:00:00Z",
    );
    let quiet = [14.0; 10];
    let early = decide("2026-03-02T08:49:00Z", &quiet, Some(&b), &ready(2), &cfg);
    assert!(early.orders.is_empty(), "{early:?}");
    let on_time = decide("2026-03-02T08:50:00Z", &quiet, Some(&b), &ready(2), &cfg);
    assert_eq!(on_time.orders, vec![Order::Boot(9)], "{}", on_time.reason);
    assert!(on_time.reason.starts_with("pre-warm"), "{}", on_time.reason);
    // Once ordered, GPUs still booting count: nothing is ordered twice.
    let booting = FleetState {
        gpus_ready: 2,
        booting: vec![t("2026-03-02T08:50:00Z"); 9],
        ..FleetState::default()
    };
    let next = decide("2026-03-02T08:51:00Z", &quiet, Some(&b), &booting, &cfg);
    assert!(next.orders.is_empty(), "{next:?}");
    // A longer boot lead moves the order earlier by the same amount.
    let slow = PlannerConfig {
        boot_lead_secs: 1_200,
        ..cfg.clone()
    };
    let d = decide("2026-03-02T08:40:00Z", &quiet, Some(&b), &ready(2), &slow);
    assert_eq!(d.orders, vec![Order::Boot(9)]);
}

#[test]
fn no_termination_of_what_the_forecast_needs_back_within_a_boot_time() {
    let cfg = cfg10();
    // A dip to 8 rps for five minutes, with the 80 rps level back after it.
    let mut b = band(
        "2026-03-02T08:00:00Z",
        120,
        80.0,
        80.0,
        "2026-03-02T08:00:00Z",
    );
    for m in 30..35 {
        b.median_rps[m] = 8.0;
        b.quantiles[m] = spread(8.0);
    }
    let d = decide(
        "2026-03-02T08:29:00Z",
        &[8.0; 10],
        Some(&b),
        &ready(11),
        &cfg,
    );
    assert!(d.orders.is_empty(), "{}", d.reason);
    // A dip that lasts past the lead time and the hold is a real scale-down.
    let low = band(
        "2026-03-02T08:00:00Z",
        120,
        8.0,
        8.0,
        "2026-03-02T08:00:00Z",
    );
    // The upper 8.8 rps needs 2 GPUs at 80%.
    let d = decide(
        "2026-03-02T08:30:00Z",
        &[8.0; 20],
        Some(&low),
        &ready(11),
        &cfg,
    );
    assert_eq!(d.orders, vec![Order::Terminate(9)], "{}", d.reason);
    // A burst a few minutes ago (not the last minute) does not move the forecast; demand that
    // ran above it for most of the last 20 minutes does.
    let mut recent = [8.0; 20];
    recent[15] = 80.0;
    let d = decide(
        "2026-03-02T08:30:00Z",
        &recent,
        Some(&low),
        &ready(11),
        &cfg,
    );
    assert_eq!(d.orders, vec![Order::Terminate(9)], "{}", d.reason);
    let d = decide(
        "2026-03-02T08:30:00Z",
        &[16.0; 20],
        Some(&low),
        &ready(11),
        &cfg,
    );
    // Demand 8 rps above the median for most of the last 20 minutes raises the distribution by
    // that: 8.8 + 8 = 16.8 rps needs 3 GPUs at 80%.
    assert_eq!(d.orders, vec![Order::Terminate(8)], "{}", d.reason);
    assert!(d.reason.contains("8.00 rps above"), "{}", d.reason);
    // The same scale-down with boots still in flight holds: a boot is not cancelled before it
    // has served (the provisioner would terminate the booting GPUs first).
    let booting = FleetState {
        gpus_ready: 9,
        booting: vec![t("2026-03-02T08:25:00Z"); 2],
        ..FleetState::default()
    };
    let d = decide(
        "2026-03-02T08:30:00Z",
        &[8.0; 20],
        Some(&low),
        &booting,
        &cfg,
    );
    assert!(d.orders.is_empty(), "{}", d.reason);
    assert!(
        d.reason.contains("still booting are not cancelled"),
        "{}",
        d.reason
    );
    // Above the fleet's limit, it does terminate.
    let mut capped = cfg10();
    capped.max_gpus = 5;
    let d = decide(
        "2026-03-02T08:30:00Z",
        &[8.0; 20],
        Some(&low),
        &booting,
        &capped,
    );
    assert!(
        matches!(d.orders.as_slice(), [Order::Terminate(_)]),
        "{}",
        d.reason
    );
}

#[test]
fn demand_above_the_top_quantile_raises_the_forecast_at_once_and_a_miss_can_use_headroom() {
    let cfg = cfg10();
    let b = band(
        "2026-03-02T08:00:00Z",
        120,
        16.0,
        16.0,
        "2026-03-02T08:00:00Z",
    );
    // The forecast says 3 GPUs. Demand a little above the 0.9 quantile for one minute is noise.
    let d = decide(
        "2026-03-02T08:30:00Z",
        &[16.0, 16.0, 17.0],
        Some(&b),
        &ready(3),
        &cfg,
    );
    assert!(d.orders.is_empty(), "{}", d.reason);
    // 50 rps is above the top quantile (17.6): the distribution is raised by the 34 rps the last
    // minute ran over the median, and 17.6 + 34 = 51.6 rps needs 7 GPUs at 80%.
    let d = decide(
        "2026-03-02T08:30:00Z",
        &[16.0, 16.0, 50.0],
        Some(&b),
        &ready(3),
        &cfg,
    );
    assert_eq!(d.orders, vec![Order::Boot(4)], "{}", d.reason);
    assert!(d.reason.contains("34.00 rps above"), "{}", d.reason);
    // The expert override answers a miss with the seed's headroom: 50 / (10 x 0.6) needs 9.
    let mut tuned = cfg.clone();
    tuned.reactive.miss_load = Some(0.6);
    let d = decide(
        "2026-03-02T08:30:00Z",
        &[16.0, 16.0, 50.0],
        Some(&b),
        &ready(3),
        &tuned,
    );
    assert_eq!(d.orders, vec![Order::Boot(6)]);
    assert!(
        d.reason.contains("top quantile") && d.reason.contains("under 60%"),
        "{}",
        d.reason
    );
}

#[test]
fn nothing_is_cancelled_while_demand_runs_above_the_band() {
    let cfg = cfg10();
    let b = band(
        "2026-03-02T08:00:00Z",
        120,
        16.0,
        16.0,
        "2026-03-02T08:00:00Z",
    );
    // Demand (40 rps) is above the band, and the 7 GPUs the miss ordered are still booting:
    // the forecast alone would fit in 3, but nothing is terminated until demand is back in it.
    let booting = FleetState {
        gpus_ready: 2,
        booting: vec![t("2026-03-02T08:29:00Z"); 5],
        ..FleetState::default()
    };
    let d = decide(
        "2026-03-02T08:30:00Z",
        &[40.0, 40.0],
        Some(&b),
        &booting,
        &cfg,
    );
    assert!(d.orders.is_empty(), "{}", d.reason);
    assert!(d.reason.starts_with("hold"), "{}", d.reason);
}

#[test]
fn reactive_scales_up_at_sixty_percent_and_down_after_thirty_quiet_minutes() {
    let cfg = cfg10();
    // 5 GPUs: 31 rps is 62% load; booting GPUs count, so a second tick orders nothing more.
    let d = decide("2026-03-02T08:00:00Z", &[31.0], None, &ready(5), &cfg);
    assert_eq!(d.orders, vec![Order::Boot(1)], "{}", d.reason);
    let booting = FleetState {
        gpus_ready: 5,
        booting: vec![t("2026-03-02T08:00:00Z")],
        ..FleetState::default()
    };
    let d = decide("2026-03-02T08:01:00Z", &[31.0], None, &booting, &cfg);
    assert!(d.orders.is_empty(), "{}", d.reason);
    // 29 minutes under 20% is not enough; 30 are, and only one GPU goes.
    assert!(
        decide("2026-03-02T08:00:00Z", &[5.0; 29], None, &ready(5), &cfg)
            .orders
            .is_empty()
    );
    let d = decide("2026-03-02T08:00:00Z", &[5.0; 30], None, &ready(5), &cfg);
    assert_eq!(d.orders, vec![Order::Terminate(1)]);
    // Never below the minimum.
    let d = decide("2026-03-02T08:00:00Z", &[0.0; 30], None, &ready(1), &cfg);
    assert!(d.orders.is_empty());
}

#[test]
fn limits_cap_the_plan_and_every_breach_is_reported() {
    let b = band(
        "2026-03-02T08:00:00Z",
        120,
        150.0,
        150.0,
        "2026-03-02T08:00:00Z",
    );
    let mut cfg = cfg10();
    cfg.max_gpus = 10;
    // The upper 165 rps needs 21 GPUs at 80% (demand now is only 50 rps).
    let d = decide("2026-03-02T08:30:00Z", &[50.0], Some(&b), &ready(10), &cfg);
    assert!(d.orders.is_empty());
    let breach = d.breach.clone().unwrap();
    assert_eq!(
        (
            breach.wanted,
            breach.limit,
            breach.granted,
            breach.limited_by
        ),
        (21, 10, 10, "max_gpus")
    );
    assert!(d.reason.contains("LIMIT"), "{}", d.reason);
    cfg.over_max = OverMax::Exceed(0.2);
    let d = decide("2026-03-02T08:30:00Z", &[50.0], Some(&b), &ready(10), &cfg);
    assert_eq!(d.orders, vec![Order::Boot(2)]);
    assert_eq!(d.breach.unwrap().granted, 12);
    // A budget of $24/h at $3 per GPU-hour allows 8.
    cfg.over_max = OverMax::Honour;
    cfg.budget_usd_per_hour = Some(24.0);
    let d = decide("2026-03-02T08:30:00Z", &[50.0], Some(&b), &ready(10), &cfg);
    assert_eq!(d.orders, vec![Order::Terminate(2)]);
    assert_eq!(d.breach.unwrap().limited_by, "budget");
    // The minimum holds even with no demand.
    cfg.min_gpus = 3;
    let d = decide("2026-03-02T08:30:00Z", &[0.0], None, &ready(0), &cfg);
    assert_eq!(d.orders, vec![Order::Boot(3)]);
}

#[test]
fn calendar_overrides_follow_the_local_clock_across_dst() {
    // A launch from 9:00 to 10:00 New York time on 2026-03-09, the day after clocks moved to EDT:
    // 9:00 EDT is 13:00Z (it would be 14:00Z in winter).
    let mut cfg = cfg10();
    cfg.tz = "America/New_York".parse().unwrap();
    let day = NaiveDate::from_ymd_opt(2026, 3, 9).unwrap();
    cfg.overrides.push(CalendarOverride {
        start: day.and_hms_opt(9, 0, 0).unwrap(),
        end: day.and_hms_opt(10, 0, 0).unwrap(),
        action: OverrideAction::Multiply(3.0),
    });
    let b = band(
        "2026-03-09T12:00:00Z",
        180,
        10.0,
        10.0,
        "2026-03-09T12:00:00Z",
    );
    let p50 = |now: &str, cfg: &PlannerConfig| {
        decide(now, &[10.0], Some(&b), &ready(20), cfg)
            .forecast_p50_rps
            .unwrap()
    };
    assert_eq!(p50("2026-03-09T12:59:00Z", &cfg), 10.0);
    assert_eq!(p50("2026-03-09T13:00:00Z", &cfg), 30.0);
    assert_eq!(p50("2026-03-09T13:59:00Z", &cfg), 30.0);
    assert_eq!(p50("2026-03-09T14:00:00Z", &cfg), 10.0);
    // The pre-warm for the launch goes out a boot lead time before 13:00Z.
    let d = decide("2026-03-09T12:50:00Z", &[10.0], Some(&b), &ready(2), &cfg);
    assert!(matches!(d.orders[..], [Order::Boot(_)]), "{}", d.reason);
    // Pinning replaces the forecast.
    cfg.overrides[0].action = OverrideAction::PinRps(25.0);
    assert_eq!(p50("2026-03-09T13:30:00Z", &cfg), 25.0);
}

/// A distribution of 1-minute buckets from `start` whose median is `p50` of each minute.
fn shaped(start: &str, p50: Vec<f64>) -> DemandDistribution {
    DemandDistribution {
        start: t(start),
        quantiles: p50.iter().map(|v| spread(*v)).collect(),
        median_rps: p50,
    }
}

/// The hand-computed cases' planner with a standby tier: resume in 2 minutes, up to 10 GPUs in
/// standby at 1% of the price. Running GPUs are kept 3 resume leads and the hold (7 minutes),
/// the two tiers together 3 boot leads and the hold (31 minutes).
fn tiered() -> PlannerConfig {
    let mut cfg = cfg10();
    cfg.standby = Some(crate::StandbyConfig {
        resume_secs: 120,
        price_share: 0.01,
        max_gpus: 10,
    });
    cfg
}

fn with_standby(ready: u32, standby: u32) -> FleetState {
    FleetState {
        gpus_ready: ready,
        standby,
        ..FleetState::default()
    }
}

/// 40 rps from 11:00 for four hours, 80 from 12:05: the rush of the standby cases.
fn rush_at_1205() -> DemandDistribution {
    band(
        "2026-03-02T11:00:00Z",
        240,
        40.0,
        80.0,
        "2026-03-02T12:05:00Z",
    )
}

#[test]
fn a_rush_the_standby_pool_covers_is_resumed_a_resume_lead_ahead() {
    // 40 rps until 12:05, 80 after: the 0.98 quantile (1.1 x) at 8 rps a GPU needs 6 GPUs, then
    // 11. At 12:03 the rush is a resume lead (2 min) away: the 5 missing GPUs come from standby.
    let dist = rush_at_1205();
    let cfg = tiered();
    let d = decide(
        "2026-03-02T12:03:00Z",
        &[40.0; 30],
        Some(&dist),
        &with_standby(6, 5),
        &cfg,
    );
    assert_eq!(d.desired_gpus, 11, "{}", d.reason);
    assert_eq!(d.orders, vec![Order::Resume(5)], "{}", d.reason);
    assert!(d.reason.contains("resume 5 from standby"), "{}", d.reason);
    // Ten minutes before the rush nothing is resumed yet: standby already holds what a boot lead
    // ahead wants, so nothing is booted either.
    let d = decide(
        "2026-03-02T11:55:00Z",
        &[40.0; 30],
        Some(&dist),
        &with_standby(6, 5),
        &cfg,
    );
    assert_eq!(d.orders, vec![], "{}", d.reason);
}

#[test]
fn gpus_booting_cold_that_land_after_the_resume_lead_are_covered_from_standby() {
    // The rush of the case above, with 3 GPUs booting cold (for standby) since 11:57: they land at
    // 12:07, two minutes after the rush starts. Counted as serving at 12:05 they would leave the
    // rush 3 GPUs short while standby holds 5 (bursts seed 2's replay lost a burst so); they are
    // not, and 5 are resumed. The boots are not cancelled: they join standby once ready.
    let dist = rush_at_1205();
    let cfg = tiered();
    let now = "2026-03-02T12:03:00Z";
    let at_now = |state: &FleetState| decide(now, &[40.0; 30], Some(&dist), state, &cfg);
    let booting = |ordered: &str, n: usize, ready: u32, standby: u32| FleetState {
        booting: vec![t(ordered); n],
        ..with_standby(ready, standby)
    };
    let late = booting("2026-03-02T11:57:00Z", 3, 6, 5);
    assert_eq!(late.late_boots(t(now), &cfg), 3);
    let d = at_now(&late);
    assert_eq!(d.desired_gpus, 11, "{}", d.reason);
    assert_eq!(d.orders, vec![Order::Resume(5)], "{}", d.reason);
    let note = "9 provisioned, 3 of them booting until after then";
    assert!(d.reason.contains(note), "{}", d.reason);
    // The 11 GPUs the rush needs already provisioned, 5 of them booting until 12:07: the 2
    // standby GPUs are resumed for what the late boots cannot serve yet.
    let d = at_now(&booting("2026-03-02T11:57:00Z", 5, 6, 2));
    assert_eq!(d.orders, vec![Order::Resume(2)], "{}", d.reason);
    // Boots that land within the resume lead are counted as serving: nothing is resumed.
    let in_time = booting("2026-03-02T11:55:00Z", 5, 6, 5);
    assert_eq!(in_time.late_boots(t(now), &cfg), 0);
    let d = at_now(&in_time);
    assert_eq!(d.desired_gpus, 11, "{}", d.reason);
    let resumes = d.orders.iter().any(|o| matches!(o, Order::Resume(_)));
    assert!(!resumes, "{}", d.reason);
    // Without a tier the running lead is the boot lead: no boot is ever late.
    assert_eq!(late.late_boots(t(now), &cfg10()), 0);
}

#[test]
fn a_rush_beyond_the_standby_pool_resumes_what_it_has_and_boots_the_rest_cold() {
    let dist = rush_at_1205();
    let d = decide(
        "2026-03-02T12:03:00Z",
        &[40.0; 30],
        Some(&dist),
        &with_standby(6, 2),
        &tiered(),
    );
    assert_eq!(d.desired_gpus, 11, "{}", d.reason);
    assert_eq!(
        d.orders,
        vec![Order::Resume(2), Order::Boot(3)],
        "{}",
        d.reason
    );
    assert!(d.reason.contains("boot 3 cold"), "{}", d.reason);
    // A boot lead before the rush, the two tiers together fall short by 3: they are booted cold
    // (to be stopped into standby once ready, if the running tier does not want them yet).
    let d = decide(
        "2026-03-02T11:55:00Z",
        &[40.0; 30],
        Some(&dist),
        &with_standby(6, 2),
        &tiered(),
    );
    assert_eq!(d.orders, vec![Order::Boot(3)], "{}", d.reason);
    assert!(d.reason.contains("for standby"), "{}", d.reason);
}

#[test]
fn on_a_quiet_night_standby_is_terminated() {
    // 8 rps all night (2 GPUs at the 0.98 quantile): nothing within the forecast wants the 5
    // standby GPUs back.
    let dist = band(
        "2026-03-02T01:00:00Z",
        240,
        8.0,
        8.0,
        "2026-03-02T01:00:00Z",
    );
    let d = decide(
        "2026-03-02T02:00:00Z",
        &[8.0; 30],
        Some(&dist),
        &with_standby(2, 5),
        &tiered(),
    );
    assert_eq!(d.desired_gpus, 2, "{}", d.reason);
    assert_eq!(d.orders, vec![Order::TerminateStandby(5)], "{}", d.reason);
    assert!(d.reason.contains("terminate 5 in standby"), "{}", d.reason);
}

#[test]
fn a_lull_before_the_rush_comes_back_stops_gpus_instead_of_terminating_them() {
    // 80 rps (11 GPUs) until 12:00, 40 (6) for an hour, then 80 again. At 12:09 the 5 GPUs the
    // lull does not need are not wanted within the keep window (3 boot leads): without standby
    // they are terminated; with it they are stopped (the rush at 13:00 wants them back, within
    // standby's break-even). A shorter lull keeps them running either way.
    let mut p50 = vec![80.0; 60];
    p50.extend(vec![40.0; 60]);
    p50.extend(vec![80.0; 160]);
    let dist = shaped("2026-03-02T11:00:00Z", p50);
    let mut recent = vec![80.0; 21];
    recent.extend([40.0; 9]);
    let d = decide(
        "2026-03-02T12:09:00Z",
        &recent,
        Some(&dist),
        &with_standby(11, 0),
        &tiered(),
    );
    assert_eq!(d.desired_gpus, 6, "{}", d.reason);
    assert_eq!(d.orders, vec![Order::Stop(5)], "{}", d.reason);
    let d = decide(
        "2026-03-02T12:09:00Z",
        &recent,
        Some(&dist),
        &ready(11),
        &cfg10(),
    );
    assert_eq!(d.orders, vec![Order::Terminate(5)], "{}", d.reason);
    let mut short = vec![80.0; 60];
    short.extend(vec![40.0; 20]);
    short.extend(vec![80.0; 160]);
    let short = shaped("2026-03-02T11:00:00Z", short);
    let d = decide(
        "2026-03-02T12:09:00Z",
        &recent,
        Some(&short),
        &with_standby(11, 0),
        &tiered(),
    );
    assert_eq!(d.orders, vec![], "{}", d.reason);
    // A GPU still booting is not stopped (only ready ones are): it is kept while standby has
    // room for it, and stopped once ready.
    let booting = FleetState {
        gpus_ready: 9,
        booting: vec![t("2026-03-02T11:55:00Z"); 2],
        ..FleetState::default()
    };
    let d = decide(
        "2026-03-02T12:09:00Z",
        &recent,
        Some(&dist),
        &booting,
        &tiered(),
    );
    assert_eq!(d.orders, vec![Order::Stop(3)], "{}", d.reason);
}

#[test]
fn standby_beyond_its_limit_is_never_planned_and_the_rest_is_let_go_as_without_a_tier() {
    // As the hour-long lull above, with standby limited to 2 GPUs: 2 are stopped, and the 3
    // standby cannot hold are terminated, as they would be without a tier (the rush at 13:00 is
    // beyond the keep window: boots will be back for it).
    let mut p50 = vec![80.0; 60];
    p50.extend(vec![40.0; 60]);
    p50.extend(vec![80.0; 160]);
    let dist = shaped("2026-03-02T11:00:00Z", p50);
    let mut cfg = tiered();
    cfg.standby.as_mut().unwrap().max_gpus = 2;
    let mut recent = vec![80.0; 21];
    recent.extend([40.0; 9]);
    let d = decide(
        "2026-03-02T12:09:00Z",
        &recent,
        Some(&dist),
        &with_standby(11, 0),
        &cfg,
    );
    assert_eq!(
        d.orders,
        vec![Order::Stop(2), Order::Terminate(3)],
        "{}",
        d.reason
    );
    assert_eq!(d.desired_gpus, 6, "{}", d.reason);
}

#[test]
fn the_standby_settings_are_checked() {
    let sb = crate::StandbyConfig::new(10);
    let tier = crate::Settings {
        standby_max_gpus: Some(10),
        standby_price_share: Some(sb.price_share),
        resume_secs: Some(sb.resume_secs),
        ..Default::default()
    };
    assert!(tier.check().is_ok() && tier.check_standby(10).is_ok());
    assert!(tier
        .check_standby(9)
        .unwrap_err()
        .rule
        .contains("at most the fleet's max_gpus"));
    let bad = crate::Settings {
        standby_price_share: Some(-0.1),
        ..tier.clone()
    };
    assert_eq!(
        bad.check().unwrap_err().setting,
        crate::Setting::StandbyPrice
    );
    let bad = crate::Settings {
        resume_secs: Some(0),
        ..tier.clone()
    };
    assert_eq!(bad.check().unwrap_err().setting, crate::Setting::Resume);
    // Break-even: a 10-minute boot against 1% of the price is 1000 minutes, held at most a day.
    assert_eq!(sb.break_even_secs(600), 60_000);
    assert_eq!(
        crate::StandbyConfig {
            price_share: 0.0,
            ..sb
        }
        .break_even_secs(600),
        86_400
    );
    let settings = crate::Settings {
        standby_max_gpus: Some(20),
        standby_price_share: Some(1.5),
        ..Default::default()
    };
    assert_eq!(
        settings.check().unwrap_err().setting,
        crate::Setting::StandbyPrice
    );
    let settings = crate::Settings {
        standby_max_gpus: Some(20),
        ..Default::default()
    };
    assert!(settings.check().is_ok());
    assert!(settings.check_standby(10).is_err());
    let mut cfg = PlannerConfig::new(1.0);
    cfg.max_gpus = 100;
    settings.apply(&mut cfg);
    assert_eq!(cfg.standby.map(|s| s.max_gpus), Some(20));
    crate::Settings {
        standby_max_gpus: Some(0),
        ..Default::default()
    }
    .apply(&mut cfg);
    assert_eq!(cfg.standby, None, "0 turns the tier off");
}

#[test]
fn a_rise_is_due_a_boot_lead_before_the_minute_that_needs_more_gpus() {
    // 30 rps until 09:00, 100 rps after; 10 rps per GPU at 80% on 1.1 x the median: 5 GPUs,
    // then 14. The boot lead is 10 minutes.
    let dist = band(
        "2026-03-02T08:00:00Z",
        180,
        30.0,
        100.0,
        "2026-03-02T09:00:00Z",
    );
    let mut cfg = cfg10();
    cfg.boot_lead_secs = 600;
    let f = Forecast {
        distribution: &dist,
        levels: None,
    };
    let due = |now: &str, have: u32, horizon: i64| crate::rise_due(&f, &cfg, have, t(now), horizon);
    // Five GPUs: the rush at 09:00 is due at 08:50.
    assert_eq!(
        due("2026-03-02T08:10:00Z", 5, 3_600),
        Some(t("2026-03-02T08:50:00Z"))
    );
    // Beyond the horizon: nothing due.
    assert_eq!(due("2026-03-02T08:10:00Z", 5, 1_800), None);
    // Within the lead: due at once.
    assert_eq!(
        due("2026-03-02T08:55:00Z", 5, 3_600),
        Some(t("2026-03-02T08:55:00Z"))
    );
    // Enough GPUs for the rush: nothing due; too few for now: due at once.
    assert_eq!(due("2026-03-02T08:10:00Z", 14, 3_600), None);
    assert_eq!(
        due("2026-03-02T08:10:00Z", 4, 3_600),
        Some(t("2026-03-02T08:10:00Z"))
    );
    // A forecast that does not cover now says nothing.
    assert_eq!(due("2026-03-02T07:00:00Z", 0, 3_600), None);
}
