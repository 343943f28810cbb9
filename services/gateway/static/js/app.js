// Wiring: pick a run, load it, keep it fresh over the WebSocket (polling while that is down).
import { api, liveEvents, useToken, AuthRequired } from "./api.js";
import { el, duration } from "./format.js";
import { renderBoard, drawArrows } from "./board.js";
import { renderSummary, renderBatches, renderAgents, renderLegend, renderTaskPanel, Feed } from "./panels.js";
import { loadBudget, renderBudget } from "./budget.js";
import { openStartDialog, showPlans, showProject, renderConflicts, showConflict, taskLogView, taskDiffView } from "./steer.js";

const $ = (id) => document.getElementById(id);
const state = { runId: "", detail: null, live: null, poll: null, refreshTimer: null, clockSkew: 0, fit: false, taskLog: null };
const feed = new Feed($("feed"));

const elapsedOf = (iso) => (iso ? (Date.now() + state.clockSkew - Date.parse(iso)) / 1000 : null);

function message(text, kind = "error") {
  const node = $("message");
  node.hidden = !text;
  node.className = `message message-${kind}`;
  node.textContent = text || "";
}

function setConn(mode) {
  const node = $("conn");
  node.className = `conn conn-${mode}`;
  node.textContent = { live: "live", behind: "catching up", reconnecting: "reconnecting · polling", polling: "polling", off: "offline" }[mode] || mode;
  if (mode === "live" || mode === "behind") stopPolling(); else startPolling();
}

async function guarded(fn) {
  try {
    $("auth").hidden = true;
    return await fn();
  } catch (err) {
    if (err instanceof AuthRequired) { $("auth").hidden = false; message(""); }
    else message(err.message);
    return null;
  }
}

function fillPicker(runs) {
  const picker = $("run-picker");
  const current = picker.value;
  picker.replaceChildren(...runs.map((r) => el("option", { value: r.id }, `${r.plan_name || r.id} · ${r.status} · ${r.id}`)));
  if (current && runs.some((r) => r.id === current)) picker.value = current;
}

// New runs appear in the picker without taking the view away from the run being watched.
async function refreshRunList() {
  const data = await guarded(() => api("/api/runs"));
  if (data && data.runs.length) fillPicker(data.runs);
  if (data && data.runs.length && !state.runId) { message(""); selectRun(data.runs[0].id); }
}

async function loadRuns() {
  const data = await guarded(() => api("/api/runs"));
  if (!data) return;
  const picker = $("run-picker");
  fillPicker(data.runs);
  if (!data.runs.length) {
    picker.append(el("option", { value: "" }, "no runs yet"));
    message("No runs yet: start one with `yokeflow run` or POST /api/runs.", "info");
    return;
  }
  const wanted = hashParam("run");
  const chosen = data.runs.some((r) => r.id === wanted) ? wanted : data.runs[0].id;
  picker.value = chosen;
  await selectRun(chosen);
}

async function selectRun(runId) {
  if (state.live) state.live.close();
  state.runId = runId;
  const wantedTask = hashParam("run") === runId ? hashParam("task") : null;  // a deep link to a task of this run
  setHash({ run: runId, task: wantedTask });
  feed.reset();
  await refresh();
  if (wantedTask) openTask({ id: wantedTask });
  state.lastSeq = 0;
  await catchUp("tail=100");
  // the socket replays from the last sequence the log index had, then goes live: no gap, no repeat
  state.live = liveEvents({ run: runId, since: state.lastSeq, onState: setConn, onMessage: onLive });
}

// Events the live feed may have missed (before connecting, or while reconnecting), from the log index.
async function catchUp(query = `after=${state.lastSeq}`) {
  const runId = state.runId;
  const past = await guarded(() => api(`/api/runs/${encodeURIComponent(runId)}/events?${query}`));
  if (!past || runId !== state.runId) return;
  past.events.forEach((e) => feed.add(e));
  state.lastSeq = Math.max(state.lastSeq, past.last_seq || 0);
}

