"""Scheduling benchmark: the whole system (embedded NATS and PostgreSQL, real git, agents that
sleep) against the limit the agents set.

    python -m bench.scheduling [--json] [--quick] [--seed 7] [--repeats 3] [--only burst]
                               [--plan plan.yaml | --shape 12x10] [--agent-ms 500] [--concurrency 6]

Policies on one PRD-shaped plan (foundation, feature and integration epics; chains inside
epics; cross-epic dependencies; a fixed seed; 12 epics of 10 tasks unless --shape says otherwise),
or on any plan file `yokeflow run` takes (--plan: every task an agent that sleeps --agent-ms, its
checks left out, since a sleeping agent writes nothing for them to judge), side by side:
  sequential  max_concurrency 1
  barrier     the PRD's batch barrier at the default policy's concurrency
  default     YokeFlow's default (by_epic, no barrier)
  processes   (--processes) the default policy, each service in its own OS process (runtime.service_processes)
Each reports makespan, lower bound = max(critical path, total work / concurrency),
efficiency = bound / makespan, speed-up over sequential, dispatch latency (from the moment a
task could start, its dependencies merged and an agent slot free, to its agent started), merge latency (agent finished -> merged), peak agents in
flight, events/s, projection lag (event occurred -> its row in PostgreSQL) and the orchestration
CPU of this process per task; beside each policy without a barrier, what its model allows
(bench/model.py: the policy replayed with no cost, with the costs the run measured, and with each
left out). A scale series (short agents, concurrency 20) shows CPU per task as the plan grows
(the smaller plans run before and after the largest, their CPU per task the mean of the two,
their other figures the first run's); a burst of events and a publish run measure the ledger
and the bus alone.

`--quick` is the suite's smoke test: a tiny plan, every figure present, no timing judged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.model import explain, measured_costs
from bench.model import seconds as _t
from shared import events as ev
from shared.commands import CommandError, start_run
from shared.config import parse_config
from shared.infra import EmbeddedServers
from shared.plan import PlanError, load_plan, parse_plan
from shared.plan.model import plan_to_dict
from shared.resolver import remaining_minutes, resolve
from yokeflow.cli import sigterm_as_interrupt
from yokeflow.system import Endpoint, System

PARTS = ("policies", "scale", "burst")  # what --only may choose
TASK_STARTERS = (ev.RunStarted, ev.AgentFinished, ev.TaskCompleted, ev.TaskFailed, ev.BranchMerged,
                 ev.MergeConflicted, ev.TaskBlocked, ev.LearningExtracted)  # after these a task may become startable


# ---------------------------------------------------------------------- plans
def prd_plan(epics: int, per_epic: int, seed: int) -> dict:
    """Foundation epics first, feature epics on top of them, integration epics last; each epic a
    chain (a task needs the one before it), plus early cross-epic dependencies."""
    rng = random.Random(seed)
    n_found = max(1, epics // 6)
    n_integ = max(1, epics // 6) if epics > 2 else 0
    kinds = ["foundation"] * n_found + ["feature"] * (epics - n_found - n_integ) + ["integration"] * n_integ
    out = []
    for e, kind in enumerate(kinds):
        tasks = []
        for j in range(per_epic):
            deps = [f"e{e}t{j - 1}"] if j else []
            earlier = [k for k in range(e) if kinds[k] != kind or kind == "feature"]
            if kind == "feature" and j == 0:
                deps.append(f"e{rng.randrange(n_found)}t{rng.randint(0, min(2, per_epic - 1))}")
            elif kind == "integration" and j in (0, per_epic // 2):
                feats = [k for k in range(e) if kinds[k] == "feature"] or earlier
                for k in rng.sample(feats, min(2, len(feats))):
                    deps.append(f"e{k}t{rng.randint(0, min(j + 2, per_epic - 1))}")
            elif kind == "feature" and earlier and rng.random() < 0.15:
                k = rng.choice([k for k in earlier if kinds[k] == "feature"] or earlier)
                deps.append(f"e{k}t{rng.randint(0, max(0, j - 3))}")
            tasks.append({"id": f"e{e}t{j}", "title": f"{kind} {e} step {j}", "depends_on": sorted(set(deps))})
        out.append({"id": f"e{e}", "name": f"{kind.title()} {e}", "tasks": tasks})
    return {"name": f"prd-{epics}x{per_epic}-seed{seed}", "epics": out}


def critical_path_tasks(plan: dict) -> int:
    """Tasks on the longest dependency chain, as the scheduler reads the plan (`remaining_minutes`: a
    task's `depends_on`, and every task of the epics its epic depends on). Every agent of the
    benchmark takes the same time, so each task weighs one, whatever its estimate."""
    unit = {**plan, "epics": [{**e, "tasks": [{**t, "estimate_minutes": 1} for t in e["tasks"]]}
                              for e in plan["epics"]]}
    return round(max(remaining_minutes(parse_plan(unit)).values(), default=0))


def bench_plan(path: str) -> tuple[dict, int]:
    """A plan file as the benchmark runs it, and how many task checks were left out: checked as
    `yokeflow run` checks it (PlanError lists every problem), each task's checks dropped."""
    plan = load_plan(path)
    if problems := resolve(plan).errors:
        raise PlanError(problems)
    data = plan_to_dict(plan)
    dropped = 0
    for epic in data["epics"]:
        for task in epic["tasks"]:
            dropped += len(task["tests"])
            task["tests"] = []
    return data, dropped


# ---------------------------------------------------------------------- analysis (pure)
def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def analyse(events: list[ev.Event], plan: dict, *, agent_ms: int, concurrency: int) -> dict[str, Any]:
    """Figures of one run from its events in log order."""
    n_tasks = sum(len(e["tasks"]) for e in plan["epics"])
    start = next(e for e in events if isinstance(e, ev.RunStarted))
    end = next(e for e in events if isinstance(e, (ev.RunCompleted, ev.RunFailed, ev.RunCancelled)))
    makespan = _t(end.occurred_at) - _t(start.occurred_at)
    cp = critical_path_tasks(plan) * agent_ms / 1000
    work = n_tasks * agent_ms / 1000 / concurrency
    bound = max(cp, work)
    trigger = start
    ready_at: dict[str, float] = {}
    ready_lat, dispatch_lat, merge_lat = [], [], []
    finished_at: dict[tuple[str, int], float] = {}
    slot_at: dict[str, float] = {}  # when the agent slot an attempt was admitted to came free
    last_finished = float("-inf")
    running = peak = 0
    for e in events:
        if isinstance(e, TASK_STARTERS):
            trigger = e
        if isinstance(e, ev.TaskReady) and e.attempt == 1 and e.purpose == "task":
            ready_at[e.task_id] = _t(trigger.occurred_at)
            ready_lat.append(_t(e.occurred_at) - _t(trigger.occurred_at))
        elif isinstance(e, ev.AgentAdmitted) and e.attempt == 1 and not e.candidate:
            # slots come free only as agents finish: an attempt that waited for one was admitted after the last
            slot_at[e.task_id] = last_finished
        elif isinstance(e, ev.AgentStarted):
            running += 1
            peak = max(peak, running)
            if e.attempt == 1 and e.task_id in ready_at:
                # from the moment it could start: its dependencies merged and an agent slot free
                could = max(ready_at.pop(e.task_id), slot_at.pop(e.task_id, float("-inf")))
                dispatch_lat.append(_t(e.occurred_at) - could)
        elif isinstance(e, ev.AgentFinished):
            running -= 1
            last_finished = _t(e.occurred_at)
            if e.slot_to and e.slot_to_attempt == 1:  # the slot it handed over came free here
                slot_at[e.slot_to] = last_finished
            finished_at[(e.task_id, e.attempt)] = _t(e.occurred_at)
        elif isinstance(e, ev.BranchMerged):
            done = [v for (tid, _), v in finished_at.items() if tid == e.task_id]
            if done:
                merge_lat.append(_t(e.occurred_at) - max(done))
    ms = lambda v: round(v * 1000, 1)  # noqa: E731
    return {
        "tasks": n_tasks, "completed": isinstance(end, ev.RunCompleted), "concurrency": concurrency,
        "agent_ms": agent_ms, "makespan_s": round(makespan, 3), "critical_path_s": round(cp, 3),
        "work_over_concurrency_s": round(work, 3), "lower_bound_s": round(bound, 3),
        "efficiency": round(bound / makespan, 3) if makespan > 0 else 0.0,
        "ready_p50_ms": ms(_pct(ready_lat, 0.5)), "ready_p99_ms": ms(_pct(ready_lat, 0.99)),
        "dispatch_p50_ms": ms(_pct(dispatch_lat, 0.5)), "dispatch_p99_ms": ms(_pct(dispatch_lat, 0.99)),
        "merge_p50_ms": ms(_pct(merge_lat, 0.5)), "merge_p99_ms": ms(_pct(merge_lat, 0.99)),
        "peak_agents": peak, "events": len(events),
        "events_per_s": round(len(events) / makespan, 1) if makespan > 0 else 0.0,
    }


# ---------------------------------------------------------------------- running
def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class RunNotCompleted(RuntimeError):
    """A run of the benchmark failed or was cancelled (e.g. no sandbox to run its agents in)."""


def require_completed(events: list[ev.Event], plan: dict) -> None:
    """A run that failed or was cancelled has no figures: they would describe work that never ran
    (a run whose agents could not start ends in milliseconds: "efficiency 705")."""
    end = next((e for e in events if isinstance(e, (ev.RunCompleted, ev.RunFailed, ev.RunCancelled))), None)
    if not isinstance(end, ev.RunCompleted):
        why = f": {end.reason}" if getattr(end, "reason", "") else ""
        raise RunNotCompleted(f"a run of {plan['name']} ended with {type(end).__name__}{why}; no figures reported")


def _repo(root: Path) -> Path:
    repo = Path(tempfile.mkdtemp(prefix="repo-", dir=root))
    git = ["git", "-C", str(repo), "-c", "user.email=bench@yokeflow", "-c", "user.name=Bench"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "README.md").write_text("bench\n")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "initial"], check=True)
    return repo


