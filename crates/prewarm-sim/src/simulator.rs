//! The replay loop: a trace through a [`Policy`], step by step.
//!
//! Each step GPUs whose boot or resume has finished become ready, the policy decides with what it
//! knows before the step, its orders are applied (a boot order is billed at once and serves after
//! the boot time; terminations cancel the newest boots first; a stop moves a ready GPU into standby
//! at once; a resume is billed in full from the order and serves after the resume time, unless it
//! fails, which it does with the configured share after [`StandbySim::FAILED_RESUME_SECS`], and
//! the GPU is gone), then [`Accounting`] serves the step's requests.

use chrono::{DateTime, Duration, Utc};
use prewarm_planner::{
    accounting::{draw, Accounting, SimConfig, SimSummary, StandbySim, StepRecord},
    Decision, FleetState, Order,
};

/// Something that decides a fleet's orders step by step.
pub trait Policy {
    /// Name in reports.
    fn name(&self) -> &str;
    /// GPUs ready when the replay starts.
    fn initial_gpus(&self) -> u32;
    /// Decides at `now`; `past` holds the work of every step before `now` only (in the
    /// capacity's unit: requests for a request-counted fleet).
    fn decide(&mut self, now: DateTime<Utc>, past: &[f64], state: &FleetState) -> Decision;
    /// Whether the policy reads request counts instead of work (a request-counting autoscaler
    /// on an LLM fleet); its orders are still judged by the work they serve.
    fn plans_on_requests(&self) -> bool {
        false
    }
}

/// What a replay runs on, per step: the work the queue serves, the requests that carry it, and
/// what the policy reads (the work, unless a policy is sized on request counts).
#[derive(Debug, Clone, Copy)]
pub struct Traffic<'a> {
    /// What the policy reads of the steps before now.
    pub planned_on: &'a [f64],
    /// Work per step, in the capacity's unit.
    pub work: &'a [f64],
    /// Requests per step.
    pub requests: &'a [f64],
}

impl<'a> Traffic<'a> {
    /// A request-counted fleet's traffic: its work is its requests.
    pub fn requests(requests: &'a [f64]) -> Self {
        Self {
            planned_on: requests,
            work: requests,
            requests,
        }
    }

    /// An LLM fleet's traffic, planned on its work.
    pub fn work(work: &'a [f64], requests: &'a [f64]) -> Self {
        Self {
            planned_on: work,
            work,
            requests,
        }
    }
}

/// Replays `requests` (per step of `step_secs`, the first step starting at `start`) through
/// `policy`: a request-counted fleet ([`simulate_traffic`] for any).
pub fn simulate(
    start: DateTime<Utc>,
    step_secs: i64,
    requests: &[f64],
    policy: &mut dyn Policy,
    cfg: &SimConfig,
) -> (Vec<StepRecord>, SimSummary) {
    simulate_from(
        0,
        start,
        step_secs,
        Traffic::requests(requests),
        policy,
        cfg,
    )
}

/// Replays `traffic` through `policy`.
pub fn simulate_traffic(
    start: DateTime<Utc>,
    step_secs: i64,
    traffic: Traffic<'_>,
    policy: &mut dyn Policy,
    cfg: &SimConfig,
) -> (Vec<StepRecord>, SimSummary) {
    simulate_from(0, start, step_secs, traffic, policy, cfg)
}

