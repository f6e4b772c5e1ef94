//! The policies `prewarm simulate` compares on the same trace: the seed's reactive headroom
//! strategy, a static fleet, this planner with its forecasts, and a clairvoyant that reads the
//! future (the limit no real policy can beat).

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};
use prewarm_forecast::{
    forecast, DemandDistribution, ForecastRequest, Forecaster, ModelKind, ModelSettings,
    OutlierSettings, Scored, Transform, TrendSpec,
};

use prewarm_planner::{
    defaults::{
        BOOTSTRAP_EVERY_SECS, BOOTSTRAP_TRAIN_SECS, CALIBRATION_WINDOW_SECS, FORECAST_HORIZON_SECS,
        MIN_FIT_HISTORY_SECS, MIN_PLAN_HISTORY_SECS,
    },
    orders_to_reach,
    refit::Calibrated,
    slo::{self, Sizing},
    Decision, Demand, FleetState, Forecast, PlanInput, PlannerConfig, Strategy,
};

use crate::Policy;

/// Plans from the requests of every step before `now`, keeping as much recent demand as the
/// reactive rules and the scale-down hold look at.
fn plan_from_past(
    cfg: &PlannerConfig,
    step_secs: i64,
    now: DateTime<Utc>,
    past: &[f64],
    forecast: Option<Forecast<'_>>,
    state: &FleetState,
    strategy: Strategy,
) -> Decision {
    let window = (cfg.demand_window_secs() / step_secs) as usize + 1;
    let rps: Vec<f64> = past[past.len().saturating_sub(window)..]
        .iter()
        .map(|r| r / step_secs as f64)
        .collect();
    // The service's tick calls the same function, with the mode its operators set.
    prewarm_planner::decide(
        &PlanInput {
            now,
            demand: Demand {
                step_secs,
                rps: &rps,
            },
            forecast,
            state,
            strategy,
        },
        cfg,
        prewarm_planner::Mode::Act,
    )
}

/// The seed's reactive headroom strategy alone.
#[derive(Debug, Clone)]
pub struct Reactive {
    /// The planner's settings.
    pub cfg: PlannerConfig,
    /// Bucket width, seconds.
    pub step_secs: i64,
    /// GPUs ready when the replay starts.
    pub initial: u32,
}

impl Policy for Reactive {
    fn name(&self) -> &str {
        "reactive"
    }
    fn initial_gpus(&self) -> u32 {
        self.initial
    }
    fn decide(&mut self, now: DateTime<Utc>, past: &[f64], state: &FleetState) -> Decision {
        plan_from_past(
            &self.cfg,
            self.step_secs,
            now,
            past,
            None,
            state,
            Strategy::Reactive,
        )
    }
}

/// A fixed fleet, sized once.
#[derive(Debug, Clone)]
pub struct Static {
    /// A GPU count.
    pub gpus: u32,
}

impl Policy for Static {
    fn name(&self) -> &str {
        "static"
    }
    fn initial_gpus(&self) -> u32 {
        self.gpus
    }
    fn decide(&mut self, _now: DateTime<Utc>, _past: &[f64], state: &FleetState) -> Decision {
        Decision {
            desired_gpus: state.provisioned(),
            orders: Vec::new(),
            reason: format!("static fleet of {}", self.gpus),
            breach: None,
            forecast_p50_rps: None,
            forecast_upper_rps: None,
        }
    }
}

/// Steps from a boot order to a serving GPU, rounded up.
fn boot_steps(boot_secs: i64, step_secs: i64) -> usize {
    boot_secs.div_euclid(step_secs).max(0) as usize + usize::from(boot_secs % step_secs > 0)
}

/// The most GPUs `need` asks for from step `i` to a boot time later: what must be held now, since
/// a GPU terminated now cannot be back sooner.
fn held_until_boot(i: usize, boot_steps: usize, need: impl Fn(usize) -> u32) -> u32 {
    (i..=i + boot_steps).map(need).max().unwrap_or(0)
}

/// Reads the future: orders exactly what each step needs, one boot time ahead, at full load.
#[derive(Debug, Clone)]
pub struct Clairvoyant {
    /// Work per step over the whole trace.
    pub future: Vec<f64>,
    /// Bucket width, seconds.
    pub step_secs: i64,
    /// What one GPU does.
    pub capacity: prewarm_planner::Capacity,
    /// Boot time drawn uniformly in this range, seconds.
    pub boot_secs: i64,
}

impl Clairvoyant {
    fn need(&self, step: usize) -> u32 {
        let rate = self.future.get(step).copied().unwrap_or(0.0) / self.step_secs as f64;
        self.capacity.gpus_for(rate, 1.0)
    }
}

