//! What `simulate`, `tune`, `demo` and `bench planner` share: the replay's arguments, loading a
//! trace to replay, the planner's knobs, and the policies built from them.

use std::path::PathBuf;

use anyhow::{bail, ensure, Context};
use chrono_tz::Tz;
use clap::Args;

use crate::args::{PolicyName, Span, SpanOrZero};
use prewarm_core::{format_duration, Trace};
use prewarm_forecast::interpolate;
use prewarm_planner::{Capacity, GpuProfile, PlannerConfig};
use prewarm_sim::{
    policies::{
        Clairvoyant, ForecastCache, ForecastSettings, Hindsight, Predictive, Reactive, Static,
    },
    BootTime, Policy, SimConfig,
};

/// Settings shared by `simulate` and `tune`.
#[derive(Debug, Args, Clone)]
pub(crate) struct ReplayArgs {
    /// Trace in the project's format; without it, the bundled NAB ELB fixture.
    pub trace: Option<PathBuf>,
    /// Requests per second one GPU serves at full load: plan in requests. By default a trace
    /// without token columns gets a GPU sized so that its peak needs --peak-gpus GPUs.
    #[arg(long, conflicts_with_all = ["prefill_tps", "decode_tps", "gpu_profile"])]
    pub gpu_rps: Option<f64>,
    /// Prompt tokens one GPU prefills per second at full load (with --decode-tps): plan in
    /// tokens, on a trace with tokens_in and tokens_out columns.
    #[arg(long, requires = "decode_tps", conflicts_with = "gpu_profile")]
    pub prefill_tps: Option<f64>,
    /// Output tokens one GPU decodes per second at full load (with --prefill-tps).
    #[arg(long, requires = "prefill_tps", conflicts_with = "gpu_profile")]
    pub decode_tps: Option<f64>,
    /// GPU profiles to plan in tokens with: a profiles file (every profile in it is replayed and
    /// the cheapest at the SLO named; FILE:NAME picks one), or the name of a bundled profile
    /// (`prewarm profile list --bundled`).
    #[arg(long)]
    pub gpu_profile: Option<String>,
    /// GPUs the trace's peak minute needs at full load, when no capacity is given (a token trace
    /// keeps the bundled profile's prefill:decode ratio).
    #[arg(long, default_value_t = 20)]
    pub peak_gpus: u32,
    /// Boot time: from order to serving.
    #[arg(long, default_value = "10m")]
    pub boot: Span,
    /// Longest boot time: boots are drawn uniformly between --boot and this (seeded).
    #[arg(long)]
    pub boot_max: Option<Span>,
    /// Seed of the boot-time draws.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A request that waited longer than this is lost.
    #[arg(long, default_value = "2m")]
    pub timeout: Span,
    /// Price of one GPU-hour in US dollars (default: the profile's, or 3.0).
    #[arg(long)]
    pub price: Option<f64>,
    /// IANA time zone of the fleet (seasons and overrides follow its wall clock).
    #[arg(long, env = "PREWARM_TZ")]
    pub tz: Option<String>,
    /// Steps replayed before scoring starts (forecasts need history); default 2d when the trace
    /// has at least 4 days, else 0.
    #[arg(long)]
    pub warmup: Option<SpanOrZero>,
    /// Time between forecast refits of the predictive policy.
    #[arg(long, default_value = "1h")]
    pub refit: Span,
    /// The `hpa` policy's utilisation target (the HPA's or KEDA's target: scale so GPUs run at
    /// this share of their capacity).
    #[arg(long, default_value_t = prewarm_sim::policies::Hpa::DEFAULT_TARGET)]
    pub hpa_target: f64,
    /// The `hpa` policy's scale-in (downscale stabilisation) window.
    #[arg(long, default_value = "5m")]
    pub hpa_scale_in: Span,
}

