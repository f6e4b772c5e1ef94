//! The service's work for each fleet: refit, plan, record, dispatch. The scheduler (or the demo's
//! simulated clock) calls these; they read the time from the injected clock only.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use prewarm_planner::{
    decide, CalendarOverride, Decision, Demand, FleetState, Forecast, Mode as PlanMode,
    OverrideAction, PlanInput, PlannerConfig, Strategy,
};
use sqlx::PgPool;

use crate::{
    callbacks,
    clock::SharedClock,
    config::{Config, Mode},
    dispatcher::{DispatchReport, Dispatcher},
    error::{Job, ServiceError},
    forecasts,
    metrics::{ErrorLabel, Metrics, OrderLabel},
};
use prewarm_store::{
    dashboard::TallyTick,
    fleets::{self, Fleet, FleetEvent},
    leases,
    ledger::{self, Meta},
    state,
};

/// What one decision for a fleet reads, gathered from the database at `now`.
#[derive(Debug, Clone)]
pub struct Gathered {
    /// The moment decided at.
    pub now: DateTime<Utc>,
    /// The fleet as read.
    pub fleet: Fleet,
    /// The planner's settings.
    pub cfg: PlannerConfig,
    /// The fleet's GPUs, rebuilt from orders and callbacks.
    pub state: FleetState,
    /// Width of the demand samples.
    pub step_secs: i64,
    /// Recent demand, work per second per sample in the capacity's unit (requests per second
    /// for a request-counted fleet), oldest first.
    pub rps: Vec<f64>,
    /// The requests per second of the same samples.
    pub requests_rps: Vec<f64>,
    /// The live forecast planned on, if any.
    pub live: Option<forecasts::LiveForecast>,
    /// What the operators had set when the decision was made.
    pub mode: PlanMode,
}

impl Gathered {
    /// The decision: the planner's pure [`decide`] (the one the simulator calls), with notes on
    /// missing demand and on why there is no forecast. No I/O: a dry run calls it too.
    pub fn decide(&self) -> Decision {
        let mut decision = decide(
            &PlanInput {
                now: self.now,
                demand: Demand {
                    step_secs: self.step_secs,
                    rps: &self.rps,
                },
                forecast: self.live.as_ref().map(|f| Forecast {
                    distribution: &f.distribution,
                    levels: f.levels.as_ref(),
                }),
                state: &self.state,
                strategy: Strategy::Predictive,
            },
            &self.cfg,
            self.mode,
        );
        if self.rps.is_empty() {
            decision
                .reason
                .push_str("; no demand samples in the last 32 min");
        }
        if self.live.is_none() {
            if let Some(note) = &self.fleet.refit_note {
                decision.reason.push_str(&format!("; last refit: {note}"));
            }
        }
        decision
    }
}

/// A refit run starts no refit after this many seconds (the default schedule starts a run every
/// 5 minutes; a run still going when the next is due makes it skip).
pub const REFIT_RUN_SECS: u64 = 240;

/// Refits in flight per core. A refit waits on the database for about half its time (reads of
/// its history and stored forecasts, the forecast written), so with one per core the cores sat
/// half idle; its CPU parts (fits, scoring, calibration, sizing) still run at most one per core
/// (`forecasts::on_a_core`). Each holds at most one of the pool's connections at a time: six of
/// the default ten on two cores.
pub const REFITS_PER_CORE: usize = 3;

/// The machine's cores (2 when it cannot say).
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Fleets a tick reads together ([`Service::gather_many`]), and at most as many decisions (or
/// tallies) it writes together.
pub const GATHER_SLICE: usize = 256;

/// Where a tick round's plans send their decisions and tallies, for a writer of each to write
/// in batches while the plans go on.
#[derive(Clone)]
struct RoundWriters {
    records: tokio::sync::mpsc::UnboundedSender<PendingRecord>,
    tallies: tokio::sync::mpsc::UnboundedSender<TallyTick>,
}

/// A task that writes what `queued` receives with `write`, in batches of what is waiting (up to a
/// slice), until every sender is gone.
fn batch_writer<T, F, Fut>(
    mut queued: tokio::sync::mpsc::UnboundedReceiver<T>,
    write: F,
) -> tokio::task::JoinHandle<()>
where
    T: Send + 'static,
    F: Fn(Vec<T>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(GATHER_SLICE);
        while queued.recv_many(&mut batch, GATHER_SLICE).await > 0 {
            write(std::mem::take(&mut batch)).await;
        }
    })
}

/// A plan's decision waiting for its round's writer ([`Service::write_records`]), and where its
/// id goes (`None`: the lease was not held).
struct PendingRecord {
    fleet_id: i64,
    now: DateTime<Utc>,
    state: FleetState,
    decision: Decision,
    /// Its meta but the replica, which the writer sets.
    meta: Meta<'static>,
    reply: tokio::sync::oneshot::Sender<Result<Option<i64>, ServiceError>>,
}

/// What one tick of every held fleet did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TickRound {
    /// Fleets planned (or drained).
    pub planned: usize,
    /// Fleets whose plan failed (the error policy logged each).
    pub failed: usize,
    /// Fleets not started before `service.tick_deadline`: not planned in time.
    pub late: usize,
}

/// What one tick did for one fleet.
#[derive(Debug, Clone, PartialEq)]
pub enum TickOutcome {
    /// A decision was recorded.
    Planned {
        /// The decision's id.
        decision_id: i64,
        /// What the planner decided.
        decision: Decision,
        /// The fleet's GPUs when it decided.
        state: FleetState,
        /// Boot lead in use, seconds.
        boot_lead_secs: i64,
    },
    /// The lease moved to another replica while planning: nothing was written.
    LeaseLost,
    /// The fleet was deleted before the tick read it: nothing to plan.
    FleetGone,
    /// The fleet was draining, its GPUs are gone, and this tick deleted it.
    Drained {
        /// Samples removed with it.
        samples_removed: u64,
    },
}

/// The running service.
pub struct Service {
    /// The database pool.
    pub pool: PgPool,
    /// The configuration.
    pub config: Config,
    /// The clock (the system's, or a simulated one).
    pub clock: SharedClock,
    /// Delivers orders (none in forecast-only mode).
    pub dispatcher: Option<Dispatcher>,
    /// The exported metrics.
    pub metrics: Arc<Metrics>,
    /// This process start as a lease holder (its token fences every write).
    pub holder: leases::Holder,
    /// Fleets this replica leased at its last lease round.
    held: Mutex<Vec<i64>>,
    /// One plan or dispatch at a time per fleet within this replica.
    fleet_locks: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
    /// Whether the scheduler's jobs run (`/readyz`).
    pub scheduler_running: std::sync::atomic::AtomicBool,
    /// Each planned fleet's queue estimate as this replica last wrote it (the dashboard's tally
    /// then needs no read per tick).
    queues: Mutex<HashMap<i64, prewarm_store::dashboard::QueueState>>,
    /// Other running replicas with this replica's id at the last lease round (warned about when
    /// it changes).
    same_id_seen: std::sync::atomic::AtomicI64,
    /// The lease rounds' own connection: a tick that holds every pooled connection never makes a
    /// renewal wait behind it.
    lease_pool: PgPool,
    /// When each fleet must next be planned to catch its next rise ([`prewarm_planner::rise_due`]),
    /// as its last plan found: a tick plans the soonest due first. A fleet not planned yet is
    /// due at once.
    due: Mutex<HashMap<i64, DateTime<Utc>>>,
    /// How many fleets this replica can plan within `service.tick_deadline`, once a tick has
    /// shown a limit (0: none seen); announced at each lease round.
    capacity: std::sync::atomic::AtomicI64,
    /// Each held fleet's live forecast as last rebuilt, under the ids of the stored forecasts it
    /// was rebuilt from (a refit's new forecast changes them).
    live: Mutex<HashMap<i64, (Vec<i64>, forecasts::LiveForecast)>>,
}

