// The campaign form: every field of the contract, the offer previewed as Android and iOS show
// it, and the API's validation errors shown at the field they name.
import { api, listAll } from "./api.js";
import { backtestPanel } from "./backtest.js";
import { $, el, say } from "./dom.js";

const DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const KINDS = ["enter", "dwell", "exit", "predicted_next"];
const MOMENTS = ["know", "go", "do", "buy"];
const TIERS = ["low", "medium", "high"];
const STATUSES = ["draft", "active", "paused"];

const csv = (text) => text.split(",").map((t) => t.trim()).filter(Boolean);
const num = (input) => (input.value.trim() === "" ? null : Number(input.value));
const utcInput = (iso) => (iso ? new Date(iso).toISOString().slice(0, 16) : "");

// A labelled input; `field` is the API's name for it, where its errors are shown.
function field(label, field, input, hint) {
  const id = `cf-${field.replace(/[^a-z0-9]+/gi, "-")}`;
  input.id = id;
  input.dataset.field = field;
  const error = el("p", { class: "field-error", id: `${id}-error`, "aria-live": "polite" });
  input.setAttribute("aria-describedby", `${id}-error`);
  return el("div", { class: "field" }, el("label", { for: id, text: label }), input,
    hint ? el("p", { class: "hint", text: hint }) : null, error);
}

function checks(name, legend, values, chosen, labelOf = (v) => v) {
  return el("fieldset", { "data-field": name },
    el("legend", { text: legend }),
    values.map((value) => el("label", { class: "inline" },
      el("input", { type: "checkbox", name, value, checked: chosen.includes(value) }),
      labelOf(value))),
    el("p", { class: "field-error", "aria-live": "polite" }));
}

