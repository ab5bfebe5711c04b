/**
 * The dashboard at /ui/: one static page, no framework. It polls /_hubcache/summary every two
 * seconds, keeps the hit ratio's history in the page, and draws it as an SVG line.
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hubcache</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2430; background: #f6f7f9; }
  h1 { font-size: 20px; margin: 0 0 16px; }
  .grid { display: grid; grid-template-columns: repeat(4, minmax(160px, 1fr)); gap: 12px; }
  .card { background: #fff; border-radius: 8px; padding: 12px 16px; box-shadow: 0 1px 2px #0001; }
  .label { color: #667085; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
  .value { font-size: 26px; font-weight: 600; margin-top: 4px; }
  .bar { height: 8px; background: #e4e7ec; border-radius: 4px; margin-top: 8px; overflow: hidden; }
  .bar > div { height: 100%; background: #2e90fa; width: 0; }
  svg { width: 100%; height: 160px; background: #fff; border-radius: 8px; margin-top: 12px; }
  table { width: 100%; border-collapse: collapse; margin-top: 12px; background: #fff; border-radius: 8px; }
  td, th { text-align: left; padding: 6px 12px; border-bottom: 1px solid #eaecf0; }
  .ok { color: #067647; } .bad { color: #b42318; }
</style></head>
<body>
<h1>hubcache <span id="upstream" class="label"></span></h1>
<div class="grid">
  <div class="card"><div class="label">Hit ratio</div><div class="value" id="hit-ratio">–</div><div class="label" id="requests"></div></div>
  <div class="card"><div class="label">Bytes served from cache</div><div class="value" id="bytes-saved">–</div><div class="label" id="bytes-upstream"></div></div>
  <div class="card"><div class="label">Cache size</div><div class="value" id="cache-size">–</div><div class="bar"><div id="cache-bar"></div></div><div class="label" id="cache-bound"></div></div>
  <div class="card"><div class="label">Upstream</div><div class="value" id="upstream-health">–</div><div class="label" id="rate-limit"></div></div>
</div>
<svg id="chart" viewBox="0 0 600 160" preserveAspectRatio="none"><polyline id="line" fill="none" stroke="#2e90fa" stroke-width="2" points=""/></svg>
<div class="label">Hit ratio over time (every 2 s)</div>
<table><thead><tr><th>Repository</th><th>Requests</th><th>Bytes</th></tr></thead><tbody id="top"></tbody></table>
<script>
const history = [];
const bytes = (n) => { const u = ['B','KiB','MiB','GiB','TiB']; let i = 0; while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; } return n.toFixed(i ? 1 : 0) + ' ' + u[i]; };
const text = (id, v) => { document.getElementById(id).textContent = v; };
async function refresh() {
  const s = await (await fetch('/_hubcache/summary')).json();
  text('hit-ratio', s.hitRatio === null ? '–' : (s.hitRatio * 100).toFixed(1) + ' %');
  text('requests', s.hits + ' hits of ' + s.requests + ' requests');
  text('bytes-saved', bytes(s.bytesFromCache));
  text('bytes-upstream', bytes(s.bytesFromUpstream) + ' from upstream');
  text('cache-size', bytes(s.cacheBytes));
  text('cache-bound', s.maxSizeBytes ? 'of ' + bytes(s.maxSizeBytes) + ' · ' + s.cacheObjects + ' objects' : 'unbounded · ' + s.cacheObjects + ' objects');
  document.getElementById('cache-bar').style.width = s.maxSizeBytes ? Math.min(100, 100 * s.cacheBytes / s.maxSizeBytes) + '%' : '0';
  const h = document.getElementById('upstream-health');
  h.textContent = s.upstream.offline ? 'offline' : s.upstream.reachable === null ? 'not contacted' : s.upstream.reachable ? 'reachable' : 'unreachable';
  h.className = 'value ' + (s.upstream.reachable === false ? 'bad' : 'ok');
  text('upstream', s.upstream.url);
  text('rate-limit', s.upstream.rateLimit ? s.upstream.rateLimit.remaining + ' of ' + s.upstream.rateLimit.limit + ' pulls left' : 'no rate limit reported');
  if (s.hitRatio !== null) history.push(s.hitRatio);
  if (history.length > 120) history.shift();
  const series = history.length === 1 ? [history[0], history[0]] : history;
  document.getElementById('line').setAttribute('points', series.map((r, i) => (i * 600 / Math.max(1, series.length - 1)).toFixed(1) + ',' + (155 - r * 150).toFixed(1)).join(' '));
  document.getElementById('top').innerHTML = s.topRepositories.map((r) => '<tr><td>' + r.repository + '</td><td>' + r.requests + '</td><td>' + bytes(r.bytes) + '</td></tr>').join('');
  document.body.dataset.ready = 'true';
}
refresh(); setInterval(refresh, 2000);
</script>
</body></html>`;
