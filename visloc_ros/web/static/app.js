// visloc_ros map page: the places drawn in the map frame (metres, east right, north up), coloured by SOM cell;
// a photo uploaded (picker or drop) is sent to /api/localize and its answer drawn: position, 95 % ellipse,
// heading, candidates. Plain SVG, no library, nothing fetched from elsewhere.
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const svg = document.getElementById("map");
const view = document.getElementById("viewport");
const placesG = document.getElementById("places");
const answerG = document.getElementById("answer");
const gridG = document.getElementById("grid");
const state = { cx: 0, cy: 0, s: 1, places: [], map: null, selectedCell: null, answer: null };
const PLACE_PX = 5, FIX_PX = 7, HEADING_PX = 36;

function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}
function fmt(v, d = 2) { return v === null || v === undefined ? "–" : Number(v).toFixed(d); }
function cellColour(cell) {
  const { rows, cols } = state.map.cells;
  const r = Math.floor(cell / cols), c = cell % cols;
  return `hsl(${Math.round(360 * c / cols)}, 70%, ${Math.round(30 + 45 * r / Math.max(rows - 1, 1))}%)`;
}
function size() { const b = svg.getBoundingClientRect(); return [b.width || 800, b.height || 600]; }

// --- view: centre (cx, cy) in metres, s pixels per metre ---
function apply() {
  const [w, h] = size();
  view.setAttribute("transform", `translate(${w / 2} ${h / 2}) scale(${state.s} ${-state.s}) translate(${-state.cx} ${-state.cy})`);
  for (const c of placesG.children) c.setAttribute("r", PLACE_PX / state.s);
  drawAnswer();
  drawGrid();
  drawScale();
}
function fit() {
  const [w, h] = size();
  const xs = state.places.map(p => p.x), ys = state.places.map(p => p.y);
  if (state.answer) { xs.push(state.answer.x); ys.push(state.answer.y); }
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  state.cx = (x0 + x1) / 2; state.cy = (y0 + y1) / 2;
  state.s = 0.9 * Math.min(w / Math.max(x1 - x0, 1), h / Math.max(y1 - y0, 1));
  apply();
}
function toWorld(px, py) {
  const b = svg.getBoundingClientRect(), [w, h] = size();
  return [state.cx + (px - b.left - w / 2) / state.s, state.cy - (py - b.top - h / 2) / state.s];
}
function niceStep(target) {
  const p = Math.pow(10, Math.floor(Math.log10(target))), m = target / p;
  return p * (m < 2 ? 1 : m < 5 ? 2 : 5);
}
function drawScale() {
  const metres = niceStep(100 / state.s);
  document.getElementById("scale-bar").style.width = `${metres * state.s}px`;
  document.getElementById("scale-label").textContent = metres >= 1000 ? `${metres / 1000} km` : `${metres} m`;
}
function drawGrid() {
  gridG.replaceChildren();
  const [w, h] = size(), step = niceStep(120 / state.s);
  const hw = w / 2 / state.s, hh = h / 2 / state.s;
  for (let x = Math.ceil((state.cx - hw) / step) * step; x < state.cx + hw; x += step)
    el("line", { x1: x, x2: x, y1: state.cy - hh, y2: state.cy + hh, class: "grid-line" }, gridG);
  for (let y = Math.ceil((state.cy - hh) / step) * step; y < state.cy + hh; y += step)
    el("line", { x1: state.cx - hw, x2: state.cx + hw, y1: y, y2: y, class: "grid-line" }, gridG);
}
svg.addEventListener("wheel", ev => {
  ev.preventDefault();
  const [wx, wy] = toWorld(ev.clientX, ev.clientY), k = Math.exp(-ev.deltaY * 0.0015);
  state.s *= k;
  state.cx = wx - (wx - state.cx) / k; state.cy = wy - (wy - state.cy) / k;
  apply();
}, { passive: false });
let drag = null;
svg.addEventListener("pointerdown", ev => { drag = { x: ev.clientX, y: ev.clientY, cx: state.cx, cy: state.cy, moved: false }; });
window.addEventListener("pointermove", ev => {
  if (!drag) return;
  const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
  if (Math.abs(dx) + Math.abs(dy) > 3) { drag.moved = true; svg.classList.add("dragging"); }
  state.cx = drag.cx - dx / state.s; state.cy = drag.cy + dy / state.s;
  if (drag.moved) apply();
});
window.addEventListener("pointerup", () => { svg.classList.remove("dragging"); setTimeout(() => { drag = null; }, 0); });
svg.addEventListener("dblclick", fit);
window.addEventListener("resize", apply);