impl Service {
    /// The service on a pool, with its configuration (checked) and clock; the error says which
    /// setting is wrong.
    pub fn new(pool: PgPool, config: Config, clock: SharedClock) -> Result<Arc<Self>, String> {
        let dispatcher = if config.service.mode == Mode::Act
            && config.provisioner.kind == crate::config::ProvisionerKind::Webhook
        {
            Some(Dispatcher {
                client: reqwest::Client::builder()
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client: {e}"))?,
                url: config.provisioner.url.clone(),
                secret: crate::webhook::Secret::parse(&config.provisioner.secret.0)?,
                timeout: std::time::Duration::from_secs(config.provisioner.timeout.0 as u64),
                batch: 100,
            })
        } else {
            None
        };
        let holder = leases::Holder::new(&config.service.replica_id);
        let lease_pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_secs(
                config.service.lease_ttl.0.max(1) as u64,
            ))
            .connect_lazy_with(pool.connect_options().as_ref().clone());
        Ok(Arc::new(Self {
            pool,
            config,
            clock,
            dispatcher,
            metrics: Arc::new(Metrics::new()),
            holder,
            held: Mutex::new(Vec::new()),
            fleet_locks: Mutex::new(HashMap::new()),
            scheduler_running: Default::default(),
            queues: Mutex::new(HashMap::new()),
            same_id_seen: Default::default(),
            lease_pool,
            due: Mutex::new(HashMap::new()),
            capacity: Default::default(),
            live: Mutex::new(HashMap::new()),
        }))
    }

    /// This replica's id.
    pub fn replica(&self) -> &str {
        &self.config.service.replica_id
    }

    pub(crate) fn lock_for(&self, fleet_id: i64) -> Arc<tokio::sync::Mutex<()>> {
        self.fleet_locks
            .lock()
            .expect("fleet locks")
            .entry(fleet_id)
            .or_default()
            .clone()
    }

    /// Fleets held at the last lease round.
    pub fn held(&self) -> Vec<i64> {
        self.held.lock().expect("held").clone()
    }

    /// How many fleets this replica can plan within `service.tick_deadline`, once a tick has
    /// shown a limit.
    pub fn capacity(&self) -> Option<i64> {
        Some(self.capacity.load(std::sync::atomic::Ordering::Relaxed)).filter(|c| *c > 0)
    }

    /// Renews, balances and claims leases, on the lease rounds' own connection.
    pub async fn lease_round(&self) -> Result<leases::LeaseRound, sqlx::Error> {
        let round = leases::round(
            &self.lease_pool,
            &self.holder,
            self.config.service.lease_ttl.0,
            self.capacity(),
        )
        .await;
        match &round {
            Ok(r) => {
                // Said once when it starts (or the count changes), not at every round.
                let before = self
                    .same_id_seen
                    .swap(r.same_id_elsewhere, std::sync::atomic::Ordering::Relaxed);
                if r.same_id_elsewhere > 0 && r.same_id_elsewhere != before {
                    tracing::warn!(
                        replica = self.replica(),
                        others = r.same_id_elsewhere,
                        "another running replica uses this replica id; leases keep them apart, but give each its own `service.replica_id`"
                    );
                }
                *self.held.lock().expect("held") = r.held.clone();
                self.metrics.fleets_leased.set(r.held.len() as i64);
                self.metrics.fleets.set(r.fleets);
                self.metrics.lease_takeovers.inc_by(r.claimed as u64);
            }
            // Without the database the leases cannot be trusted: plan nothing until renewed.
            Err(_) => self.held.lock().expect("held").clear(),
        }
        round
    }

    /// The fleet with this id (none: deleted).
    pub async fn fleet(&self, fleet_id: i64) -> Result<Option<Fleet>, sqlx::Error> {
        fleets::fleet_by_id(&self.pool, fleet_id).await
    }

    /// The fleet of that name, if there is one.
    pub async fn fleet_by_name(&self, name: &str) -> Result<Option<Fleet>, sqlx::Error> {
        fleets::find_fleet(&self.pool, name).await
    }

    /// A fleet's calendar events.
    pub async fn events(&self, fleet_id: i64) -> Result<Vec<FleetEvent>, sqlx::Error> {
        fleets::events(&self.pool, fleet_id).await
    }

    /// The planner's settings for a fleet (before the boot lead is learned).
    pub fn planner_config(&self, fleet: &Fleet, events: &[FleetEvent]) -> PlannerConfig {
        let mut cfg = PlannerConfig::with_capacity(fleet.capacity());
        fleet
            .planner_settings()
            .over(&self.config.planner.settings())
            .apply(&mut cfg);
        cfg.min_gpus = fleet.min_gpus.max(0) as u32;
        cfg.max_gpus = fleet.max_gpus.max(0) as u32;
        if let Some(sb) = cfg.standby.as_mut() {
            sb.max_gpus = sb.max_gpus.min(cfg.max_gpus);
        }
        cfg.price_usd_per_gpu_hour = fleet.price_usd_per_gpu_hour;
        cfg.budget_usd_per_hour = fleet.budget_usd_per_hour;
        cfg.tz = fleet.tz();
        cfg.overrides = events
            .iter()
            .map(|e| CalendarOverride {
                start: e.starts_local,
                end: e.ends_local,
                action: match (e.multiply, e.pin_rps) {
                    (Some(m), _) => OverrideAction::Multiply(m),
                    (None, Some(p)) => OverrideAction::PinRps(p),
                    (None, None) => OverrideAction::Multiply(1.0),
                },
            })
            .collect();
        cfg
    }

    /// Boot lead in use: the p95 of the fleet's last week of real boots once there are enough,
    /// rounded up to a minute; the configured lead before that.
    pub async fn boot_lead(
        &self,
        fleet_id: i64,
        configured: i64,
        now: DateTime<Utc>,
    ) -> Result<i64, sqlx::Error> {
        let stats = callbacks::boot_stats(&self.pool, fleet_id, now - Duration::days(7)).await?;
        Ok(self.lead_from(&stats).unwrap_or(configured))
    }

    /// Resume lead in use: the p95 of the fleet's last week of real resumes once there are as
    /// many as boots needed for the boot lead, rounded up to 10 s; the configured lead before.
    pub async fn resume_lead(
        &self,
        fleet_id: i64,
        configured: i64,
        now: DateTime<Utc>,
    ) -> Result<i64, sqlx::Error> {
        let stats =
            prewarm_store::instances::resume_stats(&self.pool, fleet_id, now - Duration::days(7))
                .await?;
        Ok(self.resume_lead_from(&stats).unwrap_or(configured))
    }

    /// The resume lead that a week's resume statistics give: their p95 rounded up to 10 s, once
    /// there are as many as boots needed for the boot lead.
    pub fn resume_lead_from(&self, stats: &callbacks::BootStats) -> Option<i64> {
        stats
            .p95_secs
            .filter(|p95| p95.is_finite() && stats.count >= self.config.planner.min_boots_for_lead)
            .map(|p95| {
                let (lo, hi) = prewarm_planner::settings::limits::RESUME_SECS;
                (((p95 / 10.0).ceil() * 10.0) as i64).clamp(lo, hi)
            })
    }

    /// The lead that a week's boot statistics give: their p95 rounded up to a minute, once at
    /// least `planner.min_boots_for_lead` boots are known.
    pub fn lead_from(&self, stats: &callbacks::BootStats) -> Option<i64> {
        stats
            .p95_secs
            .filter(|p95| p95.is_finite() && stats.count >= self.config.planner.min_boots_for_lead)
            .map(|p95| clamp_lead((p95 / 60.0).ceil() * 60.0))
    }

    /// The mode an operator set for a fleet at `now`: paused, pinned (until its time), the
    /// service's forecast-only, or act.
    pub fn mode_of(&self, fleet: &Fleet, now: DateTime<Utc>) -> PlanMode {
        let pinned = fleet
            .pinned_gpus
            .filter(|_| fleet.pinned_until.is_none_or(|u| u > now));
        if let Some(since) = fleet.draining_since {
            PlanMode::Draining { since }
        } else if fleet.paused {
            PlanMode::Paused
        } else if let Some(pin) = pinned {
            PlanMode::Pinned {
                gpus: pin.max(0) as u32,
                until: fleet.pinned_until,
            }
        } else if self.config.service.mode == Mode::ForecastOnly {
            PlanMode::ForecastOnly
        } else {
            PlanMode::Act
        }
    }

    /// Recent demand per sample bucket, the last one ending by `now`: (bucket width, work per
    /// second in the capacity's unit, requests per second).
    fn demand_of(
        rows: &[prewarm_store::samples::RawBucket],
        now: DateTime<Utc>,
    ) -> (i64, Vec<f64>, Vec<f64>) {
        let step = rows.iter().map(|r| r.secs as i64).min().unwrap_or(60);
        // Buckets still open at `now` are partial, and a bucket with no work (a token fleet's
        // sample without token counts) is missing: leave them out.
        let complete: Vec<_> = rows
            .iter()
            .filter(|b| b.start + Duration::seconds(b.secs as i64) <= now && b.work.is_finite())
            .collect();
        let work = complete.iter().map(|b| b.work / b.secs as f64).collect();
        let requests = complete
            .iter()
            .map(|b| b.requests / b.secs as f64)
            .collect();
        (step, work, requests)
    }

    /// Whether fleets' states are observed (a level-triggered provisioner kind such as KEDA)
    /// rather than rebuilt from orders and callbacks.
    pub fn observes_fleets(&self) -> bool {
        self.config.provisioner.kind != crate::config::ProvisionerKind::Webhook
    }

    /// An observed fleet's state: its latest observation (which must be younger than
    /// `keda.observed_within`), with the replicas desired but not ready booting since the
    /// desired count covered them.
    async fn observed_state(
        &self,
        fleet: &prewarm_store::fleets::Fleet,
        now: DateTime<Utc>,
        window_secs: i64,
    ) -> Result<prewarm_planner::FleetState, ServiceError> {
        let history = prewarm_store::observed::history(
            &self.pool,
            fleet.id,
            now - Duration::seconds(window_secs),
            now,
        )
        .await?;
        let within = self.config.keda.observed_within.0;
        match history.last() {
            Some(last) if (now - last.observed_at).num_seconds() <= within => Ok(
                prewarm_store::observed::state_from(&history, fleet.gpus_per_replica.max(1) as u32),
            ),
            last => Err(ServiceError::Unobserved(format!(
                "fleet `{}` is not planned: {} (a pull with ready_query and desired_query observes it)",
                fleet.name,
                match last {
                    Some(o) => format!(
                        "its real replicas were last observed {} ago, more than keda.observed_within ({})",
                        prewarm_core::format_duration((now - o.observed_at).num_seconds()),
                        prewarm_core::format_duration(within)
                    ),
                    None => format!(
                        "its real replicas have not been observed in the last {}",
                        prewarm_core::format_duration(window_secs)
                    ),
                }
            ))),
        }
    }

    /// Everything a decision reads, from the database: the fleet, its settings with the learned
    /// boot lead, its GPUs, recent demand and the live forecast. `None` when the fleet is gone.
    pub async fn gather(
        &self,
        fleet_id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Gathered>, ServiceError> {
        self.gather_many(&[fleet_id], now)
            .await?
            .remove(&fleet_id)
            .transpose()
    }

    /// [`Service::gather`] for many fleets at once, in a few set-based queries for all of them
    /// (the fleets, their calendars, boot and resume times, ledgers, samples and live
    /// forecasts) instead of a round of queries per fleet. A fleet that is gone is absent; one
    /// that cannot be planned (an observed fleet not observed lately) has its error.
    pub async fn gather_many(
        &self,
        fleet_ids: &[i64],
        now: DateTime<Utc>,
    ) -> Result<HashMap<i64, Result<Gathered, ServiceError>>, ServiceError> {
        let pool = &self.pool;
        let fleets = fleets::fleets_by_ids(pool, fleet_ids).await?;
        let ids: Vec<i64> = fleets.iter().map(|f| f.id).collect();
        let mut cfgs = self.planner_configs(&fleets, now).await?;
        let stale_after = |cfg: &PlannerConfig| (3 * cfg.boot_lead_secs).max(1_800);
        // Observed: every fleet of a level-triggered kind, and in forecast-only mode (shadow
        // mode) a fleet whose real replicas are observed.
        let observed = if self.observes_fleets() {
            ids.iter().copied().collect()
        } else if self.config.service.mode == Mode::ForecastOnly {
            prewarm_store::observed::observed_among(pool, &ids).await?
        } else {
            Default::default()
        };
        let from_ledger: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !observed.contains(id))
            .collect();
        let mut rows = if from_ledger.is_empty() {
            HashMap::new()
        } else {
            state::state_rows(pool, &from_ledger).await?
        };
        let window = |cfg: &PlannerConfig| cfg.demand_window_secs() + 120;
        let widest = cfgs.values().map(window).max().unwrap_or(0);
        let capacities: Vec<(i64, prewarm_planner::Capacity)> =
            ids.iter().map(|id| (*id, cfgs[id].capacity)).collect();
        let mut samples = prewarm_store::samples::raw_buckets_of(
            pool,
            &capacities,
            now - Duration::seconds(widest),
            now,
        )
        .await?;
        let mut live = self.live_forecasts(&ids, now).await?;
        let mut out = HashMap::with_capacity(fleets.len());
        for fleet in fleets {
            let id = fleet.id;
            let cfg = cfgs.remove(&id).expect("a config per fleet");
            let state = if observed.contains(&id) {
                match self.observed_state(&fleet, now, stale_after(&cfg)).await {
                    Ok(s) => s,
                    Err(e) => {
                        out.insert(id, Err(e));
                        continue;
                    }
                }
            } else {
                rows.remove(&id)
                    .unwrap_or_default()
                    .state(now, stale_after(&cfg))
            };
            let since = now - Duration::seconds(window(&cfg));
            let buckets: Vec<_> = samples
                .remove(&id)
                .unwrap_or_default()
                .into_iter()
                .filter(|b| b.start >= since)
                .collect();
            let (step_secs, rps, requests_rps) = Self::demand_of(&buckets, now);
            let mode = self.mode_of(&fleet, now);
            out.insert(
                id,
                Ok(Gathered {
                    now,
                    live: live.remove(&id).flatten(),
                    fleet,
                    cfg,
                    state,
                    step_secs,
                    rps,
                    requests_rps,
                    mode,
                }),
            );
        }
        Ok(out)
    }

    /// Each fleet's planner settings with the boot (and resume) leads its last week of boots
    /// (and resumes) teach, read for all of them at once: their calendars, boot times and, for
    /// fleets with a standby tier, resume times, a query each.
    async fn planner_configs(
        &self,
        fleets: &[Fleet],
        now: DateTime<Utc>,
    ) -> Result<HashMap<i64, PlannerConfig>, sqlx::Error> {
        let pool = &self.pool;
        let ids: Vec<i64> = fleets.iter().map(|f| f.id).collect();
        let week_ago = now - Duration::days(7);
        let events = fleets::events_of(pool, &ids).await?;
        let boots = prewarm_store::instances::boot_stats_of(pool, &ids, week_ago).await?;
        let mut cfgs: HashMap<i64, PlannerConfig> = HashMap::with_capacity(fleets.len());
        for fleet in fleets {
            let mut cfg = self.planner_config(fleet, events.get(&fleet.id).map_or(&[], |e| e));
            if let Some(lead) = boots.get(&fleet.id).and_then(|b| self.lead_from(b)) {
                cfg.boot_lead_secs = lead;
            }
            cfgs.insert(fleet.id, cfg);
        }
        let with_standby: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| cfgs[id].standby.is_some())
            .collect();
        if !with_standby.is_empty() {
            let resumes =
                prewarm_store::instances::resume_stats_of(pool, &with_standby, week_ago).await?;
            for (id, stats) in &resumes {
                if let (Some(lead), Some(sb)) = (
                    self.resume_lead_from(stats),
                    cfgs.get_mut(id).and_then(|c| c.standby.as_mut()),
                ) {
                    sb.resume_secs = lead;
                }
            }
        }
        Ok(cfgs)
    }

    /// The live forecast each fleet plans on (the latest calibrated one younger than two hours,
    /// rebuilt into its demand distribution), in one query for all of them; a forecast already
    /// rebuilt by an earlier tick is reused until a refit replaces it.
    async fn live_forecasts(
        &self,
        fleet_ids: &[i64],
        now: DateTime<Utc>,
    ) -> Result<HashMap<i64, Option<forecasts::LiveForecast>>, sqlx::Error> {
        let latest = prewarm_store::forecasts::latest_live_ids(
            &self.pool,
            fleet_ids,
            now,
            now - Duration::seconds(forecasts::LIVE_MAX_AGE_SECS),
        )
        .await?;
        let mut out = HashMap::with_capacity(fleet_ids.len());
        for &id in fleet_ids {
            let Some(ids) = latest.get(&id) else {
                out.insert(id, None);
                continue;
            };
            let cached = self
                .live
                .lock()
                .expect("live forecasts")
                .get(&id)
                .filter(|(k, _)| k == ids)
                .map(|(_, f)| f.clone());
            let forecast = match cached {
                Some(f) => Some(f),
                None => {
                    let f = forecasts::latest(&self.pool, id, now, forecasts::LIVE_MAX_AGE_SECS)
                        .await?;
                    if let Some(f) = &f {
                        self.live
                            .lock()
                            .expect("live forecasts")
                            .insert(id, (ids.clone(), f.clone()));
                    }
                    f
                }
            };
            out.insert(id, forecast);
        }
        Ok(out)
    }

    /// Plans one fleet at the clock's now, records the decision (fenced by the lease) and delivers
    /// its orders: [`Service::gather`], then the pure [`Gathered::decide`], then the record.
    #[tracing::instrument(name = "tick", skip(self), fields(replica = self.replica()))]
    pub async fn tick_fleet(&self, fleet_id: i64) -> Result<TickOutcome, ServiceError> {
        let lock = self.lock_for(fleet_id);
        let _guard = lock.lock().await;
        let started = Instant::now();
        let now = self.clock.now();
        let gathered = self.gather(fleet_id, now).await?;
        self.plan_gathered(fleet_id, gathered, started, None).await
    }

    /// Plans one fleet from what was gathered for it while its lock was held (`None`: the fleet
    /// is gone), records the decision (fenced by the lease) and delivers its orders.
    async fn plan_gathered(
        &self,
        fleet_id: i64,
        gathered: Option<Gathered>,
        started: Instant,
        writers: Option<&RoundWriters>,
    ) -> Result<TickOutcome, ServiceError> {
        let Some(gathered) = gathered else {
            return Ok(TickOutcome::FleetGone);
        };
        let now = gathered.now;
        if let PlanMode::Draining { .. } = gathered.mode {
            // A draining fleet whose GPUs are gone (and confirmed) is deleted here; until then
            // its decisions terminate what it holds.
            let stale_after = (3 * gathered.cfg.boot_lead_secs).max(1_800);
            if let Some(samples_removed) =
                fleets::finish_drain(&self.pool, fleet_id, now, stale_after).await?
            {
                tracing::info!(
                    fleet = gathered.fleet.name,
                    samples_removed,
                    "the drained fleet was deleted"
                );
                self.queues.lock().expect("queue states").remove(&fleet_id);
                return Ok(TickOutcome::Drained { samples_removed });
            }
        }
        let decision = gathered.decide();
        let Gathered {
            fleet,
            cfg,
            state,
            rps,
            requests_rps,
            live,
            mode,
            ..
        } = gathered;
        let meta = Meta {
            replica: self.replica(),
            mode: prewarm_store::DecisionMode::from(&mode),
            boot_lead_secs: Some(cfg.boot_lead_secs),
            resume_lead_secs: cfg.standby.map(|s| s.resume_secs),
            forecast_id: live.as_ref().map(|f| f.id),
            fence: Some(self.holder.token),
            // A level-triggered kind sends no orders: the decision's count is what it publishes.
            write_orders: mode.orders() && !self.observes_fleets(),
        };
        let recorded = self
            .record(fleet_id, now, &state, &decision, &meta, writers)
            .await?;
        let Some(decision_id) = recorded else {
            return Ok(TickOutcome::LeaseLost);
        };
        let paid = state.provisioned() as f64
            + cfg
                .standby
                .map_or(0.0, |sb| state.standby as f64 * sb.price_share);
        let load = prewarm_store::dashboard::TickLoad {
            demand_rps: rps.last().copied().unwrap_or(0.0),
            requests_rps: requests_rps.last().copied().unwrap_or(0.0),
            gpus_ready: state.gpus_ready,
            capacity: cfg.capacity,
            timeout_secs: cfg.slo.timeout_secs,
            paid_gpus: paid,
            price_usd_per_gpu_hour: fleet.price_usd_per_gpu_hour,
        };
        // The dashboard's tally: a failure there must not hold back the decision's orders. A
        // tick round writes its fleets' tallies in batches; a fleet planned alone writes its own.
        let tick = TallyTick {
            fleet_id,
            now,
            load,
            known: None,
        };
        match writers {
            Some(w) => {
                // The writer outlives the round's plans: a send fails only if it panicked.
                let _ = w.tallies.send(tick);
            }
            None => self.write_tallies(vec![tick]).await,
        }
        self.publish(&fleet, &cfg, &state, &decision, rps.last().copied(), &meta);
        self.metrics
            .tick_seconds
            .observe(started.elapsed().as_secs_f64());
        let due = next_due(live.as_ref(), &cfg, decision.desired_gpus, now);
        self.due.lock().expect("due").insert(fleet_id, due);
        if !decision.orders.is_empty() && meta.write_orders {
            self.dispatch_locked(Some(fleet_id)).await?;
        }
        Ok(TickOutcome::Planned {
            decision_id,
            decision,
            state,
            boot_lead_secs: cfg.boot_lead_secs,
        })
    }

    /// Records a plan's decision (fenced by the lease): through the round's decision writer, in
    /// a batch, when the plan is part of a tick round; in a statement of its own otherwise.
    /// `None`: the lease was not held.
    async fn record(
        &self,
        fleet_id: i64,
        now: DateTime<Utc>,
        state: &FleetState,
        decision: &Decision,
        meta: &Meta<'_>,
        writers: Option<&RoundWriters>,
    ) -> Result<Option<i64>, ServiceError> {
        let Some(w) = writers else {
            return Ok(ledger::record(&self.pool, fleet_id, now, state, decision, meta).await?);
        };
        let stopped =
            || ServiceError::Unavailable("the round's decision writer has stopped".into());
        let (reply, answer) = tokio::sync::oneshot::channel();
        let pending = PendingRecord {
            fleet_id,
            now,
            state: state.clone(),
            decision: decision.clone(),
            meta: Meta {
                replica: "",
                ..*meta
            },
            reply,
        };
        w.records.send(pending).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// The fleet's gauges and counters after a decision was recorded.
    fn publish(
        &self,
        fleet: &Fleet,
        cfg: &PlannerConfig,
        state: &FleetState,
        decision: &Decision,
        demand_rps: Option<f64>,
        meta: &Meta<'_>,
    ) {
        let label = Metrics::label(&fleet.name);
        let m = &self.metrics;
        m.desired_gpus
            .get_or_create(&label)
            .set(decision.desired_gpus as f64);
        m.ready_gpus
            .get_or_create(&label)
            .set(state.gpus_ready as f64);
        m.booting_gpus
            .get_or_create(&label)
            .set(state.booting.len() as f64);
        m.standby_gpus
            .get_or_create(&label)
            .set(state.standby as f64);
        m.resuming_gpus
            .get_or_create(&label)
            .set(state.resuming.len() as f64);
        if let Some(sb) = cfg.standby {
            m.resume_lead_seconds
                .get_or_create(&label)
                .set(sb.resume_secs as f64);
        }
        m.slo_timed_out_share
            .get_or_create(&label)
            .set(cfg.slo.max_timeout_share);
        m.boot_lead_seconds
            .get_or_create(&label)
            .set(cfg.boot_lead_secs as f64);
        m.demand_rps
            .get_or_create(&label)
            .set(demand_rps.unwrap_or(0.0));
        if let (Some(p), Some(u)) = (decision.forecast_p50_rps, decision.forecast_upper_rps) {
            m.forecast_p50_rps.get_or_create(&label).set(p);
            m.forecast_upper_rps.get_or_create(&label).set(u);
        }
        if meta.write_orders {
            for order in &decision.orders {
                let (kind, n) = prewarm_store::OrderKind::of(*order);
                m.orders_recorded
                    .get_or_create(&OrderLabel {
                        fleet: fleet.name.clone(),
                        kind: kind.as_str().into(),
                    })
                    .inc_by(n as u64);
            }
        }
        m.ticks.inc();
    }

    #[tracing::instrument(name = "dispatch", skip(self), fields(replica = self.replica()))]
    async fn dispatch_locked(&self, fleet_id: Option<i64>) -> Result<DispatchReport, ServiceError> {
        let Some(d) = &self.dispatcher else {
            return Ok(DispatchReport::default());
        };
        let report = d
            .dispatch(
                &self.pool,
                self.clock.now(),
                prewarm_store::ledger::ClaimScope {
                    holder: Some(&self.holder.token),
                    fleet_id,
                },
            )
            .await?;
        let m = &self.metrics;
        m.orders_delivered.inc_by(report.delivered as u64);
        m.orders_failed.inc_by(report.failed as u64);
        m.orders_expired.inc_by(report.expired as u64);
        for us in &report.latencies_us {
            m.webhook_latency_seconds.observe(*us as f64 / 1e6);
        }
        Ok(report)
    }

    /// The error policy ([`crate::error`]): logs a job's failure with its fleet and counts it by
    /// job and kind; the job's next run is the retry.
    pub fn report(&self, job: Job, fleet_id: Option<i64>, e: &ServiceError) {
        self.metrics
            .job_errors
            .get_or_create(&ErrorLabel {
                task: job.as_str().into(),
                kind: e.kind().into(),
            })
            .inc();
        let job = job.as_str();
        match e {
            ServiceError::FleetGone(_) => {
                tracing::info!(job, fleet_id, "the fleet was deleted meanwhile")
            }
            e if e.is_transient() => {
                tracing::warn!(job, fleet_id, error = %e, "job failed; its next run retries")
            }
            e => tracing::error!(job, fleet_id, error = %e, kind = e.kind(), "job failed"),
        }
    }

    /// Retries due orders of every fleet this replica holds.
    pub async fn dispatch_all(&self) -> Result<DispatchReport, ServiceError> {
        let mut total = DispatchReport::default();
        for fleet_id in self.held() {
            let lock = self.lock_for(fleet_id);
            let _guard = lock.lock().await;
            let r = self.dispatch_locked(Some(fleet_id)).await?;
            total.delivered += r.delivered;
            total.failed += r.failed;
            total.expired += r.expired;
            total.latencies_us.extend(r.latencies_us);
        }
        Ok(total)
    }

    /// Plans every held fleet, `service.concurrency` at a time, the soonest due first (a rise
    /// coming before a fleet with nothing to do; a fleet not planned yet, or passed over by the
    /// last tick, first of all). No fleet is started after `service.tick_deadline`: those left
    /// are counted as not planned in time (a metric, a log line, the alert rules) and come first
    /// at the next tick, and the replica announces the fleets it can plan in time so that its
    /// lease rounds hand the rest to other replicas. Returns (planned, failed, not planned in
    /// time).
    pub async fn tick_all(self: &Arc<Self>) -> TickRound {
        let started = Instant::now();
        let deadline = std::time::Duration::from_secs(self.config.service.tick_deadline.0 as u64);
        let fleets = self.tick_order();
        let limit = Arc::new(tokio::sync::Semaphore::new(self.config.service.concurrency));
        let mut set = tokio::task::JoinSet::new();
        let mut failed_to_gather = 0;
        // Slice by slice: the slice's fleets are locked (so that no dispatch or API plan changes
        // them between the read and the record) and read in a few set-based queries, one slice
        // ahead of the plans, which run `service.concurrency` at a time.
        let mut reached = 0;
        let slices: Vec<Vec<i64>> = fleets.chunks(GATHER_SLICE).map(<[i64]>::to_vec).collect();
        let read = |ids: Vec<i64>| {
            let me = self.clone();
            tokio::spawn(async move {
                let mut guards = Vec::with_capacity(ids.len());
                for &fleet_id in &ids {
                    guards.push((fleet_id, me.lock_for(fleet_id).lock_owned().await));
                }
                let gathered = me.gather_many(&ids, me.clock.now()).await;
                (guards, gathered)
            })
        };
        let (writers, writing) = self.round_writers();
        let mut ahead = slices.first().cloned().map(read);
        'slices: for k in 0..slices.len() {
            let Some(reading) = ahead.take() else { break };
            let (guards, gathered) = match reading.await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "reading a slice of fleets panicked");
                    break;
                }
            };
            if started.elapsed() >= deadline {
                break;
            }
            ahead = slices.get(k + 1).cloned().map(read);
            let mut gathered = match gathered {
                Ok(g) => g,
                Err(e) => {
                    for &fleet_id in &slices[k] {
                        self.metrics.tick_errors.inc();
                        self.report(Job::Tick, Some(fleet_id), &e);
                    }
                    failed_to_gather += slices[k].len();
                    reached += slices[k].len();
                    continue;
                }
            };
            for (fleet_id, guard) in guards {
                let permit = limit.clone().acquire_owned().await;
                if started.elapsed() >= deadline {
                    if let Some(reading) = ahead.take() {
                        reading.abort();
                    }
                    break 'slices;
                }
                reached += 1;
                let me = self.clone();
                let g = gathered.remove(&fleet_id);
                let writers = writers.clone();
                set.spawn(async move {
                    let _permit = permit;
                    let _guard = guard;
                    me.plan_and_report(fleet_id, g, &writers).await
                });
            }
        }
        let late = fleets.len() - reached;
        let (planned, failed) = tally(set).await;
        // The plans are done: the writers write what is left and end.
        drop(writers);
        for (what, writer) in writing {
            if let Err(e) = writer.await {
                tracing::error!(error = %e, "the round's {what} writer panicked");
            }
        }
        let round = TickRound {
            planned,
            failed: failed + failed_to_gather,
            late,
        };
        self.close_round(&round, fleets.len(), started.elapsed(), deadline);
        round
    }

    /// The held fleets in the order a tick plans them: the soonest due first, a fleet not
    /// planned yet (or passed over) before all. Fleets no longer held are forgotten here
    /// (another replica plans them now).
    fn tick_order(&self) -> Vec<i64> {
        let mut due = self.due.lock().expect("due");
        let held = self.held();
        let keep: std::collections::HashSet<i64> = held.iter().copied().collect();
        due.retain(|f, _| keep.contains(f));
        self.live
            .lock()
            .expect("live forecasts")
            .retain(|f, _| keep.contains(f));
        let mut fleets: Vec<(Option<DateTime<Utc>>, i64)> = held
            .into_iter()
            .map(|f| (due.get(&f).copied(), f))
            .collect();
        // None (never planned) sorts first.
        fleets.sort_unstable();
        fleets.into_iter().map(|(_, f)| f).collect()
    }

    /// A tick round's writers: the plans' decisions and tallies, each written in batches of up
    /// to a slice by a task of its own while the plans go on, until the senders are dropped.
    fn round_writers(
        self: &Arc<Self>,
    ) -> (
        RoundWriters,
        [(&'static str, tokio::task::JoinHandle<()>); 2],
    ) {
        let (records, pending) = tokio::sync::mpsc::unbounded_channel::<PendingRecord>();
        let (tallies, ticked) = tokio::sync::mpsc::unbounded_channel::<TallyTick>();
        let me = self.clone();
        let record_writer = batch_writer(pending, move |batch| {
            let me = me.clone();
            async move { me.write_records(batch).await }
        });
        let me = self.clone();
        let tally_writer = batch_writer(ticked, move |batch| {
            let me = me.clone();
            async move { me.write_tallies(batch).await }
        });
        (
            RoundWriters { records, tallies },
            [("decision", record_writer), ("tally", tally_writer)],
        )
    }

    /// Writes plans' decisions in one statement ([`ledger::record_many`]: each fleet's lease
    /// check, superseded orders, decision and orders as its own statement would) and answers each
    /// plan. When the statement fails nothing of it was written: every plan gets the error (the
    /// first the database's own, the others naming it), and none is retried here, since a
    /// retry after a lost answer could order twice.
    async fn write_records(&self, batch: Vec<PendingRecord>) {
        let written = {
            let records: Vec<ledger::ToRecord> = batch
                .iter()
                .map(|p| ledger::ToRecord {
                    fleet_id: p.fleet_id,
                    now: p.now,
                    state: &p.state,
                    decision: &p.decision,
                    meta: Meta {
                        replica: self.replica(),
                        ..p.meta
                    },
                })
                .collect();
            ledger::record_many(&self.pool, &records).await
        };
        match written {
            Ok(ids) => {
                for (p, id) in batch.into_iter().zip(ids) {
                    let _ = p.reply.send(Ok(id));
                }
            }
            Err(e) => {
                let (n, text) = (batch.len(), e.to_string());
                let unavailable = prewarm_store::is_unavailable(&e);
                let mut first = Some(e);
                for p in batch {
                    let error = match first.take() {
                        Some(e) => ServiceError::from(e),
                        None if unavailable => ServiceError::Unavailable(text.clone()),
                        None => ServiceError::Database(sqlx::Error::Protocol(format!(
                            "written with {} other decisions in one statement, which failed: {text}",
                            n - 1
                        ))),
                    };
                    let _ = p.reply.send(Err(error));
                }
            }
        }
    }

    /// Adds ticks to the dashboard's hourly tally in one statement, each counted from the queue
    /// state this process last wrote for its fleet ([`prewarm_store::dashboard::tally_ticks`]).
    /// A failure is logged and the fleets' remembered states dropped (the next tick counts from
    /// the stored ones): the tally must not hold back a plan.
    async fn write_tallies(&self, mut ticks: Vec<TallyTick>) {
        {
            let queues = self.queues.lock().expect("queue states");
            for t in &mut ticks {
                t.known = queues.get(&t.fleet_id).copied();
            }
        }
        match prewarm_store::dashboard::tally_ticks(&self.pool, &ticks).await {
            Ok(states) => {
                let mut queues = self.queues.lock().expect("queue states");
                for (fleet_id, state) in states {
                    match state {
                        Some(after) => queues.insert(fleet_id, after),
                        None => queues.remove(&fleet_id),
                    };
                }
            }
            Err(e) => {
                let mut queues = self.queues.lock().expect("queue states");
                for t in &ticks {
                    queues.remove(&t.fleet_id);
                }
                tracing::warn!(fleets = ticks.len(), error = %e, "the dashboard's hourly tally was not updated");
            }
        }
    }

    /// Plans one fleet from what its slice's read gave it and reports a failure by the error
    /// policy; whether it was planned (or drained).
    async fn plan_and_report(
        &self,
        fleet_id: i64,
        gathered: Option<Result<Gathered, ServiceError>>,
        writers: &RoundWriters,
    ) -> bool {
        let r = match gathered {
            None => Ok(TickOutcome::FleetGone),
            Some(Err(e)) => Err(e),
            Some(Ok(g)) => {
                self.plan_gathered(fleet_id, Some(g), Instant::now(), Some(writers))
                    .await
            }
        };
        if let Err(e) = &r {
            self.metrics.tick_errors.inc();
            self.report(Job::Tick, Some(fleet_id), e);
        }
        matches!(
            r,
            Ok(TickOutcome::Planned { .. } | TickOutcome::Drained { .. })
        )
    }

    /// After a tick of `held` fleets that took `elapsed`: the capacity this replica announces,
    /// the round's metrics, and a warning when fleets were not planned in time.
    fn close_round(
        &self,
        round: &TickRound,
        held: usize,
        elapsed: std::time::Duration,
        deadline: std::time::Duration,
    ) {
        let elapsed = elapsed.as_secs_f64();
        let deadline_secs = deadline.as_secs_f64();
        // What this replica can plan in time: its rate over the round, with a fifth spare, once a
        // round has taken more than half the deadline; no limit when rounds are quick again.
        let limited = round.late > 0 || elapsed > deadline_secs / 2.0;
        let capacity = if limited {
            ((round.planned + round.failed) as f64 / elapsed.max(1e-3) * deadline_secs * 0.8)
                .floor()
                .max(1.0) as i64
        } else {
            0
        };
        self.capacity
            .store(capacity, std::sync::atomic::Ordering::Relaxed);
        let m = &self.metrics;
        m.tick_round_seconds.set(elapsed);
        m.fleets_late.set(round.late as i64);
        m.fleets_not_planned_in_time.inc_by(round.late as u64);
        m.replica_capacity.set(capacity);
        if round.late > 0 {
            tracing::warn!(
                replica = self.replica(),
                not_planned = round.late,
                planned = round.planned,
                held,
                deadline_secs,
                capacity,
                "fleets were not planned in time: the tick reached its deadline; they come first at the next tick, and this replica now hands the fleets past its capacity to other replicas (add replicas, or raise service.concurrency if the database has room)"
            );
        }
    }

    /// Refits one fleet's forecast.
    #[tracing::instrument(name = "refit", skip(self), fields(replica = self.replica()))]
    pub async fn refit_fleet(&self, fleet_id: i64) -> Result<forecasts::RefitReport, ServiceError> {
        let now = self.clock.now();
        let fleet = self
            .fleet(fleet_id)
            .await?
            .ok_or(ServiceError::FleetGone(fleet_id))?;
        let tz: Tz = fleet.tz();
        let events = self.events(fleet_id).await?;
        let mut cfg = self.planner_config(&fleet, &events);
        cfg.boot_lead_secs = self.boot_lead(fleet_id, cfg.boot_lead_secs, now).await?;
        let report = forecasts::refit(
            &self.pool,
            fleet_id,
            tz,
            &cfg,
            &self.config.planner,
            now,
            self.replica(),
        )
        .await;
        let note = match &report {
            Ok(r) => Some(match (&r.skipped, r.forecast_id, r.calibrated_at) {
                (Some(why), _, _) => format!("no forecast: {why}"),
                (None, Some(id), Some(kept)) if r.calibrated && kept < now => format!(
                    "forecast {id}, a new median on the calibration and levels of {} (recalibrated hourly; {} scored minutes per horizon)",
                    kept.format("%H:%M UTC"),
                    r.errors_used
                ),
                (None, Some(id), _) if r.calibrated => format!(
                    "forecast {id}, distribution calibrated on {} scored minutes per horizon, {}",
                    r.errors_used,
                    match &r.sizing {
                        Some(s) => format!(
                            "levels sized to the SLO on {} minutes ({:.3}% timed out in the replay)",
                            s.minutes,
                            100.0 * s.timed_out_share
                        ),
                        None => "levels not sized yet (a day of scored minutes needed)".into(),
                    }
                ),
                (None, Some(id), _) => format!(
                    "forecast {id}, distribution not calibrated yet ({} scored minutes per horizon, {} needed)",
                    r.errors_used,
                    forecasts::MIN_ERRORS
                ),
                (None, None, _) => "no forecast".to_string(),
            }),
            Err(e) => Some(format!("failed: {e}")),
        };
        if let Err(e) = fleets::set_refit_note(&self.pool, fleet_id, now, note.as_deref()).await {
            tracing::warn!(fleet_id, error = %e, "cannot record the refit's outcome");
        }
        match &report {
            Ok(r) => {
                self.metrics.refits.inc();
                let label = Metrics::label(&fleet.name);
                if let Some(day) = r.realised_timed_out_share.0 {
                    self.metrics
                        .realised_timed_out_share_day
                        .get_or_create(&label)
                        .set(day);
                }
                if let Some(week) = r.realised_timed_out_share.1 {
                    self.metrics
                        .realised_timed_out_share_week
                        .get_or_create(&label)
                        .set(week);
                }
                if let Some(sizing) = &r.sizing {
                    let out = sizing.levels.out_of_reach;
                    self.metrics
                        .expected_timed_out_share
                        .get_or_create(&label)
                        .set(out.map_or(sizing.timed_out_share, |o| o.expected_timed_out_share));
                    self.metrics
                        .slo_out_of_reach
                        .get_or_create(&label)
                        .set(if out.is_some() { 1.0 } else { 0.0 });
                    if let Some(note) = sizing.levels.out_of_reach_note(&cfg.slo) {
                        tracing::warn!(fleet = fleet.name, "{note}");
                    }
                }
                if let Some(e) = r.recent_error {
                    self.metrics
                        .forecast_error_ratio
                        .get_or_create(&Metrics::label(&fleet.name))
                        .set(e);
                }
            }
            Err(_) => {
                self.metrics.refit_errors.inc();
            }
        }
        Ok(report?)
    }

    /// Refits the held fleets that are due: never refitted, or last refitted `service.refit_every`
    /// ago (within a minute), the longest waiting first, [`REFITS_PER_CORE`] per core at a time.
    /// Refits are spread: each fleet comes due `refit_every` after its own last refit, not all at
    /// one moment, and a run starts no refit after [`REFIT_RUN_SECS`], so that a burst (thousands of
    /// new fleets' first refits) is worked off over several runs in due order while ticks keep
    /// their share of the machine. Returns (refitted, failed); the fleets still due are in
    /// `prewarm_refits_due`.
    pub async fn refit_all(self: &Arc<Self>) -> (usize, usize) {
        let started = Instant::now();
        let now = self.clock.now();
        let every = Duration::seconds(self.config.service.refit_every.0);
        let held = self.held();
        let refitted_at = match fleets::refit_times(&self.pool, &held).await {
            Ok(t) => t,
            Err(e) => {
                self.report(Job::Refit, None, &e.into());
                return (0, 0);
            }
        };
        let mut due: Vec<(Option<DateTime<Utc>>, i64)> = refitted_at
            .into_iter()
            .filter(|(_, at)| at.is_none_or(|at| now - at >= every - Duration::minutes(1)))
            .map(|(id, at)| (at, id))
            .collect();
        due.sort_unstable();
        let mut set = tokio::task::JoinSet::new();
        let limit = Arc::new(tokio::sync::Semaphore::new(REFITS_PER_CORE * cores()));
        let mut started_refits = 0;
        for &(_, fleet_id) in &due {
            let permit = limit.clone().acquire_owned().await;
            if started.elapsed().as_secs() >= REFIT_RUN_SECS {
                break;
            }
            started_refits += 1;
            let me = self.clone();
            set.spawn(async move {
                let _permit = permit;
                let r = me.refit_fleet(fleet_id).await;
                if let Err(e) = &r {
                    me.report(Job::Refit, Some(fleet_id), e);
                }
                r.is_ok()
            });
        }
        self.metrics
            .refits_due
            .set((due.len() - started_refits) as i64);
        tally(set).await
    }

    /// Daily jobs on each held fleet's local calendar: the retention fold, once per local date.
    pub async fn daily_all(&self) -> Result<usize, ServiceError> {
        let now = self.clock.now();
        callbacks::prune_receipts(&self.pool).await?;
        let at = crate::jobs::parse_local_time(&self.config.retention.at).unwrap_or_default();
        let mut ran = 0;
        for fleet_id in self.held() {
            let Some(fleet) = self.fleet(fleet_id).await? else {
                continue;
            };
            let tz: Tz = fleet.tz();
            let Some(date) = crate::jobs::daily_slot(tz, at, now) else {
                continue;
            };
            if !crate::jobs::claim_slot(
                &self.pool,
                "retention",
                &fleet.name,
                &date.to_string(),
                now,
                self.replica(),
            )
            .await?
            {
                continue;
            }
            self.retention(fleet_id, now).await?;
            ran += 1;
        }
        Ok(ran)
    }

    /// Folds a fleet's old raw samples into hourly sums, drops old decisions that ordered nothing
    /// (those with orders stay: the fleet's state is counted from them) and the dashboard's
    /// tally hours older than 8 days.
    pub async fn retention(&self, fleet_id: i64, now: DateTime<Utc>) -> Result<(), ServiceError> {
        let raw_before = now - Duration::seconds(self.config.retention.keep_raw.0);
        prewarm_store::downsample_fleet(&self.pool, Some(fleet_id), raw_before).await?;
        // An observed fleet's replicas and boot times are kept as long as its raw samples.
        prewarm_store::observed::prune(&self.pool, fleet_id, raw_before).await?;
        let before = now - Duration::seconds(self.config.retention.keep_decisions.0);
        ledger::prune_decisions(&self.pool, fleet_id, before).await?;
        // The dashboard reads a week of the hourly tally.
        prewarm_store::dashboard::prune_hours(&self.pool, fleet_id, now - Duration::days(8))
            .await?;
        Ok(())
    }
}

/// When a fleet that will have `have` GPUs must next be planned: a boot lead before its next
/// rise (within the next hour past the lead), else an hour and a lead on, behind every fleet
/// with a rise due.
fn next_due(
    live: Option<&forecasts::LiveForecast>,
    cfg: &PlannerConfig,
    have: u32,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let horizon = cfg.boot_lead_secs + 3_600;
    live.and_then(|f| {
        prewarm_planner::rise_due(
            &Forecast {
                distribution: &f.distribution,
                levels: f.levels.as_ref(),
            },
            cfg,
            have,
            now,
            horizon,
        )
    })
    .unwrap_or(now + Duration::seconds(horizon))
}

/// Shortest and longest boot lead the planner uses, whatever callbacks say: a lead outside them
/// comes from a clock or provisioner fault, and must never stop planning.
pub const LEAD_BOUNDS_SECS: (i64, i64) = (60, 3_600);

/// A learned lead within [`LEAD_BOUNDS_SECS`].
pub fn clamp_lead(secs: f64) -> i64 {
    if secs.is_nan() {
        return LEAD_BOUNDS_SECS.0;
    }
    secs.clamp(LEAD_BOUNDS_SECS.0 as f64, LEAD_BOUNDS_SECS.1 as f64) as i64
}

/// (succeeded, failed) of a set of per-fleet jobs; a job that panicked counts as failed.
async fn tally(mut set: tokio::task::JoinSet<bool>) -> (usize, usize) {
    let (mut ok, mut failed) = (0, 0);
    while let Some(r) = set.join_next().await {
        if matches!(r, Ok(true)) {
            ok += 1;
        } else {
            failed += 1;
        }
    }
    (ok, failed)
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("replica", &self.holder.replica_id)
            .field("mode", &self.config.service.mode)
            .field("held", &self.held())
            .finish_non_exhaustive()
    }
}
