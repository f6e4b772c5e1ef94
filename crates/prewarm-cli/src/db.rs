//! Commands that talk to the database: `migrate`, `fleet`, `token`, `import`, `serve`, and the
//! ingestion benchmark.

use std::{
    future::IntoFuture,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{ensure, Context};
use clap::{Args, Subcommand};
#[cfg(feature = "analysis")]
use polars::prelude::{col, DataType, IntoLazy, ParquetReader, SerReader, SerWriter, TimeUnit};
use prewarm_core::{read_trace, Trace};
use prewarm_store::{create_fleet, create_token, fleet_by_name, Actor, FleetSpec, Scope};
use sqlx::{postgres::PgPoolOptions, PgPool};

/// Where the database is.
#[derive(Debug, Args, Clone)]
pub struct DbArgs {
    /// PostgreSQL connection URL, e.g. postgres://user@127.0.0.1:5432/prewarm.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
}

/// The URL without its password, for messages.
fn redacted(url: &str) -> String {
    prewarm_service::config::redact_url(url)
}

/// Connects and brings the schema up to date.
pub async fn connect(args: &DbArgs) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&args.database_url)
        .await
        .with_context(|| {
            format!(
                "cannot connect to the database at {}; is PostgreSQL running, and is DATABASE_URL right?",
                redacted(&args.database_url)
            )
        })?;
    prewarm_store::MIGRATOR
        .run(&pool)
        .await
        .context("cannot bring the database schema up to date")?;
    Ok(pool)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn migrate(args: &DbArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        connect(args).await?;
        println!(
            "the schema of {} is up to date",
            redacted(&args.database_url)
        );
        Ok(())
    })
}

