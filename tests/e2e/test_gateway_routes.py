"""The PRD's routes and what a person needs around them, over real HTTP, after real replayed runs:
a run started through the gateway conflicts; its conflict, agent log, diffs, status and batches
are read; a person resolves it and retries; a second run started project-scoped is cancelled;
expertise is read and validated against the target branch; the report exports."""

from __future__ import annotations

import subprocess

import msgspec
import pytest

from shared import events as ev
from shared.expertise import store
from shared.expertise.model import Entry
from tests.conftest import git
from tests.integration.test_gateway import TOKEN, client
from tests.support.fake_anthropic import tool, turn
from tests.support.system import config, next_event, running_system, wait_for_end, write_transcripts

pytestmark = pytest.mark.e2e

CLASH = {"name": "clash", "epics": [{"id": "E", "name": "Greetings", "tasks": [
    {"id": "a", "title": "Greeting A"}, {"id": "b", "title": "Greeting B"},
    {"id": "after", "title": "After", "depends_on": ["a", "b"]}]}]}
SLOW = {"name": "slow", "epics": [{"id": "S", "name": "Slow", "tasks": [
    {"id": "slow", "title": "Slow"}, {"id": "later", "title": "Later", "depends_on": ["slow"]}]}]}


def writes(path: str, content: str, summary: str) -> list[dict]:
    return [turn(tool("write_file", path=path, content=content)), turn(tool("finish", summary=summary))]


