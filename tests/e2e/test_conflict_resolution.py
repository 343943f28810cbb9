"""Acting on a conflict over real HTTP, after a real conflicting replayed run: the conflicted file
is shown as base / ours / theirs and as conflict-marked text; a person's resolution commit on the
task's branch is accepted and merged; or the task is rerun as a new attempt on the target as it is
now, its old work kept at a ref of its own. Both go through the merger, keyed by identity."""

from __future__ import annotations

import subprocess

import pytest

from shared import events as ev
from tests.conftest import git
from tests.e2e.test_gateway_routes import CLASH, writes
from tests.integration.test_gateway import TOKEN, client
from tests.support.system import config, events_of, next_event, running_system, wait_for_end, write_transcripts

pytestmark = pytest.mark.e2e


def _config(tmp_path):
    transcripts = write_transcripts(tmp_path / "t", {
        "a": writes("greeting.txt", "hello from A\n", "A"),
        "b": writes("greeting.txt", "hello from B\n", "B"),
        "after": writes("after.txt", "done\n", "after"),
    })
    return config(parallel={"strategy": "by_task", "max_concurrency": 2},
                  agent={"provider": "replay", "transcripts": str(transcripts)}, merge={"on_conflict": "manual"})


async def _conflicted_run(system, bus, http, git_repo):
    res = await http.post("/api/runs", params={"wait": "true"}, json={"plan": CLASH, "repo_path": str(git_repo)})
    assert res.status_code == 201, res.text
    run = res.json()["run_id"]
    conflict = await next_event(bus, lambda e: isinstance(e, ev.MergeConflicted) and e.run_id == run)
    await system.database.wait_for("ledger", await bus.last_seq(), timeout=30)
    return run, conflict.task_id


async def test_a_person_sees_the_conflict_and_their_pushed_resolution_is_accepted(
        nats_server, database_url, unique, git_repo, tmp_path):
    async with running_system(nats_server.url, database_url, unique, _config(tmp_path), gateway=True,
                              gateway_port=0, gateway_token=TOKEN) as (system, bus):
        async with client(system.gateway_url, timeout=60) as http:
            run, loser = await _conflicted_run(system, bus, http, git_repo)
            winner = "b" if loser == "a" else "a"
            listed = (await http.get(f"/api/runs/{run}/conflicts")).json()["conflicts"]
            assert listed[0]["actions"]["view"] == f"/api/runs/{run}/tasks/{loser}/conflict"
            view = (await http.get(listed[0]["actions"]["view"])).json()
            [f] = view["files"]
            assert f["path"] == "greeting.txt" and f["kind"] == "add/add" and f["base"] is None
            assert f["ours"] == f"hello from {winner.upper()}\n" and f["theirs"] == f"hello from {loser.upper()}\n"
            assert f["marked"].startswith("<<<<<<< main\n") and f"hello from {loser.upper()}" in f["marked"]
            assert view["clean_now"] is False and view["branch_moved"] is False
            assert (await http.get(f"/api/runs/{run}/tasks/{winner}/conflict")).status_code == 409

            # the person merges main into the branch in the task's worktree, resolves and commits
            wt = listed[0]["worktree"]
            subprocess.run(["git", "merge", "main"], cwd=wt, capture_output=True, text=True)
            with open(f"{wt}/greeting.txt", "w") as out:
                out.write("hello from A and B\n")
            git(git_repo, "-C", wt, "-c", "user.email=p@x", "-c", "user.name=P", "commit", "-qam", "resolve greeting")
            head = git(git_repo, "rev-parse", listed[0]["branch"])
            view = (await http.get(listed[0]["actions"]["view"])).json()
            assert view["branch_moved"] and view["clean_now"] and view["branch_contains_target"]
            assert view["branch_head"] == head and view["branch_head_message"] == "resolve greeting"

            url = listed[0]["actions"]["resolve"]
            missing = await http.post(url, json={"action": "accept"})
            assert missing.status_code == 422 and missing.json()["field"] == "commit"
            stale = await http.post(url, json={"action": "accept", "commit": "0" * 40})
            assert stale.status_code == 409 and stale.json()["field"] == "commit"
            bad = await http.post(url, json={"action": "squash"})
            assert bad.status_code == 422 and bad.json()["field"] == "action"
            accepted = await http.post(url, json={"action": "accept", "commit": head, "requested_by": "ada"})
            assert accepted.status_code == 202 and accepted.json()["status"] == "merge_requested"
            assert isinstance(await wait_for_end(bus, run), ev.RunCompleted)
            events = await events_of(bus, run)
    [asked] = [e for e in events if isinstance(e, ev.MergeRequested)]
    assert (asked.action, asked.commit, asked.requested_by) == ("accept", head, "ada")
    merged = next(e for e in events if isinstance(e, ev.BranchMerged) and e.task_id == loser)
    assert git(git_repo, "rev-parse", f"{merged.commit}^2") == head  # exactly the commit accepted
    assert git(git_repo, "show", "main:greeting.txt") == "hello from A and B"


