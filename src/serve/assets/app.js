// mnist-mlp serve: the runs, their curves, the sweeps, and a drawing pad. Plain JavaScript, no libraries:
// the page works offline. The numbers come from the JSON API (docs/serve.md); the drawing is
// sent as PNG and prepared on the server by the same code as `mnist-mlp predict`.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#2f6fde", "#d9480f", "#2b8a3e", "#ae3ec9", "#e67700", "#0c8599", "#c2255c", "#5c940d"];
const fmt = (x, digits = 4) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
// Numbers for people: four significant digits (0.9440000000000001 → 0.944); the API keeps them exact.
const human = (v) => (typeof v === "number" && Number.isFinite(v) ? String(Number(v.toPrecision(4))) : String(v));
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// ---- charts: inline SVG, several series on one pair of axes ----
function chart(el, series, { yMin = null, yMax = null } = {}) {
  const W = 480, H = 260, L = 52, R = 12, T = 10, B = 30;
  const points = series.flatMap((s) => s.values.map((y, i) => [i + 1, y])).filter((p) => Number.isFinite(p[1]));
  if (!points.length) { el.innerHTML = '<p class="hint">no epoch recorded yet</p>'; return; }
  const xMax = Math.max(2, ...points.map((p) => p[0]));
  let lo = yMin ?? Math.min(...points.map((p) => p[1])), hi = yMax ?? Math.max(...points.map((p) => p[1]));
  if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
  const pad = (hi - lo) * 0.05; lo -= yMin === null ? pad : 0; hi += yMax === null ? pad : 0;
  const x = (v) => L + ((v - 1) / (xMax - 1)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  let svg = `<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-size="11" fill="#667085">`;
  // Ticks at round values (1, 2, 2.5 or 5 times a power of ten), about four of them.
  const rough = (hi - lo) / 4, power = 10 ** Math.floor(Math.log10(rough));
  const m = [1, 2, 2.5, 5, 10].find((f) => f * power >= rough), tick = m * power;
  const decimals = Math.max(0, -Math.floor(Math.log10(tick) + 1e-9) + (m === 2.5 ? 1 : 0));
  for (let k = Math.ceil(lo / tick - 1e-9); k * tick <= hi + 1e-9; k++) {
    const v = k * tick;
    svg += `<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#eef1f6"/>`;
    svg += `<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end" class="tick">${v.toFixed(decimals)}</text>`;
  }
  const step = Math.max(1, Math.ceil(xMax / 10));
  for (let e = 1; e <= xMax; e += step) svg += `<text x="${x(e)}" y="${H - 10}" text-anchor="middle">${e}</text>`;
  svg += `<text x="${L - 6}" y="${H - 10}" text-anchor="end">epoch</text>`;
  for (const s of series) {
    const pts = s.values.map((v, i) => `${x(i + 1)},${y(v)}`).join(" ");
    const dash = s.dashed ? ' stroke-dasharray="5 4"' : "";
    svg += `<polyline points="${pts}" fill="none" stroke="${s.color}" stroke-width="2"${dash}/>`;
    s.values.forEach((v, i) => { svg += `<circle cx="${x(i + 1)}" cy="${y(v)}" r="2.5" fill="${s.color}"><title>${esc(s.label)} epoch ${i + 1}: ${human(v)}</title></circle>`; });
  }
  const legend = series.filter((s) => !s.dashed || !series.some((o) => o.label === s.label && !o.dashed));
  el.innerHTML = svg + "</svg>" + '<div class="legend">' +
    legend.map((s) => `<span><i data-color="${esc(s.color)}"></i>${esc(s.label)}</span>`).join("") + "</div>";
  // Colours set through the DOM: the page's Content-Security-Policy refuses inline styles.
  for (const swatch of el.querySelectorAll(".legend i")) swatch.style.background = swatch.dataset.color;
}

// ---- the runs table and the compare view ----
const ticked = new Set();
const histories = new Map();
let runsTimer = null;

async function showRuns() {
  $("runs-view").hidden = false;
  $("where").textContent = "runs";
  let runs;
  try { runs = await getJson("/api/runs"); } catch (e) { $("status-line").textContent = e.message; return; }
  $("status-line").textContent = `updated ${new Date().toLocaleTimeString()}`;
  $("no-runs").hidden = runs.length > 0;
  showSweeps();
  if (!ticked.size) runs.slice(0, 3).forEach((r) => ticked.add(r.name));
  $("runs-table").tBodies[0].innerHTML = runs.map((r) => `<tr>
    <td><input type="checkbox" data-run="${esc(r.name)}" ${ticked.has(r.name) ? "checked" : ""}></td>
    <td><a href="/runs/${encodeURIComponent(r.name)}">${esc(r.name)}</a></td>
    <td>${esc((r.started || "").replace("T", " ").replace("Z", ""))}</td>
    <td><span class="status ${esc(r.status)}" title="${esc(r.error || "")}">${esc(r.status)}</span></td>
    <td>${esc(r.epochs_done ?? "?")}/${esc(r.epochs_planned ?? "?")}</td>
    <td>${esc(fmt(r.val_accuracy))}</td><td>${esc(fmt(r.best_val_accuracy))}</td><td>${esc(r.best_epoch ?? "–")}</td></tr>`).join("");
  for (const box of document.querySelectorAll("#runs-table input[type=checkbox]")) {
    box.onchange = () => { box.checked ? ticked.add(box.dataset.run) : ticked.delete(box.dataset.run); compare(runs); };
  }
  // A live run's history changes every epoch: fetch it again; finished ones once.
  for (const r of runs) if (r.live) histories.delete(r.name);
  await compare(runs);
  clearTimeout(runsTimer);
  runsTimer = setTimeout(showRuns, runs.some((r) => r.live) ? 2000 : 5000);
}

async function compare(runs) {
  const chosen = runs.filter((r) => ticked.has(r.name) && r.status !== "unreadable");
  await Promise.all(chosen.filter((r) => !histories.has(r.name)).map(async (r) => {
    try { histories.set(r.name, (await getJson(`/api/runs/${encodeURIComponent(r.name)}`)).history); } catch (e) { /* shown as missing */ }
  }));
  const loss = [], acc = [];
  chosen.forEach((r, i) => {
    const h = histories.get(r.name); if (!h) return;
    const color = COLORS[i % COLORS.length];
    loss.push({ label: r.name, values: h.loss, color }, { label: r.name, values: h.val_loss, color, dashed: true });
    acc.push({ label: r.name, values: h.val_accuracy, color });
  });
  chart($("compare-loss"), loss);
  chart($("compare-acc"), acc);
}

// The sweeps under the runs: each links to its own page.
async function showSweeps() {
  let sweeps;
  try { sweeps = await getJson("/api/sweeps"); } catch (e) { return; }
  $("sweeps-part").hidden = !sweeps.length;
  $("sweeps-table").tBodies[0].innerHTML = sweeps.map((w) => {
    const link = `<a href="/sweeps/${encodeURIComponent(w.name)}">${esc(w.name)}</a>`;
    if (w.status === "unreadable") return `<tr><td>${link}</td><td colspan="6"><span class="status unreadable">unreadable</span> ${esc(w.error)}</td></tr>`;
    const states = Object.entries(w.states).map(([state, n]) => `${n} ${state}`).join(", ");
    return `<tr><td>${link}</td><td>${esc(w.trials)}</td><td class="text">${esc(w.method)}${w.halving ? ", halving" : ""}</td>
      <td>${esc(w.epochs)}</td><td class="text">${esc(states)}</td><td class="text">${esc(w.best_trial ?? "–")}</td><td>${esc(fmt(w.best_val_accuracy))}</td></tr>`;
  }).join("");
}

// ---- one sweep: its trials as a sortable table, the chosen trials' curves overlaid ----
// `sweepPage` is read by the browser test (tests/browser.rs): the sort and the chosen trials.
const sweepPage = window.mnistSweep = { name: null, sort: { key: "val_accuracy", desc: true }, chosen: null, data: null, text: null };
let sweepTimer = null;
const METRICS = ["loss", "accuracy", "val_loss", "val_accuracy"];
const settingText = (v) => (v === undefined ? "" : Array.isArray(v) ? v.map(settingText).join(",") : human(v));

// The table's columns: each with its key, header, value to sort by and text to show.
function sweepColumns(varied) {
  return [
    { key: "name", label: "trial", text: true, value: (t) => t.name },
    ...varied.map((k) => ({ key: `setting:${k}`, label: k.split(".").pop(), text: true, value: (t) => t.settings[k], show: (t) => esc(settingText(t.settings[k])) })),
    { key: "epochs_done", label: "epochs", value: (t) => t.epochs_done, show: (t) => esc(`${t.epochs_done}/${t.epochs_planned}`) },
    ...METRICS.map((k) => ({ key: k, label: k, value: (t) => t[k], show: (t) => esc(fmt(t[k])) })),
    { key: "state", label: "state", text: true, value: (t) => t.state, show: (t) => `<span class="status ${esc(t.state.split(" ")[0])}">${esc(t.state)}</span>` },
  ];
}

// Numbers as numbers, lists element by element, text as text; a missing value sorts last
// whichever the direction.
function compareValues(a, b) {
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) { const c = compareValues(a[i], b[i]); if (c) return c; }
    return a.length - b.length;
  }
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

