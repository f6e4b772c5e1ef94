//! `prewarm simulate`: replay a trace through the planner and the alternatives a user has, and
//! compare GPU-hours with timed-out requests.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use prewarm_core::format_duration;
use prewarm_sim::{simulate, BootTime, SimSummary, StepRecord};
use serde::Serialize;

use crate::{
    args::PolicyName,
    replay::{Knobs, PlannerArgs, Replay, ReplayArgs, StandbyArgs},
};

#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    #[command(flatten)]
    pub replay: ReplayArgs,
    /// Policies to replay, comma-separated: predictive, reactive, static, clairvoyant, and
    /// hindsight (the cheapest GPU count per local hour of day chosen on the trace itself: how
    /// far a time-of-day schedule can get).
    #[arg(
        long,
        default_value = "predictive,reactive,static,clairvoyant,hindsight",
        value_delimiter = ','
    )]
    pub policies: Vec<PolicyName>,
    #[command(flatten)]
    pub planner: PlannerArgs,
    #[command(flatten)]
    pub standby: StandbyArgs,
    /// Folder for per-policy decisions.csv, summary.json and plot.svg.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The planner's settings: the SLO, and the expert overrides that replace what it chooses.
#[derive(Debug, Serialize)]
struct SimulateSummary<'a> {
    trace: &'a str,
    /// The fleet's time zone (its wall clock), when given.
    tz: Option<String>,
    step: String,
    gpu_rps: f64,
    boot: BootTime,
    timeout_secs: i64,
    price_usd_per_gpu_hour: f64,
    standby: Option<prewarm_sim::StandbySim>,
    scored_from: String,
    lower_bound_gpu_hours: f64,
    policies: Vec<PolicySummary>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PolicySummary {
    #[serde(flatten)]
    pub sim: SimSummary,
    /// Boot orders per scored day.
    pub boots_per_day: f64,
    pub cost_vs_clairvoyant: Option<f64>,
    pub cost_vs_hindsight: Option<f64>,
}

