"""The claude-code provider for real: the Claude Code CLI bundled in claude-agent-sdk, in the
worktree's jail, against the local Messages API through YokeFlow's key proxy. A task it does
is committed, checked and merged like any other; a hostile one beside it escapes nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from shared import events as ev
from shared.commands import start_run
from tests.conftest import IN_CI, require_tool
from tests.e2e.test_hostile_agent import API_KEY, GITHUB_PAT, SECRET_TEXT, Router, loopback, snapshot  # noqa: F401
from tests.support.fake_anthropic import FakeAnthropic, text, tool, turn
from tests.support.system import config, events_of, running_system, wait_for_end

pytestmark = pytest.mark.e2e

PLAN = {"name": "claude-code", "epics": [
    {"id": "bad", "name": "Bad", "tasks": [{"id": "hostile", "title": "HOSTILE task", "tests": ["true"]}]},
    {"id": "good", "name": "Good", "tasks": [
        {"id": "good", "title": "GOOD task", "tests": ["python -c 'import good; assert good.VALUE == 42'"]}]},
]}


def bash(command: str) -> dict:
    return turn(tool("Bash", command=command, description="run"))


def scripts(outside: Path, secret: Path, port: int) -> dict[str, list[dict]]:
    return {
        "good": [turn(tool("Write", file_path="good.py", content="VALUE = 42\n")),
                 bash("python -c 'import good; print(good.VALUE)'"),
                 turn(text("good.py says 42"))],
        "hostile": [turn(tool("Write", file_path=str(outside / "escape-write.txt"), content="pwned")),
                    bash(f"echo pwned > {outside}/escape.txt; echo pwned > ../../escape.txt; "
                         f"ln -s {outside} link && echo pwned > link/escape-link.txt; rm -f link"),
                    bash(f"cat {secret}"),
                    bash("env; tr '\\0' '\\n' < /proc/$PPID/environ; tr '\\0' '\\n' < /proc/1/environ"),
                    bash(f"curl -s -m 3 http://127.0.0.1:{port}/ || python -c \"import socket; "
                         f"socket.create_connection(('127.0.0.1', {port}), timeout=3); print('CONNECTED')\""),
                    turn(text("tried everything"))],
    }


@pytest.fixture
def claude_code_cli():
    from shared.llm.claude_code import bundled_cli

    try:
        import claude_agent_sdk  # noqa: F401
    except ImportError:
        if IN_CI:
            pytest.fail("claude-agent-sdk is required in CI: pip install -e '.[test]' installs it")
        pytest.skip("claude-agent-sdk not installed (pip install -e '.[test]')")
    return bundled_cli()


async def test_claude_code_does_a_task_that_is_merged_and_a_hostile_one_escapes_nothing(
        nats_server, database_url, unique, git_repo, tmp_path, monkeypatch, loopback, claude_code_cli):  # noqa: F811
    require_tool("bwrap")
    port, accepted = loopback
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("GITHUB_PAT", GITHUB_PAT)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("untouched\n")
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET_TEXT + "\n")
    before = snapshot(outside) | {str(secret): secret.read_bytes()}

    with FakeAnthropic() as server:
        server.add_turns(*[Router(scripts(outside, secret, port))] * 40)
        cfg = config(parallel={"strategy": "by_task", "max_concurrency": 2},
                     agent={"provider": "claude-code", "base_url": server.url})
        async with running_system(nats_server.url, database_url, unique, cfg) as (system, bus):
            logs: list[bytes] = []

            async def keep(msg):
                logs.append(msg.data)

            sub = await bus.nc.subscribe(f"{bus.prefix}.log.>", cb=keep)
            started = await start_run(bus, PLAN, git_repo, cfg)
            end = await wait_for_end(bus, started.run_id, timeout=240)
            await sub.unsubscribe()
            events = await events_of(bus, started.run_id)

    assert isinstance(end, ev.RunCompleted), end
    assert end.counts.done == 2, (end.counts, [e for e in events if isinstance(e, ev.AgentFinished)])
    shown = subprocess.run(["git", "show", "main:good.py"], cwd=git_repo, capture_output=True, text=True)
    assert shown.stdout == "VALUE = 42\n"
    # every model call went through the proxy, which alone added the key
    assert server.requests and all(r.headers.get("x-api-key") == API_KEY for r in server.requests)
    # costs and Claude Code's own steps reached the log
    costs = [e for e in events if isinstance(e, ev.CostRecorded)]
    assert {c.task_id for c in costs} == {"good", "hostile"} and all(c.input_tokens > 0 for c in costs)
    log_text = b"\n".join(logs).decode(errors="replace")
    assert '"by": "claude-code"' in log_text and "good.py" in log_text
    # the hostile steps changed nothing outside and learned nothing
    assert snapshot(outside) | {str(secret): secret.read_bytes()} == before
    assert not list(tmp_path.glob("escape*")) and accepted == []
    bodies = json.dumps([r.body for r in server.requests])
    recorded = bodies + json.dumps([ev.encode(e).decode() for e in events]) + log_text
    for leaked in (API_KEY, GITHUB_PAT, SECRET_TEXT):
        assert leaked not in recorded, f"{leaked[:12]}… leaked"
    assert "CONNECTED\\n" not in bodies
