"""Validation after a merge, against the real bus: what a task taught about files still in its
worktree is not flagged (and then pruned) because other tasks' merges happen first."""

from __future__ import annotations

from shared import events as ev
from shared.bus import Delivery
from shared.commands import start_run
from shared.expertise import store
from services.learner.service import Learner
from tests.support.system import config

PLAN = {"name": "learn", "epics": [{"id": "E1", "name": "API", "tasks": [
    {"id": "a", "title": "Adder", "domain": "api"},
    {"id": "b", "title": "Use the adder", "domain": "api", "depends_on": ["a"]},
    {"id": "x", "title": "Other"}, {"id": "y", "title": "Another"}]}]}


def delivered(e: ev.Event) -> Delivery:
    return Delivery(event=e, seq=0, subject="", deliveries=1)


async def entry_of_a(bus, project_id: str):
    doc = store.document_of(await store.latest(bus, project_id, "api"), "api")
    return next(e for e in doc.entries if e.origin.task_id == "a")


async def test_other_merges_leave_an_unmerged_tasks_learning_alone_until_its_own_merge(bus, git_repo):
    cfg = config(parallel={"max_concurrency": 3})
    learner = Learner(bus, cfg)
    started = await start_run(bus, PLAN, git_repo, cfg)
    learner.fold(started)
    found = started.caused(ev.DiscoveryReported, aggregate_id="api", run_id=started.run_id, task_id="a", domain="api",
                           text="calc.py holds the adder", files=["calc.py"])  # calc.py is in a's worktree only
    await learner.handle(delivered(found))

    def merged(task: str) -> ev.BranchMerged:
        return started.caused(ev.BranchMerged, aggregate_id=f"{started.run_id}-{task}", run_id=started.run_id,
                              task_id=task, branch=f"yokeflow/{task}", attempt=1)

    for task in ("x", "y"):  # two merges: the first used to flag a's entry, the second to prune it
        await learner.handle(delivered(merged(task)))
    entry = await entry_of_a(bus, started.project_id)
    assert entry.flagged == "" and entry.files == ["calc.py"]

    # once a's own work is merged, its files are checked like any other's (calc.py is not on main here)
    await learner.handle(delivered(merged("a")))
    assert "calc.py not on main" in (await entry_of_a(bus, started.project_id)).flagged