function onLive(msg) {
  if (msg.kind === "hello") { refresh(); return; }
  if (msg.kind !== "event" || msg.run_id !== state.runId) return;
  feed.add(msg);
  // The ledger projects the event a moment after it is published: refresh now and once more shortly after.
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(() => { refresh(); setTimeout(refresh, 1200); }, 250);
}

async function refresh() {
  if (!state.runId) return;
  const detail = await guarded(() => api(`/api/runs/${encodeURIComponent(state.runId)}`));
  if (!detail || detail.run.id !== state.runId) return;
  message("");
  state.detail = detail;
  state.clockSkew = Date.parse(detail.as_of) - Date.now();
  renderSummary($("summary"), detail, elapsedOf);
  renderBatches($("batches"), detail.batches);
  renderBoard($("board"), detail, { onCard: openTask, elapsedOf });
  fitBoard();
  renderAgents($("agents"), detail.totals.running, elapsedOf);
  drawArrows($("arrows"), $("board-wrap"), detail.tasks);

  $("cancel-run").hidden = detail.run.status !== "running";
  document.title = `YokeFlow · ${detail.run.plan_name} · ${detail.run.status}`;
  const option = [...$("run-picker").options].find((o) => o.value === detail.run.id);
  if (option) option.textContent = `${detail.run.plan_name || detail.run.id} · ${detail.run.status} · ${detail.run.id}`;
  await refreshBudget(detail);
  await refreshWaiting(detail);
  const conflicts = await guarded(() => api(`/api/runs/${encodeURIComponent(state.runId)}/conflicts`));
  if (conflicts) renderConflicts($("conflicts"), conflicts.conflicts, { onRetry: retryMerge, onOpen: (c) => openTask({ id: c.task_id }), onResolve: resolveConflict });
}

// Tasks handed out that no executor takes up: said at once when no executor is there at all, and
// after a few seconds when none asks for work (a busy one takes them soon enough).
const WAITING_NOTICE_AFTER_S = 5;

async function refreshWaiting(detail) {
  const node = $("waiting");
  const waiting = detail.run.status === "running"
    ? await guarded(() => api(`/api/runs/${encodeURIComponent(detail.run.id)}/waiting`)) : null;
  if (detail.run.id !== state.runId) return;
  const oldest = waiting && waiting.unstarted.length ? waiting.unstarted[0].waiting_s : 0;
  const show = waiting && waiting.line && (waiting.executors_pulling === null
    || (waiting.executors_pulling === 0 && oldest >= WAITING_NOTICE_AFTER_S));
  node.hidden = !show;
  node.textContent = show ? waiting.line : "";
}

async function refreshBudget(detail) {
  const { run } = detail;
  const budget = await guarded(() => loadBudget(run.project_id, run.id));
  if (!budget || run.id !== state.runId) return;
  renderBudget($("budget"), budget, detail.totals.forecast, {
    projectId: run.project_id, runId: run.id, runOpen: run.status === "running",
    onRaised: (done) => { message(`The ${done.scope} budget is now $${done.limit_usd}.`, "info"); refresh(); },
    onError: (err) => message(err.message),
  });
}

function hashParam(name) {
  return new URLSearchParams(location.hash.slice(1)).get(name);
}

function setHash(values) {
  const params = new URLSearchParams(location.hash.slice(1));
  for (const [k, v] of Object.entries(values)) { if (v) params.set(k, v); else params.delete(k); }
  history.replaceState(null, "", `#${params}`);
}

// Fit: every batch column shares the window's width; otherwise columns keep their width and the board scrolls.
function fitBoard() {
  const board = $("board");
  board.classList.toggle("fit", state.fit);
  if (state.fit) {
    const columns = board.querySelectorAll(".col-head").length;
    board.style.gridTemplateColumns = `minmax(110px, 150px) repeat(${columns}, minmax(0, 1fr))`;
  }
  $("fit-toggle").textContent = state.fit ? "Scroll width" : "Fit width";
}

