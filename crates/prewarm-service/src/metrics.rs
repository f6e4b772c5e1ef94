//! `/metrics` in the Prometheus text format.

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
/// A fleet's series.
pub struct FleetLabel {
    /// The fleet's name.
    pub fleet: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
/// A fleet's orders, by kind.
pub struct OrderLabel {
    /// The fleet's name.
    pub fleet: String,
    /// `boot` or `terminate`.
    pub kind: String,
}

/// A job's failure, by kind ([`crate::error::ServiceError::kind`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    /// The job (`task`: Prometheus keeps `job` for the scrape job).
    pub task: String,
    /// The error's kind.
    pub kind: String,
}

type FleetGauge = Family<FleetLabel, Gauge<f64, AtomicU64>>;

/// Every metric the service exports.
pub struct Metrics {
    registry: Registry,
    /// The demand distribution's median, requests per second.
    pub forecast_p50_rps: FleetGauge,
    /// The quantile planned on, requests per second.
    pub forecast_upper_rps: FleetGauge,
    /// Demand now.
    pub demand_rps: FleetGauge,
    /// GPUs the plan wants.
    pub desired_gpus: FleetGauge,
    /// GPUs serving.
    pub ready_gpus: FleetGauge,
    /// GPUs booting.
    pub booting_gpus: FleetGauge,
    /// Boot lead in use.
    pub boot_lead_seconds: FleetGauge,
    /// GPUs in standby (stopped or stopping).
    pub standby_gpus: FleetGauge,
    /// GPUs resuming from standby.
    pub resuming_gpus: FleetGauge,
    /// Resume lead in use (fleets with a standby tier).
    pub resume_lead_seconds: FleetGauge,
    /// Recent forecast error relative to demand.
    pub forecast_error_ratio: FleetGauge,
    /// GPUs ordered, by fleet and kind.
    pub orders_recorded: Family<OrderLabel, Counter>,
    /// Orders delivered.
    pub orders_delivered: Counter,
    /// Delivery attempts that failed.
    pub orders_failed: Counter,
    /// Orders expired undelivered.
    pub orders_expired: Counter,
    /// Time for the provisioner to answer a delivery.
    pub webhook_latency_seconds: Histogram,
    /// Time to plan one fleet.
    pub tick_seconds: Histogram,
    /// Plans made.
    pub ticks: Counter,
    /// Plans that failed.
    pub tick_errors: Counter,
    /// Refits.
    pub refits: Counter,
    /// Refits that failed.
    pub refit_errors: Counter,
    /// Job failures by job and kind.
    pub job_errors: Family<ErrorLabel, Counter>,
    /// The fleet's SLO: the share of requests that may time out.
    pub slo_timed_out_share: FleetGauge,
    /// The share of requests the fleet timed out over its last day (set at each refit).
    pub realised_timed_out_share_day: FleetGauge,
    /// The same over its last week.
    pub realised_timed_out_share_week: FleetGauge,
    /// The share of requests the SLO sizer's replay expects the chosen levels to time out (set
    /// at each refit that sizes).
    pub expected_timed_out_share: FleetGauge,
    /// 1 when the SLO is out of reach (the replay times out more than the SLO even at the top
    /// level), 0 otherwise.
    pub slo_out_of_reach: FleetGauge,
    /// Fleets in the database, as the last lease round counted them.
    pub fleets: Gauge,
    /// Fleets this replica holds.
    pub fleets_leased: Gauge,
    /// Fleets claimed from the free pool or a dead replica.
    pub lease_takeovers: Counter,
    /// Fleets a tick did not reach before `service.tick_deadline`.
    pub fleets_not_planned_in_time: Counter,
    /// Fleets the last tick did not reach before its deadline.
    pub fleets_late: Gauge,
    /// How long the last tick of every held fleet took, seconds.
    pub tick_round_seconds: Gauge<f64, AtomicU64>,
    /// Fleets this replica can plan within the tick's deadline, as its last slow tick measured
    /// (0: no limit seen); the lease rounds share fleets out by it.
    pub replica_capacity: Gauge,
    /// Fleets due a refit that the last refit run did not start (it reached its time).
    pub refits_due: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("prewarm");
        let m = Self {
            forecast_p50_rps: Family::default(),
            forecast_upper_rps: Family::default(),
            demand_rps: Family::default(),
            desired_gpus: Family::default(),
            ready_gpus: Family::default(),
            booting_gpus: Family::default(),
            boot_lead_seconds: Family::default(),
            standby_gpus: Family::default(),
            resuming_gpus: Family::default(),
            resume_lead_seconds: Family::default(),
            forecast_error_ratio: Family::default(),
            orders_recorded: Family::default(),
            orders_delivered: Counter::default(),
            orders_failed: Counter::default(),
            orders_expired: Counter::default(),
            webhook_latency_seconds: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            tick_seconds: Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
            ticks: Counter::default(),
            tick_errors: Counter::default(),
            job_errors: Family::default(),
            slo_timed_out_share: Family::default(),
            realised_timed_out_share_day: Family::default(),
            expected_timed_out_share: Family::default(),
            slo_out_of_reach: Family::default(),
            realised_timed_out_share_week: Family::default(),
            fleets: Gauge::default(),
            refits: Counter::default(),
            refit_errors: Counter::default(),
            fleets_leased: Gauge::default(),
            lease_takeovers: Counter::default(),
            fleets_not_planned_in_time: Counter::default(),
            fleets_late: Gauge::default(),
            tick_round_seconds: Gauge::default(),
            replica_capacity: Gauge::default(),
            refits_due: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "forecast_p50_rps",
            "Median forecast of the current bucket, requests/s",
            m.forecast_p50_rps.clone(),
        );
        registry.register(
            "forecast_upper_rps",
            "Calibrated upper quantile of the current bucket, requests/s",
            m.forecast_upper_rps.clone(),
        );
        registry.register(
            "demand_rps",
            "Latest observed request rate",
            m.demand_rps.clone(),
        );
        registry.register(
            "desired_gpus",
            "GPUs the latest plan wants",
            m.desired_gpus.clone(),
        );
        registry.register("ready_gpus", "GPUs serving", m.ready_gpus.clone());
        registry.register(
            "booting_gpus",
            "GPUs ordered and not yet serving",
            m.booting_gpus.clone(),
        );
        registry.register(
            "boot_lead_seconds",
            "Boot lead the planner uses (p95 of real boots once known)",
            m.boot_lead_seconds.clone(),
        );
        registry.register(
            "standby_gpus",
            "GPUs stopped (or stopping) in the standby tier",
            m.standby_gpus.clone(),
        );
        registry.register(
            "resuming_gpus",
            "GPUs resuming from standby",
            m.resuming_gpus.clone(),
        );
        registry.register(
            "resume_lead_seconds",
            "Resume lead the planner uses (p95 of real resumes once known)",
            m.resume_lead_seconds.clone(),
        );
        registry.register(
            "forecast_error_ratio",
            "Mean absolute error over mean demand at the boot-lead horizon, last day",
            m.forecast_error_ratio.clone(),
        );
        registry.register(
            "orders_recorded",
            "Orders written to the ledger",
            m.orders_recorded.clone(),
        );
        registry.register(
            "orders_delivered",
            "Orders acknowledged by the provisioner",
            m.orders_delivered.clone(),
        );
        registry.register(
            "orders_failed",
            "Failed deliveries (retried until the order expires)",
            m.orders_failed.clone(),
        );
        registry.register(
            "orders_expired",
            "Orders that expired undelivered",
            m.orders_expired.clone(),
        );
        registry.register(
            "webhook_latency_seconds",
            "Time for the provisioner to answer a delivery",
            m.webhook_latency_seconds.clone(),
        );
        registry.register(
            "tick_seconds",
            "Time to plan one fleet",
            m.tick_seconds.clone(),
        );
        registry.register("ticks", "Fleet plans made", m.ticks.clone());
        registry.register(
            "tick_errors",
            "Fleet plans that failed",
            m.tick_errors.clone(),
        );
        registry.register("refits", "Forecast refits", m.refits.clone());
        registry.register(
            "refit_errors",
            "Forecast refits that failed",
            m.refit_errors.clone(),
        );
        registry.register(
            "job_errors",
            "Job failures by job and kind (unavailable: retried by the next run)",
            m.job_errors.clone(),
        );
        registry.register(
            "slo_timed_out_share",
            "The fleet's SLO: the largest share of requests that may time out",
            m.slo_timed_out_share.clone(),
        );
        registry.register(
            "realised_timed_out_share_day",
            "Share of requests the fleet timed out over its last day (its decisions' ready GPUs against its demand, through the SLO's queue)",
            m.realised_timed_out_share_day.clone(),
        );
        registry.register(
            "expected_timed_out_share",
            "Share of requests the SLO sizer's replay of the last week expects the chosen levels to time out (or, when the SLO is out of reach, the top level)",
            m.expected_timed_out_share.clone(),
        );
        registry.register(
            "slo_out_of_reach",
            "1 when the fleet's SLO is out of reach: the replay of the last week times out more than the SLO even at the top level (limits too low, or bursts no forecast catches)",
            m.slo_out_of_reach.clone(),
        );
        registry.register(
            "realised_timed_out_share_week",
            "Share of requests the fleet timed out over its last week",
            m.realised_timed_out_share_week.clone(),
        );
        registry.register(
            "fleets",
            "Fleets in the database at the last lease round",
            m.fleets.clone(),
        );
        registry.register(
            "fleets_leased",
            "Fleets this replica holds",
            m.fleets_leased.clone(),
        );
        registry.register(
            "lease_takeovers",
            "Fleets claimed from the free pool or a dead replica",
            m.lease_takeovers.clone(),
        );
        registry.register(
            "fleets_not_planned_in_time",
            "Fleets a tick did not reach before service.tick_deadline",
            m.fleets_not_planned_in_time.clone(),
        );
        registry.register(
            "fleets_late",
            "Fleets the last tick did not reach before its deadline",
            m.fleets_late.clone(),
        );
        registry.register(
            "tick_round_seconds",
            "How long the last tick of every held fleet took",
            m.tick_round_seconds.clone(),
        );
        registry.register(
            "replica_capacity",
            "Fleets this replica can plan within the tick's deadline (0: no limit seen)",
            m.replica_capacity.clone(),
        );
        registry.register(
            "refits_due",
            "Fleets due a refit that the last refit run did not start",
            m.refits_due.clone(),
        );
        Self { registry, ..m }
    }

    /// The label of a fleet's series.
    pub fn label(fleet: &str) -> FleetLabel {
        FleetLabel {
            fleet: fleet.to_string(),
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}
