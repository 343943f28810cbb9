"""The agent loop through the real `anthropic` SDK against a local Messages API server."""

import asyncio
import json
import time

import pytest

from services.executor.agent.loop import CallRecord, run_agent
from services.executor.agent.prompt import build_system_prompt, repo_map
from services.executor.agent.tools import Sandbox
from shared.llm import make_provider
from tests.support.fake_anthropic import FakeAnthropic, text, tool, turn
from tests.integration.test_agent_sandbox import wait_dead

MODEL = "claude-sonnet-4-6"


@pytest.fixture
def server():
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
async def provider(server):
    p = make_provider("anthropic", {"api_key": "test-key", "base_url": server.url, "base_delay_s": 0.05,
                                    "breaker_threshold": 3})
    yield p
    await p.aclose()


@pytest.fixture
def worktree(tmp_path):
    root = tmp_path / "wt"
    root.mkdir()
    (root / "README.md").write_text("# demo\n")
    return root


async def agent(provider, worktree, *, checks=(), cancel=None, calls=None, logs=None, **kw):
    async def on_call(record: CallRecord):
        if calls is not None:
            calls.append(record)

    async def on_log(kind, data):
        if logs is not None:
            logs.append((kind, data))

    system = build_system_prompt(expertise="Prefer small functions.", repo_map=repo_map(worktree))
    return await run_agent(provider=provider, model=MODEL, system=system, task_prompt="Do the task.",
                           sandbox=Sandbox(worktree, command_timeout_s=30), checks=list(checks),
                           on_call=on_call, on_log=on_log, cancel=cancel, **kw)


async def test_tool_loop_writes_files_runs_commands_and_finishes(server, provider, worktree):
    server.add_turns(
        turn(text("I will write the script."), tool("write_file", path="hello.py", content="print('hi from hello')\n")),
        turn(tool("run_command", command="python3 hello.py")),
        turn(tool("finish", summary="added hello.py")),
    )
    logs = []
    result = await agent(provider, worktree, checks=["test -f hello.py"], logs=logs)
    assert result.outcome == "success", result.error
    assert result.summary == "added hello.py" and result.turns == 3
    assert (worktree / "hello.py").read_text() == "print('hi from hello')\n"
    # the command's output went back to the model as the tool result
    results = [b for b in server.requests[2].body["messages"][-1]["content"] if b["type"] == "tool_result"]
    assert results[0]["content"].startswith("exit code 0") and "hi from hello" in results[0]["content"]
    assert results[0]["tool_use_id"] == server.requests[2].body["messages"][-2]["content"][0]["id"]
    assert result.checks == [{"command": "test -f hello.py", "exit_code": 0, "output": "", "passed": True,
                              "timed_out": False}]
    kinds = [k for k, _ in logs]
    assert kinds.count("tool_call") == 3 and "text" in kinds and "check_result" in kinds


async def test_usage_and_cost_are_accounted_per_call_and_in_total(server, provider, worktree):
    server.add_turns(
        turn(tool("write_file", path="a.txt", content="a"),
             usage={"input_tokens": 1000, "output_tokens": 200, "cache_creation_input_tokens": 5000}),
        turn(tool("finish", summary="done"),
             usage={"input_tokens": 50, "output_tokens": 100, "cache_read_input_tokens": 5000}),
    )
    calls = []
    result = await agent(provider, worktree, calls=calls)
    first = (1000 * 3 + 200 * 15 + 5000 * 3.75) / 1e6
    second = (50 * 3 + 100 * 15 + 5000 * 0.30) / 1e6
    assert [c.call for c in calls] == [1, 2]
    assert calls[0].cost_usd == pytest.approx(first) and calls[1].cost_usd == pytest.approx(second)
    assert calls[0].usage.cache_write_tokens == 5000 and calls[1].usage.cache_read_tokens == 5000
    assert calls[0].model == MODEL
    assert result.cost_usd == pytest.approx(first + second)
    assert (result.usage.input_tokens, result.usage.output_tokens) == (1050, 300)
    assert (result.usage.cache_write_tokens, result.usage.cache_read_tokens) == (5000, 5000)


