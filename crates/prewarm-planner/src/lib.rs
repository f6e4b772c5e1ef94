//! The planner: how many GPUs should a fleet have, and what to order now.
//!
//! [`plan`] is a pure function of (now, recent demand, the demand distribution, the levels to plan
//! on, the fleet's state, its config): no clock reads and no I/O, so the service, the simulator and
//! `tune` all call the same code, and a decision can be replayed and explained afterwards.
//! [`decide`] adds what an operator set (pause, pin, forecast-only) as typed modes.
//!
//! Sizing is to the SLO ([`slo`]): each future minute needs the GPUs that serve its demand
//! quantile at the level chosen for its local hour, at full load (requests may queue up to the
//! timeout). Boot orders go out one boot lead before a minute needs them; nothing is terminated
//! that a minute within a boot lead (the break-even: a GPU dropped and booted again bills its
//! boot idle) still needs. When recent demand runs persistently above (or below) what the
//! distribution expected, the distribution is corrected by the ratio seen (a nowcast); with no
//! forecast, the seed's reactive headroom rules run alone.

pub mod accounting;
pub mod capacity;
mod overrides;
pub mod profile;
pub mod refit;
pub mod settings;
pub mod slo;
pub mod standby;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

pub use capacity::{Capacity, Load, TokenRates};
pub use overrides::{CalendarOverride, OverrideAction};
pub use prewarm_forecast::{DemandDistribution, LEVELS, NUM_LEVELS};
pub use profile::GpuProfile;
pub use settings::{Setting, SettingError, Settings};
pub use slo::{LevelPlan, Slo};
pub use standby::StandbyConfig;

/// What to do when the plan wants more GPUs than the limits allow.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum OverMax {
    /// Stay at the limit (the breach is reported).
    Honour,
    /// Go up to this share above the limit (e.g. 0.2 = 20%); the breach is reported.
    Exceed(f64),
}

/// The seed's reactive headroom strategy.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ReactiveConfig {
    /// Scale up when demand passes this share of capacity, counting GPUs still booting.
    pub scale_up_load: f64,
    /// Scale down one GPU when load has stayed under this share...
    pub scale_down_load: f64,
    /// ...for this long.
    pub scale_down_after_secs: i64,
    /// Expert override: when demand runs above the distribution's top quantile, keep at least
    /// this load on the GPUs at once (`None`: size on the corrected distribution only).
    pub miss_load: Option<f64>,
}

impl Default for ReactiveConfig {
    fn default() -> Self {
        Self {
            scale_up_load: 0.6,
            scale_down_load: 0.2,
            scale_down_after_secs: 1_800,
            miss_load: None,
        }
    }
}

/// A fleet's planning settings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannerConfig {
    /// What one GPU does: the unit of every demand rate the plan reads ([`capacity`]).
    pub capacity: Capacity,
    /// Share of a GPU's capacity that predictive sizing plans to use (1: full load, the queue
    /// absorbs what is short of a minute's burst; an expert override).
    pub target_utilization: f64,
    /// The fleet's SLO: the share of requests that may time out, and the queue timeout.
    pub slo: Slo,
    /// Expert override: plan on this quantile of the distribution everywhere instead of the
    /// levels the SLO sizer chooses.
    pub quantile: Option<f64>,
    /// Time from a boot order to a GPU serving.
    pub boot_lead_secs: i64,
    /// Window after the lead time that a boot order is sized for.
    pub hold_secs: i64,
    /// How far back recent demand is compared with the distribution (the nowcast).
    pub recent_secs: i64,
    /// Nothing is terminated that a minute within this many boot leads (and the hold) wants.
    pub keep_leads: f64,
    /// Fewest GPUs the fleet keeps.
    pub min_gpus: u32,
    /// Most GPUs the fleet may have.
    pub max_gpus: u32,
    /// Price of a GPU-hour, US dollars.
    pub price_usd_per_gpu_hour: f64,
    /// Optional spending limit; caps GPUs at `budget / price`.
    pub budget_usd_per_hour: Option<f64>,
    /// What to do when the plan wants more than the limits allow.
    pub over_max: OverMax,
    /// The reactive rules' settings.
    pub reactive: ReactiveConfig,
    /// Scheduled events on the fleet's wall clock.
    #[serde(skip)]
    pub overrides: Vec<CalendarOverride>,
    /// The fleet's time zone (for overrides).
    #[serde(skip)]
    pub tz: Tz,
    /// The standby tier (stopped GPUs resumed in a resume lead), when the fleet has one.
    pub standby: Option<StandbyConfig>,
}

impl PlannerConfig {
    /// Defaults for a GPU serving `gpu_rps` requests per second.
    pub fn new(gpu_rps: f64) -> Self {
        Self::with_capacity(Capacity::requests(gpu_rps))
    }

    /// Defaults for a GPU of this capacity.
    pub fn with_capacity(capacity: Capacity) -> Self {
        Self {
            capacity,
            target_utilization: defaults::TARGET_UTILIZATION,
            slo: Slo::default(),
            quantile: None,
            boot_lead_secs: defaults::BOOT_LEAD_SECS,
            hold_secs: defaults::HOLD_SECS,
            recent_secs: 1_200,
            keep_leads: defaults::KEEP_LEADS,
            min_gpus: defaults::MIN_GPUS,
            // Unlimited but for the hard limit: `simulate` and `tune` replay a trace whatever its
            // size; a fleet states its own `max_gpus`.
            max_gpus: settings::limits::MAX_GPUS,
            price_usd_per_gpu_hour: defaults::PRICE_USD_PER_GPU_HOUR,
            budget_usd_per_hour: None,
            over_max: OverMax::Honour,
            reactive: ReactiveConfig::default(),
            overrides: Vec::new(),
            tz: Tz::UTC,
            standby: None,
        }
    }

