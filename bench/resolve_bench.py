"""Resolver benchmark: a generated 10,000-task, 50,000-edge plan (target: resolve under 1 s),
against a plain graphlib.TopologicalSorter over the same graph in the same run.

    python bench/resolve_bench.py [--tasks 10000] [--edges 50000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import graphlib
import random
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.resolver import dependencies, remaining_minutes, resolve  # noqa: E402
from shared.plan import parse_plan  # noqa: E402


def generated_plan_data(tasks: int, edges: int, epics: int, seed: int) -> dict:
    """A DAG: each task depends on random tasks earlier in a hidden order; epics hold slices of
    that order (so chaining the epics keeps it acyclic), tasks listed in id order inside them."""
    rng = random.Random(seed)
    order = list(range(tasks))
    rng.shuffle(order)
    rank = {t: i for i, t in enumerate(order)}
    deps: dict[int, set[int]] = {t: set() for t in range(tasks)}
    made = 0
    while made < edges:
        a, b = rng.randrange(tasks), rng.randrange(tasks)
        if rank[a] == rank[b]:
            continue
        later, earlier = (a, b) if rank[a] > rank[b] else (b, a)
        if earlier not in deps[later]:
            deps[later].add(earlier)
            made += 1
    per_epic: list[list[dict]] = [[] for _ in range(epics)]
    for t in range(tasks):
        per_epic[rank[t] * epics // tasks].append({"id": t, "title": f"task {t}", "depends_on": sorted(deps[t]),
                                    "priority": rng.randint(1, 5), "estimate_minutes": rng.randint(1, 30)})
    return {"name": "bench", "epics": [{"id": f"e{e}", "name": f"epic {e}", "tasks": ts}
                                       for e, ts in enumerate(per_epic)]}


def cyclic_plan_data(cycles: int) -> dict:
    tasks = [t for i in range(cycles)
             for t in ({"id": f"a{i}", "title": "a", "depends_on": [f"b{i}"]},
                       {"id": f"b{i}", "title": "b", "depends_on": [f"a{i}"]})]
    return {"name": "cycles", "epics": [{"id": 1, "name": "cycles", "tasks": tasks}]}


def graphlib_batches(graph: dict[str, list[str]]) -> list[list[str]]:
    sorter = graphlib.TopologicalSorter(graph)
    sorter.prepare()
    batches = []
    while ready := sorter.get_ready():
        batches.append(list(ready))
        sorter.done(*ready)
    return batches


def best_of(repeat: int, work: Callable[[], object]) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--edges", type=int, default=50_000)
    parser.add_argument("--epics", type=int, default=20)
    parser.add_argument("--cycles", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    data = generated_plan_data(args.tasks, args.edges, args.epics, seed=1)
    parse_s, plan = best_of(args.repeat, lambda: parse_plan(data))
    resolve_s, resolution = best_of(args.repeat, lambda: resolve(plan))
    remaining_s, _ = best_of(args.repeat, lambda: remaining_minutes(plan))
    deps_s, deps = best_of(args.repeat, lambda: dependencies(plan))
    graph = {t: [d for d, _ in ds] for t, ds in deps.items()}
    static_s, _ = best_of(args.repeat, lambda: list(graphlib.TopologicalSorter(graph).static_order()))
    layered_s, layers = best_of(args.repeat, lambda: graphlib_batches(graph))
    assert resolution.valid and [sorted(b) for b in resolution.batches] == [sorted(b) for b in layers]
    chained = parse_plan({**data, "epics": [{**epic, "depends_on": [f"e{e - 1}"] if e else []}
                                            for e, epic in enumerate(data["epics"])]})
    chained_s, chained_resolution = best_of(args.repeat, lambda: resolve(chained))
    assert chained_resolution.valid
    cyclic = parse_plan(cyclic_plan_data(args.cycles))
    cycles_s, cyclic_resolution = best_of(args.repeat, lambda: resolve(cyclic))
    assert len(cyclic_resolution.errors) == args.cycles

    edges = sum(len(d) for d in graph.values())
    print(f"plan: {args.tasks} tasks, {edges} edges, {args.epics} epics, {len(resolution.batches)} batches, "
          f"critical path {len(resolution.critical_path)} tasks / {resolution.critical_path_minutes:g} min; "
          f"best of {args.repeat}")
    rows = [
        ("resolve (batches + critical path + validation)", resolve_s),
        ("graphlib.TopologicalSorter static_order", static_s),
        ("graphlib.TopologicalSorter get_ready/done layers", layered_s),
        ("remaining_minutes", remaining_s),
        ("dependencies (epic deps expanded)", deps_s),
        ("parse_plan (field checks)", parse_s),
        ("resolve, same plan + epics chained by depends_on", chained_s),
        (f"resolve, {args.cycles} two-task cycles (all reported)", cycles_s),
    ]
    print(f"{'step':<52}{'ms':>10}{'vs static_order':>18}{'vs layers':>12}")
    for name, seconds in rows:
        print(f"{name:<52}{seconds * 1000:>10.1f}{seconds / static_s:>17.2f}x{seconds / layered_s:>11.2f}x")
    verdict = "meets" if resolve_s < 1.0 else "MISSES"
    print(f"resolve {verdict} the 1 s target ({resolve_s * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
