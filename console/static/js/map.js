// Stores and fences on a Leaflet map. Store managers (and admins) draw, edit, drag, delete,
// import and export fences with Leaflet-Geoman; every change is one call to the API, and the
// API's reason for refusing a shape is shown next to the shape.
import { api, listAll } from "./api.js";
import { $, el, fmt, localTime, say, show } from "./dom.js";
import { showFence } from "./fence_activity.js";
import * as live from "./live.js";

const L = window.L;
const STYLE = { color: "#0b5cad", weight: 2, fillOpacity: 0.15 };
const OTHER_STORE = { color: "#5b6573", weight: 1, fillOpacity: 0.05, dashArray: "4 4" };
const DISABLED = { color: "#8a8f98", weight: 2, fillOpacity: 0.05, dashArray: "6 4" };
const INVALID = { color: "#b3261e", weight: 3, fillOpacity: 0.2, dashArray: "2 4" };

const state = { me: null, stores: [], fences: [], storeId: null, selected: null, layers: new Map() };
let map = null;
let fenceLayers = null;
let heatLayer = null;

const canEdit = () => state.me.role === "admin" || state.me.role === "store_manager";
const storeOf = (id) => state.stores.find((s) => s.id === id);

export async function open(me) {
  state.me = me;
  live.open();
  if (!map) init();
  await reload();
  setTimeout(() => map.invalidateSize(), 0);
}

function init() {
  map = L.map("map", { zoomSnap: 0.25 }).setView([20, 0], 2);
  const url = document.querySelector('meta[name="contexto-tile-url"]').content;
  const attribution = document.querySelector('meta[name="contexto-tile-attribution"]').content;
  if (url) L.tileLayer(url, { maxZoom: 19, attribution }).addTo(map);
  heatLayer = L.featureGroup().addTo(map);
  fenceLayers = L.featureGroup().addTo(map);
  map.on("mousemove", (e) => {
    $("pointer").value = `${e.latlng.lat.toFixed(7)}, ${e.latlng.lng.toFixed(7)}`;
  });
  if (canEdit()) {
    map.pm.addControls({
      position: "topleft", drawMarker: false, drawCircleMarker: false, drawPolyline: false,
      drawText: false, cutPolygon: false, rotateMode: false,
      drawPolygon: true, drawRectangle: true, drawCircle: true,
      editMode: true, dragMode: true, removalMode: true,
    });
    // The API is the judge of a shape (self-intersection, size, positions): let it say why.
    map.pm.setGlobalOptions({ allowSelfIntersection: true, layerGroup: fenceLayers });
    map.on("pm:create", (e) => create(e.layer));
    map.on("pm:remove", (e) => remove(e.layer));
    show($("draw-help"), true);
    show($("new-fence"), true);
    show($("fence-tools"), true);
  }
  $("store-select").addEventListener("change", (e) => {
    state.storeId = e.target.value;
    state.selected = null;
    render(true);
    drawHeat();
  });
  $("heat-window").addEventListener("change", drawHeat);
  $("fence-form").addEventListener("submit", (e) => { e.preventDefault(); saveForm(); });
  $("fence-delete").addEventListener("click", () => {
    const layer = state.layers.get(state.selected);
    if (layer) { fenceLayers.removeLayer(layer); remove(layer); }
  });
  $("export-fences").addEventListener("click", exportFences);
  $("import-file").addEventListener("change", importFences);
}

async function reload(fit = true) {
  state.stores = await listAll("/v1/stores");
  state.fences = await listAll("/v1/geofences");
  if (!storeOf(state.storeId)) state.storeId = state.stores[0]?.id ?? null;
  const select = $("store-select");
  select.replaceChildren(...state.stores.map((s) => el("option", { value: s.id, text: s.name })));
  select.value = state.storeId ?? "";
  render(fit);
  await drawHeat();
}

// Pings per H3 cell around the store (the API leaves out cells of fewer than 5 devices).
async function drawHeat() {
  heatLayer.clearLayers();
  const span = $("heat-window").value;
  if (!span || !state.storeId) { say($("heat-status"), ""); return; }
  try {
    const heat = await api("GET", `/v1/reports/heat?store_id=${state.storeId}&window=${span}`);
    const busiest = Math.max(1, ...heat.cells.map((c) => c.pings));
    for (const cell of heat.cells) {
      const outline = L.polygon(globalThis.h3.cellToBoundary(cell.cell), {
        className: "heat-cell", color: "#c2410c", weight: 1, fillColor: "#f97316",
        fillOpacity: 0.15 + 0.5 * (cell.pings / busiest), pmIgnore: true, interactive: true,
      });
      outline.bindTooltip(`${fmt(cell.pings, "pings")}, ${fmt(cell.devices, "devices")}`);
      heatLayer.addLayer(outline);
    }
    heatLayer.bringToBack();
    const n = heat.cells.length;
    say($("heat-status"), `${fmt(n)} cell${n === 1 ? "" : "s"} with pings in the last ${span}`
      + ` (H3 resolution ${heat.resolution}).`);
  } catch (error) {
    say($("heat-status"), error.message);
  }
}

