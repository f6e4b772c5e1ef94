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
    /// ServeGen: requests only, every client, ignoring the clients' token distributions
    /// (`chunk-N-dataset.json`). Without it, a folder that has them gives tokens_in and
    /// tokens_out columns, from the clients that have them.
    #[arg(long)]
    no_tokens: bool,
}

pub(crate) fn run(args: &ImportArgs) -> anyhow::Result<()> {
    let trace = match args.format {
        Format::Nab => import_nab(single(&args.inputs)?)?,
        Format::Servegen => {
            let start: DateTime<Utc> = args
                .start
                .parse()
                .with_context(|| format!("--start `{}` is not an RFC 3339 time", args.start))?;
            let files = expand_dirs(&args.inputs)?;
            let with_tokens = !args.no_tokens && files.iter().any(|f| dataset_of(f).is_file());
            if with_tokens {
                import_servegen_tokens(&files, start)?
            } else {
                import_servegen(&files, start)?
            }
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

/// The token distributions file beside a ServeGen client's trace (`chunk-N-trace.csv` ->
/// `chunk-N-dataset.json`).
fn dataset_of(trace: &Path) -> PathBuf {
    let name = trace
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .replace("-trace.csv", "-dataset.json");
    trace.with_file_name(name)
}

/// The mean of a ServeGen length distribution written as `"{length: probability, ...}"` (`None`
/// for `"{}"`, a window the client sent nothing in). Errors name what is wrong.
fn mean_length(text: &str) -> Result<Option<f64>, String> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| {
            format!(
                "`{}` is not a {{length: probability}} map",
                prewarm_core::shorten(text, 60)
            )
        })?;
    let (mut weighted, mut total) = (0.0, 0.0);
    for pair in inner.split(',').filter(|p| !p.trim().is_empty()) {
        let (len, prob) = pair.split_once(':').ok_or_else(|| {
            format!(
                "`{}` is not `length: probability`",
                prewarm_core::shorten(pair.trim(), 60)
            )
        })?;
        let len: f64 = len.trim().parse().map_err(|_| {
            format!(
                "length `{}` is not a number",
                prewarm_core::shorten(len.trim(), 40)
            )
        })?;
        let prob: f64 = prob.trim().parse().map_err(|_| {
            format!(
                "probability `{}` is not a number",
                prewarm_core::shorten(prob.trim(), 40)
            )
        })?;
        if !(len.is_finite() && len >= 0.0 && prob.is_finite() && prob >= 0.0) {
            return Err(format!(
                "length {len} with probability {prob} is not a length distribution"
            ));
        }
        weighted += len * prob;
        total += prob;
    }
    Ok((total > 0.0).then(|| weighted / total))
}

/// A client's mean prompt and output lengths per window start (seconds from the trace's start),
/// and the window's width.
type ClientLengths = (std::collections::BTreeMap<i64, (f64, f64)>, i64);

fn read_lengths(path: &Path) -> anyhow::Result<ClientLengths> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let windows = json.as_object().with_context(|| {
        format!(
            "{}: expected an object of windows keyed by their start in seconds",
            path.display()
        )
    })?;
    let mut out = std::collections::BTreeMap::new();
    for (key, value) in windows {
        let start: i64 = key.parse().with_context(|| {
            format!(
                "{}: window key `{}` is not seconds from the start",
                path.display(),
                prewarm_core::shorten(key, 40)
            )
        })?;
        let field = |name: &str| -> anyhow::Result<Option<f64>> {
            let text = value.get(name).and_then(|v| v.as_str()).with_context(|| {
                format!("{}: window {key} has no `{name}` string", path.display())
            })?;
            mean_length(text)
                .map_err(|e| anyhow::anyhow!("{}: window {key}: `{name}`: {e}", path.display()))
        };
        if let (Some(i), Some(o)) = (field("input_tokens")?, field("output_tokens")?) {
            out.insert(start, (i, o));
        }
    }
    let keys: Vec<i64> = out.keys().copied().collect();
    let width = keys
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|d| *d > 0)
        .min()
        .unwrap_or(21_600);
    Ok((out, width))
}

