//! `prewarm simulate` and `prewarm tune`: replay a trace through the planner and the
//! alternatives a user has, and compare GPU-hours with timed-out requests.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use anyhow::{bail, ensure, Context};
use chrono_tz::Tz;
use clap::Args;
use prewarm_core::{format_duration, parse_duration, parse_duration_or_zero, Trace};
use prewarm_forecast::interpolate;
use prewarm_planner::PlannerConfig;
use prewarm_sim::{
    policies::{
        Clairvoyant, ForecastCache, ForecastSettings, Hindsight, Predictive, Reactive, Static,
    },
    simulate, BootTime, Policy, SimConfig, SimSummary, StepRecord,
};
use serde::Serialize;

/// Settings shared by `simulate` and `tune`.
#[derive(Debug, Args, Clone)]
pub struct ReplayArgs {
    /// Trace in the project's format; without it, the bundled NAB ELB fixture.
    pub trace: Option<PathBuf>,
    /// Requests per second one GPU serves at full load; by default sized so the trace's peak
    /// needs --peak-gpus GPUs.
    #[arg(long)]
    pub gpu_rps: Option<f64>,
    /// GPUs the trace's peak minute needs at full load, when --gpu-rps is not given.
    #[arg(long, default_value_t = 20)]
    pub peak_gpus: u32,
    /// Boot time: from order to serving.
    #[arg(long, default_value = "10m")]
    pub boot: String,
    /// Longest boot time: boots are drawn uniformly between --boot and this (seeded).
    #[arg(long)]
    pub boot_max: Option<String>,
    /// Seed of the boot-time draws.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A request that waited longer than this is lost.
    #[arg(long, default_value = "2m")]
    pub timeout: String,
    /// Price of one GPU-hour in US dollars.
    #[arg(long, default_value_t = 3.0)]
    pub price: f64,
    /// IANA time zone of the fleet (seasons and overrides follow its wall clock).
    #[arg(long)]
    pub tz: Option<String>,
    /// Steps replayed before scoring starts (forecasts need history); default 2d when the trace
    /// has at least 4 days, else 0.
    #[arg(long)]
    pub warmup: Option<String>,
    /// Time between forecast refits of the predictive policy.
    #[arg(long, default_value = "1h")]
    pub refit: String,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
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
    pub policies: Vec<String>,
    #[command(flatten)]
    pub planner: PlannerArgs,
    /// Folder for per-policy decisions.csv, summary.json and plot.svg.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The planner's settings: the SLO, and the expert overrides that replace what it chooses.
#[derive(Debug, Args, Clone)]
pub struct PlannerArgs {
    /// The SLO: the largest share of requests that may time out (waiting longer than --timeout).
    /// The predictive policy plans to it; the hindsight reference is chosen within it.
    #[arg(long, default_value_t = 0.001, alias = "max-timeout-share")]
    pub slo: f64,
    /// Expert override: plan on this quantile of the demand distribution everywhere, instead of
    /// the levels the SLO sizer chooses hour by hour.
    #[arg(long)]
    pub quantile: Option<f64>,
    /// Expert override: share of each GPU's capacity that predictive sizing plans to use.
    #[arg(long, default_value_t = prewarm_planner::defaults::TARGET_UTILIZATION)]
    pub utilization: f64,
    /// Window after the boot lead a pre-warm is sized for.
    #[arg(long, default_value = "1m")]
    pub hold: String,
    /// Expert override: when demand runs above the distribution's top quantile, keep load under
    /// this share at once (the seed's 0.6); by default the forecast is corrected instead.
    #[arg(long)]
    pub miss_load: Option<f64>,
}

/// The planner's knobs that `simulate` takes and `tune` sweeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Knobs {
    pub slo: f64,
    pub quantile: Option<f64>,
    pub utilization: f64,
    pub hold_secs: i64,
    pub miss_load: Option<f64>,
}

impl Knobs {
    /// The knobs a user gave, checked.
    pub fn from_args(args: &PlannerArgs) -> anyhow::Result<Self> {
        Knobs {
            slo: args.slo,
            quantile: args.quantile,
            utilization: args.utilization,
            hold_secs: parse_duration_or_zero(&args.hold)
                .map_err(|e| anyhow::anyhow!("--hold: {e}"))?,
            miss_load: args.miss_load,
        }
        .checked("")
    }

