//! `/metrics` in the Prometheus text format.

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FleetLabel {
    pub fleet: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OrderLabel {
    pub fleet: String,
    pub kind: String,
}

/// A job's failure, by kind ([`crate::error::ServiceError::kind`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub job: String,
    pub kind: String,
}

type FleetGauge = Family<FleetLabel, Gauge<f64, AtomicU64>>;

/// Every metric the service exports.
pub struct Metrics {
    registry: Registry,
    pub forecast_p50_rps: FleetGauge,
    pub forecast_upper_rps: FleetGauge,
    pub demand_rps: FleetGauge,
    pub desired_gpus: FleetGauge,
    pub ready_gpus: FleetGauge,
    pub booting_gpus: FleetGauge,
    pub boot_lead_seconds: FleetGauge,
    pub forecast_error_ratio: FleetGauge,
    pub orders_recorded: Family<OrderLabel, Counter>,
    pub orders_delivered: Counter,
    pub orders_failed: Counter,
    pub orders_expired: Counter,
    pub webhook_latency_seconds: Histogram,
    pub tick_seconds: Histogram,
    pub ticks: Counter,
    pub tick_errors: Counter,
    pub refits: Counter,
    pub refit_errors: Counter,
    pub job_errors: Family<ErrorLabel, Counter>,
    pub fleets_leased: Gauge,
    pub lease_takeovers: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
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
            forecast_error_ratio: Family::default(),
            orders_recorded: Family::default(),
            orders_delivered: Counter::default(),
            orders_failed: Counter::default(),
            orders_expired: Counter::default(),
            webhook_latency_seconds: Histogram::new(
                [
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]
                .into_iter(),
            ),
            tick_seconds: Histogram::new(
                [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0].into_iter(),
            ),
            ticks: Counter::default(),
            tick_errors: Counter::default(),
            job_errors: Family::default(),
            refits: Counter::default(),
            refit_errors: Counter::default(),
            fleets_leased: Gauge::default(),
            lease_takeovers: Counter::default(),
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
            "fleets_leased",
            "Fleets this replica holds",
            m.fleets_leased.clone(),
        );
        registry.register(
            "lease_takeovers",
            "Fleets claimed from the free pool or a dead replica",
            m.lease_takeovers.clone(),
        );
        Self { registry, ..m }
    }

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
