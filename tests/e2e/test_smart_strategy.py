"""parallel.strategy smart: two tasks that declare the same file run one after another on one
lane branch (the second edits what the first wrote, nothing conflicts), an unrelated task runs
beside them on its own branch; the merger keeps a shared lane's worktree until its last merge."""

from __future__ import annotations

import pytest

from shared import events as ev
from shared.plan import PlanDoc
from shared.commands import start_run
from shared.config import RunSettings
from shared.gitops import WorktreeManager
from services.merger.domain import RunView
from services.merger.service import Merger
from tests.conftest import git
from tests.support.fake_anthropic import tool, turn
from tests.support.system import config, events_of, running_system, wait_for_end, write_transcripts

pytestmark = pytest.mark.e2e

PLAN = {"name": "lanes", "epics": [{"id": "E", "name": "E", "tasks": [
    {"id": "a", "title": "Greeting A", "files": ["greeting.txt"]},
    {"id": "b", "title": "Greeting B", "files": ["greeting.txt"]},
    {"id": "c", "title": "Other", "files": ["other.txt"]}]}]}


async def test_overlapping_tasks_share_a_lane_and_the_rest_run_beside_it(nats_server, database_url, unique,
                                                                         git_repo, tmp_path):
    transcripts = write_transcripts(tmp_path / "t", {
        "a": [turn(tool("write_file", path="greeting.txt", content="hello from A\n")),
              turn(tool("finish", summary="A"))],
        # b edits the line a wrote: it only works on a branch that already holds a's work
        "b": [turn(tool("edit_file", path="greeting.txt", old_text="hello from A\n",
                        new_text="hello from A\nhello from B\n")),
              turn(tool("run_command", command="grep -q 'hello from B' greeting.txt")),
              turn(tool("finish", summary="B"))],
        "c": [turn(tool("write_file", path="other.txt", content="other\n")), turn(tool("finish", summary="C"))],
    })
    cfg = config(parallel={"strategy": "smart", "max_concurrency": 3},
                 agent={"provider": "replay", "transcripts": str(transcripts)}, merge={"on_conflict": "manual"})
    async with running_system(nats_server.url, database_url, unique, cfg) as (_, bus):
        started = await start_run(bus, PLAN, git_repo, cfg)
        end = await wait_for_end(bus, started.run_id)
        events = await events_of(bus, started.run_id)
    assert isinstance(end, ev.RunCompleted), end
    assert not [e for e in events if isinstance(e, (ev.MergeConflicted, ev.TaskFailed))]
    ready = {e.task_id: e for e in events if isinstance(e, ev.TaskReady)}
    assert ready["a"].branch == ready["b"].branch == "lane/a-greeting-a"
    assert ready["a"].worktree == ready["b"].worktree
    assert ready["c"].branch == "task/c-other"
    at = {(type(e).__name__, getattr(e, "task_id", "")): k for k, e in enumerate(events)}
    # b waited for a's merge; c was dispatched with a, before either finished
    assert at[("TaskReady", "b")] > at[("BranchMerged", "a")]
    assert at[("TaskReady", "c")] < at[("AgentFinished", "a")]
    assert git(git_repo, "show", "main:greeting.txt") == "hello from A\nhello from B"
    assert git(git_repo, "show", "main:other.txt") == "other"
    subjects = git(git_repo, "log", "--format=%s", "--first-parent", "main").splitlines()
    order = [s for s in subjects if s.startswith("Merge task")]
    assert order.index("Merge task b: Greeting B") < order.index("Merge task a: Greeting A")  # newest first


async def test_the_merger_keeps_a_shared_lane_worktree_until_its_last_task_is_merged(git_repo):
    manager = WorktreeManager(git_repo, target_branch="main")
    lane = manager.acquire("lane-a-greeting-a", "lane/a-greeting-a")
    alone = manager.acquire("task-c-other", "task/c-other")
    started = ev.RunStarted(project_id="p", aggregate_id="r", run_id="r", plan=PlanDoc.of(PLAN), repo_path=str(git_repo),
                            settings=RunSettings.of({"parallel": {"strategy": "smart"}}))
    info = RunView(started)

    def finished(task_id: str, wt) -> None:
        info.finished[task_id] = ev.AgentFinished(project_id="p", aggregate_id=f"r-{task_id}", run_id="r",
                                                  task_id=task_id, attempt=1, outcome="success",
                                                  branch=wt.branch, worktree_path=str(wt.path))
        info.merged[task_id] = ev.BranchMerged(project_id="p", aggregate_id=f"r-{task_id}", run_id="r",
                                               task_id=task_id, branch=wt.branch, attempt=1)

    merger = Merger(bus=None)  # _release touches git only
    finished("a", lane)
    await merger._release(info, "a")
    assert lane.path.is_dir()  # b runs in it next
    finished("c", alone)
    await merger._release(info, "c")
    assert not alone.path.exists()  # a lane of one is released with its merge, as under by_task
    finished("b", lane)
    await merger._release(info, "b")
    assert not lane.path.exists()  # the lane's last task is merged