impl Policy for Clairvoyant {
    fn name(&self) -> &str {
        "clairvoyant"
    }
    fn initial_gpus(&self) -> u32 {
        let lead = (self.boot_secs / self.step_secs) as usize;
        held_until_boot(0, lead, |s| self.need(s))
    }
    fn decide(&mut self, _now: DateTime<Utc>, past: &[f64], state: &FleetState) -> Decision {
        // A GPU ordered now serves a boot time later; the ones held must cover every step
        // until then.
        let lead = boot_steps(self.boot_secs, self.step_secs);
        let desired = held_until_boot(past.len(), lead, |s| self.need(s));
        let orders = orders_to_reach(desired, state.provisioned());
        Decision {
            desired_gpus: desired,
            orders,
            reason: format!(
                "clairvoyant: the next {} min need at most {desired} GPUs",
                self.boot_secs / 60
            ),
            breach: None,
            forecast_p50_rps: None,
            forecast_upper_rps: None,
        }
    }
}

/// Holds up to this long share one forecast horizon.
const MAX_SHARED_HOLD_SECS: i64 = 1_800;

/// Medians computed once and shared by predictive policies that differ only in planning knobs
/// (SLO, quantile, hold, utilisation): keyed by the step at which the refit ran.
pub type ForecastCache =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<usize, Option<Median>>>>;

/// A median forecast per step: (origin step, rps per step, error floor in rps).
pub type Median = (usize, Vec<f64>, f64);

/// Settings of the predictive policy's forecasts.
#[derive(Debug, Clone)]
pub struct ForecastSettings {
    /// Bucket width the model is fitted on (history is summed into it).
    pub step_secs: i64,
    /// Time between refits.
    pub refit_secs: i64,
    /// Most history a fit uses.
    pub train_secs: i64,
    /// No forecast is planned on before this much history (the reactive rules run meanwhile).
    pub min_history_secs: i64,
    /// History before fits start: forecasts made between this and `min_history_secs` (every
    /// [`BOOTSTRAP_EVERY_SECS`], on the wall clock's hours) are not planned on, only scored, so the
    /// distribution is calibrated once planning starts (the service bootstraps a new fleet's
    /// calibration with backtest fits at the same times).
    pub calibrate_from_secs: i64,
    /// How far back scored minutes calibrate the distribution and size the levels.
    pub calibration_window_secs: i64,
    /// Errors needed in every horizon group before the distribution is trusted.
    pub min_errors: usize,
    /// The forecasting model.
    pub model: ModelKind,
    /// The IANA time zone.
    pub tz: Option<chrono_tz::Tz>,
}

impl Default for ForecastSettings {
    fn default() -> Self {
        Self {
            step_secs: 300,
            refit_secs: 3_600,
            train_secs: 21 * 86_400,
            min_history_secs: MIN_PLAN_HISTORY_SECS,
            calibrate_from_secs: MIN_FIT_HISTORY_SECS,
            calibration_window_secs: CALIBRATION_WINDOW_SECS,
            min_errors: 60,
            model: ModelKind::Mstl,
            tz: None,
        }
    }
}

/// What the predictive policy plans with after a refit: the distribution of the minutes ahead,
/// and the levels the SLO sizer chose (`None` until it has a day of errors).
#[derive(Debug, Clone)]
struct Planning {
    distribution: DemandDistribution,
    sizing: Option<Sizing>,
}

/// This planner: forecasts refitted on a schedule from history before `now` only, the demand
/// distribution calibrated on the trace's own minute-level errors, levels sized to the SLO on the
/// recent past, and the reactive rules as fallback.
pub struct Predictive {
    /// The planner's settings.
    pub cfg: PlannerConfig,
    /// Settings of its forecasts.
    pub forecast: ForecastSettings,
    /// The trace's step.
    pub step_secs: i64,
    /// When the trace's first step starts.
    pub start: DateTime<Utc>,
    /// GPUs ready when the replay starts.
    pub initial: u32,
    /// Shared medians, when several settings replay the same trace.
    pub cache: Option<ForecastCache>,
    /// Forecasts whose minutes are not all scored yet: (origin step, median per step, floor,
    /// steps scored).
    pending: Vec<(usize, Vec<f64>, f64, usize)>,
    /// Scored minutes of the calibration window, oldest first.
    records: VecDeque<Scored>,
    /// The trace's requests per step when its work is not its requests (an LLM fleet), read
    /// only before now: the fleet's record counts timed-out requests, as the service's does.
    pub requests: Option<std::sync::Arc<[f64]>>,
    /// Work, requests and ready GPUs per step over [`slo::REALISED_WINDOW_SECS`]: the fleet's
    /// own record.
    record: VecDeque<(f64, f64, u32)>,
    planning: Option<Planning>,
    /// The last calibration, the step it was made at and the sizing made on it: kept by the
    /// refits within [`prewarm_planner::defaults::RECALIBRATE_SECS`] of it, as the service's
    /// refits keep theirs.
    calibration: Option<(usize, Calibrated, Option<Sizing>)>,
    /// Whether the forecast made when planning starts has been made.
    planned_once: bool,
    /// What the last sizing predicted the fleet would time out ([`slo::budget_share`]).
    predicted: Option<f64>,
    last_fit: Option<usize>,
    /// The ETS candidate the last searching fit chose, and the step it was chosen at: live fits
    /// reuse it while [`prewarm_planner::refit::reuses_trend_spec`] says so, as the service's
    /// refits do.
    trend_spec: Option<(TrendSpec, usize)>,
    /// Fits that failed (history too short etc.), for the report.
    pub failed_fits: usize,
    /// When set, how long each decision and each refit took (a benchmark reads them).
    pub timings: Option<Timings>,
}