    /// The knobs, checked; `plural` is "s" when they came from `tune`'s lists.
    fn checked(self, plural: &str) -> anyhow::Result<Self> {
        let settings = prewarm_planner::Settings {
            max_timeout_share: Some(self.slo),
            quantile: self.quantile,
            target_utilization: Some(self.utilization),
            miss_load: self.miss_load,
            hold_secs: Some(self.hold_secs),
            ..Default::default()
        };
        if let Err(e) = settings.check() {
            bail!(
                "{}{plural}: {} {}",
                e.setting.flag(),
                match e.setting {
                    prewarm_planner::Setting::Hold => format_duration(self.hold_secs),
                    _ => e.value.clone(),
                },
                e.rule
            );
        }
        Ok(self)
    }
}

/// A trace ready to replay: requests per step, steps of a minute or shorter.
pub struct Replay {
    pub name: String,
    pub trace: Trace,
    pub requests: Vec<f64>,
    pub step_secs: i64,
    pub gpu_rps: f64,
    pub sim: SimConfig,
    pub tz: Option<Tz>,
    pub refit_secs: i64,
}

impl Replay {
    pub fn load(args: &ReplayArgs) -> anyhow::Result<Self> {
        let (trace, name) = crate::output::load_trace(args.trace.as_deref())?;
        // Replays run in steps of a minute at most: a coarser bucket is spread evenly.
        let split = (trace.step_secs / 60).max(1) as usize;
        ensure!(
            trace.step_secs <= 60 || trace.step_secs % 60 == 0,
            "the trace's {} interval is not a whole number of minutes",
            format_duration(trace.step_secs)
        );
        let step_secs = trace.step_secs / split as i64;
        let filled =
            interpolate(&trace.requests).context("the trace has no observed values to replay")?;
        let requests: Vec<f64> = filled
            .iter()
            .flat_map(|v| std::iter::repeat_n(v / split as f64, split))
            .collect();
        let peak_rps = requests.iter().copied().fold(0.0, f64::max) / step_secs as f64;
        ensure!(peak_rps > 0.0, "the trace has no requests to replay");
        let gpu_rps = match args.gpu_rps {
            Some(r) => {
                ensure!(
                    r.is_finite() && r > 0.0,
                    "--gpu-rps must be a positive number"
                );
                r
            }
            None => {
                ensure!(args.peak_gpus > 0, "--peak-gpus must be at least 1");
                peak_rps / args.peak_gpus as f64
            }
        };
        let secs = |text: &str, what: &str| {
            parse_duration(text).map_err(|e| anyhow::anyhow!("--{what}: {e}"))
        };
        let boot_secs = secs(&args.boot, "boot")?;
        let boot = match &args.boot_max {
            Some(max) => {
                let max_secs = secs(max, "boot-max")?;
                ensure!(
                    max_secs >= boot_secs,
                    "--boot-max must not be shorter than --boot"
                );
                BootTime::Uniform {
                    min_secs: boot_secs,
                    max_secs,
                    seed: args.seed,
                }
            }
            None => BootTime::Fixed { secs: boot_secs },
        };
        let timeout_secs = secs(&args.timeout, "timeout")?;
        if let Err(e) = (prewarm_planner::Settings {
            queue_timeout_secs: Some(timeout_secs),
            ..Default::default()
        })
        .check()
        {
            bail!(
                "--timeout {}: a request's queue timeout {}",
                args.timeout,
                e.rule
            );
        }
        let span_secs = requests.len() as i64 * step_secs;
        let warmup_secs = match &args.warmup {
            Some(w) => parse_duration_or_zero(w).map_err(|e| anyhow::anyhow!("--warmup: {e}"))?,
            None if span_secs >= 4 * 86_400 => 2 * 86_400,
            None => 0,
        };
        ensure!(
            warmup_secs < span_secs,
            "--warmup is as long as the trace: nothing would be scored"
        );
        ensure!(
            args.price.is_finite() && args.price >= 0.0,
            "--price must be zero or more"
        );
        let tz = args
            .tz
            .as_deref()
            .map(|t| {
                t.parse::<Tz>().map_err(|_| {
                    anyhow::anyhow!("--tz `{t}` is not an IANA time zone such as Europe/Berlin")
                })
            })
            .transpose()?;
        Ok(Self {
            name,
            trace,
            requests,
            step_secs,
            gpu_rps,
            sim: SimConfig {
                gpu_rps,
                timeout_secs,
                boot,
                price_usd_per_gpu_hour: args.price,
                score_from_step: (warmup_secs / step_secs) as usize,
            },
            tz,
            refit_secs: secs(&args.refit, "refit")?,
        })
    }

    /// Steps replayed without scoring.
    pub fn warmup_steps(&self) -> usize {
        self.sim.score_from_step
    }

