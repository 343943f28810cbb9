"""Dependency resolution of a plan, pure (no I/O): parallel batches by Kahn's algorithm,
the critical path, and validation that names every problem at once.

Every algorithm here is iterative and linear in tasks + edges, so 10,000-task chains and
plans with thousands of cycles neither hit the recursion limit nor take long.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from shared.plan import Plan, PlanProblem, PlanTask

_LISTED = 10  # ids spelled out in one message; the problem's `ids` always holds them all


@dataclass(frozen=True)
class Resolution:
    valid: bool
    batches: list[list[str]]
    critical_path: list[str]
    critical_path_minutes: float
    errors: list[PlanProblem]
    warnings: list[PlanProblem]
    unresolved: list[str] = field(default_factory=list)  # tasks in or behind a cycle, in file order

    def to_json(self) -> dict[str, Any]:
        """The object `yokeflow plan check --json` prints."""
        return {"valid": self.valid, "batches": self.batches, "critical_path": self.critical_path,
                "critical_path_minutes": round(self.critical_path_minutes, 6),
                "errors": [p.to_dict() for p in self.errors],
                "warnings": [p.to_dict() for p in self.warnings]}

    @classmethod
    def rejected(cls, problems: list[PlanProblem]) -> Resolution:
        """The resolution of a plan that could not even be read (bad fields, bad syntax)."""
        return cls(valid=False, batches=[], critical_path=[], critical_path_minutes=0.0,
                   errors=list(problems), warnings=[])


class _Graph:
    """Nodes 0..n-1 are the tasks (first task with each id, file order). Each epic adds a
    'done' node (waits for all its tasks) and a 'gate' node (waits for the epics it depends
    on), so epic-level dependencies cost edges linear in the plan, not tasks x tasks."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.tasks: list[PlanTask] = []
        self.task_paths: list[str] = []
        self.task_epic: list[int] = []
        self.task_node: dict[str, int] = {}
        self.epic_node: dict[str, int] = {}
        self.errors: list[PlanProblem] = []
        self.warnings: list[PlanProblem] = []
        self._index_ids()
        self.n, self.m = len(self.tasks), len(plan.epics)
        self.deps: list[list[int]] = [[] for _ in range(self.n + 2 * self.m)]
        self.epic_deps: list[list[int]] = [[] for _ in range(self.m)]
        self._add_epic_edges()
        self._add_task_edges()
        self.weights = [t.estimate_minutes for t in self.tasks] + [0.0] * (2 * self.m)

    def done(self, e: int) -> int:
        return self.n + e

    def gate(self, e: int) -> int:
        return self.n + self.m + e

    def label(self, node: int) -> str:
        if node < self.n:
            return self.tasks[node].id
        return f"epic {self.plan.epics[(node - self.n) % self.m].id}"

    def _index_ids(self) -> None:
        seen_tasks: dict[str, list[str]] = {}
        seen_epics: dict[str, list[str]] = {}
        for e, epic in enumerate(self.plan.epics):
            seen_epics.setdefault(epic.id, []).append(f"epics[{e}]")
            self.epic_node.setdefault(epic.id, e)
            for t, task in enumerate(epic.tasks):
                path = f"epics[{e}].tasks[{t}]"
                seen_tasks.setdefault(task.id, []).append(path)
                if task.id not in self.task_node:
                    self.task_node[task.id] = len(self.tasks)
                    self.tasks.append(task)
                    self.task_paths.append(path)
                    self.task_epic.append(e)
        for kind, seen in (("task", seen_tasks), ("epic", seen_epics)):
            for ident, paths in seen.items():
                if len(paths) > 1:
                    self.errors.append(PlanProblem(
                        "duplicate_id", [ident], f"{kind} id {ident} is used by {len(paths)} {kind}s "
                        f"({', '.join(paths)}); give each {kind} its own id (ids are compared as text, "
                        "so 11 and \"11\" are the same id)", paths[1]))

    def _add_epic_edges(self) -> None:
        for e, epic in enumerate(self.plan.epics):
            path = f"epics[{e}].depends_on"
            seen: set[str] = set()
            for k, dep in enumerate(epic.depends_on):
                if dep in seen:
                    self.warnings.append(PlanProblem("duplicate_dependency", [epic.id, dep],
                                                     f"epic {epic.id} lists epic {dep} twice", f"{path}[{k}]"))
                    continue
                seen.add(dep)
                target = self.epic_node.get(dep)
                if dep == epic.id:
                    self.errors.append(PlanProblem("self_dependency", [epic.id], f"epic {epic.id} depends "
                                                   f"on itself; remove {dep} from its depends_on", f"{path}[{k}]"))
                elif target is None:
                    hint = (f"; {dep} is a task id: list it in the depends_on of the tasks that need it"
                            if dep in self.task_node else "; fix the id or add the epic")
                    self.errors.append(PlanProblem("missing_dependency", [epic.id, dep], f"epic {epic.id} "
                                                   f"depends on epic {dep}, which is not in the plan{hint}",
                                                   f"{path}[{k}]"))
                else:
                    self.epic_deps[e].append(target)
                    self.deps[self.gate(e)].append(self.done(target))
            if not epic.tasks:
                self.warnings.append(PlanProblem("empty_epic", [epic.id], f"epic {epic.id} has no tasks; "
                                                 "epics that depend on it wait for nothing", f"epics[{e}]"))

    def _add_task_edges(self) -> None:
        for e, epic in enumerate(self.plan.epics):
            for t, task in enumerate(epic.tasks):
                node = self.task_node[task.id]
                is_node = self.tasks[node] is task  # a duplicate id is reported, not wired
                if is_node:
                    self.deps[self.done(e)].append(node)
                path = f"epics[{e}].tasks[{t}].depends_on"
                seen: set[str] = set()
                for k, dep in enumerate(task.depends_on):
                    if dep in seen:
                        self.warnings.append(PlanProblem("duplicate_dependency", [task.id, dep],
                                                         f"task {task.id} lists task {dep} twice", f"{path}[{k}]"))
                        continue
                    seen.add(dep)
                    target = self.task_node.get(dep)
                    if dep == task.id:
                        self.errors.append(PlanProblem("self_dependency", [task.id], f"task {task.id} depends "
                                                       f"on itself; remove {dep} from its depends_on", f"{path}[{k}]"))
                    elif target is None:
                        hint = (f"; {dep} is an epic id: put it in the depends_on of epic {epic.id} to wait "
                                "for a whole epic" if dep in self.epic_node else "; fix the id or add the task")
                        self.errors.append(PlanProblem("missing_dependency", [task.id, dep], f"task {task.id} "
                                                       f"depends on task {dep}, which is not in the plan{hint}",
                                                       f"{path}[{k}]"))
                    elif is_node:
                        self.deps[node].append(target)
                if is_node and self.epic_deps[e]:
                    self.deps[node].append(self.gate(e))