async def test_requests_mark_the_stable_prefix_for_prompt_caching(server, provider, worktree):
    server.add_turns(turn(tool("finish", summary="nothing to do")))
    await agent(provider, worktree)
    body = server.requests[0].body
    assert body["model"] == MODEL
    assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    system_text = "\n".join(b["text"] for b in body["system"])
    assert "Prefer small functions." in system_text and "README.md (7 B)" in system_text
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert {t["name"] for t in body["tools"]} == {"read_file", "write_file", "edit_file", "list_files", "grep",
                                                  "run_command", "finish"}
    assert body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}


async def test_a_429_is_retried_after_the_time_retry_after_asks(server, provider, worktree):
    server.fail(1, status=429, retry_after="1")
    server.add_turns(turn(tool("finish", summary="done")))
    result = await agent(provider, worktree)
    assert result.outcome == "success"
    assert len(server.requests) == 2
    waited = server.requests[1].at - server.requests[0].at
    assert waited >= 0.95, f"retried after {waited:.2f} s although retry-after said 1 s"


async def test_overloaded_529_is_retried_with_backoff(server, provider, worktree):
    server.fail(1, status=529, retry_after=None, error_type="overloaded_error", message="Overloaded")
    server.add_turns(turn(tool("finish", summary="done")))
    assert (await agent(provider, worktree)).outcome == "success"
    assert len(server.requests) == 2


async def test_repeated_rate_limits_trip_the_circuit_breaker(server, provider, worktree):
    server.fail(2, status=429, retry_after="0")
    server.fail(8, status=429, retry_after="0.01")
    server.add_turns(turn(tool("finish", summary="never reached")))
    result = await agent(provider, worktree)
    assert result.outcome == "rate_limited"
    assert "3 time(s) in a row" in result.error and result.retry_after_s == pytest.approx(0.01)
    assert len(server.requests) == 3  # breaker_threshold


async def test_a_quota_error_pauses_at_once(server, provider, worktree):
    server.fail(1, status=402, retry_after=None, error_type="billing_error",
                message="Your credit balance is too low")
    result = await agent(provider, worktree)
    assert result.outcome == "rate_limited" and "credit balance" in result.error
    assert len(server.requests) == 1


async def test_cancellation_stops_a_waiting_model_call_within_two_seconds(server, provider, worktree):
    server.hold(60)
    server.add_turns(turn(tool("finish", summary="too late")))
    cancel = asyncio.Event()
    running = asyncio.create_task(agent(provider, worktree, cancel=cancel))
    while not server.requests:
        await asyncio.sleep(0.02)
    asked = time.monotonic()
    cancel.set()
    result = await asyncio.wait_for(running, 5)
    assert result.outcome == "cancelled"
    assert time.monotonic() - asked < 2.0


async def test_cancellation_kills_a_running_command_within_two_seconds(server, provider, worktree):
    server.add_turns(turn(tool("run_command", command="sleep 300 & echo $! > bg.pid; sleep 300", timeout_s=600)))
    cancel = asyncio.Event()
    running = asyncio.create_task(agent(provider, worktree, cancel=cancel))
    pid_file = worktree / "bg.pid"
    while not pid_file.exists() or not pid_file.read_text().strip():
        await asyncio.sleep(0.02)
    asked = time.monotonic()
    cancel.set()
    result = await asyncio.wait_for(running, 5)
    assert result.outcome == "cancelled"
    assert time.monotonic() - asked < 2.0
    assert await wait_dead(int(pid_file.read_text()), within_s=2.0)


async def test_a_file_tool_asked_for_after_a_cancellation_does_not_run(server, provider, worktree):
    cancel = asyncio.Event()

    class CancelOnAnswer:  # the run is cancelled while the model's answer comes back
        name = provider.name

        async def create(self, **kw):
            turn_ = await provider.create(**kw)
            cancel.set()
            return turn_

    server.add_turns(turn(tool("write_file", path="late.txt", content="no\n")))
    result = await agent(CancelOnAnswer(), worktree, cancel=cancel)
    assert result.outcome == "cancelled"
    assert not (worktree / "late.txt").exists()


