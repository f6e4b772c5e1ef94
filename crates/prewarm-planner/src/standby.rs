//! The standby tier: stopped GPUs that keep the model on their local disk, billed at a share of the
//! running price, and serving again a resume lead (a minute or two) after a resume order instead of
//! a cold boot lead.
//!
//! With a tier, [`crate::plan`] sizes the running GPUs a resume lead ahead (and keeps them for
//! [`crate::PlannerConfig::running_keep_secs`]), and the running and standby GPUs together a boot
//! lead ahead. [`tiered`] turns the running size into orders: a shortfall is resumed from standby
//! first and booted cold only for what standby cannot cover; a ready GPU the running tier no longer
//! wants is stopped when the plan wants it back within standby's break-even, and terminated
//! otherwise; standby GPUs beyond what the plan holds are terminated; and when the two tiers
//! together fall short of the plan a boot lead ahead, GPUs are booted cold to be stopped into
//! standby once ready. Without a tier none of this runs: the orders are
//! [`crate::orders_to_reach`]'s.

use chrono::{DateTime, Utc};

use crate::{Decision, FleetState, Order, PlannerConfig};

/// A fleet's standby tier.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct StandbyConfig {
    /// Time from a resume order to a GPU serving, seconds.
    pub resume_secs: i64,
    /// What a GPU in standby costs, as a share of the running price (volumes, addresses).
    pub price_share: f64,
    /// Most GPUs kept in standby.
    pub max_gpus: u32,
}

/// The standby tier's defaults.
pub mod defaults {
    /// Resume lead until a fleet's real resumes teach one, seconds: an instance start and a load of
    /// the weights from local disk.
    pub const RESUME_SECS: i64 = 120;
    /// A stopped instance's volumes and addresses, as a share of its running price.
    pub const PRICE_SHARE: f64 = 0.01;
    /// Longest a standby GPU is held for a need the forecast sees, seconds.
    pub const MAX_HOLD_SECS: i64 = 86_400;
}

impl StandbyConfig {
    /// The tier with its defaults and at most `max_gpus` GPUs in it.
    pub fn new(max_gpus: u32) -> Self {
        Self {
            resume_secs: defaults::RESUME_SECS,
            price_share: defaults::PRICE_SHARE,
            max_gpus,
        }
    }

    /// How long a GPU may wait in standby before it costs more than booting it cold again:
    /// `boot_lead / price_share` (a cold boot bills its boot lead at the full price), at most
    /// [`defaults::MAX_HOLD_SECS`].
    pub fn break_even_secs(&self, boot_lead_secs: i64) -> i64 {
        if self.price_share <= 0.0 {
            return defaults::MAX_HOLD_SECS;
        }
        ((boot_lead_secs.max(0) as f64 / self.price_share) as i64).min(defaults::MAX_HOLD_SECS)
    }
}

/// What the plan wants of the two tiers together, read off the distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolNeed {
    /// GPUs the plan wants a boot lead ahead (the hold after it).
    pub ahead: u32,
    /// The most GPUs the plan wants from now until `held_until`.
    pub held: u32,
    /// The end of the window standby holds GPUs for (the break-even, or the forecast's end).
    pub held_until: DateTime<Utc>,
    /// When that most is wanted.
    pub peak_at: DateTime<Utc>,
}

/// The orders that take the running tier from `state` to `desired` GPUs with standby able to hold
/// `pool_target`: resumes before cold boots, stops (of ready GPUs beyond `desired`) before
/// terminations, GPUs still booting or resuming kept when standby has room for them (they are
/// stopped once ready), and standby beyond `pool_target` terminated. `late` of the GPUs booting
/// land after the running tier's lead ([`FleetState::late_boots`]): what they would serve is
/// resumed from standby, and they join standby once ready.
pub fn orders_for(
    desired: u32,
    state: &FleetState,
    sb: &StandbyConfig,
    pool_target: u32,
    late: u32,
) -> Vec<Order> {
    let pool_target = pool_target.min(sb.max_gpus);
    let running = state.provisioned();
    let in_time = running.saturating_sub(late);
    let mut standby = state.standby;
    let mut orders = Vec::new();
    if state.short_of(desired, late) {
        let resume = (desired - in_time).min(standby);
        standby -= resume;
        if resume > 0 {
            orders.push(Order::Resume(resume));
        }
        let boot = desired.saturating_sub(running + resume);
        if boot > 0 {
            orders.push(Order::Boot(boot));
        }
    } else if desired < running {
        let surplus = running - desired;
        let room = pool_target.saturating_sub(standby);
        // Ready GPUs serve now: those stopped are the ones beyond what the running tier keeps.
        let stop = surplus
            .min(state.gpus_ready.saturating_sub(desired))
            .min(room);
        let coming = running - state.gpus_ready;
        let kept_for_pool = (room - stop).min(coming).min(surplus - stop);
        let terminate = surplus - stop - kept_for_pool;
        standby += stop;
        if stop > 0 {
            orders.push(Order::Stop(stop));
        }
        if terminate > 0 {
            orders.push(Order::Terminate(terminate));
        }
    }
    if standby > pool_target {
        orders.push(Order::TerminateStandby(standby - pool_target));
    }
    orders
}

