// Steering: start a run, review/edit/approve Session 0 plans, act on conflicts, browse expertise
// and costs, and a task's live agent log and diff. Everything goes through the REST API.
import { api } from "./api.js";
import { el, money, count } from "./format.js";

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

// ---------------------------------------------------------------- start a run
export async function openStartDialog({ plan = null, planId = "", projectId = "", onStarted, onError }) {
  const projects = (await api("/api/projects")).projects;
  const picker = $("start-project");
  picker.replaceChildren(el("option", { value: "" }, "a new repository…"),
    ...projects.map((p) => el("option", { value: p.id }, `${p.name} · ${p.repo_path}`)));
  picker.value = projectId || (projects[0] ? projects[0].id : "");
  const syncRepo = () => { $("start-repo-row").hidden = picker.value !== ""; };
  picker.onchange = syncRepo;
  syncRepo();
  $("start-plan").value = plan ? JSON.stringify(plan, null, 2) : $("start-plan").value;
  $("start-plan-id").value = planId;
  $("start-error").hidden = true;
  $("start-cancel").onclick = () => $("start-dialog").close();
  $("start-form").onsubmit = async (e) => {
    e.preventDefault();
    try {
      const started = await startRun(planId, plan);
      $("start-dialog").close();
      onStarted(started);
    } catch (err) {
      $("start-error").textContent = err.message;
      $("start-error").hidden = false;
      if (onError) onError(err);
    }
  };
  $("start-dialog").showModal();
}

async function startRun(planId, originalPlan) {
  const text = $("start-plan").value.trim();
  let plan = null;
  if (text) {
    try { plan = JSON.parse(text); } catch (err) { throw new Error(`plan: not valid JSON (${err.message})`); }
  }
  // an approved Session 0 plan runs by its id unless the person edited it (then it is their own plan)
  const byId = planId && originalPlan && JSON.stringify(plan) === JSON.stringify(originalPlan);
  const knobs = {};
  if ($("start-concurrency").value) knobs.max_concurrency = Number($("start-concurrency").value);
  if ($("start-strategy").value) knobs.strategy = $("start-strategy").value;
  if ($("start-barrier").checked) knobs.batch_barrier = true;
  if ($("start-budget").value) knobs.budget_usd = Number($("start-budget").value);
  const body = byId ? { plan_id: planId, ...knobs } : { plan, ...knobs };
  const project = $("start-project").value;
  if (project) return api(`/api/projects/${enc(project)}/parallel/start?wait=true`, { method: "POST", body });
  const settings = {};
  const parallel = {};
  for (const k of ["max_concurrency", "strategy", "batch_barrier"]) if (k in knobs) parallel[k] = knobs[k];
  if (Object.keys(parallel).length) settings.parallel = parallel;
  if (knobs.budget_usd) settings.cost = { budget_limit_usd: knobs.budget_usd };
  const runBody = byId ? { plan_id: planId } : { plan };
  return api("/api/runs?wait=true", { method: "POST", body: { ...runBody, repo_path: $("start-repo").value, settings } });
}

// ---------------------------------------------------------------- plans
export async function showPlans({ onStart, onClose }) {
  const node = $("plans-panel");
  const { plans } = await api("/api/plans");
  const items = plans.map((p) => {
    const item = el("div", { class: "plan-item", dataset: { planId: p.plan_id, status: p.status } },
      el("header", {}, el("strong", {}, `${p.name || p.plan_id}`),
        el("span", { class: `run-status status-${p.status === "approved" ? "completed" : p.status === "rejected" ? "failed" : "running"}` }, p.status)),
      el("small", {}, `${p.plan_id} · ${p.tasks} tasks · ${p.source || "session 0"}`),
      p.errors && p.errors.length ? el("p", { class: "reason" }, p.errors.map((x) => x.message || String(x)).join("; ")) : null,
      el("div", { class: "actions" },
        el("button", { onclick: () => review(p.plan_id, item, onStart) }, p.status === "produced" ? "Review" : "Open")));
    return item;
  });
  node.replaceChildren(el("button", { class: "close", onclick: () => { node.hidden = true; onClose && onClose(); }, "aria-label": "Close" }, "×"),
    el("h2", {}, "Plans from Session 0"), items.length ? el("div", {}, items) : el("p", { class: "none" }, "No plans yet: `yokeflow plan create SPEC` makes one."));
  node.classList.add("wide");
  node.hidden = false;
}

