// Small DOM helpers: elements are built with textContent, never innerHTML, so nothing the API
// returns is ever parsed as markup.
export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function show(node, visible) { node.hidden = !visible; }

export function say(node, message) { node.textContent = message || ""; }

const number = new Intl.NumberFormat("en");
export function fmt(value, unit = "") {
  if (value === null || value === undefined) return "–";
  return `${number.format(value)}${unit ? ` ${unit}` : ""}`;
}

// An instant as the wall clock of `zone` shows it (the store's zone where there is one).
export function localTime(iso, zone) {
  if (!iso) return "–";
  const options = {
    day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit",
    timeZoneName: "short",
  };
  try {
    return new Intl.DateTimeFormat("en-GB", { ...options, timeZone: zone || undefined })
      .format(new Date(iso));
  } catch {  // a zone this browser does not know: the browser's own
    return new Intl.DateTimeFormat("en-GB", options).format(new Date(iso));
  }
}
