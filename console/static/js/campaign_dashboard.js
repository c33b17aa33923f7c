// One campaign's dashboard, entirely from the API: its figures and funnel (/stats, charted with
// uPlot), suppressions by reason, ping-to-push latency, uplift against its holdout (/uplift), a
// backtest, and its deliveries, each in its store's time, with why it went out (/why) in words.
import { api, listAll } from "./api.js";
import { backtestPanel } from "./backtest.js";
import { badge, specOf, switchButton, trigger } from "./campaign_summary.js";
import { bars } from "./charts.js";
import { figure, pct, suppressions } from "./counts.js";
import { $, el, fmt, localTime, say } from "./dom.js";
import { describeUplift } from "./uplift.js";

// The funnel's steps: the name the stats give each, and the words the page uses.
const FUNNEL = [["triggered", "Triggered"], ["sent", "Sent"], ["opened", "Opened"],
  ["redeemed", "Redeemed"], ["conversions", "Converted"]];
const DELIVERIES_PAGE = 20;

const decimals = (digits) => new Intl.NumberFormat("en", { minimumFractionDigits: digits, maximumFractionDigits: digits });
export const ms = (value) => (value === null || value === undefined ? "–" : `${decimals(1).format(value)} ms`);
export const money = (value) => decimals(2).format(value);

export async function dashboard(root, id) {
  const [campaign, stats, deliveries, storeList, campaigns] = await Promise.all([
    api("GET", `/v1/campaigns/${id}`), api("GET", `/v1/campaigns/${id}/stats`),
    api("GET", `/v1/campaigns/${id}/deliveries?limit=${DELIVERIES_PAGE}`),
    listAll("/v1/stores"), listAll("/v1/campaigns")]);
  const stores = new Map(storeList.map((s) => [s.id, s]));
  const names = new Map(campaigns.map((c) => [c.id, c.name]));
  const funnelChart = el("div", { class: "chart", id: "funnel-chart" });
  const uplift = el("div", { id: "uplift" });
  root.replaceChildren(
    el("p", {}, el("a", { href: "#campaigns", text: "← All campaigns" })),
    el("h3", {}, `${campaign.name} `, badge(campaign.status)),
    el("p", { class: "error", id: "campaigns-error", role: "alert" }),
    el("div", { class: "row" }, switchButton(campaign, () => dashboard(root, id)),
      el("a", { href: `#campaigns/${id}/edit`, text: "Edit" })),
    el("p", { class: "hint", text: `${trigger(campaign.trigger)}; offer “${campaign.offer.title}” valid ${fmt(campaign.offer_ttl_seconds, "s")}; holdout ${fmt(campaign.holdout_percent, "%")}; priority ${campaign.priority}; value ${fmt(campaign.value)} per conversion` }),
    figures(stats),
    el("div", { class: "grid2" },
      el("div", {}, el("h4", { text: "Funnel" }), funnelChart, funnelTable(stats)),
      el("div", {}, el("h4", { text: "Suppressions by reason" }), suppressions(stats.suppressed, stats.triggered, "suppressions"),
        el("h4", { text: "Ping to push (received → FCM accepted)" }), latency(stats.latency_ms))),
    el("h4", { text: "Uplift against the holdout" }), uplift,
    el("h4", { text: "Backtest: what this campaign would have done" }),
    backtestPanel(() => specOf(campaign), {
      stores, note: campaign.status === "active"
        ? "While this campaign is active, its live copy is among the campaigns the backtest competes with; pause it to see it alone."
        : "" }),
    deliveryList(id, deliveries, stores, names, campaign));
  await Promise.all([
    bars(funnelChart, { title: "Funnel (moments)", labels: FUNNEL.map(([, label]) => label), series: [{ label: "Moments", values: FUNNEL.map(([key]) => stats[key]) }] }),
    describeUplift(uplift, id)]);
}

function figures(stats) {
  const l = stats.latency_ms;
  return el("div", { class: "figures", id: "figures" },
    figure("Triggered", fmt(stats.triggered), "moments"),
    figure("Sent", fmt(stats.sent), pct(stats.sent, stats.triggered)),
    figure("Queued", fmt(stats.queued)), figure("Failed", fmt(stats.failed)),
    figure("Expired", fmt(stats.expired)),
    figure("Opened", fmt(stats.opened), `${pct(stats.opened, stats.sent)} of sent`),
    figure("Redeemed", fmt(stats.redeemed), `${pct(stats.redeemed, stats.sent)} of sent`),
    figure("Conversions", fmt(stats.conversions), "purchases, last touch within 24 h"),
    figure("Revenue", money(stats.revenue), "in the stores' currency"),
    figure("Latency p50", ms(l.p50), `p95 ${ms(l.p95)}`));
}

function funnelTable(stats) {
  return el("table", { id: "funnel" },
    el("thead", {}, el("tr", {}, el("th", { text: "Step" }), el("th", { class: "num", text: "Moments" }),
      el("th", { class: "num", text: "of triggered" }), el("th", { class: "num", text: "of the step before" }))),
    el("tbody", {}, FUNNEL.map(([key, label], i) => el("tr", {},
      el("td", { text: label }), el("td", { class: "num", text: fmt(stats[key]) }),
      el("td", { class: "num", text: pct(stats[key], stats.triggered) }),
      el("td", { class: "num", text: i ? pct(stats[key], stats[FUNNEL[i - 1][0]]) : "" })))));
}

