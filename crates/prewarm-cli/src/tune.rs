//! `prewarm tune`: sweep the planner's knobs on a trace and pick the cheapest setting within the
//! SLO, optionally choosing on earlier days and reporting on later ones (`--walk-forward`).

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use anyhow::ensure;
use clap::Args;
use prewarm_core::{format_duration, parse_duration, parse_duration_or_zero};
use prewarm_sim::{
    policies::{Clairvoyant, ForecastCache},
    simulate_traffic, StepRecord,
};
use serde::Serialize;

use crate::replay::{Knobs, Replay, ReplayArgs, StandbyArgs};

#[derive(Debug, Args)]
pub(crate) struct TuneArgs {
    #[command(flatten)]
    pub replay: ReplayArgs,
    /// The SLO: the largest share of requests that may time out. Settings are planned to it and
    /// chosen within it.
    #[arg(long, default_value_t = 0.001, alias = "max-timeout-share")]
    pub slo: f64,
    /// Quantiles to try: `auto` is the SLO sizer's own levels (the default path), which follow
    /// what the fleet realises; a number plans on that quantile everywhere (an expert override
    /// that does not adapt: compare them with --walk-forward before trusting one).
    #[arg(long, default_value = "auto", value_delimiter = ',')]
    pub quantiles: Vec<String>,
    /// Hold windows to try.
    #[arg(long, default_value = "1m", value_delimiter = ',')]
    pub holds: Vec<String>,
    /// Planned utilisations (headroom) to try.
    #[arg(long, default_value = "1.0,0.9", value_delimiter = ',')]
    pub utilizations: Vec<f64>,
    /// Miss loads to try: `none` corrects the forecast when demand runs above its top quantile
    /// (the default path); a number keeps load under that share at once (the seed's 0.6).
    #[arg(long, default_value = "none,0.7", value_delimiter = ',')]
    pub miss_loads: Vec<String>,
    /// Standby limits to try: `off` (no standby tier), `all` (up to max_gpus) or a GPU count;
    /// --standby adds its --standby-max (or `all`). The tier's resume time, price and failures
    /// come from the flags below.
    #[arg(long, default_value = "off", value_delimiter = ',')]
    pub standby_maxes: Vec<String>,
    #[command(flatten)]
    pub standby: StandbyArgs,
    /// Walk forward: choose on the scored days before this much time from the trace's start,
    /// and report how the choice did on the days after, which it never saw (e.g. 9d).
    #[arg(long)]
    pub walk_forward: Option<String>,
    /// Write every setting's results as CSV here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
struct TunePoint {
    quantile: String,
    hold: String,
    utilization: f64,
    miss_load: String,
    standby_max: String,
    /// Over the days settings are chosen on: GPU-hours at the running price, standby counted at
    /// its share of it.
    gpu_hours: f64,
    timed_out_share: f64,
    boots_per_day: f64,
    vs_clairvoyant: f64,
    /// Over the later days (walk-forward only).
    later_gpu_hours: Option<f64>,
    later_timed_out_share: Option<f64>,
    later_boots_per_day: Option<f64>,
    later_vs_clairvoyant: Option<f64>,
}

impl TunePoint {
    /// The flags that give this setting.
    fn flags(&self) -> String {
        let mut flags = Vec::new();
        if self.quantile != "auto" {
            flags.push(format!("--quantile {}", self.quantile));
        }
        if self.hold != format_duration(prewarm_planner::defaults::HOLD_SECS) {
            flags.push(format!("--hold {}", self.hold));
        }
        if self.utilization != prewarm_planner::defaults::TARGET_UTILIZATION {
            flags.push(format!("--utilization {}", self.utilization));
        }
        if self.miss_load != "none" {
            flags.push(format!("--miss-load {}", self.miss_load));
        }
        match self.standby_max.as_str() {
            "off" => {}
            "all" => flags.push("--standby".into()),
            n => flags.push(format!("--standby --standby-max {n}")),
        }
        if flags.is_empty() {
            "the defaults (no overrides)".into()
        } else {
            flags.join(" ")
        }
    }
}

/// Parses `auto`/`none` as `None` and anything else as a number.
fn optional_number(text: &str, word: &str, flag: &str) -> anyhow::Result<Option<f64>> {
    let text = text.trim();
    if text.eq_ignore_ascii_case(word) {
        return Ok(None);
    }
    text.parse::<f64>()
        .map(Some)
        .map_err(|_| anyhow::anyhow!("{flag}: `{text}` is neither `{word}` nor a number"))
}

pub(crate) fn run(args: &TuneArgs) -> anyhow::Result<()> {
    let mut replay = Replay::load(&args.replay)?;
    let mut limits: Vec<Option<u32>> = Vec::new();
    for text in &args.standby_maxes {
        let limit = match text.trim() {
            t if t.eq_ignore_ascii_case("off") => None,
            t if t.eq_ignore_ascii_case("all") => Some(u32::MAX),
            t => Some(t.parse::<u32>().map_err(|_| {
                anyhow::anyhow!("--standby-maxes: `{t}` is neither `off`, `all` nor a GPU count")
            })?),
        };
        limits.push(limit);
    }
    if args.standby.standby {
        limits.push(Some(args.standby.standby_max.unwrap_or(u32::MAX)));
    }
    // Each limit once, in the order given (`--standby` may repeat one of the list).
    let mut seen = Vec::new();
    limits.retain(|l| {
        let new = !seen.contains(l);
        seen.push(*l);
        new
    });
    if limits.iter().any(Option::is_some) {
        replay.sim.standby = Some(args.standby.tier(replay.seed)?);
    }
    let share = replay.sim.standby.map_or(0.0, |s| s.price_share);
    let mut grid: Vec<(String, Knobs)> = Vec::new();
    for q in &args.quantiles {
        let quantile = optional_number(q, "auto", "--quantiles")?;
        for h in &args.holds {
            let hold = parse_duration_or_zero(h).map_err(|e| anyhow::anyhow!("--holds: {e}"))?;
            for u in &args.utilizations {
                for m in &args.miss_loads {
                    for limit in &limits {
                        let knobs = Knobs {
                            slo: args.slo,
                            quantile,
                            utilization: *u,
                            hold_secs: hold,
                            miss_load: optional_number(m, "none", "--miss-loads")?,
                            standby_max: *limit,
                        };
                        grid.push((format_duration(hold), knobs.checked("s")?));
                    }
                }
            }
        }
    }
    ensure!(
        !grid.is_empty(),
        "the grid is empty: give at least one value to each of --quantiles, --holds, --utilizations, --miss-loads and --standby-maxes"
    );
    let first_scored = replay.warmup_steps();
    let end = replay.work.len();
    let split = match &args.walk_forward {
        None => end,
        Some(text) => {
            let secs = parse_duration(text).map_err(|e| anyhow::anyhow!("--walk-forward: {e}"))?;
            let split = (secs / replay.step_secs) as usize;
            let day = (86_400 / replay.step_secs) as usize;
            ensure!(
                split >= first_scored + day,
                "--walk-forward {text}: choosing needs at least a scored day after the {} warm-up",
                format_duration(first_scored as i64 * replay.step_secs)
            );
            ensure!(
                split + day <= end,
                "--walk-forward {text}: the trace has {} after the warm-up; leave at least a day to report on",
                format_duration((end - first_scored) as i64 * replay.step_secs)
            );
            split
        }
    };
    println!("{}", crate::output::describe(&replay.trace, &replay.name));
    let at = |step: usize| {
        (replay.trace.start + chrono::Duration::seconds(replay.step_secs * step as i64))
            .to_rfc3339()
    };
    if split < end {
        println!(
            "walk-forward: choose on {} to {}, report on {} to {} (never seen when choosing)",
            at(first_scored),
            at(split),
            at(split),
            at(end)
        );
    }

    // Every setting replays the whole trace once, as it would have run: its later days are
    // planned with what it knew then. Forecasts depend on none of the knobs: the first replay
    // fits them and the rest share them.
    let bar = indicatif::ProgressBar::new(grid.len() as u64 + 1).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} replays ({elapsed}, {eta} left)",
        )
        .expect("a valid template"),
    );
    let cache: ForecastCache = Arc::new(Mutex::new(Default::default()));
    let run = |knobs: Option<&Knobs>| -> Vec<StepRecord> {
        let records = match knobs {
            Some(k) => {
                simulate_traffic(
                    replay.trace.start,
                    replay.step_secs,
                    replay.traffic(),
                    &mut replay.predictive(k, Some(cache.clone())),
                    &replay.sim,
                )
                .0
            }
            None => {
                simulate_traffic(
                    replay.trace.start,
                    replay.step_secs,
                    replay.traffic(),
                    &mut Clairvoyant {
                        future: replay.work.clone(),
                        step_secs: replay.step_secs,
                        capacity: replay.capacity,
                        boot_secs: replay.sim.boot.max_secs(),
                    },
                    &replay.sim,
                )
                .0
            }
        };
        bar.inc(1);
        records
    };
    let first = run(Some(&grid[0].1));
    let clairvoyant = run(None);
    // The seed's reactive rules on the same trace: what each setting saves against.
    let reactive = simulate_traffic(
        replay.trace.start,
        replay.step_secs,
        replay.traffic(),
        &mut *replay.policy(crate::args::PolicyName::Reactive, &grid[0].1),
        &replay.sim,
    )
    .0;
    let next = std::sync::atomic::AtomicUsize::new(1);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rest: Vec<(usize, Vec<StepRecord>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.min(grid.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((_, knobs)) = grid.get(i) else {
                            break done;
                        };
                        done.push((i, run(Some(knobs))));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a tune thread panicked"))
            .collect()
    });
    bar.finish_and_clear();
    rest.sort_by_key(|(i, _)| *i);

    // Standby hours count at their share of the running price.
    let window = |records: &[StepRecord], range: std::ops::Range<usize>| {
        let mut w = prewarm_sim::window_totals(records, range, replay.step_secs);
        w.gpu_hours += share * w.standby_gpu_hours;
        w
    };
    let (choose, later) = (first_scored..split, split..end);
    let clair_choose = window(&clairvoyant, choose.clone());
    let reactive_choose = window(&reactive, choose.clone());
    let clair_later = window(&clairvoyant, later.clone());
    let per_day = |boots: u64, days: f64| if days > 0.0 { boots as f64 / days } else { 0.0 };
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let points: Vec<TunePoint> = std::iter::once(first)
        .chain(rest.into_iter().map(|(_, r)| r))
        .zip(&grid)
        .map(|(records, (hold, k))| {
            let c = window(&records, choose.clone());
            let l = (split < end).then(|| window(&records, later.clone()));
            TunePoint {
                quantile: k.quantile.map_or("auto".into(), |q| q.to_string()),
                hold: hold.clone(),
                utilization: k.utilization,
                miss_load: k.miss_load.map_or("none".into(), |m| m.to_string()),
                standby_max: match k.standby_max {
                    None => "off".into(),
                    Some(u32::MAX) => "all".into(),
                    Some(n) => n.to_string(),
                },
                gpu_hours: c.gpu_hours,
                timed_out_share: c.timed_out_share,
                boots_per_day: per_day(c.boots, c.days),
                vs_clairvoyant: ratio(c.gpu_hours, clair_choose.gpu_hours),
                later_gpu_hours: l.map(|l| l.gpu_hours),
                later_timed_out_share: l.map(|l| l.timed_out_share),
                later_boots_per_day: l.map(|l| per_day(l.boots, l.days)),
                later_vs_clairvoyant: l.map(|l| ratio(l.gpu_hours, clair_later.gpu_hours)),
            }
        })
        .collect();
    let mut sorted = points.clone();
    sorted.sort_by(|a, b| a.gpu_hours.total_cmp(&b.gpu_hours));
    let walk = split < end;
    println!(
        "{:>8} {:>5} {:>5} {:>5} {:>7} {:>10} {:>10} {:>9} {:>7}{}",
        "quantile",
        "hold",
        "util",
        "miss",
        "standby",
        "GPU-hours",
        "timed out",
        "boots/day",
        "x clair",
        if walk {
            format!(
                "  | later: {:>9} {:>10} {:>9} {:>7}",
                "GPU-hours", "timed out", "boots/day", "x clair"
            )
        } else {
            String::new()
        }
    );
    for p in &sorted {
        let later = match (
            p.later_gpu_hours,
            p.later_timed_out_share,
            p.later_boots_per_day,
            p.later_vs_clairvoyant,
        ) {
            (Some(g), Some(t), Some(b), Some(x)) => {
                format!("  |        {g:>9.1} {:>9.3}% {b:>9.1} {x:>7.2}", 100.0 * t)
            }
            _ => String::new(),
        };
        println!(
            "{:>8} {:>5} {:>5.2} {:>5} {:>7} {:>10.1} {:>9.3}% {:>9.1} {:>7.2}{later}{}",
            p.quantile,
            p.hold,
            p.utilization,
            p.miss_load,
            p.standby_max,
            p.gpu_hours,
            100.0 * p.timed_out_share,
            p.boots_per_day,
            p.vs_clairvoyant,
            if p.timed_out_share <= args.slo {
                ""
            } else {
                "  (over the SLO)"
            }
        );
    }
    println!(
        "clairvoyant: {:.1} GPU-hours, {:.1} boots/day{}",
        clair_choose.gpu_hours,
        per_day(clair_choose.boots, clair_choose.days),
        if walk {
            format!(
                "; later: {:.1} GPU-hours, {:.1} boots/day",
                clair_later.gpu_hours,
                per_day(clair_later.boots, clair_later.days)
            )
        } else {
            String::new()
        }
    );
    let days = if walk { " on the days chosen on" } else { "" };
    match sorted.iter().find(|p| p.timed_out_share <= args.slo) {
        Some(best) => {
            println!(
                "cheapest within the SLO ({:.3}% timed out){days}: {} ({:.1} GPU-hours, {:.3}% timed out, {:.2} x clairvoyant)",
                100.0 * args.slo,
                best.flags(),
                best.gpu_hours,
                100.0 * best.timed_out_share,
                best.vs_clairvoyant
            );
            let saved = reactive_choose.gpu_hours - best.gpu_hours;
            let price = replay.sim.price_usd_per_gpu_hour;
            println!(
                "against the reactive rules ({:.1} GPU-hours, {:.3}% timed out, SLO {}): {} {:.1} GPU-hours ({:.1}%, ${:.2}){days}",
                reactive_choose.gpu_hours,
                100.0 * reactive_choose.timed_out_share,
                if reactive_choose.timed_out_share <= args.slo { "met" } else { "missed" },
                if saved >= 0.0 { "saves" } else { "costs" },
                saved.abs(),
                100.0 * saved.abs() / reactive_choose.gpu_hours.max(1e-9),
                saved.abs() * price
            );
            if let (Some(g), Some(t), Some(x)) = (
                best.later_gpu_hours,
                best.later_timed_out_share,
                best.later_vs_clairvoyant,
            ) {
                println!(
                    "on the later days it was never chosen on: {g:.1} GPU-hours, {:.3}% timed out ({}), {x:.2} x clairvoyant",
                    100.0 * t,
                    if t <= args.slo { "within the SLO" } else { "over the SLO" }
                );
            }
        }
        None => println!(
            "no setting kept timed-out requests within {:.3}%{days}; the safest was {:.3}%: try a lower utilisation, a higher quantile or a miss load",
            100.0 * args.slo,
            100.0 * points.iter().map(|p| p.timed_out_share).fold(f64::INFINITY, f64::min)
        ),
    }
    // With several GPU profiles: the setting chosen (or the defaults, when none met the SLO)
    // replayed with each, the cheapest within the SLO named.
    if replay.profiles.len() > 1 {
        let chosen = points
            .iter()
            .enumerate()
            .filter(|(_, p)| p.timed_out_share <= args.slo)
            .min_by(|a, b| a.1.gpu_hours.total_cmp(&b.1.gpu_hours))
            .map_or(0, |(i, _)| i);
        let rows = crate::simulate::compare_profiles(
            &replay,
            &grid[chosen].1,
            args.replay.price.is_some(),
        );
        print!("{}", crate::simulate::profile_table(&rows, args.slo));
    }
    if let Some(path) = &args.out {
        let mut out = csv::Writer::from_writer(Vec::new());
        for p in &points {
            out.serialize(p)?;
        }
        let bytes = out.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
        crate::output::write_atomic(path, &bytes)?;
        println!("wrote every setting's results to {}", path.display());
    }
    Ok(())
}
