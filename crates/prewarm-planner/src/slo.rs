//! Sizing to the SLO: which level of the demand distribution to plan on, hour by hour.
//!
//! A fleet states its SLO: at most `max_timeout_share` of requests may wait longer than
//! `timeout_secs`. Requests may queue up to the timeout, so a burst shorter than it is absorbed by
//! the queue rather than by new GPUs, and how much a level of the distribution loses depends on the
//! traffic's shape, not only on the level. So the level is chosen by replaying the recent past:
//! for each minute of the last days, the capacity each level would have given (its quantile at
//! full load, rounded up to whole GPUs) serves what arrived through the simulator's queue, and the
//! requests it times out and the GPU-minutes it costs are counted per hour of the fleet's local
//! day. Starting from the highest level everywhere, the level of the hour whose next step down
//! times out the fewest requests per GPU-minute saved is lowered, while the total stays within the
//! budget: the budget is spent where it buys the most, not evenly.
//!
//! The replay reads forecasts made a boot lead before each minute, out of sample, so the chosen
//! levels carry the forecast's real misses. What the replay cannot know (the days to come) is
//! watched by [`budget_share`]: what the fleet realised on recent days is compared with what the
//! replay predicted, and the budget the levels are chosen with follows the ratio.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use prewarm_forecast::{distribution::phase_of, DemandCalibration, Scored, NUM_LEVELS};

use crate::accounting::{Accounting, BootTime, SimConfig};

/// A fleet's service-level objective.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Slo {
    /// The largest share of requests that may time out (0.001 = 0.1%).
    pub max_timeout_share: f64,
    /// How long a request may wait in the queue before it is lost.
    pub timeout_secs: i64,
}

impl Default for Slo {
    fn default() -> Self {
        Self {
            max_timeout_share: 0.001,
            timeout_secs: 120,
        }
    }
}

impl Slo {
    /// Checks the SLO; the message names the setting and what it accepts.
    pub fn check(&self) -> Result<(), String> {
        crate::Settings {
            max_timeout_share: Some(self.max_timeout_share),
            queue_timeout_secs: Some(self.timeout_secs),
            ..Default::default()
        }
        .check()
        .map_err(|e| e.to_string())
    }
}

/// One past minute as the sizer replays it: what arrived, and the demand quantiles a forecast made
/// about a boot lead before gave it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayMinute {
    /// The minute's start.
    pub at: DateTime<Utc>,
    /// Requests per second that arrived.
    pub actual_rps: f64,
    /// The demand quantiles forecast for the minute a boot lead before.
    pub quantiles: [f64; NUM_LEVELS],
}

/// The level of [`prewarm_forecast::LEVELS`] to plan on, per hour of the fleet's local day.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LevelPlan {
    /// Index into the levels, per local hour of day.
    pub by_hour: [usize; 24],
    /// When the SLO is out of reach: the timed-out share the replay expects even at the top
    /// level everywhere (the traffic is less predictable than the SLO allows, or the limits are
    /// too low for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_reach: Option<OutOfReach>,
}

/// Why the SLO cannot be met, as the sizer's replay of the recent past found.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OutOfReach {
    /// The share of requests the replay times out at the top level everywhere.
    pub expected_timed_out_share: f64,
    /// Whether the fleet's limit (`max_gpus`, the budget) kept the top level from being held:
    /// raising it would help.
    pub limited: bool,
}

impl LevelPlan {
    /// One level for every hour.
    pub fn uniform(level: usize) -> Self {
        Self {
            by_hour: [level.min(NUM_LEVELS - 1); 24],
            out_of_reach: None,
        }
    }

    /// Why the SLO is out of reach, in words, for a decision's reason; `None` when it is not.
    pub fn out_of_reach_note(&self, slo: &Slo) -> Option<String> {
        let o = self.out_of_reach?;
        Some(format!(
            "SLO OUT OF REACH: the last week replayed at the top level still times out {:.3}% (SLO {:.3}%){}",
            100.0 * o.expected_timed_out_share,
            100.0 * slo.max_timeout_share,
            if o.limited {
                ", held back by the fleet's limit: raise max_gpus or the budget"
            } else {
                ": bursts no forecast or boot catches; a standby tier or a looser SLO would"
            }
        ))
    }

    /// The level the hours' levels sit around (their median): where the next sizing's search
    /// starts.
    pub fn day_level(&self) -> usize {
        let mut hours = self.by_hour;
        hours.sort_unstable();
        hours[12]
    }

    /// The level for the minute starting at `t`.
    pub fn level_at(&self, t: DateTime<Utc>, tz: Option<Tz>) -> usize {
        self.by_hour[phase_of(t, tz).hour]
    }
}

/// What the sizer found, for the decision's reason and the operator.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sizing {
    /// The level planned on per local hour.
    pub levels: LevelPlan,
    /// Minutes replayed.
    pub minutes: usize,
    /// Share of the replayed requests the chosen levels time out.
    pub timed_out_share: f64,
    /// The timed-out share they were chosen within (the SLO times the budget factor).
    pub budget_share: f64,
}

/// Longest stretch of minutes (a burst) whose requests the queue is credited with spreading.
pub const QUEUE_WINDOW_MINUTES: usize = 10;