function latency(l) {
  return el("table", { id: "latency" },
    el("thead", {}, el("tr", {}, ["p50", "p95", "p99"].map((p) => el("th", { class: "num", text: p })))),
    el("tbody", {}, el("tr", {}, ["p50", "p95", "p99"].map((p) => el("td", { class: "num", text: ms(l[p]) })))),
    l.p50 === null ? el("caption", { class: "hint", text: "No push sent yet." }) : null);
}

function deliveryList(id, first, stores, names, campaign) {
  const zoneOf = (storeId) => stores.get(storeId)?.timezone;
  // Why a delivery went out is shown in a row under it (one at a time).
  const why = el("pre", { class: "why", id: "why", "aria-live": "polite" });
  const whyRow = el("tr", { class: "why-row" }, el("td", { colspan: "7" }, why));
  const heading = el("h4");
  const body = el("tbody");
  const more = el("button", { type: "button", class: "secondary" }, "Show more deliveries");
  let cursor = first.next_cursor;
  const row = (d) => {
    const tr = el("tr", {},
      el("td", { text: localTime(d.moment_at, zoneOf(d.store_id)) }),
      el("td", { text: stores.get(d.store_id)?.name ?? d.store_id }),
      el("td", { text: d.trigger_kind }),
      el("td", { text: d.status }),
      el("td", { text: d.sent_at ? localTime(d.sent_at, zoneOf(d.store_id)) : "–" }),
      el("td", { text: [d.opened_at && "opened", d.redeemed_at && "redeemed"].filter(Boolean).join(", ") || "–" }),
      el("td", {}, el("button", {
        type: "button", class: "secondary", "aria-label": `Why this delivery (${d.id})`,
        onclick: async () => {
          tr.after(whyRow);
          say(why, "…");
          try {
            say(why, describeWhy(await api("GET", `/v1/deliveries/${d.id}/why`), campaign, stores, names));
          } catch (error) {
            say(why, error.message);
          }
        },
      }, "Why")));
    return tr;
  };
  const add = (items) => body.append(...items.map(row));
  const label = () => {
    const shown = body.querySelectorAll("tr:not(.why-row)").length;
    say(heading, `Deliveries (${shown}${cursor ? "+" : ""}), in each store's time`);
    more.hidden = !cursor;
  };
  more.addEventListener("click", async () => {
    try {
      const page = await api("GET", `/v1/campaigns/${id}/deliveries?limit=${DELIVERIES_PAGE}&cursor=${encodeURIComponent(cursor)}`);
      cursor = page.next_cursor;
      add(page.items);
      label();
    } catch (error) {
      say($("campaigns-error"), error.message);
    }
  });
  add(first.items);
  label();
  return el("div", {}, heading,
    first.items.length ? el("table", { id: "deliveries" },
      el("thead", {}, el("tr", {}, ["Moment", "Store", "Trigger", "Status", "Sent", "Feedback", ""].map((h) => el("th", { text: h })))),
      body) : el("p", { class: "hint", text: "No deliveries yet." }),
    more);
}

const num3 = (x) => (x === undefined || x === null ? null : x.toFixed(3));

// Why a delivery won its moment, in words: each campaign the moment matched with the rule it
// failed or the numbers it competed with, and the rule or draw that chose.
export function describeWhy(why, campaign, stores, names) {
  const nameOf = (cid) => (cid === campaign.id ? `this campaign (${campaign.name})` : names.get(cid) ?? cid);
  const store = stores.get(why.moment.store_id);
  const rule = why.chosen.rule === "expected value draw" ? `an expected-value draw (seed ${why.chosen.seed})` : `the rule “${why.chosen.rule}”`;
  const lines = [`${why.moment.kind} at ${store?.name ?? why.moment.store_id}, ${localTime(why.moment.occurred_at, store?.timezone)}`
    + (why.moment.probability !== undefined && why.moment.probability !== null ? ` (predicted with probability ${num3(why.moment.probability)})` : ""),
    `Chosen: ${nameOf(why.chosen.campaign_id)}, by ${rule}`];
  for (const c of why.candidates) {
    const parts = [c.eligible ? "eligible" : `not eligible (${c.reason}${c.detail ? `: ${c.detail}` : ""})`];
    if (num3(c.p_conversion) !== null) parts.push(`P(conversion) ${num3(c.p_conversion)}`);
    if (c.value !== undefined && c.value !== null) parts.push(`value ${fmt(c.value)}`);
    if (num3(c.score) !== null) parts.push(`score ${num3(c.score)}`);
    lines.push(`• ${nameOf(c.campaign_id)}: ${parts.join(", ")}`);
  }
  const ctx = why.context;
  lines.push(`Context: micromoment ${ctx.micromoment ?? "none"}, value tier ${ctx.tier}, p_buy ${ctx.p_buy === null ? "unknown" : ctx.p_buy.toFixed(3)}`);
  return lines.join("\n");
}