    pub fn planner(&self, knobs: &Knobs) -> PlannerConfig {
        let mut cfg = PlannerConfig::new(self.gpu_rps);
        cfg.slo = prewarm_planner::Slo {
            max_timeout_share: knobs.slo,
            timeout_secs: self.sim.timeout_secs,
        };
        cfg.quantile = knobs.quantile;
        cfg.target_utilization = knobs.utilization;
        cfg.boot_lead_secs = self.sim.boot.max_secs();
        cfg.hold_secs = knobs.hold_secs;
        cfg.reactive.miss_load = knobs.miss_load;
        cfg.price_usd_per_gpu_hour = self.sim.price_usd_per_gpu_hour;
        cfg.tz = self.tz.unwrap_or(Tz::UTC);
        cfg
    }

    fn initial_gpus(&self) -> u32 {
        let first = self.requests.first().copied().unwrap_or(0.0) / self.step_secs as f64;
        ((first / (self.gpu_rps * 0.6)).ceil() as u32).max(1)
    }

    pub fn predictive(&self, knobs: &Knobs, cache: Option<ForecastCache>) -> Predictive {
        let settings = ForecastSettings {
            refit_secs: self.refit_secs,
            tz: self.tz,
            step_secs: if self.step_secs < 300 && 300 % self.step_secs == 0 {
                300
            } else {
                self.step_secs
            },
            ..ForecastSettings::default()
        };
        let mut p = Predictive::new(
            self.planner(knobs),
            settings,
            self.trace.start,
            self.step_secs,
            self.initial_gpus(),
        );
        p.cache = cache;
        p
    }

    fn policy(&self, name: &str, knobs: &Knobs) -> anyhow::Result<Box<dyn Policy + Send>> {
        Ok(match name {
            "predictive" => Box::new(self.predictive(knobs, None)),
            "reactive" => Box::new(Reactive {
                cfg: self.planner(knobs),
                step_secs: self.step_secs,
                initial: self.initial_gpus(),
            }),
            "static" => {
                let peak =
                    self.requests.iter().copied().fold(0.0, f64::max) / self.step_secs as f64;
                Box::new(Static {
                    gpus: (peak / (self.gpu_rps * knobs.utilization)).ceil() as u32,
                })
            }
            "clairvoyant" => Box::new(Clairvoyant {
                future: self.requests.clone(),
                step_secs: self.step_secs,
                gpu_rps: self.gpu_rps,
                boot_secs: self.sim.boot.max_secs(),
            }),
            "hindsight" => Box::new(Hindsight::fit(
                self.trace.start,
                self.step_secs,
                &self.requests,
                self.tz.unwrap_or(Tz::UTC),
                &self.sim,
                knobs.slo,
            )),
            other => anyhow::bail!(
                "unknown policy `{other}`: choose from predictive, reactive, static, clairvoyant, hindsight"
            ),
        })
    }

    /// Days of the replay that are scored (after the warm-up).
    pub fn scored_days(&self) -> f64 {
        (self.requests.len().saturating_sub(self.warmup_steps()) as i64 * self.step_secs) as f64
            / 86_400.0
    }

    /// GPU-hours of capacity that exactly matches each scored step, boot time free.
    pub fn lower_bound_gpu_hours(&self) -> f64 {
        self.requests[self.warmup_steps()..]
            .iter()
            .map(|r| {
                (r / self.step_secs as f64 / self.gpu_rps - 1e-9)
                    .ceil()
                    .max(0.0)
            })
            .sum::<f64>()
            * self.step_secs as f64
            / 3_600.0
    }
}

#[derive(Debug, Serialize)]
struct SimulateSummary<'a> {
    trace: &'a str,
    step: String,
    gpu_rps: f64,
    boot: BootTime,
    timeout_secs: i64,
    price_usd_per_gpu_hour: f64,
    scored_from: String,
    lower_bound_gpu_hours: f64,
    policies: Vec<PolicySummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicySummary {
    #[serde(flatten)]
    pub sim: SimSummary,
    /// Boot orders per scored day.
    pub boots_per_day: f64,
    pub cost_vs_clairvoyant: Option<f64>,
    pub cost_vs_hindsight: Option<f64>,
}

