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
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn check(path: &std::path::Path) -> anyhow::Result<()> {
    let trace = prewarm_core::read_trace(path)?;
    println!("{}", output::describe(&trace, &path.display().to_string()));
    Ok(())
}
