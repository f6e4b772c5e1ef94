//! `prewarm simulate`: replay a trace through the planner and the alternatives a user has, and
//! compare GPU-hours with timed-out requests.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use prewarm_core::format_duration;
use prewarm_sim::{simulate_traffic, BootTime, SimSummary, StepRecord};
use serde::Serialize;

use crate::{
    args::PolicyName,
    replay::{Knobs, PlannerArgs, Replay, ReplayArgs, StandbyArgs},
};

#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    #[command(flatten)]
    pub replay: ReplayArgs,
    /// Policies to replay, comma-separated: predictive, reactive, hpa (the Kubernetes HPA or
    /// KEDA with --hpa-target and --hpa-scale-in), tuned-hpa (the cheapest HPA target and window
    /// within the SLO, chosen knowing the trace), static, clairvoyant, hindsight (the cheapest GPU
    /// count per local hour of day chosen on the trace itself), and on a token trace
    /// requests-sized (the predictive planner counting requests).
    #[arg(
        long,
        default_value = "predictive,reactive,hpa,tuned-hpa,static,clairvoyant,hindsight",
        value_delimiter = ','
    )]
    pub policies: Vec<PolicyName>,
    #[command(flatten)]
    pub planner: PlannerArgs,
    #[command(flatten)]
    pub standby: StandbyArgs,
    /// Folder for per-policy decisions.csv, summary.json, plot.svg and report.html (one page
    /// with the table, the settings and the charts, opened from disk).
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
    /// What one GPU does, as the replay counted it.
    capacity: prewarm_planner::Capacity,
    /// How the capacity was chosen.
    capacity_note: &'a str,
    /// The trace's token rates, when it has tokens.
    tokens: Option<String>,
    /// The SLO the predictive policy planned to and the hindsight schedule was chosen within.
    slo: f64,
    boot: BootTime,
    timeout_secs: i64,
    price_usd_per_gpu_hour: f64,
    standby: Option<prewarm_sim::StandbySim>,
    scored_from: String,
    lower_bound_gpu_hours: f64,
    policies: Vec<PolicySummary>,
    /// With several GPU profiles: each one's predictive replay at the SLO, cheapest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    profiles: Vec<ProfileRow>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PolicySummary {
    #[serde(flatten)]
    pub sim: SimSummary,
    /// Boot orders per scored day.
    pub boots_per_day: f64,
    pub cost_vs_clairvoyant: Option<f64>,
    pub cost_vs_hindsight: Option<f64>,
    /// Whether the policy kept its timed-out share within the SLO.
    pub slo_met: bool,
    /// GPU-hours and cost saved against the reactive rules (negative: spent more), when they
    /// were replayed.
    pub saved_vs_reactive_gpu_hours: Option<f64>,
    pub saved_vs_reactive_usd: Option<f64>,
}

/// One GPU profile's replay at the SLO.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ProfileRow {
    pub profile: String,
    pub price_usd_per_gpu_hour: f64,
    pub gpu_hours: f64,
    pub cost_usd: f64,
    pub timed_out_share: f64,
    pub slo_met: bool,
    pub cost_vs_clairvoyant: Option<f64>,
}

