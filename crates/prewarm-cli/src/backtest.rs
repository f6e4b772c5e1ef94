//! `prewarm backtest`: how good are the forecasts on a trace?
//!
//! The forecasting crate runs the rolling-origin backtest; this command loads the trace,
//! optionally resamples it (polars), aggregates the per-origin scores per model (polars), prints
//! the table and writes the per-origin forecasts, a JSON summary and a plot.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context};
use chrono_tz::Tz;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use polars::prelude::{col, len, lit, Column, DataFrame, DataType, IntoLazy, SortMultipleOptions};
use prewarm_core::{format_duration, Span, SpanOrZero, Trace};
use prewarm_forecast::{
    backtest::{self, BacktestConfig, BacktestResult},
    ModelKind, ModelSettings, OutlierSettings, Transform,
};
use serde::Serialize;

#[derive(Debug, Args)]
pub(crate) struct BacktestArgs {
    /// Trace in the project's format; without it, the bundled NAB ELB fixture.
    trace: Option<PathBuf>,
    /// IANA time zone whose wall clock the seasons follow (e.g. Europe/Berlin).
    #[arg(long, env = "PREWARM_TZ")]
    tz: Option<String>,
    /// How far ahead each forecast reaches.
    #[arg(long, default_value = "60m")]
    horizon: Span,
    /// Time between two forecast origins.
    #[arg(long, default_value = "1h")]
    every: Span,
    /// Most history each fit may use.
    #[arg(long, default_value = "21d")]
    train: Span,
    /// Length of the scored span at the end of the trace (origins every --every within it).
    #[arg(long, default_value = "3d", conflicts_with = "origins")]
    test: Span,
    /// Number of origins, --every apart, the last one ending at the last point.
    #[arg(long)]
    origins: Option<usize>,
    /// Upper quantile of the band (0.5 to 0.99).
    #[arg(long, default_value_t = 0.9)]
    quantile: f64,
    /// Models to compare, comma-separated: mstl, ets, snaive-week, snaive-day, naive.
    #[arg(
        long,
        default_value = "mstl,ets,snaive-week,snaive-day,naive",
        value_delimiter = ','
    )]
    models: Vec<ModelKind>,
    /// Origins before the first scored one whose errors only calibrate the band (a count; in
    /// `simulate`, `--warmup` is a duration of unscored history).
    #[arg(long, default_value_t = 24)]
    calibration_origins: usize,
    /// Transform before fitting: none, log, or boxcox:LAMBDA.
    #[arg(long, default_value = "none")]
    transform: Transform,
    /// Keep outliers instead of replacing them before fitting.
    #[arg(long)]
    keep_outliers: bool,
    /// Most points the MSTL trend's ETS is fitted on (a longer window is block-averaged; 0 = never).
    #[arg(long, default_value_t = ModelSettings::default().trend_max_points)]
    trend_points: usize,
    /// Days at the end of the history the MSTL trend is fitted on (0 = all of it).
    #[arg(long, default_value_t = ModelSettings::default().trend_days)]
    trend_days: usize,
    /// Only additive errors for the MSTL trend's ETS (as the fits that bootstrap a new fleet).
    #[arg(long)]
    trend_additive: bool,
    /// Only a damped additive trend for the MSTL trend's ETS, one candidate instead of a search
    /// (as the fits that bootstrap a new fleet).
    #[arg(long)]
    trend_damped: bool,
    /// The MSTL trend is a damped additive Holt smoother with its weights chosen on a grid, not
    /// an ETS search (as the fits that bootstrap a new fleet; the two flags above are ignored).
    #[arg(long)]
    trend_grid: bool,
    /// STL's inner loops per season, at least 1 (every fit makes 2, STL's default).
    #[arg(long, default_value_t = ModelSettings::default().stl_inner_loops,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    stl_inner_loops: usize,
    /// MSTL's passes over a daily and a weekly season, at least 1 (every fit makes 2, MSTL's
    /// default).
    #[arg(long, default_value_t = ModelSettings::default().mstl_iterations,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    mstl_iterations: usize,
    /// Fits reuse the seasons an earlier origin's fit decomposed for this long, fitting the trend
    /// alone in between, as the fits that bootstrap a new fleet do (6h); 0: every fit decomposes
    /// its own history.
    #[arg(long, default_value = "0")]
    reseason: SpanOrZero,
    /// The same for fits with the weekly season (the bootstrap's: 24h); by default as
    /// `--reseason`.
    #[arg(long)]
    reseason_weekly: Option<SpanOrZero>,
    /// Sum the trace into coarser buckets first (e.g. 10m).
    #[arg(long)]
    resample: Option<Span>,
    /// Folder for forecasts.csv, summary.json, plot.svg and report.html.
    #[arg(long)]
    out: Option<PathBuf>,
    /// What to forecast: `requests`, or `work` (the GPU-seconds of a token trace's prompt and
    /// output tokens, what a token fleet plans on; with it, the alternative of forecasting
    /// requests and scaling them by the last week's work per request is scored too). Default:
    /// work on a trace with tokens_in and tokens_out, requests otherwise.
    #[arg(long, value_enum)]
    series: Option<Series>,
    /// Prompt tokens one GPU prefills per second (with --decode-tps), for --series work.
    #[arg(long, requires = "decode_tps", conflicts_with = "gpu_profile")]
    prefill_tps: Option<f64>,
    /// Output tokens one GPU decodes per second (with --prefill-tps), for --series work.
    #[arg(long, requires = "prefill_tps", conflicts_with = "gpu_profile")]
    decode_tps: Option<f64>,
    /// A GPU profile (a bundled name, a profiles file or FILE:NAME; the first is used) whose
    /// rates weigh the tokens, for --series work. Default: the bundled profile's.
    #[arg(long)]
    gpu_profile: Option<String>,
}

