// Shared helpers of the Leadflow UI: the API key (kept in this browser's
// localStorage only), a fetch wrapper that turns google.rpc.Status errors
// into messages, and small DOM builders. Text is always set with
// textContent, never innerHTML, so lead data cannot inject markup.
"use strict";

const KEY = "leadflow.apiKey";

export function apiKey() { return localStorage.getItem(KEY) || ""; }

// keyForm wires a form with an input named "key" to store the key and rerun
// onReady; it calls onReady at once when a key is already stored.
export function keyForm(form, onReady) {
  form.key.value = apiKey();
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    localStorage.setItem(KEY, form.key.value.trim());
    onReady();
  });
  if (apiKey()) onReady();
}

export class APIError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
  }
}

export async function api(path) {
  const resp = await fetch(path, { headers: { Authorization: "Bearer " + apiKey() } });
  const body = await resp.json().catch(() => null);
  if (!resp.ok) throw new APIError(resp.status, body);
  return body;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// table builds a table from rows and [header, cell(row), numeric?] columns.
export function table(rows, columns) {
  return el("table", {},
    el("thead", {}, el("tr", {}, columns.map(([h, , num]) => el("th", num ? { class: "num" } : {}, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, columns.map(([, cell, num]) => el("td", num ? { class: "num" } : {}, cell(r)))))));
}

// show replaces the content of a section, or explains why it is empty.
export function show(target, render) {
  target.replaceChildren(el("p", { class: "muted" }, "Loading…"));
  return render().then((nodes) => target.replaceChildren(...[].concat(nodes)))
    .catch((err) => target.replaceChildren(el("p", { class: err.status === 501 ? "muted" : "error" },
      err.status === 501 ? "Not available yet: this service does not implement it." : err.message)));
}

export const stageName = (s) => (s || "STAGE_UNSPECIFIED").replace(/^STAGE_/, "");
export const when = (t) => (t ? new Date(t).toLocaleString() : "—");
export function duration(d) {
  if (!d) return "—";
  const s = parseFloat(d);
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}