/// Wall time of each step's decision ([`plan`]'s reading of the distribution, the queue and the
/// fleet) and of each refit (forecast fit, calibration, distribution and SLO sizing), in
/// nanoseconds.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    /// Time spent deciding, nanoseconds.
    pub decide_ns: Vec<u64>,
    /// Time spent fitting medians, nanoseconds.
    pub refit_ns: Vec<u64>,
    /// Of the refits: fitting the median, calibrating the distribution, sizing to the SLO.
    pub fit_ns: u64,
    /// Time spent calibrating, nanoseconds.
    pub calibrate_ns: u64,
    /// Time spent sizing to the SLO, nanoseconds.
    pub size_ns: u64,
    /// Per refit that got as far as calibrating: whether it calibrated afresh (or kept the last
    /// hour's calibration).
    pub recalibrated: Vec<bool>,
}

impl Predictive {
    /// The predictive policy on a planner configuration and forecast settings.
    pub fn new(
        cfg: PlannerConfig,
        forecast: ForecastSettings,
        start: DateTime<Utc>,
        step_secs: i64,
        initial: u32,
    ) -> Self {
        Self {
            cfg,
            forecast,
            step_secs,
            start,
            initial,
            cache: None,
            requests: None,
            pending: Vec::new(),
            records: VecDeque::new(),
            record: VecDeque::new(),
            planning: None,
            calibration: None,
            planned_once: false,
            predicted: None,
            last_fit: None,
            trend_spec: None,
            failed_fits: 0,
            timings: None,
        }
    }

    /// Steps each forecast covers: [`FORECAST_HORIZON_SECS`], or to the next refit plus a boot
    /// lead and a hold when that is longer.
    fn horizon_steps(&self) -> usize {
        let span = (self.forecast.refit_secs
            + self.cfg.boot_lead_secs
            + self.cfg.hold_secs.max(MAX_SHARED_HOLD_SECS))
        .max(FORECAST_HORIZON_SECS);
        (span / self.step_secs) as usize
    }

    /// Steps per minute (traces finer than a minute are scored by the minute).
    fn per_minute(&self) -> usize {
        (60 / self.step_secs).max(1) as usize
    }

    /// Scores every forecast minute whose actual is now known (each once).
    fn score(&mut self, past: &[f64]) {
        let per = self.per_minute();
        let step = self.step_secs;
        let mut new = Vec::new();
        for (origin, median, floor, fed) in &mut self.pending {
            let levels = prewarm_forecast::distribution::levels_of(median);
            // Whole minutes only: `fed` counts steps from the origin, a minute at a time.
            while *fed + per <= median.len() && *origin + *fed + per <= past.len() {
                let j = *origin + *fed;
                let actual = past[j..j + per].iter().sum::<f64>() / 60.0;
                let median_rps = median[*fed..*fed + per].iter().sum::<f64>() / per as f64;
                let level_rps = levels[*fed..*fed + per].iter().sum::<f64>() / per as f64;
                new.push(Scored {
                    at: self.start + Duration::seconds(step * j as i64),
                    horizon_secs: step * *fed as i64,
                    median_rps,
                    level_rps,
                    actual_rps: actual,
                    floor_rps: *floor,
                });
                *fed += per;
            }
        }
        self.pending
            .retain(|(_, median, _, fed)| *fed + per <= median.len());
        self.records.extend(new);
        let keep_from = self.start
            + Duration::seconds(
                self.step_secs * past.len() as i64 - self.forecast.calibration_window_secs,
            );
        while self.records.front().is_some_and(|r| r.at < keep_from) {
            self.records.pop_front();
        }
    }