async def test_prd_routes_after_a_replayed_run(nats_server, database_url, unique, git_repo, tmp_path):
    transcripts = write_transcripts(tmp_path / "t", {
        "a": writes("greeting.txt", "hello from A\n", "A"),
        "b": writes("greeting.txt", "hello from B\n", "B"),
        "after": writes("after.txt", "done\n", "after"),
        "slow": [turn(tool("run_command", command="sleep 60")), turn(tool("finish", summary="slow"))],
        "later": writes("later.txt", "later\n", "later"),
    })
    cfg = config(parallel={"strategy": "by_task", "max_concurrency": 2},
                 agent={"provider": "replay", "transcripts": str(transcripts)}, merge={"on_conflict": "manual"})
    async with running_system(nats_server.url, database_url, unique, cfg, gateway=True, gateway_port=0,
                              gateway_token=TOKEN) as (system, bus):
        async with client(system.gateway_url, timeout=60) as http:
            res = await http.post("/api/runs", params={"wait": "true"}, json={"plan": CLASH, "repo_path": str(git_repo)})
            assert res.status_code == 201, res.text
            run, project = res.json()["run_id"], res.json()["project_id"]
            conflict = await next_event(bus, lambda e: isinstance(e, ev.MergeConflicted))
            loser = conflict.task_id
            winner = "b" if loser == "a" else "a"
            await system.database.wait_for("ledger", await bus.last_seq(), timeout=30)

            status = (await http.get(f"/api/projects/{project}/parallel/status")).json()
            assert (status["run_id"], status["status"]) == (run, "running")
            assert status["tasks"]["by_state"].get("conflict") == 1 and status["settings"]["parallel"]["strategy"] == "by_task"
            batches = (await http.get(f"/api/projects/{project}/parallel/batches")).json()
            assert [[t["id"] for t in b["tasks"]] for b in batches["batches"]] == [["a", "b"], ["after"]]
            assert {t["id"]: t["state"] for t in batches["batches"][0]["tasks"]} == {winner: "merged", loser: "conflict"}

            listed = (await http.get(f"/api/runs/{run}/conflicts")).json()["conflicts"]
            assert [(c["task_id"], c["files"]) for c in listed] == [(loser, ["greeting.txt"])]
            assert listed[0]["actions"]["retry"] == f"/api/runs/{run}/tasks/{loser}/merge" and listed[0]["worktree"]

            log = (await http.get(f"/api/runs/{run}/tasks/{loser}/log", params={"limit": 1})).json()
            assert len(log["entries"]) == 1 and log["more"] is True
            rest = (await http.get(f"/api/runs/{run}/tasks/{loser}/log", params={"after": log["last_seq"]})).json()
            entries = log["entries"] + rest["entries"]
            assert [e["seq"] for e in entries] == sorted({e["seq"] for e in entries})  # in order, no repeats
            assert any(e["kind"] == "tool_call" and e["data"].get("name") == "write_file" for e in entries), entries
            assert {e["data"]["task_id"] for e in entries} == {loser}

            unmerged = (await http.get(f"/api/runs/{run}/tasks/{loser}/diff")).json()
            assert unmerged["merged"] is False and unmerged["files"] == [{"path": "greeting.txt", "change": "add"}]
            assert f"+hello from {loser.upper()}" in unmerged["diff"]
            merged = (await http.get(f"/api/runs/{run}/tasks/{winner}/diff")).json()
            assert merged["merged"] is True and f"+hello from {winner.upper()}" in merged["diff"]
            pending = await http.get(f"/api/runs/{run}/tasks/after/diff")
            assert pending.status_code == 409 and pending.json()["field"] == "task_id"

            # a person resolves the conflict in the task's worktree and retries through the API
            wt = listed[0]["worktree"]
            subprocess.run(["git", "merge", "main"], cwd=wt, capture_output=True, text=True)
            (tmp_path / "resolved").write_text("hello from A and B\n")
            with open(f"{wt}/greeting.txt", "w") as f:
                f.write("hello from A and B\n")
            git(git_repo, "-C", wt, "-c", "user.email=p@x", "-c", "user.name=P", "commit", "-qam", "resolve")
            retry = await http.post(listed[0]["actions"]["retry"])
            assert retry.status_code == 202, retry.text
            assert isinstance(await wait_for_end(bus, run), ev.RunCompleted)
            await system.database.wait_for("ledger", await bus.last_seq(), timeout=30)
            assert (await http.get(f"/api/runs/{run}/conflicts")).json()["conflicts"] == []

            # a second run, project-scoped, with the PRD's knobs; then cancelled
            started = await http.post(f"/api/projects/{project}/parallel/start", params={"wait": "true"}, json={
                "plan": SLOW, "max_concurrency": 1, "strategy": "by_task", "batch_barrier": True, "budget_usd": 5})
            assert started.status_code == 201, started.text
            second = started.json()["run_id"]
            assert started.json()["settings"] == {"parallel": {**started.json()["settings"]["parallel"],
                                                               "max_concurrency": 1, "strategy": "by_task",
                                                               "batch_barrier": True}, "budget_usd": 5}
            await next_event(bus, lambda e: isinstance(e, ev.AgentStarted) and e.run_id == second)
            assert (await http.get(f"/api/projects/{project}/parallel/status")).json()["run_id"] == second
            earlier = (await http.get(f"/api/projects/{project}/parallel/status", params={"run": run})).json()
            assert earlier["status"] == "completed"
            cancelled = await http.post(f"/api/projects/{project}/parallel/cancel", json={"reason": "enough"})
            assert cancelled.status_code == 202 and cancelled.json()["cancelled"] == [second]
            assert isinstance(await wait_for_end(bus, second), ev.RunCancelled)
            again = await http.post(f"/api/projects/{project}/parallel/cancel")
            assert again.status_code == 409 and again.json()["field"] == "project_id"

            # expertise: the learner's file for a domain, read; two entries added, one naming a file on
            # main and one naming a file that is not; validated (dry run), then applied (flagged)
            learned = (await http.get(f"/api/projects/{project}/expertise/general")).json()
            assert learned["content"].startswith("domain: general") and learned["versions"]
            extra = [Entry(kind="core_file", key="greeting", path="greeting.txt", text="the greeting",
                           files=["greeting.txt"]),
                     Entry(kind="pattern", key="old handler", text="handlers live in api/gone.py", files=["api/gone.py"])]
            await store.append(bus, project, "general", lambda doc: msgspec.structs.replace(
                doc, entries=[*doc.entries, *extra]), reason="import", source="test", msg_id=f"{project}:test-entries",
                max_lines=1000)
            await system.database.wait_for("ledger", await bus.last_seq(), timeout=30)
            one = (await http.get(f"/api/projects/{project}/expertise/general")).json()
            assert one["version"] == learned["version"] + 1 and "api/gone.py" in one["content"]
            assert (await http.get(f"/api/projects/{project}/expertise/nothing")).status_code == 404
            checked = (await http.post(f"/api/projects/{project}/expertise/general/validate")).json()
            assert checked["valid"] is False and checked["applied"] is None
            assert [(e["files"], e["missing"]) for e in checked["missing"]] == [(["api/gone.py"], ["api/gone.py"])]
            assert any(e["files"] == ["greeting.txt"] and not e["missing"] for e in checked["entries"])
            applied = (await http.post(f"/api/projects/{project}/expertise/general/validate",
                                       params={"apply": "true"})).json()["applied"]
            assert [f["missing"] for f in applied["flagged"]] == [["api/gone.py"]]

            report = (await http.get(f"/api/projects/{project}/report")).json()
            assert [r["run_id"] for r in report["runs"]] == [run, second]
            assert [t["id"] for t in report["runs"][0]["plan"]["epics"][0]["tasks"]] == ["a", "b", "after"]
            assert {r["task_id"]: r["state"] for r in report["runs"][0]["results"]} == {
                "a": "merged", "b": "merged", "after": "merged"}
            assert report["learnings"][0]["domain"] == "general"
            markdown = await http.get(f"/api/projects/{project}/report", params={"format": "markdown"})
            assert markdown.headers["content-type"].startswith("text/markdown")
            assert f"## Run {run}: clash — completed" in markdown.text and "## Learnings" in markdown.text
