//! `prewarm bench service`: how long one planning tick takes for many fleets, with one or more
//! replicas sharing the database, and how long refits take.
//!
//! Each fleet gets the rows a tick reads in production: 35 minutes of 1-minute samples, a
//! calibrated live forecast, a delivered boot order with its ready instances, and a week of
//! history for the refit part. Replicas run in this process, each with its own connection pool,
//! leases split between them as in production. Orders go to fake-cloud over loopback.

use std::{sync::Arc, time::Instant};

use chrono::{Duration, DurationRound, Utc};
use clap::Args;
use prewarm_service::{
    clock::{ManualClock, SharedClock},
    config::{Config, Redacted, Span},
    engine::Service,
    fake_cloud::FakeCloud,
    webhook::Secret,
};
use sqlx::{postgres::PgPoolOptions, Executor, PgPool};

#[derive(Debug, Args)]
pub struct BenchServiceArgs {
    /// Fleet counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "250,500,1000")]
    fleets: Vec<usize>,
    /// Replica counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    replicas: Vec<usize>,
    /// Tick rounds per setting (the median is reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Fleets refitted in the refit measurement (each with a week of 5-minute history).
    #[arg(long, default_value_t = 40)]
    refit_fleets: usize,
    /// Plans run at once per replica.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
}

async fn populate(pool: &PgPool, n: usize, now: chrono::DateTime<Utc>) -> anyhow::Result<()> {
    pool.execute(
        "TRUNCATE fleets, samples, fleet_leases, replicas, job_runs RESTART IDENTITY CASCADE",
    )
    .await?;
    sqlx::query(
        "INSERT INTO fleets (name, gpu_rps, min_gpus, max_gpus)
         SELECT 'fleet-' || g, 1.0, 1, 1000 FROM generate_series(1, $1) g",
    )
    .bind(n as i64)
    .execute(pool)
    .await?;
    // 35 minutes of 1-minute samples per fleet, levels differing between fleets.
    sqlx::query(
        "INSERT INTO samples (fleet_id, bucket_start, bucket_secs, requests)
         SELECT f.id, $1 - make_interval(mins => m), 60, 60 * (5 + (f.id % 17) + (m % 5))
         FROM fleets f, generate_series(1, 35) m",
    )
    .bind(now)
    .execute(pool)
    .await?;
    // A calibrated forecast made this hour.
    sqlx::query(
        "INSERT INTO forecasts (fleet_id, made_at, origin, step_secs, kind, model, p50_rps, upper_rps,
                                quantile, error_floor_rps, errors_used)
         SELECT f.id, $1 - interval '5 minutes', $1 - interval '10 minutes', 300, 'live', 'bench',
                array_fill((8 + f.id % 17)::float8, ARRAY[24]), array_fill((12 + f.id % 17)::float8, ARRAY[24]),
                0.98, 1.0, 60
         FROM fleets f",
    )
    .bind(now)
    .execute(pool)
    .await?;
    // A delivered boot order and its ready instances.
    sqlx::query(
        "INSERT INTO decisions (fleet_id, decided_at, desired_gpus, gpus_ready, gpus_booting, reason)
         SELECT id, $1 - interval '1 hour', 10, 0, 0, 'bench' FROM fleets",
    )
    .bind(now)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO orders (idempotency_key, fleet_id, decision_id, kind, count, state, attempts,
                             next_attempt_at, expires_at, created_at, delivered_at)
         SELECT 'bench-' || d.fleet_id, d.fleet_id, d.id, 'boot', 10, 'delivered', 1, d.decided_at,
                d.decided_at, d.decided_at, d.decided_at FROM decisions d",
    )
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO instances (instance_id, fleet_id, order_key, ordered_at, state, ready_at, boot_secs, updated_at)
         SELECT 'bench-' || o.fleet_id || '-' || k, o.fleet_id, o.idempotency_key, o.created_at, 'ready',
                o.created_at + interval '8 minutes', 420 + k, o.created_at
         FROM orders o, generate_series(1, 10) k",
    )
    .execute(pool)
    .await?;
    pool.execute("ANALYZE").await?;
    Ok(())
}

fn service(
    url: &str,
    cloud_url: &str,
    secret: &Secret,
    replica: &str,
    clock: SharedClock,
    pool: PgPool,
    concurrency: usize,
) -> anyhow::Result<Arc<Service>> {
    let mut c = Config::default();
    c.database.url = Redacted(url.to_string());
    c.provisioner.url = cloud_url.to_string();
    c.provisioner.secret = Redacted(secret.encoded());
    c.service.replica_id = replica.to_string();
    c.service.lease_ttl = Span(25);
    c.service.concurrency = concurrency;
    c.validate().map_err(anyhow::Error::msg)?;
    Service::new(pool, c, clock).map_err(anyhow::Error::msg)
}