async function retryMerge(t) {
  const id = t.task_id || t.id;
  const ok = await guarded(() => api(`/api/runs/${encodeURIComponent(state.runId)}/tasks/${encodeURIComponent(id)}/merge`, { method: "POST" }));
  if (ok) { message(`Merge of task ${id} requested.`, "info"); refresh(); }
}

async function resolveConflict(c) {
  if (state.taskLog) state.taskLog.stop();
  const panel = $("task-panel");
  await guarded(() => showConflict(panel, state.runId, c, {
    onDone: () => { refresh(); },
    onClose: () => { panel.hidden = true; panel.classList.remove("wide"); },
  }));
}

async function openTask(task) {
  $("task-panel").classList.remove("wide");
  setHash({ task: task.id });
  const info = await guarded(() => api(`/api/runs/${encodeURIComponent(state.runId)}/tasks/${encodeURIComponent(task.id)}`));
  if (!info) return;
  if (state.taskLog) state.taskLog.stop();
  const panel = $("task-panel");
  renderTaskPanel(panel, info, {
    onClose: () => { panel.hidden = true; setHash({ task: null }); if (state.taskLog) state.taskLog.stop(); },
    onMerge: retryMerge,
  });
  state.taskLog = taskLogView(state.runId, task.id);
  panel.append(el("h3", {}, "Agent log (live)"), state.taskLog.node, el("h3", {}, "Diff"));
  panel.append(await taskDiffView(state.runId, task.id));
}

async function startFrom(options) {
  await guarded(() => openStartDialog({ projectId: state.detail ? state.detail.run.project_id : "", ...options,
    onStarted: async (started) => {
      message(`Run ${started.run_id} started.`, "info");
      $("plans-panel").hidden = true;
      await refreshRunList();
      $("run-picker").value = started.run_id;
      await selectRun(started.run_id);
    } }));
}

function startPolling() {
  if (!state.poll) state.poll = setInterval(refresh, 3000);
}

function stopPolling() {
  clearInterval(state.poll);
  state.poll = null;
}

function tick() {
  document.querySelectorAll(".elapsed[data-since]").forEach((node) => {
    node.textContent = duration(elapsedOf(node.dataset.since));
  });
}

$("run-picker").addEventListener("change", (e) => selectRun(e.target.value));
$("new-run").addEventListener("click", () => startFrom({}));
$("show-plans").addEventListener("click", () => guarded(() => showPlans({ onStart: (o) => startFrom(o) })));
$("show-project").addEventListener("click", () => {
  if (!state.detail) { message("Pick a run first: its project's expertise and costs are shown.", "info"); return; }
  guarded(() => showProject(state.detail.run.project_id, { runId: state.runId }));
});
$("fit-toggle").addEventListener("click", () => {
  state.fit = !state.fit;
  if (state.detail) { renderBoard($("board"), state.detail, { onCard: openTask, elapsedOf }); fitBoard();
    drawArrows($("arrows"), $("board-wrap"), state.detail.tasks); }
});
$("cancel-run").addEventListener("click", async () => {
  if (!state.runId || !confirm(`Cancel run ${state.runId}? Running agents are stopped.`)) return;
  if (await guarded(() => api(`/api/runs/${encodeURIComponent(state.runId)}/cancel`, { method: "POST", body: {} }))) refresh();
});
$("auth").addEventListener("submit", (e) => {
  e.preventDefault();
  useToken($("auth-token").value);
});
window.addEventListener("resize", () => state.detail && drawArrows($("arrows"), $("board-wrap"), state.detail.tasks));
setInterval(tick, 1000);
setInterval(() => { if (!state.poll) refresh(); refreshRunList(); }, 15000);  // a safety net even while live
renderLegend($("legend"));
setConn("off");
loadRuns();
