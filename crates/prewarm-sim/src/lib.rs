//! Simulation: replaying a request trace through a policy and scoring it on GPU-hours and timed-out
//! requests.
//!
//! [`simulator`] runs the replay loop; [`policies`] are the strategies `prewarm simulate` and
//! `tune` compare (this planner with its forecasts, the seed's reactive rules, a static fleet, a
//! clairvoyant and a best-in-hindsight schedule). The counting itself (the fluid FIFO queue and
//! billing) is [`prewarm_planner::accounting`], shared with the planner's SLO sizer and with
//! `prewarm demo`.

pub mod policies;
pub mod simulator;

pub use prewarm_planner::accounting::{
    window_totals, Accounting, BootTime, SimConfig, SimSummary, StandbySim, StepRecord,
    WindowTotals,
};
pub use simulator::{simulate, simulate_from, simulate_traffic, Policy, Traffic};

#[cfg(test)]
mod tests;