pub fn run(args: &BenchServiceArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(crate::db::scratch_database(
        &args.database_url,
        "prewarm_bench",
        false,
        |_, url| async move { bench(args, &url).await },
    ))
}

async fn bench(args: &BenchServiceArgs, url: &str) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "service benchmark: {cores} cores, PostgreSQL on this machine, fake-cloud on loopback"
    );
    let setup = PgPoolOptions::new().max_connections(4).connect(url).await?;
    prewarm_store::MIGRATOR.run(&setup).await?;
    let secret = Secret::generate();
    let cloud = FakeCloud::new(secret.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let cloud_url = format!("http://{}/orders", listener.local_addr()?);
    let router = cloud.router();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let now = Utc::now().duration_trunc(Duration::minutes(1))?;
    let clock = ManualClock::new(now);
    let shared: SharedClock = Arc::new(clock.clone());

    println!(
        "{:>7} {:>9} {:>14} {:>14} {:>12}",
        "fleets", "replicas", "tick median", "tick max", "per fleet"
    );
    for &n in &args.fleets {
        populate(&setup, n, now).await?;
        for &r in &args.replicas {
            setup.execute("TRUNCATE fleet_leases, replicas").await?;
            let mut replicas = Vec::new();
            for k in 0..r {
                let pool = PgPoolOptions::new()
                    .max_connections(args.concurrency as u32 + 2)
                    .connect(url)
                    .await?;
                replicas.push(service(
                    url,
                    &cloud_url,
                    &secret,
                    &format!("bench-{k}"),
                    shared.clone(),
                    pool,
                    args.concurrency,
                )?);
            }
            // Lease rounds until the fleets are split (each replica sees the others first).
            for _ in 0..3 {
                for s in &replicas {
                    s.lease_round().await?;
                }
            }
            let held: usize = replicas.iter().map(|s| s.held().len()).sum();
            anyhow::ensure!(held == n, "replicas hold {held} of {n} fleets");
            let mut times = Vec::new();
            for round in 0..args.rounds {
                clock.set(now + Duration::minutes(round as i64));
                let started = Instant::now();
                let mut set = tokio::task::JoinSet::new();
                for s in &replicas {
                    let s = s.clone();
                    set.spawn(async move { s.tick_all().await });
                }
                let mut failed = 0;
                while let Some(res) = set.join_next().await {
                    failed += res?.1;
                }
                anyhow::ensure!(failed == 0, "{failed} fleet plans failed");
                times.push(started.elapsed().as_secs_f64());
            }
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            println!(
                "{:>7} {:>9} {:>13.2}s {:>13.2}s {:>10.2}ms",
                n,
                r,
                median,
                times[times.len() - 1],
                1e3 * median / n as f64
            );
            for s in &replicas {
                s.pool.close().await;
            }
        }
    }

    // Refits: a week of 5-minute history per fleet; the first refit bootstraps its band with a
    // short backtest, later ones only score stored forecasts.
    let m = args.refit_fleets;
    populate(&setup, m, now).await?;
    sqlx::query(
        "INSERT INTO samples (fleet_id, bucket_start, bucket_secs, requests)
         SELECT f.id, $1 - make_interval(mins => 5 * k), 300,
                300 * (10 + 8 * sin(2 * pi() * k / 288.0) + (f.id % 7) + (k * 7919 % 13) / 6.0)
         FROM fleets f, generate_series(36 / 5 + 1, 7 * 288) k
         ON CONFLICT DO NOTHING",
    )
    .bind(now)
    .execute(&setup)
    .await?;
    setup
        .execute("TRUNCATE forecasts, fleet_leases, replicas")
        .await?;
    let pool = PgPoolOptions::new().max_connections(8).connect(url).await?;
    let s = service(
        url,
        &cloud_url,
        &secret,
        "bench-refit",
        shared.clone(),
        pool,
        args.concurrency,
    )?;
    s.lease_round().await?;
    for (label, at) in [
        ("first (bootstraps a week of hourly backtest fits)", now),
        ("steady state", now + Duration::minutes(15)),
    ] {
        clock.set(at);
        let started = Instant::now();
        let (ok, failed) = s.refit_all().await;
        let secs = started.elapsed().as_secs_f64();
        anyhow::ensure!(failed == 0 && ok == m, "{failed} refits failed");
        println!(
            "refit of {m} fleets, {label}: {secs:.2}s ({:.1} ms per fleet on {cores} cores)",
            1e3 * secs / m as f64
        );
    }
    Ok(())
}
