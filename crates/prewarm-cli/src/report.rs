//! `report.html`: one self-contained page per `simulate --out` run (no network, no build step): the
//! settings, the table, and charts drawn in the browser from the data embedded in the page, with
//! dates on the fleet's wall clock, the warm-up shaded, and zoom (a day from the list, or a span
//! dragged across a chart).

use std::path::Path;

use chrono::Duration;
use chrono_tz::Tz;
use prewarm_sim::{SimSummary, StepRecord};
use serde::Serialize;

use crate::{replay::Replay, simulate::PolicySummary};

/// Most points a chart's line holds: each is the largest value over its stride of steps.
const MAX_POINTS: usize = 4_000;

/// One line of a chart.
#[derive(Serialize)]
struct Line {
    label: String,
    /// One value per point; none where the series has nothing (a gap, not a zero).
    values: Vec<Option<f64>>,
    /// Drawn fainter and thinner (a secondary series).
    faint: bool,
    /// Its colour in the page's palette: the same policy has the same colour in every chart.
    colour: usize,
}

/// One chart: lines over the page's shared time axis.
#[derive(Serialize)]
struct ChartData {
    title: String,
    y_label: String,
    height: u32,
    lines: Vec<Line>,
}

/// A table: a header and rows of text.
#[derive(Serialize)]
struct TableData {
    title: String,
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// What a report page shows.
#[derive(Serialize)]
struct Page<'a> {
    title: String,
    intro: String,
    /// Local time of each point, `YYYY-MM-DD HH:MM`.
    times: Vec<String>,
    /// The first scored point (before it: shaded, not scored).
    scored_from: usize,
    tables: Vec<TableData>,
    charts: Vec<ChartData>,
    settings: &'a serde_json::Value,
}