/// The rate each minute's capacity must serve so that demand `d` (requests per second, one value a
/// minute) is served within a queue timeout of `timeout_minutes`. Requests may wait, so the
/// requests arriving in a short stretch of minutes `[a, b]` (a burst, up to
/// [`QUEUE_WINDOW_MINUTES`]) may be served at the rate `sum(d[a..=b]) / (b - a + 1 + timeout)`
/// from the first minute of the stretch whose demand reaches that rate (capacity before demand
/// arrives serves nothing) until the timeout after it, while the queue drains. And
/// demand that lasts must be served as it comes: a minute needs at least the least demand within
/// the timeout around it (on a rising ramp that lags by the timeout, which the queue covers). A
/// steady demand needs itself; a two-minute burst of four times the base needs twice it.
pub fn queue_need(d: &[f64], timeout_minutes: f64) -> Vec<f64> {
    let n = d.len();
    let timeout = timeout_minutes.max(0.0);
    let reach = timeout.floor() as usize;
    // A stretch [a, b] serves its rate over [f, b + reach] (cut at the end): at most `span`
    // minutes. For each first minute f and length, the largest rate of the stretches that serve
    // from f for that long; a rate is a maximum, so gathering them per minute afterwards gives
    // what writing each stretch's minutes would, to the bit.
    let span = QUEUE_WINDOW_MINUTES + reach;
    // What lasts: the least demand within the timeout around each minute.
    let lasting: Vec<f64> = (0..n)
        .map(|x| {
            d[x.saturating_sub(reach)..(x + reach + 1).min(n)]
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min)
                .max(0.0)
        })
        .collect();
    // Rates are never NaN nor -0 (sums of demand at least +0 over a positive count), so the
    // largest is kept by comparison.
    let mut longest = vec![f64::NEG_INFINITY; n * span];
    for a in 0..n {
        let mut sum = 0.0;
        for b in a..(a + QUEUE_WINDOW_MINUTES).min(n) {
            sum += d[b].max(0.0);
            let rate = sum / ((b - a + 1) as f64 + timeout);
            if let Some(f) = d[a..=b].iter().position(|v| *v >= rate).map(|i| a + i) {
                let len = (b + reach).min(n - 1) - f + 1;
                let slot = &mut longest[f * span + len - 1];
                if rate > *slot {
                    *slot = rate;
                }
            }
        }
    }
    // A stretch that serves from f for `len` minutes serves every shorter span from f too.
    for row in longest.chunks_exact_mut(span) {
        for j in (0..span - 1).rev() {
            if row[j + 1] > row[j] {
                row[j] = row[j + 1];
            }
        }
    }
    (0..n)
        .map(|x| {
            // The largest rate of the stretches serving minute x (those from x - j lasting more
            // than j minutes), and what lasts.
            let mut need = 0.0f64;
            for j in 0..span.min(x + 1) {
                let rate = longest[(x - j) * span + j];
                if rate > need {
                    need = rate;
                }
            }
            need.max(lasting[x])
        })
        .collect()
}

/// GPUs that do `rate` work per second, each doing `per_gpu` at the load planned on.
fn gpus_for(rate: f64, per_gpu: f64) -> u32 {
    crate::Capacity::requests(per_gpu).gpus_for(rate, 1.0)
}

/// The replay's queue: in work units already, each GPU doing `per_gpu` per second.
fn work_queue(per_gpu: f64, timeout_secs: i64) -> SimConfig {
    SimConfig {
        capacity: crate::Capacity::requests(per_gpu),
        timeout_secs,
        boot: BootTime::Fixed { secs: 0 },
        price_usd_per_gpu_hour: 0.0,
        score_from_step: 0,
        standby: None,
    }
}

/// What the sizer replays: the fleet's GPUs and limits, and how the planner moves them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayPlanner {
    /// Work a GPU does per second at the load planned on (the capacity's unit: requests, or
    /// GPU-seconds for an LLM fleet).
    pub gpu_rps: f64,
    /// Fewest GPUs the fleet keeps.
    pub min_gpus: u32,
    /// Boot lead, seconds.
    pub lead_secs: i64,
    /// Hold after the boot lead a pre-warm is sized for, seconds.
    pub hold_secs: i64,
    /// How far ahead a GPU is kept ([`crate::PlannerConfig::keep_secs`]).
    pub keep_secs: i64,
    /// The most GPUs the fleet may have ([`crate::PlannerConfig::cap`]).
    pub max_gpus: u32,
}

impl ReplayPlanner {
    /// How a fleet with these settings plans.
    pub fn of(cfg: &crate::PlannerConfig) -> Self {
        Self {
            gpu_rps: cfg.capacity.per_gpu() * cfg.target_utilization,
            min_gpus: cfg.min_gpus,
            lead_secs: cfg.boot_lead_secs,
            hold_secs: cfg.hold_secs,
            keep_secs: cfg.running_keep_secs(),
            max_gpus: cfg.cap(),
        }
    }
}

/// For every i, the largest of `values[i..(i + width).min(run_end[i])]` (0 when empty), where
/// `run_end[i]` is the end of the run holding i (the same for a run's members): a window sliding
/// back through each run, in linear time.
fn sliding_max(values: &[u32], width: usize, run_end: &[usize]) -> Vec<u32> {
    let n = values.len();
    let mut out = vec![0u32; n];
    // The window's candidates, by index from the front (largest) to the back (smallest), their
    // values decreasing: the front is the window's largest.
    let mut window: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
    let mut i = n;
    while i > 0 {
        i -= 1;
        if i + 1 == run_end[i] {
            // The last minute of a run: a new window.
            window.clear();
        }
        while window.back().is_some_and(|&j| values[j] <= values[i]) {
            window.pop_back();
        }
        window.push_back(i);
        let end = (i + width).min(run_end[i]);
        while window.front().is_some_and(|&j| j >= end) {
            window.pop_front();
        }
        out[i] = window.front().map_or(0, |&j| values[j]);
    }
    out
}