async function review(planId, item, onStart) {
  const plan = await api(`/api/plans/${enc(planId)}`);
  const status = el("p", { class: "message message-info", hidden: true });
  const say = (text, kind = "info") => { status.textContent = text; status.className = `message message-${kind}`; status.hidden = false; };
  const form = planForm(plan.plan);
  const setBadge = (state) => {
    item.dataset.status = state.status;
    item.dataset.version = String(state.version);
    const badge = item.querySelector(".run-status");
    badge.textContent = state.status === "approved" ? `approved v${state.approved_version}` : `${state.status} v${state.version}`;
    badge.className = `run-status status-${state.status === "approved" ? "completed" : "running"}`;
  };
  let current = plan;
  setBadge(plan);
  const save = el("button", { onclick: async () => {
    form.querySelectorAll(".invalid").forEach((n) => n.classList.remove("invalid"));
    const edit = form.edit();
    if (!Object.keys(edit.tasks).length && !edit.remove.length) { say("Nothing changed yet: edit a task first."); return; }
    try {
      const made = await api(`/api/plans/${enc(planId)}/versions`, { method: "POST",
        body: { base_version: current.version, edited_by: "web ui", ...edit } });
      current = made;
      setBadge(made);
      form.reset(made.plan);
      approve.textContent = `Approve version ${made.version}`;
      say(`Saved as version ${made.version}: review it, then approve it.`);
    } catch (err) {
      const field = (err.body && err.body.field) || "";
      const bad = field && form.querySelector(`[data-field="${CSS.escape(field)}"]`);
      if (bad) bad.classList.add("invalid");
      say(err.message, "error");
    }
  } }, "Save as new version");
  const approve = el("button", { class: "primary", onclick: async () => {
    if (Object.keys(form.edit().tasks).length || form.edit().remove.length) { say("Save your edits as a new version first, then approve it.", "error"); return; }
    try {
      const done = await api(`/api/plans/${enc(planId)}/approve`, { method: "POST", body: { approved_by: "web ui", version: current.version } });
      current = done;
      setBadge(done);
      say(`Plan ${planId} version ${done.approved_version} approved.`);
    } catch (err) { say(err.message, "error"); }
  } }, `Approve version ${plan.version}`);
  const start = el("button", { onclick: () => {
    onStart({ plan: current.plan, planId: current.status === "approved" ? planId : "", projectId: "" });
  } }, "Start…");
  const box = el("div", { class: "review" }, form, el("div", { class: "actions" }, save, approve, start), status);
  item.querySelector(".review")?.remove();
  item.append(box);
}

