"""`runtime.service_processes`: every service in its own OS process, as a deployment runs them,
started and stopped by the command that needs them."""

from __future__ import annotations

import os
import signal

from shared import db
from shared import events as ev
from shared.commands import start_run
from tests.support.system import config, endpoint_for, start_system, wait_for_end

PLAN = {"name": "procs", "epics": [{"id": "E1", "name": "One", "tasks": [
    {"id": "a", "title": "First"}, {"id": "b", "title": "Second", "depends_on": ["a"]},
    {"id": "c", "title": "Apart"}]}]}


async def test_a_run_completes_with_each_service_in_its_own_process(nats_server, database_url, unique, git_repo,
                                                                    monkeypatch):
    monkeypatch.setenv("YOKEFLOW_API_TOKEN", "gateway-token-never-written-7731")
    cfg = config(parallel={"max_concurrency": 3}, agent={"provider": "sleep:50"}, runtime={"service_processes": True})
    system = await start_system(endpoint_for(nats_server.url, database_url, unique), cfg)
    bus = await system.endpoint.bus()
    try:
        children = system.children.children
        assert sorted(children) == ["executor", "learner", "ledger", "merger", "planner"] and not system.tasks
        assert len({c.pid for c in children.values()} | {os.getpid()}) == 6
        settings = (system.children.folder / ".yokeflow.yaml").read_text()
        assert "never-written-7731" not in settings and "database_url" not in settings
        assert oct(system.children.folder.stat().st_mode & 0o777) == "0o700"
        started = await start_run(bus, PLAN, git_repo, cfg)
        end = await wait_for_end(bus, started.run_id)
        assert isinstance(end, ev.RunCompleted), end
        await system.database.wait_for("ledger", await bus.last_seq(), timeout=60)  # the child ledger projected it
        assert system.failed() is None and system.children_cpu_seconds() > 0
        children["learner"].send_signal(signal.SIGKILL)
        children["learner"].wait(10)
        assert system.failed() == "learner: its process exited with code -9"
    finally:
        await bus.close()
        await system.stop()
    assert all(c.poll() is not None for c in children.values())
    assert not system.children.folder.exists()


async def test_by_default_the_ledger_alone_runs_in_its_own_process_and_ends_with_its_parent(
        nats_server, database_url, unique, git_repo, tmp_path):
    """`up` and `run` by default: the orchestration in one process, the ledger in its own (as its own
    NATS identity and database role); it projects the run, stops with the system, and a parent that
    dies without stopping it (SIGKILL) takes it along."""
    import subprocess
    import sys
    import time

    from shared.config import parse_config

    cfg = parse_config({"parallel": {"max_concurrency": 2}, "agent": {"provider": "sleep:20"}})
    assert cfg.runtime.ledger_process
    system = await start_system(endpoint_for(nats_server.url, database_url, unique), cfg)
    bus = await system.endpoint.bus()
    try:
        assert sorted(system.children.children) == ["ledger"]
        assert sorted(system.tasks) == ["executor", "learner", "merger", "planner"]
        started = await start_run(bus, PLAN, git_repo, cfg)
        assert isinstance(await wait_for_end(bus, started.run_id), ev.RunCompleted)
        await system.database.wait_for("ledger", await bus.last_seq(), timeout=60)  # the child projected it all
        rows = await system.database.fetch(db.tasks.select().where(db.tasks.c.run_id == started.run_id))
        assert sorted(r["status"] for r in rows) == ["done"] * 3
    finally:
        await bus.close()
        await system.stop()
    ledger = system.children.children["ledger"]
    assert ledger.poll() is not None

    # a parent killed outright: its ledger does not outlive it (the parent gets the ledger's own URLs)
    env = system.children.env("ledger", 0)
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, time\n"
        "from yokeflow.system import ServiceProcesses, Endpoint\n"
        "from shared.config import parse_config\n"
        "endpoint = Endpoint(os.environ['YOKEFLOW_NATS_URL'], os.environ['YOKEFLOW_DATABASE_URL'], 'environment',\n"
        f"                    bus_options={system.endpoint.bus_options!r})\n"
        "children = ServiceProcesses(endpoint, parse_config({}))\n"
        "children.start('ledger', 0)\n"
        "print(children.children['ledger'].pid, flush=True)\n"
        "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    child_pid = int(parent.stdout.readline())
    time.sleep(2)  # serving, not dying of a bad start
    assert _alive(child_pid)
    parent.kill()
    parent.wait(10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(child_pid):
        time.sleep(0.1)
    assert not _alive(child_pid)


def _alive(pid: int) -> bool:
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended (nobody waits for it here)


async def test_a_ledger_process_that_cannot_start_fails_the_start_and_names_itself(nats_server, database_url, unique,
                                                                                    monkeypatch):
    import pytest

    from yokeflow.errors import CliError
    from yokeflow.system import ServiceProcesses

    real_env = ServiceProcesses.env
    started = []

    def without_database(self, name, slots):
        started.append(self)
        env = real_env(self, name, slots)
        env.pop("YOKEFLOW_DATABASE_URL", None)  # the child says what is missing and exits
        return env

    monkeypatch.setattr(ServiceProcesses, "env", without_database)
    from shared.config import parse_config

    with pytest.raises(CliError, match="ledger: its process exited with code 1"):
        await start_system(endpoint_for(nats_server.url, database_url, unique), parse_config({}))
    assert all(c.poll() is not None for c in started[0].children.values()) and not started[0].folder.exists()