/// The series a backtest forecasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Series {
    /// Requests per bucket.
    Requests,
    /// GPU-seconds of work per bucket (prompt tokens over the prefill rate plus output tokens
    /// over the decode rate).
    Work,
}

/// One model's row of the summary table.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ModelSummary {
    pub model: String,
    pub fitted: String,
    pub origins: usize,
    pub mase: f64,
    pub smape_percent: f64,
    pub pinball: f64,
    pub coverage: f64,
    pub mean_fit_ms: f64,
    pub outliers_replaced_per_fit: f64,
    pub skipped_origins: usize,
}

#[derive(Debug, Serialize)]
struct Summary<'a> {
    trace: &'a str,
    step: String,
    tz: Option<String>,
    horizon: String,
    every: String,
    train: String,
    quantile: f64,
    origins: usize,
    first_origin: String,
    last_origin: String,
    calibration: Option<&'a CalibrationReport>,
    models: &'a [ModelSummary],
}

fn duration_in_steps(span: Span, what: &str, step_secs: i64) -> anyhow::Result<usize> {
    let secs = span.0;
    ensure!(
        secs % step_secs == 0,
        "--{what} {span} is not a whole number of the trace's {} buckets",
        format_duration(step_secs)
    );
    Ok((secs / step_secs) as usize)
}

/// The token rates `--series work` weighs tokens with.
fn work_rates(args: &BacktestArgs) -> anyhow::Result<prewarm_planner::TokenRates> {
    if let (Some(p), Some(d)) = (args.prefill_tps, args.decode_tps) {
        let rates = prewarm_planner::TokenRates {
            prefill_tps: p,
            decode_tps: d,
        };
        rates
            .check()
            .map_err(|e| anyhow::anyhow!("--{}", e.replace('_', "-")))?;
        return Ok(rates);
    }
    let profile = match &args.gpu_profile {
        Some(spec) => crate::profile::resolve(spec)?.remove(0),
        None => crate::profile::bundled_default(),
    };
    Ok(profile.rates())
}

/// `trace` with its requests replaced by each bucket's work under `rates` (NaN where a token
/// count is missing).
fn work_trace(trace: &Trace, rates: &prewarm_planner::TokenRates) -> anyhow::Result<Trace> {
    let (Some(tin), Some(tout)) = (trace.column("tokens_in"), trace.column("tokens_out")) else {
        anyhow::bail!(
            "--series work needs a trace with tokens_in and tokens_out columns; this one has requests only"
        );
    };
    let mut work = trace.clone();
    work.requests = tin
        .iter()
        .zip(tout)
        .map(|(i, o)| rates.gpu_secs(*i, *o))
        .collect();
    work.extra.clear();
    Ok(work)
}

