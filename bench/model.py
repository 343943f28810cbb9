"""What a plan allows: the scheduler's policy replayed on a model of the run, with no system at all.

An event-driven simulation of the default policy (the same dependency graph, the same dispatch
order as `shared.resolver.dispatch_order_key`, one unmerged task per lane, at most `concurrency`
agents), where the only costs are the ones given:

  slot_s     each agent holds its slot this much longer than its work (tool calls, cost records)
  handoff_s  a freed slot's next agent starts this much later (admission, start)
  link_s     a dependent may start this long after its dependency's agent ended (commit, merge,
             learning, the dependent's worktree); its lane is free again then too
  jitter_s   agents end spread over this window around their mean (uniform)

With every cost at zero it gives the plan's own ceiling under list scheduling; with the costs
a run measured, what that run could have reached; the gap between the two is the orchestration's,
and each cost set to zero in turn says which part of it. Pure and deterministic (a seed).

Its slots end together more than a system's do (every agent takes the same time, every link the
mean): a dependent whose link ends just after a round's slots came free waits a whole round here,
where in a run the slots' ends have spread and it finds one. So on some plans it understates what
a run reaches (seed 8: 0.871 against 0.904-0.914 measured), and it overstates a change that acts
on rounds ending together (bench/README.md, 2026-12-06 17:02).
"""

from __future__ import annotations

import heapq
import itertools
import random
import statistics
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shared import events as ev
from shared.plan import Plan, parse_plan
from shared.resolver import dependencies, dispatch_order_key, remaining_minutes


@dataclass(frozen=True)
class Costs:
    slot_s: float = 0.0
    handoff_s: float = 0.0
    link_s: float = 0.0
    jitter_s: float = 0.0

    def as_ms(self) -> dict[str, float]:
        return {f"{k[:-2]}_ms": round(v * 1000, 1) for k, v in vars(self).items()}


def simulate(plan: Plan | dict, *, concurrency: int, agent_s: float, costs: Costs = Costs(),
             strategy: str = "by_epic", seed: int = 0) -> float:
    """The makespan of the plan under the default policy with these costs."""
    if strategy not in ("by_epic", "by_task"):
        raise ValueError(f"bench.model has the by_epic and by_task lanes, not {strategy!r} (shared/lanes.py)")
    plan = parse_plan(plan) if isinstance(plan, dict) else plan
    rng = random.Random(seed)
    deps = {tid: [d for d, _ in found] for tid, found in dependencies(plan).items()}
    tasks = [t for epic in plan.epics for t in epic.tasks]
    lane = {t.id: (t.epic_id if strategy == "by_epic" else t.id) for t in tasks}
    remaining = remaining_minutes(plan)
    key = {t.id: dispatch_order_key(plan, t.id, remaining) for t in tasks}
    dependents: dict[str, list[str]] = {t.id: [] for t in tasks}
    for tid, found in deps.items():
        for d in found:
            dependents[d].append(tid)
    unmet = {t.id: len(deps.get(t.id, [])) for t in tasks}
    waiting = {tid for tid, n in unmet.items() if n == 0}   # dependencies met, not started
    busy_lanes: set[str] = set()
    free = concurrency
    queue: list[tuple[float, int, str, str]] = []
    order = itertools.count()
    end = 0.0

    def dispatch(now: float) -> None:
        nonlocal free
        for tid in sorted((t for t in waiting if lane[t] not in busy_lanes), key=key.__getitem__):
            if free == 0:
                return
            if lane[tid] in busy_lanes:
                continue
            free -= 1
            waiting.discard(tid)
            busy_lanes.add(lane[tid])
            held = agent_s + costs.slot_s + rng.uniform(-costs.jitter_s / 2, costs.jitter_s / 2)
            heapq.heappush(queue, (now + costs.handoff_s + max(0.0, held), next(order), "finished", tid))

    dispatch(0.0)
    while queue:
        now = queue[0][0]
        while queue and queue[0][0] == now:  # everything of this instant first, then one dispatch
            _, _, kind, tid = heapq.heappop(queue)
            if kind == "finished":
                free += 1
                end = max(end, now)
                heapq.heappush(queue, (now + costs.link_s, next(order), "merged", tid))
            else:
                busy_lanes.discard(lane[tid])
                for x in dependents[tid]:
                    unmet[x] -= 1
                    if unmet[x] == 0:
                        waiting.add(x)
        dispatch(now)
    return end