#[derive(Debug, Args, Clone)]
pub(crate) struct PlannerArgs {
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
    pub hold: SpanOrZero,
    /// Expert override: when demand runs above the distribution's top quantile, keep load under
    /// this share at once (the seed's 0.6); by default the forecast is corrected instead.
    #[arg(long)]
    pub miss_load: Option<f64>,
}

/// The standby tier of `simulate` and `tune`.
#[derive(Debug, Args, Clone)]
pub(crate) struct StandbyArgs {
    /// Also replay the predictive policy with a standby tier (stopped GPUs resumed in --resume),
    /// as `predictive+standby`.
    #[arg(long)]
    pub standby: bool,
    /// Resume time: from a resume order to serving.
    #[arg(long, default_value = "2m")]
    pub resume: Span,
    /// Longest resume time: resumes are drawn uniformly between --resume and this (seeded).
    #[arg(long)]
    pub resume_max: Option<Span>,
    /// A standby GPU's price as a share of the running price (0.01: 1%).
    #[arg(long, default_value_t = prewarm_planner::standby::defaults::PRICE_SHARE)]
    pub standby_price: f64,
    /// Share of resumes that fail (no capacity for the stopped instance); the planner then boots
    /// cold.
    #[arg(long, default_value_t = prewarm_sim::StandbySim::DEFAULT_FAIL_SHARE)]
    pub resume_failures: f64,
    /// Most GPUs kept in standby (default: the fleet's max_gpus).
    #[arg(long)]
    pub standby_max: Option<u32>,
}

impl StandbyArgs {
    /// The simulator's tier, checked (`None` without --standby).
    pub(crate) fn sim(&self, seed: u64) -> anyhow::Result<Option<prewarm_sim::StandbySim>> {
        if !self.standby {
            return Ok(None);
        }
        self.tier(seed).map(Some)
    }

    /// The simulator's tier from the flags, checked, whether or not --standby was given.
    pub(crate) fn tier(&self, seed: u64) -> anyhow::Result<prewarm_sim::StandbySim> {
        // The price and the resume time in the ranges every front end applies.
        let settings = prewarm_planner::Settings {
            standby_price_share: Some(self.standby_price),
            resume_secs: Some(self.resume.0),
            ..Default::default()
        };
        if let Err(e) = settings.check() {
            bail!("{} {}: {}", e.setting.flag(), e.value, e.rule);
        }
        ensure!(
            self.resume_failures.is_finite() && (0.0..=1.0).contains(&self.resume_failures),
            "--resume-failures is a share between 0 and 1, got {}",
            self.resume_failures
        );
        let resume = match self.resume_max {
            Some(Span(max_secs)) => {
                ensure!(
                    max_secs >= self.resume.0,
                    "--resume-max must not be shorter than --resume"
                );
                BootTime::Uniform {
                    min_secs: self.resume.0,
                    max_secs,
                    seed: seed.wrapping_add(1),
                }
            }
            None => BootTime::Fixed {
                secs: self.resume.0,
            },
        };
        Ok(prewarm_sim::StandbySim {
            resume,
            price_share: self.standby_price,
            fail_share: self.resume_failures,
            seed,
        })
    }
}

/// The planner's knobs that `simulate` takes and `tune` sweeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Knobs {
    pub slo: f64,
    pub quantile: Option<f64>,
    pub utilization: f64,
    pub hold_secs: i64,
    pub miss_load: Option<f64>,
    /// Most GPUs in standby (`Some` plans with the replay's standby tier).
    pub standby_max: Option<u32>,
}

impl Knobs {
    /// The knobs a user gave, checked.
    pub(crate) fn from_args(args: &PlannerArgs) -> anyhow::Result<Self> {
        Knobs {
            slo: args.slo,
            quantile: args.quantile,
            utilization: args.utilization,
            hold_secs: args.hold.0,
            miss_load: args.miss_load,
            standby_max: None,
        }
        .checked("")
    }

