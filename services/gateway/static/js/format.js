// Small formatters shared by the views.
export const STATES = ["pending", "ready", "running", "retrying", "done", "merged", "conflict", "resolving", "failed", "blocked", "cancelled"];

export function money(usd) {
  const v = Number(usd || 0);
  return v >= 100 ? `$${v.toFixed(0)}` : v >= 0.1 || v === 0 ? `$${v.toFixed(2)}` : `$${v.toFixed(3)}`;
}

export function count(n) {
  const v = Number(n || 0);
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (v >= 1e4) return `${(v / 1e3).toFixed(0)}k`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  return String(v);
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
  if (m) return `${m}m ${String(r).padStart(2, "0")}s`;
  return `${r}s`;
}

export function clock(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? "" : d.toLocaleTimeString([], { hour12: false });
}

// An element with attributes and children; strings become text nodes (never HTML).
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// One line per event for the feed: what happened to which task.
export function describe(e) {
  const d = e.data || {};
  const task = d.task_id ? `task ${d.task_id}` : "";
  switch (e.type) {
    case "RunStarted": return `run started: ${(d.plan && d.plan.name) || ""}`;
    case "BatchesComputed": return `${(d.batches || []).length} batches planned`;
    case "TaskReady": return d.purpose === "resolve_conflict"
      ? `${task} resolution agent queued for ${((d.conflict || {}).conflicts || []).length} conflicting file(s) (attempt ${d.attempt})`
      : `${task} ready (attempt ${d.attempt}${d.model ? ", " + d.model : ""})`;
    case "WorktreeCreated": return `${task} worktree ${d.branch}${d.reused ? " (reused)" : ""}`;
    case "AgentAdmitted": return d.candidate ? `${task} waits for a slot handed over (rank ${d.rank})`
      : `${task} given an agent slot`;
    case "AgentStarted": return `${task} agent started${d.model ? " · " + d.model : ""}`;
    case "AgentFinished": return `${task} agent ${d.outcome} · ${money(d.cost_usd)}${d.slot_to ? ` · its slot to task ${d.slot_to}` : ""}`;
    case "WorkCommitted": return d.error ? `${task} work not committed: ${d.error}`
      : `${task} work committed ${String(d.commit || "").slice(0, 8)} on ${d.branch}`;
    case "CostRecorded": return `${task} ${count((d.input_tokens || 0) + (d.output_tokens || 0))} tokens · ${money(d.cost_usd)}`;
    case "TaskCompleted": return `${task} completed`;
    case "TaskFailed": return `${task} failed${d.final ? "" : " (will retry)"}: ${d.reason || ""}`;
    case "TaskBlocked": return `${task} blocked: ${d.reason || ""}`;
    case "TaskCancelled": return `${task} cancelled`;
    case "MergeRequested": return d.action === "rerun" ? `${task} rerun on the target requested`
      : d.action === "accept" ? `${task} resolution ${String(d.commit || "").slice(0, 8)} accepted` : `${task} merge requested`;
    case "BranchReset": return `${task} branch set aside (kept at ${d.kept_ref}): a new attempt starts on ${d.target_branch}`;
    case "BranchMerged": return `${task} merged into ${d.target_branch} ${String(d.commit || "").slice(0, 8)}`;
    case "MergeConflicted": return `${task} merge conflict in ${(d.conflicts || []).length} file(s)`;
    case "ConflictEscalated": return `${task} conflict needs a person: ${d.reason || ""}`;
    case "BatchMerged": return `batch ${Number(d.batch) + 1} merged`;
    case "BudgetWarning": return `${d.scope || ""} budget ${Math.round((d.fraction || 0) * 100)}% used: ${money(d.spent_usd)} of ${money(d.limit_usd)}`;
    case "BudgetExhausted": return `${d.scope || ""} budget exhausted: ${money(d.spent_usd)} of ${money(d.limit_usd)}`;
    case "BudgetSet": return `${d.scope || ""} budget set to ${money(Number(d.limit_exact))}${d.set_by ? ` by ${d.set_by}` : ""}`;
    case "TaskDeferred": return `${task} waits (${d.reason || "deferred"})`;
    case "RunCompleted": return "run completed";
    case "RunFailed": return `run failed: ${d.reason || ""}`;
    case "RunCancelled": return `run cancelled: ${d.reason || ""}`;
    default: return task || e.aggregate_id || "";
  }
}