    fn refit(&mut self, past: &[f64]) {
        self.last_fit = Some(past.len());
        let cached = self
            .cache
            .as_ref()
            .and_then(|c| c.lock().ok().and_then(|m| m.get(&past.len()).cloned()));
        let clock = std::time::Instant::now();
        let median = match cached {
            Some(m) => m,
            None => {
                let reuse = self.trend_spec.filter(|(_, at)| {
                    prewarm_planner::refit::reuses_trend_spec(
                        (past.len() - at) as i64 * self.step_secs,
                        past.len() as i64 * self.step_secs,
                    )
                });
                let settings = ModelSettings {
                    trend_spec: reuse.map(|(spec, _)| spec),
                    ..ModelSettings::default()
                };
                let (m, chosen) = self
                    .fit_median(past, settings, self.forecast.train_secs, None)
                    .unzip();
                if reuse.is_none() {
                    self.trend_spec = chosen.flatten().map(|spec| (spec, past.len()));
                }
                if let Some(c) = &self.cache {
                    if let Ok(mut map) = c.lock() {
                        map.insert(past.len(), m.clone());
                    }
                }
                m
            }
        };
        let previous = self.planning.take().map(|p| p.distribution);
        let Some((origin, median, floor)) = median else {
            self.failed_fits += 1;
            return;
        };
        self.pending.push((origin, median.clone(), floor, 0));
        let fitted = std::time::Instant::now();
        // The levels planned on until now start the next sizing's search.
        let last_sizing = self
            .calibration
            .as_ref()
            .and_then(|(_, _, sizing)| sizing.clone());
        // The calibration and sizing of the last hour are kept, as the service keeps them.
        let kept = self.calibration.take().filter(|(at, _, _)| {
            (past.len() - at) as i64 * self.step_secs < prewarm_planner::defaults::RECALIBRATE_SECS
        });
        let records: Vec<Scored> = match kept {
            Some(_) => Vec::new(),
            None => self.records.iter().copied().collect(),
        };
        let (calibrated_at, calibrated, kept_sizing) = match kept {
            Some((at, calibrated, sizing)) => (at, calibrated, Some(sizing)),
            None => (
                past.len(),
                prewarm_planner::refit::calibrate(&records, self.forecast.tz),
                None,
            ),
        };
        if let Some(t) = self.timings.as_mut() {
            t.recalibrated.push(kept_sizing.is_none());
        }
        if !calibrated.is_calibrated(self.forecast.min_errors) {
            return;
        }
        let calibration = &calibrated.calibration;
        // The distribution is per minute: a trace finer than a minute is averaged into minutes.
        let per = self.per_minute();
        let minutes: Vec<f64> = median
            .chunks(per)
            .filter(|c| c.len() == per)
            .map(|c| c.iter().sum::<f64>() / per as f64)
            .collect();
        let origin_time = self.start + Duration::seconds(self.step_secs * origin as i64);
        let Some(mut distribution) =
            calibration.distribution(origin_time, origin_time, &minutes, floor)
        else {
            return;
        };
        // Recent demand is compared with what was expected of it: keep the last hour of the
        // previous forecast's minutes before this one.
        if let Some(previous) = &previous {
            distribution = distribution.after(previous, prewarm_planner::NOWCAST_HISTORY_MINUTES);
        }
        let calibrated_at_clock = std::time::Instant::now();
        // A fixed quantile needs no levels: the replay is skipped; a kept calibration keeps its
        // levels.
        let sizing = match kept_sizing {
            Some(sizing) => sizing,
            None => self.size(&calibrated, &records, last_sizing.as_ref()),
        };
        self.calibration = Some((calibrated_at, calibrated, sizing.clone()));
        if let Some(t) = self.timings.as_mut() {
            t.fit_ns += (fitted - clock).as_nanos() as u64;
            t.calibrate_ns += (calibrated_at_clock - fitted).as_nanos() as u64;
            t.size_ns += calibrated_at_clock.elapsed().as_nanos() as u64;
        }
        self.planning = Some(Planning {
            distribution,
            sizing,
        });
    }

    /// The levels sized on `calibrated`'s replay of `records` (none for a fixed quantile, or
    /// before the replay has a day), and the timed-out share they predict kept for the next.
    fn size(
        &mut self,
        calibrated: &Calibrated,
        records: &[Scored],
        last: Option<&Sizing>,
    ) -> Option<Sizing> {
        let sizing = self.cfg.quantile.is_none().then(|| {
            let replay = calibrated.replay(records, self.cfg.boot_lead_secs);
            let sizing = replay.size(
                &self.cfg,
                self.realised(None),
                self.realised(Some(86_400)),
                self.predicted,
                self.forecast.tz,
                last.map(|s| &s.levels),
            );
            if let Some(s) = &sizing {
                self.predicted = Some(s.timed_out_share);
            }
            sizing
        });
        sizing.flatten()
    }

    /// The timed-out share the fleet realised over its record ([`slo::REALISED_WINDOW_SECS`]
    /// of planning on forecasts), or over its last `last_secs` of it; `None` before a day of
    /// record.
    fn realised(&self, last_secs: Option<i64>) -> Option<f64> {
        let per_day = (86_400 / self.step_secs) as usize;
        (self.record.len() >= per_day).then(|| {
            let keep = last_secs.map_or(self.record.len(), |s| (s / self.step_secs) as usize);
            let skip = self.record.len().saturating_sub(keep);
            let rows: Vec<(f64, f64, u32)> = self.record.iter().skip(skip).copied().collect();
            // The record is per step; the queue is replayed per minute.
            let per = self.per_minute();
            let work: Vec<f64> = rows
                .chunks(per)
                .map(|c| c.iter().map(|r| r.0).sum())
                .collect();
            let requests: Vec<f64> = rows
                .chunks(per)
                .map(|c| c.iter().map(|r| r.1).sum())
                .collect();
            let ready: Vec<u32> = rows.chunks(per).map(|c| c[0].2).collect();
            slo::realised_timed_out_share(
                &work,
                &requests,
                &ready,
                &self.cfg.capacity,
                &self.cfg.slo,
            )
        })
    }