pub fn run(args: &SimulateArgs) -> anyhow::Result<()> {
    let replay = Replay::load(&args.replay)?;
    let knobs = Knobs::from_args(&args.planner)?;
    let mut policies = Vec::new();
    for name in &args.policies {
        policies.push(replay.policy(name.trim(), &knobs)?);
    }
    println!("{}", crate::output::describe(&replay.trace, &replay.name));
    println!(
        "replay: {} steps of {}, GPU serves {:.3} rps, boot {}, timeout {}, ${:.2}/GPU-hour; scored from {}",
        replay.requests.len(),
        format_duration(replay.step_secs),
        replay.gpu_rps,
        match replay.sim.boot {
            BootTime::Fixed { secs } => format_duration(secs),
            BootTime::Uniform { min_secs, max_secs, seed } =>
                format!("{} to {} (seed {seed})", format_duration(min_secs), format_duration(max_secs)),
        },
        format_duration(replay.sim.timeout_secs),
        replay.sim.price_usd_per_gpu_hour,
        replay.trace.start + chrono::Duration::seconds(replay.step_secs * replay.warmup_steps() as i64),
    );

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
            step: format_duration(replay.step_secs),
            gpu_rps: replay.gpu_rps,
            boot: replay.sim.boot,
            timeout_secs: replay.sim.timeout_secs,
            price_usd_per_gpu_hour: replay.sim.price_usd_per_gpu_hour,
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
        println!(
            "wrote decisions.csv per policy, summary.json and plot.svg to {}",
            dir.display()
        );
    }
    Ok(())
}

/// Each policy's totals with its boots per day over `scored_days` and its cost against the
/// clairvoyant and hindsight references, where they were replayed.
pub fn with_ratio(sims: Vec<SimSummary>, scored_days: f64) -> Vec<PolicySummary> {
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

pub fn table(rows: &[PolicySummary], lower_bound: f64) -> String {
    let ratio = |x: Option<f64>| x.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
    let mut out = format!(
        "{:<12} {:>10} {:>10} {:>11} {:>9} {:>7} {:>10} {:>9} {:>14} {:>12}\n",
        "policy",
        "GPU-hours",
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
            "{:<12} {:>10.1} {:>10.2} {:>10.3}% {:>8.0}s {:>7} {:>10.1} {:>9} {:>14} {:>12}\n",
            r.sim.policy,
            r.sim.gpu_hours,
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
        "{:<12} {:>10.1}   (capacity matching every step, boot time free)\n",
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

#[derive(Debug, Args)]
pub struct TuneArgs {
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
    /// Over the days settings are chosen on.
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

pub fn tune(args: &TuneArgs) -> anyhow::Result<()> {
    let replay = Replay::load(&args.replay)?;
    let mut grid: Vec<(String, Knobs)> = Vec::new();
    for q in &args.quantiles {
        let quantile = optional_number(q, "auto", "--quantiles")?;
        for h in &args.holds {
            let hold = parse_duration_or_zero(h).map_err(|e| anyhow::anyhow!("--holds: {e}"))?;
            for u in &args.utilizations {
                for m in &args.miss_loads {
                    let knobs = Knobs {
                        slo: args.slo,
                        quantile,
                        utilization: *u,
                        hold_secs: hold,
                        miss_load: optional_number(m, "none", "--miss-loads")?,
                    };
                    grid.push((format_duration(hold), knobs.checked("s")?));
                }
            }
        }
    }
    ensure!(
        !grid.is_empty(),
        "the grid is empty: give at least one value to each of --quantiles, --holds, --utilizations and --miss-loads"
    );
    let first_scored = replay.warmup_steps();
    let end = replay.requests.len();
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
                simulate(
                    replay.trace.start,
                    replay.step_secs,
                    &replay.requests,
                    &mut replay.predictive(k, Some(cache.clone())),
                    &replay.sim,
                )
                .0
            }
            None => {
                simulate(
                    replay.trace.start,
                    replay.step_secs,
                    &replay.requests,
                    &mut Clairvoyant {
                        future: replay.requests.clone(),
                        step_secs: replay.step_secs,
                        gpu_rps: replay.gpu_rps,
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

    let window = |records: &[StepRecord], range: std::ops::Range<usize>| {
        prewarm_sim::window_totals(records, range, replay.step_secs)
    };
    let (choose, later) = (first_scored..split, split..end);
    let clair_choose = window(&clairvoyant, choose.clone());
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
        "{:>8} {:>5} {:>5} {:>5} {:>10} {:>10} {:>9} {:>7}{}",
        "quantile",
        "hold",
        "util",
        "miss",
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
            "{:>8} {:>5} {:>5.2} {:>5} {:>10.1} {:>9.3}% {:>9.1} {:>7.2}{later}{}",
            p.quantile,
            p.hold,
            p.utilization,
            p.miss_load,
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