/// `n` steps of `step_secs` from `start` in points of at most [`MAX_POINTS`]: the stride, and each
/// point's local time in `tz`.
fn axis(
    start: chrono::DateTime<chrono::Utc>,
    step_secs: i64,
    n: usize,
    tz: Tz,
) -> (usize, Vec<String>) {
    let stride = n.div_ceil(MAX_POINTS).max(1);
    let times = (0..n)
        .step_by(stride)
        .map(|i| {
            (start + Duration::seconds(step_secs * i as i64))
                .with_timezone(&tz)
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .collect();
    (stride, times)
}

/// The largest of each stride (`None`, a missing value, counts as nothing).
fn max_per(values: &[Option<f64>], stride: usize) -> Vec<Option<f64>> {
    values
        .chunks(stride)
        .map(|c| c.iter().flatten().copied().reduce(f64::max))
        .collect()
}

/// Writes a report page, whole or not at all.
fn write_page(path: &Path, page: &Page<'_>) -> anyhow::Result<()> {
    let json = serde_json::to_string(page)?;
    let html = PAGE
        .replace("{{TITLE}}", &escape_html(&page.title))
        // Inside a script element only `</` can end it early: escaped, the JSON still parses.
        .replace("{{DATA}}", &json.replace("</", "<\\/"));
    crate::output::write_atomic(path, html.as_bytes())
}

fn fixed(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

/// Writes `report.html` for a replay's results.
pub(crate) fn simulate_report(
    path: &Path,
    replay: &Replay,
    results: &[(Vec<StepRecord>, SimSummary)],
    summaries: &[PolicySummary],
    lower_bound_gpu_hours: f64,
    slo: f64,
) -> anyhow::Result<()> {
    let n = replay.requests.len();
    let tz = replay.tz.unwrap_or(Tz::UTC);
    let (stride, times) = axis(replay.trace.start, replay.step_secs, n, tz);
    let needed: Vec<Option<f64>> = replay.needed().into_iter().map(Some).collect();
    // Records cover the steps replayed: padded to the trace's.
    let column = |rows: &[StepRecord], f: &dyn Fn(&StepRecord) -> f64| -> Vec<Option<f64>> {
        std::iter::repeat_n(None, n.saturating_sub(rows.len()))
            .chain(rows.iter().map(|r| Some(f(r))))
            .collect()
    };
    let mut capacity = vec![Line {
        label: "GPUs needed at full load".into(),
        values: max_per(&needed, stride),
        faint: false,
        colour: 0,
    }];
    let mut lost = Vec::new();
    for (k, (rows, summary)) in results.iter().enumerate() {
        capacity.push(Line {
            label: format!("{}: ready", summary.policy),
            values: max_per(&column(rows, &|r| r.gpus_ready as f64), stride),
            faint: false,
            colour: k + 1,
        });
        if rows.iter().any(|r| r.gpus_standby > 0) {
            capacity.push(Line {
                label: format!("{}: in standby", summary.policy),
                values: max_per(&column(rows, &|r| r.gpus_standby as f64), stride),
                faint: true,
                colour: k + 1,
            });
        }
        lost.push(Line {
            label: summary.policy.clone(),
            values: column(rows, &|r| r.timed_out_requests)
                .chunks(stride)
                .map(|c| c.iter().flatten().copied().reduce(|a, b| a + b))
                .collect(),
            faint: false,
            colour: k + 1,
        });
    }
    let reactive_hours = summaries
        .iter()
        .find(|s| s.sim.policy == "reactive")
        .map(|s| s.sim.gpu_hours);
    let mut rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|s| {
            // Saved against the reactive rules: GPU-hours, their share and dollars.
            let saved = match (s.saved_vs_reactive_gpu_hours, s.saved_vs_reactive_usd) {
                (Some(h), Some(usd)) if s.sim.policy != "reactive" => format!(
                    "{}{:.1} GPU-h ({:.1}%, ${:.2})",
                    if h >= 0.0 { "" } else { "-" },
                    h.abs(),
                    100.0 * h / reactive_hours.unwrap_or(f64::NAN).max(1e-9),
                    usd
                ),
                _ => "-".into(),
            };
            vec![
                s.sim.policy.clone(),
                fixed(Some(s.sim.gpu_hours), 1),
                fixed(Some(s.sim.standby_gpu_hours), 1),
                fixed(Some(s.sim.cost_usd), 2),
                format!("{:.3}%", 100.0 * s.sim.timed_out_share),
                if s.slo_met { "met" } else { "MISSED" }.into(),
                saved,
                format!("{:.0} s", s.sim.p99_wait_secs),
                fixed(Some(s.boots_per_day), 1),
                fixed(s.cost_vs_clairvoyant, 2),
                fixed(s.cost_vs_hindsight, 2),
            ]
        })
        .collect();
    rows.push(vec![
        "lower bound (capacity matching every step, boot time free)".into(),
        fixed(Some(lower_bound_gpu_hours), 1),
    ]);
    // Settings as people read them: no raw JSON.
    let settings = serde_json::json!({
        "trace": replay.name,
        "step": prewarm_core::format_duration(replay.step_secs),
        "SLO": format!(
            "at most {}% of requests wait longer than {}",
            crate::output::percent(slo),
            prewarm_core::format_duration(replay.sim.timeout_secs)
        ),
        "capacity": replay.capacity_note,
        "tokens": replay.token_note().unwrap_or_else(|| "-".into()),
        "boot": crate::simulate::span(replay.sim.boot),
        "price": format!("${:.2} per GPU-hour", replay.sim.price_usd_per_gpu_hour),
        "standby": replay.sim.standby.map_or_else(
            || "off".to_string(),
            |sb| format!(
                "resume {}, at {}% of the running price, {}% of resumes fail",
                crate::simulate::span(sb.resume),
                crate::output::percent(sb.price_share),
                crate::output::percent(sb.fail_share)
            )
        ),
        "time zone": tz.name(),
        "warm-up (replayed, not scored)": prewarm_core::format_duration(replay.warmup_steps() as i64 * replay.step_secs),
    });
    write_page(
        path,
        &Page {
            title: format!("prewarm simulate: {}", replay.name),
            intro: format!(
                "SLO: at most {}% of requests timed out; each policy met it or missed it, and saved (or spent, when negative) against the reactive rules. Times on the fleet's wall clock ({}); each point is the largest value over {} min. The shaded start is the warm-up, replayed but not scored.",
                crate::output::percent(slo),
                tz.name(),
                (stride as i64 * replay.step_secs) as f64 / 60.0
            ),
            times,
            scored_from: replay.warmup_steps() / stride,
            tables: vec![TableData {
                title: "Policies".into(),
                head: [
                    "policy",
                    "GPU-hours",
                    "standby GPU-hours",
                    "cost $",
                    "timed out",
                    "SLO",
                    "saved against reactive",
                    "p99 wait",
                    "boots/day",
                    "x clairvoyant",
                    "x hindsight",
                ]
                .map(String::from)
                .to_vec(),
                rows,
            }],
            charts: vec![
                ChartData {
                    title: "Capacity against demand".into(),
                    y_label: "GPUs".into(),
                    height: 360,
                    lines: capacity,
                },
                ChartData {
                    title: "Requests timed out".into(),
                    y_label: "requests".into(),
                    height: 200,
                    lines: lost,
                },
            ],
            settings: &settings,
        },
    )
}

/// Writes `report.html` for a backtest: the models' scores (`head` and `rows`), and the actual
/// demand against the first model's median and upper band, each bucket from the latest forecast
/// made before it.
#[cfg(feature = "analysis")]
pub(crate) fn backtest_report(
    path: &Path,
    trace: &prewarm_core::Trace,
    forecasts: &[&prewarm_forecast::backtest::OriginForecast],
    (head, rows): (&[&str], Vec<Vec<String>>),
    settings: &serde_json::Value,
    tz: Option<Tz>,
) -> anyhow::Result<()> {
    let n = trace.len();
    let tz = tz.unwrap_or(Tz::UTC);
    let (stride, times) = axis(trace.start, trace.step_secs, n, tz);
    let mut median: Vec<Option<f64>> = vec![None; n];
    let mut upper: Vec<Option<f64>> = vec![None; n];
    let mut sorted: Vec<_> = forecasts.to_vec();
    sorted.sort_by_key(|f| f.origin);
    for f in sorted {
        for (k, (m, u)) in f.point.iter().zip(&f.upper).enumerate() {
            if f.origin + k < n {
                median[f.origin + k] = Some(*m);
                upper[f.origin + k] = Some(*u);
            }
        }
    }
    let actual: Vec<Option<f64>> = trace
        .requests
        .iter()
        .map(|r| r.is_finite().then_some(*r))
        .collect();
    let first = forecasts.iter().map(|f| f.origin).min().unwrap_or(0);
    // The settings as text: the run's scalar settings (the models' scores are the table above;
    // the calibration's are in summary.json), an unset one as "-".
    let settings: serde_json::Map<String, serde_json::Value> = settings
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| !v.is_object() && !v.is_array())
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::Null => "-".to_string(),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.replace('_', " "), serde_json::Value::String(text))
        })
        .collect();
    let settings = serde_json::Value::Object(settings);
    write_page(
        path,
        &Page {
            title: format!(
                "prewarm backtest: {}",
                settings["trace"].as_str().unwrap_or("")
            ),
            intro: format!(
                "Times on the fleet's wall clock ({}); each point is the largest value over {} min. The shaded start is history before the first forecast.",
                tz.name(),
                (stride as i64 * trace.step_secs) as f64 / 60.0
            ),
            times,
            scored_from: first / stride,
            tables: vec![TableData {
                title: "Models".into(),
                head: head.iter().map(|h| h.to_string()).collect(),
                rows,
            }],
            charts: vec![ChartData {
                title: "Demand against the forecast (the latest forecast made before each bucket)"
                    .into(),
                y_label: "requests per bucket".into(),
                height: 360,
                lines: vec![
                    Line {
                        label: "actual".into(),
                        values: max_per(&actual, stride),
                        faint: false,
                        colour: 0,
                    },
                    Line {
                        label: "median".into(),
                        values: max_per(&median, stride),
                        faint: false,
                        colour: 1,
                    },
                    Line {
                        label: "upper band".into(),
                        values: max_per(&upper, stride),
                        faint: false,
                        colour: 2,
                    },
                ],
            }],
            settings: &settings,
        },
    )
}

