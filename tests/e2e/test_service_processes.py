"""`runtime.service_processes`: every service in its own OS process, as a deployment runs them,
started and stopped by the command that needs them."""

from __future__ import annotations

import os
import signal

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
