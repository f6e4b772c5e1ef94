//! `prewarm bench service`: how long one planning tick takes for many fleets, with one or more
//! replicas sharing the database, and how long refits take.
//!
//! Each fleet gets the rows a tick reads in production: 35 minutes of 1-minute samples, the
//! calibrated live forecasts of a fleet refitted on a week of history, a delivered boot order with its ready instances, and a week of
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
pub(crate) struct BenchServiceArgs {
    /// Fleet counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "250,500,1000")]
    fleets: Vec<usize>,
    /// Replica counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    replicas: Vec<usize>,
    /// Tick rounds per setting (the median is reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Fleets refitted in the refit measurement (each with a week of 5-minute history); 0 leaves
    /// the refits out.
    #[arg(long, default_value_t = 40)]
    refit_fleets: usize,
    /// Plans run at once per replica (`service.concurrency`).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// `service.tick_deadline`: no plan is started later than this into a tick (the rest are
    /// counted as not planned in time).
    #[arg(long, default_value = "45s")]
    tick_deadline: Span,
    #[arg(long, env = "PREWARM_DATABASE__URL")]
    database_url: String,
}

async fn populate(pool: &PgPool, n: usize, now: chrono::DateTime<Utc>) -> anyhow::Result<()> {
    prewarm_store::seed::fleets_in_steady_state(pool, n, now).await?;
    Ok(())
}

/// What every measurement shares: the scratch database, fake-cloud, the manual clock.
struct Bench<'a> {
    args: &'a BenchServiceArgs,
    url: &'a str,
    cloud_url: String,
    secret: Secret,
    clock: ManualClock,
    now: chrono::DateTime<Utc>,
}

impl Bench<'_> {
    /// A replica of the service on its own pool of `connections`, as `replica`.
    async fn service(&self, replica: &str, connections: u32) -> anyhow::Result<Arc<Service>> {
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .connect_with(prewarm_service::serve::connect_options(self.url)?)
            .await?;
        let mut c = Config::default();
        c.database.url = Redacted(self.url.to_string());
        c.provisioner.url = self.cloud_url.clone();
        c.provisioner.secret = Redacted(self.secret.encoded());
        c.service.replica_id = replica.to_string();
        c.service.lease_ttl = Span(25);
        c.service.concurrency = self.args.concurrency;
        c.service.tick_deadline = self.args.tick_deadline;
        c.validate().map_err(anyhow::Error::msg)?;
        let clock: SharedClock = Arc::new(self.clock.clone());
        Service::new(pool, c, clock).map_err(anyhow::Error::msg)
    }

    /// Every fleet plans on a refitted forecast, as in production: the first fleet gets a week
    /// of history and a real refit, and the others a copy of its forecasts.
    async fn refitted_forecasts(&self, setup: &PgPool) -> anyhow::Result<()> {
        prewarm_store::seed::week_of_history(setup, self.now, Some(1)).await?;
        let template = self.service("bench-template", 2).await?;
        template.lease_round().await?;
        template
            .refit_fleet(1)
            .await
            .map_err(|e| anyhow::anyhow!("refitting the template fleet: {e}"))?;
        template.pool.close().await;
        prewarm_store::seed::copy_live_forecasts(setup, 1).await?;
        Ok(())
    }

    /// `args.rounds` ticks of `n` fleets shared by `r` replicas, printed as a table row.
    async fn ticks(&self, setup: &PgPool, n: usize, r: usize) -> anyhow::Result<()> {
        setup.execute("TRUNCATE fleet_leases, replicas").await?;
        let mut replicas = Vec::new();
        for k in 0..r {
            // The service's default pool: plans wait for their round's writers, not for a
            // connection each.
            let connections = Config::default().database.max_connections;
            replicas.push(self.service(&format!("bench-{k}"), connections).await?);
        }
        // Lease rounds until the fleets are split (each replica sees the others first).
        for _ in 0..3 {
            for s in &replicas {
                s.lease_round().await?;
            }
        }
        let held: usize = replicas.iter().map(|s| s.held().len()).sum();
        anyhow::ensure!(held == n, "replicas hold {held} of {n} fleets");
        // Leases are renewed every 5 s while the ticks run, as the scheduler's lease job does in
        // production.
        let renew = {
            let replicas = replicas.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    for s in &replicas {
                        if let Err(e) = s.lease_round().await {
                            eprintln!("lease round failed: {e}");
                        }
                    }
                }
            })
        };
        let mut times = Vec::new();
        let (mut late, mut failed) = (0, 0);
        for round in 0..self.args.rounds {
            self.clock.set(self.now + Duration::minutes(round as i64));
            let started = Instant::now();
            let mut set = tokio::task::JoinSet::new();
            for s in &replicas {
                let s = s.clone();
                set.spawn(async move { s.tick_all().await });
            }
            let mut round_late = 0;
            while let Some(res) = set.join_next().await {
                let r = res?;
                round_late += r.late;
                failed += r.failed;
            }
            late = late.max(round_late);
            times.push(started.elapsed().as_secs_f64());
        }
        renew.abort();
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{:>7} {:>9} {:>13.2}s {:>13.2}s {:>10.2}ms {:>12} {:>8}",
            n,
            r,
            median,
            times[times.len() - 1],
            1e3 * median / n as f64,
            late,
            failed
        );
        for s in &replicas {
            s.pool.close().await;
        }
        Ok(())
    }

    /// The dashboard's all-fleets view of `n` fleets over a week of tally, as the service
    /// answers it: the median of 5, in milliseconds.
    async fn all_fleets_view_ms(&self, setup: &PgPool, n: usize) -> anyhow::Result<f64> {
        prewarm_store::seed::week_of_tally(setup, self.now).await?;
        let mut views = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            let rows = prewarm_store::dashboard::fleets(setup, None, self.now).await?;
            views.push(started.elapsed().as_secs_f64());
            anyhow::ensure!(rows.len() == n, "the view has {} of {n} fleets", rows.len());
        }
        views.sort_by(f64::total_cmp);
        Ok(1e3 * views[2])
    }

    /// Refits of `args.refit_fleets` fleets, each with a week of 5-minute history: the first
    /// bootstraps its band with a short backtest; within the hour after a calibration a refit
    /// fits a new median and keeps it, an hour on it scores the stored forecasts and
    /// recalibrates; the last recalibration scores a week of live forecasts made every 15
    /// minutes, as a fleet a week old has. Last, new fleets with three weeks of history refit
    /// for the first time.
    async fn refits(&self, setup: &PgPool, cores: usize) -> anyhow::Result<()> {
        let m = self.args.refit_fleets;
        populate(setup, m, self.now).await?;
        prewarm_store::seed::week_of_history(setup, self.now, None).await?;
        let s = self.service("bench-refit", 8).await?;
        s.lease_round().await?;
        // (label, when, whether a week of live refits is stored first)
        for (label, at, week_of_live) in [
            (
                "first (bootstraps a week of hourly backtest fits)",
                self.now,
                false,
            ),
            (
                "steady, the calibration kept (15 minutes on)",
                self.now + Duration::minutes(15),
                false,
            ),
            (
                "steady, recalibrating (an hour on)",
                self.now + Duration::minutes(75),
                false,
            ),
            (
                "steady, recalibrating on a week of live refits (every 15 minutes)",
                self.now + Duration::minutes(135),
                true,
            ),
        ] {
            if week_of_live {
                let made = prewarm_store::seed::week_of_live_forecasts(setup, self.now).await?;
                anyhow::ensure!(made > 0, "no live forecasts were seeded");
            }
            self.clock.set(at);
            timed_refits(&s, m, label, cores).await?;
        }
        // What the refits keep of calibrations: each stored once, when made.
        let (count, bytes): (i64, Option<f64>) = sqlx::query_as(
            "SELECT count(*), avg(pg_column_size(calibration))::float8 FROM calibrations",
        )
        .fetch_one(setup)
        .await?;
        println!(
            "calibrations stored after those refits: {:.1} per fleet, {:.1} kB each as stored",
            count as f64 / m as f64,
            bytes.unwrap_or(0.0) / 1e3
        );
        // Fleets that arrive with three weeks of history: their bootstrap fits the weekly season
        // too (MSTL fits it from two weeks on).
        let later = self.now + Duration::hours(3);
        populate(setup, m, later).await?;
        prewarm_store::seed::days_of_history(setup, later, 21, None).await?;
        self.clock.set(later);
        let s = self.service("bench-refit-3w", 8).await?;
        s.lease_round().await?;
        timed_refits(
            &s,
            m,
            "first with three weeks of history (the weekly season too)",
            cores,
        )
        .await
    }
}