function sortedTrials(trials, columns) {
  const column = columns.find((c) => c.key === sweepPage.sort.key) || columns.find((c) => c.key === "val_accuracy");
  const sign = sweepPage.sort.desc ? -1 : 1;
  const missing = (v) => v === null || v === undefined;
  // A stable sort of the server's order (best first): ties stay in that order.
  return [...trials].sort((x, y) => {
    const a = column.value(x), b = column.value(y);
    if (missing(a) || missing(b)) return missing(a) - missing(b);
    return sign * compareValues(a, b);
  });
}

async function showSweep(name) {
  sweepPage.name = name;
  $("sweep-view").hidden = false;
  $("where").innerHTML = `<a href="/">runs</a> / sweep ${esc(name)}`;
  $("sweep-title").textContent = `sweep ${name}`;
  document.title = `sweep ${name} – mnist-mlp`;
  await refreshSweep();
}

async function refreshSweep() {
  let text;
  try {
    const response = await fetch(`/api/sweeps/${encodeURIComponent(sweepPage.name)}`, { cache: "no-store" });
    text = await response.text();
    if (!response.ok) throw new Error(JSON.parse(text).error || response.statusText);
  } catch (e) { $("sweep-facts").textContent = e.message; return; }
  $("status-line").textContent = `updated ${new Date().toLocaleTimeString()}`;
  // Drawn again only when something changed, so that a click is never lost to a redraw.
  if (text !== sweepPage.text) {
    sweepPage.text = text;
    sweepPage.data = JSON.parse(text);
    drawSweep();
  }
  clearTimeout(sweepTimer);
  sweepTimer = setTimeout(refreshSweep, sweepPage.data.sweep.live ? 2000 : 5000);
}