pub(crate) fn run(args: &BacktestArgs) -> anyhow::Result<()> {
    let (trace, name) = crate::output::load_trace(args.trace.as_deref())?;
    let has_tokens = trace.column("tokens_in").is_some() && trace.column("tokens_out").is_some();
    let series = args.series.unwrap_or(if has_tokens {
        Series::Work
    } else {
        Series::Requests
    });
    // With work: the request trace is kept for the alternative (requests x the trailing mix).
    let (trace, requests_trace) = match series {
        Series::Requests => (trace, None),
        Series::Work => {
            let rates = work_rates(args)?;
            println!(
                "forecasting work: GPU-seconds of prompt tokens at {:.0}/s and output tokens at {:.0}/s per bucket",
                rates.prefill_tps, rates.decode_tps
            );
            (work_trace(&trace, &rates)?, Some(trace))
        }
    };
    // Resampling sums each series (the work, and the requests the alternative forecasts).
    let (trace, requests_trace) = match args.resample {
        Some(Span(secs)) => (
            resample_sum(&trace, secs)?,
            requests_trace.map(|r| resample_sum(&r, secs)).transpose()?,
        ),
        None => (trace, requests_trace),
    };
    let tz: Option<Tz> = args
        .tz
        .as_deref()
        .map(|t| {
            t.parse().map_err(|_| {
                anyhow::anyhow!("--tz `{t}` is not an IANA time zone such as Europe/Berlin")
            })
        })
        .transpose()?;
    let models = args.models.clone();
    ensure!(!models.is_empty(), "--models: name at least one model");
    let step = trace.step_secs;
    let horizon = duration_in_steps(args.horizon, "horizon", step)?;
    let every = duration_in_steps(args.every, "every", step)?;
    let train = duration_in_steps(args.train, "train", step)?;
    ensure!(
        horizon > 0 && every > 0,
        "--horizon and --every must be at least one bucket"
    );
    let count = match args.origins {
        Some(n) => n,
        None => duration_in_steps(args.test, "test", step)? / every,
    };
    let origins = backtest::origins_ending_at_last(trace.len(), horizon, every, count.max(1));
    ensure!(
        !origins.is_empty(),
        "the trace ({} buckets) is too short for a {} horizon",
        trace.len(),
        args.horizon
    );
    let cfg = BacktestConfig {
        horizon,
        train,
        quantile: args.quantile,
        models,
        origins,
        warmup: args.calibration_origins,
        warmup_every: every,
        tz,
        transform: args.transform,
        outliers: (!args.keep_outliers).then(OutlierSettings::default),
        settings: ModelSettings {
            trend_max_points: args.trend_points,
            trend_days: args.trend_days,
            trend_additive_errors: args.trend_additive,
            trend_damped_only: args.trend_damped,
            trend_spec: None,
            trend_grid: args.trend_grid,
            stl_inner_loops: args.stl_inner_loops,
            mstl_iterations: args.mstl_iterations,
        },
        reseason_secs: args.reseason.0,
        reseason_weekly_secs: args.reseason_weekly.unwrap_or(args.reseason).0,
    };

    println!(
        "{}",
        crate::output::describe(requests_trace.as_ref().unwrap_or(&trace), &name)
    );
    let bar = ProgressBar::new(backtest::planned_fits(&cfg) as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} fits, {elapsed} ({eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let result = backtest::run(&trace, &cfg, &mut || bar.inc(1))?;
    bar.finish_and_clear();
    if result.forecasts.is_empty() {
        let reason = result
            .skipped
            .first()
            .map(|s| s.reason.as_str())
            .unwrap_or("no origin");
        anyhow::bail!("no model could be fitted at any origin: {reason}");
    }

    let summaries = summarise(&result, &cfg)?;
    println!(
        "{} origins from {} to {}, horizon {}, every {}, band p{:.0}{}",
        cfg.origins.len(),
        trace.timestamp(cfg.origins[0]).to_rfc3339(),
        trace
            .timestamp(*cfg.origins.last().unwrap_or(&0))
            .to_rfc3339(),
        args.horizon,
        args.every,
        cfg.quantile * 100.0,
        tz.map(|t| format!(", seasons on {} time", t.name()))
            .unwrap_or_default(),
    );
    print!("{}", table(&summaries, cfg.quantile));
    if let Some(requests) = &requests_trace {
        let alternative = requests_times_mix(requests, &trace, &cfg, &mut || {})?;
        if !alternative.forecasts.is_empty() {
            let one = BacktestConfig {
                models: vec![cfg.models[0]],
                ..cfg.clone()
            };
            let rows = summarise(&alternative, &one)?;
            println!(
                "the alternative: {} forecasting requests, scaled by the last week's work per request, scored against the work:",
                cfg.models[0].name()
            );
            print!("{}", table(&rows, cfg.quantile));
        }
    }
    let calibration = calibration_report(&trace, &result, cfg.models[0], tz);
    match &calibration {
        Some(c) => print!("{}", c.table()),
        None => println!(
            "calibration of the demand distribution: too few scored days to report (it needs a day of forecasts to calibrate on and a later one to check)"
        ),
    }
    if let Some(f) = result.forecasts.iter().max_by_key(|f| f.origin) {
        if f.outliers_replaced > 0 {
            println!(
                "outliers: {} bucket(s) of the last origin's history replaced before fitting (--keep-outliers keeps them)",
                f.outliers_replaced
            );
        }
    }
    for s in &summaries {
        if s.skipped_origins > 0 {
            let reason = result
                .skipped
                .iter()
                .find(|k| k.model.name() == s.model)
                .map(|k| k.reason.as_str())
                .unwrap_or("");
            println!(
                "note: {} skipped {} origin(s): {reason}",
                s.model, s.skipped_origins
            );
        }
    }

    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        write_forecasts(&dir.join("forecasts.csv"), &trace, &result)?;
        let summary = Summary {
            trace: &name,
            step: format_duration(step),
            tz: tz.map(|t| t.name().to_string()),
            horizon: args.horizon.to_string(),
            every: args.every.to_string(),
            train: args.train.to_string(),
            quantile: cfg.quantile,
            origins: cfg.origins.len(),
            first_origin: trace.timestamp(cfg.origins[0]).to_rfc3339(),
            last_origin: trace
                .timestamp(*cfg.origins.last().unwrap_or(&0))
                .to_rfc3339(),
            models: &summaries,
            calibration: calibration.as_ref(),
        };
        crate::output::write_atomic(
            &dir.join("summary.json"),
            serde_json::to_string_pretty(&summary)?.as_bytes(),
        )?;
        crate::plot::backtest_svg(&dir.join("plot.svg"), &trace, &result, cfg.models[0])?;
        let rows = summaries
            .iter()
            .map(|s| {
                vec![
                    s.model.clone(),
                    s.fitted.clone(),
                    s.origins.to_string(),
                    format!("{:.3}", s.mase),
                    format!("{:.1}", s.smape_percent),
                    format!("{:.2}", s.pinball),
                    format!("{:.3}", s.coverage),
                    format!("{:.1}", s.mean_fit_ms),
                ]
            })
            .collect();
        let first_model: Vec<_> = result
            .forecasts
            .iter()
            .filter(|f| f.model == cfg.models[0])
            .collect();
        crate::report::backtest_report(
            &dir.join("report.html"),
            &trace,
            &first_model,
            (
                &[
                    "model", "fitted", "origins", "MASE", "sMAPE %", "pinball", "coverage",
                    "fit ms",
                ],
                rows,
            ),
            &serde_json::to_value(&summary)?,
            tz,
        )?;
        println!(
            "wrote forecasts.csv, summary.json, plot.svg and report.html to {}",
            dir.display()
        );
    }
    Ok(())
}

/// Sums buckets into coarser ones of `secs`; a coarse bucket with a missing part is missing.
/// The alternative to forecasting work: the first model forecasts requests, and each origin's
/// forecast (median and band) is scaled by the work per request of the week before the origin,
/// then scored against the work that came.
fn requests_times_mix(
    requests: &Trace,
    work: &Trace,
    cfg: &BacktestConfig,
    progress: &mut dyn FnMut(),
) -> anyhow::Result<BacktestResult> {
    let one = BacktestConfig {
        models: vec![cfg.models[0]],
        ..cfg.clone()
    };
    let mut result = backtest::run(requests, &one, progress)?;
    let week = (7 * 86_400 / requests.step_secs).max(1) as usize;
    let day = (86_400 / work.step_secs).max(1) as usize;
    for f in &mut result.forecasts {
        let from = f.origin.saturating_sub(week);
        let (w, r) = (from..f.origin).fold((0.0, 0.0), |(w, r), i| {
            match (work.requests[i], requests.requests[i]) {
                (a, b) if a.is_finite() && b.is_finite() => (w + a, r + b),
                _ => (w, r),
            }
        });
        let mix = if r > 0.0 { w / r } else { f64::NAN };
        for v in f.point.iter_mut().chain(f.upper.iter_mut()) {
            *v *= mix;
        }
        f.actual = (f.origin..f.origin + f.point.len())
            .map(|i| work.requests.get(i).copied().unwrap_or(f64::NAN))
            .collect();
        let train_from = f.origin.saturating_sub(cfg.train);
        let scale = prewarm_forecast::metrics::seasonal_naive_scale(
            &work.requests[train_from..f.origin],
            day,
        )
        .unwrap_or(f64::NAN);
        f.scores =
            prewarm_forecast::metrics::score(&f.point, &f.upper, &f.actual, cfg.quantile, scale);
    }
    Ok(result)
}

fn resample_sum(trace: &Trace, secs: i64) -> anyhow::Result<Trace> {
    ensure!(
        secs % trace.step_secs == 0,
        "--resample {} is not a whole number of the trace's {} buckets",
        format_duration(secs),
        format_duration(trace.step_secs)
    );
    let factor = secs / trace.step_secs;
    let height = trace.len();
    let df = DataFrame::new(
        height,
        vec![
            Column::new(
                "bucket".into(),
                (0..trace.len() as i64)
                    .map(|i| i / factor)
                    .collect::<Vec<_>>(),
            ),
            Column::new("requests".into(), trace.requests.clone()),
        ],
    )?;
    let out = df
        .lazy()
        .group_by([col("bucket")])
        .agg([col("requests").sum(), len().alias("parts")])
        .filter(col("parts").eq(lit(factor as u32)))
        .sort(["bucket"], SortMultipleOptions::default())
        .collect()?;
    let buckets: Vec<i64> = out.column("bucket")?.i64()?.iter().flatten().collect();
    let sums: Vec<f64> = out
        .column("requests")?
        .f64()?
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect();
    let len = buckets.last().map(|b| *b as usize + 1).unwrap_or(0);
    let mut requests = vec![f64::NAN; len];
    for (b, v) in buckets.iter().zip(sums) {
        requests[*b as usize] = v;
    }
    ensure!(
        len >= 2,
        "resampling to {} leaves fewer than two buckets",
        format_duration(secs)
    );
    Ok(Trace::new(trace.start, secs, requests))
}

/// Aggregates the per-origin scores into one row per model (with polars).
fn summarise(result: &BacktestResult, cfg: &BacktestConfig) -> anyhow::Result<Vec<ModelSummary>> {
    let f = &result.forecasts;
    let height = f.len();
    let df = DataFrame::new(
        height,
        vec![
            Column::new(
                "model".into(),
                f.iter().map(|r| r.model.name()).collect::<Vec<_>>(),
            ),
            Column::new(
                "fitted".into(),
                f.iter().map(|r| r.fitted.name()).collect::<Vec<_>>(),
            ),
            Column::new(
                "mase".into(),
                f.iter().map(|r| r.scores.mase).collect::<Vec<_>>(),
            ),
            Column::new(
                "smape".into(),
                f.iter().map(|r| r.scores.smape).collect::<Vec<_>>(),
            ),
            Column::new(
                "pinball".into(),
                f.iter().map(|r| r.scores.pinball).collect::<Vec<_>>(),
            ),
            Column::new(
                "covered".into(),
                f.iter()
                    .map(|r| r.scores.covered as f64)
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "scored".into(),
                f.iter().map(|r| r.scores.scored as f64).collect::<Vec<_>>(),
            ),
            Column::new(
                "fit_secs".into(),
                f.iter().map(|r| r.fit_secs).collect::<Vec<_>>(),
            ),
            Column::new(
                "outliers".into(),
                f.iter()
                    .map(|r| r.outliers_replaced as f64)
                    .collect::<Vec<_>>(),
            ),
        ],
    )?;
    let agg = df
        .lazy()
        .filter(col("scored").gt(lit(0.0)))
        .group_by([col("model")])
        .agg([
            len().alias("origins"),
            col("fitted").last().alias("fitted"),
            col("mase")
                .filter(col("mase").is_not_nan())
                .mean()
                .alias("mase"),
            col("smape").mean(),
            col("pinball").mean(),
            (col("covered").sum() / col("scored").sum()).alias("coverage"),
            (col("fit_secs").mean() * lit(1000.0)).alias("fit_ms"),
            col("outliers").mean(),
        ])
        .collect()?;
    let text = |name: &str| -> anyhow::Result<Vec<String>> {
        Ok(agg
            .column(name)?
            .str()?
            .iter()
            .map(|v| v.unwrap_or("").to_string())
            .collect())
    };
    let num = |name: &str| -> anyhow::Result<Vec<f64>> {
        Ok(agg
            .column(name)?
            .cast(&DataType::Float64)?
            .f64()?
            .iter()
            .map(|v| v.unwrap_or(f64::NAN))
            .collect())
    };
    let (models, fitted) = (text("model")?, text("fitted")?);
    let (origins, mase, smape) = (num("origins")?, num("mase")?, num("smape")?);
    let (pinball, coverage, fit_ms, outliers) = (
        num("pinball")?,
        num("coverage")?,
        num("fit_ms")?,
        num("outliers")?,
    );
    let mut rows: Vec<ModelSummary> = (0..agg.height())
        .map(|i| ModelSummary {
            model: models[i].clone(),
            fitted: fitted[i].clone(),
            origins: origins[i] as usize,
            mase: mase[i],
            smape_percent: smape[i],
            pinball: pinball[i],
            coverage: coverage[i],
            mean_fit_ms: fit_ms[i],
            outliers_replaced_per_fit: outliers[i],
            skipped_origins: result
                .skipped
                .iter()
                .filter(|s| s.model.name() == models[i])
                .count(),
        })
        .collect();
    // Models that never fitted still get a row, so the table says so.
    for m in &cfg.models {
        if !rows.iter().any(|r| r.model == m.name()) {
            rows.push(ModelSummary {
                model: m.name().into(),
                fitted: "-".into(),
                origins: 0,
                mase: f64::NAN,
                smape_percent: f64::NAN,
                pinball: f64::NAN,
                coverage: f64::NAN,
                mean_fit_ms: f64::NAN,
                outliers_replaced_per_fit: f64::NAN,
                skipped_origins: result.skipped.iter().filter(|s| s.model == *m).count(),
            });
        }
    }
    let order = |name: &str| {
        cfg.models
            .iter()
            .position(|m| m.name() == name)
            .unwrap_or(usize::MAX)
    };
    rows.sort_by_key(|r| order(&r.model));
    Ok(rows)
}

/// How well the demand distribution every planner uses is calibrated on this trace: each
/// quantile's coverage (the share of minutes whose demand came at or under it), overall, in the
/// worst hour of the local day and in the worst ten minutes of the hour.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CalibrationReport {
    pub model: String,
    /// Scored minutes checked.
    pub minutes: usize,
    pub levels: Vec<LevelCoverage>,
    /// Per local hour: (hour, minutes, coverage per reported level).
    pub by_hour: Vec<(usize, usize, Vec<f64>)>,
    /// Per ten minutes of the hour: (first minute, minutes, coverage per reported level).
    pub by_minute: Vec<(usize, usize, Vec<f64>)>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct LevelCoverage {
    pub level: f64,
    pub covered: f64,
    pub worst_hour: Option<(usize, f64)>,
    pub worst_minutes: Option<(usize, f64)>,
}

/// The levels the report shows (indices into `LEVELS`).
const REPORTED: [usize; 6] = [3, 6, 8, 10, 13, 16];

impl CalibrationReport {
    fn table(&self) -> String {
        let mut out = format!(
            "calibration of the demand distribution ({}, recalibrated each day on the days before, {} minutes checked):\n{:>8} {:>9} {:>26} {:>24}\n",
            self.model, self.minutes, "quantile", "covered", "worst local hour", "worst minutes of hour"
        );
        for l in &self.levels {
            let phase = |p: Option<(usize, f64)>, minutes: bool| {
                p.map(|(at, c)| {
                    if minutes {
                        format!("{c:.3} (:{at:02} to :{:02})", at + 9)
                    } else {
                        format!("{c:.3} ({at:02}:00 to {at:02}:59)")
                    }
                })
                .unwrap_or_else(|| "-".into())
            };
            out.push_str(&format!(
                "{:>8} {:>9.3} {:>26} {:>24}\n",
                format!("p{}", l.level * 100.0),
                l.covered,
                phase(l.worst_hour, false),
                phase(l.worst_minutes, true),
            ));
        }
        out
    }
}

/// One scored minute for the coverage report: (local hour, ten minutes of the hour, whether
/// each reported quantile covered it).
type CoverageRow = (usize, usize, [bool; REPORTED.len()]);

/// Builds [`CalibrationReport`] for `model`'s forecasts: their minutes are scored as the service
/// scores its own (bucket totals spread over their minutes), the calibration is fitted each day on
/// the minutes known before that day's first origin, and checked on that day's minutes.
fn calibration_report(
    trace: &Trace,
    result: &BacktestResult,
    model: ModelKind,
    tz: Option<chrono_tz::Tz>,
) -> Option<CalibrationReport> {
    use prewarm_forecast::distribution::{levels_of, phase_of, DemandCalibration, Scored, LEVELS};
    let step = trace.step_secs;
    let per = (step / 60).max(1) as usize;
    let mut forecasts: Vec<_> = result
        .forecasts
        .iter()
        .filter(|f| f.model == model)
        .collect();
    forecasts.sort_by_key(|f| f.origin);
    let first = forecasts.first()?.origin;
    let day = (86_400 / step).max(1) as usize;
    // Scored minutes per forecast, with the day of its origin.
    let mut scored: Vec<(usize, Scored)> = Vec::new();
    for f in &forecasts {
        let origin = trace.timestamp(f.origin);
        let medians: Vec<f64> = f
            .point
            .iter()
            .flat_map(|p| std::iter::repeat_n(p.max(0.0) / step as f64, per))
            .collect();
        let levels = levels_of(&medians);
        for (b, actual) in f.actual.iter().enumerate() {
            if !actual.is_finite() {
                continue;
            }
            for k in 0..per {
                let at = trace.timestamp(f.origin + b) + chrono::Duration::seconds(60 * k as i64);
                scored.push((
                    (f.origin - first) / day,
                    Scored {
                        at,
                        horizon_secs: (at - origin).num_seconds(),
                        median_rps: medians[b * per + k],
                        level_rps: levels[b * per + k],
                        actual_rps: actual / step as f64,
                        floor_rps: f.error_floor / step as f64,
                    },
                ));
            }
        }
    }
    let days = scored.iter().map(|(d, _)| *d).max()? + 1;
    // (hour, minute of hour, covered per reported level)
    let mut checked: Vec<(usize, usize, [bool; REPORTED.len()])> = Vec::new();
    for d in 1..days {
        let Some(day_start) = forecasts
            .iter()
            .find(|f| (f.origin - first) / day == d)
            .map(|f| trace.timestamp(f.origin))
        else {
            continue;
        };
        let known: Vec<Scored> = scored
            .iter()
            .filter(|(od, r)| *od < d && r.at < day_start)
            .map(|(_, r)| *r)
            .collect();
        let calibration = DemandCalibration::fit(&known, tz);
        for (_, r) in scored.iter().filter(|(od, _)| *od == d) {
            let Some(q) = calibration.quantiles_of(r) else {
                continue;
            };
            let phase = phase_of(r.at, tz);
            let mut covered = [false; REPORTED.len()];
            for (i, &level) in REPORTED.iter().enumerate() {
                covered[i] = r.actual_rps <= q[level] + 1e-12;
            }
            checked.push((phase.hour, phase.minute, covered));
        }
    }
    if checked.is_empty() {
        return None;
    }
    let share = |rows: &[&(usize, usize, [bool; REPORTED.len()])]| -> Vec<f64> {
        (0..REPORTED.len())
            .map(|i| rows.iter().filter(|r| r.2[i]).count() as f64 / rows.len().max(1) as f64)
            .collect()
    };
    let group = |key: &dyn Fn(&CoverageRow) -> usize, groups: usize, width: usize| {
        (0..groups)
            .filter_map(|g| {
                let rows: Vec<_> = checked.iter().filter(|r| key(r) == g).collect();
                (!rows.is_empty()).then(|| (g * width, rows.len(), share(&rows)))
            })
            .collect::<Vec<_>>()
    };
    let by_hour = group(&|r| r.0, 24, 1);
    let by_minute = group(&|r| r.1 / 10, 6, 10);
    let all: Vec<_> = checked.iter().collect();
    let overall = share(&all);
    // The worst phase of a level: the one furthest below its nominal coverage, among phases
    // with enough minutes to say so.
    let worst = |groups: &[(usize, usize, Vec<f64>)], i: usize| {
        groups
            .iter()
            .filter(|(_, n, _)| *n >= 30)
            .map(|(at, _, c)| (*at, c[i]))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    };
    Some(CalibrationReport {
        model: model.name().to_string(),
        minutes: checked.len(),
        levels: REPORTED
            .iter()
            .enumerate()
            .map(|(i, &level)| LevelCoverage {
                level: LEVELS[level],
                covered: overall[i],
                worst_hour: worst(&by_hour, i),
                worst_minutes: worst(&by_minute, i),
            })
            .collect(),
        by_hour,
        by_minute,
    })
}

fn table(rows: &[ModelSummary], quantile: f64) -> String {
    let q = format!("p{:.0}", quantile * 100.0);
    let mut out = format!(
        "{:<12} {:<15} {:>7} {:>7} {:>8} {:>12} {:>10} {:>9}\n",
        "model",
        "fitted",
        "origins",
        "MASE",
        "sMAPE%",
        format!("pinball@{q}"),
        format!("cover@{q}"),
        "fit ms"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<12} {:<15} {:>7} {:>7.3} {:>8.2} {:>12.2} {:>10.3} {:>9.1}\n",
            r.model,
            r.fitted,
            r.origins,
            r.mase,
            r.smape_percent,
            r.pinball,
            r.coverage,
            r.mean_fit_ms
        ));
    }
    out
}

fn write_forecasts(path: &Path, trace: &Trace, result: &BacktestResult) -> anyhow::Result<()> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([
        "origin",
        "model",
        "fitted",
        "timestamp",
        "step",
        "actual",
        "p50",
        "upper",
    ])?;
    for f in &result.forecasts {
        let origin = trace.timestamp(f.origin).to_rfc3339();
        for (step, ((p, u), a)) in f.point.iter().zip(&f.upper).zip(&f.actual).enumerate() {
            out.write_record([
                origin.clone(),
                f.model.name().to_string(),
                f.fitted.name().to_string(),
                trace.timestamp(f.origin + step).to_rfc3339(),
                (step + 1).to_string(),
                if a.is_nan() {
                    String::new()
                } else {
                    format!("{a}")
                },
                format!("{p:.3}"),
                format!("{u:.3}"),
            ])?;
        }
    }
    let bytes = out.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::output::write_atomic(path, &bytes)
}
