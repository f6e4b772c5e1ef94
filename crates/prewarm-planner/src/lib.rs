//! The planner: how many GPUs should a fleet have, and what to order now.
//!
//! [`plan`] is a pure function of (now, recent demand, the latest forecast band, the fleet's
//! state, its config): no clock reads and no I/O, so the service, the simulator and the backtest
//! all call the same code, and a decision can be replayed and explained afterwards.
//!
//! Predictive pre-warm comes first: boot orders go out one boot lead time before the forecast's
//! upper quantile needs them. The reactive headroom rules are the fallback: they act at once when
//! demand runs above the forecast band, and alone when there is no forecast.

mod band;
mod overrides;
pub mod policies;
pub mod sim;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

pub use band::Band;
pub use overrides::{CalendarOverride, OverrideAction};

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
    /// When demand runs above the forecast band, scale up at once to keep load under this share
    /// (the seed's 60% by default; `prewarm tune` tries higher ones).
    pub miss_load: f64,
}

impl Default for ReactiveConfig {
    fn default() -> Self {
        Self {
            scale_up_load: 0.6,
            scale_down_load: 0.2,
            scale_down_after_secs: 1_800,
            miss_load: 0.6,
        }
    }
}

/// A fleet's planning settings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannerConfig {
    /// Requests per second one GPU serves at full load.
    pub gpu_rps: f64,
    /// Share of a GPU's capacity that predictive sizing plans to use.
    pub target_utilization: f64,
    /// Time from a boot order to a GPU serving.
    pub boot_lead_secs: i64,
    /// Window after the lead time that a boot order is sized for.
    pub hold_secs: i64,
    /// How far back recent demand keeps capacity from being terminated.
    pub recent_secs: i64,
    pub min_gpus: u32,
    pub max_gpus: u32,
    pub price_usd_per_gpu_hour: f64,
    /// Optional spending limit; caps GPUs at `budget / price`.
    pub budget_usd_per_hour: Option<f64>,
    pub over_max: OverMax,
    pub reactive: ReactiveConfig,
    /// Scheduled events on the fleet's wall clock.
    #[serde(skip)]
    pub overrides: Vec<CalendarOverride>,
    /// The fleet's time zone (for overrides).
    #[serde(skip)]
    pub tz: Tz,
}

impl PlannerConfig {
    /// Defaults for a GPU serving `gpu_rps` requests per second.
    pub fn new(gpu_rps: f64) -> Self {
        Self {
            gpu_rps,
            target_utilization: 0.8,
            boot_lead_secs: 600,
            hold_secs: 300,
            recent_secs: 900,
            min_gpus: 1,
            max_gpus: 10_000,
            price_usd_per_gpu_hour: 3.0,
            budget_usd_per_hour: None,
            over_max: OverMax::Honour,
            reactive: ReactiveConfig::default(),
            overrides: Vec::new(),
            tz: Tz::UTC,
        }
    }

    /// GPUs needed to serve `rps` at `utilization` of each GPU.
    pub fn gpus_for(&self, rps: f64, utilization: f64) -> u32 {
        if rps <= 0.0 || !rps.is_finite() {
            return 0;
        }
        let gpus = (rps / (self.gpu_rps * utilization) - 1e-9).ceil();
        gpus.clamp(0.0, u32::MAX as f64) as u32
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

/// Recent demand: average requests per second per step, the last step ending at `now`.
#[derive(Debug, Clone, Copy)]
pub struct Demand<'a> {
    pub step_secs: i64,
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
}

impl FleetState {
    /// GPUs paid for: ready and booting.
    pub fn provisioned(&self) -> u32 {
        self.gpus_ready + self.booting.len() as u32
    }
}

/// An order to the provisioner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Order {
    Boot(u32),
    Terminate(u32),
}

/// A plan wanted more GPUs than the limits allow.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Breach {
    pub wanted: u32,
    pub limit: u32,
    pub limited_by: &'static str,
    pub granted: u32,
}

/// What the planner decided, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub desired_gpus: u32,
    pub orders: Vec<Order>,
    pub reason: String,
    pub breach: Option<Breach>,
    pub forecast_p50_rps: Option<f64>,
    pub forecast_upper_rps: Option<f64>,
}