/// The running tier after `orders` and the standby tier after them.
fn after(state: &FleetState, orders: &[Order]) -> (u32, u32) {
    let (mut running, mut standby) = (state.provisioned(), state.standby);
    for order in orders {
        match *order {
            Order::Boot(n) => running += n,
            Order::Terminate(n) => running = running.saturating_sub(n),
            Order::Stop(n) => {
                running = running.saturating_sub(n);
                standby += n;
            }
            Order::Resume(n) => {
                running += n;
                standby = standby.saturating_sub(n);
            }
            Order::TerminateStandby(n) => standby = standby.saturating_sub(n),
        }
    }
    (running, standby)
}

/// `decision` (sized for the running tier) with the tier's orders and a reason that says which
/// tier each order used and why. `pool` is what the plan wants of both tiers (`None` without a
/// forecast: standby keeps what the reactive rules let go, up to its limit); `late` GPUs booting
/// land after the running tier's lead.
pub fn tiered(
    mut decision: Decision,
    state: &FleetState,
    sb: &StandbyConfig,
    pool: Option<PoolNeed>,
    late: u32,
    cfg: &PlannerConfig,
) -> Decision {
    let desired = decision.desired_gpus;
    let running = state.provisioned();
    let pool_target = match pool {
        Some(p) => p.held.max(p.ahead).saturating_sub(desired),
        None => state.standby + running.saturating_sub(desired),
    }
    .min(sb.max_gpus);
    let mut orders = orders_for(desired, state, sb, pool_target, late);
    // Cold boots for the tiers together: what a boot lead ahead wants and neither tier will hold.
    let (run_after, standby_after) = after(state, &orders);
    let fill = pool.map_or(0, |p| {
        p.ahead
            .min(desired + pool_target)
            .saturating_sub(run_after + standby_after)
            .min(cfg.cap().saturating_sub(run_after))
    });
    if fill > 0 {
        match orders.iter_mut().find(|o| matches!(o, Order::Boot(_))) {
            Some(Order::Boot(n)) => *n += fill,
            _ => orders.push(Order::Boot(fill)),
        }
    }
    let mut notes = Vec::new();
    for order in &orders {
        match *order {
            Order::Resume(n) => notes.push(format!(
                "resume {n} from standby (serving in {})",
                prewarm_core::format_duration(sb.resume_secs)
            )),
            Order::Boot(n) if fill > 0 && n == fill => notes.push(format!(
                "boot {n} cold for standby (the plan wants {} GPUs a boot lead ahead)",
                pool.map_or(0, |p| p.ahead)
            )),
            Order::Boot(n) if fill > 0 => notes.push(format!(
                "boot {} cold (standby has too few), {fill} more for standby",
                n - fill
            )),
            Order::Boot(n) => notes.push(format!("boot {n} cold (standby has too few)")),
            Order::Stop(n) => notes.push(format!(
                "stop {n} into standby (wanted back by {})",
                pool.map_or_else(|| "a later rise".to_string(), |p| local_hm(p.peak_at, cfg))
            )),
            Order::Terminate(n) => notes.push(format!(
                "terminate {n} running (standby is full or not wanted)"
            )),
            Order::TerminateStandby(n) => notes.push(format!(
                "terminate {n} in standby (not wanted before {})",
                pool.map_or_else(|| "the limit".to_string(), |p| local_hm(p.held_until, cfg))
            )),
        }
    }
    if !notes.is_empty() {
        decision.reason = format!("{}; standby tier: {}", decision.reason, notes.join(", "));
    }
    decision.orders = orders;
    decision
}

fn local_hm(t: DateTime<Utc>, cfg: &PlannerConfig) -> String {
    t.with_timezone(&cfg.tz).format("%H:%M").to_string()
}
