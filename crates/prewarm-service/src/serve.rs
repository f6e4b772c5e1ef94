//! Starting and stopping `prewarm serve`: database and migrations, the HTTP API (push, provisioner
//! callbacks, operator endpoints, metrics) and the scheduler's jobs.

use std::str::FromStr;
use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use sqlx::postgres::PgPoolOptions;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::{clock::SharedClock, config::Config, engine::Service, webhook::Secret};

/// A running service.
pub struct Running {
    /// The running service.
    pub service: Arc<Service>,
    /// The address served on.
    pub addr: SocketAddr,
    /// The KEDA scaler's address (`provisioner.kind = "keda"`).
    pub keda_addr: Option<SocketAddr>,
    scheduler: Option<JobScheduler>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

/// Everything that can stop the service from starting, said plainly.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "cannot connect to the database: {0}; is PostgreSQL running and `database.url` right?"
    )]
    /// The database refused or could not be reached.
    Database(sqlx::Error),
    #[error("cannot bring the schema up to date: {0}")]
    /// The schema could not be brought up to date.
    Migrate(sqlx::migrate::MigrateError),
    #[error("cannot listen on {addr}: {source}")]
    /// The HTTP address could not be bound.
    Listen {
        /// The address served on.
        addr: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    #[error("{0}")]
    /// The scheduler could not be set up.
    Setup(String),
}