    /// GPUs needed to do `rate` work per second at `utilization` of each GPU.
    pub fn gpus_for(&self, rate: f64, utilization: f64) -> u32 {
        self.capacity.gpus_for(rate, utilization)
    }

    /// The most GPUs the limits allow, before any permitted excess.
    pub fn limit(&self) -> (u32, &'static str) {
        let by_budget = self
            .budget_usd_per_hour
            .map(|b| (b / self.price_usd_per_gpu_hour).floor().max(0.0) as u32);
        match by_budget {
            Some(b) if b < self.max_gpus => (b, "budget"),
            _ => (self.max_gpus, "max_gpus"),
        }
    }
}

impl PlannerConfig {
    /// How far ahead a GPU is kept for: [`PlannerConfig::keep_leads`] boot leads and the hold.
    pub fn keep_secs(&self) -> i64 {
        (self.keep_leads.max(1.0) * self.boot_lead_secs as f64) as i64 + self.hold_secs.max(60)
    }

    /// Time from an order to a GPU serving for the running tier: the resume lead with a standby
    /// tier, the boot lead without.
    pub fn running_lead_secs(&self) -> i64 {
        self.standby.map_or(self.boot_lead_secs, |s| {
            s.resume_secs.min(self.boot_lead_secs)
        })
    }

    /// How far ahead a running GPU is kept for: as long as without a standby tier
    /// ([`PlannerConfig::keep_secs`]). A GPU stopped sooner and wanted back within minutes must
    /// resume, which takes minutes the queue may not have: kept a resume lead's multiple only,
    /// the tier timed out more than no tier on NAB and on bursty traffic. The tier is the SLO's
    /// first defence, on top of what the fleet keeps running, and saves by stopping what it lets
    /// go instead of terminating it.
    pub fn running_keep_secs(&self) -> i64 {
        self.keep_secs()
    }

    /// How much recent demand a plan reads: the reactive rules' quiet period, and the nowcast's
    /// hour of lull.
    pub fn demand_window_secs(&self) -> i64 {
        self.reactive
            .scale_down_after_secs
            .max(4 * self.recent_secs)
    }

    /// The most GPUs a plan may have: the limit, plus the permitted excess under
    /// [`OverMax::Exceed`].
    pub fn cap(&self) -> u32 {
        let (limit, _) = self.limit();
        match self.over_max {
            OverMax::Honour => limit,
            OverMax::Exceed(share) => (limit as f64 * (1.0 + share.max(0.0))).floor() as u32,
        }
    }
}

/// Which rules plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Forecast-driven pre-warm with the reactive rules as fallback.
    Predictive,
    /// The reactive headroom rules alone.
    Reactive,
}

/// The planner's defaults, one set for the service, `simulate`, `tune` and the API.
pub mod defaults {
    /// Full load: the queue absorbs what is shorter than the timeout.
    pub const TARGET_UTILIZATION: f64 = 1.0;
    /// Pre-warm sizes each boot for the minute it lands; the keep window holds it after. A
    /// 5-minute hold cost more on four of the six traces the README measures, and timed out
    /// more requests on three.
    pub const HOLD_SECS: i64 = 60;
    /// Fewest GPUs a fleet keeps unless it says otherwise.
    pub const MIN_GPUS: u32 = 1;
    /// Most GPUs a fleet may have unless it says otherwise (the hard limit is
    /// [`crate::settings::limits::MAX_GPUS`]).
    pub const MAX_GPUS: u32 = 100;
    /// Boot lead until a fleet's real boots teach one, seconds.
    pub const BOOT_LEAD_SECS: i64 = 600;
    /// Price of a GPU-hour, US dollars.
    pub const PRICE_USD_PER_GPU_HOUR: f64 = 3.0;
    /// Requests per second one GPU serves, until a fleet says.
    pub const GPU_RPS: f64 = 1.0;
    /// The level planned on before the SLO sizer has seen a day of the forecast's errors.
    pub const START_LEVEL: f64 = 0.99;
    /// How far back the distribution is calibrated and the levels sized: a week, so every day of the
    /// week is in it, and a change of regime weighs in within days.
    pub const CALIBRATION_WINDOW_SECS: i64 = 7 * 86_400;

    /// How far ahead each forecast reaches (its calibration is by horizon, so every forecast, the
    /// service's and the simulator's, reaches as far).
    pub const FORECAST_HORIZON_SECS: i64 = 7_200;