/// A fleet's settings, as `fleet create` and `fleet update` take them.
#[derive(Debug, Args, Clone)]
pub struct FleetSettingsArgs {
    /// IANA time zone of the fleet's users.
    #[arg(long)]
    tz: Option<String>,
    /// GPU type, for people reading the config.
    #[arg(long)]
    gpu_type: Option<String>,
    /// Requests per second one GPU serves.
    #[arg(long)]
    gpu_rps: Option<f64>,
    /// Price of one GPU-hour in US dollars.
    #[arg(long)]
    price: Option<f64>,
    /// Fewest GPUs the fleet keeps.
    #[arg(long)]
    min_gpus: Option<i32>,
    /// Most GPUs the fleet may have.
    #[arg(long)]
    max_gpus: Option<i32>,
    /// Spending limit in US dollars per hour.
    #[arg(long)]
    budget: Option<f64>,
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Create a fleet (defaults: UTC, 1 request/s per GPU, $3 per GPU-hour, 1 to 100 GPUs).
    Create {
        /// Fleet name: letters, digits, '.', '_' or '-'.
        name: String,
        #[command(flatten)]
        settings: FleetSettingsArgs,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List every fleet with its settings.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Change a fleet's settings (those given; the change is checked and audited).
    Update {
        name: String,
        #[command(flatten)]
        settings: FleetSettingsArgs,
        /// Remove the spending limit.
        #[arg(long, conflicts_with = "budget")]
        no_budget: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Delete a fleet with its history, decisions, orders and tokens, in one transaction.
    Delete {
        name: String,
        /// Confirm: without it nothing is deleted.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        db: DbArgs,
    },
}

pub fn fleet(command: &FleetCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        match command {
            FleetCommand::Create { name, settings, db } => {
                let pool = connect(db).await?;
                let d = FleetSpec::named(name);
                let spec = FleetSpec {
                    name: name.clone(),
                    time_zone: settings.tz.clone().unwrap_or(d.time_zone),
                    gpu_type: settings.gpu_type.clone().unwrap_or(d.gpu_type),
                    gpu_rps: settings.gpu_rps.unwrap_or(d.gpu_rps),
                    price_usd_per_gpu_hour: settings.price.unwrap_or(d.price_usd_per_gpu_hour),
                    min_gpus: settings.min_gpus.unwrap_or(d.min_gpus),
                    max_gpus: settings.max_gpus.unwrap_or(d.max_gpus),
                    budget_usd_per_hour: settings.budget,
                };
                let fleet = create_fleet(&pool, &spec).await?;
                let mut conn = pool.acquire().await?;
                prewarm_store::audit::record(
                    &mut conn,
                    &Actor::cli(),
                    Some((fleet.id, &fleet.name)),
                    "fleet.create",
                    None,
                    Some(serde_json::to_value(&fleet)?),
                )
                .await?;
                println!("created fleet `{}` (id {})", fleet.name, fleet.id);
            }
            FleetCommand::List { db } => {
                let pool = connect(db).await?;
                let fleets = prewarm_store::list_fleets(&pool).await?;
                println!(
                    "{:<24} {:<20} {:>8} {:>8} {:>6} {:>6} {:>10}",
                    "fleet", "time zone", "gpu_rps", "$/GPU-h", "min", "max", "budget $/h"
                );
                for f in fleets {
                    println!(
                        "{:<24} {:<20} {:>8} {:>8} {:>6} {:>6} {:>10}",
                        f.name,
                        f.time_zone,
                        f.gpu_rps,
                        f.price_usd_per_gpu_hour,
                        f.min_gpus,
                        f.max_gpus,
                        f.budget_usd_per_hour
                            .map_or("-".to_string(), |b| b.to_string())
                    );
                }
            }
            FleetCommand::Update {
                name,
                settings,
                no_budget,
                db,
            } => {
                let pool = connect(db).await?;
                let update = prewarm_store::FleetUpdate {
                    time_zone: settings.tz.clone(),
                    gpu_type: settings.gpu_type.clone(),
                    gpu_rps: settings.gpu_rps,
                    price_usd_per_gpu_hour: settings.price,
                    min_gpus: settings.min_gpus,
                    max_gpus: settings.max_gpus,
                    budget_usd_per_hour: if *no_budget {
                        Some(None)
                    } else {
                        settings.budget.map(Some)
                    },
                };
                let (before, after) =
                    prewarm_store::update_fleet(&pool, name, &update, &Actor::cli()).await?;
                println!(
                    "updated fleet `{}`:\n  before: {}\n  after:  {}",
                    after.name,
                    serde_json::to_string(&before)?,
                    serde_json::to_string(&after)?
                );
            }
            FleetCommand::Delete { name, yes, db } => {
                ensure!(
                    *yes,
                    "deleting fleet `{name}` removes its history, decisions, orders and tokens; add --yes to confirm"
                );
                let pool = connect(db).await?;
                let samples = prewarm_store::delete_fleet(&pool, name, &Actor::cli()).await?;
                println!("deleted fleet `{name}` and its {samples} samples");
            }
        }
        Ok(())
    })
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a bearer token for one fleet, or for all; prints it once.
    Create {
        /// The fleet the token is for; without it, every fleet.
        #[arg(long)]
        fleet: Option<String>,
        /// A label to recognise the token by (the audit log names it).
        #[arg(long, default_value = "")]
        label: String,
        /// What it may do, comma-separated: push (samples), read, operate (pause, pin, events,
        /// planner settings, refit), admin (fleets and tokens).
        #[arg(long, default_value = "push", value_delimiter = ',', value_parser = parse_scope)]
        scope: Vec<Scope>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List tokens (never the secrets): id, label, fleet, scopes, revoked.
    List {
        /// Only this fleet's tokens.
        #[arg(long)]
        fleet: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a token at once.
    Revoke {
        /// The token's id (from `token list`).
        id: i64,
        #[command(flatten)]
        db: DbArgs,
    },
}

fn parse_scope(text: &str) -> Result<Scope, String> {
    text.trim().parse()
}

pub fn token(command: &TokenCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        match command {
            TokenCommand::Create {
                fleet,
                label,
                scope,
                db,
            } => {
                let mut scope = scope.clone();
                scope.sort();
                scope.dedup();
                let pool = connect(db).await?;
                let (id, token) =
                    create_token(&pool, fleet.as_deref(), label, &scope, &Actor::cli()).await?;
                eprintln!(
                    "token {id} ({}) for {}: keep it now, only its hash is stored and it cannot be shown again",
                    scope.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    fleet
                        .as_deref()
                        .map_or("every fleet".to_string(), |f| format!("fleet `{f}`"))
                );
                println!("{token}");
            }
            TokenCommand::List { fleet, db } => {
                let pool = connect(db).await?;
                let fleet_id = match fleet {
                    Some(name) => Some(fleet_by_name(&pool, name).await?.id),
                    None => None,
                };
                println!(
                    "{:>5} {:<24} {:<20} {:<26} {}",
                    "id", "label", "fleet", "scopes", "revoked"
                );
                for t in prewarm_store::list_tokens(&pool, fleet_id).await? {
                    println!(
                        "{:>5} {:<24} {:<20} {:<26} {}",
                        t.id,
                        t.label,
                        t.fleet.unwrap_or_else(|| "(every fleet)".into()),
                        t.scopes
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                        t.revoked_at.map_or("-".to_string(), |r| r.to_rfc3339())
                    );
                }
            }
            TokenCommand::Revoke { id, db } => {
                let pool = connect(db).await?;
                ensure!(
                    prewarm_store::revoke_token(&pool, *id, &Actor::cli()).await?,
                    "no token {id}, or it is revoked already (see `prewarm token list`)"
                );
                println!("revoked token {id}");
            }
        }
        Ok(())
    })
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The fleet whose history receives the samples.
    #[arg(long)]
    fleet: String,
    /// A trace in the project's format: CSV, or Parquet with the same columns.
    file: PathBuf,
    /// Move the trace in time so that its last bucket ends now (rounded down to its interval):
    /// replays an old trace as recent history, e.g. to try the service on a bundled fixture.
    #[arg(long)]
    shift_to_now: bool,
    #[command(flatten)]
    db: DbArgs,
}