// One row per task: title, description, dependencies, complexity, remove. `edit()` gives what changed.
function planForm(initial) {
  const form = el("div", { class: "plan-edit" });
  let plan = initial;
  const render = () => {
    const rows = plan.epics.flatMap((epic) => [
      el("tr", { class: "epic-row" }, el("th", { colspan: "6" }, `${epic.name || epic.id}`)),
      ...epic.tasks.map((t) => el("tr", { dataset: { taskId: String(t.id) } },
        el("td", {}, el("code", {}, String(t.id))),
        el("td", {}, el("input", { name: "title", value: t.title || "", "aria-label": `title of ${t.id}`, dataset: { field: `tasks.${t.id}.title` } })),
        el("td", {}, descriptionBox(t)),
        el("td", {}, el("input", { name: "depends_on", value: (t.depends_on || []).join(", "), placeholder: "none",
          "aria-label": `dependencies of ${t.id}`, dataset: { field: `tasks.${t.id}.depends_on` } })),
        el("td", {}, complexityPick(t)),
        el("td", {}, el("label", { class: "check" }, el("input", { type: "checkbox", name: "remove", "aria-label": `remove ${t.id}`,
          dataset: { field: `remove` } }), "remove"))))]);
    form.replaceChildren(el("table", {}, el("tr", {}, ["id", "title", "description", "depends on", "complexity", ""].map((h) => el("th", {}, h))), rows));
  };
  const descriptionBox = (t) => {
    const box = el("textarea", { name: "description", rows: "1", "aria-label": `description of ${t.id}`, dataset: { field: `tasks.${t.id}.description` } });
    box.value = t.description || "";
    return box;
  };
  const complexityPick = (t) => {
    const pick = el("select", { name: "complexity", "aria-label": `complexity of ${t.id}`, dataset: { field: `tasks.${t.id}.complexity` } },
      el("option", { value: "" }, "estimate"), ...["low", "medium", "high"].map((c) => el("option", { value: c }, c)));
    pick.value = t.complexity || "";
    return pick;
  };
  form.edit = () => {
    const tasks = {};
    const remove = [];
    for (const epic of plan.epics) for (const t of epic.tasks) {
      const row = form.querySelector(`tr[data-task-id="${CSS.escape(String(t.id))}"]`);
      const value = (n) => row.querySelector(`[name=${n}]`).value;
      if (row.querySelector("[name=remove]").checked) { remove.push(String(t.id)); continue; }
      const change = {};
      if (value("title") !== (t.title || "")) change.title = value("title");
      if (value("description") !== (t.description || "")) change.description = value("description");
      const deps = value("depends_on").split(",").map((d) => d.trim()).filter(Boolean);
      if (deps.join(",") !== (t.depends_on || []).map(String).join(",")) change.depends_on = deps;
      if (value("complexity") && value("complexity") !== (t.complexity || "")) change.complexity = value("complexity");
      if (Object.keys(change).length) tasks[String(t.id)] = change;
    }
    return { tasks, remove };
  };
  form.reset = (next) => { plan = next; render(); };
  render();
  return form;
}

// ---------------------------------------------------------------- conflicts
export function renderConflicts(node, conflicts, { onRetry, onOpen, onResolve }) {
  if (!conflicts.length) { node.replaceChildren(el("li", { class: "none" }, "none")); return; }
  node.replaceChildren(...conflicts.map((c) => el("li", { class: "conflict-item", dataset: { taskId: c.task_id } },
    el("div", {},
      el("strong", { onclick: () => onOpen(c), style: "cursor:pointer" }, `#${c.task_id} ${c.title}`),
      el("small", {}, `${c.files.join(", ") || "files unknown"} · ${c.reason || "merge conflict"}`),
      el("div", { class: "actions" },
        el("button", { class: "primary", onclick: () => onResolve(c) }, "Resolve…"),
        el("button", { onclick: () => onRetry(c) }, "Retry merge"))))));
}

