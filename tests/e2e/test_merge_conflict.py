"""Two agents edit the same lines: the second merge conflicts, main is untouched, the run
waits; a person resolves it in the task's worktree and retries; the run completes."""

from __future__ import annotations

import subprocess

import pytest

from shared import events as ev
from shared.commands import request_merge, start_run
from tests.conftest import git
from tests.support.fake_anthropic import tool, turn
from tests.support.system import config, endpoint_for, events_of, next_event, start_system, wait_for_end, write_transcripts

pytestmark = pytest.mark.e2e

PLAN = {"name": "clash", "epics": [{"id": "E", "name": "E", "tasks": [
    {"id": "a", "title": "Greeting A"}, {"id": "b", "title": "Greeting B"},
    {"id": "after", "title": "After", "depends_on": ["a", "b"]}]}]}


def writes(path, content, summary):
    return [turn(tool("write_file", path=path, content=content)), turn(tool("finish", summary=summary))]


async def test_conflict_is_reported_then_resolved_by_a_person(nats_server, database_url, unique, git_repo, tmp_path):
    transcripts = write_transcripts(tmp_path / "t", {
        "a": writes("greeting.txt", "hello from A\n", "A"),
        "b": writes("greeting.txt", "hello from B\n", "B"),
        "after": writes("after.txt", "done\n", "after"),
    })
    cfg = config(parallel={"strategy": "by_task", "max_concurrency": 2},
                 agent={"provider": "replay", "transcripts": str(transcripts)}, merge={"on_conflict": "manual"})
    endpoint = endpoint_for(nats_server.url, database_url, unique)
    system = await start_system(endpoint, cfg)
    bus = await endpoint.bus()
    try:
        started = await start_run(bus, PLAN, git_repo, cfg)
        conflict = await next_event(bus, lambda e: isinstance(e, ev.MergeConflicted))
        assert [c["path"] for c in conflict.conflicts] == ["greeting.txt"]
        main_before = git(git_repo, "rev-parse", "main")
        loser = conflict.task_id
        finished = next(e for e in await events_of(bus, started.run_id)
                        if isinstance(e, ev.AgentFinished) and e.task_id == loser)
        # main holds the winner's work only, never a half-merge
        assert git(git_repo, "show", "main:greeting.txt") in ("hello from A", "hello from B")
        assert "<<<<<<<" not in git(git_repo, "show", "main:greeting.txt")
        # the dependent waits: nothing for "after" while the conflict stands
        assert not [e for e in await events_of(bus, started.run_id)
                    if isinstance(e, ev.TaskReady) and e.task_id == "after"]

        # a person resolves it in the task's worktree and asks for the merge again
        wt = finished.worktree
        subprocess.run(["git", "merge", "main"], cwd=wt, capture_output=True, text=True)
        with open(f"{wt}/greeting.txt", "w") as f:
            f.write("hello from A and B\n")
        git(git_repo, "-C", wt, "-c", "user.email=p@x", "-c", "user.name=P", "commit", "-qam", "resolve greeting")
        assert git(git_repo, "rev-parse", "main") == main_before  # nothing moved meanwhile
        await request_merge(bus, started.project_id, started.run_id, loser)
        end = await wait_for_end(bus, started.run_id)
    finally:
        await bus.close()
        await system.stop()
    assert isinstance(end, ev.RunCompleted), end
    assert git(git_repo, "show", "main:greeting.txt") == "hello from A and B"
    assert git(git_repo, "show", "main:after.txt") == "done"