/// [`simulate_traffic`] from step `first` on: the steps before it are history the policy reads,
/// but nothing is run in them (a fleet that starts then, as a service started on imported
/// history). The records are those of the steps run.
pub fn simulate_from(
    first: usize,
    start: DateTime<Utc>,
    step_secs: i64,
    traffic: Traffic<'_>,
    policy: &mut dyn Policy,
    cfg: &SimConfig,
) -> (Vec<StepRecord>, SimSummary) {
    let mut draws = 0u64;
    let mut state = FleetState {
        gpus_ready: policy.initial_gpus(),
        ..FleetState::default()
    };
    // Ready time of each booting GPU, in the same order as `state.booting`.
    let mut ready_at: Vec<DateTime<Utc>> = Vec::new();
    // Per resuming GPU, in the same order as `state.resuming`: when it is done, and whether it
    // then serves (or failed).
    let mut resumed_at: Vec<(DateTime<Utc>, bool)> = Vec::new();
    let mut resume_draws = 0u64;
    let mut accounting = Accounting::new(step_secs, cfg);
    let mut records = Vec::with_capacity(traffic.work.len());
    let planned_on = if policy.plans_on_requests() {
        traffic.requests
    } else {
        traffic.planned_on
    };

    for (i, &work) in traffic.work.iter().enumerate().skip(first) {
        let arrivals = traffic.requests.get(i).copied().unwrap_or(work);
        let now = start + Duration::seconds(step_secs * i as i64);
        let mut k = 0;
        while k < ready_at.len() {
            if ready_at[k] <= now {
                ready_at.remove(k);
                state.booting.remove(k);
                state.gpus_ready += 1;
            } else {
                k += 1;
            }
        }
        let mut failed = 0;
        let mut k = 0;
        while k < resumed_at.len() {
            let (at, serves) = resumed_at[k];
            if at <= now {
                resumed_at.remove(k);
                state.resuming.remove(k);
                if serves {
                    state.gpus_ready += 1;
                } else {
                    failed += 1;
                }
            } else {
                k += 1;
            }
        }

        let decision = policy.decide(now, &planned_on[..i.min(planned_on.len())], &state);
        let (mut booted, mut terminated, mut stopped, mut resumed) = (0, 0, 0, 0);
        for order in &decision.orders {
            match *order {
                Order::Boot(n) => {
                    for _ in 0..n {
                        draws += 1;
                        let secs = cfg.boot.secs(draws);
                        state.booting.push(now);
                        ready_at.push(now + Duration::seconds(secs));
                    }
                    booted += n;
                }
                Order::Terminate(n) => {
                    for _ in 0..n {
                        if state.booting.pop().is_some() {
                            ready_at.pop();
                        } else if state.resuming.pop().is_some() {
                            resumed_at.pop();
                        } else if state.gpus_ready > 0 {
                            state.gpus_ready -= 1;
                        }
                    }
                    terminated += n;
                }
                Order::Stop(n) => {
                    let n = n.min(state.gpus_ready);
                    state.gpus_ready -= n;
                    state.standby += n;
                    stopped += n;
                }
                Order::Resume(n) => {
                    let n = n.min(state.standby);
                    let sb = cfg.standby.unwrap_or(StandbySim {
                        resume: cfg.boot,
                        price_share: 1.0,
                        fail_share: 0.0,
                        seed: 0,
                    });
                    for _ in 0..n {
                        resume_draws += 1;
                        let fails =
                            draw(sb.seed ^ 0x5EED_57A0_DB1E_0001, resume_draws) < sb.fail_share;
                        let secs = if fails {
                            StandbySim::FAILED_RESUME_SECS
                        } else {
                            sb.resume.secs(resume_draws)
                        };
                        state.standby -= 1;
                        state.resuming.push(now);
                        resumed_at.push((now + Duration::seconds(secs), !fails));
                    }
                    resumed += n;
                }
                Order::TerminateStandby(n) => {
                    let n = n.min(state.standby);
                    state.standby -= n;
                    terminated += n;
                }
            }
        }
        accounting.standby_step(i, state.standby, resumed, failed);

        let billed = state.provisioned();
        let (served, timed_out) = accounting.step(
            i,
            work,
            arrivals,
            state.gpus_ready,
            billed,
            booted,
            decision.breach.is_some(),
        );
        records.push(StepRecord {
            timestamp: now,
            gpus_ready: state.gpus_ready,
            gpus_booting: state.booting.len() as u32,
            gpus_billed: billed,
            boot_orders: booted,
            terminate_orders: terminated,
            gpus_standby: state.standby,
            gpus_resuming: state.resuming.len() as u32,
            stop_orders: stopped,
            resume_orders: resumed,
            demand_requests: arrivals,
            demand_work: work,
            served_requests: served,
            timed_out_requests: timed_out,
            forecast_p50_rps: decision.forecast_p50_rps,
            forecast_upper_rps: decision.forecast_upper_rps,
            reason: decision.reason,
        });
    }
    (records, accounting.summary(policy.name()))
}
