// The node's page: polls /api/status every second, draws each pipeline's chart by hand
// on a canvas, refreshes camera views a few times a second while the page is visible,
// and reconnects by itself (backing off to 5 s) when the daemon restarts.
"use strict";

const POLL_MS = 1000;
const FRAME_MS = 250;
const EVENTS_MS = 5000;
const MAX_BACKOFF_MS = 5000;

const state = {
  since: 0, started: null, csrf: null, failures: 0,
  charts: {},   // pipeline -> [[unix_s, value], ...]
  what: {},     // pipeline -> "anomaly score" | "detections" | ...
  spanS: 3600, cards: {}, cameras: new Set(), viewers: {}, nowS: 0,
};

const $ = (id) => document.getElementById(id);

function fmt(value, unit = "", digits = 1) {
  if (value === null || value === undefined) return "n/a";
  if (typeof value === "number") return value.toFixed(digits) + unit;
  return String(value) + unit;
}

function duration(s) {
  if (s === null || s === undefined) return "n/a";
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${Math.floor(s % 60)} s`;
  return `${s.toFixed(0)} s`;
}

function setText(el, text) { if (el.textContent !== text) el.textContent = text; }

function setConn(ok) {
  const el = $("conn");
  el.dataset.state = ok ? "live" : "reconnecting";
  setText(el, ok ? "live" : "reconnecting…");
}

async function poll() {
  try {
    const r = await fetch(`/api/status?since=${state.since}`,
                          { cache: "no-store", credentials: "same-origin" });
    $("auth").hidden = r.status !== 401;
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const d = await r.json();
    if (state.started !== d.web.started_unix_s) {
      // A new daemon process: its history starts over, and so do our charts.
      const fresh = state.started === null;
      state.started = d.web.started_unix_s;
      state.charts = {};
      state.since = 0;
      if (!fresh) { setTimeout(poll, 0); return; }
    }
    state.failures = 0;
    render(d);
    setConn(true);
  } catch (e) {
    state.failures += 1;
    setConn(false);
  }
  const wait = state.failures ? Math.min(MAX_BACKOFF_MS, POLL_MS * state.failures) : POLL_MS;
  setTimeout(poll, wait);
}

function render(d) {
  const s = d.status, h = s.health || {};
  state.csrf = d.web.csrf;
  state.nowS = d.now_unix_s;
  state.spanS = d.web.chart_span_s;
  setText($("node"), s.node);
  document.title = `${s.node} · edge-runtime`;
  setText($("uptime"), duration(s.uptime_s));
  const scores = Object.values(s.pipelines || {}).map((p) => p.health)
    .filter((v) => typeof v === "number");
  setText($("health"), scores.length ? `${Math.min(...scores).toFixed(0)}/100` : "n/a");
  setText($("cpu"), fmt(h.cpu_percent, " %"));
  setText($("temp"), fmt(h.temperature_c, " °C"));
  setText($("throttled"), h.throttled === null || h.throttled === undefined ? "n/a"
    : (h.throttled ? "YES" : "no") + (h.under_voltage ? ", under voltage" : ""));
  setText($("memory"), fmt(h.memory_percent, " %"));
  setText($("rss"), fmt(h.rss_mb, " MB"));
  setText($("generation"), `generation ${s.generation}, ${s.reloads} reloads` +
    (s.last_reload_error ? ` (last refused: ${s.last_reload_error})` : ""));
  const alarms = Object.entries(s.health_rules || {}).filter(([, r]) => r.active)
    .map(([k]) => k);
  $("alarms").hidden = !alarms.length;
  setText($("alarms"), alarms.length ? `health alarms: ${alarms.join(", ")}` : "");
  $("actions").hidden = !d.web.actions;

  for (const [name, pts] of Object.entries(d.chart.points)) {
    const ring = state.charts[name] || (state.charts[name] = []);
    for (const p of pts) if (!ring.length || p[0] > ring[ring.length - 1][0]) ring.push(p);
    while (ring.length && ring[0][0] < state.nowS - state.spanS) ring.shift();
    state.since = Math.max(state.since, ring.length ? ring[ring.length - 1][0] : 0);
  }
  state.what = d.chart.what;
  state.cameras = new Set(d.cameras);
  const names = Object.keys(s.pipelines || {});
  for (const name of Object.keys(state.cards)) {
    if (!names.includes(name)) { state.cards[name].remove(); delete state.cards[name]; }
  }
  for (const name of names) renderPipeline(name, s.pipelines[name]);
  renderUpstream(s.upstream);
  renderPeers(s.mesh && s.mesh.peers);
}

function card(name) {
  if (state.cards[name]) return state.cards[name];
  const node = $("pipeline-template").content.firstElementChild.cloneNode(true);
  node.dataset.pipeline = name;
  $("pipelines").appendChild(node);
  state.cards[name] = node;
  return node;
}

function field(el, name) { return el.querySelector(`[data-field="${name}"]`); }

function renderPipeline(name, p) {
  const el = card(name);
  const samp = p.sampling || {}, lat = p.latency_ms || {}, src = p.source_stats || {};
  setText(field(el, "name"), name);
  const badge = field(el, "source_state");
  badge.dataset.state = p.source_state || "";
  setText(badge, p.source_state === "up" ? "source up"
    : `source ${String(p.source_state || "?").toUpperCase()}`);
  el.classList.toggle("stale", !!p.stale);
  setText(field(el, "sub"), `${p.source} → ${p.model || "no model"}`);
  setText(field(el, "age"), p.last_sample_age_s === null ? "no sample yet"
    : `${fmt(p.last_sample_age_s, " s", 2)} ago`);
  setText(field(el, "rate"), `${fmt(samp.rate_hz, " Hz", 2)} [${samp.min_rate_hz}–${samp.max_rate_hz}]`);
  setText(field(el, "ipm"), p.inferences_per_s === null ? "0" : fmt(p.inferences_per_s * 60, "", 0));
  setText(field(el, "latency"), `${fmt(lat.p50, "", 2)} / ${fmt(lat.p99, " ms", 2)}`);
  setText(field(el, "dropped"), String(src.dropped ?? 0));
  setText(field(el, "health"), p.health === null ? "n/a" : `${fmt(p.health, "", 0)}/100`);
  const active = Object.entries(p.rules || {}).filter(([, r]) => r.active).map(([k]) => k);
  setText(field(el, "rules"), active.length ? active.join(", ") : "none");
  const last = Object.entries(p.last_result || {})
    .map(([k, v]) => `${k} ${typeof v === "number" ? +v.toFixed(3) : v}`).join(", ");
  setText(field(el, "last"), last || "none yet");
  const err = field(el, "error");
  const message = p.stale ? (src.last_error || p.last_error) : null;
  err.hidden = !message;
  setText(err, message ? `source: ${message}` : "");
  drawChart(el.querySelector("canvas.chart"), state.charts[name] || [], state.what[name] || "");
  setText(field(el, "chart-caption"), `${state.what[name] || "no values yet"}, up to the last ` +
    `${Math.round(state.spanS / 60)} min`);
  const live = el.querySelector(".live-box");
  live.hidden = !state.cameras.has(name);
  if (state.cameras.has(name)) watch(name, live.querySelector("img.live"));
}

function drawChart(canvas, points, what) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 480, h = canvas.clientHeight || 160;
  if (canvas.width !== Math.round(w * ratio)) {
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
  }
  canvas.dataset.points = String(points.length);
  canvas.dataset.last = points.length ? String(points[points.length - 1][1]) : "";
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  const left = 40, right = 6, top = 8, bottom = 18;
  // Up to the last hour: a young daemon's points fill the width, not its last minute.
  const t1 = state.nowS;
  const first = points.length ? points[0][0] : t1;
  const t0 = t1 - Math.min(state.spanS, Math.max(60, t1 - first));
  let lo = Infinity, hi = -Infinity;
  for (const [, v] of points) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!points.length) { lo = 0; hi = 1; }
  if (what === "detections" || what.endsWith("score")) lo = Math.min(lo, 0);
  if (hi - lo < 1e-9) { hi = lo + 1; }
  const x = (t) => left + (w - left - right) * (t - t0) / (t1 - t0);
  const y = (v) => top + (h - top - bottom) * (1 - (v - lo) / (hi - lo));
  g.strokeStyle = "#ccd"; g.fillStyle = "#667"; g.lineWidth = 1;
  g.font = "10px system-ui, sans-serif";
  g.beginPath();
  for (const v of [lo, (lo + hi) / 2, hi]) { g.moveTo(left, y(v)); g.lineTo(w - right, y(v)); }
  g.stroke();
  g.textAlign = "right";
  for (const v of [lo, hi]) g.fillText(+v.toPrecision(3) + "", left - 4, y(v) + 3);
  g.textAlign = "center";
  for (let i = 0; i <= 4; i += 1) {
    const ago = (t1 - t0) * i / 4, t = t1 - ago;
    const label = !i ? "now" : ago >= 120 ? `-${Math.round(ago / 60)} min` : `-${Math.round(ago)} s`;
    g.textAlign = i ? (i === 4 ? "left" : "center") : "right";
    g.fillText(label, x(t), h - 4);
  }
  if (!points.length) return;
  g.strokeStyle = "#2b6cb0"; g.lineWidth = 1.5;
  g.beginPath();
  points.forEach(([t, v], i) => (i ? g.lineTo(x(t), y(v)) : g.moveTo(x(t), y(v))));
  g.stroke();
  const [tl, vl] = points[points.length - 1];
  g.fillStyle = "#2b6cb0";
  g.beginPath(); g.arc(x(tl), y(vl), 2.5, 0, 2 * Math.PI); g.fill();
}

// One loop per camera pipeline: fetch the next JPEG when the last one is shown, only
// while the page is visible, so an unwatched node encodes nothing.
function watch(name, img) {
  if (state.viewers[name]) return;
  state.viewers[name] = true;
  let url = null;
  const next = async () => {
    if (!state.cameras.has(name) || !state.cards[name]) { state.viewers[name] = false; return; }
    if (document.hidden) { setTimeout(next, FRAME_MS * 4); return; }
    try {
      const r = await fetch(`/api/frame/${encodeURIComponent(name)}.jpg`,
                            { cache: "no-store", credentials: "same-origin" });
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      const key = r.headers.get("X-Frame-Key") || "";
      if (key !== img.dataset.key) {
        const blob = await r.blob();
        const fresh = URL.createObjectURL(blob);
        img.src = fresh;
        if (url) URL.revokeObjectURL(url);
        url = fresh;
        img.dataset.key = key;
        img.dataset.frames = String(+(img.dataset.frames || 0) + 1);
      }
      setTimeout(next, FRAME_MS);
    } catch (e) {
      setTimeout(next, FRAME_MS * 4);
    }
  };
  next();
}

function cell(row, text) { const td = document.createElement("td"); td.textContent = text; row.appendChild(td); }

function renderUpstream(up) {
  const sinks = (up && up.sinks) || {};
  $("upstream").hidden = !up;
  if (!up) return;
  const body = $("sinks");
  body.replaceChildren();
  for (const [name, s] of Object.entries(sinks)) {
    const row = document.createElement("tr");
    for (const v of [name, s.state, s.backlog ?? 0, s.delivered ?? 0, s.last_error || ""]) cell(row, String(v));
    body.appendChild(row);
  }
  const box = up.outbox || {};
  setText($("outbox"), `outbox: ${box.rows ?? 0} messages, ${fmt((box.stored_bytes || 0) / 1e6, " MB", 2)}`);
}

function renderPeers(peers) {
  $("peers").hidden = !peers || !Object.keys(peers).length;
  if (!peers) return;
  const body = $("peer-rows");
  body.replaceChildren();
  for (const [name, p] of Object.entries(peers)) {
    const row = document.createElement("tr");
    const models = (p.models || []).join(", ");
    for (const v of [name, fmt(p.rtt_ms, " ms", 1), p.state || "", p.trust || "", models]) {
      cell(row, String(v));
    }
    body.appendChild(row);
  }
}

async function pollEvents() {
  try {
    const r = await fetch("/api/events", { cache: "no-store", credentials: "same-origin" });
    if (r.ok) renderEvents((await r.json()).events);
  } catch (e) { /* the status poll shows the connection state */ }
  setTimeout(pollEvents, EVENTS_MS);
}

function renderEvents(events) {
  const list = $("events");
  $("events-none").hidden = events.length > 0;
  const key = events.map((e) => e.id).join();
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  list.replaceChildren();
  for (const e of events) {
    const li = document.createElement("li");
    const when = new Date(e.ts_s * 1000).toLocaleTimeString();
    li.textContent = `${when} ${e.pipeline || "node"}: ${e.type} ${e.name} ${e.state}`;
    if (e.snapshot) {
      const img = document.createElement("img");
      img.loading = "lazy";
      img.alt = `snapshot of ${e.name}`;
      img.src = `/api/snapshot/${encodeURIComponent(e.snapshot)}`;
      li.appendChild(img);
    }
    list.appendChild(li);
  }
}

async function reload() {
  const out = $("action-result");
  try {
    const r = await fetch("/api/actions/reload", {
      method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": state.csrf || "" },
    });
    const d = await r.json();
    out.textContent = d.ok ? "reload requested" : `refused: ${d.error}`;
  } catch (e) {
    out.textContent = "the node did not answer";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("reload").addEventListener("click", reload);
  poll();
  pollEvents();
});