    /// A policy that starts planning without earlier forecasts of its own (a replay started on
    /// history, as a service started on an imported one) makes them first, as the service's
    /// bootstrap does: a fit on the wall clock's hours over the calibration window, each on the
    /// history before it (of at least a day) with the bootstrap's cheaper trend
    /// ([`ModelSettings::BOOTSTRAP`]), scored against what came.
    fn bootstrap(&mut self, past: &[f64]) {
        let now = self.start + Duration::seconds(self.step_secs * past.len() as i64);
        let last = now.timestamp().div_euclid(BOOTSTRAP_EVERY_SECS) * BOOTSTRAP_EVERY_SECS;
        let count = self.forecast.calibration_window_secs / BOOTSTRAP_EVERY_SECS;
        let mut forecaster = prewarm_planner::refit::bootstrap_forecaster();
        for k in (0..count).rev() {
            let at = last - BOOTSTRAP_EVERY_SECS * k;
            let steps = (at - self.start.timestamp()).div_euclid(self.step_secs);
            if at >= now.timestamp() || steps * self.step_secs < self.forecast.calibrate_from_secs {
                continue;
            }
            let train_secs = self.forecast.train_secs.min(BOOTSTRAP_TRAIN_SECS);
            let fitted = self
                .fit_median(
                    &past[..steps as usize],
                    ModelSettings::BOOTSTRAP,
                    train_secs,
                    Some(&mut forecaster),
                )
                .map(|(m, _)| m);
            if let Some((origin, median, floor)) = fitted {
                self.pending.push((origin, median, floor, 0));
            }
        }
    }

    /// The medians of the forecasts made so far whose minutes are not all scored (a test reads
    /// the bootstrap's).
    #[cfg(test)]
    pub(crate) fn pending_medians(&self) -> Vec<Vec<f64>> {
        self.pending.iter().map(|(_, m, _, _)| m.clone()).collect()
    }

    /// Fits the model on the history before `past.len()` summed into buckets of the forecast's
    /// step on the wall clock (as the service's history is: a bucket starts at a multiple of the
    /// step since the Unix epoch), up to the last whole bucket, at most `train_secs` of it. The
    /// median is per step of the trace from that bucket's end (the origin), in requests per
    /// second.
    fn fit_median(
        &self,
        past: &[f64],
        settings: ModelSettings,
        train_secs: i64,
        forecaster: Option<&mut Forecaster>,
    ) -> Option<(Median, Option<TrendSpec>)> {
        let ratio = (self.forecast.step_secs / self.step_secs).max(1) as usize;
        let fc_step = self.step_secs * ratio as i64;
        // Steps before the first wall-clock bucket boundary of the trace.
        let offset = ((fc_step - self.start.timestamp().rem_euclid(fc_step)) % fc_step
            / self.step_secs) as usize;
        if past.len() < offset + ratio {
            return None;
        }
        let buckets = (past.len() - offset) / ratio;
        let from = buckets.saturating_sub((train_secs / fc_step) as usize);
        let history: Vec<f64> = (from..buckets)
            .map(|b| {
                past[offset + b * ratio..offset + (b + 1) * ratio]
                    .iter()
                    .sum()
            })
            .collect();
        let origin_step = offset + buckets * ratio;
        let horizon_buckets = self.horizon_steps().div_ceil(ratio);
        let req = ForecastRequest {
            start: self.start
                + Duration::seconds(self.step_secs * offset as i64)
                + Duration::seconds(fc_step * from as i64),
            step_secs: fc_step,
            history: &history,
            tz: self.forecast.tz,
            horizon: horizon_buckets,
            model: self.forecast.model,
            transform: Transform::None,
            outliers: Some(OutlierSettings::default()),
            settings,
        };
        let fitted = match forecaster {
            Some(forecaster) => forecaster.forecast(&req),
            None => forecast(&req),
        };
        let f = fitted.ok()?;
        let median: Vec<f64> = (0..horizon_buckets * ratio)
            .map(|s| f.point[s / ratio].max(0.0) / fc_step as f64)
            .collect();
        Some((
            (origin_step, median, f.error_floor / fc_step as f64),
            f.trend_spec,
        ))
    }
}

