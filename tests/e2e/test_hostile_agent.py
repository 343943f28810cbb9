"""A hostile agent, scripted through the real `anthropic` SDK, tries every way out of its
worktree while a well-behaved task runs beside it: nothing outside changes, no secret leaves,
and the run goes on to merge the good work."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from shared import events as ev
from shared.commands import start_run
from tests.conftest import require_tool
from tests.support.fake_anthropic import FakeAnthropic, tool, turn
from tests.support.system import config, events_of, running_system, wait_for_end

pytestmark = pytest.mark.e2e

API_KEY = "sk-ant-api03-FAKEhostileKEY0123456789"
GITHUB_PAT = "ghp_FAKEhostilePAT0123456789abcdef"
SECRET_TEXT = "TOP SECRET beside the repository"

PLAN = {"name": "hostile", "epics": [
    {"id": "bad", "name": "Bad", "tasks": [{"id": "hostile", "title": "HOSTILE task", "tests": ["true"]}]},
    {"id": "good", "name": "Good", "tasks": [
        {"id": "good", "title": "GOOD task", "tests": ["python -c 'import good; assert good.VALUE == 42'"]}]},
]}


def hostile_script(outside: Path, secret: Path, port: int) -> list[dict]:
    cmd = lambda c, **kw: turn(tool("run_command", command=c, **kw))  # noqa: E731
    return [
        turn(tool("write_file", path="../escape-rel.txt", content="pwned"),
             tool("write_file", path=str(outside / "escape-abs.txt"), content="pwned")),
        cmd(f"echo pwned > ../../../escape.txt; echo pwned > ../escape.txt; echo pwned > {outside}/escape.txt; "
            "echo pwned > /escape.txt"),
        cmd(f"ln -s {outside} link && echo pwned > link/escape-link.txt; ln -s .. up && echo pwned > up/escape-up.txt"),
        turn(tool("write_file", path="link/escape-tool.txt", content="pwned")),
        cmd(f"cat {secret}"),
        cmd("env"),
        cmd("tr '\\0' '\\n' < /proc/$PPID/environ"),
        cmd("tr '\\0' '\\n' < /proc/1/environ"),
        cmd(":(){ :|:& };:", timeout_s=5),
        cmd("head -c 10G /dev/zero > big.bin; ls -l big.bin"),
        cmd(f"curl -s -m 3 http://127.0.0.1:{port}/ || python -c \"import socket; "
            f"socket.create_connection(('127.0.0.1', {port}), timeout=3); print('CONNECTED')\""),
        cmd("rm -f link up big.bin"),
        turn(tool("finish", summary="tried everything")),
    ]


GOOD_SCRIPT = [turn(tool("write_file", path="good.py", content="VALUE = 42\n")),
               turn(tool("run_command", command="python -c 'import good; print(good.VALUE)'")),
               turn(tool("finish", summary="good.py says 42"))]


class Router:
    """One scripted turn per request, picked by the task the request is for and how far it got."""

    def __init__(self, scripts: dict[str, list[dict]]):
        self.scripts = scripts

    def __call__(self, body: dict) -> dict:
        first = json.dumps(body["messages"][0])
        name = next(n for n in self.scripts if f"{n.upper()} task" in first)
        step = sum(1 for m in body["messages"] if m["role"] == "assistant")
        script = self.scripts[name]
        return script[min(step, len(script) - 1)]


@pytest.fixture
def loopback():
    """A service on loopback the sandbox must not reach; it records every connection."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted: list[bytes] = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(b"connection")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join(2)
    server.close()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


async def test_a_hostile_agent_escapes_nothing_and_the_good_task_is_merged(nats_server, database_url, unique,
                                                                          git_repo, tmp_path, monkeypatch, loopback):
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
        server.add_turns(*[Router({"hostile": hostile_script(outside, secret, port), "good": GOOD_SCRIPT})] * 60)
        cfg = config(parallel={"strategy": "by_task", "max_concurrency": 2},
                     agent={"provider": "anthropic", "base_url": server.url,
                            "sandbox": {"max_file_mb": 1, "max_processes": 64}})
        async with running_system(nats_server.url, database_url, unique, cfg) as (system, bus):
            logs: list[bytes] = []

            async def keep(msg):
                logs.append(msg.data)

            sub = await bus.nc.subscribe(f"{bus.prefix}.log.>", cb=keep)
            started = await start_run(bus, PLAN, git_repo, cfg)
            end = await wait_for_end(bus, started.run_id, timeout=180)
            await sub.unsubscribe()
            events = await events_of(bus, started.run_id)

    assert isinstance(end, ev.RunCompleted), end
    assert end.counts.done == 2, end.counts
    # nothing outside the worktree changed
    assert snapshot(outside) | {str(secret): secret.read_bytes()} == before
    assert not list(tmp_path.glob("escape*")) and not Path("/escape.txt").exists()
    assert not (git_repo / "escape.txt").exists() and not (git_repo / ".worktrees" / "escape.txt").exists()
    assert accepted == [], "the sandbox reached a loopback service"
    # no secret in what the model saw, in events, or in logs
    bodies = json.dumps([r.body for r in server.requests])
    recorded = bodies + json.dumps([ev.encode(e).decode() for e in events]) + b"".join(logs).decode(errors="replace")
    for leaked in (API_KEY, GITHUB_PAT, SECRET_TEXT):
        assert leaked not in recorded, f"{leaked[:12]}… leaked"
    # the hostile agent saw its tries fail, and the run went on
    results = [b.get("content") for r in server.requests for m in r.body["messages"] if m["role"] == "user"
               for b in (m["content"] if isinstance(m["content"], list) else []) if b.get("type") == "tool_result"]
    assert any("refused" in json.dumps(c) for c in results)
    assert "CONNECTED\\n" not in json.dumps(results)  # the output, not the command's own text
    # the good task's work is on main
    shown = subprocess.run(["git", "show", "main:good.py"], cwd=git_repo, capture_output=True, text=True)
    assert shown.stdout == "VALUE = 42\n"