/// Chooses the level per local hour that meets `budget_share` of timed-out requests on `minutes`
/// (consecutive or not, oldest first) at the least GPU-minutes, replaying the planner's capacity
/// at each level. `hint`, the day's level of the last sizing ([`LevelPlan::day_level`]), only
/// makes the search shorter.
pub fn choose_levels(
    minutes: &[ReplayMinute],
    planner: &ReplayPlanner,
    slo: &Slo,
    budget_share: f64,
    tz: Option<Tz>,
    hint: Option<usize>,
) -> Sizing {
    let ReplayPlanner {
        gpu_rps,
        min_gpus,
        hold_secs,
        keep_secs,
        max_gpus,
        ..
    } = *planner;
    let mut limited = false;
    let hours: Vec<usize> = minutes.iter().map(|m| phase_of(m.at, tz).hour).collect();
    // Runs of consecutive minutes in the same hour: each is replayed on its own (empty queue at
    // the start, what is still queued at the end counted as lost), so hours are independent.
    let mut runs: Vec<Vec<(usize, usize)>> = vec![Vec::new(); 24];
    let mut i = 0;
    while i < minutes.len() {
        let mut j = i + 1;
        while j < minutes.len()
            && hours[j] == hours[i]
            && minutes[j].at - minutes[j - 1].at == Duration::minutes(1)
        {
            j += 1;
        }
        runs[hours[i]].push((i, j));
        i = j;
    }
    let sim = work_queue(gpu_rps, slo.timeout_secs);
    // The planner's capacity at a level, as `plan` makes it: a minute's need is ordered a boot
    // lead before it and is ready from a hold before it, and nothing is terminated that a minute
    // within the keep window still needs. So at minute m the GPUs ready serve the largest need of
    // [m, m + hold), and those billed (booting included) the largest of [m, m + keep): a need
    // that comes and goes pays for its boot.
    let hold = (hold_secs / 60).max(1) as usize;
    let keep = (keep_secs / 60).max(1) as usize;
    // run_end[i]: the end of the run of consecutive minutes that holds minute i.
    let mut run_end = vec![minutes.len(); minutes.len()];
    for i in (0..minutes.len().saturating_sub(1)).rev() {
        run_end[i] = if minutes[i + 1].at - minutes[i].at == Duration::minutes(1) {
            run_end[i + 1]
        } else {
            i + 1
        };
    }
    let timeout_minutes = slo.timeout_secs as f64 / 60.0;
    // Requests timed out and GPU-minutes per local hour at level k, and whether the fleet's limit
    // cut the level's need.
    let replay_level = |k: usize| -> ([f64; 24], [f64; 24], bool) {
        let mut loss = [0.0f64; 24];
        let mut cost = [0.0f64; 24];
        let mut limited = false;
        // Per run of consecutive minutes, the queue-credited need at this level.
        let mut needs: Vec<u32> = Vec::with_capacity(minutes.len());
        let mut i = 0;
        while i < minutes.len() {
            let j = run_end[i];
            let d: Vec<f64> = minutes[i..j].iter().map(|m| m.quantiles[k]).collect();
            needs.extend(queue_need(&d, timeout_minutes).into_iter().map(|r| {
                let g = gpus_for(r, gpu_rps).max(min_gpus);
                limited |= g > max_gpus;
                g.min(max_gpus.max(min_gpus))
            }));
            i = j;
        }
        // The GPUs ready each minute: the level's. A standby tier's resumes are not credited:
        // the tier is the SLO's first defence against what the levels miss, on top of them
        // (crediting them let the running tier plan lower and time out more than without the
        // tier on four of seven traces).
        let ready = sliding_max(&needs, hold, &run_end);
        let billed = sliding_max(&needs, keep, &run_end);
        for h in 0..24 {
            for &(a, b) in &runs[h] {
                let mut acc = Accounting::new(60, &sim);
                let mut arrived = 0.0;
                let mut served = 0.0;
                for (n, i) in (a..b).enumerate() {
                    // Counted in work: the sizer's losses are shares of work, which the
                    // fleet's record (counted in requests) corrects through the budget.
                    let work = minutes[i].actual_rps.max(0.0) * 60.0;
                    arrived += work;
                    served += acc.step(n, work, work, ready[i], ready[i], 0, false).0;
                    cost[h] += billed[i] as f64;
                }
                loss[h] += (arrived - served).max(0.0);
            }
        }
        (loss, cost, limited)
    };
    let total: f64 = minutes.iter().map(|m| m.actual_rps.max(0.0) * 60.0).sum();
    let arrived: Vec<f64> = (0..24)
        .map(|h| {
            runs[h]
                .iter()
                .flat_map(|&(a, b)| minutes[a..b].iter())
                .map(|m| m.actual_rps.max(0.0) * 60.0)
                .sum()
        })
        .collect();
    // Levels are replayed only when the choice reads them: a higher level's capacity is never
    // less in any minute, so its losses are never more, and the uniform level below is found
    // by bisection; the greedy step reads the levels within SPREAD of it, the reach test the top.
    // Each hour's loss at a level is pooled half with what the same level lost in the other
    // hours (per request arriving): each hour is seen on a few days only, and a rare burst may
    // have missed it, so a level is not judged safe in one hour only because that hour was
    // lucky. Pooling keeps the level's total.
    let mut replayed: Vec<Option<([f64; 24], [f64; 24])>> = vec![None; NUM_LEVELS];
    let mut level_data = |k: usize| -> ([f64; 24], [f64; 24]) {
        if let Some(d) = replayed[k] {
            return d;
        }
        let (mut loss, cost, cut) = replay_level(k);
        limited |= k == NUM_LEVELS - 1 && cut;
        if total > 0.0 {
            let rate = loss.iter().sum::<f64>() / total;
            for h in 0..24 {
                loss[h] = (1.0 - POOLING) * loss[h] + POOLING * rate * arrived[h];
            }
        }
        replayed[k] = Some((loss, cost));
        (loss, cost)
    };
    let budget = budget_share.max(0.0) * total;
    // First the lowest level that keeps every hour together within the budget: one level for the
    // day, which the days to come hold to better than levels fitted hour by hour to a few days.
    // The losses fall as the level rises, so the lowest level within is found from the last
    // sizing's (`hint`: the days between move it a level or so, and each level read is a replay
    // of the week), or by bisection without one: the same level either way.
    let within = |loss: &[f64; 24]| loss.iter().sum::<f64>() <= budget + 1e-9;
    let top_level = NUM_LEVELS - 1;
    let uniform = match hint.map(|h| h.min(top_level)) {
        Some(mut k) if within(&level_data(k).0) => {
            while k > 0 && within(&level_data(k - 1).0) {
                k -= 1;
            }
            k
        }
        Some(mut k) => {
            while k < top_level && !within(&level_data(k + 1).0) {
                k += 1;
            }
            (k + 1).min(top_level)
        }
        None => {
            let (mut low, mut high) = (0, top_level);
            while low < high {
                let mid = (low + high) / 2;
                if within(&level_data(mid).0) {
                    high = mid;
                } else {
                    low = mid + 1;
                }
            }
            low
        }
    };
    let top: f64 = level_data(NUM_LEVELS - 1).0.iter().sum();
    let lowest = uniform.saturating_sub(SPREAD);
    // Then the budget is spent where it buys the most GPU-minutes, each hour within SPREAD levels
    // of that one.
    let start = (uniform + SPREAD).min(NUM_LEVELS - 1);
    let mut level = [start; 24];
    let mut spent: f64 = level_data(start).0.iter().sum();
    loop {
        // The hour whose next step down loses the fewest requests per GPU-minute saved.
        let mut best: Option<(usize, f64, f64)> = None;
        for h in 0..24 {
            let k = level[h];
            if k <= lowest || runs[h].is_empty() {
                continue;
            }
            let ((loss, cost), (loss_below, cost_below)) = (level_data(k), level_data(k - 1));
            let extra = (loss_below[h] - loss[h]).max(0.0);
            let saved = cost[h] - cost_below[h];
            if spent + extra > budget + 1e-9 {
                continue;
            }
            // A step that saves nothing is taken only when it also costs nothing.
            let rate = if saved > 0.0 {
                extra / saved
            } else if extra <= 0.0 {
                0.0
            } else {
                continue;
            };
            if best.is_none_or(|(_, r, _)| rate < r) {
                best = Some((h, rate, extra));
            }
        }
        let Some((h, _, extra)) = best else { break };
        level[h] -= 1;
        spent += extra;
    }
    // Hours the replay never saw plan at the busiest level chosen elsewhere.
    let seen_max = (0..24)
        .filter(|h| !runs[*h].is_empty())
        .map(|h| level[h])
        .max()
        .unwrap_or(NUM_LEVELS - 1);
    for h in 0..24 {
        if runs[h].is_empty() {
            level[h] = seen_max;
        }
    }
    // Out of reach: even the top level everywhere loses more than the SLO allows.
    let out_of_reach =
        (total > 0.0 && top > slo.max_timeout_share * total + 1e-9).then(|| OutOfReach {
            expected_timed_out_share: top / total,
            limited,
        });
    Sizing {
        levels: LevelPlan {
            by_hour: level,
            out_of_reach,
        },
        minutes: minutes.len(),
        timed_out_share: if total > 0.0 { spent / total } else { 0.0 },
        budget_share,
    }
}

