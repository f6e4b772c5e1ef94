// prewarm's operator dashboard. Plain script, no library: it reads the operator API with the token
// the operator pastes once, draws SVG itself, and builds every text with textContent (never HTML),
// so a name, label or reason is always shown as text.
'use strict';
(function () {
  const KEY = 'prewarm.token';
  const REFRESH_MS = 15000;
  const NS = 'http://www.w3.org/2000/svg';
  const COLORS = {
    demand: '#1d2430', median: '#2f6fdb', band: '#2f6fdb', needed: '#1d2430', ready: '#1a7f37',
    booting: '#d97706', desired: '#7c3aed', standby: '#64748b',
    boot: '#1a7f37', terminate: '#b42318', stop: '#64748b', resume: '#0e7490', terminate_standby: '#9f1239',
  };
  const $ = (id) => document.getElementById(id);
  let token = localStorage.getItem(KEY) || '';
  let view = null;
  let lastFleet = null;
  let timer = null;

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  /** An HTML element with attributes and children (strings become text nodes). */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }

  /** An SVG element with attributes. */
  function sv(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  async function api(path, method, body) {
    const headers = { Authorization: 'Bearer ' + token };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch(path, { method: method || 'GET', headers, body: body === undefined ? undefined : JSON.stringify(body) });
    let data = null;
    try { data = await r.json(); } catch (_) { data = null; }
    if (!r.ok) throw new ApiError(r.status, data && data.error ? data.error : r.status + ' ' + r.statusText);
    return data;
  }

  function notice(text, isError) {
    const n = $('notice');
    n.hidden = !text;
    n.textContent = text || '';
    n.classList.toggle('error', !!isError);
  }

  function explain(e) {
    if (e instanceof ApiError && e.status === 401) {
      return 'The API refused the token: ' + e.message + '\nPaste a valid token above (make one with: prewarm token create --label dashboard --scope read,operate).';
    }
    if (e instanceof ApiError && e.status === 403) return 'Not allowed with this token: ' + e.message;
    if (e instanceof ApiError) return e.message;
    return 'The service did not answer: ' + e.message;
  }

  // ---- formatting ----------------------------------------------------------------------------
  const dash = '–';
  const num = (v, d) => (v === null || v === undefined || Number.isNaN(v)) ? dash : Number(v).toFixed(d === undefined ? 1 : d);
  const int = (v) => (v === null || v === undefined) ? dash : String(v);
  function pct(v) {
    if (v === null || v === undefined) return dash;
    const p = v * 100;
    // Plain decimals only: 100%, 12%, 1.5%, 0.041%, <0.001% (never 1.0e+2%).
    const text = p === 0 ? '0' : p < 0.001 ? '<0.001' : p >= 10 ? p.toFixed(0) : p >= 1 ? p.toFixed(1) : Number(p.toPrecision(2)).toString();
    return text + '%';
  }
  function ago(t, now) {
    if (!t) return 'never';
    const s = Math.max(0, (Date.parse(now) - Date.parse(t)) / 1000);
    if (s < 90) return Math.round(s) + ' s ago';
    if (s < 5400) return Math.round(s / 60) + ' min ago';
    if (s < 172800) return Math.round(s / 3600) + ' h ago';
    return Math.round(s / 86400) + ' d ago';
  }
  const formats = new Map();
  function fmt(tz, kind) {
    const key = tz + '|' + kind;
    if (!formats.has(key)) {
      const opts = kind === 'time' ? { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }
        : kind === 'day' ? { day: '2-digit', month: 'short' }
          : { day: '2-digit', month: 'short', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' };
      let f;
      try { f = new Intl.DateTimeFormat('en-GB', Object.assign({ timeZone: tz }, opts)); } catch (_) { f = new Intl.DateTimeFormat('en-GB', Object.assign({ timeZone: 'UTC' }, opts)); }
      formats.set(key, f);
    }
    return formats.get(key);
  }
  const when = (t, tz) => t ? fmt(tz, 'full').format(new Date(t)) : dash;

  const partsFormats = new Map();
  /** The zone's offset from UTC at instant `ms`, milliseconds. */
  function tzOffset(ms, tz) {
    if (!partsFormats.has(tz)) {
      let f;
      const opts = { hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' };
      try { f = new Intl.DateTimeFormat('en-US', Object.assign({ timeZone: tz }, opts)); } catch (_) { f = new Intl.DateTimeFormat('en-US', Object.assign({ timeZone: 'UTC' }, opts)); }
      partsFormats.set(tz, f);
    }
    const parts = {};
    for (const p of partsFormats.get(tz).formatToParts(new Date(ms))) parts[p.type] = p.value;
    const asUtc = Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour % 24, +parts.minute, +parts.second);
    return asUtc - Math.floor(ms / 1000) * 1000;
  }
  /** The instant a `YYYY-MM-DDTHH:MM` wall-clock time in `tz` names. */
  function localToInstant(local, tz) {
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(local);
    if (!m) return null;
    const wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]);
    let t = wall - tzOffset(wall, tz);
    t = wall - tzOffset(t, tz);
    return new Date(t);
  }

  // ---- routing and refresh -------------------------------------------------------------------
  function route() {
    const m = /^#\/fleet\/(.+)$/.exec(location.hash);
    view = m ? { kind: 'fleet', name: decodeURIComponent(m[1]) } : { kind: 'fleets' };
    $('fleets-view').hidden = view.kind !== 'fleets';
    $('fleet-view').hidden = view.kind !== 'fleet';
    const crumbs = $('crumbs');
    crumbs.replaceChildren();
    if (view.kind === 'fleet') crumbs.append(el('a', { href: '#/' }, 'all fleets'), ' / ', view.name);
    refresh();
  }

  async function refresh() {
    if (!token) {
      notice('This dashboard reads prewarm\'s operator API. Paste an API token above: scope read shows the fleets, ' +
        'scope operate also allows pause, resume, pin and calendar events.\nMake one with: prewarm token create --label dashboard --scope read,operate');
      $('fleets-view').hidden = true;
      $('fleet-view').hidden = true;
      return;
    }
    try {
      if (view.kind === 'fleets') await showFleets();
      else await showFleet(view.name);
      $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    } catch (e) {
      notice(explain(e), true);
    }
  }

  function schedule() {
    clearInterval(timer);
    timer = setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
  }

  // ---- all fleets ----------------------------------------------------------------------------
  let fleetsMarked = false;
  function bandBar(f) {
    const s = sv('svg', { viewBox: '0 0 80 12', width: 60, height: 12, class: 'bandbar' });
    const top = Math.max(f.forecast_upper_rps || 0, f.demand_rps || 0, 1e-9) * 1.15;
    const x = (v) => 2 + 76 * v / top;
    s.append(sv('line', { x1: 2, x2: 78, y1: 6, y2: 6, stroke: '#d9dee7' }));
    if (f.forecast_p50_rps !== null && f.forecast_upper_rps !== null) {
      s.append(sv('rect', { x: x(f.forecast_p50_rps), y: 2, width: Math.max(1, x(f.forecast_upper_rps) - x(f.forecast_p50_rps)), height: 8, fill: COLORS.band, 'fill-opacity': 0.25 }));
      s.append(sv('line', { x1: x(f.forecast_p50_rps), x2: x(f.forecast_p50_rps), y1: 1, y2: 11, stroke: COLORS.median }));
    }
    if (f.demand_rps !== null) s.append(sv('circle', { cx: x(f.demand_rps), cy: 6, r: 3, fill: f.band === 'above' ? '#b42318' : COLORS.demand }));
    return s;
  }

  async function showFleets() {
    const data = await api('/v1/dashboard');
    notice('');
    $('fleets-view').hidden = false;
    const filter = $('filter').value.trim().toLowerCase();
    const body = document.createDocumentFragment();
    let shown = 0;
    for (const f of data.fleets) {
      if (filter && !f.name.toLowerCase().includes(filter)) continue;
      shown++;
      const slo = f.slo_max_timeout_share;
      const shareCell = (v) => el('td', { class: 'num ' + (v === null ? '' : v > slo ? 'over' : 'under'), 'data-col': 'share', title: 'SLO: at most ' + pct(slo) }, pct(v));
      const link = el('a', { href: '#/fleet/' + encodeURIComponent(f.name) }, f.name);
      const mode = f.mode === 'pinned' ? 'pinned to ' + f.pinned_gpus : f.mode;
      body.append(el('tr', { 'data-fleet': f.name },
        el('td', {}, link),
        el('td', { 'data-col': 'mode' }, el('span', { class: 'badge ' + f.mode }, mode)),
        el('td', { class: 'num', 'data-col': 'gpus' }, int(f.desired_gpus) + ' / ' + int(f.gpus_ready) + ' / ' + int(f.gpus_booting) + (f.gpus_standby ? ' (' + f.gpus_standby + ' standby)' : '')),
        el('td', { 'data-col': 'demand' }, bandBar(f), ' ', num(f.demand_rps, 2) +
          // The median and the level planned on, each named: the level may be below the
          // median when the SLO allows it (a band written low–high would then read backwards).
          (f.forecast_upper_rps === null ? ' ' : ' · median ' + num(f.forecast_p50_rps, 2) + ' · planned ' + num(f.forecast_upper_rps, 2) + ' '),
          el('mark', { class: 'band ' + f.band.replace(/ /g, '-') }, f.band)),
        shareCell(f.timed_out_share_24h),
        shareCell(f.timed_out_share_7d),
        el('td', { class: 'num', 'data-col': 'cost' }, '$' + num(f.cost_today_usd, 2)),
        el('td', { 'data-col': 'lease' }, f.lease_holder || 'none'),
        el('td', { 'data-col': 'tick', title: f.last_tick || '' }, ago(f.last_tick, data.now)),
        el('td', { 'data-col': 'refit', title: f.refit_note || '' }, ago(f.last_refit, data.now)),
      ));
    }
    $('fleets').tBodies[0].replaceChildren(body);
    $('fleet-count').textContent = shown + ' of ' + data.fleets.length + ' fleets · service mode ' + data.service_mode + ' · this replica ' + data.replica;
    if (!fleetsMarked) { fleetsMarked = true; performance.mark('prewarm:fleets-drawn'); }
  }

  // ---- charts --------------------------------------------------------------------------------
  const FULL = 1000;
  const HALF = 560;

  function niceStep(range, count) {
    const raw = range / count;
    const mag = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * mag) return m * mag;
    return 10 * mag;
  }

  /** Axes for a time chart: x from t0 to t1 (ms) with ticks on the fleet's clock, y from 0 to yMax
   *  (none when yMax is null: the caller lays out its own rows). */
  function frame(host, t0, t1, yMax, height, tz, yLabel, legend, width) {
    const W = width || FULL;
    const m = { l: 76, r: 12, t: legend ? 22 : 8, b: 22 };
    const s = sv('svg', { viewBox: '0 0 ' + W + ' ' + height, role: 'img' });
    const x = (t) => m.l + (W - m.l - m.r) * (t - t0) / Math.max(1, t1 - t0);
    const top = yMax > 0 ? yMax * 1.08 : 1;
    const yAxis = yMax !== null;
    const y = (v) => height - m.b - (height - m.t - m.b) * v / top;
    const grid = sv('g', { class: 'grid' });
    const axis = sv('g', { class: 'axis' });
    const ystep = niceStep(top, 4);
    for (let v = 0; yAxis && v <= top + 1e-9; v += ystep) {
      grid.append(sv('line', { x1: m.l, x2: W - m.r, y1: y(v), y2: y(v) }));
      axis.append(sv('text', { x: m.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, Number(v.toPrecision(6)).toString()));
    }
    const hours = (t1 - t0) / 3600e3;
    const most = W >= FULL ? 12 : 6;
    const step = [1, 2, 3, 6, 12, 24, 48].find((h) => hours / h <= most) || 48;
    let t = Math.ceil(t0 / 3600e3) * 3600e3;
    for (; t <= t1; t += 3600e3) {
      const local = new Date(t + tzOffset(t, tz));
      if (local.getUTCMinutes() !== 0 || local.getUTCHours() % step !== 0) continue;
      grid.append(sv('line', { x1: x(t), x2: x(t), y1: m.t, y2: height - m.b }));
      const label = local.getUTCHours() === 0 ? fmt(tz, 'day').format(new Date(t)) : fmt(tz, 'time').format(new Date(t));
      axis.append(sv('text', { x: x(t), y: height - 6, 'text-anchor': 'middle' }, label));
    }
    axis.append(sv('line', { x1: m.l, x2: W - m.r, y1: height - m.b, y2: height - m.b }));
    if (yLabel) axis.append(sv('text', { x: 4, y: m.t - 6 > 8 ? m.t - 8 : 10 }, yLabel));
    s.append(grid, axis);
    if (legend) {
      const g = sv('g', { class: 'legend' });
      let lx = m.l + 110;
      for (const [name, color, dashed] of legend) {
        g.append(sv('rect', { x: lx, y: 6, width: 14, height: 8, fill: color, 'fill-opacity': dashed === 'band' ? 0.25 : 1 }));
        g.append(sv('text', { x: lx + 18, y: 14 }, name));
        lx += 26 + name.length * 6.5;
      }
      s.append(g);
    }
    host.replaceChildren(s);
    return { s, x, y, m, height, W };
  }

  function path(points, x, y, step) {
    let d = '';
    let prev = null;
    for (const [t, v] of points) {
      if (v === null || v === undefined) { prev = null; continue; }
      if (prev === null) d += 'M' + x(t).toFixed(1) + ' ' + y(v).toFixed(1);
      else if (step) d += 'H' + x(t).toFixed(1) + 'V' + y(v).toFixed(1);
      else d += 'L' + x(t).toFixed(1) + ' ' + y(v).toFixed(1);
      prev = v;
    }
    return d;
  }

  /** Polygons between lo and hi, broken where either is missing. */
  function bandPaths(points, x, y) {
    const runs = [];
    let run = [];
    for (const p of points) {
      if (p[1] === null || p[2] === null || p[1] === undefined || p[2] === undefined) { if (run.length) runs.push(run); run = []; } else run.push(p);
    }
    if (run.length) runs.push(run);
    return runs.map((r) => 'M' + r.map((p) => x(p[0]).toFixed(1) + ' ' + y(p[2]).toFixed(1)).join('L') +
      'L' + r.slice().reverse().map((p) => x(p[0]).toFixed(1) + ' ' + y(p[1]).toFixed(1)).join('L') + 'Z');
  }

  function nowLine(f, now) {
    f.s.append(sv('line', { x1: f.x(now), x2: f.x(now), y1: f.m.t, y2: f.height - f.m.b, stroke: '#9aa4b2', 'stroke-dasharray': '4 3' }));
    f.s.append(sv('text', { x: f.x(now) + 3, y: f.m.t + 10 }, 'now'));
  }

  /** A readout under the chart of each series' value at the pointer. */
  function hover(host, f, tz, series) {
    const out = el('div', { class: 'readout' });
    host.append(out);
    const cursor = sv('line', { y1: f.m.t, y2: f.height - f.m.b, stroke: '#9aa4b2', visibility: 'hidden' });
    f.s.append(cursor);
    f.s.addEventListener('mousemove', (ev) => {
      const box = f.s.getBoundingClientRect();
      const vx = (ev.clientX - box.left) * f.W / box.width;
      let lo = 0;
      const all = series[0][1];
      if (!all.length) return;
      // Invert x by search over the first series' times.
      let hi = all.length - 1;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (f.x(all[mid][0]) < vx) lo = mid + 1; else hi = mid; }
      const t = all[lo][0];
      cursor.setAttribute('x1', f.x(t)); cursor.setAttribute('x2', f.x(t)); cursor.setAttribute('visibility', 'visible');
      const parts = [fmt(tz, 'full').format(new Date(t))];
      for (const [name, pts] of series) {
        let best = null;
        for (const p of pts) { if (p[0] <= t) best = p; else break; }
        if (best && best[1] !== null && best[1] !== undefined) parts.push(name + ' ' + Number(best[1]).toFixed(2));
      }
      out.textContent = parts.join(' · ');
    });
  }

  function demandChart(d, t0, t1, now, tz) {
    const demand = d.demand.map(([t, v]) => [Date.parse(t), v]);
    const past = d.decisions.map((x) => [Date.parse(x.decided_at), x.forecast_p50_rps, x.forecast_upper_rps]);
    const ahead = d.forecast.points.map(([t, p, u]) => [Date.parse(t), p, u]).filter((p) => p[0] > now);
    const median = past.map((p) => [p[0], p[1]]).concat(ahead.map((p) => [p[0], p[1]]));
    const band = past.concat(ahead);
    let yMax = 0;
    for (const p of demand) yMax = Math.max(yMax, p[1]);
    for (const p of band) yMax = Math.max(yMax, p[1] || 0, p[2] || 0);
    const host = $('chart-demand');
    // A token fleet's demand is its work: GPU-seconds per second, the GPUs it keeps busy.
    const unit = d.fleet.demand_unit === 'GPU-s/s' ? 'work (GPU-s/s)' : 'requests/s';
    // The band is the level the SLO sizer planned on: named by its quantiles ahead, and the SLO.
    const qs = d.forecast.points.map((p) => p[3]).filter((q) => q !== null && q !== undefined);
    const qname = (q) => 'p' + +(100 * q).toFixed(2);
    const lo = Math.min(...qs), hi = Math.max(...qs);
    const bandLabel = 'band: ' + (qs.length ? (lo === hi ? qname(lo) : qname(lo) + ' to ' + qname(hi)) + ' planned on' : 'quantile planned on') +
      ', for the SLO of ' + pct(d.fleet.slo.max_timeout_share) + ' timed out';
    const f = frame(host, t0, t1, yMax, 260, tz, unit, [['demand', COLORS.demand], ['forecast median', COLORS.median], [bandLabel, COLORS.band, 'band']]);
    for (const dd of bandPaths(band, f.x, f.y)) f.s.append(sv('path', { d: dd, fill: COLORS.band, 'fill-opacity': 0.18, stroke: 'none', class: 'band' }));
    f.s.append(sv('path', { d: path(median, f.x, f.y), fill: 'none', stroke: COLORS.median, 'stroke-width': 1.5, class: 'median' }));
    f.s.append(sv('path', { d: path(demand, f.x, f.y), fill: 'none', stroke: COLORS.demand, 'stroke-width': 1.5, class: 'demand' }));
    nowLine(f, now);
    hover(host, f, tz, [['demand', demand], ['median', median], ['upper', band.map((p) => [p[0], p[2]])]]);
  }

  function gpuChart(d, t0, t1, now, tz) {
    // Work one GPU does per second: its requests/s, or one GPU-second for a token fleet.
    const perGpu = d.fleet.demand_unit === 'GPU-s/s' ? 1 : d.fleet.gpu_rps;
    const needed = d.demand.map(([t, v]) => [Date.parse(t), v / perGpu]);
    const at = (k) => d.decisions.map((x) => [Date.parse(x.decided_at), x[k]]);
    const ready = at('gpus_ready');
    const desired = at('desired_gpus');
    const provisioned = d.decisions.map((x) => [Date.parse(x.decided_at), x.gpus_ready + x.gpus_booting]);
    const standby = at('gpus_standby');
    let yMax = 1;
    for (const s of [needed, desired, provisioned]) for (const p of s) yMax = Math.max(yMax, p[1]);
    const host = $('chart-gpus');
    const legend = [[d.fleet.demand_unit === 'GPU-s/s' ? 'needed (work / GPU)' : 'needed (demand / GPU rps)', COLORS.needed], ['ready', COLORS.ready], ['ready + booting', COLORS.booting], ['desired', COLORS.desired]];
    const anyStandby = standby.some((p) => p[1] > 0);
    if (anyStandby) legend.push(['standby', COLORS.standby]);
    const f = frame(host, t0, t1, yMax, 220, tz, 'GPUs', legend);
    f.s.append(sv('path', { d: path(needed, f.x, f.y), fill: 'none', stroke: COLORS.needed, 'stroke-width': 1.2, 'stroke-opacity': 0.7 }));
    f.s.append(sv('path', { d: path(provisioned, f.x, f.y, true), fill: 'none', stroke: COLORS.booting, 'stroke-width': 1.5 }));
    f.s.append(sv('path', { d: path(ready, f.x, f.y, true), fill: 'none', stroke: COLORS.ready, 'stroke-width': 2, class: 'ready' }));
    f.s.append(sv('path', { d: path(desired, f.x, f.y, true), fill: 'none', stroke: COLORS.desired, 'stroke-width': 1.5, 'stroke-dasharray': '5 3' }));
    if (anyStandby) f.s.append(sv('path', { d: path(standby, f.x, f.y, true), fill: 'none', stroke: COLORS.standby, 'stroke-width': 1.5 }));
    nowLine(f, now);
    hover(host, f, tz, [['needed', needed], ['ready', ready], ['ready+booting', provisioned], ['desired', desired]]);
  }

  function ordersChart(d, t0, t1, now, tz) {
    const kinds = ['boot', 'terminate', 'stop', 'resume', 'terminate_standby'];
    const used = kinds.filter((k) => d.orders.some((o) => o.kind === k));
    const lanes = used.length ? used : ['boot', 'terminate'];
    const height = 30 + 24 * lanes.length;
    const host = $('chart-orders');
    // No y axis: one lane per kind.
    const f = frame(host, t0, t1, null, height, tz, '', null);
    lanes.forEach((k, i) => f.s.append(sv('text', { x: f.m.l - 6, y: 20 + 24 * i, 'text-anchor': 'end' }, k.replace('_', ' '))));
    for (const o of d.orders) {
      const i = lanes.indexOf(o.kind);
      if (i < 0) continue;
      const t = Date.parse(o.created_at);
      const r = Math.min(9, 3 + Math.sqrt(o.count) * 1.5);
      const delivered = o.state === 'delivered';
      const pending = o.state === 'pending';
      const c = sv('circle', {
        cx: f.x(t), cy: 16 + 24 * i, r,
        fill: delivered ? COLORS[o.kind] : '#fff', stroke: pending ? COLORS[o.kind] : delivered ? COLORS[o.kind] : '#9aa4b2',
        'stroke-width': 1.5, 'stroke-dasharray': pending ? '2 2' : null, class: 'order ' + o.state,
      });
      c.append(sv('title', {}, o.kind + ' ' + o.count + ' GPU(s), ' + o.state + ' · ' + when(o.created_at, tz) + (o.last_error ? ' · ' + o.last_error : '')));
      f.s.append(c);
    }
    nowLine(f, now);
    host.append(el('div', { class: 'readout' }, 'filled: delivered · dashed: pending delivery · grey: cancelled or expired · size: GPUs'));
  }

  function bootChart(d) {
    const secs = d.boot.secs;
    const host = $('chart-boots');
    const height = 220;
    const W = HALF;
    const s = sv('svg', { viewBox: '0 0 ' + W + ' ' + height, role: 'img' });
    host.replaceChildren(s);
    const facts = $('boot-facts');
    const lead = d.boot.lead_in_use_secs;
    facts.textContent = secs.length + ' boots · p50 ' + (d.boot.p50_secs === null ? dash : Math.round(d.boot.p50_secs) + ' s') +
      ' · p95 ' + (d.boot.p95_secs === null ? dash : Math.round(d.boot.p95_secs) + ' s') + ' · lead in use ' + lead + ' s';
    const lo = Math.min(lead, ...(secs.length ? secs : [lead])) * 0.9;
    const hi = Math.max(lead, ...(secs.length ? secs : [lead])) * 1.1 + 1;
    const bins = 30;
    const width = (hi - lo) / bins;
    const counts = new Array(bins).fill(0);
    for (const v of secs) counts[Math.min(bins - 1, Math.floor((v - lo) / width))]++;
    const most = Math.max(1, ...counts);
    const m = { l: 40, r: 12, t: 10, b: 22 };
    const x = (v) => m.l + (W - m.l - m.r) * (v - lo) / (hi - lo);
    const y = (c) => height - m.b - (height - m.t - m.b) * c / most;
    counts.forEach((c, i) => {
      if (!c) return;
      const b = sv('rect', { x: x(lo + i * width) + 1, y: y(c), width: Math.max(1, x(lo + (i + 1) * width) - x(lo + i * width) - 2), height: y(0) - y(c), fill: COLORS.ready, 'fill-opacity': 0.7, class: 'bin' });
      b.append(sv('title', {}, c + ' boots of ' + Math.round(lo + i * width) + ' to ' + Math.round(lo + (i + 1) * width) + ' s'));
      s.append(b);
    });
    s.append(sv('line', { x1: m.l, x2: W - m.r, y1: y(0), y2: y(0), stroke: '#9aa4b2' }));
    const step = niceStep(hi - lo, 5);
    for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) s.append(sv('text', { x: x(v), y: height - 6, 'text-anchor': 'middle' }, Math.round(v) + ' s'));
    s.append(sv('text', { x: 4, y: m.t + 8 }, most + ''));
    const marks = [['p50', d.boot.p50_secs, COLORS.median], ['p95', d.boot.p95_secs, COLORS.booting], ['lead in use', lead, COLORS.desired]];
    marks.forEach(([name, v, color], i) => {
      if (v === null || v === undefined) return;
      s.append(sv('line', { x1: x(v), x2: x(v), y1: m.t, y2: height - m.b, stroke: color, 'stroke-width': 1.5, 'stroke-dasharray': '4 2' }));
      s.append(sv('text', { x: x(v) + 3, y: m.t + 10 + 12 * i }, name));
    });
    if (!secs.length) s.append(sv('text', { x: W / 2, y: height / 2, 'text-anchor': 'middle' }, 'no boots reported in the last 7 days: the lead comes from the configuration'));
  }

  function coverageChart(d, t0, t1, now, tz) {
    const host = $('chart-coverage');
    const f = frame(host, t0, t1, 1 / 1.08, 220, tz, 'share', null, HALF);
    const slot = (f.x(t0 + 3600e3) - f.x(t0)) * 0.8;
    for (const c of d.coverage) {
      const t = Date.parse(c.hour);
      const share = c.covered / c.buckets;
      const r = sv('rect', { x: f.x(t) + 1, y: f.y(share), width: Math.max(1, slot), height: f.y(0) - f.y(share), fill: share < 0.9 ? '#d97706' : COLORS.median, 'fill-opacity': 0.7, class: 'coverage' });
      r.append(sv('title', {}, fmt(tz, 'full').format(new Date(t)) + ': ' + c.covered + ' of ' + c.buckets + ' buckets at or under the band'));
      f.s.append(r);
    }
    if (!d.coverage.length) f.s.append(sv('text', { x: HALF / 2, y: 100, 'text-anchor': 'middle' }, 'no decision planned on a band yet'));
  }

  // ---- one fleet -----------------------------------------------------------------------------
  let fleetMarked = null;
  function decisionKept(x, filter) {
    switch (filter) {
      case 'all': return true;
      case 'orders': return x.orders.length > 0;
      case 'none': return x.orders.length === 0;
      case 'paused': case 'pinned': return x.mode === filter;
      default: return x.orders.includes(filter);
    }
  }

  function drawDecisions(d) {
    const tz = d.fleet.time_zone;
    const filter = $('decision-filter').value;
    const kept = d.decisions.filter((x) => decisionKept(x, filter)).reverse();
    const shown = kept.slice(0, 300);
    const body = document.createDocumentFragment();
    for (const x of shown) {
      body.append(el('tr', {},
        el('td', { class: 'num' }, when(x.decided_at, tz)),
        el('td', {}, x.mode),
        el('td', { class: 'num' }, int(x.desired_gpus)),
        el('td', { class: 'num' }, int(x.gpus_ready)),
        el('td', { class: 'num' }, int(x.gpus_booting)),
        el('td', { class: 'num' }, num(x.forecast_p50_rps, 2) + ' / ' + num(x.forecast_upper_rps, 2)),
        el('td', {}, x.orders.join(', ')),
        el('td', { class: 'reason' }, x.reason)));
    }
    $('decisions').tBodies[0].replaceChildren(body);
    $('decision-count').textContent = (kept.length > shown.length ? 'newest ' + shown.length + ' of ' : '') + kept.length + ' decisions';
  }

  async function showFleet(name) {
    const hours = $('hours').value;
    const d = await api('/v1/fleets/' + encodeURIComponent(name) + '/dashboard?hours=' + hours);
    notice('');
    lastFleet = d;
    $('fleet-view').hidden = false;
    const tz = d.fleet.time_zone;
    $('fleet-name').textContent = d.fleet.name;
    const mode = $('fleet-mode');
    mode.textContent = d.fleet.mode === 'pinned' ? 'pinned to ' + d.fleet.pinned_gpus + (d.fleet.pinned_until ? ' until ' + when(d.fleet.pinned_until, tz) : '') : d.fleet.mode;
    mode.className = 'badge ' + d.fleet.mode;
    const cap = d.fleet.capacity || {};
    const capacity = cap.unit === 'tokens'
      ? 'profile ' + (d.fleet.gpu_profile || '') + ': ' + num(cap.prefill_tps, 0) + ' prompt and ' + num(cap.decode_tps, 0) + ' output tokens/s per GPU'
      : num(d.fleet.gpu_rps, 3) + ' requests/s per GPU';
    const last = d.demand.length ? d.demand[d.demand.length - 1] : null;
    const tokens = last && last[3] !== null && last[3] !== undefined
      ? ' · now ' + num(last[2], 2) + ' requests/s, ' + num(last[3], 0) + ' prompt and ' + num(last[4], 0) + ' output tokens/s'
      : '';
    $('fleet-facts').textContent = 'time zone ' + tz + ' · ' + capacity + tokens + ' · SLO: at most ' + pct(d.fleet.slo.max_timeout_share) + ' of requests wait past ' +
      d.fleet.slo.timeout_secs + ' s · lease ' + (d.fleet.lease_holder || 'none') + ' · last refit ' + ago(d.fleet.last_refit, d.now);
    // Shadow mode: prewarm's decisions against the observed real fleet over the window.
    const sh = d.shadow;
    $('fleet-shadow').textContent = !sh ? '' : 'Shadow over ' + Math.round(sh.minutes / 60) + ' h: the real fleet paid ' +
      num(sh.real.gpu_hours, 1) + ' GPU-hours (' + pct(sh.real.timed_out_share) + ' timed out), prewarm would have paid ' +
      num(sh.prewarm.gpu_hours, 1) + ' (' + pct(sh.prewarm.timed_out_share) + ' timed out): ' +
      (sh.saved_usd >= 0 ? 'saved $' + num(sh.saved_usd, 2) : 'spent $' + num(-sh.saved_usd, 2) + ' more') +
      ', ' + num(Math.abs(sh.extra_timed_out_requests), 0) + (sh.extra_timed_out_requests > 0 ? ' more' : ' fewer') + ' requests timed out';
    document.querySelectorAll('.tzname').forEach((e) => { e.textContent = tz; });
    $('pause').disabled = d.fleet.paused;
    $('resume').disabled = !d.fleet.paused;
    const now = Date.parse(d.now);
    const t0 = Date.parse(d.since);
    const lastAhead = d.forecast.points.length ? Date.parse(d.forecast.points[d.forecast.points.length - 1][0]) : now;
    const t1 = Math.max(now + 3600e3, Math.min(lastAhead, now + (now - t0) / 4));
    demandChart(d, t0, t1, now, tz);
    gpuChart(d, t0, t1, now, tz);
    ordersChart(d, t0, t1, now, tz);
    bootChart(d);
    coverageChart(d, t0, now, now, tz);
    const events = document.createDocumentFragment();
    for (const e of d.events) {
      const remove = el('button', { 'data-event': String(e.id) }, 'Remove');
      remove.addEventListener('click', () => control('DELETE', '/events/' + e.id));
      events.append(el('tr', {}, el('td', {}, e.label), el('td', {}, e.starts_local), el('td', {}, e.ends_local),
        el('td', {}, e.multiply !== null && e.multiply !== undefined ? 'forecast × ' + e.multiply : 'plan for ' + e.pin_rps + ' rps'), el('td', {}, remove)));
    }
    $('events').tBodies[0].replaceChildren(events);
    drawDecisions(d);
    const orders = document.createDocumentFragment();
    for (const o of d.orders.slice().reverse().slice(0, 300)) {
      orders.append(el('tr', {}, el('td', { class: 'num' }, when(o.created_at, tz)), el('td', {}, o.kind), el('td', { class: 'num' }, o.count),
        el('td', {}, o.state), el('td', { class: 'num' }, o.attempts), el('td', { class: 'num' }, when(o.delivered_at, tz)), el('td', {}, o.last_error || '')));
    }
    $('orders').tBodies[0].replaceChildren(orders);
    if (fleetMarked !== name) { fleetMarked = name; performance.mark('prewarm:fleet-drawn'); }
  }

  async function control(method, suffix, body) {
    if (view.kind !== 'fleet') return;
    try {
      await api('/v1/fleets/' + encodeURIComponent(view.name) + suffix, method, body);
      await refresh();
    } catch (e) {
      notice(explain(e), true);
    }
  }

  // ---- wiring --------------------------------------------------------------------------------
  function wire() {
    $('token').value = token ? '••••••••' : '';
    $('token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const v = $('token').value.trim();
      if (v && !/^•+$/.test(v)) { token = v; localStorage.setItem(KEY, v); $('token').value = '••••••••'; }
      route();
    });
    $('token-forget').addEventListener('click', () => { token = ''; localStorage.removeItem(KEY); $('token').value = ''; route(); });
    $('filter').addEventListener('input', () => refresh());
    $('hours').addEventListener('change', () => refresh());
    $('decision-filter').addEventListener('change', () => { if (lastFleet) drawDecisions(lastFleet); });
    $('pause').addEventListener('click', () => control('POST', '/pause'));
    $('resume').addEventListener('click', () => control('POST', '/resume'));
    $('unpin').addEventListener('click', () => control('DELETE', '/pin'));
    $('pin').addEventListener('click', () => {
      const gpus = Number($('pin-gpus').value);
      if (!Number.isInteger(gpus) || gpus < 0 || $('pin-gpus').value === '') { notice('Pin needs a whole number of GPUs, 0 or more.', true); return; }
      const until = $('pin-until').value;
      const body = { gpus };
      if (until) {
        const t = localToInstant(until, lastFleet ? lastFleet.fleet.time_zone : 'UTC');
        if (!t) { notice('Pin until needs a date and time.', true); return; }
        body.until = t.toISOString();
      }
      control('PUT', '/pin', body);
    });
    $('event-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const value = Number($('event-value').value);
      const body = { label: $('event-label').value, starts_local: $('event-start').value + ':00', ends_local: $('event-end').value + ':00' };
      body[$('event-kind').value] = value;
      control('POST', '/events', body);
    });
    window.addEventListener('hashchange', route);
    document.addEventListener('visibilitychange', () => { if (!document.hidden) refresh(); });
    schedule();
    route();
  }

  wire();
})();
