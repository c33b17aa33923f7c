// A campaign summed up where it is listed or opened: its status badge, its trigger in a line,
// the button that activates or pauses it, and the body the API would take to create it again.
import { api } from "./api.js";
import { $, el, say } from "./dom.js";

export const badge = (status) => el("span", { class: `badge ${status}`, text: status });

export function switchButton(campaign, after) {
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

export function trigger(t) {
  const parts = [t.kind];
  if (t.store_ids?.length) parts.push(`${t.store_ids.length} store(s)`);
  if (t.geofence_ids?.length) parts.push(`${t.geofence_ids.length} fence(s)`);
  if (t.tags?.length) parts.push(`tags ${t.tags.join(", ")}`);
  return parts.join(" · ");
}

// The fields of a stored campaign that a body for POST /v1/campaigns (or a backtest) takes.
const SPEC = ["name", "trigger", "schedule", "offer", "offer_ttl_seconds", "priority", "caps",
  "holdout_percent", "audience", "value"];
export const specOf = (campaign) => Object.fromEntries(SPEC.map((f) => [f, campaign[f]]));
