// Counts as the page shows them: a share in percent, a figure card, and the reasons that
// suppressed moments (the stats' and the backtest's `suppressed`) as a table, most first.
import { el, fmt } from "./dom.js";

export const pct = (part, whole) => (whole ? `${(Math.round((1000 * part) / whole) / 10).toFixed(1)} %` : "–");

export function figure(label, value, note) {
  return el("div", { class: "figure" }, el("span", { text: label }), el("strong", { text: value }),
    note ? el("span", { class: "hint", text: note }) : null);
}

const words = (reason) => reason.replaceAll("_", " ");

// The reasons that suppressed a moment, most first, with their share of `whole`; those that
// never did, in one line.
export function suppressions(suppressed, whole, id) {
  const reasons = Object.entries(suppressed).sort((a, b) => b[1] - a[1]);
  const seen = reasons.filter(([, n]) => n > 0);
  const never = reasons.filter(([, n]) => n === 0).map(([reason]) => words(reason));
  return el("div", {},
    seen.length ? el("table", { id },
      el("thead", {}, el("tr", {}, el("th", { text: "Suppressed because" }), el("th", { class: "num", text: "Moments" }),
        el("th", { class: "num", text: "of all" }))),
      el("tbody", {}, seen.map(([reason, n]) => el("tr", {}, el("td", { text: words(reason) }),
        el("td", { class: "num", text: fmt(n) }), el("td", { class: "num", text: pct(n, whole) })))))
      : el("p", { id, text: "No moment was suppressed." }),
    never.length && seen.length ? el("p", { class: "hint", text: `None for: ${never.join(", ")}.` }) : null);
}

// {reason: n} in a line: "schedule 3, consent 1".
export const reasonsInWords = (suppressed) => Object.entries(suppressed).filter(([, n]) => n > 0)
  .sort((a, b) => b[1] - a[1]).map(([reason, n]) => `${words(reason)} ${fmt(n)}`).join(", ") || "–";
