"""The web UI in a real headless Chromium against a running gateway: epic lanes, task cards
with their statuses, batch columns and dependency arrows, rendered from a projected run."""

from __future__ import annotations

import asyncio
import html
import os
import re
from pathlib import Path

import httpx
import pytest

from shared import events as ev
from shared.plan import PlanDoc
from shared.config import RunSettings
from tests.conftest import require_tool
from tests.integration.test_gateway import TOKEN, publish_and_project, running_gateway, task_event

pytestmark = pytest.mark.e2e

PLAN = {"name": "bookshop", "epics": [
    {"id": "data", "name": "Data model", "tasks": [
        {"id": "1", "title": "Books table", "domain": "database"},
        {"id": "2", "title": "Authors table", "domain": "database"},
        {"id": "3", "title": "Seed catalogue", "depends_on": ["1", "2"], "domain": "database"}]},
    {"id": "api", "name": "HTTP API", "depends_on": ["data"], "tasks": [
        {"id": "4", "title": "List books", "depends_on": ["1"], "domain": "api"},
        {"id": "5", "title": "Search", "depends_on": ["4"], "domain": "api"},
        {"id": "6", "title": "Checkout", "depends_on": ["4"], "domain": "api"}]},
    {"id": "web", "name": "Storefront", "tasks": [
        {"id": "7", "title": "Catalogue page", "depends_on": ["4"], "domain": "frontend"},
        {"id": "8", "title": "Basket", "depends_on": ["6"], "domain": "frontend"}]},
]}
EXPECTED = {"1": "merged", "2": "merged", "3": "conflict", "4": "merged", "5": "running", "6": "failed",
            "7": "ready", "8": "blocked"}


def bookshop_events(run: str = "rui") -> list[ev.Event]:
    t = lambda cls, task, **kw: task_event(cls, task, run, "shop", **kw)
    merged = lambda task: ev.BranchMerged(project_id="shop", aggregate_id=ev.task_aggregate_id(run, task), run_id=run,
                                          task_id=task, branch=f"task/{task}", commit=f"m{task}")
    out: list[ev.Event] = [
        ev.ProjectCreated(project_id="shop", aggregate_id="shop", name="bookshop", repo_path="/srv/bookshop"),
        ev.RunStarted(project_id="shop", aggregate_id=run, run_id=run, plan=PlanDoc.of(PLAN), repo_path="/srv/bookshop",
                      settings=RunSettings.of({"parallel": {"max_concurrency": 3}})),
        ev.BatchesComputed(project_id="shop", aggregate_id=run, run_id=run,
                           batches=[["1", "2"], ["3", "4"], ["5", "6", "7"], ["8"]]),
    ]
    for task, minutes in (("1", 3), ("2", 5), ("3", 4), ("4", 6)):
        out += [t(ev.TaskReady, task, model="sonnet"),
                t(ev.AgentStarted, task, model="sonnet", occurred_at="2030-01-01T10:00:00+00:00"),
                t(ev.CostRecorded, task, model="sonnet", input_tokens=12000, output_tokens=3000, cost_usd=0.42),
                t(ev.AgentFinished, task, outcome="success", model="sonnet", duration_s=60.0 * minutes, summary=f"task {task} done",
                  occurred_at=f"2030-01-01T10:0{minutes}:00+00:00"),
                t(ev.TaskCompleted, task)]
    out += [merged("1"), merged("2"), merged("4"),
            ev.MergeConflicted(project_id="shop", aggregate_id=ev.task_aggregate_id(run, "3"), run_id=run,
                               task_id="3", branch="task/3", conflicts=[{"path": "seed.sql"}],
                               reason="seed.sql changed on main"),
            ev.BatchMerged(project_id="shop", aggregate_id=run, run_id=run, batch=0, task_ids=["1", "2"]),
            t(ev.TaskReady, "5", model="opus"), t(ev.AgentStarted, "5", model="opus"),
            t(ev.CostRecorded, "5", model="opus", input_tokens=30000, output_tokens=4000, cost_usd=1.1),
            t(ev.TaskReady, "6", model="haiku"), t(ev.AgentStarted, "6", model="haiku"),
            t(ev.TaskFailed, "6", reason="tests failed: test_checkout.py", final=True),
            t(ev.TaskBlocked, "8", reason="depends on failed task 6", blocked_by=["6"]),
            t(ev.TaskReady, "7", model="sonnet"), t(ev.AgentAdmitted, "7", candidate=True, rank=6)]
    return out