    /// Before planning starts, forecasts are made this often (on the wall clock's hours) only to be
    /// scored: the service bootstraps a new fleet's calibration with backtest fits at the same times.
    /// Fits two hours apart (each reaches [`FORECAST_HORIZON_SECS`], so every minute is still
    /// scored once) halve a first refit's cost and keep the calibration's overall coverage within
    /// 0.02, but score each minute at fewer horizons: a fleet whose rush starts at 09:00 had its
    /// first decision boot 18 GPUs for a rush of 20.5 requests a second, against 19 or more with
    /// hourly fits, even with the hours alternating by day.
    pub const BOOTSTRAP_EVERY_SECS: i64 = 3_600;
    /// History each bootstrap fit is trained on at most: two weeks, so a fleet that arrives with
    /// three weeks of history bootstraps at the cost of two. On the office trace (its weekly season
    /// fitted) two weeks keep the calibration's coverage within 0.006 of three weeks' and the MASE
    /// at 0.285 against 0.264; one week loses the weekly season (p95 coverage 0.783 against
    /// 0.960). NAB and ServeGen hold less than two weeks before their scored origins.
    pub const BOOTSTRAP_TRAIN_SECS: i64 = 14 * 86_400;
    /// How long the bootstrap's fits reuse the seasons an earlier one decomposed
    /// (`prewarm_forecast::Forecaster`): the fits in between fit the trend alone, on the history
    /// less those seasons. The decomposition is most of a fit's cost; the seasons, learnt from
    /// days of history, move little in a few hours.
    pub const BOOTSTRAP_RESEASON_SECS: i64 = 6 * 3_600;
    /// The same for a decomposition with the weekly season too (a fleet that arrives with two
    /// weeks of history or more): a day. The weekly decomposition costs several times the daily
    /// one (four STL fits of twice the points, against one), and a weekly season moves less in a
    /// day than a daily one in six hours. On the office trace a day keeps the calibration's
    /// coverage within 0.004 of a decomposition at every origin from p50 to p99.9.
    pub const BOOTSTRAP_RESEASON_WEEKLY_SECS: i64 = 24 * 3_600;
    /// How long a calibration and the levels sized on it are kept by the refits after it: the
    /// refits within this of the last calibration fit a new median only. A week of errors moves
    /// little in 15 minutes, and the calibration and the sizer are most of a refit. The service
    /// and the simulator keep them alike, so a replay with refits more often than hourly plans as
    /// the service does.
    pub const RECALIBRATE_SECS: i64 = 3_600;
    /// How long a fleet's live fits reuse the ETS candidate its MSTL trend's search chose
    /// ([`prewarm_forecast::ModelSettings::trend_spec`]) before searching again: a search fits up
    /// to six candidates, and the choice is a slow property of the series. Six hours kept every
    /// bundled and synthetic replay within 0.7% of its GPU-hours and its timed-out share, or
    /// better; a day moved one bursty replay from 0.069% to 0.218% (docs/measurements.md).
    pub const TREND_SPEC_SECS: i64 = 21_600;

    /// History a fleet needs before its live fits reuse the trend's candidate
    /// ([`TREND_SPEC_SECS`]): in the first week each day changes what the series says (and
    /// reused there, a candidate moved a replay of random bursts at half past the hour from within
    /// the SLO to 0.32%), so every fit searches.
    pub const TREND_REUSE_HISTORY_SECS: i64 = 7 * 86_400;

    /// History a fit needs at least: a day (one day fits the daily season from that day alone,
    /// two days fit MSTL's daily and weekly seasons).
    pub const MIN_FIT_HISTORY_SECS: i64 = 86_400;

    /// History a fleet plans on forecasts from (the reactive rules before): a day, as soon as a
    /// fit can be made. Measured on the first 36 hours of the office trace: 0.89 x the reactive
    /// rules' GPU-hours at 0% timed out (with two days, as before, 1.00 x: the reactive rules ran
    /// all along).
    pub const MIN_PLAN_HISTORY_SECS: i64 = 86_400;

    /// Boot leads ahead a GPU is kept for: one is the break-even of a boot, and the forecast moves
    /// between refits (measured on the bundled and synthetic traces: a third as many boots as one
    /// lead, for the same cost or less).
    pub const KEEP_LEADS: f64 = 3.0;
}

/// Recent demand: average requests per second per step, the last step ending at `now`.
#[derive(Debug, Clone, Copy)]
pub struct Demand<'a> {
    /// Bucket width, seconds.
    pub step_secs: i64,
    /// Average requests per second per step, the last step ending now.
    pub rps: &'a [f64],
}

impl Demand<'_> {
    fn last(&self) -> f64 {
        self.rps.last().copied().unwrap_or(0.0)
    }

    fn window(&self, secs: i64) -> &[f64] {
        let steps = (secs / self.step_secs.max(1)).max(1) as usize;
        &self.rps[self.rps.len().saturating_sub(steps)..]
    }
}

/// The fleet as it is now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetState {
    /// GPUs serving.
    pub gpus_ready: u32,
    /// Order times of GPUs still booting.
    pub booting: Vec<DateTime<Utc>>,
    /// GPUs stopped in the standby tier (or stopping): not serving, billed at the standby price.
    pub standby: u32,
    /// Order times of GPUs resuming from standby.
    pub resuming: Vec<DateTime<Utc>>,
}

impl FleetState {
    /// GPUs of the running tier, paid in full: ready, booting and resuming.
    pub fn provisioned(&self) -> u32 {
        self.gpus_ready + self.booting.len() as u32 + self.resuming.len() as u32
    }

