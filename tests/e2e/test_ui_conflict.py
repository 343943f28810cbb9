"""A conflict in the web UI, in a real headless Chromium against the whole system (replayed agents
that write the same file): the conflict panel shows the file as ours / theirs / base and with its
conflict markers; a resolution with markers left is refused and marked; the person writes the
resolution in the page and it is committed on the task's branch and merged; the run finishes.
Screenshots in $YOKEFLOW_TEST_ARTIFACTS/ui (default test-artifacts/ui)."""

from __future__ import annotations

import pytest

from shared import events as ev
from tests.conftest import git, require_tool
from tests.e2e.test_conflict_resolution import _config
from tests.e2e.test_gateway_routes import CLASH
from tests.e2e.test_ui_steer import artifacts
from tests.integration.test_gateway import TOKEN
from shared.commands import start_run
from tests.support.system import events_of, next_event, running_system, wait_for_end

pytestmark = pytest.mark.e2e


async def test_the_ui_shows_a_conflict_and_merges_the_resolution_written_in_the_page(
        nats_server, database_url, unique, git_repo, tmp_path):
    chromium = require_tool("chromium")
    from playwright.async_api import async_playwright

    cfg = _config(tmp_path)
    shots = artifacts()
    async with running_system(nats_server.url, database_url, unique, cfg, gateway=True, gateway_port=0,
                              gateway_token=TOKEN) as (system, bus):
        started = await start_run(bus, CLASH, git_repo, cfg)
        run = started.run_id
        conflict = await next_event(bus, lambda e: isinstance(e, ev.MergeConflicted) and e.run_id == run)
        loser = conflict.task_id
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium,
                                               args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{system.gateway_url}/?token={TOKEN}")
            item = page.locator(f"#conflicts .conflict-item[data-task-id={loser}]")
            await item.get_by_role("button", name="Resolve…").click()
            box = page.locator("#task-panel textarea[aria-label='resolution of greeting.txt']")
            await box.wait_for()
            text = await box.input_value()
            assert text.startswith("<<<<<<< main") and f"hello from {loser.upper()}" in text
            assert "still conflicts" in await page.inner_text("#task-panel")
            sides = await page.text_content("#task-panel .conflict-file .sides")
            assert "ours (main)" in sides and "(absent)" in sides  # both added the file: no base
            await page.screenshot(path=str(shots / "conflict-panel.png"))

            # markers left in: refused, naming the file, which the page marks
            await page.get_by_role("button", name="Merge my resolution").click()
            await page.locator("#task-panel .message-error").wait_for()
            assert "files.greeting.txt" in await page.inner_text("#task-panel .message-error")
            assert await page.locator("#task-panel textarea.resolution.invalid").count() == 1
            # the person writes the resolution in the page and merges it
            await box.fill("hello from A and B\n")
            await page.get_by_role("button", name="Merge my resolution").click()
            await page.get_by_text("Resolution committed on the branch; merge requested.").wait_for()
            asked = await next_event(bus, lambda e: isinstance(e, ev.MergeRequested) and e.run_id == run, 30)
            assert asked.action == "resolve" and asked.requested_by == "web ui"
            assert isinstance(await wait_for_end(bus, run, 60), ev.RunCompleted)
            await page.click("#task-panel .close")
            await page.wait_for_selector(".run-status.status-completed")
            assert await page.inner_text("#conflicts") == "none"
            await page.screenshot(path=str(shots / "conflict-resolved-completed.png"), full_page=True)
            await browser.close()
            assert errors == [], errors
        events = await events_of(bus, run)
    assert [e.attempt for e in events if isinstance(e, ev.TaskReady) and e.task_id == loser] == [1]
    assert git(git_repo, "show", "main:greeting.txt") == "hello from A and B"