const checked = (form, name) => [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((i) => i.value);

function daypartRow(part = { days: [1, 2, 3, 4, 5], from: "09:00", to: "18:00" }) {
  const row = el("tr", { class: "daypart" },
    DAYS.map((day, i) => el("td", {}, el("input", {
      type: "checkbox", value: String(i + 1), "aria-label": day, checked: part.days.includes(i + 1),
    }))),
    el("td", {}, el("input", { type: "time", class: "from", value: part.from, "aria-label": "from" })),
    el("td", {}, el("input", { type: "time", class: "to", value: part.to, "aria-label": "to" })),
    el("td", {}, el("button", { type: "button", class: "danger", onclick: () => row.remove() }, "Remove")));
  return row;
}

function preview(form) {
  const title = form.querySelector('[data-field="offer.title"]').value || "(title)";
  const body = form.querySelector('[data-field="offer.body"]').value || "(body)";
  const image = form.querySelector('[data-field="offer.image_url"]').value;
  const link = form.querySelector('[data-field="offer.deep_link"]').value;
  const extra = [image ? `image: ${image}` : null, link ? `opens ${link}` : null].filter(Boolean).join(" · ");
  const phone = (kind, app) => el("div", { class: `phone ${kind}`, "data-platform": kind },
    el("div", { class: "app", text: app }), el("strong", { text: title }), el("div", { text: body }),
    extra ? el("div", { class: "hint", text: extra }) : null);
  $("offer-preview").replaceChildren(
    el("h4", { text: "Android" }), phone("android", "Your app · now"),
    el("h4", { text: "iOS" }), phone("ios", "YOUR APP  now"));
}

export async function renderForm(root, campaign, onSaved) {
  const [stores, fences] = await Promise.all([listAll("/v1/stores"), listAll("/v1/geofences")]);
  const c = campaign || {
    name: "", trigger: { kind: "enter", store_ids: [], geofence_ids: [], tags: [] },
    schedule: { starts_at: null, ends_at: null, dayparts: [] },
    offer: { title: "", body: "", data: {} }, offer_ttl_seconds: 900, priority: 0, caps: {},
    holdout_percent: 0, audience: null, value: 1,
  };
  const storeName = new Map(stores.map((s) => [s.id, s.name]));
  const t = c.trigger;
  const perDevice = c.caps?.per_device || {};
  const audience = c.audience || {};
  const input = (attrs) => el("input", attrs);
  const form = el("form", { id: "campaign-form", class: "card", novalidate: true },
    el("h3", { text: campaign ? `Edit “${campaign.name}”` : "New campaign" }),
    el("p", { class: "error", id: "form-error", role: "alert" }),
    el("div", { class: "grid2" },
      field("Campaign name", "name", input({ value: c.name, required: true })),
      field("Priority", "priority", input({ type: "number", step: "1", value: c.priority }),
        "the highest priority wins a moment outright"),
      field("Offer lifetime (seconds)", "offer_ttl_seconds",
        input({ type: "number", step: "1", value: c.offer_ttl_seconds }), "60 to 86,400 s"),
      field("Value of one conversion", "value", input({ type: "number", step: "any", value: c.value }),
        "in the stores' currency, for arbitration"),
      campaign ? null : field("Status once created", "status",
        el("select", {}, STATUSES.map((s) => el("option", { value: s, text: s }))),
        "a draft or paused campaign sends nothing until it is activated")),
    el("fieldset", {}, el("legend", { text: "Trigger" }),
      field("Kind", "trigger.kind", el("select", {}, KINDS.map((k) => el("option", { value: k, selected: k === t.kind, text: k })))),
      checks("trigger.store_ids", "Stores (any fence of them)", stores.map((s) => s.id), t.store_ids || [], (id) => storeName.get(id)),
      checks("trigger.geofence_ids", "Fences", fences.map((f) => f.id), t.geofence_ids || [],
        (id) => { const f = fences.find((x) => x.id === id); return `${f.name} (${storeName.get(f.store_id) || "store"})`; }),
      field("Fence tags (comma-separated)", "trigger.tags", input({ value: (t.tags || []).join(", ") })),
      field("Least probability (predicted_next)", "trigger.min_probability",
        input({ type: "number", step: "0.01", value: t.min_probability ?? "" }), "0 to 1"),
      field("Shortest stay (exit, seconds)", "trigger.min_stay_seconds",
        input({ type: "number", step: "1", value: t.min_stay_seconds ?? "" }))),
    el("fieldset", {}, el("legend", { text: "Schedule" }),
      el("div", { class: "grid2" },
        field("Starts (UTC)", "schedule.starts_at", input({ type: "datetime-local", value: utcInput(c.schedule.starts_at) })),
        field("Ends (UTC)", "schedule.ends_at", input({ type: "datetime-local", value: utcInput(c.schedule.ends_at) }))),
      el("p", { class: "hint", text: "Dayparts: the week's windows when it may fire, in each store's local time (none: all day)." }),
      el("table", { class: "weekgrid", "data-field": "schedule.dayparts" },
        el("thead", {}, el("tr", {}, DAYS.map((d) => el("th", { text: d })), el("th", { text: "From" }), el("th", { text: "To" }), el("th", {}))),
        el("tbody", { id: "dayparts" }, (c.schedule.dayparts || []).map(daypartRow))),
      el("p", { class: "field-error", "aria-live": "polite" }),
      el("button", { type: "button", class: "secondary", onclick: () => $("dayparts").append(daypartRow()) }, "Add a daypart")),
    el("fieldset", {}, el("legend", { text: "Offer" }),
      el("div", { class: "grid2" },
        el("div", {},
          field("Title", "offer.title", input({ value: c.offer.title, oninput: () => preview(form) })),
          field("Body", "offer.body", el("textarea", { rows: "3", oninput: () => preview(form) }, c.offer.body)),
          field("Deep link", "offer.deep_link", input({ value: c.offer.deep_link ?? "", oninput: () => preview(form) })),
          field("Image URL (https)", "offer.image_url", input({ value: c.offer.image_url ?? "", oninput: () => preview(form) })),
          field("Data (one key=value a line)", "offer.data", el("textarea", { rows: "3" },
            Object.entries(c.offer.data || {}).map(([k, v]) => `${k}=${v}`).join("\n")))),
        el("div", { id: "offer-preview", "aria-label": "How the notification looks", role: "group" }))),
    el("fieldset", {}, el("legend", { text: "Pressure" }),
      el("div", { class: "grid2" },
        field("At most (pushes per device)", "caps.per_device.count", input({ type: "number", step: "1", value: perDevice.count ?? "" })),
        field("… per period (seconds)", "caps.per_device.period_seconds", input({ type: "number", step: "1", value: perDevice.period_seconds ?? "" })),
        field("Cooldown (seconds)", "caps.cooldown_seconds", input({ type: "number", step: "1", value: c.caps?.cooldown_seconds ?? "" })),
        field("Holdout (%)", "holdout_percent", input({ type: "number", step: "0.1", value: c.holdout_percent }), "0 to 50 %: measured, never sent"))),
    el("fieldset", { "data-field": "audience" }, el("legend", { text: "Audience (none: everyone)" }),
      checks("audience.micromoments", "Micromoments", MOMENTS, audience.micromoments || []),
      checks("audience.value_tiers", "Value tiers", TIERS, audience.value_tiers || []),
      field("Categories (prefixes, comma-separated)", "audience.categories", input({ value: (audience.categories || []).join(", ") })),
      field("Least intent", "audience.min_intent", input({ type: "number", step: "0.01", value: audience.min_intent ?? "" }), "0 to 1"),
      el("p", { class: "field-error", "aria-live": "polite" })),
    el("div", { class: "row" },
      el("button", { type: "submit" }, campaign ? "Save changes" : "Create campaign"),
      el("a", { href: campaign ? `#campaigns/${campaign.id}` : "#campaigns", text: "Cancel" })));
  // Outside the form: Enter in its period fields must not save the campaign.
  const backtest = el("section", { "aria-labelledby": "backtest-title" },
    el("h3", { id: "backtest-title", text: "Backtest this proposal (as the form stands, unsaved)" }),
    backtestPanel(() => { clearErrors(form); return bodyOf(form); }, {
      stores: new Map(stores.map((s) => [s.id, s])),
      campaignErrors: (error) => {
        const fields = error.fields.filter((f) => f.field.startsWith("campaign."))
          .map((f) => ({ ...f, field: f.field.slice("campaign.".length) }));
        showErrors(form, { fields, message: error.message });
        return fields.length > 0;
      },
    }));
  root.replaceChildren(form, backtest);
  preview(form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    let body;
    try {
      body = bodyOf(form);
    } catch (error) {
      say($("form-error"), error.message);
      return;
    }
    try {
      const saved = campaign
        ? await api("PATCH", `/v1/campaigns/${campaign.id}`, body)
        : await api("POST", "/v1/campaigns", body);
      onSaved(saved);
    } catch (error) {
      showErrors(form, error);
    }
  });
}

