"""Two agents edit the same lines: the second merge conflicts, main is untouched, the run
waits; a person resolves it in the task's worktree and retries; the run completes."""

from __future__ import annotations

import subprocess

import pytest

from shared import events as ev
from shared.commands import request_merge, start_run
from tests.conftest import git
from tests.support.fake_anthropic import FakeAnthropic, tool, turn
from tests.support.system import config, events_of, next_event, running_system, wait_for_end, write_transcripts

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
    async with running_system(nats_server.url, database_url, unique, cfg) as (_, bus):
        started = await start_run(bus, PLAN, git_repo, cfg)
        conflict = await next_event(bus, lambda e: isinstance(e, ev.MergeConflicted))
        assert [c.path for c in conflict.conflicts] == ["greeting.txt"]
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
        wt = finished.worktree_path
        subprocess.run(["git", "merge", "main"], cwd=wt, capture_output=True, text=True)
        with open(f"{wt}/greeting.txt", "w") as f:
            f.write("hello from A and B\n")
        git(git_repo, "-C", wt, "-c", "user.email=p@x", "-c", "user.name=P", "commit", "-qam", "resolve greeting")
        assert git(git_repo, "rev-parse", "main") == main_before  # nothing moved meanwhile
        await request_merge(bus, started.project_id, started.run_id, loser)
        end = await wait_for_end(bus, started.run_id)
    assert isinstance(end, ev.RunCompleted), end
    assert git(git_repo, "show", "main:greeting.txt") == "hello from A and B"
    assert git(git_repo, "show", "main:after.txt") == "done"


def checked_plan(check: str) -> dict:
    plan = {"name": "clash", "epics": [{"id": "E", "name": "E", "tasks": [dict(t) for t in PLAN["epics"][0]["tasks"]]}]}
    for task in plan["epics"][0]["tasks"][:2]:
        task["tests"] = [check]
    return plan


def routed(scripts: dict[str, list[dict]]):
    """A scripted turn for whichever agent asks: keyed by the prompt's first line, stepped by the
    number of assistant turns already in the conversation."""
    def answer(body: dict) -> dict:
        step = sum(1 for m in body["messages"] if m["role"] == "assistant")
        return scripts[task_prompt(body).splitlines()[0]][step]
    return answer


def task_prompt(body: dict) -> str:
    first = body["messages"][0]["content"]
    return first if isinstance(first, str) else first[0]["text"]


async def test_a_resolution_agent_merges_main_in_resolves_and_the_merge_lands(nats_server, database_url, unique,
                                                                             git_repo, monkeypatch):
    resolved = writes("greeting.txt", "hello from A and B\n", "kept both greetings")
    scripts = {"# Task a: Greeting A": writes("greeting.txt", "hello from A\n", "A"),
               "# Task b: Greeting B": writes("greeting.txt", "hello from B\n", "B"),
               "# Task after: After": writes("after.txt", "done\n", "after"),
               "# Resolve a merge conflict for task a: Greeting A": resolved,
               "# Resolve a merge conflict for task b: Greeting B": resolved}
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    with FakeAnthropic([routed(scripts)] * 12) as api:
        cfg = config(parallel={"strategy": "by_task", "max_concurrency": 2},
                     agent={"provider": "anthropic", "base_url": api.url}, merge={"on_conflict": "agent"})
        async with running_system(nats_server.url, database_url, unique, cfg) as (_, bus):
            started = await start_run(bus, checked_plan("grep -q hello greeting.txt"), git_repo, cfg)
            end = await wait_for_end(bus, started.run_id)
            events = await events_of(bus, started.run_id)
    assert isinstance(end, ev.RunCompleted), end
    conflict = next(e for e in events if isinstance(e, ev.MergeConflicted))
    loser = conflict.task_id
    resolution = next(e for e in events if isinstance(e, ev.TaskReady) and e.purpose == "resolve_conflict")
    assert resolution.task_id == loser and resolution.attempt == 2
    assert [c.path for c in resolution.conflict.conflicts] == ["greeting.txt"]
    # the resolution agent saw the markers git would have left, through the real SDK
    prompt = next(task_prompt(r.body) for r in api.requests if task_prompt(r.body).startswith("# Resolve"))
    assert "`greeting.txt` (add/add)" in prompt and "conflict markers" in prompt
    finished = next(e for e in events if isinstance(e, ev.AgentFinished) and e.attempt == 2)
    # the task's own check and the marker check both ran on the resolved merge
    assert [c.command for c in finished.checks] == ["grep -q hello greeting.txt", "no conflict markers left"]
    assert all(c.passed for c in finished.checks)
    # the branch got a real merge of main (two parents), then main got the branch
    parents = git(git_repo, "rev-list", "--parents", "-n", "1", committed(events, loser, 2)).split()[1:]
    assert len(parents) == 2 and parents[1] == conflict_main(events, conflict)
    assert git(git_repo, "show", "main:greeting.txt") == "hello from A and B"
    assert git(git_repo, "show", "main:after.txt") == "done"
    assert not [e for e in events if isinstance(e, ev.ConflictEscalated)]
    assert sum(1 for e in events if isinstance(e, ev.CostRecorded)) == len(api.requests) == 8