    /// GPUs booting that land (a boot lead after their order) later than the running tier's
    /// lead from `now`: with a standby tier, the boots a resume cannot replace in time. None
    /// without a tier (the running lead is the boot lead).
    pub fn late_boots(&self, now: DateTime<Utc>, cfg: &PlannerConfig) -> u32 {
        let ready_by = now + Duration::seconds(cfg.running_lead_secs());
        let boot_lead = Duration::seconds(cfg.boot_lead_secs);
        self.booting
            .iter()
            .filter(|ordered| **ordered + boot_lead > ready_by)
            .count() as u32
    }

    /// Whether the running tier needs orders to serve `desired` GPUs: more than it has, or, with
    /// GPUs in standby to resume, more than serve in time when `late` of the boots land after
    /// the running tier's lead ([`FleetState::late_boots`]).
    pub fn short_of(&self, desired: u32, late: u32) -> bool {
        let provisioned = self.provisioned();
        desired > provisioned || (desired > provisioned.saturating_sub(late) && self.standby > 0)
    }
}

/// An order to the provisioner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Order {
    /// Boot this many GPUs.
    Boot(u32),
    /// Terminate this many running GPUs (booting ones first, newest first; then resuming; then
    /// ready).
    Terminate(u32),
    /// Stop this many ready GPUs into the standby tier.
    Stop(u32),
    /// Resume this many GPUs from the standby tier.
    Resume(u32),
    /// Terminate this many GPUs of the standby tier.
    TerminateStandby(u32),
}

/// A plan wanted more GPUs than the limits allow.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Breach {
    /// GPUs the plan wanted.
    pub wanted: u32,
    /// The limit.
    pub limit: u32,
    /// What set the limit (`max_gpus` or `budget`).
    pub limited_by: &'static str,
    /// GPUs granted.
    pub granted: u32,
}

/// What the planner decided, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// GPUs the plan wants.
    pub desired_gpus: u32,
    /// Orders to send.
    pub orders: Vec<Order>,
    /// Why, in words an operator reads.
    pub reason: String,
    /// Set when the plan wanted more than the limits allow.
    pub breach: Option<Breach>,
    /// The distribution's median for this minute, requests per second.
    pub forecast_p50_rps: Option<f64>,
    /// The quantile planned on for this minute (after any correction), requests per second.
    pub forecast_upper_rps: Option<f64>,
}

/// The forecast a plan reads: the demand distribution and the level to plan on in each local
/// hour (`None`: [`defaults::START_LEVEL`], until the SLO sizer has chosen).
#[derive(Debug, Clone, Copy)]
pub struct Forecast<'a> {
    /// The demand distribution.
    pub distribution: &'a DemandDistribution,
    /// The level planned on per local hour.
    pub levels: Option<&'a LevelPlan>,
}

/// Everything a decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The moment decided at.
    pub now: DateTime<Utc>,
    /// Recent demand.
    pub demand: Demand<'a>,
    /// The forecast read.
    pub forecast: Option<Forecast<'a>>,
    /// The fleet's GPUs now.
    pub state: &'a FleetState,
    /// Which rules plan.
    pub strategy: Strategy,
}

/// The level a plan reads at `t`: the expert override's quantile, else the SLO sizer's level for
/// the local hour, else [`defaults::START_LEVEL`] until the sizer has chosen.
pub fn planned_level(cfg: &PlannerConfig, levels: Option<&LevelPlan>, t: DateTime<Utc>) -> usize {
    match (cfg.quantile, levels) {
        (Some(q), _) => level_index(q),
        (None, Some(levels)) => levels.level_at(t, Some(cfg.tz)),
        (None, None) => level_index(defaults::START_LEVEL),
    }
}

/// When the fleet must next be planned to catch a rise: a boot lead before the first minute of
/// `forecast` within `horizon_secs` of `now` whose planned level needs more GPUs than `have`
/// (clamped to `now`: a rise within the lead is due at once). `None` when no minute does, or
/// when the forecast does not cover `now`. A service that cannot plan every fleet in a tick
/// plans the soonest due first.
pub fn rise_due(
    forecast: &Forecast<'_>,
    cfg: &PlannerConfig,
    have: u32,
    now: DateTime<Utc>,
    horizon_secs: i64,
) -> Option<DateTime<Utc>> {
    let dist = forecast.distribution;
    let first = dist.index(now)?;
    let last = dist
        .median_rps
        .len()
        .min(first + (horizon_secs.max(0) / 60) as usize + 1);
    (first..last).find_map(|i| {
        let t = dist.start + Duration::minutes(i as i64);
        let q = dist.quantiles[i][planned_level(cfg, forecast.levels, t)];
        (cfg.gpus_for(q, cfg.target_utilization) > have)
            .then(|| (t - Duration::seconds(cfg.boot_lead_secs)).max(now))
    })
}

/// Index of the lowest level at or above `q` (the top level when none is).
pub fn level_index(q: f64) -> usize {
    LEVELS
        .iter()
        .position(|l| *l >= q - 1e-12)
        .unwrap_or(NUM_LEVELS - 1)
}

/// How recent demand compares with what the distribution expected of it, and the correction it
/// calls for: `q + offset_rps` for every quantile `q`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Nowcast {
    offset_rps: f64,
    /// Minutes compared.
    minutes: usize,
}

impl Nowcast {
    const NONE: Nowcast = Nowcast {
        offset_rps: 0.0,
        minutes: 0,
    };

    fn apply(&self, q: f64) -> f64 {
        (q + self.offset_rps).max(0.0)
    }

