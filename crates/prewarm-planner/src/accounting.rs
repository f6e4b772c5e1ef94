//! The simulator's accounting: a fleet's GPUs against its requests, minute by minute.
//!
//! Each step (a minute, or the trace's own interval when shorter) the step's work joins a
//! first-in first-out queue served at the capacity's rate per ready GPU ([`crate::capacity`]:
//! requests for a request-counted fleet, GPU-seconds of prompt and output tokens for an LLM
//! fleet); work that waited longer than the timeout is lost, and with it the requests that carried
//! it, counted as requests. Billing is per GPU-second from boot order to termination.
//! The simulator (`prewarm-sim`), the SLO sizer's replay of the last week ([`crate::slo`]) and
//! `prewarm demo` all count with this one [`Accounting`].

use chrono::{DateTime, Utc};

/// How long a boot takes.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum BootTime {
    /// Always this long.
    Fixed {
        /// The boot time, seconds.
        secs: i64,
    },
    /// Uniform between the two, drawn from a seeded generator (the same seed, the same run).
    Uniform {
        /// Shortest boot, seconds.
        min_secs: i64,
        /// Longest boot, seconds.
        max_secs: i64,
        /// Seed of the random draws (the same seed, the same result).
        seed: u64,
    },
}

impl BootTime {
    /// The `n`th draw (from 1) of this time, seconds: the fixed time, or a seeded uniform draw.
    pub fn secs(&self, n: u64) -> i64 {
        match *self {
            BootTime::Fixed { secs } => secs,
            BootTime::Uniform {
                min_secs,
                max_secs,
                seed,
            } => boot_secs(min_secs, max_secs, seed, n),
        }
    }

    /// The longest boot.
    pub fn max_secs(&self) -> i64 {
        match *self {
            BootTime::Fixed { secs } => secs,
            BootTime::Uniform { max_secs, .. } => max_secs,
        }
    }
}

/// Simulator settings.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct SimConfig {
    /// What one GPU does.
    pub capacity: crate::Capacity,
    /// A request waiting longer than this is lost, seconds.
    pub timeout_secs: i64,
    /// How long a boot takes.
    pub boot: BootTime,
    /// Price of a GPU-hour, US dollars.
    pub price_usd_per_gpu_hour: f64,
    /// Steps before this one run but are not counted in the summary (a warm-up during which
    /// forecasts have too little history).
    pub score_from_step: usize,
    /// The standby tier's resumes and price, when the fleet has one.
    pub standby: Option<StandbySim>,
}

/// How the simulator's standby tier behaves.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct StandbySim {
    /// How long a resume takes.
    pub resume: BootTime,
    /// A standby GPU's price as a share of the running price.
    pub price_share: f64,
    /// Share of resumes that fail (the cloud has no capacity for the stopped instance): such a
    /// resume is billed for [`StandbySim::FAILED_RESUME_SECS`] and the GPU is gone.
    pub fail_share: f64,
    /// Seed of the draws of failures (the same seed, the same run).
    pub seed: u64,
}

impl StandbySim {
    /// How long a failed resume takes to fail, seconds.
    pub const FAILED_RESUME_SECS: i64 = 60;
    /// Share of resumes that fail unless a run says otherwise.
    pub const DEFAULT_FAIL_SHARE: f64 = 0.05;
}

/// One row of `decisions.csv`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StepRecord {
    /// When the step or bucket starts.
    pub timestamp: DateTime<Utc>,
    /// GPUs serving.
    pub gpus_ready: u32,
    /// GPUs ordered and not yet serving.
    pub gpus_booting: u32,
    /// GPUs billed (ready and booting).
    pub gpus_billed: u32,
    /// GPUs ordered to boot this step.
    pub boot_orders: u32,
    /// GPUs ordered to terminate this step (standby ones included).
    pub terminate_orders: u32,
    /// GPUs in the standby tier (billed at its price, not in `gpus_billed`).
    pub gpus_standby: u32,
    /// GPUs resuming from standby (billed in full, in `gpus_billed`).
    pub gpus_resuming: u32,
    /// GPUs ordered to stop into standby this step.
    pub stop_orders: u32,
    /// GPUs ordered to resume from standby this step.
    pub resume_orders: u32,
    /// Requests that arrived this step.
    pub demand_requests: f64,
    /// Their work, in the capacity's unit (the requests again for a request-counted fleet;
    /// GPU-seconds for an LLM fleet).
    pub demand_work: f64,
    /// Requests served this step.
    pub served_requests: f64,
    /// Requests that waited past the timeout and were lost.
    pub timed_out_requests: f64,
    /// The demand distribution's median, requests per second.
    pub forecast_p50_rps: Option<f64>,
    /// The quantile planned on, requests per second.
    pub forecast_upper_rps: Option<f64>,
    /// Why, in words an operator reads.
    pub reason: String,
}