impl Policy for Predictive {
    fn name(&self) -> &str {
        if self.cfg.standby.is_some() {
            "predictive+standby"
        } else {
            "predictive"
        }
    }
    fn initial_gpus(&self) -> u32 {
        self.initial
    }
    fn decide(&mut self, now: DateTime<Utc>, past: &[f64], state: &FleetState) -> Decision {
        let history = past.len() as i64 * self.step_secs;
        let planning = history >= self.forecast.min_history_secs;
        // The first forecast planned on is made when planning starts (as the service refits a
        // fleet when it starts planning it).
        if planning && !self.planned_once {
            self.planned_once = true;
            if self.records.is_empty() && self.pending.is_empty() {
                self.bootstrap(past);
            }
            self.score(past);
            self.refit(past);
        }
        let forecast = self
            .planning
            .as_ref()
            .filter(|_| planning)
            .map(|p| Forecast {
                distribution: &p.distribution,
                levels: p.sizing.as_ref().map(|s| &s.levels),
            });
        let started = self.timings.is_some().then(std::time::Instant::now);
        let decision = plan_from_past(
            &self.cfg,
            self.step_secs,
            now,
            past,
            forecast,
            state,
            Strategy::Predictive,
        );
        // The record counts decisions on sized levels only, as the service's does
        // (`ledger::ready_when_acting`): a young forecast's first hours would hold the budget
        // down for the week the record spans.
        let planned_on_forecast = forecast.is_some_and(|f| f.levels.is_some());
        if let (Some(t), Some(started)) = (self.timings.as_mut(), started) {
            t.decide_ns.push(started.elapsed().as_nanos() as u64);
        }
        // Refits on the wall clock's boundaries (the service's cron: every `refit_secs`, or every
        // hour before planning starts), after this step's decision: the service's refit runs
        // half a minute after its tick, so the new forecast is planned on from the next minute.
        let every = if planning {
            self.forecast.refit_secs
        } else {
            BOOTSTRAP_EVERY_SECS
        };
        let boundary = now.timestamp().rem_euclid(every.max(1)) < self.step_secs;
        let fitting = history
            >= self
                .forecast
                .calibrate_from_secs
                .min(self.forecast.min_history_secs);
        if fitting && boundary && self.last_fit != Some(past.len()) {
            let started = std::time::Instant::now();
            self.score(past);
            self.refit(past);
            if let Some(t) = self.timings.as_mut() {
                t.refit_ns.push(started.elapsed().as_nanos() as u64);
            }
        }
        // The fleet's own record (demand of the last step, GPUs ready in it) once it plans on
        // sized levels: what the budget is checked against.
        if planned_on_forecast {
            if let Some(last) = past.last() {
                let requests = self
                    .requests
                    .as_ref()
                    .and_then(|r| r.get(past.len() - 1).copied())
                    .unwrap_or(*last);
                self.record.push_back((*last, requests, state.gpus_ready));
                let window = (slo::REALISED_WINDOW_SECS / self.step_secs) as usize;
                while self.record.len() > window {
                    self.record.pop_front();
                }
            }
        }
        decision
    }
}

/// A reference from hindsight: the cheapest fixed GPU count for each hour of the fleet's local
/// day, chosen on the replayed trace itself so that the requests timed out in the scored steps
/// stay within a target share. No real policy knows these counts in advance; the reference shows
/// how far any time-of-day schedule, however well forecast, can get on the trace. Bursts that
/// come at random times within the hour are what keeps it above `clairvoyant`.
#[derive(Debug, Clone)]
pub struct Hindsight {
    /// GPUs per local hour of day.
    pub counts: [u32; 24],
    slots: Vec<usize>,
    boot_steps: usize,
}

