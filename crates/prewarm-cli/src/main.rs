//! `prewarm`: the command line of the predictive GPU autoscaler.
//!
//! Most commands work on files, with no server: converting public traces into the project's trace
//! format, backtesting forecasts, and replaying traces through the planner. The rest talk to the
//! fleets' database (`DATABASE_URL`): migrations, fleets, tokens, bulk import, the push API.
//!
//! The analysis commands (`backtest`, `trace import`, Parquet files) use polars, behind the
//! default feature `analysis`; `--no-default-features` builds the service's binary without it.

mod args;
#[cfg(feature = "analysis")]
mod backtest;
mod bench_ingest;
mod bench_planner;
mod bench_service;
mod database;
mod demo;
mod fake_cloud;
mod fleet;
mod import;
mod logging;
mod migrate;
mod output;
mod plot;
mod profile;
mod provisioner_check;
mod pull;
mod refit;
mod replay;
mod report;
mod retention;
mod serve;
mod simulate;
mod token;
mod trace;
#[cfg(feature = "analysis")]
mod trace_import;
mod tune;

use clap::{Parser, Subcommand};

/// Predictive GPU autoscaling: forecast request rates and pre-warm capacity before the rush.
#[derive(Debug, Parser)]
#[command(name = "prewarm", version, about)]
struct Cli {
    /// More log lines on stderr (-v: debug, -vv: trace); `PREWARM_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with trace files.
    Trace {
        #[command(subcommand)]
        command: trace::TraceCommand,
    },
    /// Rolling-origin backtest of the forecasting models on a trace.
    #[cfg(feature = "analysis")]
    Backtest(backtest::BacktestArgs),
    /// Replay a trace through the planner and the alternatives; compare GPU-hours and timeouts.
    Simulate(simulate::SimulateArgs),
    /// Sweep the planner's knobs on a trace; pick the cheapest within a timed-out target.
    Tune(tune::TuneArgs),
    /// Bring the database schema up to date (also done by every command that uses it).
    Migrate(database::DbArgs),
    /// Manage fleets.
    Fleet {
        #[command(subcommand)]
        command: fleet::FleetCommand,
    },
    /// GPU profiles (what one GPU does in tokens/s, and its price): derive one from vLLM
    /// benchmark results, list, store for the service, delete.
    Profile {
        #[command(subcommand)]
        command: profile::ProfileCommand,
    },
    /// Manage API tokens: create (with scopes), list, revoke.
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// Load a trace file (CSV or Parquet) into a fleet's history, with COPY; idempotent.
    Import(import::ImportArgs),
    /// Refit a fleet's forecast now (as the service's scheduled refit does) and say what it did.
    Refit(refit::RefitArgs),
    /// Check a provisioner's web hook against prewarm's contract: signed orders, repeats under
    /// one key, bad and stale signatures, and (with --callback-listen) its signed callbacks.
    ProvisionerCheck(provisioner_check::CheckArgs),
    /// Fold raw samples older than --keep-raw into hourly sums (run it daily, e.g. from cron).
    Retention(retention::RetentionArgs),
    /// Read a fleet's request rate from Prometheus (query_range) into its history.
    Pull(pull::PullArgs),
    /// Run the service: scheduled refits and planning ticks, order delivery, callbacks, push
    /// and operator API.
    Serve(serve::ServeArgs),
    /// Run the reference provisioner: accepts signed orders once each, boots, calls back.
    FakeCloud(fake_cloud::FakeCloudArgs),
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
    Ingest(bench_ingest::BenchIngestArgs),
    /// Planning tick time for many fleets and replicas, and refit time, on a scratch database.
    Service(bench_service::BenchServiceArgs),
    /// Time of a 4-week replay with hourly refits, of each decision and of each refit.
    Planner(bench_planner::BenchPlannerArgs),
}

/// Other names of a setting's environment variable, still read: (the other name, the project's
/// name, whether the other name is deprecated). One name per setting across commands is the
/// project's (`PREWARM_<SECTION>__<KEY>`, as `serve` reads its configuration).
const ENV_ALIASES: &[(&str, &str, bool)] = &[
    // The conventional name of a PostgreSQL URL: read, not deprecated.
    ("DATABASE_URL", "PREWARM_DATABASE__URL", false),
    (
        "PREWARM_WEBHOOK_SECRET",
        "PREWARM_PROVISIONER__SECRET",
        true,
    ),
];

/// Sets each project name from its other name when only the other is set; the deprecated ones
/// are returned to be warned about once logging is up.
fn read_env_aliases() -> Vec<(&'static str, &'static str)> {
    // `serve` reads its configuration file first and `PREWARM_*` over it, with `DATABASE_URL`
    // only when neither sets the URL: promoting `DATABASE_URL` would override its file.
    let serving = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .is_some_and(|c| c == "serve");
    let mut deprecated = Vec::new();
    for &(other, ours, old) in ENV_ALIASES {
        if serving && other == "DATABASE_URL" {
            continue;
        }
        if std::env::var_os(ours).is_none() {
            if let Some(value) = std::env::var_os(other) {
                std::env::set_var(ours, value);
                if old {
                    deprecated.push((other, ours));
                }
            }
        }
    }
    deprecated
}

fn main() {
    let deprecated = read_env_aliases();
    let cli = Cli::parse();
    logging::init(cli.verbose, cli.quiet);
    for (old, new) in deprecated {
        eprintln!("warning: {old} is deprecated: set {new} instead (read this time)");
    }
    let result = match cli.command {
        Command::Trace { command } => trace::run(&command),
        #[cfg(feature = "analysis")]
        Command::Backtest(args) => backtest::run(&args),
        Command::Simulate(args) => simulate::run(&args),
        Command::Tune(args) => tune::run(&args),
        Command::Migrate(args) => migrate::run(&args),
        Command::Fleet { command } => fleet::run(&command),
        Command::Token { command } => token::run(&command),
        Command::Profile { command } => profile::run(&command),
        Command::Refit(args) => refit::run(&args),
        Command::ProvisionerCheck(args) => provisioner_check::run(&args),
        Command::Import(args) => import::run(&args),
        Command::Retention(args) => retention::run(&args),
        Command::Pull(args) => pull::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::FakeCloud(args) => fake_cloud::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Bench {
            command: BenchCommand::Ingest(args),
        } => bench_ingest::run(&args),
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command};

    #[test]
    fn every_command_s_flags_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn typed_flags_parse_once_and_verbosity_is_global() {
        let cli = Cli::try_parse_from([
            "prewarm",
            "simulate",
            "-vv",
            "--boot",
            "6m",
            "--policies",
            "reactive,static",
        ])
        .unwrap();
        assert_eq!(cli.verbose, 2);
        let Command::Simulate(args) = cli.command else {
            panic!("not simulate")
        };
        assert_eq!(args.replay.boot.0, 360);
        assert_eq!(args.policies.len(), 2);
        let e = Cli::try_parse_from(["prewarm", "simulate", "--boot", "soon"]).unwrap_err();
        assert!(e.to_string().contains("--boot"), "{e}");
    }
}
