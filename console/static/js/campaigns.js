// Campaign staff: the campaigns with their status and key figures, the form, activate/pause,
// and per campaign a dashboard of what the API reports (stats, suppressions, deliveries and why).
import { api, listAll } from "./api.js";
import { renderForm } from "./campaign_form.js";
import { $, el, fmt, localTime, say } from "./dom.js";

const FUNNEL = ["triggered", "sent", "opened", "redeemed"];
let stores = new Map();

export async function open(me, rest) {
  const root = $("campaigns-root");
  const [id, action] = rest;
  stores = new Map((await listAll("/v1/stores")).map((s) => [s.id, s]));
  if (id === "new") return renderForm(root, null, (c) => { location.hash = `#campaigns/${c.id}`; });
  if (id && action === "edit") {
    const campaign = await api("GET", `/v1/campaigns/${id}`);
    return renderForm(root, campaign, (c) => { location.hash = `#campaigns/${c.id}`; });
  }
  if (id) return dashboard(root, id);
  return list(root);
}

const badge = (status) => el("span", { class: `badge ${status}`, text: status });
const pct = (part, whole) => (whole ? `${fmt(Math.round((1000 * part) / whole) / 10)} %` : "–");

function switchButton(campaign, after) {
  const active = campaign.status === "active";
  return el("button", {
    type: "button", class: active ? "secondary" : "",
    "aria-label": `${active ? "Pause" : "Activate"} ${campaign.name}`,
    onclick: async () => {
      try {
        await api("POST", `/v1/campaigns/${campaign.id}/${active ? "pause" : "activate"}`);
        await after();
      } catch (error) {
        say($("campaigns-error"), error.message);
      }
    },
  }, active ? "Pause" : "Activate");
}

function trigger(t) {
  const parts = [t.kind];
  if (t.store_ids?.length) parts.push(`${t.store_ids.length} store(s)`);
  if (t.geofence_ids?.length) parts.push(`${t.geofence_ids.length} fence(s)`);
  if (t.tags?.length) parts.push(`tags ${t.tags.join(", ")}`);
  return parts.join(" · ");
}

async function list(root) {
  const campaigns = await listAll("/v1/campaigns");
  const stats = await Promise.all(campaigns.map((c) => api("GET", `/v1/campaigns/${c.id}/stats`)));
  const rows = campaigns.map((c, i) => el("tr", {},
    el("td", {}, el("a", { href: `#campaigns/${c.id}`, text: c.name })),
    el("td", {}, badge(c.status)),
    el("td", { text: trigger(c.trigger) }),
    el("td", { text: `${localTime(c.schedule.starts_at, "UTC")} → ${localTime(c.schedule.ends_at, "UTC")}` }),
    FUNNEL.map((k) => el("td", { class: "num", text: fmt(stats[i][k]) })),
    el("td", {}, el("div", { class: "row" }, switchButton(c, () => list(root)),
      el("a", { href: `#campaigns/${c.id}/edit`, text: "Edit" })))));
  root.replaceChildren(
    el("div", { class: "row" }, el("a", { href: "#campaigns/new", class: "button", text: "New campaign" })),
    el("p", { class: "error", id: "campaigns-error", role: "alert" }),
    rows.length ? el("table", { id: "campaign-table" },
      el("thead", {}, el("tr", {}, ["Campaign", "Status", "Trigger", "Schedule"].map((h) => el("th", { text: h })),
        FUNNEL.map((h) => el("th", { class: "num", text: h })), el("th", { text: "" }))),
      el("tbody", {}, rows)) : el("p", { class: "hint", text: "No campaigns yet." }));
}

function figure(label, value, note) {
  return el("div", { class: "figure" }, el("span", { text: label }), el("strong", { text: value }),
    note ? el("span", { class: "hint", text: note }) : null);
}

