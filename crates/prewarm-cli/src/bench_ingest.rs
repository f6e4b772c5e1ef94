//! `prewarm bench ingest`: COPY import rate, 28-day read time and push API latency on a scratch
//! database.

use std::{
    future::IntoFuture,
    time::{Duration, Instant},
};

use anyhow::ensure;
use clap::Args;
use prewarm_core::Trace;
use prewarm_store::{create_fleet, create_token, Actor, FleetSpec, Scope};

use crate::database::scratch_database;
use crate::database::{connect, runtime, DbArgs};

#[derive(Debug, Args)]
pub(crate) struct BenchIngestArgs {
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
    #[arg(long, env = "PREWARM_DATABASE__URL")]
    database_url: String,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Ingestion benchmark on a scratch database: COPY import, reading 28 days, and paced pushes
/// over loopback HTTP.
pub(crate) fn run(args: &BenchIngestArgs) -> anyhow::Result<()> {
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
