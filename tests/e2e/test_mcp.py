"""YokeFlow as an MCP server, driven by the official SDK's client over stdio: a plan goes end to
end through the tools alone (create, approve, start, watch until merged, costs, expertise), and
bad input is a tool error naming the field."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.support.fake_anthropic import FakeAnthropic, tool, turn
from tests.support.processes import ROOT, service_env
from tests.support.system import config, running_system

PLAN = {"name": "greet", "epics": [{"id": "E1", "name": "Greeting", "tasks": [
    {"id": "hello", "title": "Hello file", "domain": "api", "tests": ["grep -q hello hello.txt"]},
    {"id": "bye", "title": "Bye file", "domain": "api", "depends_on": ["hello"], "tests": ["test -f bye.txt"]},
]}]}


def answer(body: dict) -> dict:
    """Session 0 submits PLAN; each task's agent writes its file and finishes."""
    if any(t.get("name") == "submit_plan" for t in body.get("tools") or []):
        return turn({**tool("submit_plan"), "input": PLAN})
    first = body["messages"][0]["content"]
    prompt = first if isinstance(first, str) else first[0]["text"]
    step = sum(1 for m in body["messages"] if m["role"] == "assistant")
    name = "hello" if prompt.startswith("# Task hello") else "bye"
    script = [turn(tool("write_file", path=f"{name}.txt", content=f"{name}\n")), turn(tool("finish", summary=name))]
    return script[step]


async def call(session: ClientSession, name: str, **arguments) -> dict:
    result = await session.call_tool(name, arguments)
    assert not result.isError, (name, result.content)
    return result.structuredContent or json.loads(result.content[0].text)


async def error_of(session: ClientSession, name: str, **arguments) -> str:
    result = await session.call_tool(name, arguments)
    assert result.isError, (name, result)
    return result.content[0].text


