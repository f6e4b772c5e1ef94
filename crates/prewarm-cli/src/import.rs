//! `prewarm import`: load a trace file (CSV or Parquet) into a fleet's history with COPY.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

#[cfg(feature = "analysis")]
use anyhow::Context;
use clap::Args;
#[cfg(feature = "analysis")]
use polars::prelude::{col, DataType, IntoLazy, ParquetReader, SerReader, SerWriter, TimeUnit};
use prewarm_core::{read_trace, Trace};
use prewarm_store::fleet_by_name;

use crate::database::{connect, runtime, DbArgs};

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
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
pub(crate) fn shift_to(trace: &mut Trace, now: chrono::DateTime<chrono::Utc>) {
    let step = trace.step_secs.max(1);
    let end = trace.timestamp(trace.len());
    let target =
        chrono::DateTime::from_timestamp(now.timestamp().div_euclid(step) * step, 0).unwrap_or(now);
    trace.start += target - end;
}

pub(crate) fn run(args: &ImportArgs) -> anyhow::Result<()> {
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
