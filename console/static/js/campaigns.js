// Campaign staff: the campaigns with their status and key figures, the form, activate/pause;
// each campaign opens on its dashboard (campaign_dashboard.js).
import { api, listAll } from "./api.js";
import { dashboard } from "./campaign_dashboard.js";
import { renderForm } from "./campaign_form.js";
import { badge, switchButton, trigger } from "./campaign_summary.js";
import { $, el, fmt, localTime } from "./dom.js";

const FUNNEL = ["triggered", "sent", "opened", "redeemed", "conversions"];

export async function open(me, rest) {
  const root = $("campaigns-root");
  const [id, action] = rest;
  if (id === "new") return renderForm(root, null, (c) => { location.hash = `#campaigns/${c.id}`; });
  if (id && action === "edit") {
    const campaign = await api("GET", `/v1/campaigns/${id}`);
    return renderForm(root, campaign, (c) => { location.hash = `#campaigns/${c.id}`; });
  }
  if (id) return dashboard(root, id);
  return list(root);
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
