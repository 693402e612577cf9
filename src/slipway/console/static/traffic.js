// The live-traffic page: polls /ui/api/traffic and redraws in place, without a reload.
import { draw, update, track, PALETTE } from "./charts.js";
import { localTime } from "./time.js";

const CHARTS = [
  { key: "predictions_per_s", title: "Predictions per second", ylabel: "per s" },
  { key: "p50_ms", title: "Latency p50 and p99 (ms)", ylabel: "ms", also: "p99_ms" },
  { key: "refused_share", title: "Contract refusals (share of rows)", ylabel: "share" },
];

function specFor(chart, data, versions) {
  const series = [];
  Object.entries(versions).forEach(([version, s], k) => {
    const color = PALETTE[k % PALETTE.length];
    series.push({ label: `v${version}${chart.also ? " p50" : ""}`, values: s[chart.key], color });
    if (chart.also) series.push({ label: `v${version} p99`, values: s[chart.also], color: color + "99" });
  });
  return { kind: "lines", title: chart.title, ylabel: chart.ylabel, x: data.x, time: true, series };
}

function shape(spec) {
  return spec.series.map((s) => s.label).join("|");
}

const shown = new Map(); // "model/chart" -> {plot, shape}

function render(container, data) {
  const models = Object.entries(data.models);
  if (models.length === 0) {
    container.innerHTML = "";
    const p = document.createElement("p");
    p.textContent = "No predictions or refusals logged in this window.";
    container.appendChild(p);
    shown.clear();
    return;
  }
  container.querySelector(":scope > p")?.remove();
  for (const [model, versions] of models) {
    let section = container.querySelector(`section[data-model="${CSS.escape(model)}"]`);
    if (!section) {
      section = document.createElement("section");
      section.className = "model-traffic";
      section.dataset.model = model;
      const h = document.createElement("h3");
      const a = document.createElement("a");
      a.href = `/ui/models/${encodeURIComponent(model)}`;
      a.textContent = model;
      h.appendChild(a);
      const grid = document.createElement("div");
      grid.className = "grid";
      section.append(h, grid);
      container.appendChild(section);
    }
    const grid = section.querySelector(".grid");
    CHARTS.forEach((chart, i) => {
      const spec = specFor(chart, data, versions);
      const id = `${model}/${chart.key}`;
      const known = shown.get(id);
      if (known && known.shape === shape(spec)) {
        update(known.plot, spec);
        return;
      }
      let figure = grid.children[i];
      if (!figure) {
        figure = document.createElement("figure");
        figure.className = "chart";
        const caption = document.createElement("figcaption");
        caption.textContent = chart.title;
        const plot = document.createElement("div");
        plot.className = "plot";
        plot.setAttribute("role", "img");
        plot.setAttribute("aria-label", `${chart.title} of ${model}`);
        figure.append(caption, plot);
        grid.appendChild(figure);
      }
      const el = figure.querySelector(".plot");
      const plot = draw(spec, el);
      track(plot, el);
      shown.set(id, { plot, shape: shape(spec) });
    });
  }
}

let previous = null;

function tile(label, value) {
  const div = document.createElement("div");
  div.className = "tile";
  const v = document.createElement("div");
  v.className = "value";
  v.textContent = value;
  const l = document.createElement("div");
  l.className = "label";
  l.textContent = label;
  div.append(v, l);
  return div;
}

function quantile(q, bounds, atMost, total) {
  if (total <= 0) return null;
  const rank = q * total;
  let below = 0, lower = 0;
  for (let i = 0; i < bounds.length; i++) {
    if (atMost[i] >= rank) {
      return atMost[i] === below ? bounds[i] : lower + (bounds[i] - lower) * (rank - below) / (atMost[i] - below);
    }
    below = atMost[i]; lower = bounds[i];
  }
  return bounds[bounds.length - 1];
}

function renderServer(el, now) {
  el.textContent = "";
  if (!previous) {
    el.appendChild(tile("waiting for a second sample", "…"));
    previous = now;
    return;
  }
  const seconds = Math.max(now.at - previous.at, 1e-3);
  const requests = now.requests - previous.requests;
  const errors = now.errors - previous.errors;
  el.appendChild(tile("requests per second (all routes)", (requests / seconds).toFixed(1)));
  el.appendChild(tile("server errors (5xx)", requests > 0 ? ((100 * errors) / requests).toFixed(2) + "%" : "-"));
  for (const [ref, v] of Object.entries(now.versions)) {
    const before = previous.versions[ref] || { ok: 0, invalid: 0, count: 0, at_most: v.at_most.map(() => 0) };
    const ok = v.ok - before.ok;
    const invalid = v.invalid - before.invalid;
    const count = v.count - before.count;
    const atMost = v.at_most.map((c, i) => c - before.at_most[i]);
    const p50 = quantile(0.5, now.bounds_ms, atMost, count);
    const p99 = quantile(0.99, now.bounds_ms, atMost, count);
    el.appendChild(tile(`${ref} predict requests/s`, ((ok + invalid) / seconds).toFixed(1)));
    el.appendChild(tile(`${ref} refused (422)`, ok + invalid > 0 ? ((100 * invalid) / (ok + invalid)).toFixed(2) + "%" : "-"));
    el.appendChild(tile(`${ref} p50 / p99 ms`, p50 == null ? "-" : `${p50.toFixed(2)} / ${p99.toFixed(2)}`));
  }
  previous = now;
}

async function poll(container, server, updated) {
  try {
    const response = await fetch(container.dataset.src, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401) {
      window.location.assign(`/ui/login?next=${encodeURIComponent(window.location.pathname + window.location.search)}`);
      return;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const data = await response.json();
    render(container, data);
    renderServer(server, data.server);
    updated.textContent = `updated ${localTime(new Date())}`;
    container.dataset.polls = String(Number(container.dataset.polls || 0) + 1);
  } catch (err) {
    updated.textContent = `could not update (${err.message}); retrying`;
  }
}

export function liveTraffic() {
  const container = document.getElementById("traffic");
  if (!container) return;
  const server = document.getElementById("server-now");
  const updated = document.getElementById("updated");
  const every = Number(container.dataset.every || 5) * 1000;
  poll(container, server, updated);
  setInterval(() => poll(container, server, updated), every);
}
