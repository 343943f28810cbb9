"""Every service as its own process, killed with SIGKILL where it works: the ledger, learner and
planner one at a time, then all of them at once. The run still ends and keeps every invariant."""

from __future__ import annotations

import asyncio

from shared import events as ev
from shared.commands import start_run
from tests.chaos.invariants import check_invariants
from tests.support.processes import ServiceProcess, service_env
from tests.support.system import config, endpoint_for, next_event, wait_for_end

SERVICES = ("ledger", "planner", "executor", "merger", "learner")
PLAN = {"name": "chaos", "epics": [{"id": "E", "name": "E", "tasks": [
    {"id": "a", "title": "A", "tests": ["test -d yokeflow-sleep"]},
    {"id": "b", "title": "B", "depends_on": ["a"], "tests": ["test -d yokeflow-sleep"]},
    {"id": "c", "title": "C", "tests": ["test -d yokeflow-sleep"]},
    {"id": "d", "title": "D", "depends_on": ["b", "c"], "tests": ["test -d yokeflow-sleep"]},
    {"id": "e", "title": "E", "tests": ["test -d yokeflow-sleep"]}]}]}


class Fleet:
    """The five services as processes, started and killed by name."""

    def __init__(self, env: dict[str, str], log_dir):
        self.env, self.log_dir = env, log_dir
        self.procs = {name: ServiceProcess(name, env, log_dir).start() for name in SERVICES}

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.kill()
        assert proc.proc.returncode == -9, (name, proc.proc.returncode)  # it died of the SIGKILL, not before

    def restart(self, name: str) -> None:
        self.procs[name] = ServiceProcess(name, self.env, self.log_dir).start()

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()

    def outputs(self) -> str:
        return "\n".join(f"--- {n}\n{p.output()[-1500:]}" for n, p in self.procs.items())


def of_run(run_id: str, cls):
    return lambda e: isinstance(e, cls) and getattr(e, "run_id", None) == run_id


async def test_killing_each_service_where_it_works_and_then_all_at_once(nats_server, database_url, unique, git_repo,
                                                                       tmp_path):
    env = service_env(nats_server.url, database_url, unique, YOKEFLOW_EXECUTOR_ACK_WAIT="3",
                      YOKEFLOW_MERGER_ACK_WAIT="3")
    cfg = config(parallel={"strategy": "by_task", "max_concurrency": 2}, agent={"provider": "sleep:300"})
    fleet = Fleet(env, tmp_path)
    bus = await endpoint_for(nats_server.url, database_url, unique).bus()
    try:
        started = await start_run(bus, PLAN, git_repo, cfg)
        run = started.run_id
        # each one is killed right after an event it must act on has been appended
        for name, cls in (("planner", ev.RunStarted), ("ledger", ev.AgentStarted), ("learner", ev.AgentFinished)):
            await next_event(bus, of_run(run, cls), timeout=60)
            fleet.kill(name)
            await asyncio.sleep(0.2)
            fleet.restart(name)
        await next_event(bus, of_run(run, ev.BranchMerged), timeout=60)
        for name in SERVICES:  # kill -9 of everything mid-run
            fleet.kill(name)
        for name in SERVICES:
            fleet.restart(name)
        end = await wait_for_end(bus, run, timeout=150)
        assert isinstance(end, ev.RunCompleted), (end, fleet.outputs())
        await check_invariants(bus, git_repo, run, database_url=database_url)
    finally:
        fleet.stop()
        await bus.close()