function bodyOf(form) {
  const v = (name) => form.querySelector(`[data-field="${name}"]`);
  const iso = (name) => (v(name).value ? `${v(name).value}:00Z` : null);
  const data = {};
  for (const line of v("offer.data").value.split("\n").map((l) => l.trim()).filter(Boolean)) {
    const at = line.indexOf("=");
    if (at < 1) throw new Error(`offer data: “${line}” is not key=value`);
    data[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  const trigger = {
    kind: v("trigger.kind").value, store_ids: checked(form, "trigger.store_ids"),
    geofence_ids: checked(form, "trigger.geofence_ids"), tags: csv(v("trigger.tags").value),
  };
  if (num(v("trigger.min_probability")) !== null) trigger.min_probability = num(v("trigger.min_probability"));
  if (num(v("trigger.min_stay_seconds")) !== null) trigger.min_stay_seconds = num(v("trigger.min_stay_seconds"));
  const dayparts = [...form.querySelectorAll("tr.daypart")].map((row) => ({
    days: [...row.querySelectorAll("input[type=checkbox]:checked")].map((i) => Number(i.value)),
    from: row.querySelector(".from").value, to: row.querySelector(".to").value,
  }));
  const offer = { title: v("offer.title").value, body: v("offer.body").value, data };
  if (v("offer.deep_link").value.trim()) offer.deep_link = v("offer.deep_link").value.trim();
  if (v("offer.image_url").value.trim()) offer.image_url = v("offer.image_url").value.trim();
  const caps = {};
  const count = num(v("caps.per_device.count"));
  const period = num(v("caps.per_device.period_seconds"));
  if (count !== null || period !== null) caps.per_device = { count, period_seconds: period };
  if (num(v("caps.cooldown_seconds")) !== null) caps.cooldown_seconds = num(v("caps.cooldown_seconds"));
  const audience = {};
  const moments = checked(form, "audience.micromoments");
  const tiers = checked(form, "audience.value_tiers");
  const categories = csv(v("audience.categories").value);
  if (moments.length) audience.micromoments = moments;
  if (tiers.length) audience.value_tiers = tiers;
  if (categories.length) audience.categories = categories;
  if (num(v("audience.min_intent")) !== null) audience.min_intent = num(v("audience.min_intent"));
  const status = v("status") ? { status: v("status").value } : {};
  return {
    ...status, name: v("name").value, trigger,
    schedule: { starts_at: iso("schedule.starts_at"), ends_at: iso("schedule.ends_at"), dayparts },
    offer, offer_ttl_seconds: num(v("offer_ttl_seconds")), priority: num(v("priority")) ?? 0,
    caps, holdout_percent: num(v("holdout_percent")) ?? 0,
    audience: Object.keys(audience).length ? audience : null, value: num(v("value")) ?? 1,
  };
}

function clearErrors(form) {
  say($("form-error"), "");
  for (const node of form.querySelectorAll(".field-error")) say(node, "");
  for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
}

// Each error at the input the API names, or the nearest enclosing part of the form.
function showErrors(form, error) {
  const named = [...form.querySelectorAll("[data-field]")];
  const unplaced = [];
  for (const { field, message } of error.fields) {
    const path = field.replace(/\[\d+\]/g, "");
    let target = null;
    for (const node of named) {
      const name = node.dataset.field;
      if ((path === name || path.startsWith(`${name}.`)) && (!target || name.length > target.dataset.field.length)) target = node;
    }
    if (!target) { unplaced.push(`${field}: ${message}`); continue; }
    target.setAttribute("aria-invalid", "true");
    const own = (node) => [...node.children].find((n) => n.classList.contains("field-error"));
    const slot = target.closest(".field")?.querySelector(".field-error")
      || own(target) || own(target.parentElement);
    if (slot) say(slot, `${slot.textContent ? `${slot.textContent}\n` : ""}${message}`);
    else unplaced.push(`${field}: ${message}`);
  }
  if (!error.fields.length) unplaced.push(error.message);
  say($("form-error"), unplaced.length ? unplaced.join("\n") : "Please correct the fields marked below.");
}