def committed(events, task: str, attempt: int) -> str:
    """The commit of a successful attempt's work (its WorkCommitted: made after its AgentFinished)."""
    [e] = [e for e in events if isinstance(e, ev.WorkCommitted) and (e.task_id, e.attempt) == (task, attempt)]
    return e.commit


def conflict_main(events, conflict) -> str:
    """The main commit the resolution merged: the merge of the winner, which landed before the conflict."""
    merged = [e for e in events if isinstance(e, ev.BranchMerged) and e.task_id != conflict.task_id]
    return merged[0].commit


async def test_a_resolution_that_fails_is_handed_to_a_person_with_the_worktree_clean(
        nats_server, database_url, unique, git_repo, monkeypatch):
    gives_up = [turn(tool("finish", summary="done, I think"))] * 2  # never touches the markers
    scripts = {"# Task a: Greeting A": writes("greeting.txt", "hello from A\n", "A"),
               "# Task b: Greeting B": writes("greeting.txt", "hello from B\n", "B"),
               "# Task after: After": writes("after.txt", "done\n", "after"),
               "# Resolve a merge conflict for task a: Greeting A": gives_up,
               "# Resolve a merge conflict for task b: Greeting B": gives_up}
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    with FakeAnthropic([routed(scripts)] * 20) as api:
        cfg = config(parallel={"strategy": "by_task", "max_concurrency": 2},
                     agent={"provider": "anthropic", "base_url": api.url, "max_fix_rounds": 1},
                     merge={"on_conflict": "agent", "max_resolution_attempts": 2})
        async with running_system(nats_server.url, database_url, unique, cfg) as (_, bus):
            started = await start_run(bus, PLAN, git_repo, cfg)
            escalated = await next_event(bus, lambda e: isinstance(e, ev.ConflictEscalated))
            loser = escalated.task_id
            assert "2 resolution attempt(s) did not resolve it" in escalated.reason
            assert f"yokeflow merge retry {loser}" in escalated.reason
            # the second resolution agent was told why the first one failed
            prompts = [task_prompt(r.body) for r in api.requests
                       if len(r.body["messages"]) == 1 and task_prompt(r.body).startswith("# Resolve")]
            assert len(prompts) == 2
            assert "previous resolution" not in prompts[0]
            assert "## A previous resolution (attempt 2) failed" in prompts[1]
            assert "conflict markers remain in: greeting.txt" in prompts[1]
            events = await events_of(bus, started.run_id)
            failed = next(e for e in events if isinstance(e, ev.AgentFinished) and e.attempt == 2)
            assert failed.outcome == "failure"
            assert failed.error == "checks still failing after 1 fix round(s): `no conflict markers left`"
            assert failed.checks[-1].output == "conflict markers remain in: greeting.txt"
            # the half-done merge was dropped: the worktree is clean at the task's own commit
            wt = failed.worktree_path
            assert git(git_repo, "-C", wt, "status", "--porcelain") == ""
            assert "<<<<<<<" not in open(f"{wt}/greeting.txt").read()
            assert git(git_repo, "-C", wt, "rev-parse", "HEAD") == committed(events, loser, 1)

            subprocess.run(["git", "merge", "main"], cwd=wt, capture_output=True, text=True)
            with open(f"{wt}/greeting.txt", "w") as f:
                f.write("hello from A and B\n")
            git(git_repo, "-C", wt, "-c", "user.email=p@x", "-c", "user.name=P", "commit", "-qam", "resolve greeting")
            await request_merge(bus, started.project_id, started.run_id, loser)
            end = await wait_for_end(bus, started.run_id)
    assert isinstance(end, ev.RunCompleted), end
    assert git(git_repo, "show", "main:greeting.txt") == "hello from A and B"


async def test_by_epic_a_resolution_works_on_the_epic_branch(nats_server, database_url, unique, git_repo, tmp_path):
    plan = {"name": "epics", "epics": [
        {"id": "E1", "name": "Left", "tasks": [{"id": "a", "title": "A"}, {"id": "a2", "title": "A2", "depends_on": ["a"]}]},
        {"id": "E2", "name": "Right", "tasks": [{"id": "b", "title": "B"}]}]}
    resolved = writes("greeting.txt", "hello from A and B\n", "kept both")
    transcripts = write_transcripts(tmp_path / "t", {
        "a": writes("greeting.txt", "hello from A\n", "A"), "b": writes("greeting.txt", "hello from B\n", "B"),
        "a.resolve": resolved, "b.resolve": resolved, "a2": writes("a2.txt", "second\n", "A2")})
    cfg = config(parallel={"strategy": "by_epic", "max_concurrency": 2},
                 agent={"provider": "replay", "transcripts": str(transcripts)}, merge={"on_conflict": "agent"})
    async with running_system(nats_server.url, database_url, unique, cfg) as (_, bus):
        started = await start_run(bus, plan, git_repo, cfg)
        end = await wait_for_end(bus, started.run_id)
        events = await events_of(bus, started.run_id)
    assert isinstance(end, ev.RunCompleted), end
    resolution = next(e for e in events if isinstance(e, ev.TaskReady) and e.purpose == "resolve_conflict")
    assert resolution.branch.startswith("epic/")  # the epic's own branch and worktree
    assert git(git_repo, "show", "main:greeting.txt") == "hello from A and B"
    assert git(git_repo, "show", "main:a2.txt") == "second"