/// Without the `analysis` feature there is no Parquet reader: says so, and what to do instead.
#[cfg(not(feature = "analysis"))]
fn read_parquet_trace(path: &Path) -> anyhow::Result<Trace> {
    anyhow::bail!(
        "{}: this prewarm was built without Parquet support (the `analysis` feature): import a CSV trace, or use a build with default features",
        path.display()
    )
}

/// Reads a Parquet file with the trace format's columns, validated like a CSV trace.
#[cfg(feature = "analysis")]
fn read_parquet_trace(path: &Path) -> anyhow::Result<Trace> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let df = ParquetReader::new(file)
        .finish()
        .with_context(|| format!("{}: cannot read as Parquet", path.display()))?;
    let timestamp = df
        .column("timestamp")
        .with_context(|| format!("{}: no column `timestamp`", path.display()))?;
    let mut df = match timestamp.dtype() {
        DataType::Datetime(_, _) | DataType::Date => df
            .lazy()
            .with_column(
                col("timestamp")
                    .cast(DataType::Datetime(TimeUnit::Milliseconds, None))
                    .dt()
                    .to_string("%Y-%m-%dT%H:%M:%S%.3fZ"),
            )
            .collect()?,
        _ => df,
    };
    let mut csv = Vec::new();
    polars::prelude::CsvWriter::new(&mut csv)
        .include_header(true)
        .finish(&mut df)?;
    Ok(prewarm_core::parse_trace(csv.as_slice(), path)?)
}

/// Moves a trace so that its last bucket ends at `now`, rounded down to the trace's interval.
pub fn shift_to(trace: &mut Trace, now: chrono::DateTime<chrono::Utc>) {
    let step = trace.step_secs.max(1);
    let end = trace.timestamp(trace.len());
    let target =
        chrono::DateTime::from_timestamp(now.timestamp().div_euclid(step) * step, 0).unwrap_or(now);
    trace.start += target - end;
}

