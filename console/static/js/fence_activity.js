// A fence's enters, dwells and exits per day (GET /v1/reports/fences), charted with uPlot under
// the fence's form; the days are the store's (its time zone). A moment at the fence in the live
// feed refreshes the chart.
import { api } from "./api.js";
import { $, fmt, say, show } from "./dom.js";

const DAYS = 14;
const SERIES = [
  { key: "enters", label: "enters", stroke: "#0b5cad" },
  { key: "dwells", label: "dwells", stroke: "#1e7b34" },
  { key: "exits", label: "exits", stroke: "#b3261e" },
];
const dayLabel = new Intl.DateTimeFormat("en-GB", { day: "numeric", month: "short", timeZone: "UTC" });

let current = null;  // { fence, store }
let chart = null;
let refresh = null;

document.addEventListener("contexto:moment", (event) => {
  if (!current || event.detail.fence_id !== current.fence.id) return;
  clearTimeout(refresh);
  refresh = setTimeout(load, 1000);
});

// Show `fence` (of `store`), or hide the panel for null; only a change of fence reloads.
export function showFence(fence, store) {
  if (fence?.id === current?.fence.id) return;
  current = fence ? { fence, store } : null;
  show($("fence-activity"), Boolean(fence));
  if (fence) load();
}

async function load() {
  if (!current) return;
  const { fence, store } = current;
  say($("fence-activity-title"), `${fence.name}: the last ${DAYS} days`);
  try {
    const report = await api("GET", `/v1/reports/fences?store_id=${fence.store_id}`
      + `&geofence_id=${fence.id}`);
    if (current?.fence.id !== fence.id) return;  // another fence was picked meanwhile
    draw(report.fences[0], report.timezone ?? store?.timezone);
  } catch (error) {
    say($("fence-activity-status"), error.message);
  }
}

function draw(activity, zone) {
  const days = activity.days;
  const data = [days.map((_, i) => i), ...SERIES.map((s) => days.map((d) => d[s.key]))];
  const label = (i) => (days[i] ? dayLabel.format(new Date(`${days[i].date}T00:00:00Z`)) : "");
  const options = {
    width: Math.max(240, $("fence-chart").clientWidth || 300),
    height: 190,
    scales: { x: { time: false }, y: { range: (u, min, max) => [0, Math.max(3, max)] } },
    axes: [
      { label: `day (${zone})`, labelSize: 18, size: 34, space: 44, incrs: [1, 2, 7, 14],
        values: (u, splits) => splits.map(label) },
      { label: "events per day", labelSize: 18, size: 36, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] },
    ],
    series: [
      { label: "day", value: (u, i) => (i == null ? "–" : label(i)) },
      ...SERIES.map((s) => ({ label: s.label, stroke: s.stroke, width: 2, points: { size: 5 } })),
    ],
    legend: { live: true },
  };
  chart?.destroy();
  $("fence-chart").replaceChildren();
  chart = new globalThis.uPlot(options, data, $("fence-chart"));
  const total = (key) => fmt(activity[key]);
  say($("fence-activity-status"), `${days[0].date} to ${days.at(-1).date} (${zone}): `
    + `${total("enters")} enters, ${total("dwells")} dwells, ${total("exits")} exits. `
    + "Counts of presence events, not of people.");
}
