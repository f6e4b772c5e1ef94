//! `prewarm`: the command line of the predictive GPU autoscaler.
//!
//! Most commands work on files, with no server: converting public traces into the project's trace
//! format, backtesting forecasts, and replaying traces through the planner. The rest talk to the
//! fleets' database (`DATABASE_URL`): migrations, fleets, tokens, bulk import, the push API.
//!
//! The analysis commands (`backtest`, `trace import`, Parquet files) use polars, behind the
//! default feature `analysis`; `--no-default-features` builds the service's binary without it.

#[cfg(feature = "analysis")]
mod backtest;
mod bench_planner;
mod bench_service;
mod db;
mod demo;
#[cfg(feature = "analysis")]
mod import;
mod output;
mod plot;
mod provisioner_check;
mod simulate;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Predictive GPU autoscaling: forecast request rates and pre-warm capacity before the rush.
#[derive(Debug, Parser)]
#[command(name = "prewarm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with trace files.
    Trace {
        #[command(subcommand)]
        command: TraceCommand,
    },
    /// Rolling-origin backtest of the forecasting models on a trace.
    #[cfg(feature = "analysis")]
    Backtest(backtest::BacktestArgs),
    /// Replay a trace through the planner and the alternatives; compare GPU-hours and timeouts.
    Simulate(simulate::SimulateArgs),
    /// Sweep the planner's knobs on a trace; pick the cheapest within a timed-out target.
    Tune(simulate::TuneArgs),
    /// Bring the database schema up to date (also done by every command that uses it).
    Migrate(db::DbArgs),
    /// Manage fleets.
    Fleet {
        #[command(subcommand)]
        command: db::FleetCommand,
    },
    /// Manage API tokens: create (with scopes), list, revoke.
    Token {
        #[command(subcommand)]
        command: db::TokenCommand,
    },
    /// Load a trace file (CSV or Parquet) into a fleet's history, with COPY; idempotent.
    Import(db::ImportArgs),
    /// Refit a fleet's forecast now (as the service's scheduled refit does) and say what it did.
    Refit(db::RefitArgs),
    /// Check a provisioner's web hook against prewarm's contract: signed orders, repeats under
    /// one key, bad and stale signatures, and (with --callback-listen) its signed callbacks.
    ProvisionerCheck(provisioner_check::CheckArgs),
    /// Fold raw samples older than --keep-raw into hourly sums (run it daily, e.g. from cron).
    Retention(db::RetentionArgs),
    /// Read a fleet's request rate from Prometheus (query_range) into its history.
    Pull(db::PullArgs),
    /// Run the service: scheduled refits and planning ticks, order delivery, callbacks, push
    /// and operator API.
    Serve(db::ServeArgs),
    /// Run the reference provisioner: accepts signed orders once each, boots, calls back.
    FakeCloud(db::FakeCloudArgs),
    /// Replay a trace through the real service and fake-cloud on a simulated clock.
    Demo(demo::DemoArgs),
    /// Benchmarks that need more than `cargo bench`.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// COPY import rate, 28-day read time and push API latency on a scratch database.
    Ingest(db::BenchIngestArgs),
    /// Planning tick time for many fleets and replicas, and refit time, on a scratch database.
    Service(bench_service::BenchServiceArgs),
    /// Time of a 4-week replay with hourly refits, of each decision and of each refit.
    Planner(bench_planner::BenchPlannerArgs),
}

#[derive(Debug, Subcommand)]
enum TraceCommand {
    /// Convert a public trace into the project's trace format (`timestamp,requests,...`).
    #[cfg(feature = "analysis")]
    Import(import::ImportArgs),
    /// Check a trace file and print what it holds.
    Check {
        /// The trace file.
        trace: PathBuf,
    },
    /// Write a synthetic trace of Poisson counts with a known shape on a wall clock.
    Synth(SynthArgs),
}

