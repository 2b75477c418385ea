import { api, keyForm, el, table, show, stageName, when } from "/ui/app.js";

const $ = (id) => document.getElementById(id);

function loadList() {
  show($("list"), async () => {
    const { leads = [] } = await api("/v1/leads?pageSize=50");
    if (!leads.length) return el("p", { class: "muted" }, "No leads yet. Submit the demo form.");
    return table(leads, [
      ["Email", (l) => el("a", { href: "#" + l.name, class: "lead-link", onclick: () => openLead(l.name) }, l.email || "(erased)")],
      ["Company", (l) => l.company || ""],
      ["Source", (l) => l.source || ""],
      ["Updated", (l) => when(l.updateTime)],
    ]);
  });
}

function openLead(name) {
  $("detail").hidden = false;
  show($("lead"), async () => {
    const { lead } = await api("/v1/" + name);
    $("lead-title").textContent = [lead.firstName, lead.lastName].filter(Boolean).join(" ") || lead.email;
    const rows = [["Email", lead.email], ["Company", lead.company], ["Domain", lead.companyDomain], ["Title", lead.title],
      ["Country", lead.country], ["Phone", lead.phone], ["Source", lead.source], ["Created", when(lead.createTime)]];
    return table(rows.filter(([, v]) => v), [["Field", (r) => r[0]], ["Value", (r) => r[1]]]);
  });
  show($("score"), async () => {
    const { score } = await api("/v1/" + name + "/score");
    const lines = score.contributions || [];
    return [
      el("p", {}, el("strong", { id: "total-score" }, score.totalScore || "0"), " points · grade ",
        el("span", { class: "pill" }, score.grade || "—"),
        ` · fit ${score.fitScore || 0} · engagement ${score.engagementScore || 0} · model v${score.modelVersion || "?"}`),
      lines.length ? table(lines, [
        ["Why", (c) => c.displayName || c.rule || c.kind],
        ["When", (c) => (c.activityTime ? when(c.activityTime) : "")],
        ["Points", (c) => ((Number(c.milliPoints) || 0) / 1000).toFixed(3), true],
      ]) : el("p", { class: "muted" }, "No contributions."),
    ];
  });
  show($("handoff"), async () => {
    const { handoff } = await api("/v1/" + name + "/handoff");
    return table([["State", handoff.state], ["Owner", handoff.owner], ["Team", handoff.team], ["Due", when(handoff.dueTime)]]
      .filter(([, v]) => v), [["", (r) => r[0]], ["", (r) => r[1]]]);
  });
  show($("history"), async () => {
    const { transitions = [] } = await api("/v1/" + name + "/transitions");
    if (!transitions.length) return el("p", { class: "muted" }, "No transitions yet.");
    return table(transitions, [
      ["When", (t) => when(t.transitionTime)],
      ["From", (t) => stageName(t.fromStage)],
      ["To", (t) => el("span", { class: "stage" }, stageName(t.toStage))],
      ["Reason", (t) => t.reason || t.trigger || ""],
      ["By", (t) => (t.actor && (t.actor.id || t.actor.kind)) || ""],
    ]);
  });
}

keyForm($("key-form"), () => {
  loadList();
  if (location.hash.startsWith("#leads/")) openLead(location.hash.slice(1));
});