async function dashboard(root, id) {
  const [campaign, stats, deliveries] = await Promise.all([
    api("GET", `/v1/campaigns/${id}`), api("GET", `/v1/campaigns/${id}/stats`),
    api("GET", `/v1/campaigns/${id}/deliveries?limit=100`)]);
  const zoneOf = (storeId) => stores.get(storeId)?.timezone;
  const funnel = el("table", { id: "funnel" },
    el("thead", {}, el("tr", {}, el("th", { text: "Step" }), el("th", { class: "num", text: "Moments" }),
      el("th", { class: "num", text: "of triggered" }), el("th", { text: "" }))),
    el("tbody", {}, FUNNEL.map((k) => el("tr", {},
      el("td", { text: k }), el("td", { class: "num", text: fmt(stats[k]) }),
      el("td", { class: "num", text: pct(stats[k], stats.triggered) }),
      el("td", {}, el("progress", { max: String(Math.max(stats.triggered, 1)), value: String(stats[k]), "aria-label": k }))))));
  const reasons = Object.entries(stats.suppressed).sort((a, b) => b[1] - a[1]);
  const suppressed = el("table", { id: "suppressions" },
    el("thead", {}, el("tr", {}, el("th", { text: "Suppressed because" }), el("th", { class: "num", text: "Moments" }))),
    el("tbody", {}, reasons.map(([reason, n]) => el("tr", {}, el("td", { text: reason }), el("td", { class: "num", text: fmt(n) })))));
  const why = el("pre", { class: "why", id: "why", "aria-live": "polite" });
  const rows = deliveries.items.map((d) => el("tr", {},
    el("td", { text: localTime(d.moment_at, zoneOf(d.store_id)) }),
    el("td", { text: stores.get(d.store_id)?.name ?? d.store_id }),
    el("td", { text: d.trigger_kind }),
    el("td", { text: d.status }),
    el("td", { text: d.sent_at ? localTime(d.sent_at, zoneOf(d.store_id)) : "–" }),
    el("td", { text: [d.opened_at && "opened", d.redeemed_at && "redeemed"].filter(Boolean).join(", ") || "–" }),
    el("td", {}, el("button", {
      type: "button", class: "secondary", "aria-label": `Why this delivery (${d.id})`,
      onclick: async () => say(why, describeWhy(await api("GET", `/v1/deliveries/${d.id}/why`), campaign)),
    }, "Why"))));
  root.replaceChildren(
    el("p", {}, el("a", { href: "#campaigns", text: "← All campaigns" })),
    el("h3", {}, `${campaign.name} `, badge(campaign.status)),
    el("p", { class: "error", id: "campaigns-error", role: "alert" }),
    el("div", { class: "row" }, switchButton(campaign, () => dashboard(root, id)),
      el("a", { href: `#campaigns/${id}/edit`, text: "Edit" })),
    el("p", { class: "hint", text: `${trigger(campaign.trigger)}; offer “${campaign.offer.title}” valid ${fmt(campaign.offer_ttl_seconds, "s")}; holdout ${fmt(campaign.holdout_percent, "%")}; priority ${campaign.priority}; value ${fmt(campaign.value)} per conversion` }),
    el("div", { class: "figures", id: "figures" },
      figure("Triggered", fmt(stats.triggered), "moments"),
      figure("Sent", fmt(stats.sent), pct(stats.sent, stats.triggered)),
      figure("Queued", fmt(stats.queued)), figure("Failed", fmt(stats.failed)),
      figure("Expired", fmt(stats.expired)),
      figure("Opened", fmt(stats.opened), pct(stats.opened, stats.sent) + " of sent"),
      figure("Redeemed", fmt(stats.redeemed), pct(stats.redeemed, stats.sent) + " of sent")),
    el("div", { class: "grid2" },
      el("div", {}, el("h4", { text: "Funnel" }), funnel),
      el("div", {}, el("h4", { text: "Suppressions by reason" }), suppressed)),
    el("h4", { text: `Deliveries (${deliveries.items.length}${deliveries.next_cursor ? "+, the first 100" : ""}), in each store's time` }),
    rows.length ? el("table", { id: "deliveries" },
      el("thead", {}, el("tr", {}, ["Moment", "Store", "Trigger", "Status", "Sent", "Feedback", ""].map((h) => el("th", { text: h })))),
      el("tbody", {}, rows)) : el("p", { class: "hint", text: "No deliveries yet." }),
    why);
}

// Why a delivery won its moment, in words.
function describeWhy(why, campaign) {
  const chosen = why.chosen.campaign_id === campaign.id ? `this campaign (${campaign.name})` : why.chosen.campaign_id;
  const lines = [`${why.moment.kind} at ${stores.get(why.moment.store_id)?.name ?? why.moment.store_id}, ${localTime(why.moment.occurred_at, stores.get(why.moment.store_id)?.timezone)}`,
    `Chosen: ${chosen}, by ${why.chosen.rule}`];
  for (const c of why.candidates) {
    const score = c.score !== undefined && c.score !== null ? `, score ${c.score.toFixed(3)}` : "";
    const p = c.p_conversion !== undefined && c.p_conversion !== null ? `, P(conversion) ${c.p_conversion.toFixed(3)}` : "";
    lines.push(`• ${c.campaign_id === campaign.id ? "this campaign" : c.campaign_id}: ${c.eligible ? "eligible" : `not eligible (${c.reason})`}${p}${score}`);
  }
  const ctx = why.context;
  lines.push(`Context: micromoment ${ctx.micromoment ?? "none"}, value tier ${ctx.tier}, p_buy ${ctx.p_buy === null ? "unknown" : ctx.p_buy.toFixed(3)}`);
  return lines.join("\n");
}