/// How many levels an hour's level may sit from the one level that keeps the whole day within
/// the budget.
pub const SPREAD: usize = 1;

/// How much of each hour's loss at a level is taken from all hours' (per request arriving).
pub const POOLING: f64 = 0.5;

/// Minutes of the forecast's out-of-sample errors the sizer needs before it chooses levels: a day,
/// so that every hour of the local day is seen.
pub const MIN_REPLAY_MINUTES: usize = 1_440;

/// The minutes to replay from recorded errors: for each minute, the forecast a boot decision for
/// it would have read (the one made closest to, and at least, `lead_secs` before it; else the
/// furthest ahead there is), with its quantiles under `calibration`. Oldest first.
pub fn replay_minutes(
    records: &[Scored],
    calibration: &DemandCalibration,
    lead_secs: i64,
) -> Vec<ReplayMinute> {
    let better = |r: &Scored, old: &Scored| {
        let (a, b) = (r.horizon_secs >= lead_secs, old.horizon_secs >= lead_secs);
        match (a, b) {
            (true, false) => true,
            (false, true) => false,
            (true, true) => r.horizon_secs < old.horizon_secs,
            (false, false) => r.horizon_secs > old.horizon_secs,
        }
    };
    // The records by minute, each minute's in the order given (a stable sort: linear on records
    // already in order, as the service's are).
    let mut order: Vec<&Scored> = records.iter().collect();
    order.sort_by_key(|r| r.at);
    let mut best: Vec<&Scored> = Vec::new();
    for r in order {
        match best.last_mut() {
            Some(old) if old.at == r.at => {
                if better(r, old) {
                    *old = r;
                }
            }
            _ => best.push(r),
        }
    }
    best.into_iter()
        .filter_map(|r| {
            calibration.quantiles_of(r).map(|quantiles| ReplayMinute {
                at: r.at,
                actual_rps: r.actual_rps,
                quantiles,
            })
        })
        .collect()
}

