// The Tidings dashboard's script: live fragments, the overview's charts (uPlot, served from
// /dashboard/static/), the template preview. Nothing is fetched from another origin.
"use strict";
function apply(data) {
  for (const [id, html] of Object.entries(data.replace || {})) {
    const el = document.getElementById(id);
    if (el) el.innerHTML = html; // fragments rendered (and escaped) by the server
  }
}
async function load(url) {
  const answer = await fetch(url, {credentials: "same-origin", cache: "no-store"});
  if (answer.status === 401) { location.href = "/dashboard/login"; return null; }
  return answer.ok ? answer.json() : null;
}

// --- charts: one uPlot per figure[data-chart], fixed size (no layout shift) ---
const COLOURS = {
  pending: "#ca8a04", scheduled: "#a855f7", queued: "#f59e0b", delivered: "#16a34a", failed: "#dc2626",
  skipped: "#6b7280", cancelled: "#0891b2", email: "#2563eb", push: "#db2777",
  p50: "#16a34a", p95: "#ca8a04", p99: "#dc2626", retries: "#ca8a04", "dead letters": "#dc2626",
};
const SPARE = ["#2563eb", "#16a34a", "#db2777", "#ca8a04", "#7c3aed", "#0891b2", "#dc2626", "#65a30d"];
const charts = {};
window.tidingsCharts = charts; // read by the browser tests
function seriesOf(key, data) {
  const groups = (data.charts || {})[key] || {};
  return Object.keys(groups).filter((name) => name !== "count");
}
function draw(figure, data) {
  const key = figure.dataset.chart;
  const names = seriesOf(key, data);
  const values = [data.minutes].concat(names.map((n) => data.charts[key][n]));
  const shape = names.join("|");
  const existing = charts[key];
  if (existing && existing.shape === shape) { existing.plot.setData(values); return; }
  if (existing) existing.plot.destroy();
  const box = figure.querySelector(".plot");
  const options = {
    width: Math.max(240, box.clientWidth), height: 200,
    series: [{}].concat(names.map((n, i) => ({
      label: n, stroke: COLOURS[n] || SPARE[i % SPARE.length], width: 2, spanGaps: false,
      // Dots where a series has few values (a lone minute draws no line).
      points: {size: 5, show: (u, si) => u.data[si].filter((v) => v != null).length < 15},
    }))),
    axes: [{stroke: "#888"}, {stroke: "#888", size: 50}],
    scales: {x: {time: true}},
    legend: {live: false},
  };
  charts[key] = {shape: shape, plot: new uPlot(options, values, box)};
}
function drawAll(data) {
  if (typeof uPlot === "undefined") return;
  document.querySelectorAll("figure[data-chart]").forEach((figure) => draw(figure, data));
}
function resize() {
  for (const [key, chart] of Object.entries(charts)) {
    const box = document.querySelector(`#chart-${key} .plot`);
    if (box) chart.plot.setSize({width: Math.max(240, box.clientWidth), height: 200});
  }
}

function poll(el) {
  const tick = async () => {
    try {
      const data = await load(el.dataset.poll);
      if (data) { apply(data); if (el.dataset.charts) drawAll(data.data); }
    } catch (e) { /* next tick */ }
    setTimeout(tick, 2000);
  };
  setTimeout(tick, 2000);
}
function preview(form) {
  let timer = null;
  const run = async () => {
    const query = new URLSearchParams(new FormData(form));
    try { const data = await load(form.dataset.preview + "?" + query); if (data) apply(data); } catch (e) { /* keep the last one */ }
  };
  form.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(run, 300); });
  form.addEventListener("submit", (event) => { event.preventDefault(); run(); });
}
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-poll]").forEach(poll);
  document.querySelectorAll("form[data-preview]").forEach(preview);
  const first = document.getElementById("overview-data");
  if (first) {
    const start = () => drawAll(JSON.parse(first.textContent));
    if (typeof uPlot === "undefined") window.addEventListener("load", start); else start();
    let timer = null;
    window.addEventListener("resize", () => { clearTimeout(timer); timer = setTimeout(resize, 150); });
  }
});