type JobFn = Arc<dyn Fn(Arc<Service>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// How long a request waits for a database connection before it is answered 503: a probe with
/// a one-second timeout must see the answer when the database is down.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(750);

/// The service's connection pool. It connects lazily: the service starts, and says it is not
/// ready, while the database is down. PostgreSQL's JIT is off for its sessions: the service's
/// queries are many and short, and compiling one cost more than running it (150 ms of the
/// all-fleets view's 320 ms for 1,000 fleets).
pub fn pool(config: &Config) -> Result<sqlx::PgPool, StartError> {
    Ok(PgPoolOptions::new()
        .max_connections(config.database.max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_lazy_with(connect_options(&config.database.url.0).map_err(StartError::Database)?))
}

/// How the service connects to `url`: its sessions with PostgreSQL's JIT off.
pub fn connect_options(url: &str) -> Result<sqlx::postgres::PgConnectOptions, sqlx::Error> {
    Ok(sqlx::postgres::PgConnectOptions::from_str(url)?.options([("jit", "off")]))
}

/// Starts the service. With `scheduled`, tokio-cron-scheduler runs the jobs on the wall clock;
/// without, the caller drives them (tests, `prewarm demo` with its simulated clock).
pub async fn start(
    config: Config,
    clock: SharedClock,
    scheduled: bool,
) -> Result<Running, StartError> {
    let pool = pool(&config)?;
    start_with_pool(config, clock, pool, scheduled).await
}

/// Whether a migration failed because the database could not be reached (worth waiting for),
/// rather than because of the schema itself (worth stopping for).
fn unreachable(e: &sqlx::migrate::MigrateError) -> bool {
    matches!(e, sqlx::migrate::MigrateError::Execute(e) if prewarm_store::is_unavailable(e))
}

/// [`start`] on an existing pool (tests). The HTTP API serves at once (`/readyz` says 503 until
/// the schema is up to date); while the database cannot be reached, the schema migration is
/// retried with backoff, and the jobs start once it succeeds.
pub async fn start_with_pool(
    config: Config,
    clock: SharedClock,
    pool: sqlx::PgPool,
    scheduled: bool,
) -> Result<Running, StartError> {
    let listener = tokio::net::TcpListener::bind(&config.http.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.http.listen.clone(),
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Setup(e.to_string()))?;
    let secret = if config.provisioner.secret.0.is_empty() {
        None
    } else {
        Some(Secret::parse(&config.provisioner.secret.0).map_err(StartError::Setup)?)
    };
    let service = Service::new(pool.clone(), config.clone(), clock).map_err(StartError::Setup)?;
    // KEDA's external scaler, on its own address, stopped with the HTTP server.
    let (keda_stop_tx, keda_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let keda_addr = if config.provisioner.kind == crate::config::ProvisionerKind::Keda {
        let listener = tokio::net::TcpListener::bind(&config.keda.listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.keda.listen.clone(),
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Setup(e.to_string()))?;
        let tls = crate::keda::read_tls(&config.keda).map_err(StartError::Setup)?;
        let scaler = crate::keda::for_service(&service);
        tokio::spawn(async move {
            let stop = async {
                let _ = keda_stop_rx.await;
            };
            if let Err(e) = crate::keda::serve(scaler, listener, tls, stop).await {
                tracing::error!(error = %e, "the KEDA scaler stopped");
            }
        });
        Some(addr)
    } else {
        None
    };
    let mut app =
        prewarm_ingest::api::router(pool.clone()).merge(crate::api::router(service.clone()));
    if let Some(secret) = secret {
        app = app.merge(crate::callbacks::router(
            pool.clone(),
            secret,
            service.clock.clone(),
        ));
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await;
        let _ = keda_stop_tx.send(());
    });
    let mut wait = Duration::from_secs(1);
    loop {
        match prewarm_store::MIGRATOR.run(&pool).await {
            Ok(()) => break,
            Err(e) if unreachable(&e) => {
                tracing::warn!(error = %e, retry_in_secs = wait.as_secs(), "the database cannot be reached; /readyz answers 503 until it can");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
            Err(e) => {
                let _ = stop_tx.send(());
                let _ = server.await;
                return Err(StartError::Migrate(e));
            }
        }
    }
    // Take leases at once so the first tick has fleets.
    if let Err(e) = service.lease_round().await {
        tracing::warn!(error = %e, "first lease round failed; retrying on schedule");
    }
    let scheduler = if scheduled {
        Some(schedule(&service).await.map_err(StartError::Setup)?)
    } else {
        None
    };
    service.scheduler_running.store(true, Ordering::Relaxed);
    tracing::info!(%addr, replica = service.replica(), mode = ?config.service.mode, "prewarm serving");
    if let Some(keda) = keda_addr {
        tracing::info!(%keda, "KEDA external scaler serving");
    }
    Ok(Running {
        service,
        addr,
        keda_addr,
        scheduler,
        stop: Some(stop_tx),
        server,
    })
}

/// Each job by name, as the scheduler and the simulated driver call it.
pub fn jobs(config: &Config) -> Vec<(String, String, JobFn)> {
    let mut out: Vec<(String, String, JobFn)> = vec![
        (
            "leases".into(),
            config.schedule.leases.clone(),
            Arc::new(|s: Arc<Service>| {
                Box::pin(async move {
                    if let Err(e) = s.lease_round().await {
                        tracing::warn!(error = %e, "lease round failed; this replica plans nothing until it renews");
                    }
                })
            }),
        ),
        (
            "tick".into(),
            config.schedule.tick.clone(),
            Arc::new(|s: Arc<Service>| {
                Box::pin(async move {
                    let r = s.tick_all().await;
                    tracing::debug!(
                        planned = r.planned,
                        failed = r.failed,
                        late = r.late,
                        "planning tick"
                    );
                })
            }),
        ),
        (
            "refit".into(),
            config.schedule.refit.clone(),
            Arc::new(|s: Arc<Service>| {
                Box::pin(async move {
                    let (ok, failed) = s.refit_all().await;
                    if ok + failed > 0 {
                        tracing::info!(ok, failed, "refit");
                    } else {
                        tracing::debug!("refit: no fleet was due");
                    }
                })
            }),
        ),
        (
            "dispatch".into(),
            config.schedule.dispatch.clone(),
            Arc::new(|s: Arc<Service>| {
                Box::pin(async move {
                    if let Err(e) = s.dispatch_all().await {
                        tracing::warn!(error = %e, "dispatch failed; orders stay pending and are retried");
                    }
                })
            }),
        ),
        (
            "daily".into(),
            config.schedule.daily.clone(),
            Arc::new(|s: Arc<Service>| {
                Box::pin(async move {
                    if let Err(e) = s.daily_all().await {
                        tracing::warn!(error = %e, "daily jobs failed; the next check retries");
                    }
                })
            }),
        ),
    ];
    for (i, pull) in config.pulls.iter().enumerate() {
        let pull = pull.clone();
        out.push((format!("pull-{i}"), pull.schedule.clone(), Arc::new(move |s: Arc<Service>| {
            let pull = pull.clone();
            Box::pin(async move {
                if let Err(e) = run_pull(&s, &pull).await {
                    tracing::warn!(fleet = pull.fleet, error = %e, "Prometheus pull failed; the next pull continues from the last stored bucket");
                }
            })
        })));
    }
    out
}

async fn run_pull(s: &Service, pull: &crate::config::PullConfig) -> Result<(), String> {
    let fleet = s
        .fleet_by_name(&pull.fleet)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no fleet named `{}`", pull.fleet))?;
    if !s.held().contains(&fleet.id) {
        return Ok(()); // the replica holding the fleet pulls it
    }
    let src = prewarm_ingest::prometheus::PromSource {
        base_url: pull.prometheus.clone(),
        query: pull.query.clone(),
        step_secs: pull.step.0,
        tokens_in_query: pull.tokens_in_query.clone(),
        tokens_out_query: pull.tokens_out_query.clone(),
    };
    let client = reqwest::Client::new();
    // The real fleet's replicas first: a fleet whose observation fails is not planned on stale
    // state, and its demand is still pulled.
    let observed = match (&pull.ready_query, &pull.desired_query) {
        (Some(ready), Some(desired)) => prewarm_ingest::prometheus::observe(
            &s.pool,
            &client,
            fleet.id,
            &prewarm_ingest::prometheus::ReplicaQueries {
                base_url: pull.prometheus.clone(),
                ready_query: ready.clone(),
                desired_query: desired.clone(),
            },
            s.clock.now(),
            prewarm_ingest::prometheus::Retry::default(),
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("observing the real fleet: {e}")),
        _ => Ok(()),
    };
    prewarm_ingest::prometheus::pull_new(
        &s.pool,
        &client,
        fleet.id,
        &src,
        s.clock.now(),
        chrono::Duration::days(7),
        prewarm_ingest::prometheus::Retry::default(),
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())?;
    observed
}

async fn schedule(service: &Arc<Service>) -> Result<JobScheduler, String> {
    let scheduler = JobScheduler::new()
        .await
        .map_err(|e| format!("cannot start the scheduler: {e}"))?;
    for (name, pattern, run) in jobs(&service.config) {
        let s = service.clone();
        // A job still running when its next firing comes skips that firing.
        let busy = Arc::new(AtomicBool::new(false));
        let job = Job::new_async(pattern.as_str(), move |_, _| {
            let (s, run, busy) = (s.clone(), run.clone(), busy.clone());
            Box::pin(async move {
                if busy.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        "a job is still running at its next firing; this firing is skipped"
                    );
                    return;
                }
                // Cleared on drop, so a job that panics does not block its later firings.
                struct Clear(Arc<AtomicBool>);
                impl Drop for Clear {
                    fn drop(&mut self) {
                        self.0.store(false, Ordering::Release);
                    }
                }
                let _clear = Clear(busy);
                run(s).await;
            })
        })
        .map_err(|e| format!("job `{name}` with schedule `{pattern}`: {e}"))?;
        scheduler
            .add(job)
            .await
            .map_err(|e| format!("cannot add job `{name}`: {e}"))?;
    }
    scheduler
        .start()
        .await
        .map_err(|e| format!("cannot start the scheduler: {e}"))?;
    Ok(scheduler)
}

impl Running {
    /// Stops the jobs and the server and hands this replica's fleets to the others.
    pub async fn stop(mut self) {
        self.service
            .scheduler_running
            .store(false, Ordering::Relaxed);
        if let Some(mut s) = self.scheduler.take() {
            let _ = s.shutdown().await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
        let _ = prewarm_store::leases::release_all(&self.service.pool, &self.service.holder).await;
    }
}

/// Runs every job whose schedule fires in `(from, to]` once per firing, in schedule order: the
/// simulated clock's stand-in for the scheduler (tests, `prewarm demo`).
pub async fn run_due(
    service: &Arc<Service>,
    jobs: &[(String, crate::jobs::Pattern, JobFn)],
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> Vec<(chrono::DateTime<chrono::Utc>, String)> {
    let mut firings: Vec<(chrono::DateTime<chrono::Utc>, usize)> = jobs
        .iter()
        .enumerate()
        .flat_map(|(i, (_, p, _))| p.fires_in(from, to).into_iter().map(move |t| (t, i)))
        .collect();
    firings.sort();
    let mut ran = Vec::new();
    for (t, i) in firings {
        (jobs[i].2)(service.clone()).await;
        ran.push((t, jobs[i].0.clone()));
    }
    ran
}

/// The jobs with their patterns parsed (for [`run_due`]).
pub fn parsed_jobs(config: &Config) -> Result<Vec<(String, crate::jobs::Pattern, JobFn)>, String> {
    jobs(config)
        .into_iter()
        .map(|(n, p, f)| Ok((n, crate::jobs::Pattern::parse(&p)?, f)))
        .collect()
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("addr", &self.addr)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}