def _dependents(deps: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in deps]
    for node, targets in enumerate(deps):
        for target in targets:
            out[target].append(node)
    return out


def _strongly_connected(deps: list[list[int]], nodes: list[int], inside: list[bool]) -> list[list[int]]:
    """Tarjan's algorithm with an explicit stack, on `nodes` only; components of 2+ nodes."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    found: list[list[int]] = []
    for root in nodes:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, 0)]
        while work:
            node, i = work[-1]
            targets = deps[node]
            if i < len(targets):
                work[-1] = (node, i + 1)
                target = targets[i]
                if not inside[target]:
                    continue
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, 0))
                elif target in on_stack and index[target] < low[node]:
                    low[node] = index[target]
                continue
            work.pop()
            if work and low[node] < low[work[-1][0]]:
                low[work[-1][0]] = low[node]
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def _cycle_through(start: int, members: set[int], deps: list[list[int]]) -> list[int]:
    """A shortest cycle from `start` back to itself inside a component (breadth first)."""
    parent = {start: -1}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in deps[node]:
            if target == start:
                cycle = [node]
                while parent[cycle[-1]] != -1:
                    cycle.append(parent[cycle[-1]])
                return cycle[::-1]
            if target in members and target not in parent:
                parent[target] = node
                queue.append(target)
    return [start]


def _some(ids: list[str]) -> str:
    shown = ", ".join(ids[:_LISTED])
    return shown + (f" and {len(ids) - _LISTED} more" if len(ids) > _LISTED else "")


def _epic_cycles(graph: _Graph) -> tuple[list[PlanProblem], dict[int, int]]:
    """Cycles among epics' depends_on, reported with epic ids; also epic -> its cycle's number."""
    epics = graph.plan.epics
    problems, cyclic = [], {}
    for number, component in enumerate(_strongly_connected(graph.epic_deps, list(range(graph.m)),
                                                           [True] * graph.m)):
        members = set(component)
        cyclic.update(dict.fromkeys(component, number))
        cycle = _cycle_through(min(component), members, graph.epic_deps)
        chain = " → ".join(epics[e].id for e in cycle + cycle[:1])
        ids = [epics[e].id for e in cycle] + [epics[e].id for e in sorted(members - set(cycle))]
        shape = f"epics {chain}" if len(cycle) == len(members) else \
            f"epics {_some(ids)} (for example {chain})"
        problems.append(PlanProblem("cycle", ids, f"{shape} depend on each other (→ means depends on), so "
                                    "every task of each waits for the others; remove one of these epic "
                                    "dependencies", f"epics[{cycle[0]}].depends_on"))
    return problems, cyclic


def _task_cycles(graph: _Graph, unresolved: list[int], cyclic_epics: dict[int, int]) -> tuple[list[PlanProblem], set[int]]:
    """Cycles among tasks (epic cycles already reported are left out), with their task nodes."""
    deps = list(graph.deps)
    for e, number in cyclic_epics.items():
        deps[graph.gate(e)] = [d for d in deps[graph.gate(e)] if cyclic_epics.get(d - graph.n) != number]
    inside = [False] * len(deps)
    for node in unresolved:
        inside[node] = True
    problems, in_cycles = [], set()
    for component in sorted(_strongly_connected(deps, unresolved, inside), key=min):
        members = set(component)
        cycle = _cycle_through(min(component), members, deps)
        tasks_on_cycle = [v for v in cycle if v < graph.n]
        others = sorted(v for v in members - set(cycle) if v < graph.n)
        in_cycles.update(v for v in members if v < graph.n)
        shown = [v for v in cycle if v < graph.n + graph.m]  # tasks and 'epic done' nodes; gates are implied
        chain = " → ".join(graph.label(v) for v in shown + shown[:1])
        ids = [graph.tasks[v].id for v in tasks_on_cycle + others]
        shape = f"tasks {chain}" if not others else f"tasks {_some(ids)} (for example {chain})"
        via = ("; 'epic X' stands for every task of epic X, waited for through an epic's depends_on"
               if len(shown) > len(tasks_on_cycle) else "")
        problems.append(PlanProblem("cycle", ids, f"{shape} form a dependency cycle (→ means waits for); "
                                    f"remove one of these dependencies{via}",
                                    f"{graph.task_paths[min(component)]}.depends_on"))
    return problems, in_cycles


def _kahn(graph: _Graph) -> tuple[list[int], list[list[int]]]:
    """Nodes in an order where every node follows its dependencies; nodes on or behind a
    cycle are left out. Also the reverse edges."""
    dependents = _dependents(graph.deps)
    waiting = [len(d) for d in graph.deps]
    order = [v for v, count in enumerate(waiting) if count == 0]
    i = 0
    while i < len(order):
        for u in dependents[order[i]]:
            waiting[u] -= 1
            if waiting[u] == 0:
                order.append(u)
        i += 1
    return order, dependents


def _remaining(graph: _Graph, order: list[int], dependents: list[list[int]]) -> tuple[list[float], list[int]]:
    """Minutes of the longest chain from each node to the end (itself included) over the
    resolved nodes, and the chain's next node (ties to the earlier task in the file)."""
    size = len(graph.deps)
    placed = [False] * size
    for v in order:
        placed[v] = True
    remaining = list(graph.weights)
    nearest = list(range(size))  # the first task on the node's chain, to break ties by file order
    following = [-1] * size
    for v in reversed(order):
        best, pick = 0.0, -1
        for u in dependents[v]:
            if placed[u] and (pick < 0 or remaining[u] > best or
                              (remaining[u] == best and nearest[u] < nearest[pick])):
                best, pick = remaining[u], u
        remaining[v] = graph.weights[v] + best
        following[v] = pick
        if v >= graph.n:
            nearest[v] = nearest[pick] if pick >= 0 else size
    return remaining, following