    fn note(&self, capacity: &Capacity) -> String {
        if self.offset_rps > 0.0 {
            format!(
                "; demand over the last {} min ran {} above the forecast's median, and the forecast is raised by that",
                self.minutes,
                capacity.rate(self.offset_rps)
            )
        } else {
            String::new()
        }
    }
}

/// Minutes of recent demand compared with the distribution before a correction is trusted.
const NOWCAST_MIN_MINUTES: usize = 10;

/// Minutes of an earlier forecast kept before a new one, so that recent demand can be compared
/// with what was expected of it right after a refit.
pub const NOWCAST_HISTORY_MINUTES: usize = 60;

/// Whether a minute's demand (at a time, against its quantiles) is a burst.
type BurstTest<'a> = dyn Fn(DateTime<Utc>, f64, &[f64; NUM_LEVELS]) -> bool + 'a;

/// Compares recent demand with the distribution's minutes. When the last minute ran above the
/// distribution's top quantile (demand the forecast all but ruled out), or most of the last
/// `recent_secs` ran above its 0.9 quantile (the forecast is short: a new rush, clients
/// arriving), the distribution is raised by the shortfall: the last minute's over its median, or
/// the median shortfall over the window, the larger. Boots ordered for a burst that then ends are
/// cancelled while they still boot. Demand running below the forecast lowers nothing: a quiet
/// hour says little of the rush after it (the refits and the SLO sizer bring the level down when
/// the fall lasts).
///
/// `is_burst(t, demand, quantiles)` says whether the last minute's demand is a burst: above the
/// top quantile, or with a standby tier (whose resumes catch a burst in minutes) above the level
/// planned on and more than the GPUs serving serve.
fn nowcast(
    dist: &DemandDistribution,
    demand: &Demand<'_>,
    now: DateTime<Utc>,
    recent_secs: i64,
    is_burst: &BurstTest<'_>,
) -> Nowcast {
    let steps = demand.window(recent_secs);
    let mut gaps = Vec::with_capacity(steps.len());
    let mut above = 0usize;
    let mut last_gap = None;
    for (k, actual) in steps.iter().enumerate() {
        let back = (steps.len() - k) as i64 * demand.step_secs;
        let at = now - Duration::seconds(back);
        let Some(i) = dist.index(at) else {
            continue;
        };
        let gap = actual - dist.median_rps[i];
        gaps.push(gap);
        above += usize::from(*actual > dist.quantiles[i][level_index(0.9)]);
        last_gap =
            (k + 1 == steps.len() && is_burst(at, *actual, &dist.quantiles[i])).then_some(gap);
    }
    let n = gaps.len();
    gaps.sort_by(f64::total_cmp);
    let sustained = (n >= NOWCAST_MIN_MINUTES && above * 10 >= n * 6)
        .then(|| gaps[n / 2])
        .filter(|g| *g > 0.0);
    match (sustained, last_gap) {
        (None, None) => Nowcast::NONE,
        (s, l) => Nowcast {
            offset_rps: s.unwrap_or(0.0).max(l.unwrap_or(0.0)),
            minutes: if s.is_some() { n } else { 1 },
        },
    }
}