    /// The knobs, checked; `plural` is "s" when they came from `tune`'s lists.
    pub(crate) fn checked(self, plural: &str) -> anyhow::Result<Self> {
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

/// A trace ready to replay: work and requests per step, steps of a minute or shorter.
#[derive(Clone)]
pub(crate) struct Replay {
    pub name: String,
    pub trace: Trace,
    /// Requests per step.
    pub requests: Vec<f64>,
    /// Work per step in the capacity's unit (the requests again for a request-counted fleet).
    pub work: Vec<f64>,
    /// Prompt and output tokens per step, when the trace has them.
    pub tokens: Option<(Vec<f64>, Vec<f64>)>,
    pub step_secs: i64,
    /// What one GPU does.
    pub capacity: Capacity,
    /// The profile the capacity comes from, when one was chosen.
    pub profile: Option<GpuProfile>,
    /// Every profile to compare (`--gpu-profile FILE` with several).
    pub profiles: Vec<GpuProfile>,
    /// How the capacity was chosen, in words.
    pub capacity_note: String,
    pub sim: SimConfig,
    pub tz: Option<Tz>,
    pub refit_secs: i64,
    /// The boot-time seed (resumes and their failures draw from it too).
    pub seed: u64,
    /// The `hpa` policy's target and scale-in window, seconds.
    pub hpa: (f64, i64),
}

impl Replay {
    pub(crate) fn load(args: &ReplayArgs) -> anyhow::Result<Self> {
        let (trace, name) = crate::output::load_trace(args.trace.as_deref())?;
        // Replays run in steps of a minute at most: a coarser bucket is spread evenly.
        let split = (trace.step_secs / 60).max(1) as usize;
        ensure!(
            trace.step_secs <= 60 || trace.step_secs % 60 == 0,
            "the trace's {} interval is not a whole number of minutes",
            format_duration(trace.step_secs)
        );
        let step_secs = trace.step_secs / split as i64;
        let spread = |values: &[f64]| -> anyhow::Result<Vec<f64>> {
            let filled =
                interpolate(values).context("the trace has no observed values to replay")?;
            Ok(filled
                .iter()
                .flat_map(|v| std::iter::repeat_n(v / split as f64, split))
                .collect())
        };
        let requests = spread(&trace.requests)?;
        let tokens = match (trace.column("tokens_in"), trace.column("tokens_out")) {
            (Some(i), Some(o)) if i.iter().chain(o).any(|v| !v.is_nan()) => {
                Some((spread(i)?, spread(o)?))
            }
            _ => None,
        };
        let peak_of =
            |series: &[f64]| series.iter().copied().fold(0.0, f64::max) / step_secs as f64;
        ensure!(
            peak_of(&requests) > 0.0,
            "the trace has no requests to replay"
        );
        let (capacity, profile, profiles, capacity_note) =
            choose_capacity(args, tokens.as_ref(), &requests, step_secs)?;
        let work = work_of(&capacity, &requests, tokens.as_ref());
        ensure!(peak_of(&work) > 0.0, "the trace has no work to replay");
        let boot_secs = args.boot.0;
        let boot = match args.boot_max {
            Some(Span(max_secs)) => {
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
        let timeout_secs = args.timeout.0;
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
        let span_secs = work.len() as i64 * step_secs;
        let warmup_secs = match args.warmup {
            Some(SpanOrZero(w)) => w,
            None if span_secs >= 4 * 86_400 => 2 * 86_400,
            None => 0,
        };
        ensure!(
            warmup_secs < span_secs,
            "--warmup is as long as the trace: nothing would be scored"
        );
        ensure!(
            args.price.is_none_or(|p| p.is_finite() && p >= 0.0),
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
        ensure!(
            args.hpa_target.is_finite() && args.hpa_target > 0.0 && args.hpa_target <= 1.0,
            "--hpa-target is a utilisation above 0 and at most 1, got {}",
            args.hpa_target
        );
        let price = match &profile {
            Some(GpuProfile {
                price_usd_per_gpu_hour: Some(p),
                ..
            }) if args.price.is_none() => *p,
            _ => args
                .price
                .unwrap_or(prewarm_planner::defaults::PRICE_USD_PER_GPU_HOUR),
        };
        Ok(Self {
            name,
            trace,
            requests,
            work,
            tokens,
            step_secs,
            capacity,
            profile,
            profiles,
            capacity_note,
            sim: SimConfig {
                capacity,
                timeout_secs,
                boot,
                price_usd_per_gpu_hour: price,
                score_from_step: (warmup_secs / step_secs) as usize,
                standby: None,
            },
            tz,
            refit_secs: args.refit.0,
            seed: args.seed,
            hpa: (args.hpa_target, args.hpa_scale_in.0),
        })
    }

    /// Steps replayed without scoring.
    pub(crate) fn warmup_steps(&self) -> usize {
        self.sim.score_from_step
    }

    /// What the policies replay: the work, carried by the requests.
    pub(crate) fn traffic(&self) -> prewarm_sim::Traffic<'_> {
        prewarm_sim::Traffic::work(&self.work, &self.requests)
    }

    /// The same trace with another profile's capacity (and its price, unless --price was
    /// given).
    pub(crate) fn with_profile(&self, profile: &GpuProfile, price_given: bool) -> Self {
        let mut r = self.clone();
        r.capacity = profile.capacity();
        r.work = work_of(&r.capacity, &r.requests, r.tokens.as_ref());
        r.sim.capacity = r.capacity;
        if let (Some(p), false) = (profile.price_usd_per_gpu_hour, price_given) {
            r.sim.price_usd_per_gpu_hour = p;
        }
        r.profile = Some(profile.clone());
        r.capacity_note = format!("profile `{}`: {}", profile.name, r.capacity.describe());
        r
    }

    pub(crate) fn planner(&self, knobs: &Knobs) -> PlannerConfig {
        let mut cfg = PlannerConfig::with_capacity(self.capacity);
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
        if let (Some(max), Some(sb)) = (knobs.standby_max, self.sim.standby) {
            cfg.standby = Some(prewarm_planner::StandbyConfig {
                resume_secs: sb.resume.max_secs(),
                price_share: sb.price_share,
                max_gpus: max.min(cfg.max_gpus),
            });
        }
        cfg
    }

    fn initial_gpus(&self) -> u32 {
        let first = self.work.first().copied().unwrap_or(0.0) / self.step_secs as f64;
        self.capacity.gpus_for(first, 0.6).max(1)
    }

    pub(crate) fn predictive(&self, knobs: &Knobs, cache: Option<ForecastCache>) -> Predictive {
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
        if self.tokens.is_some() && self.capacity.is_tokens() {
            p.requests = Some(self.requests.clone().into());
        }
        p
    }

    /// The same planner sized on request counts, a GPU serving the trace's mean work per
    /// request: what a request-counting autoscaler does on an LLM fleet (its orders are still
    /// judged by the work they serve). `None` when the fleet counts requests already.
    pub(crate) fn requests_sized(&self, knobs: &Knobs) -> Option<RequestsSized> {
        if !self.capacity.is_tokens() {
            return None;
        }
        let (work, requests): (f64, f64) = (self.work.iter().sum(), self.requests.iter().sum());
        let gpu_rps = (requests / work) * self.capacity.per_gpu();
        let mut sized = self.clone();
        sized.capacity = Capacity::requests(gpu_rps);
        sized.work = sized.requests.clone();
        sized.tokens = None;
        let mut inner = sized.predictive(knobs, None);
        inner.cfg.slo = self.planner(knobs).slo;
        Some(RequestsSized { inner, gpu_rps })
    }

    pub(crate) fn policy(&self, name: PolicyName, knobs: &Knobs) -> Box<dyn Policy + Send> {
        match name {
            PolicyName::Predictive => Box::new(self.predictive(knobs, None)),
            PolicyName::Reactive => Box::new(Reactive {
                cfg: self.planner(knobs),
                step_secs: self.step_secs,
                initial: self.initial_gpus(),
            }),
            PolicyName::Static => {
                let peak = self.work.iter().copied().fold(0.0, f64::max) / self.step_secs as f64;
                Box::new(Static {
                    gpus: self.capacity.gpus_for(peak, knobs.utilization),
                })
            }
            PolicyName::Clairvoyant => Box::new(Clairvoyant {
                future: self.work.clone(),
                step_secs: self.step_secs,
                capacity: self.capacity,
                boot_secs: self.sim.boot.max_secs(),
            }),
            PolicyName::Hindsight => Box::new(Hindsight::fit(
                self.trace.start,
                self.step_secs,
                &self.work,
                &self.requests,
                self.tz.unwrap_or(Tz::UTC),
                &self.sim,
                knobs.slo,
            )),
            PolicyName::Hpa => Box::new(self.hpa()),
            PolicyName::TunedHpa => {
                let (hpa, _) = prewarm_sim::policies::tune_hpa(
                    self.trace.start,
                    self.traffic(),
                    &self.sim,
                    &self.hpa(),
                    knobs.slo,
                );
                Box::new(hpa)
            }
            PolicyName::RequestsSized => match self.requests_sized(knobs) {
                Some(p) => Box::new(p),
                None => Box::new(self.predictive(knobs, None)),
            },
        }
    }

    /// The `hpa` policy as the flags set it.
    pub(crate) fn hpa(&self) -> prewarm_sim::policies::Hpa {
        let first = self.work.first().copied().unwrap_or(0.0) / self.step_secs as f64;
        prewarm_sim::policies::Hpa::new(
            self.capacity,
            self.step_secs,
            self.hpa.0,
            self.hpa.1,
            prewarm_planner::defaults::MIN_GPUS,
            self.capacity.gpus_for(first, self.hpa.0).max(1),
        )
    }

    /// Days of the replay that are scored (after the warm-up).
    pub(crate) fn scored_days(&self) -> f64 {
        (self.work.len().saturating_sub(self.warmup_steps()) as i64 * self.step_secs) as f64
            / 86_400.0
    }

    /// GPUs each step's work needs at full load.
    pub(crate) fn needed(&self) -> Vec<f64> {
        self.work
            .iter()
            .map(|w| self.capacity.gpus_for(w / self.step_secs as f64, 1.0) as f64)
            .collect()
    }

    /// GPU-hours of capacity that exactly matches each scored step, boot time free.
    pub(crate) fn lower_bound_gpu_hours(&self) -> f64 {
        self.needed()[self.warmup_steps()..].iter().sum::<f64>() * self.step_secs as f64 / 3_600.0
    }

    /// The trace's token rates, in words: `prompt 35,120 tokens/s, output 4,080 tokens/s at the
    /// mean`, when it has tokens.
    pub(crate) fn token_note(&self) -> Option<String> {
        let (tin, tout) = self.tokens.as_ref()?;
        let secs = tin.len() as f64 * self.step_secs as f64;
        let requests: f64 = self.requests.iter().sum();
        let (i, o): (f64, f64) = (tin.iter().sum(), tout.iter().sum());
        Some(format!(
            "{:.0} prompt and {:.0} output tokens/s on average ({:.0} and {:.0} per request)",
            i / secs,
            o / secs,
            i / requests.max(1e-9),
            o / requests.max(1e-9)
        ))
    }
}

/// The predictive planner sized on request counts (see [`Replay::requests_sized`]).
pub(crate) struct RequestsSized {
    inner: Predictive,
    /// Requests per second it takes a GPU to serve.
    pub gpu_rps: f64,
}

impl Policy for RequestsSized {
    fn name(&self) -> &str {
        "requests-sized"
    }
    fn initial_gpus(&self) -> u32 {
        self.inner.initial_gpus()
    }
    fn decide(
        &mut self,
        now: chrono::DateTime<chrono::Utc>,
        past: &[f64],
        state: &prewarm_planner::FleetState,
    ) -> prewarm_planner::Decision {
        self.inner.decide(now, past, state)
    }
    fn plans_on_requests(&self) -> bool {
        true
    }
}

/// Work per step under `capacity`: the requests, or the tokens' GPU-seconds (a step whose tokens
/// are missing takes the mean work per request of the trace).
pub(crate) fn work_of(
    capacity: &Capacity,
    requests: &[f64],
    tokens: Option<&(Vec<f64>, Vec<f64>)>,
) -> Vec<f64> {
    match (capacity.token_rates(), tokens) {
        (Some(rates), Some((tin, tout))) => tin
            .iter()
            .zip(tout)
            .map(|(i, o)| rates.gpu_secs(*i, *o).max(0.0))
            .collect(),
        _ => requests.to_vec(),
    }
}

/// The replay's capacity from the flags: (capacity, the profile it came from, every profile to
/// compare, how it was chosen).
fn choose_capacity(
    args: &ReplayArgs,
    tokens: Option<&(Vec<f64>, Vec<f64>)>,
    requests: &[f64],
    step_secs: i64,
) -> anyhow::Result<(Capacity, Option<GpuProfile>, Vec<GpuProfile>, String)> {
    let wants_tokens = args.prefill_tps.is_some() || args.gpu_profile.is_some();
    if wants_tokens && tokens.is_none() {
        bail!(
            "--prefill-tps, --decode-tps and --gpu-profile plan in tokens, and the trace has no tokens_in and tokens_out columns; give --gpu-rps (or --peak-gpus) to plan in requests"
        );
    }
    if let (Some(p), Some(d)) = (args.prefill_tps, args.decode_tps) {
        let c = Capacity::tokens(p, d).map_err(|e| anyhow::anyhow!("--{}", e.replace('_', "-")))?;
        return Ok((c, None, Vec::new(), c.describe()));
    }
    if let Some(spec) = &args.gpu_profile {
        let profiles = crate::profile::resolve(spec)?;
        let first = profiles[0].clone();
        return Ok((
            first.capacity(),
            Some(first.clone()),
            profiles,
            format!("profile `{}`: {}", first.name, first.capacity().describe()),
        ));
    }
    let peak = |series: &[f64]| series.iter().copied().fold(0.0, f64::max) / step_secs as f64;
    if let Some(r) = args.gpu_rps {
        ensure!(
            r.is_finite() && r > 0.0,
            "--gpu-rps must be a positive number"
        );
        return Ok((
            Capacity::requests(r),
            None,
            Vec::new(),
            format!("{r:.3} requests/s per GPU"),
        ));
    }
    ensure!(args.peak_gpus > 0, "--peak-gpus must be at least 1");
    match tokens {
        Some(tokens) => {
            // The bundled profile's mix of prefill and decode, scaled so the peak needs
            // --peak-gpus GPUs.
            let bundled = crate::profile::bundled_default();
            let unit = bundled.capacity();
            let peak_work = peak(&work_of(&unit, requests, Some(tokens)));
            ensure!(peak_work > 0.0, "the trace's tokens add up to no work");
            let c = unit.scaled(peak_work / args.peak_gpus as f64);
            Ok((
                c,
                None,
                Vec::new(),
                format!(
                    "{} (the bundled profile `{}`'s prefill:decode ratio, sized so the peak needs {} GPUs; give --prefill-tps and --decode-tps, or --gpu-profile, for your GPU's)",
                    c.describe(),
                    bundled.name,
                    args.peak_gpus
                ),
            ))
        }
        None => {
            let r = peak(requests) / args.peak_gpus as f64;
            Ok((
                Capacity::requests(r),
                None,
                Vec::new(),
                format!(
                    "{r:.3} requests/s per GPU (sized so the peak needs {} GPUs)",
                    args.peak_gpus
                ),
            ))
        }
    }
}
