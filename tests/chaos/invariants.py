"""The invariants every chaos scenario must keep, checked in one place after the run ends."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from shared import db
from shared import events as ev
from services.ledger.projector import exact_cost

RUN_AGGREGATES = ("run", "task", "merge", "worktree", "batch")  # the run's own; expertise outlives a run
# After RunCancelled only what work already in hand leads to: a paid call's cost, an agent's end
# and the commit of its work on its branch, a merge already on the target, the budget levels those cross, and the scheduler closing the tasks
# (and a TaskReady the planner decided before it saw the cancel, which no agent starts: below).
# Nothing new starts: no worktree, agent, merge attempt, conflict, learning, batch, pause or ending.
AFTER_CANCEL = {"CostRecorded", "AgentFinished", "WorkCommitted", "BranchMerged", "BudgetWarning", "BudgetExhausted",
                "TaskCancelled", "TaskCompleted", "RunCancelled", "TaskReady"}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def commits_on(repo: Path, branch: str = "main") -> list[dict]:
    """Every commit reachable from `branch`: sha, parents and trailers."""
    out = _git(repo, "log", "--format=%H%x1f%P%x1f%(trailers:only,unfold)%x1e", branch)
    commits = []
    for record in out.split("\x1e"):
        if not record.strip():
            continue
        sha, parents, trailers = record.strip("\n").split("\x1f")
        fields = dict(line.split(": ", 1) for line in trailers.splitlines() if ": " in line)
        commits.append({"sha": sha, "merge": len(parents.split()) > 1, "trailers": fields})
    return commits


async def run_events(bus, run_id: str) -> list[tuple[int, ev.Event]]:
    return [(d.seq, d.event) async for d in bus.read() if getattr(d.event, "run_id", None) == run_id]


async def wait_for_projection(database: db.Database, bus, tries: int = 600) -> None:
    """Until the ledger has projected every event in the log (bounded)."""
    last = await bus.last_seq()
    for _ in range(tries):
        rows = await database.fetch(select(db.projection_tracking))
        if rows and max(r["last_stream_seq"] for r in rows) >= last:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the ledger did not reach stream sequence {last}")


async def snapshot(database: db.Database) -> dict[str, list]:
    out = {}
    for table in (db.runs, db.tasks, db.attempts, db.merges, db.agent_costs):
        rows = await database.fetch(select(table))
        out[table.name] = sorted((sorted(r.items()) for r in rows), key=repr)
    return out


async def check_invariants(bus, repo: Path, run_id: str, *, database_url: str | None = None,
                           branch: str = "main") -> dict[str, ev.Event]:
    """Assert every invariant of a finished run; returns each task's terminal event."""
    events = await run_events(bus, run_id)
    ends = [(seq, e) for seq, e in events if isinstance(e, (ev.RunCompleted, ev.RunFailed, ev.RunCancelled))]
    assert ends, "the run ended"
    # RunCancelled is a command: the scheduler still cancels the tasks after it; the others are final
    final = [(seq, e) for seq, e in ends if not isinstance(e, ev.RunCancelled)]
    assert len(final) <= 1, "one ending"
    if final:  # nothing at all for the run after RunCompleted or RunFailed
        late = [e.type for seq, e in events if seq > final[0][0] and not isinstance(e, ev.RunCancelled)]
        assert not late, f"events for the run after its end: {late}"
    cancelled_at = min((seq for seq, e in ends if isinstance(e, ev.RunCancelled)), default=None)
    if cancelled_at is not None:
        started_late = [e.type for seq, e in events if seq > cancelled_at and e.type not in AFTER_CANCEL]
        assert not started_late, f"new work for the run after RunCancelled: {started_late}"
        late_ready = {(e.task_id, e.attempt) for seq, e in events if seq > cancelled_at and isinstance(e, ev.TaskReady)}
        answered = {(e.task_id, e.attempt): e.outcome for _, e in events if isinstance(e, ev.AgentFinished)}
        assert all(answered.get(k) == "cancelled" for k in late_ready), "a late dispatch ran an agent"

    # every task in exactly one terminal state
    started = next(e for _, e in events if isinstance(e, ev.RunStarted))
    task_ids = [t.id for epic in started.plan.epics for t in epic.tasks]
    terminal: dict[str, list[ev.Event]] = {t: [] for t in task_ids}
    for _, e in events:
        if isinstance(e, (ev.TaskCompleted, ev.TaskBlocked, ev.TaskCancelled)) or (
                isinstance(e, ev.TaskFailed) and e.final):
            terminal.setdefault(e.task_id, []).append(e)
    assert all(len(v) == 1 for v in terminal.values()), {t: [e.type for e in v] for t, v in terminal.items()}
    merged = {e.task_id for _, e in events if isinstance(e, ev.BranchMerged)}
    done = {t for t, v in terminal.items() if isinstance(v[0], ev.TaskCompleted)}
    if cancelled_at is not None:  # a success the cancellation stopped before its merge is not on the target
        done &= merged

    # each done task's work on main exactly once, and its recorded merge commit is its own
    commits = commits_on(repo, branch)
    for task in done:
        mine = [c for c in commits if c["trailers"].get("YokeFlow-Task") == task
                and c["trailers"].get("YokeFlow-Run") == run_id]
        work = [c for c in mine if not c["merge"]]
        merges = [c for c in mine if c["merge"]]
        assert len(work) == 1, f"task {task}: {len(work)} commits of work on {branch}"
        assert len(merges) == 1, f"task {task}: {len(merges)} merge commits on {branch}"
        recorded = {e.commit for _, e in events if isinstance(e, ev.BranchMerged) and e.task_id == task}
        assert recorded == {merges[0]["sha"]}, f"task {task}: recorded {recorded}, own {merges[0]['sha']}"

    # total cost = the sum of distinct calls
    calls: Counter = Counter()
    total = Decimal(0)
    for _, e in events:
        if isinstance(e, ev.CostRecorded):
            calls[e.event_id] += 1
            total += exact_cost(e)
    assert all(n == 1 for n in calls.values())

    if database_url:
        from services.ledger.service import rebuild

        database = db.Database(database_url)
        try:
            await wait_for_projection(database, bus)
            live = await snapshot(database)
            [run] = [r for r in live["runs"] if dict(r)["id"] == run_id]
            assert dict(run)["cost_usd"] == total, (dict(run)["cost_usd"], total)  # exact: money is Decimal
            await rebuild(bus, database_url)
            assert await snapshot(database) == live, "projections equal a rebuild"
        finally:
            await database.dispose()
    return {t: v[0] for t, v in terminal.items()}
