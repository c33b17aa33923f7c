// The backtest button: what a campaign (a stored one, or the form's proposal) would have done
// over a past period of at most 7 days, from POST /v1/campaigns/backtest — moments, devices,
// would-send, suppressions by reason, by hour of the week (charted) and by fence. It sends and
// changes nothing; a week of a large fleet takes minutes, so the wait is shown as it runs.
import { api, listAll } from "./api.js";
import { bars } from "./charts.js";
import { figure, pct, reasonsInWords, suppressions } from "./counts.js";
import { el, fmt, say } from "./dom.js";

const DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const HOUR_MS = 3600 * 1000;
const utcInput = (ms) => new Date(ms).toISOString().slice(0, 16);
const two = (n) => String(n).padStart(2, "0");

// `body()` gives the campaign body to replay (it may throw an Error whose message is shown);
// `campaignErrors(error)` shows the API's errors about the campaign itself (fields named
// `campaign.…`) where they belong and says whether it did.
export function backtestPanel(body, { stores, note = "", campaignErrors = () => false }) {
  const end = Math.floor(Date.now() / HOUR_MS) * HOUR_MS;
  const from = el("input", { id: "backtest-from", type: "datetime-local", value: utcInput(end - 24 * HOUR_MS) });
  const to = el("input", { id: "backtest-to", type: "datetime-local", value: utcInput(end) });
  const run = el("button", { type: "button", id: "backtest-run" }, "Run the backtest");
  const waiting = el("progress", { id: "backtest-progress", hidden: true, "aria-label": "Backtest running" });
  const status = el("p", { class: "status", id: "backtest-status", role: "status" });
  const error = el("p", { class: "error", id: "backtest-error", role: "alert" });
  const out = el("div", { id: "backtest-result" });
  const panel = el("div", { class: "card", id: "backtest" },
    el("p", { class: "hint", text: "Replays the stored pings and signals of the period (at most 7 days, in UTC) through the live decision rules, against the current policy and the active campaigns. It sends nothing and changes nothing." }),
    note ? el("p", { class: "hint", text: note }) : null,
    el("div", { class: "row" },
      el("label", { for: "backtest-from", text: "From (UTC)" }), from,
      el("label", { for: "backtest-to", text: "to (UTC)" }), to, run, waiting),
    status, error, out);

  run.addEventListener("click", async () => {
    say(error, "");
    for (const input of [from, to]) input.removeAttribute("aria-invalid");
    let request;
    try {
      if (!from.value || !to.value) throw new Error("Choose the period: both its start and its end.");
      request = { campaign: body(), from: `${from.value}:00Z`, to: `${to.value}:00Z` };
    } catch (problem) {
      say(error, problem.message);
      return;
    }
    const started = Date.now();
    const tick = () => say(status, `Replaying the period… ${Math.round((Date.now() - started) / 1000)} s`);
    tick();
    const timer = setInterval(tick, 1000);
    run.disabled = true;
    waiting.hidden = false;
    out.replaceChildren();
    try {
      const [result, fences] = await Promise.all([
        api("POST", "/v1/campaigns/backtest", request), listAll("/v1/geofences")]);
      say(status, `Replayed in ${fmt(Math.round((Date.now() - started) / 100) / 10)} s.`);
      await show(out, result, stores, new Map(fences.map((f) => [f.id, f])));
    } catch (problem) {
      say(status, "");
      const own = problem.fields.filter((f) => f.field === "from" || f.field === "to");
      for (const f of own) (f.field === "from" ? from : to).setAttribute("aria-invalid", "true");
      const shown = problem.fields.some((f) => f.field.startsWith("campaign")) && campaignErrors(problem);
      say(error, shown && own.length === 0 ? "The campaign has errors: see its fields." : problem.message);
    } finally {
      clearInterval(timer);
      run.disabled = false;
      waiting.hidden = true;
    }
  });
  return panel;
}

async function show(out, r, stores, fences) {
  const chart = el("div", { class: "chart", id: "backtest-hours" });
  const slots = Array.from({ length: 7 * 24 }, () => [0, 0]);
  for (const h of r.by_hour) slots[(h.day - 1) * 24 + h.hour] = [h.moments, h.would_send];
  const busiest = [...r.by_hour].sort((a, b) => b.moments - a.moments)[0];
  const fenceName = (g) => {
    const store = stores.get(g.store_id)?.name ?? g.store_id;
    if (g.geofence_id === null) return `${store} (predicted next visits)`;
    return `${fences.get(g.geofence_id)?.name ?? g.geofence_id} (${store})`;
  };
  out.replaceChildren(
    el("div", { class: "figures", id: "backtest-figures" },
      figure("Moments", fmt(r.moments), "matched"),
      figure("Devices", fmt(r.devices), "with a moment"),
      figure("Devices reached", fmt(r.devices_reached), "with a push"),
      figure("Would send", fmt(r.would_send), `${pct(r.would_send, r.moments)} of moments`)),
    el("h4", { text: "By hour of the week (each store's time)" }), chart,
    el("p", { class: "hint", text: busiest
      ? `Busiest hour: ${DAYS[busiest.day - 1]} ${two(busiest.hour)}:00, ${fmt(busiest.moments)} moments, ${fmt(busiest.would_send)} would send.`
      : "No moment in the period." }),
    el("div", { class: "grid2" },
      el("div", {}, el("h4", { text: "Suppressions by reason" }), suppressions(r.suppressed, r.moments, "backtest-suppressions")),
      el("div", {}, el("h4", { text: "By fence" }),
        r.by_geofence.length ? el("table", { id: "backtest-fences" },
          el("thead", {}, el("tr", {}, el("th", { text: "Fence" }), el("th", { class: "num", text: "Moments" }),
            el("th", { class: "num", text: "Would send" }), el("th", { text: "Suppressed" }))),
          el("tbody", {}, r.by_geofence.map((g) => el("tr", {}, el("td", { text: fenceName(g) }),
            el("td", { class: "num", text: fmt(g.moments) }), el("td", { class: "num", text: fmt(g.would_send) }),
            el("td", { text: reasonsInWords(g.suppressed) })))))
          : el("p", { class: "hint", text: "No fence had a moment." }))),
    el("p", { class: "hint", text: `Replayed ${fmt(r.replayed.devices)} devices, ${fmt(r.replayed.batches)} ping batches, ${fmt(r.replayed.pings)} pings (with the 2 hours before the period, which only warm presence up).` }));
  await bars(chart, {
    title: "Moments and would-send by hour of the week", labelEvery: 24,
    labels: slots.map((_, i) => `${DAYS[Math.floor(i / 24)]} ${two(i % 24)}h`),
    series: [{ label: "Moments", values: slots.map((s) => s[0]) }, { label: "Would send", values: slots.map((s) => s[1]) }],
  });
}