pub(crate) fn run(args: &SimulateArgs) -> anyhow::Result<()> {
    let mut replay = Replay::load(&args.replay)?;
    replay.sim.standby = args.standby.sim(replay.seed)?;
    let knobs = Knobs::from_args(&args.planner)?;
    let mut names = args.policies.clone();
    // On a token trace, the request-counting planner beside this one: what sizing on requests
    // costs an LLM fleet.
    if replay.capacity.is_tokens()
        && names.contains(&PolicyName::Predictive)
        && !names.contains(&PolicyName::RequestsSized)
    {
        let at = names
            .iter()
            .position(|n| *n == PolicyName::Predictive)
            .map_or(names.len(), |i| i + 1);
        names.insert(at, PolicyName::RequestsSized);
    }
    let mut policies: Vec<Box<dyn prewarm_sim::Policy + Send>> = Vec::new();
    let mut tuned_note = None;
    for name in &names {
        if *name == PolicyName::TunedHpa {
            // Built here to say what was chosen.
            let (hpa, met) = prewarm_sim::policies::tune_hpa(
                replay.trace.start,
                replay.traffic(),
                &replay.sim,
                &replay.hpa(),
                knobs.slo,
            );
            tuned_note = Some(format!(
                "tuned-hpa: target {:.0}%, scale-in {}: {} of {} targets x {} windows, chosen knowing the trace",
                100.0 * hpa.target,
                format_duration(hpa.scale_in_secs),
                if met { "the cheapest within the SLO" } else { "none met the SLO; the one that timed out least" },
                prewarm_sim::policies::TUNED_HPA_TARGETS.len(),
                prewarm_sim::policies::TUNED_HPA_SCALE_INS.len(),
            ));
            policies.push(Box::new(hpa));
        } else {
            policies.push(replay.policy(*name, &knobs));
        }
    }
    if replay.sim.standby.is_some() {
        let tiered = Knobs {
            standby_max: Some(args.standby.standby_max.unwrap_or(u32::MAX)),
            ..knobs
        };
        policies.push(Box::new(replay.predictive(&tiered, None)));
    }
    println!("{}", crate::output::describe(&replay.trace, &replay.name));
    if let Some(tokens) = replay.token_note() {
        println!("tokens: {tokens}");
    }
    println!(
        "replay: {} steps of {}; capacity {}; boot {}, timeout {}, ${:.2}/GPU-hour; SLO {:.3}% timed out; scored from {}",
        replay.work.len(),
        format_duration(replay.step_secs),
        replay.capacity_note,
        span(replay.sim.boot),
        format_duration(replay.sim.timeout_secs),
        replay.sim.price_usd_per_gpu_hour,
        100.0 * knobs.slo,
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
                    simulate_traffic(
                        replay.trace.start,
                        replay.step_secs,
                        replay.traffic(),
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
        knobs.slo,
    );
    let lower = replay.lower_bound_gpu_hours();
    print!("{}", table(&summaries, lower, knobs.slo));
    if let Some(note) = requests_sized_note(&replay, &knobs) {
        println!("{note}");
    }
    for note in out_of_reach_notes(&results, replay.warmup_steps()) {
        println!("{note}");
    }
    let min_history =
        prewarm_core::format_duration(prewarm_planner::defaults::MIN_PLAN_HISTORY_SECS);
    for note in no_forecast_notes(&results, replay.warmup_steps(), min_history) {
        println!("{note}");
    }
    if names.contains(&PolicyName::Hpa) {
        println!(
            "hpa: the Kubernetes HPA / KEDA rule, target {:.0}%, scale-in window {} (--hpa-target, --hpa-scale-in)",
            100.0 * replay.hpa.0,
            format_duration(replay.hpa.1)
        );
    }
    if let Some(note) = tuned_note {
        println!("{note}");
    }
    let profiles = if replay.profiles.len() > 1 {
        let rows = compare_profiles(&replay, &knobs, args.replay.price.is_some());
        print!("{}", profile_table(&rows, knobs.slo));
        rows
    } else {
        Vec::new()
    };

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
            capacity: replay.capacity,
            capacity_note: &replay.capacity_note,
            tokens: replay.token_note(),
            slo: knobs.slo,
            boot: replay.sim.boot,
            timeout_secs: replay.sim.timeout_secs,
            price_usd_per_gpu_hour: replay.sim.price_usd_per_gpu_hour,
            standby: replay.sim.standby,
            scored_from: (replay.trace.start
                + chrono::Duration::seconds(replay.step_secs * replay.warmup_steps() as i64))
            .to_rfc3339(),
            lower_bound_gpu_hours: lower,
            policies: summaries.clone(),
            profiles,
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
            knobs.slo,
        )?;
        println!(
            "wrote decisions.csv per policy, summary.json, plot.svg and report.html to {}",
            dir.display()
        );
    }
    Ok(())
}