// A conflicted task's files (ours / theirs / base and the marked text) and the three ways out.
export async function showConflict(node, runId, c, { onDone, onClose }) {
  const view = await api(`/api/runs/${enc(runId)}/tasks/${enc(c.task_id)}/conflict`);
  const status = el("p", { class: "message message-info", hidden: true });
  const say = (text, kind = "info") => { status.textContent = text; status.className = `message message-${kind}`; status.hidden = false; };
  const act = async (body, done, onError) => {
    try {
      await api(`/api/runs/${enc(runId)}/tasks/${enc(c.task_id)}/resolve`, { method: "POST", body: { requested_by: "web ui", ...body } });
      say(done);
      onDone();
    } catch (err) { say(err.message, "error"); if (onError) onError(err); }
  };
  const target = view.target_branch || "main";
  const state = view.clean_now
    ? `${view.branch} would merge into ${target} cleanly now${view.branch_moved ? ": someone committed on it since the attempt" : ""}.`
    : `${view.branch} still conflicts with ${target} in ${view.files.length} file(s).`;
  const files = view.files.map((f) => el("section", { class: "conflict-file", dataset: { path: f.path } },
    el("h3", {}, `${f.path} · ${f.kind}`),
    f.binary ? el("p", { class: "none" }, "binary file: resolve it in the worktree") : [
      el("p", { class: "label" }, "Your resolution: as git merge leaves it, edit until no conflict marker is left"),
      resolutionBox(f),
      el("div", { class: "sides" },
        side(`ours (${target})`, f.ours), side(`theirs (${view.branch})`, f.theirs), side("base", f.base))],
    f.truncated ? el("p", { class: "reason" }, "cut at 256 KiB") : null));
  const accept = el("button", { class: view.branch_moved ? "primary" : "", disabled: !view.branch_moved,
    title: view.branch_moved ? `accept ${view.branch_head.slice(0, 12)}: ${view.branch_head_message}` : "commit a resolution on the branch first",
    onclick: () => act({ action: "accept", commit: view.branch_head }, `Merge of ${view.branch_head.slice(0, 12)} requested.`) },
    `Accept ${view.branch_moved ? view.branch_head.slice(0, 8) : "resolution"}`);
  node.replaceChildren(
    el("button", { class: "close", onclick: onClose, "aria-label": "Close" }, "×"),
    el("h2", {}, `Conflict · #${c.task_id} ${c.title}`),
    el("p", { class: view.clean_now ? "message message-info" : "reason", dataset: { clean: String(view.clean_now) } }, state),
    el("p", {}, "branch ", el("code", {}, view.branch), " at ", el("code", {}, view.branch_head.slice(0, 12)),
      view.branch_moved ? ` (“${view.branch_head_message}”)` : "", " · worktree ", el("code", {}, c.worktree || "—")),
    el("div", { class: "actions resolve-actions" },
      el("button", { onclick: () => act({ action: "retry" }, "Merge requested again.") , title: `merge ${view.branch} again (${target} may have moved)` }, "Retry merge"),
      view.files.length && !view.files.some((f) => f.binary) ? el("button", { class: "primary",
        title: `commit your resolution on ${view.branch} as the merge of ${target}, then merge it`,
        onclick: () => {
          node.querySelectorAll(".invalid").forEach((n) => n.classList.remove("invalid"));
          const files = Object.fromEntries([...node.querySelectorAll("textarea.resolution")].map((t) => [t.dataset.path, t.value]));
          act({ action: "resolve", commit: view.branch_head, files }, "Resolution committed on the branch; merge requested.",
            (err) => { const bad = err.body && node.querySelector(`[data-field="${CSS.escape(err.body.field || "")}"]`); if (bad) bad.classList.add("invalid"); });
        } }, "Merge my resolution") : null,
      accept,
      el("button", { class: "danger", title: `set the branch aside and run the task again on ${target} as it is now`,
        onclick: () => { if (confirm(`Rerun task ${c.task_id} on ${target} as it is now? Its branch is set aside (kept at a ref).`))
          act({ action: "rerun" }, `Task ${c.task_id} will run again on ${target}.`); } }, `Rerun on ${target}`)),
    el("p", { class: "hint" }, `Resolve below and Merge my resolution; or in ${c.worktree || "the task's worktree"}: git merge ${target}, fix the files, commit, then Accept.`),
    status, ...files);
  node.classList.add("wide");
  node.hidden = false;
}

function resolutionBox(f) {
  const box = el("textarea", { class: "resolution", spellcheck: "false", "aria-label": `resolution of ${f.path}`,
    dataset: { path: f.path, field: `files.${f.path}` }, rows: String(Math.min(18, Math.max(4, (f.marked || "").split("\n").length + 1))) });
  box.value = f.marked || "";
  return box;
}

function side(label, text) {
  return el("div", {}, el("p", { class: "label" }, label),
    text === null || text === undefined ? el("p", { class: "none" }, "(absent)") : el("pre", {}, text));
}

