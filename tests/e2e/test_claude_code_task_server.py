"""The task server reaches the claude-code backend too: the real Claude Code CLI, in its jail, gets
YokeFlow's task tools over MCP (a Unix socket bound into the jail), reads its task, reports a
discovery that reaches the domain's expertise, is refused a task that is not its dependency, and
a second agent asks for its task to be blocked, which ends its attempt with that reason."""

from __future__ import annotations

import json

import pytest

from shared import events as ev
from shared.commands import start_run
from tests.conftest import require_tool
from tests.e2e.test_claude_code import claude_code_cli  # noqa: F401
from tests.e2e.test_hostile_agent import API_KEY, Router
from tests.support.fake_anthropic import FakeAnthropic, text, tool, turn
from tests.support.system import config, events_of, running_system, wait_for_end

pytestmark = pytest.mark.e2e

T = "mcp__yokeflow-task__"
PLAN = {"name": "task-server", "epics": [{"id": "E", "name": "E", "tasks": [
    {"id": "asks", "title": "ASKS task", "domain": "api", "tests": ["true"],
     "description": "Add the routes module"},
    {"id": "stuck", "title": "STUCK task", "domain": "api", "tests": ["true"]}]}]}
DISCOVERY = "The api keeps every route in routes.py; register new ones in ROUTES"
SCRIPTS = {
    "asks": [turn(tool(f"{T}task_info")),
             turn(tool(f"{T}report_discovery", text=DISCOVERY, files=["routes.py"])),
             turn(tool(f"{T}dependency_info", task_id="stuck")),
             turn(text("done: read my task, recorded what I found"))],
    "stuck": [turn(tool(f"{T}request_block", reason="the schema task must come first",
                        split_into=["schema", "routes"])),
              turn(text("blocked"))],
}


def _tool_results(requests) -> list[dict]:
    return [block for r in requests for m in r.body.get("messages", []) if m["role"] == "user"
            for block in (m["content"] if isinstance(m["content"], list) else []) if block.get("type") == "tool_result"]


async def test_claude_code_agents_use_their_task_server(nats_server, database_url, unique, git_repo, monkeypatch,
                                                        claude_code_cli):  # noqa: F811
    require_tool("bwrap")
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    with FakeAnthropic() as server:
        server.add_turns(*[Router(SCRIPTS)] * 30)
        cfg = config(parallel={"strategy": "by_task", "max_concurrency": 2, "max_attempts": 1},
                     agent={"provider": "claude-code", "base_url": server.url})
        async with running_system(nats_server.url, database_url, unique, cfg) as (_, bus):
            started = await start_run(bus, PLAN, git_repo, cfg)
            end = await wait_for_end(bus, started.run_id, timeout=240)
            events = await events_of(bus, started.run_id)
            discoveries = [d.event async for d in bus.read() if isinstance(d.event, ev.DiscoveryReported)]
            updates = [d.event async for d in bus.read() if isinstance(d.event, ev.ExpertiseUpdated)]

    offered = {t["name"] for r in server.requests for t in r.body.get("tools") or []}
    assert {f"{T}{n}" for n in ("task_info", "dependency_info", "search_expertise", "report_discovery",
                                "request_block")} <= offered
    results = json.dumps(_tool_results(server.requests))
    assert "task asks: ASKS task" in results and "Add the routes module" in results  # task_info answered
    assert "is not a dependency of task asks" in results  # another task's details are out of scope

    [found] = discoveries
    assert (found.run_id, found.task_id, found.domain, found.text) == (started.run_id, "asks", "api", DISCOVERY)
    assert any(DISCOVERY in json.dumps(ev.encode(u).decode()) for u in updates if u.domain == "api")

    [block] = [e for e in events if isinstance(e, ev.TaskBlockRequested)]
    assert (block.task_id, block.reason, block.split_into) == ("stuck", "the schema task must come first",
                                                               ["schema", "routes"])
    finished = {e.task_id: e for e in events if isinstance(e, ev.AgentFinished)}
    assert finished["asks"].outcome == "success"
    assert finished["stuck"].outcome == "failure" and "asked to block the task" in finished["stuck"].error
    assert isinstance(end, ev.RunFailed) and end.counts.done == 1, end