/// `prewarm trace synth`.
#[derive(Debug, clap::Args)]
struct SynthArgs {
    /// `office` (a weekday 09:30 rush and 14:00 peak, quiet nights and weekends) or `bursts`
    /// (a daily base plus clients firing at :00 and :30 past the hour every 1.5 to 2.5 hours).
    #[arg(long, default_value = "office")]
    shape: prewarm_core::synth::Shape,
    /// First bucket (RFC 3339).
    #[arg(long, default_value = "2026-02-15T05:00:00Z")]
    start: chrono::DateTime<chrono::Utc>,
    /// Days to generate.
    #[arg(long, default_value_t = 42)]
    days: u32,
    /// Bucket width.
    #[arg(long, default_value = "1m")]
    step: String,
    /// The wall clock the shape follows.
    #[arg(long, default_value = "America/New_York")]
    tz: String,
    /// Requests per minute at the busiest hour of a weekday.
    #[arg(long, default_value_t = 600.0)]
    peak_per_minute: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The trace file to write.
    #[arg(long)]
    out: PathBuf,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        #[cfg(feature = "analysis")]
        Command::Trace {
            command: TraceCommand::Import(args),
        } => import::run(&args),
        Command::Trace {
            command: TraceCommand::Check { trace },
        } => check(&trace),
        Command::Trace {
            command: TraceCommand::Synth(args),
        } => synth(&args),
        #[cfg(feature = "analysis")]
        Command::Backtest(args) => backtest::run(&args),
        Command::Simulate(args) => simulate::run(&args),
        Command::Tune(args) => simulate::tune(&args),
        Command::Migrate(args) => db::migrate(&args),
        Command::Fleet { command } => db::fleet(&command),
        Command::Token { command } => db::token(&command),
        Command::Refit(args) => db::refit(&args),
        Command::ProvisionerCheck(args) => provisioner_check::run(&args),
        Command::Import(args) => db::import(&args),
        Command::Retention(args) => db::retention(&args),
        Command::Pull(args) => db::pull(&args),
        Command::Serve(args) => db::serve(&args),
        Command::FakeCloud(args) => db::fake_cloud(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Bench {
            command: BenchCommand::Ingest(args),
        } => db::bench_ingest(&args),
        Command::Bench {
            command: BenchCommand::Service(args),
        } => bench_service::run(&args),
        Command::Bench {
            command: BenchCommand::Planner(args),
        } => bench_planner::run(&args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn synth(args: &SynthArgs) -> anyhow::Result<()> {
    let step =
        prewarm_core::parse_duration(&args.step).map_err(|e| anyhow::anyhow!("--step: {e}"))?;
    anyhow::ensure!(
        (1..=3_600).contains(&step) && 86_400 % step == 0,
        "--step must divide a day, from 1s to 1h"
    );
    anyhow::ensure!(
        args.days >= 1 && args.days <= 366,
        "--days must be 1 to 366"
    );
    anyhow::ensure!(
        args.peak_per_minute.is_finite() && args.peak_per_minute > 0.0,
        "--peak-per-minute must be a positive number"
    );
    let tz: chrono_tz::Tz = args.tz.parse().map_err(|_| {
        anyhow::anyhow!(
            "--tz `{}` is not an IANA time zone such as America/New_York",
            args.tz
        )
    })?;
    let trace = prewarm_core::synth::synthesize(&prewarm_core::synth::SynthSpec {
        shape: args.shape,
        start: args.start,
        days: args.days,
        step_secs: step,
        tz,
        peak_per_minute: args.peak_per_minute,
        seed: args.seed,
    });
    prewarm_core::write_trace(&trace, &args.out)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", args.out.display()))?;
    println!(
        "{}",
        output::describe(&trace, &args.out.display().to_string())
    );
    Ok(())
}

fn check(path: &std::path::Path) -> anyhow::Result<()> {
    let trace = prewarm_core::read_trace(path)?;
    println!("{}", output::describe(&trace, &path.display().to_string()));
    Ok(())
}
