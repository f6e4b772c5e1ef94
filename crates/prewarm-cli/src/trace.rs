//! `prewarm trace`: convert public traces, check a trace file, write synthetic traces.

use std::path::PathBuf;

use clap::Subcommand;

use crate::output;

#[derive(Debug, Subcommand)]
pub(crate) enum TraceCommand {
    /// Convert a public trace into the project's trace format (`timestamp,requests,...`).
    #[cfg(feature = "analysis")]
    Import(crate::trace_import::ImportArgs),
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
pub(crate) struct SynthArgs {
    /// `office` (a weekday 09:30 rush and 14:00 peak, quiet nights and weekends), `bursts` (a
    /// daily base plus clients firing at :00 and :30 past the hour every 1.5 to 2.5 hours),
    /// `sparse` (a low base with heavy-tailed bursts at random moments, shorter than a boot),
    /// `drift` (a daily rush that comes 4 minutes later each day) or `daily` (an hour at the
    /// peak from `--rush-at` every day, a sixth of it otherwise).
    #[arg(long, default_value = "office")]
    shape: prewarm_core::synth::Shape,
    /// First bucket (RFC 3339).
    #[arg(long, default_value = "2026-02-15T05:00:00Z", conflicts_with = "end")]
    start: chrono::DateTime<chrono::Utc>,
    /// Instead of --start: when the last bucket ends (RFC 3339, or `now`, rounded down to the
    /// bucket width).
    #[arg(long)]
    end: Option<String>,
    /// `daily`: when the rush starts on the local clock (HH:MM).
    #[arg(long, default_value = "09:00", conflicts_with = "rush_in")]
    rush_at: String,
    /// `daily`: the rush starts this long after the trace's end (the next rise a fleet
    /// importing the trace now must pre-warm for).
    #[arg(long)]
    rush_in: Option<prewarm_core::Span>,
    /// Days to generate.
    #[arg(long, default_value_t = 42)]
    days: u32,
    /// Bucket width.
    #[arg(long, default_value = "1m")]
    step: prewarm_core::Span,
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

pub(crate) fn run(command: &TraceCommand) -> anyhow::Result<()> {
    match command {
        #[cfg(feature = "analysis")]
        TraceCommand::Import(args) => crate::trace_import::run(args),
        TraceCommand::Check { trace } => check(trace),
        TraceCommand::Synth(args) => synth(args),
    }
}

fn synth(args: &SynthArgs) -> anyhow::Result<()> {
    let step = args.step.0;
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
    let start = match args.end.as_deref() {
        None => args.start,
        Some(end) => {
            let end = if end == "now" {
                chrono::Utc::now()
            } else {
                end.parse::<chrono::DateTime<chrono::Utc>>().map_err(|e| {
                    anyhow::anyhow!("--end `{end}` is not `now` or an RFC 3339 time: {e}")
                })?
            };
            let end = chrono::DateTime::from_timestamp(end.timestamp().div_euclid(step) * step, 0)
                .unwrap_or(end);
            end - chrono::Duration::days(args.days as i64)
        }
    };
    let end = start + chrono::Duration::days(args.days as i64);
    let rush_at = match args.rush_in {
        Some(after) => (end + chrono::Duration::seconds(after.0))
            .with_timezone(&tz)
            .time(),
        None => chrono::NaiveTime::parse_from_str(&args.rush_at, "%H:%M").map_err(|_| {
            anyhow::anyhow!("--rush-at `{}` is not a time such as 09:00", args.rush_at)
        })?,
    };
    let trace = prewarm_core::synth::synthesize(&prewarm_core::synth::SynthSpec {
        shape: args.shape,
        start,
        rush_at,
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