/// ServeGen with tokens: each client that has a token distributions file adds its requests
/// (mean rate x window) and tokens (requests x the mean prompt and output lengths of the
/// client's distribution window holding the bucket; a window it sent nothing in takes the
/// client's nearest earlier window, else its first) per bucket. Clients without one are left
/// out, and said so: their requests have no tokens to count.
fn import_servegen_tokens(files: &[PathBuf], start: DateTime<Utc>) -> anyhow::Result<Trace> {
    use std::collections::BTreeMap;
    let mut sums: BTreeMap<i64, (f64, f64, f64)> = BTreeMap::new();
    let (mut kept, mut left_out, mut left_requests, mut kept_requests) = (0, Vec::new(), 0.0, 0.0);
    for path in files {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_path(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut rows: Vec<(i64, f64)> = Vec::new();
        for (line, record) in reader.records().enumerate() {
            let record =
                record.with_context(|| format!("{}: line {}", path.display(), line + 1))?;
            let ts: i64 = record
                .get(0)
                .and_then(|v| v.trim().parse().ok())
                .with_context(|| {
                    format!(
                        "{}: line {}: expected ServeGen columns ts_s,rate_rps,...",
                        path.display(),
                        line + 1
                    )
                })?;
            let rate: f64 = record
                .get(1)
                .and_then(|v| v.trim().parse().ok())
                .filter(|r: &f64| r.is_finite() && *r >= 0.0)
                .with_context(|| {
                    format!(
                        "{}: line {}: rate_rps is not a rate of zero or more",
                        path.display(),
                        line + 1
                    )
                })?;
            rows.push((ts, rate));
        }
        let step = rows
            .windows(2)
            .map(|w| w[1].0 - w[0].0)
            .filter(|d| *d > 0)
            .min()
            .unwrap_or(600);
        let total: f64 = rows.iter().map(|r| r.1 * step as f64).sum();
        let dataset = dataset_of(path);
        if !dataset.is_file() {
            left_out.push(
                path.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string(),
            );
            left_requests += total;
            continue;
        }
        let (lengths, width) = read_lengths(&dataset)?;
        if lengths.is_empty() {
            ensure!(
                total == 0.0,
                "{}: the client sent requests but every token distribution is empty",
                dataset.display()
            );
            continue;
        }
        kept += 1;
        kept_requests += total;
        for (ts, rate) in rows {
            let window = ts.div_euclid(width) * width;
            let (i, o) = lengths
                .range(..=window)
                .next_back()
                .or_else(|| lengths.iter().next())
                .map(|(_, v)| *v)
                .unwrap_or((0.0, 0.0));
            let requests = rate * step as f64;
            let e = sums.entry(ts).or_insert((0.0, 0.0, 0.0));
            e.0 += requests;
            e.1 += requests * i;
            e.2 += requests * o;
        }
    }
    ensure!(kept > 0, "no ServeGen client file has a token distributions file beside it (chunk-N-dataset.json); import with --no-tokens for requests only");
    if !left_out.is_empty() {
        eprintln!(
            "{} client(s) without token distributions left out ({}: {:.1}% of the requests); --no-tokens keeps every client's requests, without tokens",
            left_out.len(),
            left_out.join(", "),
            100.0 * left_requests / (left_requests + kept_requests).max(1e-9)
        );
    }
    ensure!(
        sums.len() >= 2,
        "fewer than two time windows in the ServeGen files"
    );
    let ts: Vec<i64> = sums.keys().copied().collect();
    let step = ts.windows(2).map(|w| w[1] - w[0]).min().unwrap_or(600);
    ensure!(step > 0, "ServeGen windows must be increasing");
    let times: Vec<DateTime<Utc>> = ts
        .iter()
        .map(|s| start + chrono::Duration::seconds(*s))
        .collect();
    let column = |k: usize| -> Vec<f64> { sums.values().map(|v| [v.0, v.1, v.2][k]).collect() };
    let mut trace = to_grid(&times, &column(0), step)?;
    let tokens_in = to_grid(&times, &column(1), step)?.requests;
    let tokens_out = to_grid(&times, &column(2), step)?.requests;
    trace.extra = vec![
        ("tokens_in".into(), tokens_in),
        ("tokens_out".into(), tokens_out),
    ];
    Ok(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_length_distribution_gives_its_mean_and_bad_ones_say_why() {
        assert_eq!(mean_length("{}"), Ok(None));
        let m = mean_length("{100: 0.5, 300: 0.5}").unwrap().unwrap();
        assert!((m - 200.0).abs() < 1e-9);
        // Probabilities that do not add up to one are normalised.
        let m = mean_length("{10: 2, 20: 2}").unwrap().unwrap();
        assert!((m - 15.0).abs() < 1e-9);
        assert!(mean_length("[1, 2]").unwrap_err().contains("map"));
        assert!(mean_length("{ten: 0.5}")
            .unwrap_err()
            .contains("not a number"));
        assert!(mean_length("{10: -1}")
            .unwrap_err()
            .contains("not a length distribution"));
    }
}