/// Text for HTML: `<`, `>`, `&` and quotes escaped.
fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{TITLE}}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1b1b1b; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; } td, th { padding: 3px 9px; border-bottom: 1px solid #ddd; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.chart { display: flex; gap: 1em; align-items: flex-start; }
.legend { min-width: 13em; } .legend div { display: flex; align-items: center; gap: .4em; }
.swatch { width: 1.6em; height: 3px; display: inline-block; }
svg { background: #fff; border: 1px solid #ccc; user-select: none; cursor: crosshair; flex-shrink: 0; }
.controls { margin: .6em 0; } .note { color: #555; }
</style></head>
<body>
<h1 id="title"></h1>
<p class="note" id="intro"></p>
<div id="tables"></div>
<div class="controls">Zoom: <select id="day"></select> <button id="all">everything</button>
<span class="note">or drag across a chart</span></div>
<div id="charts"></div>
<h2>Settings</h2>
<table id="settings"></table>
<script type="application/json" id="data">{{DATA}}</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const NS = "http://www.w3.org/2000/svg";
const COLOURS = ["#000000", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"];
const make = (name, parent, textValue) => { const e = document.createElement(name); if (textValue !== undefined) e.textContent = textValue; parent.appendChild(e); return e; };
document.getElementById("title").textContent = D.title;
document.getElementById("intro").textContent = D.intro;
function row(table, cells, head) {
  const tr = make("tr", table);
  for (const c of cells) make(head ? "th" : "td", tr, c);
}
const tables = document.getElementById("tables");
for (const t of D.tables) {
  make("h2", tables, t.title);
  const table = make("table", tables);
  row(table, t.head, true);
  for (const r of t.rows) row(table, r);
}
const settings = document.getElementById("settings");
for (const [k, v] of Object.entries(D.settings)) row(settings, [k, typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)]);

let view = [0, D.times.length];
const days = [...new Set(D.times.map(t => t.slice(0, 10)))];
const daySel = document.getElementById("day");
make("option", daySel, "a day...").value = "";
for (const d of days) make("option", daySel, d).value = d;
daySel.onchange = () => {
  if (!daySel.value) return;
  const from = D.times.findIndex(t => t.startsWith(daySel.value));
  let to = from; while (to < D.times.length && D.times[to].startsWith(daySel.value)) to++;
  view = [from, Math.max(to, from + 2)]; draw();
};
document.getElementById("all").onclick = () => { view = [0, D.times.length]; daySel.value = ""; draw(); };

function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  parent.appendChild(e); return e;
}
const charts = document.getElementById("charts");
const boxes = D.charts.map(c => {
  make("h2", charts, c.title);
  const wrap = make("div", charts); wrap.className = "chart";
  const svg = el("svg", { width: 1100, height: c.height }, wrap);
  const legend = make("div", wrap); legend.className = "legend";
  c.lines.forEach((l, k) => {
    const div = make("div", legend);
    const sw = make("span", div); sw.className = "swatch"; sw.style.background = colourOf(k, l);
    make("span", div, l.label);
  });
  return svg;
});
function colourOf(k, l) { const c = COLOURS[l.colour % COLOURS.length]; return l.faint ? c + "77" : c; }
function chart(svg, c) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const W = +svg.getAttribute("width"), H = +svg.getAttribute("height");
  const L = 55, R = 70, T = 22, B = 40;
  const [a, b] = view;
  let top = 1;
  for (const l of c.lines) for (let i = a; i < b; i++) top = Math.max(top, l.values[i] ?? 0);
  top *= 1.05;
  const x = i => L + (i - a) / Math.max(1, b - 1 - a) * (W - L - R);
  const y = v => H - B - v / top * (H - T - B);
  if (D.scored_from > a) {
    el("rect", { x: L, y: T, width: Math.max(0, x(Math.min(D.scored_from, b - 1)) - L), height: H - T - B,
      fill: "#eee", class: "warmup" }, svg);
  }
  for (let k = 0; k <= 4; k++) {
    const v = top * k / 4;
    el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e5e5e5" }, svg);
    el("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11 }, svg).textContent = v.toFixed(v < 10 ? 1 : 0);
  }
  const ticks = 6;
  for (let k = 0; k <= ticks; k++) {
    const i = Math.round(a + (b - 1 - a) * k / ticks);
    const anchor = k === 0 ? "start" : k === ticks ? "end" : "middle";
    el("text", { x: x(i), y: H - B + 16, "text-anchor": anchor, "font-size": 11 }, svg).textContent = D.times[i] || "";
  }
  el("text", { x: 6, y: 14, "font-size": 11 }, svg).textContent = c.y_label;
  // The first line (demand) is drawn last, on top.
  for (let k = c.lines.length - 1; k >= 0; k--) {
    const l = c.lines[k];
    // A point without a value (no forecast yet, a policy not replayed there) is a gap.
    let d = "", pen = false;
    for (let i = a; i < b; i++) {
      const v = l.values[i];
      if (v === null || v === undefined) { pen = false; continue; }
      d += (pen ? "L" : "M") + x(i).toFixed(1) + "," + y(v).toFixed(1);
      pen = true;
    }
    el("path", { d, fill: "none", stroke: colourOf(k, l), "stroke-width": l.faint ? 1 : 1.5, class: "series" }, svg);
  }
  // Drag across the chart to zoom to that span.
  let start = null, band = null;
  svg.onmousedown = e => { start = e.offsetX; band = el("rect", { x: start, y: T, width: 0, height: H - T - B, fill: "rgba(31,119,180,.15)" }, svg); };
  svg.onmousemove = e => { if (band) { band.setAttribute("x", Math.min(start, e.offsetX)); band.setAttribute("width", Math.abs(e.offsetX - start)); } };
  svg.onmouseup = e => {
    if (start === null) return;
    const toIndex = px => Math.round(a + (px - L) / (W - L - R) * (b - 1 - a));
    const i = Math.max(0, Math.min(toIndex(start), toIndex(e.offsetX)));
    const j = Math.min(D.times.length, Math.max(toIndex(start), toIndex(e.offsetX)) + 1);
    start = null; band = null;
    if (j - i >= 3) view = [i, j];
    draw();
  };
}
function draw() { D.charts.forEach((c, k) => chart(boxes[k], c)); }
draw();
</script>
</body></html>
"##;

#[cfg(test)]
mod tests {
    use super::escape_html;

    #[test]
    fn text_put_in_the_page_cannot_open_a_tag() {
        assert_eq!(
            escape_html(r#"<script>alert("x")</script>&'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
    }
}