async def chromium(*args: str) -> str:
    browser = require_tool("chromium")
    proc = await asyncio.create_subprocess_exec(
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode(errors="replace")


async def test_ui_shows_lanes_cards_and_statuses(bus, database_url, tmp_path):
    require_tool("chromium")
    async with running_gateway(bus, database_url) as url:
        await publish_and_project(bus, database_url, bookshop_events())
        page = f"{url}/?token={TOKEN}#run=rui"  # as `yokeflow up` prints it: swapped for a cookie at once
        dom = await chromium(f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=8000",
                             "--dump-dom", page)
        cards = {m["id"]: m["state"] for m in re.finditer(
            r'<article class="card state-[a-z]+"[^>]*data-task-id="(?P<id>[^"]+)" data-state="(?P<state>[a-z]+)"', dom)}
        assert cards == EXPECTED
        lanes = re.findall(r'<div class="lane" data-epic-id="([^"]+)"', dom)
        assert lanes == ["data", "api", "web"]
        assert len(re.findall(r'<div class="col-head" data-batch=', dom)) == 4
        assert len(re.findall(r'<path [^>]*class="dep dep-hard"', dom)) == 7  # one arrow per dependency
        assert 'data-status="running"' in dom and html.escape("bookshop") in dom
        assert "seed.sql changed on main" in dom  # the conflict's reason on its card
        assert "task 7 waits for a slot handed over (rank 6)" in dom  # the feed's line for a candidate
        assert not re.search(r">[^<]*\b(null|undefined|NaN)", dom), "a missing value leaked into the page"
        # task 7 was handed out and no executor ever asked for work: the page says so, as `status` does
        notice = re.search(r'<div id="waiting" class="message message-warn" role="status">([^<]*)</div>', dom)
        assert notice and "7 has waited" in notice.group(1) and "no executor is running" in notice.group(1)
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            waiting = (await http.get("/api/runs/rui/waiting")).json()
        assert [u["task_id"] for u in waiting["unstarted"]] == ["7"] and waiting["executors_pulling"] is None
        def same(line: str) -> str:  # the endpoint was asked a moment after the page: its wait is longer
            return re.sub(r"waited \d+s", "waited Ns", line)
        assert same(waiting["line"]) == same(html.unescape(notice.group(1)))

        shot = Path(os.environ.get("YOKEFLOW_UI_SCREENSHOT", tmp_path / "ui.png"))
        await chromium(f"--user-data-dir={tmp_path / 'profile2'}", "--virtual-time-budget=8000",
                       "--window-size=1400,900", "--hide-scrollbars", f"--screenshot={shot}", page)
        assert shot.stat().st_size > 10_000

        # a deep link to a task opens its detail: attempts, the conflict, and the way to retry the merge
        linked = f"{url}/?token={TOKEN}#run=rui&task=3"
        panel = await chromium(f"--user-data-dir={tmp_path / 'profile3'}", "--virtual-time-budget=8000",
                               "--dump-dom", linked)
        panel = panel[panel.index('id="task-panel"'):]
        assert "#3 Seed catalogue" in panel and "Retry merge" in panel and "seed.sql" in panel
        assert not re.search(r">[^<]*\b(null|undefined|NaN)", panel), "a missing value leaked into the panel"
        await chromium(f"--user-data-dir={tmp_path / 'profile4'}", "--virtual-time-budget=8000",
                       "--window-size=1400,900", "--hide-scrollbars", f"--screenshot={shot.with_suffix('.task.png')}",
                       linked)
