// Charts with uPlot (vendor/uPlot.iife.min.js, a global). A chart is described by a spec
// (see slipway/console/charts.py): "bars" for distributions, "lines" for values over time.
import { localTime } from "./time.js";

export const PALETTE = ["#1c5fb8", "#e8590c", "#2b8a3e", "#862e9c", "#c92a2a", "#0b7285", "#5c940d"];
const GROUPS = { current: "#e8590c" };
const HEIGHT = 220;

function widthOf(el) {
  return Math.max(260, Math.floor(el.clientWidth || el.parentElement.clientWidth || 400));
}

function percent(v) {
  const p = v * 100;
  return (p !== 0 && Math.abs(p) < 10 ? p.toFixed(1) : p.toFixed(0)) + "%";
}

function short(text, n = 12) {
  return text.length > n ? text.slice(0, n - 1) + "…" : text;
}

function barsOptions(spec, width) {
  const n = spec.labels.length;
  const every = Math.max(1, Math.ceil(n / Math.max(2, Math.floor(width / 70))));
  const bars = uPlot.paths.bars;
  return {
    width, height: HEIGHT,
    legend: { show: true },
    cursor: { points: { show: false } },
    scales: { x: { time: false, range: [-0.5, n - 0.5] }, y: { range: (u, lo, hi) => [0, hi * 1.1 || 1] } },
    axes: [
      { splits: () => spec.labels.map((_, i) => i).filter((i) => i % every === 0),
        values: (u, splits) => splits.map((i) => short((spec.ticks || spec.labels)[i] ?? "")), grid: { show: false } },
      { label: spec.ylabel || "", size: 55, values: (u, s) => s.map(percent) },
    ],
    series: [
      { label: "bin", value: (u, i) => (i == null ? "-" : spec.labels[i]) },
      ...spec.series.map((s, k) => ({
        label: s.label,
        fill: (GROUPS[s.label] || (k === 0 ? "#adb5bd" : PALETTE[k])) + (k === 0 ? "cc" : "aa"),
        stroke: GROUPS[s.label] || (k === 0 ? "#868e96" : PALETTE[k]),
        width: 1,
        paths: bars({ size: [0.4, 80], align: k === 0 ? -1 : 1 }),
        points: { show: false },
        value: (u, v) => (v == null ? "-" : (v * 100).toFixed(1) + "%"),
      })),
    ],
  };
}

function barsData(spec) {
  return [spec.labels.map((_, i) => i), ...spec.series.map((s) => s.values)];
}

function linesOptions(spec, width) {
  const series = [{ label: "time", value: (u, t) => (t == null ? "-" : localTime(new Date(t * 1000))) }];
  const bands = [];
  spec.series.forEach((s, k) => {
    const color = s.color || PALETTE[k % PALETTE.length];
    if (s.points) {
      // Markers only (e.g. realized outside the estimate's band): no line between them.
      series.push({ label: s.label, stroke: color, width: 2, paths: () => null, points: { show: true, space: 0, size: 11, fill: color + "66" } });
      return;
    }
    // Points always drawn: a value between two gaps would otherwise not show at all.
    series.push({ label: s.label, stroke: color, width: 2, spanGaps: false, points: { show: true, size: 5, fill: color } });
    if (s.low && s.high) {
      const hi = series.length;
      series.push({ label: `${s.label} high`, stroke: color + "55", width: 1, points: { show: false } });
      series.push({ label: `${s.label} low`, stroke: color + "55", width: 1, points: { show: false } });
      bands.push({ series: [hi, hi + 1], fill: color + "22" });
    }
  });
  if (spec.guide) {
    series.push({ label: spec.guide.label, stroke: "#495057", width: 1, dash: [6, 4], points: { show: false } });
  }
  return {
    width, height: HEIGHT,
    bands,
    scales: { x: { time: spec.time !== false } },
    axes: [{}, { label: spec.ylabel || "", size: 60 }],
    series,
  };
}

function linesData(spec) {
  const data = [spec.x];
  for (const s of spec.series) {
    data.push(s.values);
    if (s.low && s.high) data.push(s.high, s.low);
  }
  if (spec.guide) data.push(spec.x.map(() => spec.guide.value));
  return data;
}

// Draw spec into el; returns the uPlot instance (keep it to update with setData).
export function draw(spec, el) {
  el.textContent = "";
  const width = widthOf(el);
  const opts = spec.kind === "bars" ? barsOptions(spec, width) : linesOptions(spec, width);
  const data = spec.kind === "bars" ? barsData(spec) : linesData(spec);
  const plot = new uPlot(opts, data, el);
  plot.slipwaySpec = spec;
  return plot;
}

export function update(plot, spec) {
  plot.setData(spec.kind === "bars" ? barsData(spec) : linesData(spec));
}

const plots = new Set();

export function drawAll(root = document) {
  for (const figure of root.querySelectorAll("figure.chart[data-chart]")) {
    const spec = JSON.parse(figure.dataset.chart);
    const el = figure.querySelector(".plot") || figure;
    plots.add({ plot: draw(spec, el), el });
  }
}

export function track(plot, el) {
  plots.add({ plot, el });
}

let resizing = null;
window.addEventListener("resize", () => {
  clearTimeout(resizing);
  resizing = setTimeout(() => {
    for (const { plot, el } of plots) {
      if (el.isConnected) plot.setSize({ width: widthOf(el), height: HEIGHT });
    }
  }, 150);
});
