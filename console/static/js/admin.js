// Admins: API keys (a new token is shown once, then only its hash is kept) and the policy.
import { api, listAll } from "./api.js";
import { $, el, localTime, say, show } from "./dom.js";

let stores = [];
let wired = false;

export async function open() {
  if (!wired) {
    wired = true;
    $("key-form").addEventListener("submit", (e) => { e.preventDefault(); issue(); });
    $("policy-form").addEventListener("submit", (e) => { e.preventDefault(); savePolicy(); });
  }
  stores = await listAll("/v1/stores");
  $("key-stores").replaceChildren(el("legend", { text: "Stores (store managers only)" }),
    ...stores.map((s) => el("label", { class: "inline" },
      el("input", { type: "checkbox", name: "key-store", value: s.id }), s.name)));
  await Promise.all([listKeys(), loadPolicy()]);
}

function clear() {
  say($("admin-error"), "");
  say($("admin-status"), "");
  for (const node of document.querySelectorAll("#admin-view [aria-invalid]")) node.removeAttribute("aria-invalid");
}

function refused(error, form) {
  say($("admin-error"), error.message);
  for (const { field } of error.fields || []) {
    const node = form.querySelector(`[data-field="${field.replace(/\[\d+\]/g, "")}"]`);
    if (node) node.setAttribute("aria-invalid", "true");
  }
}

async function listKeys() {
  const keys = await listAll("/v1/api-keys");
  const names = new Map(stores.map((s) => [s.id, s.name]));
  $("key-table").tBodies[0].replaceChildren(...keys.map((k) => el("tr", {},
    el("td", { text: k.name }), el("td", { text: k.role }),
    el("td", { text: k.store_ids.map((id) => names.get(id) || id).join(", ") || "–" }),
    el("td", { text: localTime(k.created_at, "UTC") }),
    el("td", {}, el("button", {
      type: "button", class: "danger", "aria-label": `Revoke ${k.name}`,
      onclick: async () => {
        clear();
        try {
          await api("DELETE", `/v1/api-keys/${k.id}`);
          await listKeys();  // the table without it first, then the word: no stale row to read
          say($("admin-status"), `Key “${k.name}” revoked: its token is refused from now on.`);
        } catch (error) {
          refused(error, $("key-form"));
        }
      },
    }, "Revoke")))));
}

async function issue() {
  clear();
  show($("new-token"), false);
  const body = { name: $("key-name").value, role: $("key-role").value };
  const chosen = [...document.querySelectorAll('input[name="key-store"]:checked')].map((i) => i.value);
  if (chosen.length) body.store_ids = chosen;
  try {
    const key = await api("POST", "/v1/api-keys", body);
    $("new-token-value").value = key.token;
    show($("new-token"), true);
    say($("admin-status"), `Key “${key.name}” issued.`);
    $("key-form").reset();
    await listKeys();
  } catch (error) {
    refused(error, $("key-form"));
  }
}

let policy = null;

async function loadPolicy() {
  policy = await api("GET", "/v1/policy");
  $("policy-max").value = policy.max_per_device_per_day;
  $("policy-gap").value = policy.min_seconds_between_pushes;
  $("policy-quiet").checked = Boolean(policy.quiet_hours);
  $("policy-quiet-from").value = policy.quiet_hours?.from ?? "21:00";
  $("policy-quiet-to").value = policy.quiet_hours?.to ?? "09:00";
}

async function savePolicy() {
  clear();
  // Every field the service returned goes back as it was, changed where the form says so.
  const body = {
    ...policy,
    max_per_device_per_day: Number($("policy-max").value),
    min_seconds_between_pushes: Number($("policy-gap").value),
    quiet_hours: $("policy-quiet").checked
      ? { from: $("policy-quiet-from").value, to: $("policy-quiet-to").value } : null,
  };
  try {
    policy = await api("PUT", "/v1/policy", body);
    say($("admin-status"), "Policy saved.");
  } catch (error) {
    refused(error, $("policy-form"));
  }
}