// A fence's geometry as a Leaflet layer: a circle for a Point, polygons (holes kept) otherwise.
function layerOf(fence, style, editable) {
  const g = fence.geometry;
  const flip = (ring) => ring.map(([lng, lat]) => [lat, lng]);
  const options = { ...style, pmIgnore: !editable };
  if (g.type === "Point") {
    return L.circle([g.coordinates[1], g.coordinates[0]], { ...options, radius: fence.radius_m });
  }
  const rings = g.type === "Polygon" ? g.coordinates.map(flip)
    : g.coordinates.map((polygon) => polygon.map(flip));
  return L.polygon(rings, options);
}

// The body a shape stands for: a Point and its radius for a circle, else its GeoJSON polygon.
function shapeOf(layer) {
  if (layer instanceof L.Circle) {
    const c = layer.getLatLng();
    return { geometry: { type: "Point", coordinates: [c.lng, c.lat] }, radius_m: layer.getRadius() };
  }
  return { geometry: layer.toGeoJSON(false).geometry };
}

function render(fit) {
  fenceLayers.clearLayers();
  state.layers.clear();
  const store = storeOf(state.storeId);
  say($("store-zone"), store ? `Times in the store's zone: ${store.timezone}` : "No store to show.");
  const list = $("fence-list");
  list.replaceChildren();
  for (const fence of state.fences) {
    const own = fence.store_id === state.storeId;
    const style = !own ? OTHER_STORE : fence.enabled ? STYLE : DISABLED;
    const layer = layerOf(fence, style, own && canEdit());
    layer.fenceId = fence.id;
    layer.bindTooltip(`${fence.name} (${storeOf(fence.store_id)?.name ?? "store"})`);
    layer.on("click", () => select(fence.id));
    if (own && canEdit()) layer.on("pm:edit", () => update(layer));
    fenceLayers.addLayer(layer);
    state.layers.set(fence.id, layer);
    if (own) {
      const button = el("button", {
        type: "button", "aria-pressed": String(state.selected === fence.id),
        onclick: () => select(fence.id, true),
      }, `${fence.name} — ${describe(fence)}`);
      list.append(el("li", {}, button));
    }
  }
  if (!list.children.length) list.append(el("li", { class: "hint", text: "No fences yet." }));
  fillForm();
  if (fit) fitView();
}

function describe(fence) {
  const shape = fence.geometry.type === "Point" ? `circle ${fmt(Math.round(fence.radius_m), "m")}`
    : fence.geometry.type.toLowerCase();
  return `${shape}, ${fmt(Math.round(fence.area_m2), "m²")}, dwell ${fmt(fence.dwell_seconds, "s")}`
    + (fence.enabled ? "" : ", disabled");
}

function fitView() {
  const own = state.fences.filter((f) => f.store_id === state.storeId).map((f) => state.layers.get(f.id));
  const layers = own.length ? own : [...state.layers.values()];
  if (!layers.length) return;
  const bounds = L.featureGroup(layers).getBounds();
  map.fitBounds(bounds.pad(0.6), { maxZoom: 17 });
}

function select(fenceId, zoom = false) {
  state.selected = fenceId;
  for (const button of $("fence-list").querySelectorAll("button")) button.setAttribute("aria-pressed", "false");
  render(false);
  const layer = state.layers.get(fenceId);
  if (zoom && layer) map.fitBounds(layer.getBounds().pad(0.8), { maxZoom: 18 });
}

function fillForm() {
  const fence = state.fences.find((f) => f.id === state.selected);
  show($("fence-form"), Boolean(fence));
  showFence(fence ?? null, fence ? storeOf(fence.store_id) : null);
  if (!fence) return;
  const editable = canEdit();
  say($("fence-form-title"), `Fence: ${fence.name}`);
  $("fence-name").value = fence.name;
  $("fence-dwell").value = fence.dwell_seconds;
  $("fence-tags").value = fence.tags.join(", ");
  $("fence-enabled").checked = fence.enabled;
  for (const id of ["fence-name", "fence-dwell", "fence-tags", "fence-enabled"]) {
    $(id).disabled = !editable;
    $(id).removeAttribute("aria-invalid");
  }
  show($("fence-save"), editable);
  show($("fence-delete"), editable);
  const zone = storeOf(fence.store_id)?.timezone;
  say($("fence-facts"), `${describe(fence)}; version ${fence.version}, changed ${localTime(fence.updated_at, zone)}`);
}