pub(crate) fn run(args: &SimulateArgs) -> anyhow::Result<()> {
    let mut replay = Replay::load(&args.replay)?;
    replay.sim.standby = args.standby.sim(replay.seed)?;
    let knobs = Knobs::from_args(&args.planner)?;
    let mut policies = Vec::new();
    for name in &args.policies {
        policies.push(replay.policy(*name, &knobs));
    }
    if replay.sim.standby.is_some() {
        let tiered = Knobs {
            standby_max: Some(args.standby.standby_max.unwrap_or(u32::MAX)),
            ..knobs
        };
        policies.push(Box::new(replay.predictive(&tiered, None)));
    }
    println!("{}", crate::output::describe(&replay.trace, &replay.name));
    println!(
        "replay: {} steps of {}, GPU serves {:.3} rps, boot {}, timeout {}, ${:.2}/GPU-hour; scored from {}",
        replay.requests.len(),
        format_duration(replay.step_secs),
        replay.gpu_rps,
        span(replay.sim.boot),
        format_duration(replay.sim.timeout_secs),
        replay.sim.price_usd_per_gpu_hour,
        replay.trace.start + chrono::Duration::seconds(replay.step_secs * replay.warmup_steps() as i64),
    );
    if let Some(sb) = replay.sim.standby {
        println!(
            "standby tier: resume {}, standby at {:.1}% of the running price, {:.0}% of resumes fail (then a cold boot)",
            span(sb.resume),
            100.0 * sb.price_share,
            100.0 * sb.fail_share,
        );
    }

    let results: Vec<(Vec<StepRecord>, SimSummary)> = std::thread::scope(|scope| {
        let handles: Vec<_> = policies
            .into_iter()
            .map(|mut p| {
                let replay = &replay;
                scope.spawn(move || {
                    simulate(
                        replay.trace.start,
                        replay.step_secs,
                        &replay.requests,
                        p.as_mut(),
                        &replay.sim,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a replay thread panicked"))
            .collect()
    });
    let summaries = with_ratio(
        results.iter().map(|(_, s)| s.clone()).collect(),
        replay.scored_days(),
    );
    let lower = replay.lower_bound_gpu_hours();
    print!("{}", table(&summaries, lower));

    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (records, summary) in &results {
            let sub = dir.join(&summary.policy);
            std::fs::create_dir_all(&sub)?;
            write_decisions(&sub.join("decisions.csv"), records)?;
        }
        let summary = SimulateSummary {
            trace: &replay.name,
            tz: replay.tz.map(|t| t.name().to_string()),
            step: format_duration(replay.step_secs),
            gpu_rps: replay.gpu_rps,
            boot: replay.sim.boot,
            timeout_secs: replay.sim.timeout_secs,
            price_usd_per_gpu_hour: replay.sim.price_usd_per_gpu_hour,
            standby: replay.sim.standby,
            scored_from: (replay.trace.start
                + chrono::Duration::seconds(replay.step_secs * replay.warmup_steps() as i64))
            .to_rfc3339(),
            lower_bound_gpu_hours: lower,
            policies: summaries.clone(),
        };
        crate::output::write_atomic(
            &dir.join("summary.json"),
            serde_json::to_string_pretty(&summary)?.as_bytes(),
        )?;
        crate::plot::capacity_svg(&dir.join("plot.svg"), &replay, &results)?;
        crate::report::simulate_report(
            &dir.join("report.html"),
            &replay,
            &results,
            &summaries,
            lower,
        )?;
        println!(
            "wrote decisions.csv per policy, summary.json, plot.svg and report.html to {}",
            dir.display()
        );
    }
    Ok(())
}

/// A boot or resume time as people read it: `10m`, or `6m to 10m (seed 1)`.
fn span(time: BootTime) -> String {
    match time {
        BootTime::Fixed { secs } => format_duration(secs),
        BootTime::Uniform {
            min_secs,
            max_secs,
            seed,
        } => format!(
            "{} to {} (seed {seed})",
            format_duration(min_secs),
            format_duration(max_secs)
        ),
    }
}

/// Each policy's totals with its boots per day over `scored_days` and its cost against the
/// clairvoyant and hindsight references, where they were replayed.
pub(crate) fn with_ratio(sims: Vec<SimSummary>, scored_days: f64) -> Vec<PolicySummary> {
    let cost_of = |name: &str| {
        sims.iter()
            .find(|s| s.policy == name)
            .map(|s| s.cost_usd)
            .filter(|c| *c > 0.0)
    };
    let (clairvoyant, hindsight) = (cost_of("clairvoyant"), cost_of("hindsight"));
    sims.into_iter()
        .map(|sim| PolicySummary {
            boots_per_day: if scored_days > 0.0 {
                sim.boots as f64 / scored_days
            } else {
                0.0
            },
            cost_vs_clairvoyant: clairvoyant.map(|c| sim.cost_usd / c),
            cost_vs_hindsight: hindsight.map(|c| sim.cost_usd / c),
            sim,
        })
        .collect()
}

pub(crate) fn table(rows: &[PolicySummary], lower_bound: f64) -> String {
    let ratio = |x: Option<f64>| x.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
    let mut out = format!(
        "{:<19} {:>10} {:>10} {:>10} {:>11} {:>9} {:>7} {:>10} {:>9} {:>14} {:>12}\n",
        "policy",
        "GPU-hours",
        "standby h",
        "cost $",
        "timed out",
        "p99 wait",
        "boots",
        "boots/day",
        "breaches",
        "x clairvoyant",
        "x hindsight"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<19} {:>10.1} {:>10.1} {:>10.2} {:>10.3}% {:>8.0}s {:>7} {:>10.1} {:>9} {:>14} {:>12}\n",
            r.sim.policy,
            r.sim.gpu_hours,
            r.sim.standby_gpu_hours,
            r.sim.cost_usd,
            100.0 * r.sim.timed_out_share,
            r.sim.p99_wait_secs,
            r.sim.boots,
            r.boots_per_day,
            r.sim.breaches,
            ratio(r.cost_vs_clairvoyant),
            ratio(r.cost_vs_hindsight),
        ));
    }
    out.push_str(&format!(
        "{:<19} {:>10.1}   (capacity matching every step, boot time free)\n",
        "lower bound", lower_bound
    ));
    out
}

fn write_decisions(path: &Path, records: &[StepRecord]) -> anyhow::Result<()> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([
        "timestamp",
        "gpus_ready",
        "gpus_booting",
        "gpus_billed",
        "boot_orders",
        "terminate_orders",
        "gpus_standby",
        "gpus_resuming",
        "stop_orders",
        "resume_orders",
        "demand_requests",
        "served_requests",
        "timed_out_requests",
        "forecast_p50_rps",
        "forecast_upper_rps",
        "reason",
    ])?;
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_default();
    for r in records {
        out.write_record([
            r.timestamp.to_rfc3339(),
            r.gpus_ready.to_string(),
            r.gpus_booting.to_string(),
            r.gpus_billed.to_string(),
            r.boot_orders.to_string(),
            r.terminate_orders.to_string(),
            r.gpus_standby.to_string(),
            r.gpus_resuming.to_string(),
            r.stop_orders.to_string(),
            r.resume_orders.to_string(),
            format!("{:.3}", r.demand_requests),
            format!("{:.3}", r.served_requests),
            format!("{:.3}", r.timed_out_requests),
            opt(r.forecast_p50_rps),
            opt(r.forecast_upper_rps),
            r.reason.clone(),
        ])?;
    }
    let bytes = out.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::output::write_atomic(path, &bytes)
}