pub fn import(args: &ImportArgs) -> anyhow::Result<()> {
    let mut trace = match args.file.extension().and_then(|e| e.to_str()) {
        Some("parquet") | Some("pq") => read_parquet_trace(&args.file)?,
        _ => read_trace(&args.file)?,
    };
    let now = chrono::Utc::now();
    if args.shift_to_now {
        let before = trace.start;
        shift_to(&mut trace, now);
        eprintln!(
            "shifted the trace by {} days: it now runs from {} to {}",
            (trace.start - before).num_days(),
            trace.start.to_rfc3339(),
            trace.timestamp(trace.len()).to_rfc3339()
        );
    }
    runtime()?.block_on(async {
        let pool = connect(&args.db).await?;
        let fleet = fleet_by_name(&pool, &args.fleet).await?;
        let started = Instant::now();
        let rows = prewarm_store::import_trace(&pool, &fleet, &trace, now)
            .await
            .map_err(|e| match e {
                prewarm_store::StoreError::Invalid(items) => {
                    let mut text: Vec<String> = items
                        .iter()
                        .take(10)
                        .map(|i| format!("  {}: {}", i.field, i.message))
                        .collect();
                    if items.len() > 10 {
                        text.push(format!("  ... and more ({} shown)", 10));
                    }
                    anyhow::anyhow!(
                        "{}: {} bad row(s), nothing was imported:\n{}",
                        args.file.display(),
                        items.len(),
                        text.join("\n")
                    )
                }
                other => anyhow::Error::new(other),
            })?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "imported {rows} samples into fleet `{}` in {secs:.2} s ({:.0} samples/s); {} missing bucket(s) skipped",
            fleet.name,
            rows as f64 / secs.max(1e-9),
            trace.missing()
        );
        Ok(())
    })
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file; `PREWARM_SECTION__KEY` variables override it (README: Running the
    /// service).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Check the configuration, print it as TOML with secrets shown as `<redacted>`, and exit.
    #[arg(long)]
    check: bool,
}

pub fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    use prewarm_service::{clock::SystemClock, config::Config};
    let config = Config::load(args.config.as_deref(), std::env::vars())?;
    if args.check {
        print!("{}", config.to_toml_redacted());
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PREWARM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    runtime()?.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot watch for SIGTERM")?;
        // Starting waits for the database (retrying, not ready meanwhile); a signal stops it.
        let running = tokio::select! {
            r = prewarm_service::serve::start(config, std::sync::Arc::new(SystemClock), true) => r?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
        };
        eprintln!(
            "prewarm serving on http://{} (replica {}); Ctrl-C or SIGTERM stops it",
            running.addr,
            running.service.replica()
        );
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("stopping: handing this replica's fleets to the others");
        running.stop().await;
        Ok(())
    })
}

#[derive(Debug, Args)]
pub struct BenchIngestArgs {
    /// Samples loaded by the COPY benchmark.
    #[arg(long, default_value_t = 1_000_000)]
    samples: usize,
    /// Samples per second the push load generator aims for.
    #[arg(long, default_value_t = 5_000)]
    push_rate: usize,
    /// Samples per pushed batch.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Seconds of push load.
    #[arg(long, default_value_t = 20)]
    push_secs: u64,
    /// Server to create the scratch database on (it is dropped afterwards).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Ingestion benchmark on a scratch database: COPY import, reading 28 days, and paced pushes
/// over loopback HTTP.
pub fn bench_ingest(args: &BenchIngestArgs) -> anyhow::Result<()> {
    ensure!(
        args.samples >= 40_320,
        "--samples must be at least 40320 (28 days of minutes)"
    );
    ensure!(
        args.batch > 0 && args.push_rate >= args.batch,
        "--push-rate must be at least --batch"
    );
    runtime()?.block_on(scratch_database(
        &args.database_url,
        "prewarm_bench",
        false,
        |_, url| async move { bench_on(&url, args).await },
    ))
}

/// Runs `work` on a scratch database `{prefix}_{pid}` made on the server of `url` (its name and
/// URL are passed in), and drops it afterwards unless `keep`.
pub async fn scratch_database<T, F, Fut>(
    url: &str,
    prefix: &str,
    keep: bool,
    work: F,
) -> anyhow::Result<T>
where
    F: FnOnce(String, String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let admin = connect_plain(url)
        .await
        .context("is PostgreSQL running, and is DATABASE_URL right?")?;
    let name = format!("{prefix}_{}", std::process::id());
    prewarm_store::admin::create_database(&admin, &name)
        .await
        .context("cannot create a scratch database (the user needs CREATEDB)")?;
    let result = work(name.clone(), with_database(url, &name)).await;
    if !keep {
        prewarm_store::admin::drop_database(&admin, &name).await?;
    }
    result
}

async fn connect_plain(url: &str) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to {}", redacted(url)))
}

fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let slash = base
        .rfind('/')
        .filter(|i| *i > base.find("://").map_or(0, |s| s + 2))
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..slash], database);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

async fn bench_on(url: &str, args: &BenchIngestArgs) -> anyhow::Result<()> {
    let pool = connect(&DbArgs {
        database_url: url.to_string(),
    })
    .await?;
    let fleet = create_fleet(&pool, &FleetSpec::named("bench")).await?;
    let start: chrono::DateTime<chrono::Utc> = "2024-01-01T00:00:00Z".parse()?;
    let values: Vec<f64> = (0..args.samples)
        .map(|i| ((i * 7919) % 1000) as f64)
        .collect();
    let mut trace = Trace::new(start, 60, values);
    trace.extra.push((
        "tokens_in".into(),
        (0..args.samples).map(|i| (i % 5000) as f64).collect(),
    ));

    let started = Instant::now();
    let now = chrono::Utc::now();
    let rows = prewarm_store::import_trace(&pool, &fleet, &trace, now).await?;
    let copy_secs = started.elapsed().as_secs_f64();
    println!(
        "bulk import (COPY) into an empty range: {rows} samples in {copy_secs:.2} s = {:.0} samples/s",
        rows as f64 / copy_secs
    );
    let started = Instant::now();
    prewarm_store::import_trace(&pool, &fleet, &trace, now).await?;
    let again_secs = started.elapsed().as_secs_f64();
    println!(
        "the same import again (every bucket replaced): {again_secs:.2} s = {:.0} samples/s",
        rows as f64 / again_secs
    );
    prewarm_store::admin::analyze(&pool).await?;

    let to = trace.timestamp(trace.len());
    let from = to - chrono::Duration::days(28);
    let mut reads = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let rows = prewarm_store::history(&pool, fleet.id, 60, from, to).await?;
        reads.push(t.elapsed().as_secs_f64() * 1000.0);
        ensure!(
            rows.len() == 40_320,
            "read {} rows, expected 40320",
            rows.len()
        );
    }
    reads.sort_by(f64::total_cmp);
    println!(
        "read 28 days of 1-minute history (40,320 rows of {rows}): median {:.1} ms, p99 {:.1} ms",
        percentile(&reads, 0.5),
        percentile(&reads, 0.99)
    );

    // Paced pushes over loopback: the server runs in this process, the client sends one batch
    // every batch/rate seconds for a bounded time, each on its own task.
    let (_, token) =
        create_token(&pool, Some("bench"), "bench", &[Scope::Push], &Actor::cli()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(
        axum::serve(listener, prewarm_ingest::api::router(pool.clone())).into_future(),
    );
    let client = reqwest::Client::new();
    let interval = Duration::from_secs_f64(args.batch as f64 / args.push_rate as f64);
    let batches = (args.push_secs as f64 / interval.as_secs_f64()) as usize;
    let push_start = to + chrono::Duration::days(1);
    let mut ticker = tokio::time::interval(interval);
    let mut tasks = Vec::with_capacity(batches);
    let began = Instant::now();
    for b in 0..batches {
        ticker.tick().await;
        let samples: Vec<serde_json::Value> = (0..args.batch)
            .map(|k| {
                let t = push_start - chrono::Duration::days(400)
                    + chrono::Duration::minutes((b * args.batch + k) as i64);
                serde_json::json!({"timestamp": t.to_rfc3339(), "requests": k as f64})
            })
            .collect();
        let request = client
            .post(format!("http://{addr}/v1/fleets/bench/samples"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "samples": samples }));
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let ok = request
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            (t.elapsed().as_secs_f64() * 1000.0, ok)
        }));
    }
    let mut latencies = Vec::with_capacity(batches);
    let mut failed = 0;
    for task in tasks {
        let (ms, ok) = task.await?;
        latencies.push(ms);
        failed += usize::from(!ok);
    }
    let elapsed = began.elapsed().as_secs_f64();
    server.abort();
    latencies.sort_by(f64::total_cmp);
    println!(
        "push API: {batches} batches of {} in {elapsed:.1} s = {:.0} samples/s sustained; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {failed} failed",
        args.batch,
        (batches * args.batch) as f64 / elapsed,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0.0)
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The fleet whose history receives the samples.
    #[arg(long)]
    fleet: String,
    /// Prometheus base URL.
    #[arg(
        long,
        env = "PREWARM_PROMETHEUS_URL",
        default_value = "http://127.0.0.1:9090"
    )]
    prometheus: String,
    /// PromQL expression giving the fleet's requests per second.
    #[arg(long)]
    query: String,
    /// How far back to read when the fleet has no samples of this step yet (backfill); with
    /// samples, the pull starts from the latest stored one.
    #[arg(long, default_value = "28d")]
    from: String,
    /// Resolution: one stored bucket per step.
    #[arg(long, default_value = "1m")]
    step: String,
    /// After the backfill, keep pulling what is new at this interval until interrupted.
    #[arg(long)]
    every: Option<String>,
    #[command(flatten)]
    db: DbArgs,
}

