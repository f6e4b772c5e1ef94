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

#[derive(Serialize)]
struct Series {
    policy: String,
    ready: Vec<u32>,
    billed: Vec<u32>,
    standby: Vec<u32>,
    timed_out: Vec<f64>,
}

#[derive(Serialize)]
struct ReportData<'a> {
    trace: &'a str,
    time_zone: String,
    /// Local time of each point, `YYYY-MM-DD HH:MM`.
    times: Vec<String>,
    /// Minutes each point spans.
    point_minutes: f64,
    /// The first scored point (before it: the warm-up).
    scored_from: usize,
    /// GPUs the demand needs at full load (the largest over each point).
    needed: Vec<f64>,
    policies: Vec<Series>,
    summaries: &'a [PolicySummary],
    settings: serde_json::Value,
    lower_bound_gpu_hours: f64,
}

/// Writes `report.html` for a replay's results, whole or not at all.
pub(crate) fn simulate_report(
    path: &Path,
    replay: &Replay,
    results: &[(Vec<StepRecord>, SimSummary)],
    summaries: &[PolicySummary],
    lower_bound_gpu_hours: f64,
) -> anyhow::Result<()> {
    let n = replay.requests.len();
    let stride = n.div_ceil(MAX_POINTS).max(1);
    let tz = replay.tz.unwrap_or(Tz::UTC);
    let times: Vec<String> = (0..n)
        .step_by(stride)
        .map(|i| {
            (replay.trace.start + Duration::seconds(replay.step_secs * i as i64))
                .with_timezone(&tz)
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .collect();
    let max_u32 = |values: &[u32]| -> Vec<u32> {
        values
            .chunks(stride)
            .map(|c| c.iter().copied().max().unwrap_or(0))
            .collect()
    };
    let needed: Vec<f64> = replay
        .requests
        .chunks(stride)
        .map(|c| {
            c.iter()
                .map(|r| {
                    (r / replay.step_secs as f64 / replay.gpu_rps - 1e-9)
                        .ceil()
                        .max(0.0)
                })
                .fold(0.0, f64::max)
        })
        .collect();
    let policies = results
        .iter()
        .map(|(rows, summary)| {
            // Records start where the replay starts scoring or running: pad to the trace's steps.
            let pad = n.saturating_sub(rows.len());
            let column = |f: fn(&StepRecord) -> u32| -> Vec<u32> {
                max_u32(
                    &std::iter::repeat_n(0, pad)
                        .chain(rows.iter().map(f))
                        .collect::<Vec<_>>(),
                )
            };
            Series {
                policy: summary.policy.clone(),
                ready: column(|r| r.gpus_ready),
                billed: column(|r| r.gpus_billed),
                standby: column(|r| r.gpus_standby),
                timed_out: std::iter::repeat_n(0.0, pad)
                    .chain(rows.iter().map(|r| r.timed_out_requests))
                    .collect::<Vec<_>>()
                    .chunks(stride)
                    .map(|c| c.iter().sum())
                    .collect(),
            }
        })
        .collect();
    let data = ReportData {
        trace: &replay.name,
        time_zone: tz.name().to_string(),
        times,
        point_minutes: (stride as i64 * replay.step_secs) as f64 / 60.0,
        scored_from: replay.warmup_steps() / stride,
        needed,
        policies,
        summaries,
        settings: serde_json::json!({
            "step": prewarm_core::format_duration(replay.step_secs),
            "gpu_rps": replay.gpu_rps,
            "boot": replay.sim.boot,
            "timeout": prewarm_core::format_duration(replay.sim.timeout_secs),
            "price_usd_per_gpu_hour": replay.sim.price_usd_per_gpu_hour,
            "standby": replay.sim.standby,
            "time_zone": tz.name(),
            "warm_up": prewarm_core::format_duration(replay.warmup_steps() as i64 * replay.step_secs),
        }),
        lower_bound_gpu_hours,
    };
    let json = serde_json::to_string(&data)?;
    let page = PAGE
        .replace("{{TITLE}}", &escape_html(&replay.name))
        // Inside a script element only `</` can end it early: escaped, the JSON still parses.
        .replace("{{DATA}}", &json.replace("</", "<\\/"));
    crate::output::write_atomic(path, page.as_bytes())
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
<title>prewarm simulate: {{TITLE}}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1b1b1b; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; } td, th { padding: 3px 9px; border-bottom: 1px solid #ddd; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.chart { display: flex; gap: 1em; align-items: flex-start; }
.legend { min-width: 13em; } .legend div { display: flex; align-items: center; gap: .4em; }
.swatch { width: 1.6em; height: 3px; display: inline-block; }
svg { background: #fff; border: 1px solid #ccc; user-select: none; cursor: crosshair; }
.controls { margin: .6em 0; } .note { color: #555; }
</style></head>
<body>
<h1>prewarm simulate: <span id="trace"></span></h1>
<p class="note" id="intro"></p>
<h2>Policies</h2>
<table id="summary"></table>
<h2>Capacity against demand</h2>
<div class="controls">Zoom: <select id="day"></select> <button id="all">whole replay</button>
<span class="note">or drag across a chart</span></div>
<div class="chart"><svg id="capacity" width="1100" height="360"></svg><div class="legend" id="capacity-legend"></div></div>
<h2>Requests timed out</h2>
<div class="chart"><svg id="lost" width="1100" height="200"></svg><div class="legend" id="lost-legend"></div></div>
<h2>Settings</h2>
<table id="settings"></table>
<script type="application/json" id="data">{{DATA}}</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const NS = "http://www.w3.org/2000/svg";
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"];
const text = (id, t) => { document.getElementById(id).textContent = t; };
text("trace", D.trace);
text("intro", `Times on the fleet's wall clock (${D.time_zone}); each point is the largest value over ` +
  `${D.point_minutes} min. The shaded start is the warm-up, replayed but not scored.`);
function row(table, cells, head) {
  const tr = document.createElement("tr");
  for (const c of cells) { const td = document.createElement(head ? "th" : "td"); td.textContent = c; tr.appendChild(td); }
  table.appendChild(tr);
}
const fmt = (x, d) => (x === null || x === undefined) ? "-" : Number(x).toFixed(d);
const summary = document.getElementById("summary");
row(summary, ["policy", "GPU-hours", "standby GPU-hours", "cost $", "timed out", "p99 wait", "boots/day", "x clairvoyant", "x hindsight"], true);
for (const s of D.summaries) {
  row(summary, [s.policy, fmt(s.gpu_hours, 1), fmt(s.standby_gpu_hours, 1), fmt(s.cost_usd, 2),
    fmt(100 * s.timed_out_share, 3) + "%", fmt(s.p99_wait_secs, 0) + " s", fmt(s.boots_per_day, 1),
    fmt(s.cost_vs_clairvoyant, 2), fmt(s.cost_vs_hindsight, 2)]);
}
row(summary, ["lower bound (capacity matching every step, boot time free)", fmt(D.lower_bound_gpu_hours, 1), "", "", "", "", "", "", ""]);
const settings = document.getElementById("settings");
for (const [k, v] of Object.entries(D.settings)) row(settings, [k, typeof v === "object" ? JSON.stringify(v) : String(v)]);

let view = [0, D.times.length];
const days = [...new Set(D.times.map(t => t.slice(0, 10)))];
const daySel = document.getElementById("day");
{ const o = document.createElement("option"); o.value = ""; o.textContent = "a day..."; daySel.appendChild(o); }
for (const d of days) { const o = document.createElement("option"); o.value = d; o.textContent = d; daySel.appendChild(o); }
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
function legend(id, items) {
  const box = document.getElementById(id); box.textContent = "";
  for (const [label, colour] of items) {
    const div = document.createElement("div");
    const sw = document.createElement("span"); sw.className = "swatch"; sw.style.background = colour;
    const t = document.createElement("span"); t.textContent = label;
    div.appendChild(sw); div.appendChild(t); box.appendChild(div);
  }
}
function chart(svg, lines, yLabel) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const W = +svg.getAttribute("width"), H = +svg.getAttribute("height");
  const L = 55, R = 70, T = 22, B = 40;
  const [a, b] = view;
  let top = 1;
  for (const l of lines) for (let i = a; i < b; i++) top = Math.max(top, l.values[i] || 0);
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
  el("text", { x: 6, y: 14, "font-size": 11 }, svg).textContent = yLabel;
  for (const l of [...lines].reverse()) {
    let d = "";
    for (let i = a; i < b; i++) d += (i === a ? "M" : "L") + x(i).toFixed(1) + "," + y(l.values[i] || 0).toFixed(1);
    el("path", { d, fill: "none", stroke: l.colour, "stroke-width": l.width || 1.5, class: "series" }, svg);
  }
  // Drag across the chart to zoom to that span.
  let start = null, band = null;
  svg.onmousedown = e => { start = e.offsetX; band = el("rect", { x: start, y: T, width: 0, height: H - T - B, fill: "rgba(31,119,180,.15)" }, svg); };
  svg.onmousemove = e => { if (band) { band.setAttribute("x", Math.min(start, e.offsetX)); band.setAttribute("width", Math.abs(e.offsetX - start)); } };
  svg.onmouseup = e => {
    if (start === null) return;
    const toIndex = px => Math.round(a + (px - L) / (W - L - R) * (b - 1 - a));
    const i = Math.max(0, Math.min(toIndex(start), toIndex(e.offsetX))), j = Math.min(D.times.length, Math.max(toIndex(start), toIndex(e.offsetX)) + 1);
    start = null; band = null;
    if (j - i >= 3) { view = [i, j]; draw(); } else draw();
  };
}
function draw() {
  const lines = [{ label: "GPUs needed at full load", values: D.needed, colour: "#000", width: 1 }];
  D.policies.forEach((p, k) => lines.push({ label: p.policy + ": ready", values: p.ready, colour: COLOURS[k % COLOURS.length] }));
  D.policies.forEach((p, k) => { if (p.standby.some(v => v > 0)) lines.push({ label: p.policy + ": in standby", values: p.standby, colour: COLOURS[k % COLOURS.length] + "88", width: 1 }); });
  chart(document.getElementById("capacity"), lines, "GPUs");
  legend("capacity-legend", lines.map(l => [l.label, l.colour]));
  const lost = D.policies.map((p, k) => ({ label: p.policy, values: p.timed_out, colour: COLOURS[k % COLOURS.length] }));
  chart(document.getElementById("lost"), lost, "requests");
  legend("lost-legend", lost.map(l => [l.label, l.colour]));
}
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
