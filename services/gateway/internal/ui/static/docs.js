import { el } from "/ui/app.js";

// Renders /openapi.json grouped by service: method, path, summary, and the
// parameters each operation takes.
const doc = await (await fetch("/openapi.json")).json();
const byTag = new Map((doc.tags || []).map((t) => [t.name, []]));
for (const [path, ops] of Object.entries(doc.paths || {})) {
  for (const [method, op] of Object.entries(ops)) {
    for (const tag of op.tags || ["Other"]) {
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push({ path, method, op });
    }
  }
}
const toc = document.getElementById("toc");
const out = document.getElementById("services");
for (const [tag, ops] of byTag) {
  if (!ops.length) continue;
  toc.append(el("a", { href: "#" + tag }, tag));
  out.append(el("section", { id: tag, class: "service" },
    el("h2", {}, tag),
    ops.map(({ path, method, op }) => el("div", { class: "op" },
      el("span", { class: "method " + method }, method), " ", el("code", { class: "path" }, path),
      el("div", {}, op.summary || ""),
      (op.parameters || []).length ? el("div", { class: "muted" }, "Parameters: " +
        op.parameters.map((p) => `${p.name} (${p.in}${p.required ? ", required" : ""})`).join(", ")) : null))));
}
