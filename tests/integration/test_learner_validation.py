"""Validation after a merge, against the real bus: what a task taught about files still in its
worktree is not flagged (and then pruned) because other tasks' merges happen first."""

from __future__ import annotations

import asyncio
import threading

from shared import events as ev
from shared.bus import Delivery
from shared.commands import start_run
from shared.expertise import store
import services.learner.service as learner_service
from services.learner.service import Learner
from tests.conftest import git
from tests.support.system import config

PLAN = {"name": "learn", "epics": [{"id": "E1", "name": "API", "tasks": [
    {"id": "a", "title": "Adder", "domain": "api"},
    {"id": "b", "title": "Use the adder", "domain": "api", "depends_on": ["a"]},
    {"id": "x", "title": "Other"}, {"id": "y", "title": "Another"}]}]}


def delivered(e: ev.Event) -> Delivery:
    return Delivery(event=e, seq=0, subject="", deliveries=1)


async def a_learned_about_calc(bus, git_repo) -> tuple[Learner, ev.RunStarted]:
    """A learner whose run's task a reported that calc.py (in a's worktree only) holds the adder."""
    cfg = config(parallel={"max_concurrency": 3})
    learner = Learner(bus, cfg)
    started = await start_run(bus, PLAN, git_repo, cfg)
    learner.fold(started)
    found = started.caused(ev.DiscoveryReported, aggregate_id="api", run_id=started.run_id, task_id="a", domain="api",
                           text="calc.py holds the adder", files=["calc.py"])
    await learner.handle(delivered(found))
    return learner, started


def merge_of(started: ev.RunStarted, task: str) -> ev.BranchMerged:
    return started.caused(ev.BranchMerged, aggregate_id=f"{started.run_id}-{task}", run_id=started.run_id,
                          task_id=task, branch=f"yokeflow/{task}", attempt=1)


async def entry_of_a(bus, project_id: str):
    doc = store.document_of(await store.latest(bus, project_id, "api"), "api")
    return next(e for e in doc.entries if e.origin.task_id == "a")


async def test_other_merges_leave_an_unmerged_tasks_learning_alone_until_its_own_merge(bus, git_repo):
    learner, started = await a_learned_about_calc(bus, git_repo)

    for task in ("x", "y"):  # two merges: the first used to flag a's entry, the second to prune it
        await learner.handle(delivered(merge_of(started, task)))
    entry = await entry_of_a(bus, started.project_id)
    assert entry.flagged == "" and entry.files == ["calc.py"]

    # once a's own work is merged, its files are checked like any other's (calc.py is not on main here)
    await learner.handle(delivered(merge_of(started, "a")))
    assert "calc.py not on main" in (await entry_of_a(bus, started.project_id)).flagged


async def test_a_merge_landing_while_other_merges_are_validated_leaves_its_learning_alone(bus, git_repo, monkeypatch):
    """The learner validates several merges at once. x's and y's validations both read main, then
    a's merge lands (main gets calc.py, and its BranchMerged is handled) before their checks run:
    main as they read it has none of a's work, so a's entry must be left alone there. It was
    flagged there (a new version for nothing), and a second such validation before a's own one
    pruned it: a's learning was lost."""
    learner, started = await a_learned_about_calc(bus, git_repo)

    real = learner_service.BranchPaths
    both_read = threading.Barrier(2, timeout=10)
    landed: list[str] = []

    def read_then_a_lands(repo, branch):
        paths = real(repo, branch)  # main as this validation reads it: without calc.py
        if both_read.wait() == 0:  # once both validations have read main, a's merge lands
            (git_repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
            git(git_repo, "add", "calc.py")
            git(git_repo, "commit", "-q", "-m", "Merge task a")
            learner.fold(merge_of(started, "a"))
            landed.append("a")
        return paths

    monkeypatch.setattr(learner_service, "BranchPaths", read_then_a_lands)
    await asyncio.gather(*(learner.handle(delivered(merge_of(started, task))) for task in ("x", "y")))
    assert landed == ["a"]
    entry = await entry_of_a(bus, started.project_id)
    assert entry.flagged == "" and entry.files == ["calc.py"]
    monkeypatch.setattr(learner_service, "BranchPaths", real)
    await learner.handle(delivered(merge_of(started, "a")))  # a's own validation reads main with calc.py: nothing to flag
    assert (await entry_of_a(bus, started.project_id)).flagged == ""


async def test_a_merges_validation_does_not_hold_up_a_learning(bus, git_repo, monkeypatch):
    """A run's dependents wait for their dependencies' learnings, and every merge is followed by a
    validation of the domain. The validation held the domain's lock while it read and checked, so
    the learnings of the attempts that finished with the merge waited behind it (in a run's first
    seconds, dozens of milliseconds per dependency). Here the validation cannot finish until b's
    learning is stored: with the lock held across it, neither ever finished."""
    learner, started = await a_learned_about_calc(bus, git_repo)
    real = store.validate_domain
    learned = asyncio.Event()
    validating = asyncio.Event()

    async def after_the_learning(*args, **kwargs):
        validating.set()
        await learned.wait()
        return await real(*args, **kwargs)

    monkeypatch.setattr(store, "validate_domain", after_the_learning)
    finished = started.caused(ev.AgentFinished, aggregate_id=f"{started.run_id}-b", run_id=started.run_id,
                              task_id="b", attempt=1, outcome="failure",
                              checks=[ev.CheckResult(command="pytest -q", exit_code=1, output="E   ImportError: add")])
    await bus.log(started.project_id, finished.aggregate_id, "attempt_end",
                  {"run_id": started.run_id, "task_id": "b", "attempt": 1, "outcome": "failure"}, stored=True)

    async def learning() -> None:
        await validating.wait()  # the validation is under way first
        await learner.handle(delivered(finished))
        learned.set()

    await asyncio.wait_for(asyncio.gather(learner.handle(delivered(merge_of(started, "x"))), learning()), 15)
    extracted = await bus.last_event(bus.subjects.event(started.project_id, "expertise", "api", "LearningExtracted"))
    assert isinstance(extracted, ev.LearningExtracted) and extracted.task_id == "b" and extracted.entries
    doc = store.document_of(await store.latest(bus, started.project_id, "api"), "api")
    assert {e.origin.task_id for e in doc.entries} == {"a", "b"}
    assert (await entry_of_a(bus, started.project_id)).flagged == ""  # a is unmerged: left alone