function drawSweep() {
  const { sweep, trials, rungs, varied } = sweepPage.data;
  const states = Object.entries(sweep.states).map(([state, n]) => `${n} ${state}`).join(", ");
  $("sweep-facts").textContent = `${sweep.trials} trials · ${sweep.method} · ${sweep.epochs} epochs` +
    (sweep.halving ? ` · halving (eta ${sweep.halving.eta}; trials×epochs per rung: ${rungs.map((r) => `${r.trials}×${r.epochs}`).join(" → ")})` : "") +
    ` · ${states}`;
  // The best three with an epoch are chosen at first.
  if (sweepPage.chosen === null) sweepPage.chosen = new Set(trials.filter((t) => t.epochs_done > 0).slice(0, 3).map((t) => t.name));
  const columns = sweepColumns(varied);
  const head = $("sweep-table").tHead.rows[0];
  head.innerHTML = "<th></th>" + columns.map((c) => `<th data-key="${esc(c.key)}"${c.text ? ' class="text"' : ""}>${esc(c.label)}</th>`).join("");
  for (const th of head.querySelectorAll("th[data-key]")) {
    if (th.dataset.key === sweepPage.sort.key) th.setAttribute("aria-sort", sweepPage.sort.desc ? "descending" : "ascending");
    th.onclick = () => {
      const key = th.dataset.key;
      sweepPage.sort = { key, desc: key === sweepPage.sort.key ? !sweepPage.sort.desc : false };
      drawSweep();
    };
  }
  const base = `/sweeps/${encodeURIComponent(sweep.name)}/runs/`;
  $("sweep-table").tBodies[0].innerHTML = sortedTrials(trials, columns).map((t) => `<tr data-trial="${esc(t.name)}">
    <td><input type="checkbox" data-trial="${esc(t.name)}" ${sweepPage.chosen.has(t.name) ? "checked" : ""} ${t.epochs_done ? "" : "disabled"}></td>` +
    columns.map((c) => {
      const cell = c.key === "name" && t.run ? `<a href="${base}${encodeURIComponent(t.name)}">${esc(t.name)}</a>` : c.show ? c.show(t) : esc(c.value(t));
      return `<td data-key="${esc(c.key)}"${c.text ? ' class="text"' : ""}>${cell}</td>`;
    }).join("") + "</tr>").join("");
  for (const box of $("sweep-table").querySelectorAll("input[type=checkbox]")) {
    box.onchange = () => { box.checked ? sweepPage.chosen.add(box.dataset.trial) : sweepPage.chosen.delete(box.dataset.trial); drawSweepCurves(); };
  }
  drawSweepCurves();
}