/// Decides the fleet's desired size and the orders that get it there.
pub fn plan(input: &PlanInput<'_>, cfg: &PlannerConfig) -> Decision {
    let now = input.now;
    let state = input.state;
    let provisioned = state.provisioned();
    let current = input.demand.last();
    let lead = Duration::seconds(cfg.running_lead_secs());
    // With a standby tier the running tier plans a resume lead ahead, and a GPU booting cold
    // (for standby, or for a rise a boot lead away) may land after that: it is not counted as
    // serving then, and what it cannot serve is resumed from standby.
    let late = state.late_boots(now, cfg);
    let hold = Duration::seconds(cfg.hold_secs);
    let adjusted = input.forecast.map(|f| Forecast {
        distribution: f.distribution,
        levels: f.levels,
    });
    let adjusted_dist = adjusted.map(|f| overrides::apply(f.distribution, &cfg.overrides, cfg.tz));
    // The running lead is at most the boot lead: a distribution that reaches a boot lead and the
    // hold ahead serves both tiers.
    let usable = adjusted_dist.as_ref().filter(|d| {
        input.strategy == Strategy::Predictive
            && d.covers(now, now + Duration::seconds(cfg.boot_lead_secs) + hold)
    });
    let reactive_load = |gpus: u32| current / (gpus.max(1) as f64 * cfg.capacity.per_gpu());
    let level_at = |t: DateTime<Utc>| planned_level(cfg, adjusted.and_then(|f| f.levels), t);
    let mut p50_now = None;
    let mut planned_now = None;
    // With a standby tier: what the cold tier must hold (running and standby together).
    let mut pool: Option<standby::PoolNeed> = None;

    let (wanted, reason) = match usable {
        Some(dist) => {
            // With a standby tier a burst is demand above the level planned on that the GPUs
            // serving cannot serve (resumes catch it in minutes); without, demand above the top
            // quantile.
            let serving_rps =
                state.gpus_ready as f64 * cfg.capacity.per_gpu() * cfg.target_utilization;
            let is_burst = |t: DateTime<Utc>, actual: f64, q: &[f64; NUM_LEVELS]| {
                if cfg.standby.is_some() {
                    actual > q[level_at(t)] && actual > serving_rps
                } else {
                    actual > q[NUM_LEVELS - 1]
                }
            };
            let correction = nowcast(dist, &input.demand, now, cfg.recent_secs, &is_burst);
            // Demand at the planned level for every minute of the distribution, and what the
            // queue leaves each minute to serve.
            let planned: Vec<f64> = (0..dist.median_rps.len())
                .map(|i| {
                    let t = dist.start + Duration::minutes(i as i64);
                    correction.apply(dist.quantiles[i][level_at(t)])
                })
                .collect();
            let timeout_minutes = cfg.slo.timeout_secs as f64 / 60.0;
            let served = slo::queue_need(&planned, timeout_minutes);
            let need_of = |served: &[f64], t: DateTime<Utc>| -> (u32, f64) {
                let q = dist.index(t).map_or(0.0, |i| served[i]);
                (cfg.gpus_for(q, cfg.target_utilization), q)
            };
            let need = |t: DateTime<Utc>| need_of(&served, t);
            let peak_of = |served: &[f64],
                           from: DateTime<Utc>,
                           to: DateTime<Utc>|
             -> (u32, f64, DateTime<Utc>) {
                let mut best = (0, 0.0, from);
                let mut t = from;
                while t < to {
                    let (g, q) = need_of(served, t);
                    if g > best.0 || (g == best.0 && q > best.1) {
                        best = (g, q, t);
                    }
                    t += Duration::minutes(1);
                }
                best
            };
            let peak = |from: DateTime<Utc>, to: DateTime<Utc>| peak_of(&served, from, to);
            p50_now = dist
                .index(now)
                .map(|i| correction.apply(dist.median_rps[i]));
            planned_now = Some(need(now).1);
            // Demand above the top quantile is a miss, and nothing is terminated until demand is
            // back under it: the top quantile as forecast when only the last minute raised it (a
            // burst), as corrected when demand ran above the forecast for most of the window.
            let top_now = dist.at(now).map_or(0.0, |q| {
                if correction.minutes > 1 {
                    correction.apply(q[NUM_LEVELS - 1])
                } else {
                    q[NUM_LEVELS - 1]
                }
            });
            // A hold of zero still sizes the minute the boot lands.
            let hold = hold.max(Duration::minutes(1));
            let (pre_warm, q_ahead, at_ahead) = peak(now + lead, now + lead + hold);
            // Break-even: a GPU terminated now and wanted back within a boot lead bills its next
            // boot idle for longer than it saved; and the forecast moves between refits, so a GPU
            // is kept while any minute of the next few boot leads wants it (`keep_leads`).
            let keep_until = now + Duration::seconds(cfg.running_keep_secs());
            let (mut keep, q_keep, at_keep) = peak(now, keep_until);
            if let Some(sb) = cfg.standby {
                // Cold capacity: a boot lead ahead the running and standby tiers together serve
                // the distribution's top quantile (what a burst the running tier misses may need,
                // resumed within minutes), and standby holds what the break-even keeps.
                let top: Vec<f64> = dist
                    .quantiles
                    .iter()
                    .zip(&planned)
                    .map(|(q, p)| correction.apply(q[NUM_LEVELS - 1]).max(*p))
                    .collect();
                let served_top = slo::queue_need(&top, timeout_minutes);
                let peak_top = |from, to| peak_of(&served_top, from, to);
                let boot_lead = Duration::seconds(cfg.boot_lead_secs);
                let (ahead, _, _) = peak_top(now + boot_lead, now + boot_lead + hold);
                let (cold_keep, _, _) = peak(now, now + Duration::seconds(cfg.keep_secs()));
                let pool_until = dist
                    .end()
                    .min(now + Duration::seconds(sb.break_even_secs(cfg.boot_lead_secs)))
                    .max(now + Duration::seconds(cfg.keep_secs()));
                let (held, _, at_held) = peak_top(now, pool_until);
                // What standby cannot hold stays running; and what the last minutes' demand
                // needs (its queue drains over the timeout) is not stopped under it.
                let recent_peak = input
                    .demand
                    .window((cfg.slo.timeout_secs + 60).max(60))
                    .iter()
                    .copied()
                    .fold(0.0, f64::max);
                keep = keep
                    .max(cold_keep.saturating_sub(sb.max_gpus))
                    .max(cfg.gpus_for(recent_peak, cfg.target_utilization));
                pool = Some(standby::PoolNeed {
                    ahead,
                    held: held.max(cold_keep),
                    held_until: pool_until,
                    peak_at: at_held,
                });
            }
            let level_ahead = LEVELS[level_at(at_ahead)];
            let correction_note = correction.note(&cfg.capacity);
            // The expert override: answer a miss at once with the seed's headroom.
            let missed = current > top_now;
            // With a standby tier a burst above the planned level is caught by resumes, and
            // nothing is stopped while one lasts.
            let missed_level =
                cfg.standby.is_some() && dist.at(now).is_some_and(|q| is_burst(now, current, q));
            let headroom = cfg
                .reactive
                .miss_load
                .filter(|_| missed)
                .map_or(0, |load| cfg.gpus_for(current, load));
            if headroom > provisioned.max(pre_warm) {
                (
                    headroom,
                    format!(
                        "reactive: demand {} is above the distribution's top quantile ({}, load {:.0}% of {provisioned} GPUs); {headroom} GPUs keep load under {:.0}%",
                        cfg.capacity.rate(current),
                        cfg.capacity.rate(top_now),
                        100.0 * reactive_load(provisioned),
                        100.0 * cfg.reactive.miss_load.unwrap_or(1.0)
                    ),
                )
            } else if state.short_of(pre_warm, late) {
                let provisioned_note = if late > 0 {
                    format!("{provisioned} provisioned, {late} of them booting until after then")
                } else {
                    format!("{provisioned} provisioned")
                };
                (
                    pre_warm,
                    format!(
                        "pre-warm: p{} of demand at {} ({}) needs {pre_warm} GPUs at {:.0}% load; {provisioned_note} (SLO {}% timed out within {}){correction_note}",
                        level_name(level_ahead),
                        local_hm(at_ahead, cfg.tz),
                        cfg.capacity.rate(q_ahead),
                        100.0 * cfg.target_utilization,
                        100.0 * cfg.slo.max_timeout_share,
                        prewarm_core::format_duration(cfg.slo.timeout_secs),
                    ),
                )
            } else if keep < provisioned && !missed && !missed_level {
                (
                    keep,
                    format!(
                        "scale down: p{} of demand until {} peaks at {} ({}), which {keep} GPUs serve; none of the rest is wanted back before then{correction_note}",
                        level_name(LEVELS[level_at(at_keep)]),
                        local_hm(keep_until, cfg.tz),
                        cfg.capacity.rate(q_keep),
                        local_hm(at_keep, cfg.tz),
                    ),
                )
            } else {
                (
                    provisioned,
                    format!(
                        "hold: {provisioned} GPUs serve p{} of demand until {}{correction_note}",
                        level_name(LEVELS[level_at(at_keep)]),
                        local_hm(keep_until, cfg.tz)
                    ),
                )
            }
        }
        None => {
            let load = reactive_load(provisioned);
            let tag = if input.strategy == Strategy::Predictive {
                "no forecast yet, reactive"
            } else {
                "reactive"
            };
            if load > cfg.reactive.scale_up_load {
                let target = cfg.gpus_for(current, cfg.reactive.scale_up_load);
                (
                    target.max(provisioned),
                    format!(
                        "{tag}: load {:.0}% of {provisioned} GPUs (booting included) passed {:.0}%",
                        100.0 * load,
                        100.0 * cfg.reactive.scale_up_load
                    ),
                )
            } else if quiet_for(&input.demand, state.gpus_ready, cfg) && provisioned > cfg.min_gpus
            {
                (
                    provisioned - 1,
                    format!(
                        "{tag}: load under {:.0}% for {} min, one GPU less",
                        100.0 * cfg.reactive.scale_down_load,
                        cfg.reactive.scale_down_after_secs / 60
                    ),
                )
            } else {
                (provisioned, format!("{tag}: hold"))
            }
        }
    };
    // A boot in flight is not cancelled before it has had a chance to serve (the provisioner
    // terminates booting GPUs first): the cancelled boot bills its minutes for nothing, and the
    // fleet churns. The plan holds until the boots have landed, unless the fleet is above its
    // limit (an operator's pin or a drain override this in `decide`).
    let (wanted, reason) = if wanted < provisioned
        && !state.booting.is_empty()
        && provisioned <= cfg.cap()
        && cfg.standby.is_none()
    {
        (
            provisioned,
            format!(
                "hold: {} GPU(s) still booting are not cancelled before they serve (the plan would keep {wanted}: {reason})",
                state.booting.len()
            ),
        )
    } else {
        (wanted, reason)
    };
    let mut decision = limited(wanted, provisioned, reason, cfg, p50_now, planned_now);
    // Said in every decision while it lasts: what the SLO sizer found it cannot do.
    if let Some(note) = usable
        .and(input.forecast)
        .and_then(|f| f.levels)
        .filter(|_| cfg.quantile.is_none())
        .and_then(|l| l.out_of_reach_note(&cfg.slo))
    {
        decision.reason.push_str(&format!("; {note}"));
    }
    match cfg.standby {
        Some(sb) => standby::tiered(decision, state, &sb, pool, late, cfg),
        None => decision,
    }
}