/// Totals of one replay.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SimSummary {
    /// The policy's name.
    pub policy: String,
    /// GPU-hours billed at the running price.
    pub gpu_hours: f64,
    /// GPU-hours in the standby tier (billed at its share of the price).
    pub standby_gpu_hours: f64,
    /// Cost in US dollars, standby included.
    pub cost_usd: f64,
    /// Requests that arrived.
    pub requests: f64,
    /// Requests that waited past the timeout and were lost.
    pub timed_out_requests: f64,
    /// Share of requests timed out.
    pub timed_out_share: f64,
    /// Resumes ordered from standby.
    pub resumes: u64,
    /// Of them, resumes that failed.
    pub failed_resumes: u64,
    /// 99th percentile of the wait, seconds (timed-out requests count as the timeout).
    pub p99_wait_secs: f64,
    /// GPUs booted.
    pub boots: u64,
    /// Steps where the plan wanted more than the limits allow.
    pub breaches: u64,
}

/// The `n`th uniform draw in [0, 1) of a seed (a SplitMix64 mix): the same seed gives the same
/// boots on every platform, here and at fake-cloud, which draws its instances' boot times the same
/// way, so a replay and the service boot alike.
pub fn draw(seed: u64, n: u64) -> f64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(n.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The `n`th boot time (from 1) drawn uniformly in `[min_secs, max_secs]` with `seed`.
pub fn boot_secs(min_secs: i64, max_secs: i64, seed: u64, n: u64) -> i64 {
    min_secs + (draw(seed, n) * (max_secs - min_secs).max(0) as f64) as i64
}

/// Queue and bill accounting of a replay: work joins a first-in first-out queue served at the
/// capacity's rate per ready GPU, work that waited past the timeout is lost with its requests,
/// and GPUs are billed per step. [`simulate`] uses it, and so does `prewarm demo`, whose GPUs come from the
/// provisioner instead of this module's boot model.
#[derive(Debug, Clone)]
pub struct Accounting {
    step_secs: i64,
    cfg: SimConfig,
    /// Queue of (arrival step, work still waiting, requests per unit of that work), oldest first.
    queue: std::collections::VecDeque<(usize, f64, f64)>,
    max_wait_steps: usize,
    /// served_by_wait[k]: requests served after waiting k steps.
    served_by_wait: Vec<f64>,
    gpu_secs: f64,
    standby_gpu_secs: f64,
    resumes: u64,
    failed_resumes: u64,
    timed_out_total: f64,
    scored_requests: f64,
    boots: u64,
    breaches: u64,
}

impl Accounting {
    /// Counts from nothing: no queue, nothing billed.
    pub fn new(step_secs: i64, cfg: &SimConfig) -> Self {
        let max_wait_steps = (cfg.timeout_secs / step_secs).max(0) as usize;
        Self {
            step_secs,
            cfg: *cfg,
            queue: Default::default(),
            max_wait_steps,
            served_by_wait: vec![0.0; max_wait_steps + 1],
            gpu_secs: 0.0,
            standby_gpu_secs: 0.0,
            resumes: 0,
            failed_resumes: 0,
            timed_out_total: 0.0,
            scored_requests: 0.0,
            boots: 0,
            breaches: 0,
        }
    }

    /// Step `i`: `work` (carried by `requests`) joins the queue, `ready` GPUs serve it, `billed`
    /// GPUs are paid for. Returns (served, timed out) requests. A request-counted fleet's work is
    /// its requests.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        i: usize,
        work: f64,
        requests: f64,
        ready: u32,
        billed: u32,
        booted: u32,
        breach: bool,
    ) -> (f64, f64) {
        let step_secs = self.step_secs;
        let (work, requests) = (work.max(0.0), requests.max(0.0));
        // Requests per unit of work: a step with work but no request count (or the reverse)
        // carries its work at the mean the requests give, never a division by zero.
        let per_work = if work > 0.0 { requests / work } else { 0.0 };
        self.queue.push_back((i, work, per_work));
        let mut capacity = self.cfg.capacity.served(ready, step_secs as f64);
        let mut served = 0.0;
        while capacity > 0.0 {
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            let take = front.1.min(capacity);
            front.1 -= take;
            capacity -= take;
            served += take * front.2;
            if front.0 >= self.cfg.score_from_step {
                self.served_by_wait[(i - front.0).min(self.max_wait_steps)] += take * front.2;
            }
            if front.1 <= 1e-9 {
                self.queue.pop_front();
            }
        }
        // Work that would have waited past the timeout by the end of the next step is lost.
        let mut timed_out = 0.0;
        while let Some(&(arrived, waiting, per)) = self.queue.front() {
            if (i + 1 - arrived) * step_secs as usize > self.cfg.timeout_secs as usize {
                timed_out += waiting * per;
                self.queue.pop_front();
            } else {
                break;
            }
        }
        if i >= self.cfg.score_from_step {
            self.timed_out_total += timed_out;
            self.gpu_secs += billed as f64 * step_secs as f64;
            self.scored_requests += requests;
            if breach {
                self.breaches += 1;
            }
            self.boots += booted as u64;
        }
        (served, timed_out)
    }

    /// Step `i` of the standby tier: `standby` GPUs held at its price, `resumed` resumes ordered,
    /// `failed` resumes that failed.
    pub fn standby_step(&mut self, i: usize, standby: u32, resumed: u32, failed: u32) {
        if i >= self.cfg.score_from_step {
            self.standby_gpu_secs += standby as f64 * self.step_secs as f64;
            self.resumes += resumed as u64;
            self.failed_resumes += failed as u64;
        }
    }

    /// Totals so far. Whatever is still queued was neither served nor lost: it is not counted.
    pub fn summary(&self, policy: &str) -> SimSummary {
        let total = self.scored_requests;
        let gpu_hours = self.gpu_secs / 3_600.0;
        let standby_gpu_hours = self.standby_gpu_secs / 3_600.0;
        let share = self.cfg.standby.map_or(0.0, |s| s.price_share);
        SimSummary {
            policy: policy.to_string(),
            gpu_hours,
            standby_gpu_hours,
            cost_usd: (gpu_hours + share * standby_gpu_hours) * self.cfg.price_usd_per_gpu_hour,
            resumes: self.resumes,
            failed_resumes: self.failed_resumes,
            requests: total,
            timed_out_requests: self.timed_out_total,
            timed_out_share: if total > 0.0 {
                self.timed_out_total / total
            } else {
                0.0
            },
            p99_wait_secs: p99_wait(
                &self.served_by_wait,
                self.timed_out_total,
                self.step_secs,
                self.cfg.timeout_secs,
            ),
            boots: self.boots,
            breaches: self.breaches,
        }
    }
}

