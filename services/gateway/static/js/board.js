// Swimlanes: one row per epic, one column per batch, a card per task, SVG arrows for dependencies.
import { el, money, duration } from "./format.js";

export function renderBoard(board, detail, { onCard, elapsedOf }) {
  const tasks = detail.tasks;
  const batchCount = Math.max(1, detail.batches.length, ...tasks.map((t) => t.batch + 1));
  board.style.gridTemplateColumns = `minmax(150px, 190px) repeat(${batchCount}, minmax(200px, 1fr))`;
  const header = [el("div", { class: "corner" }, "Epic \\ batch")];
  for (let b = 0; b < batchCount; b++) {
    const info = detail.batches.find((x) => x.batch === b);
    header.push(el("div", { class: "col-head", dataset: { batch: b } },
      `Batch ${b + 1}`, info ? el("small", {}, ` ${info.finished}/${info.total}`) : null));
  }
  const rows = detail.epics.map((epic) => {
    const mine = tasks.filter((t) => t.epic_id === epic.id);
    const done = mine.filter((t) => ["merged", "done"].includes(t.state)).length;
    const lane = [el("div", { class: "lane-head", dataset: { epicId: epic.id } },
      el("strong", {}, epic.name || epic.id), el("small", {}, `epic ${epic.id} · ${done}/${mine.length} done`))];
    for (let b = 0; b < batchCount; b++) {
      lane.push(el("div", { class: "cell", dataset: { epicId: epic.id, batch: b } },
        mine.filter((t) => t.batch === b).map((t) => card(t, onCard, elapsedOf))));
    }
    return el("div", { class: "lane", dataset: { epicId: epic.id }, role: "row" }, lane);
  });
  board.replaceChildren(el("div", { class: "lane lane-header" }, header), ...rows);
}

function card(t, onCard, elapsedOf) {
  const facts = [el("span", { class: "badge" }, t.state)];
  if (t.state === "running") facts.push(el("span", { class: "elapsed", dataset: { since: t.started_at } }, duration(elapsedOf(t.started_at))));
  if (t.model) facts.push(el("span", { class: "model" }, t.model));
  if (t.cost_usd) facts.push(el("span", { class: "cost" }, money(t.cost_usd)));
  if (t.attempt > 1) facts.push(el("span", { class: "attempt" }, `try ${t.attempt}`));
  return el("article", {
    class: `card state-${t.state}`, tabindex: "0", title: t.reason || t.summary || t.title,
    dataset: { taskId: t.id, state: t.state, epicId: t.epic_id, batch: t.batch },
    onclick: () => onCard(t), onkeydown: (e) => { if (e.key === "Enter") onCard(t); },
  },
  el("div", { class: "card-top" }, el("span", { class: "task-id" }, `#${t.id}`), el("span", { class: "domain" }, t.domain)),
  el("div", { class: "title" }, t.title),
  el("div", { class: "facts" }, facts),
  t.reason && ["failed", "blocked", "conflict"].includes(t.state) ? el("div", { class: "reason" }, t.reason) : null);
}

// Arrows from each dependency's card to the card that waits for it.
export function drawArrows(svg, wrap, tasks) {
  const box = wrap.getBoundingClientRect();
  svg.setAttribute("width", wrap.scrollWidth);
  svg.setAttribute("height", wrap.scrollHeight);
  const ns = "http://www.w3.org/2000/svg";
  const defs = document.createElementNS(ns, "defs");
  defs.innerHTML = '<marker id="arrowhead" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker>';
  const paths = [defs];
  const cards = new Map([...wrap.querySelectorAll(".card")].map((c) => [c.dataset.taskId, c]));
  const at = (c) => {
    const r = c.getBoundingClientRect();
    return { l: r.left - box.left + wrap.scrollLeft, r: r.right - box.left + wrap.scrollLeft,
             t: r.top - box.top + wrap.scrollTop, b: r.bottom - box.top + wrap.scrollTop };
  };
  for (const t of tasks) {
    const to = cards.get(t.id);
    if (!to) continue;
    for (const dep of t.depends_on || []) {
      const from = cards.get(String(dep));
      if (!from) continue;
      const a = at(from), b = at(to);
      let d;
      if (b.l > a.r + 4) {
        const y1 = (a.t + a.b) / 2, y2 = (b.t + b.b) / 2, mid = (b.l - a.r) / 2;
        d = `M${a.r},${y1} C${a.r + mid},${y1} ${b.l - mid},${y2} ${b.l},${y2}`;
      } else {
        const x1 = (a.l + a.r) / 2, x2 = (b.l + b.r) / 2, down = b.t > a.b;
        const y1 = down ? a.b : a.t, y2 = down ? b.t : b.b, bend = down ? 24 : -24;
        d = `M${x1},${y1} C${x1},${y1 + bend} ${x2},${y2 - bend} ${x2},${y2}`;
      }
      const path = document.createElementNS(ns, "path");
      path.setAttribute("d", d);
      path.setAttribute("class", `dep dep-${t.dependency_type || "hard"}`);
      path.setAttribute("marker-end", "url(#arrowhead)");
      path.dataset.from = String(dep);
      path.dataset.to = t.id;
      paths.push(path);
    }
  }
  svg.replaceChildren(...paths);
}