// --- places and legend ---
function drawPlaces() {
  placesG.replaceChildren();
  for (const p of state.places) {
    const c = el("circle", { cx: p.x, cy: p.y, r: PLACE_PX / state.s, fill: cellColour(p.cell), class: "place",
                             "data-id": p.id, "data-cell": p.cell }, placesG);
    el("title", {}, c).textContent = `place ${p.id} · cell ${p.cell}`;
    c.addEventListener("click", ev => { if (!(drag && drag.moved)) showPlace(p.id); ev.stopPropagation(); });
  }
}
function drawLegend() {
  const { rows, cols } = state.map.cells, grid = document.getElementById("legend-grid");
  grid.style.gridTemplateColumns = `repeat(${cols}, 1fr)`;
  const used = new Set(state.places.map(p => p.cell));
  for (let cell = 0; cell < rows * cols; cell++) {
    const d = document.createElement("div");
    d.style.background = cellColour(cell);
    d.title = `cell ${cell} (row ${Math.floor(cell / cols)}, column ${cell % cols}): ` +
              `${state.places.filter(p => p.cell === cell).length} places`;
    if (!used.has(cell)) d.classList.add("empty");
    d.addEventListener("click", () => selectCell(state.selectedCell === cell ? null : cell));
    grid.appendChild(d);
  }
}
function selectCell(cell) {
  state.selectedCell = cell;
  [...document.getElementById("legend-grid").children].forEach((d, i) => d.classList.toggle("selected", i === cell));
  for (const c of placesG.children) c.classList.toggle("dim", cell !== null && Number(c.dataset.cell) !== cell);
}
function rowsTable(table, rows) {
  table.replaceChildren();
  for (const [k, v] of rows) {
    const tr = table.insertRow();
    tr.insertCell().textContent = k;
    tr.insertCell().textContent = v;
  }
}
function showPlace(id) {
  const p = state.places[id];
  document.getElementById("place").hidden = false;
  document.getElementById("place-id").textContent = id;
  document.getElementById("place-img").src = `/api/places/${id}/image`;
  for (const c of placesG.children) c.classList.toggle("selected", Number(c.dataset.id) === id);
  rowsTable(document.getElementById("place-table"), [
    ["image", p.image], ["position", `x ${fmt(p.x)} m, y ${fmt(p.y)} m`],
    ["lat, lon", p.lat === null ? "–" : `${fmt(p.lat, 7)}, ${fmt(p.lon, 7)}`],
    ["heading", p.yaw_deg === null ? "–" : `${fmt(p.yaw_deg, 1)}°`], ["SOM cell", p.cell],
    ["condition", p.condition || "–"], ["session", p.session || "–"]]);
}

