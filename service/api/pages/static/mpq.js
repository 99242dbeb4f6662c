// MPQ dashboard: live fragments, sortable tables, confirmations. No dependencies.
"use strict";

// An element with data-live="URL" is refreshed from URL every data-interval ms (2000)
// while the tab is visible. The answer's X-MPQ-Live header says what next: "keep",
// "stop" (nothing on it changes any more) or "reload" (the page itself changed, e.g. a
// job finished and its results appeared).
function live(el) {
  const url = el.dataset.live;
  const every = Number(el.dataset.interval || 2000);
  let timer = null;
  async function tick() {
    timer = null;
    if (document.hidden) { timer = setTimeout(tick, every); return; }
    let response;
    try {
      response = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
    } catch (e) {
      timer = setTimeout(tick, every * 2);
      return;
    }
    if (response.redirected || response.status === 401) { window.location.reload(); return; }
    if (!response.ok) { timer = setTimeout(tick, every * 2); return; }
    const next = response.headers.get("X-MPQ-Live") || "keep";
    if (next === "reload") { window.location.reload(); return; }
    const html = await response.text();
    const kept = new Set(Array.from(el.querySelectorAll("input[type=checkbox]:checked")).map((c) => c.value));
    el.innerHTML = html;
    el.querySelectorAll("input[type=checkbox]").forEach((c) => { if (kept.has(c.value)) c.checked = true; });
    el.dispatchEvent(new CustomEvent("mpq:refreshed", { bubbles: true }));
    if (next !== "stop") timer = setTimeout(tick, every);
  }
  timer = setTimeout(tick, every);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && timer === null) return;
  });
}

// A table with data-sortable sorts by a column when its header is clicked. A cell's
// data-sort value, when present, is what it sorts by (numbers numerically).
function sortable(table) {
  const heads = Array.from(table.tHead ? table.tHead.rows[0].cells : []);
  heads.forEach((th, index) => {
    if (th.querySelector("button, input")) return;
    th.dataset.col = String(index);
    th.tabIndex = 0;
    const go = () => {
      const ascending = th.getAttribute("aria-sort") !== "ascending";
      heads.forEach((h) => h.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const body = table.tBodies[0];
      const rows = Array.from(body.rows).filter((r) => r.cells.length > index);
      const key = (row) => {
        const cell = row.cells[index];
        const raw = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
        const n = Number(raw);
        return raw !== "" && !Number.isNaN(n) ? n : raw.toLowerCase();
      };
      rows.sort((a, b) => {
        const x = key(a), y = key(b);
        if (x === y) return 0;
        if (x === "" || x === "–") return 1;
        if (y === "" || y === "–") return -1;
        const order = typeof x === typeof y ? (x < y ? -1 : 1) : (typeof x === "number" ? -1 : 1);
        return ascending ? order : -order;
      });
      rows.forEach((r) => body.appendChild(r));
    };
    th.addEventListener("click", go);
    th.addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
  });
}

// A form with data-confirm="question" asks before it is sent.
function confirming(form) {
  form.addEventListener("submit", (e) => {
    if (!window.confirm(form.dataset.confirm)) e.preventDefault();
  });
}

// Chart points with data-row="id" highlight the table row of that id on hover.
function linked(svg) {
  svg.addEventListener("mouseover", (e) => {
    const id = e.target.dataset && e.target.dataset.row;
    if (!id) return;
    const row = document.getElementById(id);
    if (row) row.classList.add("highlight");
  });
  svg.addEventListener("mouseout", (e) => {
    const id = e.target.dataset && e.target.dataset.row;
    if (!id) return;
    const row = document.getElementById(id);
    if (row) row.classList.remove("highlight");
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(live);
  document.querySelectorAll("table[data-sortable]").forEach(sortable);
  document.querySelectorAll("form[data-confirm]").forEach(confirming);
  document.querySelectorAll("svg.chart").forEach(linked);
});
