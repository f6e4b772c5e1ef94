//! Plots of backtest and replay results (SVG, no fonts or system libraries needed).

use std::path::Path;

use anyhow::Context;
use plotters::{coord::types::RangedCoordf64, prelude::*};
#[cfg(feature = "analysis")]
use prewarm_core::Trace;
#[cfg(feature = "analysis")]
use prewarm_forecast::{backtest::BacktestResult, ModelKind};
use prewarm_sim::{SimSummary, StepRecord};

type Chart<'a> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Axes, labels and legend around `draw`, written to `path` whole or not at all.
fn svg_chart(
    path: &Path,
    caption: &str,
    (x_max, y_max): (f64, f64),
    (x_desc, y_desc): (&str, &str),
    draw: impl FnOnce(&mut Chart<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let tmp = path.with_extension("partial.svg");
    {
        let root = SVGBackend::new(&tmp, (1400, 500)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max * 1.05)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()?;
        draw(&mut chart)?;
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()?;
        root.present()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

fn legend_line(colour: RGBAColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour)
}

/// Actual requests over the scored span, with `model`'s median and upper band from every origin.
#[cfg(feature = "analysis")]
pub(crate) fn backtest_svg(
    path: &Path,
    trace: &Trace,
    result: &BacktestResult,
    model: ModelKind,
) -> anyhow::Result<()> {
    let forecasts: Vec<_> = result
        .forecasts
        .iter()
        .filter(|f| f.model == model)
        .collect();
    let (Some(first), Some(last)) = (forecasts.first(), forecasts.last()) else {
        return Ok(());
    };
    let (from, to) = (first.origin, last.origin + last.point.len());
    let hours = |i: usize| (i as f64 - from as f64) * trace.step_secs as f64 / 3600.0;
    let top = forecasts
        .iter()
        .flat_map(|f| f.upper.iter().chain(&f.actual))
        .copied()
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max);
    let caption = format!(
        "{model}: actual vs median and upper band, from {}",
        trace.timestamp(from).to_rfc3339()
    );
    svg_chart(
        path,
        &caption,
        (hours(to), top),
        ("hours since the first origin", "requests per bucket"),
        |chart| {
            let actual: Vec<(f64, f64)> = (from..to.min(trace.len()))
                .filter(|i| trace.requests[*i].is_finite())
                .map(|i| (hours(i), trace.requests[i]))
                .collect();
            chart
                .draw_series(LineSeries::new(actual, BLACK.stroke_width(1)))?
                .label("actual")
                .legend(legend_line(BLACK.to_rgba()));
            for (k, f) in forecasts.iter().enumerate() {
                let line = |values: &[f64]| -> Vec<(f64, f64)> {
                    values
                        .iter()
                        .enumerate()
                        .map(|(s, v)| (hours(f.origin + s), *v))
                        .collect()
                };
                let m = chart.draw_series(LineSeries::new(line(&f.point), BLUE.stroke_width(2)))?;
                if k == 0 {
                    m.label("median").legend(legend_line(BLUE.to_rgba()));
                }
                let u = chart.draw_series(LineSeries::new(
                    line(&f.upper),
                    RED.mix(0.7).stroke_width(1),
                ))?;
                if k == 0 {
                    u.label("upper band").legend(legend_line(RED.to_rgba()));
                }
            }
            Ok(())
        },
    )
}

/// Demand (in GPUs needed at full load) and each policy's ready GPUs over the replay.
pub(crate) fn capacity_svg(
    path: &Path,
    replay: &crate::replay::Replay,
    results: &[(Vec<StepRecord>, SimSummary)],
) -> anyhow::Result<()> {
    let n = replay.work.len();
    // At most ~2,000 points a line: each point is the maximum over its stride.
    let stride = n.div_ceil(2_000).max(1);
    let hours = |i: usize| i as f64 * replay.step_secs as f64 / 3600.0;
    // Fractional GPUs of work (the line under the ready counts).
    let needed: Vec<f64> = replay
        .work
        .iter()
        .map(|w| w / replay.step_secs as f64 / replay.capacity.per_gpu())
        .collect();
    let top = results
        .iter()
        .flat_map(|(rows, _)| rows.iter().map(|r| r.gpus_ready as f64))
        .chain(needed.iter().copied())
        .fold(1.0, f64::max);
    let strided = |values: &[f64]| -> Vec<(f64, f64)> {
        values
            .chunks(stride)
            .enumerate()
            .map(|(k, c)| (hours(k * stride), c.iter().copied().fold(0.0, f64::max)))
            .collect()
    };
    svg_chart(
        path,
        "GPUs needed (demand) and GPUs ready per policy",
        (hours(n), top),
        ("hours since the trace's start", "GPUs"),
        |chart| {
            chart
                .draw_series(LineSeries::new(strided(&needed), BLACK.stroke_width(1)))?
                .label("needed at full load")
                .legend(legend_line(BLACK.to_rgba()));
            for (k, (rows, summary)) in results.iter().enumerate() {
                let colour = Palette99::pick(k + 1).to_rgba();
                let ready: Vec<f64> = rows.iter().map(|r| r.gpus_ready as f64).collect();
                chart
                    .draw_series(LineSeries::new(strided(&ready), colour.stroke_width(1)))?
                    .label(summary.policy.clone())
                    .legend(legend_line(colour));
            }
            Ok(())
        },
    )
}