/// The timed-out share the sizer may plan to spend on the replayed days. The replay is an
/// approximation of the fleet: it does not know the days to come (a rare burst the replayed days
/// missed), nor every GPU the planner holds between refits. So what the fleet realised over the
/// last [`REALISED_WINDOW_SECS`] is compared with what the replay predicted for it, and the budget
/// is the share that, at that ratio, realises [`REALISED_TARGET`] of the SLO:
/// `target * (predicted + prior) / (realised + prior)`, the prior ([`BUDGET_PRIOR`] of the SLO)
/// keeping a week without a burst from reading as a fleet that never loses. Between a hundredth of
/// the SLO and four times it; before a day of record, [`START_BUDGET`] of the SLO.
pub fn budget_share(realised: Option<f64>, predicted: Option<f64>, slo: &Slo) -> f64 {
    let target = REALISED_TARGET * slo.max_timeout_share;
    let prior = BUDGET_PRIOR * slo.max_timeout_share;
    let budget = match (realised, predicted) {
        (Some(r), Some(p)) => target * (p.max(0.0) + prior) / (r.max(0.0) + prior),
        _ => START_BUDGET * slo.max_timeout_share,
    };
    budget.clamp(0.01 * slo.max_timeout_share, 4.0 * slo.max_timeout_share)
}

/// The budget from the fleet's record over the last week and over its last day: the tighter of
/// the two. A bad day (a regime change: clients stopping, a new kind of burst) tightens the budget
/// at once, while a good day loosens it only as far as the week allows.
///
/// Before the fleet has a record, the replay of `replayed_minutes` is all the sizer knows, and a
/// replay shorter than the record's week has seen fewer of the rare bursts that a week holds: the
/// start budget shrinks with it (a day replayed, a seventh of the SLO). A loss in the first days
/// costs more than its requests: the record's last day tightens the budget at once, and its week
/// keeps it tight for a week.
pub fn budget_from_record(
    week: Option<f64>,
    last_day: Option<f64>,
    predicted: Option<f64>,
    replayed_minutes: usize,
    slo: &Slo,
) -> f64 {
    let budget = budget_share(week, predicted, slo).min(budget_share(last_day, predicted, slo));
    match week {
        Some(_) => budget,
        None => budget * (replayed_minutes as f64 / START_BUDGET_WEEK_MINUTES).min(1.0),
    }
}

/// Minutes a replay must hold for a fleet without a record to spend the whole start budget
/// ([`START_BUDGET`]): the record's week ([`REALISED_WINDOW_SECS`]).
const START_BUDGET_WEEK_MINUTES: f64 = (REALISED_WINDOW_SECS / 60) as f64;

/// The budget, as a share of the SLO, before the fleet has a record to compare with the replay:
/// the SLO itself. With no record the replay's prediction is the best estimate there is; a
/// tighter start (a tenth, as before) made a new fleet's first day cost a third more than the
/// reactive rules on the bundled trace (382 against 285 GPU-hours in `prewarm demo`), and the
/// record tightens the budget within a day if the replay was too hopeful. A replay shorter than a
/// week spends it in proportion ([`budget_from_record`]).
pub const START_BUDGET: f64 = 1.0;

/// The prior of the comparison of realised and predicted losses, as a share of the SLO.
pub const BUDGET_PRIOR: f64 = 0.1;

/// The share of the SLO the realised timed-out share is aimed at: below the SLO, since losses come
/// in rare bursts.
pub const REALISED_TARGET: f64 = 0.25;

/// How far back the realised timed-out share is counted: a week, as the calibration, so that one
/// rare burst keeps the margin up for days rather than hours.
pub const REALISED_WINDOW_SECS: i64 = 7 * 86_400;

