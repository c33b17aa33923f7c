// The live feed: moments and pushes as the service handles them (GET /v1/live, server-sent
// events), newest first, times in each store's zone. EventSource cannot send the Authorization
// header, so the stream is read with fetch() and a ReadableStream: the key never goes in a URL.
import { listAll, session } from "./api.js";
import { $, el, say } from "./dom.js";

const KEEP = 50;  // lines shown; older ones fall off the end
const RETRY_MS = [1000, 2000, 5000, 10000, 30000];

const names = { stores: new Map(), fences: new Map(), loaded: null };
let started = false;
let shown = Promise.resolve();  // events are shown one after the other, in their order

export function open() {
  if (started) return;
  started = true;
  run();
}

async function run() {
  for (let attempt = 0; session.token; attempt += 1) {
    try {
      await stream(() => { attempt = 0; });
      status("The feed closed; reconnecting…");
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        status(error.status === 401 ? "This key is no longer valid." : "This key may not watch the feed.");
        return;
      }
      status(`Disconnected (${error.message}); reconnecting…`);
    }
    await new Promise((done) => setTimeout(done, RETRY_MS[Math.min(attempt, RETRY_MS.length - 1)]));
  }
}

async function stream(onOpen) {
  const response = await fetch("/v1/live", {
    headers: { Authorization: `Bearer ${session.token}`, Accept: "text/event-stream" },
    credentials: "omit", cache: "no-store",
  });
  if (!response.ok) throw Object.assign(new Error(`HTTP ${response.status}`), { status: response.status });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const blocks = buffer.split(/\r\n\r\n|\n\n|\r\r/);
    buffer = blocks.pop();
    for (const block of blocks) {
      const message = parse(block);
      if (message.event === "hello") { onOpen(); connected(message.data); }
      else if (message.data) {
        shown = shown.then(() => receive(message.event, message.data)).catch((error) => status(error.message));
      }
    }
  }
}

// One server-sent event: its name and its JSON data (comments, the heartbeats, have neither).
function parse(block) {
  let event = "message";
  const data = [];
  for (const line of block.split(/\r\n|\n|\r/)) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  return { event, data: data.length ? JSON.parse(data.join("\n")) : null };
}

function status(text) { say($("live-status"), text); }

function connected(hello) {
  status(hello.scope === "stores"
    ? "Live: moments and pushes at your stores, as this service handles them."
    : "Live: moments and pushes at every store, as this service handles them.");
  loadNames();
}

function loadNames() {
  names.loaded ??= Promise.all([listAll("/v1/stores"), listAll("/v1/geofences")]).then(([stores, fences]) => {
    for (const s of stores) names.stores.set(s.id, s.name);
    for (const f of fences) names.fences.set(f.id, f.name);
  }).catch(() => {}).finally(() => { setTimeout(() => { names.loaded = null; }, 5000); });
  return names.loaded;
}

const MOMENTS = { enter: "enter", dwell: "dwell", exit: "exit", predicted_next: "predicted next" };

async function receive(kind, event) {
  if (kind === "dropped") {
    add(el("li", { class: "live-dropped" },
      `${event.events} event${event.events === 1 ? "" : "s"} missed: this page was too slow to take them.`));
    return;
  }
  if ((event.fence_id && !names.fences.has(event.fence_id)) || !names.stores.has(event.store_id)) {
    await loadNames();
  }
  const place = [event.fence_id ? names.fences.get(event.fence_id) ?? "a fence" : null,
    names.stores.get(event.store_id) ?? "a store"].filter(Boolean).join(" · ");
  const when = el("time", { datetime: event.at, text: clock(event.at, event.timezone) });
  if (kind === "moment") {
    const what = MOMENTS[event.kind] ?? event.kind;
    const odds = event.probability != null ? ` (${Math.round(event.probability * 100)} %)` : "";
    add(el("li", { class: `live-moment live-${event.kind}` }, when, " ",
      el("span", { class: "badge", text: what }), ` ${place}${odds} · device ${event.device}`));
    document.dispatchEvent(new CustomEvent("contexto:moment", { detail: event }));
  } else if (kind === "push") {
    const campaign = event.campaign_name ?? `campaign ${event.campaign_id.slice(0, 8)}`;
    const why = event.reason ? ` (${event.reason.replaceAll("_", " ")})` : "";
    add(el("li", { class: `live-push live-${event.status}` }, when, " ",
      el("span", { class: "badge", text: `push ${event.status}` }),
      ` ${campaign}${why} · ${place}${event.device ? ` · device ${event.device}` : ""}`));
  }
}

function add(item) {
  const list = $("live-feed");
  list.querySelector(".live-empty")?.remove();
  list.prepend(item);
  while (list.children.length > KEEP) list.lastElementChild.remove();
}

// The time of day on the store's wall clock, with its zone's abbreviation.
function clock(iso, zone) {
  const options = { hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short" };
  try {
    return new Intl.DateTimeFormat("en-GB", { ...options, timeZone: zone }).format(new Date(iso));
  } catch {
    return new Intl.DateTimeFormat("en-GB", options).format(new Date(iso));
  }
}
