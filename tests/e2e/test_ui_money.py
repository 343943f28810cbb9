"""Money in the web UI, in a real headless Chromium against the whole system: agents call a scripted
Messages API that reports known token counts, so a run's hard budget stops it; the page shows the
budget (limit, spent, reserved, left, enforcement), the forecast and BudgetExhausted as it happens;
the person raises the budget in the page and the run finishes. Screenshots in
$YOKEFLOW_TEST_ARTIFACTS/ui (default test-artifacts/ui)."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from shared import events as ev
from shared.commands import start_run
from tests.conftest import require_tool
from tests.e2e.test_ui_steer import artifacts
from tests.integration.test_gateway import TOKEN
from tests.support.fake_anthropic import FakeAnthropic, tool, turn
from tests.support.system import config, events_of, next_event, running_system, wait_for_end

pytestmark = pytest.mark.e2e

MODEL = "claude-sonnet-4-6"
TURNS = 4  # model calls per task: 3 file writes, then finish
USAGE = {"input_tokens": 2000, "output_tokens": 5000}  # $0.081 a call at 3 / 15 USD per million
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = "0.40"  # 8 calls cost about $0.65: the run cannot finish within it


def scripted(body: dict) -> dict:
    first = body["messages"][0]["content"]
    prompt = first if isinstance(first, str) else first[0]["text"]
    task = prompt.split(":", 1)[0].removeprefix("# Task ").strip()
    done = sum(1 for m in body["messages"] if m["role"] == "assistant")
    if done < TURNS - 1:
        return turn(tool("write_file", path=f"{task}/part{done}.txt", content=f"{task} {done}\n"), usage=USAGE)
    return turn(tool("finish", summary=f"{task}: {done} parts"), usage=USAGE)


PLAN = {"name": "priced", "epics": [{"id": "E", "name": "E", "tasks": [
    {"id": "m1", "title": "Parts one", "complexity": "medium"},
    {"id": "m2", "title": "Parts two", "complexity": "medium", "depends_on": ["m1"]}]}]}


async def test_the_ui_shows_a_budget_stop_and_raising_it_in_the_page_finishes_the_run(
        nats_server, database_url, unique, git_repo, monkeypatch):
    chromium = require_tool("chromium")
    from playwright.async_api import async_playwright

    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    shots = artifacts()
    with FakeAnthropic([scripted] * 200) as model_api:
        cfg = config(parallel={"strategy": "by_task", "max_concurrency": 2},
                     agent={"provider": "anthropic", "base_url": model_api.url, "max_turns": 20},
                     cost={"run_budget_usd": float(LIMIT), "enforcement": "hard", "optimization_enabled": False,
                           "default_model": MODEL})
        async with running_system(nats_server.url, database_url, unique, cfg, gateway=True, gateway_port=0,
                                  gateway_token=TOKEN) as (system, bus):
            started = await start_run(bus, PLAN, git_repo, cfg)
            run = started.run_id
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=chromium,
                                                   args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
                page = await browser.new_page(viewport={"width": 1400, "height": 900})
                page.set_default_timeout(90_000)
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(f"{system.gateway_url}/?token={TOKEN}")
                await page.evaluate(f"location.hash = 'run={run}'")
                await page.reload()
                await page.wait_for_selector("#budget .account[data-scope=run]")
                assert "hard limit" in await page.text_content("#budget .budget-head")

                # the run's budget stops it: the page says so, live, with what was spent
                await next_event(bus, lambda e: isinstance(e, ev.BudgetExhausted) and e.run_id == run, 120)
                stop = page.locator("#budget .budget-stop[data-event=BudgetExhausted]")
                await stop.wait_for()
                text = await stop.inner_text()
                assert "BudgetExhausted" in text and "$0.40" in text, text
                account = await page.inner_text("#budget .account[data-scope=run]")
                assert "of $0.40" in account and "spent $" in account, account
                assert await page.locator("#budget .account-exhausted").count() == 1
                assert "Forecast" in await page.text_content("#budget .forecast")
                await page.locator("#feed .ev-BudgetExhausted").wait_for()
                await page.wait_for_selector("#board article.card[data-state=pending]")
                await page.screenshot(path=str(shots / "budget-exhausted.png"), full_page=True)
                events = await events_of(bus, run)
                spent = sum((Decimal(e.cost_exact) for e in events if isinstance(e, ev.CostRecorded)), Decimal(0))
                assert spent <= Decimal(LIMIT)
                assert not [e for e in events if isinstance(e, (ev.RunCompleted, ev.RunFailed))]
                # the page's numbers come from the budget route, over the same guard as every route
                async with httpx.AsyncClient(base_url=system.gateway_url) as http:
                    url = f"/api/projects/{started.project_id}/budget"
                    assert (await http.get(url, params={"run": run})).status_code == 401
                    body = (await http.get(url, params={"run": run}, headers=AUTH)).json()
                acct = body["run"]
                assert body["exhausted"] and body["enforcement"] == "hard" and acct["exhausted"]
                assert Decimal(acct["limit_usd"]) == Decimal(LIMIT) and Decimal(acct["spent_usd"]) == spent
                assert Decimal(acct["remaining_usd"]) == Decimal(LIMIT) - spent - Decimal(acct["reserved_usd"])
                assert [e["type"] for e in body["events"]][0] == "BudgetExhausted"

                # the person raises the run's budget in the page, and the run goes on to the end
                form = page.locator("#budget form.raise")
                assert await form.locator("select").input_value() == "run"
                await form.locator("input").fill("5")
                await form.get_by_role("button", name="Set budget").click()
                raised = await next_event(bus, lambda e: isinstance(e, ev.BudgetSet) and e.run_id == run, 30)
                assert raised.limit_exact == "5" and raised.scope == "run" and raised.set_by == "api"
                assert isinstance(await wait_for_end(bus, run, 180), ev.RunCompleted)
                await page.wait_for_selector(".run-status.status-completed")
                assert await page.locator("#budget .budget-stop").count() == 0
                await page.screenshot(path=str(shots / "budget-raised-completed.png"), full_page=True)
                await browser.close()
                assert errors == [], errors
