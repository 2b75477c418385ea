import { api, keyForm, el, table, show, stageName, duration } from "/ui/app.js";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const WATERFALL = ["INQUIRY", "MQL", "TQL", "SAL", "SQL", "OPPORTUNITY", "WON", "LOST", "SGL", "DISQUALIFIED", "RECYCLED"];

function svg(tag, attrs, text) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  if (text !== undefined) n.textContent = text;
  return n;
}

// funnelChart draws one horizontal bar per stage, widths proportional to
// the number of leads that entered it.
function funnelChart(stages) {
  const rows = WATERFALL.map((s) => ({ stage: s, n: Number((stages.find((x) => stageName(x.stage) === s) || {}).enteredCount || 0) }))
    .filter((r) => r.n > 0 || ["INQUIRY", "MQL", "SAL", "SQL", "OPPORTUNITY", "WON"].includes(r.stage));
  const max = Math.max(1, ...rows.map((r) => r.n));
  const bar = 26, gap = 8, label = 110, width = 640;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${rows.length * (bar + gap)}`, width: "100%", role: "img", "aria-label": "Funnel", id: "funnel-chart" });
  rows.forEach((r, i) => {
    const y = i * (bar + gap), w = Math.max(2, ((width - label - 60) * r.n) / max);
    chart.append(svg("text", { x: 0, y: y + bar * 0.68 }, r.stage));
    chart.append(svg("rect", { x: label, y, width: w, height: bar, rx: 4, fill: "#2f6fed", "data-stage": r.stage, "data-count": r.n }));
    chart.append(svg("text", { x: label + w + 6, y: y + bar * 0.68, class: "count" }, String(r.n)));
  });
  return chart;
}

function load() {
  const f = $("range");
  const start = new Date(Date.now() - Number(f.days.value) * 86400000).toISOString();
  const params = new URLSearchParams({ startTime: start });
  if (f.source.value.trim()) params.set("source", f.source.value.trim());
  const report = api("/v1/funnelReport?" + params).then((r) => r.report || {});
  show($("chart"), async () => funnelChart((await report).stages || []));
  show($("conversions"), async () => {
    const c = (await report).conversions || [];
    if (!c.length) return el("p", { class: "muted" }, "No conversions in this period.");
    return table(c, [
      ["From → to", (x) => `${stageName(x.fromStage)} → ${stageName(x.toStage)}`],
      ["Leads", (x) => x.cohortCount || 0, true],
      ["Converted", (x) => x.convertedCount || 0, true],
      ["Rate", (x) => `${((x.rate || 0) * 100).toFixed(1)} %`, true],
    ]);
  });
  show($("times"), async () => {
    const s = ((await report).stages || []).filter((x) => x.medianTimeInStage);
    if (!s.length) return el("p", { class: "muted" }, "No completed stays in this period.");
    return table(s, [
      ["Stage", (x) => stageName(x.stage)],
      ["Median", (x) => duration(x.medianTimeInStage), true],
      ["p90", (x) => duration(x.p90TimeInStage), true],
    ]);
  });
}

$("range").addEventListener("submit", (e) => { e.preventDefault(); load(); });
keyForm($("key-form"), load);
