// Everything around the board: summary, batch progress, running agents, live feed, task detail.
import { el, money, count, duration, clock, describe, STATES } from "./format.js";

export function renderSummary(node, detail, elapsedOf) {
  const { run, totals } = detail;
  const by = totals.by_state || {};
  const finished = (by.merged || 0) + (by.done || 0);
  const pct = totals.tasks ? Math.round((100 * finished) / totals.tasks) : 0;
  const eta = totals.eta || {};
  const etaText = eta.basis === "finished" ? "done" : eta.seconds == null ? "—" : `~${duration(eta.seconds)}`;
  const etaNote = { finished_tasks: "from finished tasks", plan_estimates: "from plan estimates" }[eta.basis] || "";
  const elapsed = run.ended_at ? totals.elapsed_s : elapsedOf(run.started_at);
  node.replaceChildren(
    el("div", { class: "run-title" },
      el("span", { class: `run-status status-${run.status}`, dataset: { status: run.status } }, run.status),
      el("h1", {}, run.plan_name || run.id),
      el("code", {}, run.id), run.reason ? el("span", { class: "reason" }, run.reason) : null),
    el("div", { class: "progress", title: `${finished} of ${totals.tasks} tasks done` },
      el("div", { class: "bar" }, el("div", { class: "fill", style: `width:${pct}%` })),
      el("span", {}, `${finished}/${totals.tasks} tasks · ${pct}%`)),
    el("div", { class: "stats" },
      stat("Cost", money(totals.cost_usd), `${totals.model_calls} model calls`),
      stat("Tokens", count(totals.tokens.total), `${count(totals.tokens.input_tokens)} in · ${count(totals.tokens.output_tokens)} out`),
      stat("Running", String((totals.running || []).length), `of ${(run.settings.parallel || {}).max_concurrency || "?"} slots`),
      stat("Elapsed", duration(elapsed), clock(run.started_at) ? `since ${clock(run.started_at)}` : ""),
      stat("ETA", etaText, etaNote)),
  );
}

function stat(label, value, note) {
  return el("div", { class: "stat" }, el("span", { class: "label" }, label), el("strong", {}, value),
    note ? el("small", {}, note) : null);
}

export function renderBatches(node, batches) {
  node.replaceChildren(...batches.map((b) => {
    const segments = STATES.filter((s) => b.by_state[s]).map((s) =>
      el("div", { class: `seg state-${s}`, style: `flex:${b.by_state[s]}`, title: `${b.by_state[s]} ${s}` }));
    return el("div", { class: `batch batch-${b.status}`, dataset: { batch: b.batch } },
      el("div", { class: "batch-head" }, el("strong", {}, `Batch ${b.batch + 1}`),
        el("span", {}, b.status === "merged" ? "merged" : `${b.finished}/${b.total}`)),
      el("div", { class: "segbar" }, segments));
  }));
}

export function renderAgents(node, running, elapsedOf) {
  if (!running.length) {
    node.replaceChildren(el("li", { class: "none" }, "No agent is working right now."));
    return;
  }
  node.replaceChildren(...running.map((a) => el("li", { dataset: { taskId: a.task_id } },
    el("span", { class: "pulse" }), el("div", {},
      el("strong", {}, `#${a.task_id} ${a.title}`),
      el("small", {}, `${a.model || "model?"} · try ${a.attempt} · ${money(a.cost_usd)} · `,
        el("span", { class: "elapsed", dataset: { since: a.started_at } }, duration(elapsedOf(a.started_at))))))));
}

export class Feed {
  constructor(node, limit = 150) { this.node = node; this.limit = limit; this.seen = new Set(); }

  reset() { this.seen.clear(); this.node.replaceChildren(); }

  add(e) {
    if (e.kind === "log" || this.seen.has(e.event_id)) return false;
    this.seen.add(e.event_id);
    const item = el("li", { class: `ev ev-${e.type}` },
      el("time", {}, clock(e.occurred_at)), el("span", { class: "etype" }, e.type), el("span", {}, describe(e)));
    this.node.prepend(item);
    while (this.node.children.length > this.limit) this.node.lastChild.remove();
    return true;
  }
}

export function renderLegend(node) {
  node.replaceChildren(...STATES.map((s) => el("span", { class: `key state-${s}` }, s)));
}

export function renderTaskPanel(node, info, { onClose, onMerge }) {
  const t = info.task;
  const rows = (items, cols) => items.length
    ? el("table", {}, el("tr", {}, cols.map((c) => el("th", {}, c[0]))),
      items.map((i) => el("tr", {}, cols.map((c) => el("td", {}, c[1](i))))))
    : el("p", { class: "none" }, "none yet");
  const parts = [
    el("button", { class: "close", onclick: onClose, "aria-label": "Close" }, "×"),
    el("h2", {}, `#${t.id} ${t.title}`),
    el("p", {}, el("span", { class: `badge state-${t.state}` }, t.state),
      ` ${[t.domain, t.complexity, `batch ${t.batch + 1}`, t.attempt ? `attempt ${t.attempt}` : ""].filter(Boolean).join(" · ")}`),
    t.branch ? el("p", {}, "branch ", el("code", {}, t.branch)) : null,
    t.summary ? el("p", { class: "summary-text" }, t.summary) : null,
    t.reason ? el("p", { class: "reason" }, t.reason) : null,
    t.state === "conflict" ? el("button", { onclick: () => onMerge(t) }, "Retry merge") : null,
    el("h3", {}, "Attempts"),
    rows(info.attempts, [["#", (a) => a.attempt], ["for", (a) => a.purpose === "resolve_conflict" ? "conflict" : "task"],
      ["model", (a) => a.model], ["outcome", (a) => a.outcome],
      ["time", (a) => duration(a.duration_s)], ["cost", (a) => money(Math.max(a.cost_usd, a.recorded_cost_usd || 0))]]),
    el("h3", {}, "Merges"),
    rows(info.merges, [["status", (m) => m.status], ["commit", (m) => String(m.commit).slice(0, 10)],
      ["files", (m) => (m.conflicts || []).map((c) => c.path || c.file || "").join(", ")]]),
    el("h3", {}, `Model calls (${money(info.totals.cost_usd)}, ${count(info.totals.tokens.total)} tokens)`),
    rows(info.costs.slice(-20), [["model", (c) => c.model], ["in", (c) => count(c.input_tokens)],
      ["out", (c) => count(c.output_tokens)], ["cost", (c) => money(c.cost_usd)]]),
  ];
  node.replaceChildren(...parts.filter(Boolean));
  node.hidden = false;
}