async def test_a_task_whose_checks_fail_is_not_a_success(server, provider, worktree):
    server.add_turns(turn(tool("write_file", path="ok.txt", content="x")), turn(tool("finish", summary="done")))
    result = await agent(provider, worktree, checks=["test -f ok.txt", "echo 'missing.txt absent' >&2; exit 1"],
                         max_fix_rounds=0)
    assert result.outcome == "failure"
    assert [c["passed"] for c in result.checks] == [True, False]
    assert "missing.txt absent" in result.checks[1]["output"] and "exit 1" in result.error


async def test_a_task_whose_checks_pass_is_a_success(server, provider, worktree):
    server.add_turns(turn(tool("write_file", path="ok.txt", content="x")), turn(tool("finish", summary="done")))
    result = await agent(provider, worktree, checks=["test -f ok.txt"], max_fix_rounds=0)
    assert result.outcome == "success" and result.checks[0]["passed"]


async def test_failing_checks_go_back_to_the_agent_which_fixes_the_work(server, provider, worktree):
    check = "python3 -c 'import calc; assert calc.add(2, 3) == 5, calc.add(2, 3)'"
    server.add_turns(
        turn(tool("write_file", path="calc.py", content="def add(a, b):\n    return a - b\n")),
        turn(tool("finish", summary="added calc.add")),
        turn(tool("edit_file", path="calc.py", old_text="a - b", new_text="a + b")),
        turn(tool("finish", summary="fixed calc.add")),
    )
    result = await agent(provider, worktree, checks=[check], max_fix_rounds=2)
    assert result.outcome == "success", result.error
    assert result.summary == "fixed calc.add" and result.turns == 4
    feedback = server.requests[2].body["messages"][-1]["content"]
    said = "\n".join(b.get("text", "") for b in feedback if b["type"] == "text")
    assert "checks failed" in said and "AssertionError: -1" in said
    assert any(b["type"] == "tool_result" for b in feedback)  # roles still alternate


async def test_fix_rounds_are_bounded(server, provider, worktree):
    server.add_turns(*[turn(tool("finish", summary=f"try {i}")) for i in range(3)])
    result = await agent(provider, worktree, checks=["false"], max_fix_rounds=2)
    assert result.outcome == "failure" and "after 2 fix round(s)" in result.error
    assert result.turns == 3


async def test_replay_and_sleep_providers_drive_the_same_loop(tmp_path, worktree):
    transcript = tmp_path / "demo.json"
    transcript.write_text(json.dumps({"model": MODEL, "turns": [
        {"content": [{"type": "tool_use", "id": "t1", "name": "write_file",
                      "input": {"path": "demo.txt", "content": "replayed"}}], "stop_reason": "tool_use",
         "usage": {"input_tokens": 10, "output_tokens": 5}},
        {"content": [{"type": "tool_use", "id": "t2", "name": "finish", "input": {"summary": "replayed demo"}}],
         "stop_reason": "tool_use", "usage": {"input_tokens": 10, "output_tokens": 5}},
    ]}))
    calls = []
    result = await agent(make_provider("replay", {"transcript": str(transcript)}), worktree, calls=calls,
                         checks=["grep -q replayed demo.txt"])
    assert result.outcome == "success" and result.cost_usd == 0 and calls[0].model.startswith("replay")
    assert result.usage.input_tokens == 20
    slept = await agent(make_provider("sleep:10"), worktree)
    assert slept.outcome == "success" and len(list((worktree / "yokeflow-sleep").iterdir())) == 1
    short = await agent(make_provider("replay", {"transcript": {"model": MODEL, "turns": [
        {"content": [{"type": "tool_use", "id": "t1", "name": "list_files", "input": {}}]}]}}), worktree)
    assert short.outcome == "failure" and "ReplayExhausted" in short.error and "did not finish" in short.error


async def test_unknown_model_fails_before_any_call(server, provider, worktree):
    result = await run_agent(provider=provider, model="gpt-imaginary", system=[], task_prompt="x",
                             sandbox=Sandbox(worktree))
    assert result.outcome == "failure" and "cost.prices.gpt-imaginary" in result.error and not server.requests
