"""Record mode: a run against a live provider (here the real anthropic SDK against the local
Messages API server) writes each agent's turns as a transcript, and the replay provider plays
those transcripts to the same result in a fresh repository, with no model API at all."""

from __future__ import annotations

import json
import subprocess

import pytest

from shared import events as ev
from shared.commands import start_run
from shared.config import ConfigError, parse_config
from tests.support.fake_anthropic import FakeAnthropic, tool, turn
from tests.support.system import config, running_system, wait_for_end

pytestmark = pytest.mark.e2e

PLAN = {"name": "rec", "epics": [{"id": "E", "name": "E", "tasks": [
    {"id": "a", "title": "Greeting", "tests": ["python -c 'import greet; assert greet.HELLO == \"hi\"'"]}]}]}
TURNS = [turn(tool("write_file", path="greet.py", content="HELLO = 'hi'\n")),
         turn(tool("finish", summary="greet.py says hi"))]


def main_file(repo, path: str) -> str:
    return subprocess.run(["git", "show", f"main:{path}"], cwd=repo, capture_output=True, text=True, check=True).stdout


async def test_a_recorded_live_run_replays_offline(nats_server, database_url, unique, git_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    recorded = tmp_path / "recorded"
    with FakeAnthropic(TURNS) as api:
        live = config(agent={"provider": "anthropic", "base_url": api.url, "record": str(recorded)})
        async with running_system(nats_server.url, database_url, unique, live) as (_, bus):
            end = await wait_for_end(bus, (await start_run(bus, PLAN, git_repo, live)).run_id)
    assert isinstance(end, ev.RunCompleted), end
    transcript = json.loads((recorded / "a.json").read_text())
    assert [b["name"] for t in transcript["turns"] for b in t["content"] if b["type"] == "tool_use"] == \
        ["write_file", "finish"]

    fresh = tmp_path / "fresh"
    subprocess.run(["git", "clone", "-q", str(git_repo), str(fresh)], check=True)
    subprocess.run(["git", "-C", str(fresh), "reset", "-q", "--hard", "HEAD~1"], check=True)  # before the run
    offline = config(agent={"provider": "replay", "transcripts": str(recorded)})
    async with running_system(nats_server.url, database_url, f"{unique}r", offline) as (_, bus):
        end = await wait_for_end(bus, (await start_run(bus, PLAN, fresh, offline)).run_id)
    assert isinstance(end, ev.RunCompleted), end
    assert main_file(fresh, "greet.py") == main_file(git_repo, "greet.py") == "HELLO = 'hi'\n"


def test_recording_a_replay_is_refused_by_name():
    with pytest.raises(ConfigError, match="agent.record"):
        parse_config({"agent": {"provider": "replay", "record": "/tmp/x"}})