/// Refits every fleet `s` holds (`m` of them, all expected to succeed) and prints how long it took.
async fn timed_refits(s: &Arc<Service>, m: usize, label: &str, cores: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let (ok, failed) = s.refit_all().await;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(failed == 0 && ok == m, "{failed} refits failed");
    println!(
        "refit of {m} fleets, {label}: {secs:.2}s ({:.1} ms per fleet on {cores} cores)",
        1e3 * secs / m as f64
    );
    Ok(())
}

pub(crate) fn run(args: &BenchServiceArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(crate::database::scratch_database(
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
    let setup = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(prewarm_service::serve::connect_options(url)?)
        .await?;
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
    let bench = Bench {
        args,
        url,
        cloud_url,
        secret,
        clock: ManualClock::new(now),
        now,
    };

    println!(
        "{:>7} {:>9} {:>14} {:>14} {:>12} {:>12} {:>8}",
        "fleets", "replicas", "tick median", "tick max", "per fleet", "late (max)", "failed"
    );
    let mut view_ms: Vec<(usize, f64)> = Vec::new();
    for &n in &args.fleets {
        populate(&setup, n, now).await?;
        bench.refitted_forecasts(&setup).await?;
        for &r in &args.replicas {
            bench.ticks(&setup, n, r).await?;
        }
        // After the ticks: the tally's rows would have autovacuum run under them.
        view_ms.push((n, bench.all_fleets_view_ms(&setup, n).await?));
    }
    for (n, ms) in &view_ms {
        println!(
            "the dashboard's all-fleets view of {n} fleets (a week of hourly tally each): {ms:.1} ms (median of 5)"
        );
    }
    if args.refit_fleets == 0 {
        return Ok(());
    }
    bench.refits(&setup, cores).await
}
