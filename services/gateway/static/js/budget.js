// Money of the run on screen: the project's and the run's budget (limit, spent, reserved, left),
// enforcement, warnings and exhaustion as they happen, the forecast of the rest, and raising a budget.
import { api } from "./api.js";
import { el, money, duration, clock } from "./format.js";

const enc = encodeURIComponent;
const usd = (s) => (s === null || s === undefined ? "—" : money(Number(s)));

export async function loadBudget(projectId, runId) {
  return api(`/api/projects/${enc(projectId)}/budget?run=${enc(runId)}`);
}

export function renderBudget(node, budget, forecast, { projectId, runId, runOpen, onRaised, onError }) {
  const stopped = budget.exhausted;
  const last = budget.events.find((e) => e.type === "BudgetExhausted");
  const warnings = budget.events.filter((e) => e.type === "BudgetWarning");
  const accounts = ["run", "project"].filter((s) => budget[s]).map((s) => account(s, budget[s]));
  // the form survives refreshes while the person is typing in it
  const keep = node._raise && node._raise.dataset.dirty === "true" && node._raise.dataset.runId === runId;
  const raise = keep ? node._raise : raiseForm(budget, { projectId, runId, onRaised, onError });
  node._raise = raise;
  node.replaceChildren(...[
    el("div", { class: "budget-head" },
      el("h2", {}, "Budget"),
      el("span", { class: `badge enforcement-${budget.enforcement}`, title: budget.enforcement === "hard"
        ? "hard: a model call that may not fit is not made" : "soft: warnings only" }, `${budget.enforcement} limit`),
      warnings.length ? el("span", { class: "warned" }, `warned at ${[...new Set(warnings.map((w) => w.fraction))].sort().map((f) => `${Math.round(f * 100)}%`).join(", ")}`) : null,
      forecastText(forecast)),
    stopped && runOpen ? el("div", { class: "message message-error budget-stop", role: "alert", dataset: { event: "BudgetExhausted" } },
      el("strong", {}, "BudgetExhausted"),
      ` — the ${last ? last.scope : ""} budget of ${usd(last && last.limit_usd)} has no room for the next model call `,
      `(${usd(last && last.spent_usd)} spent${last ? ` at ${clock(last.occurred_at)}` : ""}). No call is made and no attempt starts; `,
      "the tasks wait as pending with their work kept on their branches. Raise the budget to go on.") : null,
    el("div", { class: "accounts" }, accounts),
    runOpen ? raise : null].filter(Boolean));
  node.dataset.exhausted = stopped ? "true" : "false";
  node.hidden = false;
}

function account(scope, a) {
  const limit = Number(a.limit_usd);
  const used = Number(a.spent_usd) + Number(a.reserved_usd);
  const pct = limit > 0 ? Math.min(100, (100 * used) / limit) : 0;
  const level = limit <= 0 ? "none" : a.exhausted ? "exhausted" : pct >= 80 ? "high" : "ok";
  return el("div", { class: `account account-${level}`, dataset: { scope } },
    el("div", { class: "account-head" }, el("strong", {}, scope === "run" ? "This run" : "Project (all runs)"),
      el("span", {}, limit > 0 ? `${usd(a.remaining_usd)} left of ${usd(a.limit_usd)}` : "no limit"),
      a.limit_source === "set" ? el("small", {}, "set by a person") : null),
    limit > 0 ? el("div", { class: "meter" }, el("div", { class: "spent", style: `width:${Math.min(100, (100 * Number(a.spent_usd)) / limit)}%` }),
      el("div", { class: "held", style: `width:${Math.max(0, pct - (100 * Number(a.spent_usd)) / limit)}%` })) : null,
    el("small", {}, `spent ${usd(a.spent_usd)} · reserved by calls in flight ${usd(a.reserved_usd)}`));
}

const tasks = (n) => `${n} task${n === 1 ? "" : "s"}`;

function forecastText(f) {
  if (!f) return null;
  const text = f.basis === "done" ? "nothing left to do"
    : f.expected_cost_usd === null ? `${tasks(f.remaining_tasks)} left · no finished attempt to forecast from yet`
      : `${tasks(f.remaining_tasks)} left · ~${usd(f.expected_cost_usd)} more · ~${duration(f.expected_seconds)}`
        + (f.critical_path_seconds ? ` (critical path ${duration(f.critical_path_seconds)})` : "");
  return el("span", { class: "forecast", title: `forecast from ${f.basis}` }, el("b", {}, "Forecast "), text);
}

function raiseForm(budget, { projectId, runId, onRaised, onError }) {
  const scope = el("select", { "aria-label": "Budget to raise" },
    el("option", { value: "run" }, "this run's budget"), el("option", { value: "project" }, "the project's budget"));
  const last = budget.events.find((e) => e.type === "BudgetExhausted");
  scope.value = last ? last.scope : budget.run && Number(budget.run.limit_usd) > 0 ? "run" : "project";
  const amount = el("input", { type: "number", min: "0", step: "0.01", placeholder: "USD", "aria-label": "New limit (USD)" });
  const current = () => budget[scope.value] ? Number(budget[scope.value].limit_usd) : 0;
  amount.value = current() > 0 ? String(Math.ceil(current() * 2)) : "";
  scope.onchange = () => { amount.value = current() > 0 ? String(Math.ceil(current() * 2)) : ""; };
  const submit = async (e) => {
    e.preventDefault();
    try {
      const body = { limit_usd: amount.value, run_id: scope.value === "run" ? runId : "" };
      const done = await api(`/api/projects/${enc(projectId)}/budget?wait=true`, { method: "PUT", body });
      onRaised(done);
    } catch (err) { onError(err); }
  };
  const form = el("form", { class: "raise", onsubmit: submit, oninput: () => { form.dataset.dirty = "true"; },
    dataset: { runId } }, el("label", {}, "Set ", scope, " to $", amount),
    el("button", { type: "submit", class: "primary" }, "Set budget"), el("small", {}, "0 means no limit"));
  return form;
}