def efficiency(plan: Plan | dict, *, concurrency: int, agent_s: float, bound_s: float, costs: Costs = Costs(),
               strategy: str = "by_epic", seeds: int = 10) -> float:
    """bound / simulated makespan, the mean over `seeds` runs (one when nothing varies)."""
    runs = range(seeds if costs.jitter_s else 1)
    return round(statistics.fmean(bound_s / simulate(plan, concurrency=concurrency, agent_s=agent_s, costs=costs,
                                                     strategy=strategy, seed=s) for s in runs), 3)


def measured_costs(events: list, plan: Plan | dict, agent_s: float) -> Costs:
    """The costs of one run, from its events in log order: slot = mean agent time over its work;
    jitter = the spread of agent times (a uniform of the same deviation); handoff = median wait of an
    attempt that was ready before a slot came free; link = mean, over dependents, of their last
    dependency's agent end -> its merge and learning stored, plus the dependent's own worktree
    preparation (`TaskReady` -> `WorktreeCreated`): what stood between the two, without the time a
    ready dependent waited for the dispatch window (the model has no window)."""
    started: dict[str, float] = {}
    held: list[float] = []
    finished: dict[str, float] = {}
    prepared: dict[str, float] = {}
    dispatched: dict[str, float] = {}
    merged: dict[str, float] = {}
    learned: dict[str, float] = {}
    handoffs: list[float] = []
    last_finished = float("-inf")
    t = seconds
    for e in events:
        if getattr(e, "attempt", 1) > 1:  # first attempts (0: a WorktreeCreated of before attempts were recorded)
            continue
        if isinstance(e, ev.WorktreeCreated):
            prepared.setdefault(e.task_id, t(e.occurred_at))
        elif isinstance(e, ev.TaskReady) and e.purpose == "task":
            dispatched.setdefault(e.task_id, t(e.occurred_at))
        elif isinstance(e, ev.BranchMerged):
            merged.setdefault(e.task_id, t(e.occurred_at))
        elif isinstance(e, ev.LearningExtracted):
            learned.setdefault(e.task_id, t(e.occurred_at))
        elif isinstance(e, ev.AgentStarted):
            started[e.task_id] = t(e.occurred_at)
            if e.task_id in prepared and prepared[e.task_id] < last_finished:
                handoffs.append(started[e.task_id] - last_finished)
        elif isinstance(e, ev.AgentFinished) and e.task_id in started:
            finished[e.task_id] = last_finished = t(e.occurred_at)
            held.append(finished[e.task_id] - started[e.task_id])
    plan = parse_plan(plan) if isinstance(plan, dict) else plan
    links = []
    for tid, found in dependencies(plan).items():
        if not found or tid not in prepared or tid not in dispatched or any(d not in merged for d, _ in found):
            continue
        # the dependency whose merge (and learning, when there is any) came last gated the dependent
        satisfied = {d: max(merged[d], learned.get(d, merged[d])) for d, _ in found}
        gate = max(satisfied, key=satisfied.__getitem__)
        if gate in finished:
            links.append(satisfied[gate] - finished[gate] + prepared[tid] - dispatched[tid])
    spread = statistics.pstdev(held) * 12 ** 0.5 if len(held) > 1 else 0.0
    return Costs(slot_s=max(0.0, statistics.fmean(held) - agent_s) if held else 0.0,
                 handoff_s=statistics.median(handoffs) if handoffs else 0.0,
                 link_s=statistics.fmean(links) if links else 0.0, jitter_s=spread)


def explain(plan: dict, *, concurrency: int, agent_s: float, bound_s: float, costs: Costs,
            strategy: str = "by_epic") -> dict[str, Any]:
    """The model's efficiencies: with no cost, with the run's costs, and with each cost left out."""
    def eff(c: Costs) -> float:
        return efficiency(plan, concurrency=concurrency, agent_s=agent_s, bound_s=bound_s, costs=c, strategy=strategy)

    return {"costs": costs.as_ms(), "efficiency_no_cost": eff(Costs()), "efficiency_with_costs": eff(costs),
            "efficiency_without": {name[:-2]: eff(replace(costs, **{name: 0.0})) for name in vars(costs)}}


def seconds(iso: str) -> float:
    """An event's `occurred_at` as a POSIX timestamp."""
    return datetime.fromisoformat(iso).timestamp()
