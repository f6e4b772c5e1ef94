//! `prewarm trace import`: public traces into the project's trace format.
//!
//! polars reads the raw files and does the aggregation (sums over ServeGen's client files,
//! request counts and token sums per bucket for Azure); the result is validated by writing it
//! through the project's own trace writer, so an imported fixture always reads back.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context};
use chrono::{DateTime, NaiveDateTime, Utc};
use clap::{Args, ValueEnum};
use polars::prelude::{
    col, concat, len, Column, CsvReadOptions, DataFrame, DataType, IntoLazy, SerReader,
    SortMultipleOptions, UnionArgs,
};
use prewarm_core::{parse_duration, write_trace, Trace};

/// Raw trace formats `prewarm trace import` understands.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    /// NAB: CSV `timestamp,value`, naive UTC timestamps at a fixed interval.
    Nab,
    /// ServeGen: one header-less CSV per client, `ts_s,rate_rps,...`; summed over all files.
    Servegen,
    /// Azure LLM inference trace: one row per request, `TIMESTAMP,ContextTokens,GeneratedTokens`.
    Azure,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// Format of the input files.
    #[arg(long, value_enum)]
    format: Format,
    /// Input files (ServeGen: every client file of one model, or the folder holding them).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Where to write the trace (CSV).
    #[arg(long, short)]
    out: PathBuf,
    /// Bucket width for per-request traces (azure), e.g. 1m or 10s.
    #[arg(long, default_value = "1m")]
    bucket: String,
    /// Start time of ServeGen traces, whose timestamps are seconds from an unstated start.
    #[arg(long, default_value = "2025-01-06T00:00:00Z")]
    start: String,
}

pub(crate) fn run(args: &ImportArgs) -> anyhow::Result<()> {
    let trace = match args.format {
        Format::Nab => import_nab(single(&args.inputs)?)?,
        Format::Servegen => {
            let start: DateTime<Utc> = args
                .start
                .parse()
                .with_context(|| format!("--start `{}` is not an RFC 3339 time", args.start))?;
            import_servegen(&expand_dirs(&args.inputs)?, start)?
        }
        Format::Azure => {
            let bucket = parse_duration(&args.bucket).map_err(anyhow::Error::msg)?;
            import_azure(single(&args.inputs)?, bucket)?
        }
    };
    write_trace(&trace, &args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "{}",
        crate::output::describe(&trace, &args.out.display().to_string())
    );
    Ok(())
}

fn single(inputs: &[PathBuf]) -> anyhow::Result<&Path> {
    ensure!(
        inputs.len() == 1,
        "this format takes exactly one input file, got {}",
        inputs.len()
    );
    Ok(&inputs[0])
}

fn expand_dirs(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("cannot list {}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "csv"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    ensure!(!files.is_empty(), "no CSV files found in {:?}", inputs);
    Ok(files)
}

fn read_csv(path: &Path, has_header: bool) -> anyhow::Result<DataFrame> {
    CsvReadOptions::default()
        .with_has_header(has_header)
        .with_infer_schema_length(None)
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .and_then(|r| r.finish())
        .with_context(|| format!("{}: cannot read as CSV", path.display()))
}

fn f64_column(df: &DataFrame, name: &str, path: &Path) -> anyhow::Result<Vec<f64>> {
    let column = df
        .column(name)
        .with_context(|| format!("{}: no column `{name}`", path.display()))?
        .cast(&DataType::Float64)
        .with_context(|| format!("{}: column `{name}` is not numeric", path.display()))?;
    Ok(column
        .f64()?
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect())
}

fn str_column(df: &DataFrame, name: &str, path: &Path) -> anyhow::Result<Vec<String>> {
    let column = df
        .column(name)
        .with_context(|| format!("{}: no column `{name}`", path.display()))?
        .cast(&DataType::String)?;
    Ok(column
        .str()?
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect())
}

fn parse_naive_utc(text: &str, path: &Path, row: usize) -> anyhow::Result<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S%.f")
        .map(|t| t.and_utc())
        .with_context(|| {
            format!(
                "{}: line {}: `{text}` is not a `YYYY-MM-DD HH:MM:SS` timestamp",
                path.display(),
                row + 2
            )
        })
}

/// Places (time, value) pairs sorted by time on a grid of `step_secs` from the first time.
fn to_grid(times: &[DateTime<Utc>], values: &[f64], step_secs: i64) -> anyhow::Result<Trace> {
    let start = times[0];
    let last = times[times.len() - 1];
    let len = ((last - start).num_seconds() / step_secs) as usize + 1;
    let mut requests = vec![f64::NAN; len];
    for (t, v) in times.iter().zip(values) {
        let offset = (*t - start).num_seconds();
        ensure!(
            offset % step_secs == 0,
            "timestamp {t} is not on the {step_secs} s grid that starts at {start}"
        );
        requests[(offset / step_secs) as usize] = *v;
    }
    Ok(Trace::new(start, step_secs, requests))
}

