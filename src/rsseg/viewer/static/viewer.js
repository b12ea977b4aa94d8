// rsseg view: a tiled pan/zoom viewer in the scene's pixel grid; tiles come from /api/tile.
"use strict";
const map = document.getElementById("map");
const state = { scenes: [], scene: null, scale: 1, cx: 0, cy: 0, layers: {}, opacity: {} };
const DEFAULT_OPACITY = { image: 1, classes: 0.6, confidence: 0 };
window.rssegTiles = { requested: 0, loaded: 0, failed: 0, byLayer: {} };

function el(tag, attrs = {}, text = "") {
  const e = document.createElement(tag);
  Object.entries(attrs).forEach(([k, v]) => e.setAttribute(k, v));
  if (text) e.textContent = text;
  return e;
}

function fit() {
  const s = state.scene;
  state.scale = Math.max(s.width / map.clientWidth, s.height / map.clientHeight, 1 / 8);
  state.cx = s.width / 2; state.cy = s.height / 2;
}

function render() {
  const s = state.scene; if (!s) return;
  const W = map.clientWidth, H = map.clientHeight;
  const z = Math.max(0, Math.min(s.max_zoom, s.max_zoom - Math.floor(Math.log2(Math.max(state.scale, 1e-9)))));
  const span = s.tile * 2 ** (s.max_zoom - z);
  const left = state.cx - W / 2 * state.scale, top = state.cy - H / 2 * state.scale;
  const x0 = Math.max(0, Math.floor(left / span)), y0 = Math.max(0, Math.floor(top / span));
  const x1 = Math.min(Math.ceil(s.width / span) - 1, Math.floor((left + W * state.scale) / span));
  const y1 = Math.min(Math.ceil(s.height / span) - 1, Math.floor((top + H * state.scale) / span));
  for (const name of s.layers) {
    const div = state.layers[name];
    div.style.opacity = state.opacity[name];
    const keep = new Set();
    if (state.opacity[name] > 0) {
      for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) {
        const key = `${z}/${x}/${y}`; keep.add(key);
        let img = div.querySelector(`img[data-key="${key}"]`);
        if (!img) {
          img = el("img", { "data-key": key, alt: "" });
          const stats = window.rssegTiles;
          stats.requested++; stats.byLayer[name] = stats.byLayer[name] || { loaded: 0, failed: 0 };
          img.onload = () => { stats.loaded++; stats.byLayer[name].loaded++; };
          img.onerror = () => { stats.failed++; stats.byLayer[name].failed++; };
          img.src = `/api/tile/${encodeURIComponent(s.name)}/${name}/${key}.png`;
          div.appendChild(img);
        }
        const size = span / state.scale;
        img.style.left = `${(x * span - left) / state.scale}px`; img.style.top = `${(y * span - top) / state.scale}px`;
        img.style.width = `${size}px`; img.style.height = `${size}px`;
      }
    }
    div.querySelectorAll("img").forEach(img => { if (!keep.has(img.dataset.key)) img.remove(); });
  }
}

function controls() {
  const s = state.scene, box = document.getElementById("layers");
  box.replaceChildren(el("h2", {}, "Layers"));
  map.replaceChildren();
  for (const name of s.layers) {
    const div = el("div", { class: "layer", "data-layer": name }); map.appendChild(div); state.layers[name] = div;
    const asked = new URLSearchParams(location.search).get(name);  // e.g. ?confidence=0.5
    if (!(name in state.opacity)) state.opacity[name] = asked !== null ? +asked : (DEFAULT_OPACITY[name] ?? 1);
    const row = el("div", { class: "row" });
    const slider = el("input", { type: "range", min: 0, max: 1, step: 0.05, value: state.opacity[name],
                                 "aria-label": `${name} opacity` });
    slider.oninput = () => { state.opacity[name] = +slider.value; render(); };
    row.append(el("span", {}, name), slider); box.appendChild(row);
  }
  const legend = document.getElementById("legend"); legend.replaceChildren();
  for (const c of s.classes) {
    const row = el("div", { class: "row" }), sw = el("span", { class: "swatch" });
    sw.style.background = c.color; row.append(sw, el("span", {}, c.name)); legend.appendChild(row);
  }
  const table = document.getElementById("areas"); table.replaceChildren();
  const rows = (s.areas && s.areas.classes) || [];
  const head = el("tr"); ["class", "share", "km²"].forEach(t => head.appendChild(el("th", {}, t)));
  table.appendChild(head);
  for (const r of rows) {
    const tr = el("tr");
    tr.append(el("td", {}, r.name), el("td", {}, r.fraction == null ? "" : (100 * r.fraction).toFixed(1) + " %"),
              el("td", {}, r.km2 == null ? "" : String(r.km2)));
    table.appendChild(tr);
  }
}

async function showPixel(ev) {
  const rect = map.getBoundingClientRect();
  const col = Math.floor(state.cx + (ev.clientX - rect.left - map.clientWidth / 2) * state.scale);
  const row = Math.floor(state.cy + (ev.clientY - rect.top - map.clientHeight / 2) * state.scale);
  const box = document.getElementById("pixel");
  const res = await fetch(`/api/pixel/${encodeURIComponent(state.scene.name)}?col=${col}&row=${row}`);
  const info = await res.json();
  if (!res.ok) { box.textContent = info.error; return; }
  box.replaceChildren(el("div", {}, `pixel (${col}, ${row}): ${info.class ?? "nodata"}` +
                         (info.confidence != null ? `, confidence ${info.confidence}` : "")));
  if (info.probabilities) {
    const t = el("table");
    Object.entries(info.probabilities).sort((a, b) => (b[1] ?? -1) - (a[1] ?? -1)).forEach(([n, p]) => {
      const tr = el("tr"); tr.append(el("td", {}, n), el("td", {}, p == null ? "" : p.toFixed(3))); t.appendChild(tr);
    });
    box.appendChild(t);
  }
}

let drag = null;
map.addEventListener("pointerdown", ev => { drag = { x: ev.clientX, y: ev.clientY, moved: false }; });
window.addEventListener("pointermove", ev => {
  if (!drag) return;
  const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
  if (Math.abs(dx) + Math.abs(dy) > 2) drag.moved = true;
  state.cx -= dx * state.scale; state.cy -= dy * state.scale; drag.x = ev.clientX; drag.y = ev.clientY; render();
});
window.addEventListener("pointerup", ev => { if (drag && !drag.moved) showPixel(ev); drag = null; });
map.addEventListener("wheel", ev => {
  ev.preventDefault();
  const rect = map.getBoundingClientRect();
  const mx = ev.clientX - rect.left - map.clientWidth / 2, my = ev.clientY - rect.top - map.clientHeight / 2;
  const factor = ev.deltaY > 0 ? 1.25 : 0.8;
  state.cx += mx * state.scale * (1 - factor); state.cy += my * state.scale * (1 - factor);
  state.scale *= factor; render();
}, { passive: false });
window.addEventListener("resize", render);

async function main() {
  state.scenes = await (await fetch("/api/scenes")).json();
  const select = document.getElementById("scene");
  state.scenes.forEach((s, i) => select.appendChild(el("option", { value: i }, s.name)));
  select.onchange = () => { state.scene = state.scenes[+select.value]; controls(); fit(); render(); };
  select.onchange();
}
main();
