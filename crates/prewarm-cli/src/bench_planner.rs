//! `prewarm bench planner`: how long the planner takes. A replay of a trace (by default the
//! first four weeks of the bundled office trace, a minute per step, refits every hour) is timed
//! whole, and each of its decisions and refits on its own.

use std::time::Instant;

use clap::Args;
use prewarm_sim::policies::Timings;

use crate::replay::{Knobs, PlannerArgs, Replay, ReplayArgs};

#[derive(Debug, Args)]
pub(crate) struct BenchPlannerArgs {
    #[command(flatten)]
    pub replay: ReplayArgs,
    #[command(flatten)]
    pub planner: PlannerArgs,
    /// Replay only the first this many days of the trace.
    #[arg(long, default_value_t = 28)]
    pub days: usize,
}

/// The `q` quantile of `values` (sorted in place), in milliseconds.
fn quantile_ms(values: &mut [u64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_unstable();
    let i = ((values.len() - 1) as f64 * q).round() as usize;
    values[i] as f64 / 1e6
}

pub(crate) fn run(args: &BenchPlannerArgs) -> anyhow::Result<()> {
    let mut replay_args = args.replay.clone();
    if replay_args.trace.is_none() {
        replay_args.trace = Some(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../fixtures/synthetic-office-ny-1m.csv"
            )
            .into(),
        );
        replay_args
            .tz
            .get_or_insert_with(|| "America/New_York".into());
    }
    anyhow::ensure!(args.days > 0, "--days must be at least 1");
    let mut replay = Replay::load(&replay_args)?;
    let keep = (args.days as i64 * 86_400 / replay.step_secs) as usize;
    replay.requests.truncate(keep);
    replay.work.truncate(keep);
    let knobs = Knobs::from_args(&args.planner)?;
    let mut policy = replay.predictive(&knobs, None);
    policy.timings = Some(Timings::default());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{}: {} steps of {}s ({:.1} days), refits every {}s; {threads} cores",
        replay.name,
        replay.requests.len(),
        replay.step_secs,
        (replay.requests.len() as i64 * replay.step_secs) as f64 / 86_400.0,
        replay.refit_secs,
    );
    let started = Instant::now();
    let (_, summary) = prewarm_sim::simulate_traffic(
        replay.trace.start,
        replay.step_secs,
        replay.traffic(),
        &mut policy,
        &replay.sim,
    );
    let wall = started.elapsed().as_secs_f64();
    let mut t = policy.timings.take().unwrap_or_default();
    let refit_total: u64 = t.refit_ns.iter().sum();
    println!(
        "replay: {wall:.2} s wall ({:.2} s in {} refits), {:.1} GPU-hours, {:.3}% timed out",
        refit_total as f64 / 1e9,
        t.refit_ns.len(),
        summary.gpu_hours,
        100.0 * summary.timed_out_share
    );
    println!(
        "refits spent {:.2} s fitting medians, {:.2} s calibrating distributions, {:.2} s sizing to the SLO",
        t.fit_ns as f64 / 1e9,
        t.calibrate_ns as f64 / 1e9,
        t.size_ns as f64 / 1e9
    );
    println!(
        "decide ({} decisions): p50 {:.4} ms, p99 {:.4} ms, max {:.4} ms",
        t.decide_ns.len(),
        quantile_ms(&mut t.decide_ns, 0.5),
        quantile_ms(&mut t.decide_ns, 0.99),
        quantile_ms(&mut t.decide_ns, 1.0),
    );
    println!(
        "refit (fit, calibration, distribution, SLO sizing): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        quantile_ms(&mut t.refit_ns, 0.5),
        quantile_ms(&mut t.refit_ns, 0.99),
        quantile_ms(&mut t.refit_ns, 1.0),
    );
    Ok(())
}