// One line per chosen trial on each chart, coloured by its rank (the server's order).
function drawSweepCurves() {
  const { trials, varied } = sweepPage.data;
  const acc = [], loss = [];
  trials.forEach((t, rank) => {
    if (!sweepPage.chosen.has(t.name) || !t.epochs_done) return;
    const settings = varied.map((k) => `${k.split(".").pop()} ${settingText(t.settings[k])}`).join(", ");
    const label = settings ? `${t.name} (${settings})` : t.name;
    const color = COLORS[rank % COLORS.length];
    acc.push({ label, values: t.history.val_accuracy, color });
    loss.push({ label, values: t.history.val_loss, color });
  });
  chart($("sweep-acc"), acc);
  chart($("sweep-loss"), loss);
}

// ---- one run: of runs/, or a sweep's trial ----
let runApi = null, runTimer = null;

// A page for what is not there (an unknown run or address): its message, and the way back;
// no drawing pad or empty charts under it.
function showError(title, message) {
  for (const view of document.querySelectorAll("main > section")) view.hidden = true;
  $("error-view").hidden = false;
  $("error-title").textContent = title;
  $("error-text").textContent = message;
  document.title = `${title} – mnist-mlp`;
}

async function showRun(api, name, where) {
  runApi = api;
  $("where").innerHTML = where;
  try { await getJson(api); } catch (e) { showError(name, e.message); return; }
  $("run-view").hidden = false;
  $("run-title").textContent = name;
  document.title = `${name} – mnist-mlp`;
  setupPad();
  await refreshRun();
}