/// Everything a decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub now: DateTime<Utc>,
    pub demand: Demand<'a>,
    pub forecast: Option<&'a Band>,
    pub state: &'a FleetState,
    pub strategy: Strategy,
}

/// Decides the fleet's desired size and the orders that get it there.
pub fn plan(input: &PlanInput<'_>, cfg: &PlannerConfig) -> Decision {
    let now = input.now;
    let state = input.state;
    let provisioned = state.provisioned();
    let current = input.demand.last();
    let lead = Duration::seconds(cfg.boot_lead_secs);
    let hold = Duration::seconds(cfg.hold_secs);
    let adjusted = input
        .forecast
        .map(|band| overrides::apply(band, &cfg.overrides, cfg.tz));
    let usable = adjusted
        .as_ref()
        .filter(|b| input.strategy == Strategy::Predictive && b.covers(now, now + lead + hold));
    let (p50_now, upper_now) = match usable.and_then(|b| b.at(now)) {
        Some((p, u)) => (Some(p), Some(u)),
        None => (None, None),
    };
    let reactive_load = |gpus: u32| current / (gpus.max(1) as f64 * cfg.gpu_rps);

    let (wanted, reason) = match usable {
        Some(band) => {
            let upper_ahead = band.max_upper(now + lead, now + lead + hold);
            let upper_keep = band.max_upper(now, now + lead + hold);
            let recent_peak = input
                .demand
                .window(cfg.recent_secs)
                .iter()
                .copied()
                .fold(0.0, f64::max);
            let pre_warm = cfg.gpus_for(upper_ahead, cfg.target_utilization);
            let keep = cfg.gpus_for(upper_keep, cfg.target_utilization);
            let recent = cfg.gpus_for(recent_peak, cfg.target_utilization);
            // The forecast missed: the reactive headroom rule takes over at once.
            let missed = upper_now.is_some_and(|u| current > u);
            let headroom = cfg.gpus_for(current, cfg.reactive.miss_load);
            if missed {
                // Never scale down while demand runs above the band.
                let target = headroom.max(pre_warm).max(provisioned);
                (
                    target,
                    format!(
                        "reactive: demand {current:.2} rps is above the forecast band (upper {:.2} rps, load {:.0}% of {provisioned} GPUs); {target} GPUs keep load under {:.0}%",
                        upper_now.unwrap_or(0.0),
                        100.0 * reactive_load(provisioned),
                        100.0 * cfg.reactive.miss_load
                    ),
                )
            } else if pre_warm > provisioned {
                (
                    pre_warm,
                    format!(
                        "pre-warm: forecast upper {upper_ahead:.2} rps between {} and {} needs {pre_warm} GPUs at {:.0}% load; {provisioned} provisioned",
                        (now + lead).format("%H:%M"),
                        (now + lead + hold).format("%H:%M"),
                        100.0 * cfg.target_utilization
                    ),
                )
            } else {
                let floor = keep.max(recent).max(pre_warm);
                if floor < provisioned {
                    (
                        floor,
                        format!(
                            "scale down: forecast upper {upper_keep:.2} rps until {} and recent peak {recent_peak:.2} rps fit in {floor} GPUs",
                            (now + lead + hold).format("%H:%M")
                        ),
                    )
                } else {
                    (
                        provisioned,
                        "hold: capacity matches the forecast".to_string(),
                    )
                }
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

    let wanted_with_min = wanted.max(cfg.min_gpus);
    let (limit, limited_by) = cfg.limit();
    let cap = cfg.cap();
    let desired = wanted_with_min.min(cap);
    let breach = (wanted_with_min > limit).then(|| Breach {
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
    let orders = orders_to_reach(desired, provisioned);
    Decision {
        desired_gpus: desired,
        orders,
        reason,
        breach,
        forecast_p50_rps: p50_now,
        forecast_upper_rps: upper_now,
    }
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
    let capacity = gpus_ready as f64 * cfg.gpu_rps;
    demand
        .window(cfg.reactive.scale_down_after_secs)
        .iter()
        .all(|r| r / capacity < cfg.reactive.scale_down_load)
}

#[cfg(test)]
mod tests;
