import type { Summary } from './summary.js';

/**
 * The dashboard at /ui/: one self-contained page (no external assets: the mirror may have no
 * internet), no framework. The server embeds the summary of the moment in the page, so the first
 * figures come with it (a screenshot or a slow network never shows empty cards); the page then
 * polls /_hubcache/summary every two seconds, keeps the hit ratio's history, and draws it as an
 * SVG line on a 0-100 % scale over the last four minutes.
 */
export function dashboardHtml(initial: Summary): string {
  return DASHBOARD_HTML.replace('%INITIAL%', () => jsonForScript(initial));
}

/**
 * JSON safe inside a <script> element: `<` (a repository name such as `</script>` must not end the
 * element, nor `<!--` open a comment), and U+2028/U+2029, are written as \u escapes, which
 * JSON.parse reads back as the same characters.
 */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** The page; %INITIAL% becomes the summary at the time it is sent. */
const DASHBOARD_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hubcache</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2430; background: #f6f7f9; }
  h1 { font-size: 20px; margin: 0 0 16px; }
  h1 .label { margin-left: 8px; text-transform: none; }
  .grid { display: grid; grid-template-columns: repeat(5, minmax(150px, 1fr)); gap: 12px; margin-bottom: 12px; }
  .card { background: #fff; border-radius: 8px; padding: 12px 16px; box-shadow: 0 1px 2px #0001; }
  .label { color: #667085; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
  .sub { color: #667085; font-size: 12px; margin-top: 2px; }
  .value { font-size: 24px; font-weight: 600; margin-top: 4px; white-space: nowrap; }
  .bar { height: 8px; background: #e4e7ec; border-radius: 4px; margin-top: 8px; overflow: hidden; }
  .bar > div { height: 100%; background: #2e90fa; width: 0; }
  .panel { background: #fff; border-radius: 8px; box-shadow: 0 1px 2px #0001; padding: 8px 12px; }
  .row { display: grid; grid-template-columns: 3fr 2fr; gap: 12px; }
  svg { width: 100%; height: auto; display: block; }
  svg text { font: 12px system-ui, sans-serif; fill: #667085; }
  svg .grid-line { stroke: #eaecf0; stroke-width: 1; }
  svg .axis { stroke: #98a2b3; stroke-width: 1; }
  table { width: 100%; border-collapse: collapse; }
  td, th { text-align: left; padding: 5px 8px; border-bottom: 1px solid #eaecf0; }
  td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
  .ok { color: #067647; } .bad { color: #b42318; } .warn { color: #b54708; }
</style></head>
<body>
<script type="application/json" id="initial-summary">%INITIAL%</script>
<h1>hubcache <span id="upstream" class="label"></span></h1>
<div class="grid">
  <div class="card"><div class="label">Hit ratio</div><div class="value" id="hit-ratio">loading…</div><div class="sub" id="requests"></div></div>
  <div class="card"><div class="label">Served from cache</div><div class="value" id="bytes-saved">loading…</div><div class="sub" id="bytes-upstream"></div></div>
  <div class="card"><div class="label">Cache size</div><div class="value" id="cache-size">loading…</div><div class="bar"><div id="cache-bar"></div></div><div class="sub" id="cache-bound"></div></div>
  <div class="card"><div class="label">Upstream</div><div class="value" id="upstream-health">loading…</div><div class="sub" id="rate-limit"></div></div>
  <div class="card"><div class="label">Downloads in flight</div><div class="value" id="downloads">loading…</div><div class="sub" id="waiters"></div></div>
  <div class="card"><div class="label">Pushes</div><div class="value" id="pushes">loading…</div><div class="sub" id="pushed-bytes"></div></div>
  <div class="card"><div class="label">Hosted repositories</div><div class="value" id="hosted">loading…</div><div class="sub">pushed here, served from here</div></div>
  <div class="card"><div class="label">Uploads in progress</div><div class="value" id="uploads">loading…</div><div class="sub">blob upload sessions open</div></div>
  <div class="card"><div class="label">Errors</div><div class="value" id="errors">loading…</div><div class="sub" id="errors-by-status"></div></div>
  <div class="card"><div class="label">Evictions</div><div class="value" id="evictions">loading…</div><div class="sub" id="evicted"></div></div>
</div>
<div class="row">
<div class="panel">
<div class="label">Hit ratio since start, sampled every 2 s</div>
<svg id="chart" viewBox="0 0 640 220" role="img" aria-label="hit ratio over the last 4 minutes">
  <g id="y-axis"></g><g id="x-axis"></g>
  <line class="axis" x1="56" y1="10" x2="56" y2="180"/><line class="axis" x1="56" y1="180" x2="630" y2="180"/>
  <text id="y-title" transform="translate(14 95) rotate(-90)" text-anchor="middle">hit ratio (%)</text>
  <text id="x-title" x="343" y="214" text-anchor="middle">time (last 4 min, local clock)</text>
  <polyline id="line" fill="none" stroke="#2e90fa" stroke-width="2" points=""/>
</svg>
</div>
<div class="panel">
<div class="label">Top repositories (served requests)</div>
<table><thead><tr><th>Repository</th><th class="n">Requests</th><th class="n">Bytes</th></tr></thead><tbody id="top"></tbody></table>
</div>
</div>
<script>
const WINDOW_MS = 240000, X0 = 56, X1 = 630, Y0 = 180, Y1 = 10;
const samples = [];
const $ = (id) => document.getElementById(id);
const text = (id, v) => { $(id).textContent = v; };
const bytes = (n) => { const u = ['B','KiB','MiB','GiB','TiB']; let i = 0; while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; } return n.toFixed(i ? 1 : 0) + ' ' + u[i]; };
const svg = (tag, attrs, content) => { const e = document.createElementNS('http://www.w3.org/2000/svg', tag); for (const k in attrs) e.setAttribute(k, attrs[k]); if (content !== undefined) e.textContent = content; return e; };
const clock = (t) => new Date(t).toTimeString().slice(0, 8);
const y = (r) => Y0 - r * (Y0 - Y1);
function axes() {
  const ya = $('y-axis');
  for (const p of [0, 25, 50, 75, 100]) {
    ya.append(svg('line', { class: 'grid-line', x1: X0, x2: X1, y1: y(p / 100), y2: y(p / 100) }));
    ya.append(svg('text', { class: 'y-tick', x: X0 - 6, y: y(p / 100) + 4, 'text-anchor': 'end' }, p + ' %'));
  }
}
function drawTime(now) {
  const xa = $('x-axis');
  xa.replaceChildren();
  for (let m = 4; m >= 0; m--) {
    const x = X1 - (m * 60000 / WINDOW_MS) * (X1 - X0);
    xa.append(svg('line', { class: 'axis', x1: x, x2: x, y1: Y0, y2: Y0 + 4 }));
    xa.append(svg('text', { class: 'x-tick', x: x, y: Y0 + 18, 'text-anchor': m === 0 ? 'end' : 'middle' }, m === 0 ? 'now ' + clock(now) : '−' + m + ' min'));
  }
  const shown = samples.filter((h) => now - h.t <= WINDOW_MS);
  const pts = shown.length === 1 ? [{ t: now - 2000, r: shown[0].r }, shown[0]] : shown;
  $('line').setAttribute('points', pts.map((h) => (X1 - ((now - h.t) / WINDOW_MS) * (X1 - X0)).toFixed(1) + ',' + y(h.r).toFixed(1)).join(' '));
}
function render(s) {
  const now = Date.now();
  text('hit-ratio', s.hitRatio === null ? 'no requests yet' : (s.hitRatio * 100).toFixed(1) + ' %');
  text('requests', s.hits + ' hits of ' + s.requests + ' blob and manifest requests');
  text('bytes-saved', bytes(s.bytesFromCache));
  text('bytes-upstream', bytes(s.bytesFromUpstream) + ' from upstream');
  text('cache-size', bytes(s.cacheBytes));
  text('cache-bound', (s.maxSizeBytes ? 'of ' + bytes(s.maxSizeBytes) : 'unbounded') + ' · ' + s.cacheObjects + ' objects');
  $('cache-bar').style.width = s.maxSizeBytes ? Math.min(100, 100 * s.cacheBytes / s.maxSizeBytes) + '%' : '0';
  const u = s.upstream || { url: '', offline: false, reachable: null, rateLimit: null };
  const h = $('upstream-health');
  h.textContent = u.offline ? 'offline' : u.reachable === null ? 'not contacted' : u.reachable ? 'reachable' : 'unreachable';
  h.className = 'value ' + (u.reachable === false ? 'bad' : 'ok');
  text('upstream', u.url);
  text('rate-limit', u.rateLimit ? u.rateLimit.remaining + ' of ' + u.rateLimit.limit + ' pulls left' : 'no rate limit reported');
  text('downloads', String(s.downloads.inFlight));
  text('waiters', s.downloads.waiters + ' clients waiting on them');
  text('pushes', String(s.pushes.manifests));
  text('pushed-bytes', 'manifests pushed · ' + bytes(s.pushes.bytes) + ' of blobs');
  text('hosted', String(s.hostedRepositories));
  text('uploads', String(s.uploadsInProgress));
  const e = $('errors');
  e.textContent = String(s.errors.total);
  e.className = 'value ' + (s.errors.total > 0 ? 'warn' : 'ok');
  const codes = Object.entries(s.errors.byStatus).map(([c, n]) => c + ': ' + n).join(' · ');
  text('errors-by-status', codes ? 'by status ' + codes : 'no 4xx or 5xx answers');
  text('evictions', String(s.evictions.count));
  const big = $('evicted');
  big.textContent = bytes(s.evictions.bytes) + ' removed' + (s.evictions.tooBig ? ' · ' + s.evictions.tooBig + ' blobs larger than the bound' : '');
  big.className = 'sub' + (s.evictions.tooBig ? ' warn' : '');
  if (s.hitRatio !== null) samples.push({ t: now, r: s.hitRatio });
  while (samples.length && now - samples[0].t > WINDOW_MS) samples.shift();
  drawTime(now);
  $('top').replaceChildren(...s.topRepositories.map((r) => {
    const tr = document.createElement('tr');
    for (const [v, cls] of [[r.repository, ''], [String(r.requests), 'n'], [bytes(r.bytes), 'n']]) {
      const td = document.createElement('td'); td.textContent = v; if (cls) td.className = cls; tr.append(td);
    }
    return tr;
  }));
  document.body.dataset.samples = String(samples.length);
  document.body.dataset.ready = 'true';
}
async function refresh() {
  try {
    const res = await fetch('/_hubcache/summary');
    if (res.ok) render(await res.json());
  } catch {}
}
axes();
try { render(JSON.parse($('initial-summary').textContent)); } catch {}
setInterval(refresh, 2000);
</script>
</body></html>`;