def resolve(plan: Plan) -> Resolution:
    """Batches, critical path, and every error and warning of a plan, all at once."""
    graph = _Graph(plan)
    order, dependents = _kahn(graph)
    n, deps = graph.n, graph.deps
    level = [0] * len(deps)  # tasks: batch number; epic nodes: highest batch they wait for
    for v in order:
        top = max((level[d] for d in deps[v]), default=-1)
        level[v] = top + 1 if v < n else top

    resolved = sorted(v for v in order if v < n)
    batches: list[list[int]] = [[] for _ in range(max((level[v] for v in resolved), default=-1) + 1)]
    for v in resolved:
        batches[level[v]].append(v)
    epics = plan.epics
    for batch in batches:
        batch.sort(key=lambda v: (epics[graph.task_epic[v]].priority, graph.tasks[v].priority,
                                  graph.tasks[v].position, v))

    remaining, following = _remaining(graph, order, dependents)
    start = max(resolved, key=lambda v: (remaining[v], -v), default=-1)
    path, node = [], start
    while node >= 0:
        if node < n:
            path.append(graph.tasks[node].id)
        node = following[node]

    placed = set(order)
    unresolved = [v for v in range(len(deps)) if v not in placed]
    epic_problems, cyclic_epics = _epic_cycles(graph)
    task_problems, in_cycles = _task_cycles(graph, unresolved, cyclic_epics)
    in_cycles.update(v for v in unresolved if v < n and graph.task_epic[v] in cyclic_epics)
    blocked = [graph.tasks[v].id for v in unresolved if v < n and v not in in_cycles]
    warnings = list(graph.warnings)
    if blocked:
        who = f"tasks {_some(blocked)} wait" if len(blocked) > 1 else f"task {blocked[0]} waits"
        warnings.append(PlanProblem("blocked_by_cycle", blocked, f"{who} on a cycle and cannot run until "
                                    "it is broken"))
    errors = graph.errors + epic_problems + task_problems
    return Resolution(
        valid=not errors, batches=[[graph.tasks[v].id for v in b] for b in batches], critical_path=path,
        critical_path_minutes=remaining[start] if start >= 0 else 0.0, errors=errors, warnings=warnings,
        unresolved=[graph.tasks[v].id for v in unresolved if v < n])