impl Hindsight {
    /// Chooses the counts. `work` and `requests` are the whole trace per step of `step_secs` from
    /// `start` (the same series for a request-counted fleet); only steps from
    /// `cfg.score_from_step` count. The search starts from counts that time out
    /// nothing and takes away, one GPU at a time, the GPU whose removal times out fewest requests
    /// per GPU-hour saved, while the total stays within `max_timeout_share`.
    pub fn fit(
        start: DateTime<Utc>,
        step_secs: i64,
        work: &[f64],
        requests: &[f64],
        tz: chrono_tz::Tz,
        cfg: &crate::SimConfig,
        max_timeout_share: f64,
    ) -> Self {
        use chrono::Timelike;
        let slots: Vec<usize> = (0..requests.len())
            .map(|i| {
                (start + Duration::seconds(step_secs * i as i64))
                    .with_timezone(&tz)
                    .hour() as usize
            })
            .collect();
        let from = cfg.score_from_step.min(requests.len());
        // Runs of consecutive scored steps in the same hour, per hour.
        let mut runs: [Vec<(usize, usize)>; 24] = Default::default();
        let mut i = from;
        while i < requests.len() {
            let mut j = i + 1;
            while j < requests.len() && slots[j] == slots[i] {
                j += 1;
            }
            runs[slots[i]].push((i, j));
            i = j;
        }
        let need = |w: f64| cfg.capacity.gpus_for(w / step_secs as f64, 1.0);
        let mut sim = *cfg;
        sim.score_from_step = 0;
        // Requests timed out in hour `h` with `g` GPUs ready throughout. Each run starts with an
        // empty queue, and what is still queued when it ends counts as lost, so hours are
        // independent and a count never leaves a backlog to the next hour.
        let lost = |h: usize, g: u32| -> f64 {
            runs[h]
                .iter()
                .map(|&(a, b)| {
                    let mut acc = prewarm_planner::accounting::Accounting::new(step_secs, &sim);
                    let served: f64 = (a..b)
                        .enumerate()
                        .map(|(k, i)| acc.step(k, work[i], requests[i], g, g, 0, false).0)
                        .sum();
                    let arrived: f64 = requests[a..b].iter().map(|r| r.max(0.0)).sum();
                    (arrived - served).max(0.0)
                })
                .sum()
        };
        let mut counts = [0u32; 24];
        let mut losses = [0.0f64; 24];
        for h in 0..24 {
            counts[h] = runs[h]
                .iter()
                .flat_map(|&(a, b)| work[a..b].iter().map(|w| need(*w)))
                .max()
                .unwrap_or(0);
        }
        let total: f64 = requests[from..].iter().map(|r| r.max(0.0)).sum();
        let budget = max_timeout_share.max(0.0) * total;
        let steps: Vec<usize> = runs
            .iter()
            .map(|r| r.iter().map(|(a, b)| b - a).sum())
            .collect();
        let mut spent = 0.0;
        // The next removal per hour: (extra requests lost per step saved, loss at one GPU less).
        let next = |h: usize, counts: &[u32; 24], losses: &[f64; 24]| -> Option<(f64, f64)> {
            (counts[h] > 0 && steps[h] > 0).then(|| {
                let l = lost(h, counts[h] - 1);
                ((l - losses[h]) / steps[h] as f64, l)
            })
        };
        let mut candidates: Vec<Option<(f64, f64)>> =
            (0..24).map(|h| next(h, &counts, &losses)).collect();
        loop {
            let best = candidates
                .iter()
                .enumerate()
                .filter_map(|(h, c)| c.map(|(rate, l)| (h, rate, l)))
                .filter(|(h, _, l)| spent + (l - losses[*h]) <= budget)
                .min_by(|a, b| a.1.total_cmp(&b.1));
            let Some((h, _, l)) = best else { break };
            spent += l - losses[h];
            losses[h] = l;
            counts[h] -= 1;
            candidates[h] = next(h, &counts, &losses);
        }
        Self {
            counts,
            slots,
            boot_steps: boot_steps(cfg.boot.max_secs(), step_secs),
        }
    }

    fn count_at(&self, step: usize) -> u32 {
        self.slots.get(step).map_or(0, |&h| self.counts[h])
    }
}

impl Policy for Hindsight {
    fn name(&self) -> &str {
        "hindsight"
    }
    fn initial_gpus(&self) -> u32 {
        held_until_boot(0, self.boot_steps, |s| self.count_at(s))
    }
    fn decide(&mut self, _now: DateTime<Utc>, past: &[f64], state: &FleetState) -> Decision {
        // Ready for each hour when it starts, kept until it ends (as `clairvoyant` does).
        let desired = held_until_boot(past.len(), self.boot_steps, |s| self.count_at(s));
        Decision {
            desired_gpus: desired,
            orders: orders_to_reach(desired, state.provisioned()),
            reason: format!("hindsight schedule: {desired} GPUs for this hour of day"),
            breach: None,
            forecast_p50_rps: None,
            forecast_upper_rps: None,
        }
    }
}

impl std::fmt::Debug for Predictive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Predictive")
            .field("cfg", &self.cfg)
            .field("forecast", &self.forecast)
            .field("step_secs", &self.step_secs)
            .field("failed_fits", &self.failed_fits)
            .finish_non_exhaustive()
    }
}

/// The Kubernetes Horizontal Pod Autoscaler (and KEDA, which drives it) with a utilisation
/// target: desired = ceil(load / (target x per-GPU capacity)), within a 10% tolerance of the
/// current size; up at once, down only to the highest recommendation of the last scale-in window
/// (the HPA's downscale stabilisation, 5 minutes by default); terminations take booting GPUs
/// first. What most users of open autoscalers run today.
#[derive(Debug, Clone)]
pub struct Hpa {
    /// The name in reports (`hpa`, or `tuned-hpa`).
    pub name: String,
    /// What one GPU does.
    pub capacity: prewarm_planner::Capacity,
    /// Bucket width, seconds.
    pub step_secs: i64,
    /// The utilisation target (0.7: scale so GPUs run at 70%).
    pub target: f64,
    /// The downscale stabilisation window, seconds.
    pub scale_in_secs: i64,
    /// Fewest GPUs.
    pub min_gpus: u32,
    /// Most GPUs.
    pub max_gpus: u32,
    /// GPUs ready when the replay starts.
    pub initial: u32,
    /// Recent recommendations: (when, GPUs).
    recommendations: VecDeque<(DateTime<Utc>, u32)>,
}