async function refreshRun() {
  let run;
  try { run = await getJson(runApi); } catch (e) { $("run-facts").textContent = e.message; return; }
  const info = run.run, row = run.row, h = run.history;
  $("run-facts").innerHTML = `<span class="status ${esc(row.status)}">${esc(row.status)}</span> ` +
    `${info.epochs_done}/${info.epochs_planned} epochs · ${esc(info.backend)} · started ${esc(info.started)} · ` +
    `${info.train_images} training images · val_accuracy ${fmt(row.val_accuracy)} · best ${fmt(row.best_val_accuracy)}` +
    (row.best_epoch ? ` (epoch ${row.best_epoch})` : "");
  chart($("run-loss"), [{ label: "loss", values: h.loss, color: COLORS[0] }, { label: "val_loss", values: h.val_loss, color: COLORS[1], dashed: true }]);
  chart($("run-acc"), [{ label: "accuracy", values: h.accuracy, color: COLORS[0] }, { label: "val_accuracy", values: h.val_accuracy, color: COLORS[1], dashed: true }]);
  $("history-table").tBodies[0].innerHTML = h.loss.map((_, i) => `<tr><td>${i + 1}</td><td>${fmt(h.loss[i])}</td>` +
    `<td>${fmt(h.accuracy[i])}</td><td>${fmt(h.val_loss[i])}</td><td>${fmt(h.val_accuracy[i])}</td>` +
    `<td>${fmt(info.epoch_seconds[i], 1)}</td></tr>`).join("");
  $("config").textContent = run.config ?? "(no config.toml)";
  const pictures = run.files.filter((f) => f === "confusion.png" || f === "mistakes.png");
  $("eval-pictures").hidden = !pictures.length;
  $("eval-pictures").querySelector(".pictures").innerHTML = pictures.map((f) =>
    `<img alt="${esc(f)}" src="${esc(runApi)}/files/${encodeURIComponent(f)}">`).join("");
  checkpointChoices(run.checkpoints);
  clearTimeout(runTimer);
  if (row.live) runTimer = setTimeout(refreshRun, 2000);
}

function checkpointChoices(c) {
  const select = $("checkpoint"), before = select.value;
  const options = [];
  if (c.final) options.push(["final", "final (model.bpk)"]);
  if (c.best) options.push(["best", `best (epoch ${c.best})`]);
  if (c.last) options.push(["last", `last (epoch ${c.last})`]);
  for (const e of c.epochs) options.push([String(e), `epoch ${e}`]);
  select.innerHTML = options.map(([v, t]) => `<option value="${esc(v)}">${esc(t)}</option>`).join("");
  if (options.some(([v]) => v === before)) select.value = before;
  select.onchange = () => { if (pad.strokes) pad.dirty = true; pump(); };
}

// ---- the drawing pad ----
// `pad` is read by the browser test (tests/serve.rs): what was sent last, what came back.
const pad = window.mnistPad = { strokes: 0, sent: 0, answered: 0, inFlight: false, dirty: false, lastPng: null, lastResult: null };

function setupPad() {
  const canvas = $("pad"), ctx = canvas.getContext("2d");
  $("bars").innerHTML = [...Array(10).keys()].map((d) =>
    `<span>${d}</span><div class="track" id="bar-${d}" data-p=""><div class="fill"></div></div><span class="value" id="value-${d}"></span>`).join("");
  const blank = () => { ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height); };
  blank();
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.strokeStyle = "#000";
  let last = null;
  const at = (e) => { const r = canvas.getBoundingClientRect(); return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height]; };
  const lineTo = (e) => {
    const p = at(e);
    // A pen's pressure thickens its line a little; mouse and finger draw at one width.
    ctx.lineWidth = e.pointerType === "pen" && e.pressure > 0 ? 14 + 12 * e.pressure : 20;
    ctx.beginPath(); ctx.moveTo(...(last || p)); ctx.lineTo(...p); ctx.stroke();
    last = p;
  };
  canvas.onpointerdown = (e) => { e.preventDefault(); canvas.setPointerCapture(e.pointerId); canvas.dataset.state = "busy"; last = null; lineTo(e); };
  canvas.onpointermove = (e) => {
    if (last === null) return;
    for (const c of e.getCoalescedEvents ? e.getCoalescedEvents() : [e]) lineTo(c);
    pad.dirty = true; pump();
  };
  canvas.onpointerup = canvas.onpointercancel = (e) => {
    if (last === null) return;
    lineTo(e); last = null; pad.strokes += 1; pad.dirty = true; pump();
  };
  $("clear").onclick = () => {
    blank(); pad.strokes = 0; pad.dirty = false; pad.lastResult = null;
    showResult(null);
    $("seen").getContext("2d").clearRect(0, 0, 28, 28);
  };
  canvas.dataset.state = "idle";
}