pub fn pull(args: &PullArgs) -> anyhow::Result<()> {
    let back =
        prewarm_core::parse_duration(&args.from).map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    let step =
        prewarm_core::parse_duration(&args.step).map_err(|e| anyhow::anyhow!("--step: {e}"))?;
    runtime()?.block_on(async {
        let pool = connect(&args.db).await?;
        let fleet = fleet_by_name(&pool, &args.fleet).await?;
        let source = prewarm_ingest::prometheus::PromSource {
            base_url: args.prometheus.clone(),
            query: args.query.clone(),
            step_secs: step,
        };
        let client = reqwest::Client::new();
        let every = args
            .every
            .as_deref()
            .map(|e| prewarm_core::parse_duration(e).map_err(|e| anyhow::anyhow!("--every: {e}")))
            .transpose()?;
        let mut ticker = tokio::time::interval(Duration::from_secs(every.unwrap_or(1) as u64));
        loop {
            ticker.tick().await;
            let report = prewarm_ingest::prometheus::pull_new(
                &pool,
                &client,
                fleet.id,
                &source,
                chrono::Utc::now(),
                chrono::Duration::seconds(back),
                prewarm_ingest::prometheus::Retry::default(),
            )
            .await;
            match report {
                Ok(report) => {
                    println!(
                        "pulled {} samples into fleet `{}` in {} request(s); {} step(s) had no data",
                        report.samples_stored, fleet.name, report.requests_sent, report.missing_steps
                    );
                    for w in &report.warnings {
                        println!("Prometheus warned: {w}");
                    }
                }
                // On a schedule, a failed pull is reported and retried at the next tick: the
                // next pull starts from the latest stored bucket, so nothing is lost.
                Err(e) if every.is_some() => eprintln!("pull failed: {e}"),
                Err(e) => return Err(e.into()),
            }
            if every.is_none() {
                break;
            }
        }
        Ok(())
    })
}

#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// Raw samples (buckets under an hour) older than this become hourly sums.
    #[arg(long, default_value = "35d")]
    keep_raw: String,
    #[command(flatten)]
    db: DbArgs,
}

pub fn retention(args: &RetentionArgs) -> anyhow::Result<()> {
    let keep = prewarm_core::parse_duration(&args.keep_raw)
        .map_err(|e| anyhow::anyhow!("--keep-raw: {e}"))?;
    runtime()?.block_on(async {
        let pool = connect(&args.db).await?;
        let cutoff = chrono::Utc::now() - chrono::Duration::seconds(keep);
        let (hourly, removed) = prewarm_store::downsample(&pool, cutoff).await?;
        println!(
            "raw samples before {}: {removed} folded into {hourly} hourly row(s)",
            cutoff.to_rfc3339()
        );
        Ok(())
    })
}