impl Hpa {
    /// The HPA's tolerance: no change while the load is within 10% of the target.
    pub const TOLERANCE: f64 = 0.1;
    /// The utilisation target most users set (and the `hpa` row's default).
    pub const DEFAULT_TARGET: f64 = 0.7;
    /// The HPA's default downscale stabilisation window.
    pub const DEFAULT_SCALE_IN_SECS: i64 = 300;

    /// An HPA on `capacity` with a target and a scale-in window.
    pub fn new(
        capacity: prewarm_planner::Capacity,
        step_secs: i64,
        target: f64,
        scale_in_secs: i64,
        min_gpus: u32,
        initial: u32,
    ) -> Self {
        Self {
            name: "hpa".into(),
            capacity,
            step_secs,
            target,
            scale_in_secs,
            min_gpus,
            max_gpus: prewarm_planner::settings::limits::MAX_GPUS,
            initial,
            recommendations: VecDeque::new(),
        }
    }
}

impl Policy for Hpa {
    fn name(&self) -> &str {
        &self.name
    }
    fn initial_gpus(&self) -> u32 {
        self.initial
    }
    fn decide(&mut self, now: DateTime<Utc>, past: &[f64], state: &FleetState) -> Decision {
        let rate = past.last().copied().unwrap_or(0.0) / self.step_secs as f64;
        let provisioned = state.provisioned();
        let per_gpu = self.capacity.per_gpu();
        // The metric as the HPA reads it: utilisation of the current pods against the target.
        let ratio = rate / (provisioned.max(1) as f64 * per_gpu * self.target);
        let raw = if provisioned > 0 && (ratio - 1.0).abs() <= Self::TOLERANCE {
            provisioned
        } else {
            self.capacity.gpus_for(rate, self.target)
        }
        .clamp(self.min_gpus, self.max_gpus);
        self.recommendations.push_back((now, raw));
        let window = Duration::seconds(self.scale_in_secs);
        while self
            .recommendations
            .front()
            .is_some_and(|(at, _)| *at <= now - window)
        {
            self.recommendations.pop_front();
        }
        let stabilised = self
            .recommendations
            .iter()
            .map(|(_, g)| *g)
            .max()
            .unwrap_or(raw);
        let desired = if raw >= provisioned { raw } else { stabilised };
        Decision {
            desired_gpus: desired,
            orders: orders_to_reach(desired, provisioned),
            reason: format!(
                "{}: load {:.0}% of target on {provisioned} GPUs; {raw} recommended, {desired} after the {} scale-in window",
                self.name,
                100.0 * ratio,
                prewarm_core::format_duration(self.scale_in_secs)
            ),
            breach: None,
            forecast_p50_rps: None,
            forecast_upper_rps: None,
        }
    }
}

/// The HPA's utilisation targets and scale-in windows the `tuned-hpa` reference tries.
pub const TUNED_HPA_TARGETS: [f64; 9] = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];
/// The scale-in windows the `tuned-hpa` reference tries, seconds.
pub const TUNED_HPA_SCALE_INS: [i64; 4] = [300, 900, 1_800, 3_600];

/// A reference from hindsight, like [`Hindsight`]: the cheapest HPA (target and scale-in window
/// from [`TUNED_HPA_TARGETS`] x [`TUNED_HPA_SCALE_INS`]) that keeps the scored trace within
/// `max_timeout_share`, chosen by replaying each on the trace itself. `None` when none does (the
/// safest is then returned, so the row still shows what the rule can do).
pub fn tune_hpa(
    start: DateTime<Utc>,
    traffic: crate::Traffic<'_>,
    cfg: &crate::SimConfig,
    base: &Hpa,
    max_timeout_share: f64,
) -> (Hpa, bool) {
    let mut tried: Vec<(Hpa, f64, f64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = TUNED_HPA_TARGETS
            .iter()
            .flat_map(|t| TUNED_HPA_SCALE_INS.iter().map(move |w| (*t, *w)))
            .map(|(target, window)| {
                scope.spawn(move || {
                    let mut hpa = Hpa {
                        name: "tuned-hpa".into(),
                        target,
                        scale_in_secs: window,
                        recommendations: VecDeque::new(),
                        ..base.clone()
                    };
                    let (_, s) = crate::simulate_traffic(
                        start,
                        base.step_secs,
                        traffic,
                        &mut hpa.clone(),
                        cfg,
                    );
                    hpa.recommendations.clear();
                    (hpa, s.cost_usd, s.timed_out_share)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("an HPA replay panicked"))
            .collect()
    });
    tried.sort_by(|a, b| a.1.total_cmp(&b.1));
    match tried.iter().position(|t| t.2 <= max_timeout_share) {
        Some(i) => (tried.swap_remove(i).0, true),
        None => {
            let safest = tried
                .into_iter()
                .min_by(|a, b| a.2.total_cmp(&b.2).then(a.1.total_cmp(&b.1)))
                .map(|t| t.0)
                .unwrap_or_else(|| base.clone());
            (safest, false)
        }
    }
}