async def test_a_conflicted_task_is_rerun_as_a_new_attempt_on_the_new_main(
        nats_server, database_url, unique, git_repo, tmp_path):
    async with running_system(nats_server.url, database_url, unique, _config(tmp_path), gateway=True,
                              gateway_port=0, gateway_token=TOKEN) as (system, bus):
        async with client(system.gateway_url, timeout=60) as http:
            run, loser = await _conflicted_run(system, bus, http, git_repo)
            task = (await http.get(f"/api/runs/{run}/tasks/{loser}")).json()["task"]
            old_commit = task["commit"]
            main_before = git(git_repo, "rev-parse", "main")
            url = f"/api/runs/{run}/tasks/{loser}/resolve"
            rerun = await http.post(url, json={"action": "rerun"}, params={"wait": "true"})
            assert rerun.status_code == 202 and rerun.json()["status"] == "rerun_requested", rerun.text
            again = await http.post(url, json={"action": "rerun"})  # a second click: the same request
            assert again.status_code in (202, 409)
            reset = await next_event(bus, lambda e: isinstance(e, ev.BranchReset) and e.run_id == run)
            assert reset.new_head == main_before and reset.old_head == old_commit and reset.attempt == 1
            assert git(git_repo, "rev-parse", reset.kept_ref) == old_commit  # the old work is kept
            assert isinstance(await wait_for_end(bus, run), ev.RunCompleted)
            events = await events_of(bus, run)
    assert len([e for e in events if isinstance(e, ev.MergeRequested)]) == 1
    assert len([e for e in events if isinstance(e, ev.BranchReset)]) == 1
    tries = [e.attempt for e in events if isinstance(e, ev.TaskReady) and e.task_id == loser]
    assert tries == [1, 2]
    merged = next(e for e in events if isinstance(e, ev.BranchMerged) and e.task_id == loser)
    assert merged.attempt == 2
    # attempt 2 started from main with the winner's greeting and wrote its own over it: no conflict
    assert git(git_repo, "show", "main:greeting.txt") == f"hello from {loser.upper()}"
    assert git(git_repo, "merge-base", "--is-ancestor", main_before, merged.commit) == ""


async def test_a_resolution_written_in_the_page_is_committed_on_the_branch_and_merged(
        nats_server, database_url, unique, git_repo, tmp_path):
    async with running_system(nats_server.url, database_url, unique, _config(tmp_path), gateway=True,
                              gateway_port=0, gateway_token=TOKEN) as (system, bus):
        async with client(system.gateway_url, timeout=60) as http:
            run, loser = await _conflicted_run(system, bus, http, git_repo)
            view = (await http.get(f"/api/runs/{run}/tasks/{loser}/conflict")).json()
            url = f"/api/runs/{run}/tasks/{loser}/resolve"
            head = view["branch_head"]
            marked = await http.post(url, json={"action": "resolve", "commit": head,
                                                 "files": {"greeting.txt": view["files"][0]["marked"]}})
            assert marked.status_code == 422 and marked.json()["field"] == "files.greeting.txt"
            assert "conflict markers" in marked.json()["detail"]
            other = await http.post(url, json={"action": "resolve", "commit": head, "files": {"other.txt": "x\n"}})
            assert other.status_code == 422 and other.json()["field"] == "files.other.txt"
            none = await http.post(url, json={"action": "resolve", "commit": head, "files": {}})
            assert none.status_code == 422 and none.json()["field"] == "files.greeting.txt"
            stale = await http.post(url, json={"action": "resolve", "commit": "1" * 40,
                                                "files": {"greeting.txt": "hi\n"}})
            assert stale.status_code == 409 and stale.json()["field"] == "commit"
            done = await http.post(url, json={"action": "resolve", "commit": head, "requested_by": "ada",
                                               "files": {"greeting.txt": "hello from A and B\n"}})
            assert done.status_code == 202, done.text
            assert isinstance(await wait_for_end(bus, run), ev.RunCompleted)
            events = await events_of(bus, run)
    merged = next(e for e in events if isinstance(e, ev.BranchMerged) and e.task_id == loser)
    resolution = git(git_repo, "rev-parse", f"{merged.commit}^2")
    assert git(git_repo, "rev-parse", f"{resolution}^1") == head  # committed on the branch, on what was shown
    assert "YokeFlow-Resolution:" in git(git_repo, "log", "-1", "--format=%B", resolution)
    assert git(git_repo, "show", "main:greeting.txt") == "hello from A and B"