#[derive(Debug, Args)]
pub struct FakeCloudArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9900")]
    listen: String,
    /// Shared web-hook secret (`whsec_...`); without it, a new one is made and printed.
    #[arg(long, env = "PREWARM_WEBHOOK_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// prewarm's base URL for the ready/failed/terminated callbacks (e.g. http://127.0.0.1:8080).
    #[arg(long)]
    callback: Option<String>,
    /// Shortest boot.
    #[arg(long, default_value = "6m")]
    boot_min: String,
    /// Longest boot (boot times are drawn uniformly, seeded).
    #[arg(long, default_value = "10m")]
    boot_max: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Runs the reference provisioner until interrupted.
pub fn fake_cloud(args: &FakeCloudArgs) -> anyhow::Result<()> {
    use prewarm_service::{
        clock::SystemClock,
        fake_cloud::{Behaviour, FakeCloud},
        webhook::Secret,
    };
    let secret = match &args.secret {
        Some(s) => Secret::parse(s).map_err(anyhow::Error::msg)?,
        None => {
            let s = Secret::generate();
            eprintln!("web-hook secret (give it to prewarm): {}", s.encoded());
            s
        }
    };
    let boot = |t: &str, what: &str| {
        prewarm_core::parse_duration(t).map_err(|e| anyhow::anyhow!("--{what}: {e}"))
    };
    let boot_secs = (
        boot(&args.boot_min, "boot-min")?,
        boot(&args.boot_max, "boot-max")?,
    );
    anyhow::ensure!(
        boot_secs.1 >= boot_secs.0,
        "--boot-max must not be shorter than --boot-min"
    );
    if let Some(url) = &args.callback {
        anyhow::ensure!(
            url.starts_with("http://") || url.starts_with("https://"),
            "--callback must be prewarm's http(s) base URL"
        );
    }
    runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        eprintln!(
            "fake-cloud listening on http://{}/orders (POST /control to inject failures, GET /instances)",
            listener.local_addr()?
        );
        let cloud = FakeCloud::with(
            secret,
            std::sync::Arc::new(SystemClock),
            Behaviour {
                boot_secs,
                callback_url: args.callback.clone(),
                seed: args.seed,
            },
        );
        let _processing = cloud.spawn_processing(Duration::from_secs(1));
        axum::serve(listener, cloud.router())
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("fake-cloud stopped")?;
        Ok(())
    })
}

#[derive(Debug, Args)]
pub struct RefitArgs {
    /// The fleet to refit.
    #[arg(long)]
    fleet: String,
    /// The service's TOML configuration, for its `[planner]` settings (defaults otherwise).
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(flatten)]
    db: DbArgs,
}

/// Refits one fleet now, as the service's scheduled refit would, and prints what it did.
pub fn refit(args: &RefitArgs) -> anyhow::Result<()> {
    use prewarm_service::{
        clock::SystemClock,
        config::{Config, Mode, Redacted},
    };
    let mut config = match &args.config {
        Some(path) => Config::load(Some(path), std::env::vars())?,
        None => Config::default(),
    };
    // A refit orders nothing: no provisioner is needed.
    config.service.mode = Mode::ForecastOnly;
    config.database.url = Redacted(args.db.database_url.clone());
    config.validate()?;
    runtime()?.block_on(async {
        let pool = connect(&args.db).await?;
        let fleet = fleet_by_name(&pool, &args.fleet).await?;
        let service =
            prewarm_service::engine::Service::new(pool, config, std::sync::Arc::new(SystemClock))
                .map_err(anyhow::Error::msg)?;
        let report = service.refit_fleet(fleet.id).await?;
        match (&report.skipped, report.forecast_id) {
            (Some(why), _) => println!("fleet `{}`: no forecast: {why}", fleet.name),
            (None, Some(id)) => println!(
                "fleet `{}`: forecast {id} made in {:.0} ms; band {} ({} errors per horizon{})",
                fleet.name,
                report.fit_secs * 1000.0,
                if report.calibrated {
                    "calibrated"
                } else {
                    "not calibrated yet"
                },
                report.errors_used,
                if report.bootstrapped > 0 {
                    format!(", {} bootstrap backtest fits", report.bootstrapped)
                } else {
                    String::new()
                }
            ),
            (None, None) => println!("fleet `{}`: no forecast", fleet.name),
        }
        Ok(())
    })
}