// --- the answer ---
function drawAnswer() {
  answerG.replaceChildren();
  const a = state.answer;
  if (!a) return;
  const e = a.ellipse95;
  if (e.major_m !== null) {
    const g = el("g", { transform: `translate(${a.x} ${a.y}) rotate(${e.angle_rad * 180 / Math.PI})` }, answerG);
    el("ellipse", { rx: Math.max(e.major_m, 1e-3), ry: Math.max(e.minor_m, 1e-3), class: "ellipse", id: "fix-ellipse" }, g);
  }
  if (a.yaw_deg !== null) {
    const t = a.yaw_deg * Math.PI / 180, L = HEADING_PX / state.s;
    el("line", { x1: a.x, y1: a.y, x2: a.x + L * Math.cos(t), y2: a.y + L * Math.sin(t), class: "heading", id: "fix-heading" }, answerG);
  }
  el("circle", { cx: a.x, cy: a.y, r: FIX_PX / state.s, class: "fix", id: "fix-point" }, answerG);
  const ids = new Set(a.candidates.map(c => c.id));
  for (const c of placesG.children) c.classList.toggle("candidate", ids.has(Number(c.dataset.id)));
}
function showAnswer(a, file) {
  state.answer = a;
  document.getElementById("result").hidden = false;
  document.getElementById("query-img").src = URL.createObjectURL(file);
  const t = a.timings_ms;
  rowsTable(document.getElementById("result-table"), [
    ["answer", `${a.verified ? "verified by keypoints" : "fast fix"}${a.ok ? "" : " (withheld: " + a.message + ")"}`],
    ["position", `x ${fmt(a.x)} m, y ${fmt(a.y)} m`],
    ["lat, lon", a.lat === null ? "–" : `${fmt(a.lat, 7)}, ${fmt(a.lon, 7)}`],
    ["95 % ellipse", a.ellipse95.major_m === null ? "–" : `${fmt(a.ellipse95.major_m, 1)} × ${fmt(a.ellipse95.minor_m, 1)} m`],
    ["heading", a.yaw_deg === null ? "–" : `${fmt(a.yaw_deg, 1)}°`],
    ["best place", `${a.best_place} (cell ${a.cell})`], ["condition", a.condition || "–"],
    ["time", `${fmt(t.server, 0)} ms (localizer ${fmt(t.localizer, 0)} ms)`]]);
  const ol = document.getElementById("candidates");
  ol.replaceChildren();
  for (const c of a.candidates) {
    const li = document.createElement("li");
    const img = document.createElement("img");
    img.src = c.thumbnail; img.alt = `place ${c.id}`;
    li.appendChild(img);
    li.appendChild(document.createTextNode(`place ${c.id} · similarity ${fmt(c.similarity, 3)}` +
      (c.inliers === null ? "" : ` · ${c.inliers} inliers`) +
      (c.lat === null ? ` · x ${fmt(c.x, 1)}, y ${fmt(c.y, 1)} m` : ` · ${fmt(c.lat, 6)}, ${fmt(c.lon, 6)}`)));
    li.addEventListener("click", () => showPlace(c.id));
    ol.appendChild(li);
  }
  drawAnswer();
}
async function localize(file) {
  const status = document.getElementById("status");
  status.className = ""; status.textContent = `localizing ${file.name}…`;
  const form = new FormData();
  form.append("image", file, file.name);
  try {
    const r = await fetch("/api/localize", { method: "POST", body: form });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
    status.textContent = `${file.name}: answered in ${fmt(body.timings_ms.server, 0)} ms`;
    showAnswer(body, file);
  } catch (err) {
    status.className = "error"; status.textContent = `${file.name}: ${err.message}`;
  }
}
document.getElementById("file").addEventListener("change", ev => { if (ev.target.files.length) localize(ev.target.files[0]); });
for (const [zone, target] of [[document.getElementById("drop-zone"), document.getElementById("drop-zone")],
                              [document.getElementById("map-pane"), document.getElementById("map-pane")]]) {
  zone.addEventListener("dragover", ev => { ev.preventDefault(); target.classList.add("drag-over"); });
  zone.addEventListener("dragleave", () => target.classList.remove("drag-over"));
  zone.addEventListener("drop", ev => {
    ev.preventDefault(); target.classList.remove("drag-over");
    if (ev.dataTransfer.files.length) localize(ev.dataTransfer.files[0]);
  });
}

async function main() {
  const [m, places] = await Promise.all([fetch("/api/map").then(r => r.json()), fetch("/api/places").then(r => r.json())]);
  state.map = m; state.places = places;
  document.getElementById("map-name").textContent = m.name;
  document.getElementById("map-summary").textContent =
    `${m.places} places · SOM ${m.cells.rows}×${m.cells.cols} (${m.cells.used} cells used) · ` +
    (m.georeferenced ? `datum ${fmt(m.datum.lat, 5)}, ${fmt(m.datum.lon, 5)}` : `frame ${m.frame_id} (metres)`) +
    (m.verified ? " · keypoint-verified answers" : "");
  drawPlaces(); drawLegend(); fit();
  document.body.dataset.ready = "1";
}
main().catch(err => {
  const status = document.getElementById("status");
  status.className = "error"; status.textContent = `cannot load the map: ${err.message}`;
});