async def test_a_plan_runs_end_to_end_through_the_tools_over_stdio(nats_server, database_url, unique, git_repo,
                                                                  tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")  # the agents run in this process
    with FakeAnthropic([answer] * 20) as api:
        env = {**os.environ, **service_env(nats_server.url, database_url, unique), "ANTHROPIC_API_KEY": "test-key",
               "YOKEFLOW_AGENT__PROVIDER": "anthropic", "YOKEFLOW_AGENT__BASE_URL": api.url,
               "YOKEFLOW_PARALLEL__STRATEGY": "by_task", "PYTHONPATH": str(ROOT)}
        params = StdioServerParameters(command=sys.executable, args=["-m", "yokeflow", "mcp"], env=env,
                                       cwd=str(tmp_path))
        cfg = config(agent={"provider": "anthropic", "base_url": api.url})
        async with running_system(nats_server.url, database_url, unique, cfg):
            async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                tools = {t.name: t for t in (await session.list_tools()).tools}
                assert {"plan_create", "plan_approve", "run_start", "run_status", "costs", "expertise",
                        "events_since", "run_cancel", "merge_retry", "merge_resolve"} <= set(tools)
                assert tools["run_start"].inputSchema["properties"]["max_concurrency"]

                created = await call(session, "plan_create", spec="Two greeting files.", repo_path=str(git_repo))
                assert created["status"] == "produced" and created["plan"]["name"] == "greet"
                plan_id = created["plan_id"]
                assert "not approved" in await error_of(session, "run_start", repo_path=str(git_repo),
                                                        plan_id=plan_id)
                approved = await call(session, "plan_approve", plan_id=plan_id)
                assert approved["status"] == "approved"
                started = await call(session, "run_start", repo_path=str(git_repo), plan_id=plan_id,
                                     max_concurrency=2, budget_usd=5)
                run_id, project_id = started["run_id"], started["project_id"]

                status: dict = {}
                for _ in range(600):
                    try:
                        status = await call(session, "run_status", run_id=run_id)
                    except AssertionError:  # not projected yet
                        status = {}
                    if status.get("status") in ("completed", "failed", "cancelled"):
                        break
                    await asyncio.sleep(0.2)
                assert status["status"] == "completed", status
                assert all(t["merged"] for t in status["tasks"]) and len(status["tasks"]) == 2

                events = await call(session, "events_since", run_id=run_id, since_seq=0, limit=1000)
                assert "RunCompleted" in [e["type"] for e in events["events"]]
                costs = await call(session, "costs", project_id=project_id, run_id=run_id, by="task")
                assert {r["key"] for r in costs["rows"]} == {"hello", "bye"}
                learned = await call(session, "expertise", project_id=project_id, domain="api")
                assert "hello.txt" in learned["content"]
                resource = await session.read_resource(f"yokeflow://runs/{run_id}")
                assert json.loads(resource.contents[0].text)["status"] == "completed"

                # bad input: a tool error naming the field, never a crash of the server
                assert "run_id" in await error_of(session, "run_status", run_id="nope")
                assert "max_concurrency" in await error_of(session, "run_start", repo_path=str(git_repo),
                                                           plan=PLAN, max_concurrency=0)
                assert "plan" in await error_of(session, "run_start", repo_path=str(git_repo))
                assert "domain" in await error_of(session, "expertise", project_id=project_id, domain="Bad Name")
                assert "by" in await error_of(session, "costs", project_id=project_id, by="planet")


TOKEN = "mcp-test-token-0123456789abcdef"


async def test_the_http_transport_sits_behind_the_gateway_s_token(nats_server, database_url, unique, git_repo,
                                                                   monkeypatch):
    import httpx
    from mcp.client.streamable_http import streamable_http_client

    transcripts_cfg = config(parallel={"strategy": "by_task"}, agent={"provider": "sleep:10"})
    async with running_system(nats_server.url, database_url, unique, transcripts_cfg, gateway=True, gateway_port=0,
                              gateway_token=TOKEN) as (system, bus):
        url = f"{system.gateway_url}/mcp"
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        async with httpx.AsyncClient(timeout=30) as http:
            refused = await http.post(url, json=init, headers=headers)
            assert refused.status_code == 401  # every call without the token
            wrong = await http.post(url, json=init, headers={**headers, "Authorization": "Bearer not-the-token-at-all"})
            assert wrong.status_code == 401
            foreign = await http.post(url, json=init, headers={**headers, "Authorization": f"Bearer {TOKEN}",
                                                                "Origin": "http://attacker.example"})
            assert foreign.status_code == 403
        authorized = httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        async with authorized, streamable_http_client(url, http_client=authorized) as (read, write, _), \
                ClientSession(read, write) as session:
            await session.initialize()
            checked = await call(session, "plan_check", plan=PLAN)
            assert checked["valid"] and checked["batches"] == [["hello"], ["bye"]]
            untested = {"name": "quick", "epics": [{"id": "E", "name": "E", "tasks": [{"id": "t", "title": "T"}]}]}
            started = await call(session, "run_start", repo_path=str(git_repo), plan=untested)
            run_id = started["run_id"]
            for _ in range(300):
                result = await session.call_tool("run_status", {"run_id": run_id})
                if not result.isError and result.structuredContent["status"] == "completed":
                    break
                await asyncio.sleep(0.2)
            assert result.structuredContent["status"] == "completed"
            assert "run_id" in await error_of(session, "task_status", run_id=run_id + "x", task_id="t")


def orchestrator(repo: str):
    """The meta-agent's scripted turns: plan, approve, start with the person's limits, report."""
    def answer(body: dict) -> dict:
        if any(t.get("name") == "submit_plan" for t in body.get("tools") or []):
            return turn({**tool("submit_plan"), "input": PLAN})
        if not any(t.get("name") == "run_start" for t in body.get("tools") or []):
            return globals()["answer"](body)  # a task's agent
        results = [json.loads(b["content"]) for m in body["messages"] if m["role"] == "user"
                   and isinstance(m["content"], list) for b in m["content"] if b.get("type") == "tool_result"]
        step = len(results)
        if step == 0:
            return turn(tool("plan_create", spec="Two greeting files.", repo_path=repo))
        if step == 1:
            return turn(tool("plan_approve", plan_id=results[0]["plan_id"]))
        if step == 2:
            return turn(tool("run_start", repo_path=repo, plan_id=results[0]["plan_id"], max_concurrency=4,
                             budget_usd=20))
        return turn({"type": "text", "text": f"Started run {results[2]['run_id']} with at most 4 agents and $20."})
    return answer


async def test_chat_plans_and_starts_a_run_through_the_tools_only(nats_server, database_url, unique, git_repo,
                                                                   tmp_path, monkeypatch):
    import subprocess

    from shared import events as ev
    from tests.support.system import wait_for_end

    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    with FakeAnthropic([orchestrator(str(git_repo))] * 30) as api:
        env = {**os.environ, **service_env(nats_server.url, database_url, unique), "ANTHROPIC_API_KEY": "test-key",
               "YOKEFLOW_AGENT__PROVIDER": "anthropic", "YOKEFLOW_AGENT__BASE_URL": api.url,
               "YOKEFLOW_PARALLEL__STRATEGY": "by_task", "PYTHONPATH": str(ROOT)}
        cfg = config(agent={"provider": "anthropic", "base_url": api.url})
        async with running_system(nats_server.url, database_url, unique, cfg) as (_, bus):
            said = await asyncio.to_thread(subprocess.run, [
                sys.executable, "-m", "yokeflow", "chat", "-m",
                "Plan this spec, run it with at most 4 agents and a $20 budget"], env=env, cwd=tmp_path,
                capture_output=True, text=True, timeout=180)
            assert said.returncode == 0, said.stderr
            assert "with at most 4 agents and $20" in said.stdout
            [started] = [d.event async for d in bus.read() if isinstance(d.event, ev.RunStarted)]
            end = await wait_for_end(bus, started.run_id)
    assert isinstance(end, ev.RunCompleted), end
    assert started.settings.parallel.max_concurrency == 4 and started.settings.cost.run_budget_usd == 20
    produced = [r for r in api.requests if any(t.get("name") == "run_start" for t in r.body.get("tools") or [])]
    assert len(produced) == 4  # the orchestrator's four turns, every action through a tool


def claude_code(body: dict) -> dict:
    """Claude Code's scripted turns: start a run through YokeFlow's MCP tools, watch it to its end."""
    import re

    names = {t.get("name") for t in body.get("tools") or []}
    if "mcp__yokeflow__run_start" not in names:
        return turn({"type": "text", "text": "ok"})
    said = json.dumps([m["content"] for m in body["messages"] if m["role"] == "user"])
    run = re.search(r'run_id[^a-z0-9]+(r[0-9a-f]{11})', said)
    if run is None:
        return turn(tool("mcp__yokeflow__run_start", repo_path=CLAUDE_REPO[0], plan=QUICK, max_concurrency=2))
    last = json.dumps(body["messages"][-1]["content"])
    ended = re.search(r'"status\W{1,16}(completed|failed|cancelled)', last)  # the run's own status
    if ended:
        return turn({"type": "text", "text": f"run {run.group(1)} {ended.group(1)}"})
    return turn(tool("mcp__yokeflow__run_status", run_id=run.group(1)))


CLAUDE_REPO: list[str] = []
QUICK = {"name": "quick", "epics": [{"id": "E", "name": "E", "tasks": [
    {"id": "one", "title": "One"}, {"id": "two", "title": "Two", "depends_on": ["one"]}]}]}


async def test_claude_code_runs_a_plan_through_yokeflow_s_mcp_tools(nats_server, database_url, unique, git_repo,
                                                                      tmp_path):
    import subprocess

    from shared import events as ev
    from shared.llm.claude_code import bundled_cli
    from tests.conftest import IN_CI

    cli = bundled_cli()
    if cli is None:
        if IN_CI:
            raise AssertionError("the Claude Code CLI bundled in claude-agent-sdk is required in CI")
        import pytest

        pytest.skip("claude-agent-sdk (with its bundled CLI) is not installed")
    CLAUDE_REPO[:] = [str(git_repo)]
    yokeflow_env = {**service_env(nats_server.url, database_url, unique), "PYTHONPATH": str(ROOT),
                    "YOKEFLOW_AGENT__PROVIDER": "sleep:50", "YOKEFLOW_PARALLEL__STRATEGY": "by_task"}
    mcp_config = tmp_path / "mcp.json"
    mcp_config.write_text(json.dumps({"mcpServers": {"yokeflow": {
        "command": sys.executable, "args": ["-m", "yokeflow", "mcp"], "env": yokeflow_env}}}))
    home = tmp_path / "home"
    home.mkdir()
    with FakeAnthropic([claude_code] * 200) as api:
        cfg = config(parallel={"strategy": "by_task"}, agent={"provider": "sleep:50"})
        async with running_system(nats_server.url, database_url, unique, cfg) as (_, bus):
            env = {"PATH": os.environ["PATH"], "HOME": str(home), "ANTHROPIC_BASE_URL": api.url,
                   "ANTHROPIC_API_KEY": "test-key", "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1",
                   "ENABLE_TOOL_SEARCH": "false"}  # YokeFlow's tools in the request, not behind a search
            done = await asyncio.to_thread(subprocess.run, [
                cli, "-p", "Run the quick plan on the repository and tell me when it is done.",
                "--mcp-config", str(mcp_config), "--strict-mcp-config",
                "--allowedTools", "mcp__yokeflow__run_start mcp__yokeflow__run_status",
                "--permission-mode", "acceptEdits"], cwd=str(tmp_path), env=env, capture_output=True, text=True,
                timeout=240)
            events = [d.event async for d in bus.read()]
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    [started] = [e for e in events if isinstance(e, ev.RunStarted)]
    assert started.plan.name == "quick" and started.settings.parallel.max_concurrency == 2
    assert any(isinstance(e, ev.RunCompleted) and e.run_id == started.run_id for e in events)
    assert f"run {started.run_id} completed" in done.stdout