/// The decision for `wanted` GPUs within the fleet's limits, breaches reported.
fn limited(
    wanted: u32,
    provisioned: u32,
    reason: String,
    cfg: &PlannerConfig,
    p50: Option<f64>,
    planned: Option<f64>,
) -> Decision {
    let wanted_with_min = wanted.max(cfg.min_gpus);
    let (limit, limited_by) = cfg.limit();
    let desired = wanted_with_min.min(cfg.cap());
    let breach = (wanted_with_min > limit).then_some(Breach {
        wanted: wanted_with_min,
        limit,
        limited_by,
        granted: desired,
    });
    let mut reason = reason;
    if let Some(b) = &breach {
        reason.push_str(&format!(
            "; LIMIT: wanted {} GPUs, {} allows {}, granted {}",
            b.wanted, b.limited_by, b.limit, b.granted
        ));
    }
    Decision {
        desired_gpus: desired,
        orders: orders_to_reach(desired, provisioned),
        reason,
        breach,
        forecast_p50_rps: p50,
        forecast_upper_rps: planned,
    }
}

/// A level as people write it: 0.99 as `99`, 0.995 as `99.5`.
fn level_name(level: f64) -> String {
    let pct = level * 100.0;
    if (pct - pct.round()).abs() < 1e-9 {
        format!("{pct:.0}")
    } else {
        format!("{pct:.1}")
    }
}