class Bench:
    def __init__(self, root: Path):
        self.root = root
        self.servers = EmbeddedServers(root / "state")

    def __enter__(self) -> "Bench":
        self.servers.start()
        return self

    def __exit__(self, *exc) -> None:
        self.servers.stop()

    async def endpoint(self) -> Endpoint:
        """Its own stream, subject prefix and database: runs never share a log or a projection."""
        import asyncpg

        tag = uuid.uuid4().hex[:8]
        admin = self.servers.postgres.url
        conn = await asyncpg.connect(admin)
        await conn.execute(f'CREATE DATABASE "bench_{tag}"')
        await conn.close()
        return Endpoint(self.servers.nats.url, admin.rsplit("/", 1)[0] + f"/bench_{tag}", "embedded",
                        bus_options={"prefix": f"b{tag}", "stream": f"B_{tag}", "log_stream": f"BL_{tag}"})

    async def run(self, plan: dict, *, concurrency: int, agent_ms: int, barrier: bool = False,
                  strategy: str = "by_epic", learning: bool = True, processes: bool = False,
                  model: bool = False) -> dict[str, Any]:
        """One run of `plan`; `model`: also what the policy's model allows with this run's costs (bench.model)."""
        endpoint = await self.endpoint()
        cfg = parse_config({"parallel": {"strategy": strategy, "max_concurrency": concurrency,
                                         "batch_barrier": barrier},
                            "agent": {"provider": f"sleep:{agent_ms}"}, "learning": {"enabled": learning}})
        repo = _repo(self.root)
        system = await System(endpoint, cfg, processes=processes).start()
        bus = await endpoint.bus()
        try:
            cpu0 = _cpu() + system.children_cpu_seconds()
            started = await start_run(bus, plan, repo, cfg)
            # the benchmark watches only for the run's end while it runs (reading every event live
            # would load the very process it measures), then reads the run's events
            endings = [bus.type_filter(t.__name__, aggregate="run") for t in (ev.RunCompleted, ev.RunFailed,
                                                                             ev.RunCancelled)]
            async for d in bus.read(endings, stop_at_end=False):
                if getattr(d.event, "run_id", None) == started.run_id:
                    break
            cpu = _cpu() + system.children_cpu_seconds() - cpu0
            events: list[ev.Event] = []
            last_seq = 0
            async for d in bus.read():
                last_seq = d.seq
                if getattr(d.event, "run_id", None) == started.run_id:
                    events.append(d.event)
            await system.database.wait_for("ledger", last_seq, timeout=120)
            lags = await _projection_lags(system.database, started.run_id)
        finally:
            await bus.close()
            await system.stop()
            shutil.rmtree(repo, ignore_errors=True)
        require_completed(events, plan)
        out = analyse(events, plan, agent_ms=agent_ms, concurrency=concurrency)
        if model and not barrier:  # the model has no batch barrier
            costs = measured_costs(events, plan, agent_ms / 1000)
            out["model"] = explain(plan, concurrency=concurrency, agent_s=agent_ms / 1000, bound_s=out["lower_bound_s"],
                                   costs=costs, strategy=strategy)
        out["projection_lag_p99_ms"] = round(_pct(lags, 0.99) * 1000, 1)
        out["cpu_ms_per_task"] = round(cpu * 1000 / out["tasks"], 1)
        return out

    async def burst(self, n: int) -> dict[str, Any]:
        """`n` events published at once (the services' concurrency) for the ledger to project, the
        ledger where `up` and `run` put it by default (`runtime.ledger_process`: its own OS process)."""
        endpoint = await self.endpoint()
        system = await System(endpoint, parse_config({}), services=("ledger",)).start()
        apart = "ledger" in system.apart()
        bus = await endpoint.bus("yokeflow-admin")  # it publishes the executor's CostRecorded itself
        run_id = f"burst{uuid.uuid4().hex[:6]}"
        try:
            def make(i: int) -> ev.Event:  # made as it is sent, as a service does: its lag starts there
                return ev.CostRecorded(project_id="bench", aggregate_id=f"{run_id}-t{i % 50}", run_id=run_id,
                                       task_id=f"t{i % 50}", call=i, model="sleep")

            warm = ev.CostRecorded(project_id="bench", aggregate_id=f"{run_id}-warm", run_id="warm", task_id="warm")
            await bus.publish(warm)  # the ledger is consuming before the burst starts
            await system.database.wait_for("ledger", await bus.last_seq(), timeout=60)
            t0, t0_wall = time.perf_counter(), time.time()
            await _publish_all(bus, make, n, concurrency=32)
            publish_s = time.perf_counter() - t0
            await system.database.wait_for("ledger", await bus.last_seq(), timeout=300)
            lags = await _projection_lags(system.database, run_id)
            drained_s = max(await _projected_times(system.database, run_id)) - t0_wall
        finally:
            await bus.close()
            await system.stop()
        # drained: from the first publish to the last row projected (the burst's end to end)
        return {"events": n, "publish_per_s": round(n / publish_s), "projection_lag_p50_ms":
                round(_pct(lags, 0.5) * 1000, 1), "projection_lag_p99_ms": round(_pct(lags, 0.99) * 1000, 1),
                "drained_s": round(drained_s, 3), "projected_per_s": round(n / drained_s),
                "ledger_own_process": apart}