// One request at a time; strokes drawn meanwhile are sent when it returns, so the bars follow
// the pen without queueing stale drawings.
async function pump() {
  if (pad.inFlight || !pad.dirty) return;
  pad.dirty = false; pad.inFlight = true; $("pad").dataset.state = "busy";
  try {
    const blob = await new Promise((done) => $("pad").toBlob(done, "image/png"));
    const bytes = new Uint8Array(await blob.arrayBuffer());
    pad.lastPng = Array.from(bytes); pad.sent += 1;
    const checkpoint = encodeURIComponent($("checkpoint").value || "");
    const query = checkpoint ? `?checkpoint=${checkpoint}` : "";
    const response = await fetch(`${runApi}/predict${query}`,
      { method: "POST", headers: { "Content-Type": "image/png" }, body: bytes });
    const body = await response.json();
    if (pad.strokes === 0 && !pad.dirty) { /* cleared meanwhile */ } else if (response.ok) { pad.lastResult = body; showResult(body); } else { showResult(null, body.error); }
  } catch (e) {
    showResult(null, e.message);
  } finally {
    pad.answered += 1; pad.inFlight = false;
    if (pad.dirty) pump(); else $("pad").dataset.state = "idle";
  }
}

function showResult(result, error = "") {
  $("pad-error").textContent = error;
  $("digit").textContent = result ? String(result.digit) : "";
  for (let d = 0; d < 10; d++) {
    const bar = $(`bar-${d}`), p = result ? result.probabilities[d] : null;
    bar.dataset.p = p === null ? "" : String(p);
    bar.title = p === null ? "" : `p(${d}) = ${p}`;
    bar.classList.toggle("top", !!result && result.digit === d);
    bar.firstElementChild.style.width = p === null ? "0" : `${(100 * p).toFixed(2)}%`;
    $(`value-${d}`).textContent = p === null ? "" : p.toFixed(4);
  }
  if (result) {
    const seen = $("seen").getContext("2d"), image = seen.createImageData(28, 28);
    result.input.forEach((v, i) => { image.data.set([v, v, v, 255], 4 * i); });
    seen.putImageData(image, 0, 0);
  }
}

// The page's address says what it shows.
const path = location.pathname;
const runMatch = path.match(/^\/runs\/([^/]+)$/);
const trialMatch = path.match(/^\/sweeps\/([^/]+)\/runs\/([^/]+)$/);
const sweepMatch = path.match(/^\/sweeps\/([^/]+)$/);
const part = (m, i) => decodeURIComponent(m[i]);
if (runMatch) {
  const name = part(runMatch, 1);
  showRun(`/api/runs/${encodeURIComponent(name)}`, name, `<a href="/">runs</a> / ${esc(name)}`);
} else if (trialMatch) {
  const [sweepName, name] = [part(trialMatch, 1), part(trialMatch, 2)];
  const sweepPath = encodeURIComponent(sweepName);
  showRun(`/api/sweeps/${sweepPath}/runs/${encodeURIComponent(name)}`, `${sweepName} / ${name}`,
    `<a href="/">runs</a> / <a href="/sweeps/${sweepPath}">sweep ${esc(sweepName)}</a> / ${esc(name)}`);
} else if (sweepMatch) {
  showSweep(part(sweepMatch, 1));
} else if (path === "/") {
  showRuns();
} else {
  showError("no such page", `${path}: no such page`);
}