fn import_nab(path: &Path) -> anyhow::Result<Trace> {
    let df = read_csv(path, true)?
        .lazy()
        .sort(["timestamp"], SortMultipleOptions::default())
        .collect()?;
    let stamps = str_column(&df, "timestamp", path)?;
    let values = f64_column(&df, "value", path)?;
    ensure!(stamps.len() >= 2, "{}: fewer than two rows", path.display());
    let times = stamps
        .iter()
        .enumerate()
        .map(|(i, s)| parse_naive_utc(s, path, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let step = times
        .windows(2)
        .map(|w| (w[1] - w[0]).num_seconds())
        .filter(|d| *d > 0)
        .min()
        .context("all timestamps are equal")?;
    to_grid(&times, &values, step)
}

fn import_servegen(files: &[PathBuf], start: DateTime<Utc>) -> anyhow::Result<Trace> {
    let mut frames = Vec::with_capacity(files.len());
    for path in files {
        let df = read_csv(path, false)?;
        ensure!(
            df.width() >= 2,
            "{}: expected ServeGen columns ts_s,rate_rps,...",
            path.display()
        );
        frames.push(df.lazy().select([
            col("column_1").cast(DataType::Int64).alias("ts_s"),
            col("column_2").cast(DataType::Float64).alias("rate_rps"),
        ]));
    }
    let total = concat(frames, UnionArgs::default())?
        .group_by([col("ts_s")])
        .agg([col("rate_rps").sum()])
        .sort(["ts_s"], SortMultipleOptions::default())
        .collect()?;
    let ts: Vec<i64> = total
        .column("ts_s")?
        .i64()?
        .iter()
        .map(|v| v.unwrap_or(0))
        .collect();
    let rate = f64_column(&total, "rate_rps", Path::new("servegen"))?;
    ensure!(
        ts.len() >= 2,
        "fewer than two time windows in the ServeGen files"
    );
    let step = ts.windows(2).map(|w| w[1] - w[0]).min().unwrap_or(600);
    ensure!(step > 0, "ServeGen windows must be increasing");
    let times: Vec<DateTime<Utc>> = ts
        .iter()
        .map(|s| start + chrono::Duration::seconds(*s))
        .collect();
    // rate_rps is a mean rate over the window: requests in the window = rate x width.
    let counts: Vec<f64> = rate.iter().map(|r| r * step as f64).collect();
    to_grid(&times, &counts, step)
}

fn import_azure(path: &Path, bucket_secs: i64) -> anyhow::Result<Trace> {
    let df = read_csv(path, true)?;
    let stamps = str_column(&df, "TIMESTAMP", path)?;
    ensure!(!stamps.is_empty(), "{}: no requests", path.display());
    let mut millis = Vec::with_capacity(stamps.len());
    for (i, s) in stamps.iter().enumerate() {
        millis.push(parse_naive_utc(s, path, i)?.timestamp_millis());
    }
    let bucket_ms = bucket_secs * 1000;
    let first = millis
        .iter()
        .min()
        .copied()
        .unwrap_or(0)
        .div_euclid(bucket_ms)
        * bucket_ms;
    let buckets: Vec<i64> = millis
        .iter()
        .map(|m| (m - first).div_euclid(bucket_ms))
        .collect();
    for name in ["ContextTokens", "GeneratedTokens"] {
        if f64_column(&df, name, path)?
            .iter()
            .any(|v| v.is_nan() || *v < 0.0)
        {
            bail!(
                "{}: column `{name}` has missing or negative values",
                path.display()
            );
        }
    }
    let mut df = df;
    df.with_column(Column::new("bucket".into(), buckets))?;
    let per_bucket = df
        .lazy()
        .group_by([col("bucket")])
        .agg([
            len().cast(DataType::Float64).alias("requests"),
            col("ContextTokens")
                .cast(DataType::Float64)
                .sum()
                .alias("tokens_in"),
            col("GeneratedTokens")
                .cast(DataType::Float64)
                .sum()
                .alias("tokens_out"),
        ])
        .sort(["bucket"], SortMultipleOptions::default())
        .collect()?;
    let index: Vec<i64> = per_bucket
        .column("bucket")?
        .i64()?
        .iter()
        .map(|v| v.unwrap_or(0))
        .collect();
    let len = index.last().copied().unwrap_or(0) as usize + 1;
    // A bucket with no request is a real zero here, not a missing value.
    let mut columns = Vec::new();
    for name in ["requests", "tokens_in", "tokens_out"] {
        let mut full = vec![0.0; len];
        for (i, v) in index.iter().zip(f64_column(&per_bucket, name, path)?) {
            full[*i as usize] = v;
        }
        columns.push(full);
    }
    let start = DateTime::<Utc>::from_timestamp_millis(first).context("timestamp out of range")?;
    let tokens_out = columns.pop().unwrap_or_default();
    let tokens_in = columns.pop().unwrap_or_default();
    let mut trace = Trace::new(start, bucket_secs, columns.pop().unwrap_or_default());
    trace.extra = vec![
        ("tokens_in".into(), tokens_in),
        ("tokens_out".into(), tokens_out),
    ];
    Ok(trace)
}