async def _publish_all(bus, make, n: int, *, concurrency: int) -> None:
    queue = list(reversed(range(n)))

    async def worker() -> None:
        while queue:
            await bus.publish(make(queue.pop()))

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _projected_times(database, run_id: str) -> list[float]:
    from sqlalchemy import select

    from shared import db

    t = db.event_log
    return [r["projected_at"].timestamp() for r in await database.fetch(select(t.c.projected_at)
                                                                           .where(t.c.run_id == run_id))]


async def _projection_lags(database, run_id: str) -> list[float]:
    from sqlalchemy import select

    from shared import db

    t = db.event_log
    rows = await database.fetch(select(t.c.occurred_at, t.c.projected_at).where(t.c.run_id == run_id))
    return [max(0.0, r["projected_at"].timestamp() - _t(r["occurred_at"])) for r in rows]


# ---------------------------------------------------------------------- the whole benchmark
async def benchmark(args) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="yf-sched-bench-"))
    if args.quick:
        (epics, per_epic), agent_ms, conc, scale, scale_ms, burst = args.shape or (3, 3), 50, 3, [9, 18], 20, 200
    else:
        (epics, per_epic), agent_ms, conc = args.shape or (12, 10), 500, 6
        scale, scale_ms, burst = args.scale, 50, 3000
    agent_ms, conc = args.agent_ms or agent_ms, args.concurrency or conc
    if args.plan:
        plan, dropped = args.loaded_plan
        source = args.plan
    else:
        plan, dropped, source = prd_plan(epics, per_epic, args.seed), 0, f"generated {epics}x{per_epic}, seed {args.seed}"
    out: dict[str, Any] = {"machine": _machine(), "host": {"start": host_speed()}, "seed": args.seed,
                           "learning": args.learning,
                           "plan": {"name": plan["name"], "source": source, "epics": len(plan["epics"]),
                                    "tasks": sum(len(e["tasks"]) for e in plan["epics"]),
                                    "critical_path_tasks": critical_path_tasks(plan), "checks_left_out": dropped,
                                    "agent_ms": agent_ms, "concurrency": conc},
                           "policies": {}, "scale": [], "burst": {}}
    try:
        with Bench(root) as bench:
            policies = {"sequential": (1, False, False), "barrier": (conc, True, False), "default": (conc, False, False)}
            if args.processes:  # the default policy with each service in its own OS process
                policies["processes"] = (conc, False, True)
            for name, (c, barrier, processes) in (policies.items() if "policies" in args.only else ()):
                # Each parallel policy runs `repeats` times and its median run (by efficiency) is reported: on
                # a shared machine one run's makespan moves by a few percent. Sequential runs once: its
                # agents are 95 % of its minute, so it moves little.
                repeats = 1 if c == 1 else args.repeats
                runs = [await bench.run(plan, concurrency=c, agent_ms=agent_ms, barrier=barrier, learning=args.learning,
                                        processes=processes, model=True)
                        for _ in range(repeats)]
                # by efficiency, the figure reported (by makespan, two runs whose makespans round alike
                # could order their efficiencies the other way)
                rec = sorted(runs, key=lambda r: (r["efficiency"], -r["makespan_s"]))[(len(runs) - 1) // 2]
                rec = {**rec, "policy": name, "batch_barrier": barrier, "service_processes": processes,
                       "repeats": len(runs), "efficiency_of_each_run": [r["efficiency"] for r in runs]}
                out["policies"][name] = rec
                _progress(args, f"{name}: makespan {rec['makespan_s']} s, efficiency {rec['efficiency']}")
            seq = out["policies"]["sequential"]["makespan_s"] if out["policies"] else 0.0
            for rec in out["policies"].values():
                rec["speedup"] = round(seq / rec["makespan_s"], 2) if rec["makespan_s"] else 0.0
            sizes = list(scale if "scale" in args.only else ())
            runs_of: dict[int, list[dict[str, Any]]] = {}
            # The smaller plans run again after the largest, in reverse (120, 300, 1000, 300, 120): the
            # host these machines share changes speed over the minutes the series takes, and a figure
            # of the smallest plan (seconds long) taken once moved by a fifth between two series; the
            # mean of a run before and one after the largest is the one compared with it.
            for n in sizes + sorted(set(sizes) - {max(sizes, default=0)}, reverse=True):
                per = 10 if n >= 30 else 3
                big = prd_plan(max(1, n // per), per, args.seed)
                host = host_speed()  # the host as this point began: the series runs minutes apart
                rec = await bench.run(big, concurrency=20 if not args.quick else 4, agent_ms=scale_ms,
                                      learning=args.learning)
                runs_of.setdefault(n, []).append({**rec, "plan_tasks": n, "host": host})
                _progress(args, f"scale {n}: makespan {rec['makespan_s']} s, cpu {rec['cpu_ms_per_task']} ms/task")
            for n in sizes:
                first, cpus = runs_of[n][0], [r["cpu_ms_per_task"] for r in runs_of[n]]
                out["scale"].append({**first, "cpu_ms_per_task": round(statistics.fmean(cpus), 1),
                                     "cpu_ms_per_task_of_each_run": cpus, "runs": len(cpus)})
            if "burst" in args.only:
                out["burst"] = await bench.burst(burst)
                _progress(args, f"burst {burst}: lag p99 {out['burst']['projection_lag_p99_ms']} ms")
            out["host"]["end"] = host_speed()  # before the clean-up's own file removals
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if out["scale"]:
        first, last = out["scale"][0], out["scale"][-1]
        out["cpu_growth_largest_over_smallest"] = round(last["cpu_ms_per_task"] / max(first["cpu_ms_per_task"], 1e-9),
                                                        2)
    return out


def host_speed(repeats: int = 3) -> dict[str, float]:
    """How fast this host runs the two kinds of work the orchestration is made of, right now: a fixed
    pure-Python loop (its wall time, and the CPU time it took) and a fixed set of small-file writes
    and removals, each the median of `repeats`. These machines are shared: a figure that moved
    between two runs while these moved with it moved with the host, not with the code."""
    samples = [_host_sample() for _ in range(repeats)]
    return {k: statistics.median(s[k] for s in samples) for k in samples[0]}


def _host_sample(loops: int = 300_000, files: int = 200) -> dict[str, float]:
    began, cpu = time.perf_counter(), time.process_time()
    acc = 0
    for i in range(loops):
        acc += i * i % 7
    loop_ms, loop_cpu_ms = (time.perf_counter() - began) * 1000, (time.process_time() - cpu) * 1000
    folder = Path(tempfile.mkdtemp(prefix="yf-host-"))
    try:
        began = time.perf_counter()
        for i in range(files):
            path = folder / f"f{i}"
            path.write_bytes(b"x" * 64)
            path.unlink()
        files_ms = (time.perf_counter() - began) * 1000
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"python_loop_ms": round(loop_ms, 1), "python_loop_cpu_ms": round(loop_cpu_ms, 1),
            "small_files_ms": round(files_ms, 1)}


def _host_line(when: str, h: dict[str, float]) -> str:
    return (f"host at {when}: python loop {h['python_loop_ms']:.0f} ms (cpu {h['python_loop_cpu_ms']:.0f} ms), "
            f"small files {h['small_files_ms']:.0f} ms")


def _machine() -> str:
    import platform

    return f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"


def _progress(args, line: str) -> None:
    print(line, file=sys.stderr if args.json else sys.stdout, flush=True)


def table(out: dict[str, Any]) -> str:
    lines = [f"machine: {out['machine']}  seed {out['seed']}  learning {'on' if out['learning'] else 'off'}", "",
             f"{'policy':<11}{'makespan s':>11}{'bound s':>9}{'effic.':>8}{'speed-up':>9}{'dispatch p50/p99 ms':>21}"
             f"{'merge p50/p99 ms':>18}{'peak':>6}{'ev/s':>7}{'lag p99 ms':>11}{'cpu ms/task':>12}"]
    if not out["policies"]:
        lines = lines[:1]
    elif plan := out.get("plan"):
        dropped = f", {plan['checks_left_out']} task checks left out" if plan["checks_left_out"] else ""
        lines.insert(1, f"plan: {plan['source']} ({plan['tasks']} tasks in {plan['epics']} epics, critical path "
                        f"{plan['critical_path_tasks']} tasks{dropped}); agents sleep {plan['agent_ms']} ms, "
                        f"concurrency {plan['concurrency']}")
    host = out.get("host", {})
    lines[1:1] = [_host_line(when, host[when]) for when in ("start", "end") if when in host]
    for name, r in out["policies"].items():
        lines.append(f"{name:<11}{r['makespan_s']:>11.2f}{r['lower_bound_s']:>9.2f}{r['efficiency']:>8.2f}"
                     f"{r['speedup']:>9.2f}{r['dispatch_p50_ms']:>12.0f}/{r['dispatch_p99_ms']:<8.0f}"
                     f"{r['merge_p50_ms']:>9.0f}/{r['merge_p99_ms']:<8.0f}{r['peak_agents']:>6}"
                     f"{r['events_per_s']:>7.0f}{r['projection_lag_p99_ms']:>11.0f}{r['cpu_ms_per_task']:>12.1f}")
    for name, r in out["policies"].items():
        if m := r.get("model"):
            c = m["costs"]
            without = " · ".join(f"{k} {v:.2f}" for k, v in m["efficiency_without"].items())
            lines.append(f"  model of {name}: {m['efficiency_no_cost']:.2f} with no cost, {m['efficiency_with_costs']:.2f} "
                         f"with this run's (slot +{c['slot_ms']:.0f} ms, handoff {c['handoff_ms']:.0f} ms, link "
                         f"{c['link_ms']:.0f} ms, jitter {c['jitter_ms']:.0f} ms); without each: {without}")
    if out["scale"]:
        lines += ["", f"{'tasks':>6}{'makespan s':>11}{'effic.':>8}{'peak':>6}{'cpu ms/task':>12}{'lag p99 ms':>11}"
                      f"{'host loop cpu ms':>17}  each run's cpu ms/task (before, after the largest)"]
    for r in out["scale"]:
        each = ", ".join(f"{c:.1f}" for c in r.get("cpu_ms_per_task_of_each_run", []))
        lines.append(f"{r['tasks']:>6}{r['makespan_s']:>11.2f}{r['efficiency']:>8.2f}{r['peak_agents']:>6}"
                     f"{r['cpu_ms_per_task']:>12.1f}{r['projection_lag_p99_ms']:>11.0f}"
                     f"{r.get('host', {}).get('python_loop_cpu_ms', 0.0):>17.0f}  {each}")
    if "cpu_growth_largest_over_smallest" in out:
        lines.append(f"cpu per task, largest plan / smallest: {out['cpu_growth_largest_over_smallest']}")
    if b := out["burst"]:
        lines.append(f"burst of {b['events']} events: publish {b['publish_per_s']}/s, projection lag "
                     f"p50 {b['projection_lag_p50_ms']:.0f} ms, p99 {b['projection_lag_p99_ms']:.0f} ms, "
                     f"all projected {b['drained_s']:.2f} s after the first was sent ({b['projected_per_s']}/s; "
                     f"the ledger in {'its own process' if b['ledger_own_process'] else 'this process'})")
    return "\n".join(lines)


def _shape(value: str) -> tuple[int, int]:
    epics, x, per_epic = value.lower().partition("x")
    if not (x and epics.isdigit() and per_epic.isdigit() and int(epics) >= 1 and int(per_epic) >= 1):
        raise argparse.ArgumentTypeError(f"{value!r} is not EPICSxTASKS, e.g. 12x10")
    if int(epics) * int(per_epic) > 5000:
        raise argparse.ArgumentTypeError(f"{value} is {int(epics) * int(per_epic):,} tasks; at most 5,000")
    return int(epics), int(per_epic)


def _bounded(low: int, high: int):
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if not low <= n <= high:
            raise argparse.ArgumentTypeError(f"{n} is outside {low}..{high:,}")
        return n
    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scheduling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="a tiny plan: the suite's smoke test")
    parser.add_argument("--seed", type=int, default=7, help="of the generated plans (default 7)")
    parser.add_argument("--shape", type=_shape, default=None, metavar="EPICSxTASKS",
                        help="the policies' generated plan: epics x tasks per epic (default 12x10; 3x3 with --quick)")
    parser.add_argument("--plan", default=None, metavar="FILE",
                        help="the policies' plan instead: a YAML or JSON plan file, as `yokeflow run` takes; "
                             "each task's checks are left out")
    parser.add_argument("--agent-ms", type=_bounded(1, 600_000), default=None,
                        help="how long each agent of the policies sleeps (default 500; 50 with --quick)")
    parser.add_argument("--concurrency", type=_bounded(1, 256), default=None,
                        help="max_concurrency of the parallel policies (default 6; 3 with --quick)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs of each parallel policy; the median run is reported (default 3; 1 with --quick)")
    parser.add_argument("--scale", type=lambda v: [int(x) for x in v.split(",")], default=[120, 300, 1000],
                        help="plan sizes of the scale series (default 120,300,1000)")
    parser.add_argument("--learning", choices=("on", "off"), default="on",
                        help="off: leave the learner out, to see the orchestration alone")
    parser.add_argument("--processes", action="store_true",
                        help="also run the default policy with each service in its own process")
    parser.add_argument("--only", type=lambda v: set(v.split(",")), default=set(PARTS),
                        help=f"run only these parts, comma-separated, of {','.join(PARTS)} (default all)")
    args = parser.parse_args(argv)
    if args.only - set(PARTS):
        parser.error(f"--only: {','.join(sorted(args.only - set(PARTS)))} is not a part; use {','.join(PARTS)}")
    args.learning = args.learning == "on"
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.plan and args.shape:
        parser.error("give --plan or --shape, not both")
    args.loaded_plan = None
    if args.plan:
        try:
            args.loaded_plan = bench_plan(args.plan)  # read once, before any server starts
        except PlanError as exc:
            parser.error(f"--plan: {exc}")
    before = signal.signal(signal.SIGTERM, sigterm_as_interrupt)  # through the clean-up, as Ctrl-C: no server left running
    try:
        out = asyncio.run(benchmark(args))
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    except CommandError as exc:  # a plan the run refuses (too large for one message, say): one line
        print(f"{parser.prog}: error: --plan: {exc}", file=sys.stderr)
        return 2
    except RunNotCompleted as exc:  # one line, and no figures at all
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, before)
    print(json.dumps(out, indent=2) if args.json else table(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
