// A campaign's uplift against its holdout (GET /v1/campaigns/{id}/uplift), for the goal and
// window chosen: both groups' rates, the difference in percentage points with its 95 % interval
// — or, when the API gives none, that there is not enough data and why.
import { api } from "./api.js";
import { el, fmt, say } from "./dom.js";

export const rate = (r) => (r === null || r === undefined ? "–" : `${(100 * r).toFixed(1)} %`);
export const points = (d) => (d === null || d === undefined ? "–" : `${d > 0 ? "+" : ""}${(100 * d).toFixed(1)} pp`);

export async function describeUplift(root, campaignId) {
  const goal = el("select", { id: "uplift-goal", onchange: () => measure() },
    el("option", { value: "visit", text: "a visit (an enter at one of the campaign's stores)" }),
    el("option", { value: "purchase", text: "a purchase" }));
  const hours = el("input", { id: "uplift-window", type: "number", min: "1", max: "720", step: "1", value: "24" });
  const out = el("div", { id: "uplift-result", "aria-live": "polite" });
  const error = el("p", { class: "error", role: "alert" });
  root.replaceChildren(
    el("div", { class: "row" },
      el("label", { for: "uplift-goal", text: "A conversion is" }), goal,
      el("label", { for: "uplift-window", text: "within (hours)" }), hours,
      el("button", { type: "button", class: "secondary", onclick: () => measure() }, "Measure")),
    error, out);

  async function measure() {
    say(error, "");
    try {
      const u = await api("GET", `/v1/campaigns/${campaignId}/uplift?goal=${goal.value}&window_hours=${encodeURIComponent(hours.value)}`);
      out.replaceChildren(...result(u));
    } catch (problem) {
      out.replaceChildren();
      say(error, problem.message);
    }
  }
  await measure();
}

function result(u) {
  const group = (name, g) => el("tr", {}, el("th", { text: name }), el("td", { class: "num", text: fmt(g.n) }),
    el("td", { class: "num", text: fmt(g.conversions) }), el("td", { class: "num", text: rate(g.rate) }));
  const table = el("table", { id: "uplift-groups" },
    el("thead", {}, el("tr", {}, el("th", { text: "Group" }), el("th", { class: "num", text: "Moments" }),
      el("th", { class: "num", text: "Conversions" }), el("th", { class: "num", text: "Rate" }))),
    el("tbody", {}, group("Treated (sent)", u.treated), group("Control (holdout)", u.control)));
  const verdict = u.ci95 === null
    ? el("p", { id: "uplift-verdict" }, el("strong", { text: "Not enough data" }),
      " for an uplift and its 95 % interval yet.")
    : el("p", { id: "uplift-verdict" }, "Uplift ", el("strong", { text: points(u.uplift) }),
      `, 95 % interval ${points(u.ci95[0])} to ${points(u.ci95[1])}; p-value ${u.p_value < 0.001 ? "< 0.001" : u.p_value.toFixed(3)}; `
      + `${(u.incremental_conversions ?? 0).toFixed(1)} incremental conversions. `
      + (u.ci95[0] > 0 ? "The offer raised conversions." : u.ci95[1] < 0 ? "The offer lowered conversions."
        : "The interval includes zero: no effect shown yet."));
  return [table, verdict, u.note ? el("p", { class: "hint", id: "uplift-note", text: `Note: ${u.note}.` }) : null,
    el("p", { class: "hint", text: `${u.method}.` })].filter(Boolean);
}