def remaining_minutes(plan: Plan) -> dict[str, float]:
    """For each task, the minutes of the longest chain from it (itself included) to the end of
    the graph; tasks on or behind a cycle count only themselves."""
    graph = _Graph(plan)
    order, dependents = _kahn(graph)
    remaining, _ = _remaining(graph, order, dependents)
    return {task.id: remaining[v] for v, task in enumerate(graph.tasks)}


def dispatch_order_key(plan: Plan, task_id: str, remaining: dict[str, float]) -> tuple[int, float, int]:
    """Sort key of ready tasks: task priority, then longest remaining path first, then file order."""
    task = plan.task(task_id)
    return (task.priority, -remaining.get(task.id, task.estimate_minutes), task.position)


def dependencies(plan: Plan) -> dict[str, list[tuple[str, str]]]:
    """Task id -> [(dependency task id, "hard" | "soft")]: its own depends_on (with its
    dependency_type) then, as hard, every task of the epics its epic depends on; each
    dependency once (hard wins over soft). Self and missing references are left out: resolve()
    reports them. With duplicate ids the first task or epic with the id is the one used."""
    tasks_by_id, epics_by_id = {}, {}
    for epic in plan.epics:
        epics_by_id.setdefault(epic.id, epic)
        for task in epic.tasks:
            tasks_by_id.setdefault(task.id, task)
    out: dict[str, list[tuple[str, str]]] = {}
    for epic in plan.epics:
        wanted = [epics_by_id[e] for e in dict.fromkeys(epic.depends_on) if e in epics_by_id and e != epic.id]
        for task in epic.tasks:
            if task.id in out:
                continue
            found: dict[str, str] = {}
            for dep in task.depends_on:
                if dep != task.id and dep in tasks_by_id:
                    found.setdefault(dep, task.dependency_type)
            for other in wanted:
                for dep_task in other.tasks:
                    if dep_task.id != task.id and tasks_by_id[dep_task.id] is dep_task:
                        found[dep_task.id] = "hard"
            out[task.id] = list(found.items())
    return out
