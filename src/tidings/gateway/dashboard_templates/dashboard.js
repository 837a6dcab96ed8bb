// The Tidings dashboard's only script: live fragments and the template preview.
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
function poll(el) {
  const tick = async () => {
    try { const data = await load(el.dataset.poll); if (data) apply(data); } catch (e) { /* next tick */ }
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
});
