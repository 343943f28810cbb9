"""The web UI steers, in a real headless Chromium driven by Playwright against the whole system
(replayed agents): a run started from the page progresses live to the end; a task's drawer shows
its agent log and diff; the board fits or scrolls at any width; a Session 0 plan is reviewed,
edited (a cycle refused and marked, then a new version) and that version approved and started from
the page, and that run is cancelled from the page. Screenshots are kept in
$YOKEFLOW_TEST_ARTIFACTS/ui (default test-artifacts/ui)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from shared import events as ev
from shared.plan import PlanDoc
from tests.conftest import require_tool
from tests.integration.test_gateway import TOKEN
from tests.support.fake_anthropic import tool, turn
from tests.support.system import config, events_of, next_event, running_system, wait_for_end, write_transcripts

pytestmark = pytest.mark.e2e

BOOKSHOP = {"name": "bookshop", "epics": [
    {"id": "data", "name": "Data model", "tasks": [
        {"id": "d1", "title": "Books table", "domain": "database"},
        {"id": "d2", "title": "Authors table", "domain": "database"}]},
    {"id": "api", "name": "HTTP API", "tasks": [
        {"id": "a1", "title": "List books", "depends_on": ["d1"], "domain": "api"},
        {"id": "a2", "title": "Search", "depends_on": ["a1"], "domain": "api"}]},
    {"id": "web", "name": "Storefront", "tasks": [
        {"id": "w1", "title": "Catalogue page", "depends_on": ["a1"], "domain": "frontend"}]},
]}
SLOW = {"name": "slow-plan", "epics": [{"id": "s", "name": "Slow", "tasks": [
    {"id": "slow", "title": "Slow task"}, {"id": "later", "title": "Later", "depends_on": ["slow"]}]}]}


def artifacts() -> Path:
    folder = Path(os.environ.get("YOKEFLOW_TEST_ARTIFACTS", "test-artifacts")) / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def writes(path: str, content: str) -> list[dict]:
    return [turn(tool("write_file", path=path, content=content)), turn(tool("finish", summary=f"wrote {path}"))]


async def test_the_ui_starts_watches_approves_and_cancels(nats_server, database_url, unique, git_repo, tmp_path):
    chromium = require_tool("chromium")
    from playwright.async_api import async_playwright

    scripts = {t["id"]: writes(f"{t['id']}.txt", f"{t['title']}\n") for e in BOOKSHOP["epics"] for t in e["tasks"]}
    scripts["slow"] = [turn(tool("run_command", command="sleep 60")), turn(tool("finish", summary="slow"))]
    scripts["later"] = writes("later.txt", "later\n")
    cfg = config(parallel={"strategy": "by_task", "max_concurrency": 2},
                 agent={"provider": "replay", "transcripts": str(write_transcripts(tmp_path / "t", scripts))})
    shots = artifacts()
    async with running_system(nats_server.url, database_url, unique, cfg, gateway=True, gateway_port=0,
                              gateway_token=TOKEN) as (system, bus):
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium,
                                               args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{system.gateway_url}/?token={TOKEN}")  # as `yokeflow up` prints it
            assert "token" not in page.url  # swapped for the cookie and dropped from the address bar

            # start a run from the page: plan, repository, concurrency, strategy, barrier, budget
            await page.click("#new-run")
            await page.select_option("#start-project", "")
            await page.fill("#start-repo", str(git_repo))
            await page.fill("#start-plan", json.dumps(BOOKSHOP))
            await page.fill("#start-concurrency", "2")
            await page.select_option("#start-strategy", "by_task")
            await page.fill("#start-budget", "5")
            await page.click("#start-submit")
            await page.wait_for_selector("#board article.card")
            run_id = await page.eval_on_selector("#run-picker", "s => s.value")
            started = next(e for e in await events_of(bus, run_id) if isinstance(e, ev.RunStarted))
            assert started.settings.parallel.max_concurrency == 2 and started.settings.parallel.strategy == "by_task"
            assert started.settings.cost.budget_limit_usd == 5
            # watch it progress live, card by card, to the end
            await page.wait_for_function("document.querySelectorAll('#board article.card[data-state=merged]').length === 5")
            await page.wait_for_selector(".run-status.status-completed")
            assert await page.eval_on_selector_all("#board .lane[data-epic-id]", "ls => ls.map(l => l.dataset.epicId)") \
                == ["data", "api", "web"]
            await page.screenshot(path=str(shots / "run-completed.png"), full_page=True)

            # the task drawer: live agent log and the diff against main
            await page.click("#board article.card[data-task-id=a1]")
            await page.wait_for_selector("#task-panel .log div b")
            assert "write_file" in await page.inner_text("#task-panel .log")
            await page.wait_for_selector("#task-panel pre[aria-label=Diff]")
            assert "+List books" in await page.inner_text("#task-panel pre[aria-label=Diff]")
            await page.screenshot(path=str(shots / "task-drawer.png"))
            await page.click("#task-panel .close")

            # swimlanes at any width: narrow window scrolls to the last batch; Fit shows every column
            await page.set_viewport_size({"width": 760, "height": 800})
            await page.wait_for_timeout(100)  # layout after resize
            wide = await page.eval_on_selector("#board-wrap", "w => w.scrollWidth > w.clientWidth")
            assert wide, "three batch columns should overflow a narrow window and scroll"
            await page.click("#fit-toggle")
            inside = await page.evaluate("""() => {
                const wrap = document.getElementById('board-wrap').getBoundingClientRect();
                const heads = [...document.querySelectorAll('#board .col-head')];
                return heads.length === 3 && heads.every(h => h.getBoundingClientRect().right <= wrap.right + 1);
            }""")
            assert inside, "in fit mode every batch column is within the board"
            await page.screenshot(path=str(shots / "fit-narrow.png"))
            await page.set_viewport_size({"width": 1400, "height": 900})

            # a Session 0 plan: reviewed and approved from the page, then started and cancelled
            project = started.project_id
            await bus.publish(ev.PlanRequested(project_id=project, aggregate_id="pslow", spec="something slow"),
                              msg_id="pslow:req")
            await bus.publish(ev.PlanProduced(project_id=project, aggregate_id="pslow", plan=PlanDoc.of(SLOW),
                                              source="session0:sonnet"), msg_id="pslow:prod")
            await page.click("#show-plans")
            item = page.locator("#plans-panel .plan-item[data-plan-id=pslow]")
            await item.get_by_role("button", name="Review").click()
            assert await item.get_by_label("title of slow").input_value() == "Slow task"
            # an edit that makes a cycle is refused, naming the field, which the page marks
            await item.get_by_label("dependencies of slow").fill("later")
            await item.get_by_role("button", name="Save as new version").click()
            await item.locator(".message-error").wait_for()
            assert "tasks.slow.depends_on" in await item.locator(".message-error").inner_text()
            assert await item.locator("input.invalid[data-field='tasks.slow.depends_on']").count() == 1
            await page.screenshot(path=str(shots / "plan-edit-refused.png"))
            # the person fixes it, renames and re-rates a task: version 2, approved as such
            await item.get_by_label("dependencies of slow").fill("")
            await item.get_by_label("title of later").fill("Later, edited")
            await item.get_by_label("complexity of later").select_option("low")
            await item.get_by_role("button", name="Save as new version").click()
            await item.get_by_text("Saved as version 2").wait_for()
            edited = await next_event(bus, lambda e: isinstance(e, ev.PlanProduced) and e.aggregate_id == "pslow"
                                      and e.version == 2, 10)
            assert edited.source == "edit" and edited.edited_by == "web ui"
            await page.screenshot(path=str(shots / "plan-edited.png"))
            await item.get_by_role("button", name="Approve version 2").click()
            await item.get_by_text("Plan pslow version 2 approved.").wait_for()
            approved = await next_event(bus, lambda e: isinstance(e, ev.PlanApproved) and e.aggregate_id == "pslow", 10)
            assert approved.approved_by == "web ui" and approved.version == 2
            await page.screenshot(path=str(shots / "plan-approved.png"))
            await item.get_by_role("button", name="Start…").click()
            await page.select_option("#start-project", project)
            await page.fill("#start-concurrency", "1")
            await page.click("#start-submit")
            await page.wait_for_selector("#board article.card[data-task-id=slow]")
            second = await page.eval_on_selector("#run-picker", "s => s.value")
            assert second != run_id
            second_started = next(e for e in await events_of(bus, second) if isinstance(e, ev.RunStarted))
            assert second_started.plan.name == "slow-plan"
            later = next(t for e in second_started.plan.epics for t in e.tasks if t.id == "later")
            assert later.title == "Later, edited" and later.complexity == "low"  # the approved version ran
            await page.wait_for_selector("#board article.card[data-task-id=slow][data-state=running]")
            page.once("dialog", lambda dialog: dialog.accept())
            await page.click("#cancel-run")
            assert isinstance(await wait_for_end(bus, second, 30), ev.RunCancelled)
            await page.wait_for_selector(".run-status.status-cancelled")
            await page.screenshot(path=str(shots / "run-cancelled.png"), full_page=True)

            # expertise and costs of the project
            await page.click("#show-project")
            await page.wait_for_selector("#project-panel h3")
            assert "Costs by model" in await page.text_content("#project-panel")
            await page.screenshot(path=str(shots / "project.png"))
            await browser.close()
            assert errors == [], errors
        ended = next(e for e in await events_of(bus, run_id) if isinstance(e, (ev.RunCompleted, ev.RunFailed)))
        assert isinstance(ended, ev.RunCompleted)