/// The 99th percentile wait over served and timed-out requests (timed-out ones count as having
/// waited the timeout), at the step's resolution.
fn p99_wait(served_by_wait: &[f64], timed_out: f64, step_secs: i64, timeout_secs: i64) -> f64 {
    let total: f64 = served_by_wait.iter().sum::<f64>() + timed_out;
    if total <= 0.0 {
        return 0.0;
    }
    let mut seen = 0.0;
    for (k, n) in served_by_wait.iter().enumerate() {
        seen += n;
        if seen >= 0.99 * total {
            return (k as i64 * step_secs) as f64;
        }
    }
    timeout_secs as f64
}

/// Totals of a replay over part of its steps, read off its records: what `tune` scores a
/// setting on when it chooses on earlier days and reports on later ones.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct WindowTotals {
    /// GPU-hours billed at the running price.
    pub gpu_hours: f64,
    /// GPU-hours in the standby tier.
    pub standby_gpu_hours: f64,
    /// Requests that arrived.
    pub requests: f64,
    /// Requests that waited past the timeout and were lost.
    pub timed_out_requests: f64,
    /// Share of requests timed out.
    pub timed_out_share: f64,
    /// GPUs booted.
    pub boots: u64,
    /// Days the window covers.
    pub days: f64,
}

/// [`WindowTotals`] of `records` (one per step of `step_secs`) over `range`. A request counts as
/// timed out in the step it was lost, as the replay's own totals count it.
pub fn window_totals(
    records: &[StepRecord],
    range: std::ops::Range<usize>,
    step_secs: i64,
) -> WindowTotals {
    let range = range.start.min(records.len())..range.end.min(records.len());
    let days = (range.len() as i64 * step_secs) as f64 / 86_400.0;
    let rows = &records[range];
    let requests: f64 = rows.iter().map(|r| r.demand_requests.max(0.0)).sum();
    let timed_out: f64 = rows.iter().map(|r| r.timed_out_requests).sum();
    WindowTotals {
        gpu_hours: rows.iter().map(|r| r.gpus_billed as f64).sum::<f64>() * step_secs as f64
            / 3_600.0,
        standby_gpu_hours: rows.iter().map(|r| r.gpus_standby as f64).sum::<f64>()
            * step_secs as f64
            / 3_600.0,
        requests,
        timed_out_requests: timed_out,
        timed_out_share: if requests > 0.0 {
            timed_out / requests
        } else {
            0.0
        },
        boots: rows.iter().map(|r| r.boot_orders as u64).sum(),
        days,
    }
}
