// The public API, called with the signed-in key. The key lives in sessionStorage only: it goes
// in the Authorization header, never in a URL, and is forgotten when the tab closes.
const KEY = "contexto.apiKey";

export const session = {
  get token() { return sessionStorage.getItem(KEY); },
  set token(value) {
    if (value) sessionStorage.setItem(KEY, value); else sessionStorage.removeItem(KEY);
  },
};

export class ApiError extends Error {
  constructor(status, problem) {
    super(describeProblem(status, problem));
    this.status = status;
    this.problem = problem || {};
    this.fields = (problem && problem.errors) || [];
  }
}

// A problem+json in words: its detail, then each named field with its reason.
export function describeProblem(status, problem) {
  if (!problem) return `The service answered ${status}.`;
  const fields = (problem.errors || []).map((e) => `${e.field}: ${e.message}`);
  const detail = problem.detail || problem.title || `The service answered ${status}.`;
  if (fields.length === 0) return detail;
  if (fields.length === 1 && detail.includes(fields[0])) return detail;
  return fields.join("; ");
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = session.token;
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// Every item of a list, following next_cursor.
export async function listAll(path) {
  const items = [];
  let cursor = null;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api("GET", `${path}${sep}limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}