// ---------------------------------------------------------------- expertise & costs
export async function showProject(projectId, { runId }) {
  const node = $("project-panel");
  const [exp, costs] = await Promise.all([
    api(`/api/projects/${enc(projectId)}/expertise`),
    api(`/api/projects/${enc(projectId)}/costs?by=model`).catch((err) => ({ error: err.message })),
  ]);
  const content = el("pre", {}, "");
  const result = el("div", {});
  const pick = el("select", { "aria-label": "Domain" }, exp.domains.map((d) => el("option", { value: d.domain }, `${d.domain} (v${d.version}, ${d.lines} lines)`)));
  const show = () => {
    const d = exp.domains.find((x) => x.domain === pick.value);
    content.textContent = d ? d.content : "";
    result.replaceChildren();
  };
  pick.onchange = show;
  const validate = el("button", { onclick: async () => {
    const r = await api(`/api/projects/${enc(projectId)}/expertise/${enc(pick.value)}/validate`, { method: "POST" });
    result.replaceChildren(el("p", { class: r.valid ? "message message-info" : "message message-error" },
      r.valid ? `All ${r.checked} entries' files exist on ${r.target_branch}.`
        : `${r.missing.length} of ${r.checked} entries name files missing on ${r.target_branch}: ${r.missing.map((m) => m.missing.join(", ")).join("; ")}`));
  } }, "Validate against target branch");
  const costRows = costs.error ? [el("p", { class: "reason" }, costs.error)]
    : [el("p", {}, `Total ${money(Number(costs.total_usd))} over ${count(costs.calls)} model calls`),
      el("table", {}, el("tr", {}, el("th", {}, "model"), el("th", {}, "calls"), el("th", {}, "cost")),
        (costs.rows || []).map((r) => el("tr", {}, el("td", {}, String(r.key ?? r.model ?? "")), el("td", {}, String(r.calls ?? "")),
          el("td", {}, money(Number(r.cost_usd))))))];
  node.replaceChildren(el("button", { class: "close", onclick: () => { node.hidden = true; }, "aria-label": "Close" }, "×"),
    el("h2", {}, `Project ${projectId}`),
    el("h3", {}, "Costs by model"), ...costRows,
    el("h3", {}, "Expertise"),
    exp.domains.length ? el("div", {}, pick, " ", validate, result, content) : el("p", { class: "none" }, "No expertise learned yet."),
    el("h3", {}, "Report"),
    el("p", {}, el("a", { href: `/api/projects/${enc(projectId)}/report?format=markdown`, target: "_blank" }, "Markdown"), " · ",
      el("a", { href: `/api/projects/${enc(projectId)}/report`, target: "_blank" }, "JSON")));
  node.classList.add("wide");
  if (exp.domains.length) show();
  node.hidden = false;
}

// ---------------------------------------------------------------- task log and diff
export function taskLogView(runId, taskId) {
  const box = el("div", { class: "log", "aria-label": "Agent log" }, el("div", { class: "none" }, "no log yet"));
  let after = 0;
  let timer = null;
  let stopped = false;
  const line = (e) => el("div", {}, el("b", {}, e.kind), summarise(e.data));
  const poll = async () => {
    if (stopped) return;
    try {
      for (;;) {
        const page = await api(`/api/runs/${enc(runId)}/tasks/${enc(taskId)}/log?after=${after}&limit=200`);
        if (page.entries.length && after === 0) box.replaceChildren();
        page.entries.forEach((e) => box.append(line(e)));
        after = page.last_seq;
        if (!page.more) break;
      }
      box.scrollTop = box.scrollHeight;
    } catch (err) { /* shown as a stale log; the next poll tries again */ }
    if (!stopped) timer = setTimeout(poll, 2000);  // live: new lines every two seconds while the drawer is open
  };
  poll();
  return { node: box, stop() { stopped = true; clearTimeout(timer); } };
}

function summarise(data) {
  const d = { ...data };
  delete d.run_id; delete d.task_id; delete d.attempt;
  const text = d.text || d.command || d.name || "";
  const rest = JSON.stringify(d);
  return `${text ? `${text} ` : ""}${rest.length > 300 ? `${rest.slice(0, 300)}…` : rest}`;
}

export async function taskDiffView(runId, taskId) {
  try {
    const d = await api(`/api/runs/${enc(runId)}/tasks/${enc(taskId)}/diff`);
    const pre = el("pre", { "aria-label": "Diff" }, d.diff.split("\n").map((l) => el("span", {
      class: l.startsWith("+") && !l.startsWith("+++") ? "diff-add" : l.startsWith("-") && !l.startsWith("---") ? "diff-del" : l.startsWith("@@") ? "diff-hunk" : "",
    }, `${l}\n`)));
    return el("div", {}, el("p", {}, `${d.merged ? "merged into" : "against"} ${d.target_branch}: ${d.files.map((f) => `${f.path} (${f.change})`).join(", ") || "no changes"}`),
      pre, d.truncated ? el("p", { class: "reason" }, "diff cut at 1 MiB") : null);
  } catch (err) {
    return el("p", { class: "none" }, err.message);
  }
}
