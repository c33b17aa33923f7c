// Bar charts drawn with the vendored uPlot (loaded from /console/static/vendor on first use, so
// a page that shows no chart never fetches it). Each chart is a canvas with a label in words;
// the figures it draws are always also in a table beside it, which is what a reader (or a
// screen reader) can copy.
import { el } from "./dom.js";

const VENDOR = "/console/static/vendor/uplot";
let loading = null;

function loadUplot() {
  if (window.uPlot) return Promise.resolve(window.uPlot);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      if (!document.querySelector(`link[href="${VENDOR}/uPlot.min.css"]`)) {
        document.head.append(el("link", { rel: "stylesheet", href: `${VENDOR}/uPlot.min.css` }));
      }
      const script = el("script", { src: `${VENDOR}/uPlot.iife.min.js` });
      script.addEventListener("load", () => resolve(window.uPlot));
      script.addEventListener("error", () => {
        loading = null;  // the next chart tries again
        script.remove();
        reject(new Error("the chart library could not be loaded"));
      });
      document.head.append(script);
    });
  }
  return loading;
}

const COLOURS = ["#0b5cad", "#1e7b34", "#b07b00", "#b3261e"];

// Bars at x = 0..n-1, labelled on the x axis by `labels` (every `labelEvery` bars). `series` is
// [{label, values}], each as long as `labels`; each series is a part of the one before, drawn
// over it (the would-send part of the moments).
export async function bars(node, { title, labels, series, labelEvery = 1, unit = "", height = 220 }) {
  let uPlot;
  try {
    uPlot = await loadUplot();
  } catch (error) {  // the table beside the chart still holds every figure
    node.replaceChildren(el("p", { class: "hint", text: `No chart: ${error.message}.` }));
    return null;
  }
  node.replaceChildren();
  node.setAttribute("role", "img");
  node.setAttribute("aria-label", title);
  const xs = labels.map((_, i) => i);
  const width = Math.max(280, (node.clientWidth || 488) - 8);  // inside the .chart padding
  const options = {
    width, height, title,
    legend: { show: series.length > 1, live: false },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: false, range: [-0.5, labels.length - 0.5] }, y: { range: (u, lo, hi) => [0, Math.max(1, hi * 1.1)] } },
    axes: [
      { splits: () => xs.filter((i) => i % labelEvery === 0), values: (u, splits) => splits.map((i) => labels[i] ?? "") },
      { values: (u, splits) => splits.map((v) => (Number.isInteger(v) ? `${v}${unit}` : "")), size: 50 },
    ],
    series: [{ label: "" }, ...series.map((s, k) => ({
      label: s.label, fill: COLOURS[k % COLOURS.length], stroke: COLOURS[k % COLOURS.length],
      width: 0, points: { show: false },
      paths: uPlot.paths.bars({ size: [0.8, 60], align: 0 }),
    }))],
  };
  const chart = new uPlot(options, [xs, ...series.map((s) => s.values)], node);
  return chart;
}