function bodyOf(fence, shape) {
  return {
    name: fence.name, ...shape, dwell_seconds: fence.dwell_seconds,
    enabled: fence.enabled, tags: fence.tags,
  };
}

function problem(error, layer) {
  say($("map-status"), "");
  say($("map-error"), error.message);
  if (layer) {
    layer.setStyle(INVALID);
    layer.unbindTooltip();
    layer.bindTooltip(error.message, { permanent: true, direction: "top", className: "shape-error" }).openTooltip();
  }
}

function done(message) {
  say($("map-error"), "");
  say($("map-status"), message);
}

async function create(layer) {
  if (layer.fenceId) return;
  layer.on("pm:edit", () => (layer.fenceId ? update(layer) : create(layer)));
  const name = $("new-fence-name").value.trim() || "New fence";
  try {
    const fence = await api("POST", `/v1/stores/${state.storeId}/geofences`, { name, ...shapeOf(layer) });
    fenceLayers.removeLayer(layer);
    state.fences.push(fence);
    state.selected = fence.id;
    render(false);
    done(`Fence “${fence.name}” saved.`);
  } catch (error) {
    problem(error, layer);
  }
}

async function update(layer) {
  const fence = state.fences.find((f) => f.id === layer.fenceId);
  if (!fence) return;
  try {
    const saved = await api("PUT", `/v1/geofences/${fence.id}`, bodyOf(fence, shapeOf(layer)));
    Object.assign(fence, saved);
    state.selected = fence.id;
    render(false);
    done(`Fence “${saved.name}” moved (version ${saved.version}).`);
  } catch (error) {
    problem(error, layer);
  }
}

async function remove(layer) {
  if (!layer.fenceId) { done("Unsaved shape removed."); return; }
  const fence = state.fences.find((f) => f.id === layer.fenceId);
  try {
    await api("DELETE", `/v1/geofences/${layer.fenceId}`);
    state.fences = state.fences.filter((f) => f.id !== layer.fenceId);
    if (state.selected === layer.fenceId) state.selected = null;
    render(false);
    done(`Fence “${fence?.name ?? ""}” deleted.`);
  } catch (error) {
    render(false);
    problem(error, state.layers.get(layer.fenceId));
  }
}

async function saveForm() {
  const fence = state.fences.find((f) => f.id === state.selected);
  if (!fence) return;
  const layer = state.layers.get(fence.id);
  const changed = {
    ...fence,
    name: $("fence-name").value,
    dwell_seconds: Number($("fence-dwell").value),
    tags: $("fence-tags").value.split(",").map((t) => t.trim()).filter(Boolean),
    enabled: $("fence-enabled").checked,
  };
  try {
    const saved = await api("PUT", `/v1/geofences/${fence.id}`, bodyOf(changed, shapeOf(layer)));
    Object.assign(fence, saved);
    render(false);
    done(`Fence “${saved.name}” saved (version ${saved.version}).`);
  } catch (error) {
    const inputs = { name: "fence-name", dwell_seconds: "fence-dwell", tags: "fence-tags", enabled: "fence-enabled" };
    for (const { field } of error.fields || []) {
      const id = inputs[field.split(/[.[]/)[0]];
      if (id) $(id).setAttribute("aria-invalid", "true");
    }
    problem(error, null);
  }
}

async function exportFences() {
  const store = storeOf(state.storeId);
  if (!store) return;
  try {
    const collection = await api("GET", `/v1/stores/${store.id}/geofences/export`);
    const blob = new Blob([JSON.stringify(collection, null, 2)], { type: "application/geo+json" });
    const link = el("a", { href: URL.createObjectURL(blob), download: `${store.name}-fences.geojson` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
    done(`Exported ${collection.features.length} fences of “${store.name}”.`);
  } catch (error) {
    problem(error, null);
  }
}

async function importFences(event) {
  const file = event.target.files[0];
  event.target.value = "";
  if (!file) return;
  let collection;
  try {
    collection = JSON.parse(await file.text());
  } catch (error) {
    problem({ message: `${file.name} is not JSON: ${error.message}` }, null);
    return;
  }
  try {
    const { created } = await api("POST", `/v1/stores/${state.storeId}/geofences/import`, collection);
    state.fences.push(...created);
    render(true);
    done(`Imported ${created.length} fences from ${file.name}.`);
  } catch (error) {
    problem(error, null);
  }
}