/// `HH:MM` on the fleet's wall clock.
fn local_hm(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%H:%M").to_string()
}

/// What an operator set, beside the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Plan and order.
    Act,
    /// Plan and record; order nothing (a shadow run).
    ForecastOnly,
    /// Paused by an operator: record what the plan would do, order nothing.
    Paused,
    /// Pinned by an operator to a size, until a time (or until unpinned).
    Pinned {
        /// A GPU count.
        gpus: u32,
        /// Until when (none: until cleared).
        until: Option<DateTime<Utc>>,
    },
    /// Being deleted: every GPU, running or in standby, is terminated (whatever `min_gpus`, a
    /// pin or a pause say), and the fleet is deleted once they are gone.
    Draining {
        /// When the deletion was asked for.
        since: DateTime<Utc>,
    },
}

impl Mode {
    /// The name stored with a decision.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Act => "act",
            Mode::ForecastOnly => "forecast-only",
            Mode::Paused => "paused",
            Mode::Pinned { .. } => "pinned",
            Mode::Draining { .. } => "draining",
        }
    }

    /// Whether the decision's orders are sent.
    pub fn orders(&self) -> bool {
        !matches!(self, Mode::ForecastOnly)
    }
}

/// [`plan`], then what an operator set: paused keeps the fleet as it is (recording what the plan
/// would do), pinned holds the pinned size (within the fleet's limit), forecast-only records the
/// plan without orders. The service's tick and the simulator both call this.
pub fn decide(input: &PlanInput<'_>, cfg: &PlannerConfig, mode: Mode) -> Decision {
    let mut decision = plan(input, cfg);
    let provisioned = input.state.provisioned();
    match mode {
        Mode::Act => {}
        Mode::Paused => {
            decision.desired_gpus = provisioned;
            decision.orders.clear();
            decision.reason = format!("paused by an operator (plan would be: {})", decision.reason);
        }
        Mode::Pinned { gpus, until } => {
            let pin = gpus.min(cfg.cap());
            // A pin above the limit (within the share an admin allowed) is a breach like the
            // plan's own, reported in the decision.
            let (limit, limited_by) = cfg.limit();
            decision.breach = (gpus > limit).then_some(Breach {
                wanted: gpus,
                limit,
                limited_by,
                granted: pin,
            });
            decision.desired_gpus = pin;
            decision.orders = match cfg.standby {
                // The GPUs a pin lets go are stopped into standby, within its limit.
                Some(sb) => standby::orders_for(
                    pin,
                    input.state,
                    &sb,
                    input.state.standby + provisioned.saturating_sub(pin),
                    0,
                ),
                None => orders_to_reach(pin, provisioned),
            };
            decision.reason = format!(
                "pinned to {pin} GPUs by an operator{}",
                until
                    .map(|u| format!(" until {}", u.to_rfc3339()))
                    .unwrap_or_default()
            );
            if let Some(b) = &decision.breach {
                decision.reason.push_str(&format!(
                    "; LIMIT: the pin is above {} ({}), allowed by exceed_max_share",
                    b.limited_by, b.limit
                ));
            }
        }
        Mode::Draining { since } => {
            decision.desired_gpus = 0;
            decision.breach = None;
            decision.orders.clear();
            if provisioned > 0 {
                decision.orders.push(Order::Terminate(provisioned));
            }
            if input.state.standby > 0 {
                decision
                    .orders
                    .push(Order::TerminateStandby(input.state.standby));
            }
            decision.reason = format!(
                "draining before deletion (asked at {}): {}",
                since.to_rfc3339(),
                if decision.orders.is_empty() {
                    "no GPU left; the fleet is deleted once the provisioner has confirmed"
                        .to_string()
                } else {
                    format!(
                        "terminating {provisioned} running GPUs and {} in standby",
                        input.state.standby
                    )
                }
            );
        }
        Mode::ForecastOnly => {
            decision.reason = format!("forecast-only (no orders sent): {}", decision.reason);
        }
    }
    decision
}

/// The orders that take a fleet from `provisioned` GPUs to `desired`.
pub fn orders_to_reach(desired: u32, provisioned: u32) -> Vec<Order> {
    match desired.cmp(&provisioned) {
        std::cmp::Ordering::Greater => vec![Order::Boot(desired - provisioned)],
        std::cmp::Ordering::Less => vec![Order::Terminate(provisioned - desired)],
        std::cmp::Ordering::Equal => Vec::new(),
    }
}

/// Whether demand stayed under the scale-down load on the ready GPUs for the whole quiet period.
fn quiet_for(demand: &Demand<'_>, gpus_ready: u32, cfg: &PlannerConfig) -> bool {
    let needed = (cfg.reactive.scale_down_after_secs / demand.step_secs.max(1)) as usize;
    if demand.rps.len() < needed || gpus_ready == 0 {
        return false;
    }
    let capacity = gpus_ready as f64 * cfg.capacity.per_gpu();
    demand
        .window(cfg.reactive.scale_down_after_secs)
        .iter()
        .all(|r| r / capacity < cfg.reactive.scale_down_load)
}

#[cfg(test)]
mod tests;
