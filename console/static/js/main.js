// The console's shell: sign in, who am I, the sections each role may open, sign out.
import { api, session } from "./api.js";
import { $, say, show } from "./dom.js";

const ROLE_NAMES = {
  admin: "admin",
  campaign_manager: "campaign staff",
  store_manager: "store manager",
  app: "mobile app",
};
// The sections each role may open; the API decides what they may do inside.
const SECTIONS = {
  admin: ["map", "campaigns", "admin"],
  campaign_manager: ["campaigns", "map"],
  store_manager: ["map"],
  app: [],
};
const loaders = {
  map: () => import("./map.js"),
  campaigns: () => import("./campaigns.js"),
  admin: () => import("./admin.js"),
};
const ALL = Object.keys(loaders);

let me = null;

async function signIn(token) {
  session.token = token;
  try {
    me = await api("GET", "/v1/me");
  } catch (error) {
    session.token = null;
    me = null;
    throw error;
  }
}

function signOut() {
  session.token = null;
  me = null;
  location.hash = "";
  location.reload();
}

function describeScope(who, storeNames) {
  if (who.role === "store_manager") {
    const names = who.store_ids.map((id) => storeNames.get(id) || id);
    return `stores: ${names.join(", ")}`;
  }
  if (who.role === "admin") return "everything";
  if (who.role === "campaign_manager") return "campaigns; stores and fences read-only";
  return "device registration only";
}

async function showShell() {
  const sections = SECTIONS[me.role] || [];
  say($("who-name"), me.name || "(unnamed key)");
  say($("who-role"), ROLE_NAMES[me.role] || me.role);
  let names = new Map();
  if (sections.includes("map")) {
    const page = await api("GET", "/v1/stores?limit=1000");
    names = new Map(page.items.map((s) => [s.id, s.name]));
  }
  say($("who-scope"), describeScope(me, names));
  show($("who"), true);
  show($("sign-in-view"), false);
  show($("nav"), sections.length > 0);
  for (const name of ALL) show($(`nav-${name}`), sections.includes(name));
  await route();
}

async function route() {
  const sections = SECTIONS[me.role] || [];
  const [wanted, ...rest] = location.hash.replace(/^#/, "").split("/");
  const section = sections.includes(wanted) ? wanted : sections[0];
  for (const name of ALL) {
    show($(`${name}-view`), name === section);
    $(`nav-${name}`).setAttribute("aria-current", name === section ? "page" : "false");
  }
  if (!section) return;
  const module = await loaders[section]();
  await module.open(me, rest);
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("api-key");
  say($("sign-in-error"), "");
  try {
    await signIn(input.value.trim());
    input.value = "";
    await showShell();
  } catch (error) {
    say($("sign-in-error"), error.status === 401
      ? "That key is unknown or has been revoked." : error.message);
  }
});
$("sign-out").addEventListener("click", signOut);
// Every form is sent by its module through the API; none is ever submitted by the browser
// (a click before its module is loaded does nothing rather than reload the page).
document.addEventListener("submit", (event) => event.preventDefault(), true);
window.addEventListener("hashchange", () => { if (me) route(); });

if (session.token) {
  signIn(session.token).then(showShell, () => show($("sign-in-view"), true));
}
