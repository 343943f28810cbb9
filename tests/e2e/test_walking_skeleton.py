"""One real run end to end: plan -> TaskReady -> worktree + replayed agent -> commit ->
merge into main -> projections, through every service, on real NATS/PostgreSQL/git."""

from __future__ import annotations

import subprocess

import pytest

from shared import events as ev
from shared.commands import start_run
from tests.support.fake_anthropic import tool, turn
from tests.support.system import config, running_system, wait_for_end, write_transcripts
from yokeflow.commands.runtime import collect_status

pytestmark = pytest.mark.e2e

PLAN = {"name": "skeleton", "epics": [
    {"id": "core", "name": "Core", "tasks": [
        {"id": "base", "title": "Base module", "tests": ["python -c 'import base'"]},
        {"id": "left", "title": "Left", "depends_on": ["base"], "tests": ["python -c 'import left'"]},
    ]},
    {"id": "ui", "name": "UI", "tasks": [
        {"id": "right", "title": "Right", "depends_on": ["base"], "tests": ["python -c 'import right'"]},
        {"id": "top", "title": "Top", "depends_on": ["left", "right"],
         "tests": ["python -c 'import top; assert top.VALUE == 6'"]},
    ]},
]}

SCRIPTS = {
    "base": [turn(tool("write_file", path="base.py", content="BASE = 1\n")),
             turn(tool("run_command", command="python -c 'import base'")),
             turn(tool("finish", summary="base.py exports BASE = 1"))],
    "left": [turn(tool("write_file", path="left.py", content="from base import BASE\nLEFT = BASE + 1\n")),
             turn(tool("finish", summary="left.py exports LEFT"))],
    "right": [turn(tool("write_file", path="right.py", content="from base import BASE\nRIGHT = BASE + 2\n")),
              turn(tool("finish", summary="right.py exports RIGHT"))],
    "top": [turn(tool("write_file", path="top.py",
                      content="from left import LEFT\nfrom right import RIGHT\nVALUE = LEFT + RIGHT + 1\n")),
            turn(tool("finish", summary="top.py combines both"))],
}


@pytest.mark.parametrize("strategy", ["by_task", "by_epic"])
async def test_a_diamond_runs_through_every_service_and_lands_on_main(strategy, nats_server, database_url,
                                                                      unique, git_repo, tmp_path):
    transcripts = write_transcripts(tmp_path / "transcripts", SCRIPTS)
    cfg = config(parallel={"strategy": strategy, "max_concurrency": 3},
                 agent={"provider": "replay", "transcripts": str(transcripts)})
    async with running_system(nats_server.url, database_url, unique, cfg) as (system, bus):
        started = await start_run(bus, PLAN, git_repo, cfg)
        end = await wait_for_end(bus, started.run_id)
        assert isinstance(end, ev.RunCompleted), end
        assert end.counts == ev.TaskCounts(done=4, failed=0, blocked=0, cancelled=0, total=4)
        await system.database.wait_for("ledger", await bus.last_seq())
        status = await collect_status(system.endpoint, started.run_id)

    [run] = status["runs"]
    assert run["status"] == "completed"
    for task in run["tasks"]:
        assert task["status"] == "done" and task["merged"], task
        assert task["attempt"] == 1 and task["branch"] and len(task["merge_commit"]) == 40
    # main holds every task's work, and the work is correct
    files = subprocess.run(["git", "ls-tree", "--name-only", "main"], cwd=git_repo, capture_output=True,
                           text=True, check=True).stdout.split()
    assert {"base.py", "left.py", "right.py", "top.py"} <= set(files)
    out = subprocess.run(["git", "show", "main:top.py"], cwd=git_repo, capture_output=True, text=True).stdout
    assert "VALUE = LEFT + RIGHT + 1" in out
    log = subprocess.run(["git", "log", "--format=%s", "main"], cwd=git_repo, capture_output=True, text=True).stdout
    assert "task top: Top" in log
    # what each task's work was made on: `left` needs only `base`, done before it on the same branch
    # under by_epic, so its branch went on from base's work without bringing main in; `top` needs
    # `left` from the other epic's branch, so main came in first (a fast-forward: nothing of its own yet)
    merges = dict(line.split(" ", 1)[::-1] for line in subprocess.run(
        ["git", "log", "--merges", "--first-parent", "--format=%H %s", "main"], cwd=git_repo, capture_output=True,
        text=True, check=True).stdout.splitlines())

    def parents(sha: str) -> list[str]:
        return subprocess.run(["git", "rev-parse", f"{sha}^@"], cwd=git_repo, capture_output=True, text=True,
                              check=True).stdout.split()

    work = {tid: parents(merges[next(m for m in merges if m.startswith(f"Merge task {tid}:"))])[1]
            for tid in ("base", "left", "right", "top")}
    if strategy == "by_epic":
        assert parents(work["left"]) == [work["base"]]
        assert parents(work["top"])[0] in {sha for m, sha in merges.items() if "task left" in m or "task right" in m}
    else:   # every task on a branch of its own, made from main
        assert all(parents(work[tid])[0] in merges.values() for tid in ("left", "right", "top"))