/// The share of requests a fleet timed out over `work` (per minute, carried by `requests` per
/// minute) with `ready` GPUs each minute: the fleet's own record, replayed through the same
/// queue. A request-counted fleet's work is its requests.
pub fn realised_timed_out_share(
    work: &[f64],
    requests: &[f64],
    ready: &[u32],
    capacity: &crate::Capacity,
    slo: &Slo,
) -> f64 {
    let sim = SimConfig {
        capacity: *capacity,
        ..work_queue(1.0, slo.timeout_secs)
    };
    let mut acc = Accounting::new(60, &sim);
    let (mut arrived, mut lost) = (0.0, 0.0);
    for (i, ((w, q), r)) in work.iter().zip(requests).zip(ready).enumerate() {
        arrived += q.max(0.0);
        lost += acc.step(i, w.max(0.0), q.max(0.0), *r, *r, 0, false).1;
    }
    if arrived > 0.0 {
        lost / arrived
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prewarm_forecast::LEVELS;

    fn minute(i: i64) -> DateTime<Utc> {
        "2026-03-02T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::minutes(i)
    }

    #[test]
    fn each_minute_replays_the_forecast_made_nearest_the_lead_before_it() {
        // Forecasts made every 15 minutes with a 2-hour horizon, given out of order: each minute
        // replays the one made at least the 10-minute lead before it and nearest to it, or, with
        // none that early, the one made furthest ahead.
        let mut records = Vec::new();
        for origin in (0..24).rev() {
            for h in 0..120 {
                let at = 15 * origin + h;
                records.push(Scored {
                    at: minute(at),
                    horizon_secs: 60 * h,
                    median_rps: (at + h) as f64,
                    level_rps: 1.0,
                    actual_rps: 1.0,
                    floor_rps: 0.1,
                });
            }
        }
        // Two forecasts of the same minute at the same horizon: the first given counts.
        let mut twin = records[0];
        twin.median_rps = -1.0;
        records.push(twin);
        let calibration = DemandCalibration::fit(&records, None);
        let replay = replay_minutes(&records, &calibration, 600);
        assert_eq!(replay.len(), 15 * 23 + 120);
        for (i, m) in replay.iter().enumerate() {
            let i = i as i64;
            assert_eq!(m.at, minute(i));
            // The latest origin at least 10 minutes before the minute (the last is 345).
            let h = if i >= 10 {
                i - (15 * ((i - 10) / 15)).min(345)
            } else {
                i
            };
            let expected = calibration
                .quantiles(minute(i), 60 * h, (i + h) as f64, 1.0, 0.1)
                .unwrap();
            assert_eq!(m.quantiles, expected, "minute {i}");
        }
    }

    /// 1 GPU serves 1 rps; boots are instant, so the replay follows each minute's need.
    fn replayed() -> ReplayPlanner {
        ReplayPlanner {
            gpu_rps: 1.0,
            min_gpus: 0,
            lead_secs: 0,
            hold_secs: 60,
            keep_secs: 60,
            max_gpus: u32::MAX,
        }
    }

    /// Quantiles for a minute whose demand is `base` or, with probability `p`, `base + burst`.
    fn two_point(base: f64, burst: f64, p: f64) -> [f64; NUM_LEVELS] {
        LEVELS.map(|l| if l > 1.0 - p { base + burst } else { base })
    }

    #[test]
    fn a_burst_the_queue_absorbs_buys_no_gpu_and_one_it_cannot_does() {
        // 1 GPU serves 1 rps. Base load 3.6 rps; a one-minute burst of +2 rps every 10 minutes
        // (p = 0.1). With a two-minute timeout the queue spreads the burst over three minutes, so 4
        // GPUs lose nothing: the analytic least size, whatever level the burst sits at.
        let slo = Slo::default();
        let minutes: Vec<ReplayMinute> = (0..7 * 1_440)
            .map(|i| {
                let burst = i % 10 == 0;
                ReplayMinute {
                    at: minute(i),
                    actual_rps: 3.6 + if burst { 2.0 } else { 0.0 },
                    quantiles: two_point(3.6, 2.0, 0.1),
                }
            })
            .collect();
        let sizing = choose_levels(&minutes, &replayed(), &slo, 0.001, None, None);
        for h in 0..24 {
            let k = sizing.levels.by_hour[h];
            assert_eq!(gpus_for(minutes[0].quantiles[k], 1.0), 4, "hour {h}");
        }
        assert_eq!(sizing.timed_out_share, 0.0);

        // A burst of +12 rps for five minutes (longer than the queue can absorb) once an hour, at
        // minutes the distribution cannot tell apart (p = 5/60 every minute): planning on the base
        // would lose most of each burst, far over the budget, so the level holding the burst is
        // kept all day: 16 GPUs, the analytic least size that loses nothing.
        let minutes: Vec<ReplayMinute> = (0..7 * 1_440)
            .map(|i| {
                let burst = (30..35).contains(&(i % 60));
                ReplayMinute {
                    at: minute(i),
                    actual_rps: 3.6 + if burst { 12.0 } else { 0.0 },
                    quantiles: two_point(3.6, 12.0, 5.0 / 60.0),
                }
            })
            .collect();
        let sizing = choose_levels(&minutes, &replayed(), &slo, 0.001, None, None);
        for h in 0..24 {
            let k = sizing.levels.by_hour[h];
            assert_eq!(gpus_for(minutes[0].quantiles[k], 1.0), 16, "hour {h}");
        }
        assert_eq!(sizing.timed_out_share, 0.0);
    }

    #[test]
    fn a_search_started_from_the_last_levels_chooses_what_bisection_does() {
        // Noisy demand around 40 rps; each level a little more capacity than the one below.
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let minutes: Vec<ReplayMinute> = (0..3 * 1_440)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let noise = (state >> 11) as f64 / (1u64 << 53) as f64;
                let mut quantiles = [0.0; NUM_LEVELS];
                for (k, q) in quantiles.iter_mut().enumerate() {
                    *q = 40.0 + 1.5 * k as f64;
                }
                ReplayMinute {
                    at: minute(i),
                    actual_rps: 30.0 + 30.0 * noise.powi(4) + if i % 97 == 0 { 25.0 } else { 0.0 },
                    quantiles,
                }
            })
            .collect();
        let slo = Slo::default();
        let mut days = std::collections::BTreeSet::new();
        for budget in [0.0, 1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 1.0] {
            let bisected = choose_levels(&minutes, &replayed(), &slo, budget, None, None);
            days.insert(bisected.levels.day_level());
            for hint in 0..NUM_LEVELS + 2 {
                let from_hint =
                    choose_levels(&minutes, &replayed(), &slo, budget, None, Some(hint));
                assert_eq!(
                    from_hint, bisected,
                    "budget {budget}, search from level {hint}"
                );
            }
        }
        assert!(
            days.len() >= 3,
            "the budgets choose different levels: {days:?}"
        );
    }

    #[test]
    fn an_slo_out_of_reach_is_said_with_the_share_expected_and_whether_the_limit_caused_it() {
        let slo = Slo::default();
        // A steady 10 rps the distribution knows: reachable with 10 GPUs...
        let minutes: Vec<ReplayMinute> = (0..2 * 1_440)
            .map(|i| ReplayMinute {
                at: minute(i),
                actual_rps: 10.0,
                quantiles: two_point(10.0, 0.0, 0.0),
            })
            .collect();
        let sizing = choose_levels(&minutes, &replayed(), &slo, 0.001, None, None);
        assert_eq!(sizing.levels.out_of_reach, None);
        // ...not under a limit of 8: a fifth of the work waits past the timeout, and the limit
        // is named.
        let capped = ReplayPlanner {
            max_gpus: 8,
            ..replayed()
        };
        let sizing = choose_levels(&minutes, &capped, &slo, 0.001, None, None);
        let out = sizing.levels.out_of_reach.expect("out of reach");
        assert!(out.limited);
        assert!((out.expected_timed_out_share - 0.2).abs() < 0.01, "{out:?}");
        let note = sizing.levels.out_of_reach_note(&slo).unwrap();
        assert!(note.contains("raise max_gpus"), "{note}");
        // Bursts far above anything the distribution allows: out of reach without a limit.
        let bursty: Vec<ReplayMinute> = (0..2 * 1_440)
            .map(|i| ReplayMinute {
                at: minute(i),
                actual_rps: if i % 60 == 7 { 200.0 } else { 10.0 },
                quantiles: two_point(10.0, 0.0, 0.0),
            })
            .collect();
        let sizing = choose_levels(&bursty, &replayed(), &slo, 0.001, None, None);
        let out = sizing.levels.out_of_reach.expect("out of reach");
        assert!(
            !out.limited && out.expected_timed_out_share > 0.001,
            "{out:?}"
        );
        assert!(sizing
            .levels
            .out_of_reach_note(&slo)
            .unwrap()
            .contains("standby tier"));
    }

    #[test]
    fn the_budget_is_spent_where_it_saves_the_most() {
        // Two kinds of hour: in even hours a rare big burst (1 minute in 60, +20 rps), in odd hours
        // steady load. Dropping the burst level in even hours saves 20 GPUs for a few lost
        // requests; the odd hours have nothing to give. With a budget for the bursts, even hours
        // go to the base level; with none, they hold the burst.
        let minutes: Vec<ReplayMinute> = (0..7 * 1_440)
            .map(|i| {
                let hour = (i / 60) % 24;
                let burst = hour % 2 == 0 && i % 60 == 17;
                ReplayMinute {
                    at: minute(i),
                    actual_rps: 10.0 + if burst { 20.0 } else { 0.0 },
                    quantiles: two_point(10.0, 20.0, if hour % 2 == 0 { 0.02 } else { 0.0 }),
                }
            })
            .collect();
        let total: f64 = minutes.iter().map(|m| m.actual_rps * 60.0).sum();
        // A burst minute at 10 GPUs: 1,800 requests arrive, 1,800 - 600 wait; the next two
        // minutes have no spare capacity, so 1,200 are lost per burst, 84 bursts.
        let all_bursts = 84.0 * 1_200.0 / total;
        let generous = choose_levels(
            &minutes,
            &replayed(),
            &Slo::default(),
            all_bursts * 1.01,
            None,
            None,
        );
        let strict = choose_levels(&minutes, &replayed(), &Slo::default(), 1e-6, None, None);
        for h in (0..24).step_by(2) {
            let gpus =
                |sizing: &Sizing| gpus_for(minutes[0].quantiles[sizing.levels.by_hour[h]], 1.0);
            assert_eq!(gpus(&generous), 10, "hour {h}");
            assert_eq!(gpus(&strict), 30, "hour {h}");
        }
        assert!(
            (generous.timed_out_share - all_bursts).abs() < 1e-9,
            "{generous:?}"
        );
        assert_eq!(strict.timed_out_share, 0.0);
    }

    #[test]
    fn the_queue_spreads_a_burst_and_nothing_that_lasts() {
        // Steady demand needs itself.
        let steady = queue_need(&[5.0; 30], 2.0);
        assert!(steady.iter().all(|v| (v - 5.0).abs() < 1e-9), "{steady:?}");
        // A two-minute burst of four times the base, two-minute timeout: 2 x 4 / 4 = twice the
        // base, held while the queue drains; the minutes before it need only the base.
        let mut d = vec![1.0; 30];
        for v in &mut d[10..12] {
            *v = 4.0;
        }
        let need = queue_need(&d, 2.0);
        assert!(
            (need[10] - 2.0).abs() < 1e-9 && (need[11] - 2.0).abs() < 1e-9,
            "{need:?}"
        );
        assert!((need[9] - 1.0).abs() < 1e-9, "{need:?}");
        assert!((need[0] - 1.0).abs() < 1e-9 && (need[29] - 1.0).abs() < 1e-9);
        // A step up is needed from the step on, not before it.
        let mut step = vec![1.0; 30];
        for v in &mut step[15..] {
            *v = 8.0;
        }
        let need_step = queue_need(&step, 2.0);
        assert!(need_step[14] < 1.0 + 1e-9, "{need_step:?}");
        assert!((need_step[20] - 8.0).abs() < 1e-9, "{need_step:?}");
        // That capacity loses nothing through the simulator's queue; a GPU less does.
        let sim = work_queue(1.0 / 60.0, 120);
        let lost = |scale: f64| {
            let mut acc = Accounting::new(60, &sim);
            (0..30)
                .map(|i| {
                    let gpus = (need[i] * 60.0 * scale - 1e-9).ceil() as u32;
                    acc.step(i, d[i] * 60.0, d[i] * 60.0, gpus, gpus, 0, false)
                        .1
                })
                .sum::<f64>()
        };
        assert_eq!(lost(1.0), 0.0);
        assert!(lost(0.9) > 0.0);
    }

    /// [`queue_need`] as first written: every stretch's rate written over the minutes it serves.
    fn queue_need_by_writing(d: &[f64], timeout_minutes: f64) -> Vec<f64> {
        let n = d.len();
        let timeout = timeout_minutes.max(0.0);
        let reach = timeout.floor() as usize;
        let mut need = vec![0.0f64; n];
        for a in 0..n {
            let mut sum = 0.0;
            for b in a..(a + QUEUE_WINDOW_MINUTES).min(n) {
                sum += d[b].max(0.0);
                let rate = sum / ((b - a + 1) as f64 + timeout);
                if let Some(f) = (a..=b).find(|&f| d[f] >= rate) {
                    for slot in &mut need[f..=(b + reach).min(n - 1)] {
                        *slot = slot.max(rate);
                    }
                }
            }
            let lasting = d[a.saturating_sub(reach)..(a + reach + 1).min(n)]
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min)
                .max(0.0);
            need[a] = need[a].max(lasting);
        }
        need
    }

    #[test]
    fn the_queue_s_need_gathered_per_minute_is_what_writing_each_stretch_gives_to_the_bit() {
        let mut rng = prewarm_core::synth::Rng(5);
        for case in 0..400 {
            let n = rng.below(90) as usize;
            // Smooth demand (most stretches need no more than what lasts) and rough.
            let smooth = case % 3 == 0;
            let d: Vec<f64> = (0..n)
                .map(|_| match rng.below(10) {
                    _ if smooth => 100.0 + rng.below(20) as f64 / 7.0,
                    0 => 0.0,
                    1 => -0.0,
                    2 => f64::NAN,
                    3 => -1.5,
                    9 if case % 5 == 0 => f64::INFINITY,
                    4 => rng.below(400) as f64,
                    _ => rng.below(10_000) as f64 / 97.0,
                })
                .collect();
            let timeout = [0.0, 0.5, 1.0, 2.0, 3.7, 12.0, 60.0][case % 7];
            let (got, want) = (queue_need(&d, timeout), queue_need_by_writing(&d, timeout));
            assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "case {case}: {d:?} at {timeout}"
            );
        }
    }

    #[test]
    fn the_sliding_maximum_is_each_window_s_within_its_run() {
        let mut rng = prewarm_core::synth::Rng(9);
        for case in 0..300 {
            let n = rng.below(120) as usize;
            let values: Vec<u32> = (0..n).map(|_| rng.below(7) as u32).collect();
            // Runs of random lengths.
            let mut run_end = vec![0; n];
            let mut start = 0;
            while start < n {
                let end = (start + 1 + rng.below(40) as usize).min(n);
                run_end[start..end].fill(end);
                start = end;
            }
            let width = 1 + rng.below(35) as usize;
            let want: Vec<u32> = (0..n)
                .map(|i| {
                    values[i..(i + width).min(run_end[i])]
                        .iter()
                        .copied()
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            assert_eq!(sliding_max(&values, width, &run_end), want, "case {case}");
        }
    }

    #[test]
    fn a_bad_last_day_tightens_the_budget_at_once_and_a_good_one_loosens_it_only_with_the_week() {
        // A week of minutes replayed.
        const WEEK: usize = 7 * 1_440;
        let slo = Slo::default();
        let predicted = Some(0.0005);
        let week = budget_share(Some(0.0005), predicted, &slo);
        // The last day lost five times what the replay predicted: its tighter budget wins.
        let bad_day = budget_from_record(Some(0.0005), Some(0.0025), predicted, WEEK, &slo);
        assert!(bad_day < week, "{bad_day} against {week}");
        assert_eq!(bad_day, budget_share(Some(0.0025), predicted, &slo));
        // A last day that lost nothing does not loosen past what the week allows.
        let good_day = budget_from_record(Some(0.0005), Some(0.0), predicted, WEEK, &slo);
        assert_eq!(good_day, week);
        // Before a day of record, the start budget.
        assert_eq!(
            budget_from_record(None, None, predicted, WEEK, &slo),
            START_BUDGET * slo.max_timeout_share
        );
    }

    #[test]
    fn the_budget_shrinks_when_the_slo_was_missed_and_the_fleet_record_is_replayed() {
        let slo = Slo::default();
        // Before a record: the SLO itself (the replay is the best estimate there is).
        assert!((budget_share(None, None, &slo) - 0.001).abs() < 1e-12);
        // The fleet realised more than the replay predicted: plan on less, in proportion (with
        // the prior).
        let tight = budget_share(Some(0.0025), Some(0.0005), &slo);
        assert!((tight - 0.00025 * 0.0006 / 0.0026).abs() < 1e-12, "{tight}");
        // It realised nothing where the replay predicted some loss: plan on more.
        assert!(budget_share(Some(0.0), Some(0.001), &slo) > 0.00025);
        // 10 GPUs, 700 requests in one minute: 600 served at once, the rest within the timeout.
        let one = crate::Capacity::requests(1.0);
        let d = [700.0, 0.0, 0.0];
        let share = realised_timed_out_share(&d, &d, &[10, 10, 10], &one, &slo);
        assert_eq!(share, 0.0);
        let d = [2_000.0, 0.0, 0.0];
        let share = realised_timed_out_share(&d, &d, &[10, 10, 10], &one, &slo);
        assert!((share - 200.0 / 2_000.0).abs() < 1e-9, "{share}");
        assert!(Slo {
            max_timeout_share: 0.6,
            ..slo
        }
        .check()
        .is_err());
        assert!(Slo {
            timeout_secs: 0,
            ..slo
        }
        .check()
        .is_err());
    }
}
