"""``/dashboard``: one self-contained HTML page (no CDN, no external file) that polls ``/v1/stats``.

It draws, on canvases with plain JavaScript: the request rate, the latency percentiles (p50, p95,
p99 over the last minute) and the drift score against its threshold, plus the model's version, the
queue depth, the error count, and the last inputs with their nearest training examples (cosine
similarity of the embeddings; the example's index, label and, for text, its start). With an API
key, open ``/dashboard#key=KEY``: the page sends it with every poll (the fragment never reaches the
server's logs).
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>selfsup serve</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
 h1 { font-size: 1.3em; margin: 0 0 .3em; } .meta { color: #555; margin-bottom: 1em; }
 .grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 1em; }
 .card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: .8em; }
 .card h2 { font-size: 1em; margin: 0 0 .4em; } canvas { width: 100%; height: 180px; }
 table { border-collapse: collapse; width: 100%; font-size: 12px; }
 td, th { text-align: left; border-bottom: 1px solid #eee; padding: 2px 4px; vertical-align: top; }
 .alert { color: #b00020; font-weight: bold; } .ok { color: #1b7f3b; } .legend span { margin-right: 1em; }
</style></head>
<body>
<h1>selfsup serve</h1>
<div class="meta">model <b id="version">?</b> · queue <b id="queue">0</b> · errors (1 min) <b id="errors">0</b>
 · drift <b id="drift">n/a</b> · updated <span id="updated">never</span></div>
<div class="grid">
 <div class="card"><h2>Requests per second</h2><canvas id="rate" width="600" height="180"></canvas></div>
 <div class="card"><h2>Latency (ms, last minute)</h2>
  <div class="legend"><span style="color:#1f77b4">p50</span><span style="color:#ff7f0e">p95</span>
  <span style="color:#d62728">p99</span></div><canvas id="latency" width="600" height="180"></canvas></div>
 <div class="card"><h2>Drift score (dashed: threshold)</h2><canvas id="driftchart" width="600" height="180"></canvas>
 </div>
 <div class="card"><h2>Recent inputs and their nearest training examples</h2>
  <table id="recent"><thead><tr><th>input</th><th>nearest training example</th><th>cosine</th></tr></thead>
  <tbody></tbody></table></div>
</div>
<script>
"use strict";
const key = new URLSearchParams(location.hash.slice(1)).get("key");
const history = { t: [], rate: [], p50: [], p95: [], p99: [] };
const MAX = 300;
function push(name, v) { history[name].push(v); if (history[name].length > MAX) history[name].shift(); }
function draw(id, series, colors, opts) {
  const c = document.getElementById(id), g = c.getContext("2d"), W = c.width, H = c.height, P = 30;
  g.clearRect(0, 0, W, H);
  const all = series.flat().filter(v => v !== null && isFinite(v)).concat(opts && opts.line ? [opts.line] : []);
  const top = Math.max(1e-9, ...all) * 1.1;
  g.strokeStyle = "#ccc"; g.beginPath(); g.moveTo(P, 5); g.lineTo(P, H - P); g.lineTo(W - 5, H - P); g.stroke();
  g.fillStyle = "#555"; g.font = "11px sans-serif"; g.fillText(top.toPrecision(3), 2, 12); g.fillText("0", 2, H - P);
  series.forEach((s, k) => {
    g.strokeStyle = colors[k]; g.lineWidth = 2; g.beginPath(); let started = false;
    s.forEach((v, i) => {
      if (v === null || !isFinite(v)) return;
      const x = P + (W - P - 5) * (s.length > 1 ? i / (s.length - 1) : 1), y = (H - P) - (H - P - 5) * v / top;
      if (started) g.lineTo(x, y); else { g.moveTo(x, y); started = true; }
      if (s.length === 1) g.arc(x, y, 2, 0, 6.3);
    });
    g.stroke();
  });
  if (opts && opts.line) {
    const y = (H - P) - (H - P - 5) * opts.line / top;
    g.setLineDash([5, 4]); g.strokeStyle = "#b00020"; g.beginPath(); g.moveTo(P, y); g.lineTo(W - 5, y); g.stroke();
    g.setLineDash([]);
  }
  c.dataset.points = String(series.reduce((n, s) => n + s.filter(v => v !== null).length, 0));
}
async function poll() {
  try {
    const r = await fetch("/v1/stats", { headers: key ? { "X-API-Key": key } : {} });
    if (!r.ok) throw new Error(r.status);
    const s = await r.json(), q = s.requests;
    document.getElementById("version").textContent = s.version || "loading";
    document.getElementById("queue").textContent = s.queue;
    document.getElementById("errors").textContent = q.errors;
    document.getElementById("updated").textContent = new Date(s.time * 1000).toLocaleTimeString();
    push("rate", q.rate); ["p50", "p95", "p99"].forEach(p => push(p, q[p] === null ? null : q[p] * 1000));
    draw("rate", [history.rate], ["#2ca02c"]);
    draw("latency", [history.p50, history.p95, history.p99], ["#1f77b4", "#ff7f0e", "#d62728"]);
    const d = document.getElementById("drift");
    if (s.drift) {
      const scores = s.drift.history.map(h => h[1]);
      draw("driftchart", [scores], ["#9467bd"], { line: s.drift.threshold });
      d.textContent = s.drift.score === null ? "warming up" : s.drift.score.toFixed(3) +
        (s.drift.alert ? " ALERT" : " ok");
      d.className = s.drift.alert ? "alert" : "ok";
    } else { d.textContent = "not scored"; }
    const body = document.querySelector("#recent tbody");
    body.replaceChildren(...(s.recent || []).slice().reverse().map(r => {
      const tr = document.createElement("tr"), n = r.nearest;
      const cells = [r.input, n ? "#" + n.index + (n.label !== null ? " (" + n.label + ")" : "") +
        (n.text ? " " + n.text : "") : "no training data at hand", n ? n.similarity.toFixed(3) : ""];
      cells.forEach(text => { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); });
      return tr;
    }));
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
  } catch (e) { document.getElementById("updated").textContent = "error: " + e.message; }
}
poll(); setInterval(poll, 1000);
</script></body></html>
"""
