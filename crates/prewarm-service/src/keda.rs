//! KEDA's external scaler: the replicas a fleet's latest decision wants, over gRPC.
//!
//! With `[provisioner] kind = "keda"`, prewarm sends no orders: a ScaledObject's `external`
//! trigger points at this server (`[keda] listen`), and its metadata names the fleet
//! (`fleet: NAME`). [`Scaler::replicas`] answers the replicas the fleet's latest decision wants
//! (its GPUs over the fleet's GPUs per replica, rounded up) as a metric whose target is 1, so the
//! HPA that KEDA drives sets exactly that count, one boot lead ahead of the demand.
//!
//! What prewarm refuses to answer, it refuses with a status KEDA logs and treats as a scaler
//! error (the HPA then keeps the replicas it has, or applies the ScaledObject's `fallback`): a
//! trigger without `fleet` (`INVALID_ARGUMENT`), an unknown fleet (`NOT_FOUND`), a fleet with no
//! decision yet or whose latest decision is older than `[keda] stale_after` (`UNAVAILABLE`: the
//! service is down or the fleet unobserved), and a fleet paused or in forecast-only mode
//! (`FAILED_PRECONDITION`: it does not act).

use std::{pin::Pin, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::clock::SharedClock;

/// The code generated from `proto/externalscaler.proto`.
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all
)]
pub mod proto {
    tonic::include_proto!("externalscaler");
}

use proto::{
    external_scaler_server::{ExternalScaler, ExternalScalerServer},
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec,
    MetricValue, ScaledObjectRef,
};

/// The trigger metadata key that names the fleet.
pub const FLEET_KEY: &str = "fleet";

/// The scaler: reads decisions from the database.
#[derive(Debug, Clone)]
pub struct Scaler {
    pool: PgPool,
    clock: SharedClock,
    /// A decision older than this is not acted on.
    stale_after_secs: i64,
    /// How often `StreamIsActive` re-reads.
    stream_every: Duration,
}

/// What the latest decision wants of a fleet, in replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// Replicas wanted.
    pub replicas: i64,
    /// Whether the workload should run at all: false only when zero are wanted and the fleet
    /// allows zero.
    pub active: bool,
}

/// The metric's name for a fleet (KEDA prefixes it with the trigger's index).
pub fn metric_name(fleet: &str) -> String {
    format!("prewarm-{fleet}")
}

fn fleet_of(r: &ScaledObjectRef) -> Result<&str, Status> {
    match r.scaler_metadata.get(FLEET_KEY).map(|s| s.trim()) {
        Some(f) if !f.is_empty() => Ok(f),
        _ => Err(Status::invalid_argument(format!(
            "the ScaledObject {}/{} has no `{FLEET_KEY}` in its trigger metadata: add `{FLEET_KEY}: <prewarm fleet name>`",
            prewarm_core::shorten(&r.namespace, 100),
            prewarm_core::shorten(&r.name, 100)
        ))),
    }
}

impl Scaler {
    /// A scaler on the service's database and clock.
    pub fn new(
        pool: PgPool,
        clock: SharedClock,
        stale_after_secs: i64,
        stream_every: Duration,
    ) -> Self {
        Self {
            pool,
            clock,
            stale_after_secs,
            stream_every,
        }
    }

    /// The gRPC service to serve.
    pub fn service(self) -> ExternalScalerServer<Self> {
        ExternalScalerServer::new(self)
    }

    /// The replicas the fleet's latest decision wants, or why there is no answer.
    pub async fn replicas(&self, fleet: &str) -> Result<Wanted, Status> {
        type Row = (i32, i32, Option<i32>, Option<DateTime<Utc>>, Option<String>);
        let row: Option<Row> = sqlx::query_as(
            "SELECT f.min_gpus, f.gpus_per_replica, d.desired_gpus, d.decided_at, d.mode
             FROM fleets f
             LEFT JOIN LATERAL (SELECT desired_gpus, decided_at, mode FROM decisions
                                WHERE fleet_id = f.id ORDER BY decided_at DESC, id DESC LIMIT 1) d
               ON true
             WHERE f.name = $1",
        )
        .bind(fleet)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "the scaler cannot read the database");
            Status::unavailable("prewarm cannot read its database; KEDA keeps the replicas it has")
        })?;
        let Some((min_gpus, per_replica, desired, decided_at, mode)) = row else {
            return Err(Status::not_found(format!(
                "no fleet named `{}` in prewarm",
                prewarm_core::shorten(fleet, 100)
            )));
        };
        let (Some(desired), Some(decided_at)) = (desired, decided_at) else {
            return Err(Status::unavailable(format!(
                "fleet `{fleet}` has no decision yet (is it observed, and does a replica hold it?)"
            )));
        };
        let age = (self.clock.now() - decided_at).num_seconds();
        if age > self.stale_after_secs {
            return Err(Status::unavailable(format!(
                "fleet `{fleet}`'s latest decision is {} old (more than {}): not acted on",
                prewarm_core::format_duration(age),
                prewarm_core::format_duration(self.stale_after_secs)
            )));
        }
        match mode.as_deref() {
            Some("paused") | Some("forecast-only") => {
                return Err(Status::failed_precondition(format!(
                    "fleet `{fleet}` is {}: prewarm does not scale it",
                    mode.unwrap_or_default()
                )))
            }
            _ => {}
        }
        let replicas = i64::from((desired.max(0) as u32).div_ceil(per_replica.max(1) as u32));
        Ok(Wanted {
            replicas,
            active: replicas > 0 || min_gpus > 0,
        })
    }
}

type IsActiveStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<IsActiveResponse, Status>> + Send>>;
type MetricSpecStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<GetMetricSpecResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalScaler for Scaler {
    async fn is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<IsActiveResponse>, Status> {
        let fleet = fleet_of(request.get_ref())?;
        let wanted = self.replicas(fleet).await?;
        Ok(Response::new(IsActiveResponse {
            result: wanted.active,
        }))
    }

    type StreamIsActiveStream = IsActiveStream;

    async fn stream_is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamIsActiveStream>, Status> {
        let fleet = fleet_of(request.get_ref())?.to_string();
        // The first answer at once (an unknown fleet fails the call), then one each period.
        let first = self.replicas(&fleet).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let scaler = self.clone();
        tokio::spawn(async move {
            if tx
                .send(Ok(IsActiveResponse {
                    result: first.active,
                }))
                .await
                .is_err()
            {
                return;
            }
            let mut every = tokio::time::interval(scaler.stream_every);
            every.tick().await;
            loop {
                every.tick().await;
                let answer = scaler
                    .replicas(&fleet)
                    .await
                    .map(|w| IsActiveResponse { result: w.active });
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        let fleet = fleet_of(request.get_ref())?;
        // The fleet must exist; its decision need not be fresh for the spec.
        match self.replicas(fleet).await {
            Err(s) if s.code() == tonic::Code::NotFound => return Err(s),
            _ => {}
        }
        Ok(Response::new(GetMetricSpecResponse {
            metric_specs: vec![MetricSpec {
                metric_name: metric_name(fleet),
                target_size: 1,
                target_size_float: 1.0,
            }],
        }))
    }

    async fn get_metrics(
        &self,
        request: Request<GetMetricsRequest>,
    ) -> Result<Response<GetMetricsResponse>, Status> {
        let r = request.get_ref();
        let object = r
            .scaled_object_ref
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("GetMetrics without a scaledObjectRef"))?;
        let fleet = fleet_of(object)?;
        let wanted = self.replicas(fleet).await?;
        let name = if r.metric_name.is_empty() {
            metric_name(fleet)
        } else {
            r.metric_name.clone()
        };
        Ok(Response::new(GetMetricsResponse {
            metric_values: vec![MetricValue {
                metric_name: name,
                metric_value: wanted.replicas,
                metric_value_float: wanted.replicas as f64,
            }],
        }))
    }

    type StreamMetricSpecStream = MetricSpecStream;

    async fn stream_metric_spec(
        &self,
        _request: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamMetricSpecStream>, Status> {
        Err(Status::unimplemented(
            "prewarm's metric target is always 1: GetMetricSpec answers it",
        ))
    }
}

/// TLS for the scaler, as KEDA's external trigger expects it (`caCert`, and for mutual TLS
/// `tlsClientCert` / `tlsClientKey`): the server's certificate and key, and optionally the CA
/// whose client certificates are required.
#[derive(Debug, Clone)]
pub struct Tls {
    /// PEM certificate chain.
    pub cert: Vec<u8>,
    /// PEM private key.
    pub key: Vec<u8>,
    /// PEM CA that client certificates must chain to (mutual TLS).
    pub client_ca: Option<Vec<u8>>,
}

/// Reads the TLS files the configuration names (none when no certificate is set).
pub fn read_tls(cfg: &crate::config::KedaConfig) -> Result<Option<Tls>, String> {
    if cfg.tls_cert.is_empty() {
        return Ok(None);
    }
    let read = |what: &str, path: &str| {
        std::fs::read(path).map_err(|e| format!("`keda.{what}` = `{path}` cannot be read: {e}"))
    };
    Ok(Some(Tls {
        cert: read("tls_cert", &cfg.tls_cert)?,
        key: read("tls_key", &cfg.tls_key)?,
        client_ca: if cfg.client_ca.is_empty() {
            None
        } else {
            Some(read("client_ca", &cfg.client_ca)?)
        },
    }))
}

/// Serves the scaler on `listener` until `stop` resolves.
pub async fn serve(
    scaler: Scaler,
    listener: tokio::net::TcpListener,
    tls: Option<Tls>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        let mut config = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(tls.cert, tls.key));
        if let Some(ca) = tls.client_ca {
            config = config.client_ca_root(tonic::transport::Certificate::from_pem(ca));
        }
        builder = builder
            .tls_config(config)
            .map_err(|e| format!("the scaler's TLS settings cannot be used: {e}"))?;
    }
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    builder
        .add_service(scaler.service())
        .serve_with_incoming_shutdown(incoming, stop)
        .await
        .map_err(|e| format!("the KEDA scaler stopped: {e}"))
}

/// The scaler as the service runs it: on the service's pool and clock with its settings.
pub fn for_service(service: &Arc<crate::engine::Service>) -> Scaler {
    let k = &service.config.keda;
    Scaler::new(
        service.pool.clone(),
        service.clock.clone(),
        k.stale_after.0,
        Duration::from_secs(k.stream_every.0.max(1) as u64),
    )
}
