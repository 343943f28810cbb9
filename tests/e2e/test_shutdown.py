"""SIGTERM to an executor process mid-task loses nothing: it stops pulling, reports itself not
ready, and either finishes the task in hand before exiting or hands it back to the log, where
the next executor completes it once."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request

import pytest

from shared import events as ev
from shared.commands import start_run
from shared.infra import free_port
from tests.support.processes import ServiceProcess, service_env
from tests.support.system import config, endpoint_for, events_of, next_event, start_system, wait_for_end

pytestmark = pytest.mark.e2e

PLAN = {"name": "one", "epics": [{"id": "E", "name": "E", "tasks": [
    {"id": "t0", "title": "Task 0", "tests": ["test -d yokeflow-sleep"]}]}]}


def probe(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


def main_log(repo) -> list[str]:
    out = subprocess.run(["git", "log", "--format=%s", "main"], cwd=repo, capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.startswith("task t0:")]


async def test_sigterm_drains_the_task_in_hand_then_exits(nats_server, database_url, unique, git_repo, tmp_path):
    endpoint = endpoint_for(nats_server.url, database_url, unique)
    cfg = config(parallel={"strategy": "by_task", "max_concurrency": 1}, agent={"provider": "sleep:4000"},
                 learning={"enabled": False})  # no learner runs here
    system = await start_system(endpoint, cfg, services=("ledger", "planner", "merger"))
    port = free_port()
    executor = ServiceProcess("executor", service_env(nats_server.url, database_url, unique,
                                                      YOKEFLOW_HEALTH_PORT=str(port)), tmp_path).start()
    bus = await endpoint.bus()
    try:
        started = await start_run(bus, PLAN, git_repo, cfg)
        await next_event(bus, lambda e: isinstance(e, ev.AgentStarted))
        assert probe(port, "livez")[0] == 200
        assert probe(port, "readyz") == (200, {"status": "ok", "problems": []})
        executor.proc.terminate()  # SIGTERM mid-task (the agent sleeps 4 s)
        status, body = probe(port, "readyz")
        assert status == 503 and body["problems"][0].startswith("draining")
        assert executor.proc.wait(60) == 0, executor.output()[-3000:]
        end = await wait_for_end(bus, started.run_id, timeout=60)  # no executor runs any more
        assert isinstance(end, ev.RunCompleted), end
        events = await events_of(bus, started.run_id)
    finally:
        executor.stop()
        await bus.close()
        await system.stop()
    assert len([e for e in events if isinstance(e, ev.AgentStarted)]) == 1  # finished where it began
    [finished] = [e for e in events if isinstance(e, ev.AgentFinished)]
    assert finished.outcome == "success"
    assert main_log(git_repo) == ["task t0: Task 0"]


async def test_sigterm_past_the_drain_hands_the_task_back_and_a_restart_completes_it(
        nats_server, database_url, unique, git_repo, tmp_path):
    endpoint = endpoint_for(nats_server.url, database_url, unique)
    cfg = config(parallel={"strategy": "by_task", "max_concurrency": 1}, agent={"provider": "sleep:5000"},
                 learning={"enabled": False})
    system = await start_system(endpoint, cfg, services=("ledger", "planner", "merger"))
    env = service_env(nats_server.url, database_url, unique, YOKEFLOW_EXECUTOR_DRAIN_S="0.2")
    first = ServiceProcess("executor", env, tmp_path).start()
    second = None
    bus = await endpoint.bus()
    try:
        started = await start_run(bus, PLAN, git_repo, cfg)
        await next_event(bus, lambda e: isinstance(e, ev.AgentStarted))
        first.proc.terminate()
        assert first.proc.wait(60) == 0, first.output()[-3000:]
        assert not [e for e in await events_of(bus, started.run_id) if isinstance(e, ev.AgentFinished)]
        second = ServiceProcess("executor", env, tmp_path).start()  # the service restarts
        end = await wait_for_end(bus, started.run_id, timeout=90)
        assert isinstance(end, ev.RunCompleted), end
        events = await events_of(bus, started.run_id)
    finally:
        for p in (first, second):
            if p:
                p.stop()
        await bus.close()
        await system.stop()
    starts = [e for e in events if isinstance(e, ev.AgentStarted)]
    assert len(starts) == 2 and len({s.executor for s in starts}) == 2
    [finished] = [e for e in events if isinstance(e, ev.AgentFinished)]
    assert finished.outcome == "success" and finished.attempt == 1  # the same attempt, not a retry
    assert len([e for e in events if isinstance(e, ev.BranchMerged)]) == 1
    assert main_log(git_repo) == ["task t0: Task 0"]
