//! `prewarm`: the command line of the predictive GPU autoscaler.
//!
//! Everything here works on files, with no server: converting public traces into the project's
//! trace format, and backtesting forecasts on a trace.

mod backtest;
mod import;
mod output;
mod plot;

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
    Backtest(backtest::BacktestArgs),
}

#[derive(Debug, Subcommand)]
enum TraceCommand {
    /// Convert a public trace into the project's trace format (`timestamp,requests,...`).
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
        Command::Trace {
            command: TraceCommand::Import(args),
        } => import::run(&args),
        Command::Trace {
            command: TraceCommand::Check { trace },
        } => check(&trace),
        Command::Backtest(args) => backtest::run(&args),
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