/// A boot or resume time as people read it: `10m`, or `6m to 10m (seed 1)`.
pub(crate) fn span(time: BootTime) -> String {
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

/// Each policy's totals with its boots per day over `scored_days`, whether it met `slo`, its
/// cost against the clairvoyant and hindsight references, and what it saved against the reactive
/// rules, where those were replayed.
pub(crate) fn with_ratio(sims: Vec<SimSummary>, scored_days: f64, slo: f64) -> Vec<PolicySummary> {
    let row = |name: &str| sims.iter().find(|s| s.policy == name).cloned();
    let cost_of = |name: &str| row(name).map(|s| s.cost_usd).filter(|c| *c > 0.0);
    let (clairvoyant, hindsight) = (cost_of("clairvoyant"), cost_of("hindsight"));
    let reactive = row("reactive");
    sims.into_iter()
        .map(|sim| PolicySummary {
            boots_per_day: if scored_days > 0.0 {
                sim.boots as f64 / scored_days
            } else {
                0.0
            },
            cost_vs_clairvoyant: clairvoyant.map(|c| sim.cost_usd / c),
            cost_vs_hindsight: hindsight.map(|c| sim.cost_usd / c),
            slo_met: sim.timed_out_share <= slo + 1e-12,
            saved_vs_reactive_gpu_hours: reactive.as_ref().map(|r| r.gpu_hours - sim.gpu_hours),
            saved_vs_reactive_usd: reactive.as_ref().map(|r| r.cost_usd - sim.cost_usd),
            sim,
        })
        .collect()
}

pub(crate) fn table(rows: &[PolicySummary], lower_bound: f64, slo: f64) -> String {
    let ratio = |x: Option<f64>| x.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
    let mut out = format!(
        "{:<19} {:>10} {:>10} {:>10} {:>11} {:>6} {:>9} {:>7} {:>10} {:>9} {:>14} {:>12}\n",
        "policy",
        "GPU-hours",
        "standby h",
        "cost $",
        "timed out",
        "SLO",
        "p99 wait",
        "boots",
        "boots/day",
        "breaches",
        "x clairvoyant",
        "x hindsight"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<19} {:>10.1} {:>10.1} {:>10.2} {:>10.3}% {:>6} {:>8.0}s {:>7} {:>10.1} {:>9} {:>14} {:>12}\n",
            r.sim.policy,
            r.sim.gpu_hours,
            r.sim.standby_gpu_hours,
            r.sim.cost_usd,
            100.0 * r.sim.timed_out_share,
            if r.slo_met { "met" } else { "MISSED" },
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
    out.push_str(&format!(
        "SLO: at most {:.3}% of requests timed out.",
        100.0 * slo
    ));
    for name in ["predictive", "predictive+standby"] {
        let Some(p) = rows.iter().find(|r| r.sim.policy == name) else {
            continue;
        };
        let (Some(h), Some(usd), Some(reactive)) = (
            p.saved_vs_reactive_gpu_hours,
            p.saved_vs_reactive_usd,
            rows.iter().find(|r| r.sim.policy == "reactive"),
        ) else {
            continue;
        };
        let share = if reactive.sim.gpu_hours > 0.0 {
            100.0 * h / reactive.sim.gpu_hours
        } else {
            0.0
        };
        out.push_str(&format!(
            " {name} against the reactive rules: {} {:.1} GPU-hours ({:.1}%, ${:.2}), {:.3}% timed out against {:.3}%.",
            if h >= 0.0 { "saves" } else { "spends" },
            h.abs(),
            share.abs(),
            usd.abs(),
            100.0 * p.sim.timed_out_share,
            100.0 * reactive.sim.timed_out_share
        ));
    }
    out.push('\n');
    out
}

/// For each policy whose decisions said the SLO was out of reach (the planner's sizer found even
/// its top level times out more than the SLO on the week before): in how many scored decisions,
/// and the worst share it expected.
fn out_of_reach_notes(results: &[(Vec<StepRecord>, SimSummary)], from: usize) -> Vec<String> {
    let mut notes = Vec::new();
    for (records, summary) in results {
        let scored = &records[from.min(records.len())..];
        let flagged: Vec<&StepRecord> = scored
            .iter()
            .filter(|r| r.reason.contains("SLO OUT OF REACH"))
            .collect();
        if flagged.is_empty() {
            continue;
        }
        let worst = flagged
            .iter()
            .filter_map(|r| {
                let tail = r.reason.split("still times out ").nth(1)?;
                tail.split('%').next()?.parse::<f64>().ok()
            })
            .fold(0.0, f64::max);
        let limited = flagged
            .iter()
            .any(|r| r.reason.contains("held back by the fleet's limit"));
        notes.push(format!(
            "{}: said the SLO was out of reach in {:.1}% of its decisions (its replay of the week before expected up to {worst:.3}% at the top level{})",
            summary.policy,
            100.0 * flagged.len() as f64 / scored.len().max(1) as f64,
            if limited { "; the limit held it back" } else { "" }
        ));
    }
    notes
}

/// For each predictive policy that planned some scored steps on the reactive rules because it had
/// no forecast yet (too little history before them): how many, so that a row equal to the
/// reactive one says why.
fn no_forecast_notes(
    results: &[(Vec<StepRecord>, SimSummary)],
    from: usize,
    min_history: String,
) -> Vec<String> {
    let mut notes = Vec::new();
    for (records, summary) in results {
        let scored = &records[from.min(records.len())..];
        let reactive = scored
            .iter()
            .filter(|r| r.reason.contains("no forecast yet, reactive"))
            .count();
        if reactive == 0 {
            continue;
        }
        notes.push(if reactive == scored.len() {
            format!(
                "{}: planned every scored step on the reactive rules: a forecast needs {min_history} of history before the step, and the trace never gave it that (a trace longer than that lets it forecast)",
                summary.policy
            )
        } else {
            format!(
                "{}: planned {:.1}% of the scored steps on the reactive rules, while its history was shorter than the {min_history} a forecast needs",
                summary.policy,
                100.0 * reactive as f64 / scored.len().max(1) as f64
            )
        });
    }
    notes
}

/// On a token trace: what the request-sized planner's GPU was, in words.
fn requests_sized_note(replay: &Replay, knobs: &Knobs) -> Option<String> {
    let sized = replay.requests_sized(knobs)?;
    Some(format!(
        "requests-sized: the same planner counting requests, a GPU taken to serve {:.3} requests/s (the trace's mean work per request); judged by the work its GPUs serve",
        sized.gpu_rps
    ))
}

/// Each profile's predictive replay at the SLO (and its clairvoyant, for the ratio), cheapest
/// first among those that met the SLO, then the rest.
pub(crate) fn compare_profiles(
    replay: &Replay,
    knobs: &Knobs,
    price_given: bool,
) -> Vec<ProfileRow> {
    let mut rows: Vec<ProfileRow> = std::thread::scope(|scope| {
        let handles: Vec<_> = replay
            .profiles
            .iter()
            .map(|profile| {
                scope.spawn(move || {
                    let r = replay.with_profile(profile, price_given);
                    let (_, s) = simulate_traffic(
                        r.trace.start,
                        r.step_secs,
                        r.traffic(),
                        &mut r.predictive(knobs, None),
                        &r.sim,
                    );
                    let (_, c) = simulate_traffic(
                        r.trace.start,
                        r.step_secs,
                        r.traffic(),
                        r.policy(PolicyName::Clairvoyant, knobs).as_mut(),
                        &r.sim,
                    );
                    ProfileRow {
                        profile: profile.name.clone(),
                        price_usd_per_gpu_hour: r.sim.price_usd_per_gpu_hour,
                        gpu_hours: s.gpu_hours,
                        cost_usd: s.cost_usd,
                        timed_out_share: s.timed_out_share,
                        slo_met: s.timed_out_share <= knobs.slo + 1e-12,
                        cost_vs_clairvoyant: (c.cost_usd > 0.0).then(|| s.cost_usd / c.cost_usd),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a profile replay panicked"))
            .collect()
    });
    rows.sort_by(|a, b| {
        b.slo_met
            .cmp(&a.slo_met)
            .then(a.cost_usd.total_cmp(&b.cost_usd))
    });
    rows
}

pub(crate) fn profile_table(rows: &[ProfileRow], slo: f64) -> String {
    let mut out = format!(
        "\nGPU profiles, each planned by the predictive policy at the SLO:\n{:<28} {:>8} {:>10} {:>11} {:>11} {:>6} {:>14}\n",
        "profile", "$/GPU-h", "GPU-hours", "cost $", "timed out", "SLO", "x clairvoyant"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<28} {:>8.2} {:>10.1} {:>11.2} {:>10.3}% {:>6} {:>14}\n",
            r.profile,
            r.price_usd_per_gpu_hour,
            r.gpu_hours,
            r.cost_usd,
            100.0 * r.timed_out_share,
            if r.slo_met { "met" } else { "MISSED" },
            r.cost_vs_clairvoyant
                .map_or("-".into(), |x| format!("{x:.2}"))
        ));
    }
    match rows.iter().find(|r| r.slo_met) {
        Some(best) => out.push_str(&format!(
            "cheapest within the SLO ({:.3}%): {} at ${:.2}\n",
            100.0 * slo,
            best.profile,
            best.cost_usd
        )),
        None => out.push_str(&format!(
            "no profile kept timed-out requests within the SLO ({:.3}%)\n",
            100.0 * slo
        )),
    }
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
        "demand_work",
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
            format!("{:.4}", r.demand_work),
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
